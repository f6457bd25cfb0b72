package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/platform"
)

// The runtime's operating-system service.
const (
	// serviceName names the systemd unit iotedge.service and the Windows
	// service iotedge (Get-Service iotedge).
	serviceName        = "iotedge"
	serviceDisplayName = "Muster IoT Edge runtime"
	serviceDescription = "Provisions this IoT Edge device through the device provisioning service and runs its modules."
	// eventSource is the Windows event log source the service logs to in
	// the Application log: the one the IoT Edge 1.1 installer's
	// Get-IoTEdgeLog reads.
	eventSource = "iotedged"
)

// services is what the service commands need of the operating system;
// platformServices is the real one, tests use a fake.
type services interface {
	Install(ctx context.Context, cfg platform.ServiceConfig) error
	Uninstall(ctx context.Context, cfg platform.ServiceConfig) error
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	Status(ctx context.Context, name string) (platform.State, error)
	Run(name string, run func(ctx context.Context) error, log *slog.Logger) error
}

// platformServices drives the system's service manager through package
// platform.
type platformServices struct{}

func (platformServices) Install(ctx context.Context, cfg platform.ServiceConfig) error {
	return platform.InstallService(ctx, cfg)
}

func (platformServices) Uninstall(ctx context.Context, cfg platform.ServiceConfig) error {
	return platform.UninstallService(ctx, cfg)
}

func (platformServices) Start(ctx context.Context, name string) error {
	return platform.StartService(ctx, name)
}

func (platformServices) Stop(ctx context.Context, name string) error {
	return platform.StopService(ctx, name)
}

func (platformServices) Status(ctx context.Context, name string) (platform.State, error) {
	return platform.ServiceStatus(ctx, name)
}

func (platformServices) Run(name string, run func(ctx context.Context) error, log *slog.Logger) error {
	return platform.RunService(name, run, log)
}

// daemonFunc is the edge daemon `iotedge service run` runs until ctx is
// cancelled, reading its configuration from configFile.
type daemonFunc func(ctx context.Context, log *slog.Logger, configFile string) error

// installConfig describes the service to install: running exe with
// configFile made absolute, since the service does not start in the
// installer's working directory.
func installConfig(exe, configFile string) (platform.ServiceConfig, error) {
	abs, err := filepath.Abs(configFile)
	if err != nil {
		return platform.ServiceConfig{}, fmt.Errorf("install service %s: make --config-file %q absolute: %w", serviceName, configFile, err)
	}
	return serviceConfig(exe, abs), nil
}

// serviceConfig describes the service running exe: `service run`, with
// --config-file unless it is the default.
func serviceConfig(exe, configFile string) platform.ServiceConfig {
	args := []string{"service", "run"}
	if configFile != "" && configFile != config.DefaultConfigPath() {
		args = append(args, "--config-file", configFile)
	}
	return platform.ServiceConfig{
		Name:        serviceName,
		DisplayName: serviceDisplayName,
		Description: serviceDescription,
		ExePath:     exe,
		Args:        args,
		EventSource: eventSource,
	}
}

// commandLine renders a service's command line for people.
func commandLine(cfg platform.ServiceConfig) string {
	words := make([]string, 0, 1+len(cfg.Args))
	for _, w := range append([]string{cfg.ExePath}, cfg.Args...) {
		if w == "" || strings.ContainsAny(w, " \t\"'") {
			w = `"` + strings.ReplaceAll(w, `"`, `\"`) + `"`
		}
		words = append(words, w)
	}
	return strings.Join(words, " ")
}

// serviceHint adds the usual remedy to a service management error.
func serviceHint(err error) error {
	switch {
	case errors.Is(err, platform.ErrNotInstalled):
		return fmt.Errorf("%w; install it with \"iotedge service install\" or \"iotedge init --install-service\"", err)
	case errors.Is(err, platform.ErrAlreadyInstalled):
		return fmt.Errorf("%w; remove it first with \"iotedge service uninstall\"", err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w (run as root)", err)
	}
	return err
}

// newServiceCmd builds `iotedge service`, which manages the runtime's
// operating-system service; its hidden `run` is the service's entry point.
func newServiceCmd(stdout io.Writer, svcs services, daemon daemonFunc) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Install, remove, start and stop the runtime's system service",
		Long: `Install, remove, start and stop the runtime's system service.

On Linux the service is the systemd unit iotedge.service (see deploy/README.md);
on Windows it is the service iotedge, which Get-Service iotedge shows, logging
to the Application event log under the source iotedged (Get-IoTEdgeLog).
Installing and removing need root, or Administrator on Windows.`,
		Args: cobra.NoArgs,
	}
	configFile := config.DefaultConfigPath()
	install := &cobra.Command{
		Use:   "install",
		Short: "Install the service (started at boot, restarted on failure) without starting it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("install service %s: locate this executable: %w", serviceName, err)
			}
			cfg, err := installConfig(exe, configFile)
			if err != nil {
				return err
			}
			if err := svcs.Install(cmd.Context(), cfg); err != nil {
				return serviceHint(err)
			}
			_, err = fmt.Fprintf(stdout, "Installed service %s: %s\nStart it with \"iotedge service start\".\n", serviceName, commandLine(cfg))
			return err
		},
	}
	install.Flags().StringVarP(&configFile, "config-file", "c", configFile, "the configuration the service reads")
	uninstall := &cobra.Command{
		Use:   "uninstall",
		Short: "Stop and remove the service",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := svcs.Uninstall(cmd.Context(), serviceConfig("", "")); err != nil {
				return serviceHint(err)
			}
			_, err := fmt.Fprintf(stdout, "Removed service %s.\n", serviceName)
			return err
		},
	}
	start := &cobra.Command{
		Use:   "start",
		Short: "Start the service and wait until it runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return startService(cmd.Context(), stdout, svcs)
		},
	}
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop the service and wait until it stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return stopService(cmd.Context(), stdout, svcs)
		},
	}
	runConfig := config.DefaultConfigPath()
	run := &cobra.Command{
		Use:    "run",
		Short:  "Run the runtime as the service manager's service (its entry point)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, closeLog := serviceLogger(cmd.ErrOrStderr())
			defer closeLog()
			return svcs.Run(serviceName, func(ctx context.Context) error { return daemon(ctx, log, runConfig) }, log)
		},
	}
	run.Flags().StringVarP(&runConfig, "config-file", "c", runConfig, "the configuration the runtime reads")
	cmd.AddCommand(install, uninstall, start, stop, run)
	return cmd
}

// serviceLogger returns the service's logger, writing to stderr (which
// the journal captures under systemd) and, on Windows, to the event log;
// the daemon adds its log file. closeLog releases the event log.
func serviceLogger(stderr io.Writer) (log *slog.Logger, closeLog func()) {
	text := slog.NewTextHandler(stderr, nil)
	events, err := platform.EventLogHandler(eventSource, slog.LevelInfo)
	if err != nil {
		log = slog.New(text)
		log.Warn("logging to standard error only", "err", err)
		return log, func() {}
	}
	return slog.New(slog.NewMultiHandler(text, events)), func() { _ = events.Close() }
}

// startService starts the service, reporting progress as upstream
// `iotedge system restart` does.
func startService(ctx context.Context, stdout io.Writer, svcs services) error {
	return step(stdout, "Starting", "Started!", func() error { return svcs.Start(ctx, serviceName) })
}

// stopService stops the service, reporting progress as upstream
// `iotedge system stop` does.
func stopService(ctx context.Context, stdout io.Writer, svcs services) error {
	return step(stdout, "Stopping", "Stopped!", func() error { return svcs.Stop(ctx, serviceName) })
}

// step prints "<doing> iotedge...", runs f and ends the line with done or
// "Failed.".
func step(stdout io.Writer, doing, done string, f func() error) error {
	if _, err := fmt.Fprintf(stdout, "%s %s...", doing, serviceName); err != nil {
		return err
	}
	if err := f(); err != nil {
		fmt.Fprintln(stdout, "Failed.")
		return serviceHint(err)
	}
	_, err := fmt.Fprintln(stdout, done)
	return err
}

// installAndStartService is `iotedge init --install-service`: it installs
// the service running exe with configFile and starts it; a service that
// is installed already is restarted, so that it reads the new
// configuration.
func installAndStartService(ctx context.Context, stdout io.Writer, svcs services, exe, configFile string) error {
	cfg, err := installConfig(exe, configFile)
	if err != nil {
		return err
	}
	err = svcs.Install(ctx, cfg)
	switch {
	case errors.Is(err, platform.ErrAlreadyInstalled):
		if _, err := fmt.Fprintf(stdout, "Service %s is installed already; restarting it to apply the configuration.\n", serviceName); err != nil {
			return err
		}
		if err := stopService(ctx, stdout, svcs); err != nil {
			return err
		}
	case err != nil:
		return serviceHint(err)
	default:
		if _, err := fmt.Fprintf(stdout, "Installed service %s: %s\n", serviceName, commandLine(cfg)); err != nil {
			return err
		}
	}
	return startService(ctx, stdout, svcs)
}

// statusRow is one line of `iotedge system status`.
type statusRow struct{ name, state string }

// statusSection is one block of `iotedge system status`: a title and its
// rows.
type statusSection struct {
	title string
	rows  []statusRow
}

// statusSource produces sections of `iotedge system status`: the
// runtime's service as the service manager sees it, then the daemon's own
// view (provisioning, hub links, modules).
type statusSource func(ctx context.Context) []statusSection

// serviceStatusSource reports the runtime's service as the service
// manager sees it; a failure to ask becomes the row's state, as upstream
// shows "Down - <cause>".
func serviceStatusSource(svcs services) statusSource {
	return func(ctx context.Context) []statusSection {
		st, err := svcs.Status(ctx, serviceName)
		state := string(st)
		if err != nil {
			state = string(platform.StateUnknown) + " - " + err.Error()
		}
		return []statusSection{{title: "System services", rows: []statusRow{{serviceName, state}}}}
	}
}

// writeStatus renders sections as upstream `iotedge system status` does:
// the title, then each row indented four spaces with its name padded to
// 24 characters, a blank line after each section, then the hint.
func writeStatus(w io.Writer, sections []statusSection, hint string) error {
	var b strings.Builder
	for _, s := range sections {
		fmt.Fprintf(&b, "%s:\n", s.title)
		for _, r := range s.rows {
			fmt.Fprintf(&b, "    %-24s%s\n", r.name, r.state)
		}
		b.WriteString("\n")
	}
	b.WriteString(hint + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// newSystemCmd builds `iotedge system`: the runtime's service as a whole.
func newSystemCmd(stdout io.Writer, svcs services) *cobra.Command {
	return newSystemCmdWith(stdout, svcs, connectSocket)
}

// newSystemCmdWith is newSystemCmd reaching the daemon through connect.
func newSystemCmdWith(stdout io.Writer, svcs services, connect connectFunc) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "system",
		Short: "Show, restart, reprovision and stop the runtime, and show its log",
		Args:  cobra.NoArgs,
	}
	var statusFlags, restartFlags runtimeFlags
	sources := []statusSource{serviceStatusSource(svcs), daemonStatusSource(&statusFlags, connect)}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the runtime's service, its links to the hub and its modules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var sections []statusSection
			for _, src := range sources {
				sections = append(sections, src(cmd.Context())...)
			}
			return writeStatus(stdout, sections, logsHint)
		},
	}
	statusFlags.register(status)
	restart := &cobra.Command{
		Use:   "restart",
		Short: "Stop the runtime's service, then start it (without a service manager: restart the daemon)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := svcs.Status(cmd.Context(), serviceName)
			if errors.Is(err, platform.ErrNoServiceManager) || (err == nil && st == platform.StateNotInstalled) {
				return restartViaDaemon(cmd.Context(), stdout, &restartFlags, connect)
			}
			if err := stopService(cmd.Context(), stdout, svcs); err != nil {
				return err
			}
			return startService(cmd.Context(), stdout, svcs)
		},
	}
	restartFlags.register(restart)
	cmd.AddCommand(status, restart, newSystemLogsCmd(stdout), newReprovisionCmd(stdout, connect),
		&cobra.Command{
			Use:   "stop",
			Short: "Stop the runtime's service",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return stopService(cmd.Context(), stdout, svcs)
			},
		},
	)
	return cmd
}
