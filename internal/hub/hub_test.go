package hub

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/telemetry"
)

func TestNewRequiresDependencies(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"registry", Options{Auth: fakeAuth{}, Telemetry: e.events}, "Registry"},
		{"auth", Options{Registry: e.reg, Telemetry: e.events}, "Auth"},
		{"telemetry", Options{Registry: e.reg, Auth: fakeAuth{}}, "Telemetry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestConnect(t *testing.T) {
	e := newEnv(t)
	key := e.device(t, "dev1")
	otherKey := e.device(t, "dev2")
	if _, err := e.reg.PutDevice(context.Background(), &registry.Device{DeviceID: "off", Status: registry.StatusDisabled}, ""); err != nil {
		t.Fatal(err)
	}
	offDev, err := e.reg.GetDevice(context.Background(), "off")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		req    hubauth.Request
		reason hubauth.Reason // "" when accepted
	}{
		{"own key", request(t, "dev1", key), ""},
		{"another device's key", request(t, "dev1", otherKey), hubauth.ReasonSASSignatureMismatch},
		{"disabled device", request(t, "off", offDev.Authentication.SymmetricKey.PrimaryKey), hubauth.ReasonDeviceDisabled},
		{"unknown device", request(t, "ghost", key), hubauth.ReasonDeviceNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeClient()
			s, err := e.svc.Connect(context.Background(), tc.req, c)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				defer s.Close(nil)
				id := s.Identity()
				if got := id.ClientID(); got != tc.req.ClientID {
					t.Errorf("identity %q, want %q", got, tc.req.ClientID)
				}
				return
			}
			var d *hubauth.Denial
			if !errors.As(err, &d) || d.Reason != tc.reason || d.ConnackCode != hubauth.ConnackNotAuthorized {
				t.Fatalf("Connect: %v, want a denial %s with CONNACK 5", err, tc.reason)
			}
			at, err := e.st.Attempts(context.Background(), strings.ToLower(tc.req.ClientID), 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(at) != 1 || at[0].Reason != string(tc.reason) || at[0].Outcome != "denied" {
				t.Fatalf("attempt log %+v, want a denied %s attempt", at, tc.reason)
			}
		})
	}
	t.Run("no client", func(t *testing.T) {
		if _, err := e.svc.Connect(context.Background(), request(t, "dev1", key), nil); err == nil {
			t.Fatal("Connect without a client succeeded")
		}
	})
}

func TestAllow(t *testing.T) {
	e := newEnv(t)
	dev, _ := e.connect(t, "dev1")
	modSvc, err := New(Options{Registry: e.reg, Telemetry: e.events, Now: testNow,
		Auth: fakeAuth{hubauth.Identity{DeviceID: "edge1", ModuleID: "mod1", AuthType: hubauth.AuthSAS}}})
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modSvc.Connect(context.Background(), hubauth.Request{}, newFakeClient())
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close(nil)
	for _, tc := range []struct {
		name    string
		s       *Session
		topic   string
		publish bool
		want    bool
	}{
		{"own telemetry", dev, "devices/dev1/messages/events/a=b", true, true},
		{"own telemetry no bag", dev, "devices/dev1/messages/events/", true, true},
		{"own telemetry percent-encoded id", dev, "devices/dev%31/messages/events/", true, true},
		{"other device's telemetry", dev, "devices/dev2/messages/events/", true, false},
		{"module telemetry of the device", dev, "devices/dev1/modules/m/messages/events/", true, false},
		{"twin get", dev, "$iothub/twin/GET/?$rid=1", true, true},
		{"twin reported", dev, "$iothub/twin/PATCH/properties/reported/?$rid=abc&$version=3", true, true},
		{"twin get without rid", dev, "$iothub/twin/GET/", true, false},
		{"twin desired publish", dev, "$iothub/twin/PATCH/properties/desired/?$version=1", true, false},
		{"method response", dev, "$iothub/methods/res/200/?$rid=1", true, true},
		{"method response without rid", dev, "$iothub/methods/res/200/", true, false},
		{"c2d publish", dev, "devices/dev1/messages/devicebound/", true, false},
		{"arbitrary", dev, "foo/bar", true, false},
		{"sub twin responses", dev, "$iothub/twin/res/#", false, true},
		{"sub twin desired", dev, "$iothub/twin/PATCH/properties/desired/#", false, true},
		{"sub methods", dev, "$iothub/methods/POST/#", false, true},
		{"sub own c2d", dev, "devices/dev1/messages/devicebound/#", false, true},
		{"sub own c2d narrower", dev, "devices/dev1/messages/devicebound/x/#", false, true},
		{"sub other c2d", dev, "devices/dev2/messages/devicebound/#", false, false},
		{"sub wildcard device c2d", dev, "devices/+/messages/devicebound/#", false, false},
		{"sub all iothub", dev, "$iothub/#", false, false},
		{"sub everything", dev, "#", false, false},
		{"sub own telemetry", dev, "devices/dev1/messages/events/#", false, false},
		{"module telemetry", mod, "devices/edge1/modules/mod1/messages/events/%24.on=out1/", true, true},
		{"module publishes as device", mod, "devices/edge1/messages/events/", true, false},
		{"module inputs", mod, "devices/edge1/modules/mod1/inputs/#", false, true},
		{"module all own", mod, "devices/edge1/modules/mod1/#", false, true},
		{"module other module", mod, "devices/edge1/modules/mod2/#", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Allow(tc.topic, tc.publish); got != tc.want {
				t.Fatalf("Allow(%q, publish=%v) = %v, want %v", tc.topic, tc.publish, got, tc.want)
			}
		})
	}
}

func TestTelemetry(t *testing.T) {
	e := newEnv(t)
	s, _ := e.connect(t, "dev1")
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		topic  string
		retain bool
		sys    map[string]string
		app    map[string]string
	}{
		{
			name:  "properties; connection device id from the identity",
			topic: "devices/dev1/messages/events/%24.mid=m-1&%24.ct=application%2Fjson&%24.cdid=impostor&alert=high%20temp",
			sys: map[string]string{"message-id": "m-1", "content-type": "application/json",
				"iothub-connection-device-id": "dev1"},
			app: map[string]string{"alert": "high temp"},
		},
		{
			name:   "retain becomes a property",
			topic:  "devices/dev1/messages/events",
			retain: true,
			sys:    map[string]string{"iothub-connection-device-id": "dev1"},
			app:    map[string]string{"mqtt-retain": "true"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := e.events.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Publish(ctx, tc.topic, []byte(`{"t":21.5}`), tc.retain); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			msgs, err := e.events.Read(ctx, before.LastSeq, telemetry.Filter{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 {
				t.Fatalf("%d messages stored, want 1", len(msgs))
			}
			m := msgs[0]
			want := telemetry.Message{Seq: before.LastSeq + 1, DeviceID: "dev1", EnqueuedTime: testNow(),
				SystemProperties: tc.sys, Properties: tc.app, Body: []byte(`{"t":21.5}`)}
			if diff := cmp.Diff(want, m); diff != "" {
				t.Fatalf("stored message (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		for _, topic := range []string{
			"devices/dev2/messages/events/",              // another device's topic
			"devices/dev1/messages/events/a=%FF",         // invalid UTF-8 property
			"$iothub/twin/PATCH/properties/desired/?x=1", // not a request topic
		} {
			if err := s.Publish(ctx, topic, []byte("x"), false); err == nil {
				t.Errorf("Publish(%q) accepted", topic)
			}
		}
		if err := s.Publish(ctx, "devices/dev1/messages/events/", make([]byte, telemetry.MaxBodyBytes+1), false); !errors.Is(err, telemetry.ErrTooLarge) {
			t.Errorf("oversized body: %v, want ErrTooLarge", err)
		}
	})
	t.Run("store failure", func(t *testing.T) {
		svc, err := New(Options{Registry: e.reg, Auth: fakeAuth{hubauth.Identity{DeviceID: "dev1"}}, Telemetry: failingTelemetry{}, Now: testNow})
		if err != nil {
			t.Fatal(err)
		}
		fs, err := svc.Connect(ctx, hubauth.Request{}, newFakeClient())
		if err != nil {
			t.Fatal(err)
		}
		defer fs.Close(nil)
		if err := fs.Publish(ctx, "devices/dev1/messages/events/", []byte("x"), false); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("Publish: %v, want the store's error", err)
		}
	})
}

func TestTwinGetAndReported(t *testing.T) {
	e := newEnv(t)
	s, c := e.connect(t, "dev1")
	ctx := context.Background()
	if _, err := e.reg.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"interval":5}`)}, ""); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		topic   string
		body    string
		want    sent
		errCode float64 // errorCode of an error body
	}{
		{
			name: "get", topic: "$iothub/twin/GET/?$rid=7", body: " ",
			want: sent{Topic: "$iothub/twin/res/200/?$rid=7", Payload: `{"desired":{"interval":5,"$version":2},"reported":{"$version":1}}`, QoS: 1},
		},
		{
			name: "patch reported", topic: "$iothub/twin/PATCH/properties/reported/?$rid=b6a3c2f0-1&$version=1", body: `{"fw":"1.0.1","nested":{"a":1}}`,
			want: sent{Topic: "$iothub/twin/res/204/?$rid=b6a3c2f0-1&$version=2", QoS: 1},
		},
		{
			name: "patch reported delete", topic: "$iothub/twin/PATCH/properties/reported/?$rid=9", body: `{"nested":null}`,
			want: sent{Topic: "$iothub/twin/res/204/?$rid=9&$version=3", QoS: 1},
		},
		{
			name: "get after patches", topic: "$iothub/twin/GET/?$rid=10",
			want: sent{Topic: "$iothub/twin/res/200/?$rid=10", Payload: `{"desired":{"interval":5,"$version":2},"reported":{"fw":"1.0.1","$version":3}}`, QoS: 1},
		},
		{
			name: "invalid key", topic: "$iothub/twin/PATCH/properties/reported/?$rid=11", body: `{"a.b":1}`,
			want: sent{Topic: "$iothub/twin/res/400/?$rid=11", QoS: 1}, errCode: 400004,
		},
		{
			name: "not JSON", topic: "$iothub/twin/PATCH/properties/reported/?$rid=12", body: `{`,
			want: sent{Topic: "$iothub/twin/res/400/?$rid=12", QoS: 1}, errCode: 400004,
		},
		{
			name: "too large", topic: "$iothub/twin/PATCH/properties/reported/?$rid=13", body: `{"a":"` + strings.Repeat("x", 4000) + `","b":"` + strings.Repeat("x", 4000) + `","c":"` + strings.Repeat("x", 4000) + `","d":"` + strings.Repeat("x", 4000) + `","e":"` + strings.Repeat("x", 4000) + `","f":"` + strings.Repeat("x", 4000) + `","g":"` + strings.Repeat("x", 4000) + `","h":"` + strings.Repeat("x", 4000) + `","i":"` + strings.Repeat("x", 4000) + `"}`,
			want: sent{Topic: "$iothub/twin/res/400/?$rid=13", QoS: 1}, errCode: 400004,
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if !s.Allow(st.topic, true) {
				t.Fatalf("Allow(%q) refused", st.topic)
			}
			if err := s.Publish(ctx, st.topic, []byte(st.body), false); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			got := c.next(t)
			if st.errCode != 0 {
				var body map[string]any
				if err := json.Unmarshal([]byte(got.Payload), &body); err != nil {
					t.Fatalf("error body %q: %v", got.Payload, err)
				}
				if body["errorCode"] != st.errCode || body["trackingId"] == "" || body["message"] == "" {
					t.Fatalf("error body %s, want errorCode %v with trackingId and message", got.Payload, st.errCode)
				}
				got.Payload = ""
			}
			if diff := cmp.Diff(st.want, got); diff != "" {
				t.Fatalf("response (-want +got):\n%s", diff)
			}
		})
	}
	// The service view has the reported properties with their metadata.
	tw, err := e.reg.GetTwin(ctx, "dev1")
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(tw.Properties.Reported, &rep); err != nil {
		t.Fatal(err)
	}
	if rep["fw"] != "1.0.1" || rep["$version"] != float64(3) || rep["$metadata"] == nil || rep["nested"] != nil {
		t.Fatalf("stored reported properties %s", tw.Properties.Reported)
	}
	if tw.Version != 4 { // created 1, desired patch 2, two reported patches
		t.Fatalf("twin version %d, want 4", tw.Version)
	}

	t.Run("deleted device", func(t *testing.T) {
		if err := e.reg.RemoveDevice(ctx, "dev1", ""); err != nil {
			t.Fatal(err)
		}
		for _, topic := range []string{"$iothub/twin/GET/?$rid=20", "$iothub/twin/PATCH/properties/reported/?$rid=21"} {
			if err := s.Publish(ctx, topic, []byte(`{"a":1}`), false); err != nil {
				t.Fatal(err)
			}
			if got := c.next(t); !strings.HasPrefix(got.Topic, "$iothub/twin/res/404/") || !strings.Contains(got.Payload, `"errorCode":404001`) {
				t.Fatalf("response %+v, want 404 with errorCode 404001", got)
			}
		}
	})
}

func TestModuleTwinNotFound(t *testing.T) {
	e := newEnv(t)
	e.device(t, "edge1")
	svc, err := New(Options{Registry: e.reg, Telemetry: e.events, Now: testNow,
		Auth: fakeAuth{hubauth.Identity{DeviceID: "edge1", ModuleID: "mod1"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := newFakeClient()
	s, err := svc.Connect(context.Background(), hubauth.Request{}, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(nil)
	if err := s.Publish(context.Background(), "$iothub/twin/GET/?$rid=1", nil, false); err != nil {
		t.Fatal(err)
	}
	if got := c.next(t); got.Topic != "$iothub/twin/res/404/?$rid=1" || !strings.Contains(got.Payload, `"errorCode":404010`) {
		t.Fatalf("response %+v", got)
	}
}

func TestDesiredNotifications(t *testing.T) {
	e := newEnv(t)
	s, c := e.connect(t, "dev1")
	ctx := context.Background()
	if _, err := e.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"before":1}`)}, ""); err != nil {
		t.Fatal(err)
	}
	c.none(t) // not subscribed yet: nothing is pushed
	if !s.Allow(DesiredFilter, false) {
		t.Fatal("desired subscription refused")
	}
	if !s.Allow(DesiredFilter, false) { // a second SUBSCRIBE keeps the one watcher
		t.Fatal("second desired subscription refused")
	}
	if n := e.svc.watching("dev1"); n != 1 {
		t.Fatalf("%d watchers, want 1", n)
	}
	for _, st := range []struct {
		name   string
		update func() error
		want   sent
	}{
		{
			name: "patch",
			update: func() error {
				_, err := e.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"interval":10,"nested":{"a":1,"b":2}}`)}, "")
				return err
			},
			want: sent{Topic: "$iothub/twin/PATCH/properties/desired/?$version=3", Payload: `{"interval":10,"nested":{"a":1,"b":2},"$version":3}`, QoS: 1},
		},
		{
			name: "delete and nested change",
			update: func() error {
				_, err := e.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"before":null,"nested":{"b":3}}`)}, "")
				return err
			},
			want: sent{Topic: "$iothub/twin/PATCH/properties/desired/?$version=4", Payload: `{"before":null,"nested":{"b":3},"$version":4}`, QoS: 1},
		},
		{
			name: "replace",
			update: func() error {
				_, err := e.svc.ReplaceTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"only":true}`)}, "")
				return err
			},
			want: sent{Topic: "$iothub/twin/PATCH/properties/desired/?$version=5", Payload: `{"interval":null,"nested":null,"only":true,"$version":5}`, QoS: 1},
		},
	} {
		t.Run(st.name, func(t *testing.T) {
			if err := st.update(); err != nil {
				t.Fatal(err)
			}
			got := c.next(t)
			got.Payload = canon(t, got.Payload)
			st.want.Payload = canon(t, st.want.Payload)
			if diff := cmp.Diff(st.want, got); diff != "" {
				t.Fatalf("notification (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("tags only change no notification", func(t *testing.T) {
		if _, err := e.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Tags: json.RawMessage(`{"site":"a"}`)}, ""); err != nil {
			t.Fatal(err)
		}
		// A desired change afterwards is the next message: nothing came in between.
		if _, err := e.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"only":false}`)}, ""); err != nil {
			t.Fatal(err)
		}
		if got := c.next(t); got.Topic != DesiredTopic(6) {
			t.Fatalf("got %+v, want the version 6 notification", got)
		}
	})
	t.Run("other device's change", func(t *testing.T) {
		e.device(t, "dev2")
		if _, err := e.svc.PatchTwin(ctx, "dev2", registry.TwinUpdate{Desired: json.RawMessage(`{"x":1}`)}, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"y":1}`)}, ""); err != nil {
			t.Fatal(err)
		}
		if got := c.next(t); got.Topic != DesiredTopic(7) || canon(t, got.Payload) != canon(t, `{"y":1,"$version":7}`) {
			t.Fatalf("got %+v, want only dev1's version 7 notification", got)
		}
	})
	t.Run("undeliverable is skipped", func(t *testing.T) {
		c.mu.Lock()
		c.fail = errors.New("not subscribed")
		c.mu.Unlock()
		if _, err := e.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"z":1}`)}, ""); err != nil {
			t.Fatal(err)
		}
		select { // the watcher tried and failed
		case <-c.refused:
		case <-time.After(waitLimit):
			t.Fatal("the watcher did not try to send the version 8 notification")
		}
		c.mu.Lock()
		c.fail = nil
		c.mu.Unlock()
		if _, err := e.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"w":1}`)}, ""); err != nil {
			t.Fatal(err)
		}
		got := c.next(t)
		if got.Topic != DesiredTopic(9) {
			t.Fatalf("got %+v, want the version 9 notification", got)
		}
		// The undelivered change is not sent again: the baseline moved on.
		if canon(t, got.Payload) != canon(t, `{"w":1,"$version":9}`) {
			t.Fatalf("notification %s, want only w at version 9", got.Payload)
		}
	})
	t.Run("close stops notifications", func(t *testing.T) {
		s.Close(nil)
		if n := e.svc.watching("dev1"); n != 0 {
			t.Fatalf("%d watchers after Close, want 0", n)
		}
		if _, err := e.svc.PatchTwin(ctx, "dev1", registry.TwinUpdate{Desired: json.RawMessage(`{"after":1}`)}, ""); err != nil {
			t.Fatal(err)
		}
		c.none(t)
		if s.Allow(DesiredFilter, false) {
			t.Fatal("a closed session accepted a subscription")
		}
	})
}

func TestTokenExpiryDisconnects(t *testing.T) {
	e := newEnv(t)
	svc, err := New(Options{Registry: e.reg, Telemetry: e.events, Now: testNow,
		Auth: fakeAuth{hubauth.Identity{DeviceID: "dev1", AuthType: hubauth.AuthSAS, TokenExpiry: testNow().Add(-time.Second)}}})
	if err != nil {
		t.Fatal(err)
	}
	c := newFakeClient()
	s, err := svc.Connect(context.Background(), hubauth.Request{}, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(nil)
	select {
	case <-c.disconnected:
	case <-time.After(waitLimit):
		t.Fatal("the session of an expired token was not disconnected")
	}
}
