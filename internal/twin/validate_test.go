package twin

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// sized returns a compact JSON object of exactly n bytes (n >= 10) whose
// members are "kNN" strings no longer than MaxStringBytes.
func sized(t *testing.T, n int) string {
	t.Helper()
	// {"k00":"s0","k01":"s1",…}: each member is 8 bytes plus its string,
	// the braces 2, the commas one fewer than the members.
	m := n/4000 + 1
	total := n - 1 - 9*m
	if total < 0 || m > 100 {
		t.Fatalf("sized(%d): cannot build", n)
	}
	var b strings.Builder
	b.WriteByte('{')
	for i := range m {
		l := total / m
		if i == 0 {
			l += total % m
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%02d":"%s"`, i, strings.Repeat("x", l))
	}
	b.WriteByte('}')
	if b.Len() != n {
		t.Fatalf("sized(%d) built %d bytes", n, b.Len())
	}
	return b.String()
}

// nested returns {"l1":{"l2":…{"lN":leaf}}}.
func nested(n int, leaf string) string {
	s := leaf
	for i := n; i >= 1; i-- {
		s = fmt.Sprintf(`{"l%d":%s}`, i, s)
	}
	return s
}

func TestValidationErrors(t *testing.T) {
	longKey := strings.Repeat("k", MaxKeyBytes+1)
	tests := []struct {
		name    string
		section Section
		initial string // applied first with a replace
		patch   string
		// wantPath and wantReason are the *FieldError fields; wantReason
		// may be a prefix. For size errors wantSize is the measured size.
		wantPath   string
		wantReason string
		wantSize   int
	}{
		{"invalid JSON", SectionDesired, "", `{"a":`, "properties.desired", "invalid JSON: unexpected EOF", 0},
		{"trailing data", SectionDesired, "", `{"a":1} {}`, "properties.desired", "invalid JSON: data after the top-level value", 0},
		{"not an object: array", SectionDesired, "", `[1]`, "properties.desired", "must be a JSON object, got an array", 0},
		{"not an object: null", SectionReported, "", `null`, "properties.reported", "must be a JSON object, got null", 0},
		{"not an object: string", SectionTags, "", `"x"`, "tags", "must be a JSON object, got a string", 0},
		{"empty key", SectionDesired, "", `{"":1}`, `properties.desired[""]`, "key is empty", 0},
		{"key with a dot", SectionDesired, "", `{"a":{"b.c":1}}`, `properties.desired.a["b.c"]`, `key "b.c" contains '.'`, 0},
		{"key with a space", SectionReported, "", `{"a b":1}`, `properties.reported["a b"]`, `key "a b" contains a space`, 0},
		{"key with a dollar inside", SectionDesired, "", `{"a$b":1}`, `properties.desired.a$b`, `key "a$b" contains '$'`, 0},
		{"dollar-prefixed key at the top", SectionDesired, "", `{"$foo":1}`, `properties.desired.$foo`, `key "$foo": '$'-prefixed keys are reserved for system properties`, 0},
		{"$version below the top", SectionDesired, "", `{"a":{"$version":1}}`, `properties.desired.a.$version`, `key "$version": '$'-prefixed keys are reserved`, 0},
		{"$metadata below the top", SectionReported, "", `{"a":{"$metadata":{}}}`, `properties.reported.a.$metadata`, `key "$metadata": '$'-prefixed keys are reserved`, 0},
		{"$version in tags", SectionTags, "", `{"$version":1}`, `tags.$version`, `key "$version": '$'-prefixed keys are reserved`, 0},
		{"control character in key", SectionDesired, "", `{"a\u0007":1}`, `properties.desired["a\a"]`, `key "a\a" contains control character U+0007`, 0},
		{"C1 control character in key", SectionDesired, "", `{"a\u0085":1}`, `properties.desired["a\u0085"]`, `key "a\u0085" contains control character U+0085`, 0},
		{"key too long", SectionDesired, "", `{"` + longKey + `":1}`, `properties.desired.` + longKey, "key is 1025 bytes, over the 1024-byte limit", 0},
		{"key inside an array element", SectionDesired, "", `{"a":[1,{"b.c":1}]}`, `properties.desired.a[1]["b.c"]`, `key "b.c" contains '.'`, 0},
		{"string too long", SectionDesired, "", `{"s":"` + strings.Repeat("é", MaxStringBytes/2) + `x"}`, "properties.desired.s", "string value is 4097 bytes, over the 4096-byte limit", 0},
		{"string in array too long", SectionTags, "", `{"s":["` + strings.Repeat("x", MaxStringBytes+1) + `"]}`, "tags.s[0]", "string value is 4097 bytes, over the 4096-byte limit", 0},
		{"object depth 11", SectionDesired, "", nested(12, "1"), "properties.desired.l1.l2.l3.l4.l5.l6.l7.l8.l9.l10.l11", "nesting depth 11 exceeds the limit of 10", 0},
		{"array counts as a level", SectionReported, "", nested(11, "[1]"), "properties.reported.l1.l2.l3.l4.l5.l6.l7.l8.l9.l10.l11", "nesting depth 11 exceeds the limit of 10", 0},
		{"nested arrays", SectionTags, "", `{"a":[[[[[[[[[[[1]]]]]]]]]]]}`, "tags.a[0][0][0][0][0][0][0][0][0][0]", "nesting depth 11 exceeds the limit of 10", 0},
		{"desired over 32 KiB", SectionDesired, "", sized(t, MaxPropertiesBytes+1), "", "", MaxPropertiesBytes + 1},
		{"reported over 32 KiB", SectionReported, "", sized(t, MaxPropertiesBytes+1), "", "", MaxPropertiesBytes + 1},
		{"tags over 8 KiB", SectionTags, "", sized(t, MaxTagsBytes+1), "", "", MaxTagsBytes + 1},
		{"patch pushes desired over the limit", SectionDesired, sized(t, MaxPropertiesBytes), `{"k99":"y"}`, "", "", MaxPropertiesBytes + 10},
		{"html characters count once", SectionTags, "", `{"s":"` + strings.Repeat("<", MaxStringBytes) + `","t":"` + strings.Repeat("&", 4000) + `"}`, "", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := New("d1", "", t0)
			if tc.initial != "" {
				var err error
				switch tc.section {
				case SectionDesired:
					err = ReplaceDesired(tw, raw(tc.initial), t0)
				case SectionReported:
					err = PatchReported(tw, raw(tc.initial), t0)
				case SectionTags:
					err = ReplaceTags(tw, raw(tc.initial))
				}
				if err != nil {
					t.Fatalf("initial: %v", err)
				}
			}
			before := tw.Clone()
			var err error
			switch tc.section {
			case SectionDesired:
				err = PatchDesired(tw, raw(tc.patch), t0)
			case SectionReported:
				err = PatchReported(tw, raw(tc.patch), t0)
			case SectionTags:
				err = PatchTags(tw, raw(tc.patch))
			}
			if tc.wantPath == "" && tc.wantSize == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if diff := cmp.Diff(before, tw); diff != "" {
				t.Errorf("failed write changed the twin (-before +after):\n%s", diff)
			}
			if tc.wantSize != 0 {
				var se *SizeError
				if !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) {
					t.Fatalf("error = %v, want *SizeError", err)
				}
				want := SizeError{Section: tc.section, Size: tc.wantSize, Limit: tc.section.Limit()}
				if diff := cmp.Diff(want, *se); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
				wantMsg := fmt.Sprintf("%s would be %d bytes, over the %d-byte limit (compact JSON without $metadata and $version)", tc.section, tc.wantSize, tc.section.Limit())
				if se.Error() != wantMsg {
					t.Errorf("message = %q, want %q", se.Error(), wantMsg)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error = %v, want *FieldError", err)
			}
			if fe.Path != tc.wantPath || !strings.HasPrefix(fe.Reason, tc.wantReason) {
				t.Errorf("error = %q: %q, want %q: %q…", fe.Path, fe.Reason, tc.wantPath, tc.wantReason)
			}
		})
	}
}

func TestLimitsAccepted(t *testing.T) {
	tests := []struct {
		name    string
		section Section
		doc     string
	}{
		{"desired exactly 32 KiB", SectionDesired, sized(t, MaxPropertiesBytes)},
		{"reported exactly 32 KiB", SectionReported, sized(t, MaxPropertiesBytes)},
		{"tags exactly 8 KiB", SectionTags, sized(t, MaxTagsBytes)},
		{"depth 10 (Azure's own example)", SectionDesired, `{"one":{"two":{"three":{"four":{"five":{"six":{"seven":{"eight":{"nine":{"ten":{"property":"value"}}}}}}}}}}}`},
		{"array at depth 10", SectionReported, nested(10, "[1]")},
		{"nested arrays to depth 10", SectionTags, `{"a":[[[[[[[[[[1]]]]]]]]]]}`},
		{"key of 1024 bytes", SectionTags, `{"` + strings.Repeat("k", MaxKeyBytes) + `":1}`},
		{"string of 4096 bytes", SectionDesired, `{"s":"` + strings.Repeat("é", MaxStringBytes/2) + `"}`},
		{"keys with allowed punctuation", SectionDesired, `{"a-b_c:d#e@f!g(h)i,j=k;l'm+n%o*p?q/r\\s\"t[u]v{w}x<y>z~":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := New("d1", "", t0)
			var err error
			switch tc.section {
			case SectionDesired:
				err = PatchDesired(tw, raw(tc.doc), t0)
			case SectionReported:
				err = PatchReported(tw, raw(tc.doc), t0)
			case SectionTags:
				err = PatchTags(tw, raw(tc.doc))
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if err := Validate(tc.section, raw(tc.doc)); err != nil {
				t.Fatalf("Validate rejected: %v", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		section Section
		doc     string
		want    string
	}{
		{"ok", SectionDesired, `{"a":{"b":[1]}}`, ""},
		{"system keys refused in a standalone document", SectionDesired, `{"$version":1}`, `properties.desired.$version: key "$version": '$'-prefixed keys are reserved`},
		{"bad key", SectionDesired, `{"a":{"x y":1}}`, `properties.desired.a["x y"]: key "x y" contains a space`},
		{"too large", SectionTags, sized(t, MaxTagsBytes+1), "tags would be 8193 bytes, over the 8192-byte limit"},
		{"nulls do not count", SectionTags, `{"a":null,"b":1}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.section, raw(tc.doc))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Validate error = %v, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestValidateAssignment(t *testing.T) {
	tests := []struct {
		name string
		a    Assignment
		want string
	}{
		{"ok", Assignment{Path: []string{"a", "b"}, Value: raw(`{"c":1}`)}, ""},
		{"whole section", Assignment{Value: raw(`{"c":1}`)}, ""},
		{"whole section not an object", Assignment{Value: raw(`1`)}, "properties.desired: must be a JSON object, got a number"},
		{"bad path element", Assignment{Path: []string{"a", "b c", "d"}, Value: raw(`1`)}, `properties.desired.a["b c"]: key "b c" contains a space`},
		{"system path element", Assignment{Path: []string{"$version"}, Value: raw(`1`)}, `properties.desired.$version: key "$version": '$'-prefixed keys are reserved`},
		{"null value", Assignment{Path: []string{"a"}, Value: raw(`null`)}, "properties.desired.a: value is null"},
		{"invalid JSON", Assignment{Path: []string{"a"}, Value: raw(`{`)}, "properties.desired.a: invalid JSON"},
		{"bad key in value", Assignment{Path: []string{"a"}, Value: raw(`{"b":{"c.d":1}}`)}, `properties.desired.a.b["c.d"]: key "c.d" contains '.'`},
		{"path of 11 with a primitive is fine", Assignment{Path: strings.Split("a b c d e f g h i j k", " "), Value: raw(`1`)}, ""},
		{"path of 12 is too deep", Assignment{Path: strings.Split("a b c d e f g h i j k l", " "), Value: raw(`1`)}, "properties.desired.a.b.c.d.e.f.g.h.i.j.k.l: nesting depth 11 exceeds the limit of 10"},
		{"object value below a path of 10 is too deep", Assignment{Path: strings.Split("a b c d e f g h i j", " "), Value: raw(`{"x":{}}`)}, "properties.desired.a.b.c.d.e.f.g.h.i.j.x: nesting depth 11 exceeds the limit of 10"},
		{"value over the section limit", Assignment{Path: []string{"a"}, Value: raw(sized(t, MaxPropertiesBytes))}, "properties.desired would be 32774 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateAssignment(SectionDesired, tc.a)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidateAssignment: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error = %v, want prefix %q", err, tc.want)
			}
			tw := New("d1", "", t0)
			before := tw.Clone()
			if err := AssignDesired(tw, []Assignment{{Path: []string{"ok"}, Value: raw(`1`)}, tc.a}, t0); err == nil || err.Error() != ValidateAssignment(SectionDesired, tc.a).Error() {
				t.Errorf("AssignDesired error = %v, want the ValidateAssignment error", err)
			}
			if diff := cmp.Diff(before, tw); diff != "" {
				t.Errorf("failed assignment changed the twin (-before +after):\n%s", diff)
			}
		})
	}
}

func TestSize(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want int
	}{
		{"empty", `{}`, 2},
		{"white space does not count", "{ \"a\" : 1 ,\n \"b\" : [ 1 , 2 ] }", len(`{"a":1,"b":[1,2]}`)},
		{"utf-8 bytes", `{"é":"ü"}`, len(`{"é":"ü"}`)},
		{"html characters are not escaped", `{"a":"<&>"}`, len(`{"a":"<&>"}`)},
		{"number text as sent", `{"a":1.000}`, len(`{"a":1.000}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o Object
			if err := json.Unmarshal([]byte(tc.doc), &o); err != nil {
				t.Fatal(err)
			}
			got, err := Size(o)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Size(%s) = %d, want %d", tc.doc, got, tc.want)
			}
		})
	}
}

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key  string
		want string
	}{
		{"telemetryInterval", ""},
		{"ünïcödé", ""},
		{"", "key is empty"},
		{"a.b", `key "a.b" contains '.'`},
		{"a b", `key "a b" contains a space`},
		{"a$", `key "a$" contains '$'`},
		{"$edgeAgent", `key "$edgeAgent": '$'-prefixed keys are reserved`},
		{"a\x7f", `key "a\x7f" contains control character U+007F`},
		{"a\xff", `key "a\xff" is not valid UTF-8`},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			err := ValidateKey(tc.key)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if !strings.HasPrefix(got, tc.want) || (tc.want == "") != (got == "") {
				t.Errorf("ValidateKey(%q) = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}
