package registry

// Connection state and last activity of device and module identities
// (hub-edge-protocol §4.2, §4.3). They live in the identity's own record,
// so twin queries see connectionState as they see status; the hub records
// them, and the service API cannot write them (PutDevice keeps the stored
// values).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

// Connection states.
const (
	StateConnected    = "Connected"
	StateDisconnected = "Disconnected"
)

// Presence is a change in an identity's connection state or activity.
type Presence struct {
	// State, when not empty, is the identity's connection state
	// (StateConnected or StateDisconnected) as of StateTime. A state older
	// than the stored connectionStateUpdatedTime is ignored, so updates
	// that arrive out of order do not undo newer ones.
	State     string
	StateTime time.Time
	// Activity, when not zero, is a time the identity was active (it
	// connected, sent or acknowledged a message); lastActivityTime only
	// moves forward.
	Activity time.Time
}

// RecordPresence writes a presence change into the record of a device
// (moduleID "") or module identity. A change that alters nothing is not
// written. Errors: ErrNotFound or ErrModuleNotFound when the identity is
// gone, *InvalidError for an unknown state, or a storage error.
func (h *Hub) RecordPresence(ctx context.Context, deviceID, moduleID string, p Presence) error {
	if p.State != "" && p.State != StateConnected && p.State != StateDisconnected {
		return invalid("connectionState", "%q is not %q or %q", p.State, StateConnected, StateDisconnected)
	}
	kind, id, missing := store.KindDevice, h.key(deviceID), ErrNotFound
	if moduleID != "" {
		kind, id, missing = KindModule, h.moduleKey(deviceID, moduleID), ErrModuleNotFound
	}
	for range casAttempts {
		rec, err := h.docs.Get(ctx, kind, id)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("record presence of %s: %w", id, missing)
		}
		if err != nil {
			return fmt.Errorf("record presence of %s: %w", id, err)
		}
		doc, changed, err := applyPresence(rec.Doc, moduleID != "", p)
		if err != nil {
			return fmt.Errorf("record presence of %s: %w", id, err)
		}
		if !changed {
			return nil
		}
		_, err = h.docs.Put(ctx, store.Record{Kind: kind, ID: id, Group: rec.Group, Doc: doc}, store.Cond{IfMatch: rec.ETag})
		switch {
		case errors.Is(err, store.ErrPrecondition):
			continue // changed meanwhile: apply to the new version
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("record presence of %s: %w", id, missing)
		case err != nil:
			return fmt.Errorf("record presence of %s: %w", id, err)
		}
		return nil
	}
	return fmt.Errorf("record presence of %s: %w: it kept changing concurrently", id, ErrPrecondition)
}

// applyPresence applies p to a stored device (module false) or module
// document and reports whether it changed. The document is decoded into
// its own type and encoded again, as every other writer of it does (the
// record's etag lives outside the document).
func applyPresence(doc json.RawMessage, module bool, p Presence) (json.RawMessage, bool, error) {
	var (
		out                 any
		state               *string
		stateTime, activity *time.Time
	)
	if module {
		var m storedModule
		if err := json.Unmarshal(doc, &m); err != nil {
			return nil, false, fmt.Errorf("decode module: %w", err)
		}
		m.ETag = ""
		out, state, stateTime, activity = &m, &m.ConnectionState, &m.ConnectionStateUpdatedTime, &m.LastActivityTime
	} else {
		var d Device
		if err := json.Unmarshal(doc, &d); err != nil {
			return nil, false, fmt.Errorf("decode device: %w", err)
		}
		d.ETag = ""
		out, state, stateTime, activity = &d, &d.ConnectionState, &d.ConnectionStateUpdatedTime, &d.LastActivityTime
	}
	changed := false
	if p.State != "" && !p.StateTime.Before(*stateTime) && (p.State != *state || !p.StateTime.Equal(*stateTime)) {
		*state, *stateTime, changed = p.State, p.StateTime.UTC(), true
	}
	if !p.Activity.IsZero() && p.Activity.After(*activity) {
		*activity, changed = p.Activity.UTC(), true
	}
	if !changed {
		return nil, false, nil
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, false, fmt.Errorf("encode: %w", err)
	}
	return b, true, nil
}
