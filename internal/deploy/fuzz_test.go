package deploy

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/muster-iot/muster/internal/twin"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		specExample,
		configJSON("b1", 10, "tags.env='prod'", base1),
		configJSON("l1", 20, "*", layerAddLogger),
		configJSON("l2", 20, "*", layerTuneSensor),
		configJSON("l3", 20, "*", layerSensorSub),
		configJSON("a1", 0, "*", adm2),
		configJSON("m1", 0, "from devices.modules where tags.a=1", admM),
		configJSON("bad", -1, "", `{"modulesContent":{"$edgeHub":{"properties.desired":[]},"a.b":{}}}`),
		configJSON("x", 0, "*", `{"deviceContent":{"properties.desired":1,"properties.desired.":2,"properties.desired.a..b":null}}`),
		`{"id":"a","content":{"modulesContent":{"m":{"properties.desired.a":1,"properties.desired.a.b":2}}},"targetCondition":"*"}`,
		`{"id":"a","priority":1e3}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) || len(ve.Problems) == 0 {
				t.Fatalf("Parse error %v is not a *ValidationError with problems", err)
			}
			return
		}
		if c.Kind() == KindNone {
			t.Fatal("a valid configuration has no content")
		}
		if len(SystemQueries(&c)) == 0 {
			t.Fatal("a valid configuration has no system metric queries")
		}
		// A valid configuration round-trips through its JSON.
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse of own output %s: %v", b, err)
		}
		b2, err := json.Marshal(again)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if diff := cmp.Diff(string(b), string(b2)); diff != "" {
			t.Fatalf("encoding not stable (-first +second):\n%s", diff)
		}
		// On its own it resolves without error, and what it writes fits
		// the twins it is written to.
		all := func(string) (bool, error) { return true, nil }
		for _, device := range []TargetInfo{{DeviceID: "e", IoTEdge: true}, {DeviceID: "d"}, {DeviceID: "e", ModuleID: "m", IoTEdge: true}} {
			r, err := Resolve(device, []Configuration{c}, all)
			if err != nil {
				t.Fatalf("Resolve(%+v): %v", device, err)
			}
			for name, desired := range r.Edge.Modules {
				if err := twin.Validate(twin.SectionDesired, desired); err != nil {
					t.Fatalf("module %s desired: %v", name, err)
				}
			}
			if err := twin.AssignDesired(twin.New("d", device.ModuleID, day0), r.ADM.Assignments, day0); err != nil && !errors.Is(err, twin.ErrTooLarge) {
				t.Fatalf("ADM assignments: %v", err)
			}
		}
	})
}
