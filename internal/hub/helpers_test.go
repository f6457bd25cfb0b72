package hub

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store/memstore"
	"github.com/muster-iot/muster/internal/telemetry"
)

const (
	testHub = "hub.example.net"
	// waitLimit bounds every wait for an asynchronous send.
	waitLimit = 10 * time.Second
)

// testNow is the fixed clock of the tests.
func testNow() time.Time { return time.Date(2026, 5, 4, 10, 20, 30, 0, time.UTC) }

// env is a hub service over memstore with a registry, a real
// authenticator and the telemetry endpoint.
type env struct {
	st     *memstore.Store
	reg    *registry.Hub
	events *telemetry.Endpoint
	svc    *Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st := memstore.New(100)
	reg := registry.New(testHub, st, testNow)
	auth, err := hubauth.New(hubauth.Options{HubHostName: testHub, Identities: hubauth.NewRegistryIdentities(reg),
		Attempts: st, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	events, err := telemetry.NewEndpoint(st, telemetry.Options{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Options{Registry: reg, Auth: auth, Telemetry: events, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	return &env{st: st, reg: reg, events: events, svc: svc}
}

// device creates an enabled SAS device and returns its primary key.
func (e *env) device(t *testing.T, id string) string {
	t.Helper()
	d, err := e.reg.PutDevice(context.Background(), &registry.Device{DeviceID: id}, "")
	if err != nil {
		t.Fatal(err)
	}
	return d.Authentication.SymmetricKey.PrimaryKey
}

// request is a CONNECT of device id with a token signed with key.
func request(t *testing.T, id, key string) hubauth.Request {
	t.Helper()
	raw, err := sas.DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return hubauth.Request{
		ClientID: id,
		Username: testHub + "/" + id + "/?api-version=2021-04-12",
		Password: sas.Sign(testHub+"/devices/"+id, raw, "", testNow().Add(time.Hour)),
	}
}

// connect connects device id and closes the session when the test ends.
func (e *env) connect(t *testing.T, id string) (*Session, *fakeClient) {
	t.Helper()
	key := e.device(t, id)
	c := newFakeClient()
	s, err := e.svc.Connect(context.Background(), request(t, id, key), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(nil) })
	return s, c
}

// sent is one message sent to a client.
type sent struct {
	Topic   string
	Payload string
	QoS     byte
}

// fakeClient records what the hub sends.
type fakeClient struct {
	msgs chan sent
	mu   sync.Mutex
	// fail, when set, is returned by Send.
	fail error
	// refused receives the topic of every Send that failed.
	refused      chan string
	disconnected chan struct{}
	once         sync.Once
}

func newFakeClient() *fakeClient {
	return &fakeClient{msgs: make(chan sent, 64), refused: make(chan string, 64), disconnected: make(chan struct{})}
}

func (c *fakeClient) Send(topic string, payload []byte, qos byte) error {
	c.mu.Lock()
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		c.refused <- topic
		return fail
	}
	c.msgs <- sent{Topic: topic, Payload: string(payload), QoS: qos}
	return nil
}

func (c *fakeClient) Disconnect() { c.once.Do(func() { close(c.disconnected) }) }

// next returns the next message sent.
func (c *fakeClient) next(t *testing.T) sent {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitLimit):
		t.Fatalf("nothing sent within %v", waitLimit)
		return sent{}
	}
}

// none checks that nothing was sent (everything synchronous has run by then).
func (c *fakeClient) none(t *testing.T) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("unexpected message %+v", m)
	default:
	}
}

// fakeAuth accepts every request as a fixed identity.
type fakeAuth struct{ id hubauth.Identity }

func (f fakeAuth) Authenticate(context.Context, hubauth.Request) (*hubauth.Identity, error) {
	id := f.id
	return &id, nil
}

// failingTelemetry refuses every append.
type failingTelemetry struct{}

func (failingTelemetry) Append(context.Context, ...telemetry.Message) ([]int64, error) {
	return nil, errors.New("disk full")
}

// canon re-encodes JSON with sorted keys for comparison.
func canon(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %q: %v", s, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
