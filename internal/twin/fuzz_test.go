package twin

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// checkTwin asserts the invariants every successful write keeps: each
// section passes Validate (keys, strings, depth, size), the metadata
// mirrors the desired and reported values, and the service JSON round-trips.
func checkTwin(t *testing.T, tw *Twin) {
	t.Helper()
	sections := []struct {
		s Section
		v Object
	}{{SectionTags, tw.Tags}, {SectionDesired, tw.Properties.Desired.Values}, {SectionReported, tw.Properties.Reported.Values}}
	for _, sec := range sections {
		b, err := Object(sec.v).MarshalJSON()
		if err != nil {
			t.Fatalf("encode %s: %v", sec.s, err)
		}
		if err := Validate(sec.s, b); err != nil {
			t.Fatalf("%s no longer valid: %v", sec.s, err)
		}
	}
	checkMetadataMirrors(t, "desired", tw.Properties.Desired.Metadata, map[string]any(tw.Properties.Desired.Values), tw.Properties.Desired.Version)
	if tw.ETag != ETag(tw.Version) {
		t.Fatalf("etag %q does not match version %d", tw.ETag, tw.Version)
	}
	b, err := json.Marshal(tw)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if !json.Valid(b) {
		t.Fatalf("Marshal produced invalid JSON: %s", b)
	}
	var back Twin
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal of own output: %v", err)
	}
	if diff := cmp.Diff(tw, &back); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	view, err := DeviceView(tw)
	if err != nil || !json.Valid(view) {
		t.Fatalf("DeviceView = %s, %v", view, err)
	}
}

func FuzzPatch(f *testing.F) {
	seeds := []struct {
		op               byte
		initial, request string
	}{
		{0, `{"a":1,"b":{"c":[1,2]}}`, `{"b":{"c":null,"d":"x"},"e":true}`},
		{1, `{"fw":"1.0"}`, `{"fw":null,"net":{"ip":"10.0.0.2"}}`},
		{2, `{"env":"prod"}`, `{"env":null,"site":{"floor":3}}`},
		{3, `{"a":1}`, `{"$version":3,"$metadata":{},"b":{"c":null}}`},
		{4, `{"a":1}`, `{"x":{"y":[null,{"z":1}]}}`},
		{5, `{}`, `{"tags":{"a":1},"properties":{"desired":{"b":2},"reported":{"c":3}}}`},
		{6, `{"a":{"b":1}}`, `{"deviceId":"x","tags":null,"properties":{"desired":{"$version":1,"a":null}}}`},
		{0, `{}`, `{"a.b":1}`},
		{0, `{}`, `{"$x":1}`},
		{0, `{}`, nested(12, "1")},
		{2, `{}`, `{"s":"` + strings.Repeat("x", 5000) + `"}`},
		{0, `{}`, `{"a":1} trailing`},
		{1, `{}`, `[1,2]`},
		{0, `{}`, `{"a":1e999999}`},
		{0, `{"a":"\u2028"}`, `{"b":"\ud800"}`},
	}
	for _, s := range seeds {
		f.Add(s.op, []byte(s.initial), []byte(s.request))
	}
	f.Fuzz(func(t *testing.T, op byte, initial, request []byte) {
		tw := New("d1", "", t0)
		// Any of these may fail; the twin stays valid either way.
		_ = ReplaceDesired(tw, initial, t0)
		_ = PatchReported(tw, initial, t0)
		_ = ReplaceTags(tw, initial)
		checkTwin(t, tw)
		before := tw.Clone()

		var err error
		switch op % 7 {
		case 0:
			err = PatchDesired(tw, request, t0)
		case 1:
			err = PatchReported(tw, request, t0)
		case 2:
			err = PatchTags(tw, request)
		case 3:
			err = ReplaceDesired(tw, request, t0)
		case 4:
			err = ReplaceTags(tw, request)
		case 5, 6:
			var u ServiceUpdate
			if u, err = ParseServiceUpdate(request); err == nil {
				if op%7 == 5 {
					err = PatchService(tw, u, t0)
				} else {
					err = ReplaceService(tw, u, t0)
				}
			}
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrInvalid nor ErrTooLarge", err)
			}
			if diff := cmp.Diff(before, tw); diff != "" {
				t.Fatalf("failed write changed the twin (-before +after):\n%s", diff)
			}
			return
		}
		if tw.Version != before.Version+1 {
			t.Fatalf("twin version %d after a write from %d", tw.Version, before.Version)
		}
		checkTwin(t, tw)
		delta, err := DesiredDelta(before, tw)
		if err != nil || !json.Valid(delta) {
			t.Fatalf("DesiredDelta = %s, %v", delta, err)
		}
	})
}

func FuzzAssignDesired(f *testing.F) {
	f.Add("a.b", []byte(`{"c":1}`), "a", []byte(`[1]`))
	f.Add("", []byte(`{"c":null}`), "c.d.e", []byte(`"x"`))
	f.Add("a b", []byte(`1`), "$x", []byte(`null`))
	f.Add("a.b.c.d.e.f.g.h.i.j.k.l", []byte(`1`), "a", []byte(`{`))
	f.Fuzz(func(t *testing.T, p1 string, v1 []byte, p2 string, v2 []byte) {
		split := func(p string) []string {
			if p == "" {
				return nil
			}
			return strings.Split(p, ".")
		}
		tw := New("d1", "", t0)
		if err := PatchDesired(tw, raw(`{"a":{"b":{"x":1}},"c":2}`), t0); err != nil {
			t.Fatal(err)
		}
		before := tw.Clone()
		err := AssignDesired(tw, []Assignment{{Path: split(p1), Value: v1}, {Path: split(p2), Value: v2}}, t0)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrInvalid nor ErrTooLarge", err)
			}
			if diff := cmp.Diff(before, tw); diff != "" {
				t.Fatalf("failed assignment changed the twin (-before +after):\n%s", diff)
			}
			return
		}
		checkTwin(t, tw)
	})
}

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(specExample))
	f.Add([]byte(`{"properties":{"desired":{"$metadata":{"a":{"b":{}}},"$version":1}}}`))
	f.Add([]byte(`{"tags":{"a":[1,{"b":null}]},"parentScopes":null}`))
	f.Add([]byte(`{"properties":{"reported":{"$metadata":{"$lastUpdated":"2024-01-01T00:00:00+02:00"},"$version":9223372036854775807}}}`))
	f.Add([]byte(`{"properties":{"reported":{"$metadata":{"$lastUpdated":"0000-01-01T00:00:00+01:00"},"$version":1}}}`))
	f.Add([]byte(`{"properties":{"desired":{"$metadata":{"x":{"$lastUpdated":"9999-12-31T23:59:59-01:00"}},"$version":1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var tw Twin
		if err := json.Unmarshal(data, &tw); err != nil {
			return
		}
		b, err := json.Marshal(tw)
		if err != nil {
			t.Fatalf("Marshal of a decoded twin: %v", err)
		}
		var again Twin
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatalf("Unmarshal of own output %s: %v", b, err)
		}
		b2, err := json.Marshal(again)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if string(b) != string(b2) {
			t.Fatalf("encoding not stable:\n%s\n%s", b, b2)
		}
	})
}
