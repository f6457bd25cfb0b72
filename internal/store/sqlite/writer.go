package sqlite

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

// Request states. A request moves from queued to taken (the writer will
// execute it and answer with the outcome of its COMMIT) or to abandoned (its
// context ended first; it is never executed).
const (
	stateQueued int32 = iota
	stateTaken
	stateAbandoned
)

// request is one write request waiting for the writer goroutine.
type request struct {
	ctx     context.Context
	writes  []store.Write // a document batch, and/or
	attempt *attemptRow   // one attempt (after the writes), or
	// exec, any other write (stream appends and trims): the writer runs it
	// inside the request's savepoint; it returns how many rows it wrote or
	// deleted.
	exec func(ctx context.Context) (rows int, err error)
	// committed, when set, runs on the writer goroutine after the COMMIT
	// that made the request's successful outcome durable, before the
	// request is answered.
	committed func()

	state atomic.Int32
	done  chan struct{} // closed by the writer after recs and err are set

	recs []store.Record
	err  error

	// Filled by the writer while the batch runs.
	rows     int // rows written or deleted
	appended int // attempts inserted
}

func newRequest(ctx context.Context) *request {
	return &request{ctx: ctx, done: make(chan struct{})}
}

func (r *request) answer(recs []store.Record, err error) {
	r.recs, r.err = recs, err
	close(r.done)
}

// submit queues r for the writer and waits for its answer. When ctx ends
// while r is still queued, submit returns ctx.Err() and r is never applied;
// once the writer has taken r, submit waits for the definitive outcome.
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
		<-r.done // taken: the commit decides, and it does not take long
		return r.recs, r.err
	}
}

// run is the writer goroutine: it drains the queue in batches until Close
// closes the queue, then exits after answering every accepted request.
func (s *Store) run() {
	defer close(s.stopped)
	batch := make([]*request, 0, s.maxBatch)
	var linger *time.Timer
	if s.commitDelay > 0 {
		linger = time.NewTimer(s.commitDelay)
		linger.Stop()
	}
	last := 0 // size of the previous batch
	for r := range s.queue {
		batch = append(batch[:0], r)
		open := s.drain(&batch, s.maxBatch)
		var wait <-chan time.Time
		if open && last > 1 && linger != nil && len(batch) < s.maxBatch {
			// Concurrent writers: give them a moment to join this
			// commit, executing what has arrived meanwhile.
			linger.Reset(s.commitDelay)
			wait = linger.C
		}
		last = s.commitBatch(batch, wait)
		if linger != nil {
			linger.Stop()
		}
		clear(batch)
	}
}

// drain appends queued requests to batch, without waiting, until it holds
// limit requests. It reports false when the queue was closed.
func (s *Store) drain(batch *[]*request, limit int) bool {
	for len(*batch) < limit {
		select {
		case r, ok := <-s.queue:
			if !ok {
				return false
			}
			*batch = append(*batch, r)
		default:
			return true
		}
	}
	return true
}

// take marks queued requests as taken by the writer and appends them to
// batch; a request whose context has ended, or that its caller abandoned,
// is answered with the context's error instead.
func take(batch, queued []*request) []*request {
	for _, r := range queued {
		if err := r.ctx.Err(); err != nil || !r.state.CompareAndSwap(stateQueued, stateTaken) {
			r.answer(nil, r.ctx.Err())
			continue
		}
		batch = append(batch, r)
	}
	return batch
}

// commitBatch runs the queued requests in one transaction (see runBatch),
// commits once and answers them all; requests whose context has ended, or
// that their caller abandoned, are answered with the context's error and
// not executed. Until wait fires (nil: at once) it also takes the requests
// that arrive into the same transaction: the first pass executes what it
// has, then waits for more, so the commit delay overlaps the batch's
// execution and only the COMMIT is left when it ends. It returns how many
// requests the batch held.
func (s *Store) commitBatch(queued []*request, wait <-chan time.Time) int {
	batch := take(make([]*request, 0, max(len(queued), s.maxBatch)), queued)
	more := func(batch []*request) []*request {
		if wait == nil || len(batch) >= s.maxBatch {
			return batch
		}
		for {
			var r *request
			var ok bool
			select {
			case r, ok = <-s.queue:
			case <-wait:
				wait = nil
				return batch
			}
			if !ok { // closed: commit what there is
				wait = nil
				return batch
			}
			n := len(batch)
			arrived := append(s.arrived[:0], r)
			s.drain(&arrived, s.maxBatch-len(batch))
			batch = take(batch, arrived)
			clear(arrived)
			s.arrived = arrived[:0]
			if len(batch) > n {
				return batch
			}
		}
	}
	if len(batch) == 0 { // all abandoned: wait for others, if there is time
		if batch = more(batch); len(batch) == 0 {
			return 0
		}
	}
	ctx := context.Background() // requests' contexts never interrupt a shared transaction
	// Requests almost always succeed, so the batch first runs without a
	// savepoint per request (two statements each, and every page a
	// savepoint changes is journaled). When a request fails, that pass is
	// rolled back and the batch runs again with each request in its own
	// savepoint, so only the failing requests fail; no more requests join
	// it then.
	batch, ok := s.runBatch(ctx, batch, false, more)
	if !ok {
		s.runBatch(ctx, batch, true, nil)
	}
	return len(batch)
}

// runBatch runs the batch in one transaction and, unless it stops early,
// commits and answers every request. Without savepoints (isolated false)
// it stops at the first failing request: it rolls the transaction back,
// answers nothing and returns false, so the caller can run the batch
// isolated. Every other outcome answers all requests and returns true.
//
// With more set (first pass only), once the requests it has are executed
// it asks more for further ones and executes those in the same
// transaction, until more returns no new request. It returns the batch,
// grown by what more returned.
func (s *Store) runBatch(ctx context.Context, batch []*request, isolated bool, more func([]*request) []*request) ([]*request, bool) {
	fail := func(err error) {
		for _, r := range batch {
			r.answer(nil, err)
		}
	}
	if _, err := s.wconn.ExecContext(ctx, sqlBegin); err != nil {
		// Clear a transaction a failed ROLLBACK may have left open, so the
		// next batch can begin; the error of this ROLLBACK says nothing new.
		_, _ = s.wconn.ExecContext(ctx, sqlRollback)
		fail(fmt.Errorf("begin write transaction: %w", err))
		return batch, true
	}
	rollback := func() error {
		_, err := s.wconn.ExecContext(ctx, sqlRollback)
		if err != nil {
			s.log.Error("roll back write transaction", "err", err)
		}
		return err
	}
	abort := func(err error) bool {
		_ = rollback()
		fail(err)
		return true
	}

	type outcome struct {
		recs []store.Record
		err  error
	}
	outcomes := make([]outcome, len(batch))
	appended := 0
	// The first pass merges runs of plain upserts and attempts into
	// multi-row statements (merge.go).
	run := &s.merge // reused across batches (writer goroutine only)
	run.reset()
	flushRun := func() error {
		if len(run.reqs) == 0 {
			return nil
		}
		if err := s.flush(ctx, run); err != nil {
			return err
		}
		for k, r := range run.reqs {
			outcomes[run.at[k]] = outcome{run.recs[k], nil}
			appended += r.appended
		}
		run.reset()
		return nil
	}
	failPass := func(err error) bool {
		if rbErr := rollback(); rbErr != nil {
			fail(fmt.Errorf("roll back write transaction (%v): %w", err, rbErr))
			return true
		}
		return false
	}
	for i := 0; ; i++ {
		if i == len(batch) {
			if more == nil {
				break
			}
			// Execute what is merged so far before waiting for more, once
			// it is enough to fill a multi-row statement well: a few
			// requests merged at the end cost less than each on its own.
			if len(run.docs) >= mergeRows/2 {
				if err := flushRun(); err != nil {
					return batch, failPass(err)
				}
			}
			if batch = more(batch); i == len(batch) {
				break
			}
			outcomes = append(outcomes, make([]outcome, len(batch)-len(outcomes))...)
		}
		r := batch[i]
		r.rows, r.appended = 0, 0
		if !isolated {
			if mergeable(r) {
				if !run.fits(r) {
					if err := flushRun(); err != nil {
						return batch, failPass(err)
					}
				}
				s.addToRun(run, r, i)
				continue
			}
			if err := flushRun(); err != nil {
				return batch, failPass(err)
			}
			recs, err := s.execute(ctx, r)
			if err != nil {
				return batch, failPass(err)
			}
			outcomes[i] = outcome{recs, nil}
			appended += r.appended
			continue
		}
		if _, err := s.w.savepoint.ExecContext(ctx); err != nil {
			return batch, abort(fmt.Errorf("open request savepoint: %w", err))
		}
		recs, err := s.execute(ctx, r)
		if err != nil {
			if _, rbErr := s.w.rollbackTo.ExecContext(ctx); rbErr != nil {
				return batch, abort(fmt.Errorf("roll back failed request (%v): %w", err, rbErr))
			}
			r.rows, r.appended = 0, 0
		}
		if _, err := s.w.release.ExecContext(ctx); err != nil {
			return batch, abort(fmt.Errorf("release request savepoint: %w", err))
		}
		outcomes[i] = outcome{recs, err}
		appended += r.appended
	}
	if err := flushRun(); err != nil {
		return batch, failPass(err)
	}

	trimmed := s.trimAttempts(ctx, appended)

	if _, err := s.wconn.ExecContext(ctx, sqlCommit); err != nil {
		return batch, abort(fmt.Errorf("commit write transaction: %w", err))
	}
	s.attempts += appended - trimmed
	s.batches.Add(1)
	s.requests.Add(uint64(len(batch)))
	rows := 0
	for _, r := range batch {
		rows += r.rows
	}
	s.rows.Add(uint64(rows))
	for i, r := range batch {
		if outcomes[i].err == nil && r.committed != nil {
			r.committed()
		}
		r.answer(outcomes[i].recs, outcomes[i].err)
	}
	return batch, true
}

// execute runs one request inside the open transaction.
func (s *Store) execute(ctx context.Context, r *request) ([]store.Record, error) {
	if r.exec != nil {
		n, err := r.exec(ctx)
		if err != nil {
			return nil, err
		}
		r.rows = n
		return nil, nil
	}
	var recs []store.Record
	if len(r.writes) > 0 {
		recs = make([]store.Record, len(r.writes))
	}
	for i, w := range r.writes {
		rec, err := s.write(ctx, w)
		if err != nil {
			return nil, &store.WriteError{Index: i, Kind: w.Record.Kind, ID: w.Record.ID, Err: err}
		}
		recs[i] = rec
		r.rows++
	}
	if r.attempt != nil {
		if err := s.insertAttempt(ctx, r.attempt); err != nil {
			return nil, err
		}
		r.rows++
		r.appended++
	}
	return recs, nil
}

// trimAttempts drops the oldest attempts beyond the limit, inside its own
// savepoint so a failure only postpones the trim. It returns how many rows
// it deleted.
func (s *Store) trimAttempts(ctx context.Context, appended int) int {
	excess := s.attempts + appended - s.attemptLimit
	if excess <= 0 {
		return 0
	}
	if _, err := s.w.savepoint.ExecContext(ctx); err != nil {
		s.log.Warn("trim attempt log", "err", err)
		return 0
	}
	n := 0
	res, err := s.w.attemptsTrim.ExecContext(ctx, excess)
	if err == nil {
		var n64 int64
		n64, err = res.RowsAffected()
		n = int(n64)
	}
	if err != nil {
		n = 0
		s.log.Warn("trim attempt log", "excess", excess, "err", err)
		if _, rbErr := s.w.rollbackTo.ExecContext(ctx); rbErr != nil {
			s.log.Warn("roll back attempt log trim", "err", rbErr)
		}
	}
	if _, err := s.w.release.ExecContext(ctx); err != nil {
		s.log.Warn("release attempt log trim savepoint", "err", err)
	}
	return n
}

// initAttempts counts the attempt log and trims it to the limit (the limit
// may have been lowered since the last run).
func (s *Store) initAttempts(ctx context.Context) error {
	if err := s.wconn.QueryRowContext(ctx, sqlAttemptsCount).Scan(&s.attempts); err != nil {
		return fmt.Errorf("count attempts: %w", err)
	}
	excess := s.attempts - s.attemptLimit
	if excess <= 0 {
		return nil
	}
	res, err := s.w.attemptsTrim.ExecContext(ctx, excess)
	if err != nil {
		return fmt.Errorf("trim attempt log to %d: %w", s.attemptLimit, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("trim attempt log to %d: %w", s.attemptLimit, err)
	}
	s.attempts -= int(n)
	s.log.Info("attempt log trimmed", "dropped", n, "limit", s.attemptLimit)
	return nil
}

// tick returns the timestamp of one write: now in UTC, strictly after every
// timestamp handed out before, so each write changes Updated. Only the
// writer goroutine calls it.
func (s *Store) tick() time.Time {
	t := time.Now().UTC().Round(0)
	if !t.After(s.lastTick) {
		t = s.lastTick.Add(time.Nanosecond)
	}
	s.lastTick = t
	return t
}
