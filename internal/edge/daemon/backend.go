package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"time"

	"github.com/muster-iot/muster/internal/edge/edgehub"
	"github.com/muster-iot/muster/internal/edge/mgmt"
	"github.com/muster-iot/muster/internal/edge/reconcile"
	"github.com/muster-iot/muster/internal/edge/runtime"
	"github.com/muster-iot/muster/internal/edge/runtime/logfile"
)

// The daemon's own log.
const (
	// LogPrefix names the daemon's log segments (<prefix>.<seq>.log).
	LogPrefix = "iotedged"
	logsDir   = "logs"
	// backupFile holds the last applied deployment, under cache/.
	backupFile = "agent_backup.json"
	// followPoll is how often a follower outside the daemon checks the
	// log for new lines.
	followPoll = 250 * time.Millisecond
)

// LogDir returns the directory of the daemon's log in a home directory.
func LogDir(homedir string) string { return filepath.Join(homedir, logsDir) }

func goos() string   { return goruntime.GOOS }
func goarch() string { return goruntime.GOARCH }

// CopyLog writes the daemon's log of homedir to w, selected by opts, read
// from the files directly (it works when the daemon is not running). A
// follow polls the files for new lines until ctx ends.
func CopyLog(ctx context.Context, w io.Writer, homedir string, opts runtime.LogOptions) error {
	ro := logfile.ReadOptions{Tail: opts.Tail, Since: opts.Since, Until: opts.Until, Timestamps: opts.Timestamps, Follow: opts.Follow}
	if opts.Follow {
		ro.Changed = func() <-chan struct{} {
			ch := make(chan struct{})
			go func() {
				t := time.NewTimer(followPoll)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ctx.Done():
				}
				close(ch)
			}()
			return ch
		}
	}
	return logfile.Copy(ctx, w, LogDir(homedir), LogPrefix, ro)
}

// bootstrapManifest is the deployment the daemon runs before the hub
// gave it one: the system modules only, the edge hub built in.
func bootstrapManifest(version string) []byte {
	doc := map[string]any{
		"schemaVersion": "1.1",
		"runtime":       map[string]any{"type": "process", "settings": map[string]any{}},
		"systemModules": map[string]any{
			reconcile.EdgeAgent: map[string]any{"type": "process", "settings": map[string]any{"image": "muster-iotedge/edge-agent:" + version}},
			reconcile.EdgeHub: map[string]any{"type": "process", "status": "running", "restartPolicy": "always", "startupOrder": 0,
				"settings": map[string]any{"image": "muster-iotedge/edge-hub:" + version}},
		},
		"modules": map[string]any{},
	}
	b, _ := json.Marshal(doc)
	return b
}

// backup is the last applied deployment of an assignment. It holds the
// modules' keys (their environment) and registry credentials, so it is
// readable by the runtime only.
type backup struct {
	Hub      string            `json:"hub"`
	DeviceID string            `json:"deviceId"`
	Desired  json.RawMessage   `json:"desired"`
	Env      reconcile.EdgeEnv `json:"env"`
}

func (d *Daemon) backupPath() string { return filepath.Join(d.cfg.Homedir, "cache", backupFile) }

// saveBackup records an applied deployment (agent.Options.OnApplied).
func (d *Daemon) saveBackup(raw json.RawMessage, env reconcile.EdgeEnv) {
	b, err := json.Marshal(backup{Hub: env.IoTHubHostName, DeviceID: env.DeviceID, Desired: raw, Env: env})
	if err == nil {
		err = os.MkdirAll(filepath.Dir(d.backupPath()), 0o700)
	}
	if err == nil {
		err = writePrivate(d.backupPath(), b)
	}
	if err != nil {
		d.log.Warn("save the deployment backup", "err", err)
	}
	d.setEnvOf(&assignment{hub: env.IoTHubHostName, deviceID: env.DeviceID})
}

// writePrivate replaces path with data, readable by its owner only.
func writePrivate(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// seedSupervisor gives the supervisor the deployment to run before the
// agent reads the twin: the backup of the same assignment, else the
// system modules alone.
func (d *Daemon) seedSupervisor(a *assignment) {
	var bk backup
	b, err := os.ReadFile(d.backupPath())
	if err == nil {
		err = json.Unmarshal(b, &bk)
	}
	if err == nil && bk.Hub == a.hub && bk.DeviceID == a.deviceID && len(bk.Desired) > 0 {
		d.sup.SetEnv(bk.Env)
		if err := d.sup.SetDesired(bk.Desired); err == nil {
			d.setEnvOf(a)
			d.log.Info("running the last applied deployment until the hub is reached")
			return
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("the deployment backup is unusable; starting with the system modules only", "err", err)
	}
	d.sup.SetEnv(d.baseEnv(a))
	d.setEnvOf(a)
	_ = d.sup.SetDesired(bootstrapManifest(d.opts.Version))
}

// onReport forwards the supervisor's report to the session's agent.
func (d *Daemon) onReport(r reconcile.Reported) {
	d.mu.Lock()
	s := d.sess
	d.mu.Unlock()
	if s != nil {
		s.agent.Report(r)
	}
}

// switchEdgeHub gives the edge hub the new session's context, restarting
// it when it runs with another.
func (d *Daemon) switchEdgeHub(ctx context.Context, hc *hubContext) {
	d.mu.Lock()
	running := d.hubCtx
	d.nextHubCtx = hc
	d.mu.Unlock()
	if running == nil || running == hc {
		return
	}
	go func() {
		if err := d.sup.RestartModule(ctx, reconcile.EdgeHub); err != nil && ctx.Err() == nil {
			d.log.Info("restart the edge hub for the new hub assignment", "err", err)
		}
	}()
}

// runEdgeHub is the built-in edgeHub module: the edge hub of the current
// assignment.
func (d *Daemon) runEdgeHub(ctx context.Context, log *slog.Logger) error {
	d.mu.Lock()
	hc := d.nextHubCtx
	d.hubCtx = hc
	d.mu.Unlock()
	if hc == nil {
		return errors.New("the device is not provisioned yet")
	}
	defer func() {
		d.mu.Lock()
		if d.hubCtx == hc {
			d.hubCtx = nil
		}
		d.mu.Unlock()
	}()
	return edgehub.Run(ctx, log, edgehub.Options{
		Hub: hc.hub, DeviceID: hc.deviceID, HubMQTTAddr: hc.mqttAddr, RootCAs: hc.roots, Identities: hc.store,
		ListenAddr: d.edgeHub.listen, CA: d.ca, ServerNames: d.edgeHub.names, Version: d.opts.Version,
		ClientType: "muster-iotedge-edgehub/" + d.opts.Version,
	})
}

// Status reports the daemon's state (mgmt.Backend).
func (d *Daemon) Status(ctx context.Context) mgmt.Status {
	d.mu.Lock()
	prov, s := d.prov, d.sess
	d.mu.Unlock()
	st := mgmt.Status{
		Version: d.opts.Version, PID: os.Getpid(), StartedAt: d.started, ConfigFile: d.opts.ConfigFile,
		Homedir: d.cfg.Homedir, Provisioning: prov, EdgeHubAddress: d.edgeHub.listen,
	}
	if s != nil {
		dev := s.device.State()
		st.Device = mgmt.Connection{Identity: s.device.Identity().String(), Connected: dev.Connected, Since: dev.Since, LastError: dev.LastError}
		as := s.agent.Status()
		st.Agent = mgmt.Connection{Identity: s.a.deviceID + "/$edgeAgent", Connected: as.Connection.Connected, Since: as.Connection.Since, LastError: as.Connection.LastError}
		st.AppliedVersion, st.AgentError = as.AppliedVersion, as.Error
	}
	st.Modules, _ = d.Modules(ctx)
	return st
}

// Modules returns the rows of `iotedge list` (mgmt.Backend).
func (d *Daemon) Modules(context.Context) ([]reconcile.ListRow, error) {
	now := time.Now()
	r, ok := d.sup.Reported()
	if !ok {
		return []reconcile.ListRow{{
			Name: reconcile.EdgeAgent, Status: string(reconcile.RuntimeRunning),
			Description: reconcile.Describe(reconcile.RuntimeRunning, 0, d.started, time.Time{}, now),
			Config:      "muster-iotedge/edge-agent:" + d.opts.Version,
		}}, nil
	}
	return reconcile.ListRows(r, now), nil
}

// Logs streams a module's log; edgeAgent's is the daemon's own
// (mgmt.Backend).
func (d *Daemon) Logs(ctx context.Context, module string, opts runtime.LogOptions) (io.ReadCloser, error) {
	if module != reconcile.EdgeAgent {
		return d.builtin.Logs(ctx, module, opts)
	}
	ro := logfile.ReadOptions{Tail: opts.Tail, Since: opts.Since, Until: opts.Until, Timestamps: opts.Timestamps,
		Follow: opts.Follow, Changed: d.logs.Changed}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	go func() { pw.CloseWithError(logfile.Copy(ctx, pw, LogDir(d.cfg.Homedir), LogPrefix, ro)) }()
	return &pipeCloser{PipeReader: pr, cancel: cancel}, nil
}

type pipeCloser struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (p *pipeCloser) Close() error {
	p.cancel()
	return p.PipeReader.Close()
}

// RestartModule restarts a module now (mgmt.Backend).
func (d *Daemon) RestartModule(ctx context.Context, module string) error {
	if module == reconcile.EdgeAgent {
		return fmt.Errorf("%w: edgeAgent is the daemon itself; restart it with \"iotedge system restart\"", mgmt.ErrUnavailable)
	}
	if _, err := d.builtin.Inspect(ctx, module); err != nil {
		return fmt.Errorf("%w: module %q: %v", mgmt.ErrNotFound, module, err)
	}
	return d.sup.RestartModule(ctx, module)
}

// Reprovision registers with DPS again and reconnects with the result
// (mgmt.Backend).
func (d *Daemon) Reprovision(ctx context.Context) (mgmt.Reprovisioned, error) {
	r := request{reply: make(chan reprovisionResult, 1)}
	select {
	case d.requests <- r:
	case <-ctx.Done():
		return mgmt.Reprovisioned{}, ctx.Err()
	}
	select {
	case res := <-r.reply:
		return res.res, res.err
	case <-ctx.Done():
		return mgmt.Reprovisioned{}, ctx.Err()
	}
}
