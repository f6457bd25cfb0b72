package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/twin"
)

func mustModule(t *testing.T, f *fixture, deviceID, moduleID string) *Module {
	t.Helper()
	m, err := f.hub.PutModule(context.Background(), &Module{DeviceID: deviceID, ModuleID: moduleID}, "")
	if err != nil {
		t.Fatalf("PutModule(%s/%s): %v", deviceID, moduleID, err)
	}
	return m
}

func mustModuleTwin(t *testing.T, f *fixture, deviceID, moduleID string) *Twin {
	t.Helper()
	tw, err := f.hub.GetModuleTwin(context.Background(), deviceID, moduleID)
	if err != nil {
		t.Fatalf("GetModuleTwin(%s/%s): %v", deviceID, moduleID, err)
	}
	return tw
}

// moduleTwinRecordCount counts the stored module twin records of a device.
func moduleTwinRecordCount(t *testing.T, f *fixture, deviceID string) int {
	t.Helper()
	recs, err := f.hub.docs.List(context.Background(), KindModuleTwin, store.ListOptions{Group: f.hub.moduleGroup(deviceID)})
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

func TestModuleTwinCreatedEmpty(t *testing.T) {
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev1"}, "")
	mustModule(t, f, "dev1", "mod1")
	tw := mustModuleTwin(t, f, "dev1", "mod1")
	if tw.DeviceID != "dev1" || tw.ModuleID != "mod1" || tw.Version != 1 || tw.ETag == "" {
		t.Errorf("new module twin = %+v", tw)
	}
	for name, got := range map[string]json.RawMessage{"tags": tw.Tags, "desired": tw.Properties.Desired, "reported": tw.Properties.Reported} {
		want := `{"$version":1}`
		if name == "tags" {
			want = `{}`
		}
		if canonical(t, got) != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	again := mustModuleTwin(t, f, "dev1", "mod1")
	if again.ETag != tw.ETag {
		t.Errorf("etag changed between reads: %q then %q", tw.ETag, again.ETag)
	}
}

func TestModuleTwinUpdates(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev1"}, "")
	mustModule(t, f, "dev1", "mod1")
	mustModule(t, f, "dev1", "mod2")
	devBefore, err := f.hub.GetTwin(ctx, "dev1")
	if err != nil {
		t.Fatal(err)
	}

	p1, err := f.hub.PatchModuleTwin(ctx, "dev1", "mod1", TwinUpdate{Tags: json.RawMessage(`{"role":"sensor"}`), Desired: json.RawMessage(`{"interval":5,"mode":"fast"}`)}, "*")
	if err != nil {
		t.Fatalf("patch: %v", err)
	}
	if p1.Version != 2 || p1.ModuleID != "mod1" || desiredValues(t, p1.Properties.Desired) != `{"$version":2,"interval":5,"mode":"fast"}` ||
		canonical(t, p1.Tags) != `{"role":"sensor"}` {
		t.Errorf("after patch: version %d, tags %s, desired %s", p1.Version, p1.Tags, p1.Properties.Desired)
	}
	rep, err := f.hub.PatchModuleReported(ctx, "dev1", "mod1", json.RawMessage(`{"lastDesiredVersion":2}`))
	if err != nil {
		t.Fatalf("patch reported: %v", err)
	}
	var reported twin.Collection
	if err := json.Unmarshal(rep.Properties.Reported, &reported); err != nil {
		t.Fatal(err)
	}
	if reported.Version != 2 || reported.Values["lastDesiredVersion"] == nil || reported.Metadata == nil || rep.Version != 3 {
		t.Errorf("after reported patch: twin version %d, reported %s", rep.Version, rep.Properties.Reported)
	}
	p2, err := f.hub.PatchModuleTwin(ctx, "dev1", "mod1", TwinUpdate{Desired: json.RawMessage(`{"mode":null}`)}, rep.ETag)
	if err != nil {
		t.Fatalf("patch with etag: %v", err)
	}
	if desiredValues(t, p2.Properties.Desired) != `{"$version":3,"interval":5}` {
		t.Errorf("desired after deleting mode = %s", p2.Properties.Desired)
	}
	r, err := f.hub.ReplaceModuleTwin(ctx, "dev1", "mod1", TwinUpdate{Desired: json.RawMessage(`{"schemaVersion":"1.1"}`)}, "")
	if err != nil {
		t.Fatalf("replace: %v", err)
	}
	if canonical(t, r.Tags) != `{}` || desiredValues(t, r.Properties.Desired) != `{"$version":4,"schemaVersion":"1.1"}` ||
		canonical(t, r.Properties.Reported) != canonical(t, rep.Properties.Reported) {
		t.Errorf("after replace: tags %s desired %s reported %s", r.Tags, r.Properties.Desired, r.Properties.Reported)
	}
	if got := mustModuleTwin(t, f, "dev1", "mod1"); got.ETag != r.ETag || got.Version != r.Version {
		t.Errorf("stored twin %+v differs from the replace result %+v", got, r)
	}

	// Neither the other module's twin nor the device twin changed.
	if got := mustModuleTwin(t, f, "dev1", "mod2"); got.Version != 1 {
		t.Errorf("mod2 twin version = %d, want 1", got.Version)
	}
	if devAfter, err := f.hub.GetTwin(ctx, "dev1"); err != nil || devAfter.ETag != devBefore.ETag {
		t.Errorf("device twin changed by module twin writes (%v)", err)
	}
	list, err := f.hub.ListModuleTwins(ctx, "dev1")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tw := range list {
		ids = append(ids, tw.DeviceID+"/"+tw.ModuleID)
	}
	if diff := cmp.Diff([]string{"dev1/mod1", "dev1/mod2"}, ids); diff != "" {
		t.Errorf("ListModuleTwins (-want +got):\n%s", diff)
	}
}

func TestModuleTwinErrors(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev1"}, "")
	mustModule(t, f, "dev1", "mod1")
	tests := []struct {
		name  string
		call  func() error
		want  error
		field string
	}{
		{"get missing device", func() error { _, err := f.hub.GetModuleTwin(ctx, "nodev", "mod1"); return err }, ErrNotFound, ""},
		{"get missing module", func() error { _, err := f.hub.GetModuleTwin(ctx, "dev1", "nomod"); return err }, ErrModuleNotFound, ""},
		{"patch missing module", func() error {
			_, err := f.hub.PatchModuleTwin(ctx, "dev1", "nomod", TwinUpdate{Desired: json.RawMessage(`{"a":1}`)}, "*")
			return err
		}, ErrModuleNotFound, ""},
		{"reported of missing module", func() error {
			_, err := f.hub.PatchModuleReported(ctx, "dev1", "nomod", json.RawMessage(`{"a":1}`))
			return err
		}, ErrModuleNotFound, ""},
		{"list of missing device", func() error { _, err := f.hub.ListModuleTwins(ctx, "nodev"); return err }, ErrNotFound, ""},
		{"stale etag", func() error {
			_, err := f.hub.PatchModuleTwin(ctx, "dev1", "mod1", TwinUpdate{Desired: json.RawMessage(`{"a":1}`)}, "AAAA")
			return err
		}, ErrPrecondition, ""},
		{"bad desired key", func() error {
			_, err := f.hub.ReplaceModuleTwin(ctx, "dev1", "mod1", TwinUpdate{Desired: json.RawMessage(`{"a.b":1}`)}, "*")
			return err
		}, ErrInvalid, "properties.desired"},
		{"tags too large", func() error {
			_, err := f.hub.PatchModuleTwin(ctx, "dev1", "mod1", TwinUpdate{Tags: json.RawMessage(`{"a":"` + strings.Repeat("x", 4000) + `","b":"` + strings.Repeat("x", 4000) + `","c":"` + strings.Repeat("x", 400) + `"}`)}, "*")
			return err
		}, ErrInvalid, "tags"},
		{"reported too large", func() error {
			_, err := f.hub.PatchModuleReported(ctx, "dev1", "mod1", json.RawMessage(`{"a":"`+strings.Repeat("x", 33<<10)+`"}`))
			return err
		}, twin.ErrInvalid, ""},
	}
	before := mustModuleTwin(t, f, "dev1", "mod1")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
			var ie *InvalidError
			if tc.field != "" && (!errors.As(err, &ie) || ie.Field != tc.field) {
				t.Errorf("error %v does not name field %q", err, tc.field)
			}
		})
	}
	if after := mustModuleTwin(t, f, "dev1", "mod1"); after.ETag != before.ETag {
		t.Error("a refused update changed the module twin")
	}
}

func TestModuleTwinDeletedWithModule(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev1"}, "")
	mustModule(t, f, "dev1", "mod1")
	if _, err := f.hub.PatchModuleTwin(ctx, "dev1", "mod1", TwinUpdate{Desired: json.RawMessage(`{"a":1}`)}, "*"); err != nil {
		t.Fatal(err)
	}
	if err := f.hub.RemoveModule(ctx, "dev1", "mod1", "*"); err != nil {
		t.Fatal(err)
	}
	if n := moduleTwinRecordCount(t, f, "dev1"); n != 0 {
		t.Errorf("%d module twin records left after RemoveModule", n)
	}
	if _, err := f.hub.GetModuleTwin(ctx, "dev1", "mod1"); !errors.Is(err, ErrModuleNotFound) {
		t.Errorf("twin of removed module: %v, want ErrModuleNotFound", err)
	}
	mustModule(t, f, "dev1", "mod1")
	if tw := mustModuleTwin(t, f, "dev1", "mod1"); tw.Version != 1 || desiredValues(t, tw.Properties.Desired) != `{"$version":1}` {
		t.Errorf("re-created module kept its old twin: %+v", tw)
	}
}

func TestModuleTwinCascade(t *testing.T) {
	ctx := context.Background()
	for name, del := range map[string]func(f *fixture) error{
		"RemoveDevice": func(f *fixture) error { return f.hub.RemoveDevice(ctx, "dev1", "*") },
		"DeleteDevice": func(f *fixture) error { return f.hub.DeleteDevice(ctx, "dev1") },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			mustPut(t, f, &Device{DeviceID: "dev1", Capabilities: Capabilities{IoTEdge: true}}, "")
			mustPut(t, f, &Device{DeviceID: "dev10"}, "")
			mustModule(t, f, "dev1", "a")
			mustModule(t, f, "dev10", "a")
			if n := moduleTwinRecordCount(t, f, "dev1"); n != 3 {
				t.Fatalf("%d module twin records before the delete, want 3", n)
			}
			if err := del(f); err != nil {
				t.Fatal(err)
			}
			if n := moduleTwinRecordCount(t, f, "dev1"); n != 0 {
				t.Errorf("%d module twin records left", n)
			}
			if tw := mustModuleTwin(t, f, "dev10", "a"); tw.DeviceID != "dev10" {
				t.Errorf("other device's module twin = %+v", tw)
			}
		})
	}
}

func TestEdgeSystemModuleTwins(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if err := f.hub.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "edge1", RegistrationID: "edge1", IoTEdge: true,
		Auth: provision.DeviceAuth{Type: provision.AuthSAS, PrimaryKey: b64(32), SecondaryKey: b64(32)}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{ModuleEdgeAgent, ModuleEdgeHub} {
		if tw := mustModuleTwin(t, f, "edge1", id); tw.Version != 1 || tw.ModuleID != id {
			t.Errorf("twin of %s = %+v", id, tw)
		}
	}
	agent, err := f.hub.PatchModuleTwin(ctx, "edge1", ModuleEdgeAgent, TwinUpdate{Desired: json.RawMessage(`{"schemaVersion":"1.1"}`)}, "*")
	if err != nil {
		t.Fatal(err)
	}
	// Re-provisioning keeps the system modules and their twins.
	if err := f.hub.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "edge1", RegistrationID: "edge1", IoTEdge: true,
		Auth: provision.DeviceAuth{Type: provision.AuthSAS, PrimaryKey: b64(32), SecondaryKey: b64(32)}}); err != nil {
		t.Fatal(err)
	}
	if got := mustModuleTwin(t, f, "edge1", ModuleEdgeAgent); got.ETag != agent.ETag {
		t.Errorf("re-provisioning changed the $edgeAgent twin: %+v", got)
	}
	// A removed system module comes back with an empty twin.
	if err := f.hub.RemoveModule(ctx, "edge1", ModuleEdgeAgent, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.hub.PutDevice(ctx, &Device{DeviceID: "edge1", Capabilities: Capabilities{IoTEdge: true}}, "*"); err != nil {
		t.Fatal(err)
	}
	if got := mustModuleTwin(t, f, "edge1", ModuleEdgeAgent); got.Version != 1 {
		t.Errorf("re-created $edgeAgent twin = %+v", got)
	}
}

// TestModuleTwinMissingRecord covers a module stored before module twins
// existed: its empty twin is stored on first read.
func TestModuleTwinMissingRecord(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev1"}, "")
	mustModule(t, f, "dev1", "old")
	mustModule(t, f, "dev1", "old2")
	for _, id := range []string{"old", "old2"} {
		if err := f.hub.docs.Delete(ctx, KindModuleTwin, f.hub.moduleKey("dev1", id), ""); err != nil {
			t.Fatal(err)
		}
	}
	tw := mustModuleTwin(t, f, "dev1", "old")
	if tw.Version != 1 || tw.ETag == "" {
		t.Errorf("materialized twin = %+v", tw)
	}
	if again := mustModuleTwin(t, f, "dev1", "old"); again.ETag != tw.ETag {
		t.Error("the materialized twin was stored again on the second read")
	}
	list, err := f.hub.ListModuleTwins(ctx, "dev1")
	if err != nil || len(list) != 2 {
		t.Fatalf("ListModuleTwins = %d twins, %v", len(list), err)
	}
	if n := moduleTwinRecordCount(t, f, "dev1"); n != 2 {
		t.Errorf("%d module twin records after listing, want 2", n)
	}
	if _, err := f.hub.PatchModuleReported(ctx, "dev1", "old2", json.RawMessage(`{"x":1}`)); err != nil {
		t.Errorf("reported patch of a materialized twin: %v", err)
	}
}

// TestModuleTwinStaleGeneration covers a module (and its twin) left behind
// by an earlier device of the same ID: a new module of the same ID starts
// with an empty twin.
func TestModuleTwinStaleGeneration(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev1"}, "")
	mustModule(t, f, "dev1", "mod1")
	mustModule(t, f, "dev1", "other")
	for _, id := range []string{"mod1", "other"} {
		if _, err := f.hub.PatchModuleTwin(ctx, "dev1", id, TwinUpdate{Desired: json.RawMessage(`{"old":true}`)}, "*"); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []store.Kind{store.KindTwin, store.KindDevice} {
		if err := f.hub.docs.Delete(ctx, k, f.hub.key("dev1"), ""); err != nil {
			t.Fatal(err)
		}
	}
	mustPut(t, f, &Device{DeviceID: "dev1"}, "")
	if _, err := f.hub.GetModuleTwin(ctx, "dev1", "mod1"); !errors.Is(err, ErrModuleNotFound) {
		t.Errorf("twin of a stale module: %v, want ErrModuleNotFound", err)
	}
	mustModule(t, f, "dev1", "mod1")
	if tw := mustModuleTwin(t, f, "dev1", "mod1"); tw.Version != 1 || desiredValues(t, tw.Properties.Desired) != `{"$version":1}` {
		t.Errorf("module created over a stale one has twin %+v", tw)
	}
	// The create removed the other stale module and its twin.
	if n := moduleTwinRecordCount(t, f, "dev1"); n != 1 {
		t.Errorf("%d module twin records, want 1", n)
	}
}

// TestModuleTwinConcurrentWrites interleaves desired and reported writes
// of one module twin: none is lost, and each bumps the twin version once.
func TestModuleTwinConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev"}, "")
	mustModule(t, f, "dev", "mod")
	const writers, each = 4, 3
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := f.hub.PatchModuleTwin(ctx, "dev", "mod", TwinUpdate{Desired: json.RawMessage(fmt.Sprintf(`{"d%d_%d":true}`, w, i))}, "")
				errs <- err
				_, err = f.hub.PatchModuleReported(ctx, "dev", "mod", json.RawMessage(fmt.Sprintf(`{"r%d_%d":true}`, w, i)))
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	tw := mustModuleTwin(t, f, "dev", "mod")
	var desired, reported map[string]any
	if err := json.Unmarshal(tw.Properties.Desired, &desired); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(tw.Properties.Reported, &reported); err != nil {
		t.Fatal(err)
	}
	n := writers * each
	delete(reported, "$metadata")
	delete(desired, "$metadata")
	if len(desired) != n+1 || len(reported) != n+1 || tw.Version != int64(1+2*n) {
		t.Errorf("after %d desired and %d reported writes: version %d, %d desired and %d reported members", n, n, tw.Version, len(desired), len(reported))
	}
}
