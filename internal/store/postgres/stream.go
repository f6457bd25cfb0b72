package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muster-iot/muster/internal/store"
)

// appendOp is an AppendMessages request: the entries as column arrays (one
// statement appends them all) and, once read, their seqs.
type appendOp struct {
	stream                string
	keys, subs, tss, docs []string
	offs                  []int64 // each entry's offset from the start of the append
	bodies                [][]byte
	total                 int64
	seqs                  []int64
}

func (o *appendOp) queue(b *pgx.Batch, _ time.Time) {
	b.Queue(sqlStreamAppend, o.stream, len(o.keys), o.total, o.keys, o.subs, o.tss, o.offs, o.docs, o.bodies)
}

func (o *appendOp) read(br pgx.BatchResults) ([]store.Record, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("append %d entries: %w", len(o.keys), err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("append %d entries: %w", len(o.keys), err)
	}
	if len(seqs) != len(o.keys) {
		return nil, fmt.Errorf("append %d entries: %d inserted", len(o.keys), len(seqs))
	}
	slices.Sort(seqs) // RETURNING has no defined order; the seqs are consecutive
	o.seqs = seqs
	return nil, nil
}

func (o *appendOp) effects() effects { return effects{stream: o.stream, rows: len(o.keys)} }

// AppendMessages appends entries to a stream atomically; they are durable
// and their seqs assigned when it returns (see store.Streams).
func (s *Store) AppendMessages(ctx context.Context, stream string, entries []store.StreamEntry) ([]int64, error) {
	op := fmt.Sprintf("append to stream %q", stream)
	if err := store.CheckStreamAppend(stream, entries); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if len(entries) == 0 {
		if s.isDone.Load() {
			return nil, fmt.Errorf("%s: %w", op, store.ErrClosed)
		}
		return []int64{}, nil
	}
	o := &appendOp{
		stream: stream,
		keys:   make([]string, len(entries)), subs: make([]string, len(entries)),
		tss: make([]string, len(entries)), docs: make([]string, len(entries)),
		offs: make([]int64, len(entries)), bodies: make([][]byte, len(entries)),
	}
	for i, e := range entries {
		body := e.Body
		if body == nil {
			body = []byte{} // the column is NOT NULL
		}
		o.keys[i], o.subs[i], o.tss[i], o.docs[i], o.bodies[i] = e.Key, e.Sub, formatTime(e.Time), string(e.Doc), body
		o.offs[i] = o.total
		o.total += int64(e.Size())
	}
	if _, err := s.submit(ctx, newRequest(ctx, o)); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return o.seqs, nil
}

// ReadMessages returns entries after a seq (see store.Streams).
func (s *Store) ReadMessages(ctx context.Context, stream string, after int64, filter store.StreamFilter, limit int) ([]store.StreamEntry, error) {
	op := fmt.Sprintf("read stream %q after %d", stream, after)
	if s.isDone.Load() {
		return nil, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	limit, err := store.CheckStreamRead(stream, after, filter, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	for _, f := range []struct{ name, v string }{{"filter key", filter.Key}, {"filter sub", filter.Sub}} {
		if err := store.CheckText(f.name, f.v); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	var rows pgx.Rows
	switch {
	case filter.Sub != "":
		rows, err = s.pool.Query(ctx, sqlStreamReadSub, stream, filter.Key, filter.Sub, after, limit)
	case filter.Key != "":
		rows, err = s.pool.Query(ctx, sqlStreamReadKey, stream, filter.Key, after, limit)
	default:
		rows, err = s.pool.Query(ctx, sqlStreamRead, stream, after, limit)
	}
	if err != nil {
		return nil, s.readErr(op, err)
	}
	defer rows.Close()
	out := make([]store.StreamEntry, 0, min(limit, 64))
	total := 0
	for rows.Next() {
		var e store.StreamEntry
		var ts string
		var doc []byte
		if err := rows.Scan(&e.Seq, &e.Key, &e.Sub, &ts, &doc, &e.Body); err != nil {
			return nil, s.readErr(op, err)
		}
		e.Doc = doc
		if e.Time, err = parseTime("ts", ts); err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", op, e.Seq, err)
		}
		if len(out) > 0 && total+e.Size() > store.MaxStreamReadBytes {
			break
		}
		total += e.Size()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(op, err)
	}
	return out, nil
}

// streamHead is a stream_heads row.
type streamHead struct {
	last, end, first, firstOff int64
}

// StreamInfo describes a stream (see store.Streams).
func (s *Store) StreamInfo(ctx context.Context, stream string) (store.StreamStats, error) {
	op := fmt.Sprintf("describe stream %q", stream)
	if s.isDone.Load() {
		return store.StreamStats{}, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if err := store.CheckStreamName(stream); err != nil {
		return store.StreamStats{}, fmt.Errorf("%s: %w", op, err)
	}
	var h streamHead
	err := s.pool.QueryRow(ctx, sqlStreamHead, stream).Scan(&h.last, &h.end, &h.first, &h.firstOff)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.StreamStats{FirstSeq: 1}, nil
	}
	if err != nil {
		return store.StreamStats{}, s.readErr(op, err)
	}
	return store.StreamStats{FirstSeq: h.first, LastSeq: h.last, Count: h.last - h.first + 1, Bytes: h.end - h.firstOff}, nil
}

// TrimStream drops the oldest entries the retention no longer keeps (see
// store.Streams). It runs outside the group commit, as transactions of at
// most trimChunk deleted entries each, so it never stalls appends for
// long; every transaction is durable on its own. Trims may run on several
// instances at once: a trim only ever moves the stream's first seq forward.
func (s *Store) TrimStream(ctx context.Context, stream string, keep store.Retention) (int, error) {
	op := fmt.Sprintf("trim stream %q", stream)
	if s.isDone.Load() {
		return 0, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if err := store.CheckStreamName(stream); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	if err := keep.Check(); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	var before string
	if !keep.Before.IsZero() {
		if y := keep.Before.UTC().Year(); y < 1 || y > 9999 {
			return 0, fmt.Errorf("%s: retention cutoff %s is outside years 0001-9999", op, keep.Before)
		}
		before = formatTime(keep.Before)
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("%s: %w", op, err)
		}
		var deleted int
		var more bool
		err := s.inTx(ctx, func(tx pgx.Tx) error {
			var err error
			deleted, more, err = trimStream(ctx, tx, stream, keep.MaxBytes, before)
			return err
		})
		if err != nil {
			return total, s.readErr(op, err)
		}
		total += deleted
		if !more {
			return total, nil
		}
	}
}

// trimStream deletes, in tx, the prefix of the stream that maxBytes (when
// positive) and the cutoff before (when not empty) drop, at most trimChunk
// entries. more reports that the chunk bound stopped it. It does not lock
// the head row until its last statement, so appends go on meanwhile.
func trimStream(ctx context.Context, tx pgx.Tx, stream string, maxBytes int64, before string) (deleted int, more bool, err error) {
	var h streamHead
	err = tx.QueryRow(ctx, sqlStreamHead, stream).Scan(&h.last, &h.end, &h.first, &h.firstOff)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read stream head: %w", err)
	}
	if h.first > h.last {
		return 0, false, nil // empty
	}
	// Look at most trimChunk entries past the oldest: the cut (the new
	// oldest seq) is at most hi, and when it reaches it, there may be more.
	hi := min(h.last+1, h.first+trimChunk)
	cut, cutOff := h.first, h.firstOff
	// find returns the first entry in [h.first, hi] that query's condition
	// keeps; when none is kept within the window, everything up to hi goes.
	find := func(query string, arg any) (int64, int64, error) {
		var seq, off int64
		err := tx.QueryRow(ctx, query, stream, h.first, hi, arg).Scan(&seq, &off)
		switch {
		case err == nil:
			return seq, off, nil
		case !errors.Is(err, pgx.ErrNoRows):
			return 0, 0, err
		case hi > h.last:
			return h.last + 1, h.end, nil
		}
		if err := tx.QueryRow(ctx, sqlStreamOffAt, stream, hi).Scan(&off); err != nil {
			return 0, 0, fmt.Errorf("read offset of seq %d: %w", hi, err)
		}
		return hi, off, nil
	}
	if maxBytes > 0 && h.end-h.firstOff > maxBytes {
		seq, off, err := find(sqlStreamFirstAtOff, h.end-maxBytes)
		if err != nil {
			return 0, false, fmt.Errorf("find size cut: %w", err)
		}
		if seq > cut {
			cut, cutOff = seq, off
		}
	}
	if before != "" {
		seq, off, err := find(sqlStreamFirstAtTime, before)
		if err != nil {
			return 0, false, fmt.Errorf("find age cut: %w", err)
		}
		if seq > cut {
			cut, cutOff = seq, off
		}
	}
	if cut == h.first {
		return 0, false, nil
	}
	tag, err := tx.Exec(ctx, sqlStreamTrim, stream, cut)
	if err != nil {
		return 0, false, fmt.Errorf("delete seqs %d-%d: %w", h.first, cut-1, err)
	}
	if _, err := tx.Exec(ctx, sqlStreamSetFirst, cut, cutOff, stream); err != nil {
		return 0, false, fmt.Errorf("advance stream head to seq %d: %w", cut, err)
	}
	return int(tag.RowsAffected()), cut == hi && hi <= h.last, nil
}

// StreamChanged returns a channel closed when an append to stream through
// this store commits after the call, when an append through another store
// on the same schema is notified, or when the store closes (see
// store.StreamNotifier).
func (s *Store) StreamChanged(stream string) <-chan struct{} {
	return s.wake.Changed(stream)
}

// notifyChannel is the NOTIFY channel of the stores of one schema: stores
// on other schemas of the database do not hear it. Channel names are
// identifiers of at most 63 bytes, hence the hash.
func notifyChannel(schema string) string {
	sum := sha256.Sum256([]byte(schema))
	return "muster_stream_" + hex.EncodeToString(sum[:12])
}

// startListener starts listening for other instances' appends and returns
// once the first LISTEN is in place (or failed).
func (s *Store) startListener(ctx context.Context) error {
	lctx, cancel := context.WithCancel(context.Background())
	s.listenCancel, s.listenDone = cancel, make(chan struct{})
	ready := make(chan error, 1)
	go s.listen(lctx, ready)
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("listen for stream notifications (set NoNotify on engines without LISTEN): %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) stopListener() {
	if s.listenCancel != nil {
		s.listenCancel()
		<-s.listenDone
		s.listenCancel = nil
	}
}

// listen holds a connection of its own that LISTENs on the schema's
// channel and wakes the readers of the streams other instances append to.
// When the connection fails it reconnects, with a growing pause, and wakes
// every reader once: notifications may have been lost meanwhile. The first
// outcome of LISTEN goes to ready; when it failed, listen returns.
func (s *Store) listen(ctx context.Context, ready chan<- error) {
	defer close(s.listenDone)
	pause := 100 * time.Millisecond
	started := false
	for {
		err := s.listenOnce(ctx, func() {
			if !started {
				started = true
				ready <- nil
				return
			}
			s.wake.All()
			pause = 100 * time.Millisecond
		})
		if !started {
			ready <- err
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("stream notifications interrupted; reconnecting", "err", err, "pause", pause)
		s.wake.All()
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// listenOnce LISTENs on a connection taken out of the pool, calls
// listening once it does, and relays notifications until ctx ends or the
// connection fails.
func (s *Store) listenOnce(ctx context.Context, listening func()) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire a connection: %w", err)
	}
	conn := pc.Hijack() // LISTEN state must not go back to the pool
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	listening()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		instance, stream, ok := strings.Cut(n.Payload, " ")
		if ok && instance != s.instance {
			s.wake.Notify(stream)
		}
	}
}
