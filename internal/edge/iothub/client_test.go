package iothub_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/edge/iothub"
	"github.com/muster-iot/muster/internal/edge/iothub/iothubtest"
	"github.com/muster-iot/muster/internal/telemetry"
)

// wait bounds every wait of these tests; none is an assertion on speed.
const wait = 30 * time.Second

// run starts c.Run and returns a function that stops it and returns its
// result.
func run(t *testing.T, c *iothub.Client) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(wait):
				t.Errorf("Run did not return within %v", wait)
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// connected waits until the client is connected.
func connected(t *testing.T, c *iothub.Client) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !c.State().Connected {
		if time.Now().After(deadline) {
			t.Fatalf("not connected within %v: %+v", wait, c.State())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTwinAndTelemetry(t *testing.T) {
	h := iothubtest.New(t)
	key := h.AddIdentity("edge-1", "$edgeAgent")
	h.SetDesired("edge-1", "$edgeAgent", map[string]any{"schemaVersion": "1.1"})
	desired := make(chan string, 4)
	c, err := iothub.New(iothub.Options{
		Identity:      iothub.Identity{Hub: iothubtest.Host, DeviceID: "edge-1", ModuleID: "$edgeAgent", Key: key},
		Addr:          h.MQTTAddr,
		RootCAs:       h.Roots,
		ClientType:    "test/1.0",
		Subscriptions: []iothub.Subscription{{Filter: iothub.DesiredFilter}},
		OnMessage: func(topic string, payload []byte) {
			if v, ok := iothub.ParseDesiredTopic(topic); ok {
				desired <- string(payload)
				if v == 0 {
					t.Errorf("desired notification without $version: %s", topic)
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	connected(t, c)
	ctx := context.Background()

	tw, err := c.GetTwin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(tw.Desired, &d); err != nil || d["schemaVersion"] != "1.1" || d["$version"] != float64(2) {
		t.Errorf("desired %s (%v)", tw.Desired, err)
	}
	v, err := c.PatchReported(ctx, []byte(`{"lastDesiredVersion": 2, "modules": {"m": {"runtimeStatus": "running"}}}`))
	if err != nil || v != 2 {
		t.Errorf("PatchReported = %d, %v", v, err)
	}
	if r := h.Reported("edge-1", "$edgeAgent"); r["lastDesiredVersion"] != float64(2) {
		t.Errorf("reported %v", r)
	}

	h.SetDesired("edge-1", "$edgeAgent", map[string]any{"schemaVersion": "1.0"})
	select {
	case patch := <-desired:
		if !strings.Contains(patch, `"schemaVersion":"1.0"`) || !strings.Contains(patch, `"$version":3`) {
			t.Errorf("desired patch %s", patch)
		}
	case <-time.After(wait):
		t.Fatal("no desired notification")
	}

	bag := telemetry.EncodeBag(map[string]string{telemetry.PropOutputName: "out1"}, map[string]string{"a": "b c"})
	if err := c.SendEvent(ctx, bag, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	msgs := h.Messages()
	if len(msgs) != 1 || msgs[0].ModuleID != "$edgeAgent" || msgs[0].System[telemetry.PropOutputName] != "out1" || msgs[0].App["a"] != "b c" || string(msgs[0].Body) != "hello" {
		t.Errorf("messages %+v", msgs)
	}
}

func TestRejectedCredential(t *testing.T) {
	h := iothubtest.New(t)
	h.AddIdentity("edge-1", "")
	c, err := iothub.New(iothub.Options{
		Identity: iothub.Identity{Hub: iothubtest.Host, DeviceID: "edge-1", Key: []byte("not the device's key")},
		Addr:     h.MQTTAddr, RootCAs: h.Roots,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err = c.Run(ctx)
	var re *iothub.RejectedError
	if !errors.As(err, &re) || re.Code != 5 || !errors.Is(err, iothub.ErrRejected) {
		t.Fatalf("Run = %v, want a refusal with CONNACK 5", err)
	}
	if st := c.State(); st.Connected || st.LastError == "" || st.Attempts != 1 {
		t.Errorf("state %+v", st)
	}
	if _, err := c.GetTwin(ctx); !errors.Is(err, iothub.ErrNotConnected) {
		t.Errorf("GetTwin while disconnected = %v", err)
	}
}

// A connection the hub drops is made again; a deleted identity ends Run
// with a refusal.
func TestReconnectAndDeletedIdentity(t *testing.T) {
	h := iothubtest.New(t)
	key := h.AddIdentity("edge-1", "")
	connects := make(chan struct{}, 4)
	c, err := iothub.New(iothub.Options{
		Identity: iothub.Identity{Hub: iothubtest.Host, DeviceID: "edge-1", Key: key},
		Addr:     h.MQTTAddr, RootCAs: h.Roots, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		OnConnect: func(context.Context) { connects <- struct{}{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	next := func(what string) {
		t.Helper()
		select {
		case <-connects:
		case <-ctx.Done():
			t.Fatalf("%s: no connection", what)
		}
	}
	next("first connect")
	h.Await(wait, "edge-1 connected", func() bool { return h.ConnectedLocked("edge-1", "") == 1 })
	h.DropSessions("edge-1", "")
	next("reconnect after the hub dropped the connection")

	h.RemoveIdentity("edge-1", "")
	select {
	case err := <-done:
		if !errors.Is(err, iothub.ErrRejected) {
			t.Fatalf("Run after the identity was deleted = %v, want a refusal", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not end after the identity was deleted")
	}
}

// Tokens are renewed by reconnecting before they expire.
func TestTokenRenewal(t *testing.T) {
	h := iothubtest.New(t)
	key := h.AddIdentity("edge-1", "")
	renewed := make(chan struct{}, 4)
	c, err := iothub.New(iothub.Options{
		Identity: iothub.Identity{Hub: iothubtest.Host, DeviceID: "edge-1", Key: key},
		Addr:     h.MQTTAddr, RootCAs: h.Roots, TokenTTL: 500 * time.Millisecond,
		OnConnect: func(context.Context) { renewed <- struct{}{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	for i := range 2 {
		select {
		case <-renewed:
		case <-time.After(wait):
			t.Fatalf("connection %d did not come", i+1)
		}
	}
}

func TestTopics(t *testing.T) {
	if got := iothub.Username("hub.example.net", "d", "m", "muster/1 (linux)"); got != "hub.example.net/d/m/?api-version="+iothub.APIVersion+"&DeviceClientType=muster%2F1+%28linux%29" {
		t.Errorf("Username = %q", got)
	}
	if got := iothub.Resource("hub", "d", ""); got != "hub/devices/d" {
		t.Errorf("Resource = %q", got)
	}
	if got := iothub.EventsTopic("d", "m", "a=b"); got != "devices/d/modules/m/messages/events/a=b" {
		t.Errorf("EventsTopic = %q", got)
	}
	r, err := iothub.ParseTwinResponse("$iothub/twin/res/204/?$rid=7&$version=12")
	if err != nil || r.Status != 204 || r.RID != "7" || r.Version != 12 {
		t.Errorf("ParseTwinResponse = %+v, %v", r, err)
	}
	for _, bad := range []string{"$iothub/twin/res/20/?$rid=1", "$iothub/twin/res/200?$rid=1", "$iothub/twin/res/200/?$version=1", "devices/x"} {
		if _, err := iothub.ParseTwinResponse(bad); !errors.Is(err, iothub.ErrBadTopic) {
			t.Errorf("ParseTwinResponse(%q) = %v", bad, err)
		}
	}
	if v, ok := iothub.ParseDesiredTopic("$iothub/twin/PATCH/properties/desired/?$version=9"); !ok || v != 9 {
		t.Errorf("ParseDesiredTopic = %d %v", v, ok)
	}
	m, err := iothub.ParseMethodTopic("$iothub/methods/POST/RestartModule/?$rid=3")
	if err != nil || m.Name != "RestartModule" || m.RID != "3" {
		t.Errorf("ParseMethodTopic = %+v, %v", m, err)
	}
	if got := iothub.MethodResponseTopic(200, "3"); got != "$iothub/methods/res/200/?$rid=3" {
		t.Errorf("MethodResponseTopic = %q", got)
	}
}

func FuzzParseTwinResponse(f *testing.F) {
	f.Add("$iothub/twin/res/200/?$rid=1&$version=3")
	f.Add("$iothub/twin/res/500/?$rid=")
	f.Add("$iothub/methods/POST/x/?$rid=1")
	f.Fuzz(func(t *testing.T, topic string) {
		r, err := iothub.ParseTwinResponse(topic)
		if err == nil && (r.RID == "" || r.Status < 100 || r.Status > 599) {
			t.Fatalf("accepted %q as %+v", topic, r)
		}
		if m, err := iothub.ParseMethodTopic(topic); err == nil && (m.Name == "" || m.RID == "") {
			t.Fatalf("accepted method %q as %+v", topic, m)
		}
	})
}
