package check

import (
	"context"
	"crypto/x509"
	"fmt"
	"strconv"
	"time"

	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/edge/provisioning"
)

// Status is the outcome of one check.
type Status int

// The outcomes of a check. Their String values are the "result" values of
// upstream's JSON output.
const (
	// Pass: the check succeeded.
	Pass Status = iota + 1
	// Warn: the check found something that will or may cause trouble, but
	// nothing that stops the runtime now.
	Warn
	// Fail: the check found an error; `iotedge check` exits non-zero.
	Fail
	// Skip: the check could not run because a prerequisite did not pass,
	// or because what it examines does not exist yet (no hub before the
	// first provisioning).
	Skip
	// Ignore: the check does not apply to this configuration (an X.509
	// expiry check for a symmetric-key device); it counts as a success.
	Ignore
)

// String returns upstream's JSON name of the status: ok, warning, error,
// skipped or ignored.
func (s Status) String() string {
	switch s {
	case Pass:
		return "ok"
	case Warn:
		return "warning"
	case Fail:
		return "error"
	case Skip:
		return "skipped"
	case Ignore:
		return "ignored"
	default:
		return "Status(" + strconv.Itoa(int(s)) + ")"
	}
}

// Result is what a check found.
type Result struct {
	// Status is the outcome.
	Status Status
	// Message says what was found, naming the files, keys, hosts and
	// certificates involved. It may span several lines.
	Message string
	// Fix says how to correct a warning or an error.
	Fix string
}

// Check is one diagnostic.
type Check struct {
	// ID is the stable identifier (upstream's where upstream has the same
	// check), the key of the JSON output.
	ID string
	// Description is the line shown in the text output.
	Description string
	// Section groups checks in the text output ("Configuration checks",
	// "Connectivity checks").
	Section string
	// Needs lists the IDs of checks that must run before this one and end
	// in Pass, Warn or Ignore; otherwise this check is skipped.
	Needs []string
	// Run performs the check. It may read and set the shared state of env.
	Run func(ctx context.Context, env *Env) Result
}

// Defaults of Env.
const (
	// DefaultTimeout bounds each network operation of a check (upstream's
	// cloud_timeout_sec default).
	DefaultTimeout = 10 * time.Second
	// DefaultHubPort is the hub's standard MQTT port; the configuration's
	// iothub.mqtt_port (Muster extension) overrides it.
	DefaultHubPort = "8883"
)

// Env is what the checks run against: inputs set by the caller, and state
// that earlier checks leave for later ones.
type Env struct {
	// ConfigPath is the config.toml to check.
	ConfigPath string
	// Timeout bounds each network operation; 0 means DefaultTimeout.
	Timeout time.Duration
	// Now is the local clock; nil means time.Now.
	Now func() time.Time
	// HubHostname, when set, is the hub to check instead of the cached
	// assignment's (upstream's --iothub-hostname). It may carry a port.
	HubHostname string
	// HubPort is the hub's MQTT port, used when the hub host name has no
	// port; empty means the configuration's iothub.mqtt_port (Muster
	// extension), which defaults to DefaultHubPort.
	HubPort string
	// ThirtyTwoBit makes the expiry check warn about certificates that
	// expire after 2038-01-19T03:14:07Z, which software using a 32-bit
	// time_t cannot represent. NewEnv sets it on 32-bit platforms.
	ThirtyTwoBit bool
	// Version is the iotedge version, reported in the JSON output.
	Version string

	// Config is the parsed configuration (set by config-well-formed).
	Config *config.Config
	// IdentityChain is the X.509 identity certificate chain, leaf first
	// (set by identity-credential for X.509 devices).
	IdentityChain []*x509.Certificate
	// IdentityCertPath is the file IdentityChain was read from.
	IdentityCertPath string
	// Cache is the cached provisioning result (set by provisioning-cached
	// when the cache is readable, even when it is for another identity).
	Cache *provisioning.Cache
}

// NewEnv returns an Env for a configuration file with the defaults set.
func NewEnv(configPath string) *Env {
	return &Env{
		ConfigPath:   configPath,
		Timeout:      DefaultTimeout,
		Now:          time.Now,
		ThirtyTwoBit: strconv.IntSize == 32,
	}
}

// setDefaults fills the zero inputs of env.
func (env *Env) setDefaults() {
	if env.Timeout <= 0 {
		env.Timeout = DefaultTimeout
	}
	if env.Now == nil {
		env.Now = time.Now
	}
}

// Outcome is the result of one check in a Report.
type Outcome struct {
	// ID, Description and Section are the check's.
	ID, Description, Section string
	Result
}

// Report is the result of a run.
type Report struct {
	// Time is when the run started (Env.Now).
	Time time.Time
	// ConfigPath and Version are the Env's.
	ConfigPath, Version string
	// Outcomes are the checks' results in run order.
	Outcomes []Outcome
}

// Run runs the checks in order against env and returns their results. A
// check whose prerequisite (Check.Needs) did not end in Pass, Warn or
// Ignore is not run and ends in Skip. Run stops early, skipping the rest,
// when ctx ends.
func Run(ctx context.Context, env *Env, checks []Check) *Report {
	env.setDefaults()
	r := &Report{Time: env.Now(), ConfigPath: env.ConfigPath, Version: env.Version}
	done := make(map[string]Status, len(checks))
	for _, c := range checks {
		res := runOne(ctx, env, c, done)
		done[c.ID] = res.Status
		r.Outcomes = append(r.Outcomes, Outcome{ID: c.ID, Description: c.Description, Section: c.Section, Result: res})
	}
	return r
}

// runOne runs c unless a prerequisite did not pass or ctx ended.
func runOne(ctx context.Context, env *Env, c Check, done map[string]Status) Result {
	if err := ctx.Err(); err != nil {
		return Result{Status: Skip, Message: fmt.Sprintf("not run: %v", err)}
	}
	for _, need := range c.Needs {
		st, ran := done[need]
		switch {
		case !ran:
			return Result{Status: Skip, Message: fmt.Sprintf("skipped: its prerequisite %s has not run before it", need)}
		case st == Fail || st == Skip:
			return Result{Status: Skip, Message: fmt.Sprintf("skipped because check %s did not succeed", need)}
		}
	}
	return c.Run(ctx, env)
}

// Count returns how many checks ended in s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Status == s {
			n++
		}
	}
	return n
}

// Failed reports whether the run should exit non-zero: a check failed, or
// warned while warningsAsErrors is set.
func (r *Report) Failed(warningsAsErrors bool) bool {
	return r.Count(Fail) > 0 || warningsAsErrors && r.Count(Warn) > 0
}
