package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/wind-c/comqtt/v2/mqtt/packets"

	"github.com/muster-iot/muster/internal/hub"
	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
	"github.com/muster-iot/muster/internal/telemetry"
)

// gatedStreams holds every stream append until the test decides its
// outcome: an append announces its entries on entered and then waits for
// a verdict (nil: it commits; an error: it fails without storing).
type gatedStreams struct {
	store.Streams
	entered  chan []store.StreamEntry
	verdicts chan error
}

func newGatedStreams(s store.Streams) *gatedStreams {
	return &gatedStreams{Streams: s, entered: make(chan []store.StreamEntry, 16), verdicts: make(chan error)}
}

func (g *gatedStreams) AppendMessages(ctx context.Context, stream string, entries []store.StreamEntry) ([]int64, error) {
	g.entered <- entries
	select {
	case err := <-g.verdicts:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Streams.AppendMessages(ctx, stream, entries)
}

// nextAppend waits for the next append to reach the gate and returns its
// entries.
func (g *gatedStreams) nextAppend(t *testing.T) []store.StreamEntry {
	t.Helper()
	select {
	case e := <-g.entered:
		return e
	case <-time.After(waitLimit):
		t.Fatal("no append reached the store")
		return nil
	}
}

// logBuffer collects logs for assertions (and passes them to t).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// pipeHub is the hub realm over a real hub service whose telemetry
// appends pass through a gate, served on net.Pipe connections.
type pipeHub struct {
	st     *memstore.Store
	gate   *gatedStreams
	reg    *registry.Hub
	events *telemetry.Endpoint
	srv    *Server
	logs   *logBuffer
	// writes records the server's writes on the latest connection.
	writes *writeLog
}

// writeLog is a connection that records the size of every write.
type writeLog struct {
	net.Conn
	mu    sync.Mutex
	sizes []int
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.sizes = append(w.sizes, len(p))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

// last returns the size of the latest write.
func (w *writeLog) last() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sizes[len(w.sizes)-1]
}

func newPipeHub(t *testing.T) *pipeHub {
	t.Helper()
	e := &pipeHub{st: memstore.New(100), logs: &logBuffer{}}
	e.gate = newGatedStreams(e.st)
	e.reg = registry.New(realmHub, e.st, time.Now)
	auth, err := hubauth.New(hubauth.Options{HubHostName: realmHub, Identities: hubauth.NewRegistryIdentities(e.reg), Attempts: e.st})
	if err != nil {
		t.Fatal(err)
	}
	if e.events, err = telemetry.NewEndpoint(e.gate, telemetry.Options{}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	svc, err := hub.New(hub.Options{Registry: e.reg, Auth: auth, Telemetry: e.events, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	realm, err := NewHubRealm(svc, log)
	if err != nil {
		t.Fatal(err)
	}
	e.srv, err = New(Options{Logger: log, HubRealm: realm})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Appends still at the gate fail, so Close does not wait on them.
		go func() {
			for range e.gate.entered {
			}
		}()
		done := make(chan struct{})
		go func() {
			for {
				select {
				case e.gate.verdicts <- errors.New("test over"):
				case <-done:
					return
				}
			}
		}()
		if err := e.srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		close(done)
		if t.Failed() {
			t.Log(e.logs.String())
		}
	})
	return e
}

// connect creates device id and connects it over a pipe with MQTT 3.1.1.
func (e *pipeHub) connect(t *testing.T, id string) (rc *rawClient, password string) {
	t.Helper()
	d, err := e.reg.PutDevice(context.Background(), &registry.Device{DeviceID: id}, "")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sas.DecodeKey(d.Authentication.SymmetricKey.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	password = sas.Sign(realmHub+"/devices/"+id, raw, "", time.Now().Add(time.Hour))
	client, server := net.Pipe()
	e.writes = &writeLog{Conn: server}
	go func() { _ = e.srv.ServeConn(e.writes, nil, "") }()
	rc = newRawClient(t, client, 4)
	rc.send(connectPacket(4, id, realmHub+"/"+id+"/?api-version=2021-04-12", password))
	if ack := rc.expect(packets.Connack); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
	}
	return rc, password
}

// stored returns the bodies of id's messages in the stream.
func (e *pipeHub) stored(t *testing.T, id string) []string {
	t.Helper()
	msgs, err := e.events.Read(context.Background(), 0, telemetry.Filter{DeviceID: id}, store.MaxStreamReadLimit)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, m := range msgs {
		out = append(out, string(m.Body))
	}
	return out
}

// expectPubacks reads n packets and checks they are PUBACKs for first,
// first+1, ….
func expectPubacks(t *testing.T, rc *rawClient, first uint16, n int) {
	t.Helper()
	for i := range n {
		pk := rc.expect(packets.Puback)
		if want := first + uint16(i); pk.PacketID != want {
			t.Fatalf("PUBACK for packet %d, want %d (PUBACKs must follow the PUBLISH order)", pk.PacketID, want)
		}
	}
}

func body(i int) string { return fmt.Sprintf("m%03d", i) }

// TestPipelinedTelemetry: one connection keeps many QoS 1 publishes
// unacknowledged; none is acknowledged before the append that stores it
// has committed, they are stored in order with few appends, and the
// PUBACKs come in the order of the PUBLISHes.
func TestPipelinedTelemetry(t *testing.T) {
	e := newPipeHub(t)
	rc, _ := e.connect(t, "dev1")
	const n = 50
	for i := 1; i <= n; i++ {
		rc.send(publishPacket(uint16(i), "devices/dev1/messages/events/", 1, body(i)))
	}
	first := e.gate.nextAppend(t)
	// Every PUBLISH has been read (the read loop answers the PINGREQ after
	// them), and none is acknowledged while the first append waits.
	if got := rc.ping(); len(got) != 0 {
		t.Fatalf("%d packets (first type %d) before the first commit, want none", len(got), got[0].FixedHeader.Type)
	}
	if got := e.stored(t, "dev1"); len(got) != 0 {
		t.Fatalf("stored before the commit: %v", got)
	}
	e.gate.verdicts <- nil
	expectPubacks(t, rc, 1, len(first))
	acked := len(first)
	if acked < n {
		// The rest were queued meanwhile: one append stores them all.
		rest := e.gate.nextAppend(t)
		if len(rest) != n-acked {
			t.Fatalf("second append has %d messages, want the %d queued", len(rest), n-acked)
		}
		if got := rc.ping(); len(got) != 0 {
			t.Fatalf("%d packets before the second commit, want none", len(got))
		}
		e.gate.verdicts <- nil
		expectPubacks(t, rc, uint16(acked+1), n-acked)
		if got, want := e.writes.last(), (n-acked)*pubackSize; got != want {
			t.Errorf("the PUBACKs of one append took writes of %d bytes and less, want one of %d", got, want)
		}
	}
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, body(i))
	}
	if diff := cmp.Diff(want, e.stored(t, "dev1")); diff != "" {
		t.Fatalf("stored bodies (-want +got):\n%s", diff)
	}
}

// TestPipelinedOrderAcrossTopics: a twin request behind telemetry that
// waits for its commit is answered at once, but its PUBACK follows the
// telemetry's; a QoS 0 message between them is stored in order and never
// acknowledged.
func TestPipelinedOrderAcrossTopics(t *testing.T) {
	e := newPipeHub(t)
	rc, _ := e.connect(t, "dev1")
	rc.send(subscribePacket(1, "$iothub/twin/res/#", 0))
	rc.expect(packets.Suback)
	rc.send(publishPacket(1, "devices/dev1/messages/events/", 1, "a"))
	rc.send(publishPacket(0, "devices/dev1/messages/events/", 0, "b"))
	rc.send(publishPacket(2, "$iothub/twin/GET/?$rid=7", 1, ""))
	first := e.gate.nextAppend(t)
	if pk := rc.expect(packets.Publish); pk.TopicName != "$iothub/twin/res/200/?$rid=7" {
		t.Fatalf("got a PUBLISH to %q, want the twin response", pk.TopicName)
	}
	if got := rc.ping(); len(got) != 0 {
		t.Fatalf("%d packets (first type %d) before the commit, want none", len(got), got[0].FixedHeader.Type)
	}
	e.gate.verdicts <- nil
	expectPubacks(t, rc, 1, 1)
	if len(first) == 1 { // "b" came after the first append started
		e.gate.nextAppend(t)
		if got := rc.ping(); len(got) != 0 {
			t.Fatalf("%d packets (first type %d) before the QoS 0 message is stored, want none", len(got), got[0].FixedHeader.Type)
		}
		e.gate.verdicts <- nil
	}
	expectPubacks(t, rc, 2, 1)
	if diff := cmp.Diff([]string{"a", "b"}, e.stored(t, "dev1")); diff != "" {
		t.Fatalf("stored bodies (-want +got):\n%s", diff)
	}
}

// TestPipelinedStoreFailure: when an append fails, its messages and every
// later one go unacknowledged, the client is disconnected (so it sends
// them again), and the failure is logged with the device ID but without
// the client's token.
func TestPipelinedStoreFailure(t *testing.T) {
	e := newPipeHub(t)
	rc, password := e.connect(t, "dev1")
	rc.send(publishPacket(1, "devices/dev1/messages/events/", 1, "ok"))
	e.gate.nextAppend(t)
	e.gate.verdicts <- nil
	expectPubacks(t, rc, 1, 1)

	rc.send(publishPacket(2, "devices/dev1/messages/events/", 1, "lost-1"))
	rc.send(publishPacket(3, "devices/dev1/messages/events/", 1, "lost-2"))
	e.gate.nextAppend(t)
	if got := rc.ping(); len(got) != 0 { // both are queued
		t.Fatalf("%d packets before the failing commit, want none", len(got))
	}
	e.gate.verdicts <- errors.New("disk full")
	rc.expectClosed() // no PUBACK
	if diff := cmp.Diff([]string{"ok"}, e.stored(t, "dev1")); diff != "" {
		t.Fatalf("stored bodies (-want +got):\n%s", diff)
	}
	logs := e.logs.String()
	for _, want := range []string{"telemetry not stored", "clientId=dev1", "disk full"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, password) || strings.Contains(logs, "sig=") {
		t.Errorf("logs show the SAS token:\n%s", logs)
	}
}

// TestPipelinedBackPressure: a client that sends more publishes than the
// bound while the store is slow gets them all stored and acknowledged in
// order, and never more than maxPendingPublishes of them wait at once
// (its read loop waits instead).
func TestPipelinedBackPressure(t *testing.T) {
	e := newPipeHub(t)
	rc, _ := e.connect(t, "dev1")
	const n = maxPendingPublishes + 44
	wrote := make(chan error, 1)
	go func() { // writes block while the read loop waits
		for i := 1; i <= n; i++ {
			pk := publishPacket(uint16(i), "devices/dev1/messages/events/", 1, body(i))
			pk.ProtocolVersion = 4
			if _, err := rc.c.Write(encodePacket(t, pk)); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	acked, largest := 0, 0
	for acked < n {
		batch := e.gate.nextAppend(t)
		largest = max(largest, len(batch))
		e.gate.verdicts <- nil
		expectPubacks(t, rc, uint16(acked+1), len(batch))
		acked += len(batch)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if largest > maxPendingPublishes {
		t.Fatalf("an append carried %d messages: more than %d were pending", largest, maxPendingPublishes)
	}
	if got := e.stored(t, "dev1"); len(got) != n || got[0] != body(1) || got[n-1] != body(n) {
		t.Fatalf("stored %d messages (%v … %v), want %d in order", len(got), got[:min(1, len(got))], got[max(0, len(got)-1):], n)
	}
}

// pipeRealm is a realm whose sessions leave every publish pending until
// the test completes it.
type pipeRealm struct {
	mu    sync.Mutex
	dones []func(error, bool)
	got   chan struct{}
}

func (r *pipeRealm) Connect(context.Context, ConnectInfo, Peer) (Session, error) { return r, nil }
func (r *pipeRealm) Allow(string, bool) bool                                     { return true }
func (r *pipeRealm) Publish(context.Context, Message) error {
	return errors.New("Publish called on a PipelinedSession")
}
func (r *pipeRealm) Close(error) {}
func (r *pipeRealm) PublishAsync(_ context.Context, _ Message, done func(error, bool)) {
	r.mu.Lock()
	r.dones = append(r.dones, done)
	r.mu.Unlock()
	r.got <- struct{}{}
}

// complete completes publish i (0-based) on its own goroutine (the PUBACK
// write blocks on the pipe until the client reads).
func (r *pipeRealm) complete(i int, err error) {
	r.mu.Lock()
	done := r.dones[i]
	r.mu.Unlock()
	go done(err, false)
}

// TestPubacksWaitForEarlierPublishes: a publish completed before an
// earlier one is acknowledged only after it, in order.
func TestPubacksWaitForEarlierPublishes(t *testing.T) {
	realm := &pipeRealm{got: make(chan struct{}, 8)}
	srv := newTestServer(t, nil, realm)
	rc, _ := servePipe(t, srv, 5, nil, "")
	rc.send(connectPacket(5, "dev1", "hub.example/dev1/?api-version=1", "sas"))
	rc.expect(packets.Connack)
	for i := range 3 {
		rc.send(publishPacket(uint16(10+i), "devices/dev1/messages/events/", 1, "x"))
	}
	rc.ping()
	if len(realm.got) != 3 {
		t.Fatalf("%d publishes reached the session, want 3", len(realm.got))
	}
	realm.complete(2, nil)
	realm.complete(1, nil)
	if got := rc.ping(); len(got) != 0 {
		t.Fatalf("%d packets while the first publish is pending, want none", len(got))
	}
	realm.complete(0, nil)
	expectPubacks(t, rc, 10, 3)
}

// TestPubQueueBound: the queue admits maxPendingPublishes publishes, or
// one publish larger than maxPendingBytes, and then makes the next one
// wait (here: until its context ends).
func TestPubQueueBound(t *testing.T) {
	var q pubQueue
	for i := range maxPendingPublishes {
		if !q.admit(context.Background(), &pendingPub{id: uint16(i + 1), qos: 1}) {
			t.Fatalf("publish %d refused below the bound", i+1)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if q.admit(ctx, &pendingPub{id: 999, qos: 1}) {
		t.Fatal("publish admitted beyond maxPendingPublishes")
	}
	// Bytes: one large publish is admitted alone, a second waits.
	var big pubQueue
	if !big.admit(context.Background(), &pendingPub{id: 1, size: 2 * maxPendingBytes}) {
		t.Fatal("a publish larger than maxPendingBytes was refused on an empty queue")
	}
	if big.admit(ctx, &pendingPub{id: 2, size: 1}) {
		t.Fatal("publish admitted beyond maxPendingBytes")
	}
}
