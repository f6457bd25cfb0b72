// Package daemon owns the iotedge daemon: the long-running process that
// `iotedge daemon` and the iotedge OS service run. It ties the edge
// runtime's parts together:
//
//   - provisioning (internal/edge/provisioning): the hub assignment from
//     the cache or DPS, as auto_reprovisioning_mode rules, at start, when
//     the hub refuses the device (CONNACK not authorized / bad credentials:
//     identity deleted or credential changed), when the hub stays
//     unreachable, and on `iotedge system reprovision`; or the connection
//     string of manual provisioning;
//   - the device's own MQTT connection to the assigned hub with the same
//     credential (key or X.509 certificate), kept up with back-off; its
//     refusals drive reprovisioning;
//   - the edge agent (internal/edge/agent) and the supervisor over the
//     module runtime (process by default, docker with [agent] type =
//     "docker"), with the edge hub (internal/edge/edgehub) as a built-in
//     module (internal/edge/runtime/builtin);
//   - a backup of the last applied deployment, so a daemon restarted while
//     the hub is unreachable runs its modules again;
//   - the management socket (internal/edge/mgmt) that the CLI's list, logs,
//     restart and system commands use;
//   - its own structured log: JSON records in size-rotated files under
//     <homedir>/logs (package logfile), next to the service's own log
//     (journal or Windows event log).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/edge/edgehub"
	"github.com/muster-iot/muster/internal/edge/mgmt"
	"github.com/muster-iot/muster/internal/edge/reconcile"
	"github.com/muster-iot/muster/internal/edge/runtime"
	"github.com/muster-iot/muster/internal/edge/runtime/builtin"
	"github.com/muster-iot/muster/internal/edge/runtime/docker"
	"github.com/muster-iot/muster/internal/edge/runtime/logfile"
	"github.com/muster-iot/muster/internal/edge/runtime/process"
	"github.com/muster-iot/muster/internal/edge/runtime/supervisor"
)

// Layout of the home directory.
const (
	modulesDir = "modules"
	builtinDir = "builtin"
	edgeCADir  = "edge-ca"
)

// Timing of the daemon.
const (
	// stopGrace is how long modules get to stop when the daemon stops.
	stopGrace = 10 * time.Second
)

// errRestart ends one run of the daemon for `iotedge system restart`.
var errRestart = errors.New("restart requested")

// Options configure the daemon.
type Options struct {
	// ConfigFile is the config.toml to run with. Required.
	ConfigFile string
	// Version is the runtime's version (reported and logged).
	Version string
	// Logger is the service's logger (standard error, the Windows event
	// log); the daemon adds its log file. Discarded when nil.
	Logger *slog.Logger
	// Ready, when not nil, is called once the management socket accepts
	// requests, with its path.
	Ready func(socket string)
}

// Run runs the daemon until ctx ends. `iotedge system restart` without a
// service manager restarts it within the process: the configuration is
// read again and the modules are started again.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	for {
		err := runOnce(ctx, opts)
		if !errors.Is(err, errRestart) || ctx.Err() != nil {
			if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
				return nil
			}
			return err
		}
		opts.Logger.Info("restarting the daemon")
	}
}

// Daemon is one run of the daemon.
type Daemon struct {
	opts    Options
	cfg     *config.Config
	log     *slog.Logger
	started time.Time

	rt      runtime.Runtime
	builtin *builtin.Runtime
	sup     *supervisor.Supervisor
	ca      *edgehub.CA
	edgeHub edgeHubAddr

	requests chan request

	restartCh chan struct{}
	logs      *logfile.Writer

	mu   sync.Mutex
	prov mgmt.Provisioning
	sess *session
	// nextHubCtx is the context the edge hub is to run with, hubCtx the
	// one it runs with (nil when it does not run).
	nextHubCtx, hubCtx *hubContext
	// envHub and envDevice are the assignment the supervisor's
	// environment was set for.
	envHub, envDevice string
}

// runOnce runs the daemon with the configuration as it is now.
func runOnce(ctx context.Context, opts Options) (err error) {
	cfg, err := config.Load(opts.ConfigFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Homedir, 0o700); err != nil {
		return fmt.Errorf("create homedir %s: %w", cfg.Homedir, err)
	}
	logs, err := logfile.Open(LogDir(cfg.Homedir), LogPrefix, logfile.DefaultMaxBytes, logfile.DefaultKeep)
	if err != nil {
		return fmt.Errorf("open the daemon log: %w", err)
	}
	defer logs.Close()
	fileLog := slog.NewJSONHandler(logfile.NewCapture(logs, "stdout", nil), &slog.HandlerOptions{Level: slog.LevelInfo})
	log := slog.New(slog.NewMultiHandler(opts.Logger.Handler(), fileLog))
	d := &Daemon{opts: opts, cfg: cfg, log: log, started: time.Now(), requests: make(chan request), restartCh: make(chan struct{}, 1), logs: logs}
	log.Info("iotedge daemon starting", "version", opts.Version, "config", opts.ConfigFile, "homedir", cfg.Homedir, "pid", os.Getpid())
	defer log.Info("iotedge daemon stopped")

	if d.edgeHub, err = resolveEdgeHubAddr(cfg); err != nil {
		return err
	}
	host, _ := os.Hostname()
	if cfg.Hostname != "" {
		host = cfg.Hostname
	}
	if d.ca, err = edgehub.LoadOrCreateCA(filepath.Join(cfg.Homedir, edgeCADir), host, time.Now()); err != nil {
		return err
	}
	if err := d.openRuntime(ctx); err != nil {
		return err
	}
	defer d.closeRuntime()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sock, waitMgmt, err := mgmt.Serve(ctx, cfg.Homedir, mgmt.NewHandler(d, log), log)
	if err != nil {
		return err
	}
	defer func() {
		cancel()
		if werr := waitMgmt(); werr != nil {
			log.Warn("management socket", "err", werr)
		}
	}()
	log.Info("management socket ready", "path", sock)
	if opts.Ready != nil {
		opts.Ready(sock)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	return d.loop(ctx, &wg)
}

// openRuntime builds the module runtime, the built-in edge hub around it
// and the supervisor.
func (d *Daemon) openRuntime(ctx context.Context) error {
	cfg := d.cfg
	var next runtime.Runtime
	if cfg.Agent != nil && cfg.Agent.Type == config.AgentDocker {
		dr, err := docker.New(docker.Options{Host: cfg.MobyRuntime.URI, Logger: d.log.With("component", "docker")})
		if err != nil {
			return err
		}
		next = dr
	} else {
		pr, err := process.New(process.Options{Dir: filepath.Join(cfg.Homedir, modulesDir), Logger: d.log.With("component", "process"), StopGrace: stopGrace})
		if err != nil {
			return err
		}
		next = pr
	}
	d.rt = next
	b, err := builtin.New(builtin.Options{
		Next: next, Dir: filepath.Join(cfg.Homedir, builtinDir), Logger: d.log,
		Modules: map[string]builtin.Func{reconcile.EdgeHub: d.runEdgeHub},
	})
	if err != nil {
		d.closeNext()
		return err
	}
	d.builtin = b
	sup, err := supervisor.New(supervisor.Options{
		Runtime:      b,
		Platform:     reconcile.HostPlatform(goos(), goarch(), d.opts.Version),
		AgentVersion: reconcile.AgentVersion{Version: d.opts.Version},
		StopGrace:    stopGrace,
		Logger:       d.log.With("component", "supervisor"),
		OnReport:     d.onReport,
	})
	if err != nil {
		d.closeRuntime()
		return err
	}
	d.sup = sup
	return nil
}

// closeRuntime stops the built-in modules and the process modules (Docker
// containers keep running, as with Azure IoT Edge).
func (d *Daemon) closeRuntime() {
	if d.builtin != nil {
		if err := d.builtin.Close(stopGrace); err != nil {
			d.log.Warn("stop the built-in modules", "err", err)
		}
	}
	d.closeNext()
}

func (d *Daemon) closeNext() {
	if pr, ok := d.rt.(*process.Runtime); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 2*stopGrace)
		defer cancel()
		if err := pr.Close(ctx); err != nil {
			d.log.Warn("stop the modules", "err", err)
		}
	}
}

// edgeHubAddr is where the edge hub listens and what modules call it.
type edgeHubAddr struct {
	// listen is host:port to bind (the port resolved when 0 was asked).
	listen string
	// gateway is the host modules connect to (GatewayHostName).
	gateway string
	port    int
	// names are the server certificate's names.
	names []string
}

// resolveEdgeHubAddr works out the edge hub's address. Port 0 is resolved
// once, at start, so that the modules' connection strings stay valid
// across edge hub restarts (another process could take the port in
// between; configure a fixed port where that matters).
func resolveEdgeHubAddr(cfg *config.Config) (edgeHubAddr, error) {
	addr := cfg.EdgeHubAddress()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return edgeHubAddr{}, fmt.Errorf("edge_hub.listen_address %q: %w", addr, err)
	}
	if port == "0" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return edgeHubAddr{}, fmt.Errorf("edge_hub.listen_address %q: pick a free port: %w", addr, err)
		}
		_, port, _ = net.SplitHostPort(ln.Addr().String())
		ln.Close()
	}
	n, _ := strconv.Atoi(port)
	e := edgeHubAddr{listen: net.JoinHostPort(host, port), port: n}
	machine, _ := os.Hostname()
	if cfg.Hostname != "" {
		machine = cfg.Hostname
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || (ip != nil && ip.IsUnspecified()):
		e.gateway = machine
	default:
		e.gateway = host
	}
	seen := map[string]bool{}
	for _, n := range []string{e.gateway, machine, "localhost", "127.0.0.1", "::1"} {
		if n != "" && !seen[n] {
			seen[n] = true
			e.names = append(e.names, n)
		}
	}
	return e, nil
}

// gatewayHostName is the GatewayHostName of the modules' connection
// strings: the host, with the port when it is not MQTT's 8883 (the Node
// SDK dials mqtts://<GatewayHostName>, so host:port works there).
func (e edgeHubAddr) gatewayHostName() string {
	if e.port == 0 || e.port == config.DefaultHubMQTTPort {
		return e.gateway
	}
	return net.JoinHostPort(e.gateway, strconv.Itoa(e.port))
}

// Restart asks the daemon to restart within its process (mgmt.Backend).
func (d *Daemon) Restart(context.Context) error {
	select {
	case d.restartCh <- struct{}{}:
	default:
	}
	return nil
}
