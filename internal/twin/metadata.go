package twin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// TimeLayout is the $lastUpdated format: ISO 8601 UTC with 7 fractional
// digits, as Azure writes it.
const TimeLayout = "2006-01-02T15:04:05.0000000Z"

// Metadata is one node of a section's $metadata tree. The tree mirrors the
// section: the root describes the section, and every member (object or not)
// has a child node; only object members have children of their own.
type Metadata struct {
	// LastUpdated is when the node was last written (UTC).
	LastUpdated time.Time
	// LastUpdatedVersion is the section $version of that write. Desired
	// properties carry it; reported properties do not (0 means absent).
	LastUpdatedVersion int64
	// Children maps member names to their nodes.
	Children map[string]*Metadata
}

// MarshalJSON writes {"$lastUpdated":…, "$lastUpdatedVersion":…, <children>}
// with the system keys first and children sorted by name.
func (m *Metadata) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	if err := m.write(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (m *Metadata) write(b *bytes.Buffer) error {
	b.WriteString(`{"$lastUpdated":"`)
	b.WriteString(m.LastUpdated.UTC().Format(TimeLayout))
	b.WriteByte('"')
	if m.LastUpdatedVersion != 0 {
		b.WriteString(`,"$lastUpdatedVersion":`)
		b.WriteString(strconv.FormatInt(m.LastUpdatedVersion, 10))
	}
	for _, k := range sortedKeys(m.Children) {
		c := m.Children[k]
		if c == nil {
			return fmt.Errorf("encode metadata: member %q has a nil node", k)
		}
		kb, err := encode(k)
		if err != nil {
			return fmt.Errorf("encode metadata key %q: %w", k, err)
		}
		b.WriteByte(',')
		b.Write(kb)
		b.WriteByte(':')
		if err := c.write(b); err != nil {
			return err
		}
	}
	b.WriteByte('}')
	return nil
}

// UnmarshalJSON reads a $metadata tree. Unknown '$' keys and non-object
// members are errors.
func (m *Metadata) UnmarshalJSON(b []byte) error {
	x, err := decodeValue(b)
	if err != nil {
		return fmt.Errorf("decode $metadata: %w", err)
	}
	obj, ok := x.(map[string]any)
	if !ok {
		return fmt.Errorf("decode $metadata: got %s, want an object", jsonKind(x))
	}
	n, err := metadataFromTree(obj, keyMetadata)
	if err != nil {
		return err
	}
	*m = *n
	return nil
}

func metadataFromTree(obj map[string]any, path string) (*Metadata, error) {
	n := &Metadata{}
	for k, v := range obj {
		switch {
		case k == "$lastUpdated":
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("decode %s.$lastUpdated: got %s, want a string", path, jsonKind(v))
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, fmt.Errorf("decode %s.$lastUpdated: %w", path, err)
			}
			if y := t.UTC().Year(); y < 0 || y > 9999 {
				return nil, fmt.Errorf("decode %s.$lastUpdated: %q is outside years 0000–9999 in UTC", path, s)
			}
			n.LastUpdated = t.UTC()
		case k == "$lastUpdatedVersion":
			num, ok := v.(json.Number)
			if !ok {
				return nil, fmt.Errorf("decode %s.$lastUpdatedVersion: got %s, want a number", path, jsonKind(v))
			}
			ver, err := num.Int64()
			if err != nil {
				return nil, fmt.Errorf("decode %s.$lastUpdatedVersion: %w", path, err)
			}
			n.LastUpdatedVersion = ver
		case strings.HasPrefix(k, "$"):
			return nil, fmt.Errorf("decode %s: unknown system key %q", path, k)
		default:
			child, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("decode %s.%s: got %s, want an object", path, k, jsonKind(v))
			}
			c, err := metadataFromTree(child, path+"."+k)
			if err != nil {
				return nil, err
			}
			if n.Children == nil {
				n.Children = map[string]*Metadata{}
			}
			n.Children[k] = c
		}
	}
	return n, nil
}

// clone deep-copies the tree.
func (m *Metadata) clone() *Metadata {
	if m == nil {
		return nil
	}
	out := &Metadata{LastUpdated: m.LastUpdated, LastUpdatedVersion: m.LastUpdatedVersion}
	if m.Children != nil {
		out.Children = make(map[string]*Metadata, len(m.Children))
		for k, c := range m.Children {
			out.Children[k] = c.clone()
		}
	}
	return out
}

// touch marks which nodes a write touched: all, or the listed children.
type touch struct {
	all  bool
	kids map[string]*touch
}

// touchAll marks a whole subtree as written.
func touchAll() *touch { return &touch{all: true} }

// touchPatch marks the members a merge patch writes (deleted members have no
// node left to mark).
func touchPatch(p map[string]any) *touch {
	t := &touch{kids: make(map[string]*touch, len(p))}
	for k, v := range p {
		switch v := v.(type) {
		case nil:
		case map[string]any:
			t.kids[k] = touchPatch(v)
		default:
			t.kids[k] = touchAll()
		}
	}
	return t
}

// mark records a write of the whole subtree at path.
func (t *touch) mark(path []string) {
	n := t
	for _, k := range path {
		if n.all {
			return
		}
		if n.kids == nil {
			n.kids = map[string]*touch{}
		}
		c := n.kids[k]
		if c == nil {
			c = &touch{}
			n.kids[k] = c
		}
		n = c
	}
	n.all, n.kids = true, nil
}

func (t *touch) child(k string) *touch {
	switch {
	case t == nil:
		return nil
	case t.all:
		return t
	default:
		return t.kids[k]
	}
}

// rebuild returns the metadata tree for value val after a write at ts with
// section version ver (0 for sections without metadata versions). Nodes the
// write touched get ts and ver; untouched nodes keep old's; nodes missing
// from old are created with ts and ver. The result mirrors val exactly.
func rebuild(old *Metadata, val any, t *touch, ts time.Time, ver int64) *Metadata {
	n := &Metadata{LastUpdated: ts, LastUpdatedVersion: ver}
	if t == nil && old != nil {
		n.LastUpdated, n.LastUpdatedVersion = old.LastUpdated, old.LastUpdatedVersion
	}
	obj, ok := val.(map[string]any)
	if !ok || len(obj) == 0 {
		return n
	}
	n.Children = make(map[string]*Metadata, len(obj))
	for k, cv := range obj {
		var oc *Metadata
		if old != nil {
			oc = old.Children[k]
		}
		n.Children[k] = rebuild(oc, cv, t.child(k), ts, ver)
	}
	return n
}
