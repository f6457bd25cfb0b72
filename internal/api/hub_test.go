package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store/memstore"
)

const (
	hubHost    = "Hub.Example.Test"
	hubVersion = "?api-version=2021-04-12"
)

// hubPolicyRights are the rights of the instance's built-in hub policies (internal/instance).
var hubPolicyRights = map[string][]string{
	"iothubowner":       {RightRegistryRead, RightRegistryWrite, RightServiceConnect, RightDeviceConnect},
	"service":           {RightServiceConnect},
	"registryRead":      {RightRegistryRead},
	"registryReadWrite": {RightRegistryRead, RightRegistryWrite},
	"device":            {RightDeviceConnect},
}

// hubHarness is the API harness with the hub service API mounted over a
// real registry on an in-memory store.
type hubHarness struct {
	*harness
	reg *registry.Hub
}

func newHubHarness(t *testing.T) *hubHarness {
	t.Helper()
	h := newHarness(t)
	for name, rights := range hubPolicyRights {
		h.policies[name] = Policy{Name: name, Realm: RealmHub, PrimaryKey: testKey(name + "-primary"), SecondaryKey: testKey(name + "-secondary"), Rights: rights}
	}
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	reg := registry.New(hubHost, st, func() time.Time { return h.now })
	if err := h.api.MountHub(reg); err != nil {
		t.Fatalf("MountHub: %v", err)
	}
	return &hubHarness{harness: h, reg: reg}
}

// hubToken is a valid token of a hub policy.
func (h *hubHarness) hubToken(policy string) string {
	return token(strings.ToLower(hubHost), policy, testKey(policy+"-primary"), h.now.Add(time.Hour))
}

// hubResponse is a completed hub API exchange.
type hubResponse struct {
	status int
	header http.Header
	body   []byte
	// code and message are the IoT Hub error name and Message of an error answer.
	code, message string
}

func (r hubResponse) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// hub sends a request (with the owner's token unless hdr sets
// Authorization, "-" meaning none) and checks what every answer carries:
// the request ID, JSON bodies, and IoT Hub's error shape.
func (h *hubHarness) hub(method, path, body string, hdr map[string]string) hubResponse {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", h.hubToken("iothubowner"))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if req.Header.Get("Authorization") == "-" {
		req.Header.Del("Authorization")
	}
	res, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	out := hubResponse{status: res.StatusCode, header: res.Header, body: data}
	reqID := res.Header.Get("x-ms-request-id")
	if !uuidPattern.MatchString(reqID) {
		h.t.Errorf("%s %s: x-ms-request-id %q is not a UUID", method, path, reqID)
	}
	if res.StatusCode == http.StatusNoContent {
		if len(data) != 0 {
			h.t.Errorf("%s %s: 204 with a body %q", method, path, data)
		}
		return out
	}
	if ct := res.Header.Get("Content-Type"); ct != contentTypeJSON || !json.Valid(data) {
		h.t.Errorf("%s %s: Content-Type %q, body %q", method, path, ct, data)
	}
	if res.StatusCode < 400 {
		return out
	}
	var eb hubErrorBody
	if err := json.Unmarshal(data, &eb); err != nil {
		h.t.Fatalf("%s %s: error body %q: %v", method, path, data, err)
	}
	rest, ok := strings.CutPrefix(eb.Message, "ErrorCode:")
	code, text, ok2 := strings.Cut(rest, ";")
	if !ok || !ok2 || text == "" {
		h.t.Errorf("%s %s: Message %q is not ErrorCode:<Name>;<text>", method, path, eb.Message)
	}
	if hc := res.Header.Get("iothub-errorcode"); hc != code {
		h.t.Errorf("%s %s: iothub-errorcode %q, Message names %q", method, path, hc, code)
	}
	if want := "Tracking ID:" + reqID + "-TimeStamp:11/03/2026 10:00:00"; eb.ExceptionMessage != want {
		h.t.Errorf("%s %s: ExceptionMessage %q, want %q", method, path, eb.ExceptionMessage, want)
	}
	out.code, out.message = code, eb.Message
	return out
}

func TestHubAuth(t *testing.T) {
	type route struct{ method, path, body string }
	var (
		read  = []route{{"GET", "/devices/dev1", ""}, {"GET", "/devices", ""}, {"GET", "/twins/dev1", ""}}
		write = []route{{"PUT", "/devices/new1", `{"deviceId":"new1"}`}, {"PATCH", "/twins/dev1", `{"tags":{"a":1}}`},
			{"PUT", "/twins/dev1", `{"tags":{}}`}, {"DELETE", "/devices/gone", ""}}
	)
	tests := []struct {
		name           string
		auth           func(h *hubHarness) string
		readOK, wrtOK  bool
		wantLogContent string
	}{
		{name: "iothubowner", auth: func(h *hubHarness) string { return h.hubToken("iothubowner") }, readOK: true, wrtOK: true},
		{name: "registryReadWrite", auth: func(h *hubHarness) string { return h.hubToken("registryReadWrite") }, readOK: true, wrtOK: true},
		{name: "registryRead", auth: func(h *hubHarness) string { return h.hubToken("registryRead") }, readOK: true, wantLogContent: "lacks the RegistryWrite right"},
		{name: "service", auth: func(h *hubHarness) string { return h.hubToken("service") }, wantLogContent: "lacks the RegistryRead right"},
		{name: "device", auth: func(h *hubHarness) string { return h.hubToken("device") }, wantLogContent: "lacks the RegistryRead right"},
		{
			name: "secondary key and C# field order",
			auth: func(h *hubHarness) string {
				return token("HUB.example.test", "registryReadWrite", testKey("registryReadWrite-secondary"), h.now.Add(time.Hour), "sr", "sig", "se", "skn")
			},
			readOK: true, wrtOK: true,
		},
		{
			name: "dps policy is refused",
			auth: func(h *hubHarness) string {
				return token(strings.ToLower(hubHost), "provisioningserviceowner", testKey("owner-primary"), h.now.Add(time.Hour))
			},
			wantLogContent: `realm "dps"`,
		},
		{
			name: "token for the DPS host name",
			auth: func(h *hubHarness) string {
				return token(testHost, "iothubowner", testKey("iothubowner-primary"), h.now.Add(time.Hour))
			},
			wantLogContent: `sr host "muster.example.test"`,
		},
		{
			name: "device token without skn",
			auth: func(h *hubHarness) string {
				return token(strings.ToLower(hubHost)+"/devices/dev1", "", testKey("iothubowner-primary"), h.now.Add(time.Hour), "sr", "sig", "se")
			},
			wantLogContent: "no skn",
		},
		{
			name: "expired",
			auth: func(h *hubHarness) string {
				return token(strings.ToLower(hubHost), "iothubowner", testKey("iothubowner-primary"), h.now.Add(-10*time.Minute))
			},
			wantLogContent: "expired",
		},
		{
			name: "wrong key",
			auth: func(h *hubHarness) string {
				return token(strings.ToLower(hubHost), "iothubowner", testKey("registryRead-primary"), h.now.Add(time.Hour))
			},
			wantLogContent: "matches neither key",
		},
		{name: "no header", auth: func(*hubHarness) string { return "-" }, wantLogContent: "no Authorization header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHubHarness(t)
			for _, id := range []string{"dev1", "gone"} {
				if _, err := h.reg.PutDevice(context.Background(), &registry.Device{DeviceID: id}, ""); err != nil {
					t.Fatal(err)
				}
			}
			h.logs.take()
			check := func(routes []route, ok bool) {
				for _, r := range routes {
					res := h.hub(r.method, r.path+hubVersion, r.body, map[string]string{"Authorization": tc.auth(h)})
					if ok && res.status >= 300 {
						t.Errorf("%s %s: %d %s, want success", r.method, r.path, res.status, res.body)
					}
					if !ok && (res.status != http.StatusUnauthorized || res.code != hubUnauthorized) {
						t.Errorf("%s %s: %d %s, want 401 %s", r.method, r.path, res.status, res.code, hubUnauthorized)
					}
				}
			}
			check(read, tc.readOK)
			check(write, tc.wrtOK)
			logs := h.logs.take()
			// slog's text handler quotes the error, escaping its quotes.
			if escaped := strings.ReplaceAll(tc.wantLogContent, `"`, `\"`); tc.wantLogContent != "" && !strings.Contains(logs, escaped) {
				t.Errorf("log does not explain the refusal with %q:\n%s", tc.wantLogContent, logs)
			}
			if strings.Contains(logs, testKey("iothubowner-primary")) || strings.Contains(logs, "sig=") {
				t.Errorf("log contains a key or a token:\n%s", logs)
			}
		})
	}
}

func TestHubDevices(t *testing.T) {
	h := newHubHarness(t)
	key := testKey("device-key")

	// create
	res := h.hub("PUT", "/devices/dev%231"+hubVersion, `{"deviceId":"dev#1","authentication":{"type":"sas","symmetricKey":{"primaryKey":"`+key+`","secondaryKey":""}},"capabilities":{"iotEdge":true},"connectionState":"Connected","lastActivityTime":"0001-01-01T00:00:00"}`, nil)
	if res.status != http.StatusOK {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	var created registry.Device
	res.decode(t, &created)
	if res.header.Get("ETag") != strconv.Quote(created.ETag) || created.ETag == "" {
		t.Errorf("ETag header %q, body etag %q", res.header.Get("ETag"), created.ETag)
	}
	if created.DeviceID != "dev#1" || created.Authentication.SymmetricKey.PrimaryKey != key || created.Authentication.SymmetricKey.SecondaryKey == "" ||
		created.ConnectionState != "Disconnected" || created.DeviceScope != "ms-azure-iot-edge://dev#1-"+created.GenerationID || created.Status != "enabled" {
		t.Errorf("created device = %+v", created)
	}
	var raw map[string]any
	res.decode(t, &raw)
	for _, k := range []string{"deviceId", "generationId", "etag", "connectionState", "status", "statusReason", "connectionStateUpdatedTime",
		"statusUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount", "authentication", "capabilities", "deviceScope", "parentScopes"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("Device JSON lacks %q: %s", k, res.body)
		}
	}

	tests := []struct {
		name       string
		method     string
		path, body string
		hdr        map[string]string
		wantStatus int
		wantCode   string
		wantText   string
	}{
		{name: "create again", method: "PUT", path: "/devices/dev%231", body: `{}`, wantStatus: 409, wantCode: hubDeviceAlreadyExists},
		{name: "stale etag", method: "PUT", path: "/devices/dev%231", body: `{}`, hdr: map[string]string{"If-Match": `"stale"`}, wantStatus: 412, wantCode: hubPreconditionFailed},
		{name: "update absent", method: "PUT", path: "/devices/absent", body: `{}`, hdr: map[string]string{"If-Match": `"*"`}, wantStatus: 404, wantCode: hubDeviceNotFound, wantText: "Device absent does not exist"},
		{name: "id mismatch", method: "PUT", path: "/devices/a", body: `{"deviceId":"b"}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: `deviceId "b" in the body does not match "a"`},
		{name: "id case differs", method: "PUT", path: "/devices/a", body: `{"deviceId":"A"}`, wantStatus: 400, wantCode: hubArgumentInvalid},
		{name: "empty body", method: "PUT", path: "/devices/a", wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "request body is empty"},
		{name: "not JSON", method: "PUT", path: "/devices/a", body: `{"deviceId":`, wantStatus: 400, wantCode: hubArgumentInvalid},
		{name: "wrong type", method: "PUT", path: "/devices/a", body: `{"status":5}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "field status must be a string"},
		{name: "invalid key", method: "PUT", path: "/devices/a", body: `{"authentication":{"symmetricKey":{"primaryKey":"c2hvcnQ="}}}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "authentication.symmetricKey.primaryKey: key is 5 bytes"},
		{name: "invalid id", method: "PUT", path: "/devices/a%20b", body: `{}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "deviceId:"},
		{name: "too large", method: "PUT", path: "/devices/a", body: `{"statusReason":"` + strings.Repeat("x", 5000) + `"}`, wantStatus: 413, wantCode: hubMessageTooLarge},
		{name: "no api-version", method: "GET", path: "/devices/dev%231?x=1", wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "api-version"},
		{name: "get absent", method: "GET", path: "/devices/absent", wantStatus: 404, wantCode: hubDeviceNotFound},
		{name: "top too large", method: "GET", path: "/devices?top=1001&api-version=1", wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "top"},
		{name: "top not a number", method: "GET", path: "/devices?top=x&api-version=1", wantStatus: 400, wantCode: hubArgumentInvalid},
		{name: "delete stale", method: "DELETE", path: "/devices/dev%231", hdr: map[string]string{"If-Match": "stale"}, wantStatus: 412, wantCode: hubPreconditionFailed},
		{name: "delete absent", method: "DELETE", path: "/devices/absent", hdr: map[string]string{"If-Match": `"*"`}, wantStatus: 404, wantCode: hubDeviceNotFound},
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

	// update under the current etag (quoted, as Node sends it)
	res = h.hub("PUT", "/devices/dev%231"+hubVersion, `{"deviceId":"dev#1","status":"disabled","statusReason":"stolen","authentication":{"type":"selfSigned","x509Thumbprint":{"primaryThumbprint":"`+strings.Repeat("AB", 20)+`"}}}`,
		map[string]string{"If-Match": strconv.Quote(created.ETag)})
	if res.status != http.StatusOK {
		t.Fatalf("update: %d %s", res.status, res.body)
	}
	var updated registry.Device
	res.decode(t, &updated)
	if updated.ETag == created.ETag || updated.GenerationID != created.GenerationID || updated.Status != "disabled" || updated.Authentication.Type != "selfSigned" ||
		updated.Authentication.SymmetricKey != nil || updated.Capabilities.IoTEdge {
		t.Errorf("updated device = %+v", updated)
	}
	res = h.hub("GET", "/devices/dev%231"+hubVersion, "", nil)
	var got registry.Device
	res.decode(t, &got)
	if diff := cmp.Diff(updated, got); diff != "" || res.header.Get("ETag") != strconv.Quote(updated.ETag) {
		t.Errorf("GET after update (-put +get):\n%s\nETag %q", diff, res.header.Get("ETag"))
	}

	// list
	for _, id := range []string{"b-dev", "a-dev"} {
		if res := h.hub("PUT", "/devices/"+id+hubVersion, `{}`, nil); res.status != http.StatusOK {
			t.Fatalf("create %s: %d %s", id, res.status, res.body)
		}
	}
	listIDs := func(query string) []string {
		res := h.hub("GET", "/devices?api-version=1"+query, "", nil)
		var ds []registry.Device
		res.decode(t, &ds)
		ids := []string{}
		for _, d := range ds {
			ids = append(ids, d.DeviceID)
		}
		return ids
	}
	if diff := cmp.Diff([]string{"a-dev", "b-dev", "dev#1"}, listIDs("")); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a-dev"}, listIDs("&top=1")); diff != "" {
		t.Errorf("list top=1 (-want +got):\n%s", diff)
	}

	// delete (bare etag) removes the twin too
	res = h.hub("DELETE", "/devices/dev%231"+hubVersion, "", map[string]string{"If-Match": updated.ETag})
	if res.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}
	if res := h.hub("GET", "/twins/dev%231"+hubVersion, "", nil); res.status != http.StatusNotFound || res.code != hubDeviceNotFound {
		t.Errorf("twin after delete: %d %s", res.status, res.body)
	}
}

func TestHubTwins(t *testing.T) {
	h := newHubHarness(t)
	dev, err := h.reg.PutDevice(context.Background(), &registry.Device{DeviceID: "dev1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	res := h.hub("GET", "/twins/dev1"+hubVersion, "", nil)
	if res.status != http.StatusOK {
		t.Fatalf("get twin: %d %s", res.status, res.body)
	}
	var tw twinView
	res.decode(t, &tw)
	want := twinView{DeviceID: "dev1", ETag: tw.ETag, DeviceETag: dev.ETag, Status: "enabled", StatusUpdateTime: h.now, ConnectionState: "Disconnected",
		AuthenticationType: "sas", Version: 1, Tags: json.RawMessage(`{}`),
		Properties:   registry.TwinProperties{Desired: json.RawMessage(`{"$version":1}`), Reported: json.RawMessage(`{"$version":1}`)},
		ParentScopes: []string{}}
	if diff := cmp.Diff(want, tw); diff != "" || tw.ETag == "" || res.header.Get("ETag") != strconv.Quote(tw.ETag) {
		t.Errorf("twin (-want +got):\n%s\nETag header %q", diff, res.header.Get("ETag"))
	}

	// merge patch under the current etag
	res = h.hub("PATCH", "/twins/dev1"+hubVersion, `{"deviceId":"dev1","tags":{"site":"plant-7","loc":{"row":1}},"properties":{"desired":{"interval":5}}}`,
		map[string]string{"If-Match": strconv.Quote(tw.ETag)})
	if res.status != http.StatusOK {
		t.Fatalf("patch: %d %s", res.status, res.body)
	}
	var patched twinView
	res.decode(t, &patched)
	res = h.hub("PATCH", "/twins/dev1"+hubVersion, `{"tags":{"loc":null},"properties":{"desired":{"mode":"eco"},"reported":null}}`, map[string]string{"If-Match": `"*"`})
	if res.status != http.StatusOK {
		t.Fatalf("second patch: %d %s", res.status, res.body)
	}
	var patched2 twinView
	res.decode(t, &patched2)
	type parts struct {
		Version       int64
		Tags, Desired string
	}
	canon := func(raw json.RawMessage) string {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	gotParts := []parts{{patched.Version, canon(patched.Tags), desiredJSON(t, patched.Properties.Desired)}, {patched2.Version, canon(patched2.Tags), desiredJSON(t, patched2.Properties.Desired)}}
	wantParts := []parts{{2, `{"loc":{"row":1},"site":"plant-7"}`, `{"$version":2,"interval":5}`}, {3, `{"site":"plant-7"}`, `{"$version":3,"interval":5,"mode":"eco"}`}}
	if diff := cmp.Diff(wantParts, gotParts); diff != "" {
		t.Errorf("patched twins (-want +got):\n%s", diff)
	}

	tests := []struct {
		name       string
		method     string
		path, body string
		hdr        map[string]string
		wantStatus int
		wantCode   string
		wantText   string
	}{
		{name: "stale etag", method: "PATCH", path: "/twins/dev1", body: `{"tags":{"a":1}}`, hdr: map[string]string{"If-Match": strconv.Quote(tw.ETag)}, wantStatus: 412, wantCode: hubPreconditionFailed, wantText: "etag of the twin of dev1"},
		{name: "reported", method: "PATCH", path: "/twins/dev1", body: `{"properties":{"reported":{"fw":"2"}}}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "properties.reported cannot be written"},
		{name: "id mismatch", method: "PATCH", path: "/twins/dev1", body: `{"deviceId":"dev2","tags":{}}`, wantStatus: 400, wantCode: hubArgumentInvalid},
		{name: "bad key", method: "PATCH", path: "/twins/dev1", body: `{"tags":{"a.b":1}}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: `property name "a.b"`},
		{name: "tags not an object", method: "PATCH", path: "/twins/dev1", body: `{"tags":[1]}`, wantStatus: 400, wantCode: hubArgumentInvalid, wantText: "tags: must be a JSON object"},
		{name: "empty body", method: "PATCH", path: "/twins/dev1", wantStatus: 400, wantCode: hubArgumentInvalid},
		{name: "absent", method: "PATCH", path: "/twins/absent", body: `{"tags":{"a":1}}`, wantStatus: 404, wantCode: hubDeviceNotFound},
		{name: "get absent", method: "GET", path: "/twins/absent", wantStatus: 404, wantCode: hubDeviceNotFound},
		{name: "replace absent", method: "PUT", path: "/twins/absent", body: `{}`, wantStatus: 404, wantCode: hubDeviceNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.hub(tc.method, tc.path+hubVersion, tc.body, tc.hdr)
			if res.status != tc.wantStatus || res.code != tc.wantCode || !strings.Contains(res.message, tc.wantText) {
				t.Errorf("%d %s %s, want %d %s containing %q", res.status, res.code, res.body, tc.wantStatus, tc.wantCode, tc.wantText)
			}
		})
	}

	// replace: a twin read back (with reported, $metadata, $version) can be sent again.
	res = h.hub("PUT", "/twins/dev1"+hubVersion, `{"deviceId":"dev1","etag":"x","tags":{"only":true},"properties":{"desired":{"$version":3,"$metadata":{},"fresh":1},"reported":{"fw":"1"}}}`, nil)
	if res.status != http.StatusOK {
		t.Fatalf("replace: %d %s", res.status, res.body)
	}
	var replaced twinView
	res.decode(t, &replaced)
	got := []parts{{replaced.Version, canon(replaced.Tags), desiredJSON(t, replaced.Properties.Desired)}}
	if diff := cmp.Diff([]parts{{4, `{"only":true}`, `{"$version":4,"fresh":1}`}}, got); diff != "" || canon(replaced.Properties.Reported) != `{"$version":1}` {
		t.Errorf("replaced twin (-want +got):\n%s\nreported %s", diff, replaced.Properties.Reported)
	}
}

func TestMountHubErrors(t *testing.T) {
	h := newHarness(t)
	if err := h.api.MountHub(nil); err == nil {
		t.Error("MountHub(nil) succeeded")
	}
	st := memstore.New(0)
	defer st.Close()
	if err := h.api.MountHub(registry.New("bad host/x", st, nil)); err == nil || !strings.Contains(err.Error(), "not a host name") {
		t.Errorf("MountHub with a bad host name: %v", err)
	}
	if err := h.api.MountHub(registry.New("hub.example", st, nil)); err != nil {
		t.Fatal(err)
	}
	if err := h.api.MountHub(registry.New("hub.example", st, nil)); err == nil || !strings.Contains(err.Error(), "conflicts") {
		t.Errorf("second MountHub: %v, want a route conflict", err)
	}
}

func TestIfMatch(t *testing.T) {
	tests := []struct{ header, want string }{
		{"", ""},
		{"*", "*"},
		{`"*"`, "*"},
		{` "AAAAAAAAAAE=" `, "AAAAAAAAAAE="},
		{`W/"abc"`, "abc"},
		{"abc", "abc"},
		{`"`, `"`},
	}
	for _, tc := range tests {
		t.Run(tc.header, func(t *testing.T) {
			r, err := http.NewRequest(http.MethodGet, "/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				r.Header.Set("If-Match", tc.header)
			}
			if got := ifMatch(r); got != tc.want {
				t.Errorf("ifMatch(%q) = %q, want %q", tc.header, got, tc.want)
			}
		})
	}
}

// FuzzHubBodies feeds arbitrary PUT /devices and PATCH/PUT /twins bodies
// through the decoders and the registry's validation: they must answer an
// error or a result, never panic, and accepted devices must be valid.
func FuzzHubBodies(f *testing.F) {
	f.Add([]byte(`{"deviceId":"d","authentication":{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}}`), true)
	f.Add([]byte(`{"authentication":{"x509Thumbprint":{"primaryThumbprint":"`+strings.Repeat("ab", 20)+`"}},"capabilities":{"iotEdge":true}}`), true)
	f.Add([]byte(`{"tags":{"a":{"b":null}},"properties":{"desired":{"x":[1,{"y":2}]},"reported":null}}`), false)
	f.Add([]byte(`{"deviceId":"d","properties":{"desired":{"$version":1}}}`), false)
	f.Add([]byte(`[]`), true)
	f.Fuzz(func(t *testing.T, body []byte, device bool) {
		ctx := context.Background()
		st := memstore.New(0)
		defer st.Close()
		reg := registry.New("hub.example", st, nil)
		if device {
			d, err := decodeDeviceInput(body, "d")
			if err != nil {
				var he *httpError
				if !errors.As(err, &he) || he.status != http.StatusBadRequest {
					t.Fatalf("decode error %v is not a 400", err)
				}
				return
			}
			out, err := reg.PutDevice(ctx, d, "")
			if err != nil {
				if !errors.Is(err, registry.ErrInvalid) {
					t.Fatalf("PutDevice: %v, want success or ErrInvalid", err)
				}
				return
			}
			if out.DeviceID != "d" || (out.Status != registry.StatusEnabled && out.Status != registry.StatusDisabled) {
				t.Fatalf("accepted device %+v", out)
			}
			return
		}
		if _, err := reg.PutDevice(ctx, &registry.Device{DeviceID: "d"}, ""); err != nil {
			t.Fatal(err)
		}
		for _, patch := range []bool{true, false} {
			u, err := decodeTwinInput(body, "d", patch)
			if err != nil {
				return
			}
			update := reg.ReplaceTwin
			if patch {
				update = reg.PatchTwin
			}
			if _, err := update(ctx, "d", u, ""); err != nil && !errors.Is(err, registry.ErrInvalid) {
				t.Fatalf("update twin (patch %v): %v, want success or ErrInvalid", patch, err)
			}
		}
	})
}
