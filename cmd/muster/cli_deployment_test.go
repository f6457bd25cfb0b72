package main

import (
	"strings"
	"testing"

	"github.com/muster-iot/muster/internal/deploy"
)

// TestDeploymentCommands drives deployment create, list, show and delete
// against a real server: every manifest shape the command accepts, and
// the flag and manifest mistakes it explains.
func TestDeploymentCommands(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir, nil)
	run := func(args ...string) string {
		t.Helper()
		out, stderr, err := runCLI(t, nil, append([]string{"--data-dir", dir}, args...)...)
		if err != nil {
			t.Fatalf("muster %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return out
	}
	fails := func(want string, args ...string) {
		t.Helper()
		_, _, err := runCLI(t, nil, append([]string{"--data-dir", dir}, args...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("muster %s: %v, want an error containing %q", strings.Join(args, " "), err, want)
		}
	}
	manifest := writeFile(t, dir, "base.json", []byte(e2eManifest))
	layer := writeFile(t, dir, "layer.json", []byte(`{"modulesContent":{"$edgeAgent":{"properties.desired.modules.logger":{"type":"docker","settings":{"image":"logger:1"}}}}}`))
	wrapped := writeFile(t, dir, "wrapped.json", []byte(`{"content":`+e2eManifest+`}`))
	full := writeFile(t, dir, "full.json", []byte(`{"id":"adm-fan","priority":3,"targetCondition":"tags.site='a'","labels":{"from":"file"},
		"content":{"deviceContent":{"properties.desired.fan":"on"}},"metrics":{"queries":{"sites":"SELECT deviceId FROM devices WHERE tags.site = 'a'"}}}`))
	notManifest := writeFile(t, dir, "other.json", []byte(`{"modules":{}}`))

	out := run("deployment", "create", "base-1", "--content", manifest, "--target-condition", "*", "--priority", "5")
	checkRow(t, out, "Kind", "edge (base)")
	checkRow(t, out, "Priority", "5")
	checkRow(t, out, "Modules", "$edgeAgent, $edgeHub, SimulatedTemperatureSensor")
	out = run("deployment", "create", "layer-1", "--layered", "--content", layer, "--target-condition", "tags.debug=true", "--priority", "9")
	checkRow(t, out, "Kind", "edge (layered)")
	got := decodeJSON[deploy.Configuration](t, run("deployment", "create", "wrapped-1", "--content", wrapped, "--target-condition", "*", "-o", "json"))
	if got.Kind() != deploy.KindBase || got.Priority != 0 {
		t.Errorf("wrapped manifest created %+v", got)
	}
	got = decodeJSON[deploy.Configuration](t, run("configuration", "create", "adm-fan", "--content", full, "--priority", "4", "-o", "json"))
	if got.Kind() != deploy.KindDevice || got.Priority != 4 || got.TargetCondition != "tags.site='a'" || got.Labels["from"] != "file" || got.Metrics.Queries["sites"] == "" {
		t.Errorf("configuration from a full configuration file: %+v", got)
	}

	fails("--layered", "deployment", "create", "layer-2", "--content", layer, "--target-condition", "*")
	fails("base deployment", "deployment", "create", "base-2", "--layered", "--content", manifest, "--target-condition", "*")
	fails("--target-condition", "deployment", "create", "base-2", "--content", manifest)
	fails("--content", "deployment", "create", "base-2", "--target-condition", "*")
	fails("must be name=value", "deployment", "create", "base-2", "--content", manifest, "--target-condition", "*", "--labels", "oops")
	fails(`has none of "modulesContent"`, "deployment", "create", "base-2", "--content", notManifest, "--target-condition", "*")
	fails("names configuration", "deployment", "create", "other-id", "--content", full)
	fails("ConfigurationAlreadyExists", "deployment", "create", "base-1", "--content", manifest, "--target-condition", "*")
	fails("targetCondition", "deployment", "create", "base-2", "--content", manifest, "--target-condition", "tags.a = ")

	out = run("deployment", "list")
	for _, id := range []string{"adm-fan", "base-1", "layer-1", "wrapped-1"} {
		if !strings.Contains(out, id) {
			t.Errorf("list lacks %s:\n%s", id, out)
		}
	}
	if list := decodeJSON[[]deploy.Configuration](t, run("deployment", "list", "--top", "2", "-o", "json")); len(list) != 2 || list[0].ID != "adm-fan" {
		t.Errorf("list --top 2: %+v", list)
	}
	out = run("deployment", "show", "adm-fan")
	checkRow(t, out, "Kind", "device")
	checkRow(t, out, "targetedCount", "0")
	checkRow(t, out, "Metric sites", "0  (SELECT deviceId FROM devices WHERE tags.site = 'a')")
	if out := run("deployment", "delete", "layer-1"); !strings.Contains(out, "Deleted configuration layer-1") {
		t.Errorf("delete: %s", out)
	}
	fails("ConfigurationNotFound", "deployment", "delete", "layer-1")
}
