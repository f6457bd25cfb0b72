package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// The DML below is shared-dialect SQL: placeholders $1..$n appear in
// ascending order, IDs and etags come from Go, and conflicts use
// ON CONFLICT / RETURNING, so a PostgreSQL backend can run the same text.
const (
	sqlGet = `SELECT grp, etag, doc, created, updated FROM docs WHERE kind = $1 AND id = $2`

	sqlList = `SELECT id, grp, etag, doc, created, updated FROM docs
WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3`

	sqlListGroup = `SELECT id, grp, etag, doc, created, updated FROM docs
WHERE kind = $1 AND grp = $2 AND id > $3 ORDER BY id LIMIT $4`

	// sqlScanKeys reads every document key, for the key filter.
	sqlScanKeys = `SELECT kind, id FROM docs`
	sqlCount    = `SELECT COUNT(*) FROM docs WHERE kind = $1`

	sqlCountGroup = `SELECT COUNT(*) FROM docs WHERE kind = $1 AND grp = $2`

	// sqlInsert creates a record that must not exist (If-None-Match).
	sqlInsert = `INSERT INTO docs (kind, id, grp, etag, doc, created, updated)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kind, id) DO NOTHING`

	// sqlInsertDocs and sqlUpsertConflict frame the rows of an upsert
	// (here and in merge.go).
	sqlInsertDocs     = `INSERT INTO docs (kind, id, grp, etag, doc, created, updated) VALUES `
	sqlUpsertConflict = `
ON CONFLICT (kind, id) DO UPDATE SET grp = excluded.grp, etag = excluded.etag, doc = excluded.doc, updated = excluded.updated`

	// sqlUpsert creates or replaces a record, keeping created.
	sqlUpsert = sqlInsertDocs + `($1, $2, $3, $4, $5, $6, $7)` + sqlUpsertConflict + `
RETURNING created`

	// sqlReplace replaces an existing record (If-Match: *).
	sqlReplace = `UPDATE docs SET grp = $1, etag = $2, doc = $3, updated = $4
WHERE kind = $5 AND id = $6 RETURNING created`

	// sqlReplaceIf replaces a record whose etag matches (If-Match: etag).
	sqlReplaceIf = `UPDATE docs SET grp = $1, etag = $2, doc = $3, updated = $4
WHERE kind = $5 AND id = $6 AND etag = $7 RETURNING created`

	sqlDelete = `DELETE FROM docs WHERE kind = $1 AND id = $2`

	sqlDeleteIf = `DELETE FROM docs WHERE kind = $1 AND id = $2 AND etag = $3`

	// sqlInsertAttempts starts an attempt insert (here and in merge.go).
	sqlInsertAttempts = `INSERT INTO attempts (id, ts, registration_id, doc) VALUES `
	sqlAttemptInsert  = sqlInsertAttempts + `($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`

	sqlAttempts = `SELECT doc FROM attempts WHERE registration_id = $1
ORDER BY ts DESC, id DESC LIMIT $2`

	sqlAttemptsAll = `SELECT doc FROM attempts ORDER BY ts DESC, id DESC LIMIT $1`

	// sqlAttemptsTrim drops the oldest $1 attempts.
	sqlAttemptsTrim = `DELETE FROM attempts WHERE id IN
(SELECT id FROM attempts ORDER BY ts, id LIMIT $1)`

	sqlAttemptsCount = `SELECT COUNT(*) FROM attempts`
)

// Transaction control of the writer connection (SQLite dialect). The
// savepoint is reused: each request releases it before the next one.
const (
	sqlBegin      = `BEGIN IMMEDIATE`
	sqlCommit     = `COMMIT`
	sqlRollback   = `ROLLBACK`
	sqlSavepoint  = `SAVEPOINT request`
	sqlRollbackTo = `ROLLBACK TO SAVEPOINT request`
	sqlRelease    = `RELEASE SAVEPOINT request`
)

// writerStmts are prepared on the writer goroutine's connection.
type writerStmts struct {
	insert, upsert, replace, replaceIf *sql.Stmt
	delete, deleteIf                   *sql.Stmt
	attemptInsert, attemptsTrim        *sql.Stmt
	savepoint, rollbackTo, release     *sql.Stmt
	all                                []*sql.Stmt

	// mergedStmts holds the multi-row statements (merge.go), prepared
	// when first used, by name and row count.
	mergedStmts map[string]*sql.Stmt
}

// merged returns the multi-row statement name for n rows, preparing it on
// the writer connection the first time (writer goroutine only).
func (w *writerStmts) merged(ctx context.Context, c *sql.Conn, name string, n int, text func(int) string) (*sql.Stmt, error) {
	key := name + "/" + strconv.Itoa(n)
	if st, ok := w.mergedStmts[key]; ok {
		return st, nil
	}
	st, err := c.PrepareContext(ctx, text(n))
	if err != nil {
		return nil, fmt.Errorf("prepare %s of %d rows: %w", name, n, err)
	}
	if w.mergedStmts == nil {
		w.mergedStmts = map[string]*sql.Stmt{}
	}
	w.mergedStmts[key] = st
	w.all = append(w.all, st)
	return st, nil
}

// preparer is what both *sql.Conn and *sql.DB offer.
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

func prepareAll(ctx context.Context, p preparer, all *[]*sql.Stmt, list map[**sql.Stmt]string) error {
	for dst, q := range list {
		st, err := p.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		*dst = st
		*all = append(*all, st)
	}
	return nil
}

func closeAll(all []*sql.Stmt) error {
	var errs []error
	for _, st := range all {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

func (w *writerStmts) prepare(ctx context.Context, c *sql.Conn) error {
	return prepareAll(ctx, c, &w.all, map[**sql.Stmt]string{
		&w.insert:        sqlInsert,
		&w.upsert:        sqlUpsert,
		&w.replace:       sqlReplace,
		&w.replaceIf:     sqlReplaceIf,
		&w.delete:        sqlDelete,
		&w.deleteIf:      sqlDeleteIf,
		&w.attemptInsert: sqlAttemptInsert,
		&w.attemptsTrim:  sqlAttemptsTrim,
		&w.savepoint:     sqlSavepoint,
		&w.rollbackTo:    sqlRollbackTo,
		&w.release:       sqlRelease,
	})
}

func (w *writerStmts) close() error {
	err := closeAll(w.all)
	w.all, w.mergedStmts = nil, nil
	return err
}

// readerStmts are prepared on the reader pool.
type readerStmts struct {
	get, list, listGroup, count, countGroup *sql.Stmt
	attempts, attemptsAll                   *sql.Stmt
	all                                     []*sql.Stmt
}

func (r *readerStmts) prepare(ctx context.Context, db *sql.DB) error {
	return prepareAll(ctx, db, &r.all, map[**sql.Stmt]string{
		&r.get:         sqlGet,
		&r.list:        sqlList,
		&r.listGroup:   sqlListGroup,
		&r.count:       sqlCount,
		&r.countGroup:  sqlCountGroup,
		&r.attempts:    sqlAttempts,
		&r.attemptsAll: sqlAttemptsAll,
	})
}

func (r *readerStmts) close() error {
	err := closeAll(r.all)
	r.all = nil
	return err
}
