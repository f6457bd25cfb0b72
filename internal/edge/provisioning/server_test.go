package provisioning

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/client/dpsservice"
	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/instance"
)

// Bounds of the real-server harness; none is an assertion on speed.
const (
	buildTimeout = 5 * time.Minute
	startTimeout = 60 * time.Second
	stopTimeout  = 15 * time.Second
)

// musterServer is a running `muster serve` subprocess.
type musterServer struct {
	ep   instance.Endpoints
	svc  *dpsservice.Client
	root *x509.CertPool
}

// startMuster builds cmd/muster, runs `muster serve` on kernel-chosen
// loopback ports with a fresh data directory, waits (bounded) for its
// endpoints.json and returns a service client. A cleanup stops the server.
func startMuster(t *testing.T) *musterServer {
	t.Helper()
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(tmp, "muster")
	if filepath.Separator == '\\' {
		bin += ".exe"
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/muster")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/muster: %v\n%s", err, out)
	}

	dataDir := filepath.Join(tmp, "data")
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "serve", "--data-dir", dataDir,
		"--https-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--hostname", "localhost")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MUSTER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stderr = &stderr // read only after Wait returned
	if err := cmd.Start(); err != nil {
		t.Fatalf("start muster serve: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			cmd.Process.Kill()
		}
		timer := time.NewTimer(stopTimeout)
		defer timer.Stop()
		select {
		case <-exited:
		case <-timer.C:
			t.Errorf("muster serve did not stop within %v; killing it", stopTimeout)
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("muster serve stderr:\n%s", stderr.String())
		}
	})

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("muster serve exited before it was ready: %v", err)
		case <-deadline.C:
			t.Fatalf("muster serve wrote no endpoints.json within %v", startTimeout)
		case <-tick.C:
		}
		ep, err := instance.ReadEndpoints(dataDir)
		if err != nil || ep.IDScope == "" || ep.CACertFile == "" || ep.HTTPSAddr == "" || ep.MQTTAddr == "" {
			continue
		}
		pemBytes, err := os.ReadFile(ep.CACertFile)
		if err != nil {
			t.Fatalf("read the server CA: %v", err)
		}
		root := x509.NewCertPool()
		if !root.AppendCertsFromPEM(pemBytes) {
			t.Fatalf("no certificate in %s", ep.CACertFile)
		}
		svc, err := dpsservice.New(dpsservice.Options{ConnectionString: ep.DPSServiceConnectionString, Server: ep.HTTPSAddr, RootCAs: root})
		if err != nil {
			t.Fatalf("service client: %v", err)
		}
		return &musterServer{ep: *ep, svc: svc, root: root}
	}
}

// attempts returns how many registration attempts the server logged for
// a registration ID.
func (s *musterServer) attempts(t *testing.T, regID string) int {
	t.Helper()
	list, err := s.svc.Attempts(ctxT(t), regID, 0)
	if err != nil {
		t.Fatalf("attempts of %q: %v", regID, err)
	}
	return len(list)
}

// TestProvisionerAgainstMuster provisions through a real `muster serve`:
// the first start registers, the second uses the cache without contacting
// DPS, a hub rejection registers again, and so do a changed key and a
// changed transport.
func TestProvisionerAgainstMuster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs muster serve; skipped in -short mode")
	}
	srv := startMuster(t)
	const regID = "edge-provisioning-it"
	e, err := srv.svc.PutEnrollment(ctxT(t), &enroll.IndividualEnrollment{
		RegistrationID: regID,
		Common:         enroll.Common{Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey}},
	}, "")
	if err != nil {
		t.Fatalf("create the enrollment: %v", err)
	}
	keys := e.Attestation.SymmetricKey
	home := t.TempDir()
	cfg := func(transport, endpoint, key string) *config.Config {
		doc := fmt.Sprintf(`homedir = %q
trust_bundle_cert = %q

[provisioning]
source = "dps"
transport = %q
global_endpoint = %q
id_scope = %q

[provisioning.attestation]
method = "symmetric_key"
registration_id = %q
symmetric_key = { value = %q }
`, home, srv.ep.CACertFile, transport, endpoint, srv.ep.IDScope, regID, key)
		c, err := config.Parse([]byte(doc))
		if err != nil {
			t.Fatalf("parse configuration: %v", err)
		}
		return c
	}
	httpsEndpoint := "https://" + srv.ep.DPSDeviceEndpoint
	clients := &countingClient{}
	p := newProvisionerAt(t, cfg(config.TransportHTTPS, httpsEndpoint, keys.PrimaryKey), clients, time.Now)

	steps := []struct {
		name       string
		p          func() *Provisioner
		reason     Reason
		registered bool
		attempts   int
	}{
		{"first start registers", func() *Provisioner { return p }, Startup, true, 1},
		{"second start uses the cache", func() *Provisioner { return p }, Startup, false, 1},
		{"unreachable hub keeps the cache", func() *Provisioner { return p }, HubUnreachable, false, 1},
		{"hub rejection registers", func() *Provisioner { return p }, HubRejected, true, 2},
		{"changed key registers", func() *Provisioner {
			return newProvisionerAt(t, cfg(config.TransportHTTPS, httpsEndpoint, keys.SecondaryKey), clients, time.Now)
		}, Startup, true, 3},
		{"changed transport registers over MQTT", func() *Provisioner {
			return newProvisionerAt(t, cfg(config.TransportMQTT, "mqtts://"+srv.ep.MQTTAddr, keys.SecondaryKey), clients, time.Now)
		}, Startup, true, 4},
		{"manual reprovision registers", func() *Provisioner {
			return newProvisionerAt(t, cfg(config.TransportMQTT, "mqtts://"+srv.ep.MQTTAddr, keys.SecondaryKey), clients, time.Now)
		}, Manual, true, 5},
	}
	for _, s := range steps {
		a, err := s.p().Ensure(ctxT(t), s.reason)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if a.Registered != s.registered {
			t.Errorf("%s: Registered = %v, want %v (why: %s)", s.name, a.Registered, s.registered, a.Why)
		}
		if a.Hub != srv.ep.HubHostName || a.DeviceID != regID {
			t.Errorf("%s: assigned %s/%s, want %s/%s", s.name, a.Hub, a.DeviceID, srv.ep.HubHostName, regID)
		}
		if got := srv.attempts(t, regID); got != s.attempts {
			t.Errorf("%s: the server logged %d attempts, want %d", s.name, got, s.attempts)
		}
		if got := int(clients.n.Load()); got != s.attempts {
			t.Errorf("%s: %d DPS clients created, want %d", s.name, got, s.attempts)
		}
	}
	c, err := LoadCache(home)
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoint != "mqtts://"+srv.ep.MQTTAddr+"/" || c.Substatus == "" {
		t.Errorf("final cache = %+v", c)
	}
	b, err := os.ReadFile(CachePath(home))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{keys.PrimaryKey, keys.SecondaryKey} {
		if bytes.Contains(b, []byte(k)) {
			t.Errorf("the cache holds a key:\n%s", b)
		}
	}
}
