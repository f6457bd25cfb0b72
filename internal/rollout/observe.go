package rollout

import (
	"context"
	"sync/atomic"

	"github.com/muster-iot/muster/internal/store"
)

// ObservedDocs is a store.Docs that tells an Engine which records were
// written: after every successful Put, Delete and Apply, each written
// record is passed to the engine, which queues the device it belongs to.
// The registry and the provisioning service write through it, so every
// path that creates or changes an identity or a twin reaches the engine
// (including identities the provisioning service creates with an
// enrollment's initial twin, in its own batch).
//
// It is created before the engine (the registry the engine reads needs
// it) and attached with Observe; writes before that are not observed,
// which the engine's first sweep makes up for.
type ObservedDocs struct {
	store.Docs
	engine atomic.Pointer[Engine]
}

// NewObservedDocs wraps docs.
func NewObservedDocs(docs store.Docs) *ObservedDocs { return &ObservedDocs{Docs: docs} }

// Observe attaches the engine that is told about writes.
func (o *ObservedDocs) Observe(e *Engine) { o.engine.Store(e) }

func (o *ObservedDocs) note(recs ...store.Record) {
	e := o.engine.Load()
	if e == nil {
		return
	}
	for _, r := range recs {
		e.noteRecord(r)
	}
}

// Put stores a record (see store.Docs) and tells the engine.
func (o *ObservedDocs) Put(ctx context.Context, rec store.Record, cond store.Cond) (store.Record, error) {
	out, err := o.Docs.Put(ctx, rec, cond)
	if err == nil {
		o.note(rec)
	}
	return out, err
}

// Delete removes a record (see store.Docs) and tells the engine.
func (o *ObservedDocs) Delete(ctx context.Context, kind store.Kind, id string, ifMatch string) error {
	err := o.Docs.Delete(ctx, kind, id, ifMatch)
	if err == nil {
		o.note(store.Record{Kind: kind, ID: id})
	}
	return err
}

// ApplyWithAttempt runs a batch with an attempt (see store.Docs) and tells
// the engine about every record in it.
func (o *ObservedDocs) ApplyWithAttempt(ctx context.Context, writes []store.Write, a store.Attempt) ([]store.Record, error) {
	out, err := o.Docs.ApplyWithAttempt(ctx, writes, a)
	o.noteApplied(writes, err)
	return out, err
}

// Apply runs a batch (see store.Docs) and tells the engine about every
// record in it.
func (o *ObservedDocs) Apply(ctx context.Context, writes []store.Write) ([]store.Record, error) {
	out, err := o.Docs.Apply(ctx, writes)
	o.noteApplied(writes, err)
	return out, err
}

// noteApplied tells the engine about every record of a batch that was
// applied (err nil).
func (o *ObservedDocs) noteApplied(writes []store.Write, err error) {
	if err != nil {
		return
	}
	for _, w := range writes {
		o.note(w.Record)
	}
}
