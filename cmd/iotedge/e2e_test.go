package main

// End-to-end tests: `muster serve` and `iotedge daemon` run as real
// processes on loopback; the device is set up with the CLIs as an operator
// would (muster enrollment-group, muster key derive, iotedge init), and a
// deployment runs this test binary as process modules (see TestMain).

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/edge/iothub"
	"github.com/muster-iot/muster/internal/edge/provisioning"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/telemetry"
)

// Bounds of the end-to-end harness; none is an assertion on speed.
const (
	e2eBuildTimeout = 5 * time.Minute
	e2eStartTimeout = time.Minute
	e2eStopTimeout  = 30 * time.Second
	e2eCLITimeout   = 2 * time.Minute
	// e2eWait bounds every wait for a state (first module restart comes
	// after the 10 s back-off; a reprovisioning pauses about 10 s).
	e2eWait = 3 * time.Minute
	// e2ePoll is the pause between two looks at a state.
	e2ePoll = 250 * time.Millisecond
)

// Environment of the test binary run as a module.
const (
	moduleModeEnv = "MUSTER_E2E_MODULE"
	moduleMarkEnv = "MUSTER_E2E_MARK"
	// moduleSender sends a message on output1 every second.
	moduleSender = "sender"
	// moduleCrasher exits with crashExitCode shortly after starting.
	moduleCrasher = "crasher"
	crashExitCode = 3
	// moduleLifetime bounds a test module's run, so that none outlives a
	// failed test.
	moduleLifetime = 10 * time.Minute
)

// TestMain runs the test binary as a deployed module when the deployment's
// env asks it to.
func TestMain(m *testing.M) {
	switch os.Getenv(moduleModeEnv) {
	case moduleSender:
		os.Exit(runSenderModule())
	case moduleCrasher:
		fmt.Println("crasher: starting, then exiting with", crashExitCode)
		time.Sleep(500 * time.Millisecond)
		os.Exit(crashExitCode)
	}
	os.Exit(m.Run())
}

// runSenderModule is a module as the Azure SDKs' ModuleClient.fromEnvironment
// sees the runtime: it connects to the edge hub with EdgeHubConnectionString
// (GatewayHostName is the edge hub) trusting EdgeModuleCACertificateFile,
// reads its twin through the edge hub, and sends messages on output1 with
// the mark and the twin outcome as properties.
func runSenderModule() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "sender: "+format+"\n", args...)
		return 2
	}
	cs, err := sas.ParseConnectionString(os.Getenv("EdgeHubConnectionString"))
	if err != nil {
		return fail("EdgeHubConnectionString: %v", err)
	}
	key, err := sas.DecodeKey(cs.SharedAccessKey)
	if err != nil {
		return fail("SharedAccessKey: %v", err)
	}
	caPEM, err := os.ReadFile(os.Getenv("EdgeModuleCACertificateFile"))
	if err != nil {
		return fail("EdgeModuleCACertificateFile: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fail("EdgeModuleCACertificateFile holds no certificate")
	}
	gw := cs.GatewayHostName
	if _, _, err := net.SplitHostPort(gw); err != nil {
		gw = net.JoinHostPort(gw, "8883")
	}
	connected := make(chan struct{}, 1)
	cli, err := iothub.New(iothub.Options{
		Identity: iothub.Identity{Hub: cs.HostName, DeviceID: cs.DeviceID, ModuleID: cs.ModuleID, Key: key},
		Addr:     gw, RootCAs: roots, ClientType: "muster-e2e-module",
		OnConnect: func(context.Context) {
			select {
			case connected <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		return fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), moduleLifetime)
	defer cancel()
	go func() { _ = cli.Run(ctx) }()
	for seq := 1; ctx.Err() == nil; seq++ {
		select {
		case <-connected:
		case <-time.After(time.Second):
		case <-ctx.Done():
			return 0
		}
		twin := "ok"
		if _, err := cli.GetTwin(ctx); err != nil {
			twin = "error: " + err.Error()
		}
		bag := telemetry.EncodeBag(
			map[string]string{telemetry.PropOutputName: "output1", telemetry.PropContentType: "application/json", telemetry.PropContentEncoding: "utf-8"},
			map[string]string{"mark": os.Getenv(moduleMarkEnv), "twin": twin})
		body := fmt.Sprintf(`{"seq":%d}`, seq)
		if err := cli.SendEvent(ctx, bag, []byte(body)); err != nil {
			fmt.Fprintln(os.Stderr, "sender: send:", err)
			continue
		}
		fmt.Println("sender: sent", seq, "twin", twin)
	}
	return 0
}

// e2e is one test's servers, binaries and directories.
type e2e struct {
	t       *testing.T
	dir     string
	muster  string
	iotedge string
	data    string
	ep      instance.Endpoints
}

// buildBinaries builds cmd/muster and cmd/iotedge into dir.
func buildBinaries(t *testing.T, dir string) (muster, iotedge string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eBuildTimeout)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	exe := func(name string) string {
		p := filepath.Join(dir, name)
		if filepath.Separator == '\\' {
			p += ".exe"
		}
		return p
	}
	muster, iotedge = exe("muster"), exe("iotedge")
	for pkg, out := range map[string]string{"./cmd/muster": muster, "./cmd/iotedge": iotedge} {
		build := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		build.Dir = root
		if b, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return muster, iotedge
}

// newE2E builds the binaries into a test directory and starts `muster
// serve` there.
func newE2E(t *testing.T) *e2e {
	t.Helper()
	dir := t.TempDir()
	muster, iotedge := buildBinaries(t, dir)
	e := startMuster(t, dir, muster)
	e.iotedge = iotedge
	return e
}

// cleanEnv is the environment without MUSTER_* and IOTEDGE_* settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MUSTER_") && !strings.HasPrefix(kv, "IOTEDGE_") {
			env = append(env, kv)
		}
	}
	return env
}

// stopProcess interrupts a process and kills it when it has not exited
// within e2eStopTimeout.
func stopProcess(t *testing.T, p *os.Process, exited <-chan error, what string) {
	t.Helper()
	if err := p.Signal(os.Interrupt); err != nil {
		_ = p.Kill()
	}
	timer := time.NewTimer(e2eStopTimeout)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		t.Errorf("%s did not stop within %v; killing it", what, e2eStopTimeout)
		_ = p.Kill()
		<-exited
	}
}

// startMuster runs `muster serve` on kernel-chosen loopback ports and waits
// (bounded) for its endpoints.json.
func startMuster(t *testing.T, dir, muster string) *e2e {
	t.Helper()
	e := &e2e{t: t, dir: dir, muster: muster, data: filepath.Join(dir, "muster-data")}
	logFile, err := os.Create(filepath.Join(dir, "muster-serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(muster, "serve", "--data-dir", e.data, "--https-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--hostname", "localhost")
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start muster serve: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	t.Cleanup(func() {
		stopProcess(t, cmd.Process, exited, "muster serve")
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("muster serve log (tail):\n%s", tail(string(b), 60))
		}
	})
	deadline := time.Now().Add(e2eStartTimeout)
	for {
		if ep, err := instance.ReadEndpoints(e.data); err == nil {
			e.ep = *ep
			return e
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logFile.Name())
			t.Fatalf("muster serve exited: %v\n%s", err, b)
		case <-time.After(e2ePoll):
		}
		if time.Now().After(deadline) {
			t.Fatalf("muster serve wrote no endpoints.json within %v", e2eStartTimeout)
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run runs a binary with a bounded time and returns its standard output.
func (e *e2e) run(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), e2eCLITimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// musterCLI runs a muster command against the test server.
func (e *e2e) musterCLI(args ...string) string {
	e.t.Helper()
	out, err := e.run(e.muster, append([]string{"--data-dir", e.data}, args...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// musterJSON runs a muster command with -o json and decodes its output.
func (e *e2e) musterJSON(v any, args ...string) {
	e.t.Helper()
	out := e.musterCLI(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("muster %s: decode %q: %v", strings.Join(args, " "), out, err)
	}
}

// eventually polls f until it returns nil, failing the test with its last
// error when e2eWait passes.
func (e *e2e) eventually(what string, f func() error) {
	e.t.Helper()
	deadline := time.Now().Add(e2eWait)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not within %v: %v", what, e2eWait, err)
		}
		time.Sleep(e2ePoll)
	}
}

// port returns the port of a host:port address.
func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return p
}

// initFlags are the iotedge init flags every device of a test shares: the
// server's endpoint, trust bundle and hub ports, a private homedir and a
// free edge hub port.
func (e *e2e) initFlags(name string) (configFile string, flags []string) {
	home := filepath.Join(e.dir, name+"-home")
	configFile = filepath.Join(e.dir, name+"-config.toml")
	return configFile, []string{
		"--scope-id", e.ep.IDScope, "--global-endpoint", e.ep.DPSDeviceEndpoint, "--trust-bundle", e.ep.CACertFile,
		"--iothub-mqtt-port", port(e.t, e.ep.MQTTAddr), "--iothub-https-port", port(e.t, e.ep.HTTPSAddr),
		"--edge-hub-address", "127.0.0.1:0", "--homedir", home, "--config-file", configFile,
	}
}

// daemonProc is a running `iotedge daemon`.
type daemonProc struct {
	cmd     *exec.Cmd
	exited  chan error
	logPath string
	stopped bool
}

// startDaemon runs `iotedge daemon -c configFile`; a cleanup stops it.
func (e *e2e) startDaemon(configFile string) *daemonProc {
	e.t.Helper()
	d := &daemonProc{exited: make(chan error, 1), logPath: filepath.Join(e.dir, filepath.Base(configFile)+fmt.Sprintf(".daemon-%d.log", time.Now().UnixNano()))}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	d.cmd = exec.Command(e.iotedge, "daemon", "-c", configFile)
	d.cmd.Env = cleanEnv()
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	if err := d.cmd.Start(); err != nil {
		e.t.Fatalf("start iotedge daemon: %v", err)
	}
	go func() { d.exited <- d.cmd.Wait(); logFile.Close() }()
	e.t.Cleanup(func() {
		d.stop(e.t)
		if e.t.Failed() {
			b, _ := os.ReadFile(d.logPath)
			e.t.Logf("iotedge daemon log %s (tail):\n%s", d.logPath, tail(string(b), 80))
		}
	})
	return d
}

// stop ends the daemon (once).
func (d *daemonProc) stop(t *testing.T) {
	if d.stopped {
		return
	}
	d.stopped = true
	stopProcess(t, d.cmd.Process, d.exited, "iotedge daemon")
}

// listRows runs `iotedge list` and returns NAME → STATUS.
func (e *e2e) listRows(configFile string) (map[string]string, string, error) {
	out, err := e.run(e.iotedge, "list", "-c", configFile)
	if err != nil {
		return nil, out, err
	}
	rows := map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if i == 0 {
			if len(f) != 4 || f[0] != "NAME" || f[1] != "STATUS" || f[2] != "DESCRIPTION" || f[3] != "Config" {
				return nil, out, fmt.Errorf("iotedge list header %q is not NAME STATUS DESCRIPTION Config", line)
			}
			continue
		}
		if len(f) >= 2 {
			rows[f[0]] = f[1]
		}
	}
	return rows, out, nil
}

// awaitRunning waits until `iotedge list` shows every named module running.
func (e *e2e) awaitRunning(configFile string, modules ...string) string {
	e.t.Helper()
	var last string
	e.eventually("iotedge list shows "+strings.Join(modules, ", ")+" running", func() error {
		rows, out, err := e.listRows(configFile)
		last = out
		if err != nil {
			return err
		}
		for _, m := range modules {
			if rows[m] != "running" {
				return fmt.Errorf("%s is %q in:\n%s", m, rows[m], out)
			}
		}
		return nil
	})
	return last
}

// awaitStatus waits until `iotedge system status` shows the daemon running,
// provisioned and connected, and returns the output.
func (e *e2e) awaitStatus(configFile, deviceID string) string {
	e.t.Helper()
	var last string
	e.eventually("iotedge system status shows the daemon running and connected", func() error {
		out, err := e.run(e.iotedge, "system", "status", "-c", configFile)
		last = out
		if err != nil {
			return err
		}
		for _, want := range []string{
			"    daemon                  Running (pid ",
			"    provisioning            Assigned to hub localhost as device " + deviceID + " (dps)",
			"    hub connection          Connected as " + deviceID,
			"    edge agent              Connected as " + deviceID + "/$edgeAgent",
		} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("no %q in:\n%s", want, out)
			}
		}
		return nil
	})
	return last
}

// registration is the part of a registration record the tests read.
type registration struct {
	RegistrationID string    `json:"registrationId"`
	DeviceID       string    `json:"deviceId"`
	AssignedHub    string    `json:"assignedHub"`
	Status         string    `json:"status"`
	LastUpdated    time.Time `json:"lastUpdatedDateTimeUtc"`
}

// assigned checks that a registration is assigned to device regID on the
// test hub and, for an enrollment group (group not empty), that the group
// lists it.
func (e *e2e) assigned(regID, group string) registration {
	e.t.Helper()
	var r registration
	e.musterJSON(&r, "registration", "show", regID)
	if r.Status != "assigned" || r.DeviceID != regID || r.AssignedHub != "localhost" {
		e.t.Fatalf("registration of %s: %+v", regID, r)
	}
	if group == "" {
		return r // an individual enrollment
	}
	var all []registration
	e.musterJSON(&all, "registration", "list", "--group", group)
	for _, x := range all {
		if x.RegistrationID == regID && x.Status == "assigned" {
			return r
		}
	}
	e.t.Fatalf("the registration records of group %s do not list %s as assigned: %+v", group, regID, all)
	return r
}

// initDevice runs `iotedge init` with the attestation flags and the shared
// flags of initFlags(name), checks that it succeeded and returns the
// config file.
func (e *e2e) initDevice(name string, attestation ...string) string {
	e.t.Helper()
	cfg, flags := e.initFlags(name)
	out, err := e.run(e.iotedge, append(append([]string{"init"}, attestation...), flags...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	if !strings.Contains(out, "IoT Edge has been configured successfully!") {
		e.t.Fatalf("iotedge init printed %q", out)
	}
	return cfg
}

// verifyDevice checks a freshly started device: `iotedge system status`
// shows the daemon running, provisioned and connected as regID, `iotedge
// list` shows edgeAgent and edgeHub running, the registration is assigned
// (and listed by the group, when not empty), and `iotedge check` passes.
// It logs the three outputs and returns the registration and the output
// of iotedge check.
func (e *e2e) verifyDevice(configFile, regID, group string) (registration, string) {
	e.t.Helper()
	status := e.awaitStatus(configFile, regID)
	list := e.awaitRunning(configFile, "edgeAgent", "edgeHub")
	reg := e.assigned(regID, group)
	check, err := e.run(e.iotedge, "check", "-c", configFile)
	if err != nil {
		e.t.Fatalf("iotedge check failed: %v", err)
	}
	for _, want := range []string{
		"configuration file is well-formed - OK",
		"identity credential is readable and valid - OK",
		"provisioning result is cached and matches the configuration - OK",
		"perform TLS handshake with DPS endpoint - OK",
		"perform TLS handshake with iothub MQTT port - OK",
	} {
		if !strings.Contains(check, want) {
			e.t.Errorf("iotedge check has no %q line:\n%s", want, check)
		}
	}
	e.t.Logf("iotedge system status:\n%s\niotedge list:\n%s\niotedge check:\n%s", status, list, check)
	return reg, check
}

// TestEndToEndSymmetricKeyIndividual provisions an edge device of an
// individual symmetric-key enrollment whose key the service generated.
func TestEndToEndSymmetricKeyIndividual(t *testing.T) {
	e := newE2E(t)
	iotedge := e.iotedge
	const regID = "edge-e2e-sym-individual-01"
	var en struct {
		Attestation struct {
			SymmetricKey struct {
				PrimaryKey string `json:"primaryKey"`
			} `json:"symmetricKey"`
		} `json:"attestation"`
	}
	e.musterJSON(&en, "enrollment", "create", regID, "--edge-enabled", "--initial-twin-tags", `{"site":"e2e-sym-individual"}`)
	if en.Attestation.SymmetricKey.PrimaryKey == "" {
		t.Fatal("muster enrollment create printed no primary key")
	}
	cfg := e.initDevice("sym-individual", "--dps-symmetric-key", "--registration-id", regID, "--symmetric-key", en.Attestation.SymmetricKey.PrimaryKey)
	d := e.startDaemon(cfg)
	reg, _ := e.verifyDevice(cfg, regID, "")

	// iotedge restart restarts a module; it comes back running.
	if out, err := e.run(iotedge, "restart", "edgeHub", "-c", cfg); err != nil {
		t.Fatal(err)
	} else if out != "Restarted edgeHub\n\n" {
		t.Errorf("iotedge restart printed %q", out)
	}
	e.awaitRunning(cfg, "edgeAgent", "edgeHub")

	// iotedge system reprovision registers again, to the same device.
	out, err := e.run(iotedge, "system", "reprovision", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Assigned to hub localhost as device " + regID + " (the same hub and device)."; !strings.Contains(out, want) {
		t.Errorf("iotedge system reprovision printed %q, want %q", out, want)
	}
	again := e.assigned(regID, "")
	if !again.LastUpdated.After(reg.LastUpdated) {
		t.Errorf("the registration record was not updated by the reprovisioning: %v → %v", reg.LastUpdated, again.LastUpdated)
	}
	e.awaitStatus(cfg, regID)
	e.awaitRunning(cfg, "edgeAgent", "edgeHub")

	e.seedChecklist(d, cfg, "sym-individual", regID, "", "e2e-sym-individual", again)
}

func TestEndToEndSymmetricKeyGroup(t *testing.T) {
	e := newE2E(t)
	const group, regID = "e2e-edge-fleet", "edge-e2e-sym-01"

	// The operator's path: a group with an initial twin tag, the device's
	// derived key, iotedge init, the daemon.
	var g struct {
		Attestation struct {
			SymmetricKey struct {
				PrimaryKey string `json:"primaryKey"`
			} `json:"symmetricKey"`
		} `json:"attestation"`
	}
	e.musterJSON(&g, "enrollment-group", "create", group, "--edge-enabled", "--initial-twin-tags", `{"site":"e2e-sym"}`)
	key := strings.TrimSpace(e.musterCLI("key", "derive", "--group-key", g.Attestation.SymmetricKey.PrimaryKey, "--registration-id", regID))
	cfg := e.initDevice("sym", "--dps-symmetric-key", "--registration-id", regID, "--symmetric-key", key)
	d := e.startDaemon(cfg)
	reg, _ := e.verifyDevice(cfg, regID, group)

	e.seedChecklist(d, cfg, "sym", regID, group, "e2e-sym", reg)
}

// seedChecklist runs the rest of the checklist on a provisioned,
// verified device whose enrollment set the initial twin tag site=site:
// a deployment targeting that tag makes `iotedge list` show edgeAgent,
// edgeHub and the deployed process modules running; the sender's output
// reaches $upstream (muster monitor); the crashing module is restarted per
// its policy and the service side sees its reported status; module and
// daemon logs are readable; a restart of the daemon does not register
// again; deleting the device in the hub makes the daemon register again
// (auto_reprovisioning_mode Dynamic) and the deployment runs again. name
// is the one given to initDevice.
func (e *e2e) seedChecklist(d *daemonProc, cfg, name, regID, group, site string, reg registration) {
	t := e.t
	t.Helper()
	dir, iotedge := e.dir, e.iotedge
	// A deployment targeting the enrollment's initial tag: this test
	// binary as two process modules, and a route of sender's outputs to
	// the hub.
	mark := fmt.Sprintf("%s-%d", site, time.Now().UnixNano())
	e.deploy(site, "tags.site='"+site+"'", mark, 10)
	list := e.awaitRunning(cfg, "edgeAgent", "edgeHub", moduleSender)
	t.Logf("iotedge list with the deployment:\n%s", list)

	// The module's output reaches $upstream.
	e.awaitOutput(regID, mark)

	// The crashing module is restarted per its policy, and the hub sees
	// its reported status.
	e.eventually("the crasher is restarted and reported", func() error {
		m, err := e.agentReported(regID)
		if err != nil {
			return err
		}
		c := m.Modules[moduleCrasher]
		if c.RestartCount < 1 || c.ExitCode != crashExitCode || m.LastDesiredStatus.Code != 200 {
			return fmt.Errorf("reported %+v, lastDesiredStatus %+v", c, m.LastDesiredStatus)
		}
		if s := m.Modules[moduleSender]; s.RuntimeStatus != "running" {
			return fmt.Errorf("sender reported %+v", s)
		}
		return nil
	})

	// The module logs reach `iotedge logs`, the daemon's `system logs`.
	e.eventually("iotedge logs sender shows what it printed", func() error {
		out, err := e.run(iotedge, "logs", moduleSender, "-c", cfg, "--tail", "5")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "sender: sent") {
			return fmt.Errorf("logs: %q", out)
		}
		return nil
	})
	if out, err := e.run(iotedge, "system", "logs", "-c", cfg); err != nil || !strings.Contains(out, `"msg":"deployment applied"`) {
		t.Errorf("iotedge system logs: %v\n%s", err, tail(out, 20))
	}

	// A restart of the daemon does not register again.
	cacheBefore, err := provisioning.LoadCache(filepath.Join(dir, name+"-home"))
	if err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	e.startDaemon(cfg)
	e.awaitStatus(cfg, regID)
	e.awaitRunning(cfg, "edgeAgent", "edgeHub", moduleSender)
	cacheAfter, err := provisioning.LoadCache(filepath.Join(dir, name+"-home"))
	if err != nil {
		t.Fatal(err)
	}
	if again := e.assigned(regID, group); !again.LastUpdated.Equal(reg.LastUpdated) || !cacheAfter.ProvisionedAt.Equal(cacheBefore.ProvisionedAt) {
		t.Errorf("the daemon registered again on restart: record %v → %v, cache %v → %v", reg.LastUpdated, again.LastUpdated, cacheBefore.ProvisionedAt, cacheAfter.ProvisionedAt)
	}

	// Deleting the device in the hub makes the daemon (Dynamic) register
	// again: the identity comes back and the deployment runs again.
	e.musterCLI("device", "delete", regID)
	e.eventually("the daemon registers again after its device was deleted", func() error {
		var r registration
		out, err := e.run(e.muster, "--data-dir", e.data, "registration", "show", regID, "-o", "json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return err
		}
		if !r.LastUpdated.After(reg.LastUpdated) || r.Status != "assigned" {
			return fmt.Errorf("registration %+v, last updated before %v", r, reg.LastUpdated)
		}
		return nil
	})
	e.awaitStatus(cfg, regID)
	e.awaitRunning(cfg, "edgeAgent", "edgeHub", moduleSender)
	mark2 := mark + "-after-reprovisioning"
	e.deploy(site+"-2", "tags.site='"+site+"'", mark2, 20) // the higher priority wins: the new mark
	e.awaitOutput(regID, mark2)
}

// deploy creates a base deployment of the two test modules, sender's
// outputs routed upstream.
func (e *e2e) deploy(id, target, mark string, priority int) {
	e.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	module := func(mode string) map[string]any {
		return map[string]any{
			"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always", "startupOrder": 1,
			"settings": map[string]any{"image": exe, "createOptions": `{"Cmd":["-test.run=^$"]}`},
			"env":      map[string]any{moduleModeEnv: map[string]string{"value": mode}, moduleMarkEnv: map[string]string{"value": mark}},
		}
	}
	manifest := map[string]any{"modulesContent": map[string]any{
		"$edgeAgent": map[string]any{"properties.desired": map[string]any{
			"schemaVersion": "1.1",
			"runtime":       map[string]any{"type": "docker", "settings": map[string]any{"minDockerVersion": "v1.25"}},
			"systemModules": map[string]any{
				"edgeAgent": map[string]any{"type": "docker", "settings": map[string]any{"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{}"}},
				"edgeHub": map[string]any{"type": "docker", "status": "running", "restartPolicy": "always", "startupOrder": 0,
					"settings": map[string]any{"image": "mcr.microsoft.com/azureiotedge-hub:1.5", "createOptions": "{}"}},
			},
			"modules": map[string]any{moduleSender: module(moduleSender), moduleCrasher: module(moduleCrasher)},
		}},
		"$edgeHub": map[string]any{"properties.desired": map[string]any{
			"schemaVersion":                "1.1",
			"routes":                       map[string]any{"senderToCloud": "FROM /messages/modules/" + moduleSender + "/outputs/* INTO $upstream"},
			"storeAndForwardConfiguration": map[string]any{"timeToLiveSecs": 7200},
		}},
	}}
	b, err := json.Marshal(manifest)
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.dir, id+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.musterCLI("deployment", "create", id, "--content", path, "--target-condition", target, "--priority", strconv.Itoa(priority))
}

// awaitOutput waits until the hub's built-in endpoint holds a message of
// the device's sender module with the mark, sent on output1, whose twin
// read through the edge hub worked.
func (e *e2e) awaitOutput(deviceID, mark string) {
	e.t.Helper()
	e.eventually("muster monitor sees the sender's output "+mark, func() error {
		out, err := e.run(e.muster, "--data-dir", e.data, "monitor", "--device", deviceID, "--module", moduleSender,
			"--from-start", "--timeout", "20s", "-o", "json")
		if err != nil && !strings.Contains(err.Error(), "exit status") {
			return err
		}
		var seen []string
		for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
			var m struct {
				SystemProperties map[string]string `json:"systemProperties"`
				Properties       map[string]string `json:"properties"`
				Body             string            `json:"body"`
			}
			if json.Unmarshal([]byte(line), &m) != nil {
				continue
			}
			if m.Properties["mark"] == mark {
				if m.SystemProperties[telemetry.PropOutputName] != "output1" || m.Properties["twin"] != "ok" {
					return fmt.Errorf("message with the mark but output %q, twin %q: %s", m.SystemProperties[telemetry.PropOutputName], m.Properties["twin"], line)
				}
				return nil
			}
			seen = append(seen, line)
		}
		return fmt.Errorf("no message with mark %s among %d: %s", mark, len(seen), tail(strings.Join(seen, "\n"), 3))
	})
}

// agentReport is the part of the $edgeAgent reported properties the tests
// read.
type agentReport struct {
	LastDesiredStatus struct {
		Code int `json:"code"`
	} `json:"lastDesiredStatus"`
	Modules map[string]struct {
		RuntimeStatus string `json:"runtimeStatus"`
		ExitCode      int    `json:"exitCode"`
		RestartCount  int    `json:"restartCount"`
	} `json:"modules"`
}

// agentReported reads the device's $edgeAgent reported properties through
// the hub's service API.
func (e *e2e) agentReported(deviceID string) (agentReport, error) {
	out, err := e.run(e.muster, "--data-dir", e.data, "twin", "show", deviceID, "--module", "$edgeAgent", "-o", "json")
	if err != nil {
		return agentReport{}, err
	}
	var tw struct {
		Properties struct {
			Reported agentReport `json:"reported"`
		} `json:"properties"`
	}
	if err := json.Unmarshal([]byte(out), &tw); err != nil {
		return agentReport{}, fmt.Errorf("decode the $edgeAgent twin: %w", err)
	}
	return tw.Properties.Reported, nil
}
