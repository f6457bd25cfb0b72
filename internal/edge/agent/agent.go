// Package agent owns Muster's edge agent: the $edgeAgent side of the
// device's link to its IoT hub. It connects as the $edgeAgent module
// (hub-edge-protocol §2), reads the $edgeAgent desired properties on every
// connect and every desired-property notification, creates the module
// identities a deployment needs through the device-credential module API
// (§4.9, managedBy "IotEdge"; identities it created for modules no longer
// deployed are deleted), gives each module its environment (the IoT Edge
// variables plus EdgeHubConnectionString with its key and
// EdgeModuleCACertificateFile) and hands the deployment to the supervisor.
// It writes the supervisor's reports to the $edgeAgent reported
// properties (§5.6) as merge patches, and answers the $edgeAgent direct
// methods ping and RestartModule (§5.7).
//
// It is an adapter package over internal/edge/iothub; the decisions stay
// in internal/edge/reconcile and the supervision loop in
// internal/edge/runtime/supervisor.
package agent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/edge/iothub"
	"github.com/muster-iot/muster/internal/edge/reconcile"
)

// ModuleID is the edge agent's module identity.
const ModuleID = "$edgeAgent"

// Retry timing.
const (
	retryMin = 5 * time.Second
	retryMax = 5 * time.Minute
	// methodTimeout bounds a direct method's work.
	methodTimeout = time.Minute
)

// Supervisor is what the agent drives; *supervisor.Supervisor implements
// it.
type Supervisor interface {
	SetDesired(raw []byte) error
	SetEnv(env reconcile.EdgeEnv)
	RestartModule(ctx context.Context, name string) error
}

// Options configure an Agent.
type Options struct {
	// Hub and DeviceID name the edge device's hub identity.
	Hub, DeviceID string
	// HubMQTTAddr is the hub's MQTT address (host:port).
	HubMQTTAddr string
	// RootCAs verify the hub.
	RootCAs *x509.CertPool
	// Store holds the module identities. Required.
	Store *Store
	// Supervisor runs the modules. Required.
	Supervisor Supervisor
	// Env is the device-level module environment; the agent adds the
	// generation IDs and the per-module variables.
	Env reconcile.EdgeEnv
	// ModuleEnv returns the variables only module m gets (its connection
	// string); nil gives none.
	ModuleEnv func(m *iothub.Module) (map[string]string, error)
	// OnApplied, when not nil, is called with every deployment handed to
	// the supervisor and the environment it runs with, so that the daemon
	// can start it again before it is connected (a restart while the hub
	// is unreachable).
	OnApplied func(raw json.RawMessage, env reconcile.EdgeEnv)
	// ClientType is the DeviceClientType of the connection.
	ClientType string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Logger receives the agent's logs.
	Logger *slog.Logger
}

// Agent is the running edge agent of one hub assignment.
type Agent struct {
	opts   Options
	log    *slog.Logger
	report chan struct{}

	mu       sync.Mutex
	latest   []byte // newest report from the supervisor
	cli      *iothub.Client
	applied  int64
	applyErr string
}

// New returns an Agent; it connects in Run.
func New(opts Options) (*Agent, error) {
	if opts.Store == nil || opts.Supervisor == nil || opts.Hub == "" || opts.DeviceID == "" || opts.HubMQTTAddr == "" {
		return nil, errors.New("new agent: Hub, DeviceID, HubMQTTAddr, Store and Supervisor are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{opts: opts, log: log, report: make(chan struct{}, 1)}, nil
}

// Report hands the agent the supervisor's newest reported properties
// (supervisor.Options.OnReport); they are written to the twin as soon as
// the agent is connected. It never blocks.
func (a *Agent) Report(r reconcile.Reported) {
	b, err := json.Marshal(r)
	if err != nil {
		a.log.Error("encode the reported properties", "err", err)
		return
	}
	a.mu.Lock()
	a.latest = b
	a.mu.Unlock()
	a.poke(a.report)
}

func (a *Agent) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Status is what the agent knows of its link, for `iotedge system status`.
type Status struct {
	Connection iothub.State
	// AppliedVersion is the $version of the last desired properties handed
	// to the supervisor (0 before any).
	AppliedVersion int64
	// Error is why the last desired properties could not be applied
	// (module identities), "" when they were.
	Error string
}

// Status returns the agent's state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{AppliedVersion: a.applied, Error: a.applyErr}
	if a.cli != nil {
		s.Connection = a.cli.State()
	}
	return s
}

// Run keeps the $edgeAgent session up until ctx ends, reading the $edgeAgent
// identity again when the hub refuses its key.
func (a *Agent) Run(ctx context.Context) error {
	delay := retryMin
	refresh := false
	for ctx.Err() == nil {
		err := a.session(ctx, refresh)
		if ctx.Err() != nil {
			break
		}
		refresh = errors.Is(err, iothub.ErrRejected)
		a.log.Warn("the $edgeAgent session ended; retrying", "err", err, "retryIn", delay)
		if !sleep(ctx, jitter(delay)) {
			break
		}
		delay = min(delay*2, retryMax)
	}
	return ctx.Err()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func jitter(d time.Duration) time.Duration { return d*3/4 + rand.N(d/2+1) }

// session runs one $edgeAgent connection until it is refused or ctx ends.
func (a *Agent) session(ctx context.Context, refresh bool) error {
	get := a.opts.Store.Module
	if refresh {
		get = a.opts.Store.Refresh
	}
	m, err := get(ctx, ModuleID)
	if err != nil {
		return fmt.Errorf("read the %s identity: %w", ModuleID, err)
	}
	key, err := m.PrimaryKey()
	if err != nil {
		return err
	}
	resync := make(chan struct{}, 1)
	methods := make(chan methodCall, 8)
	cli, err := iothub.New(iothub.Options{
		Identity:      iothub.Identity{Hub: a.opts.Hub, DeviceID: a.opts.DeviceID, ModuleID: ModuleID, Key: key},
		Addr:          a.opts.HubMQTTAddr,
		RootCAs:       a.opts.RootCAs,
		ClientType:    a.opts.ClientType,
		Subscriptions: []iothub.Subscription{{Filter: iothub.DesiredFilter}, {Filter: iothub.MethodsFilter}},
		OnMessage: func(topic string, payload []byte) {
			if _, ok := iothub.ParseDesiredTopic(topic); ok {
				a.poke(resync)
				return
			}
			if req, err := iothub.ParseMethodTopic(topic); err == nil {
				select {
				case methods <- methodCall{req: req, payload: append([]byte(nil), payload...)}:
				default:
					a.log.Warn("direct method dropped: too many in progress", "method", req.Name)
				}
			}
		},
		OnConnect: func(context.Context) { a.poke(resync) },
		Now:       a.opts.Now,
		Logger:    a.log,
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.cli = cli
	a.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { a.work(sctx, cli, resync) })
	wg.Go(func() {
		for {
			select {
			case <-sctx.Done():
				return
			case call := <-methods:
				a.answer(sctx, cli, call)
			}
		}
	})
	return cli.Run(sctx)
}

// work applies desired properties and writes reports for one session.
func (a *Agent) work(ctx context.Context, cli *iothub.Client, resync chan struct{}) {
	var baseline map[string]any // the reported properties the hub holds
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	delay := retryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-resync:
		case <-retry.C:
		case <-a.report:
			if baseline != nil {
				baseline = a.pushReport(ctx, cli, baseline)
			}
			continue
		}
		twin, err := cli.GetTwin(ctx)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("read the $edgeAgent twin", "err", err)
				retry.Reset(jitter(delay))
				delay = min(delay*2, retryMax)
			}
			continue
		}
		baseline = decodeObject(twin.Reported)
		if err := a.apply(ctx, twin.Desired); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("apply the $edgeAgent desired properties; retrying", "err", err, "retryIn", delay)
			retry.Reset(jitter(delay))
			delay = min(delay*2, retryMax)
		} else {
			delay = retryMin
		}
		baseline = a.pushReport(ctx, cli, baseline)
	}
}

// pushReport writes the newest report as a merge patch against baseline
// and returns the new baseline.
func (a *Agent) pushReport(ctx context.Context, cli *iothub.Client, baseline map[string]any) map[string]any {
	a.mu.Lock()
	latest := a.latest
	a.mu.Unlock()
	if latest == nil {
		return baseline
	}
	next := decodeObject(latest)
	patch := mergePatch(baseline, next)
	if patch == nil {
		return baseline
	}
	b, err := json.Marshal(patch)
	if err != nil {
		a.log.Error("encode the reported patch", "err", err)
		return baseline
	}
	if _, err := cli.PatchReported(ctx, b); err != nil {
		if ctx.Err() == nil {
			a.log.Info("write the $edgeAgent reported properties; retrying with the next report or connect", "err", err)
		}
		return baseline
	}
	return next
}

// apply creates the module identities the desired properties need, sets
// the modules' environment and hands the deployment to the supervisor,
// then deletes the identities of modules no longer deployed. Desired
// properties that do not parse go to the supervisor as they are: it
// reports why and keeps the running deployment.
func (a *Agent) apply(ctx context.Context, raw json.RawMessage) error {
	d, perr := reconcile.Parse(raw)
	if perr != nil {
		_ = a.opts.Supervisor.SetDesired(raw) // records the rejection for the report
		a.setApplied(0, "")
		var de *reconcile.DesiredError
		if errors.As(perr, &de) && de.Code == reconcile.CodeEmptyConfig {
			a.log.Info("no deployment in the $edgeAgent desired properties yet")
			return nil
		}
		a.log.Warn("the $edgeAgent desired properties are invalid; the running deployment stays", "err", perr)
		return nil
	}
	names := make([]string, 0, len(d.Modules))
	for name := range d.Modules {
		names = append(names, name)
	}
	sort.Strings(names)
	env := a.opts.Env
	env.GenerationIDs = map[string]string{}
	env.ModuleEnv = map[string]map[string]string{}
	if hub, ok := a.opts.Store.Cached("$edgeHub"); ok {
		env.GenerationIDs[reconcile.EdgeHub] = hub.GenerationID
	}
	var errs []error
	for _, name := range names {
		m, err := a.opts.Store.Ensure(ctx, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		env.GenerationIDs[name] = m.GenerationID
		if a.opts.ModuleEnv != nil {
			vars, err := a.opts.ModuleEnv(m)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			env.ModuleEnv[name] = vars
		}
	}
	if err := errors.Join(errs...); err != nil {
		// The running deployment stays until every module has its
		// identity: a module without one could not connect.
		a.setApplied(a.Status().AppliedVersion, err.Error())
		return err
	}
	a.opts.Supervisor.SetEnv(env)
	if err := a.opts.Supervisor.SetDesired(raw); err != nil {
		return err // Parse accepted it, so this does not happen
	}
	a.setApplied(d.Version, "")
	a.log.Info("deployment applied", "version", d.Version, "modules", names)
	if a.opts.OnApplied != nil {
		a.opts.OnApplied(raw, env)
	}
	keep := map[string]bool{}
	for _, n := range names {
		keep[n] = true
	}
	deleted, err := a.opts.Store.Prune(ctx, keep)
	if len(deleted) > 0 {
		a.log.Info("deleted the identities of modules no longer deployed", "modules", deleted)
	}
	if err != nil {
		a.log.Warn("delete module identities", "err", err)
	}
	return nil
}

func (a *Agent) setApplied(version int64, errText string) {
	a.mu.Lock()
	a.applied, a.applyErr = version, errText
	a.mu.Unlock()
}

// methodCall is one direct method request.
type methodCall struct {
	req     iothub.MethodRequest
	payload []byte
}

// answer runs a direct method and publishes its response.
func (a *Agent) answer(ctx context.Context, cli *iothub.Client, call methodCall) {
	ctx, cancel := context.WithTimeout(ctx, methodTimeout)
	defer cancel()
	status, body := a.method(ctx, call.req.Name, call.payload)
	b, err := json.Marshal(body)
	if err != nil {
		status, b = 500, []byte(`{"message":"encode the answer"}`)
	}
	if err := cli.Publish(ctx, iothub.MethodResponseTopic(status, call.req.RID), b, 0); err != nil {
		a.log.Info("answer a direct method", "method", call.req.Name, "err", err)
	}
}

// method runs the $edgeAgent direct methods.
func (a *Agent) method(ctx context.Context, name string, payload []byte) (int, any) {
	switch name {
	case "ping":
		return 200, nil
	case "RestartModule":
		var req struct {
			SchemaVersion string `json:"schemaVersion"`
			ID            string `json:"id"`
		}
		if err := json.Unmarshal(payload, &req); err != nil || req.ID == "" {
			return 400, map[string]string{"message": `the payload must be {"schemaVersion":"1.0","id":"<module>"}`}
		}
		if err := a.opts.Supervisor.RestartModule(ctx, req.ID); err != nil {
			return 400, map[string]string{"message": err.Error()}
		}
		a.log.Info("module restarted by direct method", "module", req.ID)
		return 200, nil
	}
	return 501, map[string]string{"message": fmt.Sprintf("method %q is not implemented by Muster's edge agent (ping and RestartModule are)", name)}
}
