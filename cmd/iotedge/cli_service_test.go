package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/edge/mgmt"
	"github.com/muster-iot/muster/internal/platform"
)

// fakeServices records what the commands ask of the service manager.
type fakeServices struct {
	calls     []string
	installed platform.ServiceConfig
	removed   platform.ServiceConfig
	state     platform.State
	errs      map[string]error // by call: install, uninstall, start, stop, status, run
}

func (f *fakeServices) err(call string) error {
	f.calls = append(f.calls, call)
	return f.errs[call]
}

func (f *fakeServices) Install(_ context.Context, cfg platform.ServiceConfig) error {
	f.installed = cfg
	return f.err("install")
}

func (f *fakeServices) Uninstall(_ context.Context, cfg platform.ServiceConfig) error {
	f.removed = cfg
	return f.err("uninstall")
}

func (f *fakeServices) Start(_ context.Context, name string) error { return f.err("start " + name) }
func (f *fakeServices) Stop(_ context.Context, name string) error  { return f.err("stop " + name) }

func (f *fakeServices) Status(_ context.Context, name string) (platform.State, error) {
	if err := f.err("status " + name); err != nil {
		return platform.StateUnknown, err
	}
	return f.state, nil
}

// Run runs the service body with a context that is already cancelled, as
// after an immediate stop request.
func (f *fakeServices) Run(name string, run func(ctx context.Context) error, log *slog.Logger) error {
	if err := f.err("run " + name); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return run(ctx)
}

// idleDaemon stands in for the edge daemon: it waits to be stopped.
func idleDaemon(ctx context.Context, _ *slog.Logger, _ string) error {
	<-ctx.Done()
	return nil
}

// noDaemon is a management API nobody answers on.
type noDaemon struct{ runtimeAPI }

func (noDaemon) Status(context.Context) (mgmt.Status, error) {
	return mgmt.Status{}, fmt.Errorf("%w (no answer on /test/mgmt.sock)", mgmt.ErrNotRunning)
}

func (noDaemon) Restart(context.Context) error {
	return fmt.Errorf("%w (no answer on /test/mgmt.sock)", mgmt.ErrNotRunning)
}

// runService runs the iotedge command line with svcs and daemon (and no
// daemon answering on the management socket), returning standard output
// and standard error.
func runService(t *testing.T, svcs services, daemon daemonFunc, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRootCmd(&stdout)
	// Replace the real service commands with ones using the fakes.
	for _, c := range root.Commands() {
		if c.Name() == "service" || c.Name() == "system" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(newServiceCmd(&stdout, svcs, daemon), newSystemCmdWith(&stdout, svcs, func(string) runtimeAPI { return noDaemon{} }))
	root.SetArgs(args)
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	err := root.Execute()
	return stdout.String(), stderr.String(), err
}

func TestSystemStatus(t *testing.T) {
	cases := []struct {
		name  string
		state platform.State
		err   error
		want  string
	}{
		{name: "running", state: platform.StateRunning, want: "    iotedge                 Running\n"},
		{name: "stopped", state: platform.StateStopped, want: "    iotedge                 Stopped\n"},
		{name: "not installed", state: platform.StateNotInstalled, want: "    iotedge                 Not installed\n"},
		{
			name: "no service manager",
			err:  fmt.Errorf("query service iotedge: %w: systemd is not the init system", platform.ErrNoServiceManager),
			want: "    iotedge                 Unknown - query service iotedge: no service manager: systemd is not the init system\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeServices{state: tc.state, errs: map[string]error{"status iotedge": tc.err}}
			out, _, err := runService(t, f, idleDaemon, "system", "status")
			if err != nil {
				t.Fatal(err)
			}
			want := "System services:\n" + tc.want + "\n" +
				"Runtime:\n    daemon                  Down - the iotedge daemon is not running (no answer on /test/mgmt.sock)\n\n" + logsHint + "\n"
			if diff := cmp.Diff(want, out); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteStatusSections(t *testing.T) {
	var b bytes.Buffer
	sections := []statusSection{
		{title: "System services", rows: []statusRow{{"iotedge", "Running"}}},
		{title: "Modules", rows: []statusRow{{"edgeAgent", "running"}, {"aModuleWithAVeryLongNameIndeed", "failed"}}},
	}
	if err := writeStatus(&b, sections, "hint"); err != nil {
		t.Fatal(err)
	}
	want := "System services:\n    iotedge                 Running\n\n" +
		"Modules:\n    edgeAgent               running\n    aModuleWithAVeryLongNameIndeedfailed\n\nhint\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestSystemRestartAndStop(t *testing.T) {
	notInstalled := fmt.Errorf("stop service iotedge: %w", platform.ErrNotInstalled)
	cases := []struct {
		name      string
		args      []string
		errs      map[string]error
		wantOut   string
		wantCalls []string
		wantErr   string
	}{
		{
			name:      "restart",
			args:      []string{"system", "restart"},
			wantOut:   "Stopping iotedge...Stopped!\nStarting iotedge...Started!\n",
			wantCalls: []string{"status iotedge", "stop iotedge", "start iotedge"},
		},
		{
			name:      "restart without a service manager restarts the daemon",
			args:      []string{"system", "restart"},
			errs:      map[string]error{"status iotedge": fmt.Errorf("query service iotedge: %w", platform.ErrNoServiceManager)},
			wantOut:   "Restarting iotedge...Failed.\n",
			wantCalls: []string{"status iotedge"},
			wantErr:   "the iotedge daemon is not running (no answer on /test/mgmt.sock)",
		},
		{
			name:      "restart of a missing service",
			args:      []string{"system", "restart"},
			errs:      map[string]error{"stop iotedge": notInstalled},
			wantOut:   "Stopping iotedge...Failed.\n",
			wantCalls: []string{"status iotedge", "stop iotedge"},
			wantErr:   `stop service iotedge: service not installed; install it with "iotedge service install" or "iotedge init --install-service"`,
		},
		{
			name:      "restart whose start fails",
			args:      []string{"system", "restart"},
			errs:      map[string]error{"start iotedge": errors.New("start service iotedge: the service stopped while starting")},
			wantOut:   "Stopping iotedge...Stopped!\nStarting iotedge...Failed.\n",
			wantCalls: []string{"status iotedge", "stop iotedge", "start iotedge"},
			wantErr:   "start service iotedge: the service stopped while starting",
		},
		{
			name:      "system stop",
			args:      []string{"system", "stop"},
			wantOut:   "Stopping iotedge...Stopped!\n",
			wantCalls: []string{"stop iotedge"},
		},
		{
			name:      "service start",
			args:      []string{"service", "start"},
			wantOut:   "Starting iotedge...Started!\n",
			wantCalls: []string{"start iotedge"},
		},
		{
			name:      "service stop without permission",
			args:      []string{"service", "stop"},
			errs:      map[string]error{"stop iotedge": fmt.Errorf("stop service iotedge: %w", fs.ErrPermission)},
			wantOut:   "Stopping iotedge...Failed.\n",
			wantCalls: []string{"stop iotedge"},
			wantErr:   "stop service iotedge: permission denied (run as root)",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeServices{errs: tc.errs}
			out, _, err := runService(t, f, idleDaemon, tc.args...)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tc.wantErr {
				t.Errorf("error = %q, want %q", gotErr, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantOut, out); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantCalls, f.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServiceInstallUninstall(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := platform.ServiceConfig{
		Name: "iotedge", DisplayName: serviceDisplayName, Description: serviceDescription,
		ExePath: exe, Args: []string{"service", "run"}, EventSource: "iotedged",
	}
	withConfig := base
	withConfig.Args = []string{"service", "run", "--config-file", "/srv/edge/config.toml"}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	withRelConfig := base
	withRelConfig.Args = []string{"service", "run", "--config-file", filepath.Join(cwd, "edge.toml")}
	cases := []struct {
		name          string
		args          []string
		errs          map[string]error
		wantInstalled platform.ServiceConfig
		wantRemoved   platform.ServiceConfig
		wantOut       string
		wantErr       string
	}{
		{
			name:          "install with the default configuration",
			args:          []string{"service", "install"},
			wantInstalled: base,
			wantOut:       "Installed service iotedge: " + commandLine(base) + "\nStart it with \"iotedge service start\".\n",
		},
		{
			name:          "install with the default configuration named explicitly",
			args:          []string{"service", "install", "--config-file", config.DefaultConfigPath()},
			wantInstalled: base,
			wantOut:       "Installed service iotedge: " + commandLine(base) + "\nStart it with \"iotedge service start\".\n",
		},
		{
			name:          "install with another configuration",
			args:          []string{"service", "install", "-c", "/srv/edge/config.toml"},
			wantInstalled: withConfig,
			wantOut:       "Installed service iotedge: " + commandLine(withConfig) + "\nStart it with \"iotedge service start\".\n",
		},
		{
			name:          "install with a relative configuration path",
			args:          []string{"service", "install", "-c", "edge.toml"},
			wantInstalled: withRelConfig,
			wantOut:       "Installed service iotedge: " + commandLine(withRelConfig) + "\nStart it with \"iotedge service start\".\n",
		},
		{
			name:          "install over an installed service",
			args:          []string{"service", "install"},
			errs:          map[string]error{"install": fmt.Errorf("install service iotedge: %w", platform.ErrAlreadyInstalled)},
			wantInstalled: base,
			wantErr:       `install service iotedge: service already installed; remove it first with "iotedge service uninstall"`,
		},
		{
			name:        "uninstall",
			args:        []string{"service", "uninstall"},
			wantRemoved: platform.ServiceConfig{Name: "iotedge", DisplayName: serviceDisplayName, Description: serviceDescription, Args: []string{"service", "run"}, EventSource: "iotedged"},
			wantOut:     "Removed service iotedge.\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeServices{errs: tc.errs}
			out, _, err := runService(t, f, idleDaemon, tc.args...)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tc.wantErr {
				t.Errorf("error = %q, want %q", gotErr, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantOut, out); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantInstalled, f.installed); diff != "" {
				t.Errorf("installed config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRemoved, f.removed); diff != "" {
				t.Errorf("removed config (-want +got):\n%s", diff)
			}
			if tc.wantInstalled.Name != "" {
				if err := tc.wantInstalled.Validate(); err != nil {
					t.Errorf("the installed config is invalid: %v", err)
				}
			}
		})
	}
}

func TestServiceRun(t *testing.T) {
	t.Run("the daemon runs with the configuration", func(t *testing.T) {
		f := &fakeServices{}
		var gotConfig string
		daemon := func(ctx context.Context, log *slog.Logger, configFile string) error {
			gotConfig = configFile
			log.Info("daemon ran")
			<-ctx.Done()
			return nil
		}
		_, stderr, err := runService(t, f, daemon, "service", "run", "--config-file", "/srv/edge/config.toml")
		if err != nil {
			t.Fatal(err)
		}
		if gotConfig != "/srv/edge/config.toml" {
			t.Errorf("daemon config file = %q", gotConfig)
		}
		if diff := cmp.Diff([]string{"run iotedge"}, f.calls); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		if !strings.Contains(stderr, "msg=\"daemon ran\"") {
			t.Errorf("the daemon's log is not on standard error: %q", stderr)
		}
	})
	t.Run("the real daemon fails on a missing configuration, naming it", func(t *testing.T) {
		f := &fakeServices{}
		missing := filepath.Join(t.TempDir(), "config.toml")
		_, _, err := runService(t, f, runDaemon, "service", "run", "--config-file", missing)
		if err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("error = %v, want one naming %s", err, missing)
		}
	})
	t.Run("a run failure is the command's", func(t *testing.T) {
		f := &fakeServices{errs: map[string]error{"run iotedge": errors.New("run service iotedge: boom")}}
		if _, _, err := runService(t, f, idleDaemon, "service", "run"); err == nil || err.Error() != "run service iotedge: boom" {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("run is hidden", func(t *testing.T) {
		out, _, err := runService(t, &fakeServices{}, idleDaemon, "service", "--help")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "  run ") {
			t.Errorf("service help lists run:\n%s", out)
		}
		for _, want := range []string{"install", "uninstall", "start", "stop"} {
			if !strings.Contains(out, "  "+want+" ") {
				t.Errorf("service help lacks %s:\n%s", want, out)
			}
		}
	})
}

func TestInstallAndStartService(t *testing.T) {
	const exe = "/usr/bin/iotedge"
	cases := []struct {
		name      string
		errs      map[string]error
		wantOut   string
		wantCalls []string
		wantErr   string
	}{
		{
			name:      "fresh install",
			wantOut:   "Installed service iotedge: /usr/bin/iotedge service run --config-file /srv/config.toml\nStarting iotedge...Started!\n",
			wantCalls: []string{"install", "start iotedge"},
		},
		{
			name: "installed already",
			errs: map[string]error{"install": fmt.Errorf("install service iotedge: %w", platform.ErrAlreadyInstalled)},
			wantOut: "Service iotedge is installed already; restarting it to apply the configuration.\n" +
				"Stopping iotedge...Stopped!\nStarting iotedge...Started!\n",
			wantCalls: []string{"install", "stop iotedge", "start iotedge"},
		},
		{
			name:      "no service manager",
			errs:      map[string]error{"install": fmt.Errorf("install service iotedge: %w: systemctl not found in PATH", platform.ErrNoServiceManager)},
			wantCalls: []string{"install"},
			wantErr:   "install service iotedge: no service manager: systemctl not found in PATH",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeServices{errs: tc.errs}
			var out bytes.Buffer
			err := installAndStartService(context.Background(), &out, f, exe, "/srv/config.toml")
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tc.wantErr {
				t.Errorf("error = %q, want %q", gotErr, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantOut, out.String()); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantCalls, f.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInitHasInstallServiceFlag(t *testing.T) {
	cmd, _, err := newRootCmd(&bytes.Buffer{}).Find([]string{"init"})
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Flags().Lookup("install-service") == nil {
		t.Error("iotedge init has no --install-service flag")
	}
}

func TestCommandLine(t *testing.T) {
	cases := []struct {
		cfg  platform.ServiceConfig
		want string
	}{
		{platform.ServiceConfig{ExePath: "/usr/bin/iotedge", Args: []string{"service", "run"}}, "/usr/bin/iotedge service run"},
		{platform.ServiceConfig{ExePath: `C:\Program Files\iotedge.exe`, Args: []string{"service", "run", "-c", `C:\my config.toml`}},
			`"C:\Program Files\iotedge.exe" service run -c "C:\my config.toml"`},
		{platform.ServiceConfig{ExePath: "/x", Args: []string{`say "hi"`}}, `/x "say \"hi\""`},
		{platform.ServiceConfig{ExePath: "/x", Args: []string{""}}, `/x ""`},
	}
	for _, tc := range cases {
		if got := commandLine(tc.cfg); got != tc.want {
			t.Errorf("commandLine(%q, %q) = %s, want %s", tc.cfg.ExePath, tc.cfg.Args, got, tc.want)
		}
	}
}
