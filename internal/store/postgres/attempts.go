package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muster-iot/muster/internal/store"
)

// DefaultAttemptsLimit is how many attempts Attempts returns when limit is 0.
const DefaultAttemptsLimit = 100

// trimChunk bounds how many attempts or stream entries one transaction
// deletes, so a large trim (after the limit was lowered) never holds locks
// for long.
const trimChunk = 10000

// attemptOp is an AppendAttempt request.
type attemptOp struct {
	id, ts, registrationID, doc string
}

func (o *attemptOp) queue(b *pgx.Batch, _ time.Time) {
	b.Queue(sqlAttemptInsert, o.id, o.ts, o.registrationID, o.doc)
}

func (o *attemptOp) read(br pgx.BatchResults) ([]store.Record, error) {
	tag, err := br.Exec()
	if err != nil {
		return nil, fmt.Errorf("append attempt %s: %w", o.id, err)
	}
	if tag.RowsAffected() == 0 {
		return nil, fmt.Errorf("append attempt %s: id already recorded: %w", o.id, store.ErrExists)
	}
	return nil, nil
}

func (o *attemptOp) effects() effects { return effects{rows: 1, attempts: 1} }

// AppendAttempt records an attempt durably; the log keeps the newest
// AttemptLimit attempts (ordered by Time, then ID). An ID already in the log
// gives store.ErrExists. Time is stored in UTC.
func (s *Store) AppendAttempt(ctx context.Context, a store.Attempt) error {
	o, err := newAttemptOp(a)
	if err != nil {
		return err
	}
	_, err = s.submit(ctx, newRequest(ctx, o))
	return err
}

// newAttemptOp checks and encodes an attempt for the writer.
func newAttemptOp(a store.Attempt) (*attemptOp, error) {
	a, doc, err := store.EncodeAttempt(a)
	if err != nil {
		return nil, err
	}
	return &attemptOp{id: a.ID, ts: formatTime(a.Time), registrationID: a.RegistrationID, doc: string(doc)}, nil
}

// docsAttemptOp is an ApplyWithAttempt request: the documents, then the
// attempt, in one transaction.
type docsAttemptOp struct {
	docs    *docsOp
	attempt *attemptOp
}

func (o *docsAttemptOp) queue(b *pgx.Batch, now time.Time) {
	o.docs.queue(b, now)
	o.attempt.queue(b, now)
}

func (o *docsAttemptOp) read(br pgx.BatchResults) ([]store.Record, error) {
	recs, err := o.docs.read(br)
	_, aerr := o.attempt.read(br) // read whatever happened, as op requires
	if err != nil {
		return nil, err
	}
	if aerr != nil {
		return nil, aerr
	}
	return recs, nil
}

func (o *docsAttemptOp) effects() effects {
	e, a := o.docs.effects(), o.attempt.effects()
	e.rows += a.rows
	e.attempts += a.attempts
	return e
}

// Attempts returns the newest attempts for a registration ID, newest first,
// at most limit (0: DefaultAttemptsLimit). An empty ID returns the newest
// attempts overall.
func (s *Store) Attempts(ctx context.Context, registrationID string, limit int) ([]store.Attempt, error) {
	op := fmt.Sprintf("list attempts of %q", registrationID)
	if s.isDone.Load() {
		return nil, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	switch {
	case limit < 0:
		return nil, fmt.Errorf("%s: limit %d is negative", op, limit)
	case limit == 0:
		limit = DefaultAttemptsLimit
	}
	if err := store.CheckText("registrationId", registrationID); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var rows pgx.Rows
	var err error
	if registrationID == "" {
		rows, err = s.pool.Query(ctx, sqlAttemptsAll, limit)
	} else {
		rows, err = s.pool.Query(ctx, sqlAttempts, registrationID, limit)
	}
	if err != nil {
		return nil, s.readErr(op, err)
	}
	defer rows.Close()
	out := make([]store.Attempt, 0, min(limit, 64))
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, s.readErr(op, err)
		}
		var a store.Attempt
		if err := json.Unmarshal(doc, &a); err != nil {
			return nil, fmt.Errorf("%s: decode stored attempt: %w", op, err)
		}
		a.Time = a.Time.UTC()
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(op, err)
	}
	return out, nil
}

// initAttempts recounts the attempt log (healing the count after manual
// deletes) and trims it to the limit, which may have been lowered since
// the last start. Each step is its own short transaction under the count
// row's lock, so instances that append meanwhile stay exact.
func (s *Store) initAttempts(ctx context.Context) error {
	var count int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlAttemptCountLock); err != nil {
			return err
		}
		return tx.QueryRow(ctx, sqlAttemptRecount).Scan(&count)
	})
	if err != nil {
		return fmt.Errorf("count attempts: %w", err)
	}
	dropped := int64(0)
	for count > int64(s.opts.AttemptLimit) {
		var n int64
		err := s.inTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, sqlAttemptCountLock); err != nil {
				return err
			}
			return tx.QueryRow(ctx, sqlAttemptCountAdd, 0, s.opts.AttemptLimit, trimChunk).Scan(&count, &n)
		})
		if err != nil {
			return fmt.Errorf("trim attempt log to %d: %w", s.opts.AttemptLimit, err)
		}
		if n == 0 {
			break
		}
		dropped += n
	}
	if dropped > 0 {
		s.log.Info("attempt log trimmed", "dropped", dropped, "limit", s.opts.AttemptLimit)
	}
	return nil
}

// inTx runs fn in a transaction on the pool and commits, again after a
// deadlock, a serialization failure or a connection lost before the
// COMMIT, at most maxTries times.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.withRetry(ctx, func(conn *pgx.Conn) error {
		return pgx.BeginFunc(ctx, conn, fn)
	})
}
