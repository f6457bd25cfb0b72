package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/rollout"
	"github.com/muster-iot/muster/internal/store/memstore"
)

// configHarness is the hub harness with the configuration routes over a
// real registry, configuration store and running deployment engine.
type configHarness struct {
	*hubHarness
	eng *rollout.Engine
}

func newConfigHarness(t *testing.T) *configHarness {
	t.Helper()
	h := newHarness(t, func(o *Options) { o.MaxBodyBytes = 1 << 20 })
	for name, rights := range hubPolicyRights {
		h.policies[name] = Policy{Name: name, Realm: RealmHub, PrimaryKey: testKey(name + "-primary"), SecondaryKey: testKey(name + "-secondary"), Rights: rights}
	}
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	obs := rollout.NewObservedDocs(st)
	reg := registry.New(hubHost, obs, func() time.Time { return h.now })
	cfgs, err := rollout.NewConfigurations(rollout.ConfigurationsOptions{Hub: hubHost, Docs: st, Querier: st, Now: func() time.Time { return h.now }})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rollout.NewEngine(rollout.Options{Registry: reg, Desired: reg, Configurations: cfgs, Docs: st, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	obs.Observe(eng)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = eng.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := h.api.MountHub(reg); err != nil {
		t.Fatal(err)
	}
	if err := h.api.MountHubConfigurations(cfgs, eng); err != nil {
		t.Fatal(err)
	}
	return &configHarness{hubHarness: &hubHarness{harness: h, reg: reg}, eng: eng}
}

func (h *configHarness) flush() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.eng.Flush(ctx); err != nil {
		h.t.Fatal(err)
	}
}

const (
	testBase = `{"modulesContent":{
		"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"sensor":{"type":"docker","settings":{"image":"sensor:1"}}}}},
		"$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{"up":"FROM /messages/* INTO $upstream"}}}}}`
	testAgent = `{"modules":{"sensor":{"settings":{"image":"sensor:1"},"type":"docker"}},"schemaVersion":"1.1"}`
)

func configBody(id string, priority int, cond, content string) string {
	return fmt.Sprintf(`{"id":%q,"priority":%d,"targetCondition":%q,"labels":{"team":"ops"},"content":%s,
		"metrics":{"queries":{"prod":"SELECT deviceId FROM devices WHERE tags.env = 'prod'"}}}`, id, priority, cond, content)
}

func TestHubConfigurationRoutes(t *testing.T) {
	h := newConfigHarness(t)
	if r := h.hub("PUT", "/devices/edge1"+hubVersion, `{"deviceId":"edge1","capabilities":{"iotEdge":true}}`, nil); r.status != http.StatusOK {
		t.Fatalf("create device: %d %s", r.status, r.body)
	}
	if r := h.hub("PATCH", "/twins/edge1"+hubVersion, `{"tags":{"env":"prod"}}`, nil); r.status != http.StatusOK {
		t.Fatalf("tag device: %d %s", r.status, r.body)
	}

	r := h.hub("PUT", "/configurations/deploy1"+hubVersion, configBody("deploy1", 10, "tags.env='prod'", testBase), nil)
	if r.status != http.StatusOK {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var created deploy.Configuration
	r.decode(t, &created)
	if created.ETag == "" || r.header.Get("ETag") != strconv.Quote(created.ETag) || created.SchemaVersion != "1.0" || created.Labels["team"] != "ops" {
		t.Fatalf("created: ETag header %q, %+v", r.header.Get("ETag"), created)
	}
	if q := created.SystemMetrics.Queries["appliedCount"]; q != "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[deploy1]].status = 'Applied'" {
		t.Errorf("appliedCount query %q", q)
	}
	h.flush()

	r = h.hub("GET", "/configurations/deploy1"+hubVersion, "", nil)
	var got deploy.Configuration
	r.decode(t, &got)
	if r.status != http.StatusOK || got.SystemMetrics.Results["targetedCount"] != 1 || got.SystemMetrics.Results["appliedCount"] != 1 || got.Metrics.Results["prod"] != 1 {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	agent, err := h.reg.GetModuleTwin(context.Background(), "edge1", "$edgeAgent")
	if err != nil {
		t.Fatal(err)
	}
	var desired map[string]any
	if err := json.Unmarshal(agent.Properties.Desired, &desired); err != nil {
		t.Fatal(err)
	}
	delete(desired, "$version")
	delete(desired, "$metadata")
	if b, _ := json.Marshal(desired); string(b) != testAgent || agent.Configurations["deploy1"].Status != "Applied" {
		t.Fatalf("$edgeAgent desired %s, configurations %v", b, agent.Configurations)
	}

	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code, contains           string
	}{
		{name: "create again", method: "PUT", path: "/configurations/deploy1", body: configBody("deploy1", 10, "*", testBase),
			status: 409, code: "ConfigurationAlreadyExists"},
		{name: "stale etag", method: "PUT", path: "/configurations/deploy1", body: configBody("deploy1", 20, "*", testBase),
			hdr: map[string]string{"If-Match": `"bogus"`}, status: 412, code: "PreconditionFailed"},
		{name: "content change", method: "PUT", path: "/configurations/deploy1", body: configBody("deploy1", 20, "*", `{"deviceContent":{"properties.desired.a":1}}`),
			hdr: map[string]string{"If-Match": "*"}, status: 400, code: "ArgumentInvalid", contains: "content: cannot be changed"},
		{name: "id mismatch", method: "PUT", path: "/configurations/other", body: configBody("deploy1", 1, "*", testBase),
			status: 400, code: "ArgumentInvalid", contains: "does not match"},
		{name: "invalid condition", method: "PUT", path: "/configurations/bad", body: configBody("bad", 1, "tags.env = ", testBase),
			status: 400, code: "ArgumentInvalid", contains: "targetCondition"},
		{name: "invalid id", method: "PUT", path: "/configurations/Bad", body: configBody("", 1, "*", testBase),
			status: 400, code: "ArgumentInvalid", contains: "id:"},
		{name: "invalid JSON", method: "PUT", path: "/configurations/bad", body: `{"id":`, status: 400, code: "ArgumentInvalid"},
		{name: "missing", method: "GET", path: "/configurations/nope", status: 404, code: "ConfigurationNotFound"},
		{name: "delete missing", method: "DELETE", path: "/configurations/nope", status: 404, code: "ConfigurationNotFound"},
		{name: "bad top", method: "GET", path: "/configurations", hdr: nil, status: 400, code: "ArgumentInvalid", contains: "top"},
		{name: "apply to a device an automatic deployment targets", method: "POST", path: "/devices/edge1/applyConfigurationContent", body: testBase,
			status: 400, code: "ArgumentInvalid", contains: "deployment \"deploy1\""},
		{name: "apply to a missing device", method: "POST", path: "/devices/ghost/applyConfigurationContent", body: testBase,
			status: 404, code: "DeviceNotFound"},
		{name: "apply nothing", method: "POST", path: "/devices/edge1/applyConfigurationContent", body: `{}`,
			status: 400, code: "ArgumentInvalid", contains: "content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path + hubVersion
			if tc.name == "bad top" {
				path += "&top=0"
			}
			r := h.hub(tc.method, path, tc.body, tc.hdr)
			if r.status != tc.status || r.code != tc.code || !strings.Contains(r.message, tc.contains) {
				t.Fatalf("%d %s %q, want %d %s containing %q", r.status, r.code, r.message, tc.status, tc.code, tc.contains)
			}
		})
	}

	r = h.hub("PUT", "/configurations/deploy1"+hubVersion, configBody("deploy1", 20, "tags.env='prod'", testBase), map[string]string{"If-Match": strconv.Quote(created.ETag)})
	var updated deploy.Configuration
	r.decode(t, &updated)
	if r.status != http.StatusOK || updated.Priority != 20 || updated.ETag == created.ETag || !updated.CreatedTime.Equal(created.CreatedTime) {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	if r := h.hub("PUT", "/configurations/layer1"+hubVersion, configBody("layer1", 30, "*", `{"modulesContent":{"$edgeAgent":{"properties.desired.modules.sensor.settings.image":"sensor:2"}}}`), nil); r.status != http.StatusOK {
		t.Fatalf("create layer: %d %s", r.status, r.body)
	}
	r = h.hub("GET", "/configurations"+hubVersion+"&top=1", "", nil)
	var list []deploy.Configuration
	r.decode(t, &list)
	if r.status != http.StatusOK || len(list) != 1 || list[0].ID != "deploy1" {
		t.Fatalf("list top 1: %d %s", r.status, r.body)
	}
	r = h.hub("GET", "/configurations"+hubVersion, "", nil)
	r.decode(t, &list)
	if len(list) != 2 || list[1].ID != "layer1" {
		t.Fatalf("list: %s", r.body)
	}

	r = h.hub("POST", "/configurations/testQueries"+hubVersion, `{"targetCondition":"tags.x = ","customMetricQueries":{"ok":"SELECT deviceId FROM devices","bad":"SELECT"}}`, nil)
	var qt rollout.QueryTest
	r.decode(t, &qt)
	if r.status != http.StatusOK || qt.TargetConditionError == "" || len(qt.CustomMetricQueryErrors) != 1 || qt.CustomMetricQueryErrors["bad"] == "" {
		t.Fatalf("testQueries: %d %s", r.status, r.body)
	}

	if r := h.hub("DELETE", "/configurations/deploy1"+hubVersion, "", nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := h.hub("DELETE", "/configurations/layer1"+hubVersion, "", map[string]string{"If-Match": `"*"`}); r.status != http.StatusNoContent {
		t.Fatalf("delete with If-Match *: %d %s", r.status, r.body)
	}
	h.flush()
	// Deleting leaves the desired properties; per-device content now applies.
	if r := h.hub("POST", "/devices/edge1/applyConfigurationContent"+hubVersion, `{"content":{"modulesContent":{"$edgeAgent":{"properties.desired.modules.sensor.settings.image":"sensor:3"}}}}`, nil); r.status != http.StatusNoContent {
		t.Fatalf("apply content: %d %s", r.status, r.body)
	}
	agent, err = h.reg.GetModuleTwin(context.Background(), "edge1", "$edgeAgent")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(agent.Properties.Desired), `"image":"sensor:3"`) || len(agent.Configurations) != 0 {
		t.Fatalf("after apply: desired %s, configurations %v", agent.Properties.Desired, agent.Configurations)
	}
}

func TestHubConfigurationRights(t *testing.T) {
	h := newConfigHarness(t)
	for _, tc := range []struct {
		policy, method, path, body string
		ok                         bool
	}{
		{"registryRead", "GET", "/configurations", "", true},
		{"registryRead", "POST", "/configurations/testQueries", `{"targetCondition":"*"}`, true},
		{"registryRead", "PUT", "/configurations/c1", configBody("c1", 1, "*", testBase), false},
		{"registryRead", "POST", "/devices/d/applyConfigurationContent", testBase, false},
		{"service", "GET", "/configurations/c1", "", false},
		{"registryReadWrite", "PUT", "/configurations/c1", configBody("c1", 1, "*", testBase), true},
		{"registryReadWrite", "DELETE", "/configurations/c1", "", true},
	} {
		r := h.hub(tc.method, tc.path+hubVersion, tc.body, map[string]string{"Authorization": h.hubToken(tc.policy)})
		if ok := r.status < 300; ok != tc.ok || (!ok && r.status != http.StatusUnauthorized) {
			t.Errorf("%s %s %s: %d %s", tc.policy, tc.method, tc.path, r.status, r.body)
		}
	}
}

// FuzzConfigurationBodies feeds PUT /configurations and
// applyConfigurationContent bodies to their decoders and the store: every
// refusal is a 400-class error, never a panic or a 500.
func FuzzConfigurationBodies(f *testing.F) {
	f.Add([]byte(configBody("c1", 1, "tags.a = 'b'", testBase)))
	f.Add([]byte(configBody("c1", 1, "from devices.modules where moduleId = 'm'", `{"moduleContent":{"properties.desired.a":1}}`)))
	f.Add([]byte(`{"content":{"deviceContent":{"properties.desired.x.y":[1,2]}}}`))
	f.Add([]byte(`{"id":"c1","content":{"modulesContent":{"m":{}}},"metrics":{"queries":{"":"SELECT"}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		st := memstore.New(0)
		defer st.Close()
		cfgs, err := rollout.NewConfigurations(rollout.ConfigurationsOptions{Hub: "hub.example", Docs: st, Querier: st})
		if err != nil {
			t.Fatal(err)
		}
		c, err := decodeConfiguration(body, "c1")
		if err == nil {
			_, err = cfgs.Put(context.Background(), c, "")
			var ve *deploy.ValidationError
			if err != nil && !errors.As(err, &ve) {
				t.Fatalf("Put: %v, want success or a validation error", err)
			}
		} else if he := (*httpError)(nil); !errors.As(err, &he) || he.status != http.StatusBadRequest {
			t.Fatalf("decode: %v is not a 400", err)
		}
		if _, err := decodeContent(body); err != nil {
			if he := (*httpError)(nil); !errors.As(err, &he) || he.status != http.StatusBadRequest {
				t.Fatalf("decode content: %v is not a 400", err)
			}
		}
	})
}
