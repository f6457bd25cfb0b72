// Package memstore is an in-memory store.Store for unit tests of domain
// packages. It follows the same contract as the SQL backends (it passes the
// storetest conformance suite) but keeps nothing across restarts.
package memstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

// Store is an in-memory store.
type Store struct {
	mu       sync.RWMutex
	docs     map[store.Kind]map[string]store.Record
	attempts []store.Attempt
	limit    int
	closed   bool
	now      func() time.Time
	streams  map[string]*stream // stream.go; created on first append
	wake     store.StreamWaker  // StreamChanged channels, by stream
}

// New returns an empty store keeping at most attemptLimit attempts (0: 1000).
func New(attemptLimit int) *Store {
	if attemptLimit <= 0 {
		attemptLimit = 1000
	}
	return &Store{docs: map[store.Kind]map[string]store.Record{}, limit: attemptLimit, now: time.Now}
}

// AttemptLimit is the attempt log bound.
func (s *Store) AttemptLimit() int { return s.limit }

func etag() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func clone(r store.Record) store.Record {
	r.Doc = append(json.RawMessage(nil), r.Doc...)
	return r
}

// Get implements store.Docs.
func (s *Store) Get(ctx context.Context, kind store.Kind, id string) (store.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.Record{}, store.ErrClosed
	}
	r, ok := s.docs[kind][id]
	if !ok {
		return store.Record{}, store.ErrNotFound
	}
	return clone(r), nil
}

func (s *Store) check(w store.Write) error {
	if w.Record.Kind == "" || w.Record.ID == "" || strings.ContainsRune(w.Record.ID, 0) {
		return fmt.Errorf("invalid record key %q/%q", w.Record.Kind, w.Record.ID)
	}
	if !w.Delete {
		var v any
		dec := json.NewDecoder(bytes.NewReader(w.Record.Doc))
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("invalid document: %w", err)
		}
		if dec.More() {
			return errors.New("invalid document: more than one JSON value")
		}
	}
	cur, exists := s.docs[w.Record.Kind][w.Record.ID]
	switch {
	case w.Delete && !exists && (w.Cond.IfMatch == "" || w.Cond.IfMatch == "*"):
		return store.ErrNotFound
	case w.Cond.IfNoneMatch && exists:
		return store.ErrExists
	case w.Cond.IfMatch == "*" && !exists:
		return store.ErrPrecondition
	case w.Cond.IfMatch != "" && w.Cond.IfMatch != "*" && (!exists || cur.ETag != w.Cond.IfMatch):
		return store.ErrPrecondition
	case w.Delete && !exists:
		return store.ErrNotFound
	}
	return nil
}

func (s *Store) apply(w store.Write, now time.Time) store.Record {
	m := s.docs[w.Record.Kind]
	if m == nil {
		m = map[string]store.Record{}
		s.docs[w.Record.Kind] = m
	}
	if w.Delete {
		delete(m, w.Record.ID)
		return w.Record
	}
	r := clone(w.Record)
	r.ETag, r.Updated, r.Created = etag(), now, now
	if cur, ok := m[r.ID]; ok {
		r.Created = cur.Created
	}
	m[r.ID] = r
	return clone(r)
}

// Put implements store.Docs.
func (s *Store) Put(ctx context.Context, rec store.Record, c store.Cond) (store.Record, error) {
	return store.PutVia(ctx, s.Apply, rec, c)
}

// Delete implements store.Docs.
func (s *Store) Delete(ctx context.Context, kind store.Kind, id, ifMatch string) error {
	return store.DeleteVia(ctx, s.Apply, kind, id, ifMatch)
}

// Apply implements store.Docs.
func (s *Store) Apply(ctx context.Context, writes []store.Write) ([]store.Record, error) {
	return s.applyWith(ctx, writes, nil)
}

// ApplyWithAttempt implements store.Docs: the writes, then the attempt,
// under one lock.
func (s *Store) ApplyWithAttempt(ctx context.Context, writes []store.Write, a store.Attempt) ([]store.Record, error) {
	return s.applyWith(ctx, writes, &a)
}

// applyWith applies the writes and, when they all succeed and a is set,
// appends a, under one lock.
func (s *Store) applyWith(ctx context.Context, writes []store.Write, a *store.Attempt) ([]store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	out, err := s.applyLocked(writes)
	if err != nil {
		return nil, err
	}
	if a != nil {
		s.appendLocked(*a)
	}
	return out, nil
}

// applyLocked applies the writes, all or none; s.mu is held.
func (s *Store) applyLocked(writes []store.Write) ([]store.Record, error) {
	// Check against the state as earlier writes of the batch leave it.
	saved := map[store.Kind]map[string]store.Record{}
	for k, m := range s.docs {
		cp := make(map[string]store.Record, len(m))
		for id, r := range m {
			cp[id] = r
		}
		saved[k] = cp
	}
	now := s.now().UTC()
	out := make([]store.Record, 0, len(writes))
	for i, w := range writes {
		if err := s.check(w); err != nil {
			s.docs = saved
			return nil, &store.WriteError{Index: i, Kind: w.Record.Kind, ID: w.Record.ID, Err: err}
		}
		out = append(out, s.apply(w, now))
	}
	return out, nil
}

// List implements store.Docs.
func (s *Store) List(ctx context.Context, kind store.Kind, o store.ListOptions) ([]store.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	limit := o.Limit
	if limit <= 0 {
		limit = 1000
	}
	var out []store.Record
	for id, r := range s.docs[kind] {
		if (o.Group == "" || r.Group == o.Group) && id > o.After {
			out = append(out, clone(r))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Count implements store.Docs.
func (s *Store) Count(ctx context.Context, kind store.Kind, group string) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	n := 0
	for _, r := range s.docs[kind] {
		if group == "" || r.Group == group {
			n++
		}
	}
	return n, nil
}

// AppendAttempt implements store.Attempts.
func (s *Store) AppendAttempt(ctx context.Context, a store.Attempt) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.appendLocked(a)
	return nil
}

// appendLocked appends an attempt and drops the oldest beyond the limit;
// s.mu is held.
func (s *Store) appendLocked(a store.Attempt) {
	s.attempts = append(s.attempts, a)
	if len(s.attempts) > s.limit {
		// drop the oldest by time
		slices.SortStableFunc(s.attempts, func(a, b store.Attempt) int { return a.Time.Compare(b.Time) })
		s.attempts = append([]store.Attempt(nil), s.attempts[len(s.attempts)-s.limit:]...)
	}
}

// Attempts implements store.Attempts.
func (s *Store) Attempts(ctx context.Context, registrationID string, limit int) ([]store.Attempt, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	if limit <= 0 {
		limit = 100
	}
	var out []store.Attempt
	for _, a := range s.attempts {
		if registrationID == "" || a.RegistrationID == registrationID {
			out = append(out, a)
		}
	}
	// Newest first by time; arrival order breaks ties (newest arrival first).
	slices.Reverse(out)
	slices.SortStableFunc(out, func(a, b store.Attempt) int { return b.Time.Compare(a.Time) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.wake.Close()
	return nil
}

var _ store.Store = (*Store)(nil)
