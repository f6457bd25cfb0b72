package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store"
)

// KindPendingContent is the store kind of per-device modules content
// waiting for its modules: one record per device (ID lower(hub)+"/"+
// deviceId, group lower(hub)).
const KindPendingContent store.Kind = "pendingModulesContent"

// pendingContent is the modules content applied to a device whose module
// identities did not exist yet.
type pendingContent struct {
	DeviceID string `json:"deviceId"`
	// GenerationID is the device's: content left behind by a deleted
	// device of the same ID is ignored and removed.
	GenerationID   string                        `json:"generationId"`
	ModulesContent map[string]deploy.TwinContent `json:"modulesContent"`
	etag           string
}

func (e *Engine) pendingKey(deviceID string) string { return e.o.Configurations.hub + "/" + deviceID }

// readPending returns the content waiting for modules of d, nil when none.
func (e *Engine) readPending(ctx context.Context, d *registry.Device) (*pendingContent, error) {
	rec, err := e.o.Docs.Get(ctx, KindPendingContent, e.pendingKey(d.DeviceID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the modules content waiting for device %s: %w", d.DeviceID, err)
	}
	var p pendingContent
	if err := json.Unmarshal(rec.Doc, &p); err != nil {
		return nil, fmt.Errorf("decode the modules content waiting for device %s: %w", d.DeviceID, err)
	}
	p.etag = rec.ETag
	if p.GenerationID != d.GenerationID {
		if err := e.deletePending(ctx, &p); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return &p, nil
}

// writePending replaces the content waiting for modules of d (none:
// removes it).
func (e *Engine) writePending(ctx context.Context, d *registry.Device, waiting map[string]deploy.TwinContent) error {
	key := e.pendingKey(d.DeviceID)
	if len(waiting) == 0 {
		err := e.o.Docs.Delete(ctx, KindPendingContent, key, "")
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("remove the modules content waiting for device %s: %w", d.DeviceID, err)
		}
		return nil
	}
	doc, err := json.Marshal(&pendingContent{DeviceID: d.DeviceID, GenerationID: d.GenerationID, ModulesContent: waiting})
	if err != nil {
		return fmt.Errorf("encode the modules content waiting for device %s: %w", d.DeviceID, err)
	}
	e.contentWaits()
	if _, err := e.o.Docs.Put(ctx, store.Record{Kind: KindPendingContent, ID: key, Group: e.o.Configurations.hub, Doc: doc}, store.Cond{}); err != nil {
		return fmt.Errorf("store the modules content waiting for device %s: %w", d.DeviceID, err)
	}
	// The modules may have been created between the check and the write.
	e.Notify(d.DeviceID)
	return nil
}

// deletePending removes p if it is unchanged.
func (e *Engine) deletePending(ctx context.Context, p *pendingContent) error {
	err := e.o.Docs.Delete(ctx, KindPendingContent, e.pendingKey(p.DeviceID), p.etag)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrPrecondition) {
		return fmt.Errorf("remove the modules content waiting for device %s: %w", p.DeviceID, err)
	}
	return nil
}

// dropPending removes the content of written modules from p; a p changed
// meanwhile (new per-device content) is left alone.
func (e *Engine) dropPending(ctx context.Context, p *pendingContent, written []string) error {
	rest := make(map[string]deploy.TwinContent, len(p.ModulesContent))
	for name, c := range p.ModulesContent {
		rest[name] = c
	}
	for _, name := range written {
		delete(rest, name)
	}
	if len(rest) == 0 {
		return e.deletePending(ctx, p)
	}
	doc, err := json.Marshal(&pendingContent{DeviceID: p.DeviceID, GenerationID: p.GenerationID, ModulesContent: rest})
	if err != nil {
		return fmt.Errorf("encode the modules content waiting for device %s: %w", p.DeviceID, err)
	}
	_, err = e.o.Docs.Put(ctx, store.Record{Kind: KindPendingContent, ID: e.pendingKey(p.DeviceID), Group: e.o.Configurations.hub, Doc: doc}, store.Cond{IfMatch: p.etag})
	if err != nil && !errors.Is(err, store.ErrPrecondition) {
		return fmt.Errorf("update the modules content waiting for device %s: %w", p.DeviceID, err)
	}
	return nil
}
