package logfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// maxAssembled caps a line reassembled from partial records; a longer line
// is delivered in pieces of this size.
const maxAssembled = 1 << 20

// maxScanLine caps one on-disk record line; longer (corrupt) lines are
// skipped.
const maxScanLine = MaxLine + 4096

// ReadOptions selects lines for Copy.
type ReadOptions struct {
	// Tail, when > 0, keeps only the last Tail lines of the history; 0
	// keeps all of it.
	Tail int
	// Since and Until, when not zero, keep lines captured at or after
	// Since and before Until.
	Since, Until time.Time
	// Timestamps prefixes each line with its capture time (RFC 3339 with
	// nanoseconds, UTC) and a space.
	Timestamps bool
	// Follow keeps copying lines as they are written, after the history.
	// It needs Changed; it ends when ctx ends, when a line at or after
	// Until arrives, or when Done is closed and the log is drained.
	Follow bool
	// Changed returns a channel closed at the next write to the log
	// (Writer.Changed). Required with Follow.
	Changed func() <-chan struct{}
	// Done, when not nil, ends a follow once it is closed and everything
	// written before that has been copied.
	Done <-chan struct{}
}

// errStop ends a copy early without an error (Until reached).
var errStop = errors.New("stop")

// logLine is one logical line reassembled from records.
type logLine struct {
	Time    time.Time
	Stream  string
	Content []byte
}

// assembler joins partial records of each stream into lines.
type assembler struct {
	pending map[string]*logLine
}

// add feeds one record and calls emit for every line it completes.
func (a *assembler) add(r Record, emit func(logLine) error) error {
	p := a.pending[r.Stream]
	if p == nil && !r.Partial {
		return emit(logLine{Time: r.Time, Stream: r.Stream, Content: r.Content})
	}
	if p == nil {
		if a.pending == nil {
			a.pending = make(map[string]*logLine)
		}
		p = &logLine{Time: r.Time, Stream: r.Stream}
		a.pending[r.Stream] = p
	}
	p.Content = append(p.Content, r.Content...)
	if len(p.Content) >= maxAssembled {
		delete(a.pending, r.Stream)
		return emit(*p)
	}
	if r.Partial {
		return nil
	}
	delete(a.pending, r.Stream)
	return emit(*p)
}

// flush emits every pending partial line, oldest first.
func (a *assembler) flush(emit func(logLine) error) error {
	for len(a.pending) > 0 {
		var oldest *logLine
		for _, p := range a.pending {
			if oldest == nil || p.Time.Before(oldest.Time) || (p.Time.Equal(oldest.Time) && p.Stream < oldest.Stream) {
				oldest = p
			}
		}
		delete(a.pending, oldest.Stream)
		if err := emit(*oldest); err != nil {
			return err
		}
	}
	return nil
}

// scanLines calls fn for every complete newline-terminated line in f from
// off up to end (to EOF when end < 0) and returns the offset just after
// the last complete line. Lines longer than maxScanLine are skipped.
func scanLines(f *os.File, off, end int64, fn func([]byte) error) (int64, error) {
	// The buffer never holds more than maxScanLine bytes of an unfinished
	// line between reads, so there is always room for a read.
	buf := make([]byte, 0, 4*maxScanLine)
	pos := off // file offset of buf[0]
	skipping := false
	for {
		at := pos + int64(len(buf))
		if end >= 0 && at >= end {
			break
		}
		want := int64(cap(buf) - len(buf))
		if end >= 0 {
			want = min(want, end-at)
		}
		n, err := f.ReadAt(buf[len(buf):len(buf)+int(want)], at)
		buf = buf[:len(buf)+n]
		start := 0
		for {
			i := bytes.IndexByte(buf[start:], '\n')
			if i < 0 {
				break
			}
			if !skipping {
				if ferr := fn(buf[start : start+i]); ferr != nil {
					return pos + int64(start+i+1), ferr
				}
			}
			skipping = false
			start += i + 1
		}
		pos += int64(start)
		buf = buf[:copy(buf, buf[start:])]
		if len(buf) > maxScanLine {
			pos += int64(len(buf))
			buf = buf[:0]
			skipping = true
		}
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			return pos, fmt.Errorf("read log segment %s: %w", f.Name(), err)
		}
	}
	return pos, nil
}

// copier writes selected lines to dst.
type copier struct {
	dst   io.Writer
	opts  ReadOptions
	asm   assembler
	out   []byte
	skip  int  // history lines still to skip (tail)
	count bool // counting pass: only count, never write
	seen  int  // lines selected so far
}

func (c *copier) line(l logLine) error {
	if !c.opts.Since.IsZero() && l.Time.Before(c.opts.Since) {
		return nil
	}
	if !c.opts.Until.IsZero() && !l.Time.Before(c.opts.Until) {
		if c.opts.Follow {
			return errStop
		}
		return nil
	}
	c.seen++
	if c.count {
		return nil
	}
	if c.skip > 0 {
		c.skip--
		return nil
	}
	c.out = c.out[:0]
	if c.opts.Timestamps {
		c.out = l.Time.UTC().AppendFormat(c.out, time.RFC3339Nano)
		c.out = append(c.out, ' ')
	}
	c.out = append(c.out, l.Content...)
	c.out = append(c.out, '\n')
	if _, err := c.dst.Write(c.out); err != nil {
		return fmt.Errorf("copy log line: %w", err)
	}
	return nil
}

func (c *copier) record(raw []byte) error {
	r, err := ParseRecord(raw)
	if err != nil {
		return nil // a torn or foreign line is not the reader's failure
	}
	return c.asm.add(r, c.line)
}

// openSegment is one segment opened for reading with the size it had when
// the copy started.
type openSegment struct {
	Segment
	f   *os.File
	end int64
}

// snapshot opens every current segment of the log.
func snapshot(dir, prefix string) ([]openSegment, error) {
	segs, err := Segments(dir, prefix)
	if err != nil {
		return nil, err
	}
	var out []openSegment
	for _, s := range segs {
		f, err := os.Open(s.Path)
		if errors.Is(err, os.ErrNotExist) {
			continue // rotated away since the listing
		}
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("open log segment %s: %w", s.Path, err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			closeAll(out)
			return nil, fmt.Errorf("stat log segment %s: %w", s.Path, err)
		}
		out = append(out, openSegment{Segment: s, f: f, end: st.Size()})
	}
	return out, nil
}

func closeAll(segs []openSegment) {
	for _, s := range segs {
		s.f.Close()
	}
}

// historyPass scans the snapshot once. It returns the offset reached in
// the last segment.
func (c *copier) historyPass(segs []openSegment) (int64, error) {
	c.asm = assembler{}
	var off int64
	for i, s := range segs {
		var err error
		off, err = scanLines(s.f, 0, s.end, c.record)
		if err != nil {
			return off, err
		}
		if i < len(segs)-1 && off < s.end {
			// An older segment ending in a torn record: skip the tail.
			off = s.end
		}
	}
	if !c.opts.Follow {
		if err := c.asm.flush(c.line); err != nil {
			return off, err
		}
	}
	return off, nil
}

// Copy writes the lines of the log prefix in dir selected by opts to dst,
// one per line, stdout and stderr merged in capture order. With
// opts.Follow it then keeps copying new lines; see ReadOptions.
func Copy(ctx context.Context, dst io.Writer, dir, prefix string, opts ReadOptions) error {
	if opts.Follow && opts.Changed == nil {
		return errors.New("copy log: Follow needs Changed")
	}
	// Take the change channel before reading, so no write between the
	// history scan and the first wait is missed.
	var changed <-chan struct{}
	if opts.Follow {
		changed = opts.Changed()
	}
	doneAtStart := isClosed(opts.Done)
	segs, err := snapshot(dir, prefix)
	if err != nil {
		return fmt.Errorf("copy log: %w", err)
	}
	c := &copier{dst: dst, opts: opts}
	if opts.Tail > 0 {
		c.count = true
		if _, err := c.historyPass(segs); err != nil && !errors.Is(err, errStop) {
			closeAll(segs)
			return fmt.Errorf("copy log: %w", err)
		}
		c.skip = max(c.seen-opts.Tail, 0)
		c.count = false
	}
	off, err := c.historyPass(segs)
	if err != nil {
		closeAll(segs)
		if errors.Is(err, errStop) {
			return nil
		}
		return fmt.Errorf("copy log: %w", err)
	}
	if !opts.Follow {
		closeAll(segs)
		return nil
	}
	// Follow from the end of the newest segment.
	var cur *openSegment
	if len(segs) > 0 {
		last := segs[len(segs)-1]
		closeAll(segs[:len(segs)-1])
		cur = &last
	}
	defer func() {
		if cur != nil {
			cur.f.Close()
		}
	}()
	c.skip = 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if cur != nil {
			if off, err = scanLines(cur.f, off, -1, c.record); err != nil {
				if errors.Is(err, errStop) {
					return nil
				}
				return fmt.Errorf("copy log: %w", err)
			}
		}
		next, err := nextSegment(dir, prefix, cur)
		if err != nil {
			return fmt.Errorf("copy log: %w", err)
		}
		if next != nil {
			if cur != nil {
				// The writer finished cur before it created next: drain
				// what arrived since the last read, then move on.
				if _, err := scanLines(cur.f, off, -1, c.record); err != nil {
					next.f.Close()
					if errors.Is(err, errStop) {
						return nil
					}
					return fmt.Errorf("copy log: %w", err)
				}
				cur.f.Close()
			}
			cur, off = next, 0
			continue
		}
		if doneAtStart {
			if err := c.asm.flush(c.line); err != nil && !errors.Is(err, errStop) {
				return fmt.Errorf("copy log: %w", err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
			changed = opts.Changed()
		case <-opts.Done:
		}
		doneAtStart = isClosed(opts.Done)
	}
}

// nextSegment opens the oldest segment newer than cur (any segment when
// cur is nil), or returns nil when there is none.
func nextSegment(dir, prefix string, cur *openSegment) (*openSegment, error) {
	segs, err := Segments(dir, prefix)
	if err != nil {
		return nil, err
	}
	for _, s := range segs {
		if cur != nil && s.Seq <= cur.Seq {
			continue
		}
		f, err := os.Open(s.Path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open log segment %s: %w", s.Path, err)
		}
		return &openSegment{Segment: s, f: f}, nil
	}
	return nil, nil
}

func isClosed(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
