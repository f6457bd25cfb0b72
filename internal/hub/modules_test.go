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
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/telemetry"
)

// connectModule creates module moduleID of the edge device deviceID (and
// the device, if missing) and connects it with a token signed with its
// own key, through the real authenticator.
func (e *env) connectModule(t *testing.T, deviceID, moduleID string) (*Session, *fakeClient) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.reg.GetDevice(ctx, deviceID); errors.Is(err, registry.ErrNotFound) {
		if _, err := e.reg.PutDevice(ctx, &registry.Device{DeviceID: deviceID, Capabilities: registry.Capabilities{IoTEdge: true}}, ""); err != nil {
			t.Fatal(err)
		}
	}
	m, err := e.reg.GetModule(ctx, deviceID, moduleID)
	if errors.Is(err, registry.ErrModuleNotFound) {
		m, err = e.reg.PutModule(ctx, &registry.Module{DeviceID: deviceID, ModuleID: moduleID}, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	key, err := sas.DecodeKey(m.Authentication.SymmetricKey.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	c := newFakeClient()
	s, err := e.svc.Connect(ctx, hubauth.Request{
		ClientID: deviceID + "/" + moduleID,
		Username: testHub + "/" + deviceID + "/" + moduleID + "/?api-version=2021-04-12",
		Password: sas.Sign(testHub+"/devices/"+deviceID+"/modules/"+moduleID, key, "", testNow().Add(time.Hour)),
	}, c)
	if err != nil {
		t.Fatalf("connect module %s/%s: %v", deviceID, moduleID, err)
	}
	t.Cleanup(func() { s.Close(nil) })
	return s, c
}

// twinRequest publishes a twin request and returns the response.
func twinRequest(t *testing.T, s *Session, c *fakeClient, topic, body string) sent {
	t.Helper()
	if !s.Allow(topic, true) {
		t.Fatalf("publish to %q refused", topic)
	}
	if err := s.Publish(context.Background(), topic, []byte(body), false); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
	return c.next(t)
}

func TestModuleTwinOverSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	mod, mc := e.connectModule(t, "edge1", "mod1")
	dev, dc := e.connectModule(t, "edge1", registry.ModuleEdgeAgent)
	if !mod.Allow(TwinResponseFilter, false) || !dev.Allow(TwinResponseFilter, false) {
		t.Fatal("twin response subscription refused")
	}

	got := twinRequest(t, mod, mc, "$iothub/twin/GET/?$rid=1", " ")
	if got.Topic != "$iothub/twin/res/200/?$rid=1" || canon(t, got.Payload) != `{"desired":{"$version":1},"reported":{"$version":1}}` {
		t.Fatalf("GET response %+v", got)
	}
	got = twinRequest(t, mod, mc, "$iothub/twin/PATCH/properties/reported/?$rid=2", `{"temp":21.5,"state":{"ok":true}}`)
	if got.Topic != "$iothub/twin/res/204/?$rid=2&$version=2" || got.Payload != "" {
		t.Fatalf("reported PATCH response %+v", got)
	}
	stored, err := e.reg.GetModuleTwin(ctx, "edge1", "mod1")
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(stored.Properties.Reported, &rep); err != nil {
		t.Fatal(err)
	}
	if rep["temp"] != 21.5 || rep["$version"] != float64(2) {
		t.Errorf("stored module reported properties %s", stored.Properties.Reported)
	}
	// The device twin and the other module's twin are untouched.
	if dt, err := e.reg.GetTwin(ctx, "edge1"); err != nil || dt.Version != 1 {
		t.Errorf("device twin = %+v, %v; want version 1", dt, err)
	}
	got = twinRequest(t, dev, dc, "$iothub/twin/GET/?$rid=3", "")
	if canon(t, got.Payload) != `{"desired":{"$version":1},"reported":{"$version":1}}` {
		t.Errorf("$edgeAgent GET %+v", got)
	}
	got = twinRequest(t, mod, mc, "$iothub/twin/PATCH/properties/reported/?$rid=4", `{"a b":1}`)
	if !strings.HasPrefix(got.Topic, "$iothub/twin/res/400/?$rid=4") || !strings.Contains(got.Payload, `"errorCode":400004`) {
		t.Errorf("invalid reported PATCH response %+v", got)
	}
}

func TestModuleDesiredNotifications(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	mod, mc := e.connectModule(t, "edge1", "mod1")
	other, oc := e.connectModule(t, "edge1", "mod2")
	for _, s := range []*Session{mod, other} {
		if !s.Allow(DesiredFilter, false) {
			t.Fatal("desired subscription refused")
		}
	}
	if n := e.svc.watching("edge1/mod1"); n != 1 {
		t.Fatalf("%d watchers of edge1/mod1, want 1", n)
	}
	if _, err := e.svc.PatchModuleTwin(ctx, "edge1", "mod1", registry.TwinUpdate{Desired: json.RawMessage(`{"interval":5}`)}, "*"); err != nil {
		t.Fatal(err)
	}
	got := mc.next(t)
	if diff := cmp.Diff(sent{Topic: DesiredTopic(2), Payload: canon(t, `{"interval":5,"$version":2}`), QoS: 1},
		sent{Topic: got.Topic, Payload: canon(t, got.Payload), QoS: got.QoS}); diff != "" {
		t.Fatalf("notification (-want +got):\n%s", diff)
	}
	if _, err := e.svc.ReplaceModuleTwin(ctx, "edge1", "mod1", registry.TwinUpdate{Desired: json.RawMessage(`{"mode":"x"}`)}, ""); err != nil {
		t.Fatal(err)
	}
	if got := mc.next(t); got.Topic != DesiredTopic(3) || canon(t, got.Payload) != canon(t, `{"interval":null,"mode":"x","$version":3}`) {
		t.Fatalf("replace notification %+v", got)
	}
	// A device twin change reaches neither module.
	if _, err := e.svc.PatchTwin(ctx, "edge1", registry.TwinUpdate{Desired: json.RawMessage(`{"dev":1}`)}, ""); err != nil {
		t.Fatal(err)
	}
	// A write through the registry directly is pushed once the writer says so.
	if _, err := e.reg.PatchModuleTwin(ctx, "edge1", "mod1", registry.TwinUpdate{Desired: json.RawMessage(`{"direct":true}`)}, ""); err != nil {
		t.Fatal(err)
	}
	e.svc.ModuleDesiredMayHaveChanged("edge1", "mod1")
	if got := mc.next(t); got.Topic != DesiredTopic(4) || canon(t, got.Payload) != canon(t, `{"direct":true,"$version":4}`) {
		t.Fatalf("notification after a direct write %+v", got)
	}
	oc.none(t)
	mc.none(t)
}

func TestModuleTelemetryKeepsOutputName(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	mod, _ := e.connectModule(t, "edge1", "mod1")
	topic := "devices/edge1/modules/mod1/messages/events/%24.on=output1&%24.mid=m-1&%24.cmid=impostor&alert=high%20temp/"
	if !mod.Allow(topic, true) {
		t.Fatal("module output refused")
	}
	if err := mod.Publish(ctx, topic, []byte(`{"t":1}`), false); err != nil {
		t.Fatal(err)
	}
	msgs, err := e.events.Read(ctx, 0, telemetry.Filter{DeviceID: "edge1", ModuleID: "mod1"}, 0)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("read %d messages, %v", len(msgs), err)
	}
	want := map[string]string{telemetry.PropOutputName: "output1", telemetry.PropMessageID: "m-1",
		telemetry.PropConnectionDeviceID: "edge1", telemetry.PropConnectionModuleID: "mod1"}
	if diff := cmp.Diff(want, msgs[0].SystemProperties); diff != "" {
		t.Errorf("system properties (-want +got):\n%s", diff)
	}
	if msgs[0].ModuleID != "mod1" || msgs[0].Properties["alert"] != "high temp" {
		t.Errorf("stored message %+v", msgs[0])
	}
	for _, bad := range []string{"devices/edge1/modules/mod2/messages/events/", "devices/edge2/modules/mod1/messages/events/", "devices/edge1/messages/events/"} {
		if mod.Allow(bad, true) {
			t.Errorf("module may publish to %q", bad)
		}
	}
}

func TestModuleMethods(t *testing.T) {
	e := newEnv(t)
	mod, mc := e.connectModule(t, "edge1", "mod1")
	dev, dc := e.connectModule(t, "edge1", "mod2")
	for _, s := range []*Session{mod, dev} {
		if !s.Allow(MethodsFilter, false) {
			t.Fatal("method subscription refused")
		}
	}
	ch := invoke(e.svc, MethodCall{DeviceID: "edge1", ModuleID: "mod1", Name: "ping", Payload: json.RawMessage(`{"n":1}`), ResponseTimeout: waitLimit})
	req := mc.next(t)
	rid := ridOf(t, req.Topic)
	if req.Topic != MethodRequestTopic("ping", rid) || req.Payload != `{"n":1}` {
		t.Fatalf("request %+v", req)
	}
	if err := mod.Publish(context.Background(), "$iothub/methods/res/200/?$rid="+rid, []byte(`"pong"`), false); err != nil {
		t.Fatal(err)
	}
	if got := waitInvoke(t, ch); got.err != nil || got.res.Status != 200 || string(got.res.Payload) != `"pong"` {
		t.Fatalf("result %+v, %v", got.res, got.err)
	}
	dc.none(t)
	_, err := e.svc.InvokeMethod(context.Background(), MethodCall{DeviceID: "edge1", ModuleID: "nomod", Name: "ping", ResponseTimeout: time.Second})
	if !errors.Is(err, registry.ErrModuleNotFound) {
		t.Errorf("method on a missing module: %v, want ErrModuleNotFound", err)
	}
}

func TestModuleTwinGoneAfterDelete(t *testing.T) {
	e := newEnv(t)
	mod, mc := e.connectModule(t, "edge1", "mod1")
	if !mod.Allow(TwinResponseFilter, false) {
		t.Fatal("subscription refused")
	}
	if err := e.reg.RemoveModule(context.Background(), "edge1", "mod1", ""); err != nil {
		t.Fatal(err)
	}
	got := twinRequest(t, mod, mc, "$iothub/twin/GET/?$rid=9", "")
	if got.Topic != "$iothub/twin/res/404/?$rid=9" || !strings.Contains(got.Payload, `"errorCode":404010`) {
		t.Fatalf("GET of a deleted module's twin %+v", got)
	}
}
