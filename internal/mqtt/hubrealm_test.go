package mqtt

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/hub"
	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store/memstore"
	"github.com/muster-iot/muster/internal/telemetry"
)

const realmHub = "hub.example.net"

// hubEnv is the hub realm over a real hub service (memstore registry,
// hubauth, telemetry endpoint) behind a TLS listener.
type hubEnv struct {
	p      *testPKI
	broker string
	st     *memstore.Store
	reg    *registry.Hub
	events *telemetry.Endpoint
	svc    *hub.Service
}

func newHubEnv(t *testing.T) *hubEnv {
	t.Helper()
	e := &hubEnv{p: newTestPKI(t), st: memstore.New(100)}
	// The token-expiry timer runs on wall time, so the hub's clock is real.
	e.reg = registry.New(realmHub, e.st, time.Now)
	auth, err := hubauth.New(hubauth.Options{HubHostName: realmHub, Identities: hubauth.NewRegistryIdentities(e.reg), Attempts: e.st})
	if err != nil {
		t.Fatal(err)
	}
	if e.events, err = telemetry.NewEndpoint(e.st, telemetry.Options{}); err != nil {
		t.Fatal(err)
	}
	if e.svc, err = hub.New(hub.Options{Registry: e.reg, Auth: auth, Telemetry: e.events, Logger: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	realm, err := NewHubRealm(e.svc, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := newTestServer(t, nil, realm)
	addr, _ := serveTLS(t, srv, e.p.serverTLS())
	e.broker = "ssl://" + addr
	return e
}

// device creates a SAS device and returns its primary key.
func (e *hubEnv) device(t *testing.T, id string) string {
	t.Helper()
	d, err := e.reg.PutDevice(context.Background(), &registry.Device{DeviceID: id}, "")
	if err != nil {
		t.Fatal(err)
	}
	return d.Authentication.SymmetricKey.PrimaryKey
}

// connect connects as device id with a token signed with key and returns
// the client (nil when refused) and the CONNACK code.
func (e *hubEnv) connect(t *testing.T, id, key string) (*pahoClient, byte) {
	t.Helper()
	raw, err := sas.DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return connectPaho(t, clientConfig{broker: e.broker, tls: e.p.clientTLS(false), clientID: id,
		username: realmHub + "/" + id + "/?api-version=2021-04-12&DeviceClientType=test",
		password: sas.Sign(realmHub+"/devices/"+id, raw, "", time.Now().Add(time.Hour))})
}

func TestHubRealmRefusals(t *testing.T) {
	e := newHubEnv(t)
	key := e.device(t, "dev1")
	other := e.device(t, "dev2")
	if _, err := NewHubRealm(nil, nil); err == nil {
		t.Fatal("NewHubRealm without a service succeeded")
	}
	for _, tc := range []struct {
		name, id, key string
		reason        hubauth.Reason
	}{
		{"wrong key", "dev1", other, hubauth.ReasonSASSignatureMismatch},
		{"unknown device", "ghost", key, hubauth.ReasonDeviceNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, rc := e.connect(t, tc.id, tc.key); c != nil || rc != 5 {
				t.Fatalf("CONNACK 0x%02x, want 0x05", rc)
			}
			at, err := e.st.Attempts(context.Background(), tc.id, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(at) != 1 || at[0].Reason != string(tc.reason) || at[0].Protocol != hubauth.ProtocolMQTT {
				t.Fatalf("attempts %+v, want one %s over %s", at, tc.reason, hubauth.ProtocolMQTT)
			}
		})
	}
}

func TestHubRealmDevice(t *testing.T) {
	e := newHubEnv(t)
	ctx := context.Background()
	c, rc := e.connect(t, "dev1", e.device(t, "dev1"))
	if rc != 0 {
		t.Fatalf("CONNACK 0x%02x", rc)
	}
	c2, rc := e.connect(t, "dev2", e.device(t, "dev2"))
	if rc != 0 {
		t.Fatalf("CONNACK 0x%02x", rc)
	}

	t.Run("subscriptions", func(t *testing.T) {
		// On its own connection: paho would hand messages matching both
		// this and an accepted filter to both handlers.
		if got := c2.subscribe(t, map[string]byte{"$iothub/#": 0}); got["$iothub/#"] != 0x80 {
			t.Fatalf("SUBACK %v for $iothub/#, want 0x80", got)
		}
		got := c.subscribe(t, map[string]byte{
			"$iothub/twin/res/#":                      0,
			"$iothub/twin/PATCH/properties/desired/#": 1,
			"devices/dev1/messages/devicebound/#":     1,
			"devices/dev2/messages/devicebound/#":     1,
		})
		want := map[string]byte{
			"$iothub/twin/res/#":                      0,
			"$iothub/twin/PATCH/properties/desired/#": 1,
			"devices/dev1/messages/devicebound/#":     1,
			"devices/dev2/messages/devicebound/#":     0x80,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("SUBACK (-want +got):\n%s", diff)
		}
	})

	t.Run("twin", func(t *testing.T) {
		c.publish(t, "$iothub/twin/GET/?$rid=1", 0, []byte(" "))
		m := c.next(t)
		if m.Topic() != "$iothub/twin/res/200/?$rid=1" || string(m.Payload()) != `{"desired":{"$version":1},"reported":{"$version":1}}` {
			t.Fatalf("GET answer %s %s", m.Topic(), m.Payload())
		}
		c.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=2", 0, []byte(`{"fw":"2.0"}`))
		if m := c.next(t); m.Topic() != "$iothub/twin/res/204/?$rid=2&$version=2" || len(m.Payload()) != 0 {
			t.Fatalf("PATCH answer %s %q", m.Topic(), m.Payload())
		}
		if _, err := e.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"interval":10}`)}, ""); err != nil {
			t.Fatal(err)
		}
		m = c.next(t)
		if m.Topic() != "$iothub/twin/PATCH/properties/desired/?$version=2" || string(m.Payload()) != `{"interval":10,"$version":2}` || m.Qos() != 1 {
			t.Fatalf("desired notification %s %s QoS %d", m.Topic(), m.Payload(), m.Qos())
		}
	})

	t.Run("telemetry", func(t *testing.T) {
		c.publish(t, "devices/dev1/messages/events/%24.mid=q0&k=v0", 0, []byte("zero"))
		c.publish(t, "devices/dev1/messages/events/%24.mid=q1&%24.cdid=dev2&k=v1", 1, []byte("one"))
		// The QoS 1 PUBACK came after its append; the QoS 0 message before
		// it on the same connection was stored first.
		msgs, err := e.events.Read(ctx, 0, telemetry.Filter{DeviceID: "dev1"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		type got struct {
			Body, MID, CDID, K string
		}
		var gots []got
		for _, m := range msgs {
			gots = append(gots, got{string(m.Body), m.SystemProperties["message-id"], m.SystemProperties["iothub-connection-device-id"], m.Properties["k"]})
			if m.EnqueuedTime.IsZero() {
				t.Errorf("message %d has no enqueued time", m.Seq)
			}
		}
		want := []got{{"zero", "q0", "dev1", "v0"}, {"one", "q1", "dev1", "v1"}}
		if diff := cmp.Diff(want, gots); diff != "" {
			t.Fatalf("stored telemetry (-want +got):\n%s", diff)
		}
	})

	t.Run("foreign publish disconnects", func(t *testing.T) {
		tok := c.Publish("devices/dev2/messages/events/", 0, false, []byte("spoof"))
		tok.WaitTimeout(waitLimit)
		select {
		case err := <-c.lost:
			if err == nil {
				t.Fatal("connection lost without an error")
			}
		case <-time.After(waitLimit):
			t.Fatal("a publish to another device's topic did not end the connection")
		}
		msgs, err := e.events.Read(ctx, 0, telemetry.Filter{DeviceID: "dev2"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 0 {
			t.Fatalf("spoofed telemetry stored: %+v", msgs)
		}
	})
}

// TestHubRealmOfflineDesiredChange: a desired change made while the device
// is offline reaches it through its twin GET when it connects again.
func TestHubRealmOfflineDesiredChange(t *testing.T) {
	e := newHubEnv(t)
	key := e.device(t, "dev1")
	c, _ := e.connect(t, "dev1", key)
	c.subscribe(t, map[string]byte{"$iothub/twin/PATCH/properties/desired/#": 0})
	c.Disconnect(50)
	if _, err := e.svc.PatchTwin(context.Background(), "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"a":1}`)}, ""); err != nil {
		t.Fatal(err)
	}
	c2, rc := e.connect(t, "dev1", key)
	if rc != 0 {
		t.Fatalf("reconnect CONNACK 0x%02x", rc)
	}
	c2.subscribe(t, map[string]byte{"$iothub/twin/res/#": 0})
	c2.publish(t, "$iothub/twin/GET/?$rid=r", 0, nil)
	if m := c2.next(t); string(m.Payload()) != `{"desired":{"a":1,"$version":2},"reported":{"$version":1}}` {
		t.Fatalf("GET after reconnecting: %s", m.Payload())
	}
}
