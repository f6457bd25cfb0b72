package reconcile

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

// reportScenario is a device with a running hub, a crashed module in
// back-off, a module stopped on purpose and a leftover module.
func reportScenario(t *testing.T) Input {
	sensor := mod("SimulatedTemperatureSensor", 2, withEnv("SendInterval", "5"),
		withOptions(`{"HostConfig":{"Binds":["/data:/data"]},"Labels":{"note":"`+strings.Repeat("x", 600)+`"}}`))
	filter := mod("filter", 1, withStatus(StatusStopped), withPolicy(RestartOnFailure))
	d := deployment(sensor, filter)
	d.Runtime.RegistryCredentials = map[string]RegistryCredential{"acr": {Address: "example.azurecr.io", Username: "u", Password: "secret-password"}}
	hub := running(t, d, d.EdgeHub, 90*time.Minute, 0)
	hub.State.ImageHash = "sha256:dd0d4897a65fae460909e497386606b5cd7a2ad7ae0605f5bb766644e352fac3"
	crashed := exited(t, d, sensor, 139, 5*time.Second, 1)
	crashed.LastRestartTime = t0.Add(-2 * time.Minute)
	stopped := exited(t, d, filter, 143, time.Hour, 0)
	stopped.StoppedByAgent = true
	leftover := running(t, deployment(mod("legacy", 1)), mod("legacy", 1), 3*time.Hour, 0)
	return Input{
		Desired:        d,
		Actual:         actuals(hub, crashed, stopped, leftover),
		Now:            t0,
		AgentStartTime: t0.Add(-2*time.Hour + 123456700*time.Nanosecond),
		Env:            testEnv,
		Platform:       HostPlatform("linux", "amd64", "0.4.0"),
		AgentVersion:   AgentVersion{Version: "0.4.0", Build: "20260110.1", Commit: "4a62c31"},
	}
}

func TestReportedDocument(t *testing.T) {
	res := Plan(reportScenario(t))
	b, err := json.MarshalIndent(res.Reported, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("secret-password")) {
		t.Fatal("registry password reported")
	}
	if bytes.Contains(b, []byte("IOTEDGE_")) {
		t.Error("the agent's own module environment is reported as module env")
	}
	golden(t, "reported.golden.json", append(b, '\n'))

	var back Reported
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(res.Reported, back, cmp.Comparer(func(a, b Timestamp) bool {
		return a.Sub(b.Time).Abs() < 100*time.Nanosecond
	})); diff != "" {
		t.Errorf("reported document round trip (-want +got):\n%s", diff)
	}
}

func TestReportedSettingsChunking(t *testing.T) {
	long := `{"a":"` + strings.Repeat("é", 400) + `"}` // 2-byte runes straddle chunk edges
	tests := []struct {
		name       string
		opts       string
		wantChunks int
	}{
		{"empty", "", 1},
		{"short", "{}", 1},
		{"exactly one chunk", `{"a":"` + strings.Repeat("b", CreateOptionsChunk-8) + `"}`, 1},
		{"multi-byte runes", long, 2},
		{"many chunks", `{"a":"` + strings.Repeat("c", 5*CreateOptionsChunk) + `"}`, 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ReportedSettings{Image: "img", ImageHash: "sha256:1", CreateOptions: tc.opts}
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]string
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			chunks := 0
			for k, v := range m {
				if strings.HasPrefix(k, "createOptions") {
					chunks++
					if len(v) > CreateOptionsChunk {
						t.Errorf("%s has %d bytes", k, len(v))
					}
				}
			}
			if chunks != tc.wantChunks {
				t.Errorf("%d createOptions chunks, want %d: %s", chunks, tc.wantChunks, b)
			}
			var back ReportedSettings
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(s, back); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReportedChunksParseAsDesired(t *testing.T) {
	// A reported chunked createOptions reads back through the desired
	// parser's reassembly.
	opts := `{"Labels":{"x":"` + strings.Repeat("y", 1500) + `"}}`
	settings, err := json.Marshal(ReportedSettings{Image: "img", CreateOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	doc := set(t, "modules/m1/settings", json.RawMessage(settings))
	d, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Modules["m1"].CreateOptions; got != opts {
		t.Errorf("reassembled %d bytes, want %d", len(got), len(opts))
	}
}

func TestTimestamp(t *testing.T) {
	ts := Timestamp{time.Date(2021, 6, 12, 0, 27, 35, 420086300, time.FixedZone("x", 3600))}
	b, err := json.Marshal(ts)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `"2021-06-11T23:27:35.4200863"` {
		t.Errorf("Marshal = %s", b)
	}
	for _, in := range []string{`"2021-06-11T23:27:35.4200863"`, `"2021-06-12T00:27:35.4200863+01:00"`} {
		var back Timestamp
		if err := json.Unmarshal([]byte(in), &back); err != nil {
			t.Fatal(err)
		}
		if !back.Equal(ts.Time) {
			t.Errorf("Unmarshal(%s) = %v, want %v", in, back, ts)
		}
	}
	var bad Timestamp
	if err := json.Unmarshal([]byte(`"yesterday"`), &bad); err == nil {
		t.Error("Unmarshal accepted a non-time")
	}
}

func TestMergePatch(t *testing.T) {
	tests := []struct {
		name, prev, next, want string
	}{
		{"no previous document", ``, `{"a":1}`, `{"a":1}`},
		{"unchanged", `{"a":1,"b":{"c":2}}`, `{"a":1,"b":{"c":2}}`, ``},
		{"changed leaf", `{"a":1,"b":{"c":2,"d":3}}`, `{"a":1,"b":{"c":5,"d":3}}`, `{"b":{"c":5}}`},
		{"removed module becomes null", `{"modules":{"m1":{"x":1},"m2":{"x":2}}}`, `{"modules":{"m1":{"x":1}}}`, `{"modules":{"m2":null}}`},
		{"twin metadata ignored", `{"$version":12,"$metadata":{"a":1},"a":1}`, `{"a":1}`, ``},
		{"array replaced whole", `{"a":[1,2]}`, `{"a":[1,3]}`, `{"a":[1,3]}`},
		{"object replaces scalar", `{"a":1}`, `{"a":{"b":1}}`, `{"a":{"b":1}}`},
		{"exact numbers", `{"n":12345678901234567890}`, `{"n":12345678901234567891}`, `{"n":12345678901234567891}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MergePatch([]byte(tc.prev), []byte(tc.next))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("MergePatch = %s, want %s", got, tc.want)
			}
		})
	}
	if _, err := MergePatch(nil, []byte(`[1]`)); err == nil {
		t.Error("MergePatch accepted a non-object")
	}
}

func TestMergePatchBetweenReports(t *testing.T) {
	in := reportScenario(t)
	before, err := json.Marshal(Plan(in).Reported)
	if err != nil {
		t.Fatal(err)
	}
	delete(in.Actual, "legacy")
	after, err := json.Marshal(Plan(in).Reported)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := MergePatch(before, after)
	if err != nil {
		t.Fatal(err)
	}
	if string(patch) != `{"modules":{"legacy":null}}` {
		t.Errorf("patch %s", patch)
	}
}

func TestHumanize(t *testing.T) {
	tests := []struct {
		d    time.Duration
		past bool
		want string
	}{
		{0, false, "0 seconds"},
		{time.Second, false, "1 second"},
		{1500 * time.Millisecond, true, "1 second ago"},
		{20 * time.Second, false, "20 seconds"},
		{21 * time.Second, false, "21 seconds"},
		{45 * time.Second, false, "45 seconds"},
		{46 * time.Second, false, "a minute"},
		{90 * time.Second, true, "a minute ago"},
		{91 * time.Second, false, "2 minutes"},
		{3*time.Minute + 59*time.Second, false, "3 minutes"},
		{45 * time.Minute, false, "45 minutes"},
		{46 * time.Minute, false, "an hour"},
		{91 * time.Minute, false, "2 hours"},
		{22*time.Hour + time.Second, false, "a day"},
		{37 * time.Hour, false, "2 days"},
		{7 * 24 * time.Hour, false, "a week"},
		{11 * 24 * time.Hour, false, "2 weeks"},
		{30 * 24 * time.Hour, false, "a month"},
		{100 * 24 * time.Hour, false, "3 months"},
		{400 * 24 * time.Hour, false, "a year"},
		{800 * 24 * time.Hour, true, "2 years ago"},
		{-5 * time.Second, false, "5 seconds"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := Humanize(tc.d, tc.past); got != tc.want {
				t.Errorf("Humanize(%v, %v) = %q, want %q", tc.d, tc.past, got, tc.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	now := t0
	tests := []struct {
		status   RuntimeStatus
		exit     int
		started  time.Time
		finished time.Time
		want     string
	}{
		{RuntimeRunning, 0, now.Add(-3 * time.Minute), time.Time{}, "Up 3 minutes"},
		{RuntimeRunning, 0, time.Time{}, time.Time{}, "Up"},
		{RuntimeStopped, 0, time.Time{}, now.Add(-10 * time.Second), "Stopped 10 seconds ago"},
		{RuntimeFailed, 139, time.Time{}, now.Add(-2 * time.Minute), "Failed (139) 2 minutes ago"},
		{RuntimeBackoff, 1, time.Time{}, now.Add(-5 * time.Second), "Failed (1) 5 seconds ago"},
		{RuntimeBackoff, 0, time.Time{}, now.Add(-5 * time.Second), "Stopped 5 seconds ago"},
		{RuntimeFailed, 1, time.Time{}, time.Time{}, "Failed"},
		{RuntimeUnknown, 0, time.Time{}, time.Time{}, "Unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := Describe(tc.status, tc.exit, tc.started, tc.finished, now); got != tc.want {
				t.Errorf("Describe = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWriteList(t *testing.T) {
	in := reportScenario(t)
	res := Plan(in)
	var buf bytes.Buffer
	if err := WriteList(&buf, ListRows(res.Reported, t0)); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"NAME                        STATUS         DESCRIPTION                 Config",
		"SimulatedTemperatureSensor  failed         Failed (139) 5 seconds ago  example.azurecr.io/simulatedtemperaturesensor:1",
		"edgeAgent                   running        Up 2 hours                  mcr.microsoft.com/azureiotedge-agent:1.5",
		"edgeHub                     running        Up an hour                  mcr.microsoft.com/azureiotedge-hub:1.5",
		"filter                      stopped        Stopped an hour ago         example.azurecr.io/filter:1",
		"legacy                      running        Up 3 hours                  example.azurecr.io/legacy:1",
		"",
	}, "\n")
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
}
