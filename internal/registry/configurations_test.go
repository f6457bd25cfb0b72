package registry

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/muster-iot/muster/internal/store"
)

func TestSetConfigurations(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	mustPut(t, f, &Device{DeviceID: "edge1", Capabilities: Capabilities{IoTEdge: true}}, "")
	before, err := f.hub.GetTwin(ctx, "edge1")
	if err != nil {
		t.Fatal(err)
	}
	tw, err := f.hub.SetConfigurations(ctx, "edge1", "", map[string]string{"a": "Applied", "b": "Targeted"}, before.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if tw.Version != before.Version+1 || tw.ETag == before.ETag || desiredValues(t, tw.Properties.Desired) != desiredValues(t, before.Properties.Desired) {
		t.Fatalf("after SetConfigurations: version %d etag %q desired %s", tw.Version, tw.ETag, tw.Properties.Desired)
	}
	got, err := f.hub.GetTwin(ctx, "edge1")
	if err != nil {
		t.Fatal(err)
	}
	if !SameConfigurations(got.Configurations, map[string]string{"a": "Applied", "b": "Targeted"}) {
		t.Fatalf("stored configurations %v", got.Configurations)
	}
	same, err := f.hub.SetConfigurations(ctx, "edge1", "", map[string]string{"b": "Targeted", "a": "Applied"}, "")
	if err != nil || same.ETag != got.ETag || same.Version != got.Version {
		t.Fatalf("an unchanged map was written: %v, version %d", err, same.Version)
	}
	if _, err := f.hub.SetConfigurations(ctx, "edge1", "", nil, before.ETag); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("stale etag: %v, want ErrPrecondition", err)
	}
	// A twin patch keeps the map; an empty map removes it.
	if _, err := f.hub.PatchTwin(ctx, "edge1", TwinUpdate{Tags: json.RawMessage(`{"x":1}`)}, ""); err != nil {
		t.Fatal(err)
	}
	if got, _ = f.hub.GetTwin(ctx, "edge1"); len(got.Configurations) != 2 {
		t.Fatalf("a tag patch dropped the configurations: %v", got.Configurations)
	}
	if _, err := f.hub.SetConfigurations(ctx, "edge1", "", nil, ""); err != nil {
		t.Fatal(err)
	}
	if got, _ = f.hub.GetTwin(ctx, "edge1"); got.Configurations != nil {
		t.Fatalf("configurations not removed: %v", got.Configurations)
	}

	mt, err := f.hub.SetConfigurations(ctx, "edge1", ModuleEdgeAgent, map[string]string{"a": "Applied"}, "*")
	if err != nil {
		t.Fatal(err)
	}
	if mt.ModuleID != ModuleEdgeAgent || mt.Configurations["a"].Status != "Applied" {
		t.Fatalf("module twin: %+v", mt)
	}
	if _, err := f.hub.SetConfigurations(ctx, "edge1", "nope", nil, ""); !errors.Is(err, ErrModuleNotFound) {
		t.Fatalf("missing module: %v", err)
	}
	if _, err := f.hub.SetConfigurations(ctx, "ghost", "", nil, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing device: %v", err)
	}
}

func TestTwinDocuments(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	mustPut(t, f, &Device{DeviceID: "edge1", Capabilities: Capabilities{IoTEdge: true}}, "")
	if _, err := f.hub.PatchTwin(ctx, "edge1", TwinUpdate{Tags: json.RawMessage(`{"env":"prod"}`)}, ""); err != nil {
		t.Fatal(err)
	}
	doc, err := f.hub.TwinDocument(ctx, "edge1")
	if err != nil {
		t.Fatal(err)
	}
	tags, _ := doc["tags"].(map[string]any)
	caps, _ := doc["capabilities"].(map[string]any)
	if doc["deviceId"] != "edge1" || tags["env"] != "prod" || caps["iotEdge"] != true {
		t.Fatalf("twin document %v", doc)
	}
	if _, err := f.hub.TwinDocument(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing device: %v", err)
	}
	if _, err := f.hub.SetConfigurations(ctx, "edge1", ModuleEdgeHub, map[string]string{"d": "Targeted"}, ""); err != nil {
		t.Fatal(err)
	}
	twins, docs, err := f.hub.ListModuleTwinDocuments(ctx, "edge1")
	if err != nil {
		t.Fatal(err)
	}
	if len(twins) != 2 || len(docs) != 2 || twins[0].ModuleID != ModuleEdgeAgent || docs[1]["moduleId"] != ModuleEdgeHub {
		t.Fatalf("module twin documents: %d twins, %v", len(twins), docs)
	}
	cfgs, _ := docs[1]["configurations"].(map[string]any)
	if d, _ := cfgs["d"].(map[string]any); d["status"] != "Targeted" {
		t.Fatalf("configurations in the module twin document: %v", docs[1]["configurations"])
	}
	if _, _, err := f.hub.ListModuleTwinDocuments(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing device: %v", err)
	}
}

func TestRecordDevice(t *testing.T) {
	h := New("Hub.Example.Test", nil, nil)
	tests := []struct {
		rec  store.Record
		want string
	}{
		{store.Record{Kind: store.KindDevice, ID: "hub.example.test/dev-1"}, "dev-1"},
		{store.Record{Kind: store.KindTwin, ID: "hub.example.test/Dev.1"}, "Dev.1"},
		{store.Record{Kind: KindModule, ID: "hub.example.test/dev-1/$edgeAgent"}, "dev-1"},
		{store.Record{Kind: KindModuleTwin, ID: "hub.example.test/dev-1/m"}, "dev-1"},
		{store.Record{Kind: store.KindDevice, ID: "other.hub/dev-1"}, ""},
		{store.Record{Kind: store.KindDevice, ID: "hub.example.test/a/b"}, ""},
		{store.Record{Kind: KindModule, ID: "hub.example.test/dev-1"}, ""},
		{store.Record{Kind: store.KindRegistration, ID: "hub.example.test/dev-1"}, ""},
		{store.Record{Kind: store.KindTwin, ID: "hub.example.test/"}, ""},
	}
	for _, tc := range tests {
		got, ok := h.RecordDevice(tc.rec)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("RecordDevice(%s %s) = %q, %v; want %q", tc.rec.Kind, tc.rec.ID, got, ok, tc.want)
		}
	}
}
