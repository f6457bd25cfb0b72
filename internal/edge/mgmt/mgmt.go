// Package mgmt owns the iotedge daemon's local management API, which the
// iotedge CLI (list, logs, restart, system status, system reprovision,
// system restart) talks to: HTTP/1.1 with JSON bodies over a Unix domain
// socket in the runtime's home directory (<homedir>/mgmt.sock, readable
// and writable by its owner only). Windows 10 1803 and later have Unix
// domain sockets too, so the same transport serves both; the platform
// files (by suffix) only differ in how the socket file is protected and
// replaced.
//
// The package holds the wire types, the server (an http.Handler over a
// Backend the daemon implements) and the client. It is an adapter
// package: net/http lives here, the daemon's logic elsewhere.
package mgmt

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"time"

	"github.com/muster-iot/muster/internal/edge/reconcile"
	"github.com/muster-iot/muster/internal/edge/runtime"
)

// SocketName is the management socket's file name in the home directory.
const SocketName = "mgmt.sock"

// SocketPath returns the management socket of a runtime home directory.
func SocketPath(homedir string) string { return filepath.Join(homedir, SocketName) }

// Sentinel errors; the client maps answers back to them.
var (
	// ErrNotFound: no such module.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the daemon cannot do it now (not provisioned yet,
	// manual provisioning for a reprovision).
	ErrUnavailable = errors.New("unavailable")
	// ErrNotRunning: no daemon answers on the socket.
	ErrNotRunning = errors.New("the iotedge daemon is not running")
)

// Connection is the state of one of the daemon's links to the hub.
type Connection struct {
	Identity  string    `json:"identity,omitempty"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitzero"`
	LastError string    `json:"lastError,omitempty"`
}

// Provisioning is the daemon's hub assignment.
type Provisioning struct {
	// Source is "dps" or "manual".
	Source string `json:"source"`
	// State is "assigned", "provisioning" or "failed".
	State          string    `json:"state"`
	Hub            string    `json:"hub,omitempty"`
	DeviceID       string    `json:"deviceId,omitempty"`
	RegistrationID string    `json:"registrationId,omitempty"`
	ProvisionedAt  time.Time `json:"provisionedAt,omitzero"`
	Error          string    `json:"error,omitempty"`
}

// Status is the daemon's state for `iotedge system status`.
type Status struct {
	Version      string       `json:"version"`
	PID          int          `json:"pid"`
	StartedAt    time.Time    `json:"startedAt"`
	ConfigFile   string       `json:"configFile"`
	Homedir      string       `json:"homedir"`
	Provisioning Provisioning `json:"provisioning"`
	// Device is the device's own MQTT connection.
	Device Connection `json:"device"`
	// Agent is the $edgeAgent connection, AppliedVersion the deployment
	// version it applied and AgentError why it could not apply one.
	Agent          Connection `json:"agent"`
	AppliedVersion int64      `json:"appliedVersion"`
	AgentError     string     `json:"agentError,omitempty"`
	// EdgeHubAddress is where the edge hub listens for modules.
	EdgeHubAddress string `json:"edgeHubAddress,omitempty"`
	// Modules are the rows of `iotedge list`.
	Modules []reconcile.ListRow `json:"modules"`
}

// Reprovisioned is the result of a reprovisioning.
type Reprovisioned struct {
	Hub        string `json:"hub"`
	DeviceID   string `json:"deviceId"`
	Registered bool   `json:"registered"`
	Changed    bool   `json:"changed"`
	Why        string `json:"why"`
}

// Backend is what the management API serves; the daemon implements it.
type Backend interface {
	Status(ctx context.Context) Status
	Modules(ctx context.Context) ([]reconcile.ListRow, error)
	Logs(ctx context.Context, module string, opts runtime.LogOptions) (io.ReadCloser, error)
	RestartModule(ctx context.Context, module string) error
	Reprovision(ctx context.Context) (Reprovisioned, error)
	// Restart restarts the daemon in its process after the answer is sent.
	Restart(ctx context.Context) error
}
