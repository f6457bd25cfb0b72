package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/muster-iot/muster/internal/store"
)

// Streams ([store.Streams]) live in two tables (migrations/00002_stream.sql):
// a head row per stream, through which appends assign seqs and offsets in
// commit order, and the entries. Appends and trims are writer requests, so
// they share the group commit with every other write; a trim deletes at most
// trimChunk entries per request so it never holds the writer for long.

// trimChunk bounds how many entries one trim request deletes.
const trimChunk = 10000

// The stream DML is shared-dialect SQL, like sql.go's.
const (
	// sqlStreamBump reserves $2 seqs and $3 bytes of offsets for an append
	// and returns the new last seq and end offset. On PostgreSQL the row lock
	// it takes serialises appenders of the stream until they commit.
	sqlStreamBump = `INSERT INTO stream_heads (stream, last_seq, end_off, first_seq, first_off)
VALUES ($1, $2, $3, 1, 0)
ON CONFLICT (stream) DO UPDATE SET last_seq = stream_heads.last_seq + excluded.last_seq,
end_off = stream_heads.end_off + excluded.end_off
RETURNING last_seq, end_off`

	sqlStreamInsert = `INSERT INTO stream_entries (stream, seq, key, sub, ts, off, doc, body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`

	sqlStreamHead = `SELECT last_seq, end_off, first_seq, first_off FROM stream_heads WHERE stream = $1`

	// sqlStreamFirstAtOff finds, among seqs $2..$3, the oldest entry that
	// starts at or after offset $4 (offsets grow with seqs).
	sqlStreamFirstAtOff = `SELECT seq, off FROM stream_entries
WHERE stream = $1 AND seq >= $2 AND seq <= $3 AND off >= $4 ORDER BY seq LIMIT 1`

	// sqlStreamFirstAtTime finds, among seqs $2..$3, the oldest entry whose
	// time is not before $4.
	sqlStreamFirstAtTime = `SELECT seq, off FROM stream_entries
WHERE stream = $1 AND seq >= $2 AND seq <= $3 AND ts >= $4 ORDER BY seq LIMIT 1`

	sqlStreamOffAt = `SELECT off FROM stream_entries WHERE stream = $1 AND seq = $2`

	sqlStreamTrim = `DELETE FROM stream_entries WHERE stream = $1 AND seq < $2`

	sqlStreamSetFirst = `UPDATE stream_heads SET first_seq = $1, first_off = $2 WHERE stream = $3`

	sqlStreamRead = `SELECT seq, key, sub, ts, doc, body FROM stream_entries
WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3`

	sqlStreamReadKey = `SELECT seq, key, sub, ts, doc, body FROM stream_entries
WHERE stream = $1 AND key = $2 AND seq > $3 ORDER BY seq LIMIT $4`

	sqlStreamReadSub = `SELECT seq, key, sub, ts, doc, body FROM stream_entries
WHERE stream = $1 AND key = $2 AND sub = $3 AND seq > $4 ORDER BY seq LIMIT $5`
)

// streamStmts are the prepared stream statements: the writer's on the
// writer connection, the readers' on the reader pool.
type streamStmts struct {
	bump, insert, head, firstAtOff, firstAtTime, offAt, trim, setFirst *sql.Stmt
	read, readKey, readSub, info                                       *sql.Stmt
	all                                                                []*sql.Stmt
}

func (st *streamStmts) prepareWriter(ctx context.Context, c *sql.Conn) error {
	return prepareAll(ctx, c, &st.all, map[**sql.Stmt]string{
		&st.bump:        sqlStreamBump,
		&st.insert:      sqlStreamInsert,
		&st.head:        sqlStreamHead,
		&st.firstAtOff:  sqlStreamFirstAtOff,
		&st.firstAtTime: sqlStreamFirstAtTime,
		&st.offAt:       sqlStreamOffAt,
		&st.trim:        sqlStreamTrim,
		&st.setFirst:    sqlStreamSetFirst,
	})
}

func (st *streamStmts) prepareReader(ctx context.Context, db *sql.DB) error {
	return prepareAll(ctx, db, &st.all, map[**sql.Stmt]string{
		&st.read:    sqlStreamRead,
		&st.readKey: sqlStreamReadKey,
		&st.readSub: sqlStreamReadSub,
		&st.info:    sqlStreamHead,
	})
}

func (st *streamStmts) close() error {
	err := closeAll(st.all)
	st.all = nil
	return err
}

// streamRow is one entry as the writer inserts it.
type streamRow struct {
	key, sub, ts, doc string
	body              []byte
	size              int64
}

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
	rows := make([]streamRow, len(entries))
	for i, e := range entries {
		body := e.Body
		if body == nil {
			body = []byte{} // the column is NOT NULL
		}
		rows[i] = streamRow{key: e.Key, sub: e.Sub, ts: formatTime(e.Time), doc: string(e.Doc), body: body, size: int64(e.Size())}
	}
	var seqs []int64
	r := newRequest(ctx)
	r.exec = func(ctx context.Context) (int, error) {
		var err error
		seqs, err = s.insertStream(ctx, stream, rows)
		return len(rows), err
	}
	r.committed = func() { s.wake.Notify(stream) }
	if _, err := s.submit(ctx, r); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return seqs, nil
}

// insertStream runs on the writer connection, inside the batch transaction.
func (s *Store) insertStream(ctx context.Context, stream string, rows []streamRow) ([]int64, error) {
	n := int64(len(rows))
	var total int64
	for _, r := range rows {
		total += r.size
	}
	var last, end int64
	if err := s.stream.bump.QueryRowContext(ctx, stream, n, total).Scan(&last, &end); err != nil {
		return nil, fmt.Errorf("reserve %d seqs: %w", n, err)
	}
	seqs := make([]int64, len(rows))
	seq, off := last-n+1, end-total
	for i, r := range rows {
		if _, err := s.stream.insert.ExecContext(ctx, stream, seq, r.key, r.sub, r.ts, off, r.doc, r.body); err != nil {
			return nil, fmt.Errorf("insert entry %d (seq %d): %w", i, seq, err)
		}
		seqs[i] = seq
		seq++
		off += r.size
	}
	return seqs, nil
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
	var rows *sql.Rows
	switch {
	case filter.Sub != "":
		rows, err = s.stream.readSub.QueryContext(ctx, stream, filter.Key, filter.Sub, after, limit)
	case filter.Key != "":
		rows, err = s.stream.readKey.QueryContext(ctx, stream, filter.Key, after, limit)
	default:
		rows, err = s.stream.read.QueryContext(ctx, stream, after, limit)
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
	err := s.stream.info.QueryRowContext(ctx, stream).Scan(&h.last, &h.end, &h.first, &h.firstOff)
	if errors.Is(err, sql.ErrNoRows) {
		return store.StreamStats{FirstSeq: 1}, nil
	}
	if err != nil {
		return store.StreamStats{}, s.readErr(op, err)
	}
	return store.StreamStats{FirstSeq: h.first, LastSeq: h.last, Count: h.last - h.first + 1, Bytes: h.end - h.firstOff}, nil
}

// StreamChanged returns a channel closed when an append to stream through
// this store commits after the call, or the store closes (see
// store.StreamNotifier).
func (s *Store) StreamChanged(stream string) <-chan struct{} {
	return s.wake.Changed(stream)
}

// TrimStream drops the oldest entries the retention no longer keeps (see
// store.Streams). It runs as writer requests of at most trimChunk deleted
// entries each, so a large trim does not stall other writes; every request
// is durable on its own.
func (s *Store) TrimStream(ctx context.Context, stream string, keep store.Retention) (int, error) {
	op := fmt.Sprintf("trim stream %q", stream)
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
		var deleted int
		var more bool
		r := newRequest(ctx)
		r.exec = func(ctx context.Context) (int, error) {
			var err error
			deleted, more, err = s.trimStream(ctx, stream, keep.MaxBytes, before)
			return deleted, err
		}
		if _, err := s.submit(ctx, r); err != nil {
			return total, fmt.Errorf("%s: %w", op, err)
		}
		total += deleted
		if !more {
			return total, nil
		}
	}
}

// streamHead is a stream_heads row.
type streamHead struct {
	last, end, first, firstOff int64
}

// trimStream runs on the writer connection, inside the batch transaction:
// it deletes the prefix of the stream that maxBytes (when positive) and the
// cutoff before (when not empty) drop, at most trimChunk entries. more
// reports that the chunk bound stopped it.
func (s *Store) trimStream(ctx context.Context, stream string, maxBytes int64, before string) (deleted int, more bool, err error) {
	var h streamHead
	err = s.stream.head.QueryRowContext(ctx, stream).Scan(&h.last, &h.end, &h.first, &h.firstOff)
	if errors.Is(err, sql.ErrNoRows) {
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
	// find returns the first entry in [h.first, hi] that stmt's condition
	// keeps; when none is kept within the window, everything up to hi goes.
	find := func(stmt *sql.Stmt, arg any) (int64, int64, error) {
		var seq, off int64
		err := stmt.QueryRowContext(ctx, stream, h.first, hi, arg).Scan(&seq, &off)
		switch {
		case err == nil:
			return seq, off, nil
		case !errors.Is(err, sql.ErrNoRows):
			return 0, 0, err
		case hi > h.last:
			return h.last + 1, h.end, nil
		}
		if err := s.stream.offAt.QueryRowContext(ctx, stream, hi).Scan(&off); err != nil {
			return 0, 0, fmt.Errorf("read offset of seq %d: %w", hi, err)
		}
		return hi, off, nil
	}
	if maxBytes > 0 && h.end-h.firstOff > maxBytes {
		seq, off, err := find(s.stream.firstAtOff, h.end-maxBytes)
		if err != nil {
			return 0, false, fmt.Errorf("find size cut: %w", err)
		}
		if seq > cut {
			cut, cutOff = seq, off
		}
	}
	if before != "" {
		seq, off, err := find(s.stream.firstAtTime, before)
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
	res, err := s.stream.trim.ExecContext(ctx, stream, cut)
	if err != nil {
		return 0, false, fmt.Errorf("delete seqs %d-%d: %w", h.first, cut-1, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, false, fmt.Errorf("delete seqs %d-%d: %w", h.first, cut-1, err)
	}
	if _, err := s.stream.setFirst.ExecContext(ctx, cut, cutOff, stream); err != nil {
		return 0, false, fmt.Errorf("advance stream head to seq %d: %w", cut, err)
	}
	return int(n), cut == hi && hi <= h.last, nil
}

var (
	_ store.StreamStore    = (*Store)(nil)
	_ store.StreamNotifier = (*Store)(nil)
)
