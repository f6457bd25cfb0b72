package main

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/api"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
	"github.com/muster-iot/muster/internal/telemetry"
)

// stackHost names the in-process stack's DPS and hub.
const stackHost = "hub.example.test"

// hubStack is the real provisioning service and hub service APIs (api,
// enrollment service, registry and telemetry endpoint over an in-memory
// store) behind a TLS test server, with an endpoints.json in dir that
// points the CLI at it.
type hubStack struct {
	t      *testing.T
	dir    string
	inst   *instance.Instance
	st     *memstore.Store
	reg    *registry.Hub
	events *telemetry.Endpoint
}

func newHubStack(t *testing.T) *hubStack {
	t.Helper()
	ctx := context.Background()
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	dir := t.TempDir()
	inst, err := instance.Open(ctx, st, dir, []string{stackHost}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(stackHost, st, nil)
	enr := enroll.NewService(st, enroll.ServiceOptions{LinkedHubs: func() []string { return []string{stackHost} }})
	prov, err := provision.New(provision.Options{IDScope: inst.IDScope, Docs: st, Attempts: st, Enrollments: enr,
		Hubs: []provision.LinkedHub{{Hub: reg, Weight: 1, ApplyAllocationPolicy: true}}})
	if err != nil {
		t.Fatal(err)
	}
	events, err := telemetry.NewEndpoint(st, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Options{IDScope: inst.IDScope, Registrar: prov, Registrations: registrations{enr, prov}, Enrollments: enr,
		Policies: inst, ServiceHostNames: []string{stackHost}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.MountHub(reg); err != nil {
		t.Fatal(err)
	}
	if err := a.MountTelemetry(stackHost, events); err != nil {
		t.Fatal(err)
	}
	if err := a.MountHubModules(reg, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.MountHubModuleTwins(reg); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{inst.TLSCertificate}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ep := inst.Endpoints(srv.Listener.Addr(), srv.Listener.Addr())
	ep.HTTPSAddr = srv.Listener.Addr().String() // the host name does not resolve
	if err := instance.WriteEndpoints(dir, ep); err != nil {
		t.Fatal(err)
	}
	return &hubStack{t: t, dir: dir, inst: inst, st: st, reg: reg, events: events}
}

// run runs the CLI against the stack and fails the test on error.
func (s *hubStack) run(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, nil, append([]string{"--data-dir", s.dir}, args...)...)
	if err != nil {
		t.Fatalf("muster %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// runErr runs the CLI against the stack and returns its error.
func (s *hubStack) runErr(t *testing.T, args ...string) error {
	t.Helper()
	_, _, err := runCLI(t, nil, append([]string{"--data-dir", s.dir}, args...)...)
	if err == nil {
		t.Fatalf("muster %s succeeded, want an error", strings.Join(args, " "))
	}
	return err
}

func TestDeviceCommands(t *testing.T) {
	s := newHubStack(t)
	ctx := t.Context()

	out := s.run(t, "device", "create", "--device-id", "dev-1")
	d1, err := s.reg.GetDevice(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	key := d1.Authentication.SymmetricKey.PrimaryKey
	checkRow(t, out, "Authentication", "sas")
	checkRow(t, out, "Primary key", key)
	checkRow(t, out, "Connection string", "HostName="+stackHost+";DeviceId=dev-1;SharedAccessKey="+key)
	if d1.Authentication.SymmetricKey.SecondaryKey == "" || d1.Status != registry.StatusEnabled {
		t.Errorf("created %+v", d1)
	}

	tp := strings.Repeat("0A", 32)
	d2 := decodeJSON[registry.Device](t, s.run(t, "device", "create", "dev-2", "--auth-type", "SELFSIGNED",
		"--primary-thumbprint", tp, "--edge-enabled", "--status", "disabled", "--status-reason", "staging", "-o", "json"))
	if d2.Authentication.Type != authSelfSigned || d2.Authentication.X509Thumbprint.PrimaryThumbprint == nil ||
		!strings.EqualFold(*d2.Authentication.X509Thumbprint.PrimaryThumbprint, tp) || !d2.Capabilities.IoTEdge || d2.Status != "disabled" {
		t.Errorf("created %+v", d2)
	}
	s.run(t, "device", "create", "dev-3", "--auth-type", "certificateAuthority")

	out = s.run(t, "device", "list")
	want := `DEVICE ID  STATUS    AUTHENTICATION        EDGE  CONNECTION    LAST ACTIVITY
dev-1      enabled   sas                   no    Disconnected  -
dev-2      disabled  selfSigned            yes   Disconnected  -
dev-3      enabled   certificateAuthority  no    Disconnected  -
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if list := decodeJSON[[]registry.Device](t, s.run(t, "device", "list", "--top", "1", "-o", "json")); len(list) != 1 || list[0].Authentication.SymmetricKey != nil {
		t.Errorf("list --top 1 JSON: %+v (keys must not be listed)", list)
	}

	out = s.run(t, "device", "show", "dev-1")
	if strings.Contains(out, key) {
		t.Errorf("show prints the key without --show-keys:\n%s", out)
	}
	checkRow(t, out, "Device ID", "dev-1")
	checkRow(t, s.run(t, "device", "show", "dev-1", "--show-keys"), "Primary key", key)
	if shown := decodeJSON[registry.Device](t, s.run(t, "device", "show", "dev-1", "-o", "json")); shown.Authentication.SymmetricKey != nil || shown.ETag != d1.ETag {
		t.Errorf("show JSON %+v", shown)
	}

	out = s.run(t, "device", "update", "dev-1", "--status", "disabled", "--status-reason", "battery swap", "--edge-enabled")
	checkRow(t, out, "Status", "disabled")
	checkRow(t, out, "Status reason", "battery swap")
	checkRow(t, out, "IoT Edge", "yes")
	up, err := s.reg.GetDevice(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if up.Authentication.SymmetricKey.PrimaryKey != key || up.Status != "disabled" || !up.Capabilities.IoTEdge {
		t.Errorf("updated %+v (the keys must be kept)", up)
	}
	const newKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	s.run(t, "device", "update", "dev-1", "--primary-key", newKey)
	if up, _ := s.reg.GetDevice(ctx, "dev-1"); up.Authentication.SymmetricKey.PrimaryKey != newKey || up.Authentication.SymmetricKey.SecondaryKey != d1.Authentication.SymmetricKey.SecondaryKey {
		t.Errorf("key update: %+v", up.Authentication.SymmetricKey)
	}
	s.run(t, "device", "update", "dev-3", "--auth-type", "sas")
	if d3, _ := s.reg.GetDevice(ctx, "dev-3"); d3.Authentication.Type != authSAS || d3.Authentication.SymmetricKey == nil || d3.Authentication.SymmetricKey.PrimaryKey == "" {
		t.Errorf("switch to sas: %+v", d3.Authentication)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"create without ID", []string{"device", "create"}, "--device-id: give the ID"},
		{"create with two IDs", []string{"device", "create", "a", "--device-id", "b"}, "name different devices"},
		{"create existing", []string{"device", "create", "dev-1"}, "409"},
		{"bad auth type", []string{"device", "create", "x", "--auth-type", "tpm"}, `--auth-type "tpm": must be sas, selfSigned or certificateAuthority`},
		{"key for selfSigned", []string{"device", "create", "x", "--auth-type", "selfSigned", "--primary-thumbprint", tp, "--primary-key", newKey}, "--primary-key and --secondary-key need --auth-type sas"},
		{"thumbprint for sas", []string{"device", "create", "x", "--primary-thumbprint", tp}, "need --auth-type selfSigned"},
		{"selfSigned without thumbprint", []string{"device", "create", "x", "--auth-type", "selfSigned"}, "--primary-thumbprint: a selfSigned device needs"},
		{"bad key", []string{"device", "create", "x", "--primary-key", "not base64!"}, "--primary-key"},
		{"bad status", []string{"device", "create", "x", "--status", "paused"}, `--status "paused"`},
		{"invalid ID", []string{"device", "create", "a/b"}, "ArgumentInvalid"},
		{"stale etag", []string{"device", "update", "dev-1", "--status", "enabled", "--etag", "stale"}, "412"},
		{"update missing", []string{"device", "update", "nobody", "--status", "enabled"}, "DeviceNotFound"},
		{"show missing", []string{"device", "show", "nobody"}, "404"},
		{"why with limit 0", []string{"device", "why", "dev-1", "--limit", "0"}, "--limit 0"},
		{"list top too high", []string{"device", "list", "--top", "5000"}, "top 5000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.runErr(t, tc.args...); !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}

	out = s.run(t, "device", "delete", "dev-2")
	if out != "Deleted device dev-2.\n" {
		t.Errorf("delete: %q", out)
	}
	if _, err := s.reg.GetDevice(ctx, "dev-2"); err == nil {
		t.Error("dev-2 still exists")
	}
}

func TestDeviceWhy(t *testing.T) {
	s := newHubStack(t)
	at := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	for i, a := range []store.Attempt{
		{ID: "1", Time: at, RegistrationID: "dev-1", Protocol: "https", Attestation: "symmetricKey", Outcome: "assigned", EnrollmentKind: "group", EnrollmentID: "fleet"},
		{ID: "2", Time: at.Add(time.Minute), RegistrationID: "dev-1", Protocol: "hub-mqtt", Attestation: "symmetricKey", Outcome: "denied",
			Reason: "sas_signature_mismatch", Hint: "sign the token with the device's key"},
		{ID: "3", Time: at.Add(2 * time.Minute), RegistrationID: "dev-2", Protocol: "hub-mqtt", Outcome: "denied", Reason: "device_not_found"},
	} {
		if err := s.st.AppendAttempt(t.Context(), a); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	out := s.run(t, "device", "why", "DEV-1")
	want := `TIME                  PROTOCOL  ATTESTATION   OUTCOME   REASON                  ENROLLMENT   HINT
2031-05-06T07:09:09Z  hub-mqtt  symmetricKey  denied    sas_signature_mismatch  -            sign the token with the device's key
2031-05-06T07:08:09Z  https     symmetricKey  assigned  -                       group/fleet  -
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("why (-want +got):\n%s", diff)
	}
	if got := decodeJSON[[]store.Attempt](t, s.run(t, "device", "why", "dev-1", "--limit", "1", "-o", "json")); len(got) != 1 || got[0].ID != "2" {
		t.Errorf("why --limit 1: %+v", got)
	}
	out, stderr, err := runCLI(t, nil, "--data-dir", s.dir, "device", "why", "quiet")
	if err != nil || out != "" || !strings.Contains(stderr, `No attempts are recorded for "quiet"`) {
		t.Errorf("why without attempts: %q %q %v", out, stderr, err)
	}
}

func TestHubConnectionResolution(t *testing.T) {
	s := newHubStack(t)
	readOnly := s.inst.ConnectionString("registryRead")
	owner := s.inst.ConnectionString("iothubowner")
	env := map[string]string{envHubConnectionString: readOnly}

	// The environment wins over endpoints.json: a read-only policy cannot create.
	_, _, err := runCLI(t, env, "--data-dir", s.dir, "device", "create", "x")
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("create with the read-only policy from the environment: %v", err)
	}
	// The flag wins over the environment.
	if _, stderr, err := runCLI(t, env, "--data-dir", s.dir, "device", "create", "x", "--hub-connection-string", owner); err != nil {
		t.Errorf("create with the flag: %v\n%s", err, stderr)
	}
	// Without endpoints.json, a connection string is needed.
	empty := t.TempDir()
	_, _, err = runCLI(t, nil, "--data-dir", empty, "twin", "show", "x")
	if err == nil || !strings.Contains(err.Error(), "no hub connection string: pass --hub-connection-string, set "+envHubConnectionString) {
		t.Errorf("no connection string: %v", err)
	}
	// A connection string for another hub does not take endpoints.json's address.
	other := strings.Replace(owner, stackHost, "elsewhere.example.test", 1)
	_, _, err = runCLI(t, nil, "--data-dir", s.dir, "device", "list", "--hub-connection-string", other, "--server", "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("other hub: %v", err)
	}
}
