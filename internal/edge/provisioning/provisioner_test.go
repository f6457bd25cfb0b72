package provisioning

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/muster-iot/muster/internal/client/dpsclient"
	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/sas"
)

const testScope = "0ne0000000A"

// fakeDPS is a minimal DPS over HTTPS: it answers register requests at
// once with "assigned" when the SAS token verifies with one of its keys,
// and 401 otherwise.
type fakeDPS struct {
	srv      *httptest.Server
	requests atomic.Int32
	mu       sync.Mutex
	keys     map[string]bool // base64 keys accepted
	hub      string
}

func newFakeDPS(t *testing.T, keys ...string) *fakeDPS {
	t.Helper()
	f := &fakeDPS{keys: map[string]bool{}, hub: "hub-a.example.com"}
	for _, k := range keys {
		f.keys[k] = true
	}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeDPS) setHub(h string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hub = h
}

func (f *fakeDPS) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	prefix := "/" + testScope + "/registrations/"
	regID, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, prefix), "/register")
	if r.Method != http.MethodPut || !strings.HasPrefix(r.URL.Path, prefix) || !ok {
		http.Error(w, `{"errorCode":404201,"message":"not found"}`, http.StatusNotFound)
		return
	}
	tok, err := sas.Parse(r.Header.Get("Authorization"))
	f.mu.Lock()
	hub := f.hub
	accepted := false
	if err == nil {
		for k := range f.keys {
			raw, derr := sas.DecodeKey(k)
			if derr == nil && tok.VerifyKey(raw) {
				accepted = true
			}
		}
	}
	f.mu.Unlock()
	if !accepted {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errorCode":401002,"message":"Unauthorized"}`)
		return
	}
	var body struct {
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	op := provision.OperationStatus{OperationID: "op-1", Status: provision.StatusAssigned, RegistrationState: &provision.DeviceRegistrationResult{
		RegistrationID: regID, AssignedHub: hub, DeviceID: regID, Status: provision.StatusAssigned,
		Substatus: provision.SubstatusInitialAssignment, Payload: body.Payload,
	}}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(op); err != nil {
		panic(err)
	}
}

// testKeys are two base64 symmetric keys.
var testKeys = [2]string{
	base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)),
	base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32)),
}

// writeTrustBundle writes the PEM certificate of a TLS test server.
func writeTrustBundle(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bundle.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// symConfig parses a symmetric-key DPS configuration.
func symConfig(t *testing.T, endpoint, bundle, home, mode, key, extra string) *config.Config {
	t.Helper()
	doc := fmt.Sprintf(`homedir = %q
trust_bundle_cert = %q
auto_reprovisioning_mode = %q

[provisioning]
source = "dps"
global_endpoint = %q
id_scope = %q
%s
[provisioning.attestation]
method = "symmetric_key"
registration_id = "edge-1"
symmetric_key = { value = %q }
`, home, bundle, mode, endpoint, testScope, extra, key)
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("parse test configuration: %v\n%s", err, doc)
	}
	return c
}

// countingClient counts the DPS clients a Provisioner creates. Its
// clients poll a registration at once after a 202 (Muster completes
// registrations before answering), which keeps the real-server test short.
type countingClient struct{ n atomic.Int32 }

func (c *countingClient) new(o dpsclient.Options) (*dpsclient.Client, error) {
	c.n.Add(1)
	o.PollImmediately = true
	return dpsclient.New(o)
}

// fixedNow is the clock of the fake-DPS tests (the fake does not check
// SAS expiry).
func fixedNow() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }

func newProvisioner(t *testing.T, c *config.Config, clients *countingClient) *Provisioner {
	return newProvisionerAt(t, c, clients, fixedNow)
}

func newProvisionerAt(t *testing.T, c *config.Config, clients *countingClient, now func() time.Time) *Provisioner {
	t.Helper()
	p, err := New(Options{Config: c, Client: clients.new, Now: now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// step is one Ensure call and what it must do.
type step struct {
	reason     Reason
	registered bool
}

func TestEnsureModes(t *testing.T) {
	tests := []struct {
		mode  string
		steps []step
	}{
		{config.ReprovisionDynamic, []step{
			{Startup, true}, {Startup, false}, {HubUnreachable, false}, {HubRejected, true}, {Startup, false}, {Manual, true},
		}},
		{config.ReprovisionAlwaysOnStartup, []step{
			{Startup, true}, {Startup, true}, {HubUnreachable, false}, {HubRejected, true}, {Manual, true},
		}},
		{config.ReprovisionOnErrorOnly, []step{
			{Startup, true}, {Startup, false}, {HubUnreachable, true}, {HubRejected, true}, {Startup, false}, {Manual, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			dps := newFakeDPS(t, testKeys[0])
			bundle := writeTrustBundle(t, dps.srv)
			home := t.TempDir()
			c := symConfig(t, dps.srv.URL, bundle, home, tc.mode, testKeys[0], "")
			clients := &countingClient{}
			p := newProvisioner(t, c, clients)
			wantRequests := int32(0)
			for i, s := range tc.steps {
				a, err := p.Ensure(ctxT(t), s.reason)
				if err != nil {
					t.Fatalf("step %d (%v): %v", i, s.reason, err)
				}
				if a.Registered != s.registered {
					t.Errorf("step %d (%v): Registered = %v, want %v (why: %s)", i, s.reason, a.Registered, s.registered, a.Why)
				}
				if s.registered {
					wantRequests++
				}
				if got := dps.requests.Load(); got != wantRequests {
					t.Errorf("step %d (%v): DPS saw %d requests, want %d", i, s.reason, got, wantRequests)
				}
				if got := clients.n.Load(); got != wantRequests {
					t.Errorf("step %d (%v): %d DPS clients created, want %d", i, s.reason, got, wantRequests)
				}
				want := &Assignment{Hub: "hub-a.example.com", DeviceID: "edge-1", RegistrationID: "edge-1",
					Substatus: provision.SubstatusInitialAssignment, ProvisionedAt: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), Registered: s.registered}
				if diff := cmp.Diff(want, a, cmpopts.IgnoreFields(Assignment{}, "Why")); diff != "" {
					t.Errorf("step %d (%v): assignment (-want +got):\n%s", i, s.reason, diff)
				}
			}
		})
	}
}

func TestEnsureConfigChangeRegisters(t *testing.T) {
	dps := newFakeDPS(t, testKeys[0], testKeys[1])
	bundle := writeTrustBundle(t, dps.srv)
	home := t.TempDir()
	clients := &countingClient{}
	first := newProvisioner(t, symConfig(t, dps.srv.URL, bundle, home, config.ReprovisionOnErrorOnly, testKeys[0], ""), clients)
	if a, err := first.Ensure(ctxT(t), Startup); err != nil || !a.Registered {
		t.Fatalf("first Ensure = %+v, %v", a, err)
	}
	// The key changes: even OnErrorOnly registers at the next start.
	second := newProvisioner(t, symConfig(t, dps.srv.URL, bundle, home, config.ReprovisionOnErrorOnly, testKeys[1], ""), clients)
	a, err := second.Ensure(ctxT(t), Startup)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Registered || !strings.Contains(a.Why, "the credential changed") {
		t.Errorf("after a key change: Registered = %v, why %q; want a registration for the changed credential", a.Registered, a.Why)
	}
	if a.Changed {
		t.Errorf("Changed = true, but the hub and device ID are the same")
	}
	// And the cache now belongs to the new key.
	if a, err := second.Ensure(ctxT(t), Startup); err != nil || a.Registered {
		t.Errorf("third Ensure = %+v, %v; want the cache", a, err)
	}
	if got := dps.requests.Load(); got != 2 {
		t.Errorf("DPS saw %d requests, want 2", got)
	}
}

func TestEnsureHubMoveSetsChanged(t *testing.T) {
	dps := newFakeDPS(t, testKeys[0])
	bundle := writeTrustBundle(t, dps.srv)
	p := newProvisioner(t, symConfig(t, dps.srv.URL, bundle, t.TempDir(), config.ReprovisionDynamic, testKeys[0], ""), &countingClient{})
	if _, err := p.Ensure(ctxT(t), Startup); err != nil {
		t.Fatal(err)
	}
	dps.setHub("hub-b.example.com")
	a, err := p.Ensure(ctxT(t), HubRejected)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Registered || !a.Changed || a.Hub != "hub-b.example.com" {
		t.Errorf("after a hub move: %+v; want a registration to hub-b with Changed", a)
	}
}

func TestEnsureStartupFallsBackToCache(t *testing.T) {
	dps := newFakeDPS(t, testKeys[0])
	bundle := writeTrustBundle(t, dps.srv)
	home := t.TempDir()
	p := newProvisioner(t, symConfig(t, dps.srv.URL, bundle, home, config.ReprovisionAlwaysOnStartup, testKeys[0], ""), &countingClient{})
	if _, err := p.Ensure(ctxT(t), Startup); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(CachePath(home))
	if err != nil {
		t.Fatal(err)
	}
	dps.srv.Close() // DPS goes away

	a, err := p.Ensure(ctxT(t), Startup)
	if err != nil {
		t.Fatalf("Ensure(Startup) with DPS down = %v; want the cached assignment", err)
	}
	if a.Registered || a.DPSError == nil || a.Hub != "hub-a.example.com" {
		t.Errorf("Ensure(Startup) with DPS down = %+v; want the cache with DPSError", a)
	}
	// Other reasons report the failure and leave the cache alone.
	for _, r := range []Reason{HubRejected, Manual} {
		if a, err := p.Ensure(ctxT(t), r); err == nil {
			t.Errorf("Ensure(%v) with DPS down = %+v, want an error", r, a)
		}
	}
	after, err := os.ReadFile(CachePath(home))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("the cache changed although every registration failed:\n%s\n%s", before, after)
	}
}

func TestEnsureRefusedRegistration(t *testing.T) {
	dps := newFakeDPS(t, testKeys[1]) // does not know the device's key
	bundle := writeTrustBundle(t, dps.srv)
	home := t.TempDir()
	p := newProvisioner(t, symConfig(t, dps.srv.URL, bundle, home, config.ReprovisionDynamic, testKeys[0], ""), &countingClient{})
	_, err := p.Ensure(ctxT(t), Startup)
	var se *dpsclient.StatusError
	if !errors.As(err, &se) || se.ErrorCode != 401002 {
		t.Fatalf("Ensure with an unknown key = %v, want a 401002 StatusError", err)
	}
	if !strings.Contains(err.Error(), `register "edge-1" with DPS`) {
		t.Errorf("error %q does not say what failed", err)
	}
	if _, err := LoadCache(home); !errors.Is(err, ErrNoCache) {
		t.Errorf("a refused registration left a cache (LoadCache: %v)", err)
	}
}

func TestEnsureCorruptCacheRegisters(t *testing.T) {
	dps := newFakeDPS(t, testKeys[0])
	bundle := writeTrustBundle(t, dps.srv)
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Dir(CachePath(home)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(CachePath(home), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newProvisioner(t, symConfig(t, dps.srv.URL, bundle, home, config.ReprovisionDynamic, testKeys[0], ""), &countingClient{})
	a, err := p.Ensure(ctxT(t), Startup)
	if err != nil || !a.Registered || a.Why != "no cached assignment" {
		t.Fatalf("Ensure over a corrupt cache = %+v, %v; want a registration", a, err)
	}
	if _, err := LoadCache(home); err != nil {
		t.Errorf("the corrupt cache was not replaced: %v", err)
	}
}

func TestEnsurePayloadAndNoSecretInCache(t *testing.T) {
	dps := newFakeDPS(t, testKeys[0])
	bundle := writeTrustBundle(t, dps.srv)
	home := t.TempDir()
	payload := filepath.Join(t.TempDir(), "payload.json")
	if err := os.WriteFile(payload, []byte(`{"site":"north"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("payload = { uri = %q }\n", config.PathToFileURI(payload))
	p := newProvisioner(t, symConfig(t, dps.srv.URL, bundle, home, config.ReprovisionDynamic, testKeys[0], extra), &countingClient{})
	a, err := p.Ensure(ctxT(t), Startup)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Payload) != `{"site":"north"}` {
		t.Errorf("payload = %s, want the one DPS echoed", a.Payload)
	}
	b, err := os.ReadFile(CachePath(home))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(testKeys[0])
	if bytes.Contains(b, []byte(testKeys[0])) || bytes.Contains(b, raw) {
		t.Errorf("the cache holds the key:\n%s", b)
	}
	sum := sha256.Sum256(raw)
	c, err := ParseCache(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := FingerprintSymmetricKey + hex.EncodeToString(sum[:]); c.Credential != want {
		t.Errorf("credential fingerprint = %q, want %q", c.Credential, want)
	}
	if c.Endpoint != dps.srv.URL+"/" || c.IDScope != testScope || c.RegistrationID != "edge-1" {
		t.Errorf("cache identity = %+v", c.Identity())
	}
}

func TestEnsureUnknownReason(t *testing.T) {
	c := symConfig(t, "https://127.0.0.1:1", "/nonexistent.pem", t.TempDir(), config.ReprovisionDynamic, testKeys[0], "")
	p := newProvisioner(t, c, &countingClient{})
	if _, err := p.Ensure(ctxT(t), Reason(42)); err == nil || !strings.Contains(err.Error(), "unknown reason 42") {
		t.Errorf("Ensure(42) = %v, want an unknown-reason error", err)
	}
}

func TestNewErrors(t *testing.T) {
	manual, err := config.Parse([]byte(`homedir = "/tmp/x"
[provisioning]
source = "manual"
connection_string = "HostName=hub.example.com;DeviceId=d1;SharedAccessKey=` + testKeys[0] + `"
`))
	if err != nil {
		t.Fatal(err)
	}
	noHome := symConfig(t, "https://127.0.0.1:1", "/b.pem", "/h", config.ReprovisionDynamic, testKeys[0], "")
	noHome.Homedir = ""
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"nil config", Options{}, "Config is nil"},
		{"manual", Options{Config: manual}, `does not provision through DPS (provisioning.source is "manual")`},
		{"no homedir", Options{Config: noHome}, "no home directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := IdentityOf(manual); !errors.Is(err, ErrNotDPS) {
		t.Errorf("IdentityOf(manual) = %v, want ErrNotDPS", err)
	}
}

func TestIdentityOfX509(t *testing.T) {
	dir := t.TempDir()
	root, err := pki.NewRoot("root")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := root.NewDevice("edge-x509")
	if err != nil {
		t.Fatal(err)
	}
	key, err := dev.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "dev.pem"), filepath.Join(dir, "dev.key")
	if err := os.WriteFile(certPath, append(dev.CertPEM(), root.CertPEM()...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, key, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte(fmt.Sprintf(`homedir = %q
[provisioning]
source = "dps"
global_endpoint = "dps.example.com"
id_scope = %q
[provisioning.attestation]
method = "x509"
identity_cert = %q
identity_pk = %q
`, dir, testScope, certPath, keyPath)))
	if err != nil {
		t.Fatal(err)
	}
	id, err := IdentityOf(c)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(dev.Cert.Raw)
	want := Identity{IDScope: testScope, RegistrationID: "edge-x509", Endpoint: "https://dps.example.com/", Credential: FingerprintX509 + hex.EncodeToString(sum[:])}
	if diff := cmp.Diff(want, id); diff != "" {
		t.Errorf("IdentityOf (-want +got):\n%s", diff)
	}
}

func TestReasonString(t *testing.T) {
	tests := map[Reason]string{Startup: "startup", HubRejected: "hub rejected the device", HubUnreachable: "hub unreachable", Manual: "manual reprovision", 9: "Reason(9)"}
	for r, want := range tests {
		t.Run(want, func(t *testing.T) {
			if got := r.String(); got != want {
				t.Errorf("String = %q, want %q", got, want)
			}
		})
	}
}
