package edgehub

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/edge/iothub"
	"github.com/muster-iot/muster/internal/edge/iothub/iothubtest"
	"github.com/muster-iot/muster/internal/telemetry"
)

// wait bounds every wait; none is an assertion on speed.
const wait = 30 * time.Second

// refusedWindow is how long TestEdgeHubRefusesWhatTheHubDidNotAccept
// keeps trying to get a refused message acknowledged.
const refusedWindow = 3 * time.Second

// hubKeys serves module identities from the fake hub.
type hubKeys struct{ h *iothubtest.Hub }

func (k hubKeys) Module(_ context.Context, id string) (*iothub.Module, error) {
	key := k.h.Key("edge-1", id)
	if key == nil {
		return nil, iothub.ErrModuleNotFound
	}
	m := &iothub.Module{ModuleID: id, DeviceID: "edge-1"}
	m.Authentication.Type = "sas"
	m.Authentication.SymmetricKey = &struct {
		PrimaryKey   string `json:"primaryKey"`
		SecondaryKey string `json:"secondaryKey"`
	}{PrimaryKey: base64.StdEncoding.EncodeToString(key), SecondaryKey: base64.StdEncoding.EncodeToString(key)}
	return m, nil
}

func (k hubKeys) Refresh(ctx context.Context, id string) (*iothub.Module, error) {
	return k.Module(ctx, id)
}

// setup runs an edge hub of device edge-1 against a fake IoT hub and
// returns them with the edge hub's address and its CA.
func setup(t *testing.T) (*iothubtest.Hub, string, *x509.CertPool) {
	t.Helper()
	h := iothubtest.New(t)
	h.AddIdentity("edge-1", "")
	h.AddIdentity("edge-1", ModuleID)
	ca, err := LoadOrCreateCA(t.TempDir(), "edge-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, slog.New(slog.DiscardHandler), Options{
			Hub: iothubtest.Host, DeviceID: "edge-1", HubMQTTAddr: h.MQTTAddr, RootCAs: h.Roots, Identities: hubKeys{h},
			ListenAddr: "127.0.0.1:0", CA: ca, ServerNames: []string{"127.0.0.1", "localhost"}, Version: "test",
			Ready: func(addr string) { ready <- addr },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(wait):
			t.Error("the edge hub did not stop")
		}
	})
	select {
	case addr := <-ready:
		return h, addr, roots
	case err := <-done:
		t.Fatalf("Run = %v", err)
	case <-time.After(wait):
		t.Fatal("the edge hub did not listen")
	}
	return nil, "", nil
}

// module is a module client of the edge hub.
type module struct {
	c        *iothub.Client
	messages chan [2]string // topic, payload
}

// connect connects module id (with key, nil: its hub key) to the edge hub
// and returns it once connected, or the error that ended its Run.
func connect(t *testing.T, h *iothubtest.Hub, addr string, roots *x509.CertPool, deviceID, id string, key []byte, subs ...iothub.Subscription) (*module, error) {
	t.Helper()
	if key == nil {
		key = h.Key("edge-1", id)
	}
	m := &module{messages: make(chan [2]string, 16)}
	up := make(chan struct{}, 1)
	c, err := iothub.New(iothub.Options{
		Identity: iothub.Identity{Hub: iothubtest.Host, DeviceID: deviceID, ModuleID: id, Key: key},
		Addr:     addr, RootCAs: roots, Subscriptions: subs,
		OnMessage: func(topic string, payload []byte) { m.messages <- [2]string{topic, string(payload)} },
		OnConnect: func(context.Context) {
			select { // reconnects must not block the client
			case up <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = c.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-up:
		return m, nil
	case <-done:
		return nil, runErr
	case <-time.After(wait):
		t.Fatalf("module %s did not connect", id)
	}
	return nil, nil
}

func TestEdgeHubAuthentication(t *testing.T) {
	h, addr, roots := setup(t)
	h.AddIdentity("edge-1", "sensor")
	h.AddIdentity("other-device", "sensor")
	if _, err := connect(t, h, addr, roots, "edge-1", "sensor", nil); err != nil {
		t.Fatalf("the module's own key: %v", err)
	}
	refused := []struct {
		name, device, module string
		key                  []byte
	}{
		{"wrong key", "edge-1", "sensor", []byte("not the key")},
		{"unknown module", "edge-1", "ghost", []byte("any")},
		{"the device itself", "edge-1", "", h.Key("edge-1", "")},
		{"a system module", "edge-1", ModuleID, h.Key("edge-1", ModuleID)},
		{"another device's module", "other-device", "sensor", h.Key("other-device", "sensor")},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, err := connect(t, h, addr, roots, tc.device, tc.module, tc.key)
			if !errors.Is(err, iothub.ErrRejected) {
				t.Errorf("connect = %v, want a refusal", err)
			}
		})
	}
}

func TestEdgeHubRoutesAndTwins(t *testing.T) {
	h, addr, roots := setup(t)
	h.AddIdentity("edge-1", "sensor")
	h.AddIdentity("edge-1", "filter")
	h.SetDesired("edge-1", "sensor", map[string]any{"interval": 5})
	h.SetDesired("edge-1", ModuleID, map[string]any{
		"schemaVersion": "1.1",
		"routes": map[string]any{
			"up":       "FROM /messages/modules/sensor/outputs/temperature INTO $upstream",
			"toFilter": `FROM /messages/modules/sensor/outputs/* WHERE level = 'high' INTO BrokeredEndpoint("/modules/filter/inputs/alerts")`,
		},
	})
	// The routes are read and reported.
	h.Await(wait, "$edgeHub reports the routes applied", func() bool {
		r := h.ReportedLocked("edge-1", ModuleID)
		st, _ := r["lastDesiredStatus"].(map[string]any)
		return st != nil && st["code"] == float64(200) && r["lastDesiredVersion"] == float64(2)
	})

	filter, err := connect(t, h, addr, roots, "edge-1", "filter", nil, iothub.Subscription{Filter: "devices/edge-1/modules/filter/inputs/#", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	sensor, err := connect(t, h, addr, roots, "edge-1", "sensor", nil, iothub.Subscription{Filter: iothub.DesiredFilter})
	if err != nil {
		t.Fatal(err)
	}
	h.Await(wait, "clients reported", func() bool {
		r := h.ReportedLocked("edge-1", ModuleID)
		clients, _ := r["clients"].(map[string]any)
		c, _ := clients["edge-1/sensor"].(map[string]any)
		return c != nil && c["status"] == "Connected"
	})
	ctx := context.Background()

	// The module's twin is the hub's.
	tw, err := sensor.c.GetTwin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var desired map[string]any
	if err := json.Unmarshal(tw.Desired, &desired); err != nil || desired["interval"] != float64(5) {
		t.Errorf("module twin desired %s", tw.Desired)
	}
	if _, err := sensor.c.PatchReported(ctx, []byte(`{"started":true}`)); err != nil {
		t.Fatal(err)
	}
	if r := h.Reported("edge-1", "sensor"); r["started"] != true {
		t.Errorf("module reported %v", r)
	}
	// Desired changes reach the module.
	h.SetDesired("edge-1", "sensor", map[string]any{"interval": 10})
	select {
	case m := <-sensor.messages:
		if _, ok := iothub.ParseDesiredTopic(m[0]); !ok || !strings.Contains(m[1], `"interval":10`) {
			t.Errorf("module got %v", m)
		}
	case <-time.After(wait):
		t.Fatal("the desired patch did not reach the module")
	}

	send := func(output, level, body string) {
		t.Helper()
		bag := telemetry.EncodeBag(map[string]string{telemetry.PropOutputName: output}, map[string]string{"level": level})
		if err := sensor.c.SendEvent(ctx, bag, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	// temperature, high: to the hub and to filter.
	send("temperature", "high", "t1")
	msgs := h.Messages()
	if len(msgs) != 1 || msgs[0].ModuleID != "sensor" || msgs[0].System[telemetry.PropOutputName] != "temperature" || string(msgs[0].Body) != "t1" {
		t.Fatalf("hub messages %+v", msgs)
	}
	select {
	case m := <-filter.messages:
		if !strings.HasPrefix(m[0], "devices/edge-1/modules/filter/inputs/alerts/") || m[1] != "t1" ||
			!strings.Contains(m[0], "%24.cdid=edge-1") || !strings.Contains(m[0], "%24.cmid=sensor") || !strings.Contains(m[0], "level=high") {
			t.Errorf("filter got %v", m)
		}
	case <-time.After(wait):
		t.Fatal("the brokered message did not reach filter")
	}
	// humidity, low: no route takes it.
	send("humidity", "low", "h1")
	if msgs := h.Messages(); len(msgs) != 1 {
		t.Errorf("an unrouted message reached the hub: %+v", msgs)
	}
}

// A module's upstream message is refused (no PUBACK) while the hub refuses
// the module: without store and forward nothing is acknowledged that the
// hub did not accept.
func TestEdgeHubRefusesWhatTheHubDidNotAccept(t *testing.T) {
	h, addr, roots := setup(t)
	h.AddIdentity("edge-1", "sensor")
	h.SetDesired("edge-1", ModuleID, map[string]any{"schemaVersion": "1.1", "routes": map[string]any{"up": "FROM /messages/* INTO $upstream"}})
	h.Await(wait, "routes applied", func() bool {
		st, _ := h.ReportedLocked("edge-1", ModuleID)["lastDesiredStatus"].(map[string]any)
		return st != nil && st["code"] == float64(200)
	})
	sensor, err := connect(t, h, addr, roots, "edge-1", "sensor", nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Refuse("edge-1", "sensor", true)
	h.DropSessions("edge-1", "sensor")
	// The module's client resends over every reconnect until its context
	// ends; a few seconds cover several refused round trips (on loopback
	// each takes milliseconds), where waiting the full `wait` only made the
	// test slow.
	ctx, cancel := context.WithTimeout(context.Background(), refusedWindow)
	defer cancel()
	err = sensor.c.SendEvent(ctx, "", []byte("lost"))
	if err == nil {
		t.Fatal("the edge hub acknowledged a message the hub never took")
	}
	if msgs := h.Messages(); len(msgs) != 0 {
		t.Errorf("hub messages %+v", msgs)
	}
}

func TestInvalidEdgeHubDesiredIsReported(t *testing.T) {
	h, _, _ := setup(t)
	h.SetDesired("edge-1", ModuleID, map[string]any{"schemaVersion": "1.1", "routes": map[string]any{"bad": "FROM /nowhere INTO $upstream"}})
	h.Await(wait, "the invalid routes reported", func() bool {
		st, _ := h.ReportedLocked("edge-1", ModuleID)["lastDesiredStatus"].(map[string]any)
		return st != nil && st["code"] == float64(400) && strings.Contains(st["description"].(string), "routes.bad")
	})
}
