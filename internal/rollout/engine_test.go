package rollout_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/rollout"
)

// Deployment contents of the tests.
const (
	base1 = `{"modulesContent":{
		"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"sensor":{"image":"sensor:1","restartPolicy":"always","env":{"A":{"value":"1"}}}}}},
		"$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{"up":"FROM /messages/* INTO $upstream"}}},
		"sensor":{"properties.desired":{"SendInterval":5}}}}`
	base2 = `{"modulesContent":{
		"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"filter":{"image":"filter:2"}}}},
		"$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{"f":"FROM /messages/modules/filter/* INTO $upstream"}}}}}`
	layerAddLogger = `{"modulesContent":{
		"$edgeAgent":{"properties.desired.modules.logger":{"image":"logger:1"}},
		"$edgeHub":{"properties.desired.routes.log":"FROM /messages/modules/logger/* INTO $upstream"},
		"logger":{"properties.desired":{"Level":"debug"}}}}`
	layerTune = `{"modulesContent":{"$edgeAgent":{
		"properties.desired.modules.sensor.env.A":{"value":"2"},
		"properties.desired.modules.sensor.restartPolicy":"on-failure"}}}`
	layerImage2 = `{"modulesContent":{"$edgeAgent":{"properties.desired.modules.sensor.image":"sensor:2"}}}`
	layerImage3 = `{"modulesContent":{"$edgeAgent":{"properties.desired.modules.sensor.image":"sensor:3"}}}`

	agentBase1 = `{"schemaVersion":"1.1","modules":{"sensor":{"image":"sensor:1","restartPolicy":"always","env":{"A":{"value":"1"}}}}}`
	hubBase1   = `{"schemaVersion":"1.1","routes":{"up":"FROM /messages/* INTO $upstream"}}`
	agentBase2 = `{"schemaVersion":"1.1","modules":{"filter":{"image":"filter:2"}}}`

	admChiller = `{"deviceContent":{"properties.desired.chiller":{"temp":5,"mode":"eco"}}}`
	admFan     = `{"deviceContent":{"properties.desired.fan":"on","properties.desired.chiller.temp":7}}`
)

// TestEdgeDeploymentTable applies sets of edge deployments to one edge
// device through the real registry and checks the $edgeAgent and $edgeHub
// desired properties and the statuses on their twins.
func TestEdgeDeploymentTable(t *testing.T) {
	prod := `{"environment":"prod"}`
	tests := []struct {
		name      string
		tags      string
		configs   []cfg
		wantAgent string
		wantHub   string
		want      map[string]string
	}{
		{
			name:      "one matching base",
			tags:      prod,
			configs:   []cfg{{"b1", 10, 1, "tags.environment='prod'", base1}},
			wantAgent: agentBase1, wantHub: hubBase1,
			want: map[string]string{"b1": "Applied"},
		},
		{
			name:      "base whose condition does not match",
			tags:      `{"environment":"test"}`,
			configs:   []cfg{{"b1", 10, 1, "tags.environment='prod'", base1}},
			wantAgent: `{}`, wantHub: `{}`,
		},
		{
			name:      "higher priority base wins, the other is targeted",
			tags:      prod,
			configs:   []cfg{{"b1", 10, 2, "tags.environment='prod'", base1}, {"b2", 20, 1, "*", base2}},
			wantAgent: agentBase2, wantHub: `{"schemaVersion":"1.1","routes":{"f":"FROM /messages/modules/filter/* INTO $upstream"}}`,
			want: map[string]string{"b1": "Targeted", "b2": "Applied"},
		},
		{
			name:      "equal priority, the newest wins",
			tags:      prod,
			configs:   []cfg{{"b2", 10, 1, "*", base2}, {"b1", 10, 5, "*", base1}},
			wantAgent: agentBase1, wantHub: hubBase1,
			want: map[string]string{"b1": "Applied", "b2": "Targeted"},
		},
		{
			name:    "layer merged on the base by dotted paths",
			tags:    prod,
			configs: []cfg{{"b1", 10, 1, "*", base1}, {"tune", 20, 1, "tags.environment='prod'", layerTune}, {"log", 30, 1, "*", layerAddLogger}},
			wantAgent: `{"schemaVersion":"1.1","modules":{"sensor":{"image":"sensor:1","restartPolicy":"on-failure","env":{"A":{"value":"2"}}},
				"logger":{"image":"logger:1"}}}`,
			wantHub: `{"schemaVersion":"1.1","routes":{"up":"FROM /messages/* INTO $upstream","log":"FROM /messages/modules/logger/* INTO $upstream"}}`,
			want:    map[string]string{"b1": "Applied", "tune": "Applied", "log": "Applied"},
		},
		{
			name:      "layers in ascending priority, the higher one wins the same path",
			tags:      prod,
			configs:   []cfg{{"hi", 40, 1, "*", layerImage3}, {"lo", 30, 2, "*", layerImage2}, {"b1", 10, 1, "*", base1}},
			wantAgent: `{"schemaVersion":"1.1","modules":{"sensor":{"image":"sensor:3","restartPolicy":"always","env":{"A":{"value":"1"}}}}}`,
			wantHub:   hubBase1,
			want:      map[string]string{"b1": "Applied", "lo": "Applied", "hi": "Applied"},
		},
		{
			name:      "layer not above the base is targeted only",
			tags:      prod,
			configs:   []cfg{{"b1", 10, 1, "*", base1}, {"same", 10, 9, "*", layerImage2}},
			wantAgent: agentBase1, wantHub: hubBase1,
			want: map[string]string{"b1": "Applied", "same": "Targeted"},
		},
		{
			name:      "layer without a base writes nothing",
			tags:      prod,
			configs:   []cfg{{"log", 30, 1, "*", layerAddLogger}},
			wantAgent: `{}`, wantHub: `{}`,
			want: map[string]string{"log": "Targeted"},
		},
		{
			name:      "condition on the device ID",
			configs:   []cfg{{"b1", 10, 1, "deviceId = 'edge-1'", base1}, {"b2", 20, 1, "deviceId = 'other'", base2}},
			wantAgent: agentBase1, wantHub: hubBase1,
			want: map[string]string{"b1": "Applied"},
		},
		{
			name:      "device configurations do not touch module twins",
			tags:      prod,
			configs:   []cfg{{"a1", 50, 1, "*", admChiller}, {"b1", 10, 1, "*", base1}},
			wantAgent: agentBase1, wantHub: hubBase1,
			want: map[string]string{"b1": "Applied"},
		},
	}
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, open(t))
				e.device(t, "edge-1", true, tc.tags)
				for _, c := range tc.configs {
					e.put(t, c)
				}
				e.flush(t)
				wantState(t, "$edgeAgent", e.moduleTwin(t, "edge-1", "$edgeAgent"), tc.wantAgent, tc.want)
				wantState(t, "$edgeHub", e.moduleTwin(t, "edge-1", "$edgeHub"), tc.wantHub, tc.want)
			})
		}
	})
}

// TestTargetConditionJoinsAndLeaves retags devices: a device joins a
// deployment when its tags come to match, and leaving it removes the
// status but not the desired properties.
func TestTargetConditionJoinsAndLeaves(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		e := newEnv(t, open(t))
		e.put(t, cfg{"prod", 10, 1, "tags.environment='prod'", base1})
		e.device(t, "edge-1", true, `{"environment":"test"}`)
		e.device(t, "leaf-1", false, `{"environment":"prod"}`)
		e.flush(t)
		wantState(t, "before joining", e.moduleTwin(t, "edge-1", "$edgeAgent"), `{}`, nil)

		e.tag(t, "edge-1", `{"environment":"prod"}`)
		e.flush(t)
		wantState(t, "joined", e.moduleTwin(t, "edge-1", "$edgeAgent"), agentBase1, map[string]string{"prod": "Applied"})
		wantState(t, "leaf device", e.deviceTwin(t, "leaf-1"), `{}`, nil)

		e.tag(t, "edge-1", `{"environment":"test"}`)
		e.flush(t)
		wantState(t, "left", e.moduleTwin(t, "edge-1", "$edgeAgent"), agentBase1, nil)
		wantState(t, "left", e.moduleTwin(t, "edge-1", "$edgeHub"), hubBase1, nil)
	})
}

// TestDeleteLeavesTwins deletes the applied deployment: the twins keep
// their desired properties; a lower deployment still matching takes over.
func TestDeleteLeavesTwins(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		e := newEnv(t, open(t))
		e.device(t, "edge-1", true, `{"environment":"prod"}`)
		e.device(t, "edge-2", true, `{"environment":"test"}`)
		e.put(t, cfg{"hi", 20, 1, "*", base1})
		e.put(t, cfg{"lo", 10, 1, "tags.environment='test'", base2})
		e.flush(t)
		wantState(t, "edge-2", e.moduleTwin(t, "edge-2", "$edgeAgent"), agentBase1, map[string]string{"hi": "Applied", "lo": "Targeted"})

		if err := e.cfgs.Delete(t.Context(), "hi", ""); err != nil {
			t.Fatal(err)
		}
		e.flush(t)
		wantState(t, "edge-1 after delete", e.moduleTwin(t, "edge-1", "$edgeAgent"), agentBase1, nil)
		wantState(t, "edge-2 after delete", e.moduleTwin(t, "edge-2", "$edgeAgent"), agentBase2, map[string]string{"lo": "Applied"})
		if err := e.cfgs.Delete(t.Context(), "hi", ""); !errors.Is(err, rollout.ErrNotFound) {
			t.Fatalf("second delete: %v, want ErrNotFound", err)
		}
	})
}

// TestCustomModuleTwin writes a deployment's custom module twin when the
// module exists and, for a module created later (as the edge agent does),
// when it is created.
func TestCustomModuleTwin(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		e := newEnv(t, open(t))
		e.device(t, "edge-1", true, "")
		e.module(t, "edge-1", "logger")
		e.put(t, cfg{"b1", 10, 1, "*", base1})
		e.put(t, cfg{"log", 20, 1, "*", layerAddLogger})
		e.flush(t)
		applied := map[string]string{"b1": "Applied", "log": "Applied"}
		wantState(t, "logger", e.moduleTwin(t, "edge-1", "logger"), `{"Level":"debug"}`, applied)

		e.module(t, "edge-1", "sensor")
		e.flush(t)
		wantState(t, "sensor", e.moduleTwin(t, "edge-1", "sensor"), `{"SendInterval":5}`, applied)
	})
}

// TestDeviceConfigurations applies deviceContent by priority to device
// twins, with statuses on the device twin.
func TestDeviceConfigurations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		e := newEnv(t, open(t))
		e.device(t, "leaf-1", false, `{"site":"a"}`)
		if _, err := e.hub.PatchTwin(t.Context(), "leaf-1", registry.TwinUpdate{Desired: json.RawMessage(`{"chiller":{"old":1},"keep":true}`)}, ""); err != nil {
			t.Fatal(err)
		}
		e.put(t, cfg{"chiller", 10, 1, "tags.site='a'", admChiller})
		e.flush(t)
		wantState(t, "chiller", e.deviceTwin(t, "leaf-1"), `{"chiller":{"temp":5,"mode":"eco"},"keep":true}`, map[string]string{"chiller": "Applied"})

		e.put(t, cfg{"fan", 20, 1, "*", admFan})
		e.flush(t)
		wantState(t, "fan wins", e.deviceTwin(t, "leaf-1"), `{"chiller":{"temp":7,"mode":"eco"},"fan":"on","keep":true}`,
			map[string]string{"chiller": "Targeted", "fan": "Applied"})
	})
}

// TestModuleConfigurations applies moduleContent to the module twins its
// module condition matches.
func TestModuleConfigurations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		e := newEnv(t, open(t))
		e.device(t, "leaf-1", false, "")
		e.module(t, "leaf-1", "logger")
		e.module(t, "leaf-1", "other")
		e.put(t, cfg{"level", 10, 1, "from devices.modules where moduleId = 'logger'", `{"moduleContent":{"properties.desired.level":"warn"}}`})
		e.flush(t)
		wantState(t, "logger", e.moduleTwin(t, "leaf-1", "logger"), `{"level":"warn"}`, map[string]string{"level": "Applied"})
		wantState(t, "other", e.moduleTwin(t, "leaf-1", "other"), `{}`, nil)

		if err := e.cfgs.Delete(t.Context(), "level", ""); err != nil {
			t.Fatal(err)
		}
		e.flush(t)
		wantState(t, "logger after delete", e.moduleTwin(t, "leaf-1", "logger"), `{"level":"warn"}`, nil)
	})
}

// TestRestartCatchesUp stores a configuration while no engine runs; the
// next engine's first sweep applies it.
func TestRestartCatchesUp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		e := newEnv(t, open(t))
		e.device(t, "edge-1", true, "")
		e.flush(t)
		e.stop()
		e.put(t, cfg{"b1", 10, 1, "*", base1})
		e.start(t)
		e.flush(t)
		wantState(t, "after restart", e.moduleTwin(t, "edge-1", "$edgeAgent"), agentBase1, map[string]string{"b1": "Applied"})
	})
}

// TestProvisionedDeviceWithInitialTwin creates an edge device the way the
// provisioning service does (ProvisionWrites committed in its own batch)
// with an enrollment's initial twin tags: the deployment targeting the
// tags is applied.
func TestProvisionedDeviceWithInitialTwin(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		e := newEnv(t, open(t))
		e.put(t, cfg{"prod", 10, 1, "tags.environment='prod'", base1})
		e.flush(t)
		writes, err := e.hub.ProvisionWrites(t.Context(), provision.DeviceSpec{DeviceID: "edge-dps", RegistrationID: "edge-dps", IoTEdge: true,
			Auth: provision.DeviceAuth{Type: provision.AuthSAS, PrimaryKey: "dGVzdHRlc3R0ZXN0dGVzdA==", SecondaryKey: "dGVzdHRlc3R0ZXN0dGVzdA=="},
			Twin: &provision.TwinState{Tags: json.RawMessage(`{"environment":"prod"}`)}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.obs.Apply(t.Context(), writes); err != nil {
			t.Fatal(err)
		}
		e.flush(t)
		wantState(t, "provisioned", e.moduleTwin(t, "edge-dps", "$edgeAgent"), agentBase1, map[string]string{"prod": "Applied"})
	})
}

// TestApplyContent writes per-device content at once, remembers modules
// that do not exist yet, and refuses modules content for a device an
// automatic deployment targets.
func TestApplyContent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		e := newEnv(t, open(t))
		e.device(t, "edge-1", true, "")
		e.device(t, "leaf-1", false, "")
		ctx := t.Context()
		content := func(s string) deploy.Content {
			var c deploy.Content
			if err := json.Unmarshal([]byte(s), &c); err != nil {
				t.Fatal(err)
			}
			return c
		}
		if err := e.eng.ApplyContent(ctx, "edge-1", content(base1)); err != nil {
			t.Fatal(err)
		}
		wantState(t, "applied at once", e.moduleTwin(t, "edge-1", "$edgeAgent"), agentBase1, nil)
		e.module(t, "edge-1", "sensor")
		e.flush(t)
		wantState(t, "module created later", e.moduleTwin(t, "edge-1", "sensor"), `{"SendInterval":5}`, nil)

		if err := e.eng.ApplyContent(ctx, "edge-1", content(layerImage2)); err != nil {
			t.Fatal(err)
		}
		wantState(t, "path content", e.moduleTwin(t, "edge-1", "$edgeAgent"),
			`{"schemaVersion":"1.1","modules":{"sensor":{"image":"sensor:2","restartPolicy":"always","env":{"A":{"value":"1"}}}}}`, nil)

		if err := e.eng.ApplyContent(ctx, "leaf-1", content(admChiller)); err != nil {
			t.Fatal(err)
		}
		wantState(t, "device content", e.deviceTwin(t, "leaf-1"), `{"chiller":{"temp":5,"mode":"eco"}}`, nil)

		var ve *deploy.ValidationError
		if err := e.eng.ApplyContent(ctx, "leaf-1", content(base1)); !errors.As(err, &ve) {
			t.Fatalf("modules content on a non-edge device: %v, want a validation error", err)
		}
		if err := e.eng.ApplyContent(ctx, "ghost", content(base1)); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("unknown device: %v, want ErrNotFound", err)
		}
		e.put(t, cfg{"auto", 10, 1, "*", base2})
		e.flush(t)
		if err := e.eng.ApplyContent(ctx, "edge-1", content(base1)); !errors.Is(err, rollout.ErrAutomaticDeployment) {
			t.Fatalf("device with an automatic deployment: %v, want ErrAutomaticDeployment", err)
		}
	})
}
