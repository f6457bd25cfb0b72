package hubservice

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/muster-iot/muster/internal/registry"
)

func TestModulesAndModuleTwins(t *testing.T) {
	th := newTestHub(t)
	c := th.client("iothubowner")
	ctx := ctxT(t)
	if _, err := c.CreateDevice(ctx, &registry.Device{DeviceID: "edge-1", Capabilities: registry.Capabilities{IoTEdge: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := th.reg.PutModule(ctx, &registry.Module{DeviceID: "edge-1", ModuleID: "sensor"}, ""); err != nil {
		t.Fatal(err)
	}
	ms, err := c.ListModules(ctx, "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ModuleID)
	}
	if len(ids) != 3 || ids[0] != "$edgeAgent" || ids[1] != "$edgeHub" || ids[2] != "sensor" {
		t.Errorf("modules %v", ids)
	}
	m, err := c.GetModule(ctx, "edge-1", "$edgeAgent")
	if err != nil || m.Authentication.SymmetricKey == nil || m.Authentication.SymmetricKey.PrimaryKey == "" {
		t.Fatalf("get $edgeAgent: %+v, %v", m, err)
	}
	var he *Error
	if _, err := c.GetModule(ctx, "edge-1", "ghost"); !errors.As(err, &he) || he.Status != 404 || he.Code != "ModuleNotFound" {
		t.Errorf("missing module: %v, want 404 ModuleNotFound", err)
	}

	tw, err := c.GetModuleTwin(ctx, "edge-1", "sensor")
	if err != nil || tw.ModuleID != "sensor" || tw.DeviceID != "edge-1" || tw.Version != 1 {
		t.Fatalf("get module twin: %+v, %v", tw, err)
	}
	patched, err := c.PatchModuleTwin(ctx, "edge-1", "sensor", TwinUpdate{Desired: json.RawMessage(`{"interval":5}`)}, tw.ETag)
	if err != nil || patched.Version != 2 || patched.ETag == tw.ETag {
		t.Fatalf("patch module twin: %+v, %v", patched, err)
	}
	if _, err := c.PatchModuleTwin(ctx, "edge-1", "sensor", TwinUpdate{Tags: json.RawMessage(`{"a":1}`)}, tw.ETag); !errors.Is(err, ErrPrecondition) {
		t.Errorf("patch with a stale etag: %v, want ErrPrecondition", err)
	}
	replaced, err := c.ReplaceModuleTwin(ctx, "edge-1", "sensor", TwinUpdate{Tags: json.RawMessage(`{"kind":"temp"}`)}, "")
	if err != nil || string(replaced.Tags) != `{"kind":"temp"}` {
		t.Fatalf("replace module twin: %+v, %v", replaced, err)
	}
	var desired map[string]any
	if err := json.Unmarshal(replaced.Properties.Desired, &desired); err != nil || len(desired) != 2 || desired["$metadata"] == nil {
		t.Errorf("desired after replace without desired = %s (%v), want only $version and $metadata", replaced.Properties.Desired, err)
	}
	if _, err := c.PatchModuleTwin(ctx, "edge-1", "", TwinUpdate{Tags: json.RawMessage(`{}`)}, ""); err == nil {
		t.Error("patch without a module ID was sent")
	}
}
