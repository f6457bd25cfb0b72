package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/twin"
)

// evaluation is one device's evaluation: whether it found anything to
// change, and whether it may write (a device whose twins keep changing
// back is evaluated without writing until the next sweep).
type evaluation struct {
	changed bool
	frozen  bool
}

// evaluate resolves the configurations for one device and writes what
// differs from its twins. It reports whether anything differed.
func (e *Engine) evaluate(ctx context.Context, id string, frozen bool) (bool, error) {
	if e.nothingToDo() {
		return false, nil
	}
	reg := e.o.Registry
	d, err := reg.GetDevice(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return false, nil // deleted: nothing to apply
	}
	if err != nil {
		return false, err
	}
	snap := e.current()
	doc, err := reg.TwinDocument(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	tw, err := reg.GetTwin(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	edge := d.Capabilities.IoTEdge
	r, err := deploy.Resolve(deploy.TargetInfo{DeviceID: id, IoTEdge: edge}, snap.configs, snap.matcher(doc))
	if err != nil {
		return false, err
	}
	ev := &evaluation{frozen: frozen}
	if err := e.applyDeviceTwin(ctx, ev, tw, r.ADM); err != nil {
		return ev.changed, err
	}
	if !edge && !snap.modules {
		return ev.changed, nil
	}
	var pending *pendingContent
	if edge {
		if pending, err = e.readPending(ctx, d); err != nil {
			return ev.changed, err
		}
		if pending != nil && r.Edge.Base != "" {
			// Automatic deployments replace per-device content.
			if err := e.deletePending(ctx, pending); err != nil {
				return ev.changed, err
			}
			pending = nil
		}
	}
	twins, docs, err := reg.ListModuleTwinDocuments(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return ev.changed, nil
	}
	if err != nil {
		return ev.changed, err
	}
	var written []string
	for i, mt := range twins {
		var content deploy.TwinContent
		if pending != nil {
			content = pending.ModulesContent[mt.ModuleID]
		}
		if err := e.applyModuleTwin(ctx, ev, edge, mt, docs[i], r.Edge, content, snap); err != nil {
			return ev.changed, err
		}
		if content != nil {
			written = append(written, mt.ModuleID)
		}
	}
	if len(written) > 0 && !ev.frozen {
		if err := e.dropPending(ctx, pending, written); err != nil {
			return ev.changed, err
		}
	}
	return ev.changed, nil
}

// statusStrings converts resolved statuses for the registry.
func statusStrings(m map[string]deploy.Status) map[string]string {
	out := make(map[string]string, len(m))
	for id, s := range m {
		out[id] = string(s)
	}
	return out
}

// applyDeviceTwin writes device configurations (deviceContent) to the
// device twin: the applied one's paths and every matching one's status.
func (e *Engine) applyDeviceTwin(ctx context.Context, ev *evaluation, tw *registry.Twin, adm deploy.ADMResult) error {
	if adm.Applied != "" {
		cur, err := desiredValues(tw.Properties.Desired)
		if err != nil {
			return fmt.Errorf("decode the desired properties of twin %s: %w", tw.DeviceID, err)
		}
		target, err := assign(cur, adm.Assignments)
		if err != nil {
			return fmt.Errorf("apply configuration %q to twin %s: %w", adm.Applied, tw.DeviceID, err)
		}
		if tw, err = e.patchIfChanged(ctx, ev, tw, cur, target); err != nil {
			return fmt.Errorf("apply configuration %q: %w", adm.Applied, err)
		}
	}
	return e.setStatuses(ctx, ev, tw, statusStrings(adm.Statuses))
}

// applyModuleTwin writes to one module twin what edge deployments (or
// per-device content waiting for the module) and module configurations
// resolve to, and their statuses.
func (e *Engine) applyModuleTwin(ctx context.Context, ev *evaluation, iotEdge bool, mt *registry.Twin, doc map[string]any,
	edge deploy.EdgeResult, content deploy.TwinContent, snap *snapshot) error {
	var adm deploy.ADMResult
	if snap.hasModules {
		r, err := deploy.Resolve(deploy.TargetInfo{DeviceID: mt.DeviceID, ModuleID: mt.ModuleID, IoTEdge: iotEdge}, snap.configs, snap.matcher(doc))
		if err != nil {
			return err
		}
		adm = r.ADM
	}
	cur, err := desiredValues(mt.Properties.Desired)
	if err != nil {
		return fmt.Errorf("decode the desired properties of module twin %s/%s: %w", mt.DeviceID, mt.ModuleID, err)
	}
	target := cur
	raw, deployed := edge.Modules[mt.ModuleID]
	switch {
	case deployed:
		if target, err = objectValue(raw); err != nil {
			return fmt.Errorf("deployment %q for module %s: %w", edge.Base, mt.ModuleID, err)
		}
	case content != nil:
		as, err := contentAssignments(content)
		if err != nil {
			return fmt.Errorf("per-device content for module %s of device %s: %w", mt.ModuleID, mt.DeviceID, err)
		}
		if target, err = assign(target, as); err != nil {
			return fmt.Errorf("per-device content for module %s of device %s: %w", mt.ModuleID, mt.DeviceID, err)
		}
	}
	if adm.Applied != "" {
		if target, err = assign(target, adm.Assignments); err != nil {
			return fmt.Errorf("apply configuration %q to module twin %s/%s: %w", adm.Applied, mt.DeviceID, mt.ModuleID, err)
		}
	}
	if mt, err = e.patchIfChanged(ctx, ev, mt, cur, target); err != nil {
		return err
	}
	statuses := statusStrings(adm.Statuses)
	if edge.Statuses != nil && (deployed || mt.ModuleID == deploy.EdgeAgent || mt.ModuleID == deploy.EdgeHub) {
		maps.Copy(statuses, statusStrings(edge.Statuses))
	}
	return e.setStatuses(ctx, ev, mt, statuses)
}

// patchIfChanged merge-patches a twin's desired properties from cur (as
// stored in t) to target under t's etag, and returns the twin as written
// (t itself when nothing differs or the evaluation may not write).
func (e *Engine) patchIfChanged(ctx context.Context, ev *evaluation, t *registry.Twin, cur, target map[string]any) (*registry.Twin, error) {
	p := mergePatch(cur, target)
	if len(p) == 0 {
		return t, nil
	}
	ev.changed = true
	if ev.frozen {
		return t, nil
	}
	raw, err := encodeJSON(p)
	if err != nil {
		return nil, fmt.Errorf("encode the desired-properties patch: %w", err)
	}
	u := registry.TwinUpdate{Desired: raw}
	if t.ModuleID == "" {
		return e.o.Desired.PatchTwin(ctx, t.DeviceID, u, t.ETag)
	}
	return e.o.Desired.PatchModuleTwin(ctx, t.DeviceID, t.ModuleID, u, t.ETag)
}

// setStatuses writes a twin's configurations map when it differs.
func (e *Engine) setStatuses(ctx context.Context, ev *evaluation, t *registry.Twin, statuses map[string]string) error {
	if registry.SameConfigurations(t.Configurations, statuses) {
		return nil
	}
	ev.changed = true
	if ev.frozen {
		return nil
	}
	_, err := e.o.Registry.SetConfigurations(ctx, t.DeviceID, t.ModuleID, statuses, t.ETag)
	return err
}

// ErrAutomaticDeployment means per-device modules content was refused
// because an automatic edge deployment applies to the device.
var ErrAutomaticDeployment = errors.New("rollout: an automatic edge deployment applies to the device")

// ApplyContent writes configuration content to one device straight away,
// as POST /devices/{id}/applyConfigurationContent does. deviceContent
// assigns its paths in the device twin's desired properties;
// modulesContent (edge devices only) writes each module twin it names (a
// whole "properties.desired" replaces them, a path replaces one value).
// Modules whose identities do not exist yet are written when the edge
// agent creates them. Errors: *deploy.ValidationError, registry.ErrNotFound,
// ErrAutomaticDeployment (an automatic edge deployment applies to the
// device: Azure IoT Hub does not combine the two either).
func (e *Engine) ApplyContent(ctx context.Context, deviceID string, content deploy.Content) error {
	c := deploy.Configuration{ID: "content", SchemaVersion: deploy.SchemaVersion, TargetCondition: "*", Content: content}
	if err := c.Validate(); err != nil {
		return err
	}
	kind := c.Kind()
	if kind == deploy.KindModule {
		return &deploy.ValidationError{Problems: []deploy.Problem{{Path: "moduleContent",
			Reason: "applies to the module twins a configuration's target condition chooses; apply modulesContent or deviceContent to a device"}}}
	}
	d, err := e.o.Registry.GetDevice(ctx, deviceID)
	if err != nil {
		return err
	}
	if kind == deploy.KindDevice {
		as, err := contentAssignments(content.DeviceContent)
		if err != nil {
			return &deploy.ValidationError{Problems: []deploy.Problem{{Path: "deviceContent", Reason: err.Error()}}}
		}
		return e.assignWithRetry(ctx, deviceID, "", as)
	}
	if !d.Capabilities.IoTEdge {
		return &deploy.ValidationError{Problems: []deploy.Problem{{Path: "modulesContent",
			Reason: fmt.Sprintf("device %s is not an IoT Edge device (capabilities.iotEdge is false)", deviceID)}}}
	}
	if err := e.refuseIfDeployed(ctx, deviceID); err != nil {
		return err
	}
	twins, _, err := e.o.Registry.ListModuleTwinDocuments(ctx, deviceID)
	if err != nil {
		return err
	}
	exists := make(map[string]bool, len(twins))
	for _, t := range twins {
		exists[t.ModuleID] = true
	}
	waiting := map[string]deploy.TwinContent{}
	for _, name := range sortedNames(content.ModulesContent) {
		if !exists[name] {
			waiting[name] = content.ModulesContent[name]
			continue
		}
		as, err := contentAssignments(content.ModulesContent[name])
		if err != nil {
			return &deploy.ValidationError{Problems: []deploy.Problem{{Path: "modulesContent." + name, Reason: err.Error()}}}
		}
		if err := e.assignWithRetry(ctx, deviceID, name, as); err != nil {
			return err
		}
	}
	return e.writePending(ctx, d, waiting)
}

// refuseIfDeployed returns ErrAutomaticDeployment when a base edge
// deployment applies to the device now.
func (e *Engine) refuseIfDeployed(ctx context.Context, deviceID string) error {
	snap := e.current()
	doc, err := e.o.Registry.TwinDocument(ctx, deviceID)
	if err != nil {
		return err
	}
	r, err := deploy.Resolve(deploy.TargetInfo{DeviceID: deviceID, IoTEdge: true}, snap.configs, snap.matcher(doc))
	if err != nil {
		return err
	}
	if r.Edge.Base != "" {
		return fmt.Errorf("%w: device %s gets its modules from deployment %q; change that deployment or its target condition instead", ErrAutomaticDeployment, deviceID, r.Edge.Base)
	}
	return nil
}

// assignWithRetry performs assignments on a device twin (moduleID "") or
// a module twin, reading it again when it changed between read and write.
func (e *Engine) assignWithRetry(ctx context.Context, deviceID, moduleID string, as []twin.Assignment) error {
	for range maxEvalAttempts {
		t, err := e.readTwin(ctx, deviceID, moduleID)
		if err != nil {
			return err
		}
		cur, err := desiredValues(t.Properties.Desired)
		if err != nil {
			return fmt.Errorf("decode the desired properties of %s: %w", twinName(deviceID, moduleID), err)
		}
		target, err := assign(cur, as)
		if err != nil {
			return &deploy.ValidationError{Problems: []deploy.Problem{{Path: "content", Reason: err.Error()}}}
		}
		_, err = e.patchIfChanged(ctx, &evaluation{}, t, cur, target)
		if !errors.Is(err, registry.ErrPrecondition) {
			return err
		}
	}
	return fmt.Errorf("write the desired properties of %s: %w: it kept changing concurrently", twinName(deviceID, moduleID), registry.ErrPrecondition)
}

func (e *Engine) readTwin(ctx context.Context, deviceID, moduleID string) (*registry.Twin, error) {
	if moduleID == "" {
		return e.o.Registry.GetTwin(ctx, deviceID)
	}
	return e.o.Registry.GetModuleTwin(ctx, deviceID, moduleID)
}

func twinName(deviceID, moduleID string) string {
	if moduleID == "" {
		return "twin " + deviceID
	}
	return "twin of module " + moduleID + " of device " + deviceID
}

func sortedNames(m map[string]deploy.TwinContent) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
