package deploy

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSystemQueries(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		cond    string
		content string
		want    map[string]string
	}{
		{"edge base", "deploy-sensors", "tags.environment='prod'", baseContent("s"), map[string]string{
			"targetedCount":           "SELECT deviceId FROM devices WHERE capabilities.iotEdge = true AND (tags.environment='prod')",
			"appliedCount":            "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[deploy-sensors]].status = 'Applied'",
			"reportedSuccessfulCount": "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[deploy-sensors]].status = 'Applied' AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code = 200",
			"reportedFailedCount":     "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[deploy-sensors]].status = 'Applied' AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code != 200",
		}},
		{"edge layered targeting everything", "layer:1", "*", `{"modulesContent":{"$edgeAgent":{"properties.desired.modules.x":{}}}}`, map[string]string{
			"targetedCount":           "SELECT deviceId FROM devices WHERE capabilities.iotEdge = true",
			"appliedCount":            "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[layer:1]].status = 'Applied'",
			"reportedSuccessfulCount": "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[layer:1]].status = 'Applied' AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code = 200",
			"reportedFailedCount":     "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[layer:1]].status = 'Applied' AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code != 200",
		}},
		{"ADM device", "chillers", "tags.kind='chiller' AND properties.reported.fw = '1.0'", `{"deviceContent":{"properties.desired.a":1}}`, map[string]string{
			"targetedCount": "SELECT deviceId FROM devices WHERE tags.kind='chiller' AND properties.reported.fw = '1.0'",
			"appliedCount":  "SELECT deviceId FROM devices WHERE configurations.[[chillers]].status = 'Applied'",
		}},
		{"ADM device targeting everything", "all", "*", `{"deviceContent":{"properties.desired.a":1}}`, map[string]string{
			"targetedCount": "SELECT deviceId FROM devices",
			"appliedCount":  "SELECT deviceId FROM devices WHERE configurations.[[all]].status = 'Applied'",
		}},
		{"ADM module", "mods", "from devices.modules where tags.x='y'", `{"moduleContent":{"properties.desired.a":1}}`, map[string]string{
			"targetedCount": "SELECT deviceId, moduleId FROM devices.modules WHERE tags.x='y'",
			"appliedCount":  "SELECT deviceId, moduleId FROM devices.modules WHERE configurations.[[mods]].status = 'Applied'",
		}},
		{"no content", "empty", "*", `{}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Configuration
			if err := json.Unmarshal([]byte(configJSON(tc.id, 0, tc.cond, tc.content)), &c); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, SystemQueries(&c)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
