// Package supervisor owns the edge agent's module supervision loop: it
// keeps the newest desired $edgeAgent properties, observes the modules
// through a runtime.Runtime, asks reconcile.Plan what to do, executes the
// plan (creating, recreating, stopping and removing modules, and starting
// them group by group in startupOrder, waiting for each group to run before
// the next), keeps the restart bookkeeping the restart policy needs
// (restart count, last restart time, whether the agent itself stopped a
// module), and publishes the reported properties after every pass.
//
// Restart back-off timing follows reconcile.Backoff (Azure's defaults:
// 10 s doubling to 5 min, 20 restarts, reset after 10 min up). The
// bookkeeping lives in memory: after an agent restart every module starts
// with a restart count of 0, as with a freshly started Azure agent.
//
// The package must not import net/http, an MQTT library or a SQL driver;
// the twin connection that feeds SetDesired and consumes reports lives
// elsewhere.
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/edge/reconcile"
	"github.com/muster-iot/muster/internal/edge/runtime"
)

// Defaults for Options fields left zero.
const (
	// DefaultStopGrace is how long a stopping module gets before it is
	// killed.
	DefaultStopGrace = 10 * time.Second
	// DefaultPollInterval is how often the supervisor re-reads the
	// runtime without any event.
	DefaultPollInterval = 30 * time.Second
	// DefaultStartWait bounds the wait for a startup-order group to run.
	DefaultStartWait = 30 * time.Second
	// startPoll is how often a starting group is inspected.
	startPoll = 100 * time.Millisecond
)

// Clock is the supervisor's time source. The default uses the time
// package (which testing/synctest fakes inside a bubble).
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configures a Supervisor.
type Options struct {
	// Runtime runs the modules. Required.
	Runtime runtime.Runtime
	// Env, Platform and AgentVersion are passed to reconcile.Plan.
	Env          reconcile.EdgeEnv
	Platform     reconcile.Platform
	AgentVersion reconcile.AgentVersion
	// Backoff is the restart timing (reconcile.DefaultBackoff when zero).
	Backoff reconcile.Backoff
	// StopGrace, PollInterval and StartWait default to the constants
	// above.
	StopGrace    time.Duration
	PollInterval time.Duration
	StartWait    time.Duration
	// Clock is the time source (the time package when nil).
	Clock Clock
	// Logger receives operational messages (discarded when nil).
	Logger *slog.Logger
	// OnReport, when not nil, is called with the reported properties
	// whenever they change, from the goroutine running the pass. It must
	// not call back into the Supervisor's Reconcile or RestartModule.
	OnReport func(reconcile.Reported)
}

// bookkeeping is the agent's memory of one module.
type bookkeeping struct {
	restartCount   int
	lastRestart    time.Time
	stoppedByAgent bool
}

// Supervisor drives a runtime toward the desired deployment.
type Supervisor struct {
	opts  Options
	rt    runtime.Runtime
	clock Clock
	log   *slog.Logger
	start time.Time
	wake  chan struct{}

	exec sync.Mutex // serialises passes and RestartModule

	mu         sync.Mutex
	desired    *reconcile.Desired
	desiredErr *reconcile.DesiredError
	applyErr   error
	book       map[string]*bookkeeping
	reported   reconcile.Reported
	reportJSON []byte
}

// New returns a Supervisor; it starts nothing until Run or Reconcile.
func New(opts Options) (*Supervisor, error) {
	if opts.Runtime == nil {
		return nil, errors.New("new supervisor: Options.Runtime is required")
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = DefaultStopGrace
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.StartWait <= 0 {
		opts.StartWait = DefaultStartWait
	}
	if opts.Backoff == (reconcile.Backoff{}) {
		opts.Backoff = reconcile.DefaultBackoff()
	}
	clock := opts.Clock
	if clock == nil {
		clock = systemClock{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{
		opts: opts, rt: opts.Runtime, clock: clock, log: log, start: clock.Now(),
		wake: make(chan struct{}, 1), book: map[string]*bookkeeping{},
	}, nil
}

// SetDesired parses the newest $edgeAgent desired properties and wakes the
// loop. An invalid document is remembered for reporting (its code and
// description go to lastDesiredStatus) while the last valid deployment
// keeps running; the parse error is also returned.
func (s *Supervisor) SetDesired(raw []byte) error {
	d, err := reconcile.Parse(raw)
	s.mu.Lock()
	if err != nil {
		var de *reconcile.DesiredError
		if !errors.As(err, &de) {
			de = &reconcile.DesiredError{Code: reconcile.CodeBadConfig, Msg: err.Error()}
		}
		s.desiredErr = de
	} else {
		s.desired, s.desiredErr = d, nil
	}
	s.mu.Unlock()
	s.poke()
	if err != nil {
		return fmt.Errorf("set desired properties: %w", err)
	}
	return nil
}

// SetEnv replaces the device-level module environment (the hub and device
// the modules belong to, their identities' generation IDs and per-module
// variables) and wakes the loop; modules whose environment changes are
// recreated by the next pass.
func (s *Supervisor) SetEnv(env reconcile.EdgeEnv) {
	s.mu.Lock()
	s.opts.Env = env
	s.mu.Unlock()
	s.poke()
}

// poke wakes Run.
func (s *Supervisor) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Reported returns the last published reported properties, and false
// before the first pass.
func (s *Supervisor) Reported() (reconcile.Reported, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reported, s.reportJSON != nil
}

// Run reconciles until ctx ends: after every pass it waits for the next
// back-off or stability deadline, a SetDesired, a runtime change
// notification (runtime.Notifier) or the poll interval. It returns
// ctx.Err(); modules keep running.
func (s *Supervisor) Run(ctx context.Context) error {
	var changes <-chan struct{}
	if n, ok := s.rt.(runtime.Notifier); ok {
		changes = n.Changes()
	}
	for {
		next, err := s.Reconcile(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			s.log.Warn("reconcile pass failed", "err", err)
		}
		wait := s.opts.PollInterval
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(s.clock.Now()), 0))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		case <-changes:
		case <-s.clock.After(wait):
		}
	}
}

// Reconcile runs one pass: observe, plan, execute, observe again and
// publish the report. It returns when planning should run again without
// an outside change (zero for never) and the errors of the pass.
func (s *Supervisor) Reconcile(ctx context.Context) (time.Time, error) {
	s.exec.Lock()
	defer s.exec.Unlock()
	res, err := s.plan(ctx)
	if err != nil {
		return time.Time{}, err
	}
	applyErr := s.execute(ctx, res.Actions)
	s.mu.Lock()
	s.applyErr = applyErr
	s.mu.Unlock()
	if len(res.Actions) > 0 {
		after, err := s.plan(ctx)
		if err != nil {
			return time.Time{}, errors.Join(applyErr, err)
		}
		res = after
	}
	s.publish(res.Reported)
	return res.Next, applyErr
}

// plan observes the runtime and plans.
func (s *Supervisor) plan(ctx context.Context) (reconcile.Result, error) {
	states, err := s.rt.List(ctx)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("list modules: %w", err)
	}
	s.mu.Lock()
	actual := make(map[string]reconcile.Actual, len(states))
	present := make(map[string]bool, len(states))
	for _, st := range states {
		present[st.Name] = true
		a := reconcile.Actual{State: st}
		if b := s.book[st.Name]; b != nil {
			a.RestartCount, a.LastRestartTime, a.StoppedByAgent = b.restartCount, b.lastRestart, b.stoppedByAgent
		}
		actual[st.Name] = a
	}
	for name := range s.book {
		if !present[name] {
			delete(s.book, name)
		}
	}
	in := reconcile.Input{
		Desired:        s.desired,
		DesiredErr:     s.desiredErr,
		ApplyErr:       s.applyErr,
		Actual:         actual,
		Now:            s.clock.Now(),
		AgentStartTime: s.start,
		Backoff:        s.opts.Backoff,
		Env:            s.opts.Env, // under s.mu: SetEnv replaces it
		Platform:       s.opts.Platform,
		AgentVersion:   s.opts.AgentVersion,
	}
	s.mu.Unlock()
	res := reconcile.Plan(in)
	s.mu.Lock()
	for name, n := range res.RestartCounts {
		s.entry(name).restartCount = n
	}
	s.mu.Unlock()
	return res, nil
}

// entry returns the bookkeeping of a module, creating it; s.mu is held.
func (s *Supervisor) entry(name string) *bookkeeping {
	b := s.book[name]
	if b == nil {
		b = &bookkeeping{}
		s.book[name] = b
	}
	return b
}

// publish stores the report and calls OnReport when it changed.
func (s *Supervisor) publish(r reconcile.Reported) {
	b, err := json.Marshal(r)
	if err != nil {
		s.log.Error("encode reported properties", "err", err)
		return
	}
	s.mu.Lock()
	changed := string(b) != string(s.reportJSON)
	s.reported, s.reportJSON = r, b
	s.mu.Unlock()
	if changed && s.opts.OnReport != nil {
		s.opts.OnReport(r)
	}
}

// ignoreNotFound treats a vanished module as done.
func ignoreNotFound(err error) error {
	if errors.Is(err, runtime.ErrNotFound) {
		return nil
	}
	return err
}

// execute runs a plan's actions in order. A failed create or recreate
// skips that module's start; every failure is collected and the rest of
// the plan still runs.
func (s *Supervisor) execute(ctx context.Context, actions []reconcile.Action) error {
	var errs []error
	failed := map[string]bool{}
	for i := 0; i < len(actions); {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		a := actions[i]
		if a.Kind == reconcile.ActionStart || a.Kind == reconcile.ActionRestart {
			j := i
			for j < len(actions) && (actions[j].Kind == reconcile.ActionStart || actions[j].Kind == reconcile.ActionRestart) &&
				actions[j].StartupOrder == a.StartupOrder {
				j++
			}
			errs = append(errs, s.startGroup(ctx, actions[i:j], failed)...)
			i = j
			continue
		}
		s.log.Info("module action", "action", string(a.Kind), "module", a.Module, "reason", a.Reason)
		var err error
		switch a.Kind {
		case reconcile.ActionRemove:
			err = ignoreNotFound(s.rt.Stop(ctx, a.Module, s.opts.StopGrace))
			if err == nil {
				err = ignoreNotFound(s.rt.Remove(ctx, a.Module))
			}
			if err == nil {
				s.mu.Lock()
				delete(s.book, a.Module)
				s.mu.Unlock()
			}
		case reconcile.ActionStop:
			err = s.rt.Stop(ctx, a.Module, s.opts.StopGrace)
			if err == nil {
				s.mu.Lock()
				s.entry(a.Module).stoppedByAgent = true
				s.mu.Unlock()
			}
		case reconcile.ActionCreate:
			err = s.rt.Create(ctx, a.Spec)
		case reconcile.ActionRecreate:
			err = ignoreNotFound(s.rt.Stop(ctx, a.Module, s.opts.StopGrace))
			if err == nil {
				err = ignoreNotFound(s.rt.Remove(ctx, a.Module))
			}
			if err == nil {
				s.mu.Lock()
				s.book[a.Module] = &bookkeeping{}
				s.mu.Unlock()
				err = s.rt.Create(ctx, a.Spec)
			}
		default:
			err = fmt.Errorf("unknown action %q", a.Kind)
		}
		if err != nil {
			failed[a.Module] = true
			errs = append(errs, fmt.Errorf("%s module %s: %w", a.Kind, a.Module, err))
		}
		i++
	}
	return errors.Join(errs...)
}

// startGroup starts one startup-order group and waits, up to StartWait,
// until each started module runs or has already exited.
func (s *Supervisor) startGroup(ctx context.Context, group []reconcile.Action, failed map[string]bool) []error {
	var errs []error
	var started []string
	for _, a := range group {
		if failed[a.Module] {
			continue
		}
		s.log.Info("module action", "action", string(a.Kind), "module", a.Module, "startupOrder", a.StartupOrder, "reason", a.Reason)
		if err := s.rt.Start(ctx, a.Module); err != nil {
			errs = append(errs, fmt.Errorf("%s module %s: %w", a.Kind, a.Module, err))
			if a.Kind == reconcile.ActionRestart {
				// A failed restart attempt still counts toward back-off.
				s.countRestart(a.Module)
			}
			continue
		}
		if a.Kind == reconcile.ActionRestart {
			s.countRestart(a.Module)
		}
		s.mu.Lock()
		s.entry(a.Module).stoppedByAgent = false
		s.mu.Unlock()
		started = append(started, a.Module)
	}
	if len(started) > 0 {
		s.waitRunning(ctx, started)
	}
	return errs
}

func (s *Supervisor) countRestart(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.entry(name)
	b.restartCount++
	b.lastRestart = s.clock.Now()
}

// waitRunning polls until every named module runs or has already ended
// (a module that crashes at once must not hold up the next group), or
// StartWait passes.
func (s *Supervisor) waitRunning(ctx context.Context, names []string) {
	deadline := s.clock.Now().Add(s.opts.StartWait)
	pending := names
	for {
		var still []string
		for _, name := range pending {
			st, err := s.rt.Inspect(ctx, name)
			if err != nil {
				continue // gone or unreadable: nothing to wait for
			}
			if st.State == runtime.StateCreated || st.State == runtime.StateUnknown {
				still = append(still, name)
			}
		}
		if len(still) == 0 {
			return
		}
		if !s.clock.Now().Before(deadline) {
			s.log.Warn("modules did not start in time; starting the next group", "modules", still, "waited", s.opts.StartWait)
			return
		}
		pending = still
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(startPoll):
		}
	}
}

// RestartModule stops and starts a module now (the $edgeAgent
// RestartModule direct method). It does not count toward the restart
// policy's back-off but is recorded as the last restart time.
func (s *Supervisor) RestartModule(ctx context.Context, name string) error {
	s.exec.Lock()
	defer s.exec.Unlock()
	if name == reconcile.EdgeAgent {
		return fmt.Errorf("restart module %s: the agent cannot restart itself", name)
	}
	if _, err := s.rt.Inspect(ctx, name); err != nil {
		return fmt.Errorf("restart module %s: %w", name, err)
	}
	if err := s.rt.Stop(ctx, name, s.opts.StopGrace); err != nil {
		return fmt.Errorf("restart module %s: %w", name, err)
	}
	if err := s.rt.Start(ctx, name); err != nil {
		return fmt.Errorf("restart module %s: %w", name, err)
	}
	s.mu.Lock()
	b := s.entry(name)
	b.lastRestart, b.stoppedByAgent = s.clock.Now(), false
	s.mu.Unlock()
	s.poke()
	return nil
}
