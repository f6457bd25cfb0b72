package rollout_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/rollout"
)

func parse(t *testing.T, c cfg) *deploy.Configuration {
	t.Helper()
	parsed, err := deploy.Parse([]byte(configJSON(c)))
	if err != nil {
		t.Fatal(err)
	}
	return &parsed
}

// TestConfigurationLifecycle creates, reads, updates with etags, lists
// and deletes configurations.
func TestConfigurationLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		e := newEnv(t, open(t))
		ctx := t.Context()
		c := parse(t, cfg{"deploy-a", 10, 0, "tags.environment='prod'", base1})
		c.Labels = map[string]string{"team": "ops"}
		c.Metrics.Queries = map[string]string{"prod": "SELECT deviceId FROM devices WHERE tags.environment = 'prod'"}
		created, err := e.cfgs.Put(ctx, c, "")
		if err != nil {
			t.Fatal(err)
		}
		if created.ETag == "" || !created.CreatedTime.Equal(day0) || !created.LastUpdatedTime.Equal(day0) {
			t.Fatalf("created: etag %q, times %v %v", created.ETag, created.CreatedTime, created.LastUpdatedTime)
		}
		if got := created.SystemMetrics.Queries[deploy.MetricTargeted]; got != "SELECT deviceId FROM devices WHERE capabilities.iotEdge = true AND (tags.environment='prod')" {
			t.Errorf("targetedCount query %q", got)
		}
		if _, err := e.cfgs.Put(ctx, c, ""); !errors.Is(err, rollout.ErrExists) {
			t.Fatalf("second create: %v, want ErrExists", err)
		}

		upd := *created
		upd.Priority, upd.TargetCondition = 20, "tags.environment='test'"
		e.clock.set(day0.AddDate(0, 0, 3))
		if _, err := e.cfgs.Put(ctx, &upd, "bogus"); !errors.Is(err, rollout.ErrPrecondition) {
			t.Fatalf("update with a stale etag: %v, want ErrPrecondition", err)
		}
		updated, err := e.cfgs.Put(ctx, &upd, created.ETag)
		if err != nil {
			t.Fatal(err)
		}
		if updated.ETag == created.ETag || !updated.CreatedTime.Equal(day0) || !updated.LastUpdatedTime.Equal(day0.AddDate(0, 0, 3)) || updated.Priority != 20 {
			t.Fatalf("updated: %+v", updated)
		}

		changed := *updated
		changed.Content = parse(t, cfg{"deploy-a", 10, 0, "*", base2}).Content
		var ve *deploy.ValidationError
		if _, err := e.cfgs.Put(ctx, &changed, "*"); !errors.As(err, &ve) || !strings.Contains(err.Error(), "content: cannot be changed") {
			t.Fatalf("content change: %v, want a validation error naming content", err)
		}

		got, err := e.cfgs.Get(ctx, "deploy-a")
		if err != nil {
			t.Fatal(err)
		}
		if got.ETag != updated.ETag || got.Labels["team"] != "ops" || got.TargetCondition != "tags.environment='test'" {
			t.Fatalf("get: %+v", got)
		}
		if _, err := e.cfgs.Get(ctx, "missing"); !errors.Is(err, rollout.ErrNotFound) {
			t.Fatalf("get missing: %v", err)
		}

		e.put(t, cfg{"deploy-b", 5, 1, "*", layerImage2})
		e.put(t, cfg{"adm-c", 5, 1, "*", admFan})
		all, err := e.cfgs.List(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range all {
			ids = append(ids, c.ID)
		}
		if strings.Join(ids, ",") != "adm-c,deploy-a,deploy-b" {
			t.Fatalf("list: %v", ids)
		}
		if top, err := e.cfgs.List(ctx, 2); err != nil || len(top) != 2 {
			t.Fatalf("list top 2: %d, %v", len(top), err)
		}

		if err := e.cfgs.Delete(ctx, "deploy-a", "bogus"); !errors.Is(err, rollout.ErrPrecondition) {
			t.Fatalf("delete with a stale etag: %v", err)
		}
		if err := e.cfgs.Delete(ctx, "deploy-a", updated.ETag); err != nil {
			t.Fatal(err)
		}
		if err := e.cfgs.Delete(ctx, "deploy-a", updated.ETag); !errors.Is(err, rollout.ErrNotFound) {
			t.Fatalf("delete again: %v, want ErrNotFound", err)
		}
	})
}

// TestConfigurationRefusals covers input refused with a reason naming the
// field.
func TestConfigurationRefusals(t *testing.T) {
	e := newEnv(t, backends[0].open(t))
	ctx := t.Context()
	tests := []struct {
		name, path string
		c          *deploy.Configuration
	}{
		{"target condition", "targetCondition", parse(t, cfg{"x", 1, 0, "tags.a = ", base1})},
		{"module condition on an edge deployment", "targetCondition", parse(t, cfg{"x", 1, 0, "from devices.modules where tags.a = 1", base1})},
		{"metric query", `metrics.queries["m"]`, func() *deploy.Configuration {
			c := parse(t, cfg{"x", 1, 0, "*", base1})
			c.Metrics.Queries = map[string]string{"m": "SELECT FROM devices"}
			return c
		}()},
		{"metric collection", `metrics.queries["m"]`, func() *deploy.Configuration {
			c := parse(t, cfg{"x", 1, 0, "*", base1})
			c.Metrics.Queries = map[string]string{"m": "SELECT * FROM devices.jobs"}
			return c
		}()},
		{"negative priority", "priority", func() *deploy.Configuration {
			c := parse(t, cfg{"x", 1, 0, "*", base1})
			c.Priority = -1
			return c
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.cfgs.Put(ctx, tc.c, "")
			var ve *deploy.ValidationError
			if !errors.As(err, &ve) || ve.Problems[0].Path != tc.path {
				t.Fatalf("Put: %v, want a validation error at %s", err, tc.path)
			}
		})
	}
	for i := range rollout.MaxConfigurations {
		e.put(t, cfg{"c" + strings.Repeat("x", i%3) + string(rune('a'+i/26)) + string(rune('a'+i%26)), 1, 0, "*", admFan})
	}
	if _, err := e.cfgs.Put(ctx, parse(t, cfg{"one-too-many", 1, 0, "*", admFan}), ""); !errors.Is(err, rollout.ErrTooMany) {
		t.Fatalf("configuration %d: %v, want ErrTooMany", rollout.MaxConfigurations+1, err)
	}
}

// TestMetrics counts targeted, applied and reported edge devices and a
// custom metric through the store's twin querier, after twin changes.
func TestMetrics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		e := newEnv(t, open(t))
		ctx := t.Context()
		c := parse(t, cfg{"prod", 10, 1, "tags.environment='prod'", base1})
		c.Metrics.Queries = map[string]string{"all": "SELECT deviceId FROM devices", "top1": "SELECT TOP 1 * FROM devices", "bySite": "SELECT tags.site, COUNT() FROM devices GROUP BY tags.site"}
		if _, err := e.cfgs.Put(ctx, c, ""); err != nil {
			t.Fatal(err)
		}
		e.device(t, "edge-1", true, `{"environment":"prod","site":"a"}`)
		e.device(t, "edge-2", true, `{"environment":"prod","site":"b"}`)
		e.device(t, "edge-3", true, `{"environment":"test","site":"b"}`)
		e.device(t, "leaf-1", false, `{"environment":"prod"}`)
		e.flush(t)
		check := func(what string, want map[string]int64, wantCustom map[string]int64) {
			t.Helper()
			got, err := e.cfgs.Get(ctx, "prod")
			if err != nil {
				t.Fatal(err)
			}
			if b, w := jsonText(t, got.SystemMetrics.Results), jsonText(t, want); b != w {
				t.Errorf("%s: system metrics %s, want %s", what, b, w)
			}
			if b, w := jsonText(t, got.Metrics.Results), jsonText(t, wantCustom); b != w {
				t.Errorf("%s: custom metrics %s, want %s", what, b, w)
			}
		}
		custom := map[string]int64{"all": 4, "top1": 1, "bySite": 3}
		check("applied", map[string]int64{"targetedCount": 2, "appliedCount": 2, "reportedSuccessfulCount": 0, "reportedFailedCount": 0}, custom)

		// The edge agent reports the desired version it applied.
		agent, err := e.hub.GetModuleTwin(ctx, "edge-1", "$edgeAgent")
		if err != nil {
			t.Fatal(err)
		}
		var desired struct {
			Version int64 `json:"$version"`
		}
		if err := json.Unmarshal(agent.Properties.Desired, &desired); err != nil {
			t.Fatal(err)
		}
		report := func(dev string, code int) {
			t.Helper()
			patch, _ := json.Marshal(map[string]any{"lastDesiredVersion": desired.Version, "lastDesiredStatus": map[string]any{"code": code}})
			if _, err := e.hub.PatchModuleReported(ctx, dev, "$edgeAgent", patch); err != nil {
				t.Fatal(err)
			}
		}
		report("edge-1", 200)
		report("edge-2", 400)
		e.flush(t)
		check("reported", map[string]int64{"targetedCount": 2, "appliedCount": 2, "reportedSuccessfulCount": 1, "reportedFailedCount": 1}, custom)

		e.tag(t, "edge-2", `{"environment":"test"}`)
		e.flush(t)
		check("one left", map[string]int64{"targetedCount": 1, "appliedCount": 1, "reportedSuccessfulCount": 1, "reportedFailedCount": 0}, custom)
	})
}

// TestDeviceConfigurationMetrics counts a device configuration's
// targeted and applied device twins.
func TestDeviceConfigurationMetrics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t *testing.T) backingStore) {
		e := newEnv(t, open(t))
		e.device(t, "leaf-1", false, `{"site":"a"}`)
		e.device(t, "leaf-2", false, `{"site":"a"}`)
		e.device(t, "leaf-3", false, `{"site":"b"}`)
		e.put(t, cfg{"low", 1, 1, "tags.site='a'", admChiller})
		e.put(t, cfg{"high", 2, 1, "deviceId = 'leaf-2'", admFan})
		e.flush(t)
		for id, want := range map[string]string{"low": `{"appliedCount":1,"targetedCount":2}`, "high": `{"appliedCount":1,"targetedCount":1}`} {
			got, err := e.cfgs.Get(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if b := jsonText(t, got.SystemMetrics.Results); b != want {
				t.Errorf("%s: %s, want %s", id, b, want)
			}
		}
	})
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTestQueries reports parse errors of a target condition and custom
// metric queries.
func TestTestQueries(t *testing.T) {
	got := rollout.TestQueries("tags.a = ", map[string]string{"ok": "SELECT deviceId FROM devices", "bad": "SELECT * FROM"})
	if got.TargetConditionError == "" || len(got.CustomMetricQueryErrors) != 1 || got.CustomMetricQueryErrors["bad"] == "" {
		t.Fatalf("TestQueries: %+v", got)
	}
	got = rollout.TestQueries("from devices.modules where moduleId = 'm'", nil)
	if got.TargetConditionError != "" || len(got.CustomMetricQueryErrors) != 0 {
		t.Fatalf("TestQueries of valid input: %+v", got)
	}
}
