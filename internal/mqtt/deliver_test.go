package mqtt

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestMatchTopic(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"$dps/registrations/res/#", "$dps/registrations/res/202/?$rid=abc&retry-after=3", true},
		{"$dps/registrations/res/#", "$dps/registrations/res", true}, // '#' includes the parent level
		{"$dps/registrations/res/#", "$dps/registrations/PUT/iotdps-register/?$rid=1", false},
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/tennis/+", "sport/tennis", false},
		{"sport/+", "sport/", true},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"+", "/finance", false},
		{"#", "sport/tennis", true},
		{"#", "$SYS/broker", false},
		{"+/monitor", "$SYS/monitor", false},
		{"$SYS/#", "$SYS/broker/clients", true},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/#/c", "a/b/c", false}, // invalid filter
		{"$share/g/a/b", "a/b", false},
		{"devices/dev1/messages/devicebound/#", "devices/dev1/messages/devicebound/%24.mid=1&%24.to=%2Fdevices%2Fdev1", true},
		{"devices/dev1/messages/devicebound/#", "devices/dev2/messages/devicebound/x", false},
		{"", "a", false},
		{"a", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.filter+" "+tc.topic, func(t *testing.T) {
			if got := matchTopic(tc.filter, tc.topic); got != tc.want {
				t.Errorf("matchTopic(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
			}
		})
	}
}

func FuzzMatchTopic(f *testing.F) {
	f.Add("a/+/#", "a/b/c")
	f.Add("$dps/registrations/res/#", "$dps/registrations/res/200/?$rid=1")
	f.Add("#", "$SYS/x")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		got := matchTopic(filter, topic)
		if topic == "" || strings.ContainsAny(topic, "+#") {
			return // not a topic name
		}
		// A topic name used as a filter matches exactly itself.
		if !strings.HasPrefix(topic, "$share/") && matchTopic(topic, topic) != true {
			t.Fatalf("%q does not match itself", topic)
		}
		// Replacing the filter's last level by '#' never loses a match.
		if got && !strings.HasSuffix(filter, "#") {
			i := strings.LastIndexByte(filter, '/')
			if i >= 0 {
				wider := filter[:i] + "/#"
				if !matchTopic(wider, topic) {
					t.Fatalf("%q matches %q but %q does not", filter, topic, wider)
				}
			}
		}
		// '#' matches every topic not starting with '$'.
		if matchTopic("#", topic) != (topic[0] != '$') {
			t.Fatalf("'#' and %q", topic)
		}
	})
}

func TestASCIIJSON(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"ascii unchanged", map[string]string{"a": "b<&>"}, `{"a":"b\u003c\u0026\u003e"}`},
		{"latin", map[string]string{"name": "grüß"}, `{"name":"gr\u00fc\u00df"}`},
		{"beyond the BMP", []string{"🙂"}, `["\ud83d\ude42"]`},
		{"raw payload", map[string]json.RawMessage{"payload": json.RawMessage(`{"k":"é"}`)}, `{"payload":{"k":"\u00e9"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got := asciiJSON(b)
			if string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func FuzzASCIIJSON(f *testing.F) {
	f.Add("grüß dich 🙂")
	f.Add("plain")
	f.Add("\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := json.Marshal(map[string]string{"v": s})
		if err != nil {
			t.Fatal(err)
		}
		got := asciiJSON(b)
		for i, c := range got {
			if c >= utf8.RuneSelf {
				t.Fatalf("byte %d of %q is not ASCII", i, got)
			}
		}
		var back, orig map[string]string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q is not JSON: %v", got, err)
		}
		if err := json.Unmarshal(b, &orig); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(orig, back); diff != "" {
			t.Fatalf("value changed (-want +got):\n%s", diff)
		}
		if bytes.Equal(b, got) != (utf8.RuneCount(b) == len(b)) {
			t.Fatalf("ASCII input %q was rewritten or non-ASCII input kept", b)
		}
	})
}

func TestOffersSubprotocol(t *testing.T) {
	tests := []struct {
		values []string
		want   bool
	}{
		{[]string{"mqtt"}, true},
		{[]string{"MQTT"}, true},
		{[]string{"mqttv3.1, mqtt"}, true},
		{[]string{"AMQPWSB10"}, false},
		{nil, false},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.values, ";"), func(t *testing.T) {
			h := make(map[string][]string)
			if tc.values != nil {
				h["Sec-Websocket-Protocol"] = tc.values
			}
			if got := offersSubprotocol(h, "mqtt"); got != tc.want {
				t.Errorf("got %v", got)
			}
		})
	}
}
