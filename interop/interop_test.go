package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/pki"
)

// Bounds of the harness. None is an assertion on speed: each only stops a
// hung step from stalling the whole test run.
const (
	buildTimeout    = 5 * time.Minute
	startTimeout    = 60 * time.Second
	nodeTimeout     = 10 * time.Minute
	stopTimeout     = 15 * time.Second
	nodeWaitDelay   = 10 * time.Second
	serverLogTail   = 256 << 10
	requireEnv      = "MUSTER_REQUIRE_INTEROP"
	sdkMarkerModule = "azure-iot-provisioning-device"
)

// endpoints is the part of the server's endpoints.json the harness checks
// before handing the file to the JS tests.
type endpoints struct {
	IDScope                    string `json:"idScope"`
	DPSDeviceEndpoint          string `json:"dpsDeviceEndpoint"`
	DPSServiceConnectionString string `json:"dpsServiceConnectionString"`
	HubHostName                string `json:"hubHostName"`
	HubConnectionString        string `json:"hubConnectionString"`
	CACertFile                 string `json:"caCertFile"`
	HTTPSAddr                  string `json:"httpsAddr"`
	MQTTAddr                   string `json:"mqttAddr"`
}

// parseEndpoints decodes endpoints.json and names every missing field.
func parseEndpoints(data []byte) (endpoints, error) {
	var ep endpoints
	if err := json.Unmarshal(data, &ep); err != nil {
		return ep, fmt.Errorf("decode endpoints.json: %w", err)
	}
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"idScope", ep.IDScope},
		{"dpsDeviceEndpoint", ep.DPSDeviceEndpoint},
		{"dpsServiceConnectionString", ep.DPSServiceConnectionString},
		{"hubHostName", ep.HubHostName},
		{"caCertFile", ep.CACertFile},
		{"httpsAddr", ep.HTTPSAddr},
		{"mqttAddr", ep.MQTTAddr},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return ep, fmt.Errorf("endpoints.json lacks %s", strings.Join(missing, ", "))
	}
	return ep, nil
}

func TestNodeSDK(t *testing.T) {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("get working directory: %v", err)
	}
	required := os.Getenv(requireEnv) == "1"
	if testing.Short() && !required {
		t.Skip("interop test skipped in -short mode (set " + requireEnv + "=1 to force it)")
	}
	unavailable := t.Skipf
	if required {
		unavailable = t.Fatalf
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", sdkMarkerModule, "package.json")); err != nil {
		unavailable("interop/node_modules is missing (%v): run `npm ci` in interop/ to install the pinned Azure IoT Node SDK", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable("node is not on PATH (%v): install Node.js 20 or later to run the interop test", err)
	}
	tests, err := filepath.Glob(filepath.Join(dir, "*.test.js"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no *.test.js files in %s (glob error: %v)", dir, err)
	}

	tmp := t.TempDir()
	bin := buildMuster(t, dir, tmp)
	certDir := filepath.Join(tmp, "certs")
	if err := writePKI(certDir); err != nil {
		t.Fatalf("generate test PKI: %v", err)
	}
	srv := startServer(t, bin, filepath.Join(tmp, "data"))
	t.Logf("muster serve: id scope %s, https %s, mqtt %s, hub %s", srv.ep.IDScope, srv.ep.HTTPSAddr, srv.ep.MQTTAddr, srv.ep.HubHostName)

	tapFile := filepath.Join(tmp, "results.tap")
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	args := []string{"--test", "--test-reporter=spec", "--test-reporter-destination=stdout",
		"--test-reporter=tap", "--test-reporter-destination=" + tapFile}
	for _, f := range tests {
		args = append(args, filepath.Base(f))
	}
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"MUSTER_ENDPOINTS="+srv.endpointsFile,
		"MUSTER_CERTS="+certDir,
		"NODE_EXTRA_CA_CERTS="+srv.ep.CACertFile,
	)
	out := &lineLogger{t: t, prefix: "node: "}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = nodeWaitDelay
	runErr := cmd.Run()
	out.Flush()

	tap, readErr := os.ReadFile(tapFile)
	if readErr != nil {
		t.Errorf("read node TAP results: %v", readErr)
	}
	res := parseTAP(tap)
	for _, p := range res.Points {
		status := "PASS"
		if !p.OK {
			status = "FAIL"
		}
		if p.Pending() {
			status += " (pending)"
		}
		t.Logf("scenario %s%s %s", strings.Repeat("  ", p.Depth), status, p.Name)
	}
	pending := res.pending()
	logPending(t, pending)
	fmt.Printf("interop: %d passed, %d failed\n", res.Pass, res.Fail+res.Cancelled)
	fmt.Printf("interop: %d/%d scenarios passed, %d pending (not counted; interop/lib/pending.js)\n", res.Pass, res.Pass+res.Fail+res.Cancelled, len(pending))
	t.Logf("interop: %d passed, %d failed (%d cancelled, %d skipped, %d todo, %d pending)", res.Pass, res.Fail+res.Cancelled, res.Cancelled, res.Skipped, res.Todo, len(pending))
	switch {
	case ctx.Err() != nil:
		t.Errorf("node --test did not finish within %v", nodeTimeout)
	case runErr != nil:
		t.Errorf("node --test failed (%v): %d of %d tests failed: %s", runErr, res.Fail+res.Cancelled, res.Tests, strings.Join(res.failedLeaves(), "; "))
	case !res.Summary:
		t.Errorf("node --test exited 0 but its TAP output has no summary")
	case res.Pass == 0:
		t.Errorf("node --test ran no passing test")
	}
}

// logPending reports the pending scenarios: those that ran with their
// outcome, and those that pass now, whose entries can be deleted so that
// they count.
func logPending(t *testing.T, pending []pendingScenario) {
	t.Helper()
	var passing []string
	for _, p := range pending {
		outcome := "not run"
		switch {
		case p.OK:
			outcome = "passes"
			passing = append(passing, p.Name)
		case p.Ran:
			outcome = "fails"
		}
		t.Logf("pending scenario %s (%s): %s", p.Name, outcome, p.Reason)
	}
	if len(passing) > 0 {
		t.Logf("%d pending scenarios pass now; delete their entries in interop/lib/pending.js so they count: %s", len(passing), strings.Join(passing, "; "))
	}
}

// buildMuster compiles cmd/muster into tmp with the go command from PATH.
func buildMuster(t *testing.T, dir, tmp string) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, goCmd, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if !samePath(filepath.Join(root, "interop"), dir) {
		t.Fatalf("module root %s (from go env GOMOD) does not contain this package %s", root, dir)
	}
	bin := filepath.Join(tmp, "muster")
	if filepath.Separator == '\\' {
		bin += ".exe"
	}
	build := exec.CommandContext(ctx, goCmd, "build", "-o", bin, "./cmd/muster")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/muster: %v\n%s", err, out)
	}
	return bin
}

// samePath reports whether a and b name the same directory, resolving
// symbolic links (a checkout reached through a link has two spellings).
func samePath(a, b string) bool {
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}

// writePKI generates every certificate and key the JS tests read, following
// the file convention documented in doc.go.
func writePKI(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	write := func(name string, data []byte) error {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		return nil
	}
	writeDevice := func(id string, dev *pki.Issued, chain []byte) error {
		key, err := dev.KeyPEM()
		if err != nil {
			return err
		}
		if err := write(id+".cert.pem", append(dev.CertPEM(), chain...)); err != nil {
			return err
		}
		return write(id+".key.pem", key)
	}

	svcCA, err := pki.NewRoot("svc-ca")
	if err != nil {
		return fmt.Errorf("issue svc-ca: %w", err)
	}
	if err := write("svc-ca.pem", svcCA.CertPEM()); err != nil {
		return err
	}
	// The intgrp chain uses RSA device keys so both key families cross the
	// wire. The hubgrp chain belongs to the hub device tests alone, so that
	// no other test's enrollment can claim its devices.
	chains := []struct {
		name    string
		devType pki.KeyType
	}{
		{"rootgrp", pki.KeyP256},
		{"intgrp", pki.KeyRSA2048},
		{"unknown", pki.KeyP256},
		{"hubgrp", pki.KeyP256},
	}
	// X.509 device certificates exist once per device transport the JS
	// tests use.
	transports := []string{"http", "mqtt"}
	for _, c := range chains {
		root, err := pki.NewRoot(c.name + "-root")
		if err != nil {
			return fmt.Errorf("issue %s-root: %w", c.name, err)
		}
		inter, err := root.NewIntermediate(c.name + "-int")
		if err != nil {
			return fmt.Errorf("issue %s-int: %w", c.name, err)
		}
		if err := write(c.name+"-root.pem", root.CertPEM()); err != nil {
			return err
		}
		if err := write(c.name+"-int.pem", inter.CertPEM()); err != nil {
			return err
		}
		for _, tr := range transports {
			id := "x509-" + c.name + "-" + tr
			dev, err := inter.NewDevice(id, pki.WithKeyType(c.devType))
			if err != nil {
				return fmt.Errorf("issue %s: %w", id, err)
			}
			if err := writeDevice(id, dev, inter.CertPEM()); err != nil {
				return err
			}
		}
	}
	// x509-hubself is the self-signed device the hub service tests register
	// through the Registry by thumbprint (no enrollment).
	selfSigned := []string{"x509-hubself"}
	for _, tr := range transports {
		selfSigned = append(selfSigned, "x509-self-"+tr)
	}
	for _, id := range selfSigned {
		dev, err := pki.NewSelfSignedDevice(id)
		if err != nil {
			return fmt.Errorf("issue %s: %w", id, err)
		}
		if err := writeDevice(id, dev, nil); err != nil {
			return err
		}
	}
	return nil
}

// server is a running `muster serve` subprocess.
type server struct {
	ep            endpoints
	endpointsFile string
}

// startServer runs `muster serve` on kernel-chosen loopback ports with a
// fresh data directory and waits (bounded) for its endpoints.json. A cleanup
// stops it with SIGTERM (kill after stopTimeout) and, if the test failed,
// logs the tail of its stderr.
func startServer(t *testing.T, bin, dataDir string) *server {
	t.Helper()
	stderrPath := filepath.Join(filepath.Dir(dataDir), "muster.stderr")
	stderr, err := os.Create(stderrPath)
	if err != nil {
		t.Fatalf("create server log: %v", err)
	}
	stdout := &syncBuffer{}
	cmd := exec.Command(bin, "serve", "--data-dir", dataDir,
		"--https-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
		"--hostname", "localhost", "--log-level", "debug")
	cmd.Env = serverEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		stderr.Close()
		t.Fatalf("start muster serve: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	t.Cleanup(func() {
		stopProcess(t, cmd, exited)
		stderr.Close()
		if t.Failed() {
			t.Logf("muster serve stdout:\n%s", stdout.String())
			t.Logf("muster serve stderr (last %d KiB):\n%s", serverLogTail>>10, tail(stderrPath, serverLogTail))
		}
	})

	file := filepath.Join(dataDir, "endpoints.json")
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case err := <-exited:
			exited <- err // let the cleanup see the exit too
			t.Fatalf("muster serve exited before it was ready: %v", err)
		case <-deadline.C:
			t.Fatalf("muster serve did not write a complete %s within %v (last error: %v)", file, startTimeout, lastErr)
		case <-tick.C:
			data, err := os.ReadFile(file)
			if err != nil {
				lastErr = err
				continue
			}
			ep, err := parseEndpoints(data)
			if err != nil {
				lastErr = err
				continue
			}
			return &server{ep: ep, endpointsFile: file}
		}
	}
}

// serverEnv drops MUSTER_* variables so a developer's settings cannot
// redirect the test server's store, addresses or hostnames.
func serverEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MUSTER_") {
			out = append(out, kv)
		}
	}
	return out
}

// stopProcess sends SIGTERM (where the platform supports it), waits up to
// stopTimeout for the exit reported on exited, then kills.
func stopProcess(t *testing.T, cmd *exec.Cmd, exited chan error) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		if kerr := cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
			t.Errorf("stop muster serve: signal: %v; kill: %v", err, kerr)
		}
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case err := <-exited:
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			t.Errorf("wait for muster serve: %v", err)
		}
	case <-timer.C:
		t.Errorf("muster serve did not exit within %v of SIGTERM; killing it", stopTimeout)
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("kill muster serve: %v", err)
		}
		<-exited
	}
}

// tail returns the last n bytes of a file, or a note why it cannot.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(open %s: %v)", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(stat %s: %v)", path, err)
	}
	if st.Size() > n {
		if _, err := f.Seek(st.Size()-n, io.SeekStart); err != nil {
			return fmt.Sprintf("(seek %s: %v)", path, err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", path, err)
	}
	return string(b)
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lineLogger forwards complete lines to t.Log as they arrive.
type lineLogger struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(l.prefix + strings.TrimRight(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
}

// Flush logs a trailing partial line.
func (l *lineLogger) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(l.prefix + string(l.buf))
		l.buf = nil
	}
}

// tapPoint is one test point of node's TAP output.
type tapPoint struct {
	Depth     int    // nesting level (4 spaces per level in node's TAP)
	OK        bool   // "ok" rather than "not ok"
	Name      string // test or suite name
	Directive string // "SKIP", "TODO" or "" (node does not count these as pass or fail)
	Reason    string // the directive's text
}

// pendingPrefix starts the directive text of the scenarios listed in
// interop/lib/pending.js (server features Muster does not have yet).
const pendingPrefix = "PENDING:"

// Pending reports whether the point is a scenario of the pending list.
func (p tapPoint) Pending() bool {
	return p.Directive != "" && strings.HasPrefix(p.Reason, pendingPrefix)
}

// tapResult is node's TAP output reduced to the test points and the
// summary counts.
type tapResult struct {
	Points                                      []tapPoint
	Tests, Pass, Fail, Cancelled, Skipped, Todo int
	Summary                                     bool // a "# pass" line was seen
}

// parseTAP reads node --test TAP output. Unknown lines are ignored; the
// summary counts come from the top-level "# pass N" style lines.
func parseTAP(data []byte) tapResult {
	tapPointRE := regexp.MustCompile(`^( *)(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b(.*))?$`)
	tapSummaryRE := regexp.MustCompile(`^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$`)
	unescape := strings.NewReplacer(`\\`, `\`, `\#`, `#`)
	var r tapResult
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := tapPointRE.FindStringSubmatch(line); m != nil {
			r.Points = append(r.Points, tapPoint{Depth: len(m[1]) / 4, OK: m[2] == "ok", Name: unescape.Replace(m[3]),
				Directive: m[4], Reason: strings.TrimSpace(unescape.Replace(m[5]))})
			continue
		}
		m := tapSummaryRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, err := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		switch m[1] {
		case "tests":
			r.Tests = n
		case "pass":
			r.Pass, r.Summary = n, true
		case "fail":
			r.Fail = n
		case "cancelled":
			r.Cancelled = n
		case "skipped":
			r.Skipped = n
		case "todo":
			r.Todo = n
		}
	}
	return r
}

// failedLeaves names the failed test points that have no failed child: the
// scenarios themselves rather than their enclosing suites, each qualified
// by its suites. A failed TODO point is not a failure (node counts it as
// todo), so it is left out. Node prints a suite's point after its
// children, so a failed point is a leaf unless the point just before it is
// deeper.
func (r tapResult) failedLeaves() []string {
	var out []string
	for i, p := range r.Points {
		if p.OK || p.Directive == "TODO" || (i > 0 && r.Points[i-1].Depth > p.Depth) {
			continue
		}
		out = append(out, r.qualified(i))
	}
	return out
}

// qualified names point i with its enclosing suites ("suite > test"); a
// point's parent is the next point one level up.
func (r tapResult) qualified(i int) string {
	path := []string{r.Points[i].Name}
	depth := r.Points[i].Depth
	for j := i + 1; j < len(r.Points) && depth > 0; j++ {
		if r.Points[j].Depth == depth-1 {
			path = append([]string{r.Points[j].Name}, path...)
			depth--
		}
	}
	return strings.Join(path, " > ")
}

// pendingScenario is a scenario of interop/lib/pending.js as it ran.
type pendingScenario struct {
	Name   string // qualified by its suites
	Ran    bool   // run as TODO rather than skipped
	OK     bool   // it ran and passed: its entry can go
	Reason string
}

// pending lists the scenarios of the pending list.
func (r tapResult) pending() []pendingScenario {
	var out []pendingScenario
	for i, p := range r.Points {
		if p.Pending() {
			ran := p.Directive == "TODO"
			out = append(out, pendingScenario{Name: r.qualified(i), Ran: ran, OK: ran && p.OK,
				Reason: strings.TrimSpace(strings.TrimPrefix(p.Reason, pendingPrefix))})
		}
	}
	return out
}

func TestParseTAP(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    tapResult
		leaves  []string
		pending []pendingScenario
	}{
		{
			name: "empty",
			in:   "",
			want: tapResult{},
		},
		{
			name: "suite with a failing child",
			in: "TAP version 13\n" +
				"# Subtest: device registration over Http\n" +
				"    # Subtest: symmetric-key group device\n" +
				"    ok 1 - \\#Create symmetric-key group device\n" +
				"      ---\n      duration_ms: 12.5\n      ...\n" +
				"    not ok 2 - X.509 group device\n" +
				"      ---\n      error: 'assignedHub'\n      ...\n" +
				"    1..2\n" +
				"not ok 1 - device registration over Http\n" +
				"ok 2 - lone test # SKIP no server\n" +
				"1..2\n" +
				"# tests 3\n# suites 1\n# pass 1\n# fail 1\n# cancelled 0\n# skipped 1\n# todo 0\n# duration_ms 812.3\n",
			want: tapResult{
				Points: []tapPoint{
					{Depth: 1, OK: true, Name: "#Create symmetric-key group device"},
					{Depth: 1, OK: false, Name: "X.509 group device"},
					{Depth: 0, OK: false, Name: "device registration over Http"},
					{Depth: 0, OK: true, Name: "lone test", Directive: "SKIP", Reason: "no server"},
				},
				Tests: 3, Pass: 1, Fail: 1, Skipped: 1, Summary: true,
			},
			leaves: []string{"device registration over Http > X.509 group device"},
		},
		{
			name: "file that failed to load, CRLF line ends",
			in:   "not ok 1 - /x/device.test.js\r\n# tests 1\r\n# pass 0\r\n# fail 1\r\n# cancelled 2\r\n",
			want: tapResult{
				Points: []tapPoint{{Depth: 0, OK: false, Name: "/x/device.test.js"}},
				Tests:  1, Fail: 1, Cancelled: 2, Summary: true,
			},
			leaves: []string{"/x/device.test.js"},
		},
		{
			name: "failure two suites deep",
			in: "# Subtest: outer\n" +
				"    # Subtest: inner\n" +
				"        not ok 1 - leaf\n" +
				"        ok 2 - sibling\n" +
				"        1..2\n" +
				"    not ok 1 - inner\n" +
				"    ok 2 - other\n" +
				"not ok 1 - outer\n" +
				"# tests 3\n# pass 2\n# fail 1\n",
			want: tapResult{
				Points: []tapPoint{
					{Depth: 2, OK: false, Name: "leaf"},
					{Depth: 2, OK: true, Name: "sibling"},
					{Depth: 1, OK: false, Name: "inner"},
					{Depth: 1, OK: true, Name: "other"},
					{Depth: 0, OK: false, Name: "outer"},
				},
				Tests: 3, Pass: 2, Fail: 1, Summary: true,
			},
			leaves: []string{"outer > inner > leaf"},
		},
		{
			name: "pending scenarios run as todo or skipped",
			in: "# Subtest: hub\n" +
				"    ok 1 - counted\n" +
				"    not ok 2 - not there yet # TODO PENDING: no route \\# yet\n" +
				"    ok 3 - there now # TODO PENDING: landed\n" +
				"    ok 4 - never ends # SKIP PENDING: no AMQP (not run)\n" +
				"    ok 5 - plain skip # SKIP no node\n" +
				"ok 1 - hub\n" +
				"# tests 5\n# pass 1\n# fail 0\n# skipped 2\n# todo 2\n",
			want: tapResult{
				Points: []tapPoint{
					{Depth: 1, OK: true, Name: "counted"},
					{Depth: 1, OK: false, Name: "not there yet", Directive: "TODO", Reason: "PENDING: no route # yet"},
					{Depth: 1, OK: true, Name: "there now", Directive: "TODO", Reason: "PENDING: landed"},
					{Depth: 1, OK: true, Name: "never ends", Directive: "SKIP", Reason: "PENDING: no AMQP (not run)"},
					{Depth: 1, OK: true, Name: "plain skip", Directive: "SKIP", Reason: "no node"},
					{Depth: 0, OK: true, Name: "hub"},
				},
				Tests: 5, Pass: 1, Skipped: 2, Todo: 2, Summary: true,
			},
			pending: []pendingScenario{
				{Name: "hub > not there yet", Ran: true, Reason: "no route # yet"},
				{Name: "hub > there now", Ran: true, OK: true, Reason: "landed"},
				{Name: "hub > never ends", Reason: "no AMQP (not run)"},
			},
		},
		{
			name: "nested summary-like lines are not the summary",
			in:   "    # pass 9\n# Subtest: x\nok 1 - x\n",
			want: tapResult{Points: []tapPoint{{Depth: 0, OK: true, Name: "x"}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := parseTAP([]byte(tc.in))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseTAP mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.leaves, got.failedLeaves()); diff != "" {
				t.Errorf("failedLeaves mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.pending, got.pending()); diff != "" {
				t.Errorf("pending mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseEndpoints(t *testing.T) {
	full := `{"idScope":"0ne00000001","dpsDeviceEndpoint":"localhost:1","dpsServiceConnectionString":"HostName=localhost;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=a2V5","hubHostName":"localhost","hubConnectionString":"HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5","caCertFile":"/d/ca.pem","httpsAddr":"localhost:1","mqttAddr":"localhost:2"}`
	cases := []struct {
		name    string
		in      string
		want    endpoints
		wantErr string
	}{
		{
			name: "complete",
			in:   full,
			want: endpoints{
				IDScope: "0ne00000001", DPSDeviceEndpoint: "localhost:1",
				DPSServiceConnectionString: "HostName=localhost;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=a2V5",
				HubHostName:                "localhost",
				HubConnectionString:        "HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5",
				CACertFile:                 "/d/ca.pem", HTTPSAddr: "localhost:1", MQTTAddr: "localhost:2",
			},
		},
		{name: "truncated write", in: full[:40], wantErr: "decode endpoints.json"},
		{name: "missing fields", in: `{"idScope":"0ne00000001","httpsAddr":"localhost:1"}`, wantErr: "endpoints.json lacks dpsDeviceEndpoint, dpsServiceConnectionString, hubHostName, caCertFile, mqttAddr"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEndpoints([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseEndpoints error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseEndpoints: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseEndpoints mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServerEnv(t *testing.T) {
	got := serverEnv([]string{"PATH=/bin", "MUSTER_STORE=postgres://x", "HOME=/h", "MUSTER_REQUIRE_INTEROP=1", "NOT_MUSTER_X=1"})
	want := []string{"PATH=/bin", "HOME=/h", "NOT_MUSTER_X=1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("serverEnv mismatch (-want +got):\n%s", diff)
	}
}

// FuzzParseTAP checks that arbitrary runner output never panics the parser
// and that every test point it reports comes from a line of the input.
func FuzzParseTAP(f *testing.F) {
	f.Add([]byte("ok 1 - a\n# tests 1\n# pass 1\n# fail 0\n"))
	f.Add([]byte("    not ok 3 - deep # TODO later\n        ok 1 - deeper\n"))
	f.Add([]byte("# pass 99999999999999999999999\n"))
	f.Add([]byte("not ok 1 - \r\nok x - y\n# fail -1\n"))
	f.Add([]byte("ok 7 - a \\\\\\# b \\#c # SKIP\n"))
	f.Add([]byte("    not ok 2 - x # TODO PENDING: why \\# not\n# todo 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := parseTAP(data)
		lines := strings.Count(string(data), "\n") + 1
		if len(r.Points) > lines {
			t.Fatalf("%d test points from %d lines", len(r.Points), lines)
		}
		// Unescaping only drops backslashes, so without '\\' and '#' every
		// name is a substring of the input.
		strip := strings.NewReplacer(`\`, "", "#", "")
		in := strip.Replace(string(data))
		for _, p := range r.Points {
			if p.Depth < 0 || !strings.Contains(in, strip.Replace(p.Name)) {
				t.Fatalf("test point %+v does not come from the input", p)
			}
		}
		if n := len(r.pending()) + len(r.failedLeaves()); n > len(r.Points) {
			t.Fatalf("%d pending or failed scenarios from %d test points", n, len(r.Points))
		}
		if r.Tests < 0 || r.Pass < 0 || r.Fail < 0 || r.Cancelled < 0 || r.Skipped < 0 || r.Todo < 0 {
			t.Fatalf("negative count in %+v", r)
		}
	})
}
