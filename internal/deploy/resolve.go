package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/muster-iot/muster/internal/twin"
)

// Status is a configuration's status on a twin (configurations.{id}.status).
type Status string

// The statuses.
const (
	// StatusApplied: the configuration's content was written to the twin.
	StatusApplied Status = "Applied"
	// StatusTargeted: the target condition matches but another
	// configuration won.
	StatusTargeted Status = "Targeted"
)

// TargetInfo is the twin being resolved.
type TargetInfo struct {
	DeviceID string
	// ModuleID is empty when resolving a device (edge deployments and
	// deviceContent); otherwise only moduleContent applies.
	ModuleID string
	// IoTEdge is the device's capabilities.iotEdge; edge deployments
	// consider only edge devices.
	IoTEdge bool
}

// Result is what the matching configurations write for one twin.
type Result struct {
	// Edge is the outcome of edge deployments for a device.
	Edge EdgeResult
	// ADM is the outcome of deviceContent (device) or moduleContent
	// (module) configurations.
	ADM ADMResult
}

// EdgeResult is the outcome of edge deployments for one edge device.
type EdgeResult struct {
	// Base is the ID of the applied base deployment, empty when none applies.
	Base string
	// Layers are the IDs of the applied layered deployments, in the order
	// they were applied.
	Layers []string
	// Modules maps module IDs ($edgeAgent, $edgeHub and custom modules) to
	// the desired properties to write to their twins wholesale; nil when no
	// base applies.
	Modules map[string]json.RawMessage
	// Statuses are the statuses of every matching edge deployment, for the
	// configurations map of the device's module twins; nil when none matches.
	Statuses map[string]Status
}

// ADMResult is the outcome of ADM configurations for one twin.
type ADMResult struct {
	// Applied is the ID of the applied configuration, empty when none applies.
	Applied string
	// Assignments are the applied configuration's content, to write with
	// twin.AssignDesired, ordered so that a path precedes the paths below it.
	Assignments []twin.Assignment
	// Statuses are the statuses of every matching ADM configuration, for the
	// twin's configurations map; nil when none matches.
	Statuses map[string]Status
}

// ErrDuplicateID means two configurations passed to Resolve share an ID.
var ErrDuplicateID = errors.New("deploy: duplicate configuration id")

// Resolve decides which configurations apply to one twin and what they
// write (see the package documentation for the rules). matches evaluates a
// target condition (Configuration.Condition) against the twin; it is not
// called for "*". configs must have passed Validate; configurations that do
// not apply to this kind of twin are skipped without calling matches.
func Resolve(device TargetInfo, configs []Configuration, matches func(cond string) (bool, error)) (Result, error) {
	var bases, layers, adm []*Configuration
	seen := make(map[string]bool, len(configs))
	for i := range configs {
		c := &configs[i]
		if seen[c.ID] {
			return Result{}, fmt.Errorf("resolve configuration %q: %w", c.ID, ErrDuplicateID)
		}
		seen[c.ID] = true
		kind := c.Kind()
		switch kind {
		case KindBase, KindLayered:
			if device.ModuleID != "" || !device.IoTEdge {
				continue
			}
		case KindDevice:
			if device.ModuleID != "" {
				continue
			}
		case KindModule:
			if device.ModuleID == "" {
				continue
			}
		default:
			continue
		}
		cond := c.Condition()
		if cond != "*" {
			ok, err := matches(cond)
			if err != nil {
				return Result{}, fmt.Errorf("evaluate targetCondition of configuration %q: %w", c.ID, err)
			}
			if !ok {
				continue
			}
		}
		switch kind {
		case KindBase:
			bases = append(bases, c)
		case KindLayered:
			layers = append(layers, c)
		default:
			adm = append(adm, c)
		}
	}
	var r Result
	var err error
	if r.Edge, err = resolveEdge(bases, layers); err != nil {
		return Result{}, err
	}
	if r.ADM, err = resolveADM(adm); err != nil {
		return Result{}, err
	}
	return r, nil
}

// ranksBelow orders configurations by precedence: lower priority first,
// then older createdTimeUtc, then smaller ID.
func ranksBelow(a, b *Configuration) bool {
	if a.Priority != b.Priority {
		return a.Priority < b.Priority
	}
	if !a.CreatedTime.Equal(b.CreatedTime) {
		return a.CreatedTime.Before(b.CreatedTime)
	}
	return a.ID < b.ID
}

func byPrecedence(cs []*Configuration) {
	sort.Slice(cs, func(i, j int) bool { return ranksBelow(cs[i], cs[j]) })
}

func resolveEdge(bases, layers []*Configuration) (EdgeResult, error) {
	var r EdgeResult
	if len(bases)+len(layers) == 0 {
		return r, nil
	}
	r.Statuses = make(map[string]Status, len(bases)+len(layers))
	for _, c := range bases {
		r.Statuses[c.ID] = StatusTargeted
	}
	for _, c := range layers {
		r.Statuses[c.ID] = StatusTargeted
	}
	if len(bases) == 0 {
		return r, nil
	}
	byPrecedence(bases)
	byPrecedence(layers)
	base := bases[len(bases)-1]
	r.Base = base.ID
	r.Statuses[base.ID] = StatusApplied

	modules := map[string]map[string]any{}
	if err := applyModules(modules, base); err != nil {
		return EdgeResult{}, err
	}
	for _, l := range layers {
		if l.Priority <= base.Priority {
			continue
		}
		if err := applyModules(modules, l); err != nil {
			return EdgeResult{}, err
		}
		r.Layers = append(r.Layers, l.ID)
		r.Statuses[l.ID] = StatusApplied
	}
	r.Modules = make(map[string]json.RawMessage, len(modules))
	for name, desired := range modules {
		b, err := encode(desired)
		if err != nil {
			return EdgeResult{}, fmt.Errorf("encode desired properties of module %s: %w", name, err)
		}
		r.Modules[name] = b
	}
	return r, nil
}

// applyModules writes one deployment's modulesContent over modules.
func applyModules(modules map[string]map[string]any, c *Configuration) error {
	for _, name := range sortedKeys(c.Content.ModulesContent) {
		entries := c.Content.ModulesContent[name]
		for _, key := range contentKeys(entries) {
			path, ok := desiredPath(key)
			if !ok {
				return fmt.Errorf("apply configuration %q: module %s: %q is not a desired-properties key", c.ID, name, key)
			}
			x, err := decodeValue(entries[key])
			if err != nil {
				return fmt.Errorf("apply configuration %q: module %s %q: %w", c.ID, name, key, err)
			}
			if m, isObj := x.(map[string]any); isObj {
				x = stripNulls(m)
			}
			if len(path) == 0 {
				m, isObj := x.(map[string]any)
				if !isObj {
					return fmt.Errorf("apply configuration %q: module %s: %q is not an object", c.ID, name, key)
				}
				modules[name] = m
				continue
			}
			modules[name] = setPath(modules[name], path, x)
		}
	}
	return nil
}

func resolveADM(adm []*Configuration) (ADMResult, error) {
	var r ADMResult
	if len(adm) == 0 {
		return r, nil
	}
	byPrecedence(adm)
	r.Statuses = make(map[string]Status, len(adm))
	for _, c := range adm {
		r.Statuses[c.ID] = StatusTargeted
	}
	win := adm[len(adm)-1]
	r.Applied = win.ID
	r.Statuses[win.ID] = StatusApplied
	content := win.Content.DeviceContent
	if win.Kind() == KindModule {
		content = win.Content.ModuleContent
	}
	for _, key := range contentKeys(content) {
		path, ok := desiredPath(key)
		if !ok || len(path) == 0 {
			return ADMResult{}, fmt.Errorf("apply configuration %q: %q does not name a desired property", win.ID, key)
		}
		r.Assignments = append(r.Assignments, twin.Assignment{Path: path, Value: content[key]})
	}
	return r, nil
}

// decodeValue parses one JSON value with numbers kept as json.Number.
func decodeValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("decode value: %w", err)
	}
	return x, nil
}

// encode is compact JSON with sorted keys and no HTML escaping.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// stripNulls drops null members of objects, recursively (not in arrays),
// as a twin write does.
func stripNulls(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case nil:
		case map[string]any:
			out[k] = stripNulls(v)
		default:
			out[k] = v
		}
	}
	return out
}

// setPath returns a copy of m with the value at path replaced by x,
// creating (or replacing non-object values with) objects along the path.
func setPath(m map[string]any, path []string, x any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	if len(path) == 1 {
		out[path[0]] = x
		return out
	}
	child, _ := out[path[0]].(map[string]any)
	out[path[0]] = setPath(child, path[1:], x)
	return out
}
