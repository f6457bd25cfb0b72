package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Azure's twin limits (see the package documentation for how they are measured).
const (
	// MaxDepth is the deepest nesting of objects and arrays below a section's root.
	MaxDepth = 10
	// MaxKeyBytes is the longest key, in UTF-8 bytes.
	MaxKeyBytes = 1024
	// MaxStringBytes is the longest string value, in UTF-8 bytes.
	MaxStringBytes = 4096
	// MaxPropertiesBytes limits properties.desired and properties.reported each.
	MaxPropertiesBytes = 32 * 1024
	// MaxTagsBytes limits tags.
	MaxTagsBytes = 8 * 1024
)

// The read-only system keys of a properties section.
const (
	keyMetadata = "$metadata"
	keyVersion  = "$version"
)

// Sentinel errors callers branch on; every error of this package that is
// caused by the caller's input wraps one of them.
var (
	// ErrInvalid means a document or patch breaks a twin rule (bad JSON, a
	// forbidden key, a too-long string, too deep nesting).
	ErrInvalid = errors.New("twin: invalid document")
	// ErrTooLarge means the written section would exceed its size limit.
	ErrTooLarge = errors.New("twin: document too large")
)

// Section names a part of a twin that clients write. Its value is the
// section's path in the service JSON, which is also how errors name it.
type Section string

// The writable sections.
const (
	SectionTags     Section = "tags"
	SectionDesired  Section = "properties.desired"
	SectionReported Section = "properties.reported"
)

// Limit returns the section's size limit in bytes.
func (s Section) Limit() int {
	if s == SectionTags {
		return MaxTagsBytes
	}
	return MaxPropertiesBytes
}

// FieldError says which path of a document breaks which rule. Path is the
// full path from the twin root, e.g. `properties.desired.a["b.c"]`.
type FieldError struct {
	Path   string
	Reason string
}

// Error returns "<path>: <reason>".
func (e *FieldError) Error() string { return e.Path + ": " + e.Reason }

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// SizeError says that a write would make a section larger than its limit.
type SizeError struct {
	Section Section
	// Size is the section's measured size after the write, in bytes.
	Size  int
	Limit int
}

// Error names the section, its size and the limit.
func (e *SizeError) Error() string {
	return fmt.Sprintf("%s would be %d bytes, over the %d-byte limit (compact JSON without $metadata and $version)", e.Section, e.Size, e.Limit)
}

// Unwrap returns ErrTooLarge.
func (e *SizeError) Unwrap() error { return ErrTooLarge }

// seg is one step of a path: an object key or an array index.
type seg struct {
	key   string
	index int
	isIdx bool
}

func keySegs(keys []string) []seg {
	out := make([]seg, len(keys))
	for i, k := range keys {
		out[i] = seg{key: k}
	}
	return out
}

// renderPath renders a path below a section: plain keys are joined with
// '.', indexes and keys that would be ambiguous in that notation are written
// in brackets.
func renderPath(section Section, p []seg) string {
	var b strings.Builder
	b.WriteString(string(section))
	for _, s := range p {
		switch {
		case s.isIdx:
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
		case plainKey(s.key):
			b.WriteString("." + s.key)
		default:
			b.WriteString("[" + strconv.Quote(s.key) + "]")
		}
	}
	return b.String()
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if r == '.' || r == '[' || r == ']' || r == '"' || r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// ValidateKey reports whether key may be used as a twin property or tag
// name. The error says which rule the key breaks.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return errors.New("key is empty")
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("key is %d bytes, over the %d-byte limit", len(key), MaxKeyBytes)
	case !utf8.ValidString(key):
		return fmt.Errorf("key %q is not valid UTF-8", key)
	case strings.HasPrefix(key, "$"):
		return fmt.Errorf("key %q: '$'-prefixed keys are reserved for system properties (only $metadata and $version, at the top of a properties section, are accepted and ignored)", key)
	case strings.Contains(key, "$"):
		return fmt.Errorf("key %q contains '$'", key)
	case strings.Contains(key, "."):
		return fmt.Errorf("key %q contains '.'", key)
	case strings.Contains(key, " "):
		return fmt.Errorf("key %q contains a space", key)
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return fmt.Errorf("key %q contains control character %U", key, r)
		}
	}
	return nil
}

// validator checks a decoded document against the key, string and depth rules.
type validator struct {
	section Section
	// allowSystem accepts $metadata and $version at the top level.
	allowSystem bool
}

// object checks the members of m; depth is m's own depth (0 for a section root).
func (v *validator) object(p []seg, m map[string]any, depth int) error {
	for _, k := range sortedKeys(m) {
		cp := append(p[:len(p):len(p)], seg{key: k})
		if depth == 0 && v.allowSystem && (k == keyMetadata || k == keyVersion) {
			continue
		}
		if err := ValidateKey(k); err != nil {
			return &FieldError{Path: renderPath(v.section, cp), Reason: err.Error()}
		}
		if err := v.value(cp, m[k], depth); err != nil {
			return err
		}
	}
	return nil
}

// value checks x, found at path p below a container at parentDepth.
func (v *validator) value(p []seg, x any, parentDepth int) error {
	switch x := x.(type) {
	case map[string]any:
		if err := v.depth(p, parentDepth+1); err != nil {
			return err
		}
		return v.object(p, x, parentDepth+1)
	case []any:
		if err := v.depth(p, parentDepth+1); err != nil {
			return err
		}
		for i, e := range x {
			if err := v.value(append(p[:len(p):len(p)], seg{index: i, isIdx: true}), e, parentDepth+1); err != nil {
				return err
			}
		}
		return nil
	case string:
		if len(x) > MaxStringBytes {
			return &FieldError{Path: renderPath(v.section, p), Reason: fmt.Sprintf("string value is %d bytes, over the %d-byte limit", len(x), MaxStringBytes)}
		}
		return nil
	case json.Number, bool, nil:
		return nil
	default:
		return &FieldError{Path: renderPath(v.section, p), Reason: fmt.Sprintf("unsupported value type %T", x)}
	}
}

func (v *validator) depth(p []seg, d int) error {
	if d > MaxDepth {
		return &FieldError{Path: renderPath(v.section, p), Reason: fmt.Sprintf("nesting depth %d exceeds the limit of %d", d, MaxDepth)}
	}
	return nil
}

// decodeObject parses raw as exactly one JSON object with numbers kept as
// json.Number, and checks it against the rules. It does not strip system keys.
func decodeObject(section Section, raw []byte, allowSystem bool) (map[string]any, error) {
	x, err := decodeValue(raw)
	if err != nil {
		return nil, &FieldError{Path: string(section), Reason: err.Error()}
	}
	m, ok := x.(map[string]any)
	if !ok {
		return nil, &FieldError{Path: string(section), Reason: "must be a JSON object, got " + jsonKind(x)}
	}
	v := validator{section: section, allowSystem: allowSystem}
	if err := v.object(nil, m, 0); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeValue parses exactly one JSON value with numbers as json.Number.
func decodeValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid JSON: data after the top-level value")
	}
	return x, nil
}

func jsonKind(x any) string {
	switch x.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%T", x)
	}
}

// measure returns the size of values as Azure counts it.
func measure(values map[string]any) (int, error) {
	b, err := encode(values)
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

func checkSize(section Section, values map[string]any) error {
	n, err := measure(values)
	if err != nil {
		return fmt.Errorf("measure %s: %w", section, err)
	}
	if n > section.Limit() {
		return &SizeError{Section: section, Size: n, Limit: section.Limit()}
	}
	return nil
}

// Size returns a section document's size as Azure counts it: the compact
// JSON of values without $metadata and $version.
func Size(values Object) (int, error) {
	m := map[string]any(values)
	if m == nil {
		m = map[string]any{}
	}
	return measure(m)
}

// Validate checks a standalone section document (for example the desired
// properties of a module in a deployment manifest): it must be one JSON
// object that follows the key, string, depth and size rules of section.
// System keys ($metadata, $version) are refused here.
func Validate(section Section, doc json.RawMessage) error {
	m, err := decodeObject(section, doc, false)
	if err != nil {
		return err
	}
	return checkSize(section, stripNulls(m))
}

// ValidateAssignment checks that a.Value may be written at a.Path of section
// (see AssignDesired): every path element is a valid key, the value follows
// the rules at that depth, and on its own it fits the section's size limit.
func ValidateAssignment(section Section, a Assignment) error {
	_, err := decodeAssignment(section, a)
	return err
}

// decodeAssignment validates an assignment and returns its value with
// object-level nulls removed.
func decodeAssignment(section Section, a Assignment) (any, error) {
	p := keySegs(a.Path)
	for i, k := range a.Path {
		if err := ValidateKey(k); err != nil {
			return nil, &FieldError{Path: renderPath(section, p[:i+1]), Reason: err.Error()}
		}
	}
	x, err := decodeValue(a.Value)
	if err != nil {
		return nil, &FieldError{Path: renderPath(section, p), Reason: err.Error()}
	}
	if len(a.Path) == 0 {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, &FieldError{Path: string(section), Reason: "must be a JSON object, got " + jsonKind(x)}
		}
		v := validator{section: section}
		if err := v.object(nil, m, 0); err != nil {
			return nil, err
		}
		m = stripNulls(m)
		if err := checkSize(section, m); err != nil {
			return nil, err
		}
		return m, nil
	}
	if x == nil {
		return nil, &FieldError{Path: renderPath(section, p), Reason: "value is null (an assignment sets a value; use a patch to delete)"}
	}
	v := validator{section: section}
	// The objects on the path sit at depths 1..len(path)-1, so the value's
	// parent is at depth len(path)-1.
	if err := v.depth(p, len(a.Path)-1); err != nil {
		return nil, err
	}
	if err := v.value(p, x, len(a.Path)-1); err != nil {
		return nil, err
	}
	if m, ok := x.(map[string]any); ok {
		x = stripNulls(m)
	}
	if err := checkSize(section, nest(a.Path, x)); err != nil {
		return nil, err
	}
	return x, nil
}

// nest wraps x in objects along path: nest([a b], x) = {"a":{"b":x}}.
func nest(path []string, x any) map[string]any {
	for i := len(path) - 1; i > 0; i-- {
		x = map[string]any{path[i]: x}
	}
	return map[string]any{path[0]: x}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
