package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store/memstore"
)

func TestHubModuleTwins(t *testing.T) {
	h := newHubHarness(t)
	if err := h.api.MountHubModuleTwins(h.reg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := h.reg.PutDevice(ctx, &registry.Device{DeviceID: "dev1"}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.reg.PutModule(ctx, &registry.Module{DeviceID: "dev1", ModuleID: "mod1"}, ""); err != nil {
		t.Fatal(err)
	}

	res := h.hub("GET", "/twins/dev1/modules/mod1"+hubVersion, "", nil)
	if res.status != http.StatusOK {
		t.Fatalf("get: %d %s", res.status, res.body)
	}
	var raw map[string]any
	res.decode(t, &raw)
	for _, k := range []string{"deviceId", "moduleId", "etag", "deviceEtag", "status", "statusUpdateTime", "connectionState",
		"lastActivityTime", "cloudToDeviceMessageCount", "authenticationType", "x509Thumbprint", "modelId", "version", "tags", "properties"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("module twin JSON lacks %q: %s", k, res.body)
		}
	}
	for _, k := range []string{"capabilities", "deviceScope", "parentScopes"} {
		if _, ok := raw[k]; ok {
			t.Errorf("module twin JSON has the device-only %q: %s", k, res.body)
		}
	}
	if raw["moduleId"] != "mod1" || raw["status"] != "enabled" || raw["authenticationType"] != "sas" || res.header.Get("ETag") != strconv.Quote(raw["etag"].(string)) {
		t.Errorf("module twin %s, ETag %q", res.body, res.header.Get("ETag"))
	}

	// Node's Twin.update: the read-back twin's identity fields plus a patch, If-Match "*".
	res = h.hub("PATCH", "/twins/dev1/modules/mod1"+hubVersion,
		`{"deviceId":"dev1","moduleId":"mod1","tags":{"role":"sensor"},"properties":{"desired":{"interval":5}}}`, map[string]string{"If-Match": `"*"`})
	var tw moduleTwinView
	res.decode(t, &tw)
	if res.status != http.StatusOK || tw.Version != 2 || desiredJSON(t, tw.Properties.Desired) != `{"$version":2,"interval":5}` ||
		canonicalJSON(t, tw.Tags) != `{"role":"sensor"}` {
		t.Fatalf("patch: %d %s", res.status, res.body)
	}
	res = h.hub("PUT", "/twins/dev1/modules/mod1"+hubVersion, `{"properties":{"desired":{"mode":"x"},"reported":{"ignored":1}}}`,
		map[string]string{"If-Match": strconv.Quote(tw.ETag)})
	var replaced moduleTwinView
	res.decode(t, &replaced)
	if res.status != http.StatusOK || desiredJSON(t, replaced.Properties.Desired) != `{"$version":3,"mode":"x"}` ||
		canonicalJSON(t, replaced.Tags) != `{}` || canonicalJSON(t, replaced.Properties.Reported) != `{"$version":1}` {
		t.Fatalf("replace: %d %s", res.status, res.body)
	}

	readOnly := map[string]string{"Authorization": h.hubToken("registryRead")}
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		wantStatus               int
		wantCode, wantText       string
	}{
		{"stale etag", "PATCH", "/twins/dev1/modules/mod1", `{"tags":{"a":1}}`, map[string]string{"If-Match": strconv.Quote(tw.ETag)}, 412, hubPreconditionFailed, "module twin"},
		{"absent module", "GET", "/twins/dev1/modules/nomod", "", nil, 404, hubModuleNotFound, "Module nomod on device dev1 does not exist"},
		{"absent device", "GET", "/twins/nodev/modules/mod1", "", nil, 404, hubDeviceNotFound, "Device nodev does not exist"},
		{"patch absent module", "PATCH", "/twins/dev1/modules/nomod", `{"tags":{"a":1}}`, nil, 404, hubModuleNotFound, ""},
		{"module id mismatch", "PATCH", "/twins/dev1/modules/mod1", `{"moduleId":"other","tags":{}}`, nil, 400, hubArgumentInvalid, `moduleId "other"`},
		{"reported in a patch", "PATCH", "/twins/dev1/modules/mod1", `{"properties":{"reported":{"a":1}}}`, nil, 400, hubArgumentInvalid, "properties.reported"},
		{"bad key", "PATCH", "/twins/dev1/modules/mod1", `{"properties":{"desired":{"a.b":1}}}`, nil, 400, hubArgumentInvalid, "properties.desired"},
		{"write needs RegistryWrite", "PATCH", "/twins/dev1/modules/mod1", `{"tags":{}}`, readOnly, 401, hubUnauthorized, ""},
		{"no token", "GET", "/twins/dev1/modules/mod1", "", map[string]string{"Authorization": "-"}, 401, hubUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := h.hub(tc.method, tc.path+hubVersion, tc.body, tc.hdr)
			if res.status != tc.wantStatus || res.code != tc.wantCode || !strings.Contains(res.message, tc.wantText) {
				t.Errorf("%d %s %s, want %d %s containing %q", res.status, res.code, res.body, tc.wantStatus, tc.wantCode, tc.wantText)
			}
		})
	}
	if res := h.hub("GET", "/twins/dev1/modules/mod1"+hubVersion, "", readOnly); res.status != http.StatusOK {
		t.Errorf("get with RegistryRead: %d %s", res.status, res.body)
	}
}

// desiredJSON is canonicalJSON of a desired section without its $metadata,
// which the registry's tests check.
func desiredJSON(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	if _, ok := m["$metadata"]; !ok {
		t.Errorf("desired %s has no $metadata", raw)
	}
	delete(m, "$metadata")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func canonicalJSON(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// deviceModulesHarness mounts the module routes with device-credential
// management through a real authenticator over the harness's registry.
type deviceModulesHarness struct {
	*hubHarness
	attempts *memstore.Store
}

func newDeviceModulesHarness(t *testing.T) *deviceModulesHarness {
	t.Helper()
	h := newHubHarness(t)
	attempts := memstore.New(100)
	t.Cleanup(func() { attempts.Close() })
	auth, err := hubauth.New(hubauth.Options{HubHostName: hubHost, Identities: hubauth.NewRegistryIdentities(h.reg),
		Attempts: attempts, Now: func() time.Time { return h.now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.api.MountHubModules(h.reg, nil, auth); err != nil {
		t.Fatal(err)
	}
	return &deviceModulesHarness{hubHarness: h, attempts: attempts}
}

// deviceToken is a SAS token of a device (or, with a module ID, a module)
// signed with key, as aziot-identityd sends it.
func (h *deviceModulesHarness) deviceToken(resource, key string) string {
	raw, err := sas.DecodeKey(key)
	if err != nil {
		h.t.Fatal(err)
	}
	return sas.Sign(strings.ToLower(hubHost)+"/devices/"+resource, raw, "", h.now.Add(30*time.Second))
}

func (h *deviceModulesHarness) device(id string, edge bool) string {
	h.t.Helper()
	d, err := h.reg.PutDevice(context.Background(), &registry.Device{DeviceID: id, Capabilities: registry.Capabilities{IoTEdge: edge}}, "")
	if err != nil {
		h.t.Fatal(err)
	}
	return d.Authentication.SymmetricKey.PrimaryKey
}

func TestDeviceCredentialModules(t *testing.T) {
	h := newDeviceModulesHarness(t)
	edgeKey := h.device("edge1", true)
	otherKey := h.device("edge2", true)
	leafKey := h.device("leaf", false)
	own := map[string]string{"Authorization": h.deviceToken("edge1", edgeKey)}

	// The identity service's create: the module comes back with its keys.
	res := h.hub("PUT", "/devices/edge1/modules/SimulatedTemperatureSensor?api-version=2017-11-08-preview",
		`{"moduleId":"SimulatedTemperatureSensor","managedBy":"IotEdge","deviceId":"edge1","authentication":{"type":"sas"}}`, own)
	var m registry.Module
	res.decode(t, &m)
	if res.status != http.StatusOK || m.ManagedBy != registry.ManagedByIotEdge || m.Authentication.SymmetricKey == nil || m.Authentication.SymmetricKey.PrimaryKey == "" {
		t.Fatalf("create with the device's token: %d %s", res.status, res.body)
	}
	if res := h.hub("GET", "/devices/edge1/modules/%24edgeAgent?api-version=2017-11-08-preview", "", own); res.status != http.StatusOK || !strings.Contains(string(res.body), "primaryKey") {
		t.Errorf("get $edgeAgent with the device's token: %d %s", res.status, res.body)
	}
	var list []registry.Module
	res = h.hub("GET", "/devices/edge1/modules?api-version=2017-11-08-preview", "", own)
	res.decode(t, &list)
	if res.status != http.StatusOK || len(list) != 3 {
		t.Errorf("list with the device's token: %d %s", res.status, res.body)
	}
	withStar := map[string]string{"Authorization": own["Authorization"], "If-Match": "*"}
	if res := h.hub("PUT", "/devices/edge1/modules/SimulatedTemperatureSensor?api-version=2017-11-08-preview",
		`{"moduleId":"SimulatedTemperatureSensor","managedBy":"IotEdge","deviceId":"edge1","authentication":{"type":"sas"}}`, withStar); res.status != http.StatusOK {
		t.Errorf("update with the device's token: %d %s", res.status, res.body)
	}

	for _, tc := range []struct {
		name, method, path, auth string
	}{
		{"another device's token", "GET", "/devices/edge1/modules", h.deviceToken("edge2", otherKey)},
		{"own token on another device", "GET", "/devices/edge2/modules", h.deviceToken("edge1", edgeKey)},
		{"own token, other device's modules", "PUT", "/devices/edge2/modules/x", h.deviceToken("edge1", edgeKey)},
		{"token signed with the wrong key", "GET", "/devices/edge1/modules", h.deviceToken("edge1", otherKey)},
		{"module token", "GET", "/devices/edge1/modules", h.deviceToken("edge1/modules/SimulatedTemperatureSensor", m.Authentication.SymmetricKey.PrimaryKey)},
		{"leaf device", "GET", "/devices/leaf/modules", h.deviceToken("leaf", leafKey)},
		{"device token on the device route", "GET", "/devices/edge1", h.deviceToken("edge1", edgeKey)},
		{"unknown device", "GET", "/devices/ghost/modules", h.deviceToken("ghost", edgeKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := ""
			if tc.method == "PUT" {
				body = `{}`
			}
			res := h.hub(tc.method, tc.path+hubVersion, body, map[string]string{"Authorization": tc.auth})
			if res.status != http.StatusUnauthorized || res.code != hubUnauthorized {
				t.Errorf("%d %s %s, want 401", res.status, res.code, res.body)
			}
		})
	}
	// The refusal of a foreign token is in the device's attempt log.
	at, err := h.attempts.Attempts(context.Background(), "edge1", 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range at {
		found = found || (a.Protocol == ProtocolHubHTTPS && a.Outcome == "denied")
	}
	if !found {
		t.Errorf("attempt log of edge1 has no denied %s attempt: %+v", ProtocolHubHTTPS, at)
	}
	if _, err := h.reg.GetModule(context.Background(), "edge2", "x"); err == nil {
		t.Error("edge1's token created a module on edge2")
	}

	// Hub policies keep working on the same routes.
	if res := h.hub("GET", "/devices/edge2/modules"+hubVersion, "", nil); res.status != http.StatusOK {
		t.Errorf("list with iothubowner: %d %s", res.status, res.body)
	}
	if res := h.hub("DELETE", "/devices/edge1/modules/SimulatedTemperatureSensor?api-version=2017-11-08-preview", "", withStar); res.status != http.StatusNoContent {
		t.Errorf("delete with the device's token: %d %s", res.status, res.body)
	}
}

func TestDeviceCertificateModules(t *testing.T) {
	h := newDeviceModulesHarness(t)
	client, cert := h.withClientCert("edgex")
	sum := sha256.Sum256(cert.Raw)
	thumb := hex.EncodeToString(sum[:])
	ctx := context.Background()
	if _, err := h.reg.PutDevice(ctx, &registry.Device{DeviceID: "edgex", Capabilities: registry.Capabilities{IoTEdge: true},
		Authentication: registry.Authentication{Type: "selfSigned", X509Thumbprint: registry.X509Thumbprint{PrimaryThumbprint: &thumb}}}, ""); err != nil {
		t.Fatal(err)
	}
	h.device("edge2", true)
	do := func(method, path, body string) (int, string) {
		req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := res.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return res.StatusCode, b.String()
	}
	if st, body := do("PUT", "/devices/edgex/modules/m1?api-version=2017-11-08-preview", `{"moduleId":"m1","managedBy":"IotEdge","deviceId":"edgex","authentication":{"type":"sas"}}`); st != http.StatusOK || !strings.Contains(body, "primaryKey") {
		t.Fatalf("create with the device certificate: %d %s", st, body)
	}
	if st, body := do("GET", "/devices/edgex/modules/m1?api-version=2017-11-08-preview", ""); st != http.StatusOK {
		t.Errorf("get with the device certificate: %d %s", st, body)
	}
	if st, body := do("GET", "/devices/edge2/modules?api-version=2017-11-08-preview", ""); st != http.StatusUnauthorized {
		t.Errorf("another device's modules with the certificate: %d %s", st, body)
	}
}

func TestHubQueryModules(t *testing.T) {
	h := newQueryHarness(t, 3, nil)
	ctx := context.Background()
	for _, id := range []string{"dev-0", "dev-2"} {
		if _, err := h.reg.PutModule(ctx, &registry.Module{DeviceID: id, ModuleID: "sensor"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.reg.PatchModuleTwin(ctx, "dev-2", "sensor", registry.TwinUpdate{Tags: json.RawMessage(`{"kind":"temp"}`)}, "*"); err != nil {
		t.Fatal(err)
	}
	res := h.hub(http.MethodPost, "/devices/query"+hubVersion, queryBody("SELECT * FROM devices.modules WHERE tags.kind = 'temp'"), nil)
	var twins []map[string]any
	res.decode(t, &twins)
	if res.status != http.StatusOK || res.header.Get("x-ms-item-type") != "twin" || len(twins) != 1 ||
		twins[0]["deviceId"] != "dev-2" || twins[0]["moduleId"] != "sensor" {
		t.Fatalf("module query: %d %s", res.status, res.body)
	}
	res = h.hub(http.MethodPost, "/devices/query"+hubVersion, queryBody("SELECT deviceId, moduleId FROM devices.modules"), map[string]string{"x-ms-max-item-count": "1"})
	var page []map[string]any
	res.decode(t, &page)
	if res.status != http.StatusOK || len(page) != 1 || page[0]["deviceId"] != "dev-0" || res.header.Get("x-ms-continuation") == "" {
		t.Errorf("first page of module rows: %d %s (continuation %q)", res.status, res.body, res.header.Get("x-ms-continuation"))
	}
}
