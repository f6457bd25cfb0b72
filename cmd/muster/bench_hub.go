package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/bench"
	"github.com/muster-iot/muster/internal/client/hubservice"
	"github.com/muster-iot/muster/internal/instance"
)

// defaultMQTTPort is the MQTTS port a hub listens on when nothing else
// says.
const defaultMQTTPort = "8883"

// Bounds of a server the bench starts itself (--spawn).
const (
	spawnStartTimeout = 2 * time.Minute
	spawnStopTimeout  = 30 * time.Second
	// spawnReadyLine is the first line `muster serve` prints once both
	// listeners accept connections and endpoints.json is written.
	spawnReadyLine = "Muster is running."
)

// benchHubFlags are the settings of `muster bench hub`.
type benchHubFlags struct {
	cfg          bench.HubConfig
	phases       string
	noMosquitto  bool
	serverPID    int
	spawn        bool
	mqttEndpoint string
	targets      []string
	quiet        bool
	hub          *hubFlag
}

// newBenchHubCmd builds `muster bench hub`.
func newBenchHubCmd() *cobra.Command {
	f := benchHubFlags{cfg: bench.DefaultHubConfig(), phases: "all"}
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Measure the hub's MQTT connects, QoS 1 telemetry and memory per idle device, against Mosquitto",
		Long: `Measure a running hub over MQTT 3.1.1 on TLS, and Mosquitto with the same client
in the same run:

  memory     hold --idle idle connections of distinct devices and read the
             server's resident memory (VmRSS) before and after: bytes per
             idle connection (target <= 32 KiB);
  connect    new connections per second: TCP, a full TLS handshake, CONNECT
             with the device's SAS token, CONNACK, DISCONNECT, close; each
             connect uses the next device (target >= 0.8 x Mosquitto's, with
             password authentication);
  telemetry  QoS 1 messages per second: --publishers connections each keep
             --in-flight messages of --payload-bytes unacknowledged on the
             device's telemetry topic; Muster acknowledges only after the
             message is durable in its built-in endpoint, Mosquitto keeps
             nothing (target >= 0.5 x Mosquitto's).

First the bench creates --devices symmetric-key devices bench-hub-<random>-<n>
through the hub service API (and deletes them at the end unless
--keep-devices). It starts ` + bench.DefaultMosquitto + ` (--mosquitto) on a free
loopback port with a generated CA, server certificate, configuration and
password file; without Mosquitto only Muster's figures are reported.

The memory phase and the server CPU figures need the server's process ID:
--server-pid, or found from the process listening on the MQTT port when it
is on loopback, or --spawn, which starts "muster serve" (this binary) on a
fresh data directory and stops it at the end.

The hub is found like the device commands find it (--hub-connection-string,
--server, --ca-file, or --data-dir's endpoints.json); the MQTT endpoint
comes from --mqtt-endpoint, else endpoints.json, else the hub host name on
port ` + defaultMQTTPort + `. Several instances of one hub sharing a PostgreSQL
database are measured together with one --target per instance: connections
are spread round-robin over them (the devices are created through the one
service API).`,
		Example: `  muster bench hub --spawn
  muster --data-dir ./muster-data bench hub --phases connect,telemetry --duration 5s
  muster -o json bench hub --spawn --idle 10000 > hub-bench.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchHub(cmd, &f)
		},
	}
	fl := cmd.Flags()
	c := &f.cfg
	fl.StringVar(&f.phases, "phases", f.phases, "comma-separated phases: memory, connect, telemetry, or all")
	fl.IntVar(&c.Devices, "devices", c.Devices, fmt.Sprintf("distinct devices to create (1..%d)", bench.MaxHubDevices))
	fl.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "connects in flight (connect and memory phases)")
	fl.IntVar(&c.Publishers, "publishers", c.Publishers, "publishing connections (telemetry phase)")
	fl.IntVar(&c.InFlight, "in-flight", c.InFlight, fmt.Sprintf("unacknowledged QoS 1 messages per publisher (1..%d)", bench.MaxHubInFlight))
	fl.IntVar(&c.PayloadBytes, "payload-bytes", c.PayloadBytes, "message body size")
	fl.DurationVar(&c.Duration, "duration", c.Duration, "measured window of the connect and telemetry phases")
	fl.DurationVar(&c.Warmup, "warmup", c.Warmup, "warm-up before each measured window")
	fl.IntVar(&c.IdleConnections, "idle", c.IdleConnections, "idle connections of the memory phase (at most --devices)")
	fl.DurationVar(&c.Settle, "settle", c.Settle, "pause before each memory reading")
	fl.DurationVar(&c.Timeout, "timeout", c.Timeout, "time limit of one connect, one PUBACK and one API call")
	fl.StringVar(&c.KeyExchange, "key-exchange", c.KeyExchange, "TLS key exchange the client offers: x25519 (as OpenSSL 3.0 SDKs; the same for both brokers) or default (Go's, with X25519MLKEM768)")
	fl.StringVar(&c.Mosquitto, "mosquitto", c.Mosquitto, "Mosquitto binary of the peer")
	fl.BoolVar(&f.noMosquitto, "no-mosquitto", false, "leave the Mosquitto peer out")
	fl.BoolVar(&c.KeepDevices, "keep-devices", false, "keep the devices the bench creates")
	fl.IntVar(&f.serverPID, "server-pid", 0, "process ID of the server (default: the process listening on a loopback MQTT endpoint)")
	fl.BoolVar(&f.spawn, "spawn", false, "start \"muster serve\" on a fresh data directory and loopback ports for the run")
	fl.StringVar(&f.mqttEndpoint, "mqtt-endpoint", "", "MQTTS endpoint host:port (default: endpoints.json's, else the hub host name on port "+defaultMQTTPort+")")
	fl.StringArrayVar(&f.targets, "target", nil, "MQTTS endpoint host:port of one instance (repeatable): connections are spread round-robin over the instances of one hub sharing a database (no server memory or CPU figures with more than one); replaces --mqtt-endpoint")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress lines on stderr")
	f.hub = addHubFlag(cmd)
	return cmd
}

func runBenchHub(cmd *cobra.Command, f *benchHubFlags) error {
	c := benchCLI(cmd)
	if c.output != outputTable && c.output != outputJSON {
		return fmt.Errorf("--output %q: must be %s or %s", c.output, outputTable, outputJSON)
	}
	cfg := f.cfg
	phases, err := bench.ParseHubPhases(f.phases)
	if err != nil {
		return fmt.Errorf("--phases: %w", err)
	}
	cfg.Phases = phases
	if f.noMosquitto {
		cfg.Mosquitto = ""
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if f.serverPID < 0 {
		return fmt.Errorf("--server-pid %d: must be a process ID", f.serverPID)
	}
	if f.spawn && (f.serverPID != 0 || f.mqttEndpoint != "" || len(f.targets) > 0) {
		return errors.New("--spawn starts its own server: it cannot be combined with --server-pid, --mqtt-endpoint or --target")
	}
	if len(f.targets) > 0 && f.mqttEndpoint != "" {
		return errors.New("--target and --mqtt-endpoint: give one or the other")
	}
	for _, t := range f.targets {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(t)); err != nil {
			return fmt.Errorf("--target %q: give host:port: %w", t, err)
		}
	}
	if !f.quiet {
		cfg.Progress = c.stderr
	}
	ctx := cmd.Context()
	var srv bench.HubServer
	if f.spawn {
		sp, err := spawnServer(ctx, c.stderr)
		if err != nil {
			return err
		}
		defer sp.stop(c.stderr)
		srv, err = sp.hubServer()
		if err != nil {
			return err
		}
	} else if srv, err = c.benchHubServer(f); err != nil {
		return err
	}
	rep, runErr := bench.RunHub(ctx, srv, cfg)
	if rep != nil {
		if err := c.emit(rep, func(w io.Writer) { benchHubTable(w, rep) }); err != nil {
			return err
		}
	}
	if runErr != nil {
		return fmt.Errorf("bench hub: %w", runErr)
	}
	return nil
}

// benchHubServer resolves the hub under test from the hub flags,
// endpoints.json and --mqtt-endpoint.
func (c *cli) benchHubServer(f *benchHubFlags) (bench.HubServer, error) {
	t, err := c.resolveHubTarget(f.hub)
	if err != nil {
		return bench.HubServer{}, err
	}
	svc, err := c.hubService(f.hub)
	if err != nil {
		return bench.HubServer{}, err
	}
	srv := bench.HubServer{Service: svc, HostName: svc.HostName(), MQTTEndpoint: f.mqttEndpoint, PID: f.serverPID}
	if len(f.targets) > 0 {
		srv.MQTTEndpoint, srv.MoreMQTTEndpoints = strings.TrimSpace(f.targets[0]), trimAll(f.targets[1:])
	}
	if t.caFile != "" {
		if srv.RootCAs, err = rootsFromFile(t.caFile); err != nil {
			return bench.HubServer{}, err
		}
	}
	if srv.MQTTEndpoint == "" {
		dataDir := c.setting("data-dir", c.dataDir, envDataDir)
		if dataDir == "" {
			dataDir = c.dataDir
		}
		ep, err := instance.ReadEndpoints(dataDir)
		switch {
		case err == nil && sameHost(t.connectionString, ep.HubConnectionString):
			srv.MQTTEndpoint = ep.MQTTAddr
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return bench.HubServer{}, fmt.Errorf("read endpoints.json in %s: %w", dataDir, err)
		default:
			srv.MQTTEndpoint = net.JoinHostPort(srv.HostName, defaultMQTTPort)
		}
	}
	return srv, nil
}

// trimAll returns ss with surrounding spaces trimmed.
func trimAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.TrimSpace(s)
	}
	return out
}

// spawned is a `muster serve` the bench started.
type spawned struct {
	cmd     *exec.Cmd
	dataDir string
	ep      *instance.Endpoints
	exited  chan struct{}
	waitErr error
}

// spawnServer starts this binary's `muster serve` on a fresh data
// directory with loopback listeners on ports the kernel chooses, and
// waits for it to say it is running.
func spawnServer(ctx context.Context, stderr io.Writer) (*spawned, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("--spawn: find this program: %w", err)
	}
	dir, err := os.MkdirTemp("", "muster-bench-hub-")
	if err != nil {
		return nil, fmt.Errorf("--spawn: create a data directory: %w", err)
	}
	cmd := exec.Command(exe, "serve", "--data-dir", dir, "--https-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--log-level", "error")
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("--spawn: %w", err)
	}
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("--spawn: start %s serve: %w", exe, err)
	}
	sp := &spawned{cmd: cmd, dataDir: dir, exited: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() { // read to the end, or serve would block on a full pipe
			if !signalled && strings.TrimSpace(sc.Text()) == spawnReadyLine {
				signalled = true
				close(ready)
			}
		}
		sp.waitErr = cmd.Wait()
		close(sp.exited)
	}()
	t := time.NewTimer(spawnStartTimeout)
	defer t.Stop()
	select {
	case <-ready:
	case <-sp.exited:
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("--spawn: muster serve exited before it was ready: %v", sp.waitErr)
	case <-t.C:
		sp.stop(stderr)
		return nil, fmt.Errorf("--spawn: muster serve was not ready within %v", spawnStartTimeout)
	case <-ctx.Done():
		sp.stop(stderr)
		return nil, ctx.Err()
	}
	if sp.ep, err = instance.ReadEndpoints(dir); err != nil {
		sp.stop(stderr)
		return nil, fmt.Errorf("--spawn: read the server's endpoints.json: %w", err)
	}
	fmt.Fprintf(stderr, "spawned muster serve: process %d, data directory %s, MQTTS %s\n", cmd.Process.Pid, dir, sp.ep.MQTTAddr)
	return sp, nil
}

// hubServer describes the spawned server for the bench.
func (sp *spawned) hubServer() (bench.HubServer, error) {
	roots, err := rootsFromFile(sp.ep.CACertFile)
	if err != nil {
		return bench.HubServer{}, err
	}
	svc, err := hubservice.New(hubservice.Options{ConnectionString: sp.ep.HubConnectionString, Server: sp.ep.HTTPSAddr, RootCAs: roots})
	if err != nil {
		return bench.HubServer{}, fmt.Errorf("--spawn: the server's hub service API: %w", err)
	}
	return bench.HubServer{Service: svc, HostName: sp.ep.HubHostName, MQTTEndpoint: sp.ep.MQTTAddr, RootCAs: roots, PID: sp.cmd.Process.Pid}, nil
}

// stop ends the spawned server (SIGTERM, then SIGKILL after
// spawnStopTimeout) and removes its data directory.
func (sp *spawned) stop(stderr io.Writer) {
	defer os.RemoveAll(sp.dataDir)
	_ = sp.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(spawnStopTimeout)
	defer t.Stop()
	select {
	case <-sp.exited:
	case <-t.C:
		fmt.Fprintf(stderr, "spawned muster serve (process %d) did not stop within %v; killing it\n", sp.cmd.Process.Pid, spawnStopTimeout)
		_ = sp.cmd.Process.Kill()
		<-sp.exited
	}
}

// benchHubTable prints a hub report: the load, one row per broker, the
// verdicts, then errors and notes.
func benchHubTable(w io.Writer, rep *bench.HubReport) {
	s := rep.Settings
	fmt.Fprintf(w, "Load generator:\t%d CPUs (GOMAXPROCS %d), %s %s/%s\n",
		rep.Machine.NumCPU, rep.Machine.GOMAXPROCS, rep.Machine.GoVersion, rep.Machine.OS, rep.Machine.Arch)
	fmt.Fprintf(w, "Load:\tphases %s; %d connects in flight; %d publishers x %d in flight, %d B; warm-up %gs, window %gs; %d idle connections; key exchange %s\n",
		strings.Join(s.Phases, ","), s.Concurrency, s.Publishers, s.InFlight, s.PayloadBytes, s.WarmupSeconds, s.DurationSeconds, s.IdleConnections, s.KeyExchange)
	d := rep.Devices
	kept := fmt.Sprintf("deleted %d", d.Deleted)
	if d.Kept {
		kept = "kept"
	}
	fmt.Fprintf(w, "Devices:\t%d created as %s-<n> in %.1fs, %s\n\n", d.Created, d.Prefix, d.Seconds, kept)

	row(w, "BROKER", "PID", "TLS GROUP", "CONNECTS/S", "P50", "P99", "SERVER µs/CONNECT", "QOS1 MSG/S", "P50", "P99", "SERVER µs/MSG", "IDLE CONNS", "BYTES/IDLE CONN")
	brokers := []*bench.BrokerReport{&rep.Muster}
	if rep.Mosquitto != nil {
		brokers = append(brokers, rep.Mosquitto)
	}
	for _, b := range brokers {
		name := b.Name
		if b.Version != "" {
			name += " (" + strings.TrimPrefix(b.Version, "mosquitto version ") + ")"
		}
		cells := []string{name, pidText(b.PID), b.KeyExchange}
		cells = append(cells, phaseCells(b.Connect)...)
		cells = append(cells, phaseCells(b.Telemetry)...)
		cells = append(cells, idleCells(b.Idle)...)
		row(w, cells...)
	}
	if rep.MosquittoSkipped != "" {
		fmt.Fprintf(w, "\nMosquitto:\tnot measured: %s\n", rep.MosquittoSkipped)
	}
	fmt.Fprintln(w)
	row(w, "FIGURE", "UNIT", "MUSTER", "MOSQUITTO", "RATIO", "TARGET", "VERDICT")
	for _, v := range rep.Verdicts {
		verdict := "undecided"
		if v.MeetsTarget != nil {
			verdict = map[bool]string{true: "met", false: "missed"}[*v.MeetsTarget]
		}
		mosq, ratio := "", ""
		if v.Mosquitto != 0 {
			mosq = fmt.Sprintf("%.0f", v.Mosquitto)
		}
		if v.Ratio != 0 {
			ratio = fmt.Sprintf("%.3f", v.Ratio)
		}
		row(w, v.Figure, v.Unit, fmt.Sprintf("%.0f", v.Muster), mosq, ratio, v.Target, verdict)
	}
	for _, b := range brokers {
		for _, p := range []struct {
			what string
			r    *bench.PhaseReport
		}{{"connects", b.Connect}, {"QoS 1 messages", b.Telemetry}} {
			if p.r != nil {
				benchErrors(w, b.Name+" "+p.what, p.r.ErrorsByKind, p.r.ErrorSamples)
			}
		}
		if b.Idle != nil {
			benchErrors(w, b.Name+" idle connections", b.Idle.ErrorsByKind, b.Idle.ErrorSamples)
		}
	}
	if len(rep.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range rep.Notes {
			fmt.Fprintf(w, "Note:\t%s\n", n)
		}
	}
}

func pidText(pid int) string {
	if pid == 0 {
		return ""
	}
	return strconv.Itoa(pid)
}

// phaseCells are a phase's rate, p50, p99 and server CPU per operation.
func phaseCells(p *bench.PhaseReport) []string {
	if p == nil {
		return []string{"", "", "", ""}
	}
	cpu := ""
	if p.ServerCPUMicros > 0 {
		cpu = fmt.Sprintf("%.1f", p.ServerCPUMicros)
	}
	rate := fmt.Sprintf("%.0f", p.Window.RatePerSecond)
	if p.Error != "" {
		rate += " (stopped)"
	}
	return []string{rate, fmt.Sprintf("%.1fms", p.Window.LatencyMs.P50), fmt.Sprintf("%.1fms", p.Window.LatencyMs.P99), cpu}
}

// idleCells are the memory phase's connections and bytes per connection.
func idleCells(ir *bench.IdleReport) []string {
	switch {
	case ir == nil:
		return []string{"", ""}
	case ir.Skipped != "":
		return []string{"skipped", ""}
	}
	conns := strconv.Itoa(ir.Connected)
	if ir.Alive != ir.Connected {
		conns += fmt.Sprintf(" (%d alive)", ir.Alive)
	}
	return []string{conns, fmt.Sprintf("%.0f", ir.BytesPerConnection)}
}
