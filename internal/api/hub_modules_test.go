package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store/memstore"
)

// newModulesHarness is the hub harness with the module routes mounted too.
func newModulesHarness(t *testing.T) *hubHarness {
	t.Helper()
	h := newHubHarness(t)
	if err := h.api.MountHubModules(h.reg, nil, nil); err != nil {
		t.Fatalf("MountHubModules: %v", err)
	}
	return h
}

// disconnects records the module sessions the API asked to end.
type disconnects struct{ calls []string }

func (d *disconnects) DisconnectModule(deviceID, moduleID, why string) int {
	d.calls = append(d.calls, deviceID+"/"+moduleID+": "+why)
	return 1
}

func TestHubModuleDeleteDisconnects(t *testing.T) {
	h := newHubHarness(t)
	live := &disconnects{}
	if err := h.api.MountHubModules(h.reg, live, nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := h.reg.PutDevice(ctx, &registry.Device{DeviceID: "dev1"}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.reg.PutModule(ctx, &registry.Module{DeviceID: "dev1", ModuleID: "mod1"}, ""); err != nil {
		t.Fatal(err)
	}
	if res := h.hub("DELETE", "/devices/dev1/modules/nomod"+hubVersion, "", nil); res.status != http.StatusNotFound {
		t.Errorf("delete absent: %d %s", res.status, res.body)
	}
	if res := h.hub("DELETE", "/devices/dev1/modules/mod1"+hubVersion, "", nil); res.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}
	if diff := cmp.Diff([]string{"dev1/mod1: the module was deleted"}, live.calls); diff != "" {
		t.Errorf("disconnects (-want +got):\n%s", diff)
	}
}

func TestHubModules(t *testing.T) {
	h := newModulesHarness(t)
	ctx := context.Background()
	if _, err := h.reg.PutDevice(ctx, &registry.Device{DeviceID: "dev#1"}, ""); err != nil {
		t.Fatal(err)
	}
	key := testKey("module-key")

	// create, as Node's Registry.addModule sends it (empty secondary key)
	res := h.hub("PUT", "/devices/dev%231/modules/mod%241"+hubVersion,
		`{"moduleId":"mod$1","deviceId":"dev#1","managedBy":"IotEdge","etag":"x","connectionState":"Connected","authentication":{"type":"sas","symmetricKey":{"primaryKey":"`+key+`","secondaryKey":""}}}`, nil)
	if res.status != http.StatusOK {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	var created registry.Module
	res.decode(t, &created)
	if created.ETag == "" || res.header.Get("ETag") != strconv.Quote(created.ETag) {
		t.Errorf("ETag header %q, body etag %q", res.header.Get("ETag"), created.ETag)
	}
	if created.ModuleID != "mod$1" || created.DeviceID != "dev#1" || created.ManagedBy != "IotEdge" || created.ConnectionState != "Disconnected" ||
		created.Authentication.SymmetricKey.PrimaryKey != key || created.Authentication.SymmetricKey.SecondaryKey == "" {
		t.Errorf("created module = %+v", created)
	}
	var raw map[string]any
	res.decode(t, &raw)
	for _, k := range []string{"moduleId", "managedBy", "deviceId", "generationId", "etag", "connectionState", "connectionStateUpdatedTime",
		"lastActivityTime", "cloudToDeviceMessageCount", "authentication"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("Module JSON lacks %q: %s", k, res.body)
		}
	}
	if _, ok := raw["deviceGenerationId"]; ok {
		t.Errorf("Module JSON shows the stored deviceGenerationId: %s", res.body)
	}

	// get, then send the read-back module again as an update
	res = h.hub("GET", "/devices/dev%231/modules/mod%241"+hubVersion, "", nil)
	var got registry.Module
	res.decode(t, &got)
	if diff := cmp.Diff(created, got); res.status != http.StatusOK || diff != "" {
		t.Errorf("get: %d (-created +got):\n%s", res.status, diff)
	}
	res = h.hub("PUT", "/devices/dev%231/modules/mod%241"+hubVersion, string(res.body), map[string]string{"If-Match": strconv.Quote(got.ETag)})
	var updated registry.Module
	res.decode(t, &updated)
	if res.status != http.StatusOK || updated.ETag == got.ETag || updated.Authentication.SymmetricKey.PrimaryKey != key {
		t.Errorf("update: %d %+v", res.status, updated)
	}

	res = h.hub("GET", "/devices/dev%231/modules"+hubVersion, "", nil)
	var list []registry.Module
	res.decode(t, &list)
	if res.status != http.StatusOK || len(list) != 1 || list[0].ModuleID != "mod$1" || list[0].ETag != updated.ETag {
		t.Errorf("list: %d %s", res.status, res.body)
	}
	if _, err := h.reg.PutDevice(ctx, &registry.Device{DeviceID: "bare"}, ""); err != nil {
		t.Fatal(err)
	}
	if res := h.hub("GET", "/devices/bare/modules"+hubVersion, "", nil); res.status != http.StatusOK || string(res.body) != "[]" {
		t.Errorf("list of a device without modules: %d %s", res.status, res.body)
	}

	readOnly := map[string]string{"Authorization": h.hubToken("registryRead")}
	tests := []struct {
		name       string
		method     string
		path, body string
		hdr        map[string]string
		wantStatus int
		wantCode   string
		wantText   string
	}{
		{name: "create again", method: "PUT", path: "/devices/dev%231/modules/mod%241", body: `{}`, wantStatus: 409, wantCode: hubModuleAlreadyExists, wantText: "mod$1"},
		{name: "create on absent device", method: "PUT", path: "/devices/absent/modules/m", body: `{}`, wantStatus: 404, wantCode: hubDeviceNotFound, wantText: "Device absent does not exist"},
		{name: "create system module", method: "PUT", path: "/devices/dev%231/modules/%24edgeHub", body: `{}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "reserved for the system modules"},
		{name: "stale etag", method: "PUT", path: "/devices/dev%231/modules/mod%241", body: `{}`, hdr: map[string]string{"If-Match": strconv.Quote(created.ETag)}, wantStatus: 412, wantCode: hubPreconditionFailed, wantText: "module"},
		{name: "update absent", method: "PUT", path: "/devices/dev%231/modules/nomod", body: `{}`, hdr: map[string]string{"If-Match": `"*"`}, wantStatus: 404, wantCode: hubModuleNotFound},
		{name: "module id mismatch", method: "PUT", path: "/devices/dev%231/modules/a", body: `{"moduleId":"b"}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: `moduleId "b" in the body does not match "a"`},
		{name: "device id mismatch", method: "PUT", path: "/devices/dev%231/modules/a", body: `{"deviceId":"other"}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: `deviceId "other"`},
		{name: "empty body", method: "PUT", path: "/devices/dev%231/modules/a", wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "request body is empty"},
		{name: "wrong type", method: "PUT", path: "/devices/dev%231/modules/a", body: `{"managedBy":5}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "field managedBy must be a string"},
		{name: "invalid key", method: "PUT", path: "/devices/dev%231/modules/a", body: `{"authentication":{"symmetricKey":{"primaryKey":"c2hvcnQ="}}}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "authentication.symmetricKey.primaryKey"},
		{name: "invalid module id", method: "PUT", path: "/devices/dev%231/modules/a%20b", body: `{}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "moduleId:"},
		{name: "write needs RegistryWrite", method: "PUT", path: "/devices/dev%231/modules/a", body: `{}`, hdr: readOnly, wantStatus: 401, wantCode: hubUnauthorized},
		{name: "no token", method: "GET", path: "/devices/dev%231/modules", hdr: map[string]string{"Authorization": "-"}, wantStatus: 401, wantCode: hubUnauthorized},
		{name: "no api-version", method: "GET", path: "/devices/dev%231/modules?x=1", wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "api-version"},
		{name: "get absent", method: "GET", path: "/devices/dev%231/modules/nomod", wantStatus: 404, wantCode: hubModuleNotFound, wantText: "Module nomod on device dev#1 does not exist"},
		{name: "get on absent device", method: "GET", path: "/devices/absent/modules/m", wantStatus: 404, wantCode: hubDeviceNotFound},
		{name: "list on absent device", method: "GET", path: "/devices/absent/modules", wantStatus: 404, wantCode: hubDeviceNotFound},
		{name: "delete stale", method: "DELETE", path: "/devices/dev%231/modules/mod%241", hdr: map[string]string{"If-Match": "stale"}, wantStatus: 412, wantCode: hubPreconditionFailed},
		{name: "delete absent", method: "DELETE", path: "/devices/dev%231/modules/nomod", hdr: map[string]string{"If-Match": `"*"`}, wantStatus: 404, wantCode: hubModuleNotFound},
		{name: "delete needs RegistryWrite", method: "DELETE", path: "/devices/dev%231/modules/mod%241", hdr: readOnly, wantStatus: 401, wantCode: hubUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if !strings.Contains(path, "?") {
				path += hubVersion
			}
			res := h.hub(tc.method, path, tc.body, tc.hdr)
			if res.status != tc.wantStatus || res.code != tc.wantCode || !strings.Contains(res.message, tc.wantText) {
				t.Errorf("%d %s %s, want %d %s containing %q", res.status, res.code, res.body, tc.wantStatus, tc.wantCode, tc.wantText)
			}
		})
	}

	// read-only policies may read
	if res := h.hub("GET", "/devices/dev%231/modules/mod%241"+hubVersion, "", readOnly); res.status != http.StatusOK {
		t.Errorf("get with RegistryRead: %d %s", res.status, res.body)
	}
	res = h.hub("DELETE", "/devices/dev%231/modules/mod%241"+hubVersion, "", map[string]string{"If-Match": strconv.Quote(updated.ETag)})
	if res.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}
	if res := h.hub("GET", "/devices/dev%231/modules/mod%241"+hubVersion, "", nil); res.status != http.StatusNotFound || res.code != hubModuleNotFound {
		t.Errorf("get after delete: %d %s", res.status, res.body)
	}
}

func TestHubModulesEdgeDevice(t *testing.T) {
	h := newModulesHarness(t)
	res := h.hub("PUT", "/devices/edge1"+hubVersion, `{"deviceId":"edge1","capabilities":{"iotEdge":true}}`, nil)
	if res.status != http.StatusOK {
		t.Fatalf("create edge device: %d %s", res.status, res.body)
	}
	res = h.hub("GET", "/devices/edge1/modules"+hubVersion, "", nil)
	var list []registry.Module
	res.decode(t, &list)
	ids := []string{}
	for _, m := range list {
		ids = append(ids, m.ModuleID)
	}
	if diff := cmp.Diff([]string{"$edgeAgent", "$edgeHub"}, ids); diff != "" {
		t.Errorf("modules of a new edge device (-want +got):\n%s", diff)
	}
	// Node encodes $ in the path; the identity can be read and updated.
	if res := h.hub("GET", "/devices/edge1/modules/%24edgeAgent"+hubVersion, "", nil); res.status != http.StatusOK {
		t.Errorf("get $edgeAgent: %d %s", res.status, res.body)
	}
	if res := h.hub("PUT", "/devices/edge1/modules/%24edgeHub"+hubVersion, `{}`, map[string]string{"If-Match": `"*"`}); res.status != http.StatusOK {
		t.Errorf("update $edgeHub: %d %s", res.status, res.body)
	}
	// Deleting the device deletes its modules.
	if res := h.hub("DELETE", "/devices/edge1"+hubVersion, "", map[string]string{"If-Match": `"*"`}); res.status != http.StatusNoContent {
		t.Fatalf("delete device: %d %s", res.status, res.body)
	}
	if res := h.hub("PUT", "/devices/edge1"+hubVersion, `{}`, nil); res.status != http.StatusOK {
		t.Fatalf("re-create as a leaf: %d %s", res.status, res.body)
	}
	if res := h.hub("GET", "/devices/edge1/modules"+hubVersion, "", nil); res.status != http.StatusOK || string(res.body) != "[]" {
		t.Errorf("modules after delete and re-create: %d %s", res.status, res.body)
	}
}

func TestMountHubModulesErrors(t *testing.T) {
	h := newHarness(t)
	if err := h.api.MountHubModules(nil, nil, nil); err == nil {
		t.Error("MountHubModules(nil) succeeded")
	}
	st := memstore.New(0)
	defer st.Close()
	if err := h.api.MountHubModules(registry.New("bad host/x", st, nil), nil, nil); err == nil || !strings.Contains(err.Error(), "not a host name") {
		t.Errorf("MountHubModules with a bad host name: %v", err)
	}
	if err := h.api.MountHubModules(registry.New("hub.example", st, nil), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.api.MountHubModules(registry.New("hub.example", st, nil), nil, nil); err == nil || !strings.Contains(err.Error(), "conflicts") {
		t.Errorf("second MountHubModules: %v, want a route conflict", err)
	}
}

func FuzzModuleInput(f *testing.F) {
	f.Add([]byte(`{"moduleId":"m","deviceId":"d","managedBy":"IotEdge","authentication":{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}}`))
	f.Add([]byte(`{"moduleId":"other"}`))
	f.Add([]byte(`{"managedBy":null,"authentication":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeModuleInput(body, "d", "m")
		if err != nil {
			return
		}
		if m.DeviceID != "d" || m.ModuleID != "m" {
			t.Errorf("decoded module %+v is not for the path's d/m", m)
		}
	})
}
