package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/client/hubservice"
	"github.com/muster-iot/muster/internal/registry"
)

func TestModuleCommands(t *testing.T) {
	s := newHubStack(t)
	ctx := t.Context()
	if _, err := s.reg.PutDevice(ctx, &registry.Device{DeviceID: "edge-1", Capabilities: registry.Capabilities{IoTEdge: true}}, ""); err != nil {
		t.Fatal(err)
	}
	sensor, err := s.reg.PutModule(ctx, &registry.Module{DeviceID: "edge-1", ModuleID: "sensor", ManagedBy: registry.ManagedByIotEdge}, "")
	if err != nil {
		t.Fatal(err)
	}

	out := s.run(t, "module", "list", "edge-1")
	want := `MODULE ID   MANAGED BY  AUTHENTICATION  CONNECTION    LAST ACTIVITY
$edgeAgent  -           sas             Disconnected  -
$edgeHub    -           sas             Disconnected  -
sensor      IotEdge     sas             Disconnected  -
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	list := decodeJSON[[]registry.Module](t, s.run(t, "module", "list", "edge-1", "-o", "json"))
	if len(list) != 3 || list[2].Authentication.SymmetricKey != nil {
		t.Errorf("JSON list %+v: want three modules without keys", list)
	}

	out = s.run(t, "module", "show", "edge-1", "sensor")
	checkRow(t, out, "Module ID", "sensor")
	checkRow(t, out, "Managed by", "IotEdge")
	if strings.Contains(out, sensor.Authentication.SymmetricKey.PrimaryKey) {
		t.Error("module show printed the key without --show-keys")
	}
	out = s.run(t, "module", "show", "edge-1", "sensor", "--show-keys")
	key := sensor.Authentication.SymmetricKey.PrimaryKey
	checkRow(t, out, "Primary key", key)
	checkRow(t, out, "Connection string", "HostName="+stackHost+";DeviceId=edge-1;ModuleId=sensor;SharedAccessKey="+key)

	// Module twins through twin show/update --module.
	out = s.run(t, "twin", "show", "edge-1", "--module", "sensor")
	checkRow(t, out, "Module ID", "sensor")
	checkRow(t, out, "Desired", `{"$version":1}`)
	if strings.Contains(out, "IoT Edge") {
		t.Errorf("module twin shows device capabilities:\n%s", out)
	}
	tw := decodeJSON[hubservice.Twin](t, s.run(t, "twin", "update", "edge-1", "--module", "sensor", "--desired", `{"SendInterval":5}`, "-o", "json"))
	var desired map[string]any
	if err := json.Unmarshal(tw.Properties.Desired, &desired); err != nil {
		t.Fatal(err)
	}
	if desired["$metadata"] == nil {
		t.Errorf("updated module twin's desired has no $metadata: %s", tw.Properties.Desired)
	}
	delete(desired, "$metadata")
	if diff := cmp.Diff(map[string]any{"SendInterval": 5.0, "$version": 2.0}, desired); diff != "" || tw.ModuleID != "sensor" {
		t.Errorf("updated module twin %s (-want +got):\n%s", tw.ModuleID, diff)
	}
	stored, err := s.reg.GetModuleTwin(ctx, "edge-1", "sensor")
	if err != nil || stored.ETag != tw.ETag {
		t.Errorf("stored module twin %+v, %v; answered etag %q", stored, err, tw.ETag)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing module", []string{"module", "show", "edge-1", "ghost"}, "ModuleNotFound"},
		{"missing device", []string{"module", "list", "nobody"}, "DeviceNotFound"},
		{"missing module twin", []string{"twin", "show", "edge-1", "--module", "ghost"}, "ModuleNotFound"},
		{"stale module twin etag", []string{"twin", "update", "edge-1", "--module", "sensor", "--tags", `{"a":1}`, "--etag", "stale"}, "412"},
		{"show needs two IDs", []string{"module", "show", "edge-1"}, "accepts 2 arg(s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.runErr(t, tc.args...); !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
