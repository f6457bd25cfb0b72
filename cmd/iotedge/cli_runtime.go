package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/edge/daemon"
	"github.com/muster-iot/muster/internal/edge/mgmt"
	"github.com/muster-iot/muster/internal/edge/reconcile"
	"github.com/muster-iot/muster/internal/edge/runtime"
)

// runtimeAPI is what the CLI asks of the running daemon through its
// management socket; *mgmt.Client implements it.
type runtimeAPI interface {
	Status(ctx context.Context) (mgmt.Status, error)
	Modules(ctx context.Context) ([]reconcile.ListRow, error)
	Logs(ctx context.Context, module string, opts runtime.LogOptions) (io.ReadCloser, error)
	RestartModule(ctx context.Context, module string) error
	Reprovision(ctx context.Context) (mgmt.Reprovisioned, error)
	Restart(ctx context.Context) error
}

// connectFunc opens the management API at a socket path; tests replace it.
type connectFunc func(socket string) runtimeAPI

// connectSocket is the real connectFunc.
func connectSocket(socket string) runtimeAPI { return mgmt.NewClient(socket) }

// runtimeFlags locate the daemon: its configuration (whose homedir holds
// the socket) or the socket itself (upstream's -H, --host).
type runtimeFlags struct {
	configFile string
	host       string
}

func (f *runtimeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.configFile, "config-file", "c", config.DefaultConfigPath(), "the runtime's configuration (its homedir holds the management socket)")
	cmd.Flags().StringVarP(&f.host, "host", "H", os.Getenv("IOTEDGE_HOST"), "the daemon's management socket, unix:///path/to/mgmt.sock (default: mgmt.sock in the configuration's homedir); env IOTEDGE_HOST")
}

// socket returns the management socket path.
func (f *runtimeFlags) socket() (string, error) {
	if f.host != "" {
		return mgmt.ParseHost(f.host)
	}
	return mgmt.SocketPath(homedirOf(f.configFile)), nil
}

// homedirOf reads the homedir of a configuration file, or the default
// when the file cannot be read (the CLI may run without the right to
// read it; the socket is where the daemon's homedir is).
func homedirOf(configFile string) string {
	b, err := os.ReadFile(configFile)
	if err != nil {
		return config.DefaultHomedir()
	}
	c, err := config.Parse(b)
	if err != nil {
		return config.DefaultHomedir()
	}
	return c.Homedir
}

// api connects to the daemon the flags name.
func (f *runtimeFlags) api(connect connectFunc) (runtimeAPI, error) {
	s, err := f.socket()
	if err != nil {
		return nil, err
	}
	return connect(s), nil
}

// runDaemon is the edge daemon (`iotedge daemon`, `iotedge service run`).
func runDaemon(ctx context.Context, log *slog.Logger, configFile string) error {
	return daemon.Run(ctx, daemon.Options{ConfigFile: configFile, Version: version, Logger: log})
}

// newDaemonCmd builds `iotedge daemon`.
func newDaemonCmd(run daemonFunc) *cobra.Command {
	configFile := config.DefaultConfigPath()
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the edge runtime in the foreground (what the iotedge service runs)",
		Long: `Run the edge runtime in the foreground until interrupted (Ctrl-C or SIGTERM).

The daemon provisions the device through DPS (or uses the cached assignment,
as auto_reprovisioning_mode rules), connects to the assigned hub with the
device's credential, runs the edge agent and the edge hub, and runs the
modules the hub's deployment names. It serves the management socket in the
homedir that "iotedge list", "iotedge logs" and "iotedge system …" use, and
logs to standard error and to its log files (iotedge system logs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			return run(cmd.Context(), log, configFile)
		},
	}
	cmd.Flags().StringVarP(&configFile, "config-file", "c", configFile, "the configuration the runtime reads")
	return cmd
}

// newListCmd builds `iotedge list`.
func newListCmd(stdout io.Writer, connect connectFunc) *cobra.Command {
	var f runtimeFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the modules and their states",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := f.api(connect)
			if err != nil {
				return err
			}
			rows, err := api.Modules(cmd.Context())
			if err != nil {
				return fmt.Errorf("list: %w", err)
			}
			return reconcile.WriteList(stdout, rows)
		},
	}
	f.register(cmd)
	return cmd
}

// newRestartCmd builds `iotedge restart <module>`.
func newRestartCmd(stdout io.Writer, connect connectFunc) *cobra.Command {
	var f runtimeFlags
	cmd := &cobra.Command{
		Use:   "restart MODULE",
		Short: "Stop and start a module",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := f.api(connect)
			if err != nil {
				return err
			}
			if err := api.RestartModule(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("restart %s: %w", args[0], err)
			}
			_, err = fmt.Fprintf(stdout, "Restarted %s\n\n", args[0])
			return err
		},
	}
	f.register(cmd)
	return cmd
}

// logFlags are the selection flags of `iotedge logs` and `system logs`.
type logFlags struct {
	tail, since, until string
	follow, timestamps bool
}

func (l *logFlags) register(cmd *cobra.Command, defaultSince string) {
	cmd.Flags().StringVar(&l.tail, "tail", "all", "number of lines to show from the end, or all")
	cmd.Flags().StringVar(&l.since, "since", defaultSince, `show lines since: a duration ("1 day", "90 minutes", "2 days 3 hours", "10m"), an RFC 3339 time or UNIX seconds`)
	cmd.Flags().StringVar(&l.until, "until", "", "show lines before: a duration ago, an RFC 3339 time or UNIX seconds")
	cmd.Flags().BoolVarP(&l.follow, "follow", "f", false, "keep showing new lines")
	cmd.Flags().BoolVarP(&l.timestamps, "timestamps", "t", false, "prefix each line with when it was written")
}

// options turns the flags into a selection at now.
func (l *logFlags) options(now time.Time) (runtime.LogOptions, error) {
	o := runtime.LogOptions{Follow: l.follow, Timestamps: l.timestamps}
	if l.tail != "" && l.tail != "all" {
		n, err := strconv.Atoi(l.tail)
		if err != nil || n < 0 {
			return o, fmt.Errorf("--tail %q is not a number of lines or all", l.tail)
		}
		o.Tail = n
	}
	var err error
	if l.since != "" {
		if o.Since, err = parseWhen(l.since, now); err != nil {
			return o, fmt.Errorf("--since: %w", err)
		}
	}
	if l.until != "" {
		if o.Until, err = parseWhen(l.until, now); err != nil {
			return o, fmt.Errorf("--until: %w", err)
		}
	}
	return o, nil
}

// newLogsCmd builds `iotedge logs <module>`.
func newLogsCmd(stdout io.Writer, connect connectFunc) *cobra.Command {
	var f runtimeFlags
	var l logFlags
	cmd := &cobra.Command{
		Use:   "logs MODULE",
		Short: "Show a module's log (edgeAgent: the daemon's)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := l.options(time.Now())
			if err != nil {
				return err
			}
			api, err := f.api(connect)
			if err != nil {
				return err
			}
			rc, err := api.Logs(cmd.Context(), args[0], opts)
			if err != nil {
				return fmt.Errorf("logs %s: %w", args[0], err)
			}
			defer rc.Close()
			if _, err := io.Copy(stdout, rc); err != nil && cmd.Context().Err() == nil {
				return fmt.Errorf("logs %s: %w", args[0], err)
			}
			return nil
		},
	}
	f.register(cmd)
	l.register(cmd, "1 day")
	return cmd
}

// newSystemLogsCmd builds `iotedge system logs`: the daemon's own log,
// read from its files, so it works while the daemon is down.
func newSystemLogsCmd(stdout io.Writer) *cobra.Command {
	var configFile string
	var l logFlags
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Show the runtime daemon's log (structured, from its rotated files)",
		Long: `Show the runtime daemon's log: its JSON records, read from the rotated
files under the homedir (logs/iotedged.*.log). The service manager keeps the
same records too (` + logsHint + `).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := l.options(time.Now())
			if err != nil {
				return err
			}
			err = daemon.CopyLog(cmd.Context(), stdout, homedirOf(configFile), opts)
			if err != nil && cmd.Context().Err() == nil {
				return fmt.Errorf("system logs: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configFile, "config-file", "c", config.DefaultConfigPath(), "the runtime's configuration (its homedir holds the logs)")
	l.register(cmd, "")
	return cmd
}

// newReprovisionCmd builds `iotedge system reprovision`.
func newReprovisionCmd(stdout io.Writer, connect connectFunc) *cobra.Command {
	var f runtimeFlags
	cmd := &cobra.Command{
		Use:   "reprovision",
		Short: "Register with DPS again and reconnect with the result",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := f.api(connect)
			if err != nil {
				return err
			}
			r, err := api.Reprovision(cmd.Context())
			if err != nil {
				return fmt.Errorf("reprovision: %w", err)
			}
			what := "the same hub and device"
			if r.Changed {
				what = "a new hub or device"
			}
			_, err = fmt.Fprintf(stdout, "Successfully reprovisioned with IoT Hub.\nAssigned to hub %s as device %s (%s).\n", r.Hub, r.DeviceID, what)
			return err
		},
	}
	f.register(cmd)
	return cmd
}

// daemonStatusSource reports the daemon's state as status sections: the
// runtime (provisioning and hub links) and the modules.
func daemonStatusSource(f *runtimeFlags, connect connectFunc) func(ctx context.Context) []statusSection {
	return func(ctx context.Context) []statusSection {
		title := "Runtime"
		api, err := f.api(connect)
		if err != nil {
			return []statusSection{{title: title, rows: []statusRow{{"daemon", "Down - " + err.Error()}}}}
		}
		st, err := api.Status(ctx)
		if err != nil {
			return []statusSection{{title: title, rows: []statusRow{{"daemon", "Down - " + err.Error()}}}}
		}
		now := time.Now()
		rows := []statusRow{{"daemon", fmt.Sprintf("Running (pid %d, version %s, up %s)", st.PID, st.Version, reconcile.Humanize(now.Sub(st.StartedAt), false))}}
		p := st.Provisioning
		switch p.State {
		case "assigned":
			rows = append(rows, statusRow{"provisioning", fmt.Sprintf("Assigned to hub %s as device %s (%s)", p.Hub, p.DeviceID, p.Source)})
		default:
			state := strings.ToUpper(p.State[:min(1, len(p.State))]) + p.State[min(1, len(p.State)):]
			if p.Error != "" {
				state += " - " + p.Error
			}
			rows = append(rows, statusRow{"provisioning", state})
		}
		rows = append(rows, statusRow{"hub connection", connectionState(st.Device)})
		agent := connectionState(st.Agent)
		if st.AppliedVersion > 0 {
			agent += fmt.Sprintf("; deployment version %d applied", st.AppliedVersion)
		}
		if st.AgentError != "" {
			agent += "; " + st.AgentError
		}
		rows = append(rows, statusRow{"edge agent", agent}, statusRow{"edge hub", "Listening on " + st.EdgeHubAddress})
		mods := make([]statusRow, 0, len(st.Modules))
		for _, m := range st.Modules {
			state := m.Status
			if m.Description != "" {
				state += " - " + m.Description
			}
			mods = append(mods, statusRow{m.Name, state})
		}
		return []statusSection{{title: title, rows: rows}, {title: "Modules", rows: mods}}
	}
}

// connectionState renders one hub link for the status.
func connectionState(c mgmt.Connection) string {
	switch {
	case c.Identity == "":
		return "Not started"
	case c.Connected:
		return "Connected as " + c.Identity
	case c.LastError != "":
		return "Disconnected - " + c.LastError
	default:
		return "Connecting as " + c.Identity
	}
}

// restartViaDaemon restarts the daemon in its process when no service
// manager runs it.
func restartViaDaemon(ctx context.Context, stdout io.Writer, f *runtimeFlags, connect connectFunc) error {
	api, err := f.api(connect)
	if err != nil {
		return err
	}
	return step(stdout, "Restarting", "Restarted!", func() error { return api.Restart(ctx) })
}

// parseWhen reads a point in time as `iotedge logs` does: a duration ago
// ("1 day", "90 minutes", "2 days 3 hours 2 minutes", or Go's "10m"), an
// RFC 3339 time, or UNIX seconds.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	d, err := parseHumanDuration(s)
	if err != nil {
		return time.Time{}, err
	}
	return now.Add(-d), nil
}

// parseHumanDuration reads "2 days 3 hours 2 minutes".
func parseHumanDuration(s string) (time.Duration, error) {
	units := map[string]time.Duration{
		"second": time.Second, "seconds": time.Second, "sec": time.Second, "secs": time.Second, "s": time.Second,
		"minute": time.Minute, "minutes": time.Minute, "min": time.Minute, "mins": time.Minute, "m": time.Minute,
		"hour": time.Hour, "hours": time.Hour, "h": time.Hour,
		"day": 24 * time.Hour, "days": 24 * time.Hour, "d": 24 * time.Hour,
		"week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour, "w": 7 * 24 * time.Hour,
	}
	fields := strings.Fields(s)
	if len(fields) == 0 || len(fields)%2 != 0 {
		return 0, fmt.Errorf("%q is not a duration (\"1 day\", \"90 minutes\"), an RFC 3339 time or UNIX seconds", s)
	}
	var total time.Duration
	for i := 0; i < len(fields); i += 2 {
		n, err := strconv.ParseUint(fields[i], 10, 32)
		u, ok := units[strings.ToLower(fields[i+1])]
		if err != nil || !ok {
			return 0, fmt.Errorf("%q is not a duration (\"1 day\", \"90 minutes\"), an RFC 3339 time or UNIX seconds", s)
		}
		total += time.Duration(n) * u
	}
	return total, nil
}
