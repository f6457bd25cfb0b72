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
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/api"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/hubclient"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
	"github.com/muster-iot/muster/internal/telemetry"
)

const hubName = "hub.example.test"

// testHub is a real Muster hub service API (api + registry + telemetry
// endpoint over an in-memory store) behind a TLS test server whose
// certificate names hubName.
type testHub struct {
	t      *testing.T
	inst   *instance.Instance
	reg    *registry.Hub
	events *telemetry.Endpoint
	srv    *httptest.Server
	roots  *x509.CertPool
}

// registrations joins the enrollment service and the attempt log, as
// cmd/muster does.
type registrations struct {
	*enroll.Service
	prov *provision.Service
}

func (r registrations) Attempts(ctx context.Context, id string, limit int) ([]store.Attempt, error) {
	return r.prov.Attempts(ctx, id, limit)
}

func newTestHub(t *testing.T) *testHub {
	t.Helper()
	ctx := context.Background()
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	inst, err := instance.Open(ctx, st, t.TempDir(), []string{hubName}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(hubName, st, nil)
	enr := enroll.NewService(st, enroll.ServiceOptions{LinkedHubs: func() []string { return []string{hubName} }})
	prov, err := provision.New(provision.Options{IDScope: inst.IDScope, Docs: st, Attempts: st, Enrollments: enr,
		Hubs: []provision.LinkedHub{{Hub: reg, Weight: 1, ApplyAllocationPolicy: true}}})
	if err != nil {
		t.Fatal(err)
	}
	events, err := telemetry.NewEndpoint(st, telemetry.Options{})
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
	if err := a.MountTelemetry(hubName, events); err != nil {
		t.Fatal(err)
	}
	if err := a.MountHubModules(reg, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.MountHubModuleTwins(reg); err != nil {
		t.Fatal(err)
	}
	th := &testHub{t: t, inst: inst, reg: reg, events: events, roots: x509.NewCertPool()}
	th.roots.AddCert(inst.CA)
	th.srv = httptest.NewUnstartedServer(a)
	th.srv.TLS = &tls.Config{Certificates: []tls.Certificate{inst.TLSCertificate}}
	th.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	th.srv.StartTLS()
	t.Cleanup(th.srv.Close)
	return th
}

// client returns a client for a hub policy, dialing the test server.
func (th *testHub) client(policy string) *Client {
	th.t.Helper()
	c, err := New(Options{ConnectionString: th.inst.ConnectionString(policy), Server: th.srv.Listener.Addr().String(), RootCAs: th.roots})
	if err != nil {
		th.t.Fatal(err)
	}
	th.t.Cleanup(c.CloseIdleConnections)
	return c
}

// publish appends a telemetry message of a device and returns its seq.
func (th *testHub) publish(deviceID, bag, body string) int64 {
	th.t.Helper()
	m, err := telemetry.NewMessage(deviceID, "", bag, []byte(body), time.Now())
	if err != nil {
		th.t.Fatal(err)
	}
	seqs, err := th.events.Append(context.Background(), m)
	if err != nil {
		th.t.Fatal(err)
	}
	return seqs[0]
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestDevices(t *testing.T) {
	th := newTestHub(t)
	c := th.client("iothubowner")
	ctx := ctxT(t)

	created, err := c.CreateDevice(ctx, &registry.Device{DeviceID: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	k := created.Authentication.SymmetricKey
	if created.Authentication.Type != "sas" || k == nil || k.PrimaryKey == "" || k.SecondaryKey == "" || created.ETag == "" || created.Status != "enabled" {
		t.Fatalf("created device %+v", created)
	}
	if _, err := c.CreateDevice(ctx, &registry.Device{DeviceID: "dev-1"}); !errors.Is(err, ErrConflict) {
		t.Errorf("second create: %v, want ErrConflict", err)
	}
	tp := strings.Repeat("AB", 20)
	if _, err := c.CreateDevice(ctx, &registry.Device{DeviceID: "dev-2", Authentication: registry.Authentication{Type: "selfSigned",
		X509Thumbprint: registry.X509Thumbprint{PrimaryThumbprint: &tp}}, Capabilities: registry.Capabilities{IoTEdge: true}}); err != nil {
		t.Fatal(err)
	}

	got, err := c.GetDevice(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(created, got); diff != "" {
		t.Errorf("get (-created +got):\n%s", diff)
	}
	list, err := c.ListDevices(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range list {
		ids = append(ids, d.DeviceID)
	}
	if diff := cmp.Diff([]string{"dev-1", "dev-2"}, ids); diff != "" || !list[1].Capabilities.IoTEdge {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if one, err := c.ListDevices(ctx, 1); err != nil || len(one) != 1 {
		t.Errorf("list top 1: %d devices, %v", len(one), err)
	}

	got.Status = "disabled"
	updated, err := c.UpdateDevice(ctx, got, got.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if updated.Status != "disabled" || updated.ETag == got.ETag {
		t.Errorf("updated %+v", updated)
	}
	if _, err := c.UpdateDevice(ctx, got, got.ETag); !errors.Is(err, ErrPrecondition) {
		t.Errorf("update with a stale etag: %v, want ErrPrecondition", err)
	}
	if err := c.DeleteDevice(ctx, "dev-1", got.ETag); !errors.Is(err, ErrPrecondition) {
		t.Errorf("delete with a stale etag: %v, want ErrPrecondition", err)
	}
	if err := c.DeleteDevice(ctx, "dev-1", updated.ETag); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetDevice(ctx, "dev-1")
	var he *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &he) || he.Code != "DeviceNotFound" || he.Method != http.MethodGet ||
		he.Path != "/devices/dev-1" || he.Hub != hubName || he.TrackingID == "" || !strings.Contains(he.Message, "dev-1") {
		t.Errorf("get after delete: %#v", err)
	}
	if err := c.DeleteDevice(ctx, "dev-2", ""); err != nil {
		t.Errorf("delete without an etag: %v", err)
	}
}

func TestDeviceArgumentChecks(t *testing.T) {
	th := newTestHub(t)
	c := th.client("iothubowner")
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"get empty ID", func() error { _, err := c.GetDevice(ctx, " "); return err }, "get device: device ID is empty"},
		{"create nil", func() error { _, err := c.CreateDevice(ctx, nil); return err }, "the device is nil"},
		{"create no ID", func() error { _, err := c.CreateDevice(ctx, &registry.Device{}); return err }, "deviceId is empty"},
		{"update no etag", func() error { _, err := c.UpdateDevice(ctx, &registry.Device{DeviceID: "x"}, ""); return err }, "the etag is empty"},
		{"list top too high", func() error { _, err := c.ListDevices(ctx, 1001); return err }, "top 1001"},
		{"twin of nobody", func() error { _, err := c.GetTwin(ctx, ""); return err }, "get twin: device ID is empty"},
		{"patch nothing", func() error { _, err := c.PatchTwin(ctx, "x", TwinUpdate{}, ""); return err }, "nothing to change"},
		{"patch non-object", func() error {
			_, err := c.PatchTwin(ctx, "x", TwinUpdate{Tags: json.RawMessage(`[1]`)}, "")
			return err
		}, "tags must be a JSON object"},
		{"invalid device on the hub", func() error { _, err := c.CreateDevice(ctx, &registry.Device{DeviceID: "a/b"}); return err }, "ArgumentInvalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestTwins(t *testing.T) {
	th := newTestHub(t)
	c := th.client("iothubowner")
	ctx := ctxT(t)
	if _, err := c.CreateDevice(ctx, &registry.Device{DeviceID: "dev-1"}); err != nil {
		t.Fatal(err)
	}
	tw, err := c.GetTwin(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if tw.DeviceID != "dev-1" || tw.ETag == "" || string(tw.Tags) != "{}" || tw.AuthenticationType != "sas" {
		t.Fatalf("new twin %+v", tw)
	}
	p1, err := c.PatchTwin(ctx, "dev-1", TwinUpdate{Tags: json.RawMessage(`{"site":"a","floor":1}`), Desired: json.RawMessage(`{"interval":30}`)}, tw.ETag)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.PatchTwin(ctx, "dev-1", TwinUpdate{Tags: json.RawMessage(`{"floor":null,"zone":"z"}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	var tags, desired map[string]any
	if err := json.Unmarshal(p2.Tags, &tags); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(p2.Properties.Desired, &desired); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"site": "a", "zone": "z"}, tags); diff != "" || desired["interval"] != float64(30) {
		t.Errorf("merged tags (-want +got):\n%s\ndesired %v", diff, desired)
	}
	if _, err := c.PatchTwin(ctx, "dev-1", TwinUpdate{Tags: json.RawMessage(`{"x":1}`)}, p1.ETag); !errors.Is(err, ErrPrecondition) {
		t.Errorf("patch with a stale etag: %v, want ErrPrecondition", err)
	}
	rep, err := c.ReplaceTwin(ctx, "dev-1", TwinUpdate{Tags: json.RawMessage(`{"only":true}`)}, p2.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if string(rep.Tags) != `{"only":true}` {
		t.Errorf("replaced tags %s", rep.Tags)
	}
	if _, err := c.GetTwin(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("twin of a missing device: %v, want ErrNotFound", err)
	}
}

func TestRights(t *testing.T) {
	th := newTestHub(t)
	ctx := ctxT(t)
	if _, err := th.client("registryRead").CreateDevice(ctx, &registry.Device{DeviceID: "d"}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("create with registryRead: %v, want ErrUnauthorized", err)
	}
	if _, _, err := th.client("registryReadWrite").ReadEvents(ctx, EventsQuery{}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("read events without ServiceConnect: %v, want ErrUnauthorized", err)
	}
	if _, _, err := th.client("service").ReadEvents(ctx, EventsQuery{}); err != nil {
		t.Errorf("read events with the service policy: %v", err)
	}
	// A DPS policy's connection string names the same host but another realm.
	if _, err := th.client("provisioningserviceowner").ListDevices(ctx, 0); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("list with a DPS policy: %v, want ErrUnauthorized", err)
	}
}

func TestReadEvents(t *testing.T) {
	th := newTestHub(t)
	c := th.client("service")
	ctx := ctxT(t)
	th.publish("dev-a", "%24.ct=text%2Fplain&k=v", "one")
	th.publish("dev-b", "", "two")

	msgs, cursor, err := c.ReadEvents(ctx, EventsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || cursor != 2 || string(msgs[0].Body) != "one" || msgs[0].Properties["k"] != "v" ||
		msgs[0].SystemProperties["content-type"] != "text/plain" || msgs[0].SystemProperties["iothub-connection-device-id"] != "dev-a" {
		t.Fatalf("read: %+v cursor %d", msgs, cursor)
	}
	msgs, cursor, err = c.ReadEvents(ctx, EventsQuery{Latest: true})
	if err != nil || len(msgs) != 0 || cursor != 2 {
		t.Fatalf("latest: %d messages, cursor %d, %v", len(msgs), cursor, err)
	}
	th.publish("dev-a", "", "three")
	msgs, cursor, err = c.ReadEvents(ctx, EventsQuery{After: cursor, DeviceID: "dev-a", Wait: time.Second})
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "three" || cursor != 3 {
		t.Fatalf("after the cursor: %+v cursor %d, %v", msgs, cursor, err)
	}

	for _, tc := range []struct {
		name string
		q    EventsQuery
		want string
	}{
		{"negative after", EventsQuery{After: -1}, "after -1 is negative"},
		{"limit", EventsQuery{Limit: 1001}, "limit 1001"},
		{"wait", EventsQuery{Wait: 2 * time.Minute}, "wait 2m0s"},
		{"module alone", EventsQuery{ModuleID: "m"}, "a module ID needs a device ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := c.ReadEvents(ctx, tc.q); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFollow(t *testing.T) {
	th := newTestHub(t)
	c := th.client("service")
	th.publish("dev-a", "", "before")

	started := make(chan struct{})
	got := make(chan Message, 4)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	stop := errors.New("enough")
	go func() {
		n := 0
		done <- c.Follow(ctx, EventsQuery{DeviceID: "dev-a", Wait: 30 * time.Second}, func(m Message) error {
			got <- m
			n++
			if n == 1 {
				close(started)
			}
			if n == 3 {
				return stop
			}
			return nil
		})
	}()
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("Follow did not deliver the stored message")
	}
	th.publish("dev-b", "", "other device")
	th.publish("dev-a", "", "after 1")
	th.publish("dev-a", "", "after 2")
	select {
	case err := <-done:
		if !errors.Is(err, stop) {
			t.Fatalf("Follow returned %v, want the callback's error", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Follow did not deliver the new messages")
	}
	close(got)
	var bodies []string
	for m := range got {
		bodies = append(bodies, string(m.Body))
	}
	if diff := cmp.Diff([]string{"before", "after 1", "after 2"}, bodies); diff != "" {
		t.Errorf("followed bodies (-want +got):\n%s", diff)
	}

	// Follow ends with the context.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := c.Follow(cctx, EventsQuery{Latest: true}, func(Message) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Follow with a cancelled context: %v", err)
	}
}

func TestNewChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no connection string", Options{}, "parse hub connection string"},
		{"device connection string", Options{ConnectionString: "HostName=h;DeviceId=d;SharedAccessKey=AAAA"}, "SharedAccessKeyName is missing"},
		{"bad key", Options{ConnectionString: "HostName=h;SharedAccessKeyName=p;SharedAccessKey=***"}, "SharedAccessKey"},
		{"bad server", Options{ConnectionString: "HostName=h;SharedAccessKeyName=p;SharedAccessKey=AAAA", Server: "h:99999"}, "port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want %q", err, tc.want)
			}
		})
	}
	c, err := New(Options{ConnectionString: "HostName=hub.test;SharedAccessKeyName=p;SharedAccessKey=AAAA"})
	if err != nil {
		t.Fatal(err)
	}
	if c.HostName() != "hub.test" || c.Server() != "hub.test:443" {
		t.Errorf("host %q server %q", c.HostName(), c.Server())
	}
}

func TestParseError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		header http.Header
		body   string
		want   Error
	}{
		{"hub body", 404, http.Header{}, `{"Message":"ErrorCode:DeviceNotFound;Device x does not exist","ExceptionMessage":"Tracking ID:abc-TimeStamp:01/02/2026 10:00:00"}`,
			Error{Status: 404, Code: "DeviceNotFound", Message: "Device x does not exist", TrackingID: "abc"}},
		{"header code", 412, http.Header{"Iothub-Errorcode": {"PreconditionFailed"}, "X-Ms-Request-Id": {"r1"}}, `{"Message":"etag"}`,
			Error{Status: 412, Code: "PreconditionFailed", Message: "etag", TrackingID: "r1"}},
		{"text body", 502, http.Header{}, "bad gateway\n", Error{Status: 502, Message: "bad gateway"}},
		{"empty", 500, http.Header{}, "", Error{Status: 500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseError(tc.status, tc.header, []byte(tc.body))
			if diff := cmp.Diff(tc.want, *got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseError checks that any error answer becomes an *Error with
// bounded, valid UTF-8 text.
func FuzzParseError(f *testing.F) {
	for _, s := range []string{"", "{}", `{"Message":"ErrorCode:X;y"}`, `{"Message":"ErrorCode:;"}`, `{"ExceptionMessage":"Tracking ID:-TimeStamp:"}`,
		"\xff\xfe", `{"Message":7}`, strings.Repeat("é", 600), `[1,2]`} {
		f.Add(404, s, "")
		f.Add(500, s, "Code")
	}
	f.Fuzz(func(t *testing.T, status int, body, code string) {
		e := parseError(status, http.Header{"Iothub-Errorcode": {code}}, []byte(body))
		if e.Status != status {
			t.Fatalf("status %d, want %d", e.Status, status)
		}
		for _, s := range []string{e.Message, e.TrackingID, e.Code} {
			if len(s) > hubclient.MaxErrorText+len("…") || !utf8.ValidString(s) {
				t.Fatalf("unbounded or invalid text %q", s)
			}
		}
		_ = e.Error()
	})
}
