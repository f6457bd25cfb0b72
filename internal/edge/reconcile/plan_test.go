package reconcile

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

var (
	testEnv = EdgeEnv{
		DeviceID:        "edge-01",
		IoTHubHostName:  "hub.example.net",
		GatewayHostName: "edge-01.example.net",
		WorkloadURI:     "unix:///var/run/iotedge/workload.sock",
	}
	t0 = time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
)

// mod is a running, restart-always custom module.
func mod(name string, order uint32, opts ...func(*Module)) Module {
	m := Module{
		Name: name, Version: "1.0", Type: "docker", Status: StatusRunning, RestartPolicy: RestartAlways,
		ImagePullPolicy: PullOnCreate, StartupOrder: order, Image: "example.azurecr.io/" + strings.ToLower(name) + ":1",
		CreateOptions: "{}", Env: map[string]string{},
	}
	for _, o := range opts {
		o(&m)
	}
	return m
}

func withPolicy(p RestartPolicy) func(*Module) { return func(m *Module) { m.RestartPolicy = p } }
func withStatus(s DesiredStatus) func(*Module) { return func(m *Module) { m.Status = s } }
func withImage(i string) func(*Module)         { return func(m *Module) { m.Image = i } }
func withEnv(k, v string) func(*Module)        { return func(m *Module) { m.Env[k] = v } }
func withOptions(o string) func(*Module)       { return func(m *Module) { m.CreateOptions = o } }
func withVersion(v string) func(*Module)       { return func(m *Module) { m.Version = v } }

// deployment is a valid desired state with the given custom modules.
func deployment(mods ...Module) *Desired {
	d := &Desired{
		Version:       5,
		SchemaVersion: "1.1",
		Runtime:       RuntimeConfig{Type: "docker", MinDockerVersion: "v1.25"},
		EdgeAgent: Module{
			Name: EdgeAgent, Type: "docker", Status: StatusRunning, RestartPolicy: RestartAlways,
			ImagePullPolicy: PullOnCreate, StartupOrder: DefaultStartupOrder,
			Image: "mcr.microsoft.com/azureiotedge-agent:1.5", CreateOptions: "{}", Env: map[string]string{},
		},
		EdgeHub: mod(EdgeHub, 0, withImage("mcr.microsoft.com/azureiotedge-hub:1.5"), withVersion("")),
		Modules: map[string]Module{},
	}
	for _, m := range mods {
		d.Modules[m.Name] = m
	}
	return d
}

// specOf is the spec Plan builds for m in d.
func specOf(t *testing.T, d *Desired, m Module) runtime.ModuleSpec {
	t.Helper()
	in := Input{Env: testEnv}
	s, err := in.buildSpec(d, m, "modules."+m.Name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func running(t *testing.T, d *Desired, m Module, up time.Duration, restarts int) Actual {
	return Actual{
		State: runtime.ModuleState{
			Name: m.Name, Spec: specOf(t, d, m), State: runtime.StateRunning,
			StartedAt: t0.Add(-up), ImageHash: "sha256:aaaa",
		},
		RestartCount: restarts,
	}
}

func exited(t *testing.T, d *Desired, m Module, code int, ago time.Duration, restarts int) Actual {
	return Actual{
		State: runtime.ModuleState{
			Name: m.Name, Spec: specOf(t, d, m), State: runtime.StateExited, ExitCode: code,
			StartedAt: t0.Add(-ago - time.Minute), FinishedAt: t0.Add(-ago), ImageHash: "sha256:aaaa",
		},
		RestartCount: restarts,
	}
}

func actuals(as ...Actual) map[string]Actual {
	m := map[string]Actual{}
	for _, a := range as {
		m[a.State.Name] = a
	}
	return m
}

// summary renders actions compactly: "kind module[@order]".
func summary(actions []Action) []string {
	var out []string
	for _, a := range actions {
		s := string(a.Kind) + " " + a.Module
		if a.Kind == ActionStart || a.Kind == ActionRestart {
			s += fmt.Sprintf("@%d", a.StartupOrder)
		}
		out = append(out, s)
	}
	return out
}

// statuses collects the reported runtimeStatus of every module.
func statuses(r Reported) map[string]RuntimeStatus {
	out := map[string]RuntimeStatus{EdgeAgent: r.SystemModules.EdgeAgent.RuntimeStatus}
	if r.SystemModules.EdgeHub != nil {
		out[EdgeHub] = r.SystemModules.EdgeHub.RuntimeStatus
	}
	for name, m := range r.Modules {
		out[name] = m.RuntimeStatus
	}
	return out
}

func TestPlan(t *testing.T) {
	hubMod := deployment().EdgeHub
	sensor := mod("sensor", 2)
	filter := mod("filter", 1)
	type tc struct {
		name     string
		in       Input
		want     []string
		code     int
		statuses map[string]RuntimeStatus
		counts   map[string]int
		next     time.Time
	}
	var tests []tc
	add := func(c tc) { tests = append(tests, c) }

	{
		d := deployment(sensor, filter, mod("logger", DefaultStartupOrder), mod("alpha", 1))
		add(tc{
			name: "first deployment creates everything and starts by startupOrder",
			in:   Input{Desired: d},
			want: []string{
				"create edgeHub", "create alpha", "create filter", "create sensor", "create logger",
				"start edgeHub@0", "start alpha@1", "start filter@1", "start sensor@2", "start logger@4294967295",
			},
			code:     CodeOK,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, EdgeHub: RuntimeUnknown},
		})
	}
	{
		d := deployment(sensor, filter)
		add(tc{
			name: "unchanged and running: nothing to do",
			in: Input{Desired: d, Actual: actuals(
				running(t, d, hubMod, time.Hour, 0), running(t, d, sensor, time.Hour, 0), running(t, d, filter, time.Hour, 0))},
			code:     CodeOK,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, EdgeHub: RuntimeRunning, "sensor": RuntimeRunning, "filter": RuntimeRunning},
			counts:   map[string]int{EdgeHub: 0, "sensor": 0, "filter": 0},
		})
	}
	{
		old := deployment(sensor)
		d := deployment(mod("sensor", 2, withImage("example.azurecr.io/sensor:2")))
		add(tc{
			name: "image change recreates and starts",
			in: Input{Desired: d, Actual: actuals(
				running(t, d, hubMod, time.Hour, 0), running(t, old, sensor, time.Hour, 3))},
			want:     []string{"recreate sensor", "start sensor@2"},
			code:     CodeOK,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, EdgeHub: RuntimeRunning, "sensor": RuntimeRunning},
			counts:   map[string]int{EdgeHub: 0, "sensor": 0},
		})
	}
	{
		old := deployment(sensor)
		d := deployment(mod("sensor", 2, withOptions(`{"Cmd":["--fast"]}`)))
		add(tc{
			name: "createOptions change recreates",
			in:   Input{Desired: d, Actual: actuals(running(t, d, hubMod, time.Hour, 0), running(t, old, sensor, time.Hour, 0))},
			want: []string{"recreate sensor", "start sensor@2"},
			code: CodeOK,
		})
	}
	{
		d := deployment(mod("sensor", 2, withOptions(`{"Cmd":["--fast"],"Env":["A=1"]}`)))
		a := running(t, d, d.Modules["sensor"], time.Hour, 0)
		a.State.Spec.CreateOptions = "{ \"Env\": [\"A=1\"],\n  \"Cmd\": [\"--fast\"] }"
		add(tc{
			name: "equivalent createOptions text is not a change",
			in:   Input{Desired: d, Actual: actuals(running(t, d, hubMod, time.Hour, 0), a)},
			code: CodeOK,
		})
	}
	{
		old := deployment(sensor)
		d := deployment(mod("sensor", 2, withEnv("SendInterval", "1")))
		add(tc{
			name: "env change recreates",
			in:   Input{Desired: d, Actual: actuals(running(t, d, hubMod, time.Hour, 0), running(t, old, sensor, time.Hour, 0))},
			want: []string{"recreate sensor", "start sensor@2"},
			code: CodeOK,
		})
	}
	{
		old := deployment(sensor)
		d := deployment(mod("sensor", 2, withVersion("1.1"), withStatus(StatusStopped)))
		add(tc{
			name: "version change recreates without starting a stopped module",
			in:   Input{Desired: d, Actual: actuals(running(t, d, hubMod, time.Hour, 0), running(t, old, sensor, time.Hour, 0))},
			want: []string{"recreate sensor"},
			code: CodeOK,
		})
	}
	{
		old := deployment(sensor, filter)
		d := deployment(sensor)
		agent := Actual{State: runtime.ModuleState{Name: EdgeAgent, State: runtime.StateRunning}}
		add(tc{
			name: "module removed from the deployment is removed; edgeAgent never is",
			in: Input{Desired: d, Actual: actuals(
				running(t, d, hubMod, time.Hour, 0), running(t, d, sensor, time.Hour, 0),
				running(t, old, filter, time.Hour, 0), agent)},
			want:     []string{"remove filter"},
			code:     CodeOK,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, EdgeHub: RuntimeRunning, "sensor": RuntimeRunning, "filter": RuntimeRunning},
		})
	}
	{
		d := deployment(mod("sensor", 2, withStatus(StatusStopped)))
		add(tc{
			name: "desired stopped stops a running module",
			in:   Input{Desired: d, Actual: actuals(running(t, d, hubMod, time.Hour, 0), running(t, d, d.Modules["sensor"], time.Hour, 0))},
			want: []string{"stop sensor"},
			code: CodeOK,
		})
	}
	{
		d := deployment(mod("sensor", 2, withStatus(StatusStopped)))
		a := exited(t, d, d.Modules["sensor"], 143, time.Minute, 0)
		a.StoppedByAgent = true
		add(tc{
			name:     "stopped module stays stopped and is reported stopped whatever its exit code",
			in:       Input{Desired: d, Now: t0, Actual: actuals(running(t, d, hubMod, time.Hour, 0), a)},
			code:     CodeOK,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, EdgeHub: RuntimeRunning, "sensor": RuntimeStopped},
		})
	}
	{
		d := deployment(sensor)
		a := exited(t, d, sensor, 143, time.Second, 4)
		a.StoppedByAgent = true
		add(tc{
			name:   "desired running again starts a module the agent stopped, without back-off",
			in:     Input{Desired: d, Now: t0, Actual: actuals(running(t, d, hubMod, time.Hour, 0), a)},
			want:   []string{"start sensor@2"},
			code:   CodeOK,
			counts: map[string]int{EdgeHub: 0, "sensor": 4},
		})
	}
	{
		d := deployment(sensor)
		a := running(t, d, sensor, 0, 0)
		a.State.State, a.State.StartedAt = runtime.StateCreated, time.Time{}
		add(tc{
			name:     "created but not started is started",
			in:       Input{Desired: d, Actual: actuals(running(t, d, hubMod, time.Hour, 0), a)},
			want:     []string{"start sensor@2"},
			code:     CodeOK,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, EdgeHub: RuntimeRunning, "sensor": RuntimeStopped},
		})
	}
	restartCases := []struct {
		policy   RestartPolicy
		exitCode int
		restart  bool
		status   RuntimeStatus
	}{
		{RestartAlways, 0, true, RuntimeStopped},
		{RestartAlways, 1, true, RuntimeFailed},
		{RestartOnFailure, 0, false, RuntimeStopped},
		{RestartOnFailure, 1, true, RuntimeFailed},
		{RestartOnUnhealthy, 0, false, RuntimeStopped},
		{RestartOnUnhealthy, 139, true, RuntimeFailed},
		{RestartNever, 0, false, RuntimeStopped},
		{RestartNever, 1, false, RuntimeFailed},
	}
	for _, rc := range restartCases {
		m := mod("sensor", 2, withPolicy(rc.policy))
		d := deployment(m)
		var want []string
		if rc.restart {
			want = []string{"restart sensor@2"}
		}
		add(tc{
			name:     fmt.Sprintf("policy %s exit %d after cool-off", rc.policy, rc.exitCode),
			in:       Input{Desired: d, Now: t0, Actual: actuals(running(t, d, hubMod, time.Hour, 0), exited(t, d, m, rc.exitCode, time.Minute, 0))},
			want:     want,
			code:     CodeOK,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, EdgeHub: RuntimeRunning, "sensor": rc.status},
		})
	}
	{
		m := mod("sensor", 2, withPolicy(RestartOnFailure))
		d := deployment(m)
		a := exited(t, d, m, 0, time.Minute, 0)
		a.State.State = runtime.StateDead
		add(tc{
			name:     "dead module counts as failed",
			in:       Input{Desired: d, Now: t0, Actual: actuals(running(t, d, hubMod, time.Hour, 0), a)},
			want:     []string{"restart sensor@2"},
			code:     CodeOK,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, EdgeHub: RuntimeRunning, "sensor": RuntimeDead},
		})
	}
	{
		d := deployment(sensor)
		// Two restarts so far: the next waits 10 s · 2² = 40 s after the exit.
		add(tc{
			name:     "back-off pending",
			in:       Input{Desired: d, Now: t0, Actual: actuals(running(t, d, hubMod, time.Hour, 0), exited(t, d, sensor, 1, 30*time.Second, 2))},
			code:     CodeOK,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, EdgeHub: RuntimeRunning, "sensor": RuntimeBackoff},
			next:     t0.Add(10 * time.Second),
		})
	}
	{
		d := deployment(sensor)
		add(tc{
			name: "back-off elapsed",
			in:   Input{Desired: d, Now: t0, Actual: actuals(running(t, d, hubMod, time.Hour, 0), exited(t, d, sensor, 1, 40*time.Second, 2))},
			want: []string{"restart sensor@2"},
			code: CodeOK,
		})
	}
	{
		d := deployment(sensor)
		add(tc{
			name:     "gives up after MaxRestarts",
			in:       Input{Desired: d, Now: t0, Actual: actuals(running(t, d, hubMod, time.Hour, 0), exited(t, d, sensor, 1, time.Hour, 20))},
			code:     CodeOK,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, EdgeHub: RuntimeRunning, "sensor": RuntimeFailed},
			counts:   map[string]int{EdgeHub: 0, "sensor": 20},
		})
	}
	{
		d := deployment(sensor, filter)
		add(tc{
			name: "restart count resets after a stable run",
			in: Input{Desired: d, Now: t0, Actual: actuals(running(t, d, hubMod, time.Hour, 0),
				running(t, d, sensor, 11*time.Minute, 5), running(t, d, filter, 4*time.Minute, 2))},
			code:   CodeOK,
			counts: map[string]int{EdgeHub: 0, "sensor": 0, "filter": 2},
			next:   t0.Add(6 * time.Minute),
		})
	}
	{
		d := deployment()
		agent := Actual{State: runtime.ModuleState{Name: EdgeAgent, State: runtime.StateRunning}}
		add(tc{
			name:     "system modules are always present",
			in:       Input{Desired: d, Actual: actuals(agent)},
			want:     []string{"create edgeHub", "start edgeHub@0"},
			code:     CodeOK,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, EdgeHub: RuntimeUnknown},
		})
	}
	{
		d := deployment(sensor, mod("newcomer", 3))
		stale := mod("stale", 1)
		changed := mod("sensor", 2, withImage("example.azurecr.io/sensor:0"))
		add(tc{
			name: "invalid desired: report 400, keep the last deployment, nothing destructive",
			in: Input{
				Desired:    d,
				DesiredErr: &DesiredError{Code: CodeBadConfig, Version: 9, Module: "x", Field: "modules.x.settings.image", Msg: "required"},
				Now:        t0,
				Actual: actuals(exited(t, d, hubMod, 1, time.Hour, 0), running(t, deployment(changed), changed, time.Hour, 0),
					running(t, deployment(stale), stale, time.Hour, 0)),
			},
			want: []string{"create newcomer", "restart edgeHub@0", "start newcomer@3"},
			code: CodeBadConfig,
		})
	}
	{
		add(tc{
			name: "invalid first deployment: no actions at all",
			in: Input{
				DesiredErr: &DesiredError{Code: CodeBadSchemaVersion, Version: 2, Field: "schemaVersion", Msg: "not supported"},
				Actual:     actuals(running(t, deployment(sensor), sensor, time.Hour, 0)),
			},
			code:     CodeBadSchemaVersion,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, "sensor": RuntimeRunning},
		})
	}
	{
		add(tc{
			name:     "no desired properties yet",
			in:       Input{Actual: actuals(running(t, deployment(sensor), sensor, time.Hour, 0))},
			code:     CodeUnknown,
			statuses: map[string]RuntimeStatus{EdgeAgent: RuntimeRunning, "sensor": RuntimeRunning},
		})
	}
	{
		d := deployment(sensor)
		add(tc{
			name: "previous apply failed: 500 while retrying",
			in:   Input{Desired: d, ApplyErr: errors.New("create module sensor: pull failed"), Actual: actuals(running(t, d, hubMod, time.Hour, 0))},
			want: []string{"create sensor", "start sensor@2"},
			code: CodeApplyFailed,
		})
	}
	{
		up := mod("relay", 1, withImage("$upstream:443/azureiotedge-api-proxy:1.1"))
		old := deployment(sensor)
		d := deployment(sensor, up)
		add(tc{
			name: "$upstream image without a parent is a 400 and blocks destructive actions",
			in: Input{Desired: d, Actual: actuals(running(t, d, hubMod, time.Hour, 0),
				running(t, old, mod("gone", 1), time.Hour, 0))},
			want: []string{"create sensor", "start sensor@2"},
			code: CodeBadConfig,
		})
	}
	{
		d := deployment(mod("sensor", 2, withStatus(StatusStopped)), filter)
		old := deployment(mod("old", 1))
		add(tc{
			name: "plan order: remove, stop, create, start",
			in: Input{Desired: d, Actual: actuals(running(t, d, hubMod, time.Hour, 0),
				running(t, d, d.Modules["sensor"], time.Hour, 0), running(t, old, old.Modules["old"], time.Hour, 0))},
			want: []string{"remove old", "stop sensor", "create filter", "start filter@1"},
			code: CodeOK,
		})
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Env = testEnv
			if in.Now.IsZero() {
				in.Now = t0
			}
			res := Plan(in)
			if diff := cmp.Diff(tc.want, summary(res.Actions)); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			if got := res.Reported.LastDesiredStatus.Code; got != tc.code {
				t.Errorf("lastDesiredStatus.code %d, want %d (%s)", got, tc.code, res.Reported.LastDesiredStatus.Description)
			}
			if tc.code != CodeOK && res.Reported.LastDesiredStatus.Description == "" {
				t.Error("error status without a description")
			}
			if tc.statuses != nil {
				if diff := cmp.Diff(tc.statuses, statuses(res.Reported)); diff != "" {
					t.Errorf("runtime statuses (-want +got):\n%s", diff)
				}
			}
			if tc.counts != nil {
				if diff := cmp.Diff(tc.counts, res.RestartCounts); diff != "" {
					t.Errorf("restart counts (-want +got):\n%s", diff)
				}
			}
			if !res.Next.Equal(tc.next) {
				t.Errorf("next %v, want %v", res.Next, tc.next)
			}
		})
	}
}

func TestPlanBuildsSpecs(t *testing.T) {
	sensor := mod("sensor", 2, withEnv("SendInterval", "5"), withEnv("IOTEDGE_MODULEID", "spoofed"),
		withImage("myacr.azurecr.io/sensor:1"), withOptions(`{"Cmd":["-v"]}`))
	relay := mod("relay", 1, withImage("$upstream:443/azureiotedge-api-proxy:1.1"))
	d := deployment(sensor, relay)
	d.Runtime.RegistryCredentials = map[string]RegistryCredential{
		"other": {Address: "other.azurecr.io", Username: "o", Password: "op"},
		"acr":   {Address: "https://MyACR.azurecr.io/", Username: "u", Password: "p"},
	}
	env := testEnv
	env.ParentHostName = "parent.example.net"
	env.APIVersion = "2019-01-30"
	env.EdgeDeviceHostName = "edge-01.example.net"
	env.GenerationIDs = map[string]string{"sensor": "637000000000000001"}
	env.ModuleEnv = map[string]map[string]string{"sensor": {"EdgeHubConnectionString": "HostName=h;DeviceId=edge-01;ModuleId=sensor;SharedAccessKey=k", "SendInterval": "module env wins"}}
	res := Plan(Input{Desired: d, Env: env, Now: t0})
	specs := map[string]runtime.ModuleSpec{}
	for _, a := range res.Actions {
		if a.Kind == ActionCreate {
			specs[a.Module] = a.Spec
		}
	}
	base := map[string]string{
		"IOTEDGE_DEVICEID":        "edge-01",
		"IOTEDGE_IOTHUBHOSTNAME":  "hub.example.net",
		"IOTEDGE_GATEWAYHOSTNAME": "edge-01.example.net",
		"IOTEDGE_WORKLOADURI":     "unix:///var/run/iotedge/workload.sock",
		"IOTEDGE_AUTHSCHEME":      "sasToken",
		"IOTEDGE_APIVERSION":      "2019-01-30",
		"IOTEDGE_PARENTHOSTNAME":  "parent.example.net",
	}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	want := map[string]runtime.ModuleSpec{
		"sensor": {
			Name: "sensor", Version: "1.0", Image: "myacr.azurecr.io/sensor:1", CreateOptions: `{"Cmd":["-v"]}`,
			Env: with(map[string]string{"SendInterval": "module env wins", "IOTEDGE_MODULEID": "sensor", "IOTEDGE_MODULEGENERATIONID": "637000000000000001",
				"EdgeHubConnectionString": "HostName=h;DeviceId=edge-01;ModuleId=sensor;SharedAccessKey=k"}),
			ImagePullPolicy: PullOnCreate,
			RegistryAuth:    &runtime.RegistryAuth{Address: "https://MyACR.azurecr.io/", Username: "u", Password: "p"},
		},
		"relay": {
			Name: "relay", Version: "1.0", Image: "parent.example.net:443/azureiotedge-api-proxy:1.1", CreateOptions: "{}",
			Env: with(map[string]string{"IOTEDGE_MODULEID": "relay"}), ImagePullPolicy: PullOnCreate,
		},
		EdgeHub: {
			Name: EdgeHub, Image: "mcr.microsoft.com/azureiotedge-hub:1.5", CreateOptions: "{}",
			Env:             with(map[string]string{"IOTEDGE_MODULEID": "$edgeHub", "EdgeDeviceHostName": "edge-01.example.net"}),
			ImagePullPolicy: PullOnCreate,
		},
	}
	if diff := cmp.Diff(want, specs); diff != "" {
		t.Errorf("specs (-want +got):\n%s", diff)
	}
}

// The per-module variables (a connection string holds the module's key)
// reach the module but never its reported env.
func TestModuleEnvIsNotReported(t *testing.T) {
	sensor := mod("sensor", 2, withEnv("SendInterval", "5"))
	d := deployment(sensor)
	env := testEnv
	env.ModuleEnv = map[string]map[string]string{"sensor": {"EdgeHubConnectionString": "SharedAccessKey=secret"}}
	first := Plan(Input{Desired: d, Env: env, Now: t0})
	var spec runtime.ModuleSpec
	for _, a := range first.Actions {
		if a.Kind == ActionCreate && a.Module == "sensor" {
			spec = a.Spec
		}
	}
	if spec.Env["EdgeHubConnectionString"] != "SharedAccessKey=secret" {
		t.Fatalf("spec env %v lacks the connection string", spec.Env)
	}
	st := runtime.ModuleState{Name: "sensor", Spec: spec, State: runtime.StateRunning, StartedAt: t0}
	res := Plan(Input{Desired: d, Env: env, Now: t0.Add(time.Minute), Actual: map[string]Actual{"sensor": {State: st}}})
	got := res.Reported.Modules["sensor"].Env
	if diff := cmp.Diff(map[string]EnvValue{"SendInterval": {Value: "5"}}, got); diff != "" {
		t.Errorf("reported env (-want +got):\n%s", diff)
	}
	for _, a := range res.Actions {
		if a.Module == "sensor" {
			t.Errorf("unexpected action %v for an unchanged module", a)
		}
	}
}

func TestPlanReasonsNameTheChange(t *testing.T) {
	old := mod("sensor", 2, withEnv("A", "1"), withEnv("B", "2"))
	now := mod("sensor", 2, withEnv("A", "9"), withEnv("C", "3"), withImage("example.azurecr.io/sensor:2"))
	d := deployment(now)
	res := Plan(Input{Desired: d, Env: testEnv, Now: t0, Actual: actuals(
		running(t, d, d.EdgeHub, time.Hour, 0), running(t, deployment(old), old, time.Hour, 0))})
	if len(res.Actions) == 0 || res.Actions[0].Kind != ActionRecreate {
		t.Fatalf("actions %v", summary(res.Actions))
	}
	want := `image "example.azurecr.io/sensor:1" → "example.azurecr.io/sensor:2"; env changed (A, B, C)`
	if got := res.Actions[0].Reason; got != want {
		t.Errorf("reason %q, want %q", got, want)
	}
}

func TestBackoffCoolOff(t *testing.T) {
	b := DefaultBackoff()
	tests := []struct {
		restarts int
		want     time.Duration
	}{
		{0, 10 * time.Second}, {1, 20 * time.Second}, {2, 40 * time.Second}, {3, 80 * time.Second},
		{4, 160 * time.Second}, {5, 5 * time.Minute}, {19, 5 * time.Minute}, {1000, 5 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.restarts), func(t *testing.T) {
			if got := b.CoolOff(tc.restarts); got != tc.want {
				t.Errorf("CoolOff(%d) = %v, want %v", tc.restarts, got, tc.want)
			}
		})
	}
}

func TestHostPlatform(t *testing.T) {
	tests := []struct{ goarch, want string }{
		{"amd64", "x86_64"}, {"arm64", "aarch64"}, {"arm", "armv7l"}, {"386", "i686"}, {"riscv64", "riscv64"},
	}
	for _, tc := range tests {
		if got := HostPlatform("linux", tc.goarch, "1.0.0"); got != (Platform{OS: "linux", Architecture: tc.want, Version: "1.0.0"}) {
			t.Errorf("HostPlatform(linux, %s) = %+v", tc.goarch, got)
		}
	}
}
