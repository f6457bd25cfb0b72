// Package logfile owns the on-disk capture of module output for the process
// runtime: a size-rotated, segmented log writer that never splits a record
// across files, the CRI log-line record format ("<RFC3339Nano> <stream>
// <F|P> <content>"), the line framing that turns a process's stdout and
// stderr into timestamped records, and a reader that selects captured lines
// by tail count and time window and can follow the log as it grows.
//
// Segments are named "<prefix>.<seq>.log" with a strictly increasing
// sequence number; rotation opens the next sequence and deletes the oldest
// beyond the retention count. Nothing is ever renamed, so a reader that
// holds a segment open keeps a consistent view, on Windows too (where a
// segment a reader holds open is deleted at a later rotation instead).
//
// It uses only the standard library and must not import net/http, an MQTT
// library, a SQL driver or any other Muster package.
package logfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Defaults for Open when maxBytes or keep are not positive.
const (
	// DefaultMaxBytes is the size at which a segment is rotated.
	DefaultMaxBytes = 10 << 20
	// DefaultKeep is how many segments are kept.
	DefaultKeep = 5
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("logfile: writer closed")

// Segment is one file of a segmented log.
type Segment struct {
	// Seq is the segment's sequence number; higher is newer.
	Seq uint64
	// Path is the segment's file path.
	Path string
}

// SegmentName returns the file name of segment seq of the log prefix.
func SegmentName(prefix string, seq uint64) string {
	return fmt.Sprintf("%s.%08d.log", prefix, seq)
}

// parseSegmentName returns the sequence number encoded in a segment file
// name of the log prefix.
func parseSegmentName(prefix, name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, prefix+".")
	if !ok {
		return 0, false
	}
	digits, ok := strings.CutSuffix(rest, ".log")
	if !ok || digits == "" {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return seq, true
}

// Segments lists the segments of the log prefix in dir, oldest first. A
// missing directory is an empty log.
func Segments(dir, prefix string) ([]Segment, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list log segments in %s: %w", dir, err)
	}
	var segs []Segment
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if seq, ok := parseSegmentName(prefix, e.Name()); ok {
			segs = append(segs, Segment{Seq: seq, Path: filepath.Join(dir, e.Name())})
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].Seq < segs[j].Seq })
	return segs, nil
}

// Writer appends records to a segmented log and rotates by size. A single
// Write never spans two segments, so callers that write whole records get
// whole records in every segment. It is safe for concurrent use; writes are
// appended in the order their calls acquire the writer.
type Writer struct {
	dir, prefix string
	maxBytes    int64
	keep        int

	mu      sync.Mutex
	f       *os.File
	seq     uint64
	size    int64
	changed chan struct{}
	closed  bool
}

// Open opens the log prefix in dir for appending, creating dir (mode 0700)
// when needed, and continues the newest existing segment. A segment is
// rotated before a write that would take it past maxBytes (a write larger
// than maxBytes gets a segment of its own); keep segments are retained.
func Open(dir, prefix string, maxBytes int64, keep int) (*Writer, error) {
	if prefix == "" || strings.ContainsAny(prefix, `/\`) {
		return nil, fmt.Errorf("open log: invalid prefix %q", prefix)
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open log: create directory %s: %w", dir, err)
	}
	w := &Writer{dir: dir, prefix: prefix, maxBytes: maxBytes, keep: keep, changed: make(chan struct{})}
	segs, err := Segments(dir, prefix)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	if len(segs) == 0 {
		if err := w.openSegment(1); err != nil {
			return nil, fmt.Errorf("open log: %w", err)
		}
		return w, nil
	}
	last := segs[len(segs)-1]
	f, err := os.OpenFile(last.Path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log segment %s: %w", last.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat log segment %s: %w", last.Path, err)
	}
	w.f, w.seq, w.size = f, last.Seq, st.Size()
	return w, nil
}

// openSegment creates segment seq and makes it current.
func (w *Writer) openSegment(seq uint64) error {
	path := filepath.Join(w.dir, SegmentName(w.prefix, seq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create log segment %s: %w", path, err)
	}
	w.f, w.seq, w.size = f, seq, 0
	return nil
}

// rotate closes the current segment, starts the next one and deletes the
// segments that fall out of retention. Deletion is best effort: a segment
// that cannot be deleted now (held open by a reader on Windows) is retried
// at the next rotation.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("close log segment %d: %w", w.seq, err)
	}
	w.f = nil
	if err := w.openSegment(w.seq + 1); err != nil {
		return err
	}
	segs, err := Segments(w.dir, w.prefix)
	if err != nil {
		return nil
	}
	for _, s := range segs {
		if s.Seq+uint64(w.keep) <= w.seq {
			_ = os.Remove(s.Path)
		}
	}
	return nil
}

// Write appends p to the current segment, rotating first when p would
// take the segment past the size limit.
func (w *Writer) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	if w.f == nil {
		// A previous rotation failed half-way; try to start a segment.
		if err := w.openSegment(w.seq + 1); err != nil {
			return 0, fmt.Errorf("write log: %w", err)
		}
	}
	if w.size > 0 && w.size+int64(len(p)) > w.maxBytes {
		if err := w.rotate(); err != nil {
			return 0, fmt.Errorf("write log: rotate: %w", err)
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	if n > 0 {
		close(w.changed)
		w.changed = make(chan struct{})
	}
	if err != nil {
		return n, fmt.Errorf("write log segment %d: %w", w.seq, err)
	}
	return n, nil
}

// Changed returns a channel that is closed by the next successful Write
// (or by Close). Readers that follow the log take it before reading to the
// end, then wait on it.
func (w *Writer) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// Close closes the current segment; later writes fail with ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	close(w.changed)
	w.changed = make(chan struct{})
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("close log segment %d: %w", w.seq, err)
	}
	return nil
}
