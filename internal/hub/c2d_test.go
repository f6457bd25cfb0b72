package hub

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/telemetry"
)

// watchedQueue is the registry with a signal for every completed C2D
// message, so tests wait for the delivery loop's store write.
type watchedQueue struct {
	*registry.Hub
	completed chan string
}

func (q *watchedQueue) CompleteCloudMessage(ctx context.Context, deviceID, lockToken string) error {
	err := q.Hub.CompleteCloudMessage(ctx, deviceID, lockToken)
	if err == nil {
		q.completed <- lockToken
	}
	return err
}

// c2dEnv is env with a Service over a watchedQueue and the given clock.
type c2dEnv struct {
	*env
	q *watchedQueue
}

func newC2DEnv(t *testing.T, now func() time.Time) *c2dEnv {
	t.Helper()
	e := &c2dEnv{env: newEnv(t)}
	e.q = &watchedQueue{Hub: e.reg, completed: make(chan string, 2*C2DQueueDepth)}
	e.restart(t, now)
	return e
}

// restart replaces the Service by a new one over the same registry, as a
// restarted hub (nothing of the old one's memory is left).
func (e *c2dEnv) restart(t *testing.T, now func() time.Time) {
	t.Helper()
	auth, err := hubauth.New(hubauth.Options{HubHostName: testHub, Identities: hubauth.NewRegistryIdentities(e.reg),
		Attempts: e.st, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if e.svc, err = New(Options{Registry: e.q, Auth: auth, Telemetry: e.events, Now: now, Logger: discardLogger()}); err != nil {
		t.Fatal(err)
	}
}

// waitCompleted waits for n completions and returns their lock tokens.
func (e *c2dEnv) waitCompleted(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		select {
		case tok := <-e.q.completed:
			out = append(out, tok)
		case <-time.After(waitLimit):
			t.Fatalf("%d of %d messages completed within %v", len(out), n, waitLimit)
		}
	}
	return out
}

// queued returns the device's queue depth.
func (e *c2dEnv) queued(t *testing.T, id string) int {
	t.Helper()
	n, err := e.svc.QueuedCloudMessages(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ackingClient is a fakeClient that can acknowledge QoS 1 messages.
type ackingClient struct {
	*fakeClient
	// qos0 makes every send go at QoS 0 (a QoS 0 subscription).
	qos0 bool

	amu  sync.Mutex
	acks map[string]func() // by topic
}

func newAckingClient() *ackingClient {
	return &ackingClient{fakeClient: newFakeClient(), acks: map[string]func(){}}
}

func (c *ackingClient) SendAcked(topic string, payload []byte, qos byte, acked func()) (bool, error) {
	if !c.qos0 {
		c.amu.Lock()
		c.acks[topic] = acked
		c.amu.Unlock()
	}
	if err := c.Send(topic, payload, qos); err != nil {
		c.amu.Lock()
		delete(c.acks, topic)
		c.amu.Unlock()
		return false, err
	}
	return !c.qos0, nil
}

// ack acknowledges the message sent on topic.
func (c *ackingClient) ack(t *testing.T, topic string) {
	t.Helper()
	c.amu.Lock()
	f := c.acks[topic]
	delete(c.acks, topic)
	c.amu.Unlock()
	if f == nil {
		t.Fatalf("no unacknowledged message on %s", topic)
	}
	f()
}

// connectAcking connects an existing device with an acking client and
// subscribes it to its C2D messages.
func (e *c2dEnv) connectAcking(t *testing.T, id string) (*Session, *ackingClient) {
	t.Helper()
	d, err := e.reg.GetDevice(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	c := newAckingClient()
	s, err := e.svc.Connect(context.Background(), request(t, id, d.Authentication.SymmetricKey.PrimaryKey), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(nil) })
	if !s.Allow(deviceboundPrefix(id)+"#", false) {
		t.Fatal("C2D subscription refused")
	}
	return s, c
}

func TestCloudMessageDelivery(t *testing.T) {
	e := newC2DEnv(t, testNow)
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
	if n := e.queued(t, "dev1"); n != 1 {
		t.Fatalf("%d queued, want 1", n)
	}
	d, err := e.svc.GetDevice(context.Background(), "dev1")
	if err != nil || d.CloudToDeviceMessageCount != 1 {
		t.Fatalf("GetDevice: cloudToDeviceMessageCount %v, %v; want 1", d, err)
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
	// A client that cannot acknowledge completes the message on sending.
	e.waitCompleted(t, 1)
	// Sent while subscribed: delivered at once, with a generated ID.
	id2, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte("2")})
	if err != nil || len(id2) != 32 {
		t.Fatalf("SendCloudMessage: %q, %v; want a generated 32-hex-digit ID", id2, err)
	}
	got := c.next(t)
	if !strings.HasPrefix(got.Topic, "devices/dev1/messages/devicebound/%24.mid="+id2+"&") || got.Payload != "2" {
		t.Fatalf("second delivery %+v", got)
	}
	e.waitCompleted(t, 1)
	if n := e.queued(t, "dev1"); n != 0 {
		t.Fatalf("%d queued after delivery, want 0", n)
	}
}

func TestCloudMessageCompletesOnAcknowledgement(t *testing.T) {
	e := newC2DEnv(t, testNow)
	e.device(t, "dev1")
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	_, c := e.connectAcking(t, "dev1")
	m := c.next(t)
	if m.QoS != 1 || m.Payload != "a" {
		t.Fatalf("delivery %+v", m)
	}
	// Sent but not acknowledged: still queued.
	if n := e.queued(t, "dev1"); n != 1 {
		t.Fatalf("%d queued before the acknowledgement, want 1", n)
	}
	c.ack(t, m.Topic)
	e.waitCompleted(t, 1)
	if n := e.queued(t, "dev1"); n != 0 {
		t.Fatalf("%d queued after the acknowledgement, want 0", n)
	}
}

func TestCloudMessageRedeliveredWhenNotAcknowledged(t *testing.T) {
	e := newC2DEnv(t, testNow)
	e.device(t, "dev1")
	for _, b := range []string{"first", "second"} {
		if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte(b)}); err != nil {
			t.Fatal(err)
		}
	}
	s1, c1 := e.connectAcking(t, "dev1")
	first, second := c1.next(t), c1.next(t)
	if first.Payload != "first" || second.Payload != "second" {
		t.Fatalf("deliveries %+v %+v, want first then second", first, second)
	}
	c1.ack(t, first.Topic)
	e.waitCompleted(t, 1)
	s1.Close(nil) // "second" was never acknowledged

	_, c2 := e.connectAcking(t, "dev1")
	again := c2.next(t)
	if diff := cmp.Diff(second, again); diff != "" {
		t.Fatalf("redelivery differs from the first delivery (-first +again):\n%s", diff)
	}
	c2.ack(t, again.Topic)
	e.waitCompleted(t, 1)
	if n := e.queued(t, "dev1"); n != 0 {
		t.Fatalf("%d queued, want 0", n)
	}
}

func TestCloudMessageSurvivesRestart(t *testing.T) {
	e := newC2DEnv(t, testNow)
	e.device(t, "dev1")
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte("durable")}); err != nil {
		t.Fatal(err)
	}
	e.restart(t, testNow)
	_, c := e.connectAcking(t, "dev1")
	if m := c.next(t); m.Payload != "durable" {
		t.Fatalf("delivery after the restart %+v", m)
	}
}

func TestCloudMessageQoS0Subscription(t *testing.T) {
	e := newC2DEnv(t, testNow)
	key := e.device(t, "dev1")
	c := newAckingClient()
	c.qos0 = true
	s, err := e.svc.Connect(context.Background(), request(t, "dev1", key), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(nil) })
	s.Allow("devices/dev1/messages/devicebound/#", false)
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte("once")}); err != nil {
		t.Fatal(err)
	}
	if m := c.next(t); m.Payload != "once" {
		t.Fatalf("delivery %+v", m)
	}
	e.waitCompleted(t, 1) // at most once: complete when sent
}

func TestCloudMessageQueueBound(t *testing.T) {
	e := newC2DEnv(t, testNow)
	e.device(t, "dev1")
	for i := range C2DQueueDepth {
		if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte{byte('A' + i)}}); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("message %d: %v, want ErrQueueFull", C2DQueueDepth+1, err)
	}
	// Delivered in send order (the clock does not move); sent messages
	// count until acknowledged.
	_, c := e.connectAcking(t, "dev1")
	var topics []string
	for i := range C2DQueueDepth {
		m := c.next(t)
		if m.Payload != string([]byte{byte('A' + i)}) {
			t.Fatalf("delivery %d has payload %q", i, m.Payload)
		}
		topics = append(topics, m.Topic)
	}
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("message sent while 50 are in flight: %v, want ErrQueueFull", err)
	}
	c.ack(t, topics[0])
	e.waitCompleted(t, 1)
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte("next")}); err != nil {
		t.Fatalf("message after an acknowledgement: %v", err)
	}
	if m := c.next(t); m.Payload != "next" {
		t.Fatalf("delivery %+v", m)
	}
}

func TestCloudMessageStaysQueuedWhenUndeliverable(t *testing.T) {
	e := newC2DEnv(t, testNow)
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
	s.Close(nil) // waits for the delivery loop
	if n := e.queued(t, "dev1"); n != 1 {
		t.Fatalf("%d queued after a failed delivery, want 1", n)
	}
	_, c2 := e.connectAcking(t, "dev1")
	if m := c2.next(t); m.Payload != "x" {
		t.Fatalf("redelivery %+v", m)
	}
}

func TestCloudMessageNotSentTwiceToTwoConnections(t *testing.T) {
	e := newC2DEnv(t, testNow)
	e.device(t, "dev1")
	s1, c1 := e.connectAcking(t, "dev1")
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	one := c1.next(t) // in flight to the first connection, not acknowledged
	c1.mu.Lock()
	c1.fail = errors.New("connection stalled")
	c1.mu.Unlock()
	// A second connection of the device (one taking the other over)
	// subscribes, and a second message is sent: the first connection
	// cannot take it, the second one can.
	_, c2 := e.connectAcking(t, "dev1")
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte("two")}); err != nil {
		t.Fatal(err)
	}
	// The queue is read in order: had "one" gone to the second connection
	// too, it would have come first.
	if m := c2.next(t); m.Payload != "two" {
		t.Fatalf("the second connection got %+v first, want two (one is in flight elsewhere)", m)
	}
	// When the first connection ends, its unacknowledged message goes to
	// the other one at once.
	s1.Close(nil)
	if m := c2.next(t); m.Topic != one.Topic || m.Payload != "one" {
		t.Fatalf("after the first connection ended the second got %+v, want %+v", m, one)
	}
}

func TestCloudMessageRefused(t *testing.T) {
	e := newC2DEnv(t, testNow)
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
	if n := e.queued(t, "dev1"); n != 0 {
		t.Fatalf("%d queued after refusals, want 0", n)
	}
}

func TestCloudMessageExpires(t *testing.T) {
	var (
		mu  sync.Mutex
		now = testNow()
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	e := newC2DEnv(t, clock)
	e.device(t, "dev1")
	exp := testNow().Add(time.Minute).Format(time.RFC3339)
	far := testNow().Add(365 * 24 * time.Hour).Format(time.RFC3339)
	for _, m := range []CloudMessage{
		{System: map[string]string{telemetry.PropExpiryTime: exp}, Body: []byte("minute")},
		{Body: []byte("default")},
		{System: map[string]string{telemetry.PropExpiryTime: far}, Body: []byte("capped")},
	} {
		if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", m); err != nil {
			t.Fatal(err)
		}
	}
	pending := func() []string {
		ms, err := e.reg.PendingCloudMessages(context.Background(), "dev1", clock())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, string(m.Body))
		}
		return out
	}
	advance(2 * time.Minute)
	if diff := cmp.Diff([]string{"default", "capped"}, pending()); diff != "" {
		t.Fatalf("live after a minute (-want +got):\n%s", diff)
	}
	advance(DefaultC2DTTL)
	if diff := cmp.Diff([]string{"capped"}, pending()); diff != "" {
		t.Fatalf("live after the default TTL (-want +got):\n%s", diff)
	}
	advance(MaxC2DTTL)
	e.svc.c2dSweep(context.Background())
	if n := e.queued(t, "dev1"); n != 0 {
		t.Fatalf("%d queued after the maximum TTL and a sweep, want 0 (the far expiry is capped)", n)
	}
}

func TestCloudMessageSweepWakesReceivers(t *testing.T) {
	e := newC2DEnv(t, testNow)
	e.device(t, "dev1")
	_, c := e.connectAcking(t, "dev1")
	// Queued behind the hub's back (another instance sharing the store).
	if err := e.reg.EnqueueCloudMessage(context.Background(), &registry.CloudMessage{LockToken: "x-1", DeviceID: "dev1",
		EnqueuedTime: testNow(), ExpiryTime: testNow().Add(time.Hour), Body: []byte("elsewhere")}, C2DQueueDepth, testNow()); err != nil {
		t.Fatal(err)
	}
	e.svc.c2dSweep(context.Background())
	if m := c.next(t); m.Payload != "elsewhere" {
		t.Fatalf("delivery after the sweep %+v", m)
	}
}

func TestCloudQueueOfDeletedDevice(t *testing.T) {
	e := newC2DEnv(t, testNow)
	e.device(t, "dev1")
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RemoveDevice(context.Background(), "dev1", ""); err != nil {
		t.Fatal(err)
	}
	if n := e.queued(t, "dev1"); n != 0 {
		t.Fatalf("%d queued for a deleted device, want 0", n)
	}
	// A message queued for an earlier incarnation (its purge failed)
	// never reaches the new device of the same ID.
	e.device(t, "dev1")
	if err := e.reg.EnqueueCloudMessage(context.Background(), &registry.CloudMessage{LockToken: "stale", DeviceID: "dev1",
		EnqueuedTime: testNow(), ExpiryTime: testNow().Add(time.Hour), Body: []byte("stale")}, C2DQueueDepth, testNow()); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.RemoveDevice(context.Background(), "dev1", ""); err != nil { // not through the hub: no purge
		t.Fatal(err)
	}
	e.device(t, "dev1")
	if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{Body: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	_, c := e.connectAcking(t, "dev1")
	if m := c.next(t); m.Payload != "new" {
		t.Fatalf("delivery %+v, want the new device's message only", m)
	}
	c.none(t)
}

func TestPurgeCloudMessages(t *testing.T) {
	e := newC2DEnv(t, testNow)
	e.device(t, "dev1")
	for range 3 {
		if _, err := e.svc.SendCloudMessage(context.Background(), "dev1", CloudMessage{}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := e.svc.PurgeCloudMessages(context.Background(), "dev1"); n != 3 || err != nil {
		t.Fatalf("PurgeCloudMessages: %d, %v; want 3", n, err)
	}
	if n := e.queued(t, "dev1"); n != 0 {
		t.Fatalf("%d queued after the purge", n)
	}
	if _, err := e.svc.PurgeCloudMessages(context.Background(), "ghost"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("purge of an unknown device: %v, want ErrNotFound", err)
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
