package hub

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store"
)

// answer publishes the answer to the method request req on session s.
func answer(t *testing.T, s *Session, req sent, status, payload string) {
	t.Helper()
	topic := "$iothub/methods/res/" + status + "/?$rid=" + ridOf(t, req.Topic)
	if !s.Allow(topic, true) {
		t.Fatalf("publish to %q refused", topic)
	}
	if err := s.Publish(context.Background(), topic, []byte(payload), false); err != nil {
		t.Fatalf("Publish response: %v", err)
	}
}

// methodKinds returns the kinds of the direct-method entries of the change
// stream, in order.
func methodKinds(t *testing.T, st store.Streams) []string {
	t.Helper()
	entries, err := st.ReadMessages(context.Background(), ChangeStream, 0, store.StreamFilter{}, store.MaxStreamReadLimit)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range entries {
		var d changeDoc
		if err := json.Unmarshal(e.Doc, &d); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(d.Kind, "method") {
			kinds = append(kinds, d.Kind)
		}
	}
	return kinds
}

// TestMethodReachesOtherInstance: a direct method invoked on instance a
// for a device or module connected to instance b reaches it through the
// store, and its answer comes back to the caller on a.
func TestMethodReachesOtherInstance(t *testing.T) {
	for _, module := range []string{"", "m1"} {
		t.Run("module="+module, func(t *testing.T) {
			a, b := twoInstances(t)
			var (
				s *Session
				c *fakeClient
			)
			if module == "" {
				s, c = b.connect(t, "dev1")
			} else {
				s, c = b.connectModule(t, "dev1", module)
			}
			if !s.Allow(MethodsFilter, false) {
				t.Fatal("method subscription refused")
			}
			b.svc.flushPresence() // its record says Connected
			ch := invoke(a.svc, MethodCall{DeviceID: "dev1", ModuleID: module, Name: "reboot", Payload: json.RawMessage(`{"delay":5}`), ResponseTimeout: waitLimit})
			req := c.next(t)
			if !strings.HasPrefix(req.Topic, "$iothub/methods/POST/reboot/?$rid=") || req.Payload != `{"delay":5}` {
				t.Fatalf("request on the other instance = %+v", req)
			}
			answer(t, s, req, "201", `{"rebooting":true}`)
			got := waitInvoke(t, ch)
			if got.err != nil {
				t.Fatalf("InvokeMethod: %v", got.err)
			}
			if diff := cmp.Diff(MethodResult{Status: 201, Payload: json.RawMessage(`{"rebooting":true}`)}, got.res); diff != "" {
				t.Fatalf("result (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{changeMethod, changeMethodAck, changeMethodResult}, methodKinds(t, a.st)); diff != "" {
				t.Fatalf("method entries (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMethodLocalFastPath: a target connected to the calling instance is
// called directly; nothing goes through the store.
func TestMethodLocalFastPath(t *testing.T) {
	a, _ := twoInstances(t)
	s, c := a.connect(t, "dev1")
	if !s.Allow(MethodsFilter, false) {
		t.Fatal("method subscription refused")
	}
	ch := invoke(a.svc, MethodCall{DeviceID: "dev1", Name: "ping", ResponseTimeout: waitLimit})
	answer(t, s, c.next(t), "200", `"pong"`)
	if got := waitInvoke(t, ch); got.err != nil || got.res.Status != 200 {
		t.Fatalf("InvokeMethod = %+v", got)
	}
	if kinds := methodKinds(t, a.st); len(kinds) != 0 {
		t.Fatalf("method entries %v; want none for a local target", kinds)
	}
}

// TestMethodWaitsForConnectionOnOtherInstance: with a connect timeout,
// the call reaches a device that connects to another instance after it
// was made.
func TestMethodWaitsForConnectionOnOtherInstance(t *testing.T) {
	a, b := twoInstances(t)
	b.device(t, "dev1")
	ch := invoke(a.svc, MethodCall{DeviceID: "dev1", Name: "ping", ResponseTimeout: waitLimit, ConnectTimeout: waitLimit})
	// The call is in the stream before the device connects.
	for len(methodKinds(t, a.st)) == 0 {
		select {
		case r := <-ch:
			t.Fatalf("InvokeMethod returned %+v before the device connected", r)
		case <-time.After(time.Millisecond):
		}
	}
	s, c := b.connectExisting(t, "dev1")
	if !s.Allow(MethodsFilter, false) {
		t.Fatal("method subscription refused")
	}
	answer(t, s, c.next(t), "200", `{}`)
	if got := waitInvoke(t, ch); got.err != nil || got.res.Status != 200 {
		t.Fatalf("InvokeMethod = %+v", got)
	}
}

// TestMethodOtherInstanceFailures: the ways a relayed call fails map to
// the errors of a local one.
func TestMethodOtherInstanceFailures(t *testing.T) {
	t.Run("disconnected everywhere", func(t *testing.T) {
		a, b := twoInstances(t)
		b.device(t, "dev1")
		_, err := a.svc.InvokeMethod(context.Background(), MethodCall{DeviceID: "dev1", Name: "m", ResponseTimeout: waitLimit})
		if !errors.Is(err, ErrDeviceNotOnline) || !strings.Contains(err.Error(), "no instance") {
			t.Fatalf("err = %v; want ErrDeviceNotOnline saying no instance has it", err)
		}
		if kinds := methodKinds(t, a.st); len(kinds) != 0 {
			t.Fatalf("method entries %v; the presence record says Disconnected, so none is needed", kinds)
		}
	})
	t.Run("connected but not subscribed", func(t *testing.T) {
		a, b := twoInstances(t)
		b.connect(t, "dev1")
		b.svc.flushPresence()
		a.svc.changes.methods.ackWait = 10 * time.Millisecond
		_, err := a.svc.InvokeMethod(context.Background(), MethodCall{DeviceID: "dev1", Name: "m", ResponseTimeout: waitLimit})
		if !errors.Is(err, ErrDeviceNotOnline) || !strings.Contains(err.Error(), "not subscribed") {
			t.Fatalf("err = %v; want ErrDeviceNotOnline from the instance holding the connection", err)
		}
	})
	t.Run("stale connection here, subscribed one there", func(t *testing.T) {
		// dev1 reconnected to c; its old, unsubscribed connection on b
		// has not ended yet. b's "not online" must not win over c.
		a, b := twoInstances(t)
		c := thirdInstance(t, a)
		b.connect(t, "dev1")
		s, cc := c.connectExisting(t, "dev1")
		if !s.Allow(MethodsFilter, false) {
			t.Fatal("method subscription refused")
		}
		c.svc.flushPresence()
		ch := invoke(a.svc, MethodCall{DeviceID: "dev1", Name: "m", ResponseTimeout: waitLimit})
		answer(t, s, cc.next(t), "200", `1`)
		if got := waitInvoke(t, ch); got.err != nil || got.res.Status != 200 {
			t.Fatalf("InvokeMethod = %+v; want the answer of the subscribed connection", got)
		}
	})
	t.Run("stale presence record", func(t *testing.T) {
		a, b := twoInstances(t)
		b.device(t, "dev1")
		// An instance that died with dev1 connected left its record so.
		if err := a.reg.RecordPresence(context.Background(), "dev1", "", registry.Presence{State: registry.StateConnected, StateTime: testNow()}); err != nil {
			t.Fatal(err)
		}
		a.svc.changes.methods.ackWait = 10 * time.Millisecond
		_, err := a.svc.InvokeMethod(context.Background(), MethodCall{DeviceID: "dev1", Name: "m", ResponseTimeout: waitLimit})
		if !errors.Is(err, ErrDeviceNotOnline) || !strings.Contains(err.Error(), "no instance") {
			t.Fatalf("err = %v; want ErrDeviceNotOnline when no instance takes the call", err)
		}
	})
	t.Run("no answer in time", func(t *testing.T) {
		a, b := twoInstances(t)
		s, c := b.connect(t, "dev1")
		if !s.Allow(MethodsFilter, false) {
			t.Fatal("method subscription refused")
		}
		b.svc.flushPresence()
		ch := invoke(a.svc, MethodCall{DeviceID: "dev1", Name: "m", ResponseTimeout: time.Millisecond})
		c.next(t) // never answered
		got := waitInvoke(t, ch)
		if !errors.Is(got.err, ErrMethodTimeout) || !strings.Contains(got.err.Error(), "on instance "+b.svc.changes.origin) {
			t.Fatalf("err = %v; want ErrMethodTimeout from instance b", got.err)
		}
	})
	t.Run("disconnects before answering", func(t *testing.T) {
		a, b := twoInstances(t)
		s, c := b.connect(t, "dev1")
		if !s.Allow(MethodsFilter, false) {
			t.Fatal("method subscription refused")
		}
		b.svc.flushPresence()
		ch := invoke(a.svc, MethodCall{DeviceID: "dev1", Name: "m", ResponseTimeout: waitLimit})
		c.next(t)
		s.Close(nil)
		got := waitInvoke(t, ch)
		if !errors.Is(got.err, ErrDeviceNotOnline) || !strings.Contains(got.err.Error(), "disconnected before answering") {
			t.Fatalf("err = %v; want ErrDeviceNotOnline: it disconnected", got.err)
		}
	})
}
