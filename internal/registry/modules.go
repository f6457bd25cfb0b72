package registry

// Module identities (hub-edge-protocol §4.3).
//
// Storage: a module is a record of kind "module" (KindModule) whose ID is
// lower(hub)+"/"+deviceId+"/"+moduleId and whose group is
// lower(hub)+"/"+deviceId, so one List by group returns a device's
// modules. Device and module IDs cannot contain '/', so the key is
// unambiguous. The stored document is the Module JSON plus the
// generationId of the device it belongs to: a module record left behind by
// an earlier incarnation of the device (a create that raced a delete) is
// ignored, and replaced or removed by the next module write of the device.
//
// Edge devices (capabilities.iotEdge) get the system modules $edgeAgent and
// $edgeHub, with generated SAS keys, in the same atomic write that creates
// the device or turns it into an edge device. Their managedBy is empty: the
// edge agent deletes the identities whose managedBy is "IotEdge", and it
// must never delete its own or the edge hub's.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/store"
)

// KindModule is the store kind of module identities.
const KindModule = store.KindModule

// The system modules of an edge device.
const (
	ModuleEdgeAgent = "$edgeAgent"
	ModuleEdgeHub   = "$edgeHub"
)

// ManagedByIotEdge is the managedBy value of the modules an edge agent
// creates (the edge agent's ModuleIdentityEdgeManagedByValue).
const ManagedByIotEdge = "IotEdge"

// MaxModulesPerDevice is how many module identities a device may have
// (Azure IoT Hub's quota).
const MaxModulesPerDevice = 50

// maxManagedByLen caps the managedBy field.
const maxManagedByLen = 128

// Errors of the module operations. A missing device is ErrNotFound.
var (
	// ErrModuleNotFound means the device has no such module.
	ErrModuleNotFound = errors.New("registry: module not found")
	// ErrModuleExists means a create found a module with the same ID on the device.
	ErrModuleExists = errors.New("registry: module already exists on the device")
	// ErrTooManyModules means a create would exceed MaxModulesPerDevice.
	ErrTooManyModules = errors.New("registry: too many modules on the device")
)

// Module is a module identity in the hub's Module JSON shape.
type Module struct {
	ModuleID                   string         `json:"moduleId"`
	ManagedBy                  string         `json:"managedBy"`
	DeviceID                   string         `json:"deviceId"`
	GenerationID               string         `json:"generationId"`
	ETag                       string         `json:"etag"`
	ConnectionState            string         `json:"connectionState"`
	ConnectionStateUpdatedTime time.Time      `json:"connectionStateUpdatedTime"`
	LastActivityTime           time.Time      `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int            `json:"cloudToDeviceMessageCount"`
	Authentication             Authentication `json:"authentication"`
}

// storedModule is a module's stored document.
type storedModule struct {
	Module
	// DeviceGenerationID is the generationId of the device the module was
	// created for.
	DeviceGenerationID string `json:"deviceGenerationId"`
}

// moduleRecord is a stored module with its record etag.
type moduleRecord struct {
	m    storedModule
	etag string
}

func (h *Hub) moduleGroup(deviceID string) string { return h.key(deviceID) }

func (h *Hub) moduleKey(deviceID, moduleID string) string {
	return h.key(deviceID) + "/" + moduleID
}

// ValidModuleID reports whether id is a valid module ID (the same rules as
// ValidDeviceID).
func ValidModuleID(id string) bool { return ValidDeviceID(id) }

// GetModule returns a module identity. Errors: ErrNotFound (no such
// device), ErrModuleNotFound.
func (h *Hub) GetModule(ctx context.Context, deviceID, moduleID string) (*Module, error) {
	d, err := h.GetDevice(ctx, deviceID)
	if err != nil {
		return nil, fmt.Errorf("get module %s of device %s: %w", moduleID, deviceID, err)
	}
	rec, err := h.readModule(ctx, d, moduleID)
	if err != nil {
		return nil, err
	}
	if rec == nil || rec.m.DeviceGenerationID != d.GenerationID {
		return nil, fmt.Errorf("%w: device %s has no module %s", ErrModuleNotFound, deviceID, moduleID)
	}
	return rec.module(), nil
}

func (r *moduleRecord) module() *Module {
	m := r.m.Module
	m.ETag = r.etag
	return &m
}

// readModule returns the stored record of a module of d (of any device
// generation), or nil when there is none.
func (h *Hub) readModule(ctx context.Context, d *Device, moduleID string) (*moduleRecord, error) {
	rec, err := h.docs.Get(ctx, KindModule, h.moduleKey(d.DeviceID, moduleID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read module %s of device %s: %w", moduleID, d.DeviceID, err)
	}
	var m storedModule
	if err := json.Unmarshal(rec.Doc, &m); err != nil {
		return nil, fmt.Errorf("decode module %s of device %s: %w", moduleID, d.DeviceID, err)
	}
	return &moduleRecord{m: m, etag: rec.ETag}, nil
}

// moduleRecords returns every stored module record of a device ID, of any
// device generation, in module ID order.
func (h *Hub) moduleRecords(ctx context.Context, deviceID string) ([]moduleRecord, error) {
	var out []moduleRecord
	after := ""
	// Bounded: each page advances strictly; a device holds at most
	// MaxModulesPerDevice current modules plus stale ones its writes remove.
	for range 1000 {
		recs, err := h.docs.List(ctx, KindModule, store.ListOptions{Group: h.moduleGroup(deviceID), After: after, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("list modules of device %s: %w", deviceID, err)
		}
		for _, r := range recs {
			var m storedModule
			if err := json.Unmarshal(r.Doc, &m); err != nil {
				return nil, fmt.Errorf("decode module record %s: %w", r.ID, err)
			}
			out = append(out, moduleRecord{m: m, etag: r.ETag})
		}
		if len(recs) < 1000 {
			return out, nil
		}
		after = recs[len(recs)-1].ID
	}
	return nil, fmt.Errorf("list modules of device %s: more than a million module records", deviceID)
}

// ListModules returns a device's module identities in module ID order.
// Errors: ErrNotFound (no such device).
func (h *Hub) ListModules(ctx context.Context, deviceID string) ([]*Module, error) {
	d, err := h.GetDevice(ctx, deviceID)
	if err != nil {
		return nil, fmt.Errorf("list modules: %w", err)
	}
	recs, err := h.moduleRecords(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	out := make([]*Module, 0, len(recs))
	for i := range recs {
		if recs[i].m.DeviceGenerationID == d.GenerationID {
			out = append(out, recs[i].module())
		}
	}
	return out, nil
}

// PutModule creates (ifMatch "") or updates (ifMatch "*" or the module's
// etag) a module identity, as the hub service API's PUT
// /devices/{id}/modules/{mid} does. Only managedBy and authentication of in
// are used; the rest is the hub's. Authentication follows the device rules
// (a "sas" module without keys gets generated ones). Module IDs starting
// with '$' are reserved for system modules: they cannot be created, only
// updated. Errors: ErrNotFound (no such device), ErrModuleExists (create
// of an existing module), ErrModuleNotFound (update of a missing one),
// ErrTooManyModules, ErrPrecondition, or an *InvalidError naming the field.
func (h *Hub) PutModule(ctx context.Context, in *Module, ifMatch string) (*Module, error) {
	if in == nil {
		return nil, invalid("module", "the module document is missing")
	}
	if !ValidDeviceID(in.DeviceID) {
		return nil, invalid("deviceId", "%q is not 1 to %d characters from A-Z a-z 0-9 - : . + %% _ # * ? ! ( ) , = @ ; $ '", in.DeviceID, MaxDeviceIDLen)
	}
	if !ValidModuleID(in.ModuleID) {
		return nil, invalid("moduleId", "%q is not 1 to %d characters from A-Z a-z 0-9 - : . + %% _ # * ? ! ( ) , = @ ; $ '", in.ModuleID, MaxDeviceIDLen)
	}
	if len(in.ManagedBy) > maxManagedByLen {
		return nil, invalid("managedBy", "is %d bytes, over the %d-byte limit", len(in.ManagedBy), maxManagedByLen)
	}
	auth, err := normalizeAuth(in.Authentication)
	if err != nil {
		return nil, err
	}
	if ifMatch == "" && strings.HasPrefix(in.ModuleID, "$") {
		return nil, invalid("moduleId", "%q starts with '$', which is reserved for the system modules the hub creates", in.ModuleID)
	}
	for range casAttempts {
		m, err := h.putModuleOnce(ctx, in, auth, ifMatch)
		if errors.Is(err, errLostRace) {
			continue
		}
		return m, err
	}
	return nil, fmt.Errorf("put module %s of device %s: %w: it kept changing concurrently", in.ModuleID, in.DeviceID, ErrPrecondition)
}

func (h *Hub) putModuleOnce(ctx context.Context, in *Module, auth Authentication, ifMatch string) (*Module, error) {
	d, err := h.GetDevice(ctx, in.DeviceID)
	if err != nil {
		return nil, fmt.Errorf("put module %s: %w", in.ModuleID, err)
	}
	recs, err := h.moduleRecords(ctx, d.DeviceID)
	if err != nil {
		return nil, err
	}
	twinEtags, err := h.moduleTwinEtags(ctx, d.DeviceID)
	if err != nil {
		return nil, err
	}
	var (
		cur    *moduleRecord
		writes []store.Write
		count  int
	)
	for i := range recs {
		r := &recs[i]
		switch {
		case r.m.DeviceGenerationID != d.GenerationID:
			// Left behind by an earlier device of the same ID: remove it
			// and its twin.
			id := h.moduleKey(d.DeviceID, r.m.ModuleID)
			writes = append(writes, store.Write{Record: store.Record{Kind: KindModule, ID: id}, Cond: store.Cond{IfMatch: r.etag}, Delete: true})
			if e, ok := twinEtags[id]; ok && r.m.ModuleID != in.ModuleID {
				writes = append(writes, store.Write{Record: store.Record{Kind: KindModuleTwin, ID: id}, Cond: store.Cond{IfMatch: e}, Delete: true})
			}
		case r.m.ModuleID == in.ModuleID:
			cur = r
			count++
		default:
			count++
		}
	}
	var m *Module
	cond := store.Cond{IfNoneMatch: true}
	if ifMatch == "" {
		if cur != nil {
			return nil, fmt.Errorf("create module %s of device %s: %w", in.ModuleID, d.DeviceID, ErrModuleExists)
		}
		if count >= MaxModulesPerDevice {
			return nil, fmt.Errorf("create module %s of device %s: %w: it has %d, the most allowed", in.ModuleID, d.DeviceID, ErrTooManyModules, count)
		}
		m = newModule(d.DeviceID, in.ModuleID)
	} else {
		if cur == nil {
			return nil, fmt.Errorf("update module: %w: device %s has no module %s", ErrModuleNotFound, d.DeviceID, in.ModuleID)
		}
		if ifMatch != "*" && ifMatch != cur.etag {
			return nil, fmt.Errorf("update module %s of device %s: %w: If-Match %q is not the current etag", in.ModuleID, d.DeviceID, ErrPrecondition, ifMatch)
		}
		m = cur.module()
		cond = store.Cond{IfMatch: cur.etag}
	}
	m.ManagedBy = in.ManagedBy
	m.Authentication = auth
	rec, err := h.moduleStoreRecord(d, m)
	if err != nil {
		return nil, err
	}
	// Drop a stale record of the same ID: the new record replaces it.
	for i, w := range writes {
		if w.Record.ID == rec.ID {
			cond = store.Cond{IfMatch: w.Cond.IfMatch}
			writes = append(writes[:i], writes[i+1:]...)
			break
		}
	}
	writes = append(writes, store.Write{Record: rec, Cond: cond})
	moduleAt := len(writes) - 1
	if ifMatch == "" {
		// A new module starts with an empty twin, replacing any twin a
		// stale record of the same ID left.
		tw, err := h.moduleTwinWrite(d.DeviceID, m.ModuleID, moduleTwinCond(twinEtags, rec.ID))
		if err != nil {
			return nil, err
		}
		writes = append(writes, tw)
	}
	out, err := h.docs.Apply(ctx, writes)
	switch {
	case errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrPrecondition) || errors.Is(err, store.ErrNotFound):
		if ifMatch != "" && ifMatch != "*" {
			return nil, fmt.Errorf("update module %s of device %s: %w: it changed concurrently", in.ModuleID, d.DeviceID, ErrPrecondition)
		}
		return nil, errLostRace // look again: a create then reports ErrModuleExists
	case err != nil:
		return nil, fmt.Errorf("store module %s of device %s: %w", in.ModuleID, d.DeviceID, err)
	}
	m.ETag = out[moduleAt].ETag
	return m, nil
}

// newModule returns a fresh module identity without credentials.
func newModule(deviceID, moduleID string) *Module {
	return &Module{ModuleID: moduleID, DeviceID: deviceID, GenerationID: generationID(), ConnectionState: "Disconnected"}
}

// moduleStoreRecord encodes m, a module of device d, as a store record.
func (h *Hub) moduleStoreRecord(d *Device, m *Module) (store.Record, error) {
	s := storedModule{Module: *m, DeviceGenerationID: d.GenerationID}
	s.ETag = ""
	doc, err := json.Marshal(&s)
	if err != nil {
		return store.Record{}, fmt.Errorf("encode module %s of device %s: %w", m.ModuleID, d.DeviceID, err)
	}
	return store.Record{Kind: KindModule, ID: h.moduleKey(d.DeviceID, m.ModuleID), Group: h.moduleGroup(d.DeviceID), Doc: doc}, nil
}

// RemoveModule deletes a module identity, as the hub service API's DELETE
// /devices/{id}/modules/{mid} does. ifMatch "" or "*" deletes whatever is
// stored; an etag must be the module's current one. Errors: ErrNotFound
// (no such device), ErrModuleNotFound, ErrPrecondition.
func (h *Hub) RemoveModule(ctx context.Context, deviceID, moduleID, ifMatch string) error {
	for range casAttempts {
		m, err := h.GetModule(ctx, deviceID, moduleID)
		if err != nil {
			return fmt.Errorf("remove module: %w", err)
		}
		if ifMatch != "" && ifMatch != "*" && ifMatch != m.ETag {
			return fmt.Errorf("remove module %s of device %s: %w: If-Match %q is not the current etag", moduleID, deviceID, ErrPrecondition, ifMatch)
		}
		err = h.deleteModuleAndTwin(ctx, deviceID, moduleID, m.ETag)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrPrecondition) || errors.Is(err, store.ErrNotFound):
			if ifMatch != "" && ifMatch != "*" {
				return fmt.Errorf("remove module %s of device %s: %w: it changed concurrently", moduleID, deviceID, ErrPrecondition)
			}
			continue
		default:
			return fmt.Errorf("remove module %s of device %s: %w", moduleID, deviceID, err)
		}
	}
	return fmt.Errorf("remove module %s of device %s: %w: it kept changing concurrently", moduleID, deviceID, ErrPrecondition)
}

// deleteModuleAndTwin deletes a module record whose etag is etag, and its
// twin record if there is one, atomically.
func (h *Hub) deleteModuleAndTwin(ctx context.Context, deviceID, moduleID, etag string) error {
	id := h.moduleKey(deviceID, moduleID)
	writes := []store.Write{{Record: store.Record{Kind: KindModule, ID: id}, Cond: store.Cond{IfMatch: etag}, Delete: true}}
	// The twin is deleted whatever its etag ("*": it exists), so that a
	// concurrent reported-property write cannot fail the delete.
	switch _, err := h.docs.Get(ctx, KindModuleTwin, id); {
	case err == nil:
		writes = append(writes, store.Write{Record: store.Record{Kind: KindModuleTwin, ID: id}, Cond: store.Cond{IfMatch: "*"}, Delete: true})
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("read twin of module %s of device %s: %w", moduleID, deviceID, err)
	}
	_, err := h.docs.Apply(ctx, writes)
	return err
}

// moduleDeletes returns the writes that delete every stored module record
// (guarded by its etag) and module twin record (that it still exists) of a
// device ID: the cascade of a device delete.
func (h *Hub) moduleDeletes(ctx context.Context, deviceID string) ([]store.Write, error) {
	recs, err := h.moduleRecords(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	twins, err := h.moduleTwinRecords(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	writes := make([]store.Write, 0, len(recs)+len(twins))
	for _, r := range recs {
		writes = append(writes, store.Write{Record: store.Record{Kind: KindModule, ID: h.moduleKey(deviceID, r.m.ModuleID)}, Cond: store.Cond{IfMatch: r.etag}, Delete: true})
	}
	for _, r := range twins { // "*": a concurrent twin write must not fail the delete
		writes = append(writes, store.Write{Record: store.Record{Kind: KindModuleTwin, ID: r.ID}, Cond: store.Cond{IfMatch: "*"}, Delete: true})
	}
	return writes, nil
}

// edgeModuleWrites returns the writes that create the system modules
// ($edgeAgent, $edgeHub) d lacks, with their empty twins, when d is an
// edge device. fresh says d is being created, so any stored module or
// module twin record is stale and is overwritten.
func (h *Hub) edgeModuleWrites(ctx context.Context, d *Device, fresh bool) ([]store.Write, error) {
	if !d.Capabilities.IoTEdge {
		return nil, nil
	}
	var writes []store.Write
	for _, id := range []string{ModuleEdgeAgent, ModuleEdgeHub} {
		cond, twinCond := store.Cond{}, store.Cond{}
		if !fresh {
			rec, err := h.readModule(ctx, d, id)
			if err != nil {
				return nil, err
			}
			switch {
			case rec == nil:
				cond = store.Cond{IfNoneMatch: true}
			case rec.m.DeviceGenerationID == d.GenerationID:
				continue // present already
			default:
				cond = store.Cond{IfMatch: rec.etag}
			}
			if twinCond, err = h.storedModuleTwinCond(ctx, d.DeviceID, id); err != nil {
				return nil, err
			}
		}
		m := newModule(d.DeviceID, id)
		auth, err := normalizeAuth(Authentication{Type: provision.AuthSAS})
		if err != nil {
			return nil, fmt.Errorf("generate keys of module %s of device %s: %w", id, d.DeviceID, err)
		}
		m.Authentication = auth
		rec, err := h.moduleStoreRecord(d, m)
		if err != nil {
			return nil, err
		}
		tw, err := h.moduleTwinWrite(d.DeviceID, id, twinCond)
		if err != nil {
			return nil, err
		}
		writes = append(writes, store.Write{Record: rec, Cond: cond}, tw)
	}
	return writes, nil
}

// storedModuleTwinCond is the condition that replaces the stored twin
// record of a module ID, or requires there to be none.
func (h *Hub) storedModuleTwinCond(ctx context.Context, deviceID, moduleID string) (store.Cond, error) {
	rec, err := h.docs.Get(ctx, KindModuleTwin, h.moduleKey(deviceID, moduleID))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Cond{IfNoneMatch: true}, nil
	case err != nil:
		return store.Cond{}, fmt.Errorf("read twin of module %s of device %s: %w", moduleID, deviceID, err)
	}
	return store.Cond{IfMatch: rec.ETag}, nil
}
