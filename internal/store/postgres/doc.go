// Package postgres owns the PostgreSQL backend of the store contract
// ([store.Store], [store.Streams], [store.StreamNotifier],
// [store.TwinQuerier]): the connection pool (pgx v5), the schema migrations,
// the group-commit writers and the SQL of every operation. Several
// `muster serve` instances may share one database; everything that must
// hold between them is enforced by the database, never by in-process locks.
//
// # Writes
//
// Every write (Put, Delete, Apply, AppendAttempt, AppendMessages) is queued
// to a small set of writer goroutines ([Options.Writers]). A writer takes
// whatever is queued when it becomes free (up to [Options.MaxBatch]
// requests) and runs the batch as one transaction, so a whole batch costs
// one commit (one WAL flush). A request is answered only after the COMMIT
// that contains it succeeded: acknowledged means durable (with the server's
// default synchronous_commit=on).
//
// A batch first runs optimistically: all its statements are sent in one
// pipeline, without savepoints. When every request succeeds, it commits.
// When one request fails (an If-Match mismatch, an existing ID, an SQL error
// of that request) and it was not alone, the transaction is rolled back and
// the batch runs again in chunks of at most 32 requests, each request inside
// its own savepoint, so that each request succeeds or fails on its own. The chunks
// keep the number of subtransactions per transaction below PostgreSQL's
// per-backend cache of 64, beyond which every snapshot in the cluster gets
// slower. Deadlocks and serialization failures (SQLSTATE 40P01, 40001) roll
// the attempt back and retry it a bounded number of times.
//
// Preconditions are row conditions evaluated by the database
// (UPDATE … WHERE etag = $n, INSERT … ON CONFLICT DO NOTHING, rows
// affected), so an etag check holds between instances. Every batch locks the
// existing documents and stream heads it is about to write in key order
// first, so concurrent batches that touch the same rows queue instead of
// deadlocking.
//
// # Attempt log
//
// The attempt log keeps at most [Options.AttemptLimit] attempts: the count
// lives in one row (attempt_count), which a transaction that appended
// attempts locks last, trims the oldest attempts beyond the bound and
// updates, right before it commits. The lock serialises only that final
// step, and makes the bound exact across instances.
//
// # Streams
//
// Appends assign seqs through the stream's head row (INSERT … ON CONFLICT DO
// UPDATE … RETURNING), whose row lock serialises the appenders of one
// stream until they commit: seqs are consecutive and in commit order on
// every instance. StreamChanged wakes readers of this process when an
// append through this store commits; unless [Options.NoNotify] is set, an
// append also sends a NOTIFY in its transaction and each store LISTENs, so
// readers of other instances wake up too (LISTEN/NOTIFY is
// PostgreSQL-specific; CockroachDB has neither, hence the option). Readers
// must poll in any case: a notification can be lost while a listener
// reconnects (it then wakes every reader once).
//
// # Portability
//
// The SQL is plain PostgreSQL 12+ and kept runnable on PostgreSQL-compatible
// engines where feasible: no extensions, no stored procedures, no advisory
// locks (migrations take goose's table lock). PostgreSQL-specific pieces:
// LISTEN/NOTIFY (optional), JSONB and its operators (twin queries only),
// COLLATE "C" (byte order, which CockroachDB's STRING order already is),
// data-modifying CTEs, multi-argument unnest WITH ORDINALITY, and
// SELECT … ORDER BY … FOR UPDATE.
//
// The schema is created in the first schema of the connection's search_path
// (for example postgres://host/db?search_path=muster); the database must use
// the UTF8 encoding. This package must not be imported by domain packages;
// they see only the store interfaces.
package postgres
