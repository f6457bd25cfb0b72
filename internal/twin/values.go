package twin

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Object is a JSON object as this package holds it: nested objects are
// map[string]any, arrays []any, numbers json.Number (so their text is kept
// exactly), and strings, booleans and null as encoding/json decodes them.
//
// The functions of this package never modify an Object or any map or slice
// inside it in place; a write replaces the maps along the written paths, so
// a shallow copy of a Twin taken before a write still sees the old values.
type Object map[string]any

// UnmarshalJSON decodes a JSON object (null gives a nil Object) with numbers
// kept as json.Number.
func (o *Object) UnmarshalJSON(b []byte) error {
	x, err := decodeValue(b)
	if err != nil {
		return err
	}
	switch x := x.(type) {
	case nil:
		*o = nil
	case map[string]any:
		*o = x
	default:
		return fmt.Errorf("decode object: got %s", jsonKind(x))
	}
	return nil
}

// MarshalJSON encodes the object compactly with sorted keys; a nil Object
// is encoded as {}.
func (o Object) MarshalJSON() ([]byte, error) {
	if o == nil {
		return []byte("{}"), nil
	}
	return encode(map[string]any(o))
}

// encode is compact JSON without HTML escaping and without a trailing newline.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// mergeObject applies the RFC 7386 merge patch p to target without
// modifying either; target may be nil. The result shares unchanged subtrees
// with target and values with p.
func mergeObject(target, p map[string]any) map[string]any {
	out := make(map[string]any, len(target)+len(p))
	for k, v := range target {
		out[k] = v
	}
	for k, pv := range p {
		switch pv := pv.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			tm, _ := out[k].(map[string]any)
			out[k] = mergeObject(tm, pv)
		default:
			out[k] = pv
		}
	}
	return out
}

// stripNulls returns m without null members, recursively through objects
// (not arrays): the result of merging m into an empty object.
func stripNulls(m map[string]any) map[string]any { return mergeObject(nil, m) }

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

// deepCopy copies a decoded JSON value.
func deepCopy(x any) any {
	switch x := x.(type) {
	case map[string]any:
		return copyObject(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	default:
		return x
	}
}

func copyObject(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = deepCopy(v)
	}
	return out
}

// equal compares decoded JSON values; numbers compare by their text.
func equal(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, av := range a {
			bv, ok := bm[k]
			if !ok || !equal(av, bv) {
				return false
			}
		}
		return true
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			return false
		}
		for i := range a {
			if !equal(a[i], bs[i]) {
				return false
			}
		}
		return true
	case json.Number:
		bn, ok := b.(json.Number)
		return ok && a == bn
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case bool:
		bb, ok := b.(bool)
		return ok && a == bb
	case nil:
		return b == nil
	default:
		return false
	}
}

// diff returns the smallest merge patch that turns before into after,
// assuming (as holds for stored twin sections) that neither holds null
// members in objects.
func diff(before, after map[string]any) map[string]any {
	d := map[string]any{}
	for k := range before {
		if _, ok := after[k]; !ok {
			d[k] = nil
		}
	}
	for k, av := range after {
		bv, ok := before[k]
		if ok && equal(bv, av) {
			continue
		}
		am, aObj := av.(map[string]any)
		bm, bObj := bv.(map[string]any)
		if ok && aObj && bObj {
			d[k] = diff(bm, am)
			continue
		}
		d[k] = av
	}
	return d
}

// encodeWithVersion encodes values as one object with "$version" appended
// after the (sorted) members.
func encodeWithVersion(values map[string]any, version int64) ([]byte, error) {
	if values == nil {
		values = map[string]any{}
	}
	b, err := encode(values)
	if err != nil {
		return nil, err
	}
	return appendMember(b, keyVersion, []byte(fmt.Sprint(version))), nil
}

// appendMember inserts "key":raw before the closing brace of the encoded object b.
func appendMember(b []byte, key string, raw []byte) []byte {
	out := make([]byte, 0, len(b)+len(key)+len(raw)+4)
	out = append(out, b[:len(b)-1]...)
	if len(b) > 2 {
		out = append(out, ',')
	}
	kb, _ := encode(key) // encoding a string cannot fail
	out = append(out, kb...)
	out = append(out, ':')
	out = append(out, raw...)
	return append(out, '}')
}
