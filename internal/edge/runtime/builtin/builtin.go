// Package builtin owns the modules the edge runtime runs inside its own
// process (Muster's edge hub): a runtime.Runtime that serves the module
// names it was given with in-process functions and hands every other module
// to the runtime it wraps (process or docker). The supervisor and reconcile
// see both kinds alike: a built-in module is created, started, stopped and
// removed, reports its state, exit code and start and exit times, is
// restarted under its restart policy, and keeps its log (what the function
// logs) in size-rotated files that Logs reads like a process module's.
//
// A built-in module ignores its image and createOptions: the function is
// the module. It exits with code 0 when its function returns nil (or was
// stopped) and 1 when it returns an error, which becomes the state's
// description.
//
// The package must not import net/http, an MQTT library or a SQL driver.
package builtin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/edge/runtime"
	"github.com/muster-iot/muster/internal/edge/runtime/logfile"
)

// Func runs a built-in module until ctx ends. It logs through log, whose
// records become the module's log.
type Func func(ctx context.Context, log *slog.Logger) error

// ImageHash is the imageHash reported for built-in modules: they are part
// of the runtime's executable.
const ImageHash = "builtin"

const (
	logDir    = "logs"
	logPrefix = "output"
)

// Options configure a Runtime.
type Options struct {
	// Next runs every module that is not built in. Required.
	Next runtime.Runtime
	// Modules maps built-in module names to their functions.
	Modules map[string]Func
	// Dir holds the built-in modules' logs (<Dir>/<name>/logs). Required.
	Dir string
	// LogMaxBytes and LogKeep size each module's log rotation (the
	// logfile defaults when zero).
	LogMaxBytes int64
	LogKeep     int
	// Logger, when not nil, also receives what built-in modules log, with
	// a "module" attribute.
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Runtime runs built-in modules and passes the others on. It implements
// runtime.Runtime and runtime.Notifier.
type Runtime struct {
	opts    Options
	next    runtime.Runtime
	changes chan struct{}
	quit    chan struct{}
	fwd     sync.WaitGroup

	mu     sync.Mutex
	mods   map[string]*module
	closed bool
}

// module is one created built-in module.
type module struct {
	spec       runtime.ModuleSpec
	logs       *logfile.Writer
	state      runtime.State
	exitCode   int
	startedAt  time.Time
	finishedAt time.Time
	desc       string
	cancel     context.CancelFunc
	stopping   bool
	done       chan struct{} // closed when the current run has ended
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns a Runtime.
func New(opts Options) (*Runtime, error) {
	if opts.Next == nil {
		return nil, errors.New("new builtin runtime: Options.Next is required")
	}
	if opts.Dir == "" {
		return nil, errors.New("new builtin runtime: Options.Dir is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Runtime{opts: opts, next: opts.Next, changes: make(chan struct{}, 1), quit: make(chan struct{}), mods: map[string]*module{}}
	if n, ok := opts.Next.(runtime.Notifier); ok {
		r.fwd.Go(func() {
			for {
				select {
				case <-r.quit:
					return
				case <-n.Changes():
					r.notify()
				}
			}
		})
	}
	return r, nil
}

// Changes implements runtime.Notifier: it fires when a built-in module
// exits and when the wrapped runtime's modules change.
func (r *Runtime) Changes() <-chan struct{} { return r.changes }

func (r *Runtime) notify() {
	select {
	case r.changes <- struct{}{}:
	default:
	}
}

// builtin returns the function of a built-in module name.
func (r *Runtime) builtin(name string) (Func, bool) {
	f, ok := r.opts.Modules[name]
	return f, ok
}

// Create records a built-in module (stopped) or creates another one in
// the wrapped runtime.
func (r *Runtime) Create(ctx context.Context, spec runtime.ModuleSpec) error {
	if _, ok := r.builtin(spec.Name); !ok {
		return r.next.Create(ctx, spec)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("create module %s: runtime closed", spec.Name)
	}
	if _, ok := r.mods[spec.Name]; ok {
		return fmt.Errorf("create module %s: %w", spec.Name, runtime.ErrExists)
	}
	w, err := logfile.Open(filepath.Join(r.opts.Dir, spec.Name, logDir), logPrefix, r.opts.LogMaxBytes, r.opts.LogKeep)
	if err != nil {
		return fmt.Errorf("create module %s: %w", spec.Name, err)
	}
	spec.RegistryAuth = nil
	r.mods[spec.Name] = &module{spec: spec, logs: w, state: runtime.StateCreated}
	return nil
}

// Start runs a built-in module's function in a goroutine.
func (r *Runtime) Start(ctx context.Context, name string) error {
	f, ok := r.builtin(name)
	if !ok {
		return r.next.Start(ctx, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.mods[name]
	if !ok {
		return fmt.Errorf("start module %s: %w", name, runtime.ErrNotFound)
	}
	if r.closed {
		return fmt.Errorf("start module %s: runtime closed", name)
	}
	if m.state == runtime.StateRunning {
		return nil
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	m.state, m.startedAt, m.exitCode, m.desc = runtime.StateRunning, r.opts.Now(), 0, ""
	m.cancel, m.done, m.stopping = cancel, done, false
	log := r.moduleLogger(name, m.logs)
	go r.run(name, m, f, runCtx, log, done)
	return nil
}

// moduleLogger logs to the module's log file and to Options.Logger.
func (r *Runtime) moduleLogger(name string, w *logfile.Writer) *slog.Logger {
	h := slog.Handler(slog.NewTextHandler(logfile.NewCapture(w, "stdout", r.opts.Now), &slog.HandlerOptions{Level: slog.LevelInfo}))
	if r.opts.Logger != nil {
		h = slog.NewMultiHandler(h, r.opts.Logger.With("module", name).Handler())
	}
	return slog.New(h)
}

// run runs one start of a module and records its end.
func (r *Runtime) run(name string, m *module, f Func, ctx context.Context, log *slog.Logger, done chan struct{}) {
	defer close(done)
	err := safeCall(f, ctx, log)
	r.mu.Lock()
	m.state, m.finishedAt = runtime.StateExited, r.opts.Now()
	switch {
	case m.stopping || (err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled)):
		m.exitCode, m.desc = 0, ""
	case err != nil:
		m.exitCode, m.desc = 1, err.Error()
		log.Error("module failed", "err", err)
	default:
		m.exitCode, m.desc = 0, ""
	}
	m.cancel()
	r.mu.Unlock()
	r.notify()
}

// safeCall runs f, turning a panic into an error so that a failing
// built-in module ends as a failed module instead of ending the runtime.
func safeCall(f Func, ctx context.Context, log *slog.Logger) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return f(ctx, log)
}

// Stop cancels a built-in module and waits up to grace for its function
// to return.
func (r *Runtime) Stop(ctx context.Context, name string, grace time.Duration) error {
	if _, ok := r.builtin(name); !ok {
		return r.next.Stop(ctx, name, grace)
	}
	r.mu.Lock()
	m, ok := r.mods[name]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("stop module %s: %w", name, runtime.ErrNotFound)
	}
	if m.state != runtime.StateRunning {
		r.mu.Unlock()
		return nil
	}
	m.stopping = true
	m.cancel()
	done := m.done
	r.mu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("stop module %s: still running %v after it was asked to stop", name, grace)
	case <-ctx.Done():
		return fmt.Errorf("stop module %s: %w", name, ctx.Err())
	}
}

// Remove stops a built-in module and deletes it and its logs.
func (r *Runtime) Remove(ctx context.Context, name string) error {
	if _, ok := r.builtin(name); !ok {
		return r.next.Remove(ctx, name)
	}
	if err := r.Stop(ctx, name, 0); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		r.mu.Lock()
		m := r.mods[name]
		r.mu.Unlock()
		if m != nil {
			<-m.done // a module that ignores its context keeps Remove waiting, never leaking a run
		}
	}
	r.mu.Lock()
	m, ok := r.mods[name]
	delete(r.mods, name)
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("remove module %s: %w", name, runtime.ErrNotFound)
	}
	if err := m.logs.Close(); err != nil {
		return fmt.Errorf("remove module %s: %w", name, err)
	}
	if err := os.RemoveAll(filepath.Join(r.opts.Dir, name)); err != nil {
		return fmt.Errorf("remove module %s: %w", name, err)
	}
	return nil
}

// List returns the built-in and the wrapped runtime's modules, sorted by
// name.
func (r *Runtime) List(ctx context.Context) ([]runtime.ModuleState, error) {
	out, err := r.next.List(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	for name, m := range r.mods {
		out = append(out, m.stateOf(name))
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Inspect returns one module's state.
func (r *Runtime) Inspect(ctx context.Context, name string) (runtime.ModuleState, error) {
	if _, ok := r.builtin(name); !ok {
		return r.next.Inspect(ctx, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.mods[name]
	if !ok {
		return runtime.ModuleState{}, fmt.Errorf("inspect module %s: %w", name, runtime.ErrNotFound)
	}
	return m.stateOf(name), nil
}

func (m *module) stateOf(name string) runtime.ModuleState {
	return runtime.ModuleState{
		Name: name, ID: "builtin", Spec: m.spec, ImageHash: ImageHash, State: m.state, ExitCode: m.exitCode,
		StartedAt: m.startedAt, FinishedAt: m.finishedAt, Description: m.desc,
	}
}

// Logs streams a built-in module's log (what its function logged).
func (r *Runtime) Logs(ctx context.Context, name string, opts runtime.LogOptions) (io.ReadCloser, error) {
	if _, ok := r.builtin(name); !ok {
		return r.next.Logs(ctx, name, opts)
	}
	r.mu.Lock()
	m, ok := r.mods[name]
	var done chan struct{}
	if ok && m.state == runtime.StateRunning {
		done = m.done
	}
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("logs of module %s: %w", name, runtime.ErrNotFound)
	}
	if done == nil {
		done = closedChan()
	}
	ro := logfile.ReadOptions{Tail: opts.Tail, Since: opts.Since, Until: opts.Until, Timestamps: opts.Timestamps,
		Follow: opts.Follow, Changed: m.logs.Changed, Done: done}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		pw.CloseWithError(logfile.Copy(ctx, pw, filepath.Join(r.opts.Dir, name, logDir), logPrefix, ro))
	}()
	return &cancelReader{PipeReader: pr, cancel: cancel}, nil
}

func closedChan() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

// cancelReader ends the copy when the reader is closed.
type cancelReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (c *cancelReader) Close() error {
	c.cancel()
	return c.PipeReader.Close()
}

// Close stops every built-in module (waiting up to grace for each) and
// the change forwarding. It does not close the wrapped runtime.
func (r *Runtime) Close(grace time.Duration) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	names := make([]string, 0, len(r.mods))
	for name := range r.mods {
		names = append(names, name)
	}
	r.mu.Unlock()
	var errs []error
	for _, name := range names {
		if err := r.Stop(context.Background(), name, grace); err != nil {
			errs = append(errs, err)
		}
		r.mu.Lock()
		m := r.mods[name]
		r.mu.Unlock()
		if m != nil {
			if err := m.logs.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	close(r.quit)
	r.fwd.Wait()
	return errors.Join(errs...)
}
