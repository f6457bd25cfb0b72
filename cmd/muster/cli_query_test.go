package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestQueryCommand runs `muster query` against a real `muster serve`
// (SQLite store, the query translated to SQL), set up through the CLI.
func TestQueryCommand(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir, nil)
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		out, errOut, err := runCLI(t, nil, append([]string{"--data-dir", dir}, args...)...)
		if err != nil {
			t.Fatalf("muster %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
		}
		return out
	}
	for _, d := range []struct{ id, tags string }{
		{"dev-1", `{"environment":"test","floor":1}`},
		{"dev-2", `{"environment":"prod","floor":2}`},
		{"dev-3", `{"environment":"test","floor":3}`},
		{"dev-4", ""},
	} {
		run(t, "device", "create", d.id)
		if d.tags != "" {
			run(t, "twin", "update", d.id, "--tags", d.tags)
		}
	}

	t.Run("twins table", func(t *testing.T) {
		out := run(t, "query", "SELECT * FROM devices WHERE tags.environment = 'test'")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		got := make([][]string, len(lines))
		for i, l := range lines {
			got[i] = strings.Fields(l)
		}
		want := [][]string{
			{"DEVICE", "ID", "STATUS", "CONNECTION", "VERSION", "TAGS"},
			{"dev-1", "enabled", "Disconnected", "2", `{"environment":"test","floor":1}`},
			{"dev-3", "enabled", "Disconnected", "2", `{"environment":"test","floor":3}`},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("table (-want +got):\n%s\n%s", diff, out)
		}
	})

	t.Run("twins json", func(t *testing.T) {
		out := run(t, "query", "SELECT * FROM devices WHERE tags.environment = 'test'", "-o", "json")
		var twins []struct {
			DeviceID string         `json:"deviceId"`
			ETag     string         `json:"etag"`
			Tags     map[string]any `json:"tags"`
		}
		if err := json.Unmarshal([]byte(out), &twins); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		if len(twins) != 2 || twins[0].DeviceID != "dev-1" || twins[1].DeviceID != "dev-3" || twins[0].ETag == "" {
			t.Fatalf("twins %+v", twins)
		}
		if diff := cmp.Diff(map[string]any{"environment": "test", "floor": 1.0}, twins[0].Tags); diff != "" {
			t.Errorf("tags (-want +got):\n%s", diff)
		}
	})

	t.Run("projection table", func(t *testing.T) {
		out := run(t, "query", "SELECT deviceId, tags.floor AS floor, status FROM devices WHERE deviceId != 'dev-2'")
		want := "deviceId  floor  status\ndev-1     1      enabled\ndev-3     3      enabled\ndev-4     -      enabled\n"
		if diff := cmp.Diff(want, out); diff != "" {
			t.Errorf("table (-want +got):\n%s", diff)
		}
	})

	t.Run("group by json over pages", func(t *testing.T) {
		out := run(t, "query", "SELECT tags.environment AS env, COUNT() AS n FROM devices GROUP BY tags.environment", "-o", "json", "--page-size", "1")
		var got []map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		want := []map[string]any{{"n": 1.0}, {"env": "prod", "n": 1.0}, {"env": "test", "n": 2.0}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("groups (-want +got):\n%s", diff)
		}
	})

	t.Run("module twins table", func(t *testing.T) {
		run(t, "device", "create", "edge-1", "--edge-enabled")
		run(t, "twin", "update", "edge-1", "--module", "$edgeHub", "--tags", `{"role":"hub"}`)
		out := run(t, "query", "SELECT * FROM devices.modules WHERE deviceId = 'edge-1'")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		got := make([][]string, len(lines))
		for i, l := range lines {
			got[i] = strings.Fields(l)
		}
		want := [][]string{
			{"DEVICE", "ID", "MODULE", "ID", "STATUS", "CONNECTION", "VERSION", "TAGS"},
			{"edge-1", "$edgeAgent", "enabled", "Disconnected", "1", "{}"},
			{"edge-1", "$edgeHub", "enabled", "Disconnected", "2", `{"role":"hub"}`},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("table (-want +got):\n%s\n%s", diff, out)
		}
		out = run(t, "query", "SELECT COUNT() AS n FROM devices.modules WHERE moduleId = '$edgeAgent'", "-o", "json")
		if strings.Join(strings.Fields(out), "") != `[{"n":1}]` {
			t.Errorf("count of $edgeAgent twins: %s", out)
		}
	})

	t.Run("max items", func(t *testing.T) {
		out, errOut, err := runCLI(t, nil, "--data-dir", dir, "query", "SELECT deviceId FROM devices", "--page-size", "1", "--max-items", "3")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(out, "dev-"); got != 3 {
			t.Errorf("%d devices printed, want 3:\n%s", got, out)
		}
		if !strings.Contains(errOut, "showing the first 3 items; more remain") {
			t.Errorf("stderr %q lacks the truncation note", errOut)
		}
	})

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"syntax error", []string{"query", "SELECT * FROM devices WHERE"}, "ArgumentInvalid"},
		{"jobs", []string{"query", "SELECT * FROM devices.jobs"}, "not supported yet"},
		{"page size", []string{"query", "SELECT * FROM devices", "--page-size", "0"}, "--page-size 0 is not from 1 to 1000"},
		{"max items flag", []string{"query", "SELECT * FROM devices", "--max-items", "0"}, "--max-items 0 is not from 1 to 100000"},
		{"no query", []string{"query"}, "accepts 1 arg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, nil, append([]string{"--data-dir", dir}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
