package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/edge/agent"
	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/edge/iothub"
	"github.com/muster-iot/muster/internal/edge/mgmt"
	"github.com/muster-iot/muster/internal/edge/provisioning"
	"github.com/muster-iot/muster/internal/edge/reconcile"
	"github.com/muster-iot/muster/internal/sas"
)

// Timing of provisioning and the hub link.
const (
	// provisionRetryMin and provisionRetryMax bound the pause between
	// failed provisioning attempts at start.
	provisionRetryMin = 5 * time.Second
	provisionRetryMax = 5 * time.Minute
	// rejectPauseMin and rejectPauseMax bound the pause before
	// registering again after the hub refused the device, when the
	// previous refusal was recent: a hub that keeps refusing a freshly
	// registered device must not turn into a registration storm.
	rejectPauseMin = 10 * time.Second
	rejectPauseMax = 10 * time.Minute
	// stableSession is how long a session must last for the refusal pause
	// to start again from its minimum.
	stableSession = 10 * time.Minute
	// unreachableAfter is how long the hub must stay unreachable before
	// the daemon asks provisioning (OnErrorOnly registers again then).
	unreachableAfter = 10 * time.Minute
	// watchEvery is how often the session checks its device connection.
	watchEvery = 30 * time.Second
)

// assignment is the hub identity the daemon runs as.
type assignment struct {
	hub, deviceID, registrationID string
	provisionedAt                 time.Time
	key                           []byte
	cert                          *tls.Certificate
	registered, changed           bool
	why                           string
}

// source gets assignments: DPS through the provisioner, or the
// connection string of manual provisioning.
type source interface {
	ensure(ctx context.Context, reason provisioning.Reason) (*assignment, error)
	kind() string
}

// newSource returns the assignment source of the configuration.
func (d *Daemon) newSource() (source, error) {
	cfg := d.cfg
	switch cfg.Provisioning.Source {
	case config.SourceManual:
		cs, err := sas.ParseConnectionString(cfg.Provisioning.ConnectionString)
		if err != nil {
			return nil, fmt.Errorf("provisioning.connection_string: %w", err)
		}
		key, err := sas.DecodeKey(cs.SharedAccessKey)
		if err != nil {
			return nil, fmt.Errorf("provisioning.connection_string: SharedAccessKey: %w", err)
		}
		return manualSource{a: assignment{hub: cs.HostName, deviceID: cs.DeviceID, key: key, why: "manual provisioning (connection string)"}}, nil
	default:
		p, err := provisioning.New(provisioning.Options{Config: cfg, Logger: d.log.With("component", "provisioning")})
		if err != nil {
			return nil, err
		}
		s := &dpsSource{p: p}
		switch cfg.Provisioning.Attestation.Method {
		case config.MethodSymmetricKey:
			if s.key, err = cfg.SymmetricKey(); err != nil {
				return nil, err
			}
		case config.MethodX509:
			cert, err := cfg.IdentityCertificate()
			if err != nil {
				return nil, err
			}
			s.cert = &cert
		}
		return s, nil
	}
}

type manualSource struct{ a assignment }

func (m manualSource) kind() string { return config.SourceManual }

func (m manualSource) ensure(_ context.Context, reason provisioning.Reason) (*assignment, error) {
	if reason == provisioning.Manual {
		return nil, fmt.Errorf("%w: the device is provisioned manually (provisioning.source = \"manual\"); there is no DPS to register with", mgmt.ErrUnavailable)
	}
	a := m.a
	return &a, nil
}

type dpsSource struct {
	p    *provisioning.Provisioner
	key  []byte
	cert *tls.Certificate
}

func (s *dpsSource) kind() string { return config.SourceDPS }

func (s *dpsSource) ensure(ctx context.Context, reason provisioning.Reason) (*assignment, error) {
	pa, err := s.p.Ensure(ctx, reason)
	if err != nil {
		return nil, err
	}
	return &assignment{
		hub: pa.Hub, deviceID: pa.DeviceID, registrationID: pa.RegistrationID, provisionedAt: pa.ProvisionedAt,
		key: s.key, cert: s.cert, registered: pa.Registered, changed: pa.Changed, why: pa.Why,
	}, nil
}

// request is a management request the loop serves.
type request struct {
	reply chan reprovisionResult
}

type reprovisionResult struct {
	res mgmt.Reprovisioned
	err error
}

// ensure asks the source and records the outcome for the status.
func (d *Daemon) ensure(ctx context.Context, src source, reason provisioning.Reason) (*assignment, error) {
	d.mu.Lock()
	d.prov.State = "provisioning"
	d.mu.Unlock()
	a, err := src.ensure(ctx, reason)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		if d.prov.Hub != "" {
			d.prov.State = "assigned"
		} else {
			d.prov.State = "failed"
		}
		d.prov.Error = err.Error()
		return nil, err
	}
	d.prov = mgmt.Provisioning{Source: src.kind(), State: "assigned", Hub: a.hub, DeviceID: a.deviceID, RegistrationID: a.registrationID, ProvisionedAt: a.provisionedAt}
	d.log.Info("hub assignment", "reason", reason.String(), "hub", a.hub, "deviceId", a.deviceID, "registered", a.registered, "changed", a.changed, "why", a.why)
	return a, nil
}

// sleep waits d, or until ctx ends, answering management requests
// meanwhile with "not now"; it reports whether ctx is still live.
func (d *Daemon) sleep(ctx context.Context, pause time.Duration) bool {
	t := time.NewTimer(pause*3/4 + rand.N(pause/2+1))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case r := <-d.requests:
			r.reply <- reprovisionResult{err: fmt.Errorf("%w: the daemon is provisioning; try again later", mgmt.ErrUnavailable)}
		}
	}
}

// loop provisions, then runs one session per assignment until ctx ends or
// a restart is asked for.
func (d *Daemon) loop(ctx context.Context, wg *sync.WaitGroup) error {
	src, err := d.newSource()
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.prov = mgmt.Provisioning{Source: src.kind(), State: "provisioning"}
	d.mu.Unlock()
	var a *assignment
	for delay := provisionRetryMin; a == nil; delay = min(delay*2, provisionRetryMax) {
		if a, err = d.ensure(ctx, src, provisioning.Startup); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.log.Error("provisioning failed; retrying", "err", err, "retryIn", delay)
			if !d.sleep(ctx, delay) {
				return ctx.Err()
			}
		}
	}
	d.seedSupervisor(a)

	rejectPause := rejectPauseMin
	supervising := false
	for {
		s, err := d.startSession(ctx, a)
		if err != nil {
			return err
		}
		if !supervising {
			// Only now: the edge hub needs the session's context.
			wg.Go(func() { _ = d.sup.Run(ctx) })
			supervising = true
		}
		ev := s.wait(ctx, d)
		s.stop()
		var next *assignment
		switch ev.kind {
		case evDone:
			return ctx.Err()
		case evRestart:
			return errRestart
		case evRejected:
			if time.Since(s.started) >= stableSession {
				rejectPause = rejectPauseMin
			} else {
				d.log.Warn("the hub refused the device again soon after; pausing before registering", "pause", rejectPause)
				if !d.sleep(ctx, rejectPause) {
					return ctx.Err()
				}
				rejectPause = min(rejectPause*2, rejectPauseMax)
			}
			next, err = d.ensure(ctx, src, provisioning.HubRejected)
		case evUnreachable:
			next, err = d.ensure(ctx, src, provisioning.HubUnreachable)
		case evReprovision:
			next, err = d.ensure(ctx, src, provisioning.Manual)
			res := reprovisionResult{err: err}
			if err == nil {
				res.res = mgmt.Reprovisioned{Hub: next.hub, DeviceID: next.deviceID, Registered: next.registered, Changed: next.changed, Why: next.why}
			}
			ev.reply <- res
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.log.Error("provisioning failed; staying with the current assignment", "err", err, "hub", a.hub, "deviceId", a.deviceID)
			continue
		}
		a = next
	}
}

// Session events.
const (
	evDone = iota + 1
	evRestart
	evRejected
	evUnreachable
	evReprovision
)

type event struct {
	kind  int
	reply chan reprovisionResult
}

// hubContext is what the built-in edge hub runs with.
type hubContext struct {
	hub, deviceID string
	mqttAddr      string
	roots         *x509.CertPool
	store         *agent.Store
}

// session is the daemon's link to one assignment: the device connection,
// the agent and the edge hub's context.
type session struct {
	a        *assignment
	started  time.Time
	device   *iothub.Client
	agent    *agent.Agent
	modules  *iothub.Modules
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	rejected chan error
}

// startSession starts the connections of one assignment.
func (d *Daemon) startSession(ctx context.Context, a *assignment) (*session, error) {
	cfg := d.cfg
	roots, err := cfg.TrustBundle()
	if err != nil {
		return nil, err
	}
	mqttPort, httpsPort := cfg.HubPorts()
	id := iothub.Identity{Hub: a.hub, DeviceID: a.deviceID, Key: a.key, Certificate: a.cert}
	mqttAddr := net.JoinHostPort(a.hub, strconv.Itoa(mqttPort))
	modules, err := iothub.NewModules(iothub.ModulesOptions{Device: id, Addr: net.JoinHostPort(a.hub, strconv.Itoa(httpsPort)), RootCAs: roots})
	if err != nil {
		return nil, err
	}
	s := &session{a: a, started: time.Now(), modules: modules, rejected: make(chan error, 1)}
	store := agent.NewStore(modules)
	clientType := "muster-iotedge/" + d.opts.Version
	s.device, err = iothub.New(iothub.Options{Identity: id, Addr: mqttAddr, RootCAs: roots, ClientType: clientType, Logger: d.log.With("component", "device")})
	if err != nil {
		return nil, err
	}
	base := d.baseEnv(a)
	s.agent, err = agent.New(agent.Options{
		Hub: a.hub, DeviceID: a.deviceID, HubMQTTAddr: mqttAddr, RootCAs: roots, Store: store, Supervisor: d.sup,
		Env: base, ModuleEnv: d.moduleEnv(a), OnApplied: d.saveBackup, ClientType: clientType,
		Logger: d.log.With("component", "agent"),
	})
	if err != nil {
		return nil, err
	}
	if !d.envMatches(a) {
		d.sup.SetEnv(base)
		d.setEnvOf(a)
	}
	sctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.wg.Go(func() {
		if err := s.device.Run(sctx); errors.Is(err, iothub.ErrRejected) {
			s.rejected <- err
		}
	})
	s.wg.Go(func() { _ = s.agent.Run(sctx) })
	if r, ok := d.sup.Reported(); ok {
		// The supervisor reports changes only: give the new agent the
		// current state to write once it is connected.
		s.agent.Report(r)
	}
	d.mu.Lock()
	d.sess = s
	d.mu.Unlock()
	d.switchEdgeHub(ctx, &hubContext{hub: a.hub, deviceID: a.deviceID, mqttAddr: mqttAddr, roots: roots, store: store})
	return s, nil
}

// stop ends the session's connections.
func (s *session) stop() {
	s.cancel()
	s.wg.Wait()
	s.modules.Close()
}

// wait returns the event that ends the session.
func (s *session) wait(ctx context.Context, d *Daemon) event {
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	lastAsked := s.started
	for {
		select {
		case <-ctx.Done():
			return event{kind: evDone}
		case <-d.restartCh:
			return event{kind: evRestart}
		case err := <-s.rejected:
			d.log.Warn("the hub refused the device", "err", err)
			return event{kind: evRejected}
		case r := <-d.requests:
			return event{kind: evReprovision, reply: r.reply}
		case now := <-tick.C:
			st := s.device.State()
			down := st.Since
			if down.IsZero() {
				down = s.started
			}
			if !st.Connected && st.Attempts > 0 && now.Sub(down) >= unreachableAfter && now.Sub(lastAsked) >= unreachableAfter {
				lastAsked = now
				d.log.Warn("the hub has been unreachable; asking provisioning", "since", down, "err", st.LastError)
				return event{kind: evUnreachable}
			}
		}
	}
}

// baseEnv is the device-level module environment of an assignment.
func (d *Daemon) baseEnv(a *assignment) reconcile.EdgeEnv {
	host := d.cfg.Hostname
	if host == "" {
		host = d.edgeHub.gateway
	}
	return reconcile.EdgeEnv{
		DeviceID: a.deviceID, IoTHubHostName: a.hub, GatewayHostName: d.edgeHub.gateway, EdgeDeviceHostName: host,
	}
}

// moduleEnv returns the variables of one module: its connection string
// through the edge hub (EdgeHubConnectionString, which the SDKs'
// ModuleClient.fromEnvironment reads) and the edge CA that verifies the
// edge hub (EdgeModuleCACertificateFile).
func (d *Daemon) moduleEnv(a *assignment) func(m *iothub.Module) (map[string]string, error) {
	return func(m *iothub.Module) (map[string]string, error) {
		key, err := m.PrimaryKey()
		if err != nil {
			return nil, err
		}
		cs := sas.ConnectionString{HostName: a.hub, DeviceID: a.deviceID, ModuleID: m.ModuleID,
			SharedAccessKey: base64.StdEncoding.EncodeToString(key), GatewayHostName: d.edgeHub.gatewayHostName()}
		return map[string]string{
			"EdgeHubConnectionString":     cs.String(),
			"EdgeModuleCACertificateFile": d.ca.CertPath(),
		}, nil
	}
}

// envMatches reports whether the supervisor's environment is that of
// assignment a already (the same hub and device).
func (d *Daemon) envMatches(a *assignment) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.envHub == a.hub && d.envDevice == a.deviceID
}

func (d *Daemon) setEnvOf(a *assignment) {
	d.mu.Lock()
	d.envHub, d.envDevice = a.hub, a.deviceID
	d.mu.Unlock()
}
