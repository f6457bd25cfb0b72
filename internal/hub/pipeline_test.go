package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/telemetry"
)

// gatedTelemetry holds every append until the test decides its outcome:
// the append's bodies arrive on entered, then it waits for a verdict (nil:
// stored; an error: refused).
type gatedTelemetry struct {
	entered  chan []string
	verdicts chan error

	mu     sync.Mutex
	stored []string
}

func newGatedTelemetry() *gatedTelemetry {
	return &gatedTelemetry{entered: make(chan []string, 16), verdicts: make(chan error)}
}

func (g *gatedTelemetry) Append(ctx context.Context, msgs ...telemetry.Message) ([]int64, error) {
	bodies := make([]string, len(msgs))
	for i, m := range msgs {
		bodies[i] = string(m.Body)
	}
	g.entered <- bodies
	select {
	case err := <-g.verdicts:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	seqs := make([]int64, len(msgs))
	for i := range msgs {
		g.stored = append(g.stored, bodies[i])
		seqs[i] = int64(len(g.stored))
	}
	return seqs, nil
}

func (g *gatedTelemetry) next(t *testing.T) []string {
	t.Helper()
	select {
	case b := <-g.entered:
		return b
	case <-time.After(waitLimit):
		t.Fatal("no append")
		return nil
	}
}

func (g *gatedTelemetry) storedBodies() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string{}, g.stored...)
}

// outcomes records done calls in the order they happen.
type outcomes struct {
	mu  sync.Mutex
	got []string
}

func (o *outcomes) done(name string) func(error, bool) {
	return func(err error, more bool) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if err != nil {
			name += " failed"
		}
		if more {
			name += " +"
		}
		o.got = append(o.got, name)
	}
}

func (o *outcomes) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string{}, o.got...)
}

// gatedSession connects dev1 to a service whose telemetry waits at a
// gate. The cleanup fails appends still waiting, so Close returns.
func gatedSession(t *testing.T) (*Session, *gatedTelemetry) {
	t.Helper()
	e := newEnv(t)
	e.device(t, "dev1")
	g := newGatedTelemetry()
	svc, err := New(Options{Registry: e.reg, Auth: fakeAuth{hubauth.Identity{DeviceID: "dev1"}}, Telemetry: g, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	s, err := svc.Connect(context.Background(), hubauth.Request{}, newFakeClient())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-g.entered:
				case g.verdicts <- errors.New("test over"):
				case <-stop:
					return
				}
			}
		}()
		s.Close(nil)
		close(stop)
	})
	return s, g
}

const events = "devices/dev1/messages/events/"

// TestPublishAsyncBatchesInOrder: telemetry queued while an append runs
// is stored by the next append, all of it in one, in order; done calls
// (a twin request's too) come in the order of the publishes, each only
// after its message is stored.
func TestPublishAsyncBatchesInOrder(t *testing.T) {
	s, g := gatedSession(t)
	ctx := context.Background()
	var o outcomes
	s.PublishAsync(ctx, events, []byte("m1"), false, o.done("m1"))
	if first := g.next(t); len(first) != 1 {
		t.Fatalf("first append %v, want m1 alone", first)
	}
	for i := 2; i <= 5; i++ {
		name := fmt.Sprintf("m%d", i)
		s.PublishAsync(ctx, events, []byte(name), false, o.done(name))
	}
	s.PublishAsync(ctx, "$iothub/twin/GET/?$rid=1", nil, false, o.done("twin"))
	if got := o.list(); len(got) != 0 {
		t.Fatalf("done before any append committed: %v", got)
	}
	g.verdicts <- nil
	if rest := g.next(t); len(rest) != 4 {
		t.Fatalf("second append %v, want the 4 messages queued meanwhile", rest)
	}
	g.verdicts <- nil
	s.tq.wait()
	// The outcomes of one append say that more follow at once.
	if diff := cmp.Diff([]string{"m1", "m2 +", "m3 +", "m4 +", "m5 +", "twin"}, o.list()); diff != "" {
		t.Fatalf("done calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"m1", "m2", "m3", "m4", "m5"}, g.storedBodies()); diff != "" {
		t.Fatalf("stored (-want +got):\n%s", diff)
	}
	// Idle: a refusal is reported at once.
	var now outcomes
	s.PublishAsync(ctx, "devices/dev2/messages/events/", nil, false, now.done("foreign"))
	if diff := cmp.Diff([]string{"foreign failed"}, now.list()); diff != "" {
		t.Fatalf("done calls (-want +got):\n%s", diff)
	}
}

// TestPublishAsyncFailure: after a failed append, every later message of
// the session fails without being stored, so nothing newer is stored
// before an older message the client will send again.
func TestPublishAsyncFailure(t *testing.T) {
	s, g := gatedSession(t)
	ctx := context.Background()
	var o outcomes
	s.PublishAsync(ctx, events, []byte("a"), false, o.done("a"))
	g.next(t)
	s.PublishAsync(ctx, events, []byte("b"), false, o.done("b"))
	g.verdicts <- errors.New("disk full")
	s.tq.wait() // b fails without an append
	s.PublishAsync(ctx, events, []byte("c"), false, o.done("c"))
	s.tq.wait()
	if diff := cmp.Diff([]string{"a failed", "b failed", "c failed"}, o.list()); diff != "" {
		t.Fatalf("done calls (-want +got):\n%s", diff)
	}
	if got := g.storedBodies(); len(got) != 0 {
		t.Fatalf("stored %v after a failed append", got)
	}
	if err := s.Publish(ctx, events, []byte("d"), false); err == nil {
		t.Fatal("Publish succeeded after a failed append")
	}
}

// TestCloseWaitsForTelemetry: Close returns only after the telemetry
// already received has been appended and reported.
func TestCloseWaitsForTelemetry(t *testing.T) {
	s, g := gatedSession(t)
	var o outcomes
	s.PublishAsync(context.Background(), events, []byte("a"), false, o.done("a"))
	s.PublishAsync(context.Background(), events, []byte("b"), false, o.done("b"))
	closed := make(chan struct{})
	go func() {
		s.Close(nil)
		close(closed)
	}()
	for n := 0; n < 2; {
		n += len(g.next(t))
		g.verdicts <- nil
	}
	<-closed
	got := o.list()
	for i := range got { // one append or two
		got[i] = strings.TrimSuffix(got[i], " +")
	}
	if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
		t.Fatalf("done calls when Close returned (-want +got):\n%s", diff)
	}
}
