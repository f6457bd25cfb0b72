package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

// behaviour scripts how a fake module runs once started.
type behaviour struct {
	// startDelay keeps a started module in StateCreated this long.
	startDelay time.Duration
	// exitAfter, when > 0, ends each run after this long with exitCode.
	exitAfter time.Duration
	exitCode  int
	// exitRuns limits how many runs exit (0 = every run).
	exitRuns int
}

type fakeModule struct {
	state runtime.ModuleState
	runs  int // starts so far
	gen   int // invalidates the timers of earlier runs
	timer *time.Timer
}

// call is one recorded runtime call.
type call struct {
	At   time.Duration // since the fake was made
	What string        // "start m1", "create m1", …
}

// fakeRuntime is an in-memory runtime.Runtime driven by timers, so that
// inside a testing/synctest bubble every transition happens at an exact
// fake time.
type fakeRuntime struct {
	origin  time.Time
	changes chan struct{}

	mu         sync.Mutex
	mods       map[string]*fakeModule
	behaviours map[string]behaviour
	failCreate map[string]error
	calls      []call
}

func newFake() *fakeRuntime {
	return &fakeRuntime{
		origin:     time.Now(),
		changes:    make(chan struct{}, 1),
		mods:       map[string]*fakeModule{},
		behaviours: map[string]behaviour{},
		failCreate: map[string]error{},
	}
}

func (f *fakeRuntime) record(what string) {
	f.calls = append(f.calls, call{At: time.Since(f.origin), What: what})
}

func (f *fakeRuntime) notify() {
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

func (f *fakeRuntime) Changes() <-chan struct{} { return f.changes }

func (f *fakeRuntime) setBehaviour(name string, b behaviour) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.behaviours[name] = b
}

func (f *fakeRuntime) setCreateFailure(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.failCreate, name)
	} else {
		f.failCreate[name] = err
	}
}

// history returns the recorded calls whose text starts with one of the
// prefixes (all calls when none are given).
func (f *fakeRuntime) history(prefixes ...string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if len(prefixes) == 0 {
			out = append(out, c)
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(c.What, p) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

func (f *fakeRuntime) Create(_ context.Context, spec runtime.ModuleSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("create " + spec.Name)
	if err := f.failCreate[spec.Name]; err != nil {
		return err
	}
	if _, ok := f.mods[spec.Name]; ok {
		return fmt.Errorf("create %s: %w", spec.Name, runtime.ErrExists)
	}
	spec.RegistryAuth = nil
	f.mods[spec.Name] = &fakeModule{state: runtime.ModuleState{Name: spec.Name, Spec: spec, State: runtime.StateCreated}}
	return nil
}

func (f *fakeRuntime) Start(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("start " + name)
	m, ok := f.mods[name]
	if !ok {
		return fmt.Errorf("start %s: %w", name, runtime.ErrNotFound)
	}
	if m.state.State == runtime.StateRunning {
		return nil
	}
	b := f.behaviours[name]
	m.runs++
	m.gen++
	run, gen := m.runs, m.gen
	begin := func() {
		m.state.State, m.state.StartedAt = runtime.StateRunning, time.Now()
		if b.exitAfter > 0 && (b.exitRuns == 0 || run <= b.exitRuns) {
			m.timer = time.AfterFunc(b.exitAfter, func() {
				f.mu.Lock()
				if m.gen == gen && m.state.State == runtime.StateRunning {
					m.state.State, m.state.ExitCode, m.state.FinishedAt = runtime.StateExited, b.exitCode, time.Now()
				}
				f.mu.Unlock()
				f.notify()
			})
		}
	}
	if b.startDelay > 0 {
		m.state.State = runtime.StateCreated
		m.timer = time.AfterFunc(b.startDelay, func() {
			f.mu.Lock()
			if m.gen == gen {
				begin()
			}
			f.mu.Unlock()
			f.notify()
		})
		return nil
	}
	begin()
	return nil
}

func (f *fakeRuntime) stopLocked(m *fakeModule, code int) {
	if m.timer != nil {
		m.timer.Stop()
	}
	if m.state.State == runtime.StateRunning {
		m.state.State, m.state.ExitCode, m.state.FinishedAt = runtime.StateExited, code, time.Now()
	}
	m.gen++ // invalidate pending timers of the old run
}

func (f *fakeRuntime) Stop(_ context.Context, name string, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("stop " + name)
	m, ok := f.mods[name]
	if !ok {
		return fmt.Errorf("stop %s: %w", name, runtime.ErrNotFound)
	}
	f.stopLocked(m, 143)
	return nil
}

func (f *fakeRuntime) Remove(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove " + name)
	m, ok := f.mods[name]
	if !ok {
		return fmt.Errorf("remove %s: %w", name, runtime.ErrNotFound)
	}
	f.stopLocked(m, 137)
	delete(f.mods, name)
	return nil
}

func (f *fakeRuntime) List(context.Context) ([]runtime.ModuleState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]runtime.ModuleState, 0, len(f.mods))
	for _, m := range f.mods {
		out = append(out, m.state)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeRuntime) Inspect(_ context.Context, name string) (runtime.ModuleState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.mods[name]
	if !ok {
		return runtime.ModuleState{}, fmt.Errorf("inspect %s: %w", name, runtime.ErrNotFound)
	}
	return m.state, nil
}

func (f *fakeRuntime) Logs(context.Context, string, runtime.LogOptions) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("")), nil
}

// moduleDoc is one module of a desired document built by deploymentDoc.
type moduleDoc struct {
	name, status, policy, image string
	order                       int
	env                         map[string]string
}

// deploymentDoc renders $edgeAgent desired properties at version.
func deploymentDoc(t *testing.T, version int, mods ...moduleDoc) []byte {
	t.Helper()
	modules := map[string]any{}
	for _, m := range mods {
		env := map[string]any{}
		for k, v := range m.env {
			env[k] = map[string]any{"value": v}
		}
		image := m.image
		if image == "" {
			image = "example.azurecr.io/" + strings.ToLower(m.name) + ":1"
		}
		def := map[string]any{
			"type": "docker", "status": m.status, "restartPolicy": m.policy, "startupOrder": m.order,
			"settings": map[string]any{"image": image, "createOptions": "{}"}, "env": env,
		}
		if m.status == "" {
			def["status"] = "running"
		}
		if m.policy == "" {
			def["restartPolicy"] = "always"
		}
		modules[m.name] = def
	}
	doc := map[string]any{
		"$version":      version,
		"schemaVersion": "1.1",
		"runtime":       map[string]any{"type": "docker", "settings": map[string]any{}},
		"systemModules": map[string]any{
			"edgeAgent": map[string]any{"type": "docker", "settings": map[string]any{"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
			"edgeHub": map[string]any{"type": "docker", "status": "running", "restartPolicy": "always", "startupOrder": 0,
				"settings": map[string]any{"image": "mcr.microsoft.com/azureiotedge-hub:1.5", "createOptions": "{}"}},
		},
		"modules": modules,
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
