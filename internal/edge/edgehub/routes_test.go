package edgehub

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/telemetry"
)

func TestParseRoute(t *testing.T) {
	tests := []struct {
		text   string
		source SourceKind
		module string
		output string
		where  bool
		sink   Sink
	}{
		{"FROM /messages/* INTO $upstream", SourceAll, "", "", false, Sink{Upstream: true}},
		{"from /* into $upstream", SourceAll, "", "", false, Sink{Upstream: true}},
		{"FROM /messages/modules/* INTO $upstream", SourceAllModules, "", "", false, Sink{Upstream: true}},
		{"FROM /messages/modules/sensor/* INTO $upstream", SourceModule, "sensor", "", false, Sink{Upstream: true}},
		{"FROM /messages/modules/sensor/outputs/* INTO $upstream", SourceModuleOutputs, "sensor", "", false, Sink{Upstream: true}},
		{`FROM /messages/modules/SimulatedTemperatureSensor/outputs/temperatureOutput INTO BrokeredEndpoint("/modules/filter/inputs/input1")`,
			SourceModuleOutput, "SimulatedTemperatureSensor", "temperatureOutput", false, Sink{Module: "filter", Input: "input1"}},
		{"FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream", SourceAll, "", "", true, Sink{Upstream: true}},
		{"FROM /messages/modules/f/outputs/* WHERE alert = 'going INTO overdrive' INTO $upstream", SourceModuleOutputs, "f", "", true, Sink{Upstream: true}},
		{"  FROM   /twinChangeNotifications   INTO   $upstream  ", SourceTwinChanges, "", "", false, Sink{Upstream: true}},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			r, err := ParseRoute(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if r.Source != tc.source || r.Module != tc.module || r.Output != tc.output || r.HasWhere != tc.where || r.Sink != tc.sink {
				t.Errorf("parsed %+v", r)
			}
		})
	}
}

func TestParseRouteErrors(t *testing.T) {
	tests := map[string]string{
		"":                               "must start with FROM",
		"SELECT * INTO $upstream":        "must start with FROM",
		"FROM /messages/*":               "has no INTO",
		"FROM /devices/* INTO $upstream": `source "/devices/*" is not`,
		"FROM /messages/modules//* INTO $upstream":                     "does not name a module",
		"FROM /messages/modules/m/inputs/* INTO $upstream":             "after the module comes",
		"FROM /messages/* WHERE INTO $upstream":                        "WHERE has no condition",
		"FROM /messages/* WHERE a = INTO $upstream":                    "WHERE:",
		"FROM /messages/* INTO $downstream":                            `sink "$downstream" is not $upstream or BrokeredEndpoint`,
		`FROM /messages/* INTO BrokeredEndpoint("/modules/m")`:         "the endpoint must be",
		`FROM /messages/* INTO BrokeredEndpoint("modules/m/inputs/i")`: "the endpoint must be",
	}
	for text, want := range tests {
		t.Run(text, func(t *testing.T) {
			_, err := ParseRoute(text)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("ParseRoute = %v, want an error containing %q", err, want)
			}
		})
	}
}

func TestParseDesired(t *testing.T) {
	doc := `{
	  "schemaVersion": "1.1",
	  "routes": {
	    "sensorToFilter": "FROM /messages/modules/sensor/outputs/temperatureOutput INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")",
	    "filterToCloud": {"route": "FROM /messages/modules/filter/outputs/* INTO $upstream", "priority": 0, "timeToLiveSecs": 86400}
	  },
	  "storeAndForwardConfiguration": {"timeToLiveSecs": 7200},
	  "$version": 7,
	  "$metadata": {"$lastUpdated": "2026-01-01T00:00:00Z"}
	}`
	d, err := ParseDesired([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 7 || d.SchemaVersion != "1.1" || d.TimeToLiveSecs != 7200 || len(d.Routes) != 2 {
		t.Fatalf("parsed %+v", d)
	}
	if r := d.Routes[0]; r.Name != "filterToCloud" || r.Priority != 0 || r.TimeToLiveSecs != 86400 || !r.Sink.Upstream {
		t.Errorf("first route %+v", r)
	}
	if r := d.Routes[1]; r.Name != "sensorToFilter" || r.Priority != defaultPriority || r.Sink.Module != "filter" {
		t.Errorf("second route %+v", r)
	}
}

func TestParseDesiredErrors(t *testing.T) {
	tests := []struct {
		doc, want string
		code      int
	}{
		{`[]`, "not a JSON object", CodeBadConfig},
		{`{"$version": 3}`, "no deployment", CodeEmptyConfig},
		{`{"$version": 3, "routes": {}}`, "schemaVersion: required", CodeBadConfig},
		{`{"schemaVersion": "2.0"}`, `"2.0" is not supported`, CodeBadSchema},
		{`{"schemaVersion": "1.0", "routes": {"r": {"route": "FROM /* INTO $upstream"}}}`, "routes.r: must be a route string (schemaVersion 1.0)", CodeBadConfig},
		{`{"schemaVersion": "1.1", "routes": {"r": {"priority": 1}}}`, "routes.r.route: required", CodeBadConfig},
		{`{"schemaVersion": "1.1", "routes": {"r": {"route": "FROM /* INTO $upstream", "priority": 10}}}`, "routes.r.priority: 10 is not from 0 to 9", CodeBadConfig},
		{`{"schemaVersion": "1.1", "routes": {"a.b": "FROM /* INTO $upstream"}}`, "routes.a.b: a route name must not contain", CodeBadConfig},
		{`{"schemaVersion": "1.1", "routes": {"r": "FROM /x INTO $upstream"}}`, `routes.r: "FROM /x INTO $upstream": source "/x"`, CodeBadConfig},
		{`{"schemaVersion": "1.1", "routes": {"r": 5}}`, "routes.r: must be a route string or an object", CodeBadConfig},
	}
	for _, tc := range tests {
		t.Run(tc.doc, func(t *testing.T) {
			_, err := ParseDesired([]byte(tc.doc))
			var de *DesiredError
			if !errors.As(err, &de) || de.Code != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseDesired = %v, want code %d containing %q", err, tc.code, tc.want)
			}
			if !errors.Is(err, ErrInvalidDesired) {
				t.Errorf("%v does not match ErrInvalidDesired", err)
			}
		})
	}
}

func TestSinks(t *testing.T) {
	d, err := ParseDesired([]byte(`{"schemaVersion": "1.1", "routes": {
	  "all": "FROM /messages/modules/sensor/outputs/* INTO $upstream",
	  "alerts": "FROM /messages/modules/sensor/outputs/alerts WHERE $body.temperature > 30 AND level = 'high' INTO BrokeredEndpoint(\"/modules/filter/inputs/hot\")",
	  "again": "FROM /messages/* INTO $upstream",
	  "leafOnly": "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO BrokeredEndpoint(\"/modules/audit/inputs/leaf\")",
	  "filterOut": "FROM /messages/modules/filter/* WHERE $connectionModuleId = 'filter' INTO BrokeredEndpoint(\"/modules/audit/inputs/filtered\")"
	}}`))
	if err != nil {
		t.Fatal(err)
	}
	msg := func(module, output, body string, app map[string]string) *Message {
		sys := map[string]string{telemetry.PropContentType: "application/json", telemetry.PropContentEncoding: "utf-8"}
		if output != "" {
			sys[telemetry.PropOutputName] = output
		}
		return &Message{DeviceID: "edge-1", ModuleID: module, System: sys, App: app, Body: []byte(body)}
	}
	hot := Sink{Module: "filter", Input: "hot"}
	tests := []struct {
		name string
		m    *Message
		want []Sink
	}{
		{"hot alert", msg("sensor", "alerts", `{"temperature": 31.5}`, map[string]string{"level": "high"}), []Sink{{Upstream: true}, hot}},
		{"cool alert", msg("sensor", "alerts", `{"temperature": 20}`, map[string]string{"level": "high"}), []Sink{{Upstream: true}}},
		{"plain telemetry of the sensor", msg("sensor", "", `{}`, nil), []Sink{{Upstream: true}}},
		{"filter output", msg("filter", "out", `{}`, nil), []Sink{{Upstream: true}, {Module: "audit", Input: "filtered"}}},
		{"body not JSON", msg("sensor", "alerts", `not json`, map[string]string{"level": "high"}), []Sink{{Upstream: true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Sinks(d.Routes, tc.m)); diff != "" {
				t.Errorf("sinks (-want +got):\n%s", diff)
			}
		})
	}
	// Without routes nothing is sent anywhere.
	if got := Sinks(nil, msg("sensor", "alerts", `{}`, nil)); len(got) != 0 {
		t.Errorf("Sinks without routes = %v", got)
	}
}

// FuzzParseDesired feeds arbitrary $edgeHub desired properties (twin
// content, untrusted) to the parser and the router.
func FuzzParseDesired(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":"1.1","routes":{"r":"FROM /messages/* INTO $upstream"}}`))
	f.Add([]byte(`{"schemaVersion":"1.0","routes":{"r":"FROM /messages/modules/m/outputs/o WHERE a = 'x' INTO BrokeredEndpoint(\"/modules/n/inputs/i\")"}}`))
	f.Add([]byte(`{"schemaVersion":"1.3","routes":{"r":{"route":"FROM /* WHERE $body.t > 1 INTO $upstream","priority":3}},"storeAndForwardConfiguration":{"timeToLiveSecs":1}}`))
	f.Add([]byte(`{"$version":1}`))
	f.Add([]byte(`{"schemaVersion":"1.1","routes":{"r":"FROM /messages/* WHERE 'INTO INTO $upstream"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDesired(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidDesired) {
				t.Fatalf("error %v does not match ErrInvalidDesired", err)
			}
			return
		}
		m := &Message{DeviceID: "d", ModuleID: "m", System: map[string]string{telemetry.PropOutputName: "o", telemetry.PropContentType: "application/json", telemetry.PropContentEncoding: "utf-8"},
			App: map[string]string{"a": "x"}, Body: b}
		for _, s := range Sinks(d.Routes, m) {
			if !s.Upstream && (s.Module == "" || s.Input == "") {
				t.Fatalf("sink without a target: %+v", s)
			}
		}
	})
}

// FuzzParseRoute feeds arbitrary route strings to the route parser.
func FuzzParseRoute(f *testing.F) {
	f.Add("FROM /messages/* INTO $upstream")
	f.Add(`FROM /messages/modules/a/outputs/b WHERE c = "d" INTO BrokeredEndpoint("/modules/e/inputs/f")`)
	f.Add("FROM  WHERE INTO")
	f.Add("FROM /* WHERE 'unterminated INTO $upstream")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRoute(s)
		if err != nil {
			return
		}
		if r.Source == 0 || (!r.Sink.Upstream && r.Sink.Module == "") {
			t.Fatalf("accepted an incomplete route %q: %+v", s, r)
		}
	})
}
