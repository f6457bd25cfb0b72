package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/client/dpsclient"
	"github.com/muster-iot/muster/internal/client/dpsservice"
	"github.com/muster-iot/muster/internal/client/hubservice"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store/postgres/pgtest"
)

// Bounds of the multi-instance test.
const (
	multiInstances   = 3
	multiDevicesA    = 300 // spread registrations, part a
	multiPairs       = 30  // devices registered twice at once on two instances
	multiDevicesC    = 300 // registrations during which an instance is killed
	multiKillAfter   = 100 // acknowledged registrations of part c before the kill
	multiWorkers     = 16
	multiAttempts    = multiInstances // tries of one device, one per instance
	multiStartWait   = 90 * time.Second
	multiRegTimeout  = 60 * time.Second
	multiStopTimeout = 30 * time.Second
)

// musterProc is one `muster serve` process of the multi-instance test,
// on a shared PostgreSQL schema, with its own data directory.
type musterProc struct {
	name, bin, dataDir, dsn string

	cmd    *exec.Cmd
	exited chan error
	log    *os.File
	ts     *testServer // the endpoints of the current run
}

// start runs the process on fresh loopback ports and waits (bounded) for
// its endpoints.json.
func (p *musterProc) start() error {
	file := filepath.Join(p.dataDir, "endpoints.json")
	if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(p.dataDir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(p.dataDir), p.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	p.log = logf
	p.cmd = exec.Command(p.bin, "serve", "--data-dir", p.dataDir, "--store", p.dsn,
		"--https-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--log-level", "warn")
	p.cmd.Env = serverEnvWithout(os.Environ())
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.exited = make(chan error, 1)
	go func() { p.exited <- p.cmd.Wait() }()
	deadline := time.NewTimer(multiStartWait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-p.exited:
			p.exited <- err
			return fmt.Errorf("%s exited before it was ready: %v (log %s)", p.name, err, logf.Name())
		case <-deadline.C:
			return fmt.Errorf("%s wrote no endpoints.json within %v (log %s)", p.name, multiStartWait, logf.Name())
		case <-tick.C:
		}
		ep, err := instance.ReadEndpoints(p.dataDir)
		if err != nil {
			continue // not written yet (it is written atomically)
		}
		ts, err := procTestServer(*ep, p.dataDir)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		p.ts = ts
		return nil
	}
}

// procTestServer describes a running process as the e2e helpers expect;
// its lifecycle belongs to the musterProc.
func procTestServer(ep instance.Endpoints, dir string) (*testServer, error) {
	pemBytes, err := os.ReadFile(ep.CACertFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("CA file %s has no certificate", ep.CACertFile)
	}
	svc, err := dpsservice.New(dpsservice.Options{ConnectionString: ep.DPSServiceConnectionString, Server: ep.HTTPSAddr, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	return &testServer{ep: ep, dir: dir, roots: roots, svc: svc, cancel: func() {}, done: make(chan error, 1), stopped: true}, nil
}

// kill ends the process with SIGKILL and reaps it.
func (p *musterProc) kill() error {
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	err := <-p.exited
	p.exited <- err
	return nil
}

// stop ends the process with SIGTERM (SIGKILL after multiStopTimeout).
func (p *musterProc) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
	case <-time.After(multiStopTimeout):
		_ = p.kill()
	}
	p.log.Close()
}

// serverEnvWithout drops MUSTER_* variables, so a developer's settings
// cannot redirect the processes' store or addresses.
func serverEnvWithout(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MUSTER_") {
			out = append(out, kv)
		}
	}
	return out
}

// buildMusterBinary builds ./cmd/muster (this package) into dir.
func buildMusterBinary(t *testing.T, dir string) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	bin := filepath.Join(dir, "muster")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goCmd, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/muster: %v\n%s", err, out)
	}
	return bin
}

// regLoad registers devices of one symmetric-key group across instances
// and remembers what was acknowledged.
type regLoad struct {
	groupKey string
	clients  func(i int) *dpsclient.Client // the device client of instance i; nil while it is down

	mu      sync.Mutex
	acked   map[string]string // registration ID → device ID of every "assigned" answer
	failed  int               // attempts that failed (retried on another instance)
	lost    []string          // devices no instance registered
	samples []string
	ackN    atomic.Int64
}

func newRegLoad(groupKey string, clients func(int) *dpsclient.Client) *regLoad {
	return &regLoad{groupKey: groupKey, clients: clients, acked: map[string]string{}}
}

// one registers a device, first on instance first, then on the next ones
// when an attempt fails; it returns the result of the successful attempt.
func (l *regLoad) one(ctx context.Context, id string, first int) (*provision.DeviceRegistrationResult, error) {
	key, err := sas.DeriveKey(l.groupKey, id)
	if err != nil {
		return nil, err
	}
	d := dpsclient.Device{RegistrationID: id, Credential: dpsclient.Credential{SymmetricKey: key}}
	var last error
	for a := range multiAttempts {
		c := l.clients((first + a) % multiInstances)
		if c == nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, multiRegTimeout)
		res, err := c.Register(rctx, d)
		cancel()
		if err == nil && res.Status == provision.StatusAssigned && res.DeviceID != "" {
			l.mu.Lock()
			if prev, ok := l.acked[id]; ok && prev != res.DeviceID {
				l.samples = append(l.samples, fmt.Sprintf("%s: acknowledged as device %s, then %s", id, prev, res.DeviceID))
			}
			l.acked[id] = res.DeviceID
			l.mu.Unlock()
			l.ackN.Add(1)
			return res, nil
		}
		if err == nil {
			err = fmt.Errorf("final status %q (device %q)", res.Status, res.DeviceID)
		}
		last = err
		l.mu.Lock()
		l.failed++
		if len(l.samples) < 5 {
			l.samples = append(l.samples, fmt.Sprintf("%s on instance %d: %v", id, (first+a)%multiInstances, err))
		}
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.lost = append(l.lost, id)
	l.mu.Unlock()
	return nil, last
}

// spread registers ids with multiWorkers workers, device i first on
// instance i mod multiInstances.
func (l *regLoad) spread(ctx context.Context, ids []string) {
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range multiWorkers {
		wg.Go(func() {
			for i := range jobs {
				_, _ = l.one(ctx, ids[i], i%multiInstances)
			}
		})
	}
	for i := range ids {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
}

// TestPostgresMultiInstance runs three real `muster serve` processes on one
// PostgreSQL schema (skipped without TEST_PG_DSN), each with its own data
// directory, started at the same moment:
//
//   - a: symmetric-key registrations spread over the three instances, and
//     devices registered twice at once on two instances: every
//     acknowledged registration has exactly one record and one identity;
//   - b: a desired-property patch, a C2D message, direct methods (and
//     their answers) to a device and a module, a module delete and a
//     disable made through one instance's service API reach devices and
//     modules connected by MQTT to other instances;
//   - c: one instance is killed with SIGKILL while registrations are in
//     flight and restarted: no acknowledged registration is lost, the
//     device connected to it reconnects and gets the C2D message sent
//     while it was down, and changes and direct methods still cross
//     instances.
func TestPostgresMultiInstance(t *testing.T) {
	dsn := pgtest.Schema(t)
	tmp := t.TempDir()
	bin := buildMusterBinary(t, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	procs := make([]*musterProc, multiInstances)
	errs := make([]error, multiInstances)
	var wg sync.WaitGroup
	for i := range procs {
		procs[i] = &musterProc{name: fmt.Sprintf("muster-%d", i), bin: bin, dataDir: filepath.Join(tmp, fmt.Sprintf("data-%d", i)), dsn: dsn}
		p := procs[i]
		t.Cleanup(p.stop)
		wg.Go(func() { errs[i] = p.start() }) // at once: migrations and the identity are created by one of them
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range procs {
				if b, err := os.ReadFile(p.log.Name()); err == nil {
					t.Logf("%s log (tail):\n%s", p.name, tailString(string(b), 8<<10))
				}
			}
		}
	})
	ep0 := procs[0].ts.ep
	for _, p := range procs[1:] {
		ep := p.ts.ep
		if ep.IDScope != ep0.IDScope || ep.DPSServiceConnectionString != ep0.DPSServiceConnectionString || ep.HubConnectionString != ep0.HubConnectionString {
			t.Fatalf("%s has another identity than %s: %+v vs %+v", p.name, procs[0].name, ep, ep0)
		}
		if ep.HTTPSAddr == ep0.HTTPSAddr {
			t.Fatalf("%s and %s share the address %s", p.name, procs[0].name, ep.HTTPSAddr)
		}
	}

	group, err := procs[0].ts.svc.PutGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "multi-group", Common: enroll.Common{
		Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	var clientsMu sync.Mutex
	clients := make([]*dpsclient.Client, multiInstances)
	setClient := func(i int) {
		// The first poll goes out at once: the server completes a
		// registration before it answers, so the 3 s Retry-After would
		// only make the test slower, not cover more.
		ts := procs[i].ts
		c, err := dpsclient.New(dpsclient.Options{Endpoint: ts.ep.DPSDeviceEndpoint, IDScope: ts.ep.IDScope, Transport: "https",
			RootCAs: ts.roots, PollInterval: 100 * time.Millisecond, PollImmediately: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clientsMu.Lock()
		clients[i] = c
		clientsMu.Unlock()
	}
	for i := range procs {
		setClient(i)
	}
	clientOf := func(i int) *dpsclient.Client {
		clientsMu.Lock()
		defer clientsMu.Unlock()
		return clients[i]
	}
	load := newRegLoad(group.Attestation.SymmetricKey.PrimaryKey, clientOf)
	hubs := make([]*hubservice.Client, multiInstances)
	hubOf := func(i int) *hubservice.Client {
		if hubs[i] == nil || hubs[i].Server() != lhLoopback(t, procs[i].ts.ep.HTTPSAddr) {
			h, err := hubservice.New(hubservice.Options{ConnectionString: procs[i].ts.ep.HubConnectionString, Server: lhLoopback(t, procs[i].ts.ep.HTTPSAddr), RootCAs: procs[i].ts.roots})
			if err != nil {
				t.Fatal(err)
			}
			hubs[i] = h
		}
		return hubs[i]
	}

	t.Run("a concurrent registrations", func(t *testing.T) {
		ids := make([]string, multiDevicesA)
		for i := range ids {
			ids[i] = fmt.Sprintf("multi-a-%04d", i)
		}
		load.spread(ctx, ids)

		// Each pair device registers on two instances at the same moment.
		var pairs sync.WaitGroup
		for i := range multiPairs {
			id := fmt.Sprintf("multi-pair-%03d", i)
			var ready sync.WaitGroup
			ready.Add(2)
			devs := make([]string, 2)
			for k := range 2 {
				pairs.Go(func() {
					ready.Done()
					ready.Wait()
					if res, err := load.one(ctx, id, (i+k)%multiInstances); err == nil {
						devs[k] = res.DeviceID
					}
				})
			}
			pairs.Wait()
			if devs[0] != devs[1] || devs[0] == "" {
				t.Errorf("device %s registered twice at once: device IDs %q and %q", id, devs[0], devs[1])
			}
		}
		checkRegistrations(ctx, t, procs[1].ts.svc, hubOf(2), "multi-group", load, "a")
	})

	t.Run("b changes cross instances", func(t *testing.T) {
		const dev, other = "multi-a-0000", "multi-a-0001"
		hubHost, key := ep0.HubHostName, deviceKey(t, group, dev)
		c, rc := connectHub(t, procs[1].ts, hubHost, dev, key)
		if rc != 0 {
			t.Fatalf("CONNACK %d for %s on %s", rc, dev, procs[1].name)
		}
		c.subscribe(t, "$iothub/twin/PATCH/properties/desired/#", "devices/"+dev+"/messages/devicebound/#", "$iothub/methods/POST/#")

		if _, err := hubOf(0).PatchTwin(ctx, dev, hubservice.TwinUpdate{Desired: json.RawMessage(`{"color":"blue"}`)}, ""); err != nil {
			t.Fatal(err)
		}
		m := c.next(t)
		if !strings.HasPrefix(m.Topic(), "$iothub/twin/PATCH/properties/desired/") || !strings.Contains(string(m.Payload()), `"color":"blue"`) {
			t.Fatalf("desired patch made on %s, received on %s: %s %s", procs[0].name, procs[1].name, m.Topic(), m.Payload())
		}

		if _, err := hubOf(2).SendCloudMessage(ctx, dev, hubservice.CloudMessage{Body: []byte("from instance 2")}); err != nil {
			t.Fatal(err)
		}
		m = c.next(t)
		if !strings.HasPrefix(m.Topic(), "devices/"+dev+"/messages/devicebound/") || string(m.Payload()) != "from instance 2" {
			t.Fatalf("C2D message sent on %s, received on %s: %s %q", procs[2].name, procs[1].name, m.Topic(), m.Payload())
		}

		// A direct method called through instance 0 reaches the device on
		// instance 1, and its answer comes back; a device connected
		// nowhere is not online at once.
		if !multiWaitFor(func() bool {
			d, err := hubOf(0).GetDevice(ctx, dev)
			return err == nil && d.ConnectionState == "Connected"
		}) {
			t.Fatalf("%s is not recorded as connected after %v", dev, hubWait)
		}
		jsonHdr := map[string]string{"Content-Type": "application/json"}
		done := make(chan hubCall, 1)
		go func() {
			done <- callHub(t, procs[0].ts, "POST", "/twins/"+dev+"/methods",
				`{"methodName":"reboot","payload":{"delay":5},"responseTimeoutInSeconds":30}`, jsonHdr)
		}()
		m = c.next(t)
		name, rid, ok := strings.Cut(strings.TrimPrefix(m.Topic(), "$iothub/methods/POST/"), "/?$rid=")
		if !ok || name != "reboot" || string(m.Payload()) != `{"delay":5}` {
			t.Fatalf("method called on %s, request on %s: %s %s", procs[0].name, procs[1].name, m.Topic(), m.Payload())
		}
		c.publish(t, "$iothub/methods/res/202/?$rid="+rid, 0, `{"rebooting":true}`)
		select {
		case res := <-done:
			if res.status != 200 || string(res.body) != `{"status":202,"payload":{"rebooting":true}}` {
				t.Fatalf("method called on %s for a device on %s: %d %s", procs[0].name, procs[1].name, res.status, res.body)
			}
		case <-time.After(hubWait):
			t.Fatalf("no answer to the method on %s within %v", procs[0].name, hubWait)
		}
		if res := callHub(t, procs[2].ts, "POST", "/twins/multi-a-0004/methods", `{"methodName":"m"}`, jsonHdr); res.status != 404 || !strings.Contains(string(res.body), "404103") {
			t.Fatalf("method for a device connected nowhere: %d %s", res.status, res.body)
		}

		// The same for a module, whose deletion through instance 2 then
		// ends its connection on instance 1.
		if res := callHub(t, procs[0].ts, "PUT", "/devices/multi-edge", `{"deviceId":"multi-edge","capabilities":{"iotEdge":true}}`, jsonHdr); res.status != 200 {
			t.Fatalf("PUT /devices/multi-edge: %d %s", res.status, res.body)
		}
		res := callHub(t, procs[0].ts, "PUT", "/devices/multi-edge/modules/mod1", `{"moduleId":"mod1","deviceId":"multi-edge"}`, jsonHdr)
		var mod struct {
			Authentication struct {
				SymmetricKey struct {
					PrimaryKey string `json:"primaryKey"`
				} `json:"symmetricKey"`
			} `json:"authentication"`
		}
		if res.status != 200 || json.Unmarshal(res.body, &mod) != nil || mod.Authentication.SymmetricKey.PrimaryKey == "" {
			t.Fatalf("PUT module: %d %s", res.status, res.body)
		}
		mc := connectModule(t, procs[1].ts, hubHost, "multi-edge", "mod1", mod.Authentication.SymmetricKey.PrimaryKey)
		mc.subscribe(t, "$iothub/methods/POST/#")
		if !multiWaitFor(func() bool {
			res := callHub(t, procs[0].ts, "GET", "/devices/multi-edge/modules/mod1", "", nil)
			return res.status == 200 && strings.Contains(string(res.body), `"connectionState":"Connected"`)
		}) {
			t.Fatalf("module mod1 is not recorded as connected after %v", hubWait)
		}
		go func() {
			done <- callHub(t, procs[0].ts, "POST", "/twins/multi-edge/modules/mod1/methods", `{"methodName":"status","responseTimeoutInSeconds":30}`, jsonHdr)
		}()
		m = mc.next(t)
		_, rid, ok = strings.Cut(m.Topic(), "/?$rid=")
		if !ok || !strings.HasPrefix(m.Topic(), "$iothub/methods/POST/status/") {
			t.Fatalf("module method request on %s: %s %s", procs[1].name, m.Topic(), m.Payload())
		}
		mc.publish(t, "$iothub/methods/res/200/?$rid="+rid, 0, `{"up":true}`)
		select {
		case res := <-done:
			if res.status != 200 || string(res.body) != `{"status":200,"payload":{"up":true}}` {
				t.Fatalf("module method called on %s for a module on %s: %d %s", procs[0].name, procs[1].name, res.status, res.body)
			}
		case <-time.After(hubWait):
			t.Fatalf("no answer to the module method within %v", hubWait)
		}
		if res := callHub(t, procs[2].ts, "DELETE", "/devices/multi-edge/modules/mod1", "", nil); res.status != 204 {
			t.Fatalf("DELETE module: %d %s", res.status, res.body)
		}
		if !multiWaitFor(func() bool { return !mc.IsConnectionOpen() }) {
			t.Fatalf("module mod1, deleted through %s, is still connected to %s after %v", procs[2].name, procs[1].name, hubWait)
		}
		if res := callHub(t, procs[2].ts, "DELETE", "/devices/multi-edge", "", nil); res.status != 204 { // no registration record: part c counts
			t.Fatalf("DELETE /devices/multi-edge: %d %s", res.status, res.body)
		}

		// A device disabled through instance 0 is dropped by instance 2.
		key2 := deviceKey(t, group, other)
		c2, rc := connectHub(t, procs[2].ts, hubHost, other, key2)
		if rc != 0 {
			t.Fatalf("CONNACK %d for %s on %s", rc, other, procs[2].name)
		}
		d, err := hubOf(0).GetDevice(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		d.Status = "disabled"
		if _, err := hubOf(0).UpdateDevice(ctx, d, "*"); err != nil {
			t.Fatal(err)
		}
		if !multiWaitFor(func() bool { return !c2.IsConnectionOpen() }) {
			t.Fatalf("%s, disabled through %s, is still connected to %s after %v", other, procs[0].name, procs[2].name, hubWait)
		}
		d.Status = "enabled"
		if _, err := hubOf(0).UpdateDevice(ctx, d, "*"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("c kill -9 mid-load and restart", func(t *testing.T) {
		const victim = multiInstances - 1
		const onVictim, onSurvivor = "multi-a-0002", "multi-a-0003"
		hubHost, keyV := ep0.HubHostName, deviceKey(t, group, onVictim)
		cv, rc := connectHub(t, procs[victim].ts, hubHost, onVictim, keyV)
		if rc != 0 {
			t.Fatalf("CONNACK %d", rc)
		}
		keyS := deviceKey(t, group, onSurvivor)
		cs, rc := connectHub(t, procs[0].ts, hubHost, onSurvivor, keyS)
		if rc != 0 {
			t.Fatalf("CONNACK %d", rc)
		}
		cs.subscribe(t, "$iothub/twin/PATCH/properties/desired/#")

		ids := make([]string, multiDevicesC)
		for i := range ids {
			ids[i] = fmt.Sprintf("multi-c-%04d", i)
		}
		before := load.ackN.Load()
		killed := make(chan error, 1)
		go func() {
			// Kill as soon as multiKillAfter registrations of this part
			// were acknowledged: others are in flight on every instance.
			for load.ackN.Load()-before < multiKillAfter && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			err := procs[victim].kill()
			clientsMu.Lock()
			clients[victim] = nil
			clientsMu.Unlock()
			killed <- err
		}()
		load.spread(ctx, ids)
		if err := <-killed; err != nil {
			t.Fatal(err)
		}
		load.mu.Lock()
		failed := load.failed
		load.mu.Unlock()
		t.Logf("part c: %d registrations acknowledged (the kill came after %d), %d attempts failed in all and were retried on another instance", load.ackN.Load()-before, multiKillAfter, failed)

		if !multiWaitFor(func() bool { return !cv.IsConnectionOpen() }) {
			t.Fatalf("the device on the killed instance still looks connected after %v", hubWait)
		}
		// A C2D message sent while the device's instance is down waits
		// in the store for it.
		if _, err := hubOf(0).SendCloudMessage(ctx, onVictim, hubservice.CloudMessage{Body: []byte("while down")}); err != nil {
			t.Fatal(err)
		}
		if err := procs[victim].start(); err != nil {
			t.Fatal(err)
		}
		setClient(victim)
		if procs[victim].ts.ep.IDScope != ep0.IDScope {
			t.Fatalf("restarted instance has ID scope %s, want %s", procs[victim].ts.ep.IDScope, ep0.IDScope)
		}
		// The device reconnects to the restarted instance (new port).
		cv2, rc := connectHub(t, procs[victim].ts, hubHost, onVictim, keyV)
		if rc != 0 {
			t.Fatalf("CONNACK %d on reconnect to the restarted instance", rc)
		}
		cv2.subscribe(t, "$iothub/twin/PATCH/properties/desired/#", "devices/"+onVictim+"/messages/devicebound/#", "$iothub/methods/POST/#")
		if m := cv2.next(t); string(m.Payload()) != "while down" {
			t.Fatalf("C2D message sent while the instance was down: %s %q", m.Topic(), m.Payload())
		}
		// Changes cross in both directions with the restarted instance.
		if _, err := hubOf(0).PatchTwin(ctx, onVictim, hubservice.TwinUpdate{Desired: json.RawMessage(`{"after":"restart"}`)}, ""); err != nil {
			t.Fatal(err)
		}
		if m := cv2.next(t); !strings.Contains(string(m.Payload()), `"after":"restart"`) {
			t.Fatalf("desired patch on the restarted instance: %s %s", m.Topic(), m.Payload())
		}
		if _, err := hubOf(victim).PatchTwin(ctx, onSurvivor, hubservice.TwinUpdate{Desired: json.RawMessage(`{"from":"restarted"}`)}, ""); err != nil {
			t.Fatal(err)
		}
		if m := cs.next(t); !strings.Contains(string(m.Payload()), `"from":"restarted"`) {
			t.Fatalf("desired patch from the restarted instance: %s %s", m.Topic(), m.Payload())
		}
		// A direct method called through a survivor reaches the device on
		// the restarted instance.
		if !multiWaitFor(func() bool {
			d, err := hubOf(0).GetDevice(ctx, onVictim)
			return err == nil && d.ConnectionState == "Connected"
		}) {
			t.Fatalf("%s is not recorded as connected after %v", onVictim, hubWait)
		}
		done := make(chan hubCall, 1)
		go func() {
			done <- callHub(t, procs[0].ts, "POST", "/twins/"+onVictim+"/methods", `{"methodName":"ping","responseTimeoutInSeconds":30}`,
				map[string]string{"Content-Type": "application/json"})
		}()
		m := cv2.next(t)
		_, rid, ok := strings.Cut(m.Topic(), "/?$rid=")
		if !ok || !strings.HasPrefix(m.Topic(), "$iothub/methods/POST/ping/") {
			t.Fatalf("method request on the restarted instance: %s %s", m.Topic(), m.Payload())
		}
		cv2.publish(t, "$iothub/methods/res/200/?$rid="+rid, 0, `"pong"`)
		select {
		case res := <-done:
			if res.status != 200 || string(res.body) != `{"status":200,"payload":"pong"}` {
				t.Fatalf("method for the device on the restarted instance: %d %s", res.status, res.body)
			}
		case <-time.After(hubWait):
			t.Fatalf("no answer to the method within %v", hubWait)
		}
		checkRegistrations(ctx, t, procs[victim].ts.svc, hubOf(victim), "multi-group", load, "c")
	})
}

// deviceKey returns the derived key of a group device.
func deviceKey(t *testing.T, group *enroll.EnrollmentGroup, id string) string {
	t.Helper()
	key, err := sas.DeriveKey(group.Attestation.SymmetricKey.PrimaryKey, id)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// multiWaitFor polls cond every 20ms for up to hubWait.
func multiWaitFor(cond func() bool) bool {
	deadline := time.Now().Add(hubWait)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// checkRegistrations checks, through one instance's service APIs, that
// every acknowledged registration has its record (assigned, same device)
// and its device identity, once each, and logs the counts.
func checkRegistrations(ctx context.Context, t *testing.T, svc *dpsservice.Client, hub *hubservice.Client, group string, load *regLoad, part string) {
	t.Helper()
	recs, err := svc.QueryGroupRegistrations(ctx, group, 500)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := hub.ListDevices(ctx, hubservice.MaxListDevices)
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]*enroll.RegistrationStateView{}
	dupRecords := 0
	for _, r := range recs {
		id := strings.ToLower(r.RegistrationID)
		if _, ok := records[id]; ok {
			dupRecords++
		}
		records[id] = r
	}
	identities := map[string]int{}
	dupIdentities := 0
	for _, d := range devs {
		identities[d.DeviceID]++
		if identities[d.DeviceID] == 2 {
			dupIdentities++
		}
	}
	load.mu.Lock()
	defer load.mu.Unlock()
	found, missing := 0, 0
	for id, dev := range load.acked {
		r, ok := records[id]
		switch {
		case !ok:
			missing++
			t.Errorf("acknowledged registration %s (device %s) has no record", id, dev)
		case r.Status != "assigned" || r.DeviceID != dev:
			t.Errorf("record of %s: status %q device %q; acknowledged as device %q", id, r.Status, r.DeviceID, dev)
		case identities[dev] != 1:
			t.Errorf("acknowledged device %s has %d identities", dev, identities[dev])
		default:
			found++
		}
	}
	t.Logf("part %s: acknowledged %d, found %d (record and identity), missing %d, duplicated records %d, duplicated identities %d; %d records and %d identities in all; %d failed attempts retried, %d devices unregistered",
		part, len(load.acked), found, missing, dupRecords, dupIdentities, len(recs), len(devs), load.failed, len(load.lost))
	if dupRecords > 0 || dupIdentities > 0 {
		t.Errorf("duplicates: %d records, %d identities", dupRecords, dupIdentities)
	}
	if len(devs) != len(records) {
		t.Errorf("%d identities for %d registration records", len(devs), len(records))
	}
	if len(load.lost) > 0 {
		t.Errorf("%d devices registered on no instance: %v; samples %v", len(load.lost), load.lost[:min(5, len(load.lost))], load.samples)
	}
	if len(load.samples) > 0 {
		t.Logf("failure samples: %v", load.samples)
	}
}

// tailString returns the last n bytes of s.
func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
