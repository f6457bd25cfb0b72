package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/muster-iot/muster/internal/store"
)

// DefaultAttemptsLimit is how many attempts Attempts returns when limit is 0.
const DefaultAttemptsLimit = 100

// attemptRow is one attempt as the writer inserts it.
type attemptRow struct {
	id, ts, registrationID, doc string
}

// AppendAttempt records an attempt durably; the log keeps the newest
// AttemptLimit attempts (ordered by Time, then ID). An ID already in the log
// gives store.ErrExists. Time is stored in UTC.
func (s *Store) AppendAttempt(ctx context.Context, a store.Attempt) error {
	row, err := newAttemptRow(a)
	if err != nil {
		return err
	}
	r := newRequest(ctx)
	r.attempt = row
	_, err = s.submit(ctx, r)
	return err
}

// newAttemptRow checks and encodes an attempt for the writer.
func newAttemptRow(a store.Attempt) (*attemptRow, error) {
	a, doc, err := store.EncodeAttempt(a)
	if err != nil {
		return nil, err
	}
	return &attemptRow{id: a.ID, ts: formatTime(a.Time), registrationID: a.RegistrationID, doc: string(doc)}, nil
}

// insertAttempt runs on the writer connection, inside the batch transaction.
func (s *Store) insertAttempt(ctx context.Context, a *attemptRow) error {
	res, err := s.w.attemptInsert.ExecContext(ctx, a.id, a.ts, a.registrationID, a.doc)
	if err != nil {
		return fmt.Errorf("append attempt %s: %w", a.id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("append attempt %s: %w", a.id, err)
	}
	if n == 0 {
		return fmt.Errorf("append attempt %s: id already recorded: %w", a.id, store.ErrExists)
	}
	return nil
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
	var rows *sql.Rows
	var err error
	if registrationID == "" {
		rows, err = s.r.attemptsAll.QueryContext(ctx, limit)
	} else {
		rows, err = s.r.attempts.QueryContext(ctx, registrationID, limit)
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
