package registry

// Module twins (hub-edge-protocol §4.4 "module get/merge/replace", §5.4).
//
// Storage: a module twin is a record of kind "moduleTwin" (KindModuleTwin)
// with the ID and group of its module's record (lower(hub)+"/"+deviceId+
// "/"+moduleId, group lower(hub)+"/"+deviceId). Its document is the Twin
// JSON with moduleId set. It is written in the same atomic batch that
// creates the module identity and deleted in the batch that deletes the
// module (or the device), so a twin record always belongs to the module
// record stored under the same ID. A module stored before module twins
// existed gets its empty twin stored on first read.
//
// Device and module twins share one read-modify-write implementation
// (updateTwin, patchReported); a twinRef says which record to use.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/muster-iot/muster/internal/store"
)

// KindModuleTwin is the store kind of module twins.
const KindModuleTwin = store.KindModuleTwin

// twinRef addresses one stored twin, a device's or a module's.
type twinRef struct {
	kind      store.Kind
	id, group string
	// name names the twin in errors: "twin dev1", "twin of module m of device dev1".
	name string
	// read returns the current twin with its record etag; a missing
	// device or module is an error wrapping ErrNotFound or ErrModuleNotFound.
	read func(context.Context) (*Twin, error)
}

func (h *Hub) deviceTwinRef(deviceID string) twinRef {
	return twinRef{kind: store.KindTwin, id: h.key(deviceID), group: strings.ToLower(h.host), name: "twin " + deviceID,
		read: func(ctx context.Context) (*Twin, error) { return h.GetTwin(ctx, deviceID) }}
}

func (h *Hub) moduleTwinRef(deviceID, moduleID string) twinRef {
	return twinRef{kind: KindModuleTwin, id: h.moduleKey(deviceID, moduleID), group: h.moduleGroup(deviceID),
		name: "twin of module " + moduleID + " of device " + deviceID,
		read: func(ctx context.Context) (*Twin, error) { return h.GetModuleTwin(ctx, deviceID, moduleID) }}
}

// putTwin stores t (whose ETag is ignored) under ref if the stored etag is
// still etag, and returns the stored record. A changed twin is an error
// wrapping store.ErrPrecondition.
func (h *Hub) putTwin(ctx context.Context, ref twinRef, t *Twin, etag string) (store.Record, error) {
	stored := *t
	stored.ETag = ""
	doc, err := json.Marshal(&stored)
	if err != nil {
		return store.Record{}, fmt.Errorf("encode %s: %w", ref.name, err)
	}
	out, err := h.docs.Put(ctx, store.Record{Kind: ref.kind, ID: ref.id, Group: ref.group, Doc: doc}, store.Cond{IfMatch: etag})
	if err != nil {
		return store.Record{}, fmt.Errorf("update %s: %w", ref.name, err)
	}
	return out, nil
}

// newModuleTwin is the twin a module identity starts with: no tags, empty
// desired and reported properties, each at version 1.
func newModuleTwin(deviceID, moduleID string) *Twin {
	return &Twin{DeviceID: deviceID, ModuleID: moduleID, Version: 1, Tags: json.RawMessage(`{}`),
		Properties: TwinProperties{Desired: json.RawMessage(`{"$version":1}`), Reported: json.RawMessage(`{"$version":1}`)}}
}

// moduleTwinWrite returns the write that stores the fresh twin of a module
// being created, under cond (see moduleTwinCond).
func (h *Hub) moduleTwinWrite(deviceID, moduleID string, cond store.Cond) (store.Write, error) {
	doc, err := json.Marshal(newModuleTwin(deviceID, moduleID))
	if err != nil {
		return store.Write{}, fmt.Errorf("encode twin of module %s of device %s: %w", moduleID, deviceID, err)
	}
	return store.Write{Record: store.Record{Kind: KindModuleTwin, ID: h.moduleKey(deviceID, moduleID), Group: h.moduleGroup(deviceID), Doc: doc}, Cond: cond}, nil
}

// moduleTwinCond is the condition that replaces whatever twin record etags
// (from moduleTwinEtags) holds under id, or requires there to be none.
func moduleTwinCond(etags map[string]string, id string) store.Cond {
	if e, ok := etags[id]; ok {
		return store.Cond{IfMatch: e}
	}
	return store.Cond{IfNoneMatch: true}
}

// moduleTwinEtags returns the etags of every stored module twin record of
// a device ID, by record ID.
func (h *Hub) moduleTwinEtags(ctx context.Context, deviceID string) (map[string]string, error) {
	recs, err := h.moduleTwinRecords(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(recs))
	for _, r := range recs {
		out[r.ID] = r.ETag
	}
	return out, nil
}

// moduleTwinRecords returns every stored module twin record of a device ID
// in record ID order.
func (h *Hub) moduleTwinRecords(ctx context.Context, deviceID string) ([]store.Record, error) {
	var out []store.Record
	after := ""
	// Bounded like moduleRecords: each page advances strictly.
	for range 1000 {
		recs, err := h.docs.List(ctx, KindModuleTwin, store.ListOptions{Group: h.moduleGroup(deviceID), After: after, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("list module twins of device %s: %w", deviceID, err)
		}
		out = append(out, recs...)
		if len(recs) < 1000 {
			return out, nil
		}
		after = recs[len(recs)-1].ID
	}
	return nil, fmt.Errorf("list module twins of device %s: more than a million records", deviceID)
}

// decodeModuleTwin decodes a stored module twin record.
func decodeModuleTwin(rec store.Record) (*Twin, error) {
	var t Twin
	if err := json.Unmarshal(rec.Doc, &t); err != nil {
		return nil, fmt.Errorf("decode module twin %s: %w", rec.ID, err)
	}
	t.ETag = rec.ETag
	return &t, nil
}

// GetModuleTwin returns a module's twin. Errors: ErrNotFound (no such
// device), ErrModuleNotFound.
func (h *Hub) GetModuleTwin(ctx context.Context, deviceID, moduleID string) (*Twin, error) {
	if _, err := h.GetModule(ctx, deviceID, moduleID); err != nil {
		return nil, fmt.Errorf("get module twin: %w", err)
	}
	rec, err := h.docs.Get(ctx, KindModuleTwin, h.moduleKey(deviceID, moduleID))
	if errors.Is(err, store.ErrNotFound) {
		return h.storeMissingModuleTwin(ctx, deviceID, moduleID)
	}
	if err != nil {
		return nil, fmt.Errorf("read twin of module %s of device %s: %w", moduleID, deviceID, err)
	}
	return decodeModuleTwin(rec)
}

// storeMissingModuleTwin stores the empty twin of a module that has none
// (one created before module twins were stored) and returns it; when
// another writer stored it first, that one is returned.
func (h *Hub) storeMissingModuleTwin(ctx context.Context, deviceID, moduleID string) (*Twin, error) {
	w, err := h.moduleTwinWrite(deviceID, moduleID, store.Cond{IfNoneMatch: true})
	if err != nil {
		return nil, err
	}
	out, err := h.docs.Put(ctx, w.Record, w.Cond)
	if errors.Is(err, store.ErrExists) {
		out, err = h.docs.Get(ctx, KindModuleTwin, w.Record.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("store the empty twin of module %s of device %s: %w", moduleID, deviceID, err)
	}
	return decodeModuleTwin(out)
}

// ListModuleTwins returns the twins of a device's modules in module ID
// order. Errors: ErrNotFound (no such device).
func (h *Hub) ListModuleTwins(ctx context.Context, deviceID string) ([]*Twin, error) {
	mods, err := h.ListModules(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	recs, err := h.moduleTwinRecords(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]store.Record, len(recs))
	for _, r := range recs {
		byID[r.ID] = r
	}
	out := make([]*Twin, 0, len(mods))
	for _, m := range mods {
		var t *Twin
		if rec, ok := byID[h.moduleKey(deviceID, m.ModuleID)]; ok {
			t, err = decodeModuleTwin(rec)
		} else {
			t, err = h.storeMissingModuleTwin(ctx, deviceID, m.ModuleID)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// PatchModuleTwin merge-patches a module twin's tags and desired
// properties, as PATCH /twins/{id}/modules/{mid} does; versions, ifMatch,
// limits and errors are as for PatchTwin, plus ErrModuleNotFound.
func (h *Hub) PatchModuleTwin(ctx context.Context, deviceID, moduleID string, u TwinUpdate, ifMatch string) (*Twin, error) {
	return h.updateTwin(ctx, h.moduleTwinRef(deviceID, moduleID), u, ifMatch, false)
}

// ReplaceModuleTwin replaces a module twin's tags and desired properties
// wholesale, as PUT /twins/{id}/modules/{mid} does; reported properties
// are kept. As ReplaceTwin, plus ErrModuleNotFound.
func (h *Hub) ReplaceModuleTwin(ctx context.Context, deviceID, moduleID string, u TwinUpdate, ifMatch string) (*Twin, error) {
	return h.updateTwin(ctx, h.moduleTwinRef(deviceID, moduleID), u, ifMatch, true)
}

// PatchModuleReported merge-patches a module twin's reported properties,
// as a module's $iothub/twin/PATCH/properties/reported/ does. As
// PatchReported, plus ErrModuleNotFound.
func (h *Hub) PatchModuleReported(ctx context.Context, deviceID, moduleID string, patch json.RawMessage) (*Twin, error) {
	return h.patchReported(ctx, h.moduleTwinRef(deviceID, moduleID), patch)
}
