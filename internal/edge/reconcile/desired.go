// Package reconcile owns the edge agent's decisions: it parses the
// $edgeAgent desired properties of a deployment (schemaVersion, runtime,
// systemModules, modules, with chunked createOptions reassembled), and
// Plan — a pure function of the desired state, the modules the runtime
// reports and the clock — returns the actions that move the device toward
// the deployment (create, recreate, start, stop, remove, restart under the
// restart policy with exponential back-off) and the $edgeAgent reported
// properties document (hub-edge spec §5.6). It also renders the rows of
// `iotedge list` (§7.2).
//
// The package performs no I/O of its own and keeps no state: the
// supervisor feeds it observations and executes its plan. It may import
// the runtime types package but must not import net/http, an MQTT library,
// a SQL driver or any runtime implementation.
package reconcile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// MaxDesiredSize is the largest desired-properties document Parse accepts.
const MaxDesiredSize = 4 << 20

// The system module names.
const (
	EdgeAgent = "edgeAgent"
	EdgeHub   = "edgeHub"
)

// DefaultStartupOrder is a module's startupOrder when none is given: last.
const DefaultStartupOrder = math.MaxUint32

// DesiredStatus is a module's desired status.
type DesiredStatus string

// The desired statuses.
const (
	StatusRunning DesiredStatus = "running"
	StatusStopped DesiredStatus = "stopped"
)

// RestartPolicy says when the agent restarts a module that is not running.
type RestartPolicy string

// The restart policies, from least to most eager.
const (
	// RestartNever never restarts a module.
	RestartNever RestartPolicy = "never"
	// RestartOnFailure restarts a module that exited with a non-zero
	// exit code (or that the runtime reports dead).
	RestartOnFailure RestartPolicy = "on-failure"
	// RestartOnUnhealthy restarts a failed or unhealthy module. The agent
	// runs no health checks of its own, so it behaves as on-failure; a
	// Docker HEALTHCHECK that kills the container has the same effect.
	RestartOnUnhealthy RestartPolicy = "on-unhealthy"
	// RestartAlways restarts a module whenever it is not running.
	RestartAlways RestartPolicy = "always"
)

// Image pull policies.
const (
	PullOnCreate = "on-create"
	PullNever    = "never"
)

// The lastDesiredStatus codes (hub-edge spec §5.6).
const (
	// CodeOK means the deployment was applied.
	CodeOK = 200
	// CodeBadConfig means the desired properties could not be read.
	CodeBadConfig = 400
	// CodeUnknown means the agent cannot tell (not connected yet, or
	// shutting down).
	CodeUnknown = 406
	// CodeBadSchemaVersion means schemaVersion is not supported.
	CodeBadSchemaVersion = 412
	// CodeEmptyConfig means no deployment has been received.
	CodeEmptyConfig = 417
	// CodeApplyFailed means applying the deployment failed.
	CodeApplyFailed = 500
)

// ErrInvalidDesired matches every *DesiredError.
var ErrInvalidDesired = errors.New("invalid $edgeAgent desired properties")

// DesiredError says why desired properties were rejected: the status code
// to report, the twin version they had, and the module and field at fault.
// It matches ErrInvalidDesired with errors.Is.
type DesiredError struct {
	// Code is CodeBadConfig, CodeBadSchemaVersion or CodeEmptyConfig.
	Code int
	// Version is the $version of the rejected document (0 if unreadable).
	Version int64
	// Module is the module at fault, or "" for document-level problems.
	Module string
	// Field is the dotted path of the offending field from the document
	// root, e.g. "modules.tempSensor.settings.createOptions".
	Field string
	// Msg says what is wrong.
	Msg string
}

func (e *DesiredError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("invalid $edgeAgent desired properties (%d): %s", e.Code, e.Msg)
	}
	return fmt.Sprintf("invalid $edgeAgent desired properties (%d): %s: %s", e.Code, e.Field, e.Msg)
}

// Is reports whether target is ErrInvalidDesired.
func (e *DesiredError) Is(target error) bool { return target == ErrInvalidDesired }

// Desired is a parsed, validated $edgeAgent desired-properties document.
type Desired struct {
	// Version is the document's twin $version (0 when absent).
	Version int64
	// SchemaVersion is the manifest schema version ("1.0" or "1.1").
	SchemaVersion string
	// Runtime is the runtime section.
	Runtime RuntimeConfig
	// EdgeAgent and EdgeHub are the system modules.
	EdgeAgent Module
	EdgeHub   Module
	// Modules are the custom modules by name.
	Modules map[string]Module
}

// RuntimeConfig is the desired runtime section.
type RuntimeConfig struct {
	// Type is "docker" (or "process").
	Type             string
	MinDockerVersion string
	LoggingOptions   string
	// RegistryCredentials are keyed by the name the deployment gives them.
	RegistryCredentials map[string]RegistryCredential
}

// RegistryCredential is one container-registry login.
type RegistryCredential struct {
	Address  string
	Username string
	Password string
}

// Module is one desired module.
type Module struct {
	Name            string
	Version         string
	Type            string
	Status          DesiredStatus
	RestartPolicy   RestartPolicy
	ImagePullPolicy string
	StartupOrder    uint32
	Image           string
	// CreateOptions is the reassembled createOptions, normalised to
	// compact JSON with sorted keys ("{}" when empty).
	CreateOptions string
	// Digest is the optional settings.digest (reported, not enforced).
	Digest string
	// Env is the desired environment, name to value.
	Env map[string]string
}

// moduleKind selects per-kind defaults and rules.
type moduleKind int

const (
	kindAgent moduleKind = iota
	kindHub
	kindCustom
)

// parser carries the document version into every error.
type parser struct {
	version int64
}

func (p *parser) fail(code int, module, field, format string, args ...any) *DesiredError {
	return &DesiredError{Code: code, Version: p.version, Module: module, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// decodeObject decodes raw as a JSON object of raw members.
func decodeObject(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, false
	}
	return m, true
}

// jsonKind names the JSON type of raw for error messages.
func jsonKind(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// str decodes an optional string member; absent or null gives "".
func (p *parser) str(obj map[string]json.RawMessage, key, module, path string) (string, error) {
	raw, ok := obj[key]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", p.fail(CodeBadConfig, module, path, "must be a string, not %s", jsonKind(raw))
	}
	return s, nil
}

// Parse reads an $edgeAgent desired-properties document (the twin's
// properties.desired, with or without $version and $metadata). A document
// with nothing but $version/$metadata is CodeEmptyConfig; an unsupported
// schemaVersion is CodeBadSchemaVersion; anything else wrong is
// CodeBadConfig. Errors are *DesiredError naming the module and field.
func Parse(raw []byte) (*Desired, error) {
	p := &parser{}
	if len(raw) > MaxDesiredSize {
		return nil, p.fail(CodeBadConfig, "", "", "document is %d bytes, more than the %d allowed", len(raw), MaxDesiredSize)
	}
	top, ok := decodeObject(raw)
	if !ok {
		return nil, p.fail(CodeBadConfig, "", "", "document is not a JSON object")
	}
	if v, ok := top["$version"]; ok {
		n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil {
			return nil, p.fail(CodeBadConfig, "", "$version", "must be an integer")
		}
		p.version = n
	}
	content := 0
	for k := range top {
		if k != "$version" && k != "$metadata" {
			content++
		}
	}
	if content == 0 {
		return nil, p.fail(CodeEmptyConfig, "", "", "no deployment: the desired properties are empty")
	}
	d := &Desired{Version: p.version, Modules: map[string]Module{}}

	sv, err := p.str(top, "schemaVersion", "", "schemaVersion")
	if err != nil {
		return nil, err
	}
	if err := p.schemaVersion(sv); err != nil {
		return nil, err
	}
	d.SchemaVersion = sv

	if d.Runtime, err = p.runtime(top["runtime"]); err != nil {
		return nil, err
	}

	rawSys, ok := top["systemModules"]
	if !ok {
		return nil, p.fail(CodeBadConfig, "", "systemModules", "required")
	}
	sys, ok := decodeObject(rawSys)
	if !ok {
		return nil, p.fail(CodeBadConfig, "", "systemModules", "must be an object, not %s", jsonKind(rawSys))
	}
	for name := range sys {
		if name != EdgeAgent && name != EdgeHub {
			return nil, p.fail(CodeBadConfig, name, "systemModules."+name, "unknown system module (only edgeAgent and edgeHub exist)")
		}
	}
	for _, sm := range []struct {
		name string
		kind moduleKind
		dst  *Module
	}{{EdgeAgent, kindAgent, &d.EdgeAgent}, {EdgeHub, kindHub, &d.EdgeHub}} {
		raw, ok := sys[sm.name]
		if !ok {
			return nil, p.fail(CodeBadConfig, sm.name, "systemModules."+sm.name, "required")
		}
		m, err := p.module(raw, sm.name, "systemModules."+sm.name, sm.kind)
		if err != nil {
			return nil, err
		}
		*sm.dst = m
	}

	if rawMods, ok := top["modules"]; ok && !bytes.Equal(bytes.TrimSpace(rawMods), []byte("null")) {
		mods, ok := decodeObject(rawMods)
		if !ok {
			return nil, p.fail(CodeBadConfig, "", "modules", "must be an object, not %s", jsonKind(rawMods))
		}
		names := make([]string, 0, len(mods))
		for name := range mods {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			path := "modules." + name
			if err := validModuleName(name); err != nil {
				return nil, p.fail(CodeBadConfig, name, path, "invalid module name: %v", err)
			}
			if name == EdgeAgent || name == EdgeHub {
				return nil, p.fail(CodeBadConfig, name, path, "%s is a system module; configure it under systemModules", name)
			}
			m, err := p.module(mods[name], name, path, kindCustom)
			if err != nil {
				return nil, err
			}
			d.Modules[name] = m
		}
	}
	return d, nil
}

// schemaVersion accepts major 1 up to 1.1.0 (hub-edge spec §5.2).
func (p *parser) schemaVersion(sv string) error {
	if sv == "" {
		return p.fail(CodeBadConfig, "", "schemaVersion", "required")
	}
	parts := strings.Split(sv, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return p.fail(CodeBadConfig, "", "schemaVersion", "%q is not major.minor[.patch]", sv)
	}
	var n [3]uint64
	for i, part := range parts {
		v, err := strconv.ParseUint(part, 10, 32)
		if err != nil {
			return p.fail(CodeBadConfig, "", "schemaVersion", "%q is not major.minor[.patch]", sv)
		}
		n[i] = v
	}
	if n[0] != 1 || n[1] > 1 || (n[1] == 1 && n[2] > 0) {
		return p.fail(CodeBadSchemaVersion, "", "schemaVersion", "%q is not supported (this agent accepts 1.0 to 1.1.0)", sv)
	}
	return nil
}

// runtime parses the runtime section.
func (p *parser) runtime(raw json.RawMessage) (RuntimeConfig, error) {
	var rc RuntimeConfig
	if raw == nil {
		return rc, p.fail(CodeBadConfig, "", "runtime", "required")
	}
	obj, ok := decodeObject(raw)
	if !ok {
		return rc, p.fail(CodeBadConfig, "", "runtime", "must be an object, not %s", jsonKind(raw))
	}
	typ, err := p.str(obj, "type", "", "runtime.type")
	if err != nil {
		return rc, err
	}
	if err := validType(typ); err != nil {
		return rc, p.fail(CodeBadConfig, "", "runtime.type", "%v", err)
	}
	rc.Type = typ
	rawSettings, ok := obj["settings"]
	if !ok || bytes.Equal(bytes.TrimSpace(rawSettings), []byte("null")) {
		return rc, nil
	}
	settings, ok := decodeObject(rawSettings)
	if !ok {
		return rc, p.fail(CodeBadConfig, "", "runtime.settings", "must be an object, not %s", jsonKind(rawSettings))
	}
	if rc.MinDockerVersion, err = p.str(settings, "minDockerVersion", "", "runtime.settings.minDockerVersion"); err != nil {
		return rc, err
	}
	if rc.LoggingOptions, err = p.str(settings, "loggingOptions", "", "runtime.settings.loggingOptions"); err != nil {
		return rc, err
	}
	rawCreds, ok := settings["registryCredentials"]
	if !ok || bytes.Equal(bytes.TrimSpace(rawCreds), []byte("null")) {
		return rc, nil
	}
	creds, ok := decodeObject(rawCreds)
	if !ok {
		return rc, p.fail(CodeBadConfig, "", "runtime.settings.registryCredentials", "must be an object, not %s", jsonKind(rawCreds))
	}
	rc.RegistryCredentials = make(map[string]RegistryCredential, len(creds))
	for name, rawCred := range creds {
		path := "runtime.settings.registryCredentials." + name
		cred, ok := decodeObject(rawCred)
		if !ok {
			return rc, p.fail(CodeBadConfig, "", path, "must be an object, not %s", jsonKind(rawCred))
		}
		var c RegistryCredential
		for _, f := range []struct {
			key string
			dst *string
		}{{"address", &c.Address}, {"username", &c.Username}, {"password", &c.Password}} {
			v, err := p.str(cred, f.key, "", path+"."+f.key)
			if err != nil {
				return rc, err
			}
			if v == "" {
				return rc, p.fail(CodeBadConfig, "", path+"."+f.key, "required")
			}
			*f.dst = v
		}
		rc.RegistryCredentials[name] = c
	}
	return rc, nil
}

func validType(typ string) error {
	switch typ {
	case "docker", "process":
		return nil
	case "":
		return errors.New("required")
	default:
		return fmt.Errorf("%q is not supported (docker or process)", typ)
	}
}

// validModuleName applies IoT Hub's module-ID rules: 1 to 128 ASCII
// letters, digits and -:.+%_#*?!(),=@;$' — and no leading '$', which is
// reserved for system identities.
func validModuleName(name string) error {
	if name == "" || len(name) > 128 {
		return errors.New("must be 1 to 128 characters")
	}
	if name[0] == '$' {
		return errors.New("must not start with '$'")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-:.+%_#*?!(),=@;$'", c) >= 0:
		default:
			return fmt.Errorf("character %q is not allowed", c)
		}
	}
	return nil
}

// module parses one module definition at path.
func (p *parser) module(raw json.RawMessage, name, path string, kind moduleKind) (Module, error) {
	m := Module{Name: name, StartupOrder: DefaultStartupOrder}
	obj, ok := decodeObject(raw)
	if !ok {
		return m, p.fail(CodeBadConfig, name, path, "must be an object, not %s", jsonKind(raw))
	}
	var err error
	if m.Version, err = p.str(obj, "version", name, path+".version"); err != nil {
		return m, err
	}
	if m.Type, err = p.str(obj, "type", name, path+".type"); err != nil {
		return m, err
	}
	if err := validType(m.Type); err != nil {
		return m, p.fail(CodeBadConfig, name, path+".type", "%v", err)
	}

	status, err := p.str(obj, "status", name, path+".status")
	if err != nil {
		return m, err
	}
	switch DesiredStatus(status) {
	case "":
		m.Status = StatusRunning
	case StatusRunning, StatusStopped:
		m.Status = DesiredStatus(status)
	default:
		return m, p.fail(CodeBadConfig, name, path+".status", "%q is not running or stopped", status)
	}

	policy, err := p.str(obj, "restartPolicy", name, path+".restartPolicy")
	if err != nil {
		return m, err
	}
	switch RestartPolicy(policy) {
	case "":
		m.RestartPolicy = RestartOnUnhealthy
		if kind != kindCustom {
			m.RestartPolicy = RestartAlways
		}
	case RestartNever, RestartOnFailure, RestartOnUnhealthy, RestartAlways:
		m.RestartPolicy = RestartPolicy(policy)
	default:
		return m, p.fail(CodeBadConfig, name, path+".restartPolicy", "%q is not never, on-failure, on-unhealthy or always", policy)
	}
	if kind == kindAgent {
		// The agent runs as long as the device does; it has no desired
		// status, restart policy or startup order.
		m.Status, m.RestartPolicy = StatusRunning, RestartAlways
	}

	pull, err := p.str(obj, "imagePullPolicy", name, path+".imagePullPolicy")
	if err != nil {
		return m, err
	}
	switch pull {
	case "":
		m.ImagePullPolicy = PullOnCreate
	case PullOnCreate, PullNever:
		m.ImagePullPolicy = pull
	default:
		return m, p.fail(CodeBadConfig, name, path+".imagePullPolicy", "%q is not on-create or never", pull)
	}

	if rawOrder, ok := obj["startupOrder"]; ok && kind != kindAgent && !bytes.Equal(bytes.TrimSpace(rawOrder), []byte("null")) {
		order, err := strconv.ParseUint(string(bytes.TrimSpace(rawOrder)), 10, 32)
		if err != nil {
			return m, p.fail(CodeBadConfig, name, path+".startupOrder", "must be an integer from 0 to 4294967295, not %s", bytes.TrimSpace(rawOrder))
		}
		m.StartupOrder = uint32(order)
	}

	rawSettings, ok := obj["settings"]
	if !ok {
		return m, p.fail(CodeBadConfig, name, path+".settings", "required")
	}
	settings, ok := decodeObject(rawSettings)
	if !ok {
		return m, p.fail(CodeBadConfig, name, path+".settings", "must be an object, not %s", jsonKind(rawSettings))
	}
	if m.Image, err = p.str(settings, "image", name, path+".settings.image"); err != nil {
		return m, err
	}
	if strings.TrimSpace(m.Image) == "" {
		return m, p.fail(CodeBadConfig, name, path+".settings.image", "required")
	}
	if m.Digest, err = p.str(settings, "digest", name, path+".settings.digest"); err != nil {
		return m, err
	}
	if m.CreateOptions, err = p.createOptions(settings, name, path+".settings"); err != nil {
		return m, err
	}
	if m.Env, err = p.env(obj["env"], name, path+".env"); err != nil {
		return m, err
	}
	return m, nil
}

// createOptions reassembles createOptions, createOptions01, … 99 (each a
// string, contiguous from createOptions) and normalises the JSON object.
func (p *parser) createOptions(settings map[string]json.RawMessage, name, path string) (string, error) {
	var chunks []int
	for key := range settings {
		rest, ok := strings.CutPrefix(key, "createOptions")
		if !ok {
			continue
		}
		if rest == "" {
			chunks = append(chunks, 0)
			continue
		}
		n, err := strconv.Atoi(rest)
		if len(rest) != 2 || err != nil || n < 1 {
			return "", p.fail(CodeBadConfig, name, path+"."+key, "not a createOptions chunk (createOptions01 to createOptions99)")
		}
		chunks = append(chunks, n)
	}
	sort.Ints(chunks)
	var text strings.Builder
	for i, n := range chunks {
		key := chunkKey(n)
		if n != i {
			return "", p.fail(CodeBadConfig, name, path+"."+key, "chunk without its predecessor %s", chunkKey(i))
		}
		s, err := p.str(settings, key, name, path+"."+key)
		if err != nil {
			return "", err
		}
		text.WriteString(s)
	}
	field := path + ".createOptions"
	norm, err := NormalizeCreateOptions(text.String())
	if err != nil {
		return "", p.fail(CodeBadConfig, name, field, "%v", err)
	}
	return norm, nil
}

// chunkKey names createOptions chunk n.
func chunkKey(n int) string {
	if n == 0 {
		return "createOptions"
	}
	return fmt.Sprintf("createOptions%02d", n)
}

// NormalizeCreateOptions checks that s is a JSON object ("" means {}) and
// returns it compact with sorted keys, numbers kept exactly and no HTML
// escaping, so equal options always compare equal as text.
func NormalizeCreateOptions(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "{}", nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("not valid JSON: %v", err)
	}
	if rest := strings.TrimSpace(s[dec.InputOffset():]); rest != "" {
		return "", errors.New("not valid JSON: data after the object")
	}
	if _, ok := v.(map[string]any); !ok {
		return "", fmt.Errorf("must be a JSON object, not %s", jsonKind(json.RawMessage(s)))
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("re-encode: %v", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// env parses env: {"NAME": {"value": "…"}}. Values may be strings,
// numbers or booleans (kept as their JSON text); null is "".
func (p *parser) env(raw json.RawMessage, name, path string) (map[string]string, error) {
	out := map[string]string{}
	if raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return out, nil
	}
	obj, ok := decodeObject(raw)
	if !ok {
		return nil, p.fail(CodeBadConfig, name, path, "must be an object, not %s", jsonKind(raw))
	}
	for key, rawVar := range obj {
		vpath := path + "." + key
		if key == "" || strings.ContainsAny(key, "=\x00") {
			return nil, p.fail(CodeBadConfig, name, vpath, "invalid environment variable name")
		}
		v, ok := decodeObject(rawVar)
		if !ok {
			return nil, p.fail(CodeBadConfig, name, vpath, "must be an object {\"value\": …}, not %s", jsonKind(rawVar))
		}
		rawVal, ok := v["value"]
		if !ok {
			return nil, p.fail(CodeBadConfig, name, vpath+".value", "required")
		}
		t := bytes.TrimSpace(rawVal)
		switch {
		case bytes.Equal(t, []byte("null")):
			out[key] = ""
		case len(t) > 0 && t[0] == '"':
			var s string
			if err := json.Unmarshal(t, &s); err != nil {
				return nil, p.fail(CodeBadConfig, name, vpath+".value", "invalid string")
			}
			if strings.ContainsRune(s, 0) {
				return nil, p.fail(CodeBadConfig, name, vpath+".value", "contains a NUL character")
			}
			out[key] = s
		case len(t) > 0 && (t[0] == '{' || t[0] == '['):
			return nil, p.fail(CodeBadConfig, name, vpath+".value", "must be a string, number or boolean, not %s", jsonKind(t))
		default:
			out[key] = string(t)
		}
	}
	return out, nil
}
