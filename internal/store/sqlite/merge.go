package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/muster-iot/muster/internal/store"
)

// mergeRows is the most rows one merged statement writes; longer runs take
// several statements. Merged statements are prepared once per row count.
const mergeRows = 32

// Merging. In a batch's first pass (no savepoints), a run of consecutive
// requests that only upsert documents unconditionally and append attempts
// is written with multi-row statements: one INSERT for every document of
// the run and one for every attempt, instead of one statement per row.
// Each statement costs about as much again in driver and VDBE set-up as its
// row does, and a registration writes four rows. The documents of a run
// have distinct keys and the two tables are independent, so the result is
// the one the requests would have had one after another. Any failure fails
// the first pass, and the batch runs again with each request on its own,
// which finds the failing request and its write exactly as before.

// docKey identifies a document within a merge run.
type docKey struct {
	kind store.Kind
	id   string
}

// mergeable reports whether r may join a merge run: distinct documents
// written unconditionally, at most an attempt, nothing else. (A request
// that writes one key twice runs on its own, so that each write's record
// is the one it made.)
func mergeable(r *request) bool {
	if r.exec != nil {
		return false
	}
	for i, w := range r.writes {
		if w.Delete || w.Cond != (store.Cond{}) {
			return false
		}
		for _, earlier := range r.writes[:i] {
			if earlier.Record.Kind == w.Record.Kind && earlier.Record.ID == w.Record.ID {
				return false
			}
		}
	}
	return true
}

// mergeRun collects a run of mergeable requests.
type mergeRun struct {
	reqs []*request
	at   []int            // per request, its index in the batch
	recs [][]store.Record // per request, filled by flush
	keys map[docKey]int   // document key -> index in docs
	docs []mergedDoc
	atts []*attemptRow
	args []any // statement arguments, reused
}

// mergedDoc is one document row of a run.
type mergedDoc struct {
	req   int // index in reqs
	write int // index in the request's writes
	rec   store.Record
	ts    string
}

// fits reports whether r's documents are new to the run.
func (m *mergeRun) fits(r *request) bool {
	for _, w := range r.writes {
		if _, dup := m.keys[docKey{w.Record.Kind, w.Record.ID}]; dup {
			return false
		}
	}
	return true
}

// addToRun puts r, the batch's request i, in the run; the caller checked
// fits.
func (s *Store) addToRun(m *mergeRun, r *request, i int) {
	if m.keys == nil {
		m.keys = map[docKey]int{}
	}
	ri := len(m.reqs)
	m.reqs = append(m.reqs, r)
	m.at = append(m.at, i)
	m.recs = append(m.recs, nil)
	if len(r.writes) > 0 {
		m.recs[ri] = make([]store.Record, len(r.writes))
	}
	for wi, w := range r.writes {
		now := s.tick()
		rec := w.Record
		rec.ETag, rec.Updated, rec.Created = newETag(), now, now
		m.keys[docKey{rec.Kind, rec.ID}] = len(m.docs)
		m.docs = append(m.docs, mergedDoc{req: ri, write: wi, rec: rec, ts: formatTime(now)})
	}
	if r.attempt != nil {
		m.atts = append(m.atts, r.attempt)
	}
}

// reset empties the run for reuse, dropping its references to requests
// and documents.
func (m *mergeRun) reset() {
	clear(m.reqs)
	clear(m.recs)
	clear(m.docs)
	clear(m.atts)
	m.reqs, m.at, m.recs, m.docs, m.atts = m.reqs[:0], m.at[:0], m.recs[:0], m.docs[:0], m.atts[:0]
	clear(m.keys)
}

// flush writes the run and fills each request's records and counters. It
// returns the first error; the caller then fails the pass.
func (s *Store) flush(ctx context.Context, m *mergeRun) error {
	for start := 0; start < len(m.docs); start += mergeRows {
		if err := s.upsertRows(ctx, m, m.docs[start:min(start+mergeRows, len(m.docs))]); err != nil {
			return err
		}
	}
	for start := 0; start < len(m.atts); start += mergeRows {
		if err := s.insertAttemptRows(ctx, m, m.atts[start:min(start+mergeRows, len(m.atts))]); err != nil {
			return err
		}
	}
	for _, r := range m.reqs {
		r.rows = len(r.writes)
		if r.attempt != nil {
			r.rows++
			r.appended++
		}
	}
	for _, d := range m.docs {
		rec := d.rec
		rec.Doc = bytes.Clone(rec.Doc)
		m.recs[d.req][d.write] = rec
	}
	return nil
}

// upsertRows writes documents with one multi-row upsert and sets each
// one's Created from what the table kept.
func (s *Store) upsertRows(ctx context.Context, m *mergeRun, docs []mergedDoc) error {
	st, err := s.w.merged(ctx, s.wconn, "upsert", len(docs), multiUpsertSQL)
	if err != nil {
		return err
	}
	args := m.args[:0]
	for _, d := range docs {
		s.keys.add(string(d.rec.Kind), d.rec.ID)
		args = append(args, string(d.rec.Kind), d.rec.ID, d.rec.Group, d.rec.ETag, string(d.rec.Doc), d.ts, d.ts)
	}
	m.args = args
	rows, err := st.QueryContext(ctx, args...)
	clear(args)
	if err != nil {
		return fmt.Errorf("put %d documents: %w", len(docs), err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var kind, id, created string
		if err := rows.Scan(&kind, &id, &created); err != nil {
			return fmt.Errorf("put %d documents: %w", len(docs), err)
		}
		i, ok := m.keys[docKey{store.Kind(kind), id}]
		if !ok {
			return fmt.Errorf("put %d documents: the database returned %s %s, which was not written", len(docs), kind, id)
		}
		if m.docs[i].rec.Created, err = parseTime("created", created); err != nil {
			return err
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("put %d documents: %w", len(docs), err)
	}
	if seen != len(docs) {
		return fmt.Errorf("put %d documents: the database returned %d", len(docs), seen)
	}
	return rows.Close()
}

// insertAttemptRows appends attempts with one multi-row insert. A
// duplicate ID fails the statement (and so the pass).
func (s *Store) insertAttemptRows(ctx context.Context, m *mergeRun, atts []*attemptRow) error {
	st, err := s.w.merged(ctx, s.wconn, "attempt", len(atts), multiAttemptSQL)
	if err != nil {
		return err
	}
	args := m.args[:0]
	for _, a := range atts {
		args = append(args, a.id, a.ts, a.registrationID, a.doc)
	}
	m.args = args
	res, err := st.ExecContext(ctx, args...)
	clear(args)
	if err != nil {
		return fmt.Errorf("append %d attempts: %w", len(atts), err)
	}
	if n, err := res.RowsAffected(); err != nil || n != int64(len(atts)) {
		return fmt.Errorf("append %d attempts: %d rows written (%v)", len(atts), n, err)
	}
	return nil
}

// valuesList renders n rows of cols anonymous placeholders: (?, ?), (?, ?), …
// Arguments bind in order. Numbered placeholders ($1, ?1) would cost a
// linear scan of the statement's parameter names per parameter when the
// driver binds (sqlite3_bind_parameter_name), quadratic in a statement of
// 32 rows; an anonymous ? has no name to look up.
func valuesList(n, cols int) string {
	row := "(?" + strings.Repeat(", ?", cols-1) + ")"
	var b strings.Builder
	b.Grow(n * (len(row) + 2))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

// multiUpsertSQL is sqlUpsert for n rows, returning each row's key with its
// created time (RETURNING gives rows in no set order).
func multiUpsertSQL(n int) string {
	return sqlInsertDocs + valuesList(n, 7) + sqlUpsertConflict + `
RETURNING kind, id, created`
}

// multiAttemptSQL inserts n attempts; unlike sqlAttemptInsert a duplicate
// ID is an error, which sends the batch to its one-request-at-a-time pass.
func multiAttemptSQL(n int) string {
	return sqlInsertAttempts + valuesList(n, 4)
}
