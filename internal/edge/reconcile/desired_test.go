package reconcile

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFullManifest(t *testing.T) {
	got, err := Parse(readTestdata(t, "desired_full.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Desired{
		Version:       11,
		SchemaVersion: "1.1",
		Runtime: RuntimeConfig{
			Type:             "docker",
			MinDockerVersion: "v1.25",
			RegistryCredentials: map[string]RegistryCredential{
				"myacr": {Address: "myacr.azurecr.io", Username: "u", Password: "p"},
			},
		},
		EdgeAgent: Module{
			Name: EdgeAgent, Type: "docker", Status: StatusRunning, RestartPolicy: RestartAlways,
			ImagePullPolicy: PullOnCreate, StartupOrder: DefaultStartupOrder,
			Image: "mcr.microsoft.com/azureiotedge-agent:1.5", CreateOptions: "{}",
			Env: map[string]string{"UpstreamProtocol": "Mqtt"},
		},
		EdgeHub: Module{
			Name: EdgeHub, Type: "docker", Status: StatusRunning, RestartPolicy: RestartAlways,
			ImagePullPolicy: PullOnCreate, StartupOrder: 0,
			Image:         "mcr.microsoft.com/azureiotedge-hub:1.5",
			CreateOptions: `{"HostConfig":{"PortBindings":{"443/tcp":[{"HostPort":"443"}],"5671/tcp":[{"HostPort":"5671"}],"8883/tcp":[{"HostPort":"8883"}]}}}`,
			Env:           map[string]string{},
		},
		Modules: map[string]Module{
			"SimulatedTemperatureSensor": {
				Name: "SimulatedTemperatureSensor", Version: "1.0", Type: "docker", Status: StatusRunning,
				RestartPolicy: RestartAlways, ImagePullPolicy: PullOnCreate, StartupOrder: 2,
				Image: "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5", CreateOptions: "{}",
				Env: map[string]string{"SendInterval": "5", "Verbose": "true", "Count": "3", "Empty": ""},
			},
			"filter": {
				Name: "filter", Type: "docker", Status: StatusStopped,
				RestartPolicy: RestartOnUnhealthy, ImagePullPolicy: PullNever, StartupOrder: DefaultStartupOrder,
				Image:         "myacr.azurecr.io/filter:0.0.1-amd64",
				Digest:        "sha256:1111111111111111111111111111111111111111111111111111111111111111",
				CreateOptions: `{"Cmd":["--threshold","25"],"HostConfig":{"Binds":["/data:/data"]},"Labels":{"tier":"<edge & core>"}}`,
				Env:           map[string]string{},
			},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

// minimal is a valid document that tests mutate with set.
const minimal = `{
  "schemaVersion": "1.0",
  "runtime": {"type": "docker", "settings": {}},
  "systemModules": {
    "edgeAgent": {"type": "docker", "settings": {"image": "agent:1"}},
    "edgeHub": {"type": "docker", "settings": {"image": "hub:1", "createOptions": ""}}
  },
  "modules": {
    "m1": {"type": "docker", "settings": {"image": "m1:1"}}
  },
  "$version": 7
}`

// set returns minimal with the value at a dotted path replaced (or
// deleted when value is the string "<delete>").
func set(t *testing.T, path string, value any) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(minimal), &doc); err != nil {
		t.Fatal(err)
	}
	keys := strings.Split(path, "/")
	cur := doc
	for _, k := range keys[:len(keys)-1] {
		next, ok := cur[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[k] = next
		}
		cur = next
	}
	last := keys[len(keys)-1]
	if value == "<delete>" {
		delete(cur, last)
	} else {
		cur[last] = value
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseDefaults(t *testing.T) {
	d, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := Module{
		Name: "m1", Type: "docker", Status: StatusRunning, RestartPolicy: RestartOnUnhealthy,
		ImagePullPolicy: PullOnCreate, StartupOrder: DefaultStartupOrder, Image: "m1:1",
		CreateOptions: "{}", Env: map[string]string{},
	}
	if diff := cmp.Diff(want, d.Modules["m1"]); diff != "" {
		t.Errorf("custom module defaults (-want +got):\n%s", diff)
	}
	if d.EdgeHub.RestartPolicy != RestartAlways || d.EdgeHub.Status != StatusRunning || d.Version != 7 {
		t.Errorf("edgeHub defaults: %+v, version %d", d.EdgeHub, d.Version)
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name  string
		doc   []byte
		check func(t *testing.T, d *Desired)
	}{
		{"schema 1.1.0", set(t, "schemaVersion", "1.1.0"), nil},
		{"no modules", set(t, "modules", "<delete>"), func(t *testing.T, d *Desired) {
			if len(d.Modules) != 0 {
				t.Errorf("modules %v", d.Modules)
			}
		}},
		{"null modules", set(t, "modules", nil), nil},
		{"process runtime", set(t, "runtime/type", "process"), nil},
		{"startupOrder max", set(t, "modules/m1/startupOrder", 4294967295), nil},
		{"agent startupOrder ignored", set(t, "systemModules/edgeAgent/startupOrder", 3), func(t *testing.T, d *Desired) {
			if d.EdgeAgent.StartupOrder != DefaultStartupOrder {
				t.Errorf("edgeAgent startupOrder %d", d.EdgeAgent.StartupOrder)
			}
		}},
		{"createOptions empty string", set(t, "modules/m1/settings/createOptions", "  "), func(t *testing.T, d *Desired) {
			if d.Modules["m1"].CreateOptions != "{}" {
				t.Errorf("createOptions %q", d.Modules["m1"].CreateOptions)
			}
		}},
		{"module name with allowed punctuation", set(t, "modules/a-b.c:d_e", map[string]any{"type": "docker", "settings": map[string]any{"image": "x"}}), nil},
		{"createOptions numbers kept exactly", set(t, "modules/m1/settings/createOptions", `{"HostConfig":{"Memory":12345678901234567890}}`), func(t *testing.T, d *Desired) {
			if want := `{"HostConfig":{"Memory":12345678901234567890}}`; d.Modules["m1"].CreateOptions != want {
				t.Errorf("createOptions %q, want %q", d.Modules["m1"].CreateOptions, want)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse(tc.doc)
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	big := make([]byte, MaxDesiredSize+1)
	tests := []struct {
		name   string
		doc    []byte
		code   int
		module string
		field  string
	}{
		{"not JSON", []byte(`{`), CodeBadConfig, "", ""},
		{"not an object", []byte(`[1]`), CodeBadConfig, "", ""},
		{"too large", big, CodeBadConfig, "", ""},
		{"empty", []byte(`{}`), CodeEmptyConfig, "", ""},
		{"only version and metadata", []byte(`{"$version": 3, "$metadata": {}}`), CodeEmptyConfig, "", ""},
		{"bad $version", set(t, "$version", "x"), CodeBadConfig, "", "$version"},
		{"schemaVersion missing", set(t, "schemaVersion", "<delete>"), CodeBadConfig, "", "schemaVersion"},
		{"schemaVersion not a string", set(t, "schemaVersion", 1.1), CodeBadConfig, "", "schemaVersion"},
		{"schemaVersion garbage", set(t, "schemaVersion", "one"), CodeBadConfig, "", "schemaVersion"},
		{"schemaVersion 2.0", set(t, "schemaVersion", "2.0"), CodeBadSchemaVersion, "", "schemaVersion"},
		{"schemaVersion 1.2", set(t, "schemaVersion", "1.2"), CodeBadSchemaVersion, "", "schemaVersion"},
		{"schemaVersion 1.1.1", set(t, "schemaVersion", "1.1.1"), CodeBadSchemaVersion, "", "schemaVersion"},
		{"runtime missing", set(t, "runtime", "<delete>"), CodeBadConfig, "", "runtime"},
		{"runtime type unknown", set(t, "runtime/type", "rkt"), CodeBadConfig, "", "runtime.type"},
		{"runtime settings not an object", set(t, "runtime/settings", "x"), CodeBadConfig, "", "runtime.settings"},
		{"registry password missing", set(t, "runtime/settings/registryCredentials", map[string]any{"acr": map[string]any{"address": "a", "username": "u"}}), CodeBadConfig, "", "runtime.settings.registryCredentials.acr.password"},
		{"systemModules missing", set(t, "systemModules", "<delete>"), CodeBadConfig, "", "systemModules"},
		{"edgeHub missing", set(t, "systemModules/edgeHub", "<delete>"), CodeBadConfig, EdgeHub, "systemModules.edgeHub"},
		{"edgeAgent missing", set(t, "systemModules/edgeAgent", "<delete>"), CodeBadConfig, EdgeAgent, "systemModules.edgeAgent"},
		{"unknown system module", set(t, "systemModules/edgeProxy", map[string]any{}), CodeBadConfig, "edgeProxy", "systemModules.edgeProxy"},
		{"modules not an object", set(t, "modules", []any{}), CodeBadConfig, "", "modules"},
		{"module not an object", set(t, "modules/m1", "x"), CodeBadConfig, "m1", "modules.m1"},
		{"module named edgeHub", set(t, "modules/edgeHub", map[string]any{"type": "docker", "settings": map[string]any{"image": "x"}}), CodeBadConfig, EdgeHub, "modules.edgeHub"},
		{"module name with $", set(t, "modules/$bad", map[string]any{}), CodeBadConfig, "$bad", "modules.$bad"},
		{"module name with space", set(t, "modules/a b", map[string]any{}), CodeBadConfig, "a b", "modules.a b"},
		{"type missing", set(t, "modules/m1/type", "<delete>"), CodeBadConfig, "m1", "modules.m1.type"},
		{"status invalid", set(t, "modules/m1/status", "paused"), CodeBadConfig, "m1", "modules.m1.status"},
		{"restartPolicy invalid", set(t, "modules/m1/restartPolicy", "sometimes"), CodeBadConfig, "m1", "modules.m1.restartPolicy"},
		{"imagePullPolicy invalid", set(t, "modules/m1/imagePullPolicy", "always"), CodeBadConfig, "m1", "modules.m1.imagePullPolicy"},
		{"startupOrder negative", set(t, "modules/m1/startupOrder", -1), CodeBadConfig, "m1", "modules.m1.startupOrder"},
		{"startupOrder too large", set(t, "modules/m1/startupOrder", 4294967296), CodeBadConfig, "m1", "modules.m1.startupOrder"},
		{"startupOrder a string", set(t, "modules/m1/startupOrder", "2"), CodeBadConfig, "m1", "modules.m1.startupOrder"},
		{"version a number", set(t, "modules/m1/version", 1), CodeBadConfig, "m1", "modules.m1.version"},
		{"settings missing", set(t, "modules/m1/settings", "<delete>"), CodeBadConfig, "m1", "modules.m1.settings"},
		{"image missing", set(t, "modules/m1/settings/image", "<delete>"), CodeBadConfig, "m1", "modules.m1.settings.image"},
		{"image blank", set(t, "modules/m1/settings/image", " "), CodeBadConfig, "m1", "modules.m1.settings.image"},
		{"edgeHub image missing", set(t, "systemModules/edgeHub/settings/image", "<delete>"), CodeBadConfig, EdgeHub, "systemModules.edgeHub.settings.image"},
		{"createOptions not JSON", set(t, "modules/m1/settings/createOptions", `{"Cmd":`), CodeBadConfig, "m1", "modules.m1.settings.createOptions"},
		{"createOptions an array", set(t, "modules/m1/settings/createOptions", `["x"]`), CodeBadConfig, "m1", "modules.m1.settings.createOptions"},
		{"createOptions trailing data", set(t, "modules/m1/settings/createOptions", `{}}`), CodeBadConfig, "m1", "modules.m1.settings.createOptions"},
		{"createOptions an object, not a string", set(t, "modules/m1/settings/createOptions", map[string]any{}), CodeBadConfig, "m1", "modules.m1.settings.createOptions"},
		{"createOptions chunk gap", set(t, "modules/m1/settings/createOptions02", "x"), CodeBadConfig, "m1", "modules.m1.settings.createOptions02"},
		{"createOptions chunk bad name", set(t, "modules/m1/settings/createOptions1", "x"), CodeBadConfig, "m1", "modules.m1.settings.createOptions1"},
		{"createOptions chunk 00", set(t, "modules/m1/settings/createOptions00", "x"), CodeBadConfig, "m1", "modules.m1.settings.createOptions00"},
		{"env not an object", set(t, "modules/m1/env", []any{}), CodeBadConfig, "m1", "modules.m1.env"},
		{"env entry not an object", set(t, "modules/m1/env/A", "b"), CodeBadConfig, "m1", "modules.m1.env.A"},
		{"env value missing", set(t, "modules/m1/env/A", map[string]any{}), CodeBadConfig, "m1", "modules.m1.env.A.value"},
		{"env value an object", set(t, "modules/m1/env/A", map[string]any{"value": map[string]any{}}), CodeBadConfig, "m1", "modules.m1.env.A.value"},
		{"env name with =", set(t, "modules/m1/env/A=B", map[string]any{"value": "x"}), CodeBadConfig, "m1", "modules.m1.env.A=B"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse(tc.doc)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", d)
			}
			var de *DesiredError
			if !errors.As(err, &de) || !errors.Is(err, ErrInvalidDesired) {
				t.Fatalf("error %v is not a *DesiredError", err)
			}
			got := []any{de.Code, de.Module, de.Field}
			if diff := cmp.Diff([]any{tc.code, tc.module, tc.field}, got); diff != "" {
				t.Errorf("code, module, field (-want +got):\n%s\nerror: %v", diff, err)
			}
			if tc.code != CodeEmptyConfig && de.Msg == "" {
				t.Error("error without a message")
			}
			if tc.field != "" && !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name %s", err, tc.field)
			}
		})
	}
}

func TestParseErrorCarriesVersion(t *testing.T) {
	_, err := Parse(set(t, "schemaVersion", "3.0"))
	var de *DesiredError
	if !errors.As(err, &de) || de.Version != 7 || de.Code != CodeBadSchemaVersion {
		t.Fatalf("error %#v, want code 412 at version 7", err)
	}
}

func TestNormalizeCreateOptions(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"", "{}", ""},
		{" {} ", "{}", ""},
		{`{"b":1, "a":{"d":[1,2],"c":"<&>"}}`, `{"a":{"c":"<&>","d":[1,2]},"b":1}`, ""},
		{`{"n":1.50}`, `{"n":1.50}`, ""},
		{`[]`, "", "must be a JSON object"},
		{`"x"`, "", "must be a JSON object"},
		{`{} {}`, "", "data after the object"},
		{`{"a":}`, "", "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeCreateOptions(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("NormalizeCreateOptions(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeCreateOptions(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// FuzzParse feeds arbitrary documents to Parse: it never panics, every
// error is a *DesiredError with a known code, and every accepted document
// satisfies the invariants Plan relies on.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"schemaVersion":"1.1","runtime":{"type":"docker"},"systemModules":{"edgeAgent":{"type":"docker","settings":{"image":"a"}},"edgeHub":{"type":"docker","settings":{"image":"h","createOptions":"{\"a\":","createOptions01":"1}"}}}}`))
	f.Add([]byte(`{"schemaVersion":"9.9"}`))
	f.Add([]byte(`[`))
	f.Add([]byte(`{"modules":{"x":{"env":{"A":{"value":[1]}}}}}`))
	if b, err := os.ReadFile(filepath.Join("testdata", "desired_full.json")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := Parse(raw)
		if err != nil {
			var de *DesiredError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DesiredError", err)
			}
			switch de.Code {
			case CodeBadConfig, CodeBadSchemaVersion, CodeEmptyConfig:
			default:
				t.Fatalf("unexpected code %d", de.Code)
			}
			return
		}
		mods := []Module{d.EdgeAgent, d.EdgeHub}
		for _, m := range d.Modules {
			mods = append(mods, m)
		}
		for _, m := range mods {
			if strings.TrimSpace(m.Image) == "" {
				t.Fatalf("module %s accepted without an image", m.Name)
			}
			if n, err := NormalizeCreateOptions(m.CreateOptions); err != nil || n != m.CreateOptions {
				t.Fatalf("module %s createOptions %q not normalised (%q, %v)", m.Name, m.CreateOptions, n, err)
			}
			if m.Status != StatusRunning && m.Status != StatusStopped {
				t.Fatalf("module %s status %q", m.Name, m.Status)
			}
			switch m.RestartPolicy {
			case RestartNever, RestartOnFailure, RestartOnUnhealthy, RestartAlways:
			default:
				t.Fatalf("module %s restart policy %q", m.Name, m.RestartPolicy)
			}
			if m.Env == nil {
				t.Fatalf("module %s has a nil env", m.Name)
			}
		}
		// Planning any accepted deployment from scratch must not panic
		// and must create what it starts.
		res := Plan(Input{Desired: d})
		created := map[string]bool{}
		for _, a := range res.Actions {
			switch a.Kind {
			case ActionCreate:
				created[a.Module] = true
			case ActionStart:
				if !created[a.Module] {
					t.Fatalf("start of %s before its create", a.Module)
				}
			default:
				t.Fatalf("first deployment planned %s %s", a.Kind, a.Module)
			}
		}
	})
}
