package hubclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/api"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
)

const hubName = "hub.example.test"

// remoteHub is a real Muster hub service API (api + registry over an
// in-memory store) behind a TLS test server whose certificate names
// hubName, with a hook that sees every request before the API does.
type remoteHub struct {
	t     *testing.T
	reg   *registry.Hub
	inst  *instance.Instance
	srv   *httptest.Server
	roots *x509.CertPool

	mu       sync.Mutex
	requests []*http.Request
	hook     func(r *http.Request)
}

// registrations joins the enrollment service and the attempt log, as
// cmd/muster does.
type registrations struct {
	*enroll.Service
	prov *provision.Service
}

func (r registrations) Attempts(ctx context.Context, id string, limit int) ([]store.Attempt, error) {
	return r.prov.Attempts(ctx, id, limit)
}

func newRemoteHub(t *testing.T, mountHub bool) *remoteHub {
	t.Helper()
	ctx := context.Background()
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	inst, err := instance.Open(ctx, st, t.TempDir(), []string{hubName}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(hubName, st, nil)
	enr := enroll.NewService(st, enroll.ServiceOptions{LinkedHubs: func() []string { return []string{hubName} }})
	prov, err := provision.New(provision.Options{IDScope: inst.IDScope, Docs: st, Attempts: st, Enrollments: enr,
		Hubs: []provision.LinkedHub{{Hub: reg, Weight: 1, ApplyAllocationPolicy: true}}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Options{IDScope: inst.IDScope, Registrar: prov, Registrations: registrations{enr, prov}, Enrollments: enr,
		Policies: inst, ServiceHostNames: []string{hubName}})
	if err != nil {
		t.Fatal(err)
	}
	if mountHub {
		if err := a.MountHub(reg); err != nil {
			t.Fatal(err)
		}
	}
	rh := &remoteHub{t: t, reg: reg, inst: inst, roots: x509.NewCertPool()}
	rh.roots.AddCert(inst.CA)
	rh.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rh.mu.Lock()
		rh.requests = append(rh.requests, r.Clone(context.Background()))
		hook := rh.hook
		rh.mu.Unlock()
		if hook != nil {
			hook(r)
		}
		a.ServeHTTP(w, r)
	}))
	rh.srv.TLS = &tls.Config{Certificates: []tls.Certificate{inst.TLSCertificate}}
	rh.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes the untrusted-client test aborts
	rh.srv.StartTLS()
	t.Cleanup(rh.srv.Close)
	return rh
}

// client returns a hubclient for a hub policy, dialing the test server.
func (rh *remoteHub) client(policy string) *Client {
	rh.t.Helper()
	c, err := New(Options{ConnectionString: rh.inst.ConnectionString(policy), Address: rh.srv.Listener.Addr().String(), RootCAs: rh.roots})
	if err != nil {
		rh.t.Fatal(err)
	}
	rh.t.Cleanup(func() { c.hc.CloseIdleConnections() })
	return c
}

func (rh *remoteHub) setHook(h func(r *http.Request)) {
	rh.mu.Lock()
	defer rh.mu.Unlock()
	rh.hook = h
}

// calls returns "METHOD path" of the requests seen since the last call.
func (rh *remoteHub) calls() []string {
	rh.mu.Lock()
	defer rh.mu.Unlock()
	var out []string
	for _, r := range rh.requests {
		out = append(out, r.Method+" "+r.URL.EscapedPath())
	}
	rh.requests = nil
	return out
}

// canon re-encodes JSON with sorted keys.
func canon(t *testing.T, raw json.RawMessage) string {
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

func testKey(t *testing.T) string {
	t.Helper()
	k, err := sas.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// twinOf returns the stored tags and desired properties (without $version).
func (rh *remoteHub) twinOf(id string) (tags, desired string, version int64) {
	rh.t.Helper()
	tw, err := rh.reg.GetTwin(context.Background(), id)
	if err != nil {
		rh.t.Fatalf("twin of %s: %v", id, err)
	}
	var d map[string]any
	if err := json.Unmarshal(tw.Properties.Desired, &d); err != nil {
		rh.t.Fatal(err)
	}
	delete(d, "$version")
	delete(d, "$metadata")
	db, _ := json.Marshal(d)
	return canon(rh.t, tw.Tags), string(db), tw.Version
}

func TestProvisionCreateUpdateReplace(t *testing.T) {
	ctx := context.Background()
	rh := newRemoteHub(t, true)
	c := rh.client("registryReadWrite")
	if c.HostName() != hubName {
		t.Fatalf("HostName = %q", c.HostName())
	}
	key1, key2 := testKey(t), testKey(t)

	// create: identity with the enrollment's keys, then the initial twin
	spec := provision.DeviceSpec{DeviceID: "dev-1", Auth: provision.DeviceAuth{Type: provision.AuthSAS, PrimaryKey: key1, SecondaryKey: key2},
		Twin: &provision.TwinState{Tags: json.RawMessage(`{"site":"plant-7","loc":{"row":1,"col":2}}`), Desired: json.RawMessage(`{"interval":30}`)}}
	if err := c.ProvisionDevice(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"GET /devices/dev-1", "PUT /devices/dev-1", "PATCH /twins/dev-1"}, rh.calls()); diff != "" {
		t.Errorf("create calls (-want +got):\n%s", diff)
	}
	d, err := rh.reg.GetDevice(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Authentication.Type != "sas" || d.Authentication.SymmetricKey.PrimaryKey != key1 || d.Authentication.SymmetricKey.SecondaryKey != key2 || d.Capabilities.IoTEdge || d.Status != "enabled" {
		t.Errorf("created device = %+v", d)
	}
	tags, desired, _ := rh.twinOf("dev-1")
	if tags != `{"loc":{"col":2,"row":1},"site":"plant-7"}` || desired != `{"interval":30}` {
		t.Errorf("initial twin: tags %s, desired %s", tags, desired)
	}
	ts, err := c.DeviceTwin(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if canon(t, ts.Tags) != tags || canon(t, ts.Desired) != desired {
		t.Errorf("DeviceTwin = %s / %s", ts.Tags, ts.Desired)
	}
	rh.calls()

	// update without ReplaceTwin: new key and edge capability, twin kept
	if _, err := rh.reg.PatchTwin(ctx, "dev-1", registry.TwinUpdate{Tags: json.RawMessage(`{"operator":"set"}`)}, ""); err != nil {
		t.Fatal(err)
	}
	key3 := testKey(t)
	spec.Auth.PrimaryKey, spec.IoTEdge = key3, true
	spec.Twin = &provision.TwinState{Tags: json.RawMessage(`{"ignored":true}`)}
	if err := c.ProvisionDevice(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"GET /devices/dev-1", "PUT /devices/dev-1"}, rh.calls()); diff != "" {
		t.Errorf("update calls (-want +got):\n%s", diff)
	}
	d2, err := rh.reg.GetDevice(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if d2.GenerationID != d.GenerationID || d2.Authentication.SymmetricKey.PrimaryKey != key3 || !d2.Capabilities.IoTEdge ||
		d2.DeviceScope != "ms-azure-iot-edge://dev-1-"+d.GenerationID {
		t.Errorf("updated device = %+v", d2)
	}
	if tags, _, _ := rh.twinOf("dev-1"); tags != `{"loc":{"col":2,"row":1},"operator":"set","site":"plant-7"}` {
		t.Errorf("twin changed by an update without ReplaceTwin: %s", tags)
	}

	// ReplaceTwin: tags and desired become exactly the spec's
	spec.IoTEdge, spec.ReplaceTwin = false, true
	spec.Twin = &provision.TwinState{Tags: json.RawMessage(`{"loc":{"row":1},"new":[1,2]}`)}
	if err := c.ProvisionDevice(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"GET /devices/dev-1", "PUT /devices/dev-1", "GET /twins/dev-1", "PATCH /twins/dev-1"}, rh.calls()); diff != "" {
		t.Errorf("replace calls (-want +got):\n%s", diff)
	}
	tags, desired, version := rh.twinOf("dev-1")
	if tags != `{"loc":{"row":1},"new":[1,2]}` || desired != `{}` || version != 4 {
		t.Errorf("replaced twin: tags %s, desired %s, version %d", tags, desired, version)
	}
	d3, err := rh.reg.GetDevice(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if d3.Capabilities.IoTEdge || d3.DeviceScope != "" {
		t.Errorf("edge capability removed but device = %+v", d3)
	}

	// ReplaceTwin with the twin it already has: nothing to patch
	if err := c.ProvisionDevice(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"GET /devices/dev-1", "PUT /devices/dev-1", "GET /twins/dev-1"}, rh.calls()); diff != "" {
		t.Errorf("no-op replace calls (-want +got):\n%s", diff)
	}
}

func TestProvisionX509Devices(t *testing.T) {
	ctx := context.Background()
	rh := newRemoteHub(t, true)
	c := rh.client("iothubowner")
	thumb, thumb2 := strings.Repeat("AB", 20), strings.Repeat("cd", 32)
	tests := []struct {
		name string
		auth provision.DeviceAuth
		want registry.Authentication
	}{
		{"self-signed", provision.DeviceAuth{Type: provision.AuthSelfSigned, PrimaryThumbprint: thumb, SecondaryThumbprint: thumb2},
			registry.Authentication{Type: "selfSigned", X509Thumbprint: registry.X509Thumbprint{PrimaryThumbprint: &thumb, SecondaryThumbprint: &thumb2}}},
		{"self-signed primary only", provision.DeviceAuth{Type: provision.AuthSelfSigned, PrimaryThumbprint: thumb},
			registry.Authentication{Type: "selfSigned", X509Thumbprint: registry.X509Thumbprint{PrimaryThumbprint: &thumb}}},
		{"certificate authority", provision.DeviceAuth{Type: provision.AuthCertificateAuthority}, registry.Authentication{Type: "certificateAuthority"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.ReplaceAll(tc.name, " ", "-")
			if err := c.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: id, Auth: tc.auth}); err != nil {
				t.Fatal(err)
			}
			d, err := rh.reg.GetDevice(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, d.Authentication); diff != "" {
				t.Errorf("authentication (-want +got):\n%s", diff)
			}
		})
	}
	for _, a := range []provision.DeviceAuth{{Type: "tpm"}, {Type: provision.AuthSAS}, {Type: provision.AuthSelfSigned}} {
		if err := c.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "bad", Auth: a}); err == nil || !strings.Contains(err.Error(), "hub "+hubName+": provision device bad") {
			t.Errorf("auth %+v: %v, want an error naming the hub and device", a, err)
		}
	}
}

func TestDeviceTwinAndDelete(t *testing.T) {
	ctx := context.Background()
	rh := newRemoteHub(t, true)
	c := rh.client("registryReadWrite")
	ts, err := c.DeviceTwin(ctx, "absent")
	if err != nil || ts != nil {
		t.Fatalf("DeviceTwin(absent) = %v, %v; want nil, nil", ts, err)
	}
	if err := c.DeleteDevice(ctx, "absent"); err != nil {
		t.Fatalf("DeleteDevice(absent): %v", err)
	}
	// Migration reads what the hub's owner set, without $version/$metadata.
	if _, err := rh.reg.PutDevice(ctx, &registry.Device{DeviceID: "d#1?"}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := rh.reg.PatchTwin(ctx, "d#1?", registry.TwinUpdate{Tags: json.RawMessage(`{"t":1}`), Desired: json.RawMessage(`{"n":12345678901234567890}`)}, ""); err != nil {
		t.Fatal(err)
	}
	ts, err = c.DeviceTwin(ctx, "d#1?")
	if err != nil {
		t.Fatal(err)
	}
	if got := [2]string{canon(t, ts.Tags), string(ts.Desired)}; got != [2]string{`{"t":1}`, `{"n":12345678901234567890}`} {
		t.Errorf("DeviceTwin = %v", got)
	}
	if err := c.DeleteDevice(ctx, "d#1?"); err != nil {
		t.Fatal(err)
	}
	if _, err := rh.reg.GetDevice(ctx, "d#1?"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("device after DeleteDevice: %v", err)
	}
	if diff := cmp.Diff([]string{"GET /twins/absent", "DELETE /devices/absent", "GET /twins/d%231%3F", "DELETE /devices/d%231%3F"}, rh.calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestRequestsCarryFreshTokens(t *testing.T) {
	ctx := context.Background()
	rh := newRemoteHub(t, true)
	// A fixed clock (the hub checks expiry against its own, real one).
	now := time.Now().Truncate(time.Second)
	c, err := New(Options{ConnectionString: rh.inst.ConnectionString("registryReadWrite"), Address: rh.srv.Listener.Addr().String(), RootCAs: rh.roots,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.hc.CloseIdleConnections()
	if err := c.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "dev", Auth: provision.DeviceAuth{Type: "sas", PrimaryKey: testKey(t)},
		Twin: &provision.TwinState{Tags: json.RawMessage(`{"a":1}`)}}); err != nil {
		t.Fatal(err)
	}
	rh.mu.Lock()
	reqs := rh.requests
	rh.requests = nil
	rh.mu.Unlock()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	pol, _ := rh.inst.Policy("registryReadWrite")
	key, err := sas.DecodeKey(pol.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		tok, err := sas.Parse(r.Header.Get("Authorization"))
		if err != nil {
			t.Fatalf("%s %s: token: %v", r.Method, r.URL.Path, err)
		}
		sr, _ := tok.DecodedResource()
		if sr != hubName || tok.KeyName != "registryReadWrite" || !tok.VerifyKey(key) || !tok.Expiry.Equal(now.Add(TokenTTL)) {
			t.Errorf("%s %s: token for %q by %q expiring at %v, want %v", r.Method, r.URL.Path, sr, tok.KeyName, tok.Expiry, now.Add(TokenTTL))
		}
		if r.Host != hubName || r.URL.Query().Get("api-version") != APIVersion || r.Header.Get("User-Agent") != userAgent {
			t.Errorf("%s %s: Host %q, query %q, User-Agent %q", r.Method, r.URL.Path, r.Host, r.URL.RawQuery, r.Header.Get("User-Agent"))
		}
	}
	if got := reqs[2].Header.Get("If-Match"); got != `"*"` {
		t.Errorf("twin PATCH of a new device: If-Match %q, want \"*\"", got)
	}
}

// A writer that changes the identity or twin between this client's read
// and write makes it read again (bounded), never overwrite blindly.
func TestProvisionRetriesLostRaces(t *testing.T) {
	ctx := context.Background()
	rh := newRemoteHub(t, true)
	// A fixed clock (the hub checks expiry against its own, real one).
	now := time.Now().Truncate(time.Second)
	c, err := New(Options{ConnectionString: rh.inst.ConnectionString("registryReadWrite"), Address: rh.srv.Listener.Addr().String(), RootCAs: rh.roots,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.hc.CloseIdleConnections()
	if err := c.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "dev", Auth: provision.DeviceAuth{Type: "sas", PrimaryKey: testKey(t)},
		Twin: &provision.TwinState{Tags: json.RawMessage(`{"a":1}`)}}); err != nil {
		t.Fatal(err)
	}
	rh.calls()
	var once sync.Once
	rh.setHook(func(r *http.Request) {
		if r.Header.Get("If-Match") == "" || r.Header.Get("If-Match") == `"*"` {
			return
		}
		once.Do(func() { // another writer gets in first, once for the device PUT and for the twin PATCH
			if _, err := rh.reg.PutDevice(ctx, &registry.Device{DeviceID: "dev", Status: "disabled"}, "*"); err != nil {
				t.Error(err)
			}
		})
	})
	key := testKey(t)
	if err := c.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "dev", Auth: provision.DeviceAuth{Type: "sas", PrimaryKey: key},
		Twin: &provision.TwinState{Tags: json.RawMessage(`{"b":2}`)}, ReplaceTwin: true}); err != nil {
		t.Fatal(err)
	}
	want := []string{"GET /devices/dev", "PUT /devices/dev", "GET /devices/dev", "PUT /devices/dev", "GET /twins/dev", "PATCH /twins/dev"}
	if diff := cmp.Diff(want, rh.calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	d, err := rh.reg.GetDevice(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if d.Authentication.SymmetricKey.PrimaryKey != key || d.Status != "disabled" {
		t.Errorf("device = %+v; want the new key on top of the other writer's status", d)
	}

	// The twin changes under the PATCH's etag once: diff again and patch.
	var twinOnce sync.Once
	rh.setHook(func(r *http.Request) {
		if r.Method != http.MethodPatch {
			return
		}
		twinOnce.Do(func() {
			if _, err := rh.reg.PatchTwin(ctx, "dev", registry.TwinUpdate{Tags: json.RawMessage(`{"c":3}`)}, ""); err != nil {
				t.Error(err)
			}
		})
	})
	if err := c.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "dev", Auth: provision.DeviceAuth{Type: "sas", PrimaryKey: key},
		Twin: &provision.TwinState{Tags: json.RawMessage(`{"d":4}`)}, ReplaceTwin: true}); err != nil {
		t.Fatal(err)
	}
	want = []string{"GET /devices/dev", "PUT /devices/dev", "GET /twins/dev", "PATCH /twins/dev", "GET /twins/dev", "PATCH /twins/dev"}
	if diff := cmp.Diff(want, rh.calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if tags, _, _ := rh.twinOf("dev"); tags != `{"d":4}` {
		t.Errorf("tags = %s, want exactly the replacement", tags)
	}
}

func TestProvisionErrors(t *testing.T) {
	ctx := context.Background()
	rh := newRemoteHub(t, true)
	spec := provision.DeviceSpec{DeviceID: "dev", Auth: provision.DeviceAuth{Type: "sas", PrimaryKey: testKey(t)}}

	// A read-only policy: the GET works, the PUT is refused.
	err := rh.client("registryRead").ProvisionDevice(ctx, spec)
	var he *Error
	if !errors.As(err, &he) || !errors.Is(err, ErrUnauthorized) || he.Code != "IotHubUnauthorizedAccess" || he.TrackingID == "" {
		t.Fatalf("read-only policy: %v (%+v)", err, he)
	}
	if want := "hub " + hubName + ": PUT /devices/dev: answered 401 Unauthorized (IotHubUnauthorizedAccess): Unauthorized [tracking ID "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}

	// A twin the hub refuses: the new identity is removed again.
	c := rh.client("registryReadWrite")
	spec.Twin = &provision.TwinState{Tags: json.RawMessage(`{"bad.key":1}`)}
	err = c.ProvisionDevice(ctx, spec)
	if !errors.As(err, &he) || he.Status != http.StatusBadRequest || he.Code != "ArgumentInvalid" || !strings.Contains(he.Message, `"bad.key"`) || he.Path != "/twins/dev" {
		t.Fatalf("bad twin: %v", err)
	}
	if _, err := rh.reg.GetDevice(ctx, "dev"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("identity left behind after its twin failed: %v", err)
	}
	// A key the hub refuses.
	spec.Twin, spec.Auth.PrimaryKey = nil, "c2hvcnQ="
	if err := c.ProvisionDevice(ctx, spec); !errors.As(err, &he) || !strings.Contains(he.Message, "authentication.symmetricKey.primaryKey") {
		t.Fatalf("short key: %v", err)
	}

	// Not a hub: a 404 without DeviceNotFound is an error, not "absent".
	dps := newRemoteHub(t, false)
	nc := dps.client("registryReadWrite")
	if ts, err := nc.DeviceTwin(ctx, "dev"); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("DeviceTwin against a server without the hub API: %v, %v", ts, err)
	}
	if err := nc.DeleteDevice(ctx, "dev"); err == nil {
		t.Fatal("DeleteDevice against a server without the hub API succeeded")
	}

	// Transport errors name the hub and the call; an untrusted certificate fails.
	untrusted, err := New(Options{ConnectionString: rh.inst.ConnectionString("registryReadWrite"), Address: rh.srv.Listener.Addr().String(), RootCAs: x509.NewCertPool()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusted.DeviceTwin(ctx, "dev"); err == nil || !strings.Contains(err.Error(), "hub "+hubName+": GET /twins/dev") || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted server: %v", err)
	}
}

func TestNew(t *testing.T) {
	const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	good := "HostName=hub.example;SharedAccessKeyName=registryReadWrite;SharedAccessKey=" + key
	tests := []struct {
		name, conn, addr string
		wantAddr         string
		wantErr          string
	}{
		{name: "default address", conn: good, wantAddr: "hub.example:443"},
		{name: "host without port", conn: good, addr: "10.0.0.1", wantAddr: "10.0.0.1:443"},
		{name: "ipv6", conn: good, addr: "[::1]:8443", wantAddr: "[::1]:8443"},
		{name: "address", conn: good, addr: "127.0.0.1:8443", wantAddr: "127.0.0.1:8443"},
		{name: "bad port", conn: good, addr: "127.0.0.1:0", wantErr: `port "0"`},
		{name: "empty host", conn: good, addr: ":8443", wantErr: "host is empty"},
		{name: "garbage address", conn: good, addr: "a:b:c", wantErr: `parse hub address "a:b:c"`},
		{name: "empty", conn: "", wantErr: "parse hub connection string"},
		{name: "no policy", conn: "HostName=hub.example;SharedAccessKey=" + key, wantErr: "SharedAccessKeyName is missing"},
		{name: "device string", conn: "HostName=hub.example;DeviceId=d;SharedAccessKeyName=x;SharedAccessKey=" + key, wantErr: "DeviceId is set"},
		{name: "bad key", conn: "HostName=hub.example;SharedAccessKeyName=x;SharedAccessKey=***", wantErr: "SharedAccessKey"},
		{name: "host with a path", conn: "HostName=hub.example/x;SharedAccessKeyName=x;SharedAccessKey=" + key, wantErr: "is not a host name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Options{ConnectionString: tc.conn, Address: tc.addr})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), key) {
					t.Fatalf("error quotes the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Address() != tc.wantAddr || c.HostName() != "hub.example" {
				t.Errorf("address %q host %q, want %q", c.Address(), c.HostName(), tc.wantAddr)
			}
		})
	}
}

func TestParseError(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header map[string]string
		body   string
		want   Error
	}{
		{
			name: "IoT Hub shape", status: 404,
			body: `{"Message":"ErrorCode:DeviceNotFound;Device dev1 does not exist","ExceptionMessage":"Tracking ID:abc-123-TimeStamp:11/03/2026 10:00:00"}`,
			want: Error{Status: 404, Code: "DeviceNotFound", Message: "Device dev1 does not exist", TrackingID: "abc-123"},
		},
		{
			name: "header code wins", status: 412, header: map[string]string{"iothub-errorcode": "PreconditionFailed", "x-ms-request-id": "rid"},
			body: `{"Message":"ErrorCode:Other;text"}`,
			want: Error{Status: 412, Code: "PreconditionFailed", Message: "text", TrackingID: "rid"},
		},
		{
			name: "identity service shape", status: 500, body: `{"errorMessage":"boom"}`,
			want: Error{Status: 500, Message: "boom"},
		},
		{
			name: "DPS shape", status: 404, header: map[string]string{"x-ms-request-id": "r2"}, body: `{"errorCode":404202,"message":"no resource at /devices/x"}`,
			want: Error{Status: 404, Message: "no resource at /devices/x", TrackingID: "r2"},
		},
		{
			name: "not JSON", status: 502, body: "<html>bad gateway</html>",
			want: Error{Status: 502, Message: "<html>bad gateway</html>"},
		},
		{
			name: "invalid UTF-8", status: 500, body: "bad \xff\xfe body",
			want: Error{Status: 500, Message: "bad \uFFFD body"},
		},
		{
			name: "long body cut on a rune boundary", status: 500, body: "x" + strings.Repeat("é", 600),
			want: Error{Status: 500, Message: "x" + strings.Repeat("é", 255) + "…"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.header {
				h.Set(k, v)
			}
			got := ParseError(tc.status, h, []byte(tc.body))
			if diff := cmp.Diff(&tc.want, got); diff != "" {
				t.Errorf("parseError (-want +got):\n%s", diff)
			}
		})
	}
	if e := (&Error{Status: 404, Code: "DeviceNotFound"}); !errors.Is(e, ErrNotFound) {
		t.Error("404 DeviceNotFound is not ErrNotFound")
	}
	if e := (&Error{Status: 404}); errors.Is(e, ErrNotFound) {
		t.Error("a 404 without DeviceNotFound is ErrNotFound")
	}
}

func TestReplacePatch(t *testing.T) {
	tests := []struct{ cur, want, patch string }{
		{`{}`, `{}`, `{}`},
		{`{"a":1}`, `{"a":1}`, `{}`},
		{`{"a":1,"b":2}`, `{"a":1}`, `{"b":null}`},
		{`{"a":{"x":1,"y":2}}`, `{"a":{"x":1}}`, `{"a":{"y":null}}`},
		{`{"a":{"x":1}}`, `{"a":{}}`, `{"a":{"x":null}}`},
		{`{"a":1}`, `{"a":{"x":1}}`, `{"a":{"x":1}}`},
		{`{"a":{"x":1}}`, `{"a":[1]}`, `{"a":[1]}`},
		{`{}`, `{"a":{}}`, `{"a":{}}`},
		{`{"a":[1,2]}`, `{"a":[1,2]}`, `{}`},
	}
	for _, tc := range tests {
		t.Run(tc.cur+"→"+tc.want, func(t *testing.T) {
			cur, err := decodeObject(json.RawMessage(tc.cur))
			if err != nil {
				t.Fatal(err)
			}
			want, err := decodeObject(json.RawMessage(tc.want))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(replacePatch(cur, want))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.patch, string(got)); diff != "" {
				t.Errorf("patch (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzReplacePatch checks the defining property of replacePatch: merging
// it into cur gives want (for wants without nulls, which a twin cannot hold).
func FuzzReplacePatch(f *testing.F) {
	f.Add(`{"a":{"x":1,"y":[1,{"z":2}]},"b":"s"}`, `{"a":{"x":2},"c":true}`)
	f.Add(`{"a":1}`, `{"a":{"b":{"c":{}}}}`)
	f.Add(`{}`, `{}`)
	f.Fuzz(func(t *testing.T, curJSON, wantJSON string) {
		cur, err1 := decodeObject(json.RawMessage(curJSON))
		want, err2 := decodeObject(json.RawMessage(wantJSON))
		if err1 != nil || err2 != nil || hasNullMember(want) {
			return
		}
		patch := replacePatch(cur, want)
		// The patch travels as JSON.
		enc, err := json.Marshal(patch)
		if err != nil {
			t.Fatalf("encode patch: %v", err)
		}
		sent, err := decodeObject(enc)
		if err != nil {
			t.Fatalf("decode patch %s: %v", enc, err)
		}
		got, _ := json.Marshal(registry.MergePatch(cur, sent))
		wantEnc, _ := json.Marshal(want)
		if string(got) != string(wantEnc) {
			t.Fatalf("cur %s + patch %s = %s, want %s", curJSON, enc, got, wantEnc)
		}
	})
}

// hasNullMember reports whether an object holds null as a member value at
// any depth reached through objects.
func hasNullMember(m map[string]any) bool {
	for _, v := range m {
		switch x := v.(type) {
		case nil:
			return true
		case map[string]any:
			if hasNullMember(x) {
				return true
			}
		}
	}
	return false
}

// FuzzResponses feeds arbitrary hub answers to the decoders: they return
// a result or an error, never panic.
func FuzzResponses(f *testing.F) {
	f.Add(`{"deviceId":"d","etag":"e","tags":{"a":1},"properties":{"desired":{"x":1,"$version":2,"$metadata":{}}}}`, 404, "DeviceNotFound")
	f.Add(`{"Message":"ErrorCode:DeviceNotFound;x","ExceptionMessage":"Tracking ID:t-TimeStamp:y"}`, 404, "")
	f.Add(`{"etag":5}`, 500, "")
	f.Add(`null`, 400, "")
	f.Fuzz(func(t *testing.T, body string, status int, code string) {
		if parts, _, err := decodeTwin([]byte(body)); err == nil && (parts.tags == nil || parts.desired == nil) {
			t.Fatalf("decodeTwin(%q) succeeded without tags or desired", body)
		}
		_, _, _ = decodeDevice([]byte(body))
		h := http.Header{}
		h.Set("iothub-errorcode", code)
		e := ParseError(status, h, []byte(body))
		if len(e.Message) > MaxErrorText+len("…") || len(e.TrackingID) > MaxErrorText+len("…") {
			t.Fatalf("error texts not bounded: %d, %d bytes", len(e.Message), len(e.TrackingID))
		}
		_ = e.Error()
	})
}

// The default client refuses plain HTTP hubs: requests go over TLS only.
func TestOnlyTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	c, err := New(Options{ConnectionString: "HostName=hub.example;SharedAccessKeyName=x;SharedAccessKey=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", Address: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.DeleteDevice(ctx, "d"); err == nil || !strings.Contains(err.Error(), "hub hub.example: DELETE /devices/d") {
		t.Fatalf("DeleteDevice over plain HTTP: %v", err)
	}
}
