package rollout

import (
	"encoding/json"
	"testing"

	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/twin"
)

func mustObject(t testing.TB, s string) map[string]any {
	t.Helper()
	x, err := decodeJSON([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	m, ok := x.(map[string]any)
	if !ok {
		t.Fatalf("%s is not an object", s)
	}
	return m
}

func text(t testing.TB, v any) string {
	t.Helper()
	b, err := encodeJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMergePatch(t *testing.T) {
	tests := []struct{ from, to, patch string }{
		{`{}`, `{}`, `{}`},
		{`{"a":1}`, `{"a":1.0}`, `{}`},
		{`{"a":1,"b":{"c":[1,2],"d":"x"}}`, `{"b":{"c":[1,2]}}`, `{"a":null,"b":{"d":null}}`},
		{`{"a":"x"}`, `{"a":{"b":1}}`, `{"a":{"b":1}}`},
		{`{"a":{"b":1}}`, `{"a":[1]}`, `{"a":[1]}`},
		{`{"a":{"b":1}}`, `{"a":{}}`, `{"a":{"b":null}}`},
		{`{}`, `{"a":{}}`, `{"a":{}}`},
	}
	for _, tc := range tests {
		from, to := mustObject(t, tc.from), mustObject(t, tc.to)
		p := mergePatch(from, to)
		if got := text(t, p); got != text(t, mustObject(t, tc.patch)) {
			t.Errorf("mergePatch(%s, %s) = %s, want %s", tc.from, tc.to, got, tc.patch)
		}
		if got := registry.MergePatch(mustObject(t, tc.from), p); !equalJSON(got, to) {
			t.Errorf("applying the patch of %s → %s gives %s", tc.from, tc.to, text(t, got))
		}
	}
}

func TestAssign(t *testing.T) {
	as := []twin.Assignment{
		{Path: []string{"a", "b"}, Value: json.RawMessage(`{"c":1,"gone":null}`)},
		{Path: []string{"x"}, Value: json.RawMessage(`null`)},
		{Path: []string{"s", "t"}, Value: json.RawMessage(`"v"`)},
	}
	got, err := assign(mustObject(t, `{"a":{"b":{"old":true},"keep":1},"x":2,"s":"scalar"}`), as)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":{"b":{"c":1},"keep":1},"s":{"t":"v"}}`; text(t, got) != text(t, mustObject(t, want)) {
		t.Fatalf("assign = %s, want %s", text(t, got), want)
	}
}

// FuzzMergePatch checks that the computed patch, applied as the registry
// applies merge patches, turns the first object into the second (objects
// without nulls, as twins hold).
func FuzzMergePatch(f *testing.F) {
	for _, s := range [][2]string{
		{`{}`, `{"a":1}`},
		{`{"a":{"b":[1,{"c":2}]},"d":"e"}`, `{"a":{"b":[1]},"f":true}`},
		{`{"a":1e2}`, `{"a":100}`},
		{`{"a":{"b":{"c":{}}}}`, `{"a":{"b":"x"}}`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		from, err1 := objectValue(json.RawMessage(a))
		to, err2 := objectValue(json.RawMessage(b))
		if err1 != nil || err2 != nil {
			return
		}
		p := mergePatch(from, to)
		// The patch survives JSON encoding (the registry receives it as JSON).
		raw, err := encodeJSON(p)
		if err != nil {
			t.Fatal(err)
		}
		decoded, err := decodeJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		fromCopy, _ := objectValue(json.RawMessage(a))
		got := registry.MergePatch(fromCopy, decoded.(map[string]any))
		if !equalJSON(got, to) {
			t.Fatalf("patch %s turns %s into %s, want %s", raw, a, text(t, got), text(t, to))
		}
		if equalJSON(from, to) != (len(p) == 0) {
			t.Fatalf("patch %s of equal=%v objects", raw, equalJSON(from, to))
		}
	})
}
