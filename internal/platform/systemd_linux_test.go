package platform

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeSystemd is a systemctl stand-in: a shell script that records its
// arguments, answers `show` from a file, and fails one verb on request.
type fakeSystemd struct {
	dir      string // holds the script, its log and its answers
	unitDir  string
	runDir   string
	showFile string
	logFile  string
}

// newFakeSystemd writes the script. failVerb, when set, makes that verb
// print "Access denied" to standard error and exit 1.
func newFakeSystemd(t *testing.T, show, failVerb string) *fakeSystemd {
	t.Helper()
	dir := t.TempDir()
	f := &fakeSystemd{
		dir:      dir,
		unitDir:  filepath.Join(dir, "etc-systemd-system"),
		runDir:   filepath.Join(dir, "run-systemd-system"),
		showFile: filepath.Join(dir, "show"),
		logFile:  filepath.Join(dir, "calls"),
	}
	for _, d := range []string{f.unitDir, f.runDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.setShow(t, show)
	script := "#!/bin/sh\n" +
		"echo \"$*\" >> '" + f.logFile + "'\n" +
		"if [ \"$1\" = '" + failVerb + "' ]; then echo 'Access denied' >&2; exit 1; fi\n" +
		"if [ \"$1\" = show ]; then cat '" + f.showFile + "'; fi\n"
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeSystemd) setShow(t *testing.T, show string) {
	t.Helper()
	if err := os.WriteFile(f.showFile, []byte(show), 0o644); err != nil {
		t.Fatal(err)
	}
}

// connect returns a systemd driving the fake.
func (f *fakeSystemd) connect(t *testing.T) *systemd {
	t.Helper()
	s, err := connectSystemd(func(string) (string, error) { return filepath.Join(f.dir, "systemctl"), nil }, f.runDir, f.unitDir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// calls returns the argument lines systemctl was run with.
func (f *fakeSystemd) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(f.logFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

const (
	showArgs      = "show --no-pager --property=LoadState,ActiveState,SubState,FragmentPath iotedge.service"
	showNotFound  = "LoadState=not-found\nActiveState=inactive\nSubState=dead\nFragmentPath=\n"
	showInstalled = "LoadState=loaded\nActiveState=active\nSubState=running\nFragmentPath=%s\n"
)

func TestNoSystemctl(t *testing.T) {
	// A PATH without systemctl, as in a minimal container.
	t.Setenv("PATH", t.TempDir())
	ctx := context.Background()
	cfg := unitConfig("/usr/bin/iotedge", "service", "run")
	checks := []struct {
		name string
		call func() error
	}{
		{"install", func() error { return InstallService(ctx, cfg) }},
		{"uninstall", func() error { return UninstallService(ctx, cfg) }},
		{"start", func() error { return StartService(ctx, "iotedge") }},
		{"stop", func() error { return StopService(ctx, "iotedge") }},
		{"query", func() error {
			st, err := ServiceStatus(ctx, "iotedge")
			if st != StateUnknown {
				t.Errorf("ServiceStatus state = %q, want %q", st, StateUnknown)
			}
			return err
		}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if !errors.Is(err, ErrNoServiceManager) {
				t.Fatalf("error = %v, want ErrNoServiceManager", err)
			}
			for _, want := range []string{c.name + " service iotedge: ", "systemctl not found in PATH", "iotedge service run"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestSystemdNotInit(t *testing.T) {
	f := newFakeSystemd(t, showNotFound, "")
	missing := filepath.Join(f.dir, "no-run-systemd")
	_, err := connectSystemd(func(string) (string, error) { return filepath.Join(f.dir, "systemctl"), nil }, missing, f.unitDir)
	if !errors.Is(err, ErrNoServiceManager) {
		t.Fatalf("connectSystemd = %v, want ErrNoServiceManager", err)
	}
	if want := "systemd is not the init system (no directory " + missing + ")"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
}

func TestSystemdInstall(t *testing.T) {
	ctx := context.Background()
	cfg := unitConfig("/opt/muster/iotedge", "service", "run", "--config-file", "/etc/muster/config.toml")
	want, err := renderUnit(unitTemplate, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("writes, reloads and enables", func(t *testing.T) {
		f := newFakeSystemd(t, showNotFound, "")
		if err := f.connect(t).install(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(f.unitDir, "iotedge.service"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, string(got)); diff != "" {
			t.Errorf("unit file (-want +got):\n%s", diff)
		}
		fi, err := os.Stat(filepath.Join(f.unitDir, "iotedge.service"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("unit file mode = %v, want 0644", fi.Mode().Perm())
		}
		if diff := cmp.Diff([]string{showArgs, "daemon-reload", "enable iotedge.service"}, f.calls(t)); diff != "" {
			t.Errorf("systemctl calls (-want +got):\n%s", diff)
		}
		entries, err := os.ReadDir(f.unitDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("unit directory holds %d entries, want only the unit", len(entries))
		}
	})
	t.Run("already known to systemd", func(t *testing.T) {
		f := newFakeSystemd(t, strings.Replace(showInstalled, "%s", "/lib/systemd/system/iotedge.service", 1), "")
		err := f.connect(t).install(ctx, cfg)
		if !errors.Is(err, ErrAlreadyInstalled) {
			t.Fatalf("install = %v, want ErrAlreadyInstalled", err)
		}
		if !strings.Contains(err.Error(), "/lib/systemd/system/iotedge.service") {
			t.Errorf("error %q does not say where the unit is", err)
		}
		if _, err := os.Stat(filepath.Join(f.unitDir, "iotedge.service")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("install wrote a unit file over an installed service: %v", err)
		}
	})
	t.Run("unit file present but not loaded", func(t *testing.T) {
		f := newFakeSystemd(t, showNotFound, "")
		path := filepath.Join(f.unitDir, "iotedge.service")
		if err := os.WriteFile(path, []byte("# someone else's\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := f.connect(t).install(ctx, cfg); !errors.Is(err, ErrAlreadyInstalled) {
			t.Fatalf("install = %v, want ErrAlreadyInstalled", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "# someone else's\n" {
			t.Errorf("install overwrote %s", path)
		}
	})
	t.Run("enable fails and the unit is rolled back", func(t *testing.T) {
		f := newFakeSystemd(t, showNotFound, "enable")
		err := f.connect(t).install(ctx, cfg)
		if err == nil {
			t.Fatal("install succeeded, want the enable failure")
		}
		if want := "install service iotedge: run systemctl enable iotedge.service: exit status 1: Access denied"; err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
		if _, err := os.Stat(filepath.Join(f.unitDir, "iotedge.service")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("unit file left behind: %v", err)
		}
		if diff := cmp.Diff([]string{showArgs, "daemon-reload", "enable iotedge.service", "daemon-reload"}, f.calls(t)); diff != "" {
			t.Errorf("systemctl calls (-want +got):\n%s", diff)
		}
	})
	t.Run("invalid config", func(t *testing.T) {
		f := newFakeSystemd(t, showNotFound, "")
		bad := cfg
		bad.ExePath = "iotedge"
		if err := f.connect(t).install(ctx, bad); err == nil || !strings.Contains(err.Error(), "ExePath") {
			t.Errorf("install = %v, want an ExePath error", err)
		}
		if calls := f.calls(t); calls != nil {
			t.Errorf("systemctl ran for an invalid config: %q", calls)
		}
	})
}

func TestSystemdUninstall(t *testing.T) {
	ctx := context.Background()
	cfg := unitConfig("/usr/bin/iotedge", "service", "run")
	cases := []struct {
		name      string
		show      func(unitPath string) string
		unitFile  bool
		wantErr   error
		wantText  string
		wantCalls []string
	}{
		{
			name:      "installed by install",
			show:      func(p string) string { return strings.Replace(showInstalled, "%s", p, 1) },
			unitFile:  true,
			wantCalls: []string{showArgs, "disable --now iotedge.service", "daemon-reload"},
		},
		{
			name:      "unit file not yet loaded",
			show:      func(string) string { return showNotFound },
			unitFile:  true,
			wantCalls: []string{showArgs, "daemon-reload"},
		},
		{
			name:      "not installed",
			show:      func(string) string { return showNotFound },
			wantErr:   ErrNotInstalled,
			wantText:  "uninstall service iotedge: service not installed: systemd has no unit iotedge.service",
			wantCalls: []string{showArgs},
		},
		{
			name: "installed by a package",
			show: func(string) string {
				return strings.Replace(showInstalled, "%s", "/lib/systemd/system/iotedge.service", 1)
			},
			wantText:  "uninstall service iotedge: unit iotedge.service comes from /lib/systemd/system/iotedge.service, not from iotedge service install",
			wantCalls: []string{showArgs},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSystemd(t, "", "")
			path := filepath.Join(f.unitDir, "iotedge.service")
			f.setShow(t, tc.show(path))
			if tc.unitFile {
				if err := os.WriteFile(path, []byte(unitTemplate), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := f.connect(t).uninstall(ctx, cfg)
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("uninstall = %v, want %v", err, tc.wantErr)
			}
			if tc.wantText == "" && err != nil {
				t.Errorf("uninstall = %v", err)
			}
			if tc.wantText != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantText)) {
				t.Errorf("uninstall = %v, want %q", err, tc.wantText)
			}
			if diff := cmp.Diff(tc.wantCalls, f.calls(t)); diff != "" {
				t.Errorf("systemctl calls (-want +got):\n%s", diff)
			}
			_, statErr := os.Stat(path)
			if removed := errors.Is(statErr, os.ErrNotExist); tc.unitFile && tc.wantText == "" && !removed {
				t.Errorf("unit file not removed")
			}
		})
	}
}

func TestSystemdControlAndStatus(t *testing.T) {
	ctx := context.Background()
	installed := strings.Replace(showInstalled, "%s", "/etc/systemd/system/iotedge.service", 1)
	cases := []struct {
		name, verb, show, failVerb string
		wantErr                    error
		wantText                   string
		wantCalls                  []string
	}{
		{name: "start", verb: "start", show: installed, wantCalls: []string{showArgs, "start iotedge.service"}},
		{name: "stop", verb: "stop", show: installed, wantCalls: []string{showArgs, "stop iotedge.service"}},
		{name: "start not installed", verb: "start", show: showNotFound, wantErr: ErrNotInstalled,
			wantText: "start service iotedge: service not installed: systemd has no unit iotedge.service", wantCalls: []string{showArgs}},
		{name: "stop denied", verb: "stop", show: installed, failVerb: "stop",
			wantText: "stop service iotedge: run systemctl stop iotedge.service: exit status 1: Access denied", wantCalls: []string{showArgs, "stop iotedge.service"}},
		{name: "show denied", verb: "start", show: installed, failVerb: "show",
			wantText: "start service iotedge: run systemctl " + showArgs + ": exit status 1: Access denied", wantCalls: []string{showArgs}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSystemd(t, tc.show, tc.failVerb)
			err := f.connect(t).control(ctx, tc.verb, "iotedge")
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("control = %v, want %v", err, tc.wantErr)
			}
			gotText := ""
			if err != nil {
				gotText = err.Error()
			}
			if gotText != tc.wantText {
				t.Errorf("control error = %q, want %q", gotText, tc.wantText)
			}
			if diff := cmp.Diff(tc.wantCalls, f.calls(t)); diff != "" {
				t.Errorf("systemctl calls (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("status", func(t *testing.T) {
		f := newFakeSystemd(t, installed, "")
		u, err := f.connect(t).show(ctx, "iotedge")
		if err != nil {
			t.Fatal(err)
		}
		if u.state() != StateRunning {
			t.Errorf("state = %q, want %q", u.state(), StateRunning)
		}
	})
}
