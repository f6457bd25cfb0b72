package registry

// What the deployment engine (package rollout) needs from the registry:
// the configurations map of twins, the twin documents target conditions
// are evaluated over, and which device a stored record belongs to (so that
// a store observer can tell the engine which device changed).

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/muster-iot/muster/internal/store"
)

// ConfigurationStatus is a configuration's status on a twin
// (configurations.{id} of the twin JSON).
type ConfigurationStatus struct {
	// Status is "Applied" or "Targeted".
	Status string `json:"status"`
}

// SetConfigurations replaces the configurations map of a device twin
// (moduleID "") or a module twin with statuses (configuration ID to
// "Applied" or "Targeted"; empty removes the map) if the twin's etag is
// still ifMatch ("" or "*": any). The twin's version goes up by one; the
// desired and reported properties are untouched, so no device is notified.
// An unchanged map is not a write: the twin is returned as stored. Errors:
// ErrNotFound, ErrModuleNotFound, ErrPrecondition.
func (h *Hub) SetConfigurations(ctx context.Context, deviceID, moduleID string, statuses map[string]string, ifMatch string) (*Twin, error) {
	ref := h.deviceTwinRef(deviceID)
	if moduleID != "" {
		ref = h.moduleTwinRef(deviceID, moduleID)
	}
	for range casAttempts {
		t, err := h.setConfigurationsOnce(ctx, ref, statuses, ifMatch)
		if errors.Is(err, errLostRace) {
			continue
		}
		return t, err
	}
	return nil, fmt.Errorf("set the configurations of %s: %w: it kept changing concurrently", ref.name, ErrPrecondition)
}

func (h *Hub) setConfigurationsOnce(ctx context.Context, ref twinRef, statuses map[string]string, ifMatch string) (*Twin, error) {
	t, err := ref.read(ctx)
	if err != nil {
		return nil, fmt.Errorf("set configurations: %w", err)
	}
	if ifMatch != "" && ifMatch != "*" && ifMatch != t.ETag {
		return nil, fmt.Errorf("set the configurations of %s: %w: If-Match %q is not the current etag", ref.name, ErrPrecondition, ifMatch)
	}
	if SameConfigurations(t.Configurations, statuses) {
		return t, nil
	}
	var m map[string]ConfigurationStatus
	if len(statuses) > 0 {
		m = make(map[string]ConfigurationStatus, len(statuses))
		for id, s := range statuses {
			m[id] = ConfigurationStatus{Status: s}
		}
	}
	etag := t.ETag
	t.Configurations = m
	t.Version++
	out, err := h.putTwin(ctx, ref, t, etag)
	switch {
	case errors.Is(err, store.ErrPrecondition) && (ifMatch == "" || ifMatch == "*"):
		return nil, errLostRace
	case errors.Is(err, store.ErrPrecondition):
		return nil, fmt.Errorf("set the configurations of %s: %w: it changed concurrently", ref.name, ErrPrecondition)
	case err != nil:
		return nil, err
	}
	t.ETag = out.ETag
	return t, nil
}

// SameConfigurations reports whether a twin's configurations map holds
// exactly statuses.
func SameConfigurations(cur map[string]ConfigurationStatus, statuses map[string]string) bool {
	if len(cur) != len(statuses) {
		return false
	}
	for id, s := range statuses {
		if c, ok := cur[id]; !ok || c.Status != s {
			return false
		}
	}
	return true
}

// TwinDocument returns the service-side document of a device twin that
// queries and target conditions are evaluated over (store.TwinDocument).
// Errors: ErrNotFound.
func (h *Hub) TwinDocument(ctx context.Context, deviceID string) (map[string]any, error) {
	key := h.key(deviceID)
	dev, err := h.docs.Get(ctx, store.KindDevice, key)
	if err == nil {
		var tw store.Record
		if tw, err = h.docs.Get(ctx, store.KindTwin, key); err == nil {
			return store.TwinDocument(dev, tw)
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, deviceID)
	}
	return nil, fmt.Errorf("read the twin document of %s: %w", deviceID, err)
}

// ListModuleTwinDocuments returns a device's module twins (as
// ListModuleTwins) and, for each, the document module target conditions
// and FROM devices.modules queries are evaluated over
// (store.ModuleTwinDocument), in module ID order. A module deleted while
// they are read is left out. Errors: ErrNotFound.
func (h *Hub) ListModuleTwinDocuments(ctx context.Context, deviceID string) ([]*Twin, []map[string]any, error) {
	dev, err := h.docs.Get(ctx, store.KindDevice, h.key(deviceID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("%w: %s", ErrNotFound, deviceID)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read device %s: %w", deviceID, err)
	}
	twins, err := h.ListModuleTwins(ctx, deviceID)
	if err != nil {
		return nil, nil, err
	}
	mods, err := h.docs.List(ctx, KindModule, store.ListOptions{Group: h.moduleGroup(deviceID), Limit: 1000})
	if err != nil {
		return nil, nil, fmt.Errorf("list modules of device %s: %w", deviceID, err)
	}
	twinRecs, err := h.moduleTwinRecords(ctx, deviceID)
	if err != nil {
		return nil, nil, err
	}
	byID := func(recs []store.Record) map[string]store.Record {
		m := make(map[string]store.Record, len(recs))
		for _, r := range recs {
			m[r.ID] = r
		}
		return m
	}
	modByID, twinByID := byID(mods), byID(twinRecs)
	outTwins := make([]*Twin, 0, len(twins))
	docs := make([]map[string]any, 0, len(twins))
	for _, t := range twins {
		id := h.moduleKey(deviceID, t.ModuleID)
		mrec, okM := modByID[id]
		trec, okT := twinByID[id]
		if !okM || !okT {
			continue
		}
		doc, err := store.ModuleTwinDocument(dev, mrec, trec)
		if err != nil {
			return nil, nil, err
		}
		outTwins = append(outTwins, t)
		docs = append(docs, doc)
	}
	return outTwins, docs, nil
}

// RecordDevice tells which device of this hub a stored record belongs to:
// the device ID of a device, twin, module or module twin record of the
// hub, and false for any other record. A store observer uses it to learn
// which device's identity or twins changed.
func (h *Hub) RecordDevice(rec store.Record) (string, bool) {
	prefix := strings.ToLower(h.host) + "/"
	rest, ok := strings.CutPrefix(rec.ID, prefix)
	if !ok || rest == "" {
		return "", false
	}
	switch rec.Kind {
	case store.KindDevice, store.KindTwin:
		// Device IDs cannot contain '/': the rest is the device ID.
		if strings.Contains(rest, "/") {
			return "", false
		}
		return rest, true
	case KindModule, KindModuleTwin:
		dev, mod, ok := strings.Cut(rest, "/")
		if !ok || dev == "" || mod == "" {
			return "", false
		}
		return dev, true
	default:
		return "", false
	}
}
