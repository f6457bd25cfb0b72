package telemetry

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzParseBag feeds arbitrary bags to ParseBag: it must not panic, must
// fail only with its sentinels, and what it accepts must be valid, within
// the limits, sorted into the right map, and read back unchanged after
// EncodeBag.
func FuzzParseBag(f *testing.F) {
	seeds := []string{
		"",
		"%24.on=output1&%24.mid=m-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&a%2Fb=x%26y",
		cC2DBag,
		"$.ct=application/json&$.ce=utf-8&temp=21.5",
		"a=1+2&pct=100%&x=%zz&z=%41%",
		"flag&&=v&a=b=c&a=2",
		"%24.foo=bar&%24=x&%24.=y&iothub-ack=full",
		"a=%00", "a=%FF", "\xff=1", "%C3%A9=%F0%9D%84%9E",
		manyPairs(MaxProperties + 1),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, bag string) {
		sys, app, err := ParseBag(bag)
		if err != nil {
			if !errors.Is(err, ErrInvalidBag) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("ParseBag(%q) = %v; want ErrInvalidBag or ErrTooLarge", bag, err)
			}
			return
		}
		if len(sys)+len(app) > MaxProperties {
			t.Fatalf("ParseBag(%q) returned %d properties", bag, len(sys)+len(app))
		}
		for name, value := range sys {
			checkParsed(t, bag, name, value)
			if _, known := systemName(name); known || !isSystemName(name) {
				t.Fatalf("ParseBag(%q) put %q in the system properties", bag, name)
			}
		}
		for name, value := range app {
			checkParsed(t, bag, name, value)
			if strings.HasPrefix(name, systemPrefix) || name == PropAck {
				t.Fatalf("ParseBag(%q) put %q in the application properties", bag, name)
			}
		}
		encoded := EncodeBag(sys, app)
		if strings.Contains(encoded, "/") {
			t.Fatalf("EncodeBag = %q contains '/'", encoded)
		}
		if len(encoded) > MaxBagBytes {
			return // encoding can triple raw bytes
		}
		sys2, app2, err := ParseBag(encoded)
		if err != nil {
			t.Fatalf("ParseBag(EncodeBag(ParseBag(%q))) = %v", bag, err)
		}
		if diff := cmp.Diff(sys, sys2, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("system properties of %q changed through EncodeBag (-first +second):\n%s", bag, diff)
		}
		if diff := cmp.Diff(app, app2, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("application properties of %q changed through EncodeBag (-first +second):\n%s", bag, diff)
		}
	})
}

// isSystemName reports whether ParseBag may return name as a system
// property: a Prop* name with a bag key, a "$." name, or iothub-ack.
func isSystemName(name string) bool {
	if name == PropAck || strings.HasPrefix(name, systemPrefix) {
		return true
	}
	for _, p := range bagKeys() {
		if p[0] == name {
			return true
		}
	}
	return false
}

func checkParsed(t *testing.T, bag, name, value string) {
	t.Helper()
	if name == "" || !utf8.ValidString(name) || !utf8.ValidString(value) || strings.ContainsRune(name, 0) || strings.ContainsRune(value, 0) {
		t.Fatalf("ParseBag(%q) returned the invalid property %q=%q", bag, name, value)
	}
}

// FuzzParseTelemetryTopic feeds arbitrary topics to ParseTelemetryTopic:
// it must not panic, must fail only with ErrNotTelemetry, and what it
// accepts must have valid IDs and parse the same once rebuilt.
func FuzzParseTelemetryTopic(f *testing.F) {
	seeds := []string{
		nodeModuleOutput,
		"devices/dev1/messages/events/",
		"devices/dev1/messages/events",
		"devices/d/messages/events/$.ct=application/json&p=/a/b/",
		"devices/dev%3A1/modules/m%24x/messages/events/?a=1",
		"devices/edge1/modules/$edgeHub/messages/events/",
		"devices/d/messages/devicebound/a=1",
		"devices//messages/events/",
		"devices/d/modules//messages/events/",
		"devices/dev%2F1/messages/events/",
		"$iothub/twin/GET/?$rid=1",
		"devices/modules/modules/modules/messages/events/messages/events/",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		device, module, bag, err := ParseTelemetryTopic(topic)
		if err != nil {
			if !errors.Is(err, ErrNotTelemetry) {
				t.Fatalf("ParseTelemetryTopic(%q) = %v; want ErrNotTelemetry", topic, err)
			}
			return
		}
		if !ValidID(device) || (module != "" && !ValidID(module)) {
			t.Fatalf("ParseTelemetryTopic(%q) returned invalid IDs %q, %q", topic, device, module)
		}
		if !strings.HasPrefix(topic, "devices/") || !strings.Contains(topic, "/messages/events") {
			t.Fatalf("ParseTelemetryTopic accepted %q", topic)
		}
		// Rebuild with encoded IDs (decoding them is lossless) and parse again.
		rebuilt := "devices/" + escape(device)
		if module != "" {
			rebuilt += "/modules/" + escape(module)
		}
		rebuilt += "/messages/events/" + bag
		d2, m2, b2, err := ParseTelemetryTopic(rebuilt)
		if err != nil {
			t.Fatalf("ParseTelemetryTopic(%q) (rebuilt from %q): %v", rebuilt, topic, err)
		}
		wantBag := strings.TrimPrefix(strings.TrimSuffix(bag, "/"), "?")
		if d2 != device || m2 != module || b2 != wantBag {
			t.Fatalf("rebuilt %q parses as %q, %q, %q; want %q, %q, %q", rebuilt, d2, m2, b2, device, module, wantBag)
		}
	})
}

// FuzzBagRoundTrip builds property maps from arbitrary names and values:
// EncodeBag must keep '/' out, and ParseBag must give back every property
// EncodeBag can represent.
func FuzzBagRoundTrip(f *testing.F) {
	f.Add(uint8(0), "m-1", "alert", "high temp", "a/b", "x&y", "$.custom", "v")
	f.Add(uint8(3), "/devices/d/messages/deviceBound", "é", "𝄞", "%24.mid", "%", "$.", "")
	f.Add(uint8(13), "full", "", "", "k=v", "a&b", "$.mid", "alias")
	f.Add(uint8(255), "+ +", "iothub-ack", "x", "$.x", "y", "$.on", "z")
	f.Fuzz(func(t *testing.T, sysIndex uint8, sysValue, k1, v1, k2, v2, dollarKey, dollarValue string) {
		valid := func(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
		sys, app := map[string]string{}, map[string]string{}
		known := bagKeys()
		switch i := int(sysIndex) % (len(known) + 1); {
		case i < len(known):
			sys[known[i][0]] = sysValue
		default:
			sys[PropAck] = sysValue
		}
		if strings.HasPrefix(dollarKey, systemPrefix) {
			if _, isKnown := systemName(dollarKey); !isKnown {
				sys[dollarKey] = dollarValue
			}
		}
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}} {
			if kv[0] != "" && kv[0] != PropAck && !strings.HasPrefix(kv[0], systemPrefix) {
				if _, dup := app[kv[0]]; !dup {
					app[kv[0]] = kv[1]
				}
			}
		}
		for _, m := range []map[string]string{sys, app} {
			for k, v := range m {
				if !valid(k) || !valid(v) {
					return // ParseBag refuses these on purpose
				}
			}
		}
		encoded := EncodeBag(sys, app)
		if strings.Contains(encoded, "/") {
			t.Fatalf("EncodeBag(%q, %q) = %q contains '/'", sys, app, encoded)
		}
		if len(encoded) > MaxBagBytes {
			return
		}
		gotSys, gotApp, err := ParseBag(encoded)
		if err != nil {
			t.Fatalf("ParseBag(EncodeBag(%q, %q) = %q): %v", sys, app, encoded, err)
		}
		if diff := cmp.Diff(sys, gotSys, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("system properties through %q (-want +got):\n%s", encoded, diff)
		}
		if diff := cmp.Diff(app, gotApp, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("application properties through %q (-want +got):\n%s", encoded, diff)
		}
	})
}
