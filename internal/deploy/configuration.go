package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/twin"
)

// Limits and fixed names of configurations.
const (
	// MaxIDLength is the longest configuration ID.
	MaxIDLength = 128
	// MaxModules is the most modules one edge deployment may name, counted
	// both as module twins in modulesContent and as entries of $edgeAgent's
	// desired "modules".
	MaxModules = 50
	// SchemaVersion is the only configuration schemaVersion; Parse fills it
	// in when a request leaves it out, as the Node service SDK does.
	SchemaVersion = "1.0"

	// EdgeAgent and EdgeHub are the module IDs of the IoT Edge runtime.
	EdgeAgent = "$edgeAgent"
	EdgeHub   = "$edgeHub"

	// DesiredKey is the content key that sets a twin's whole desired
	// properties; DesiredKey+"."+path sets one path below them.
	DesiredKey = "properties.desired"
)

// idPunctuation are the characters besides a-z and 0-9 allowed in a
// configuration ID (hub-edge-protocol.md §1.1).
const idPunctuation = "-:+%_#*?!(),=@;$'"

// modulePunctuation are the characters besides letters and digits allowed in
// a module ID (§1.1); '.' and '$' are also refused for custom module names
// in a deployment because the name is a key of $edgeAgent's desired modules.
const modulePunctuation = "-:.+%_#*?!(),=@;$'"

// ErrInvalid is wrapped by every *ValidationError.
var ErrInvalid = errors.New("deploy: invalid configuration")

// Configuration is an automatic configuration or edge deployment in the
// service JSON shape.
type Configuration struct {
	ID              string            `json:"id"`
	SchemaVersion   string            `json:"schemaVersion"`
	Labels          map[string]string `json:"labels,omitempty"`
	Content         Content           `json:"content"`
	TargetCondition string            `json:"targetCondition"`
	CreatedTime     time.Time         `json:"createdTimeUtc"`
	LastUpdatedTime time.Time         `json:"lastUpdatedTimeUtc"`
	// Priority is non-negative; larger wins.
	Priority      int     `json:"priority"`
	SystemMetrics Metrics `json:"systemMetrics"`
	Metrics       Metrics `json:"metrics"`
	ETag          string  `json:"etag"`
}

// Content is what a configuration writes; exactly one member is non-empty.
// Empty members are treated as absent, because some SDKs send all three.
type Content struct {
	// ModulesContent is an edge deployment, keyed by module ID.
	ModulesContent map[string]TwinContent `json:"modulesContent,omitempty"`
	// ModuleContent is ADM content for module twins.
	ModuleContent TwinContent `json:"moduleContent,omitempty"`
	// DeviceContent is ADM content for device twins.
	DeviceContent TwinContent `json:"deviceContent,omitempty"`
}

// TwinContent maps "properties.desired" or "properties.desired.<path>" to
// the JSON value written there.
type TwinContent map[string]json.RawMessage

// Metrics are a configuration's metric queries and their last results.
type Metrics struct {
	Results map[string]int64  `json:"results"`
	Queries map[string]string `json:"queries"`
}

// Kind classifies a configuration by its content.
type Kind string

// The kinds of configuration.
const (
	// KindNone: the content is empty.
	KindNone Kind = ""
	// KindBase: an edge deployment that sets whole desired properties.
	KindBase Kind = "base"
	// KindLayered: an edge deployment layered on top of a base.
	KindLayered Kind = "layered"
	// KindDevice: ADM for device twins (deviceContent).
	KindDevice Kind = "device"
	// KindModule: ADM for module twins (moduleContent).
	KindModule Kind = "module"
)

// Kind returns the configuration's kind; when the content (invalidly) holds
// several kinds, modulesContent wins over moduleContent over deviceContent.
func (c *Configuration) Kind() Kind {
	switch {
	case len(c.Content.ModulesContent) > 0:
		if _, whole := c.Content.ModulesContent[EdgeAgent][DesiredKey]; whole {
			return KindBase
		}
		return KindLayered
	case len(c.Content.ModuleContent) > 0:
		return KindModule
	case len(c.Content.DeviceContent) > 0:
		return KindDevice
	default:
		return KindNone
	}
}

// IsEdge reports whether the configuration is an edge deployment.
func (c *Configuration) IsEdge() bool {
	k := c.Kind()
	return k == KindBase || k == KindLayered
}

// Condition returns the boolean expression a twin must satisfy: the
// targetCondition without surrounding space, and for moduleContent without
// its "from devices.modules where" prefix. "*" means every twin.
func (c *Configuration) Condition() string {
	cond := strings.TrimSpace(c.TargetCondition)
	if c.Kind() == KindModule {
		if where, ok := moduleWhere(cond); ok {
			return where
		}
	}
	return cond
}

// moduleWhere splits "from devices.modules where <expr>" (keywords in any
// case, any white space between them) and returns <expr>.
func moduleWhere(cond string) (string, bool) {
	rest := strings.TrimSpace(cond)
	for _, word := range []string{"from", "devices.modules", "where"} {
		if len(rest) <= len(word) || !strings.EqualFold(rest[:len(word)], word) || !isSpace(rest[len(word)]) {
			return "", false
		}
		rest = strings.TrimLeft(rest[len(word):], " \t\r\n")
	}
	return rest, rest != ""
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

// Problem is one broken rule: Path names the member (for example
// `content.modulesContent.$edgeAgent["properties.desired.modules.x"]`).
type Problem struct {
	Path   string
	Reason string
}

// ValidationError lists every problem found in a configuration.
type ValidationError struct {
	Problems []Problem
}

// Error lists every problem as "<path>: <reason>", separated by "; ".
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Path + ": " + p.Reason
	}
	return "invalid configuration: " + strings.Join(parts, "; ")
}

// Unwrap returns ErrInvalid.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Parse decodes one configuration from JSON (a PUT /configurations/{id}
// body), fills in the default schemaVersion and validates it.
func Parse(data []byte) (Configuration, error) {
	var c Configuration
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		return Configuration{}, &ValidationError{Problems: []Problem{{Path: "configuration", Reason: "invalid JSON: " + err.Error()}}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Configuration{}, &ValidationError{Problems: []Problem{{Path: "configuration", Reason: "invalid JSON: data after the top-level value"}}}
	}
	if c.SchemaVersion == "" {
		c.SchemaVersion = SchemaVersion
	}
	if err := c.Validate(); err != nil {
		return Configuration{}, err
	}
	return c, nil
}

// Validate checks every rule and returns a *ValidationError listing all
// problems, or nil.
func (c *Configuration) Validate() error {
	v := &validation{}
	v.id(c.ID)
	if c.SchemaVersion != SchemaVersion {
		v.add("schemaVersion", fmt.Sprintf("is %q; the only schema version is %q", c.SchemaVersion, SchemaVersion))
	}
	if c.Priority < 0 {
		v.add("priority", fmt.Sprintf("is %d; it must be 0 or more", c.Priority))
	}
	for _, k := range sortedKeys(c.Labels) {
		if strings.TrimSpace(k) == "" {
			v.add("labels", "has an empty label name")
		}
	}
	for _, name := range sortedKeys(c.Metrics.Queries) {
		if strings.TrimSpace(name) == "" {
			v.add("metrics.queries", "has an empty metric name")
		} else if strings.TrimSpace(c.Metrics.Queries[name]) == "" {
			v.add("metrics.queries["+strconv.Quote(name)+"]", "query is empty")
		}
	}
	v.content(c)
	v.condition(c)
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: v.problems}
}

type validation struct {
	problems []Problem
}

func (v *validation) add(path, reason string) {
	v.problems = append(v.problems, Problem{Path: path, Reason: reason})
}

func (v *validation) id(id string) {
	switch {
	case id == "":
		v.add("id", "is required")
		return
	case len(id) > MaxIDLength:
		v.add("id", fmt.Sprintf("is %d characters, over the %d-character limit", len(id), MaxIDLength))
		return
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune(idPunctuation, r)) {
			v.add("id", fmt.Sprintf("%q contains %q; allowed are lower-case letters, digits and %s", id, r, idPunctuation))
			return
		}
	}
}

func (v *validation) condition(c *Configuration) {
	cond := strings.TrimSpace(c.TargetCondition)
	switch {
	case cond == "":
		v.add("targetCondition", `is required ("*" targets every device)`)
	case c.Kind() == KindModule && len(c.Content.DeviceContent) == 0:
		if _, ok := moduleWhere(cond); !ok {
			v.add("targetCondition", fmt.Sprintf(`%q: moduleContent needs a module twin condition of the form "from devices.modules where <condition>"`, c.TargetCondition))
		}
	}
}

func (v *validation) content(c *Configuration) {
	var kinds []string
	if len(c.Content.ModulesContent) > 0 {
		kinds = append(kinds, "modulesContent")
	}
	if len(c.Content.ModuleContent) > 0 {
		kinds = append(kinds, "moduleContent")
	}
	if len(c.Content.DeviceContent) > 0 {
		kinds = append(kinds, "deviceContent")
	}
	switch len(kinds) {
	case 0:
		v.add("content", "is empty; exactly one of modulesContent, moduleContent or deviceContent is required")
		return
	case 1:
	default:
		v.add("content", fmt.Sprintf("has %s; exactly one kind of content is allowed", strings.Join(kinds, " and ")))
		return
	}
	switch {
	case len(c.Content.ModuleContent) > 0:
		v.adm("content.moduleContent", c.Content.ModuleContent)
	case len(c.Content.DeviceContent) > 0:
		v.adm("content.deviceContent", c.Content.DeviceContent)
	default:
		v.modules(c.Kind(), c.Content.ModulesContent)
	}
}

// entryPath names one content key.
func entryPath(prefix, key string) string { return prefix + "[" + strconv.Quote(key) + "]" }

// adm checks ADM content: only "properties.desired.<path>" keys.
func (v *validation) adm(prefix string, content TwinContent) {
	for _, key := range sortedKeys(content) {
		path, ok := desiredPath(key)
		if !ok || len(path) == 0 {
			v.add(entryPath(prefix, key), `must name a property below the desired properties: "properties.desired.<name>"`)
			continue
		}
		v.value(entryPath(prefix, key), path, content[key])
	}
}

// value checks the JSON written at path (nil: the whole desired properties).
func (v *validation) value(at string, path []string, raw json.RawMessage) {
	if path == nil {
		if err := twin.Validate(twin.SectionDesired, raw); err != nil {
			v.add(at, err.Error())
		}
		return
	}
	if err := twin.ValidateAssignment(twin.SectionDesired, twin.Assignment{Path: path, Value: raw}); err != nil {
		v.add(at, err.Error())
	}
}

// desiredPath splits a content key: "properties.desired" gives an empty
// (non-nil) path, "properties.desired.a.b" gives [a b]; anything else is
// not a desired-properties key.
func desiredPath(key string) ([]string, bool) {
	if key == DesiredKey {
		return []string{}, true
	}
	rest, ok := strings.CutPrefix(key, DesiredKey+".")
	if !ok {
		return nil, false
	}
	return strings.Split(rest, "."), true
}

func (v *validation) modules(kind Kind, mc map[string]TwinContent) {
	custom := 0
	for _, name := range sortedKeys(mc) {
		prefix := "content.modulesContent." + name
		system := name == EdgeAgent || name == EdgeHub
		if !system {
			custom++
			if reason := moduleNameProblem(name); reason != "" {
				v.add("content.modulesContent["+strconv.Quote(name)+"]", reason)
				continue
			}
		}
		entries := mc[name]
		if len(entries) == 0 {
			v.add(prefix, `is empty; set "properties.desired" or "properties.desired.<path>"`)
			continue
		}
		for _, key := range sortedKeys(entries) {
			at := entryPath(prefix, key)
			path, ok := desiredPath(key)
			switch {
			case !ok:
				v.add(at, `only "properties.desired" and "properties.desired.<path>" can be set`)
				continue
			case kind == KindBase && len(path) > 0:
				v.add(at, `a base deployment (whole "properties.desired" on $edgeAgent) sets whole "properties.desired" only; move this path into it or into a layered deployment`)
				continue
			case kind == KindLayered && system && len(path) == 0:
				v.add(at, fmt.Sprintf(`replaces the whole desired properties of %s, which only a base deployment may do; a base deployment also needs "properties.desired" on $edgeAgent, and a layered one sets paths like "properties.desired.modules.<name>"`, name))
				continue
			}
			if len(path) == 0 {
				v.value(at, nil, entries[key])
			} else {
				v.value(at, path, entries[key])
			}
		}
	}
	if kind == KindBase {
		if _, ok := mc[EdgeHub][DesiredKey]; !ok {
			v.add("content.modulesContent.$edgeHub", `a base deployment needs "properties.desired" on $edgeHub as well as on $edgeAgent`)
		}
	}
	if custom > MaxModules {
		v.add("content.modulesContent", fmt.Sprintf("names %d modules besides $edgeAgent and $edgeHub, over the limit of %d", custom, MaxModules))
	}
	if n := agentModules(kind, mc[EdgeAgent]); n > MaxModules {
		v.add("content.modulesContent.$edgeAgent", fmt.Sprintf("deploys %d modules, over the limit of %d", n, MaxModules))
	}
}

// agentModules counts the modules $edgeAgent's content deploys: the members
// of desired "modules" in a base, the distinct names under
// "properties.desired.modules.<name>" in a layer.
func agentModules(kind Kind, agent TwinContent) int {
	if kind == KindBase {
		var desired struct {
			Modules map[string]json.RawMessage `json:"modules"`
		}
		if json.Unmarshal(agent[DesiredKey], &desired) != nil {
			return 0 // the value check reports the problem
		}
		return len(desired.Modules)
	}
	names := map[string]bool{}
	for key := range agent {
		if path, ok := desiredPath(key); ok && len(path) >= 2 && path[0] == "modules" {
			names[path[1]] = true
		}
	}
	return len(names)
}

// moduleNameProblem checks a custom module name: a module ID (§1.1) that is
// also a twin key (it names an entry of $edgeAgent's desired modules).
func moduleNameProblem(name string) string {
	if strings.HasPrefix(name, "$") {
		return fmt.Sprintf("module %q: '$'-prefixed module IDs are reserved for $edgeAgent and $edgeHub", name)
	}
	if len(name) > 128 {
		return fmt.Sprintf("module ID is %d characters, over the 128-character limit", len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(modulePunctuation, r)) {
			return fmt.Sprintf("module ID %q contains %q; allowed are letters, digits and %s", name, r, modulePunctuation)
		}
	}
	if err := twin.ValidateKey(name); err != nil {
		return "module name is not usable as a key of $edgeAgent's desired modules: " + err.Error()
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// contentKeys orders one module's content keys for application: the whole
// "properties.desired" first, then paths in segment order, so that a path
// is applied before the paths below it.
func contentKeys(entries TwinContent) []string {
	keys := sortedKeys(entries)
	sort.SliceStable(keys, func(i, j int) bool {
		pi, _ := desiredPath(keys[i])
		pj, _ := desiredPath(keys[j])
		return slices.Compare(pi, pj) < 0
	})
	return keys
}
