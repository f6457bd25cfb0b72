package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/muster-iot/muster/internal/twin"
)

// decodeJSON decodes one JSON value with numbers kept as json.Number, so
// that they are written back exactly as they were given.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the JSON value")
	}
	return x, nil
}

// desiredValues decodes stored desired properties without their $version
// and $metadata (absent or null: empty).
func desiredValues(raw json.RawMessage) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return map[string]any{}, nil
	}
	x, err := decodeJSON(raw)
	if err != nil {
		return nil, err
	}
	m, ok := x.(map[string]any)
	if !ok {
		return nil, errors.New("desired properties are not a JSON object")
	}
	delete(m, "$version")
	delete(m, "$metadata")
	return m, nil
}

// objectValue decodes a JSON object for use as whole desired properties,
// without null members (a twin stores none).
func objectValue(raw json.RawMessage) (map[string]any, error) {
	x, err := decodeJSON(raw)
	if err != nil {
		return nil, err
	}
	m, ok := x.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return stripNulls(m), nil
}

// stripNulls drops null members of objects, recursively (not inside
// arrays), as a twin write does.
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

// assign returns a copy of m with the assignments performed in order
// (twin.AssignDesired's rules): the value at each path is replaced, objects
// are created along the path (replacing non-object values), null members
// inside an assigned object are dropped, and assigning null removes the
// member. An empty path replaces the whole object.
func assign(m map[string]any, as []twin.Assignment) (map[string]any, error) {
	out := m
	for _, a := range as {
		x, err := decodeJSON(a.Value)
		if err != nil {
			return nil, fmt.Errorf("value of %q: %w", strings.Join(a.Path, "."), err)
		}
		if obj, ok := x.(map[string]any); ok {
			x = stripNulls(obj)
		}
		if len(a.Path) == 0 {
			obj, ok := x.(map[string]any)
			if !ok {
				return nil, errors.New("the whole desired properties must be a JSON object")
			}
			out = obj
			continue
		}
		out = setPath(out, a.Path, x)
	}
	return out, nil
}

// setPath returns a copy of m with the value at path replaced by x (nil:
// removed).
func setPath(m map[string]any, path []string, x any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	if len(path) == 1 {
		if x == nil {
			delete(out, path[0])
		} else {
			out[path[0]] = x
		}
		return out
	}
	child, _ := out[path[0]].(map[string]any)
	out[path[0]] = setPath(child, path[1:], x)
	return out
}

// contentAssignments turns one module's content ("properties.desired" and
// "properties.desired.<path>" keys) into assignments, the whole desired
// properties first and shorter paths before the paths below them.
func contentAssignments(entries map[string]json.RawMessage) ([]twin.Assignment, error) {
	out := make([]twin.Assignment, 0, len(entries))
	for key, v := range entries {
		var path []string
		switch {
		case key == "properties.desired":
			path = []string{}
		case strings.HasPrefix(key, "properties.desired."):
			path = strings.Split(strings.TrimPrefix(key, "properties.desired."), ".")
		default:
			return nil, fmt.Errorf("content key %q is not \"properties.desired\" or \"properties.desired.<path>\"", key)
		}
		out = append(out, twin.Assignment{Path: path, Value: v})
	}
	slices.SortFunc(out, func(a, b twin.Assignment) int { return slices.Compare(a.Path, b.Path) })
	return out, nil
}

// mergePatch returns the JSON merge patch (RFC 7396) that turns from into
// to: members missing from to are null, objects on both sides are patched
// member by member, anything else that differs is given whole. An empty
// patch means the two are equal.
func mergePatch(from, to map[string]any) map[string]any {
	p := map[string]any{}
	for k := range from {
		if _, ok := to[k]; !ok {
			p[k] = nil
		}
	}
	for k, tv := range to {
		fv, ok := from[k]
		if !ok {
			p[k] = tv
			continue
		}
		fm, fok := fv.(map[string]any)
		tm, tok := tv.(map[string]any)
		switch {
		case fok && tok:
			if sub := mergePatch(fm, tm); len(sub) > 0 {
				p[k] = sub
			}
		case !equalJSON(fv, tv):
			p[k] = tv
		}
	}
	return p
}

// equalJSON compares two decoded JSON values; numbers are equal when their
// values are (5 and 5.0), whatever their spelling.
func equalJSON(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !equalJSON(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalJSON(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		if a == b {
			return true
		}
		x, _, errA := big.ParseFloat(string(a), 10, 256, big.ToNearestEven)
		y, _, errB := big.ParseFloat(string(b), 10, 256, big.ToNearestEven)
		return errA == nil && errB == nil && x.Cmp(y) == 0
	default:
		return a == b
	}
}

// encodeJSON encodes v compactly without HTML escaping.
func encodeJSON(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
