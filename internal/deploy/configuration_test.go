package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// specExample is the Configuration JSON of hub-edge-protocol.md §4.6 with the
// "…" placeholders filled in.
const specExample = `{
  "id": "deploy-sensors",
  "schemaVersion": "1.0",
  "labels": {"team": "ops"},
  "content": {
    "modulesContent": {
      "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}}, "systemModules": {"edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{}"}}, "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5", "createOptions": "{}"}}}, "modules": {"SimulatedTemperatureSensor": {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always", "settings": {"image": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5", "createOptions": "{}"}}}}},
      "$edgeHub":   {"properties.desired": {"schemaVersion": "1.1", "routes": {"upstream": "FROM /messages/* INTO $upstream"}, "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
      "SimulatedTemperatureSensor": {"properties.desired": {"SendInterval": 5}}
    }
  },
  "targetCondition": "tags.environment='prod'",
  "createdTimeUtc": "2024-01-01T00:00:00Z",
  "lastUpdatedTimeUtc": "2024-01-01T00:00:00Z",
  "priority": 10,
  "systemMetrics": {
    "results": {"targetedCount": 15, "appliedCount": 10, "reportedSuccessfulCount": 9, "reportedFailedCount": 1},
    "queries": {"targetedCount": "SELECT deviceId FROM devices WHERE capabilities.iotEdge = true AND (tags.environment='prod')", "appliedCount": "a", "reportedSuccessfulCount": "b", "reportedFailedCount": "c"}
  },
  "metrics": {"results": {"myMetric": 3}, "queries": {"myMetric": "SELECT deviceId FROM devices WHERE tags.x = 1"}},
  "etag": "MQ=="
}`

func canonJSON(t *testing.T, s []byte) string {
	t.Helper()
	x, err := decodeValue(s)
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	b, err := encode(x)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseSpecExample(t *testing.T) {
	c, err := Parse([]byte(specExample))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Kind() != KindBase || !c.IsEdge() {
		t.Errorf("Kind = %q, IsEdge = %v; want base edge deployment", c.Kind(), c.IsEdge())
	}
	got, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(canonJSON(t, []byte(specExample)), canonJSON(t, got)); diff != "" {
		t.Errorf("round trip (-spec +got):\n%s", diff)
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(`{"id":"adm1","content":{"deviceContent":{"properties.desired.x":1},"modulesContent":{},"moduleContent":{}},"targetCondition":"*"}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.SchemaVersion != "1.0" || c.Kind() != KindDevice {
		t.Errorf("schemaVersion %q, kind %q; want 1.0, device", c.SchemaVersion, c.Kind())
	}
}

// edgeAgentDesired is a minimal $edgeAgent desired document deploying modules.
func edgeAgentDesired(modules ...string) string {
	parts := make([]string, len(modules))
	for i, m := range modules {
		parts[i] = fmt.Sprintf(`%q:{"type":"docker","status":"running","restartPolicy":"always","settings":{"image":"example/%s:1.0","createOptions":"{}"}}`, m, strings.ToLower(m))
	}
	return `{"schemaVersion":"1.1","runtime":{"type":"docker","settings":{}},"systemModules":{"edgeAgent":{"type":"docker","settings":{"image":"mcr.microsoft.com/azureiotedge-agent:1.5"}},"edgeHub":{"type":"docker","status":"running","restartPolicy":"always","settings":{"image":"mcr.microsoft.com/azureiotedge-hub:1.5"}}},"modules":{` + strings.Join(parts, ",") + `}}`
}

const edgeHubDesired = `{"schemaVersion":"1.1","routes":{"upstream":"FROM /messages/* INTO $upstream"},"storeAndForwardConfiguration":{"timeToLiveSecs":7200}}`

func configJSON(id string, priority int, cond string, content string) string {
	return fmt.Sprintf(`{"id":%q,"priority":%d,"targetCondition":%q,"content":%s}`, id, priority, cond, content)
}

func baseContent(modules ...string) string {
	return `{"modulesContent":{"$edgeAgent":{"properties.desired":` + edgeAgentDesired(modules...) + `},"$edgeHub":{"properties.desired":` + edgeHubDesired + `}}}`
}

func TestKind(t *testing.T) {
	tests := []struct {
		content string
		want    Kind
	}{
		{baseContent("a"), KindBase},
		{`{"modulesContent":{"$edgeAgent":{"properties.desired.modules.a":{}}}}`, KindLayered},
		{`{"modulesContent":{"m":{"properties.desired":{}}}}`, KindLayered},
		{`{"modulesContent":{"$edgeHub":{"properties.desired":{}}}}`, KindLayered},
		{`{"deviceContent":{"properties.desired.a":1}}`, KindDevice},
		{`{"moduleContent":{"properties.desired.a":1}}`, KindModule},
		{`{"deviceContent":{},"moduleContent":{}}`, KindNone},
		{`{}`, KindNone},
	}
	for _, tc := range tests {
		t.Run(string(tc.want)+" "+tc.content, func(t *testing.T) {
			var c Configuration
			if err := json.Unmarshal([]byte(configJSON("x", 0, "*", tc.content)), &c); err != nil {
				t.Fatal(err)
			}
			if got := c.Kind(); got != tc.want {
				t.Errorf("Kind = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidationProblems(t *testing.T) {
	manyModules := func(n int) string {
		names := make([]string, n)
		entries := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("m%02d", i)
			entries[i] = fmt.Sprintf(`,%q:{"properties.desired":{}}`, names[i])
		}
		return `{"modulesContent":{"$edgeAgent":{"properties.desired":` + edgeAgentDesired(names...) + `},"$edgeHub":{"properties.desired":` + edgeHubDesired + `}` + strings.Join(entries, "") + `}}`
	}
	layeredModules := func(n int) string {
		entries := make([]string, n)
		for i := range entries {
			entries[i] = fmt.Sprintf(`"properties.desired.modules.m%02d":{"type":"docker"}`, i)
		}
		return `{"modulesContent":{"$edgeAgent":{` + strings.Join(entries, ",") + `}}}`
	}
	tests := []struct {
		name string
		doc  string
		want []Problem
	}{
		{"valid base", configJSON("base-1", 0, "tags.env='prod'", baseContent("sensor")), nil},
		{"valid layered", configJSON("layer-1", 5, "*", `{"modulesContent":{"$edgeAgent":{"properties.desired.modules.x":{"type":"docker"}},"$edgeHub":{"properties.desired.routes.r":"FROM /messages/* INTO $upstream"},"x":{"properties.desired":{"a":1},"properties.desired.b.c":2}}}`), nil},
		{"valid ADM module", configJSON("adm-m", 1, "FROM  devices.modules\nWHERE tags.x='y'", `{"moduleContent":{"properties.desired.a":{"b":1}}}`), nil},
		{"valid id punctuation", configJSON(`a-:+%_#*?!(),=@;$'9`, 0, "*", `{"deviceContent":{"properties.desired.a":1}}`), nil},
		{"id missing", configJSON("", 0, "*", `{"deviceContent":{"properties.desired.a":1}}`), []Problem{{"id", "is required"}}},
		{"id upper case", configJSON("Deploy", 0, "*", `{"deviceContent":{"properties.desired.a":1}}`), []Problem{{"id", `"Deploy" contains 'D'; allowed are lower-case letters, digits and -:+%_#*?!(),=@;$'`}}},
		{"id with a dot", configJSON("a.b", 0, "*", `{"deviceContent":{"properties.desired.a":1}}`), []Problem{{"id", `"a.b" contains '.'; allowed are lower-case letters, digits and -:+%_#*?!(),=@;$'`}}},
		{"id too long", configJSON(strings.Repeat("a", 129), 0, "*", `{"deviceContent":{"properties.desired.a":1}}`), []Problem{{"id", "is 129 characters, over the 128-character limit"}}},
		{"negative priority", configJSON("a", -1, "*", `{"deviceContent":{"properties.desired.a":1}}`), []Problem{{"priority", "is -1; it must be 0 or more"}}},
		{"other schema version", `{"id":"a","schemaVersion":"2.0","targetCondition":"*","content":{"deviceContent":{"properties.desired.a":1}}}`, []Problem{{"schemaVersion", `is "2.0"; the only schema version is "1.0"`}}},
		{"no target condition", configJSON("a", 0, "  ", `{"deviceContent":{"properties.desired.a":1}}`), []Problem{{"targetCondition", `is required ("*" targets every device)`}}},
		{"module condition without from clause", configJSON("a", 0, "tags.x='y'", `{"moduleContent":{"properties.desired.a":1}}`), []Problem{{"targetCondition", `"tags.x='y'": moduleContent needs a module twin condition of the form "from devices.modules where <condition>"`}}},
		{"empty label name", `{"id":"a","labels":{" ":"x"},"targetCondition":"*","content":{"deviceContent":{"properties.desired.a":1}}}`, []Problem{{"labels", "has an empty label name"}}},
		{"empty metric query", `{"id":"a","metrics":{"queries":{"m":" "}},"targetCondition":"*","content":{"deviceContent":{"properties.desired.a":1}}}`, []Problem{{`metrics.queries["m"]`, "query is empty"}}},
		{"no content", configJSON("a", 0, "*", `{}`), []Problem{{"content", "is empty; exactly one of modulesContent, moduleContent or deviceContent is required"}}},
		{"two kinds of content", configJSON("a", 0, "*", `{"deviceContent":{"properties.desired.a":1},"moduleContent":{"properties.desired.a":1}}`), []Problem{{"content", "has moduleContent and deviceContent; exactly one kind of content is allowed"}}},
		{"ADM whole desired", configJSON("a", 0, "*", `{"deviceContent":{"properties.desired":{"a":1}}}`), []Problem{{`content.deviceContent["properties.desired"]`, `must name a property below the desired properties: "properties.desired.<name>"`}}},
		{"ADM tags", configJSON("a", 0, "*", `{"deviceContent":{"tags.a":1}}`), []Problem{{`content.deviceContent["tags.a"]`, `must name a property below the desired properties: "properties.desired.<name>"`}}},
		{"ADM null value", configJSON("a", 0, "*", `{"deviceContent":{"properties.desired.a":null}}`), []Problem{{`content.deviceContent["properties.desired.a"]`, "properties.desired.a: value is null (an assignment sets a value; use a patch to delete)"}}},
		{"ADM bad path key", configJSON("a", 0, "*", `{"deviceContent":{"properties.desired.a..b":1}}`), []Problem{{`content.deviceContent["properties.desired.a..b"]`, `properties.desired.a[""]: key is empty`}}},
		{"ADM bad key in value", configJSON("a", 0, "*", `{"deviceContent":{"properties.desired.a":{"$b":1}}}`), []Problem{{`content.deviceContent["properties.desired.a"]`, `properties.desired.a.$b: key "$b": '$'-prefixed keys are reserved for system properties (only $metadata and $version, at the top of a properties section, are accepted and ignored)`}}},
		{"base without $edgeHub", configJSON("a", 0, "*", `{"modulesContent":{"$edgeAgent":{"properties.desired":`+edgeAgentDesired()+`}}}`), []Problem{{"content.modulesContent.$edgeHub", `a base deployment needs "properties.desired" on $edgeHub as well as on $edgeAgent`}}},
		{"base with a path", configJSON("a", 0, "*", `{"modulesContent":{"$edgeAgent":{"properties.desired":`+edgeAgentDesired()+`,"properties.desired.modules.x":{}},"$edgeHub":{"properties.desired":`+edgeHubDesired+`}}}`), []Problem{{`content.modulesContent.$edgeAgent["properties.desired.modules.x"]`, `a base deployment (whole "properties.desired" on $edgeAgent) sets whole "properties.desired" only; move this path into it or into a layered deployment`}}},
		{"base desired not an object", configJSON("a", 0, "*", `{"modulesContent":{"$edgeAgent":{"properties.desired":`+edgeAgentDesired()+`},"$edgeHub":{"properties.desired":[]}}}`), []Problem{{`content.modulesContent.$edgeHub["properties.desired"]`, "properties.desired: must be a JSON object, got an array"}}},
		{"layered replacing $edgeHub", configJSON("a", 0, "*", `{"modulesContent":{"$edgeHub":{"properties.desired":`+edgeHubDesired+`}}}`), []Problem{{`content.modulesContent.$edgeHub["properties.desired"]`, `replaces the whole desired properties of $edgeHub, which only a base deployment may do; a base deployment also needs "properties.desired" on $edgeAgent, and a layered one sets paths like "properties.desired.modules.<name>"`}}},
		{"unknown module key", configJSON("a", 0, "*", `{"modulesContent":{"m":{"properties.reported.x":1}}}`), []Problem{{`content.modulesContent.m["properties.reported.x"]`, `only "properties.desired" and "properties.desired.<path>" can be set`}}},
		{"empty module", configJSON("a", 0, "*", `{"modulesContent":{"m":{}}}`), []Problem{{"content.modulesContent.m", `is empty; set "properties.desired" or "properties.desired.<path>"`}}},
		{"reserved module name", configJSON("a", 0, "*", `{"modulesContent":{"$custom":{"properties.desired":{}}}}`), []Problem{{`content.modulesContent["$custom"]`, `module "$custom": '$'-prefixed module IDs are reserved for $edgeAgent and $edgeHub`}}},
		{"module name with a dot", configJSON("a", 0, "*", `{"modulesContent":{"a.b":{"properties.desired":{}}}}`), []Problem{{`content.modulesContent["a.b"]`, `module name is not usable as a key of $edgeAgent's desired modules: key "a.b" contains '.'`}}},
		{"module name with a slash", configJSON("a", 0, "*", `{"modulesContent":{"a/b":{"properties.desired":{}}}}`), []Problem{{`content.modulesContent["a/b"]`, `module ID "a/b" contains '/'; allowed are letters, digits and -:.+%_#*?!(),=@;$'`}}},
		{"module desired too deep", configJSON("a", 0, "*", `{"modulesContent":{"m":{"properties.desired.a.b.c.d.e.f.g.h.i.j":{"k":{}}}}}`), []Problem{{`content.modulesContent.m["properties.desired.a.b.c.d.e.f.g.h.i.j"]`, "properties.desired.a.b.c.d.e.f.g.h.i.j.k: nesting depth 11 exceeds the limit of 10"}}},
		{"module desired over 32 KiB", configJSON("a", 0, "*", `{"modulesContent":{"m":{"properties.desired":{"a":"`+strings.Repeat("x", 4096)+`","b":"`+strings.Repeat("x", 4096)+`","c":"`+strings.Repeat("x", 4096)+`","d":"`+strings.Repeat("x", 4096)+`","e":"`+strings.Repeat("x", 4096)+`","f":"`+strings.Repeat("x", 4096)+`","g":"`+strings.Repeat("x", 4096)+`","h":"`+strings.Repeat("x", 4096)+`"}}}}`), []Problem{{`content.modulesContent.m["properties.desired"]`, "properties.desired would be 32825 bytes, over the 32768-byte limit (compact JSON without $metadata and $version)"}}},
		{"50 modules", configJSON("a", 0, "*", manyModules(50)), nil},
		{"51 modules", configJSON("a", 0, "*", manyModules(51)), []Problem{
			{"content.modulesContent", "names 51 modules besides $edgeAgent and $edgeHub, over the limit of 50"},
			{"content.modulesContent.$edgeAgent", "deploys 51 modules, over the limit of 50"},
		}},
		{"51 layered modules", configJSON("a", 0, "*", layeredModules(51)), []Problem{{"content.modulesContent.$edgeAgent", "deploys 51 modules, over the limit of 50"}}},
		{"every problem at once", `{"id":"A","priority":-2,"content":{"modulesContent":{"m":{"x":1}}}}`, []Problem{
			{"id", `"A" contains 'A'; allowed are lower-case letters, digits and -:+%_#*?!(),=@;$'`},
			{"priority", "is -2; it must be 0 or more"},
			{`content.modulesContent.m["x"]`, `only "properties.desired" and "properties.desired.<path>" can be set`},
			{"targetCondition", `is required ("*" targets every device)`},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error = %v, want *ValidationError", err)
			}
			if diff := cmp.Diff(tc.want, ve.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseJSONErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"truncated", `{"id":`, "invalid configuration: configuration: invalid JSON: unexpected EOF"},
		{"trailing data", `{} {}`, "invalid configuration: configuration: invalid JSON: data after the top-level value"},
		{"priority not a number", `{"id":"a","priority":"1"}`, "invalid configuration: configuration: invalid JSON: json: cannot unmarshal string into Go struct field Configuration.priority of type int"},
		{"content value not an object", `{"id":"a","content":{"modulesContent":{"m":[]}}}`, "invalid configuration: configuration: invalid JSON: json: cannot unmarshal array into Go struct field Content.content.modulesContent of type deploy.TwinContent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil || !errors.Is(err, ErrInvalid) || err.Error() != tc.want {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCondition(t *testing.T) {
	tests := []struct {
		cond    string
		content string
		want    string
	}{
		{" tags.env='prod' ", `{"deviceContent":{"properties.desired.a":1}}`, "tags.env='prod'"},
		{"*", baseContent(), "*"},
		{"from devices.modules where tags.x='y'", `{"moduleContent":{"properties.desired.a":1}}`, "tags.x='y'"},
		{"FROM\tdevices.modules  WHERE\nproperties.reported.v = 2", `{"moduleContent":{"properties.desired.a":1}}`, "properties.reported.v = 2"},
		{"from devices.modules where tags.x='y'", `{"deviceContent":{"properties.desired.a":1}}`, "from devices.modules where tags.x='y'"},
	}
	for _, tc := range tests {
		t.Run(tc.cond, func(t *testing.T) {
			var c Configuration
			if err := json.Unmarshal([]byte(configJSON("a", 0, tc.cond, tc.content)), &c); err != nil {
				t.Fatal(err)
			}
			if got := c.Condition(); got != tc.want {
				t.Errorf("Condition() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestModuleWhere(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"from devices.modules where x", "x", true},
		{"from devices.modules where", "", false},
		{"from devices.moduleswhere x", "", false},
		{"fromdevices.modules where x", "", false},
		{"from devices where x", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := moduleWhere(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("moduleWhere(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestContentKeysOrder(t *testing.T) {
	entries := TwinContent{
		"properties.desired.b":     nil,
		"properties.desired.a.b":   nil,
		"properties.desired":       nil,
		"properties.desired.a":     nil,
		"properties.desired.a-c":   nil,
		"properties.desired.a.b.c": nil,
	}
	want := []string{"properties.desired", "properties.desired.a", "properties.desired.a.b", "properties.desired.a.b.c", "properties.desired.a-c", "properties.desired.b"}
	if diff := cmp.Diff(want, contentKeys(entries)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMarshalCompactsContent(t *testing.T) {
	c, err := Parse([]byte(configJSON("a", 0, "*", `{"deviceContent":{"properties.desired.a": { "b" : 1 }}}`)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"deviceContent":{"properties.desired.a":{"b":1}}`)) {
		t.Errorf("Marshal = %s", b)
	}
}
