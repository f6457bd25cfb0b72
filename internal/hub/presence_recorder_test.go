package hub

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
)

// presenceWrite is one RecordPresence call.
type presenceWrite struct {
	Device, Module string
	P              registry.Presence
}

// watchedPresence is the registry with a signal for every presence write.
type watchedPresence struct {
	*registry.Hub
	writes chan presenceWrite
}

func (w *watchedPresence) RecordPresence(ctx context.Context, deviceID, moduleID string, p registry.Presence) error {
	err := w.Hub.RecordPresence(ctx, deviceID, moduleID, p)
	w.writes <- presenceWrite{deviceID, moduleID, p}
	return err
}

// testClock is a clock the test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *testClock) set(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = testNow().Add(d) }

// presenceEnv is env with a Service over a watchedPresence registry on a
// moving clock.
type presenceEnv struct {
	*env
	w     *watchedPresence
	clock *testClock
}

func newPresenceEnv(t *testing.T) *presenceEnv {
	t.Helper()
	e := &presenceEnv{env: newEnv(t), clock: &testClock{now: testNow()}}
	e.w = &watchedPresence{Hub: e.reg, writes: make(chan presenceWrite, 64)}
	auth, err := hubauth.New(hubauth.Options{HubHostName: testHub, Identities: hubauth.NewRegistryIdentities(e.reg),
		Attempts: e.st, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if e.svc, err = New(Options{Registry: e.w, Auth: auth, Telemetry: e.events, Now: e.clock.Now, Logger: discardLogger()}); err != nil {
		t.Fatal(err)
	}
	return e
}

// run starts Run and returns a function that stops it and waits for it.
func (e *presenceEnv) run(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitLimit + shutdownGrace):
				t.Error("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// nextWrite returns the next presence write.
func (e *presenceEnv) nextWrite(t *testing.T) presenceWrite {
	t.Helper()
	select {
	case w := <-e.w.writes:
		return w
	case <-time.After(waitLimit):
		t.Fatalf("no presence write within %v", waitLimit)
		return presenceWrite{}
	}
}

// pending returns the changes waiting for the writer, and clears them.
func (e *presenceEnv) pending() map[presenceKey]registry.Presence { return e.svc.rec.take() }

// stored returns a device's presence fields as the registry keeps them.
func (e *presenceEnv) stored(t *testing.T, id string) (string, time.Time, time.Time) {
	t.Helper()
	d, err := e.reg.GetDevice(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d.ConnectionState, d.ConnectionStateUpdatedTime, d.LastActivityTime
}

func TestActivityWritesAreThrottled(t *testing.T) {
	e := newPresenceEnv(t) // Run is not running: the changes stay pending
	s, _ := e.connect(t, "dev1")
	connected := registry.Presence{State: registry.StateConnected, StateTime: testNow(), Activity: testNow()}
	if diff := cmp.Diff(map[presenceKey]registry.Presence{{"dev1", ""}: connected}, e.pending()); diff != "" {
		t.Fatalf("after CONNECT (-want +got):\n%s", diff)
	}
	publish := func(at time.Duration) {
		t.Helper()
		e.clock.set(at)
		if err := s.Publish(context.Background(), "devices/dev1/messages/events/", []byte("x"), false); err != nil {
			t.Fatal(err)
		}
	}
	publish(10 * time.Second)
	if got := e.pending(); len(got) != 0 {
		t.Fatalf("activity 10s after the last recorded one was handed over: %v", got)
	}
	publish(ActivityWriteInterval + time.Second)
	want := map[presenceKey]registry.Presence{{"dev1", ""}: {Activity: testNow().Add(ActivityWriteInterval + time.Second)}}
	if diff := cmp.Diff(want, e.pending()); diff != "" {
		t.Fatalf("activity after the interval (-want +got):\n%s", diff)
	}
	publish(ActivityWriteInterval + 5*time.Second) // not handed over: too soon
	if got := e.pending(); len(got) != 0 {
		t.Fatalf("activity 4s after the last recorded one was handed over: %v", got)
	}
	e.clock.set(ActivityWriteInterval + 9*time.Second)
	s.Close(nil)
	want = map[presenceKey]registry.Presence{{"dev1", ""}: {State: registry.StateDisconnected,
		StateTime: testNow().Add(ActivityWriteInterval + 9*time.Second), Activity: testNow().Add(ActivityWriteInterval + 5*time.Second)}}
	if diff := cmp.Diff(want, e.pending()); diff != "" {
		t.Fatalf("at disconnect, the last activity is handed over (-want +got):\n%s", diff)
	}
}

func TestConnectionStateIsRecorded(t *testing.T) {
	e := newPresenceEnv(t)
	e.run(t)
	s1, _ := e.connect(t, "dev1")
	if w := e.nextWrite(t); w.Device != "dev1" || w.P.State != registry.StateConnected {
		t.Fatalf("first write %+v, want dev1 connected", w)
	}
	state, since, active := e.stored(t, "dev1")
	if state != registry.StateConnected || !since.Equal(testNow()) || !active.Equal(testNow()) {
		t.Fatalf("stored %s since %v, active %v; want Connected since and active at %v", state, since, active, testNow())
	}

	// A second connection of the device, and its end, leave it connected.
	e.clock.set(time.Minute)
	s2, _ := e.connectExisting(t, "dev1")
	if w := e.nextWrite(t); w.P.State != "" || !w.P.Activity.Equal(testNow().Add(time.Minute)) {
		t.Fatalf("write for a second connection %+v, want activity only", w)
	}
	s2.Close(nil)
	if state, _, _ := e.stored(t, "dev1"); state != registry.StateConnected {
		t.Fatalf("after the second connection ended: %s, want Connected", state)
	}

	e.clock.set(2 * time.Minute)
	s1.Close(nil)
	if w := e.nextWrite(t); w.P.State != registry.StateDisconnected {
		t.Fatalf("write after the last connection ended %+v, want disconnected", w)
	}
	state, since, active = e.stored(t, "dev1")
	if state != registry.StateDisconnected || !since.Equal(testNow().Add(2*time.Minute)) || !active.Equal(testNow().Add(time.Minute)) {
		t.Fatalf("stored %s since %v, active %v", state, since, active)
	}
	d, err := e.svc.GetDevice(context.Background(), "dev1")
	if err != nil || d.ConnectionState != registry.StateDisconnected {
		t.Fatalf("GetDevice: %+v, %v", d, err)
	}
}

func TestModuleConnectionStateIsRecorded(t *testing.T) {
	e := newPresenceEnv(t)
	e.run(t)
	e.device(t, "edge1")
	m, err := e.reg.PutModule(context.Background(), &registry.Module{DeviceID: "edge1", ModuleID: "mod1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sas.DecodeKey(m.Authentication.SymmetricKey.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	req := hubauth.Request{ClientID: "edge1/mod1", Username: testHub + "/edge1/mod1/?api-version=2021-04-12",
		Password: sas.Sign(testHub+"/devices/edge1/modules/mod1", raw, "", testNow().Add(time.Hour))}
	s, err := e.svc.Connect(context.Background(), req, newFakeClient())
	if err != nil {
		t.Fatal(err)
	}
	if w := e.nextWrite(t); w.Device != "edge1" || w.Module != "mod1" || w.P.State != registry.StateConnected {
		t.Fatalf("write %+v, want module mod1 connected", w)
	}
	if got, err := e.reg.GetModule(context.Background(), "edge1", "mod1"); err != nil || got.ConnectionState != registry.StateConnected {
		t.Fatalf("module %+v, %v; want Connected", got, err)
	}
	if state, _, _ := e.stored(t, "edge1"); state == registry.StateConnected {
		t.Fatal("a module's connection made its device connected")
	}
	s.Close(nil)
	if w := e.nextWrite(t); w.Module != "mod1" || w.P.State != registry.StateDisconnected {
		t.Fatalf("write %+v, want module mod1 disconnected", w)
	}
}

func TestRunRecordsDisconnectionsAtShutdown(t *testing.T) {
	e := newPresenceEnv(t)
	stop := e.run(t)
	s, _ := e.connect(t, "dev1")
	e.nextWrite(t)
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	// Run waits for the sessions: had it returned at once, the
	// disconnection below would never be written.
	s.Close(nil) // as the transport closes every connection at shutdown
	select {
	case <-stopped:
	case <-time.After(waitLimit):
		t.Fatal("Run did not return once the last session closed")
	}
	if state, _, _ := e.stored(t, "dev1"); state != registry.StateDisconnected {
		t.Fatalf("after shutdown: %s, want Disconnected", state)
	}
}

func TestMergePresence(t *testing.T) {
	t0 := testNow()
	for _, tc := range []struct {
		name     string
		old, new registry.Presence
		want     registry.Presence
	}{
		{"newer state wins", registry.Presence{State: "Connected", StateTime: t0}, registry.Presence{State: "Disconnected", StateTime: t0.Add(time.Second)},
			registry.Presence{State: "Disconnected", StateTime: t0.Add(time.Second)}},
		{"same time: the later call wins", registry.Presence{State: "Connected", StateTime: t0}, registry.Presence{State: "Disconnected", StateTime: t0},
			registry.Presence{State: "Disconnected", StateTime: t0}},
		{"older state loses", registry.Presence{State: "Disconnected", StateTime: t0}, registry.Presence{State: "Connected", StateTime: t0.Add(-time.Second)},
			registry.Presence{State: "Disconnected", StateTime: t0}},
		{"activity only keeps the state", registry.Presence{State: "Connected", StateTime: t0, Activity: t0}, registry.Presence{Activity: t0.Add(time.Minute)},
			registry.Presence{State: "Connected", StateTime: t0, Activity: t0.Add(time.Minute)}},
		{"activity never goes back", registry.Presence{Activity: t0}, registry.Presence{Activity: t0.Add(-time.Minute)},
			registry.Presence{Activity: t0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, mergePresence(tc.old, tc.new)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}
