package hub

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/telemetry"
)

func TestCloudMessageDelivery(t *testing.T) {
	e := newEnv(t)
	s, c := e.connect(t, "dev1")
	msg := CloudMessage{
		System: map[string]string{telemetry.PropMessageID: "m-1", telemetry.PropCorrelationID: "c/1", telemetry.PropAck: "full"},
		App:    map[string]string{"color": "blue&red"},
		Body:   []byte("hello"),
	}
	id, err := e.svc.SendCloudMessage(context.Background(), "dev1", msg)
	if err != nil || id != "m-1" {
		t.Fatalf("SendCloudMessage: %q, %v; want m-1", id, err)
	}
	c.none(t) // not subscribed yet: it waits
	if n := e.svc.QueuedCloudMessages("dev1"); n != 1 {
		t.Fatalf("%d queued, want 1", n)
	}
	if !s.Allow("devices/dev1/messages/devicebound/#", false) {
		t.Fatal("C2D subscription refused")
	}
	want := sent{
		Topic:   "devices/dev1/messages/devicebound/%24.mid=m-1&%24.cid=c%2F1&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&iothub-ack=full&color=blue%26red",
		Payload: "hello", QoS: 1,
	}
	if diff := cmp.Diff(want, c.next(t)); diff != "" {
		t.Fatalf("delivery (-want +got):\n%s", diff)
	}
	// Sent while subscribed: delivered at once, with a generated ID.
	id2, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte("2")})
	if err != nil || len(id2) != 32 {
		t.Fatalf("SendCloudMessage: %q, %v; want a generated 32-hex-digit ID", id2, err)
	}
	got := c.next(t)
	if !strings.HasPrefix(got.Topic, "devices/dev1/messages/devicebound/%24.mid="+id2+"&") || got.Payload != "2" {
		t.Fatalf("second delivery %+v", got)
	}
	if n := e.svc.QueuedCloudMessages("dev1"); n != 0 {
		t.Fatalf("%d queued after delivery, want 0", n)
	}
}

func TestCloudMessageQueueBound(t *testing.T) {
	e := newEnv(t)
	e.device(t, "dev1")
	for i := range C2DQueueDepth {
		if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte{byte(i)}}); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("message %d: %v, want ErrQueueFull", C2DQueueDepth+1, err)
	}
	// Delivery frees the queue, in order.
	d, c1 := e.connectExisting(t, "dev1")
	if !d.Allow("devices/dev1/messages/devicebound/#", false) {
		t.Fatal("C2D subscription refused")
	}
	for i := range C2DQueueDepth {
		if m := c1.next(t); m.Payload != string([]byte{byte(i)}) {
			t.Fatalf("delivery %d has payload %q", i, m.Payload)
		}
	}
}

func TestCloudMessageStaysQueuedWhenUndeliverable(t *testing.T) {
	e := newEnv(t)
	s, c := e.connect(t, "dev1")
	c.mu.Lock()
	c.fail = errors.New("not subscribed")
	c.mu.Unlock()
	if !s.Allow("devices/dev1/messages/devicebound/#", false) {
		t.Fatal("C2D subscription refused")
	}
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.refused:
	case <-time.After(waitLimit):
		t.Fatal("no delivery attempted")
	}
	s.Close(nil) // waits for the delivery loop, which puts the message back
	if n := e.svc.QueuedCloudMessages("dev1"); n != 1 {
		t.Fatalf("%d queued after a failed delivery, want 1", n)
	}
	s2, c2 := e.connectExisting(t, "dev1")
	s2.Allow("devices/dev1/messages/devicebound/#", false)
	if m := c2.next(t); m.Payload != "x" {
		t.Fatalf("redelivery %+v", m)
	}
}

func TestCloudMessageRefused(t *testing.T) {
	e := newEnv(t)
	e.device(t, "dev1")
	for _, tc := range []struct {
		name   string
		device string
		msg    CloudMessage
		want   error
	}{
		{"unknown device", "ghost", CloudMessage{}, registry.ErrNotFound},
		{"body too large", "dev1", CloudMessage{Body: make([]byte, MaxC2DBodyBytes+1)}, ErrInvalidC2D},
		{"hub-only system property", "dev1", CloudMessage{System: map[string]string{telemetry.PropTo: "/x"}}, ErrInvalidC2D},
		{"bad expiry", "dev1", CloudMessage{System: map[string]string{telemetry.PropExpiryTime: "tomorrow"}}, ErrInvalidC2D},
		{"past expiry", "dev1", CloudMessage{System: map[string]string{telemetry.PropExpiryTime: "2000-01-01T00:00:00Z"}}, ErrInvalidC2D},
		{"NUL in property", "dev1", CloudMessage{App: map[string]string{"k": "a\x00b"}}, ErrInvalidC2D},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.svc.SendCloudMessage(context.Background(), tc.device, tc.msg); !errors.Is(err, tc.want) {
				t.Fatalf("SendCloudMessage: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCloudMessageExpires(t *testing.T) {
	var (
		mu  sync.Mutex
		now = testNow()
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t)
	svc, err := New(Options{Registry: e.reg, Auth: fakeAuth{}, Telemetry: e.events, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	e.device(t, "dev1")
	exp := testNow().Add(time.Minute).Format(time.RFC3339)
	for _, m := range []CloudMessage{{System: map[string]string{telemetry.PropExpiryTime: exp}}, {}} {
		if _, err := svc.SendCloudMessage(context.Background(), "dev1", m); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if n := svc.QueuedCloudMessages("dev1"); n != 1 {
		t.Fatalf("%d queued after the first expired, want 1", n)
	}
	mu.Lock()
	now = now.Add(DefaultC2DTTL)
	mu.Unlock()
	if n := svc.QueuedCloudMessages("dev1"); n != 0 {
		t.Fatalf("%d queued after both expired, want 0", n)
	}
}

// connectExisting connects an existing device with a fresh client.
func (e *env) connectExisting(t *testing.T, id string) (*Session, *fakeClient) {
	t.Helper()
	d, err := e.reg.GetDevice(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	c := newFakeClient()
	s, err := e.svc.Connect(context.Background(), request(t, id, d.Authentication.SymmetricKey.PrimaryKey), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(nil) })
	return s, c
}
