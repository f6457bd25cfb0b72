package sqlite

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

// DefaultListLimit is the page size of List when ListOptions.Limit is 0.
const DefaultListLimit = 1000

// timeLayout is RFC 3339 in UTC with a fixed nine-digit fraction, so that
// text order is time order (time.RFC3339Nano trims trailing zeros).
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(column, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse %s %q: %w", column, s, err)
	}
	return t.UTC(), nil
}

// setTimes parses the stored timestamps into rec.
func setTimes(rec *store.Record, created, updated string) error {
	var err error
	if rec.Created, err = parseTime("created", created); err != nil {
		return err
	}
	if rec.Updated, err = parseTime("updated", updated); err != nil {
		return err
	}
	return nil
}

// newETag returns a random opaque etag (128 bits, hex).
func newETag() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it aborts the program instead)
	return hex.EncodeToString(b[:])
}

// Get returns the record or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, kind store.Kind, id string) (store.Record, error) {
	if s.isDone.Load() {
		return store.Record{}, fmt.Errorf("get %s/%s: %w", kind, id, store.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return store.Record{}, fmt.Errorf("get %s/%s: %w", kind, id, err)
	}
	if s.keys.absent(string(kind), id) {
		return store.Record{}, fmt.Errorf("get %s/%s: %w", kind, id, store.ErrNotFound)
	}
	rec := store.Record{Kind: kind, ID: id}
	var doc []byte
	var created, updated string
	// A read by primary key takes microseconds, so it is not interrupted
	// once started: given a context that can end, the driver would start a
	// goroutine per query to watch it (two per registration).
	err := s.r.get.QueryRowContext(context.WithoutCancel(ctx), string(kind), id).Scan(&rec.Group, &rec.ETag, &doc, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, fmt.Errorf("get %s/%s: %w", kind, id, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, s.readErr(fmt.Sprintf("get %s/%s", kind, id), err)
	}
	rec.Doc = doc
	if err := setTimes(&rec, created, updated); err != nil {
		return store.Record{}, fmt.Errorf("get %s/%s: %w", kind, id, err)
	}
	return rec, nil
}

// Put creates or replaces a record under cond (see store.Docs).
func (s *Store) Put(ctx context.Context, rec store.Record, cond store.Cond) (store.Record, error) {
	return store.PutVia(ctx, s.Apply, rec, cond)
}

// Delete removes a record under an optional If-Match etag (see store.Docs).
func (s *Store) Delete(ctx context.Context, kind store.Kind, id string, ifMatch string) error {
	return store.DeleteVia(ctx, s.Apply, kind, id, ifMatch)
}

// Apply runs the writes atomically and durably (see store.Docs). An invalid
// write is refused before anything is queued, as a *store.WriteError.
func (s *Store) Apply(ctx context.Context, writes []store.Write) ([]store.Record, error) {
	return s.apply(ctx, writes, nil)
}

// ApplyWithAttempt runs the writes and appends the attempt in one
// request, so in one transaction (see store.Docs).
func (s *Store) ApplyWithAttempt(ctx context.Context, writes []store.Write, a store.Attempt) ([]store.Record, error) {
	row, err := newAttemptRow(a)
	if err != nil {
		return nil, err
	}
	return s.apply(ctx, writes, row)
}

// apply checks the writes and runs them, with the attempt when set, as one
// writer request.
func (s *Store) apply(ctx context.Context, writes []store.Write, attempt *attemptRow) ([]store.Record, error) {
	if err := store.ValidateWrites(writes); err != nil {
		return nil, err
	}
	if len(writes) == 0 && attempt == nil {
		if s.isDone.Load() {
			return nil, fmt.Errorf("apply: %w", store.ErrClosed)
		}
		return []store.Record{}, nil
	}
	r := newRequest(ctx)
	r.writes, r.attempt = writes, attempt
	recs, err := s.submit(ctx, r)
	if recs == nil && err == nil {
		recs = []store.Record{}
	}
	return recs, err
}

// write executes one write on the writer connection, inside the batch
// transaction.
func (s *Store) write(ctx context.Context, w store.Write) (store.Record, error) {
	kind, id := string(w.Record.Kind), w.Record.ID
	if w.Delete {
		ifMatch := w.Cond.IfMatch
		var res sql.Result
		var err error
		if ifMatch == "" || ifMatch == "*" {
			res, err = s.w.delete.ExecContext(ctx, kind, id)
		} else {
			res, err = s.w.deleteIf.ExecContext(ctx, kind, id, ifMatch)
		}
		if err != nil {
			return store.Record{}, fmt.Errorf("delete: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return store.Record{}, fmt.Errorf("delete: %w", err)
		}
		if n == 0 {
			if ifMatch == "" || ifMatch == "*" {
				return store.Record{}, store.ErrNotFound
			}
			return store.Record{}, fmt.Errorf("if-match %q: record missing or its etag differs: %w", ifMatch, store.ErrPrecondition)
		}
		return w.Record, nil
	}

	s.keys.add(kind, id)
	etag := newETag()
	now := s.tick()
	ts := formatTime(now)
	doc := string(w.Record.Doc)
	created := ts
	var err error
	switch {
	case w.Cond.IfNoneMatch:
		var res sql.Result
		res, err = s.w.insert.ExecContext(ctx, kind, id, w.Record.Group, etag, doc, ts, ts)
		if err == nil {
			var n int64
			if n, err = res.RowsAffected(); err == nil && n == 0 {
				return store.Record{}, fmt.Errorf("if-none-match: record exists: %w", store.ErrExists)
			}
		}
	case w.Cond.IfMatch == "":
		err = s.w.upsert.QueryRowContext(ctx, kind, id, w.Record.Group, etag, doc, ts, ts).Scan(&created)
	case w.Cond.IfMatch == "*":
		err = s.w.replace.QueryRowContext(ctx, w.Record.Group, etag, doc, ts, kind, id).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return store.Record{}, fmt.Errorf("if-match *: record does not exist: %w", store.ErrPrecondition)
		}
	default:
		err = s.w.replaceIf.QueryRowContext(ctx, w.Record.Group, etag, doc, ts, kind, id, w.Cond.IfMatch).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return store.Record{}, fmt.Errorf("if-match %q: record missing or its etag differs: %w", w.Cond.IfMatch, store.ErrPrecondition)
		}
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("put: %w", err)
	}
	createdAt, err := parseTime("created", created)
	if err != nil {
		return store.Record{}, err
	}
	return store.Record{
		Kind:    w.Record.Kind,
		ID:      id,
		Group:   w.Record.Group,
		ETag:    etag,
		Doc:     bytes.Clone(w.Record.Doc),
		Created: createdAt,
		Updated: now,
	}, nil
}

// List returns records of one kind ordered by ID (see store.Docs).
func (s *Store) List(ctx context.Context, kind store.Kind, opts store.ListOptions) ([]store.Record, error) {
	op := fmt.Sprintf("list %s", kind)
	if s.isDone.Load() {
		return nil, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	limit := opts.Limit
	switch {
	case limit < 0:
		return nil, fmt.Errorf("%s: limit %d is negative", op, limit)
	case limit == 0:
		limit = DefaultListLimit
	}
	var rows *sql.Rows
	var err error
	if opts.Group == "" {
		rows, err = s.r.list.QueryContext(ctx, string(kind), opts.After, limit)
	} else {
		rows, err = s.r.listGroup.QueryContext(ctx, string(kind), opts.Group, opts.After, limit)
	}
	if err != nil {
		return nil, s.readErr(op, err)
	}
	defer rows.Close()
	out := make([]store.Record, 0, min(limit, 64))
	for rows.Next() {
		rec := store.Record{Kind: kind}
		var doc []byte
		var created, updated string
		if err := rows.Scan(&rec.ID, &rec.Group, &rec.ETag, &doc, &created, &updated); err != nil {
			return nil, s.readErr(op, err)
		}
		rec.Doc = doc
		if err := setTimes(&rec, created, updated); err != nil {
			return nil, fmt.Errorf("%s: record %q: %w", op, rec.ID, err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(op, err)
	}
	return out, nil
}

// Count returns how many records of one kind (and group, if set) exist.
func (s *Store) Count(ctx context.Context, kind store.Kind, group string) (int, error) {
	op := fmt.Sprintf("count %s", kind)
	if s.isDone.Load() {
		return 0, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	var n int
	var err error
	if group == "" {
		err = s.r.count.QueryRowContext(ctx, string(kind)).Scan(&n)
	} else {
		err = s.r.countGroup.QueryRowContext(ctx, string(kind), group).Scan(&n)
	}
	if err != nil {
		return 0, s.readErr(op, err)
	}
	return n, nil
}
