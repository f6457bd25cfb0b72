package telemetry

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTelemetryTopic(t *testing.T) {
	tests := []struct {
		name     string
		topic    string
		device   string
		module   string
		bag      string
		notTopic bool
	}{
		{name: "node module output", topic: nodeModuleOutput, device: "dev1", module: "mod1",
			bag: "%24.on=output1&%24.mid=m-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&a%2Fb=x%26y"},
		{name: "device, no bag", topic: "devices/dev1/messages/events/", device: "dev1"},
		{name: "device, no trailing slash", topic: "devices/dev1/messages/events", device: "dev1"},
		{name: "device with bag", topic: "devices/dev1/messages/events/a=1&b=2", device: "dev1", bag: "a=1&b=2"},
		{name: "module, no bag", topic: "devices/dev1/modules/mod1/messages/events/", device: "dev1", module: "mod1"},
		{name: "module, no trailing slash", topic: "devices/dev1/modules/mod1/messages/events", device: "dev1", module: "mod1"},
		{name: "raw bag with slashes (C SDK)", topic: "devices/d/messages/events/$.ct=application/json&path=/a/b", device: "d", bag: "$.ct=application/json&path=/a/b"},
		{name: "only one trailing slash dropped", topic: "devices/d/messages/events/a=b//", device: "d", bag: "a=b/"},
		{name: "question mark before the bag", topic: "devices/d/messages/events/?a=1", device: "d", bag: "a=1"},
		{name: "encoded device ID (Python SDK)", topic: "devices/dev%3A1/modules/m%24x/messages/events/", device: "dev:1", module: "m$x"},
		{name: "raw percent in an ID", topic: "devices/50%off/messages/events/", device: "50%off"},
		{name: "every ID character", topic: "devices/aZ09-:.+%_#*?!(),=@;$'/messages/events/", device: "aZ09-:.+%_#*?!(),=@;$'"},
		{name: "system module", topic: "devices/edge1/modules/$edgeHub/messages/events/", device: "edge1", module: "$edgeHub"},
		{name: "device named modules", topic: "devices/modules/messages/events/", device: "modules"},
		{name: "module named messages", topic: "devices/d/modules/messages/messages/events/", device: "d", module: "messages"},
		{name: "longest ID", topic: "devices/" + strings.Repeat("d", MaxIDLen) + "/messages/events/", device: strings.Repeat("d", MaxIDLen)},
		{name: "C2D topic", topic: "devices/d/messages/devicebound/a=1", notTopic: true},
		{name: "module input", topic: "devices/d/modules/m/inputs/in1/", notTopic: true},
		{name: "twin", topic: "$iothub/twin/GET/?$rid=1", notTopic: true},
		{name: "DPS", topic: "$dps/registrations/PUT/iotdps-register/?$rid=1", notTopic: true},
		{name: "device only", topic: "devices/d", notTopic: true},
		{name: "empty", topic: "", notTopic: true},
		{name: "empty device ID", topic: "devices//messages/events/", notTopic: true},
		{name: "empty module ID", topic: "devices/d/modules//messages/events/", notTopic: true},
		{name: "nothing after the module", topic: "devices/d/modules/m", notTopic: true},
		{name: "events prefix only", topic: "devices/d/messages/eventsx/", notTopic: true},
		{name: "case matters", topic: "Devices/d/messages/events/", notTopic: true},
		{name: "space in the device ID", topic: "devices/bad id/messages/events/", notTopic: true},
		{name: "encoded slash in the device ID", topic: "devices/dev%2F1/messages/events/", notTopic: true},
		{name: "device ID too long", topic: "devices/" + strings.Repeat("d", MaxIDLen+1) + "/messages/events/", notTopic: true},
		{name: "non-ASCII module ID", topic: "devices/d/modules/é/messages/events/", notTopic: true},
		{name: "extra segment before events", topic: "devices/d/x/messages/events/", notTopic: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			device, module, bag, err := ParseTelemetryTopic(tc.topic)
			if tc.notTopic {
				if !errors.Is(err, ErrNotTelemetry) {
					t.Fatalf("ParseTelemetryTopic(%q) = %q, %q, %q, %v; want ErrNotTelemetry", tc.topic, device, module, bag, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTelemetryTopic(%q): %v", tc.topic, err)
			}
			if device != tc.device || module != tc.module || bag != tc.bag {
				t.Errorf("ParseTelemetryTopic(%q) = %q, %q, %q; want %q, %q, %q", tc.topic, device, module, bag, tc.device, tc.module, tc.bag)
			}
		})
	}
}

func TestParseTelemetryTopicNodeExample(t *testing.T) {
	device, module, bag, err := ParseTelemetryTopic(nodeModuleOutput)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMessage(device, module, bag, []byte(`{"temp":80}`), testTime)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.SystemProperties[PropOutputName]; got != "output1" {
		t.Errorf("output name = %q; want output1", got)
	}
	if got := m.Properties["a/b"]; got != "x&y" {
		t.Errorf("property a/b = %q; want x&y", got)
	}
}
