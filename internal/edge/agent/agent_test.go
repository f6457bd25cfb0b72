package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/edge/iothub"
	"github.com/muster-iot/muster/internal/edge/iothub/iothubtest"
	"github.com/muster-iot/muster/internal/edge/reconcile"
)

// wait bounds every wait; none is an assertion on speed.
const wait = 30 * time.Second

// fakeSupervisor records what the agent hands it.
type fakeSupervisor struct {
	mu       sync.Mutex
	desired  [][]byte
	env      []reconcile.EdgeEnv
	restarts []string
	changed  chan struct{}
}

func newFakeSupervisor() *fakeSupervisor { return &fakeSupervisor{changed: make(chan struct{}, 16)} }

func (f *fakeSupervisor) SetDesired(raw []byte) error {
	f.mu.Lock()
	f.desired = append(f.desired, append([]byte(nil), raw...))
	f.mu.Unlock()
	f.changed <- struct{}{}
	_, err := reconcile.Parse(raw)
	return err
}

func (f *fakeSupervisor) SetEnv(env reconcile.EdgeEnv) {
	f.mu.Lock()
	f.env = append(f.env, env)
	f.mu.Unlock()
}

func (f *fakeSupervisor) RestartModule(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name != "sensor" {
		return fmt.Errorf("restart module %s: module not found", name)
	}
	f.restarts = append(f.restarts, name)
	return nil
}

// await waits until cond holds, looking again after every supervisor call.
func (f *fakeSupervisor) await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(wait)
	for {
		f.mu.Lock()
		ok := cond()
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-f.changed:
		case <-deadline:
			t.Fatalf("%s: not within %v", what, wait)
		}
	}
}

// deployment is $edgeAgent desired properties with the given modules.
func deployment(modules ...string) map[string]any {
	mods := map[string]any{}
	for _, m := range modules {
		mods[m] = map[string]any{"type": "docker", "status": "running", "restartPolicy": "always",
			"settings": map[string]any{"image": "/usr/bin/" + m}}
	}
	return map[string]any{
		"schemaVersion": "1.1",
		"runtime":       map[string]any{"type": "docker", "settings": map[string]any{}},
		"systemModules": map[string]any{
			"edgeAgent": map[string]any{"type": "docker", "settings": map[string]any{"image": "agent"}},
			"edgeHub":   map[string]any{"type": "docker", "status": "running", "restartPolicy": "always", "settings": map[string]any{"image": "hub"}},
		},
		"modules": mods,
	}
}

// harness is an agent of device edge-1 on a fake hub.
type harness struct {
	hub     *iothubtest.Hub
	sup     *fakeSupervisor
	agent   *Agent
	applied chan reconcile.EdgeEnv
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{hub: iothubtest.New(t), sup: newFakeSupervisor(), applied: make(chan reconcile.EdgeEnv, 8)}
	key := h.hub.AddIdentity("edge-1", "")
	h.hub.AddIdentity("edge-1", ModuleID)
	h.hub.AddIdentity("edge-1", "$edgeHub")
	api, err := iothub.NewModules(iothub.ModulesOptions{Device: iothub.Identity{Hub: iothubtest.Host, DeviceID: "edge-1", Key: key}, Addr: h.hub.HTTPSAddr, RootCAs: h.hub.Roots})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Close)
	h.agent, err = New(Options{
		Hub: iothubtest.Host, DeviceID: "edge-1", HubMQTTAddr: h.hub.MQTTAddr, RootCAs: h.hub.Roots,
		Store: NewStore(api), Supervisor: h.sup,
		Env: reconcile.EdgeEnv{DeviceID: "edge-1", IoTHubHostName: iothubtest.Host, GatewayHostName: "127.0.0.1"},
		ModuleEnv: func(m *iothub.Module) (map[string]string, error) {
			return map[string]string{"EdgeHubConnectionString": "ModuleId=" + m.ModuleID + ";SharedAccessKey=" + m.Authentication.SymmetricKey.PrimaryKey}, nil
		},
		OnApplied: func(_ json.RawMessage, env reconcile.EdgeEnv) { h.applied <- env },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(wait):
			t.Error("the agent did not stop")
		}
	})
	return h
}

func TestAgentAppliesDeploymentsAndManagesIdentities(t *testing.T) {
	h := newHarness(t)
	// No deployment yet: the empty desired properties go to the
	// supervisor, which reports 417.
	h.sup.await(t, "the empty desired properties", func() bool { return len(h.sup.desired) == 1 })

	// A deployment with two modules: their identities are created
	// (managedBy IotEdge), their env carries their keys, then the
	// deployment goes to the supervisor.
	h.hub.SetDesired("edge-1", ModuleID, deployment("sensor", "filter"))
	var env reconcile.EdgeEnv
	select {
	case env = <-h.applied:
	case <-time.After(wait):
		t.Fatal("the deployment was not applied")
	}
	for _, m := range []string{"sensor", "filter"} {
		key := h.hub.Key("edge-1", m)
		if key == nil {
			t.Fatalf("no identity for %s", m)
		}
		if !strings.Contains(env.ModuleEnv[m]["EdgeHubConnectionString"], "ModuleId="+m+";") || env.GenerationIDs[m] == "" {
			t.Errorf("env of %s: %v, generation %q", m, env.ModuleEnv[m], env.GenerationIDs[m])
		}
	}
	if env.IoTHubHostName != iothubtest.Host || env.DeviceID != "edge-1" {
		t.Errorf("device env %+v", env)
	}
	if st := h.agent.Status(); st.AppliedVersion != 2 || st.Error != "" || !st.Connection.Connected {
		t.Errorf("status %+v", st)
	}

	// A module leaves the deployment: the identity the agent created is
	// deleted, a system identity never is.
	h.hub.SetDesired("edge-1", ModuleID, deployment("sensor"))
	select {
	case <-h.applied:
	case <-time.After(wait):
		t.Fatal("the second deployment was not applied")
	}
	h.hub.Await(wait, "filter's identity deleted", func() bool { return !h.hub.ExistsLocked("edge-1", "filter") })
	h.hub.Lock()
	if !h.hub.ExistsLocked("edge-1", "sensor") || !h.hub.ExistsLocked("edge-1", "$edgeHub") {
		t.Error("a deployed or system identity was deleted")
	}
	h.hub.Unlock()
}

func TestAgentReportsAsMergePatches(t *testing.T) {
	h := newHarness(t)
	h.sup.await(t, "the first sync", func() bool { return len(h.sup.desired) >= 1 })
	report := func(mods ...string) reconcile.Reported {
		r := reconcile.Reported{SchemaVersion: "1.0", LastDesiredVersion: 3, LastDesiredStatus: reconcile.LastDesiredStatus{Code: 200}, Modules: map[string]reconcile.ReportedModule{}}
		for _, m := range mods {
			r.Modules[m] = reconcile.ReportedModule{RuntimeStatus: reconcile.RuntimeRunning, StatusDescription: "running"}
		}
		return r
	}
	modulesOf := func() []string {
		r := h.hub.ReportedLocked("edge-1", ModuleID)
		mods, _ := r["modules"].(map[string]any)
		var names []string
		for n := range mods {
			names = append(names, n)
		}
		sort.Strings(names)
		return names
	}
	h.agent.Report(report("a", "b"))
	h.hub.Await(wait, "modules a and b reported", func() bool { return cmp.Equal(modulesOf(), []string{"a", "b"}) })
	// A module that is gone is removed from the reported properties (a
	// null in the merge patch).
	h.agent.Report(report("a"))
	h.hub.Await(wait, "module b removed from the report", func() bool { return cmp.Equal(modulesOf(), []string{"a"}) })
	r := h.hub.Reported("edge-1", ModuleID)
	if r["lastDesiredVersion"] != float64(3) {
		t.Errorf("reported %v", r)
	}
}

func TestAgentDirectMethods(t *testing.T) {
	h := newHarness(t)
	h.sup.await(t, "the first sync", func() bool { return len(h.sup.desired) >= 1 })
	h.hub.Await(wait, "the agent connected", func() bool { return h.hub.ConnectedLocked("edge-1", ModuleID) == 1 })
	tests := []struct {
		method, payload string
		status          int
		body            string
	}{
		{"ping", "null", 200, "null"},
		{"RestartModule", `{"schemaVersion":"1.0","id":"sensor"}`, 200, "null"},
		{"RestartModule", `{"schemaVersion":"1.0","id":"nope"}`, 400, "module not found"},
		{"RestartModule", `{"schemaVersion":"1.0"}`, 400, "the payload must be"},
		{"UploadModuleLogs", `{}`, 501, "not implemented"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.payload, func(t *testing.T) {
			r, err := h.hub.Invoke("edge-1", ModuleID, tc.method, []byte(tc.payload), wait)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tc.status || !strings.Contains(string(r.Body), tc.body) {
				t.Errorf("answer %d %s, want %d containing %s", r.Status, r.Body, tc.status, tc.body)
			}
		})
	}
	h.sup.mu.Lock()
	defer h.sup.mu.Unlock()
	if !cmp.Equal(h.sup.restarts, []string{"sensor"}) {
		t.Errorf("restarts %v", h.sup.restarts)
	}
}

func TestMergePatch(t *testing.T) {
	old := map[string]any{"$version": 4.0, "a": 1.0, "b": map[string]any{"c": 1.0, "d": 2.0}, "gone": "x", "same": []any{1.0}}
	next := map[string]any{"a": 2.0, "b": map[string]any{"c": 1.0}, "new": true, "same": []any{1.0}}
	want := map[string]any{"a": 2.0, "b": map[string]any{"d": nil}, "gone": nil, "new": true}
	if diff := cmp.Diff(want, mergePatch(old, next)); diff != "" {
		t.Errorf("patch (-want +got):\n%s", diff)
	}
	if p := mergePatch(next, next); p != nil {
		t.Errorf("patch of an unchanged document = %v", p)
	}
}

// fakeAPI is a module API that fails as told.
type fakeAPI struct {
	mods    map[string]*iothub.Module
	failGet error
}

func (f *fakeAPI) Get(_ context.Context, id string) (*iothub.Module, error) {
	if f.failGet != nil {
		return nil, f.failGet
	}
	if m, ok := f.mods[id]; ok {
		return m, nil
	}
	return nil, iothub.ErrModuleNotFound
}
func (f *fakeAPI) List(context.Context) ([]iothub.Module, error) {
	var out []iothub.Module
	for _, m := range f.mods {
		out = append(out, *m)
	}
	return out, nil
}
func (f *fakeAPI) Create(_ context.Context, id, managedBy string) (*iothub.Module, error) {
	m := &iothub.Module{ModuleID: id, ManagedBy: managedBy}
	f.mods[id] = m
	return m, nil
}
func (f *fakeAPI) Delete(_ context.Context, id string) error {
	delete(f.mods, id)
	return nil
}

func TestStorePrunesOnlyWhatTheAgentCreated(t *testing.T) {
	api := &fakeAPI{mods: map[string]*iothub.Module{
		"$edgeAgent": {ModuleID: "$edgeAgent"}, "$edgeHub": {ModuleID: "$edgeHub", ManagedBy: "IotEdge"},
		"old": {ModuleID: "old", ManagedBy: "iotedge"}, "keep": {ModuleID: "keep", ManagedBy: "IotEdge"},
		"someone-elses": {ModuleID: "someone-elses", ManagedBy: "ops"},
	}}
	s := NewStore(api)
	deleted, err := s.Prune(context.Background(), map[string]bool{"keep": true})
	if err != nil || !cmp.Equal(deleted, []string{"old"}) {
		t.Errorf("Prune = %v, %v", deleted, err)
	}
	if _, err := s.Ensure(context.Background(), "fresh"); err != nil || api.mods["fresh"].ManagedBy != iothub.ManagedByIotEdge {
		t.Errorf("Ensure = %v, %+v", err, api.mods["fresh"])
	}
	api.failGet = errors.New("hub unreachable")
	if _, err := s.Ensure(context.Background(), "other"); err == nil || !strings.Contains(err.Error(), "ensure module identity other: hub unreachable") {
		t.Errorf("Ensure with a failing hub = %v", err)
	}
	if m, err := s.Module(context.Background(), "fresh"); err != nil || m.ModuleID != "fresh" {
		t.Errorf("cached Module = %+v, %v", m, err)
	}
}
