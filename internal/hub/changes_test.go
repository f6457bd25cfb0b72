package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
	"github.com/muster-iot/muster/internal/telemetry"
)

// twoInstances returns two hub services with their own registries and
// authenticators over one shared store, as two `muster serve` on one
// database; both relay changes through it. Both follow the change stream
// from its current end once twoInstances returns.
func twoInstances(t *testing.T) (a, b *env) {
	t.Helper()
	st := memstore.New(100)
	return newInstance(t, st), newInstance(t, st)
}

// thirdInstance returns one more instance on the store of a.
func thirdInstance(t *testing.T, a *env) *env {
	t.Helper()
	return newInstance(t, a.st)
}

// newInstance returns an instance of the hub on st that follows the
// change stream from its current end until the test ends.
func newInstance(t *testing.T, st *memstore.Store) *env {
	t.Helper()
	e := idleInstance(t, st)
	svc := e.svc
	ctx, cancel := context.WithCancel(context.Background())
	cursor, ok := svc.changes.tail(ctx)
	if !ok {
		t.Fatal("change stream end not read")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		svc.changes.follow(ctx, cursor)
		svc.changes.methods.served.Wait()
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return e
}

// idleInstance returns an instance of the hub on st that does not follow
// the change stream.
func idleInstance(t *testing.T, st *memstore.Store) *env {
	t.Helper()
	reg := registry.New(testHub, st, testNow)
	auth, err := hubauth.New(hubauth.Options{HubHostName: testHub, Identities: hubauth.NewRegistryIdentities(reg), Attempts: st, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	events, err := telemetry.NewEndpoint(st, telemetry.Options{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Options{Registry: reg, Auth: auth, Telemetry: events, Now: testNow, Changes: st})
	if err != nil {
		t.Fatal(err)
	}
	return &env{st: st, reg: reg, events: events, svc: svc}
}

// TestChangesReachOtherInstance: a desired patch, a C2D message and a
// delete made through instance a reach the session of instance b.
func TestChangesReachOtherInstance(t *testing.T) {
	a, b := twoInstances(t)
	ctx := context.Background()
	s, c := b.connect(t, "dev1")
	if !s.Allow(DesiredFilter, false) {
		t.Fatal("desired subscription refused")
	}
	if !s.Allow(deviceboundPrefix("dev1")+"#", false) {
		t.Fatal("C2D subscription refused")
	}

	if _, err := a.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"interval":7}`)}, ""); err != nil {
		t.Fatal(err)
	}
	got := c.next(t)
	want := sent{Topic: "$iothub/twin/PATCH/properties/desired/?$version=2", Payload: `{"interval":7,"$version":2}`, QoS: 1}
	if got != want {
		t.Fatalf("desired notification on the other instance = %+v; want %+v", got, want)
	}

	if _, err := a.svc.SendCloudMessage(ctx, "dev1", CloudMessage{Body: []byte("hello b")}); err != nil {
		t.Fatal(err)
	}
	got = c.next(t)
	if !strings.HasPrefix(got.Topic, deviceboundPrefix("dev1")) || got.Payload != "hello b" {
		t.Fatalf("C2D message on the other instance = %+v", got)
	}

	if err := a.svc.RemoveDevice(ctx, "dev1", ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.disconnected:
	case <-time.After(waitLimit):
		t.Fatalf("the session on the other instance was not ended within %v after the delete", waitLimit)
	}

	// Every hint is one entry of the shared stream, tagged with its origin.
	entries, err := a.st.ReadMessages(ctx, ChangeStream, 0, store.StreamFilter{Key: "dev1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range entries {
		var d changeDoc
		if err := json.Unmarshal(e.Doc, &d); err != nil {
			t.Fatal(err)
		}
		if d.Origin != a.svc.changes.origin {
			t.Fatalf("hint %s from origin %q; want a's %q", e.Doc, d.Origin, a.svc.changes.origin)
		}
		kinds = append(kinds, d.Kind)
	}
	if strings.Join(kinds, ",") != "desired,c2d,revoked" {
		t.Fatalf("hints = %v; want desired, c2d, revoked", kinds)
	}
}

// TestChangesWithoutStore: a hub without Options.Changes appends no hints.
func TestChangesWithoutStore(t *testing.T) {
	e := newEnv(t)
	e.connect(t, "dev1")
	if _, err := e.svc.PatchTwin(context.Background(), "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"x":1}`)}, ""); err != nil {
		t.Fatal(err)
	}
	info, err := e.st.StreamInfo(context.Background(), ChangeStream)
	if err != nil {
		t.Fatal(err)
	}
	if info.LastSeq != 0 || e.svc.changes != nil {
		t.Fatalf("change stream %+v, relay %v; want none", info, e.svc.changes)
	}
}

// TestModuleRevocationReachesOtherInstance: a module deleted through
// instance a loses its session on instance b; the device's session there
// stays.
func TestModuleRevocationReachesOtherInstance(t *testing.T) {
	a, b := twoInstances(t)
	_, mc := b.connectModule(t, "edge1", "m1")
	ds, dc := b.connectExisting(t, "edge1")
	if !ds.Allow(DesiredFilter, false) {
		t.Fatal("desired subscription refused")
	}
	if err := a.reg.RemoveModule(context.Background(), "edge1", "m1", ""); err != nil {
		t.Fatal(err)
	}
	if n := a.svc.DisconnectModule("edge1", "m1", "the module was deleted"); n != 0 {
		t.Fatalf("instance a ended %d sessions; the module is connected to b only", n)
	}
	select {
	case <-mc.disconnected:
	case <-time.After(waitLimit):
		t.Fatalf("the module's session on the other instance was not ended within %v after the delete", waitLimit)
	}
	// A later change reaches the device's session: it is still there.
	if _, err := a.svc.PatchTwin(context.Background(), "edge1", registry.TwinUpdate{Desired: json.RawMessage(`{"x":1}`)}, ""); err != nil {
		t.Fatal(err)
	}
	if got := dc.next(t); !strings.HasPrefix(got.Topic, "$iothub/twin/PATCH/properties/desired/") {
		t.Fatalf("device got %+v; want its desired notification", got)
	}
	select {
	case <-dc.disconnected:
		t.Fatal("the device's own session was ended with its module's")
	default:
	}
	if n := b.svc.Connected("edge1"); n != 1 {
		t.Fatalf("instance b has %d sessions of edge1; want the device's only", n)
	}
}

// TestLostHintsRecheckedOnRestart: changes committed by an instance that
// died before it appended their hints (simulated by writing through the
// registry, which appends none) reach the sessions of the other instance
// once the dead one starts again and announces it.
func TestLostHintsRecheckedOnRestart(t *testing.T) {
	a, b := twoInstances(t)
	ctx := context.Background()
	s1, c1 := b.connect(t, "dev1")
	if !s1.Allow(DesiredFilter, false) {
		t.Fatal("desired subscription refused")
	}
	_, c2 := b.connect(t, "dev2")
	_, c3 := b.connect(t, "dev3")
	_, cm := b.connectModule(t, "edge1", "m1")

	if _, err := a.reg.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"lost":true}`)}, ""); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.RemoveDevice(ctx, "dev2", ""); err != nil {
		t.Fatal(err)
	}
	d3, err := a.reg.GetDevice(ctx, "dev3")
	if err != nil {
		t.Fatal(err)
	}
	d3.Status = registry.StatusDisabled
	if _, err := a.reg.PutDevice(ctx, d3, "*"); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.RemoveModule(ctx, "edge1", "m1", ""); err != nil {
		t.Fatal(err)
	}
	c1.none(t) // no hint: nothing happened on b yet

	a.svc.changes.announce() // a restarted
	if got := c1.next(t); got.Payload != `{"lost":true,"$version":2}` {
		t.Fatalf("desired notification after the recheck = %+v", got)
	}
	for name, c := range map[string]*fakeClient{"deleted device": c2, "disabled device": c3, "deleted module": cm} {
		select {
		case <-c.disconnected:
		case <-time.After(waitLimit):
			t.Fatalf("the session of the %s was not ended within %v after the restart", name, waitLimit)
		}
	}
	select {
	case <-c1.disconnected:
		t.Fatal("the session of an unchanged device was ended")
	default:
	}
}

// flakyStreams fails the first fails appends.
type flakyStreams struct {
	store.Streams
	mu    sync.Mutex
	fails int
}

func (f *flakyStreams) AppendMessages(ctx context.Context, stream string, entries []store.StreamEntry) ([]int64, error) {
	f.mu.Lock()
	fail := f.fails > 0
	f.fails--
	f.mu.Unlock()
	if fail {
		return nil, errors.New("connection reset")
	}
	return f.Streams.AppendMessages(ctx, stream, entries)
}

// TestChangeHintRetried: a hint whose append fails is tried again, up to
// changePublishAttempts times; the write it announces stands either way.
func TestChangeHintRetried(t *testing.T) {
	for _, tc := range []struct {
		fails, want int
	}{{fails: changePublishAttempts - 1, want: 1}, {fails: changePublishAttempts, want: 0}} {
		t.Run(fmt.Sprintf("fails=%d", tc.fails), func(t *testing.T) {
			e := newEnv(t)
			svc, err := New(Options{Registry: e.reg, Auth: fakeAuth{}, Telemetry: e.events, Now: testNow, Changes: &flakyStreams{Streams: e.st, fails: tc.fails}})
			if err != nil {
				t.Fatal(err)
			}
			e.device(t, "dev1")
			if _, err := svc.PatchTwin(context.Background(), "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"x":1}`)}, ""); err != nil {
				t.Fatalf("PatchTwin: %v; the write stands whatever happens to its hint", err)
			}
			info, err := e.st.StreamInfo(context.Background(), ChangeStream)
			if err != nil {
				t.Fatal(err)
			}
			if info.Count != int64(tc.want) {
				t.Fatalf("%d hints appended; want %d", info.Count, tc.want)
			}
		})
	}
}

// TestSilentInstanceRechecked: when an instance that was heard from falls
// silent without saying it stopped (it died, perhaps between a write and
// its hint), the others recheck their sessions.
func TestSilentInstanceRechecked(t *testing.T) {
	a, b := twoInstances(t)
	ctx := context.Background()
	s1, c1 := b.connect(t, "dev1")
	if !s1.Allow(DesiredFilter, false) {
		t.Fatal("desired subscription refused")
	}
	a.svc.changes.publish(changeAlive, restartKey, "", "")
	for !b.svc.changes.peers.heard(a.svc.changes.origin) {
		time.Sleep(time.Millisecond) // b reads it at once (memstore wakes it)
	}
	if _, err := a.reg.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"lost":1}`)}, ""); err != nil {
		t.Fatal(err) // through the registry: no hint, as if a died before appending it
	}
	b.svc.changes.checkPeers(ctx, testNow().Add(changePeerTimeout/2))
	c1.none(t) // not silent long enough (and the recheck would be asynchronous anyway)
	b.svc.changes.checkPeers(ctx, testNow().Add(changePeerTimeout+time.Second))
	if got := c1.next(t); got.Payload != `{"lost":1,"$version":2}` {
		t.Fatalf("desired notification after the recheck = %+v", got)
	}
}

func TestPeerSet(t *testing.T) {
	var p peerSet
	t0 := testNow()
	p.seen("a", changeAlive, t0)
	p.seen("b", changeRestarted, t0)
	p.seen("c", changeAlive, t0)
	p.seen("c", changeStopped, t0.Add(time.Second)) // stopped cleanly: not dead
	p.seen("b", changeDesired, t0.Add(changePeerTimeout))
	if got := p.silent(t0.Add(changePeerTimeout / 2)); len(got) != 0 {
		t.Fatalf("silent too early: %v", got)
	}
	if diff := cmp.Diff([]string{"a"}, p.silent(t0.Add(changePeerTimeout+time.Second))); diff != "" {
		t.Fatalf("silent (-want +got):\n%s", diff)
	}
	if got := p.silent(t0.Add(changePeerTimeout + time.Second)); len(got) != 0 {
		t.Fatalf("an instance reported silent twice: %v", got)
	}
}

// TestChangesPreparedBeforeConnections: a change made after PrepareChanges
// reaches a session that connected before the relay started to follow
// (as when `muster serve` accepts connections before Run gets going).
func TestChangesPreparedBeforeConnections(t *testing.T) {
	a, _ := twoInstances(t)
	b := idleInstance(t, a.st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := b.svc.PrepareChanges(ctx); err != nil {
		t.Fatal(err)
	}
	s, c := b.connect(t, "dev1")
	if !s.Allow(DesiredFilter, false) {
		t.Fatal("desired subscription refused")
	}
	if _, err := a.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"early":true}`)}, ""); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		b.svc.changes.run(ctx)
	}()
	if got := c.next(t); got.Payload != `{"early":true,"$version":2}` {
		t.Fatalf("desired notification = %+v", got)
	}
}
