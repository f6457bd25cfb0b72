// Package store owns the persistence contract of Muster: a small versioned
// document store (records addressed by kind and ID, guarded by etags), an
// atomic multi-record write, and a bounded log of registration attempts.
//
// Domain packages (enroll, provision, registry, …) keep their own JSON
// documents in it; backends (store/sqlite, later store/postgres) implement
// the interfaces here and must pass the exported conformance suite in
// store/storetest. This package imports no SQL driver.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/muster-iot/muster/internal/fastjson"
)

// Sentinel errors every backend returns (possibly wrapped).
var (
	// ErrNotFound means no record exists for the kind and ID.
	ErrNotFound = errors.New("store: not found")
	// ErrExists means a write required the record to be absent and it was not.
	ErrExists = errors.New("store: already exists")
	// ErrPrecondition means an If-Match etag did not equal the stored etag.
	ErrPrecondition = errors.New("store: etag mismatch")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store: closed")
)

// Kind names a family of records (a table, in SQL backends).
type Kind string

// The kinds Muster stores.
const (
	KindEnrollment      Kind = "enrollment"
	KindEnrollmentGroup Kind = "enrollmentGroup"
	KindRegistration    Kind = "registration"
	KindCACertificate   Kind = "caCertificate"
	KindDevice          Kind = "device"
	KindTwin            Kind = "twin"
	KindSetting         Kind = "setting"
	KindConfiguration   Kind = "configuration"
)

// Record is one stored document.
type Record struct {
	Kind Kind
	// ID is the lookup key. Callers normalise it (for example lower-case
	// registration IDs) before storing; the document keeps the original.
	ID string
	// Group is an optional secondary key that List can filter on
	// (a registration's enrollment group, a device's hub).
	Group string
	// ETag is assigned by the store on every successful write; callers never set it.
	ETag string
	// Doc is the JSON document.
	Doc json.RawMessage
	// Created and Updated are assigned by the store (UTC).
	Created time.Time
	Updated time.Time
}

// Cond is the precondition of a write.
type Cond struct {
	// IfMatch, when not empty, must equal the stored etag ("*" matches any
	// existing record). A mismatch or a missing record gives ErrPrecondition.
	IfMatch string
	// IfNoneMatch, when true, requires the record to be absent (ErrExists otherwise).
	IfNoneMatch bool
}

// Write is one operation of an atomic batch.
type Write struct {
	Record Record // Kind and ID always; Group and Doc for puts
	Cond   Cond
	Delete bool
}

// ListOptions selects and pages records of one kind, ordered by ID.
type ListOptions struct {
	// Group, when not empty, keeps only records with that group.
	Group string
	// After, when not empty, starts strictly after this ID (a continuation).
	After string
	// Limit caps the result; 0 means the backend default (1000).
	Limit int
}

// Docs is the document store.
type Docs interface {
	// Get returns the record or ErrNotFound.
	Get(ctx context.Context, kind Kind, id string) (Record, error)
	// Put creates or replaces a record under cond and returns it as stored
	// (with its new etag and timestamps; Created is kept on replace).
	Put(ctx context.Context, rec Record, cond Cond) (Record, error)
	// Delete removes a record under an optional If-Match etag. A missing
	// record gives ErrNotFound (or ErrPrecondition when ifMatch is set and not "*").
	Delete(ctx context.Context, kind Kind, id string, ifMatch string) error
	// List returns records of one kind ordered by ID.
	List(ctx context.Context, kind Kind, opts ListOptions) ([]Record, error)
	// Count returns how many records of one kind (and group, if set) exist.
	Count(ctx context.Context, kind Kind, group string) (int, error)
	// Apply runs the writes atomically: all succeed and are durable when it
	// returns nil, or none is applied. The returned records correspond to the
	// writes (deleted ones are returned as given). Errors wrap the sentinel of
	// the first failing write together with its index (see WriteError).
	Apply(ctx context.Context, writes []Write) ([]Record, error)
	// ApplyWithAttempt is Apply that also appends a to the attempt log
	// (see Attempts) in the same transaction: the writes and the attempt
	// are durable together, or neither is. A failing write gives Apply's
	// error; a failing attempt gives AppendAttempt's (store.ErrExists for
	// an ID already in the log), and then no write is applied either.
	ApplyWithAttempt(ctx context.Context, writes []Write, a Attempt) ([]Record, error)
}

// ApplyFunc is a backend's Docs.Apply.
type ApplyFunc func(ctx context.Context, writes []Write) ([]Record, error)

// PutVia is Docs.Put as one write of apply, for backends that put that way.
func PutVia(ctx context.Context, apply ApplyFunc, rec Record, cond Cond) (Record, error) {
	recs, err := apply(ctx, []Write{{Record: rec, Cond: cond}})
	if err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// DeleteVia is Docs.Delete as one write of apply.
func DeleteVia(ctx context.Context, apply ApplyFunc, kind Kind, id, ifMatch string) error {
	_, err := apply(ctx, []Write{{Record: Record{Kind: kind, ID: id}, Cond: Cond{IfMatch: ifMatch}, Delete: true}})
	return err
}

// WriteError says which write of an Apply batch failed.
type WriteError struct {
	Index int
	Kind  Kind
	ID    string
	Err   error
}

func (e *WriteError) Error() string {
	return "store: write " + string(e.Kind) + "/" + e.ID + ": " + e.Err.Error()
}

func (e *WriteError) Unwrap() error { return e.Err }

// Attempt is one registration (or connection) attempt, kept so an operator
// can find out why a device was refused.
type Attempt struct {
	ID             string    `json:"id"` // assigned by the caller (sortable, e.g. time-ordered)
	Time           time.Time `json:"time"`
	RegistrationID string    `json:"registrationId"` // lower-cased lookup key
	Protocol       string    `json:"protocol"`       // https, mqtt, hub-mqtt, …
	Attestation    string    `json:"attestation"`    // symmetricKey, x509, …
	Outcome        string    `json:"outcome"`        // assigned, failed, denied, disabled, …
	Reason         string    `json:"reason,omitempty"`
	Hint           string    `json:"hint,omitempty"`
	EnrollmentKind string    `json:"enrollmentKind,omitempty"` // individual or group
	EnrollmentID   string    `json:"enrollmentId,omitempty"`
	RemoteAddr     string    `json:"remoteAddr,omitempty"`
}

// Attempts is the bounded attempt log.
type Attempts interface {
	// AppendAttempt records an attempt. The backend keeps at most its
	// configured number of attempts overall, dropping the oldest.
	AppendAttempt(ctx context.Context, a Attempt) error
	// Attempts returns the newest attempts for a registration ID (lower-cased),
	// newest first, at most limit (0: 100). An empty ID returns the newest overall.
	Attempts(ctx context.Context, registrationID string, limit int) ([]Attempt, error)
}

// Store is everything a backend provides.
type Store interface {
	Docs
	Attempts
	Close() error
}

// AppendJSON appends a's JSON document as json.Marshal writes it, or
// reports false when a needs encoding/json (see fastjson).
func (a *Attempt) AppendJSON(dst []byte) ([]byte, bool) {
	ok := true
	b := dst
	b = append(b, `{"id":`...)
	b = fastjson.String(b, a.ID, &ok)
	b = append(b, `,"time":`...)
	b = fastjson.Time(b, a.Time, &ok)
	b = append(b, `,"registrationId":`...)
	b = fastjson.String(b, a.RegistrationID, &ok)
	b = append(b, `,"protocol":`...)
	b = fastjson.String(b, a.Protocol, &ok)
	b = append(b, `,"attestation":`...)
	b = fastjson.String(b, a.Attestation, &ok)
	b = append(b, `,"outcome":`...)
	b = fastjson.String(b, a.Outcome, &ok)
	b = fastjson.OmitEmpty(b, `,"reason":`, a.Reason, &ok)
	b = fastjson.OmitEmpty(b, `,"hint":`, a.Hint, &ok)
	b = fastjson.OmitEmpty(b, `,"enrollmentKind":`, a.EnrollmentKind, &ok)
	b = fastjson.OmitEmpty(b, `,"enrollmentId":`, a.EnrollmentID, &ok)
	b = fastjson.OmitEmpty(b, `,"remoteAddr":`, a.RemoteAddr, &ok)
	b = append(b, `}`...)
	return b, ok
}
