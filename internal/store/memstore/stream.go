package memstore

import (
	"bytes"
	"context"
	"fmt"

	"github.com/muster-iot/muster/internal/store"
)

// stream is one in-memory stream: its kept entries in seq order (entry i
// has seq first+i) and their start offsets.
type stream struct {
	entries       []store.StreamEntry
	offs          []int64
	first, last   int64 // oldest kept seq, last assigned seq
	end, firstOff int64 // offset after the last entry, offset of the oldest kept
}

func cloneEntry(e store.StreamEntry) store.StreamEntry {
	e.Doc = bytes.Clone(e.Doc)
	e.Body = bytes.Clone(e.Body)
	e.Time = e.Time.UTC()
	return e
}

// AppendMessages implements store.Streams.
func (s *Store) AppendMessages(ctx context.Context, name string, entries []store.StreamEntry) ([]int64, error) {
	op := fmt.Sprintf("append to stream %q", name)
	if err := store.CheckStreamAppend(name, entries); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	seqs := make([]int64, len(entries))
	if len(entries) == 0 {
		return seqs, nil
	}
	st := s.streams[name]
	if st == nil {
		if s.streams == nil {
			s.streams = map[string]*stream{}
		}
		st = &stream{first: 1}
		s.streams[name] = st
	}
	for i, e := range entries {
		st.last++
		e = cloneEntry(e)
		e.Seq = st.last
		st.entries = append(st.entries, e)
		st.offs = append(st.offs, st.end)
		st.end += int64(e.Size())
		seqs[i] = e.Seq
	}
	s.wake.Notify(name)
	return seqs, nil
}

// ReadMessages implements store.Streams.
func (s *Store) ReadMessages(ctx context.Context, name string, after int64, filter store.StreamFilter, limit int) ([]store.StreamEntry, error) {
	op := fmt.Sprintf("read stream %q after %d", name, after)
	limit, err := store.CheckStreamRead(name, after, filter, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	out := []store.StreamEntry{}
	st := s.streams[name]
	if st == nil {
		return out, nil
	}
	total := 0
	for i := max(0, after-st.first+1); i < int64(len(st.entries)) && len(out) < limit; i++ {
		e := st.entries[i]
		if (filter.Key != "" && e.Key != filter.Key) || (filter.Sub != "" && e.Sub != filter.Sub) {
			continue
		}
		if len(out) > 0 && total+e.Size() > store.MaxStreamReadBytes {
			break
		}
		total += e.Size()
		out = append(out, cloneEntry(e))
	}
	return out, nil
}

// TrimStream implements store.Streams.
func (s *Store) TrimStream(ctx context.Context, name string, keep store.Retention) (int, error) {
	op := fmt.Sprintf("trim stream %q", name)
	if err := store.CheckStreamName(name); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	if err := keep.Check(); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	st := s.streams[name]
	if st == nil {
		return 0, nil
	}
	cut := 0 // entries to drop
	if keep.MaxBytes > 0 && st.end-st.firstOff > keep.MaxBytes {
		for cut < len(st.entries) && st.offs[cut] < st.end-keep.MaxBytes {
			cut++
		}
	}
	if !keep.Before.IsZero() {
		for cut < len(st.entries) && st.entries[cut].Time.Before(keep.Before) {
			cut++
		}
	}
	if cut == 0 {
		return 0, nil
	}
	st.entries = append([]store.StreamEntry(nil), st.entries[cut:]...)
	st.offs = append([]int64(nil), st.offs[cut:]...)
	st.first += int64(cut)
	st.firstOff = st.end
	if len(st.offs) > 0 {
		st.firstOff = st.offs[0]
	}
	return cut, nil
}

// StreamInfo implements store.Streams.
func (s *Store) StreamInfo(ctx context.Context, name string) (store.StreamStats, error) {
	op := fmt.Sprintf("describe stream %q", name)
	if err := store.CheckStreamName(name); err != nil {
		return store.StreamStats{}, fmt.Errorf("%s: %w", op, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.StreamStats{}, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	st := s.streams[name]
	if st == nil {
		return store.StreamStats{FirstSeq: 1}, nil
	}
	return store.StreamStats{FirstSeq: st.first, LastSeq: st.last, Count: int64(len(st.entries)), Bytes: st.end - st.firstOff}, nil
}

// StreamChanged implements store.StreamNotifier.
func (s *Store) StreamChanged(name string) <-chan struct{} {
	return s.wake.Changed(name)
}

var (
	_ store.StreamStore    = (*Store)(nil)
	_ store.StreamNotifier = (*Store)(nil)
)
