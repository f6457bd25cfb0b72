package hubservice

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/api"
	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/rollout"
	"github.com/muster-iot/muster/internal/store/memstore"
)

// configHub is a real hub service API with the configuration routes over
// a registry, configuration store and running deployment engine.
type configHub struct {
	testHub
	eng *rollout.Engine
}

func newConfigHub(t *testing.T) *configHub {
	t.Helper()
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	inst, err := instance.Open(context.Background(), st, t.TempDir(), []string{hubName}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	obs := rollout.NewObservedDocs(st)
	reg := registry.New(hubName, obs, nil)
	cfgs, err := rollout.NewConfigurations(rollout.ConfigurationsOptions{Hub: hubName, Docs: st, Querier: st})
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
	enr := enroll.NewService(st, enroll.ServiceOptions{LinkedHubs: func() []string { return []string{hubName} }})
	prov, err := provision.New(provision.Options{IDScope: inst.IDScope, Docs: obs, Attempts: st, Enrollments: enr,
		Hubs: []provision.LinkedHub{{Hub: reg, Weight: 1, ApplyAllocationPolicy: true}}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Options{IDScope: inst.IDScope, Registrar: prov, Registrations: registrations{enr, prov}, Enrollments: enr,
		Policies: inst, ServiceHostNames: []string{hubName}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.MountHub(reg); err != nil {
		t.Fatal(err)
	}
	if err := a.MountHubConfigurations(cfgs, eng); err != nil {
		t.Fatal(err)
	}
	ch := &configHub{testHub: testHub{t: t, inst: inst, reg: reg, roots: x509.NewCertPool()}, eng: eng}
	ch.roots.AddCert(inst.CA)
	ch.srv = httptest.NewUnstartedServer(a)
	ch.srv.TLS = &tls.Config{Certificates: []tls.Certificate{inst.TLSCertificate}}
	ch.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	ch.srv.StartTLS()
	t.Cleanup(ch.srv.Close)
	return ch
}

func TestConfigurations(t *testing.T) {
	ch := newConfigHub(t)
	c := ch.client("iothubowner")
	ctx := ctxT(t)
	if _, err := c.CreateDevice(ctx, &registry.Device{DeviceID: "edge-1", Capabilities: registry.Capabilities{IoTEdge: true}}); err != nil {
		t.Fatal(err)
	}
	var cfg deploy.Configuration
	if err := json.Unmarshal([]byte(`{"id":"dep-1","priority":5,"targetCondition":"*","labels":{"a":"b"},"content":{"modulesContent":{
		"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{}}},
		"$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{}}}}}}`), &cfg); err != nil {
		t.Fatal(err)
	}
	created, err := c.CreateConfiguration(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if created.ETag == "" || created.SchemaVersion != "1.0" || created.CreatedTime.IsZero() {
		t.Fatalf("created %+v", created)
	}
	if _, err := c.CreateConfiguration(ctx, &cfg); !errors.Is(err, ErrConflict) {
		t.Errorf("create again: %v, want ErrConflict", err)
	}
	flush, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := ch.eng.Flush(flush); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetConfiguration(ctx, "dep-1")
	if err != nil || got.SystemMetrics.Results[deploy.MetricTargeted] != 1 || got.SystemMetrics.Results[deploy.MetricApplied] != 1 {
		t.Fatalf("get: %+v, %v", got, err)
	}
	got.Priority = 6
	if _, err := c.UpdateConfiguration(ctx, got, "stale"); !errors.Is(err, ErrPrecondition) {
		t.Errorf("update with a stale etag: %v, want ErrPrecondition", err)
	}
	updated, err := c.UpdateConfiguration(ctx, got, got.ETag)
	if err != nil || updated.Priority != 6 {
		t.Fatalf("update: %+v, %v", updated, err)
	}
	list, err := c.ListConfigurations(ctx, 0)
	if err != nil || len(list) != 1 || list[0].ID != "dep-1" {
		t.Fatalf("list: %v, %v", list, err)
	}
	qt, err := c.TestQueries(ctx, "tags.a = ", map[string]string{"m": "SELECT deviceId FROM devices"})
	if err != nil || qt.TargetConditionError == "" || len(qt.CustomMetricQueryErrors) != 0 {
		t.Fatalf("test queries: %+v, %v", qt, err)
	}
	if err := c.DeleteConfiguration(ctx, "dep-1", ""); err != nil {
		t.Fatal(err)
	}
	var he *Error
	if _, err := c.GetConfiguration(ctx, "dep-1"); !errors.As(err, &he) || he.Status != http.StatusNotFound || he.Code != "ConfigurationNotFound" {
		t.Fatalf("get deleted: %v", err)
	}
	content := deploy.Content{DeviceContent: deploy.TwinContent{"properties.desired.x": json.RawMessage(`1`)}}
	if err := c.ApplyConfigurationContent(ctx, "edge-1", content); err != nil {
		t.Fatal(err)
	}
	tw, err := c.GetTwin(ctx, "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	var desired map[string]json.RawMessage
	if err := json.Unmarshal(tw.Properties.Desired, &desired); err != nil || string(desired["x"]) != "1" || string(desired["$version"]) != "2" || desired["$metadata"] == nil {
		t.Fatalf("twin after apply: %s, %v", tw.Properties.Desired, err)
	}
	if _, err := c.ListConfigurations(ctx, -1); err == nil {
		t.Error("negative top was sent")
	}
}
