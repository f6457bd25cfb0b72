package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/store"
)

func moduleIDs(t *testing.T, f *fixture, deviceID string) []string {
	t.Helper()
	ms, err := f.hub.ListModules(context.Background(), deviceID)
	if err != nil {
		t.Fatalf("ListModules(%s): %v", deviceID, err)
	}
	ids := []string{}
	for _, m := range ms {
		if m.DeviceID != deviceID {
			t.Errorf("module %s lists device %q, want %q", m.ModuleID, m.DeviceID, deviceID)
		}
		ids = append(ids, m.ModuleID)
	}
	return ids
}

func TestModuleCRUD(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev1"}, "")

	created, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "mod1", ManagedBy: ManagedByIotEdge,
		GenerationID: "ignored", ConnectionState: "Connected"}, "")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.ETag == "" || created.GenerationID == "" || created.GenerationID == "ignored" || created.ConnectionState != "Disconnected" ||
		created.ManagedBy != ManagedByIotEdge || created.Authentication.Type != provision.AuthSAS {
		t.Errorf("created module = %+v", created)
	}
	k := created.Authentication.SymmetricKey
	if k == nil || len(k.PrimaryKey) != 44 || len(k.SecondaryKey) != 44 || k.PrimaryKey == k.SecondaryKey {
		t.Errorf("generated keys = %+v, want two distinct 44-character keys", k)
	}
	got, err := f.hub.GetModule(ctx, "dev1", "mod1")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if diff := cmp.Diff(created, got); diff != "" {
		t.Errorf("get differs from create (-create +get):\n%s", diff)
	}

	key := b64(32)
	updated, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "mod1",
		Authentication: Authentication{Type: provision.AuthSAS, SymmetricKey: &SymmetricKey{PrimaryKey: key, SecondaryKey: key}}}, created.ETag)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if updated.ETag == created.ETag || updated.GenerationID != created.GenerationID || updated.ManagedBy != "" ||
		updated.Authentication.SymmetricKey.PrimaryKey != key {
		t.Errorf("updated module = %+v (created %+v)", updated, created)
	}
	if _, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "mod2"}, ""); err != nil {
		t.Fatalf("create mod2: %v", err)
	}
	if diff := cmp.Diff([]string{"mod1", "mod2"}, moduleIDs(t, f, "dev1")); diff != "" {
		t.Errorf("modules (-want +got):\n%s", diff)
	}

	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"create existing", func() error {
			_, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "mod1"}, "")
			return err
		}, ErrModuleExists},
		{"create on absent device", func() error {
			_, err := f.hub.PutModule(ctx, &Module{DeviceID: "nodev", ModuleID: "m"}, "")
			return err
		}, ErrNotFound},
		{"update absent module", func() error {
			_, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "nomod"}, "*")
			return err
		}, ErrModuleNotFound},
		{"update stale etag", func() error {
			_, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "mod1"}, created.ETag)
			return err
		}, ErrPrecondition},
		{"create system module", func() error {
			_, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: ModuleEdgeHub}, "")
			return err
		}, ErrInvalid},
		{"invalid module id", func() error {
			_, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "a/b"}, "")
			return err
		}, ErrInvalid},
		{"invalid device id", func() error { _, err := f.hub.PutModule(ctx, &Module{DeviceID: "", ModuleID: "m"}, ""); return err }, ErrInvalid},
		{"managedBy too long", func() error {
			_, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "m", ManagedBy: strings.Repeat("x", 129)}, "")
			return err
		}, ErrInvalid},
		{"invalid key", func() error {
			_, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "m",
				Authentication: Authentication{SymmetricKey: &SymmetricKey{PrimaryKey: "c2hvcnQ="}}}, "")
			return err
		}, ErrInvalid},
		{"nil module", func() error { _, err := f.hub.PutModule(ctx, nil, ""); return err }, ErrInvalid},
		{"get absent module", func() error { _, err := f.hub.GetModule(ctx, "dev1", "nomod"); return err }, ErrModuleNotFound},
		{"module IDs are case-sensitive", func() error { _, err := f.hub.GetModule(ctx, "dev1", "MOD1"); return err }, ErrModuleNotFound},
		{"get on absent device", func() error { _, err := f.hub.GetModule(ctx, "nodev", "mod1"); return err }, ErrNotFound},
		{"list on absent device", func() error { _, err := f.hub.ListModules(ctx, "nodev"); return err }, ErrNotFound},
		{"remove stale etag", func() error { return f.hub.RemoveModule(ctx, "dev1", "mod1", created.ETag) }, ErrPrecondition},
		{"remove absent module", func() error { return f.hub.RemoveModule(ctx, "dev1", "nomod", "*") }, ErrModuleNotFound},
		{"remove on absent device", func() error { return f.hub.RemoveModule(ctx, "nodev", "mod1", "") }, ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
	var ie *InvalidError
	if _, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "$mine"}, ""); !errors.As(err, &ie) || ie.Field != "moduleId" {
		t.Errorf("create $mine: %v, want an InvalidError for moduleId", err)
	}

	if err := f.hub.RemoveModule(ctx, "dev1", "mod1", updated.ETag); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if err := f.hub.RemoveModule(ctx, "dev1", "mod2", ""); err != nil {
		t.Fatalf("remove mod2: %v", err)
	}
	if diff := cmp.Diff([]string{}, moduleIDs(t, f, "dev1")); diff != "" {
		t.Errorf("modules after remove (-want +got):\n%s", diff)
	}
	if _, err := f.hub.GetModule(ctx, "dev1", "mod1"); !errors.Is(err, ErrModuleNotFound) {
		t.Errorf("get removed module: %v", err)
	}
	again, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "mod1"}, "")
	if err != nil {
		t.Fatalf("re-create: %v", err)
	}
	if again.GenerationID == created.GenerationID {
		t.Errorf("re-created module kept generationId %s", again.GenerationID)
	}
}

func TestModuleLimit(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev1"}, "")
	for i := range MaxModulesPerDevice {
		if _, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: fmt.Sprintf("m%02d", i)}, ""); err != nil {
			t.Fatalf("create module %d: %v", i, err)
		}
	}
	if _, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "one-more"}, ""); !errors.Is(err, ErrTooManyModules) {
		t.Errorf("create beyond the limit: %v, want ErrTooManyModules", err)
	}
	if _, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "m00"}, "*"); err != nil {
		t.Errorf("update at the limit: %v", err)
	}
}

func TestModuleCascadeDelete(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		delete func(f *fixture) error
	}{
		{"RemoveDevice", func(f *fixture) error { return f.hub.RemoveDevice(ctx, "dev1", "*") }},
		{"DeleteDevice", func(f *fixture) error { return f.hub.DeleteDevice(ctx, "dev1") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			mustPut(t, f, &Device{DeviceID: "dev1"}, "")
			mustPut(t, f, &Device{DeviceID: "dev10"}, "")
			for _, id := range []string{"a", "b"} {
				for _, dev := range []string{"dev1", "dev10"} {
					if _, err := f.hub.PutModule(ctx, &Module{DeviceID: dev, ModuleID: id}, ""); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := tc.delete(f); err != nil {
				t.Fatalf("delete: %v", err)
			}
			recs, err := f.hub.docs.List(ctx, KindModule, store.ListOptions{Group: f.hub.moduleGroup("dev1")})
			if err != nil || len(recs) != 0 {
				t.Errorf("module records left after delete: %d (%v)", len(recs), err)
			}
			if diff := cmp.Diff([]string{"a", "b"}, moduleIDs(t, f, "dev10")); diff != "" {
				t.Errorf("modules of another device (-want +got):\n%s", diff)
			}
			mustPut(t, f, &Device{DeviceID: "dev1"}, "")
			if diff := cmp.Diff([]string{}, moduleIDs(t, f, "dev1")); diff != "" {
				t.Errorf("re-created device has modules (-want +got):\n%s", diff)
			}
		})
	}
}

// TestModuleStaleGeneration covers a module record left behind by an
// earlier device of the same ID (a create that raced the device's delete).
func TestModuleStaleGeneration(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	old := mustPut(t, f, &Device{DeviceID: "dev1"}, "")
	if _, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "mod1"}, ""); err != nil {
		t.Fatal(err)
	}
	// Delete the device without the cascade, as a racing create would leave it.
	for _, k := range []store.Kind{store.KindTwin, store.KindDevice} {
		if err := f.hub.docs.Delete(ctx, k, f.hub.key("dev1"), ""); err != nil {
			t.Fatal(err)
		}
	}
	cur := mustPut(t, f, &Device{DeviceID: "dev1"}, "")
	if cur.GenerationID == old.GenerationID {
		t.Fatal("re-created device kept its generationId")
	}
	if _, err := f.hub.GetModule(ctx, "dev1", "mod1"); !errors.Is(err, ErrModuleNotFound) {
		t.Errorf("stale module: %v, want ErrModuleNotFound", err)
	}
	if diff := cmp.Diff([]string{}, moduleIDs(t, f, "dev1")); diff != "" {
		t.Errorf("stale modules listed (-want +got):\n%s", diff)
	}
	if err := f.hub.RemoveModule(ctx, "dev1", "mod1", "*"); !errors.Is(err, ErrModuleNotFound) {
		t.Errorf("remove stale module: %v, want ErrModuleNotFound", err)
	}
	m, err := f.hub.PutModule(ctx, &Module{DeviceID: "dev1", ModuleID: "mod1"}, "")
	if err != nil {
		t.Fatalf("create over a stale record: %v", err)
	}
	if got, err := f.hub.GetModule(ctx, "dev1", "mod1"); err != nil || got.GenerationID != m.GenerationID {
		t.Errorf("module after create over a stale record = %+v, %v", got, err)
	}
}

func TestEdgeSystemModules(t *testing.T) {
	ctx := context.Background()
	edge := Capabilities{IoTEdge: true}
	tests := []struct {
		name   string
		create func(f *fixture) error
	}{
		{"PutDevice create", func(f *fixture) error {
			_, err := f.hub.PutDevice(ctx, &Device{DeviceID: "edge1", Capabilities: edge}, "")
			return err
		}},
		{"PutDevice update turning on iotEdge", func(f *fixture) error {
			d := mustPut(t, f, &Device{DeviceID: "edge1"}, "")
			if ids := moduleIDs(t, f, "edge1"); len(ids) != 0 {
				return fmt.Errorf("a leaf device has modules %v", ids)
			}
			_, err := f.hub.PutDevice(ctx, &Device{DeviceID: "edge1", Capabilities: edge}, d.ETag)
			return err
		}},
		{"ProvisionDevice", func(f *fixture) error {
			return f.hub.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "edge1", RegistrationID: "edge1", IoTEdge: true,
				Auth: provision.DeviceAuth{Type: provision.AuthSAS, PrimaryKey: b64(32), SecondaryKey: b64(32)}})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if err := tc.create(f); err != nil {
				t.Fatalf("create: %v", err)
			}
			if diff := cmp.Diff([]string{ModuleEdgeAgent, ModuleEdgeHub}, moduleIDs(t, f, "edge1")); diff != "" {
				t.Fatalf("system modules (-want +got):\n%s", diff)
			}
			agent, err := f.hub.GetModule(ctx, "edge1", ModuleEdgeAgent)
			if err != nil {
				t.Fatal(err)
			}
			hub, err := f.hub.GetModule(ctx, "edge1", ModuleEdgeHub)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []*Module{agent, hub} {
				k := m.Authentication.SymmetricKey
				if m.Authentication.Type != provision.AuthSAS || k == nil || len(k.PrimaryKey) != 44 || len(k.SecondaryKey) != 44 || m.ManagedBy != "" {
					t.Errorf("system module %s = %+v", m.ModuleID, m)
				}
			}
			if agent.Authentication.SymmetricKey.PrimaryKey == hub.Authentication.SymmetricKey.PrimaryKey {
				t.Error("$edgeAgent and $edgeHub share a key")
			}

			// Updating and re-provisioning keep the system modules as they are.
			if _, err := f.hub.PutDevice(ctx, &Device{DeviceID: "edge1", Capabilities: edge, Status: StatusDisabled}, "*"); err != nil {
				t.Fatal(err)
			}
			if err := f.hub.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "edge1", RegistrationID: "edge1", IoTEdge: true,
				Auth: provision.DeviceAuth{Type: provision.AuthSAS, PrimaryKey: b64(32), SecondaryKey: b64(32)}}); err != nil {
				t.Fatal(err)
			}
			after, err := f.hub.GetModule(ctx, "edge1", ModuleEdgeAgent)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(agent, after); diff != "" {
				t.Errorf("$edgeAgent changed by device updates (-before +after):\n%s", diff)
			}

			// A removed system module comes back with the next edge update.
			if err := f.hub.RemoveModule(ctx, "edge1", ModuleEdgeHub, ""); err != nil {
				t.Fatal(err)
			}
			if _, err := f.hub.PutDevice(ctx, &Device{DeviceID: "edge1", Capabilities: edge}, "*"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{ModuleEdgeAgent, ModuleEdgeHub}, moduleIDs(t, f, "edge1")); diff != "" {
				t.Errorf("system modules after update (-want +got):\n%s", diff)
			}
		})
	}
}
