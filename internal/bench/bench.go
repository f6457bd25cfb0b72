package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/muster-iot/muster/internal/client/dpsclient"
	"github.com/muster-iot/muster/internal/client/dpsservice"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/sas"
)

// Modes: which kind of devices register.
const (
	// ModeSymmetric registers symmetric-key group devices over HTTPS,
	// sharing keep-alive connections.
	ModeSymmetric = "symmetric"
	// ModeX509 registers X.509 group devices over HTTPS, each with a fresh
	// mutual-TLS handshake.
	ModeX509 = "x509"
)

// Defaults of Config.
const (
	DefaultSymmetricDevices = 100000
	DefaultX509Devices      = 30000
	DefaultConcurrency      = 64
	DefaultDuration         = 10 * time.Second
	DefaultWarmup           = time.Second
	DefaultTimeout          = 30 * time.Second
)

// Bounds of Config.
const (
	// MaxConcurrency bounds Config.Concurrency: the device client keeps at
	// most 256 idle keep-alive connections, so more symmetric-key workers
	// would open and close connections instead of reusing them.
	MaxConcurrency = 256
	// MaxDevices bounds Config.Devices (every device is prepared, and its
	// key or certificate held in memory, before the measurement).
	MaxDevices = 1_000_000
	// MaxTimeout bounds Config.Timeout.
	MaxTimeout = 10 * time.Minute
)

// Targets of the ratio of registrations per second to the mode's ceiling.
const (
	TargetSymmetricRatio = 0.2
	TargetX509Ratio      = 0.6
)

// ErrInvalidConfig is wrapped by the errors of Config.Validate.
var ErrInvalidConfig = errors.New("invalid bench configuration")

// Server is the server under test.
type Server struct {
	// Service is a client of its service API; the bench creates (and
	// afterwards deletes) its enrollment groups through it.
	Service *dpsservice.Client
	// DeviceEndpoint is its DPS device endpoint, host:port.
	DeviceEndpoint string
	// MoreDeviceEndpoints are the DPS device endpoints of further
	// instances of the same service (sharing its database): devices are
	// spread round-robin over DeviceEndpoint and these (pgspread.go).
	MoreDeviceEndpoints []string
	// IDScope is its ID scope.
	IDScope string
	// RootCAs verifies its TLS certificate; nil means the system pool.
	RootCAs *x509.CertPool
}

// Config configures Run.
type Config struct {
	// Modes lists ModeSymmetric and/or ModeX509, run in this order.
	Modes []string
	// Devices is the number of distinct devices per mode, warm-up
	// included; 0 means the mode's default.
	Devices int
	// Concurrency is the number of registrations (and ceiling operations)
	// in flight.
	Concurrency int
	// Warmup precedes the measured window of Duration.
	Warmup   time.Duration
	Duration time.Duration
	// CeilingDuration is the measured window of each ceiling; 0 means
	// Duration.
	CeilingDuration time.Duration
	// Rounds splits each mode's windows into this many rounds that
	// alternate registrations and ceiling (rounds.go), each window after
	// its own warm-up; 0 or 1 runs one registration window, then one
	// ceiling window. Without ceilings there is one window.
	Rounds int
	// SkipCeilings leaves the ceilings out.
	SkipCeilings bool
	// Timeout bounds one registration; 0 means DefaultTimeout.
	Timeout time.Duration
	// KeepGroups keeps the enrollment groups the bench created.
	KeepGroups bool
	// Progress receives a progress line every second and notes about
	// the preparation; nil discards them.
	Progress io.Writer
}

// DefaultDevices returns the default device count of a mode.
func DefaultDevices(mode string) int {
	if mode == ModeX509 {
		return DefaultX509Devices
	}
	return DefaultSymmetricDevices
}

// ParseModes turns "symmetric", "x509" or "both" into Config.Modes.
func ParseModes(s string) ([]string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case ModeSymmetric:
		return []string{ModeSymmetric}, nil
	case ModeX509:
		return []string{ModeX509}, nil
	case "both":
		return []string{ModeSymmetric, ModeX509}, nil
	}
	return nil, fmt.Errorf("%w: mode %q: want %s, %s or both", ErrInvalidConfig, s, ModeSymmetric, ModeX509)
}

// Validate reports every setting out of its bounds.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if len(c.Modes) == 0 {
		bad("no mode")
	}
	seen := map[string]bool{}
	for _, m := range c.Modes {
		if m != ModeSymmetric && m != ModeX509 {
			bad("mode %q: want %s or %s", m, ModeSymmetric, ModeX509)
		} else if seen[m] {
			bad("mode %q listed twice", m)
		}
		seen[m] = true
	}
	if c.Devices < 0 || c.Devices > MaxDevices {
		bad("devices %d: must be between 1 and %d (0 for the default)", c.Devices, MaxDevices)
	}
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		bad("concurrency %d: must be between 1 and %d", c.Concurrency, MaxConcurrency)
	}
	if c.Warmup < 0 || c.Warmup > MaxWindow {
		bad("warm-up %v: must be between 0 and %v", c.Warmup, MaxWindow)
	}
	if c.Duration <= 0 || c.Duration > MaxWindow {
		bad("duration %v: must be more than 0 and at most %v", c.Duration, MaxWindow)
	}
	if c.CeilingDuration < 0 || c.CeilingDuration > MaxWindow {
		bad("ceiling duration %v: must be between 0 (same as duration) and %v", c.CeilingDuration, MaxWindow)
	}
	if c.Rounds < 0 || c.Rounds > MaxRounds {
		bad("rounds %d: must be between 0 and %d", c.Rounds, MaxRounds)
	} else if n := c.rounds(); n > 1 {
		ceiling := c.CeilingDuration
		if ceiling == 0 {
			ceiling = c.Duration
		}
		if w := min(c.Duration, ceiling) / time.Duration(n); w < minRoundWindow {
			bad("rounds %d: windows of %v; each round's window must be at least %v", n, w, minRoundWindow)
		}
	}
	if c.Timeout < 0 || c.Timeout > MaxTimeout {
		bad("timeout %v: must be between 0 (default %v) and %v", c.Timeout, DefaultTimeout, MaxTimeout)
	}
	return errors.Join(errs...)
}

// Report is the outcome of Run.
type Report struct {
	Machine                Machine `json:"machine"`
	Concurrency            int     `json:"concurrency"`
	WarmupSeconds          float64 `json:"warmupSeconds"`
	DurationSeconds        float64 `json:"durationSeconds"`
	CeilingDurationSeconds float64 `json:"ceilingDurationSeconds,omitempty"`
	// Rounds is how many alternating rounds each mode's windows were split
	// into (Config.Rounds); the durations above are the rounds' totals.
	Rounds int          `json:"rounds"`
	Modes  []ModeReport `json:"modes"`
}

// Machine describes where the load generator ran.
type Machine struct {
	NumCPU     int    `json:"numCPU"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"goVersion"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

// ModeReport is the outcome of one mode.
type ModeReport struct {
	Mode              string `json:"mode"`
	EnrollmentGroupID string `json:"enrollmentGroupId"`
	// Devices is the number of distinct devices prepared; Started of them
	// registered (or tried to).
	Devices int `json:"devices"`
	Started int `json:"started"`
	// Assigned counts the final "assigned" answers (warm-up and the end of
	// the registrations in flight after the window included); Errors
	// counts the failed registrations.
	Assigned     int               `json:"assigned"`
	Errors       int               `json:"errors"`
	ErrorsByKind map[string]int    `json:"errorsByKind"`
	ErrorSamples map[string]string `json:"errorSamples,omitempty"`
	// Window is the measured window.
	Window WindowReport `json:"window"`
	// LoadGeneratorCPUMicros is the bench process's CPU time per assigned
	// registration (the device side's cost), in microseconds; 0 where the
	// platform does not report process CPU time.
	LoadGeneratorCPUMicros float64 `json:"loadGeneratorCPUMicrosPerRegistration,omitempty"`
	// Ceiling is the bare ceiling measured after the registrations (in
	// rounds: after each round's registrations, its windows joined); nil
	// with Config.SkipCeilings.
	Ceiling *CeilingReport `json:"ceiling,omitempty"`
	// Rounds are the rounds one by one (Config.Rounds).
	Rounds []RoundReport `json:"rounds,omitempty"`
}

// CeilingReport is a bare ceiling and the mode's ratio to it.
type CeilingReport struct {
	Name         string            `json:"name"`
	Unit         string            `json:"unit"`
	Succeeded    int               `json:"succeeded"`
	Errors       int               `json:"errors"`
	ErrorsByKind map[string]int    `json:"errorsByKind"`
	ErrorSamples map[string]string `json:"errorSamples,omitempty"`
	Window       WindowReport      `json:"window"`
	// CPUMicros is the bench process's CPU time per successful operation,
	// client and bare server together, in microseconds (0 where the
	// platform does not report process CPU time).
	CPUMicros float64 `json:"cpuMicrosPerOperation,omitempty"`
	// Ratio is the mode's registrations per second divided by the
	// ceiling's operations per second (0 when the ceiling measured
	// nothing); Target is the ratio aimed at.
	Ratio       float64 `json:"ratio"`
	Target      float64 `json:"target"`
	MeetsTarget bool    `json:"meetsTarget"`
}

// WindowReport is a measured window.
type WindowReport struct {
	Seconds       float64   `json:"seconds"`
	Succeeded     int       `json:"succeeded"`
	Failed        int       `json:"failed"`
	RatePerSecond float64   `json:"ratePerSecond"`
	LatencyMs     LatencyMs `json:"latencyMs"`
	// MachineCPUBusyPercent is how busy the whole machine's CPUs were in
	// the window (every process); absent where the platform does not
	// report it. Well below 100 the run was not CPU-bound.
	MachineCPUBusyPercent float64 `json:"machineCPUBusyPercent,omitempty"`
}

// LatencyMs is a latency Summary in milliseconds.
type LatencyMs struct {
	Count int     `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func windowReport(w Window) WindowReport {
	l := w.Latency
	r := WindowReport{
		Seconds: w.Elapsed.Seconds(), Succeeded: w.Succeeded, Failed: w.Failed, RatePerSecond: w.Rate,
		LatencyMs: LatencyMs{Count: l.Count, Min: ms(l.Min), Mean: ms(l.Mean), P50: ms(l.P50), P90: ms(l.P90), P99: ms(l.P99), Max: ms(l.Max)},
	}
	if w.MachineBusy >= 0 {
		r.MachineCPUBusyPercent = w.MachineBusy * 100
	}
	return r
}

// Run runs the configured modes against srv, each with its ceiling (in
// alternating rounds, Config.Rounds), and returns the report. The enrollment groups it creates are deleted at
// the end unless cfg.KeepGroups; the registration records and hub devices
// stay.
func Run(ctx context.Context, srv Server, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if srv.Service == nil || srv.DeviceEndpoint == "" || srv.IDScope == "" {
		return nil, fmt.Errorf("%w: the server needs a service client, a device endpoint and an ID scope", ErrInvalidConfig)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CeilingDuration == 0 {
		cfg.CeilingDuration = cfg.Duration
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	runID, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	r := &runner{srv: srv, cfg: cfg, out: progress, runID: runID}
	rep := &Report{
		Machine: Machine{
			NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
			OS: runtime.GOOS, Arch: runtime.GOARCH,
		},
		Concurrency: cfg.Concurrency, WarmupSeconds: cfg.Warmup.Seconds(), DurationSeconds: cfg.Duration.Seconds(),
		Rounds: cfg.rounds(),
	}
	if !cfg.SkipCeilings {
		rep.CeilingDurationSeconds = cfg.CeilingDuration.Seconds()
		if r.ceilingID, err = newCeilingIdentity(); err != nil {
			return nil, err
		}
	}
	// The label marks the load generator's CPU samples (every goroutine it
	// starts inherits it), so that a profile of a process running both the
	// server and the bench can be split (go tool pprof -tagignore).
	pprof.Do(ctx, pprof.Labels(ProfileLabel, "load-generator"), func(ctx context.Context) {
		err = r.modes(ctx, rep)
	})
	return rep, err
}

// ProfileLabel is the pprof label key of the bench's goroutines.
const ProfileLabel = "muster.bench"

func (r *runner) modes(ctx context.Context, rep *Report) error {
	for _, mode := range r.cfg.Modes {
		var (
			mr  *ModeReport
			err error
		)
		switch mode {
		case ModeSymmetric:
			mr, err = r.symmetric(ctx)
		case ModeX509:
			mr, err = r.x509(ctx)
		}
		if mr != nil {
			rep.Modes = append(rep.Modes, *mr)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
	}
	return nil
}

// runner holds one Run's state.
type runner struct {
	srv       Server
	cfg       Config
	out       io.Writer
	runID     string
	ceilingID *ceilingIdentity
	mu        sync.Mutex // serialises writes to out
}

func (r *runner) notef(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, format+"\n", args...)
}

// load returns the Load of a phase, reporting progress under label.
func (r *runner) load(label string, ops int, window time.Duration) Load {
	return Load{
		Concurrency: r.cfg.Concurrency, Ops: ops, Warmup: r.cfg.Warmup, Duration: window,
		Classify: ErrorKind,
		Progress: func(p Progress) {
			r.notef("%-32s %5.1fs  %-7s  done %7d  rate %7.0f/s  errors %d", label, p.Elapsed.Seconds(), p.Phase, p.Succeeded, p.Rate, p.Failed)
		},
	}
}

func (r *runner) devices(mode string) int {
	if r.cfg.Devices > 0 {
		return r.cfg.Devices
	}
	return DefaultDevices(mode)
}

func (r *runner) deviceClient() (*spreadClient, error) {
	var sc spreadClient
	for _, ep := range append([]string{r.srv.DeviceEndpoint}, r.srv.MoreDeviceEndpoints...) {
		cl, err := dpsclient.New(dpsclient.Options{
			Endpoint: ep, IDScope: r.srv.IDScope, Transport: dpsclient.TransportHTTPS, RootCAs: r.srv.RootCAs,
			PollImmediately: true, RequestTimeout: r.cfg.Timeout,
		})
		if err != nil {
			sc.Close()
			return nil, fmt.Errorf("create the device client of %s: %w", ep, err)
		}
		sc.clients = append(sc.clients, cl)
	}
	return &sc, nil
}

// putGroup creates an enrollment group and arranges its deletion.
func (r *runner) putGroup(ctx context.Context, g *enroll.EnrollmentGroup) (*enroll.EnrollmentGroup, func(), error) {
	out, err := r.srv.Service.PutGroup(ctx, g, "")
	if err != nil {
		return nil, nil, fmt.Errorf("create enrollment group %s: %w", g.EnrollmentGroupID, err)
	}
	cleanup := func() {
		if r.cfg.KeepGroups {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := r.srv.Service.DeleteGroup(dctx, g.EnrollmentGroupID, ""); err != nil {
			r.notef("warning: delete enrollment group %s: %v", g.EnrollmentGroupID, err)
		}
	}
	return out, cleanup, nil
}

// modeReport assembles a mode's report from its registration result.
func modeReport(mode, group string, devices int, res *Result) *ModeReport {
	return &ModeReport{
		Mode: mode, EnrollmentGroupID: group, Devices: devices, Started: res.Started,
		Assigned: res.Succeeded, Errors: res.Failed, ErrorsByKind: res.Errors, ErrorSamples: res.ErrorSamples,
		Window: windowReport(res.Window), LoadGeneratorCPUMicros: cpuMicrosPerOp(res),
	}
}

// cpuMicrosPerOp is a run's process CPU time per successful operation.
func cpuMicrosPerOp(res *Result) float64 {
	if res.CPU <= 0 || res.Succeeded == 0 {
		return 0
	}
	return float64(res.CPU.Microseconds()) / float64(res.Succeeded)
}

func ceilingReport(name, unit string, target float64, mode *ModeReport, res *Result) *CeilingReport {
	c := &CeilingReport{
		Name: name, Unit: unit, Succeeded: res.Succeeded, Errors: res.Failed,
		ErrorsByKind: res.Errors, ErrorSamples: res.ErrorSamples, Window: windowReport(res.Window), Target: target,
		CPUMicros: cpuMicrosPerOp(res),
	}
	if res.Window.Rate > 0 {
		c.Ratio = mode.Window.RatePerSecond / res.Window.Rate
		c.MeetsTarget = c.Ratio >= target
	}
	return c
}

// symmetric registers symmetric-key group devices and measures the bare
// HMAC ceiling with the same devices, in alternating rounds.
func (r *runner) symmetric(ctx context.Context) (*ModeReport, error) {
	n := r.devices(ModeSymmetric)
	groupID := "bench-sk-" + r.runID
	primary, err := sas.GenerateKey()
	if err != nil {
		return nil, err
	}
	secondary, err := sas.GenerateKey()
	if err != nil {
		return nil, err
	}
	prepStart := time.Now()
	g, cleanup, err := r.putGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: groupID, Common: enroll.Common{
		Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: primary, SecondaryKey: secondary}},
	}})
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if a := g.Attestation; a != nil && a.SymmetricKey != nil && a.SymmetricKey.PrimaryKey != "" {
		primary = a.SymmetricKey.PrimaryKey
	}
	groupKey, err := sas.DecodeKey(primary)
	if err != nil {
		return nil, fmt.Errorf("decode the primary key of enrollment group %s: %w", groupID, err)
	}
	devs := symmetricDevices{ids: make([]string, n), keys: make([]string, n)}
	for i := range n {
		devs.ids[i] = groupID + "-" + strconv.Itoa(i)
		devs.keys[i] = base64.StdEncoding.EncodeToString(sas.Derive(groupKey, devs.ids[i]))
	}
	r.notef("%s: enrollment group %s, %d device keys derived in %v", ModeSymmetric, groupID, n, time.Since(prepStart).Round(time.Millisecond))

	cl, err := r.deviceClient()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	register := func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		out, err := cl.pick(i).Register(ctx, dpsclient.Device{RegistrationID: devs.ids[i], Credential: dpsclient.Credential{SymmetricKey: devs.keys[i]}})
		if err != nil {
			return err
		}
		if out.DeviceID != devs.ids[i] {
			return fmt.Errorf("register %q: %w: %q", devs.ids[i], ErrUnexpectedAssignment, out.DeviceID)
		}
		return nil
	}
	ceiling := func(ctx context.Context, load Load) (*Result, error) {
		return measureHMACCeiling(ctx, load, r.ceilingID, r.srv.IDScope, groupKey, devs, r.cfg.Timeout)
	}
	return r.report(ctx, ModeSymmetric, groupID, n, register, ceiling, "requests/s", TargetSymmetricRatio)
}

// report measures a mode (measure) and assembles its report.
func (r *runner) report(ctx context.Context, mode, group string, devices int, register Op, ceiling func(context.Context, Load) (*Result, error), unit string, target float64) (*ModeReport, error) {
	res, cres, rounds, err := r.measure(ctx, mode, devices, register, ceiling)
	if res == nil {
		return nil, err
	}
	mr := modeReport(mode, group, devices, res)
	if len(rounds) > 1 {
		mr.Rounds = rounds
	}
	if cres != nil {
		mr.Ceiling = ceilingReport(ceilingName(mode), unit, target, mr, cres)
	}
	return mr, err
}

// x509 registers X.509 group devices (chain: device → intermediate, the
// group anchored at the intermediate) and measures the bare mTLS
// handshake ceiling with the same certificates, in alternating rounds.
func (r *runner) x509(ctx context.Context) (*ModeReport, error) {
	n := r.devices(ModeX509)
	groupID := "bench-x509-" + r.runID
	prepStart := time.Now()
	root, err := pki.NewRoot("Muster Bench Root " + r.runID)
	if err != nil {
		return nil, fmt.Errorf("create the bench root CA: %w", err)
	}
	inter, err := root.NewIntermediate("Muster Bench Intermediate " + r.runID)
	if err != nil {
		return nil, fmt.Errorf("create the bench intermediate CA: %w", err)
	}
	ids, certs, err := issueDevices(ctx, inter, groupID, n)
	if err != nil {
		return nil, err
	}
	_, cleanup, err := r.putGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: groupID, Common: enroll.Common{
		Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationX509, X509: &enroll.X509Attestation{
			SigningCertificates: &enroll.X509Certificates{Primary: &enroll.X509CertificateWithInfo{Certificate: string(inter.CertPEM())}},
		}},
	}})
	if err != nil {
		return nil, err
	}
	defer cleanup()
	r.notef("%s: enrollment group %s anchored at an intermediate CA, %d device certificates issued in %v", ModeX509, groupID, n, time.Since(prepStart).Round(time.Millisecond))

	cl, err := r.deviceClient()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	register := func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		out, err := cl.pick(i).Register(ctx, dpsclient.Device{RegistrationID: ids[i], Credential: dpsclient.Credential{Certificate: certs[i]}})
		if err != nil {
			return err
		}
		if out.DeviceID != ids[i] {
			return fmt.Errorf("register %q: %w: %q", ids[i], ErrUnexpectedAssignment, out.DeviceID)
		}
		return nil
	}
	ceiling := func(ctx context.Context, load Load) (*Result, error) {
		return measureMTLSCeiling(ctx, load, r.ceilingID, certs, r.cfg.Timeout)
	}
	return r.report(ctx, ModeX509, groupID, n, register, ceiling, "handshakes/s", TargetX509Ratio)
}

// issueDevices issues n device certificates (CN = registration ID
// "<prefix>-<i>") under inter, in parallel, each with the chain leaf +
// intermediate.
func issueDevices(ctx context.Context, inter *pki.Issued, prefix string, n int) ([]string, []*tls.Certificate, error) {
	ids := make([]string, n)
	certs := make([]*tls.Certificate, n)
	g, gctx := errgroup.WithContext(ctx)
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		g.Go(func() error {
			for i := w; i < n; i += workers {
				if err := gctx.Err(); err != nil {
					return err
				}
				id := prefix + "-" + strconv.Itoa(i)
				d, err := inter.NewDevice(id)
				if err != nil {
					return fmt.Errorf("issue the certificate of device %s: %w", id, err)
				}
				ids[i] = id
				certs[i] = &tls.Certificate{Certificate: [][]byte{d.Cert.Raw, inter.Cert.Raw}, PrivateKey: d.Key, Leaf: d.Cert}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return ids, certs, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a run ID: %w", err)
	}
	return hex.EncodeToString(b), nil
}
