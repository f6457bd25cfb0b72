package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muster-iot/muster/internal/store"
)

// DefaultListLimit is the page size of List when ListOptions.Limit is 0.
const DefaultListLimit = 1000

// timeLayout is RFC 3339 in UTC with a fixed nine-digit fraction, so that
// text order is time order (time.RFC3339Nano trims trailing zeros). Attempt
// and stream entry times use it.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(column, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse %s %q: %w", column, s, err)
	}
	return t.UTC(), nil
}

// queryKind reports whether twin queries read records of kind, so that
// they keep a jsonb copy of their document.
func queryKind(kind store.Kind) bool {
	switch kind {
	case store.KindTwin, store.KindDevice, store.KindModule, store.KindModuleTwin:
		return true
	}
	return false
}

// docsOp is an Apply request: its writes, in order, with the etag and
// jsonb copy of each put decided when it was submitted.
type docsOp struct {
	writes []store.Write
	etags  []string
	jdocs  []any // string or nil (no jsonb copy)
}

func (o *docsOp) queue(b *pgx.Batch, now time.Time) {
	for i, w := range o.writes {
		kind, id := string(w.Record.Kind), w.Record.ID
		if w.Delete {
			if m := w.Cond.IfMatch; m == "" || m == "*" {
				b.Queue(sqlDelete, kind, id)
			} else {
				b.Queue(sqlDeleteIf, kind, id, m)
			}
			continue
		}
		grp, etag, doc, jdoc := w.Record.Group, o.etags[i], string(w.Record.Doc), o.jdocs[i]
		switch {
		case w.Cond.IfNoneMatch:
			b.Queue(sqlInsert, kind, id, grp, etag, doc, jdoc, now)
		case w.Cond.IfMatch == "":
			b.Queue(sqlUpsert, kind, id, grp, etag, doc, jdoc, now)
		case w.Cond.IfMatch == "*":
			b.Queue(sqlReplace, grp, etag, doc, jdoc, now, kind, id)
		default:
			b.Queue(sqlReplaceIf, grp, etag, doc, jdoc, now, kind, id, w.Cond.IfMatch)
		}
	}
}

func (o *docsOp) read(br pgx.BatchResults) ([]store.Record, error) {
	recs := make([]store.Record, len(o.writes))
	var failed error
	for i, w := range o.writes {
		rec, err := o.readWrite(br, i)
		if err != nil && failed == nil {
			failed = &store.WriteError{Index: i, Kind: w.Record.Kind, ID: w.Record.ID, Err: err}
		}
		recs[i] = rec
	}
	if failed != nil {
		return nil, failed
	}
	return recs, nil
}

// readWrite reads the result of write i.
func (o *docsOp) readWrite(br pgx.BatchResults, i int) (store.Record, error) {
	w := o.writes[i]
	if w.Delete {
		tag, err := br.Exec()
		if err != nil {
			return store.Record{}, fmt.Errorf("delete: %w", err)
		}
		if tag.RowsAffected() == 0 {
			if m := w.Cond.IfMatch; m != "" && m != "*" {
				return store.Record{}, fmt.Errorf("if-match %q: record missing or its etag differs: %w", m, store.ErrPrecondition)
			}
			return store.Record{}, store.ErrNotFound
		}
		return w.Record, nil
	}
	var created, updated time.Time
	err := br.QueryRow().Scan(&created, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		switch {
		case w.Cond.IfNoneMatch:
			return store.Record{}, fmt.Errorf("if-none-match: record exists: %w", store.ErrExists)
		case w.Cond.IfMatch == "*":
			return store.Record{}, fmt.Errorf("if-match *: record does not exist: %w", store.ErrPrecondition)
		default:
			return store.Record{}, fmt.Errorf("if-match %q: record missing or its etag differs: %w", w.Cond.IfMatch, store.ErrPrecondition)
		}
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("put: %w", err)
	}
	return store.Record{
		Kind:    w.Record.Kind,
		ID:      w.Record.ID,
		Group:   w.Record.Group,
		ETag:    o.etags[i],
		Doc:     bytes.Clone(w.Record.Doc),
		Created: created.UTC(),
		Updated: updated.UTC(),
	}, nil
}

func (o *docsOp) effects() effects {
	e := effects{kinds: make([]string, len(o.writes)), ids: make([]string, len(o.writes)), rows: len(o.writes)}
	for i, w := range o.writes {
		e.kinds[i], e.ids[i] = string(w.Record.Kind), w.Record.ID
	}
	return e
}

// Get returns the record or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, kind store.Kind, id string) (store.Record, error) {
	op := fmt.Sprintf("get %s/%s", kind, id)
	if s.isDone.Load() {
		return store.Record{}, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if store.CheckText("kind", string(kind)) != nil || store.CheckText("id", id) != nil {
		// PostgreSQL refuses such text; nothing can be stored under it.
		return store.Record{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	rec := store.Record{Kind: kind, ID: id}
	var doc string
	err := s.pool.QueryRow(ctx, sqlGet, string(kind), id).Scan(&rec.Group, &rec.ETag, &doc, &rec.Created, &rec.Updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Record{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, s.readErr(op, err)
	}
	rec.Doc = json.RawMessage(doc)
	rec.Created, rec.Updated = rec.Created.UTC(), rec.Updated.UTC()
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
	ao, err := newAttemptOp(a)
	if err != nil {
		return nil, err
	}
	return s.apply(ctx, writes, ao)
}

// apply checks the writes and runs them, with the attempt when set, as one
// writer request.
func (s *Store) apply(ctx context.Context, writes []store.Write, attempt *attemptOp) ([]store.Record, error) {
	if err := store.ValidateWrites(writes); err != nil {
		return nil, err
	}
	if len(writes) == 0 && attempt == nil {
		if s.isDone.Load() {
			return nil, fmt.Errorf("apply: %w", store.ErrClosed)
		}
		return []store.Record{}, nil
	}
	docs := s.newDocsOp(writes)
	if attempt == nil {
		return s.submit(ctx, newRequest(ctx, docs))
	}
	return s.submit(ctx, newRequest(ctx, &docsAttemptOp{docs: docs, attempt: attempt}))
}

// newDocsOp prepares valid writes for the writer: a new etag per put, and
// the jsonb copy of the documents twin queries read.
func (s *Store) newDocsOp(writes []store.Write) *docsOp {
	o := &docsOp{writes: writes, etags: make([]string, len(writes)), jdocs: make([]any, len(writes))}
	for i, w := range writes {
		if w.Delete {
			continue
		}
		o.etags[i] = randomHex(16)
		if queryKind(w.Record.Kind) {
			if err := jsonbCompatible(w.Record.Doc); err != nil {
				s.log.Warn("document left out of twin queries: PostgreSQL's jsonb cannot hold it",
					"kind", w.Record.Kind, "id", w.Record.ID, "reason", err)
			} else {
				o.jdocs[i] = string(w.Record.Doc)
			}
		}
	}
	return o
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
	for _, f := range []struct{ name, v string }{{"kind", string(kind)}, {"group", opts.Group}, {"after", opts.After}} {
		if err := store.CheckText(f.name, f.v); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	var rows pgx.Rows
	var err error
	if opts.Group == "" {
		rows, err = s.pool.Query(ctx, sqlList, string(kind), opts.After, limit)
	} else {
		rows, err = s.pool.Query(ctx, sqlListGroup, string(kind), opts.Group, opts.After, limit)
	}
	if err != nil {
		return nil, s.readErr(op, err)
	}
	defer rows.Close()
	out := make([]store.Record, 0, min(limit, 64))
	for rows.Next() {
		rec := store.Record{Kind: kind}
		var doc string
		if err := rows.Scan(&rec.ID, &rec.Group, &rec.ETag, &doc, &rec.Created, &rec.Updated); err != nil {
			return nil, s.readErr(op, err)
		}
		rec.Doc = json.RawMessage(doc)
		rec.Created, rec.Updated = rec.Created.UTC(), rec.Updated.UTC()
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
	if store.CheckText("kind", string(kind)) != nil || store.CheckText("group", group) != nil {
		return 0, nil // nothing can be stored under such text
	}
	var n int
	var err error
	if group == "" {
		err = s.pool.QueryRow(ctx, sqlCount, string(kind)).Scan(&n)
	} else {
		err = s.pool.QueryRow(ctx, sqlCountGroup, string(kind), group).Scan(&n)
	}
	if err != nil {
		return 0, s.readErr(op, err)
	}
	return n, nil
}
