package reconcile

import (
	"fmt"
	"maps"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

// Backoff is the timing of the restart policy engine. The defaults are the
// Azure IoT Edge agent's (hub-edge spec §5.6): the n-th restart of a module
// (n counted from 0) waits min(Unit·2^n, Max) after the module's last exit;
// after MaxRestarts restarts the module stays failed; a module that stays
// up for StableAfter has its restart count reset to 0.
type Backoff struct {
	// Unit is the cool-off before the first restart.
	Unit time.Duration
	// Max caps the cool-off.
	Max time.Duration
	// MaxRestarts is how many restarts are tried before giving up.
	MaxRestarts int
	// StableAfter is how long a module must stay up for its restart
	// count to be reset.
	StableAfter time.Duration
}

// DefaultBackoff returns the Azure IoT Edge defaults: 10 s, doubling,
// capped at 5 min, at most 20 restarts, reset after 10 min up.
func DefaultBackoff() Backoff {
	return Backoff{Unit: 10 * time.Second, Max: 5 * time.Minute, MaxRestarts: 20, StableAfter: 10 * time.Minute}
}

// CoolOff returns how long a module that has been restarted restarts times
// waits after its last exit before the next restart.
func (b Backoff) CoolOff(restarts int) time.Duration {
	d := b.Unit
	for i := 0; i < restarts && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// EdgeEnv is the device-level part of the standard IoT Edge module
// environment (hub-edge spec §8). Plan gives every module IOTEDGE_MODULEID
// (the module identity: $edgeHub for edgeHub, the name otherwise),
// IOTEDGE_DEVICEID, IOTEDGE_IOTHUBHOSTNAME, IOTEDGE_GATEWAYHOSTNAME,
// IOTEDGE_WORKLOADURI and IOTEDGE_AUTHSCHEME, plus the optional ones below
// when set. They override same-named entries of the desired env.
type EdgeEnv struct {
	DeviceID        string
	IoTHubHostName  string
	GatewayHostName string
	WorkloadURI     string
	// AuthScheme defaults to "sasToken".
	AuthScheme string
	// APIVersion becomes IOTEDGE_APIVERSION.
	APIVersion string
	// ParentHostName, on a nested (child) edge device, becomes
	// IOTEDGE_PARENTHOSTNAME and replaces "$upstream" in module images.
	ParentHostName string
	// EdgeDeviceHostName becomes EdgeDeviceHostName for edgeHub.
	EdgeDeviceHostName string
	// GenerationIDs maps module names to their identity's generation ID
	// (IOTEDGE_MODULEGENERATIONID).
	GenerationIDs map[string]string
	// ModuleEnv maps module names to further variables the runtime gives
	// that module only, such as EdgeHubConnectionString (which holds the
	// module's key) and EdgeModuleCACertificateFile. Like every system
	// variable they override the desired env and are never reported.
	ModuleEnv map[string]map[string]string
}

// Platform is the reported runtime.platform.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Version      string `json:"version,omitempty"`
}

// HostPlatform maps Go's GOOS and GOARCH to the names the Azure agent
// reports (x86_64, aarch64, armv7l, …) for the runtime version given.
func HostPlatform(goos, goarch, version string) Platform {
	arch := goarch
	switch goarch {
	case "amd64":
		arch = "x86_64"
	case "arm64":
		arch = "aarch64"
	case "arm":
		arch = "armv7l"
	case "386":
		arch = "i686"
	}
	return Platform{OS: goos, Architecture: arch, Version: version}
}

// AgentVersion is the reported version of the agent.
type AgentVersion struct {
	Version string `json:"version"`
	Build   string `json:"build,omitempty"`
	Commit  string `json:"commit,omitempty"`
}

// Actual is what the agent knows about one existing module: the runtime's
// state plus the supervisor's restart bookkeeping.
type Actual struct {
	// State is the runtime's report.
	State runtime.ModuleState
	// RestartCount is how many times the agent restarted the module since
	// it last ran stably (or was created).
	RestartCount int
	// LastRestartTime is when the agent last restarted it.
	LastRestartTime time.Time
	// StoppedByAgent is true when the agent stopped the module on purpose
	// (desired status stopped) and has not started it since.
	StoppedByAgent bool
}

// Input is everything Plan decides from.
type Input struct {
	// Desired is the deployment to apply: the newest valid desired
	// properties, or nil when none has been received.
	Desired *Desired
	// DesiredErr, when not nil, is why the newest desired properties were
	// rejected. Plan then reports its code and keeps running Desired (the
	// last valid deployment) without destructive actions.
	DesiredErr *DesiredError
	// ApplyErr is the failure of the previous execution, if any; it is
	// reported as CodeApplyFailed.
	ApplyErr error
	// Actual holds every module the runtime reports, by name.
	Actual map[string]Actual
	// Now is the current time.
	Now time.Time
	// AgentStartTime is when the agent (this process) started.
	AgentStartTime time.Time
	// Backoff is the restart timing (DefaultBackoff when zero).
	Backoff Backoff
	// Env is the device-level module environment.
	Env EdgeEnv
	// Platform and AgentVersion are reported as given.
	Platform     Platform
	AgentVersion AgentVersion
}

// ActionKind is what an Action does.
type ActionKind string

// The action kinds.
const (
	// ActionCreate creates a missing module from Spec.
	ActionCreate ActionKind = "create"
	// ActionRecreate stops and removes the module and creates it from
	// Spec (its image, createOptions, env or version changed).
	ActionRecreate ActionKind = "recreate"
	// ActionStart starts a module that should run (first start, or the
	// desired status became running).
	ActionStart ActionKind = "start"
	// ActionRestart starts a module again under its restart policy; the
	// supervisor counts it.
	ActionRestart ActionKind = "restart"
	// ActionStop stops a module whose desired status is stopped.
	ActionStop ActionKind = "stop"
	// ActionRemove stops and removes a module that is no longer desired.
	ActionRemove ActionKind = "remove"
)

// Action is one step of a plan.
type Action struct {
	Kind   ActionKind
	Module string
	// Spec is the module to create, for create and recreate.
	Spec runtime.ModuleSpec
	// StartupOrder orders start and restart actions: lower first; the
	// supervisor waits for one order group to run before the next.
	StartupOrder uint32
	// Reason explains the action for logs.
	Reason string
}

// Result is a plan and the state it was made from.
type Result struct {
	// Actions, in execution order: removals, stops, creations and
	// recreations, then starts and restarts by ascending StartupOrder
	// (then name).
	Actions []Action
	// Reported is the $edgeAgent reported-properties document for the
	// state Plan observed.
	Reported Reported
	// RestartCounts is the restart count every existing module carries
	// after this plan, before its actions run (reset when a module ran
	// stably or is recreated). The supervisor adds one per restart it
	// executes.
	RestartCounts map[string]int
	// Next, when not zero, is when planning again will act without any
	// outside change (a back-off expires, a restart count resets).
	Next time.Time
}

// moduleIdentity is the IoT Hub module identity of a module.
func moduleIdentity(name string) string {
	switch name {
	case EdgeAgent, EdgeHub:
		return "$" + name
	}
	return name
}

// systemEnv is the IoT Edge environment of one module.
func (e EdgeEnv) systemEnv(name string) map[string]string {
	env := map[string]string{
		"IOTEDGE_MODULEID":       moduleIdentity(name),
		"IOTEDGE_DEVICEID":       e.DeviceID,
		"IOTEDGE_IOTHUBHOSTNAME": e.IoTHubHostName,
		"IOTEDGE_WORKLOADURI":    e.WorkloadURI,
		"IOTEDGE_AUTHSCHEME":     e.AuthScheme,
	}
	if env["IOTEDGE_AUTHSCHEME"] == "" {
		env["IOTEDGE_AUTHSCHEME"] = "sasToken"
	}
	if e.GatewayHostName != "" {
		env["IOTEDGE_GATEWAYHOSTNAME"] = e.GatewayHostName
	}
	if e.APIVersion != "" {
		env["IOTEDGE_APIVERSION"] = e.APIVersion
	}
	if e.ParentHostName != "" {
		env["IOTEDGE_PARENTHOSTNAME"] = e.ParentHostName
	}
	if name == EdgeHub && e.EdgeDeviceHostName != "" {
		env["EdgeDeviceHostName"] = e.EdgeDeviceHostName
	}
	if id := e.GenerationIDs[name]; id != "" {
		env["IOTEDGE_MODULEGENERATIONID"] = id
	}
	maps.Copy(env, e.ModuleEnv[name])
	return env
}

// registryHost returns the registry host of an image reference, as Docker
// resolves it: the first path component when it looks like a host (has a
// dot or a port, or is localhost), docker.io otherwise.
func registryHost(image string) string {
	first, _, ok := strings.Cut(image, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return strings.ToLower(first)
	}
	return "docker.io"
}

// credentialHost normalises a registryCredentials address for matching.
func credentialHost(addr string) string {
	addr = strings.TrimSpace(strings.ToLower(addr))
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	addr = strings.TrimSuffix(addr, "/")
	switch addr {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return addr
}

// buildSpec turns a desired module into the runtime spec.
func (in *Input) buildSpec(d *Desired, m Module, path string) (runtime.ModuleSpec, *DesiredError) {
	image := m.Image
	if rest, ok := strings.CutPrefix(image, "$upstream"); ok {
		if in.Env.ParentHostName == "" {
			return runtime.ModuleSpec{}, &DesiredError{
				Code: CodeBadConfig, Version: d.Version, Module: m.Name, Field: path + ".settings.image",
				Msg: "uses $upstream, but this device has no parent edge device",
			}
		}
		image = in.Env.ParentHostName + rest
	}
	env := maps.Clone(m.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, in.Env.systemEnv(m.Name))
	spec := runtime.ModuleSpec{
		Name:            m.Name,
		Version:         m.Version,
		Image:           image,
		CreateOptions:   m.CreateOptions,
		Env:             env,
		ImagePullPolicy: m.ImagePullPolicy,
	}
	host := registryHost(image)
	names := make([]string, 0, len(d.Runtime.RegistryCredentials))
	for name := range d.Runtime.RegistryCredentials {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := d.Runtime.RegistryCredentials[name]
		if credentialHost(c.Address) == host {
			spec.RegistryAuth = &runtime.RegistryAuth{Address: c.Address, Username: c.Username, Password: c.Password}
			break
		}
	}
	return spec, nil
}

// specDiff lists what differs between a desired and an actual spec.
func specDiff(want, have runtime.ModuleSpec) []string {
	var diff []string
	if want.Image != have.Image {
		diff = append(diff, fmt.Sprintf("image %q → %q", have.Image, want.Image))
	}
	if want.Version != have.Version {
		diff = append(diff, fmt.Sprintf("version %q → %q", have.Version, want.Version))
	}
	haveOpts, err := NormalizeCreateOptions(have.CreateOptions)
	if err != nil || haveOpts != want.CreateOptions {
		diff = append(diff, "createOptions changed")
	}
	if !maps.Equal(want.Env, have.Env) {
		var names []string
		for k, v := range want.Env {
			if hv, ok := have.Env[k]; !ok || hv != v {
				names = append(names, k)
			}
		}
		for k := range have.Env {
			if _, ok := want.Env[k]; !ok {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		diff = append(diff, "env changed ("+strings.Join(names, ", ")+")")
	}
	return diff
}

// planner holds one Plan call's working state.
type planner struct {
	in      *Input
	backoff Backoff
	res     Result
	next    time.Time
}

func (p *planner) wake(t time.Time) {
	if p.next.IsZero() || t.Before(p.next) {
		p.next = t
	}
}

// observed is a module's computed runtime status.
type observed struct {
	status RuntimeStatus
	desc   string
}

// baseStatus maps a runtime state to a runtime status.
func baseStatus(a Actual) observed {
	s := a.State
	withDesc := func(o observed) observed {
		if s.Description != "" {
			o.desc += ": " + s.Description
		}
		return o
	}
	switch s.State {
	case runtime.StateRunning:
		return withDesc(observed{RuntimeRunning, "running"})
	case runtime.StateCreated:
		return withDesc(observed{RuntimeStopped, "created, not started"})
	case runtime.StateExited:
		if a.StoppedByAgent {
			return observed{RuntimeStopped, "stopped"}
		}
		if s.ExitCode == 0 {
			return withDesc(observed{RuntimeStopped, "stopped"})
		}
		return withDesc(observed{RuntimeFailed, fmt.Sprintf("failed: exit code %d", s.ExitCode)})
	case runtime.StateDead:
		return withDesc(observed{RuntimeDead, "dead"})
	default:
		return withDesc(observed{RuntimeUnknown, "unknown"})
	}
}

// restartWanted applies the restart policy to a module that is not running.
func restartWanted(policy RestartPolicy, a Actual) bool {
	failed := a.State.State == runtime.StateDead || a.State.ExitCode != 0
	switch policy {
	case RestartAlways:
		return true
	case RestartOnFailure, RestartOnUnhealthy:
		return failed
	default:
		return false
	}
}

// module decides one desired module's actions and status.
func (p *planner) module(m Module, spec runtime.ModuleSpec, a *Actual) observed {
	in := p.in
	if a == nil {
		p.add(Action{Kind: ActionCreate, Module: m.Name, Spec: spec, StartupOrder: m.StartupOrder, Reason: "module is not present"})
		if m.Status == StatusRunning {
			p.add(Action{Kind: ActionStart, Module: m.Name, StartupOrder: m.StartupOrder, Reason: "new module"})
		}
		return observed{RuntimeUnknown, "not created yet"}
	}
	if diff := specDiff(spec, a.State.Spec); len(diff) > 0 {
		p.add(Action{Kind: ActionRecreate, Module: m.Name, Spec: spec, StartupOrder: m.StartupOrder, Reason: strings.Join(diff, "; ")})
		p.res.RestartCounts[m.Name] = 0
		if m.Status == StatusRunning {
			p.add(Action{Kind: ActionStart, Module: m.Name, StartupOrder: m.StartupOrder, Reason: "recreated module"})
		}
		return baseStatus(*a)
	}
	obs := baseStatus(*a)
	count := a.RestartCount
	if m.Status == StatusStopped {
		if a.State.State == runtime.StateRunning {
			p.add(Action{Kind: ActionStop, Module: m.Name, Reason: "desired status is stopped"})
		} else if obs.status == RuntimeFailed || obs.status == RuntimeDead {
			// A module meant to be stopped is reported stopped once it
			// is down, whatever its last exit.
			obs = observed{RuntimeStopped, "stopped"}
		}
		return obs
	}
	switch a.State.State {
	case runtime.StateRunning:
		if count > 0 && !a.State.StartedAt.IsZero() {
			stable := a.State.StartedAt.Add(p.backoff.StableAfter)
			if !in.Now.Before(stable) {
				p.res.RestartCounts[m.Name] = 0
			} else {
				p.wake(stable)
			}
		}
		return obs
	case runtime.StateCreated:
		p.add(Action{Kind: ActionStart, Module: m.Name, StartupOrder: m.StartupOrder, Reason: "module is created but not running"})
		return obs
	case runtime.StateUnknown:
		return obs
	}
	// Exited or dead.
	if a.StoppedByAgent {
		p.add(Action{Kind: ActionStart, Module: m.Name, StartupOrder: m.StartupOrder, Reason: "desired status is running"})
		return obs
	}
	if !restartWanted(m.RestartPolicy, *a) {
		return obs
	}
	if count >= p.backoff.MaxRestarts {
		return observed{RuntimeFailed, fmt.Sprintf("%s; not restarted again after %d restarts", obs.desc, count)}
	}
	due := in.Now
	if !a.State.FinishedAt.IsZero() {
		due = a.State.FinishedAt.Add(p.backoff.CoolOff(count))
	}
	if in.Now.Before(due) {
		p.wake(due)
		return observed{RuntimeBackoff, fmt.Sprintf("backoff: %s; restart %d in %s", obs.desc, count+1, due.Sub(in.Now).Round(time.Millisecond))}
	}
	p.add(Action{Kind: ActionRestart, Module: m.Name, StartupOrder: m.StartupOrder,
		Reason: fmt.Sprintf("restart policy %s: %s", m.RestartPolicy, obs.desc)})
	return obs
}

func (p *planner) add(a Action) { p.res.Actions = append(p.res.Actions, a) }

// actionRank orders action kinds within a plan.
func actionRank(k ActionKind) int {
	switch k {
	case ActionRemove:
		return 0
	case ActionStop:
		return 1
	case ActionCreate, ActionRecreate:
		return 2
	default:
		return 3
	}
}

// destructive reports whether an action removes or interrupts a module.
func destructive(k ActionKind) bool {
	return k == ActionRemove || k == ActionStop || k == ActionRecreate
}

// Plan decides the actions that move the actual modules toward the desired
// deployment and builds the reported properties. It is a pure function of
// in.
//
// Rules: a desired module that does not exist is created (and started if
// its desired status is running); one whose image, createOptions, env or
// version differ is recreated; one desired stopped is stopped; one desired
// running that is not running is started when it was never started or the
// agent stopped it, and otherwise restarted only as its restart policy
// allows, after its back-off cool-off; a module that is not desired is
// removed. edgeAgent is the agent itself and never acted upon. While the
// newest desired properties are invalid (in.DesiredErr), or a module's
// spec cannot be built, Plan reports the error and keeps the last valid
// deployment running but takes no destructive action (no stop, remove or
// recreate).
func Plan(in Input) Result {
	b := in.Backoff
	if b == (Backoff{}) {
		b = DefaultBackoff()
	}
	p := &planner{in: &in, backoff: b, res: Result{RestartCounts: map[string]int{}}}
	for name, a := range in.Actual {
		if name != EdgeAgent {
			p.res.RestartCounts[name] = a.RestartCount
		}
	}

	status := LastDesiredStatus{Code: CodeOK}
	var version int64
	safe := false
	d := in.Desired
	switch {
	case in.DesiredErr != nil:
		status = LastDesiredStatus{Code: in.DesiredErr.Code, Description: in.DesiredErr.Error()}
		version = in.DesiredErr.Version
		safe = true
	case d == nil:
		status = LastDesiredStatus{Code: CodeUnknown, Description: "no desired properties received yet"}
	default:
		version = d.Version
	}

	observedBy := map[string]observed{}
	desiredBy := map[string]Module{}
	if d != nil {
		type entry struct {
			m    Module
			path string
		}
		entries := []entry{{d.EdgeHub, "systemModules." + EdgeHub}}
		names := make([]string, 0, len(d.Modules))
		for name := range d.Modules {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			entries = append(entries, entry{d.Modules[name], "modules." + name})
		}
		for _, e := range entries {
			desiredBy[e.m.Name] = e.m
			spec, err := in.buildSpec(d, e.m, e.path)
			if err != nil {
				if status.Code == CodeOK {
					status = LastDesiredStatus{Code: err.Code, Description: err.Error()}
				}
				safe = true
				continue
			}
			var a *Actual
			if got, ok := in.Actual[e.m.Name]; ok {
				a = &got
			}
			observedBy[e.m.Name] = p.module(e.m, spec, a)
		}
		names = names[:0]
		for name := range in.Actual {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if _, ok := desiredBy[name]; ok || name == EdgeAgent {
				continue
			}
			p.add(Action{Kind: ActionRemove, Module: name, Reason: "module is not in the deployment"})
		}
	}
	if status.Code == CodeOK && in.ApplyErr != nil {
		status = LastDesiredStatus{Code: CodeApplyFailed, Description: in.ApplyErr.Error()}
	}

	if safe {
		// Drop destructive actions, and the start that follows a dropped
		// recreate (the module keeps running as it is).
		dropped := map[string]bool{}
		kept := p.res.Actions[:0]
		for _, a := range p.res.Actions {
			switch {
			case destructive(a.Kind):
				dropped[a.Module] = true
			case a.Kind == ActionStart && dropped[a.Module]:
			default:
				kept = append(kept, a)
			}
		}
		p.res.Actions = kept
		for name := range dropped {
			if a, ok := in.Actual[name]; ok {
				p.res.RestartCounts[name] = a.RestartCount
			}
		}
	}
	sort.SliceStable(p.res.Actions, func(i, j int) bool {
		ai, aj := p.res.Actions[i], p.res.Actions[j]
		if ri, rj := actionRank(ai.Kind), actionRank(aj.Kind); ri != rj {
			return ri < rj
		}
		if ri := actionRank(ai.Kind); ri >= 2 && ai.StartupOrder != aj.StartupOrder {
			return ai.StartupOrder < aj.StartupOrder
		}
		return ai.Module < aj.Module
	})

	p.res.Reported = p.report(status, version, desiredBy, observedBy)
	p.res.Next = p.next
	return p.res
}

// stripSystemEnv returns a module's env without the IoT Edge variables the
// agent adds, i.e. the env the deployment gave it.
func (in *Input) stripSystemEnv(name string, env map[string]string) map[string]EnvValue {
	sys := in.Env.systemEnv(name)
	out := map[string]EnvValue{}
	for k, v := range env {
		if _, ok := sys[k]; ok {
			continue
		}
		out[k] = EnvValue{Value: v}
	}
	return out
}

// report builds the reported-properties document.
func (p *planner) report(status LastDesiredStatus, version int64, desiredBy map[string]Module, observedBy map[string]observed) Reported {
	in := p.in
	r := Reported{
		SchemaVersion:      ReportedSchemaVersion,
		Version:            in.AgentVersion,
		LastDesiredVersion: version,
		LastDesiredStatus:  status,
		Runtime: ReportedRuntime{
			Platform: in.Platform,
			Settings: ReportedRuntimeSettings{RegistryCredentials: map[string]struct{}{}},
		},
		Modules: map[string]ReportedModule{},
	}
	agent := ReportedAgent{
		RuntimeStatus:     RuntimeRunning,
		StatusDescription: "running",
		LastStartTimeUtc:  Timestamp{in.AgentStartTime},
	}
	if d := in.Desired; d != nil {
		r.Runtime.Type = d.Runtime.Type
		r.Runtime.Settings.MinDockerVersion = d.Runtime.MinDockerVersion
		r.Runtime.Settings.LoggingOptions = d.Runtime.LoggingOptions
		agent.Type = d.EdgeAgent.Type
		agent.ImagePullPolicy = d.EdgeAgent.ImagePullPolicy
		agent.Settings = ReportedSettings{Image: d.EdgeAgent.Image, CreateOptions: d.EdgeAgent.CreateOptions}
	}
	r.SystemModules.EdgeAgent = agent

	for name, a := range in.Actual {
		if name == EdgeAgent {
			continue
		}
		obs, ok := observedBy[name]
		if !ok {
			obs = baseStatus(a)
		}
		rm := ReportedModule{
			Version:            a.State.Spec.Version,
			RuntimeStatus:      obs.status,
			StatusDescription:  obs.desc,
			ExitCode:           a.State.ExitCode,
			LastStartTimeUtc:   Timestamp{a.State.StartedAt},
			LastExitTimeUtc:    Timestamp{a.State.FinishedAt},
			RestartCount:       p.res.RestartCounts[name],
			LastRestartTimeUtc: Timestamp{a.LastRestartTime},
			Settings: ReportedSettings{
				Image:         a.State.Spec.Image,
				ImageHash:     a.State.ImageHash,
				CreateOptions: a.State.Spec.CreateOptions,
			},
			Env: in.stripSystemEnv(name, a.State.Spec.Env),
		}
		if m, ok := desiredBy[name]; ok {
			rm.Type, rm.Status, rm.RestartPolicy, rm.ImagePullPolicy = m.Type, m.Status, m.RestartPolicy, m.ImagePullPolicy
		}
		if name == EdgeHub {
			hub := rm
			r.SystemModules.EdgeHub = &hub
			continue
		}
		r.Modules[name] = rm
	}
	if r.SystemModules.EdgeHub == nil && in.Desired != nil {
		// The system module is always reported, even before it exists.
		m := in.Desired.EdgeHub
		obs, ok := observedBy[EdgeHub]
		if !ok {
			obs = observed{RuntimeUnknown, "unknown"}
		}
		r.SystemModules.EdgeHub = &ReportedModule{
			Version: m.Version, Type: m.Type, Status: m.Status, RestartPolicy: m.RestartPolicy,
			ImagePullPolicy: m.ImagePullPolicy, RuntimeStatus: obs.status, StatusDescription: obs.desc,
			Settings: ReportedSettings{Image: m.Image, CreateOptions: m.CreateOptions},
			Env:      envValues(m.Env),
		}
	}
	return r
}

func envValues(env map[string]string) map[string]EnvValue {
	out := make(map[string]EnvValue, len(env))
	for k, v := range env {
		out[k] = EnvValue{Value: v}
	}
	return out
}
