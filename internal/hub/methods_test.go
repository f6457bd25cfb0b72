package hub

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/registry"
)

func TestParseMethodResponseTopic(t *testing.T) {
	for _, tc := range []struct {
		topic   string
		status  int
		rid     string
		wantErr bool
	}{
		{topic: "$iothub/methods/res/200/?$rid=1", status: 200, rid: "1"},
		{topic: "$iothub/methods/res/500/?$rid=abc-DEF&x=y", status: 500, rid: "abc-DEF"},
		{topic: "$iothub/methods/res/-1/?x=1&$rid=9", status: -1, rid: "9"},
		{topic: "$iothub/methods/res/200?$rid=1", wantErr: true},
		{topic: "$iothub/methods/res/ok/?$rid=1", wantErr: true},
		{topic: "$iothub/methods/res/99999999999/?$rid=1", wantErr: true},
		{topic: "$iothub/methods/res/200/$rid=1", wantErr: true},
		{topic: "$iothub/methods/res/200/?$rid=", wantErr: true},
		{topic: "$iothub/methods/res/200/?$rid=1&$rid=2", wantErr: true},
		{topic: "$iothub/methods/res/200/?x=1", wantErr: true},
		{topic: "$iothub/methods/POST/m/?$rid=1", wantErr: true},
	} {
		t.Run(tc.topic, func(t *testing.T) {
			status, rid, err := ParseMethodResponseTopic(tc.topic)
			if tc.wantErr {
				if !errors.Is(err, ErrNotMethodResponse) {
					t.Fatalf("err %v, want ErrNotMethodResponse", err)
				}
				return
			}
			if err != nil || status != tc.status || rid != tc.rid {
				t.Fatalf("got (%d, %q, %v), want (%d, %q, nil)", status, rid, err, tc.status, tc.rid)
			}
		})
	}
}

// invoke runs InvokeMethod in the background.
func invoke(svc *Service, c MethodCall) <-chan invokeResult {
	ch := make(chan invokeResult, 1)
	go func() {
		r, err := svc.InvokeMethod(context.Background(), c)
		ch <- invokeResult{r, err}
	}()
	return ch
}

type invokeResult struct {
	res MethodResult
	err error
}

func waitInvoke(t *testing.T, ch <-chan invokeResult) invokeResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLimit):
		t.Fatalf("InvokeMethod did not return within %v", waitLimit)
		return invokeResult{}
	}
}

// ridOf returns the $rid of a method request topic.
func ridOf(t *testing.T, topic string) string {
	t.Helper()
	_, rid, ok := strings.Cut(topic, "/?$rid=")
	if !ok {
		t.Fatalf("method request topic %q has no /?$rid=", topic)
	}
	return rid
}

func TestInvokeMethodRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name        string
		payload     string
		wantBody    string
		status      int
		answer      string
		wantPayload string
	}{
		{name: "JSON both ways", payload: `{"delay":5}`, wantBody: `{"delay":5}`, status: 200, answer: `{"ok":true}`, wantPayload: `{"ok":true}`},
		{name: "no payload sends null", payload: "", wantBody: "null", status: 404, answer: "", wantPayload: "null"},
		{name: "non-JSON answer becomes a string", payload: `"x"`, wantBody: `"x"`, status: 500, answer: "boom", wantPayload: `"boom"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s, c := e.connect(t, "dev1")
			if !s.Allow(MethodsFilter, false) {
				t.Fatal("method subscription refused")
			}
			ch := invoke(e.svc, MethodCall{DeviceID: "dev1", Name: "reboot", Payload: json.RawMessage(tc.payload), ResponseTimeout: waitLimit})
			req := c.next(t)
			rid := ridOf(t, req.Topic)
			if diff := cmp.Diff(sent{Topic: "$iothub/methods/POST/reboot/?$rid=" + rid, Payload: tc.wantBody, QoS: 0}, req); diff != "" {
				t.Fatalf("request (-want +got):\n%s", diff)
			}
			res := "$iothub/methods/res/" + strconv.Itoa(tc.status) + "/?$rid=" + rid
			if !s.Allow(res, true) {
				t.Fatalf("publish to %q refused", res)
			}
			if err := s.Publish(context.Background(), res, []byte(tc.answer), false); err != nil {
				t.Fatalf("Publish response: %v", err)
			}
			got := waitInvoke(t, ch)
			if got.err != nil {
				t.Fatalf("InvokeMethod: %v", got.err)
			}
			if diff := cmp.Diff(MethodResult{Status: tc.status, Payload: json.RawMessage(tc.wantPayload)}, got.res); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInvokeMethodFailures(t *testing.T) {
	e := newEnv(t)
	e.device(t, "idle")   // never connects
	e.connect(t, "idle2") // connects, never subscribes to methods
	sub, _ := e.connect(t, "quiet")
	if !sub.Allow(MethodsFilter, false) {
		t.Fatal("method subscription refused")
	}
	if _, err := e.reg.PutModule(context.Background(), &registry.Module{DeviceID: "quiet", ModuleID: "mod"}, ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call MethodCall
		want error
	}{
		{"unknown device", MethodCall{DeviceID: "ghost", Name: "m", ResponseTimeout: time.Second}, registry.ErrNotFound},
		{"not connected", MethodCall{DeviceID: "idle", Name: "m", ResponseTimeout: time.Second}, ErrDeviceNotOnline},
		{"connected, not subscribed, connect timeout", MethodCall{DeviceID: "idle2", Name: "m", ResponseTimeout: time.Second, ConnectTimeout: time.Millisecond}, ErrDeviceNotOnline},
		{"no answer", MethodCall{DeviceID: "quiet", Name: "m", ResponseTimeout: 20 * time.Millisecond}, ErrMethodTimeout},
		{"empty name", MethodCall{DeviceID: "quiet", ResponseTimeout: time.Second}, ErrInvalidMethod},
		{"name with slash", MethodCall{DeviceID: "quiet", Name: "a/b", ResponseTimeout: time.Second}, ErrInvalidMethod},
		{"payload not JSON", MethodCall{DeviceID: "quiet", Name: "m", Payload: json.RawMessage("{"), ResponseTimeout: time.Second}, ErrInvalidMethod},
		{"no response timeout", MethodCall{DeviceID: "quiet", Name: "m"}, ErrInvalidMethod},
		{"module without a connection", MethodCall{DeviceID: "quiet", ModuleID: "mod", Name: "m", ResponseTimeout: time.Second}, ErrDeviceNotOnline},
		{"unknown module", MethodCall{DeviceID: "quiet", ModuleID: "ghost", Name: "m", ResponseTimeout: time.Second}, registry.ErrModuleNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.InvokeMethod(context.Background(), tc.call)
			if !errors.Is(err, tc.want) {
				t.Fatalf("InvokeMethod: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestInvokeMethodWaitsForConnect(t *testing.T) {
	e := newEnv(t)
	s, c := e.connect(t, "dev1")
	ch := invoke(e.svc, MethodCall{DeviceID: "dev1", Name: "m", ResponseTimeout: waitLimit, ConnectTimeout: waitLimit})
	if !s.Allow(MethodsFilter, false) {
		t.Fatal("method subscription refused")
	}
	rid := ridOf(t, c.next(t).Topic)
	if err := s.Publish(context.Background(), "$iothub/methods/res/201/?$rid="+rid, []byte(`1`), false); err != nil {
		t.Fatal(err)
	}
	got := waitInvoke(t, ch)
	if got.err != nil || got.res.Status != 201 || string(got.res.Payload) != "1" {
		t.Fatalf("InvokeMethod: %+v, %v; want status 201 payload 1", got.res, got.err)
	}
}

func TestInvokeMethodDisconnectAndLateAnswer(t *testing.T) {
	e := newEnv(t)
	s, c := e.connect(t, "dev1")
	s.Allow(MethodsFilter, false)
	ch := invoke(e.svc, MethodCall{DeviceID: "dev1", Name: "m", ResponseTimeout: waitLimit})
	rid := ridOf(t, c.next(t).Topic)
	s.Close(nil)
	if got := waitInvoke(t, ch); !errors.Is(got.err, ErrDeviceNotOnline) {
		t.Fatalf("InvokeMethod after disconnect: %v, want ErrDeviceNotOnline", got.err)
	}
	// An answer nobody waits for is dropped without ending the connection.
	s2, _ := e.connect(t, "dev2")
	if err := s2.Publish(context.Background(), "$iothub/methods/res/200/?$rid="+rid, nil, false); err != nil {
		t.Fatalf("late answer: %v", err)
	}
}

func TestMethodRIDsAreCorrelatedPerCall(t *testing.T) {
	e := newEnv(t)
	s, c := e.connect(t, "dev1")
	s.Allow(MethodsFilter, false)
	first := invoke(e.svc, MethodCall{DeviceID: "dev1", Name: "a", ResponseTimeout: waitLimit})
	r1 := c.next(t)
	second := invoke(e.svc, MethodCall{DeviceID: "dev1", Name: "b", ResponseTimeout: waitLimit})
	r2 := c.next(t)
	if ridOf(t, r1.Topic) == ridOf(t, r2.Topic) {
		t.Fatalf("two calls share the rid of %q and %q", r1.Topic, r2.Topic)
	}
	// Answer in reverse order.
	for _, r := range []struct {
		topic, body string
	}{{r2.Topic, `"b"`}, {r1.Topic, `"a"`}} {
		if err := s.Publish(context.Background(), "$iothub/methods/res/200/?$rid="+ridOf(t, r.topic), []byte(r.body), false); err != nil {
			t.Fatal(err)
		}
	}
	if got := waitInvoke(t, first); got.err != nil || string(got.res.Payload) != `"a"` {
		t.Errorf("first call: %+v, %v; want payload \"a\"", got.res, got.err)
	}
	if got := waitInvoke(t, second); got.err != nil || string(got.res.Payload) != `"b"` {
		t.Errorf("second call: %+v, %v; want payload \"b\"", got.res, got.err)
	}
}
