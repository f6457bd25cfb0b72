package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// This file extends the contract with durable, bounded, append-only
// streams (the hub's built-in telemetry endpoint is one). A stream is a
// sequence of entries addressed by a sequence number (seq) that the
// database assigns:
//
//   - seqs are assigned consecutively per stream in commit order, starting
//     at 1, and never reused (not even after trimming), so a reader's
//     cursor "everything after seq N" is safe to resume from on any
//     instance sharing the database: once a reader has seen N, no entry
//     with a seq at or below N can appear later;
//   - an append is atomic (all of its entries or none) and durable when it
//     returns;
//   - retention only ever drops a prefix of the stream (the oldest seqs).
//
// Readers of other instances learn about appends by polling ReadMessages;
// a backend may additionally offer [StreamNotifier] for low-latency wake-ups
// within one process.

// ErrTooLarge means an entry, or an append, exceeds the stream limits.
var ErrTooLarge = errors.New("store: too large")

// Stream limits every backend enforces.
const (
	// MaxStreamEntryBytes caps the size of one entry (len(Doc)+len(Body)).
	MaxStreamEntryBytes = 1 << 20
	// MaxStreamAppend caps how many entries one AppendMessages call takes.
	MaxStreamAppend = 1024
	// MaxStreamNameBytes caps the length of a stream name.
	MaxStreamNameBytes = 128
	// MaxStreamKeyBytes caps the length of an entry's Key and Sub.
	MaxStreamKeyBytes = 1024
	// DefaultStreamReadLimit is how many entries ReadMessages returns when
	// limit is 0; MaxStreamReadLimit is the most it returns for any limit.
	DefaultStreamReadLimit = 100
	MaxStreamReadLimit     = 1000
	// MaxStreamReadBytes caps the total size of the entries one
	// ReadMessages call returns: it stops before the entry that would take
	// the total above it, but always returns at least one entry.
	MaxStreamReadBytes = 8 << 20
)

// StreamEntry is one entry of a stream.
type StreamEntry struct {
	// Seq is assigned by the store on append; callers never set it.
	Seq int64
	// Key identifies the entry's source (the device ID for telemetry); it
	// is required and readers can filter on it.
	Key string
	// Sub is an optional second-level source (the module ID); readers can
	// filter on it together with Key.
	Sub string
	// Time is the caller's timestamp of the entry (the enqueued time for
	// telemetry). It is required, kept to the nanosecond in UTC, and age
	// retention compares it.
	Time time.Time
	// Doc is the entry's metadata, a JSON value kept byte for byte.
	Doc json.RawMessage
	// Body is the opaque payload.
	Body []byte
}

// Size is what the entry counts against size limits and size retention.
func (e StreamEntry) Size() int { return len(e.Doc) + len(e.Body) }

// StreamFilter selects entries of a stream. The zero value selects all.
type StreamFilter struct {
	// Key, when not empty, keeps only entries with that Key.
	Key string
	// Sub, when not empty, keeps only entries with that Sub; it requires Key.
	Sub string
}

// Retention says which entries TrimStream drops. Zero fields impose no
// limit. Trimming always drops the longest prefix (lowest seqs) of the
// stream that has to go, so entries appended out of time order are dropped
// only once every older seq is dropped too.
type Retention struct {
	// MaxBytes, when positive, bounds the total Size of the kept entries:
	// the oldest are dropped until the rest fits.
	MaxBytes int64
	// Before, when not zero, drops the oldest entries as long as their Time
	// is before it (callers own the clock: Before = now - max age).
	Before time.Time
}

// StreamStats describes a stream. A stream nobody appended to has LastSeq 0,
// FirstSeq 1 and no entries.
type StreamStats struct {
	// FirstSeq is the seq of the oldest kept entry (LastSeq+1 when none is
	// kept).
	FirstSeq int64
	// LastSeq is the highest seq ever assigned.
	LastSeq int64
	// Count and Bytes are the number and total Size of the kept entries.
	Count int64
	Bytes int64
}

// Streams is the stream store.
type Streams interface {
	// AppendMessages appends entries to a stream atomically and durably and
	// returns their assigned seqs, in order. An empty append returns no
	// seqs. Invalid entries give an error naming the first bad entry
	// (wrapping ErrTooLarge for size violations); nothing is appended then.
	AppendMessages(ctx context.Context, stream string, entries []StreamEntry) ([]int64, error)
	// ReadMessages returns entries with seq > after matching filter, in seq
	// order, at most limit (0: DefaultStreamReadLimit; above
	// MaxStreamReadLimit: MaxStreamReadLimit) and at most
	// MaxStreamReadBytes in total (but at least one).
	ReadMessages(ctx context.Context, stream string, after int64, filter StreamFilter, limit int) ([]StreamEntry, error)
	// TrimStream applies the retention and returns how many entries it
	// dropped. A backend may trim in several durable steps; when a later
	// step fails, the count covers the steps that succeeded.
	TrimStream(ctx context.Context, stream string, keep Retention) (int, error)
	// StreamInfo describes a stream.
	StreamInfo(ctx context.Context, stream string) (StreamStats, error)
}

// StreamNotifier is the optional capability of a backend to wake readers
// in this process as soon as an append commits. It complements polling: it
// never reports appends made through other processes.
type StreamNotifier interface {
	// StreamChanged returns a channel that is closed once an append to
	// stream made through this store commits after the call (by the time
	// that AppendMessages returns), or the store closes. Take the channel
	// before reading, so no append is missed.
	StreamChanged(stream string) <-chan struct{}
}

// StreamStore is a Store that also keeps streams.
type StreamStore interface {
	Store
	Streams
}

// CheckStreamName reports why a stream name is invalid, or nil.
func CheckStreamName(stream string) error {
	if stream == "" {
		return errors.New("stream name is empty")
	}
	if len(stream) > MaxStreamNameBytes {
		return fmt.Errorf("stream name is %d bytes, more than %d", len(stream), MaxStreamNameBytes)
	}
	return checkStreamText("stream name", stream)
}

// CheckStreamAppend validates an append before a backend stores it: the
// stream name, the number of entries and every entry. The error names the
// first problem (and the index of the entry); size violations wrap
// ErrTooLarge.
func CheckStreamAppend(stream string, entries []StreamEntry) error {
	if err := CheckStreamName(stream); err != nil {
		return err
	}
	if len(entries) > MaxStreamAppend {
		return fmt.Errorf("%d entries in one append, more than %d: %w", len(entries), MaxStreamAppend, ErrTooLarge)
	}
	for i, e := range entries {
		if err := checkStreamEntry(e); err != nil {
			return fmt.Errorf("entry %d (key %.64q): %w", i, e.Key, err)
		}
	}
	return nil
}

func checkStreamEntry(e StreamEntry) error {
	if e.Key == "" {
		return errors.New("key is empty")
	}
	for _, f := range []struct{ name, v string }{{"key", e.Key}, {"sub", e.Sub}} {
		if len(f.v) > MaxStreamKeyBytes {
			return fmt.Errorf("%s is %d bytes, more than %d", f.name, len(f.v), MaxStreamKeyBytes)
		}
		if err := checkStreamText(f.name, f.v); err != nil {
			return err
		}
	}
	if e.Time.IsZero() {
		return errors.New("time is not set")
	}
	if y := e.Time.UTC().Year(); y < 1 || y > 9999 {
		return fmt.Errorf("time %s is outside years 0001-9999", e.Time)
	}
	if n := e.Size(); n > MaxStreamEntryBytes {
		return fmt.Errorf("doc and body are %d bytes, more than %d: %w", n, MaxStreamEntryBytes, ErrTooLarge)
	}
	if len(e.Doc) == 0 {
		return errors.New("doc is empty")
	}
	if !utf8.Valid(e.Doc) || !json.Valid(e.Doc) {
		return errors.New("doc is not valid UTF-8 JSON")
	}
	return nil
}

// Check reports why a filter is invalid, or nil.
func (f StreamFilter) Check() error {
	if f.Sub != "" && f.Key == "" {
		return fmt.Errorf("filter by sub %.64q needs a key", f.Sub)
	}
	return nil
}

// Check reports why a retention is invalid, or nil.
func (r Retention) Check() error {
	if r.MaxBytes < 0 {
		return fmt.Errorf("retention max bytes %d is negative", r.MaxBytes)
	}
	return nil
}

// StreamReadLimit resolves the limit argument of ReadMessages: 0 gives
// DefaultStreamReadLimit, anything above MaxStreamReadLimit gives
// MaxStreamReadLimit, a negative limit is an error.
func StreamReadLimit(limit int) (int, error) {
	switch {
	case limit < 0:
		return 0, fmt.Errorf("limit %d is negative", limit)
	case limit == 0:
		return DefaultStreamReadLimit, nil
	default:
		return min(limit, MaxStreamReadLimit), nil
	}
}

// CheckStreamRead checks the arguments of ReadMessages (stream name,
// filter, cursor, limit) and returns the limit to apply (see
// StreamReadLimit). Every backend calls it first.
func CheckStreamRead(stream string, after int64, filter StreamFilter, limit int) (int, error) {
	if err := CheckStreamName(stream); err != nil {
		return 0, err
	}
	if err := filter.Check(); err != nil {
		return 0, err
	}
	if after < 0 {
		return 0, fmt.Errorf("cursor %d is negative", after)
	}
	return StreamReadLimit(limit)
}

// checkStreamText rejects text that cannot be stored portably: invalid
// UTF-8 or NUL bytes (PostgreSQL refuses both in TEXT).
func checkStreamText(field, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%s %.64q is not valid UTF-8", field, v)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return fmt.Errorf("%s %.64q contains a NUL byte", field, v)
	}
	return nil
}
