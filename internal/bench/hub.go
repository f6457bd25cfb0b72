package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/client/hubservice"
)

// Phases of `muster bench hub`, run in this order (each against Muster,
// then against Mosquitto).
const (
	// HubPhaseMemory holds IdleConnections idle connections and reads the
	// broker's resident memory before and after.
	HubPhaseMemory = "memory"
	// HubPhaseConnect measures new TLS MQTT connections per second.
	HubPhaseConnect = "connect"
	// HubPhaseTelemetry measures QoS 1 messages per second.
	HubPhaseTelemetry = "telemetry"
)

// hubPhaseOrder is the order the phases run in.
var hubPhaseOrder = [...]string{HubPhaseMemory, HubPhaseConnect, HubPhaseTelemetry}

// Key exchange preferences of the bench's TLS client.
const (
	// KeyExchangeX25519 offers X25519 only: what the C and Node SDKs on
	// OpenSSL 3.0 negotiate, and the same work for both brokers.
	KeyExchangeX25519 = "x25519"
	// KeyExchangeDefault offers Go's defaults: Muster then negotiates the
	// hybrid post-quantum X25519MLKEM768, which Mosquitto on OpenSSL 3.0
	// cannot.
	KeyExchangeDefault = "default"
)

// Defaults of HubConfig (the load of the physical-limits note's MQTT row).
const (
	DefaultHubDevices      = 10000
	DefaultHubConcurrency  = 16
	DefaultHubPublishers   = 8
	DefaultHubInFlight     = 100
	DefaultHubPayloadBytes = 256
	DefaultHubIdle         = 10000
	DefaultHubSettle       = 5 * time.Second
)

// Bounds of HubConfig.
const (
	MaxHubDevices      = 200_000
	MaxHubConcurrency  = 1024
	MaxHubPublishers   = 256
	MaxHubInFlight     = 1000
	MaxHubPayloadBytes = 128 << 10
	MaxHubSettle       = 5 * time.Minute
)

// Targets of `muster bench hub` (issue 3, Performance).
const (
	// TargetConnectRatio: Muster's connects/s ≥ 0.8 × Mosquitto's.
	TargetConnectRatio = 0.8
	// TargetTelemetryRatio: Muster's QoS 1 telemetry (durable) ≥ 0.5 ×
	// Mosquitto's QoS 1 publish rate (which keeps nothing).
	TargetTelemetryRatio = 0.5
	// TargetIdleBytes: resident memory per idle connected device.
	TargetIdleBytes = 32 << 10
)

const (
	// hubKeepAlive is the keep-alive every connection announces: the C
	// SDK's 240 s.
	hubKeepAlive = 240 * time.Second
	// hubTokenTTL is the lifetime of the devices' SAS tokens, longer than
	// any run.
	hubTokenTTL = 24 * time.Hour
	// hubAPIVersion is the api-version in the devices' MQTT user names.
	hubAPIVersion = "2021-04-12"
	// deviceAPIConcurrency is the number of service API requests in
	// flight when devices are created or deleted: the service client
	// keeps 16 idle connections.
	deviceAPIConcurrency = 16
	// deviceCleanupTimeout bounds the deletion of the bench's devices.
	deviceCleanupTimeout = 10 * time.Minute
	// maxIdleConnectWindow bounds the time spent opening idle connections.
	maxIdleConnectWindow = 10 * time.Minute
	// fdHeadroom is the number of descriptors a process needs besides
	// the idle connections (listeners, store, logs, the other phases).
	fdHeadroom = 256
)

// HubServer is the hub under test.
type HubServer struct {
	// Service is a client of its hub service API (a policy with registry
	// write): the bench creates, and afterwards deletes, its devices.
	Service *hubservice.Client
	// HostName is the hub's host name: the SAS resource, the MQTT user
	// name's prefix and the TLS server name.
	HostName string
	// MQTTEndpoint is its MQTTS listener, host:port.
	MQTTEndpoint string
	// MoreMQTTEndpoints are the MQTTS listeners of further instances of
	// the same hub (several `muster serve` on one PostgreSQL database):
	// connection i goes to endpoint i mod n of MQTTEndpoint and these, as
	// a load balancer spreading devices would. PID then names the first
	// instance's process only, so no memory or server CPU figures are
	// taken.
	MoreMQTTEndpoints []string
	// RootCAs verifies its TLS certificate; nil means the system pool.
	RootCAs *x509.CertPool
	// PID is the server's process ID on this machine; 0 when unknown (no
	// memory phase and no server CPU figures then).
	PID int
}

// HubConfig configures RunHub.
type HubConfig struct {
	// Phases lists HubPhaseMemory, HubPhaseConnect and/or
	// HubPhaseTelemetry; they run in that order whatever the order here.
	Phases []string
	// Devices is the number of distinct devices created (and used in turn
	// by the connect phase).
	Devices int
	// Concurrency is the number of connects in flight (connect and memory
	// phases).
	Concurrency int
	// Publishers is the number of publishing connections, each keeping
	// InFlight QoS 1 messages of PayloadBytes unacknowledged.
	Publishers   int
	InFlight     int
	PayloadBytes int
	// Warmup precedes the measured window of Duration (connect and
	// telemetry phases).
	Warmup   time.Duration
	Duration time.Duration
	// IdleConnections is the number of idle connections of the memory
	// phase (at most Devices).
	IdleConnections int
	// Settle is the pause before each memory reading.
	Settle time.Duration
	// Timeout bounds one connect, one PUBACK and one API call.
	Timeout time.Duration
	// KeyExchange is KeyExchangeX25519 or KeyExchangeDefault.
	KeyExchange string
	// Mosquitto is the path of the Mosquitto binary of the peer; empty
	// leaves the peer out.
	Mosquitto string
	// KeepDevices keeps the devices the bench created.
	KeepDevices bool
	// Progress receives a progress line every second and notes; nil
	// discards them.
	Progress io.Writer
	// WhileIdle, when set, is called in the memory phase with the
	// broker's name while all its idle connections are held, right after
	// the second memory reading: a hook to take heap or goroutine
	// profiles of an in-process server.
	WhileIdle func(broker string)
}

// DefaultHubConfig returns the defaults: every phase, 10,000 devices and
// idle connections, 16 connects in flight, 8 publishers × 100 messages of
// 256 B, 1 s of warm-up and a 10 s window, and the Mosquitto peer.
func DefaultHubConfig() HubConfig {
	return HubConfig{
		Phases: hubPhaseOrder[:], Devices: DefaultHubDevices, Concurrency: DefaultHubConcurrency,
		Publishers: DefaultHubPublishers, InFlight: DefaultHubInFlight, PayloadBytes: DefaultHubPayloadBytes,
		Warmup: DefaultWarmup, Duration: DefaultDuration, IdleConnections: DefaultHubIdle, Settle: DefaultHubSettle,
		Timeout: DefaultTimeout, KeyExchange: KeyExchangeX25519, Mosquitto: DefaultMosquitto,
	}
}

// ParseHubPhases turns a comma-separated list ("connect,telemetry") or
// "all" into HubConfig.Phases.
func ParseHubPhases(s string) ([]string, error) {
	if strings.EqualFold(strings.TrimSpace(s), "all") {
		return hubPhaseOrder[:], nil
	}
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if !slices.Contains(hubPhaseOrder[:], p) {
			return nil, fmt.Errorf("%w: phase %q: want %s, %s, %s or all", ErrInvalidConfig, p, HubPhaseMemory, HubPhaseConnect, HubPhaseTelemetry)
		}
		if slices.Contains(out, p) {
			return nil, fmt.Errorf("%w: phase %q listed twice", ErrInvalidConfig, p)
		}
		out = append(out, p)
	}
	return out, nil
}

func (c HubConfig) has(phase string) bool { return slices.Contains(c.Phases, phase) }

// Validate reports every setting out of its bounds.
func (c HubConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if len(c.Phases) == 0 {
		bad("no phase")
	}
	for i, p := range c.Phases {
		if !slices.Contains(hubPhaseOrder[:], p) {
			bad("phase %q: want %s, %s or %s", p, HubPhaseMemory, HubPhaseConnect, HubPhaseTelemetry)
		} else if slices.Index(c.Phases, p) != i {
			bad("phase %q listed twice", p)
		}
	}
	inRange := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			bad("%s %d: must be between %d and %d", name, v, lo, hi)
		}
	}
	inRange("devices", c.Devices, 1, MaxHubDevices)
	inRange("concurrency", c.Concurrency, 1, MaxHubConcurrency)
	inRange("publishers", c.Publishers, 1, MaxHubPublishers)
	inRange("in-flight", c.InFlight, 1, MaxHubInFlight)
	inRange("payload bytes", c.PayloadBytes, 0, MaxHubPayloadBytes)
	inRange("idle connections", c.IdleConnections, 1, MaxHubDevices)
	if c.has(HubPhaseMemory) && c.IdleConnections > c.Devices {
		bad("idle connections %d: more than the %d devices (each idle connection is a distinct device)", c.IdleConnections, c.Devices)
	}
	if c.has(HubPhaseTelemetry) && c.Publishers > c.Devices {
		bad("publishers %d: more than the %d devices", c.Publishers, c.Devices)
	}
	if c.has(HubPhaseConnect) && c.Devices < 2*c.Concurrency {
		bad("devices %d: the connect phase needs at least twice its concurrency (%d) so that no device connects twice at once", c.Devices, c.Concurrency)
	}
	if c.Warmup < 0 || c.Warmup > MaxWindow {
		bad("warm-up %v: must be between 0 and %v", c.Warmup, MaxWindow)
	}
	if c.Duration <= 0 || c.Duration > MaxWindow {
		bad("duration %v: must be more than 0 and at most %v", c.Duration, MaxWindow)
	}
	if c.Settle < 0 || c.Settle > MaxHubSettle {
		bad("settle %v: must be between 0 and %v", c.Settle, MaxHubSettle)
	}
	if c.Timeout <= 0 || c.Timeout > MaxTimeout {
		bad("timeout %v: must be more than 0 and at most %v", c.Timeout, MaxTimeout)
	}
	if c.KeyExchange != KeyExchangeX25519 && c.KeyExchange != KeyExchangeDefault {
		bad("key exchange %q: want %s or %s", c.KeyExchange, KeyExchangeX25519, KeyExchangeDefault)
	}
	return errors.Join(errs...)
}

// HubReport is the outcome of RunHub.
type HubReport struct {
	Machine  Machine      `json:"machine"`
	Settings HubSettings  `json:"settings"`
	Devices  DeviceSetup  `json:"devices"`
	Muster   BrokerReport `json:"muster"`
	// Mosquitto is the peer's report; nil when it did not run, and
	// MosquittoSkipped says why.
	Mosquitto        *BrokerReport `json:"mosquitto,omitempty"`
	MosquittoSkipped string        `json:"mosquittoSkipped,omitempty"`
	// Verdicts compares the figures with the targets.
	Verdicts []HubVerdict `json:"verdicts"`
	// Notes are warnings about the run (limits, skipped parts).
	Notes []string `json:"notes,omitempty"`
}

// HubSettings echoes the load of the run.
type HubSettings struct {
	Phases          []string `json:"phases"`
	Concurrency     int      `json:"concurrency"`
	Publishers      int      `json:"publishers"`
	InFlight        int      `json:"inFlight"`
	PayloadBytes    int      `json:"payloadBytes"`
	WarmupSeconds   float64  `json:"warmupSeconds"`
	DurationSeconds float64  `json:"durationSeconds"`
	IdleConnections int      `json:"idleConnections"`
	SettleSeconds   float64  `json:"settleSeconds"`
	KeyExchange     string   `json:"keyExchange"`
}

// DeviceSetup describes the devices the bench created.
type DeviceSetup struct {
	Prefix        string  `json:"prefix"`
	Created       int     `json:"created"`
	Seconds       float64 `json:"seconds"`
	RatePerSecond float64 `json:"ratePerSecond"`
	Deleted       int     `json:"deleted"`
	Kept          bool    `json:"kept,omitempty"`
}

// BrokerReport is what one broker did.
type BrokerReport struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	PID     int    `json:"pid,omitempty"`
	// KeyExchange is the TLS group its connections negotiated.
	KeyExchange string       `json:"keyExchange,omitempty"`
	Idle        *IdleReport  `json:"idle,omitempty"`
	Connect     *PhaseReport `json:"connect,omitempty"`
	Telemetry   *PhaseReport `json:"telemetry,omitempty"`
}

// PhaseReport is a measured load against one broker.
type PhaseReport struct {
	Started      int               `json:"started"`
	Succeeded    int               `json:"succeeded"`
	Failed       int               `json:"failed"`
	ErrorsByKind map[string]int    `json:"errorsByKind"`
	ErrorSamples map[string]string `json:"errorSamples,omitempty"`
	Window       WindowReport      `json:"window"`
	// ServerCPUMicros is the broker process's CPU time per successful
	// operation over the whole load (0: unknown).
	ServerCPUMicros float64 `json:"serverCPUMicrosPerOperation,omitempty"`
	// ClientCPUMicros is the bench process's (0: unknown).
	ClientCPUMicros float64 `json:"clientCPUMicrosPerOperation,omitempty"`
	// Error is why the phase stopped early.
	Error string `json:"error,omitempty"`
}

// IdleReport is the memory phase against one broker.
type IdleReport struct {
	Target    int `json:"target"`
	Connected int `json:"connected"`
	// Alive answered a PINGREQ after the second memory reading.
	Alive        int               `json:"alive"`
	Failed       int               `json:"failed"`
	ErrorsByKind map[string]int    `json:"errorsByKind,omitempty"`
	ErrorSamples map[string]string `json:"errorSamples,omitempty"`
	// ConnectSeconds is how long opening them took.
	ConnectSeconds     float64 `json:"connectSeconds"`
	RSSBeforeBytes     int64   `json:"rssBeforeBytes"`
	RSSAfterBytes      int64   `json:"rssAfterBytes"`
	BytesPerConnection float64 `json:"bytesPerConnection"`
	// Skipped says why the phase did not run.
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// HubVerdict compares one figure with its target.
type HubVerdict struct {
	Figure    string  `json:"figure"`
	Unit      string  `json:"unit"`
	Muster    float64 `json:"muster"`
	Mosquitto float64 `json:"mosquitto,omitempty"`
	// Ratio is Muster ÷ Mosquitto (0 without the peer's figure).
	Ratio float64 `json:"ratio,omitempty"`
	// Target says what is aimed at; MeetsTarget is null when it cannot be
	// decided (no peer figure, a phase that did not run).
	Target      string `json:"target"`
	MeetsTarget *bool  `json:"meetsTarget"`
}

// hubRunner holds one RunHub's state.
type hubRunner struct {
	srv   HubServer
	cfg   HubConfig
	out   io.Writer
	runID string
	mu    sync.Mutex // serialises writes to out
	notes []string
}

func (r *hubRunner) notef(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, format+"\n", args...)
}

// warnf is a note that also goes into the report.
func (r *hubRunner) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.notef("note: %s", msg)
	r.mu.Lock()
	r.notes = append(r.notes, msg)
	r.mu.Unlock()
}

// load returns a Load reporting progress under label.
func (r *hubRunner) load(label string, concurrency, ops int, warmup, window time.Duration) Load {
	return Load{
		Concurrency: concurrency, Ops: ops, Warmup: warmup, Duration: window, Classify: hubErrorKind,
		Progress: func(p Progress) {
			r.notef("%-32s %5.1fs  %-7s  done %7d  rate %7.0f/s  errors %d", label, p.Elapsed.Seconds(), p.Phase, p.Succeeded, p.Rate, p.Failed)
		},
	}
}

// RunHub creates the devices, runs the configured phases against the hub
// and (unless cfg.Mosquitto is empty or the binary is missing) against a
// Mosquitto broker it starts, deletes the devices unless cfg.KeepDevices,
// and returns the report. A phase that fails is recorded in the report
// and the run goes on; the error then joins every such failure.
func RunHub(ctx context.Context, srv HubServer, cfg HubConfig) (*HubReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if srv.Service == nil || srv.HostName == "" || srv.MQTTEndpoint == "" {
		return nil, fmt.Errorf("%w: the hub needs a service client, a host name and an MQTT endpoint", ErrInvalidConfig)
	}
	out := cfg.Progress
	if out == nil {
		out = io.Discard
	}
	runID, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	r := &hubRunner{srv: srv, cfg: cfg, out: out, runID: runID}
	if err := r.checkLimits(); err != nil {
		return nil, err
	}
	rep := &HubReport{
		Machine: Machine{NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH},
		Settings: HubSettings{
			Phases: r.phases(), Concurrency: cfg.Concurrency, Publishers: cfg.Publishers, InFlight: cfg.InFlight,
			PayloadBytes: cfg.PayloadBytes, WarmupSeconds: cfg.Warmup.Seconds(), DurationSeconds: cfg.Duration.Seconds(),
			IdleConnections: cfg.IdleConnections, SettleSeconds: cfg.Settle.Seconds(), KeyExchange: cfg.KeyExchange,
		},
		Muster: BrokerReport{Name: "muster", PID: srv.PID},
	}
	pprof.Do(ctx, pprof.Labels(ProfileLabel, "load-generator"), func(ctx context.Context) {
		err = r.run(ctx, rep)
	})
	rep.Verdicts = hubVerdicts(rep)
	rep.Notes = r.notes
	return rep, err
}

// phases returns the configured phases in running order.
func (r *hubRunner) phases() []string {
	var out []string
	for _, p := range hubPhaseOrder {
		if r.cfg.has(p) {
			out = append(out, p)
		}
	}
	return out
}

// checkLimits raises this process's open-file limit and refuses a memory
// phase it could not hold; a narrow ephemeral port range is only noted.
func (r *hubRunner) checkLimits() error {
	if !r.cfg.has(HubPhaseMemory) {
		return nil
	}
	need := r.cfg.IdleConnections + r.cfg.Concurrency + r.cfg.Publishers + fdHeadroom
	have, err := raiseOpenFileLimit()
	switch {
	case errors.Is(err, errProcUnsupported):
	case err != nil:
		return err
	case have < uint64(need):
		return fmt.Errorf("%w: %d idle connections need about %d open files, but this process may open %d (hard limit, ulimit -Hn): raise it or lower the idle connections",
			ErrInvalidConfig, r.cfg.IdleConnections, need, have)
	}
	if lo, hi, err := localPortRange(); err == nil && hi-lo+1 < r.cfg.IdleConnections+1000 {
		r.warnf("the ephemeral port range %d-%d leaves little room for %d idle connections to one port", lo, hi, r.cfg.IdleConnections)
	}
	return nil
}

// hubTarget is a broker being measured.
type hubTarget struct {
	rep *BrokerReport
	// endpoints are its listeners (several instances of one hub); the
	// connections of a phase take them in turn.
	endpoints []mqttEndpoint
	pid       int
	// identities is the number of distinct credentials cred hands out.
	identities int
	cred       func(i int) mqttCredential
}

// topic is the telemetry topic of a client: the hub's device-to-cloud
// topic, used as is on Mosquitto too so both parse the same bytes.
func telemetryTopic(c mqttCredential) string { return "devices/" + c.ClientID + "/messages/events/" }

func (r *hubRunner) clientTLS() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if r.cfg.KeyExchange == KeyExchangeX25519 {
		c.CurvePreferences = []tls.CurveID{tls.X25519}
	}
	return c
}

func (r *hubRunner) run(ctx context.Context, rep *HubReport) error {
	base := r.clientTLS()
	var musterEPs []mqttEndpoint
	for _, hp := range append([]string{r.srv.MQTTEndpoint}, r.srv.MoreMQTTEndpoints...) {
		ep, err := resolveMQTTEndpoint(ctx, hp, r.cfg.Timeout)
		if err != nil {
			return err
		}
		ep.TLS = base.Clone()
		ep.TLS.RootCAs, ep.TLS.ServerName = r.srv.RootCAs, r.srv.HostName
		musterEPs = append(musterEPs, ep)
	}
	musterEP := musterEPs[0]
	var err error
	if len(musterEPs) > 1 {
		r.srv.PID, rep.Muster.PID = 0, 0
		r.warnf("connections are spread over %d instances: no server memory or CPU figures (they would be of one instance only)", len(musterEPs))
		r.notef("muster instances: %d MQTTS endpoints, connections taken in turn", len(musterEPs))
	} else if r.srv.PID != 0 {
		if _, err := readRSS(r.srv.PID); err != nil && !errors.Is(err, errProcUnsupported) {
			return fmt.Errorf("%w: server process ID %d: %w", ErrInvalidConfig, r.srv.PID, err)
		}
	} else {
		r.srv.PID = r.discoverPID(musterEP.Addr)
		rep.Muster.PID = r.srv.PID
	}
	if r.srv.PID == os.Getpid() {
		r.warnf("the server runs in the bench's own process: its memory and CPU figures include the bench's side of the connections")
	}

	var peer *mosquittoPeer
	if r.cfg.Mosquitto == "" {
		rep.MosquittoSkipped = "the Mosquitto peer was turned off"
	} else {
		peer, err = startMosquitto(ctx, r.cfg.Mosquitto, base)
		switch {
		case errors.Is(err, ErrMosquittoMissing):
			rep.MosquittoSkipped = err.Error()
			r.warnf("%v: only Muster's figures are measured, without ratios", err)
		case err != nil:
			return fmt.Errorf("start the Mosquitto peer: %w", err)
		default:
			defer peer.stop()
			r.notef("mosquitto peer: %s, pid %d, listening on %s", peer.version, peer.pid, peer.endpoint.Addr)
		}
	}

	devs, err := r.createDevices(ctx, rep)
	defer r.deleteDevices(ctx, devs, rep)
	if err != nil {
		return err
	}
	targets := []*hubTarget{{rep: &rep.Muster, endpoints: musterEPs, pid: r.srv.PID, identities: len(devs.ids), cred: devs.credential}}
	if peer != nil {
		rep.Mosquitto = &BrokerReport{Name: "mosquitto", Version: peer.version, PID: peer.pid}
		targets = append(targets, &hubTarget{rep: rep.Mosquitto, endpoints: []mqttEndpoint{peer.endpoint}, pid: peer.pid, identities: r.cfg.Devices, cred: peer.credential("bench-" + r.runID)})
	}
	for _, t := range targets {
		if t.rep.KeyExchange, err = probe(ctx, t, r.cfg.Timeout); err != nil {
			return fmt.Errorf("%s: a first connection failed, so nothing was measured: %w", t.rep.Name, err)
		}
	}
	var failures []error
	for _, phase := range r.phases() {
		for _, t := range targets {
			if err := r.runPhase(ctx, phase, t); err != nil {
				if ctx.Err() != nil {
					return err
				}
				failures = append(failures, fmt.Errorf("%s %s: %w", t.rep.Name, phase, err))
			}
		}
	}
	return errors.Join(failures...)
}

// runPhase runs one phase against t and stores its report.
func (r *hubRunner) runPhase(ctx context.Context, phase string, t *hubTarget) error {
	switch phase {
	case HubPhaseMemory:
		ir, err := r.idlePhase(ctx, t)
		t.rep.Idle = ir
		return err
	case HubPhaseConnect:
		pr, err := r.connectPhase(ctx, t)
		t.rep.Connect = pr
		return err
	case HubPhaseTelemetry:
		pr, err := r.telemetryPhase(ctx, t)
		t.rep.Telemetry = pr
		return err
	}
	return fmt.Errorf("unknown phase %q", phase)
}

// discoverPID returns the process listening on addr's port when addr is a
// loopback address (0 when it is not, or cannot be found).
func (r *hubRunner) discoverPID(addr string) int {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		r.warnf("the server at %s is not on loopback: no server memory or CPU figures (pass its process ID if it runs on this machine)", addr)
		return 0
	}
	port, _ := strconv.Atoi(portText)
	pid, err := findListener(port)
	if err != nil {
		r.warnf("%v: no server memory or CPU figures", err)
		return 0
	}
	r.notef("server: process %d listens on %s", pid, addr)
	return pid
}

// resolveMQTTEndpoint turns host:port into the first of the host's
// addresses that accepts a TCP connection, so that measured dials never
// try an address family the broker does not listen on first.
func resolveMQTTEndpoint(ctx context.Context, hostPort string, timeout time.Duration) (mqttEndpoint, error) {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return mqttEndpoint{}, fmt.Errorf("%w: MQTT endpoint %q: %w", ErrInvalidConfig, hostPort, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return mqttEndpoint{}, fmt.Errorf("resolve the MQTT endpoint %s: %w", hostPort, err)
	}
	var errs []error
	for _, a := range addrs {
		addr := net.JoinHostPort(a, port)
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		abortTCP(c.(*net.TCPConn))
		return mqttEndpoint{Addr: addr}, nil
	}
	return mqttEndpoint{}, fmt.Errorf("no address of the MQTT endpoint %s accepts connections: %w", hostPort, errors.Join(errs...))
}

// probe connects once to each endpoint as the first identity and returns
// the negotiated TLS group, so that bad credentials or trust fail before
// any measurement.
func probe(ctx context.Context, t *hubTarget, timeout time.Duration) (string, error) {
	var group string
	for _, ep := range t.endpoints {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		c, err := dialMQTT(pctx, ep, t.cred(0), uint16(hubKeepAlive/time.Second))
		if err != nil {
			cancel()
			return "", err
		}
		group = c.tls.ConnectionState().CurveID.String()
		dl, _ := pctx.Deadline()
		err = c.disconnect(dl)
		cancel()
		if err != nil {
			return "", err
		}
	}
	return group, nil
}

// endpoint returns the endpoint of connection i.
func (t *hubTarget) endpoint(i int) mqttEndpoint {
	return t.endpoints[i%len(t.endpoints)]
}

// serverCPU starts measuring a process's CPU time; the function returned
// gives the CPU time per operation in microseconds (0: unknown).
func serverCPU(pid int) func(ops int) float64 {
	if pid == 0 {
		return func(int) float64 { return 0 }
	}
	before, err := readCPU(pid)
	return func(ops int) float64 {
		after, err2 := readCPU(pid)
		if err != nil || err2 != nil || ops == 0 {
			return 0
		}
		return float64((after - before).Microseconds()) / float64(ops)
	}
}

// phaseReport assembles the report of a load.
func phaseReport(res *Result, serverMicros float64) *PhaseReport {
	return &PhaseReport{
		Started: res.Started, Succeeded: res.Succeeded, Failed: res.Failed,
		ErrorsByKind: res.Errors, ErrorSamples: res.ErrorSamples, Window: windowReport(res.Window),
		ServerCPUMicros: serverMicros, ClientCPUMicros: cpuMicrosPerOp(res),
	}
}

// connectPhase measures new connections per second: each operation dials
// TCP, completes a full TLS handshake, sends CONNECT with the next
// identity's credential, waits for an accepting CONNACK, sends DISCONNECT
// and waits for the broker to close.
func (r *hubRunner) connectPhase(ctx context.Context, t *hubTarget) (*PhaseReport, error) {
	cpu := serverCPU(t.pid)
	keepAlive := uint16(hubKeepAlive / time.Second)
	res, err := r.load(t.rep.Name+" connects", r.cfg.Concurrency, maxCeilingOps, r.cfg.Warmup, r.cfg.Duration).Run(ctx, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		c, err := dialMQTT(ctx, t.endpoint(i), t.cred(i%t.identities), keepAlive)
		if err != nil {
			return err
		}
		dl, _ := ctx.Deadline()
		return c.disconnect(dl)
	})
	if res == nil {
		return nil, err
	}
	pr := phaseReport(res, cpu(res.Succeeded))
	if err != nil {
		pr.Error = err.Error()
	}
	return pr, err
}

// telemetryPayload is the body of every message: printable bytes.
func telemetryPayload(n int) []byte {
	const pattern = "muster-bench-hub-telemetry "
	b := make([]byte, n)
	for i := range b {
		b[i] = pattern[i%len(pattern)]
	}
	return b
}

// telemetryPhase measures QoS 1 messages per second: Publishers
// connections each keep InFlight PUBLISHes unacknowledged; an operation
// is one message, from PUBLISH to PUBACK. The phase stops at the first
// publisher that fails (a broken connection, a late PUBACK).
func (r *hubRunner) telemetryPhase(ctx context.Context, t *hubTarget) (*PhaseReport, error) {
	payload := telemetryPayload(r.cfg.PayloadBytes)
	pubs := make([]*publisher, 0, r.cfg.Publishers)
	defer func() {
		for _, p := range pubs {
			_ = p.close()
		}
	}()
	for i := range r.cfg.Publishers {
		cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		cred := t.cred(i)
		c, err := dialMQTT(cctx, t.endpoint(i), cred, uint16(hubKeepAlive/time.Second))
		cancel()
		if err != nil {
			return &PhaseReport{Error: err.Error()}, fmt.Errorf("connect publisher %d: %w", i, err)
		}
		pubs = append(pubs, newPublisher(c, telemetryTopic(cred), payload, r.cfg.InFlight, r.cfg.Timeout))
	}
	pool := newPublishPool(pubs)
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	for i, p := range pubs {
		go func() {
			select {
			case <-p.done:
				cancel(fmt.Errorf("publisher %d stopped: %w", i, p.err))
			case <-lctx.Done():
			}
		}()
	}
	cpu := serverCPU(t.pid)
	res, err := r.load(t.rep.Name+" QoS 1 messages", pool.size(), maxCeilingOps, r.cfg.Warmup, r.cfg.Duration).Run(lctx, pool.publish)
	if cause := context.Cause(lctx); err != nil && ctx.Err() == nil && cause != nil {
		err = cause
	}
	if res == nil {
		return nil, err
	}
	pr := phaseReport(res, cpu(res.Succeeded))
	if err != nil {
		pr.Error = err.Error()
	}
	return pr, err
}

// idlePhase opens IdleConnections idle connections (distinct identities)
// and reads the broker's resident memory before and after, each after
// cfg.Settle; the difference divided by the connections opened is the
// memory per idle connection. The connections must still answer PINGREQ
// after the reading.
func (r *hubRunner) idlePhase(ctx context.Context, t *hubTarget) (*IdleReport, error) {
	n := r.cfg.IdleConnections
	rep := &IdleReport{Target: n}
	if t.pid == 0 {
		rep.Skipped = "the server's process ID is unknown (pass it, or let the bench start the server)"
		r.warnf("%s memory: skipped: %s", t.rep.Name, rep.Skipped)
		return rep, nil
	}
	if limit, err := readOpenFileLimit(t.pid); err == nil && limit < uint64(n+fdHeadroom) {
		rep.Skipped = fmt.Sprintf("process %d may open %d files, too few for %d idle connections (about %d needed): raise its limit (ulimit -n, systemd LimitNOFILE=) or lower the idle connections",
			t.pid, limit, n, n+fdHeadroom)
		r.warnf("%s memory: skipped: %s", t.rep.Name, rep.Skipped)
		return rep, nil
	}
	fail := func(err error) (*IdleReport, error) {
		rep.Error = err.Error()
		return rep, err
	}
	if err := settle(ctx, r.cfg.Settle); err != nil {
		return fail(err)
	}
	before, err := readRSS(t.pid)
	if err != nil {
		return fail(err)
	}
	set := newIdleSet(hubKeepAlive, r.cfg.Timeout, n)
	defer set.close()
	start := time.Now()
	keepAlive := uint16(hubKeepAlive / time.Second)
	res, err := r.load(t.rep.Name+" idle connections", r.cfg.Concurrency, n, 0, maxIdleConnectWindow).Run(ctx, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		c, err := dialMQTT(ctx, t.endpoint(i), t.cred(i%t.identities), keepAlive)
		if err != nil {
			return err
		}
		set.add(c)
		return nil
	})
	rep.ConnectSeconds = time.Since(start).Seconds()
	if res != nil {
		rep.Connected, rep.Failed, rep.ErrorsByKind, rep.ErrorSamples = res.Succeeded, res.Failed, res.Errors, res.ErrorSamples
	}
	if err != nil {
		return fail(err)
	}
	if err := settle(ctx, r.cfg.Settle); err != nil {
		return fail(err)
	}
	after, err := readRSS(t.pid)
	if err != nil {
		return fail(err)
	}
	if r.cfg.WhileIdle != nil {
		r.cfg.WhileIdle(t.rep.Name)
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	alive, dead, samples := set.check(cctx)
	cancel()
	rep.Alive = alive
	for k, v := range dead {
		rep.ErrorsByKind[k] += v
		if _, ok := rep.ErrorSamples[k]; !ok {
			rep.ErrorSamples[k] = samples[k]
		}
	}
	rep.RSSBeforeBytes, rep.RSSAfterBytes = before, after
	if rep.Connected > 0 {
		rep.BytesPerConnection = float64(after-before) / float64(rep.Connected)
	}
	r.notef("%s memory: %d idle connections (%d alive after the reading), RSS %.1f → %.1f MiB: %.0f bytes per connection",
		t.rep.Name, rep.Connected, alive, mib(before), mib(after), rep.BytesPerConnection)
	if alive < rep.Connected {
		return rep, fmt.Errorf("%d of %d idle connections no longer answered after the memory reading", rep.Connected-alive, rep.Connected)
	}
	return rep, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// settle waits d, or until ctx ends. It lets a broker finish the work of
// the previous step (and its runtime return freed memory) before a
// memory reading.
func settle(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hubVerdicts compares the figures with the targets.
func hubVerdicts(rep *HubReport) []HubVerdict {
	peer := rep.Mosquitto
	ratio := func(figure, unit string, target float64, get func(*BrokerReport) *PhaseReport) (HubVerdict, bool) {
		m := get(&rep.Muster)
		if m == nil {
			return HubVerdict{}, false
		}
		v := HubVerdict{Figure: figure, Unit: unit, Muster: m.Window.RatePerSecond, Target: fmt.Sprintf(">= %g x mosquitto", target)}
		if peer != nil {
			if p := get(peer); p != nil && p.Window.RatePerSecond > 0 && m.Error == "" && p.Error == "" {
				v.Mosquitto = p.Window.RatePerSecond
				v.Ratio = v.Muster / v.Mosquitto
				meets := v.Ratio >= target
				v.MeetsTarget = &meets
			}
		}
		return v, true
	}
	var out []HubVerdict
	if v, ok := ratio("TLS MQTT connects", "connects/s", TargetConnectRatio, func(b *BrokerReport) *PhaseReport { return b.Connect }); ok {
		out = append(out, v)
	}
	if v, ok := ratio("QoS 1 telemetry", "messages/s", TargetTelemetryRatio, func(b *BrokerReport) *PhaseReport { return b.Telemetry }); ok {
		out = append(out, v)
	}
	if m := rep.Muster.Idle; m != nil {
		v := HubVerdict{Figure: "memory per idle connection", Unit: "bytes", Muster: m.BytesPerConnection, Target: "<= " + strconv.Itoa(TargetIdleBytes) + " bytes"}
		if peer != nil && peer.Idle != nil && peer.Idle.Skipped == "" && peer.Idle.Error == "" {
			v.Mosquitto = peer.Idle.BytesPerConnection
		}
		if m.Skipped == "" && m.Error == "" && m.Connected > 0 {
			meets := m.BytesPerConnection <= TargetIdleBytes
			v.MeetsTarget = &meets
		}
		out = append(out, v)
	}
	return out
}
