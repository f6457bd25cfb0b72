package deploy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/muster-iot/muster/internal/twin"
)

var day0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Deployment contents used by the resolution table.
const (
	// base1 deploys "sensor" with a module twin.
	base1 = `{"modulesContent":{
		"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"sensor":{"image":"sensor:1","restartPolicy":"always","env":{"A":{"value":"1"}}}}}},
		"$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{"up":"FROM /messages/* INTO $upstream"}}},
		"sensor":{"properties.desired":{"SendInterval":5}}}}`
	// base2 deploys "filter" without a module twin.
	base2 = `{"modulesContent":{
		"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"filter":{"image":"filter:2"}}}},
		"$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{"f":"FROM /messages/modules/filter/* INTO $upstream"}}}}}`
	// layerAddLogger adds a module, its route and its twin.
	layerAddLogger = `{"modulesContent":{
		"$edgeAgent":{"properties.desired.modules.logger":{"image":"logger:1"}},
		"$edgeHub":{"properties.desired.routes.log":"FROM /messages/modules/logger/* INTO $upstream"},
		"logger":{"properties.desired":{"Level":"debug"}}}}`
	// layerTuneSensor overrides one env variable and the restart policy.
	layerTuneSensor = `{"modulesContent":{"$edgeAgent":{
		"properties.desired.modules.sensor.env.A":{"value":"2"},
		"properties.desired.modules.sensor.restartPolicy":"on-failure"}}}`
	layerImage2 = `{"modulesContent":{"$edgeAgent":{"properties.desired.modules.sensor.image":"sensor:2"}}}`
	layerImage3 = `{"modulesContent":{"$edgeAgent":{"properties.desired.modules.sensor.image":"sensor:3"}}}`
	// layerSensorWhole replaces the sensor twin's desired properties.
	layerSensorWhole = `{"modulesContent":{"sensor":{"properties.desired":{"Threshold":9}}}}`
	// layerSensorSub adds a subtree to the sensor twin's desired properties.
	layerSensorSub = `{"modulesContent":{"sensor":{"properties.desired.layeredProperties":{"x":1,"gone":null}}}}`

	adm1 = `{"deviceContent":{"properties.desired.chiller":{"temp":5}}}`
	adm2 = `{"deviceContent":{"properties.desired.fan":"on","properties.desired.chiller.temp":7}}`
	admM = `{"moduleContent":{"properties.desired.logLevel":"warn"}}`
)

// Expected desired properties.
const (
	agentBase1 = `{"schemaVersion":"1.1","modules":{"sensor":{"image":"sensor:1","restartPolicy":"always","env":{"A":{"value":"1"}}}}}`
	hubBase1   = `{"schemaVersion":"1.1","routes":{"up":"FROM /messages/* INTO $upstream"}}`
	sensorB1   = `{"SendInterval":5}`
	agentBase2 = `{"schemaVersion":"1.1","modules":{"filter":{"image":"filter:2"}}}`
	hubBase2   = `{"schemaVersion":"1.1","routes":{"f":"FROM /messages/modules/filter/* INTO $upstream"}}`
)

type spec struct {
	id      string
	prio    int
	day     int
	cond    string
	content string
}

// view is a Result with JSON canonicalised for comparison.
type view struct {
	Base         string
	Layers       []string
	Modules      map[string]string
	EdgeStatuses map[string]Status
	Applied      string
	Assignments  []string
	ADMStatuses  map[string]Status
}

func viewOf(t *testing.T, r Result) view {
	t.Helper()
	v := view{Base: r.Edge.Base, Layers: r.Edge.Layers, EdgeStatuses: r.Edge.Statuses, Applied: r.ADM.Applied, ADMStatuses: r.ADM.Statuses}
	if r.Edge.Modules != nil {
		v.Modules = map[string]string{}
		for name, raw := range r.Edge.Modules {
			v.Modules[name] = canonJSON(t, raw)
		}
	}
	for _, a := range r.ADM.Assignments {
		v.Assignments = append(v.Assignments, strings.Join(a.Path, ".")+"="+canonJSON(t, a.Value))
	}
	return v
}

func canonAll(t *testing.T, m map[string]string) map[string]string {
	t.Helper()
	if m == nil {
		return nil
	}
	out := map[string]string{}
	for k, v := range m {
		out[k] = canonJSON(t, []byte(v))
	}
	return out
}

func build(t *testing.T, specs []spec) []Configuration {
	t.Helper()
	out := make([]Configuration, len(specs))
	for i, s := range specs {
		c, err := Parse([]byte(configJSON(s.id, s.prio, s.cond, s.content)))
		if err != nil {
			t.Fatalf("configuration %s: %v", s.id, err)
		}
		c.CreatedTime = day0.AddDate(0, 0, s.day)
		out[i] = c
	}
	return out
}

var edgeDevice = TargetInfo{DeviceID: "edge1", IoTEdge: true}

func TestResolve(t *testing.T) {
	tests := []struct {
		name     string
		device   TargetInfo
		configs  []spec
		matching []string // conditions that match the twin
		want     view
	}{
		{
			name:     "single base",
			device:   edgeDevice,
			configs:  []spec{{"b1", 10, 1, "tags.env='prod'", base1}},
			matching: []string{"tags.env='prod'"},
			want: view{Base: "b1", Modules: map[string]string{"$edgeAgent": agentBase1, "$edgeHub": hubBase1, "sensor": sensorB1},
				EdgeStatuses: map[string]Status{"b1": StatusApplied}},
		},
		{
			name:     "two bases, higher priority wins and the lower one's module twin is not carried over",
			device:   edgeDevice,
			configs:  []spec{{"b1", 10, 2, "c1", base1}, {"b2", 20, 1, "c2", base2}},
			matching: []string{"c1", "c2"},
			want: view{Base: "b2", Modules: map[string]string{"$edgeAgent": agentBase2, "$edgeHub": hubBase2},
				EdgeStatuses: map[string]Status{"b1": StatusTargeted, "b2": StatusApplied}},
		},
		{
			name:     "equal priority, the newest wins",
			device:   edgeDevice,
			configs:  []spec{{"b2", 10, 1, "c", base2}, {"b1", 10, 5, "c", base1}},
			matching: []string{"c"},
			want: view{Base: "b1", Modules: map[string]string{"$edgeAgent": agentBase1, "$edgeHub": hubBase1, "sensor": sensorB1},
				EdgeStatuses: map[string]Status{"b1": StatusApplied, "b2": StatusTargeted}},
		},
		{
			name:     "equal priority and creation time, the greater ID wins",
			device:   edgeDevice,
			configs:  []spec{{"b2", 10, 1, "c", base2}, {"b1", 10, 1, "c", base1}},
			matching: []string{"c"},
			want: view{Base: "b2", Modules: map[string]string{"$edgeAgent": agentBase2, "$edgeHub": hubBase2},
				EdgeStatuses: map[string]Status{"b1": StatusTargeted, "b2": StatusApplied}},
		},
		{
			name:     "base whose condition does not match",
			device:   edgeDevice,
			configs:  []spec{{"b1", 10, 1, "tags.env='prod'", base1}},
			matching: []string{"tags.env='test'"},
			want:     view{},
		},
		{
			name:     "base plus a layer adding a module, its route and its twin",
			device:   edgeDevice,
			configs:  []spec{{"l1", 20, 1, "c", layerAddLogger}, {"b1", 10, 1, "c", base1}},
			matching: []string{"c"},
			want: view{Base: "b1", Layers: []string{"l1"},
				Modules: map[string]string{
					"$edgeAgent": `{"schemaVersion":"1.1","modules":{"sensor":{"image":"sensor:1","restartPolicy":"always","env":{"A":{"value":"1"}}},"logger":{"image":"logger:1"}}}`,
					"$edgeHub":   `{"schemaVersion":"1.1","routes":{"up":"FROM /messages/* INTO $upstream","log":"FROM /messages/modules/logger/* INTO $upstream"}}`,
					"sensor":     sensorB1,
					"logger":     `{"Level":"debug"}`,
				},
				EdgeStatuses: map[string]Status{"b1": StatusApplied, "l1": StatusApplied}},
		},
		{
			name:     "layer without a base applies nothing",
			device:   edgeDevice,
			configs:  []spec{{"l1", 20, 1, "c", layerAddLogger}},
			matching: []string{"c"},
			want:     view{EdgeStatuses: map[string]Status{"l1": StatusTargeted}},
		},
		{
			name:   "two layers on the same path, the higher priority wins",
			device: edgeDevice,
			configs: []spec{
				{"hi", 40, 1, "c", layerImage2},
				{"lo", 30, 2, "c", layerImage3},
				{"b1", 10, 1, "c", base1},
			},
			matching: []string{"c"},
			want: view{Base: "b1", Layers: []string{"lo", "hi"},
				Modules: map[string]string{
					"$edgeAgent": `{"schemaVersion":"1.1","modules":{"sensor":{"image":"sensor:2","restartPolicy":"always","env":{"A":{"value":"1"}}}}}`,
					"$edgeHub":   hubBase1, "sensor": sensorB1,
				},
				EdgeStatuses: map[string]Status{"b1": StatusApplied, "lo": StatusApplied, "hi": StatusApplied}},
		},
		{
			name:   "two layers on the same path with equal priority, the newer wins",
			device: edgeDevice,
			configs: []spec{
				{"newer", 30, 3, "c", layerImage2},
				{"older", 30, 2, "c", layerImage3},
				{"b1", 10, 1, "c", base1},
			},
			matching: []string{"c"},
			want: view{Base: "b1", Layers: []string{"older", "newer"},
				Modules: map[string]string{
					"$edgeAgent": `{"schemaVersion":"1.1","modules":{"sensor":{"image":"sensor:2","restartPolicy":"always","env":{"A":{"value":"1"}}}}}`,
					"$edgeHub":   hubBase1, "sensor": sensorB1,
				},
				EdgeStatuses: map[string]Status{"b1": StatusApplied, "older": StatusApplied, "newer": StatusApplied}},
		},
		{
			name:     "layer overriding a module's env and restart policy",
			device:   edgeDevice,
			configs:  []spec{{"b1", 10, 1, "c", base1}, {"tune", 11, 1, "c", layerTuneSensor}},
			matching: []string{"c"},
			want: view{Base: "b1", Layers: []string{"tune"},
				Modules: map[string]string{
					"$edgeAgent": `{"schemaVersion":"1.1","modules":{"sensor":{"image":"sensor:1","restartPolicy":"on-failure","env":{"A":{"value":"2"}}}}}`,
					"$edgeHub":   hubBase1, "sensor": sensorB1,
				},
				EdgeStatuses: map[string]Status{"b1": StatusApplied, "tune": StatusApplied}},
		},
		{
			name:     "layers not above the base's priority are only targeted",
			device:   edgeDevice,
			configs:  []spec{{"b1", 10, 1, "c", base1}, {"same", 10, 9, "c", layerTuneSensor}, {"below", 5, 9, "c", layerImage2}},
			matching: []string{"c"},
			want: view{Base: "b1", Modules: map[string]string{"$edgeAgent": agentBase1, "$edgeHub": hubBase1, "sensor": sensorB1},
				EdgeStatuses: map[string]Status{"b1": StatusApplied, "same": StatusTargeted, "below": StatusTargeted}},
		},
		{
			name:     "layer replacing a module twin's whole desired properties",
			device:   edgeDevice,
			configs:  []spec{{"b1", 10, 1, "c", base1}, {"whole", 20, 1, "c", layerSensorWhole}},
			matching: []string{"c"},
			want: view{Base: "b1", Layers: []string{"whole"},
				Modules:      map[string]string{"$edgeAgent": agentBase1, "$edgeHub": hubBase1, "sensor": `{"Threshold":9}`},
				EdgeStatuses: map[string]Status{"b1": StatusApplied, "whole": StatusApplied}},
		},
		{
			name:     "layer adding a subtree to a module twin, nulls dropped",
			device:   edgeDevice,
			configs:  []spec{{"b1", 10, 1, "c", base1}, {"sub", 20, 1, "c", layerSensorSub}},
			matching: []string{"c"},
			want: view{Base: "b1", Layers: []string{"sub"},
				Modules:      map[string]string{"$edgeAgent": agentBase1, "$edgeHub": hubBase1, "sensor": `{"SendInterval":5,"layeredProperties":{"x":1}}`},
				EdgeStatuses: map[string]Status{"b1": StatusApplied, "sub": StatusApplied}},
		},
		{
			name:     "layer whose condition does not match is absent",
			device:   edgeDevice,
			configs:  []spec{{"b1", 10, 1, "c", base1}, {"tune", 20, 1, "other", layerTuneSensor}},
			matching: []string{"c"},
			want: view{Base: "b1", Modules: map[string]string{"$edgeAgent": agentBase1, "$edgeHub": hubBase1, "sensor": sensorB1},
				EdgeStatuses: map[string]Status{"b1": StatusApplied}},
		},
		{
			name:     "non-edge device gets no edge deployment but its ADM configuration",
			device:   TargetInfo{DeviceID: "leaf1"},
			configs:  []spec{{"b1", 10, 1, "*", base1}, {"l1", 20, 1, "*", layerAddLogger}, {"a1", 0, 1, "*", adm1}},
			matching: nil,
			want: view{Applied: "a1", Assignments: []string{`chiller={"temp":5}`},
				ADMStatuses: map[string]Status{"a1": StatusApplied}},
		},
		{
			name:     "star targets every edge device without calling the matcher",
			device:   edgeDevice,
			configs:  []spec{{"b1", 10, 1, "*", base1}},
			matching: nil,
			want: view{Base: "b1", Modules: map[string]string{"$edgeAgent": agentBase1, "$edgeHub": hubBase1, "sensor": sensorB1},
				EdgeStatuses: map[string]Status{"b1": StatusApplied}},
		},
		{
			name:     "ADM: the highest priority wins as a whole, paths in order",
			device:   TargetInfo{DeviceID: "d1"},
			configs:  []spec{{"a1", 5, 9, "c", adm1}, {"a2", 7, 1, "c", adm2}, {"a3", 9, 1, "no", adm1}},
			matching: []string{"c"},
			want: view{Applied: "a2", Assignments: []string{"chiller.temp=7", `fan="on"`},
				ADMStatuses: map[string]Status{"a1": StatusTargeted, "a2": StatusApplied}},
		},
		{
			name:     "ADM: equal priority, the newest wins",
			device:   TargetInfo{DeviceID: "d1"},
			configs:  []spec{{"a1", 5, 9, "c", adm1}, {"a2", 5, 1, "c", adm2}},
			matching: []string{"c"},
			want: view{Applied: "a1", Assignments: []string{`chiller={"temp":5}`},
				ADMStatuses: map[string]Status{"a1": StatusApplied, "a2": StatusTargeted}},
		},
		{
			name:   "module twin: only moduleContent applies, matched on its where clause",
			device: TargetInfo{DeviceID: "edge1", ModuleID: "logger", IoTEdge: true},
			configs: []spec{
				{"b1", 10, 1, "*", base1},
				{"a1", 50, 1, "*", adm1},
				{"m1", 0, 1, "from devices.modules where tags.role='logger'", admM},
				{"m2", 1, 1, "FROM devices.modules WHERE tags.role='other'", admM},
			},
			matching: []string{"tags.role='logger'"},
			want: view{Applied: "m1", Assignments: []string{`logLevel="warn"`},
				ADMStatuses: map[string]Status{"m1": StatusApplied}},
		},
		{
			name:     "device resolution ignores moduleContent",
			device:   edgeDevice,
			configs:  []spec{{"m1", 0, 1, "from devices.modules where tags.role='logger'", admM}},
			matching: []string{"tags.role='logger'"},
			want:     view{},
		},
		{
			name:     "edge deployments and ADM together on an edge device",
			device:   edgeDevice,
			configs:  []spec{{"b1", 10, 1, "c", base1}, {"a1", 10, 1, "c", adm1}},
			matching: []string{"c"},
			want: view{Base: "b1", Modules: map[string]string{"$edgeAgent": agentBase1, "$edgeHub": hubBase1, "sensor": sensorB1},
				EdgeStatuses: map[string]Status{"b1": StatusApplied},
				Applied:      "a1", Assignments: []string{`chiller={"temp":5}`}, ADMStatuses: map[string]Status{"a1": StatusApplied}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			configs := build(t, tc.configs)
			matches := func(cond string) (bool, error) {
				if cond == "*" {
					t.Errorf("matcher called with %q", cond)
				}
				for _, m := range tc.matching {
					if m == cond {
						return true, nil
					}
				}
				return false, nil
			}
			r, err := Resolve(tc.device, configs, matches)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			want := tc.want
			want.Modules = canonAll(t, want.Modules)
			if diff := cmp.Diff(want, viewOf(t, r)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			// What Resolve returns can be written to twins as is.
			for name, desired := range r.Edge.Modules {
				tw := twin.New(tc.device.DeviceID, name, day0)
				if err := twin.ReplaceDesired(tw, desired, day0); err != nil {
					t.Errorf("module %s desired does not fit a twin: %v", name, err)
				}
			}
			if err := twin.AssignDesired(twin.New(tc.device.DeviceID, tc.device.ModuleID, day0), r.ADM.Assignments, day0); err != nil {
				t.Errorf("ADM assignments do not fit a twin: %v", err)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		configs []spec
		want    error
		wantMsg string
	}{
		{"matcher error names the configuration", []spec{{"b1", 10, 1, "tags.x = ", base1}}, errBoom, `evaluate targetCondition of configuration "b1": boom`},
		{"duplicate IDs", []spec{{"b1", 10, 1, "*", base1}, {"b1", 20, 1, "*", base2}}, ErrDuplicateID, `resolve configuration "b1": deploy: duplicate configuration id`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(edgeDevice, build(t, tc.configs), func(string) (bool, error) { return false, errBoom })
			if !errors.Is(err, tc.want) || err.Error() != tc.wantMsg {
				t.Fatalf("error = %v, want %q", err, tc.wantMsg)
			}
		})
	}
}

func TestResolveDoesNotReorderInput(t *testing.T) {
	configs := build(t, []spec{{"b2", 20, 1, "*", base2}, {"b1", 10, 1, "*", base1}, {"l1", 30, 1, "*", layerAddLogger}})
	ids := func() []string {
		var out []string
		for _, c := range configs {
			out = append(out, c.ID)
		}
		return out
	}
	before := ids()
	if _, err := Resolve(edgeDevice, configs, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, ids()); diff != "" {
		t.Errorf("Resolve reordered its input (-before +after):\n%s", diff)
	}
}
