package twin

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func desiredJSON(t *testing.T, tw *Twin) string {
	t.Helper()
	b, err := encode(map[string]any(tw.Properties.Desired.Values))
	if err != nil {
		t.Fatalf("encode desired: %v", err)
	}
	return string(b)
}

func TestMergeSemantics(t *testing.T) {
	tests := []struct {
		name    string
		initial string
		patch   string
		want    string
	}{
		{"add member", `{"a":1}`, `{"b":2}`, `{"a":1,"b":2}`},
		{"replace primitive", `{"a":1}`, `{"a":"x"}`, `{"a":"x"}`},
		{"null deletes", `{"a":1,"b":2}`, `{"a":null}`, `{"b":2}`},
		{"null on a missing member is a no-op", `{"a":1}`, `{"z":null}`, `{"a":1}`},
		{"nested merge keeps siblings", `{"a":{"x":1,"y":2}}`, `{"a":{"y":3,"z":4}}`, `{"a":{"x":1,"y":3,"z":4}}`},
		{"nested null deletes nested member", `{"a":{"x":1,"y":{"p":1,"q":2}}}`, `{"a":{"y":{"p":null}}}`, `{"a":{"x":1,"y":{"q":2}}}`},
		{"deleting the last nested member keeps the empty object", `{"a":{"x":1}}`, `{"a":{"x":null}}`, `{"a":{}}`},
		{"object replaces primitive", `{"a":1}`, `{"a":{"x":1}}`, `{"a":{"x":1}}`},
		{"object replacing primitive drops its nulls", `{"a":1}`, `{"a":{"x":1,"y":null,"z":{"w":null}}}`, `{"a":{"x":1,"z":{}}}`},
		{"primitive replaces object", `{"a":{"x":1}}`, `{"a":true}`, `{"a":true}`},
		{"array replaces array", `{"a":[1,2,3]}`, `{"a":[4]}`, `{"a":[4]}`},
		{"array replaces object", `{"a":{"x":1}}`, `{"a":[{"x":2}]}`, `{"a":[{"x":2}]}`},
		{"object replaces array", `{"a":[1]}`, `{"a":{"x":2}}`, `{"a":{"x":2}}`},
		{"arrays keep nulls", `{}`, `{"a":[null,1,{"b":null}]}`, `{"a":[null,1,{"b":null}]}`},
		{"empty patch changes nothing", `{"a":{"b":1}}`, `{}`, `{"a":{"b":1}}`},
		{"empty object merges into object", `{"a":{"b":1}}`, `{"a":{}}`, `{"a":{"b":1}}`},
		{"number text is kept", `{}`, `{"i":12345678901234567890123,"f":1.50,"e":1E+3,"n":-0}`, `{"e":1E+3,"f":1.50,"i":12345678901234567890123,"n":-0}`},
		{"system members at the top are ignored", `{"a":1}`, `{"$version":99,"$metadata":{"x":1},"b":2}`, `{"a":1,"b":2}`},
		{"unicode keys and values", `{}`, `{"température":"21 °C","键":"值"}`, `{"température":"21 °C","键":"值"}`},
		{"deep merge at depth ten", `{"l1":{"l2":{"l3":{"l4":{"l5":{"l6":{"l7":{"l8":{"l9":{"l10":{"v":1}}}}}}}}}}}`, `{"l1":{"l2":{"l3":{"l4":{"l5":{"l6":{"l7":{"l8":{"l9":{"l10":{"w":2}}}}}}}}}}}`, `{"l1":{"l2":{"l3":{"l4":{"l5":{"l6":{"l7":{"l8":{"l9":{"l10":{"v":1,"w":2}}}}}}}}}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, section := range []Section{SectionDesired, SectionReported, SectionTags} {
				if section == SectionTags && tc.name == "system members at the top are ignored" {
					continue
				}
				tw := New("d1", "", t0)
				var err error
				switch section {
				case SectionDesired:
					if err = ReplaceDesired(tw, raw(tc.initial), t0); err == nil {
						err = PatchDesired(tw, raw(tc.patch), t0)
					}
				case SectionReported:
					if err = PatchReported(tw, raw(tc.initial), t0); err == nil {
						err = PatchReported(tw, raw(tc.patch), t0)
					}
				case SectionTags:
					if err = ReplaceTags(tw, raw(tc.initial)); err == nil {
						err = PatchTags(tw, raw(tc.patch))
					}
				}
				if err != nil {
					t.Fatalf("%s: %v", section, err)
				}
				var got Object
				switch section {
				case SectionDesired:
					got = tw.Properties.Desired.Values
				case SectionReported:
					got = tw.Properties.Reported.Values
				case SectionTags:
					got = tw.Tags
				}
				b, err := encode(map[string]any(got))
				if err != nil {
					t.Fatalf("encode: %v", err)
				}
				if diff := cmp.Diff(tc.want, string(b)); diff != "" {
					t.Errorf("%s (-want +got):\n%s", section, diff)
				}
			}
		})
	}
}

func TestPatchDoesNotAliasPreviousValues(t *testing.T) {
	tw := New("d1", "", t0)
	if err := PatchDesired(tw, raw(`{"a":{"b":{"c":1}},"k":[1]}`), t0); err != nil {
		t.Fatal(err)
	}
	shallow := *tw // a shallow copy shares the value maps
	before := desiredJSON(t, &shallow)
	if err := PatchDesired(tw, raw(`{"a":{"b":{"c":2,"d":3}},"k":null}`), t0); err != nil {
		t.Fatal(err)
	}
	if got := desiredJSON(t, &shallow); got != before {
		t.Errorf("a write changed a value map in place: before %s, after %s", before, got)
	}
}

type versions struct {
	Twin, Desired, Reported int64
	ETag                    string
}

func versionsOf(tw *Twin) versions {
	return versions{tw.Version, tw.Properties.Desired.Version, tw.Properties.Reported.Version, tw.ETag}
}

func TestVersionArithmetic(t *testing.T) {
	tw := New("d1", "", t0)
	steps := []struct {
		name    string
		op      func() error
		want    versions
		wantErr bool
	}{
		{"desired patch", func() error { return PatchDesired(tw, raw(`{"a":1}`), t0) }, versions{2, 2, 1, ETag(2)}, false},
		{"empty desired patch is still a write", func() error { return PatchDesired(tw, raw(`{}`), t0) }, versions{3, 3, 1, ETag(3)}, false},
		{"reported patch", func() error { return PatchReported(tw, raw(`{"r":1}`), t0) }, versions{4, 3, 2, ETag(4)}, false},
		{"tags patch", func() error { return PatchTags(tw, raw(`{"t":1}`)) }, versions{5, 3, 2, ETag(5)}, false},
		{"desired replace", func() error { return ReplaceDesired(tw, raw(`{"b":1}`), t0) }, versions{6, 4, 2, ETag(6)}, false},
		{"tags replace", func() error { return ReplaceTags(tw, raw(`{}`)) }, versions{7, 4, 2, ETag(7)}, false},
		{"assignment", func() error {
			return AssignDesired(tw, []Assignment{{Path: []string{"c"}, Value: raw(`1`)}, {Path: []string{"d"}, Value: raw(`2`)}}, t0)
		}, versions{8, 5, 2, ETag(8)}, false},
		{"no assignments is not a write", func() error { return AssignDesired(tw, nil, t0) }, versions{8, 5, 2, ETag(8)}, false},
		{"service patch of tags only", func() error { return PatchService(tw, ServiceUpdate{Tags: raw(`{"x":1}`)}, t0) }, versions{9, 5, 2, ETag(9)}, false},
		{"service patch of tags and desired is one write", func() error {
			return PatchService(tw, ServiceUpdate{Tags: raw(`{"y":1}`), Desired: raw(`{"e":1}`)}, t0)
		}, versions{10, 6, 2, ETag(10)}, false},
		{"service replace", func() error { return ReplaceService(tw, ServiceUpdate{}, t0) }, versions{11, 7, 2, ETag(11)}, false},
		{"failed desired patch changes nothing", func() error { return PatchDesired(tw, raw(`{"a.b":1}`), t0) }, versions{11, 7, 2, ETag(11)}, true},
		{"failed service patch changes nothing", func() error {
			return PatchService(tw, ServiceUpdate{Tags: raw(`{"ok":1}`), Desired: raw(`{"$bad":1}`)}, t0)
		}, versions{11, 7, 2, ETag(11)}, true},
		{"failed reported patch changes nothing", func() error { return PatchReported(tw, raw(`[]`), t0) }, versions{11, 7, 2, ETag(11)}, true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := tw.Clone()
			err := s.op()
			if (err != nil) != s.wantErr {
				t.Fatalf("error = %v, want error %v", err, s.wantErr)
			}
			if err != nil {
				if diff := cmp.Diff(before, tw); diff != "" {
					t.Errorf("failed write changed the twin (-before +after):\n%s", diff)
				}
			}
			if diff := cmp.Diff(s.want, versionsOf(tw)); diff != "" {
				t.Errorf("versions (-want +got):\n%s", diff)
			}
		})
	}
}

func metadataJSON(t *testing.T, c Collection) string {
	t.Helper()
	b, err := c.Metadata.MarshalJSON()
	if err != nil {
		t.Fatalf("marshal metadata: %v", err)
	}
	return string(b)
}

func TestDesiredMetadata(t *testing.T) {
	t1 := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	t2 := t1.Add(time.Minute)
	t3 := t2.Add(time.Minute)
	t4 := t3.Add(time.Minute)
	const (
		s1 = `"2024-05-06T07:08:09.1234567Z"`
		s2 = `"2024-05-06T07:09:09.1234567Z"`
		s3 = `"2024-05-06T07:10:09.1234567Z"`
		s4 = `"2024-05-06T07:11:09.1234567Z"`
	)
	tw := New("d1", "", t0)
	steps := []struct {
		name string
		op   func() error
		want string
	}{
		{"replace stamps every node", func() error { return ReplaceDesired(tw, raw(`{"a":1,"b":{"c":2,"d":3}}`), t1) },
			`{"$lastUpdated":` + s1 + `,"$lastUpdatedVersion":2,"a":{"$lastUpdated":` + s1 + `,"$lastUpdatedVersion":2},"b":{"$lastUpdated":` + s1 + `,"$lastUpdatedVersion":2,"c":{"$lastUpdated":` + s1 + `,"$lastUpdatedVersion":2},"d":{"$lastUpdated":` + s1 + `,"$lastUpdatedVersion":2}}}`},
		{"patch stamps the written path only", func() error { return PatchDesired(tw, raw(`{"b":{"c":5}}`), t2) },
			`{"$lastUpdated":` + s2 + `,"$lastUpdatedVersion":3,"a":{"$lastUpdated":` + s1 + `,"$lastUpdatedVersion":2},"b":{"$lastUpdated":` + s2 + `,"$lastUpdatedVersion":3,"c":{"$lastUpdated":` + s2 + `,"$lastUpdatedVersion":3},"d":{"$lastUpdated":` + s1 + `,"$lastUpdatedVersion":2}}}`},
		{"delete drops nodes, new object gets a subtree, arrays are leaves", func() error { return PatchDesired(tw, raw(`{"b":null,"a":{"x":{"y":1}},"e":[{"f":1}]}`), t3) },
			`{"$lastUpdated":` + s3 + `,"$lastUpdatedVersion":4,"a":{"$lastUpdated":` + s3 + `,"$lastUpdatedVersion":4,"x":{"$lastUpdated":` + s3 + `,"$lastUpdatedVersion":4,"y":{"$lastUpdated":` + s3 + `,"$lastUpdatedVersion":4}}},"e":{"$lastUpdated":` + s3 + `,"$lastUpdatedVersion":4}}`},
		{"assignment stamps the path and replaces the subtree", func() error {
			return AssignDesired(tw, []Assignment{{Path: []string{"a", "z"}, Value: raw(`{"k":true}`)}}, t4)
		},
			`{"$lastUpdated":` + s4 + `,"$lastUpdatedVersion":5,"a":{"$lastUpdated":` + s4 + `,"$lastUpdatedVersion":5,"x":{"$lastUpdated":` + s3 + `,"$lastUpdatedVersion":4,"y":{"$lastUpdated":` + s3 + `,"$lastUpdatedVersion":4}},"z":{"$lastUpdated":` + s4 + `,"$lastUpdatedVersion":5,"k":{"$lastUpdated":` + s4 + `,"$lastUpdatedVersion":5}}},"e":{"$lastUpdated":` + s3 + `,"$lastUpdatedVersion":4}}`},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if err := s.op(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(s.want, metadataJSON(t, tw.Properties.Desired)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestReportedMetadataHasNoVersion(t *testing.T) {
	t1 := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("CET", 3600))
	tw := New("d1", "", t0)
	if err := PatchReported(tw, raw(`{"fw":"1.0.1","net":{"ip":"10.0.0.2"}}`), t1); err != nil {
		t.Fatal(err)
	}
	want := `{"$lastUpdated":"2024-05-06T06:08:09.0000000Z","fw":{"$lastUpdated":"2024-05-06T06:08:09.0000000Z"},"net":{"$lastUpdated":"2024-05-06T06:08:09.0000000Z","ip":{"$lastUpdated":"2024-05-06T06:08:09.0000000Z"}}}`
	if diff := cmp.Diff(want, metadataJSON(t, tw.Properties.Reported)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMetadataRepairedOnWrite(t *testing.T) {
	// A stored twin without $metadata (hand-written or from an older
	// version) gets a complete tree on its next write.
	var tw Twin
	if err := json.Unmarshal([]byte(`{"deviceId":"d","version":3,"properties":{"desired":{"a":{"b":1},"$version":5},"reported":{"$version":1}}}`), &tw); err != nil {
		t.Fatal(err)
	}
	if err := PatchDesired(&tw, raw(`{"c":1}`), t0); err != nil {
		t.Fatal(err)
	}
	s := `"2024-01-01T00:00:00.0000000Z"`
	want := `{"$lastUpdated":` + s + `,"$lastUpdatedVersion":6,"a":{"$lastUpdated":` + s + `,"$lastUpdatedVersion":6,"b":{"$lastUpdated":` + s + `,"$lastUpdatedVersion":6}},"c":{"$lastUpdated":` + s + `,"$lastUpdatedVersion":6}}`
	if diff := cmp.Diff(want, metadataJSON(t, tw.Properties.Desired)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if tw.Version != 4 || tw.ETag != ETag(4) {
		t.Errorf("version, etag = %d, %q; want 4, %q", tw.Version, tw.ETag, ETag(4))
	}
}

func TestReplace(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"drops everything not in the document", `{"n":1}`, `{"n":1}`},
		{"drops nulls", `{"n":null,"o":{"p":null,"q":1}}`, `{"o":{"q":1}}`},
		{"ignores top-level system members", `{"$version":3,"$metadata":{"$lastUpdated":"x"},"n":1}`, `{"n":1}`},
		{"empty", `{}`, `{}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := New("d1", "", t0)
			if err := PatchDesired(tw, raw(`{"old":1,"o":{"keep":2}}`), t0); err != nil {
				t.Fatal(err)
			}
			if err := ReplaceDesired(tw, raw(tc.doc), t0); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, desiredJSON(t, tw)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAssignDesired(t *testing.T) {
	tests := []struct {
		name        string
		initial     string
		assignments []Assignment
		want        string
	}{
		{"sets a new path", `{}`, []Assignment{{Path: []string{"a", "b"}, Value: raw(`1`)}}, `{"a":{"b":1}}`},
		{"replaces an object wholesale", `{"a":{"x":1,"y":2}}`, []Assignment{{Path: []string{"a"}, Value: raw(`{"z":3}`)}}, `{"a":{"z":3}}`},
		{"keeps siblings of the path", `{"a":{"x":1,"y":2}}`, []Assignment{{Path: []string{"a", "y"}, Value: raw(`[3]`)}}, `{"a":{"x":1,"y":[3]}}`},
		{"replaces a primitive on the path with an object", `{"a":5}`, []Assignment{{Path: []string{"a", "b", "c"}, Value: raw(`"s"`)}}, `{"a":{"b":{"c":"s"}}}`},
		{"applies in order", `{}`, []Assignment{
			{Path: []string{"a", "b"}, Value: raw(`1`)},
			{Path: []string{"a"}, Value: raw(`{"c":2}`)},
			{Path: []string{"a", "d"}, Value: raw(`3`)},
		}, `{"a":{"c":2,"d":3}}`},
		{"empty path replaces the section", `{"a":1}`, []Assignment{{Path: nil, Value: raw(`{"b":2,"c":null}`)}}, `{"b":2}`},
		{"drops nulls inside assigned objects", `{}`, []Assignment{{Path: []string{"a"}, Value: raw(`{"b":null,"c":1}`)}}, `{"a":{"c":1}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := New("d1", "", t0)
			if err := ReplaceDesired(tw, raw(tc.initial), t0); err != nil {
				t.Fatal(err)
			}
			if err := AssignDesired(tw, tc.assignments, t0); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, desiredJSON(t, tw)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestServiceUpdate(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		replace     bool
		wantTags    string
		wantDesired string
		wantErr     string
	}{
		{"node Twin.update body", `{"tags":{"env":"prod","old":null},"properties":{"desired":{"x":2}}}`, false, `{"env":"prod","keep":1}`, `{"d":1,"x":2}`, ""},
		{"tags only", `{"tags":{"env":"prod"}}`, false, `{"env":"prod","keep":1,"old":1}`, `{"d":1}`, ""},
		{"null parts are absent", `{"tags":null,"properties":{"desired":null}}`, false, `{"keep":1,"old":1}`, `{"d":1}`, ""},
		{"read-only fields and reported are ignored", `{"deviceId":"other","etag":"x","version":99,"properties":{"reported":{"r":1},"desired":{"$version":4,"$metadata":{},"x":1}}}`, false, `{"keep":1,"old":1}`, `{"d":1,"x":1}`, ""},
		{"replace of a full C# twin", `{"deviceId":"d1","tags":{"n":1},"properties":{"desired":{"x":1,"$metadata":{"$lastUpdated":"2024-01-01T00:00:00Z"},"$version":2},"reported":{"$version":1}}}`, true, `{"n":1}`, `{"x":1}`, ""},
		{"replace with missing parts empties them", `{}`, true, `{}`, `{}`, ""},
		{"body not an object", `[1]`, false, "", "", "twin: body must be a JSON object"},
		{"body null", `null`, false, "", "", "twin: body must be a JSON object"},
		{"properties not an object", `{"properties":1}`, false, "", "", "properties: must be a JSON object"},
		{"tags not an object", `{"tags":[1]}`, false, "", "", "tags: must be a JSON object, got an array"},
		{"bad tag key", `{"tags":{"$x":1},"properties":{"desired":{"y":1}}}`, false, "", "", `tags.$x: key "$x": '$'-prefixed keys are reserved`},
		{"bad desired key", `{"tags":{"y":1},"properties":{"desired":{"a b":1}}}`, true, "", "", `properties.desired["a b"]: key "a b" contains a space`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := New("d1", "", t0)
			if err := PatchService(tw, ServiceUpdate{Tags: raw(`{"keep":1,"old":1}`), Desired: raw(`{"d":1}`)}, t0); err != nil {
				t.Fatal(err)
			}
			before := tw.Clone()
			u, err := ParseServiceUpdate([]byte(tc.body))
			if err == nil {
				if tc.replace {
					err = ReplaceService(tw, u, t0)
				} else {
					err = PatchService(tw, u, t0)
				}
			}
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want ErrInvalid containing %q", err, tc.wantErr)
				}
				if diff := cmp.Diff(before, tw); diff != "" {
					t.Errorf("failed update changed the twin (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gotTags, _ := encode(map[string]any(tw.Tags))
			if diff := cmp.Diff(tc.wantTags, string(gotTags)); diff != "" {
				t.Errorf("tags (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantDesired, desiredJSON(t, tw)); diff != "" {
				t.Errorf("desired (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDesiredDelta(t *testing.T) {
	tests := []struct {
		name    string
		initial string
		op      func(tw *Twin) error
		want    string
	}{
		{"spec §2.5 example", `{"telemetryInterval":5,"oldKey":true}`, func(tw *Twin) error {
			return PatchDesired(tw, raw(`{"telemetryInterval":10,"oldKey":null}`), t0)
		}, `{"oldKey":null,"telemetryInterval":10,"$version":3}`},
		{"nested change sends only the changed member", `{"a":{"x":1,"y":2}}`, func(tw *Twin) error {
			return PatchDesired(tw, raw(`{"a":{"y":3}}`), t0)
		}, `{"a":{"y":3},"$version":3}`},
		{"unchanged value is not sent", `{"a":1}`, func(tw *Twin) error {
			return PatchDesired(tw, raw(`{"a":1}`), t0)
		}, `{"$version":3}`},
		{"replace sends deletions as null", `{"a":1,"b":{"c":1,"d":2}}`, func(tw *Twin) error {
			return ReplaceDesired(tw, raw(`{"b":{"c":1},"e":[1]}`), t0)
		}, `{"a":null,"b":{"d":null},"e":[1],"$version":3}`},
		{"object replacing a primitive is sent whole", `{"a":1}`, func(tw *Twin) error {
			return PatchDesired(tw, raw(`{"a":{"b":{"c":1}}}`), t0)
		}, `{"a":{"b":{"c":1}},"$version":3}`},
		{"array change is sent whole", `{"a":[1,2]}`, func(tw *Twin) error {
			return PatchDesired(tw, raw(`{"a":[1,3]}`), t0)
		}, `{"a":[1,3],"$version":3}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := New("d1", "", t0)
			if err := ReplaceDesired(tw, raw(tc.initial), t0); err != nil {
				t.Fatal(err)
			}
			before := tw.Clone()
			if err := tc.op(tw); err != nil {
				t.Fatal(err)
			}
			got, err := DesiredDelta(before, tw)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("nil before sends everything", func(t *testing.T) {
		tw := New("d1", "", t0)
		if err := ReplaceDesired(tw, raw(`{"a":{"b":1}}`), t0); err != nil {
			t.Fatal(err)
		}
		got, err := DesiredDelta(nil, tw)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(`{"a":{"b":1},"$version":2}`, string(got)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}
