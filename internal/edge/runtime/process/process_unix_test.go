//go:build unix

package process

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

func TestResolveImage(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "sensor")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	lookPath := func(name string) (string, error) {
		if name == "sensor" {
			return exe, nil
		}
		return "", errors.New("executable file not found in $PATH")
	}
	tests := []struct {
		name    string
		image   string
		want    string
		wantErr string // substring of the error; "" = success
	}{
		{"absolute path", exe, exe, ""},
		{"process URI", "process://" + exe, exe, ""},
		{"bare name from PATH", "sensor", exe, ""},
		{"surrounding spaces", "  " + exe + " ", exe, ""},
		{"empty", "", "", "empty"},
		{"relative path", "bin/sensor", "", "neither an absolute executable path"},
		{"container image", "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5", "", "container image references need the docker runtime"},
		{"image with tag only", "sensor:1.0", "", "neither an absolute executable path"},
		{"bare name not in PATH", "nosuch", "", "not found in PATH"},
		{"URI with host", "process://host" + exe, "", "no host"},
		{"missing file", filepath.Join(dir, "missing"), "", "no such file"},
		{"directory", dir, "", "not a regular file"},
		{"not executable", plain, "", "not executable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveImage("m1", tc.image, lookPath)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("resolveImage(%q) = %q, %v; want %q", tc.image, got, err, tc.want)
				}
				return
			}
			var se *runtime.SpecError
			if !errors.As(err, &se) || se.Field != "settings.image" || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("resolveImage(%q) = %q, %v; want a settings.image error containing %q", tc.image, got, err, tc.wantErr)
			}
		})
	}
}

func TestStopGracePeriod(t *testing.T) {
	tests := []struct {
		name     string
		script   []string
		grace    time.Duration
		wantCode int
		wantLog  string
	}{
		{"stops on SIGTERM", []string{"trap", "ready", "sleep"}, 10 * time.Second, 0, "terminated"},
		{"killed after grace when SIGTERM is ignored", []string{"ignoreterm", "ready", "sleep"}, 200 * time.Millisecond, 128 + int(syscall.SIGKILL), ""},
		{"default SIGTERM action", []string{"ready", "sleep"}, 10 * time.Second, 128 + int(syscall.SIGTERM), ""},
		{"zero grace kills at once", []string{"trap", "ready", "sleep"}, 0, 128 + int(syscall.SIGKILL), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newRuntime(t, nil)
			ctx := context.Background()
			if err := r.Create(ctx, helperSpec(t, "m", cmdOptions(tc.script...))); err != nil {
				t.Fatal(err)
			}
			if err := r.Start(ctx, "m"); err != nil {
				t.Fatal(err)
			}
			waitLog(t, r, "m", "ready")
			if err := r.Stop(ctx, "m", tc.grace); err != nil {
				t.Fatal(err)
			}
			st, err := r.Inspect(ctx, "m")
			if err != nil {
				t.Fatal(err)
			}
			if st.State != runtime.StateExited || st.ExitCode != tc.wantCode {
				t.Errorf("after Stop: state %s exit code %d, want exited %d", st.State, st.ExitCode, tc.wantCode)
			}
			if tc.wantLog != "" && !strings.Contains(readLogs(t, r, "m", runtime.LogOptions{}), tc.wantLog) {
				t.Errorf("module did not log %q", tc.wantLog)
			}
			if err := r.Stop(ctx, "m", time.Second); err != nil {
				t.Errorf("Stop of a stopped module = %v", err)
			}
		})
	}
}

// processGone reports whether pid no longer runs (absent or a zombie).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}

func TestStopKillsTheProcessGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to tell zombies from live processes")
	}
	tests := []struct {
		name string
		stop func(r *Runtime) error
	}{
		{"stop", func(r *Runtime) error { return r.Stop(context.Background(), "tree", 5*time.Second) }},
		{"remove", func(r *Runtime) error { return r.Remove(context.Background(), "tree") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newRuntime(t, nil)
			ctx := context.Background()
			if err := r.Create(ctx, helperSpec(t, "tree", cmdOptions("spawn", "ready", "sleep"))); err != nil {
				t.Fatal(err)
			}
			if err := r.Start(ctx, "tree"); err != nil {
				t.Fatal(err)
			}
			waitLog(t, r, "tree", "ready")
			var child int
			for _, l := range strings.Split(readLogs(t, r, "tree", runtime.LogOptions{}), "\n") {
				if s, ok := strings.CutPrefix(l, "child "); ok {
					child, _ = strconv.Atoi(s)
				}
			}
			if child == 0 {
				t.Fatal("module did not report its child")
			}
			if processGone(child) {
				t.Fatal("child is not running before the stop")
			}
			if err := tc.stop(r); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for !processGone(child) {
				if time.Now().After(deadline) {
					t.Fatalf("grandchild %d survived the module's %s", child, tc.name)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestExitingLeaderTakesItsGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to tell zombies from live processes")
	}
	r, _ := newRuntime(t, nil)
	ctx := context.Background()
	if err := r.Create(ctx, helperSpec(t, "leader", cmdOptions("spawn", "exit", "0"))); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "leader"); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, r, "leader", runtime.StateExited)
	if st.ExitCode != 0 {
		t.Fatalf("exit code %d", st.ExitCode)
	}
	var child int
	for _, l := range strings.Split(readLogs(t, r, "leader", runtime.LogOptions{}), "\n") {
		if s, ok := strings.CutPrefix(l, "child "); ok {
			child, _ = strconv.Atoi(s)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for child != 0 && !processGone(child) {
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d of the exited module still runs", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
