// Package runtime owns the seam between the edge agent and whatever runs its
// modules: the Runtime interface (create, start, stop, remove, list, inspect,
// logs), the module specification a runtime is asked to create, the state it
// reports back, and the environment-merging rule every runtime shares.
//
// Implementations live in sub-packages: process (modules as supervised child
// processes, the default) and docker (the Docker Engine API). The supervisor
// sub-package drives a Runtime from the reconcile plan. This package is pure
// types and helpers: it must not import net/http, an MQTT library, a SQL
// driver, or any other Muster package.
package runtime

import (
	"context"
	"errors"
	"io"
	"sort"
	"strings"
	"time"
)

// Runtime runs modules. Every method takes a context that bounds the call;
// implementations must be safe for concurrent use.
type Runtime interface {
	// Create records (and for Docker, creates) a module from spec without
	// starting it. It fails with ErrExists when a module of that name
	// exists and with ErrInvalidSpec when the spec cannot be run by this
	// runtime.
	Create(ctx context.Context, spec ModuleSpec) error
	// Start starts a created or exited module; starting a running module
	// is not an error.
	Start(ctx context.Context, name string) error
	// Stop asks a running module to stop and forcibly ends it when it is
	// still running after grace. Stopping a module that is not running is
	// not an error.
	Stop(ctx context.Context, name string, grace time.Duration) error
	// Remove ends the module if it runs (without grace) and deletes it and
	// everything the runtime kept for it, logs included.
	Remove(ctx context.Context, name string) error
	// List returns the state of every module this runtime owns, sorted by
	// name.
	List(ctx context.Context) ([]ModuleState, error)
	// Inspect returns the state of one module, or ErrNotFound.
	Inspect(ctx context.Context, name string) (ModuleState, error)
	// Logs streams the module's captured output, stdout and stderr merged
	// in the order it was produced, one line per log line. The caller must
	// close the returned reader; closing it or cancelling ctx ends a
	// follow.
	Logs(ctx context.Context, name string, opts LogOptions) (io.ReadCloser, error)
}

// Notifier is an optional capability of a Runtime that learns of module
// exits as they happen (the process runtime). Changes returns a channel that
// receives a value, coalesced, whenever some module's state changed without
// the caller asking; a supervisor re-reads List when it fires instead of
// waiting for its next poll.
type Notifier interface {
	Changes() <-chan struct{}
}

// Sentinel errors callers branch on.
var (
	// ErrNotFound means no module of the given name exists.
	ErrNotFound = errors.New("module not found")
	// ErrExists means Create was asked for a name that already exists.
	ErrExists = errors.New("module already exists")
	// ErrInvalidSpec means a ModuleSpec cannot be run by this runtime (an
	// image this runtime cannot resolve, createOptions it cannot honour).
	ErrInvalidSpec = errors.New("invalid module spec")
	// ErrUnsupported means the runtime cannot work on this platform or
	// with this configuration.
	ErrUnsupported = errors.New("unsupported by this runtime")
)

// SpecError names the field of a ModuleSpec a runtime rejected and why. It
// matches ErrInvalidSpec with errors.Is.
type SpecError struct {
	// Module is the module name.
	Module string
	// Field is the offending field, e.g. "settings.image" or
	// "settings.createOptions.Cmd".
	Field string
	// Msg says what is wrong with it.
	Msg string
}

func (e *SpecError) Error() string {
	return "module " + e.Module + ": " + e.Field + ": " + e.Msg
}

// Is reports whether target is ErrInvalidSpec.
func (e *SpecError) Is(target error) bool { return target == ErrInvalidSpec }

// Image pull policies (desired imagePullPolicy).
const (
	// PullOnCreate pulls the image every time the module is created.
	PullOnCreate = "on-create"
	// PullNever never pulls; the image must already be present.
	PullNever = "never"
)

// ModuleSpec is everything a runtime needs to create a module. The fields
// that define the module's identity for change detection (Version, Image,
// CreateOptions, Env) are recorded by the runtime and come back in
// ModuleState.Spec, so a restarted agent can tell whether a running module
// still matches its desired state.
type ModuleSpec struct {
	// Name is the module name (also the container or process name).
	Name string
	// Version is the desired module version string (informational, but a
	// change recreates the module, as in Azure IoT Edge).
	Version string
	// Image is what to run: an image reference for Docker, an executable
	// for the process runtime.
	Image string
	// CreateOptions is the module's Docker-style create options as a
	// normalised JSON object text ("{}" when empty).
	CreateOptions string
	// Env is the complete environment the deployment gives the module
	// (desired env plus the IoT Edge module environment). Entries here
	// override same-named entries of createOptions' Env list.
	Env map[string]string
	// ImagePullPolicy is PullOnCreate or PullNever (empty means
	// PullOnCreate). Runtimes without images ignore it.
	ImagePullPolicy string
	// RegistryAuth, when not nil, are the credentials for the image's
	// registry. Runtimes must never log or persist them.
	RegistryAuth *RegistryAuth
}

// RegistryAuth is one container-registry credential.
type RegistryAuth struct {
	Address  string
	Username string
	Password string
}

// State is the runtime-level state of a module.
type State string

// The module states a runtime reports.
const (
	// StateCreated means created and never started (or, for the process
	// runtime, not started since the agent restarted).
	StateCreated State = "created"
	// StateRunning means the module's process or container is running.
	StateRunning State = "running"
	// StateExited means the module ran and exited; ExitCode is valid.
	StateExited State = "exited"
	// StateDead means the runtime gave up on the module (Docker "dead").
	StateDead State = "dead"
	// StateUnknown means the runtime cannot tell.
	StateUnknown State = "unknown"
)

// ModuleState is what a runtime knows about one module.
type ModuleState struct {
	// Name is the module name.
	Name string
	// ID is the runtime's identifier: the container ID for Docker, the
	// process ID (as text) of the running process for the process runtime.
	ID string
	// Spec is the spec the module was created from (RegistryAuth is
	// never returned).
	Spec ModuleSpec
	// ImageHash identifies the exact image or executable content,
	// "sha256:<hex>", when known.
	ImageHash string
	// State is the module's state.
	State State
	// ExitCode is the last exit code; valid in StateExited and StateDead.
	// A process ended by a signal reports 128+signal, as Docker does.
	ExitCode int
	// StartedAt is when the module last started (zero if never).
	StartedAt time.Time
	// FinishedAt is when the module last exited (zero if never).
	FinishedAt time.Time
	// Description is a short human-readable note from the runtime (an
	// error Docker recorded, why a process could not start), or "".
	Description string
}

// LogOptions selects captured output for Runtime.Logs.
type LogOptions struct {
	// Tail, when > 0, returns only the last Tail lines of the selection;
	// 0 returns all of it.
	Tail int
	// Since and Until, when not zero, bound the selection by the time each
	// line was captured (Since inclusive, Until exclusive).
	Since, Until time.Time
	// Follow keeps the stream open and delivers new lines as the module
	// writes them, until the module stops, Until passes, or the reader is
	// closed.
	Follow bool
	// Timestamps prefixes every line with its capture time in RFC 3339
	// with nanoseconds, UTC, and a space (as docker logs --timestamps).
	Timestamps bool
}

// EnvList merges a Docker-style environment list ("NAME=value" entries, as
// in createOptions' Env) with the deployment's environment map: map entries
// override list entries with the same name, list entries keep their order,
// and map-only entries follow sorted by name. A later duplicate in the list
// overrides an earlier one, as in Docker.
func EnvList(list []string, env map[string]string) []string {
	out := make([]string, 0, len(list)+len(env))
	index := make(map[string]int, len(list)+len(env))
	for _, kv := range list {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := env[name]; ok {
			continue
		}
		if i, ok := index[name]; ok {
			out[i] = kv
			continue
		}
		index[name] = len(out)
		out = append(out, kv)
	}
	names := make([]string, 0, len(env))
	for name := range env {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		out = append(out, name+"="+env[name])
	}
	return out
}
