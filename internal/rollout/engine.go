package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/query"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store"
)

// Registry is the hub's registry as the engine reads it and writes
// configuration statuses; *registry.Hub implements it. Its errors are
// package registry's.
type Registry interface {
	GetDevice(ctx context.Context, deviceID string) (*registry.Device, error)
	ListDevices(ctx context.Context, after string, limit int) ([]*registry.Device, error)
	GetTwin(ctx context.Context, deviceID string) (*registry.Twin, error)
	GetModuleTwin(ctx context.Context, deviceID, moduleID string) (*registry.Twin, error)
	// TwinDocument is the service-side twin document conditions are
	// evaluated over.
	TwinDocument(ctx context.Context, deviceID string) (map[string]any, error)
	// ListModuleTwinDocuments returns a device's module twins and their
	// documents, in module ID order.
	ListModuleTwinDocuments(ctx context.Context, deviceID string) ([]*registry.Twin, []map[string]any, error)
	SetConfigurations(ctx context.Context, deviceID, moduleID string, statuses map[string]string, ifMatch string) (*registry.Twin, error)
	// RecordDevice tells which device a stored record belongs to.
	RecordDevice(rec store.Record) (string, bool)
}

// DesiredWriter merge-patches desired properties of device and module
// twins and tells connected clients; *hub.Service implements it (and
// *registry.Hub, which tells nobody).
type DesiredWriter interface {
	PatchTwin(ctx context.Context, deviceID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error)
	PatchModuleTwin(ctx context.Context, deviceID, moduleID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error)
}

// Defaults of Options.
const (
	DefaultWorkers       = 2
	DefaultMaxQueue      = 10000
	DefaultSweepInterval = 5 * time.Minute
	DefaultPageSize      = 500
)

// Options configure an Engine.
type Options struct {
	// Registry reads devices and twins and writes statuses. Required.
	Registry Registry
	// Desired writes desired properties. Required.
	Desired DesiredWriter
	// Configurations is the hub's configuration store; the engine
	// re-evaluates every device when it changes. Required.
	Configurations *Configurations
	// Docs keeps per-device modules content waiting for its modules
	// (applyConfigurationContent). Required.
	Docs store.Docs
	// Workers evaluate queued devices in parallel. Default:
	// DefaultWorkers.
	Workers int
	// MaxQueue bounds the devices waiting for evaluation. Default:
	// DefaultMaxQueue.
	MaxQueue int
	// SweepInterval is how often every device is re-evaluated (Azure
	// re-evaluates configurations every 5 minutes); negative disables the
	// timer. Default: DefaultSweepInterval.
	SweepInterval time.Duration
	// PageSize is how many devices a sweep reads at a time. Default:
	// DefaultPageSize.
	PageSize int
	// Logger receives the engine's logs. Default: discard.
	Logger *slog.Logger
}

// Engine applies a hub's configurations to its twins (see the package
// documentation). It is safe for concurrent use; Run does the work.
type Engine struct {
	o   Options
	log *slog.Logger

	mu sync.Mutex
	// queue holds the devices waiting, oldest first; queued marks them.
	queue  []string
	queued map[string]bool
	// active are the devices being evaluated; again those changed meanwhile.
	active map[string]bool
	again  map[string]bool
	// sweepWanted: a full re-evaluation is due; sweeping: one runs.
	sweepWanted, sweeping bool
	// snap is the configurations the evaluations use; swept is the last
	// snapshot a sweep queued every device under, and settled says those
	// evaluations have all ended.
	snap, swept *snapshot
	settled     bool
	// pendingMaybe: per-device modules content may be waiting for modules;
	// pendingWrites counts the contents stored, so that a reload counting
	// the waiting records does not miss one stored meanwhile.
	pendingMaybe  bool
	pendingWrites int
	// streak counts consecutive evaluations of a device that wrote.
	streak map[string]int
	// idle is closed while there is no work; a new one is made when work
	// arrives.
	idle chan struct{}
	// work wakes a worker, room the sweeper waiting for queue space, sweep
	// the sweeper.
	work, room, sweep chan struct{}
}

// maxWriteStreak is how many evaluations of one device in a row may write
// before the engine stops writing to it until the next sweep: an
// evaluation after the engine's own write finds nothing to change, so a
// longer streak means something else keeps undoing the engine's writes.
const maxWriteStreak = 4

// maxEvalAttempts bounds the re-evaluations of a device whose twin changed
// between read and write.
const maxEvalAttempts = 8

// NewEngine returns an engine; call Run to start it. It registers itself
// with o.Configurations so that configuration changes re-evaluate every
// device.
func NewEngine(o Options) (*Engine, error) {
	switch {
	case o.Registry == nil:
		return nil, errors.New("new deployment engine: Options.Registry is required")
	case o.Desired == nil:
		return nil, errors.New("new deployment engine: Options.Desired is required")
	case o.Configurations == nil:
		return nil, errors.New("new deployment engine: Options.Configurations is required")
	case o.Docs == nil:
		return nil, errors.New("new deployment engine: Options.Docs is required")
	case o.Workers < 0 || o.MaxQueue < 0 || o.PageSize < 0:
		return nil, fmt.Errorf("new deployment engine: Workers %d, MaxQueue %d and PageSize %d must not be negative", o.Workers, o.MaxQueue, o.PageSize)
	}
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	if o.MaxQueue == 0 {
		o.MaxQueue = DefaultMaxQueue
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.PageSize == 0 {
		o.PageSize = DefaultPageSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// The first sweep is due from the start (so that a restart catches up
	// with whatever changed while the server was down): Flush waits for it.
	e := &Engine{o: o, log: o.Logger, queued: map[string]bool{}, active: map[string]bool{}, again: map[string]bool{},
		snap: &snapshot{}, streak: map[string]int{}, idle: make(chan struct{}), sweepWanted: true,
		work: make(chan struct{}, 1), room: make(chan struct{}, 1), sweep: make(chan struct{}, 1)}
	poke(e.sweep)
	o.Configurations.changed = e.Resweep
	return e, nil
}

// Run evaluates every device once, then works until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range e.o.Workers {
		wg.Go(func() { e.worker(ctx) })
	}
	wg.Go(func() { e.sweeper(ctx) })
	wg.Wait()
	return nil
}

// Notify queues a device for evaluation. It never blocks: when the queue
// is full, a full re-evaluation is scheduled instead.
func (e *Engine) Notify(deviceID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.enqueueLocked(deviceID) {
		e.sweepWanted = true
		e.busyLocked()
		poke(e.sweep)
	}
}

// Resweep schedules the re-evaluation of every device, with the
// configurations read afresh.
func (e *Engine) Resweep() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sweepWanted = true
	e.busyLocked()
	poke(e.sweep)
}

// noteRecord queues the device a written record belongs to.
func (e *Engine) noteRecord(rec store.Record) {
	if id, ok := e.o.Registry.RecordDevice(rec); ok {
		e.Notify(id)
	}
}

// Flush waits until no evaluation is queued, running or scheduled, that
// is, until every change made before the call has reached the twins. It
// needs Run to be running and returns ctx's error if ctx ends first.
func (e *Engine) Flush(ctx context.Context) error {
	// Bounded by ctx: each round waits for the engine to become idle.
	for {
		e.mu.Lock()
		idle := e.idle
		done := e.idleLocked()
		e.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("flush the deployment engine: %w", ctx.Err())
		}
	}
}

// enqueueLocked queues a device unless it is queued already (a device
// being evaluated is queued again when that ends); false means the queue
// is full.
func (e *Engine) enqueueLocked(id string) bool {
	switch {
	case e.queued[id]:
		return true
	case e.active[id]:
		e.again[id] = true
		return true
	case len(e.queue) >= e.o.MaxQueue:
		return false
	}
	e.queue = append(e.queue, id)
	e.queued[id] = true
	e.busyLocked()
	poke(e.work)
	return true
}

func (e *Engine) idleLocked() bool {
	return len(e.queue) == 0 && len(e.active) == 0 && !e.sweepWanted && !e.sweeping
}

// busyLocked records that there is work: Flush callers wait from now on.
func (e *Engine) busyLocked() {
	select {
	case <-e.idle:
		e.idle = make(chan struct{})
	default:
	}
}

// maybeIdleLocked wakes Flush callers when the work is done.
func (e *Engine) maybeIdleLocked() {
	if !e.idleLocked() {
		return
	}
	if e.swept == e.snap {
		e.settled = true
	}
	select {
	case <-e.idle:
	default:
		close(e.idle)
	}
}

// poke signals ch without blocking; one pending signal is enough.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// next takes the oldest queued device, waiting for one until ctx ends.
func (e *Engine) next(ctx context.Context) (string, bool) {
	for {
		e.mu.Lock()
		if len(e.queue) > 0 {
			id := e.queue[0]
			e.queue[0] = ""
			e.queue = e.queue[1:]
			delete(e.queued, id)
			e.active[id] = true
			if len(e.queue) > 0 {
				poke(e.work) // let another worker take the next one
			}
			poke(e.room)
			e.mu.Unlock()
			return id, true
		}
		e.mu.Unlock()
		select {
		case <-e.work:
		case <-ctx.Done():
			return "", false
		}
	}
}

// finish ends a device's evaluation and queues it again if it changed
// meanwhile.
func (e *Engine) finish(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.active, id)
	if e.again[id] {
		delete(e.again, id)
		// Bypasses the bound: the device held a place in the queue's
		// accounting while it was active.
		e.queue = append(e.queue, id)
		e.queued[id] = true
		poke(e.work)
	}
	e.maybeIdleLocked()
}

func (e *Engine) worker(ctx context.Context) {
	for {
		id, ok := e.next(ctx)
		if !ok {
			return
		}
		e.process(ctx, id)
		e.finish(id)
	}
}

// process evaluates one device, again when its twins changed between read
// and write.
func (e *Engine) process(ctx context.Context, id string) {
	e.mu.Lock()
	frozen := e.streak[id] >= maxWriteStreak
	e.mu.Unlock()
	for attempt := 1; ; attempt++ {
		wrote, err := e.evaluate(ctx, id, frozen)
		switch {
		case err == nil:
			e.countStreak(id, wrote)
			return
		case ctx.Err() != nil:
			return
		case errors.Is(err, registry.ErrPrecondition) && attempt < maxEvalAttempts:
			continue
		}
		e.log.Error("applying configurations to a device failed; it is tried again at the next change or sweep", "deviceId", id, "err", err)
		return
	}
}

func (e *Engine) countStreak(id string, wrote bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !wrote {
		delete(e.streak, id)
		return
	}
	e.streak[id]++
	if e.streak[id] == maxWriteStreak {
		e.log.Error("the twins of a device keep changing back after configurations were applied; the engine stops writing to them until the next sweep",
			"deviceId", id, "writes", maxWriteStreak)
	}
}

// sweeper runs full re-evaluations when asked and on the timer.
func (e *Engine) sweeper(ctx context.Context) {
	var tick <-chan time.Time
	if e.o.SweepInterval > 0 {
		t := time.NewTicker(e.o.SweepInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.sweep:
		case <-tick:
			e.Resweep()
			continue
		}
		e.mu.Lock()
		if !e.sweepWanted {
			e.mu.Unlock()
			continue
		}
		e.sweepWanted, e.sweeping = false, true
		e.streak = map[string]int{}
		e.mu.Unlock()
		snap, err := e.sweepAll(ctx)
		if err != nil && ctx.Err() == nil {
			e.log.Error("re-evaluating every device failed; it is tried again at the next change or sweep", "err", err)
		}
		e.mu.Lock()
		e.sweeping = false
		if err == nil {
			e.swept = snap
		}
		if e.sweepWanted {
			poke(e.sweep)
		}
		e.maybeIdleLocked()
		e.mu.Unlock()
	}
}

// sweepAll reloads the configurations and queues every device of the hub,
// a page at a time, waiting for room in the queue.
func (e *Engine) sweepAll(ctx context.Context) (*snapshot, error) {
	snap, err := e.reload(ctx)
	if err != nil {
		return nil, err
	}
	if e.nothingToDo() {
		return snap, nil
	}
	after := ""
	for {
		devs, err := e.o.Registry.ListDevices(ctx, after, e.o.PageSize)
		if err != nil {
			return nil, fmt.Errorf("list devices after %q: %w", after, err)
		}
		for _, d := range devs {
			if err := e.enqueueWait(ctx, d.DeviceID); err != nil {
				return nil, err
			}
		}
		if len(devs) < e.o.PageSize {
			return snap, nil
		}
		after = devs[len(devs)-1].DeviceID
	}
}

// enqueueWait queues a device, waiting while the queue is full.
func (e *Engine) enqueueWait(ctx context.Context, id string) error {
	for {
		e.mu.Lock()
		ok := e.enqueueLocked(id)
		e.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-e.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// snapshot is the configurations evaluations use, with their conditions
// parsed once.
type snapshot struct {
	configs []deploy.Configuration
	conds   map[string]query.Expr
	// hasModules: a module configuration (moduleContent) exists.
	hasModules bool
	// modules: module twins must be read for non-edge devices too,
	// because a module configuration exists, or existed in the previous
	// snapshot (its statuses must be removed).
	modules bool
}

// reload reads the configurations into a new snapshot. A configuration
// whose condition does not parse (it was checked when stored, so only a
// record written by another version could) is left out and logged.
func (e *Engine) reload(ctx context.Context) (*snapshot, error) {
	e.mu.Lock()
	writes := e.pendingWrites
	e.mu.Unlock()
	all, err := e.o.Configurations.all(ctx)
	if err != nil {
		return nil, err
	}
	waiting, err := e.o.Docs.Count(ctx, KindPendingContent, e.o.Configurations.hub)
	if err != nil {
		return nil, fmt.Errorf("count the devices with modules content waiting: %w", err)
	}
	s := &snapshot{conds: map[string]query.Expr{}}
	for _, c := range all {
		cond := c.Condition()
		if cond != "*" {
			if _, ok := s.conds[cond]; !ok {
				expr, err := query.ParseCondition(cond)
				if err != nil {
					e.log.Error("configuration left out: its target condition does not parse", "configurationId", c.ID, "err", err)
					continue
				}
				s.conds[cond] = expr
			}
		}
		if c.Kind() == deploy.KindModule {
			s.hasModules = true
		}
		s.configs = append(s.configs, *c)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s.modules = s.hasModules || e.snap.hasModules
	e.pendingMaybe = waiting > 0 || writes != e.pendingWrites
	// Without configurations before and after, and with every device
	// evaluated since, no twin has a status to remove: stay settled, so
	// that identity changes and this sweep cost no store reads.
	keep := e.settled && len(s.configs) == 0 && len(e.snap.configs) == 0 && !s.modules
	e.snap, e.settled = s, keep
	if keep {
		e.swept = s
	}
	return s, nil
}

func (e *Engine) current() *snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.snap
}

// nothingToDo reports that no evaluation can change anything now: there
// are no configurations, every device was evaluated since the last one
// went (so no status is left to remove), and no per-device content waits
// for modules. Identity changes (a connection's presence is one) then
// cost no store read.
func (e *Engine) nothingToDo() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.snap.configs) == 0 && !e.snap.modules && e.settled && !e.pendingMaybe
}

// contentWaits records that per-device content waits for modules.
func (e *Engine) contentWaits() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pendingMaybe = true
	e.pendingWrites++
}

// matcher evaluates conditions of the snapshot against one document.
func (s *snapshot) matcher(doc map[string]any) func(string) (bool, error) {
	return func(cond string) (bool, error) {
		expr, ok := s.conds[cond]
		if !ok {
			return false, fmt.Errorf("condition %q was not parsed", cond)
		}
		return expr.Eval(doc)
	}
}
