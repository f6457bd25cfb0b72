package registry

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/fastjson/fastjsontest"
	"github.com/muster-iot/muster/internal/twin"
)

// TestDeviceAppendJSON pins the fast device and twin documents to
// json.Marshal's.
func TestDeviceAppendJSON(t *testing.T) {
	fastjsontest.Check(t, &Device{})
	fastjsontest.Check(t, &Twin{}, "Configurations")
}

// BenchmarkDeviceDoc compares the fast device document with json.Marshal,
// on a device as a symmetric-key registration writes it.
func BenchmarkDeviceDoc(b *testing.B) {
	now := time.Date(2026, 12, 7, 4, 47, 13, 123456789, time.UTC)
	d := &Device{DeviceID: "bench-device-000042", GenerationID: "638123456789012345", ConnectionState: "Disconnected",
		Status: "enabled", StatusUpdatedTime: now, ParentScopes: []string{},
		Authentication: Authentication{Type: "sas", SymmetricKey: &SymmetricKey{PrimaryKey: "q2YGlH3pJ0cYJxXv0cJmVYB1Zt8iJ9k3oGd8zYQWm1E=", SecondaryKey: "Zt8iJ9k3oGd8zYQWm1Eq2YGlH3pJ0cYJxXv0cJmVYB1="}},
		ProvisionedBy:  &Provenance{RegistrationID: "bench-device-000042", EnrollmentGroupID: "bench-group"}}
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := deviceDoc(d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestInitialDesiredMatchesMarshal pins initialDesired, which skips
// json.Marshal when it would not change the section's own encoding, to
// json.Marshal's output.
func TestInitialDesiredMatchesMarshal(t *testing.T) {
	now := time.Date(2026, 12, 7, 4, 47, 13, 123456789, time.UTC)
	for _, raw := range []string{
		"", "null", "{}", `{"a":1}`, `{"b":{"c":[1,2,{"d":null}]},"a":true}`,
		`{"s":"with space"}`, `{"h":"<b>&</b>"}`, "{\"u\":\"\u2028\u00e9\"}", `{"n":12345678901234567890.5}`,
		`{"$version":4,"$metadata":{"$lastUpdated":"2020-01-01T00:00:00Z"},"k":"v"}`, ` { "a" : [ ] } `,
	} {
		got, gotErr := initialDesired(json.RawMessage(raw), 3, now)
		m, err := decodeObject(json.RawMessage(raw))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		delete(m, "$metadata")
		delete(m, "$version")
		want, wantErr := json.Marshal(twin.StampDesired(nil, m, nil, 3, now))
		if string(got) != string(want) || (gotErr == nil) != (wantErr == nil) {
			t.Errorf("%s:\ngot  %s (%v)\nwant %s (%v)", raw, got, gotErr, want, wantErr)
		}
	}
}
