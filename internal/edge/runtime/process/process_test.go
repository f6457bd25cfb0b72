package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

func TestParseCreateOptions(t *testing.T) {
	abs, _ := filepath.Abs(t.TempDir())
	tests := []struct {
		name      string
		raw       string
		want      createOptions
		wantField string // "" = success
	}{
		{name: "empty", raw: "", want: createOptions{}},
		{name: "empty object", raw: "{}", want: createOptions{}},
		{name: "cmd array", raw: `{"Cmd":["--interval","5"]}`, want: createOptions{Cmd: []string{"--interval", "5"}}},
		{name: "cmd string is one argument", raw: `{"Cmd":"--verbose"}`, want: createOptions{Cmd: []string{"--verbose"}}},
		{name: "env and workdir", raw: `{"Env":["A=b","C="],"WorkingDir":` + quote(abs) + `}`, want: createOptions{Env: []string{"A=b", "C="}, WorkingDir: abs}},
		{name: "field names are case-insensitive", raw: `{"cmd":["x"],"env":["A=1"]}`, want: createOptions{Cmd: []string{"x"}, Env: []string{"A=1"}}},
		{name: "docker-only fields are ignored", raw: `{"HostConfig":{"PortBindings":{"8883/tcp":[{"HostPort":"8883"}]}},"ExposedPorts":{"8883/tcp":{}}}`, want: createOptions{}},
		{name: "empty entrypoint is fine", raw: `{"Entrypoint":[]}`, want: createOptions{}},
		{name: "not an object", raw: `["x"]`, wantField: "settings.createOptions"},
		{name: "not JSON", raw: `{"Cmd":`, wantField: "settings.createOptions"},
		{name: "cmd of numbers", raw: `{"Cmd":[1,2]}`, wantField: "settings.createOptions.Cmd"},
		{name: "env entry without =", raw: `{"Env":["A=b","BROKEN"]}`, wantField: "settings.createOptions.Env[1]"},
		{name: "env entry without name", raw: `{"Env":["=x"]}`, wantField: "settings.createOptions.Env[0]"},
		{name: "env not an array", raw: `{"Env":"A=b"}`, wantField: "settings.createOptions.Env"},
		{name: "relative working dir", raw: `{"WorkingDir":"data"}`, wantField: "settings.createOptions.WorkingDir"},
		{name: "entrypoint", raw: `{"Entrypoint":["/bin/sh"]}`, wantField: "settings.createOptions.Entrypoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCreateOptions("m1", tc.raw)
			if tc.wantField == "" {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("options (-want +got):\n%s", diff)
				}
				return
			}
			var se *runtime.SpecError
			if !errors.As(err, &se) || !errors.Is(err, runtime.ErrInvalidSpec) {
				t.Fatalf("error %v is not a *runtime.SpecError", err)
			}
			if se.Field != tc.wantField || se.Module != "m1" {
				t.Errorf("error names module %q field %q, want m1 %q (%v)", se.Module, se.Field, tc.wantField, err)
			}
		})
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestDirName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"tempSensor", "tempSensor"},
		{"my-module_1.2", "my-module_1.2"},
		{"a/b", "a%2Fb"},
		{`c:\d`, "c%3A%5Cd"},
		{"..", "%2E%2E"},
		{".", "%2E"},
		{"x*?", "x%2A%3F"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := dirName(tc.in); got != tc.want {
				t.Errorf("dirName(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestRunCapturesOutputEnvAndExitCode(t *testing.T) {
	r, _ := newRuntime(t, func(o *Options) {
		o.Environ = func() []string { return []string{"PATH=/inherited", "SECRET=agent-only"} }
		o.InheritEnv = []string{"PATH"}
	})
	ctx := context.Background()
	spec := helperSpec(t, "m1", `{"Env":["FOO=fromopts","BAR=opts"],"Cmd":["print","hello","eprint","oops","env","FOO","env","BAR","env","PATH","env","SECRET","env","IOTEDGE_MODULEID","pwd","exit","3"]}`)
	spec.Env["FOO"] = "fromdesired"
	spec.Env["IOTEDGE_MODULEID"] = "m1"
	if err := r.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	st, err := r.Inspect(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != runtime.StateCreated || !strings.HasPrefix(st.ImageHash, "sha256:") || len(st.ImageHash) != len("sha256:")+64 {
		t.Fatalf("after create: state %s, image hash %q", st.State, st.ImageHash)
	}
	if err := r.Start(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, r, "m1", runtime.StateExited)
	if st.ExitCode != 3 {
		t.Errorf("exit code %d, want 3", st.ExitCode)
	}
	if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
		t.Errorf("times: started %v finished %v", st.StartedAt, st.FinishedAt)
	}
	got := strings.Split(strings.TrimSuffix(readLogs(t, r, "m1", runtime.LogOptions{}), "\n"), "\n")
	// stdout lines keep their order; stderr comes through its own pipe,
	// so only its presence is certain.
	var stdout []string
	stderr := 0
	for _, l := range got {
		if l == "oops" {
			stderr++
			continue
		}
		stdout = append(stdout, l)
	}
	if stderr != 1 {
		t.Errorf("stderr line captured %d times, want 1 (%q)", stderr, got)
	}
	moduleDir := evalSymlinks(t, filepath.Join(r.opts.Dir, "m1"))
	if n := len(stdout); n > 0 {
		stdout[n-1] = evalSymlinks(t, stdout[n-1])
	}
	want := []string{"hello", "FOO=fromdesired", "BAR=opts", "PATH=/inherited", "SECRET unset", "IOTEDGE_MODULEID=m1", moduleDir}
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("stdout lines (-want +got):\n%s", diff)
	}
}

func evalSymlinks(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatalf("resolve %q: %v", p, err)
	}
	return r
}

func TestCreateErrors(t *testing.T) {
	r, _ := newRuntime(t, nil)
	ctx := context.Background()
	if err := r.Create(ctx, helperSpec(t, "dup", "")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		spec      runtime.ModuleSpec
		wantErr   error
		wantField string
	}{
		{"duplicate", helperSpec(t, "dup", ""), runtime.ErrExists, ""},
		{"container image", runtime.ModuleSpec{Name: "c", Image: "mcr.microsoft.com/azureiotedge-agent:1.5"}, runtime.ErrInvalidSpec, "settings.image"},
		{"bad createOptions", runtime.ModuleSpec{Name: "c", Image: testExe(t), CreateOptions: `{"Entrypoint":["x"]}`}, runtime.ErrInvalidSpec, "settings.createOptions.Entrypoint"},
		{"empty name", runtime.ModuleSpec{Name: "", Image: testExe(t)}, runtime.ErrInvalidSpec, "name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Create(ctx, tc.spec)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Create = %v, want %v", err, tc.wantErr)
			}
			var se *runtime.SpecError
			if tc.wantField != "" && (!errors.As(err, &se) || se.Field != tc.wantField) {
				t.Errorf("Create = %v, want field %s", err, tc.wantField)
			}
		})
	}
	for _, op := range []func() error{
		func() error { return r.Start(ctx, "nope") },
		func() error { return r.Stop(ctx, "nope", time.Second) },
		func() error { return r.Remove(ctx, "nope") },
		func() error { _, err := r.Inspect(ctx, "nope"); return err },
		func() error { _, err := r.Logs(ctx, "nope", runtime.LogOptions{}); return err },
	} {
		if err := op(); !isNotFound(err) {
			t.Errorf("operation on a missing module = %v, want ErrNotFound", err)
		}
	}
}

func TestLogsTailAndSince(t *testing.T) {
	clock := &tickClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r, _ := newRuntime(t, func(o *Options) { o.Now = clock.Now })
	ctx := context.Background()
	if err := r.Create(ctx, helperSpec(t, "spam", cmdOptions("spam", "10"))); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "spam"); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "spam", runtime.StateExited)
	all := readLogs(t, r, "spam", runtime.LogOptions{Timestamps: true})
	lines := strings.Split(strings.TrimSuffix(all, "\n"), "\n")
	if len(lines) != 10 {
		t.Fatalf("got %d lines: %q", len(lines), all)
	}
	// Take the capture time of line 7 from the timestamped output.
	ts, _, _ := strings.Cut(lines[7], " ")
	since, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts runtime.LogOptions
		want string
	}{
		{"tail", runtime.LogOptions{Tail: 3}, "line-007\nline-008\nline-009\n"},
		{"since", runtime.LogOptions{Since: since}, "line-007\nline-008\nline-009\n"},
		{"until", runtime.LogOptions{Until: since, Tail: 1}, "line-006\n"},
		{"timestamps", runtime.LogOptions{Tail: 1, Timestamps: true}, lines[9] + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, readLogs(t, r, "spam", tc.opts)); diff != "" {
				t.Errorf("logs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogsRotateAndKeepOrder(t *testing.T) {
	r, dir := newRuntime(t, func(o *Options) { o.LogMaxBytes = 400; o.LogKeep = 3 })
	ctx := context.Background()
	if err := r.Create(ctx, helperSpec(t, "big", cmdOptions("spam", "200"))); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, "big", runtime.StateExited)
	entries, err := os.ReadDir(filepath.Join(dir, "big", "logs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Errorf("%d log segments kept, want 3", len(entries))
	}
	got := strings.Split(strings.TrimSuffix(readLogs(t, r, "big", runtime.LogOptions{}), "\n"), "\n")
	if len(got) == 0 || got[len(got)-1] != "line-199" {
		t.Fatalf("last line %q, want line-199", got[len(got)-1])
	}
	// What is kept is a contiguous, ordered suffix of the output.
	first := 200 - len(got)
	for i, l := range got {
		if want := lineName(first + i); l != want {
			t.Fatalf("line %d is %q, want %q", i, l, want)
		}
	}
}

func lineName(i int) string { return fmt.Sprintf("line-%03d", i) }

func TestLogsFollowEndsWithTheRun(t *testing.T) {
	r, _ := newRuntime(t, nil)
	ctx := context.Background()
	if err := r.Create(ctx, helperSpec(t, "f", cmdOptions("print", "first", "sleep"))); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, r, "f", "first")
	rc, err := r.Logs(ctx, "f", runtime.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, len("first\n"))
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first read %q, %v", buf, err)
	}
	if err := r.Stop(ctx, "f", 0); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rc)
	if err != nil || len(rest) != 0 {
		t.Errorf("after the run ended: %q, %v; want EOF", rest, err)
	}
}

func TestLogsFollowClosedByReader(t *testing.T) {
	r, _ := newRuntime(t, nil)
	ctx := context.Background()
	if err := r.Create(ctx, helperSpec(t, "f", cmdOptions("sleep"))); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	rc, err := r.Logs(ctx, "f", runtime.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close succeeded")
	}
}

func TestReloadAndRemove(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	r1, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	spec := helperSpec(t, "keep", cmdOptions("print", "run"))
	spec.Version = "1.2"
	spec.RegistryAuth = &runtime.RegistryAuth{Address: "r.example", Username: "u", Password: "never-persisted"}
	if err := r1.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := r1.Start(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	waitState(t, r1, "keep", runtime.StateExited)
	if err := r1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "keep", specFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "never-persisted") {
		t.Error("registry password persisted in spec.json")
	}

	r2, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close(ctx)
	list, err := r2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].State != runtime.StateCreated {
		t.Fatalf("reloaded list %+v", list)
	}
	wantSpec := spec
	wantSpec.RegistryAuth = nil
	if diff := cmp.Diff(wantSpec, list[0].Spec); diff != "" {
		t.Errorf("reloaded spec (-want +got):\n%s", diff)
	}
	if got := readLogs(t, r2, "keep", runtime.LogOptions{}); got != "run\n" {
		t.Errorf("logs survive a reload: got %q", got)
	}
	if err := r2.Start(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	waitState(t, r2, "keep", runtime.StateExited)
	if got := readLogs(t, r2, "keep", runtime.LogOptions{}); got != "run\nrun\n" {
		t.Errorf("logs after a second run: %q", got)
	}
	if err := r2.Remove(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keep")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory still there: %v", err)
	}
	if err := r2.Remove(ctx, "keep"); !isNotFound(err) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
}

func TestLoadSkipsCorruptState(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage":  "{not json",
		"mismatch": `{"name":"other","image":"/x","createOptions":"{}","executable":"/x"}`,
	} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, specFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	list, err := r.List(context.Background())
	if err != nil || len(list) != 0 {
		t.Errorf("List = %+v, %v; want empty", list, err)
	}
}

func TestStartFailureIsRecorded(t *testing.T) {
	r, dir := newRuntime(t, nil)
	ctx := context.Background()
	exe := filepath.Join(dir, "copy-of-helper")
	b, err := os.ReadFile(testExe(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o700); err != nil {
		t.Fatal(err)
	}
	spec := helperSpec(t, "gone", "")
	spec.Image = exe
	if err := r.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "gone"); err == nil {
		t.Fatal("Start of a deleted executable succeeded")
	}
	st, err := r.Inspect(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != runtime.StateExited || st.ExitCode != 127 || st.Description == "" {
		t.Errorf("state after failed start: %+v", st)
	}
}

func TestCloseStopsModules(t *testing.T) {
	dir := t.TempDir()
	r, err := New(Options{Dir: dir, StopGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		if err := r.Create(ctx, helperSpec(t, name, cmdOptions("sleep"))); err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	list, _ := r.List(ctx)
	for _, st := range list {
		if st.State != runtime.StateExited {
			t.Errorf("module %s is %s after Close", st.Name, st.State)
		}
	}
	if err := r.Start(ctx, "a"); err == nil {
		t.Error("Start after Close succeeded")
	}
}
