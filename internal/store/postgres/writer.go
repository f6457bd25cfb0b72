package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/muster-iot/muster/internal/store"
)

// slowChunk bounds how many requests share one transaction when a batch
// runs request by request: each request takes a subtransaction, and
// PostgreSQL caches at most 64 of them per backend before every snapshot
// in the cluster has to look them up on disk.
const slowChunk = 32

// maxTries bounds the attempts of one transaction (the first and the
// retries after deadlocks, serialization failures and lost connections).
const maxTries = 6

// Request states. A request moves from queued to taken (a writer will
// execute it and answer with the outcome of its COMMIT) or to abandoned (its
// context ended first; it is never executed).
const (
	stateQueued int32 = iota
	stateTaken
	stateAbandoned
)

// op is the work of one write request. A writer pipelines the statements
// of many ops in one transaction: queue adds the op's statements to the
// pipeline, read consumes their results in the same order. queue and read
// may run more than once (a retried or a slow batch runs every op again).
type op interface {
	queue(b *pgx.Batch, now time.Time)
	// read returns the records the request returns, or why it failed: a
	// store sentinel (possibly in a *store.WriteError) when a condition
	// did not hold, a *pgconn.PgError when a statement failed, or another
	// error when the connection did. It reads every result queue added,
	// whatever happens.
	read(br pgx.BatchResults) ([]store.Record, error)
	// effects describes what the op touches and writes.
	effects() effects
}

// effects is what an op touches: the documents and the stream it writes
// (locked in key order before any write of the batch) and, when it
// succeeds, how many rows it writes and attempts it appends.
type effects struct {
	kinds, ids []string
	stream     string
	rows       int
	attempts   int
}

// request is one write request waiting for a writer.
type request struct {
	ctx   context.Context
	op    op
	state atomic.Int32
	done  chan struct{} // closed by the writer after recs and err are set
	recs  []store.Record
	err   error
}

func newRequest(ctx context.Context, o op) *request {
	return &request{ctx: ctx, op: o, done: make(chan struct{})}
}

func (r *request) answer(recs []store.Record, err error) {
	r.recs, r.err = recs, err
	close(r.done)
}

// outcome is the result of one request in a transaction.
type outcome struct {
	recs []store.Record
	err  error
}

// submit queues r for a writer and waits for its answer. When ctx ends
// while r is still queued, submit returns ctx.Err() and r is never applied;
// once a writer has taken r, submit waits for the definitive outcome.
func (s *Store) submit(ctx context.Context, r *request) ([]store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, store.ErrClosed
	}
	select {
	case s.queue <- r:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return nil, ctx.Err()
	}
	select {
	case <-r.done:
		return r.recs, r.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(stateQueued, stateAbandoned) {
			return nil, ctx.Err()
		}
		<-r.done // taken: the commit decides, within BatchTimeout
		return r.recs, r.err
	}
}

// run is one writer goroutine: it drains the queue in batches until Close
// closes the queue, then exits after answering every request it took.
func (s *Store) run() {
	batch := make([]*request, 0, s.opts.MaxBatch)
	for r := range s.queue {
		batch = append(batch[:0], r)
	fill:
		for len(batch) < s.opts.MaxBatch {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
		clear(batch)
	}
}

// commitBatch runs the requests in as few transactions as their outcomes
// allow and answers each after the COMMIT that decided it. Requests whose
// context has ended, or that their caller abandoned, are answered with the
// context's error and not executed.
func (s *Store) commitBatch(queued []*request) {
	batch := make([]*request, 0, len(queued))
	for _, r := range queued {
		if err := r.ctx.Err(); err != nil || !r.state.CompareAndSwap(stateQueued, stateTaken) {
			r.answer(nil, r.ctx.Err())
			continue
		}
		batch = append(batch, r)
	}
	if len(batch) == 0 {
		return
	}
	// Requests' contexts never interrupt a shared transaction; the batch
	// has its own bound.
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.BatchTimeout)
	defer cancel()

	var outs []outcome
	err := s.withRetry(ctx, func(conn *pgx.Conn) error {
		var err error
		outs, err = s.fast(ctx, conn, batch)
		return err
	})
	if !errors.Is(err, errRequestFailed) {
		s.finish(batch, outs, err)
		return
	}
	s.slow.Add(1)
	for chunk := range slices.Chunk(batch, slowChunk) {
		err := s.withRetry(ctx, func(conn *pgx.Conn) error {
			var err error
			outs, err = s.slowChunk(ctx, conn, chunk)
			return err
		})
		s.finish(chunk, outs, err)
	}
}

// finish answers the requests of one transaction: with their outcomes
// when it committed, with err otherwise.
func (s *Store) finish(batch []*request, outs []outcome, err error) {
	if err != nil {
		for _, r := range batch {
			r.answer(nil, err)
		}
		return
	}
	s.batches.Add(1)
	s.requests.Add(uint64(len(batch)))
	rows := 0
	for i, r := range batch {
		if outs[i].err == nil {
			e := r.op.effects()
			rows += e.rows
			if e.stream != "" {
				s.wake.Notify(e.stream)
			}
		}
	}
	s.rows.Add(uint64(rows))
	for i, r := range batch {
		r.answer(outs[i].recs, outs[i].err)
	}
}

// errRequestFailed reports that a request of an optimistic batch failed:
// the batch was rolled back and must run request by request.
var errRequestFailed = errors.New("a request of the batch failed")

// fast runs the whole batch in one pipeline without savepoints and commits
// when every request succeeded. When one failed, it rolls back and returns
// errRequestFailed, unless the batch is that one request.
func (s *Store) fast(ctx context.Context, conn *pgx.Conn, batch []*request) ([]outcome, error) {
	b := &pgx.Batch{}
	b.Queue(sqlBegin)
	pre := 1 + queueLocks(b, batch)
	for _, r := range batch {
		r.op.queue(b, s.tick())
	}
	post := s.queueEnd(b, batch)

	br := conn.SendBatch(ctx, b)
	if err := execN(br, pre); err != nil {
		br.Close()
		return nil, s.abort(ctx, conn, fmt.Errorf("lock the rows of the batch: %w", err))
	}
	outs := make([]outcome, len(batch))
	failed := error(nil)
	for i, r := range batch {
		outs[i].recs, outs[i].err = r.op.read(br)
		if outs[i].err != nil && failed == nil {
			failed = outs[i].err
		}
	}
	endErr := execN(br, post)
	closeErr := br.Close()
	switch {
	case failed != nil && requestLevel(failed) && len(batch) == 1:
		// Alone in its transaction, the request's failure is its outcome:
		// there is nothing to run again.
		return outs, s.abort(ctx, conn, nil)
	case failed != nil && requestLevel(failed):
		return nil, s.abort(ctx, conn, errRequestFailed)
	case failed != nil:
		return nil, s.abort(ctx, conn, failed)
	case endErr != nil:
		return nil, s.abort(ctx, conn, fmt.Errorf("update the attempt log: %w", endErr))
	case closeErr != nil:
		return nil, s.abort(ctx, conn, closeErr)
	}
	return outs, commit(ctx, conn)
}

// slowChunk runs the requests one after the other in one transaction, each
// inside a savepoint, so a failing request is rolled back alone; then
// commits.
func (s *Store) slowChunk(ctx context.Context, conn *pgx.Conn, chunk []*request) ([]outcome, error) {
	b := &pgx.Batch{}
	b.Queue(sqlBegin)
	pre := 1 + queueLocks(b, chunk)
	outs := make([]outcome, len(chunk))
	var end []string // closes the previous request's savepoint
	var ok []*request
	for i, r := range chunk {
		for _, q := range end {
			b.Queue(q)
		}
		b.Queue(sqlSavepoint)
		r.op.queue(b, s.tick())
		br := conn.SendBatch(ctx, b)
		if err := execN(br, pre+len(end)+1); err != nil {
			br.Close()
			return nil, s.abort(ctx, conn, fmt.Errorf("open request savepoint: %w", err))
		}
		recs, err := r.op.read(br)
		if closeErr := br.Close(); err == nil {
			err = closeErr
		}
		switch {
		case err == nil:
			end = []string{sqlRelease}
			ok = append(ok, r)
		case requestLevel(err):
			end = []string{sqlRollbackTo, sqlRelease}
		default:
			return nil, s.abort(ctx, conn, err)
		}
		outs[i] = outcome{recs, err}
		b, pre = &pgx.Batch{}, 0
	}
	for _, q := range end {
		b.Queue(q)
	}
	post := len(end) + s.queueEnd(b, ok)
	br := conn.SendBatch(ctx, b)
	err := execN(br, post)
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return nil, s.abort(ctx, conn, fmt.Errorf("close the request savepoints: %w", err))
	}
	return outs, commit(ctx, conn)
}

// queueLocks locks the existing documents and stream heads the requests
// write, each kind of row in key order, and returns how many statements it
// queued. Batches that share rows then wait for each other instead of
// deadlocking (new rows cannot be locked in advance; a rare deadlock on
// them is retried).
func queueLocks(b *pgx.Batch, batch []*request) int {
	var kinds, ids, streams []string
	for _, r := range batch {
		e := r.op.effects()
		kinds, ids = append(kinds, e.kinds...), append(ids, e.ids...)
		if e.stream != "" && !slices.Contains(streams, e.stream) {
			streams = append(streams, e.stream)
		}
	}
	n := 0
	if len(ids) > 0 {
		b.Queue(sqlLockDocs, kinds, ids)
		n++
	}
	if len(streams) > 0 {
		b.Queue(sqlLockStreams, streams)
		n++
	}
	return n
}

// queueEnd queues the statements that close a transaction before its
// COMMIT, for the requests that succeeded: the attempt count and trim, and
// a notification per stream appended to. It returns how many statements it
// queued.
func (s *Store) queueEnd(b *pgx.Batch, succeeded []*request) int {
	appended := 0
	var streams []string
	for _, r := range succeeded {
		e := r.op.effects()
		appended += e.attempts
		if e.stream != "" && !slices.Contains(streams, e.stream) {
			streams = append(streams, e.stream)
		}
	}
	n := 0
	if appended > 0 {
		b.Queue(sqlAttemptCountLock)
		b.Queue(sqlAttemptCountAdd, appended, s.opts.AttemptLimit, trimChunk)
		n += 2
	}
	if !s.opts.NoNotify {
		for _, stream := range streams {
			b.Queue(sqlNotify, s.channel, s.instance+" "+stream)
			n++
		}
	}
	return n
}

// execN reads the results of the next n statements of a pipeline, all of
// which must succeed.
func execN(br pgx.BatchResults, n int) error {
	for range n {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	return nil
}

// commit commits the open transaction. A COMMIT that fails without an
// answer from the server, or because the connection ended, leaves the
// outcome unknown: that error is never retried.
func commit(ctx context.Context, conn *pgx.Conn) error {
	tag, err := conn.Exec(ctx, sqlCommit)
	var pe *pgconn.PgError
	switch {
	case err != nil && errors.As(err, &pe) && !connectionCode(pe.Code):
		return fmt.Errorf("commit: %w", err) // the server refused it: rolled back
	case err != nil:
		return &commitUnknownError{err}
	case tag.String() != "COMMIT":
		return fmt.Errorf("commit: the server rolled the transaction back (%s)", tag)
	}
	return nil
}

// commitUnknownError is a COMMIT whose outcome is unknown (the connection
// failed before the server answered).
type commitUnknownError struct{ err error }

func (e *commitUnknownError) Error() string {
	return "commit: outcome unknown, the write may or may not have been applied: " + e.err.Error()
}

func (e *commitUnknownError) Unwrap() error { return e.err }

// abort rolls the open transaction back (when the connection still works)
// and returns err.
func (s *Store) abort(ctx context.Context, conn *pgx.Conn, err error) error {
	if conn.IsClosed() {
		return err
	}
	if _, rbErr := conn.Exec(ctx, sqlRollback); rbErr != nil {
		// The pool discards a connection that is not idle when released.
		s.log.Warn("roll back write transaction", "err", rbErr)
	}
	return err
}

// requestLevel reports whether err is the failure of one request rather
// than of its transaction or connection: a condition that did not hold, or
// a statement error that a retry would not cure.
func requestLevel(err error) bool {
	if errors.Is(err, store.ErrPrecondition) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && !retryableCode(pe.Code) && !connectionCode(pe.Code)
}

// retryableCode reports the SQLSTATEs after which the whole transaction
// may simply run again: serialization_failure and deadlock_detected.
func retryableCode(code string) bool { return code == "40001" || code == "40P01" }

// connectionCode reports the SQLSTATEs of a connection the server ended or
// refused: connection exceptions (class 08), and admin_shutdown,
// crash_shutdown and cannot_connect_now (a restart or a failover).
func connectionCode(code string) bool {
	return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "57P03"
}

// retryable reports whether a transaction that failed with err may run
// again: it did not commit (a deadlock, a serialization failure, or a
// connection lost before the COMMIT was sent), and the batch has time left.
func retryable(err error) bool {
	var pe *pgconn.PgError
	var unknown *commitUnknownError
	switch {
	case errors.As(err, &unknown), errors.Is(err, errRequestFailed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return false
	case errors.As(err, &pe):
		return retryableCode(pe.Code) || connectionCode(pe.Code)
	}
	return true // the connection failed before COMMIT: the server rolled back
}

// withRetry runs fn on a pooled connection, again on a fresh connection
// after a retryable failure, at most maxTries times.
func (s *Store) withRetry(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	backoff := 2 * time.Millisecond
	for try := 1; ; try++ {
		err := s.withConn(ctx, fn)
		if err == nil || !retryable(err) || try == maxTries || ctx.Err() != nil {
			return err
		}
		s.retries.Add(1)
		s.log.Debug("retry write transaction", "try", try, "err", err)
		// Jitter separates transactions that deadlocked on each other.
		wait := backoff/2 + rand.N(backoff)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// withConn runs fn on a connection of the pool.
func (s *Store) withConn(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire a connection: %w", err)
	}
	defer c.Release()
	return fn(c.Conn())
}
