package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/rollout"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
	"github.com/muster-iot/muster/internal/store/postgres"
	"github.com/muster-iot/muster/internal/store/postgres/pgtest"
	"github.com/muster-iot/muster/internal/store/sqlite"
)

// testHub is the hub name of every test.
const testHub = "hub.rollout.test"

// waitLimit bounds every wait for the engine; generous for a loaded
// 2-core machine.
const waitLimit = 60 * time.Second

// backingStore is what a test store provides.
type backingStore interface {
	store.Docs
	store.TwinQuerier
}

// backends lists the store backends every engine test runs against.
var backends = []struct {
	name string
	open func(t *testing.T) backingStore
}{
	{"memstore", func(t *testing.T) backingStore { return memstore.New(100) }},
	{"sqlite", func(t *testing.T) backingStore {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "muster.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
	// Skipped, naming TEST_PG_DSN, when no PostgreSQL server is given.
	{"postgres", func(t *testing.T) backingStore {
		st, err := postgres.Open(t.Context(), pgtest.Schema(t), postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, open func(t *testing.T) backingStore)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.open) })
	}
}

// clock is a settable clock for createdTimeUtc.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var day0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// env is the real registry on a real store with a running engine.
type env struct {
	st    backingStore
	obs   *rollout.ObservedDocs
	hub   *registry.Hub
	cfgs  *rollout.Configurations
	eng   *rollout.Engine
	clock *clock
	stop  func()
}

func newEnv(t *testing.T, st backingStore) *env {
	t.Helper()
	e := &env{st: st, obs: rollout.NewObservedDocs(st), clock: &clock{t: day0}}
	e.hub = registry.New(testHub, e.obs, nil)
	var err error
	e.cfgs, err = rollout.NewConfigurations(rollout.ConfigurationsOptions{Hub: testHub, Docs: st, Querier: st, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	e.start(t)
	return e
}

// start runs a new engine over the env's registry and store (a restart).
func (e *env) start(t *testing.T) {
	t.Helper()
	var err error
	e.eng, err = rollout.NewEngine(rollout.Options{Registry: e.hub, Desired: e.hub, Configurations: e.cfgs, Docs: e.st, SweepInterval: -1, PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	e.obs.Observe(e.eng)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.eng.Run(ctx); err != nil {
			t.Errorf("engine: %v", err)
		}
	}()
	e.stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(e.stop)
}

func (e *env) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := e.eng.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// device creates a device (an edge device when edge) with tags.
func (e *env) device(t *testing.T, id string, edge bool, tags string) {
	t.Helper()
	if _, err := e.hub.PutDevice(t.Context(), &registry.Device{DeviceID: id, Capabilities: registry.Capabilities{IoTEdge: edge}}, ""); err != nil {
		t.Fatal(err)
	}
	e.tag(t, id, tags)
}

func (e *env) tag(t *testing.T, id, tags string) {
	t.Helper()
	if tags == "" {
		return
	}
	if _, err := e.hub.PatchTwin(t.Context(), id, registry.TwinUpdate{Tags: json.RawMessage(tags)}, ""); err != nil {
		t.Fatal(err)
	}
}

func (e *env) module(t *testing.T, deviceID, moduleID string) {
	t.Helper()
	if _, err := e.hub.PutModule(t.Context(), &registry.Module{DeviceID: deviceID, ModuleID: moduleID, ManagedBy: registry.ManagedByIotEdge}, ""); err != nil {
		t.Fatal(err)
	}
}

// cfg is one configuration of a test: created on day day (which orders
// equal priorities).
type cfg struct {
	id      string
	prio    int
	day     int
	cond    string
	content string
}

func configJSON(c cfg) string {
	return fmt.Sprintf(`{"id":%q,"priority":%d,"targetCondition":%q,"content":%s}`, c.id, c.prio, c.cond, c.content)
}

func (e *env) put(t *testing.T, c cfg) *deploy.Configuration {
	t.Helper()
	parsed, err := deploy.Parse([]byte(configJSON(c)))
	if err != nil {
		t.Fatalf("configuration %s: %v", c.id, err)
	}
	e.clock.set(day0.AddDate(0, 0, c.day))
	out, err := e.cfgs.Put(t.Context(), &parsed, "")
	if err != nil {
		t.Fatalf("put configuration %s: %v", c.id, err)
	}
	return out
}

// twinState is what a test checks of a twin: desired properties without
// $version (canonical JSON) and the configurations map.
type twinState struct {
	Desired  string
	Statuses map[string]string
}

func stateOf(t *testing.T, tw *registry.Twin) twinState {
	t.Helper()
	var desired map[string]any
	if err := json.Unmarshal(tw.Properties.Desired, &desired); err != nil {
		t.Fatalf("desired of %s/%s: %v", tw.DeviceID, tw.ModuleID, err)
	}
	delete(desired, "$version")
	delete(desired, "$metadata")
	b, err := json.Marshal(desired)
	if err != nil {
		t.Fatal(err)
	}
	s := twinState{Desired: string(b)}
	if len(tw.Configurations) > 0 {
		s.Statuses = map[string]string{}
		for id, c := range tw.Configurations {
			s.Statuses[id] = c.Status
		}
	}
	return s
}

func (e *env) moduleTwin(t *testing.T, deviceID, moduleID string) twinState {
	t.Helper()
	tw, err := e.hub.GetModuleTwin(t.Context(), deviceID, moduleID)
	if err != nil {
		t.Fatal(err)
	}
	return stateOf(t, tw)
}

func (e *env) deviceTwin(t *testing.T, deviceID string) twinState {
	t.Helper()
	tw, err := e.hub.GetTwin(t.Context(), deviceID)
	if err != nil {
		t.Fatal(err)
	}
	return stateOf(t, tw)
}

// canon re-encodes JSON with sorted keys.
func canon(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantState(t *testing.T, what string, got twinState, desired string, statuses map[string]string) {
	t.Helper()
	if got.Desired != canon(t, desired) {
		t.Errorf("%s desired:\n got %s\nwant %s", what, got.Desired, canon(t, desired))
	}
	if fmt.Sprint(got.Statuses) != fmt.Sprint(statuses) {
		t.Errorf("%s configurations: got %v, want %v", what, got.Statuses, statuses)
	}
}
