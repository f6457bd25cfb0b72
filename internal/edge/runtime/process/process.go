// Package process owns the default module runtime of the edge agent: every
// module is a supervised child process of the agent.
//
// A module's settings.image names its executable, in one of three forms:
// an absolute path ("/usr/local/bin/sensor", `C:\modules\sensor.exe`), a
// process URI with an absolute path ("process:///usr/local/bin/sensor",
// "process:///C:/modules/sensor.exe"), or a bare executable name without
// any path separator, looked up in the agent's PATH ("sensor"). Relative
// paths and container image references are rejected with a
// runtime.SpecError on settings.image.
//
// A module's createOptions use Docker's field names, so one manifest shape
// serves both runtimes: {"Cmd": ["--interval", "5"], "Env": ["A=b"],
// "WorkingDir": "/var/lib/sensor"}. Cmd is the argument list (a JSON string
// is a single argument), Env entries are NAME=value, WorkingDir must be
// absolute (default: the module's state directory). Entrypoint is rejected;
// other Docker fields (HostConfig, ExposedPorts, Labels, …) are ignored.
//
// A module's environment is, later entries winning: the agent variables
// named by Options.InheritEnv (PATH, HOME, … by default), createOptions'
// Env, then the spec's Env (the deployment's env and the IoT Edge module
// variables). Nothing else of the agent's environment leaks to modules.
//
// stdout and stderr are captured to size-rotated log files (package
// logfile) that Logs reads with tail, since/until and follow. Each module
// keeps a state directory under Options.Dir holding spec.json (the spec it
// was created from, without registry credentials, mode 0600) and logs/.
//
// Stopping is platform specific: on Unix the module leads its own process
// group, which gets SIGTERM and, after the grace period, SIGKILL (a module
// ended by a signal reports exit code 128+signal, as Docker does); on
// Windows the module runs in a job object that is terminated. When the
// main process exits, whatever is left of its group or job is killed, as
// Docker does for a container. Modules do not survive the agent: after a
// restart they are reloaded as created and started again by the
// supervisor.
//
// The package may use os/exec and the platform's process APIs; it must not
// import net/http, an MQTT library or a SQL driver.
package process

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/edge/runtime"
	"github.com/muster-iot/muster/internal/edge/runtime/logfile"
)

// Defaults for Options fields left zero.
const (
	// DefaultLogMaxBytes is the size at which a module's log segment is
	// rotated.
	DefaultLogMaxBytes = 10 << 20
	// DefaultLogKeep is how many log segments a module keeps.
	DefaultLogKeep = 5
	// DefaultStopGrace is the grace Close gives running modules.
	DefaultStopGrace = 10 * time.Second
	// DefaultDrainTimeout bounds output capture after a module's main
	// process has exited and its group was killed.
	DefaultDrainTimeout = 2 * time.Second
)

const (
	specFile   = "spec.json"
	logDir     = "logs"
	logPrefix  = "output"
	maxNameLen = 128
)

// Options configures a process runtime.
type Options struct {
	// Dir is the state directory; it is created (mode 0700) if missing.
	// Required.
	Dir string
	// LogMaxBytes and LogKeep size each module's log rotation.
	LogMaxBytes int64
	LogKeep     int
	// InheritEnv names the agent environment variables every module
	// inherits (DefaultInheritEnv() when nil). The deployment's env wins
	// over them.
	InheritEnv []string
	// Environ returns the agent's environment (os.Environ when nil).
	Environ func() []string
	// LookPath resolves bare executable names (exec.LookPath when nil).
	LookPath func(string) (string, error)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// StopGrace is the grace Close gives running modules.
	StopGrace time.Duration
	// DrainTimeout bounds output capture after a module exits.
	DrainTimeout time.Duration
	// Logger receives operational messages (discarded when nil). Module
	// environments are never logged.
	Logger *slog.Logger
}

// Runtime runs modules as child processes. It implements runtime.Runtime
// and runtime.Notifier.
type Runtime struct {
	opts    Options
	log     *slog.Logger
	changes chan struct{}

	mu      sync.Mutex
	modules map[string]*module
	closed  bool
}

// module is one created module and its current run.
type module struct {
	spec      runtime.ModuleSpec
	exe       string
	create    createOptions
	imageHash string
	dir       string
	logs      *logfile.Writer

	state      runtime.State
	exitCode   int
	startedAt  time.Time
	finishedAt time.Time
	desc       string
	pid        int
	proc       *proc
	done       chan struct{} // closed when the current run has fully ended
	removing   bool
}

// persisted is the on-disk form of a module's spec (never credentials).
type persisted struct {
	Name            string            `json:"name"`
	Version         string            `json:"version,omitempty"`
	Image           string            `json:"image"`
	CreateOptions   string            `json:"createOptions"`
	Env             map[string]string `json:"env,omitempty"`
	ImagePullPolicy string            `json:"imagePullPolicy,omitempty"`
	Executable      string            `json:"executable"`
	ImageHash       string            `json:"imageHash,omitempty"`
}

// New opens the runtime's state directory and loads the modules recorded
// there; they come back in StateCreated (the agent restarted, so none of
// them runs).
func New(opts Options) (*Runtime, error) {
	if opts.Dir == "" {
		return nil, errors.New("new process runtime: Options.Dir is required")
	}
	if opts.LogMaxBytes <= 0 {
		opts.LogMaxBytes = DefaultLogMaxBytes
	}
	if opts.LogKeep <= 0 {
		opts.LogKeep = DefaultLogKeep
	}
	if opts.InheritEnv == nil {
		opts.InheritEnv = DefaultInheritEnv()
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ
	}
	if opts.LookPath == nil {
		opts.LookPath = exec.LookPath
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = DefaultStopGrace
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("new process runtime: create state directory %s: %w", opts.Dir, err)
	}
	r := &Runtime{opts: opts, log: log, changes: make(chan struct{}, 1), modules: make(map[string]*module)}
	entries, err := os.ReadDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("new process runtime: read state directory %s: %w", opts.Dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		m, err := r.load(filepath.Join(opts.Dir, e.Name()))
		if err != nil {
			log.Warn("skipping unreadable module state", "dir", e.Name(), "err", err)
			continue
		}
		r.modules[m.spec.Name] = m
	}
	return r, nil
}

// load reads one module's state directory.
func (r *Runtime) load(dir string) (*module, error) {
	b, err := os.ReadFile(filepath.Join(dir, specFile))
	if err != nil {
		return nil, fmt.Errorf("read module spec: %w", err)
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode module spec %s: %w", filepath.Join(dir, specFile), err)
	}
	if p.Name == "" || dirName(p.Name) != filepath.Base(dir) {
		return nil, fmt.Errorf("module spec %s names module %q, which does not belong in this directory", filepath.Join(dir, specFile), p.Name)
	}
	co, err := parseCreateOptions(p.Name, p.CreateOptions)
	if err != nil {
		return nil, err
	}
	logs, err := logfile.Open(filepath.Join(dir, logDir), logPrefix, r.opts.LogMaxBytes, r.opts.LogKeep)
	if err != nil {
		return nil, err
	}
	return &module{
		spec: runtime.ModuleSpec{
			Name: p.Name, Version: p.Version, Image: p.Image, CreateOptions: p.CreateOptions,
			Env: p.Env, ImagePullPolicy: p.ImagePullPolicy,
		},
		exe: p.Executable, create: co, imageHash: p.ImageHash, dir: dir, logs: logs,
		state: runtime.StateCreated,
	}, nil
}

// dirName maps a module name to a directory name that is safe on every
// file system: bytes outside [A-Za-z0-9._-] are escaped as %XX, and the
// names "." and ".." are escaped entirely.
func dirName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c == '.' && name != "." && name != "..":
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// Changes implements runtime.Notifier: it fires when a module exits.
func (r *Runtime) Changes() <-chan struct{} { return r.changes }

func (r *Runtime) notify() {
	select {
	case r.changes <- struct{}{}:
	default:
	}
}

// Create implements runtime.Runtime. It resolves the executable, checks
// createOptions, and records the module in its state directory.
func (r *Runtime) Create(ctx context.Context, spec runtime.ModuleSpec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if spec.Name == "" || len(spec.Name) > maxNameLen {
		return &runtime.SpecError{Module: spec.Name, Field: "name", Msg: fmt.Sprintf("must be 1 to %d bytes", maxNameLen)}
	}
	exe, err := resolveImage(spec.Name, spec.Image, r.opts.LookPath)
	if err != nil {
		return fmt.Errorf("create module %s: %w", spec.Name, err)
	}
	co, err := parseCreateOptions(spec.Name, spec.CreateOptions)
	if err != nil {
		return fmt.Errorf("create module %s: %w", spec.Name, err)
	}
	hash, err := hashFile(exe)
	if err != nil {
		return fmt.Errorf("create module %s: %w", spec.Name, &runtime.SpecError{Module: spec.Name, Field: "settings.image", Msg: err.Error()})
	}
	spec.RegistryAuth = nil
	spec.Env = cloneMap(spec.Env)

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("create module %s: runtime closed", spec.Name)
	}
	if _, ok := r.modules[spec.Name]; ok {
		return fmt.Errorf("create module %s: %w", spec.Name, runtime.ErrExists)
	}
	dir := filepath.Join(r.opts.Dir, dirName(spec.Name))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create module %s: state directory: %w", spec.Name, err)
	}
	p := persisted{
		Name: spec.Name, Version: spec.Version, Image: spec.Image, CreateOptions: spec.CreateOptions,
		Env: spec.Env, ImagePullPolicy: spec.ImagePullPolicy, Executable: exe, ImageHash: hash,
	}
	if err := writeFileAtomic(filepath.Join(dir, specFile), p); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("create module %s: %w", spec.Name, err)
	}
	logs, err := logfile.Open(filepath.Join(dir, logDir), logPrefix, r.opts.LogMaxBytes, r.opts.LogKeep)
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("create module %s: %w", spec.Name, err)
	}
	r.modules[spec.Name] = &module{
		spec: spec, exe: exe, create: co, imageHash: hash, dir: dir, logs: logs,
		state: runtime.StateCreated,
	}
	return nil
}

// writeFileAtomic writes v as JSON to path through a temporary file.
func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// hashFile returns "sha256:<hex>" of a file's content.
func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash executable: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash executable %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// environ builds a module's environment: the inherited agent variables,
// then createOptions' Env, then the deployment's env (later wins).
func (r *Runtime) environ(m *module) []string {
	inherit := make(map[string]bool, len(r.opts.InheritEnv))
	for _, n := range r.opts.InheritEnv {
		inherit[n] = true
	}
	var list []string
	for _, kv := range r.opts.Environ() {
		name, _, ok := strings.Cut(kv, "=")
		if ok && inherit[name] {
			list = append(list, kv)
		}
	}
	list = append(list, m.create.Env...)
	return runtime.EnvList(list, m.spec.Env)
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("start module %s: runtime closed", name)
	}
	m, ok := r.modules[name]
	if !ok || m.removing {
		return fmt.Errorf("start module %s: %w", name, runtime.ErrNotFound)
	}
	if m.state == runtime.StateRunning {
		return nil
	}
	if err := r.startLocked(m); err != nil {
		now := r.opts.Now()
		m.state, m.exitCode, m.finishedAt, m.desc = runtime.StateExited, 127, now, err.Error()
		return fmt.Errorf("start module %s: %w", name, err)
	}
	return nil
}

// startLocked launches m's process; r.mu is held.
func (r *Runtime) startLocked(m *module) error {
	workDir := m.create.WorkingDir
	if workDir == "" {
		workDir = m.dir
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("stderr pipe: %w", err)
	}
	cmd := &exec.Cmd{
		Path:   m.exe,
		Args:   append([]string{m.exe}, m.create.Cmd...),
		Env:    r.environ(m),
		Dir:    workDir,
		Stdout: outW,
		Stderr: errW,
	}
	prepare(cmd)
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fmt.Errorf("exec %s: %w", m.exe, err)
	}
	p, err := attach(cmd)
	if p == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		outR.Close()
		errR.Close()
		return err
	}
	if err != nil {
		r.log.Warn("module runs without full process-tree control", "module", m.spec.Name, "err", err)
	}
	now := r.opts.Now()
	m.state, m.startedAt, m.desc = runtime.StateRunning, now, ""
	m.pid, m.proc, m.done = cmd.Process.Pid, p, make(chan struct{})
	r.log.Info("module started", "module", m.spec.Name, "pid", m.pid)

	var capture sync.WaitGroup
	for _, s := range []struct {
		r      *os.File
		stream string
	}{{outR, logfile.Stdout}, {errR, logfile.Stderr}} {
		c := logfile.NewCapture(m.logs, s.stream, r.opts.Now)
		capture.Go(func() {
			if _, err := io.Copy(c, s.r); err != nil && !errors.Is(err, os.ErrClosed) {
				r.log.Warn("module output capture failed", "module", m.spec.Name, "stream", s.stream, "err", err)
			}
			if err := c.Flush(); err != nil {
				r.log.Warn("module output capture failed", "module", m.spec.Name, "stream", s.stream, "err", err)
			}
		})
	}
	go r.wait(m, cmd, p, m.done, &capture, outR, errR)
	return nil
}

// wait reaps one run of m, drains its output and records how it ended.
func (r *Runtime) wait(m *module, cmd *exec.Cmd, p *proc, done chan struct{}, capture *sync.WaitGroup, pipes ...*os.File) {
	waitErr := cmd.Wait()
	finished := r.opts.Now()
	p.exitedMain()
	drained := make(chan struct{})
	go func() {
		capture.Wait()
		close(drained)
	}()
	timer := time.NewTimer(r.opts.DrainTimeout)
	select {
	case <-drained:
		timer.Stop()
	case <-timer.C:
		// Something outside the group or job holds the pipes open.
		for _, f := range pipes {
			f.Close()
		}
		<-drained
	}
	for _, f := range pipes {
		f.Close()
	}
	p.release()

	code := -1
	desc := ""
	if cmd.ProcessState != nil {
		code = exitCode(cmd.ProcessState)
	} else if waitErr != nil {
		desc = waitErr.Error()
	}
	r.mu.Lock()
	m.state, m.exitCode, m.finishedAt, m.desc = runtime.StateExited, code, finished, desc
	m.pid, m.proc = 0, nil
	close(done)
	r.mu.Unlock()
	r.log.Info("module exited", "module", m.spec.Name, "exitCode", code)
	r.notify()
}

// Stop implements runtime.Runtime: terminate, then kill after grace.
func (r *Runtime) Stop(ctx context.Context, name string, grace time.Duration) error {
	r.mu.Lock()
	m, ok := r.modules[name]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("stop module %s: %w", name, runtime.ErrNotFound)
	}
	if m.state != runtime.StateRunning {
		r.mu.Unlock()
		return nil
	}
	p, done := m.proc, m.done
	r.mu.Unlock()
	return r.stop(ctx, name, p, done, grace)
}

func (r *Runtime) stop(ctx context.Context, name string, p *proc, done chan struct{}, grace time.Duration) error {
	if grace > 0 {
		if err := p.terminate(); err != nil {
			r.log.Warn("terminate module failed; killing it", "module", name, "err", err)
		} else {
			timer := time.NewTimer(grace)
			select {
			case <-done:
				timer.Stop()
				return nil
			case <-ctx.Done():
				timer.Stop()
				return fmt.Errorf("stop module %s: %w", name, ctx.Err())
			case <-timer.C:
				r.log.Warn("module did not stop within its grace period; killing it", "module", name, "grace", grace)
			}
		}
	}
	if err := p.kill(); err != nil {
		return fmt.Errorf("stop module %s: kill: %w", name, err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop module %s: %w", name, ctx.Err())
	}
}

// Remove implements runtime.Runtime.
func (r *Runtime) Remove(ctx context.Context, name string) error {
	r.mu.Lock()
	m, ok := r.modules[name]
	if !ok || m.removing {
		r.mu.Unlock()
		return fmt.Errorf("remove module %s: %w", name, runtime.ErrNotFound)
	}
	m.removing = true
	running := m.state == runtime.StateRunning
	p, done := m.proc, m.done
	r.mu.Unlock()
	if running {
		if err := r.stop(ctx, name, p, done, 0); err != nil {
			r.mu.Lock()
			m.removing = false
			r.mu.Unlock()
			return fmt.Errorf("remove module %s: %w", name, err)
		}
	}
	r.mu.Lock()
	delete(r.modules, name)
	r.mu.Unlock()
	if err := m.logs.Close(); err != nil {
		r.log.Warn("close module log failed", "module", name, "err", err)
	}
	if err := os.RemoveAll(m.dir); err != nil {
		return fmt.Errorf("remove module %s: delete state directory: %w", name, err)
	}
	return nil
}

// stateLocked snapshots m; r.mu is held.
func stateLocked(m *module) runtime.ModuleState {
	s := runtime.ModuleState{
		Name:        m.spec.Name,
		Spec:        m.spec,
		ImageHash:   m.imageHash,
		State:       m.state,
		ExitCode:    m.exitCode,
		StartedAt:   m.startedAt,
		FinishedAt:  m.finishedAt,
		Description: m.desc,
	}
	s.Spec.Env = cloneMap(m.spec.Env)
	if m.pid != 0 {
		s.ID = strconv.Itoa(m.pid)
	}
	return s
}

// List implements runtime.Runtime.
func (r *Runtime) List(ctx context.Context) ([]runtime.ModuleState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]runtime.ModuleState, 0, len(r.modules))
	for _, m := range r.modules {
		if !m.removing {
			out = append(out, stateLocked(m))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Inspect implements runtime.Runtime.
func (r *Runtime) Inspect(ctx context.Context, name string) (runtime.ModuleState, error) {
	if err := ctx.Err(); err != nil {
		return runtime.ModuleState{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.modules[name]
	if !ok || m.removing {
		return runtime.ModuleState{}, fmt.Errorf("inspect module %s: %w", name, runtime.ErrNotFound)
	}
	return stateLocked(m), nil
}

// logReader is the stream Logs returns.
type logReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (l *logReader) Close() error {
	l.cancel()
	return l.PipeReader.Close()
}

// Logs implements runtime.Runtime. A follow ends when the run that was
// current when Logs was called ends (and its output is drained), as
// docker logs --follow does.
func (r *Runtime) Logs(ctx context.Context, name string, opts runtime.LogOptions) (io.ReadCloser, error) {
	r.mu.Lock()
	m, ok := r.modules[name]
	if !ok || m.removing {
		r.mu.Unlock()
		return nil, fmt.Errorf("logs of module %s: %w", name, runtime.ErrNotFound)
	}
	done := m.done
	if m.state != runtime.StateRunning || done == nil {
		closed := make(chan struct{})
		close(closed)
		done = closed
	}
	logs := m.logs
	dir := filepath.Join(m.dir, logDir)
	r.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	ropts := logfile.ReadOptions{
		Tail: opts.Tail, Since: opts.Since, Until: opts.Until, Timestamps: opts.Timestamps,
		Follow: opts.Follow, Changed: logs.Changed, Done: done,
	}
	go func() {
		err := logfile.Copy(ctx, pw, dir, logPrefix, ropts)
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		pw.CloseWithError(err)
	}()
	return &logReader{PipeReader: pr, cancel: cancel}, nil
}

// Close stops every running module (each gets Options.StopGrace) and
// closes the module logs. The runtime cannot be used afterwards.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	type run struct {
		name string
		p    *proc
		done chan struct{}
	}
	var runs []run
	var mods []*module
	for name, m := range r.modules {
		mods = append(mods, m)
		if m.state == runtime.StateRunning {
			runs = append(runs, run{name, m.proc, m.done})
		}
	}
	r.mu.Unlock()

	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i, rn := range runs {
		wg.Go(func() { errs[i] = r.stop(ctx, rn.name, rn.p, rn.done, r.opts.StopGrace) })
	}
	wg.Wait()
	for _, m := range mods {
		if err := m.logs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close log of module %s: %w", m.spec.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close process runtime: %w", err)
	}
	return nil
}

// Compile-time interface checks.
var (
	_ runtime.Runtime  = (*Runtime)(nil)
	_ runtime.Notifier = (*Runtime)(nil)
)
