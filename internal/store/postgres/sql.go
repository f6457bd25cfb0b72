package postgres

// Transaction control. The savepoint is reused: each request releases (or
// rolls back to and releases) it before the next one opens it again.
const (
	sqlBegin      = `BEGIN`
	sqlCommit     = `COMMIT`
	sqlRollback   = `ROLLBACK`
	sqlSavepoint  = `SAVEPOINT request`
	sqlRollbackTo = `ROLLBACK TO SAVEPOINT request`
	sqlRelease    = `RELEASE SAVEPOINT request`
)

// Locks taken at the start of a batch, in key order (ORDER BY runs before
// the rows are locked), so that batches sharing rows do not deadlock.
const (
	sqlLockDocs = `SELECT 1 FROM docs
WHERE (kind, id) IN (SELECT k, i FROM unnest(CAST($1 AS TEXT[]), CAST($2 AS TEXT[])) AS w(k, i))
ORDER BY kind, id FOR UPDATE`

	sqlLockStreams = `SELECT 1 FROM stream_heads WHERE stream = ANY(CAST($1 AS TEXT[])) ORDER BY stream FOR UPDATE`
)

// Documents. Writes return the stored timestamps: an update never moves
// updated backwards, even when the previous write came from an instance
// whose clock was ahead.
const (
	sqlGet = `SELECT grp, etag, doc, created, updated FROM docs WHERE kind = $1 AND id = $2`

	sqlList = `SELECT id, grp, etag, doc, created, updated FROM docs
WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3`

	sqlListGroup = `SELECT id, grp, etag, doc, created, updated FROM docs
WHERE kind = $1 AND grp = $2 AND id > $3 ORDER BY id LIMIT $4`

	sqlCount = `SELECT COUNT(*) FROM docs WHERE kind = $1`

	sqlCountGroup = `SELECT COUNT(*) FROM docs WHERE kind = $1 AND grp = $2`

	// sqlInsert creates a record that must not exist (If-None-Match).
	sqlInsert = `INSERT INTO docs (kind, id, grp, etag, doc, jdoc, created, updated)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (kind, id) DO NOTHING
RETURNING created, updated`

	// sqlUpsert creates or replaces a record, keeping created.
	sqlUpsert = `INSERT INTO docs AS d (kind, id, grp, etag, doc, jdoc, created, updated)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
ON CONFLICT (kind, id) DO UPDATE SET grp = excluded.grp, etag = excluded.etag, doc = excluded.doc, jdoc = excluded.jdoc,
updated = GREATEST(excluded.updated, d.updated + INTERVAL '1 microsecond')
RETURNING created, updated`

	// sqlReplace replaces an existing record (If-Match: *).
	sqlReplace = `UPDATE docs SET grp = $1, etag = $2, doc = $3, jdoc = $4,
updated = GREATEST($5, updated + INTERVAL '1 microsecond')
WHERE kind = $6 AND id = $7 RETURNING created, updated`

	// sqlReplaceIf replaces a record whose etag matches (If-Match: etag).
	sqlReplaceIf = `UPDATE docs SET grp = $1, etag = $2, doc = $3, jdoc = $4,
updated = GREATEST($5, updated + INTERVAL '1 microsecond')
WHERE kind = $6 AND id = $7 AND etag = $8 RETURNING created, updated`

	sqlDelete = `DELETE FROM docs WHERE kind = $1 AND id = $2`

	sqlDeleteIf = `DELETE FROM docs WHERE kind = $1 AND id = $2 AND etag = $3`
)

// The attempt log.
const (
	sqlAttemptInsert = `INSERT INTO attempts (id, ts, registration_id, doc)
VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`

	sqlAttempts = `SELECT doc FROM attempts WHERE registration_id = $1
ORDER BY ts DESC, id DESC LIMIT $2`

	sqlAttemptsAll = `SELECT doc FROM attempts ORDER BY ts DESC, id DESC LIMIT $1`

	// sqlAttemptCountLock waits for the other transactions that appended
	// attempts to commit; the statement after it then sees all of their
	// attempts (READ COMMITTED takes a snapshot per statement).
	sqlAttemptCountLock = `SELECT n FROM attempt_count WHERE one FOR UPDATE`

	// sqlAttemptCountAdd adds $1 appended attempts to the count and drops
	// the oldest attempts beyond the limit $2, at most $3 of them. It
	// returns the new count and how many it dropped.
	sqlAttemptCountAdd = `WITH gone AS (
  DELETE FROM attempts WHERE id IN (
    SELECT id FROM attempts ORDER BY ts, id
    LIMIT (SELECT LEAST(GREATEST(n + CAST($1 AS BIGINT) - CAST($2 AS BIGINT), 0), CAST($3 AS BIGINT)) FROM attempt_count WHERE one))
  RETURNING 1)
UPDATE attempt_count SET n = n + CAST($1 AS BIGINT) - (SELECT COUNT(*) FROM gone) WHERE one
RETURNING n, (SELECT COUNT(*) FROM gone)`

	// sqlAttemptRecount sets the count from the table (at startup: the
	// count heals if someone deleted attempts by hand).
	sqlAttemptRecount = `UPDATE attempt_count SET n = (SELECT COUNT(*) FROM attempts) WHERE one RETURNING n`
)

// Streams.
const (
	// sqlStreamAppend reserves $2 seqs and $3 bytes of offsets in the
	// stream's head row ($1) and inserts the entries (arrays $4..$9: key,
	// sub, time, offset within the append, doc, body) under them. The head
	// row's lock serialises appenders of the stream until they commit.
	sqlStreamAppend = `WITH h AS (
  INSERT INTO stream_heads AS sh (stream, last_seq, end_off, first_seq, first_off)
  VALUES ($1, $2, $3, 1, 0)
  ON CONFLICT (stream) DO UPDATE SET last_seq = sh.last_seq + excluded.last_seq, end_off = sh.end_off + excluded.end_off
  RETURNING last_seq, end_off)
INSERT INTO stream_entries (stream, seq, key, sub, ts, off, doc, body)
SELECT $1, h.last_seq - $2 + e.n, e.key, e.sub, e.ts, h.end_off - $3 + e.off, e.doc, e.body
FROM h, unnest(CAST($4 AS TEXT[]), CAST($5 AS TEXT[]), CAST($6 AS TEXT[]), CAST($7 AS BIGINT[]), CAST($8 AS TEXT[]), CAST($9 AS BYTEA[]))
  WITH ORDINALITY AS e(key, sub, ts, off, doc, body, n)
RETURNING seq`

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

	// sqlStreamSetFirst moves the oldest kept seq forward, never back (a
	// concurrent trim may have moved it further already).
	sqlStreamSetFirst = `UPDATE stream_heads SET first_seq = $1, first_off = $2 WHERE stream = $3 AND first_seq < $1`

	sqlStreamRead = `SELECT seq, key, sub, ts, doc, body FROM stream_entries
WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3`

	sqlStreamReadKey = `SELECT seq, key, sub, ts, doc, body FROM stream_entries
WHERE stream = $1 AND key = $2 AND seq > $3 ORDER BY seq LIMIT $4`

	sqlStreamReadSub = `SELECT seq, key, sub, ts, doc, body FROM stream_entries
WHERE stream = $1 AND key = $2 AND sub = $3 AND seq > $4 ORDER BY seq LIMIT $5`

	// sqlNotify wakes the stream readers of other instances when the
	// transaction commits.
	sqlNotify = `SELECT pg_notify($1, $2)`
)
