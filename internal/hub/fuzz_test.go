package hub

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store/memstore"
	"github.com/muster-iot/muster/internal/telemetry"
)

// FuzzParseTwinTopic checks that a parsed request ID can be echoed: it is
// a valid $rid, it occurs in the topic, and the response topic built from
// it is a twin response topic carrying it.
func FuzzParseTwinTopic(f *testing.F) {
	for _, s := range []string{
		"$iothub/twin/GET/?$rid=1",
		"$iothub/twin/GET/?$rid=b6a3c2f0-54d1-4b8e-9c1e-0123456789ab",
		"$iothub/twin/PATCH/properties/reported/?$rid=42&$version=7",
		"$iothub/twin/PATCH/properties/reported/?$version=7&$rid=42",
		"$iothub/twin/GET/?$rid=",
		"$iothub/twin/GET/?$rid=1&$rid=2",
		"$iothub/twin/GET/",
		"$iothub/twin/GET/?$rid=a/b",
		"$iothub/twin/GET/?$rid=%FF",
		"$iothub/twin/PATCH/properties/desired/?$version=1",
		"devices/dev1/messages/events/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		req, err := ParseTwinTopic(topic)
		if err != nil {
			return
		}
		if req.Op != TwinGet && req.Op != TwinPatchReported {
			t.Fatalf("%q: op %v", topic, req.Op)
		}
		if err := checkRID(req.RID); err != nil {
			t.Fatalf("%q: parsed $rid %q is invalid: %v", topic, req.RID, err)
		}
		if !strings.Contains(topic, "$rid="+req.RID) {
			t.Fatalf("%q: $rid %q is not in the topic", topic, req.RID)
		}
		resp := TwinResponseTopic(200, req.RID, 3)
		if want := "$iothub/twin/res/200/?$rid=" + req.RID + "&$version=3"; resp != want {
			t.Fatalf("response topic %q, want %q", resp, want)
		}
		if strings.ContainsAny(req.RID, "/+#") {
			t.Fatalf("%q: $rid %q would break the response topic", topic, req.RID)
		}
	})
}

// FuzzAllow checks the per-identity rules on arbitrary topics: an allowed
// publish is the identity's own telemetry topic or a twin request, and an
// allowed subscription never selects another device's topics.
func FuzzAllow(f *testing.F) {
	for _, s := range []string{
		"devices/dev1/messages/events/a=b",
		"devices/dev2/messages/events/",
		"devices/dev%31/messages/events/",
		"$iothub/twin/GET/?$rid=1",
		"$iothub/twin/res/#",
		"$iothub/methods/POST/#",
		"$iothub/methods/res/200/?$rid=1",
		"devices/dev1/messages/devicebound/#",
		"devices/+/messages/devicebound/#",
		"devices/dev1/messages/devicebound",
		"#",
		"$iothub/#",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	// An empty registry (C2D delivery reads the device's queue);
	// subscribing to desired notifications (which reads the twin) is left
	// to the unit tests.
	svc := &Service{auth: fakeAuth{hubauth.Identity{DeviceID: "dev1"}}, now: testNow, log: discardLogger(),
		reg: registry.New(testHub, memstore.New(0), testNow), watchers: map[string]map[*Session]struct{}{}}
	s, err := svc.Connect(context.Background(), hubauth.Request{}, newFakeClient())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, topic string, publish bool) {
		if strings.HasPrefix(topic, DesiredFilter[:len(DesiredFilter)-1]) || topic == strings.TrimSuffix(DesiredFilter, "/#") {
			return // subscribing reads the twin; covered by the unit tests
		}
		if !s.Allow(topic, publish) {
			return
		}
		if publish {
			dev, mod, _, terr := telemetry.ParseTelemetryTopic(topic)
			_, rerr := ParseTwinTopic(topic)
			_, _, merr := ParseMethodResponseTopic(topic)
			if (terr != nil || dev != "dev1" || mod != "") && rerr != nil && merr != nil {
				t.Fatalf("publish to %q allowed", topic)
			}
			return
		}
		if strings.HasPrefix(topic, "devices/") && !strings.HasPrefix(topic, "devices/dev1/messages/devicebound") {
			t.Fatalf("subscription to %q allowed", topic)
		}
		if strings.ContainsAny(strings.SplitN(topic, "/#", 2)[0], "+") && strings.HasPrefix(topic, "devices/") {
			t.Fatalf("wildcard subscription %q allowed", topic)
		}
	})
}

// FuzzParseMethodResponseTopic checks that a parsed method response has
// an echoable $rid that occurs in the topic and a status that prints back
// to the topic's status level.
func FuzzParseMethodResponseTopic(f *testing.F) {
	for _, s := range []string{
		"$iothub/methods/res/200/?$rid=1",
		"$iothub/methods/res/500/?$rid=abc&x=y",
		"$iothub/methods/res/-1/?x=1&$rid=9",
		"$iothub/methods/res/200?$rid=1",
		"$iothub/methods/res/+200/?$rid=1",
		"$iothub/methods/res/200/?$rid=1&$rid=2",
		"$iothub/methods/res/200/?$rid=",
		"$iothub/methods/POST/m/?$rid=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		status, rid, err := ParseMethodResponseTopic(topic)
		if err != nil {
			return
		}
		if err := checkRID(rid); err != nil {
			t.Fatalf("%q: parsed $rid %q is invalid: %v", topic, rid, err)
		}
		if !strings.Contains(topic, "$rid="+rid) {
			t.Fatalf("%q: $rid %q is not in the topic", topic, rid)
		}
		level := strings.SplitN(strings.TrimPrefix(topic, methodResponsePrefix), "/", 2)[0]
		n, perr := strconv.Atoi(level)
		if perr != nil || n != status {
			t.Fatalf("%q: status %d does not match level %q", topic, status, level)
		}
	})
}
