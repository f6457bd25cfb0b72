package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/client/hubservice"
	"github.com/muster-iot/muster/internal/registry"
)

func TestTwinCommands(t *testing.T) {
	s := newHubStack(t)
	ctx := t.Context()
	if _, err := s.reg.PutDevice(ctx, &registry.Device{DeviceID: "dev-1"}, ""); err != nil {
		t.Fatal(err)
	}

	out := s.run(t, "twin", "show", "dev-1")
	checkRow(t, out, "Device ID", "dev-1")
	checkRow(t, out, "Tags", "{}")

	out = s.run(t, "twin", "update", "dev-1", "--tags", `{"site":"plant-2","floor":3}`, "--desired", `{"interval":10}`)
	checkRow(t, out, "Tags", `{"floor":3,"site":"plant-2"}`)
	checkRow(t, out, "Desired", `{"$version":2,"interval":10}`)

	tw := decodeJSON[hubservice.Twin](t, s.run(t, "twin", "update", "dev-1", "--tags", `{"floor":null,"zone":"z"}`, "-o", "json"))
	var tags map[string]any
	if err := json.Unmarshal(tw.Tags, &tags); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"site": "plant-2", "zone": "z"}, tags); diff != "" {
		t.Errorf("merged tags (-want +got):\n%s", diff)
	}
	stored, err := s.reg.GetTwin(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if stored.ETag != tw.ETag {
		t.Errorf("stored etag %q, answered %q", stored.ETag, tw.ETag)
	}
	s.run(t, "twin", "update", "dev-1", "--desired", `{"mode":"eco"}`, "--etag", tw.ETag)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"nothing", []string{"twin", "update", "dev-1"}, "give --tags and/or --desired"},
		{"tags not an object", []string{"twin", "update", "dev-1", "--tags", "[1]"}, "--tags: not a JSON object"},
		{"desired null", []string{"twin", "update", "dev-1", "--desired", "null"}, "--desired: not a JSON object: it is null"},
		{"stale etag", []string{"twin", "update", "dev-1", "--tags", `{"a":1}`, "--etag", tw.ETag}, "412"},
		{"missing device", []string{"twin", "show", "nobody"}, "DeviceNotFound"},
		{"missing device update", []string{"twin", "update", "nobody", "--tags", `{"a":1}`}, "DeviceNotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.runErr(t, tc.args...); !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
