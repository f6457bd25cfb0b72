package twin

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// specExample is the twin JSON of hub-edge-protocol.md §4.4 with the "…"
// placeholders filled in.
const specExample = `{
  "deviceId": "dev1",
  "moduleId": "mod1",
  "etag": "AAAAAAAAAAE=",
  "deviceEtag": "NTgwMDg5MDAz",
  "status": "enabled",
  "statusReason": null,
  "statusUpdateTime": "0001-01-01T00:00:00Z",
  "connectionState": "Disconnected",
  "lastActivityTime": "0001-01-01T00:00:00Z",
  "cloudToDeviceMessageCount": 0,
  "authenticationType": "sas",
  "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
  "modelId": "",
  "version": 2,
  "tags": {"location": {"region": "US"}},
  "properties": {
    "desired": {
      "telemetryInterval": 5,
      "$metadata": {
        "$lastUpdated": "2024-01-01T00:00:00.0000000Z",
        "$lastUpdatedVersion": 4,
        "telemetryInterval": {"$lastUpdated": "2024-01-01T00:00:00.0000000Z", "$lastUpdatedVersion": 4}
      },
      "$version": 4
    },
    "reported": {
      "fw": "1.0.1",
      "$metadata": {"$lastUpdated": "2024-01-02T03:04:05.1234567Z", "fw": {"$lastUpdated": "2024-01-02T03:04:05.1234567Z"}},
      "$version": 7
    }
  },
  "capabilities": {"iotEdge": false},
  "deviceScope": "",
  "parentScopes": [],
  "configurations": {"cfg1": {"status": "Applied"}}
}`

func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("compact %q: %v", s, err)
	}
	return b.String()
}

// canon re-encodes a JSON document with sorted keys.
func canon(t *testing.T, s string) string {
	t.Helper()
	x, err := decodeValue([]byte(s))
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	b, err := encode(x)
	if err != nil {
		t.Fatalf("encode %q: %v", s, err)
	}
	return string(b)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

func TestRoundTrip(t *testing.T) {
	deviceTwin := strings.Replace(specExample, `"moduleId": "mod1",`, "", 1)
	moduleTwin := strings.NewReplacer(
		`"capabilities": {"iotEdge": false},`, "",
		`"deviceScope": "",`, "",
		`"parentScopes": [],`, "",
	).Replace(specExample)
	tests := []struct {
		name string
		doc  string
	}{
		{"spec example", specExample},
		{"device twin", deviceTwin},
		{"module twin", moduleTwin},
		{"new device twin", mustJSON(t, New("d1", "", t0))},
		{"new module twin", mustJSON(t, New("d1", "$edgeAgent", t0))},
		{"numbers keep their text", `{"deviceId":"d","etag":"","statusReason":null,"statusUpdateTime":"0001-01-01T00:00:00Z","lastActivityTime":"0001-01-01T00:00:00Z","cloudToDeviceMessageCount":0,"modelId":"","version":1,"tags":{"big":12345678901234567890123,"f":1.50,"e":1E+3},"properties":{"desired":{"x":-0.0,"$version":1},"reported":{"$version":1}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tw Twin
			if err := json.Unmarshal([]byte(tc.doc), &tw); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			got, err := json.Marshal(tw)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if diff := cmp.Diff(canon(t, tc.doc), canon(t, string(got))); diff != "" {
				t.Errorf("round trip changed the document (-want +got):\n%s", diff)
			}
			// Our own output is in Azure's member order, so it must
			// survive a second round trip byte for byte.
			var again Twin
			if err := json.Unmarshal(got, &again); err != nil {
				t.Fatalf("Unmarshal of own output: %v", err)
			}
			got2, err := json.Marshal(&again)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if diff := cmp.Diff(string(got), string(got2)); diff != "" {
				t.Errorf("second round trip differs (-first +second):\n%s", diff)
			}
		})
	}
}

func TestSpecExampleByteExact(t *testing.T) {
	var tw Twin
	if err := json.Unmarshal([]byte(specExample), &tw); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	got, err := json.Marshal(tw)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if diff := cmp.Diff(compact(t, specExample), string(got)); diff != "" {
		t.Errorf("(-spec +got):\n%s", diff)
	}
	want := &Metadata{
		LastUpdated:        t0,
		LastUpdatedVersion: 4,
		Children:           map[string]*Metadata{"telemetryInterval": {LastUpdated: t0, LastUpdatedVersion: 4}},
	}
	if diff := cmp.Diff(want, tw.Properties.Desired.Metadata); diff != "" {
		t.Errorf("desired metadata (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Object{"telemetryInterval": json.Number("5")}, tw.Properties.Desired.Values); diff != "" {
		t.Errorf("desired values (-want +got):\n%s", diff)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"unknown system key", `{"properties":{"desired":{"$foo":1,"$version":1}}}`, `unknown system key "$foo"`},
		{"version not a number", `{"properties":{"desired":{"$version":"1"}}}`, `properties.$version: got a string`},
		{"version not an integer", `{"properties":{"desired":{"$version":1.5}}}`, `properties.$version`},
		{"metadata not an object", `{"properties":{"reported":{"$metadata":[],"$version":1}}}`, `$metadata: got an array`},
		{"metadata child not an object", `{"properties":{"reported":{"$metadata":{"a":1},"$version":1}}}`, `$metadata.a: got a number`},
		{"metadata bad time", `{"properties":{"reported":{"$metadata":{"$lastUpdated":"yesterday"},"$version":1}}}`, `$metadata.$lastUpdated`},
		{"metadata unknown key", `{"properties":{"reported":{"$metadata":{"$x":1},"$version":1}}}`, `unknown system key "$x"`},
		{"properties section not an object", `{"properties":{"desired":[1]}}`, `got an array, want an object`},
		{"tags not an object", `{"tags":"x"}`, `got a string`},
		{"not JSON", `{"deviceId":`, `unexpected end of JSON input`},
		{"wrong member type", `{"version":"2"}`, `decode twin`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tw Twin
			err := json.Unmarshal([]byte(tc.doc), &tw)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Unmarshal error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCollectionMarshalRejectsReservedMember(t *testing.T) {
	c := Collection{Values: Object{"$version": json.Number("3")}, Version: 1}
	if _, err := json.Marshal(c); err == nil || !strings.Contains(err.Error(), `member "$version" is reserved`) {
		t.Fatalf("Marshal error = %v, want reserved member error", err)
	}
}

func TestETag(t *testing.T) {
	tests := []struct {
		version int64
		want    string
	}{
		{0, "AAAAAAAAAAA="},
		{1, "AAAAAAAAAAE="},
		{2, "AAAAAAAAAAI="},
		{256, "AAAAAAAAAQA="},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := ETag(tc.version); got != tc.want {
				t.Errorf("ETag(%d) = %q, want %q", tc.version, got, tc.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	local := t0.In(time.FixedZone("X", 3600))
	tests := []struct {
		name     string
		deviceID string
		moduleID string
		want     string
	}{
		{"device", "d1", "", `{"deviceId":"d1","etag":"AAAAAAAAAAE=","statusReason":null,"statusUpdateTime":"0001-01-01T00:00:00Z","lastActivityTime":"0001-01-01T00:00:00Z","cloudToDeviceMessageCount":0,"modelId":"","version":1,"tags":{},"properties":{"desired":{"$metadata":{"$lastUpdated":"2024-01-01T00:00:00.0000000Z","$lastUpdatedVersion":1},"$version":1},"reported":{"$metadata":{"$lastUpdated":"2024-01-01T00:00:00.0000000Z"},"$version":1}},"capabilities":{"iotEdge":false},"deviceScope":"","parentScopes":[]}`},
		{"module", "d1", "m1", `{"deviceId":"d1","moduleId":"m1","etag":"AAAAAAAAAAE=","statusReason":null,"statusUpdateTime":"0001-01-01T00:00:00Z","lastActivityTime":"0001-01-01T00:00:00Z","cloudToDeviceMessageCount":0,"modelId":"","version":1,"tags":{},"properties":{"desired":{"$metadata":{"$lastUpdated":"2024-01-01T00:00:00.0000000Z","$lastUpdatedVersion":1},"$version":1},"reported":{"$metadata":{"$lastUpdated":"2024-01-01T00:00:00.0000000Z"},"$version":1}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mustJSON(t, New(tc.deviceID, tc.moduleID, local))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeviceView(t *testing.T) {
	tests := []struct {
		name string
		prep func(tw *Twin) error
		want string
	}{
		{"new twin", func(*Twin) error { return nil }, `{"desired":{"$version":1},"reported":{"$version":1}}`},
		{"spec §2.5 example", func(tw *Twin) error {
			if err := PatchTags(tw, json.RawMessage(`{"hidden":true}`)); err != nil {
				return err
			}
			if err := PatchDesired(tw, json.RawMessage(`{"telemetryInterval":5}`), t0); err != nil {
				return err
			}
			return PatchReported(tw, json.RawMessage(`{"fw":"1.0.1"}`), t0)
		}, `{"desired":{"telemetryInterval":5,"$version":2},"reported":{"fw":"1.0.1","$version":2}}`},
		{"nested values, no html escaping", func(tw *Twin) error {
			return PatchDesired(tw, json.RawMessage(`{"b":{"y":[1,"<&>"],"x":null},"a":1.0}`), t0)
		}, `{"desired":{"a":1.0,"b":{"y":[1,"<&>"]},"$version":2},"reported":{"$version":1}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := New("d1", "", t0)
			if err := tc.prep(tw); err != nil {
				t.Fatalf("prepare: %v", err)
			}
			got, err := DeviceView(tw)
			if err != nil {
				t.Fatalf("DeviceView: %v", err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestClone(t *testing.T) {
	var tw Twin
	if err := json.Unmarshal([]byte(specExample), &tw); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	reason := "because"
	tw.StatusReason = &reason
	c := tw.Clone()
	if diff := cmp.Diff(&tw, c); diff != "" {
		t.Fatalf("clone differs (-orig +clone):\n%s", diff)
	}
	before := mustJSON(t, tw)
	// Mutating the clone in place must not reach the original.
	c.Tags["location"].(map[string]any)["region"] = "EU"
	c.Properties.Desired.Metadata.Children["telemetryInterval"].LastUpdatedVersion = 99
	*c.StatusReason = "x"
	*c.X509Thumbprint = X509Thumbprint{}
	c.ParentScopes = append(c.ParentScopes[:0], "p")
	c.Configurations["cfg1"] = ConfigurationStatus{Status: "Targeted"}
	c.Capabilities.IoTEdge = true
	if diff := cmp.Diff(before, mustJSON(t, tw)); diff != "" {
		t.Errorf("original changed (-before +after):\n%s", diff)
	}
}

func TestSetConfigurations(t *testing.T) {
	tw := New("d1", "$edgeAgent", t0)
	steps := []struct {
		name        string
		statuses    map[string]string
		wantChanged bool
		wantVersion int64
		wantJSON    string
	}{
		{"first", map[string]string{"base": "Applied", "old": "Targeted"}, true, 2, `{"base":{"status":"Applied"},"old":{"status":"Targeted"}}`},
		{"same again", map[string]string{"old": "Targeted", "base": "Applied"}, false, 2, `{"base":{"status":"Applied"},"old":{"status":"Targeted"}}`},
		{"status flips", map[string]string{"base": "Targeted", "old": "Targeted"}, true, 3, `{"base":{"status":"Targeted"},"old":{"status":"Targeted"}}`},
		{"one removed", map[string]string{"base": "Targeted"}, true, 4, `{"base":{"status":"Targeted"}}`},
		{"all removed", nil, true, 5, `null`},
		{"still none", map[string]string{}, false, 5, `null`},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if got := SetConfigurations(tw, s.statuses); got != s.wantChanged {
				t.Errorf("SetConfigurations = %v, want %v", got, s.wantChanged)
			}
			if tw.Version != s.wantVersion || tw.ETag != ETag(s.wantVersion) {
				t.Errorf("version, etag = %d, %q; want %d, %q", tw.Version, tw.ETag, s.wantVersion, ETag(s.wantVersion))
			}
			if got := mustJSON(t, tw.Configurations); got != s.wantJSON {
				t.Errorf("configurations = %s, want %s", got, s.wantJSON)
			}
		})
	}
	if strings.Contains(mustJSON(t, tw), "configurations") {
		t.Error("an empty configurations map is encoded")
	}
}
