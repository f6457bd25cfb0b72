package hubservice

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/api"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/hub"
	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store/memstore"
	"github.com/muster-iot/muster/internal/telemetry"
)

// messagingHub is a real hub service API with the messaging routes over a
// real hub core, and one connected device session (dev1) whose outgoing
// messages the test reads.
type messagingHub struct {
	client *Client
	sess   *hub.Session
	sent   chan sentMessage
}

type sentMessage struct {
	topic   string
	payload string
}

// deviceClient is the transport side of the device session.
type deviceClient struct{ sent chan sentMessage }

func (d deviceClient) Send(topic string, payload []byte, _ byte) error {
	d.sent <- sentMessage{topic, string(payload)}
	return nil
}

func (deviceClient) Disconnect() {}

func newMessagingHub(t *testing.T) *messagingHub {
	t.Helper()
	ctx := context.Background()
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	inst, err := instance.Open(ctx, st, t.TempDir(), []string{hubName}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(hubName, st, nil)
	events, err := telemetry.NewEndpoint(st, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := hubauth.New(hubauth.Options{HubHostName: hubName, Identities: hubauth.NewRegistryIdentities(reg), Attempts: st})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := hub.New(hub.Options{Registry: reg, Auth: auth, Telemetry: events})
	if err != nil {
		t.Fatal(err)
	}
	enr := enroll.NewService(st, enroll.ServiceOptions{LinkedHubs: func() []string { return []string{hubName} }})
	prov, err := provision.New(provision.Options{IDScope: inst.IDScope, Docs: st, Attempts: st, Enrollments: enr,
		Hubs: []provision.LinkedHub{{Hub: reg, Weight: 1, ApplyAllocationPolicy: true}}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Options{IDScope: inst.IDScope, Registrar: prov, Registrations: registrations{enr, prov}, Enrollments: enr,
		Policies: inst, ServiceHostNames: []string{hubName}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.MountHub(svc); err != nil {
		t.Fatal(err)
	}
	if err := a.MountHubMessaging(svc); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{inst.TLSCertificate}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(inst.CA)
	c, err := New(Options{ConnectionString: inst.ConnectionString("iothubowner"), Server: srv.Listener.Addr().String(), RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)

	d, err := reg.PutDevice(ctx, &registry.Device{DeviceID: "dev1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	key, err := sas.DecodeKey(d.Authentication.SymmetricKey.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	mh := &messagingHub{client: c, sent: make(chan sentMessage, 16)}
	mh.sess, err = svc.Connect(ctx, hubauth.Request{ClientID: "dev1", Username: hubName + "/dev1/?api-version=2021-04-12",
		Password: sas.Sign(hubName+"/devices/dev1", key, "", time.Now().Add(time.Hour))}, deviceClient{mh.sent})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mh.sess.Close(nil) })
	return mh
}

func (mh *messagingHub) next(t *testing.T) sentMessage {
	t.Helper()
	select {
	case m := <-mh.sent:
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("the device got nothing")
		return sentMessage{}
	}
}

func TestInvokeMethod(t *testing.T) {
	mh := newMessagingHub(t)
	ctx := context.Background()

	_, err := mh.client.InvokeMethod(ctx, MethodCall{DeviceID: "dev1", Name: "reboot"})
	var he *Error
	if !errors.As(err, &he) || he.Status != 404 || he.Code != "DeviceNotOnline" {
		t.Fatalf("method on a device not subscribed to methods: %v, want 404 DeviceNotOnline", err)
	}
	if _, err := mh.client.InvokeMethod(ctx, MethodCall{DeviceID: "ghost", Name: "m"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("method on an unknown device: %v, want ErrNotFound", err)
	}

	if !mh.sess.Allow(hub.MethodsFilter, false) {
		t.Fatal("methods subscription refused")
	}
	type answer struct {
		res *MethodResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := mh.client.InvokeMethod(ctx, MethodCall{DeviceID: "dev1", Name: "reboot", Payload: json.RawMessage(`{"delay":5}`),
			ResponseTimeout: 10 * time.Second})
		done <- answer{res, err}
	}()
	req := mh.next(t)
	name, rid, ok := strings.Cut(strings.TrimPrefix(req.topic, "$iothub/methods/POST/"), "/?$rid=")
	if !ok || name != "reboot" || req.payload != `{"delay":5}` {
		t.Fatalf("method request %+v", req)
	}
	if err := mh.sess.Publish(ctx, "$iothub/methods/res/201/?$rid="+rid, []byte(`{"ok":true}`), false); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil {
		t.Fatal(got.err)
	}
	if diff := cmp.Diff(&MethodResult{Status: 201, Payload: json.RawMessage(`{"ok":true}`)}, got.res); diff != "" {
		t.Fatalf("result (-want +got):\n%s", diff)
	}
}

func TestInvokeMethodRefusedLocally(t *testing.T) {
	c, err := New(Options{ConnectionString: "HostName=" + hubName + ";SharedAccessKeyName=iothubowner;SharedAccessKey=" + strings.Repeat("A", 43) + "=",
		Server: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call MethodCall
		want string
	}{
		{"no device", MethodCall{Name: "m"}, "device ID is empty"},
		{"no name", MethodCall{DeviceID: "d"}, "method name is empty"},
		{"short timeout", MethodCall{DeviceID: "d", Name: "m", ResponseTimeout: time.Second}, "response timeout 1s is outside"},
		{"long connect timeout", MethodCall{DeviceID: "d", Name: "m", ConnectTimeout: time.Hour}, "connect timeout 1h0m0s is outside"},
		{"payload not JSON", MethodCall{DeviceID: "d", Name: "m", Payload: json.RawMessage("{")}, "payload is not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.InvokeMethod(context.Background(), tc.call); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("InvokeMethod: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestSendCloudMessage(t *testing.T) {
	mh := newMessagingHub(t)
	ctx := context.Background()
	exp := time.Now().Add(10 * time.Minute).UTC().Truncate(time.Second)
	id, err := mh.client.SendCloudMessage(ctx, "dev1", CloudMessage{Body: []byte(`{"on":true}`), MessageID: "m-1", CorrelationID: "c/1",
		ExpiryTime: exp, Ack: "full", ContentType: "application/json", Properties: map[string]string{"room": "kitchen & hall"}})
	if err != nil || id != "m-1" {
		t.Fatalf("SendCloudMessage: %q, %v", id, err)
	}
	if !mh.sess.Allow("devices/dev1/messages/devicebound/#", false) {
		t.Fatal("C2D subscription refused")
	}
	m := mh.next(t)
	bag, ok := strings.CutPrefix(m.topic, "devices/dev1/messages/devicebound/")
	if !ok || m.payload != `{"on":true}` {
		t.Fatalf("C2D delivery %+v", m)
	}
	sys, app, err := telemetry.ParseBag(bag)
	if err != nil {
		t.Fatal(err)
	}
	wantSys := map[string]string{telemetry.PropMessageID: "m-1", telemetry.PropCorrelationID: "c/1", telemetry.PropAck: "full",
		telemetry.PropContentType: "application/json", telemetry.PropExpiryTime: exp.Format(time.RFC3339Nano),
		telemetry.PropTo: "/devices/dev1/messages/deviceBound"}
	if diff := cmp.Diff(wantSys, sys); diff != "" {
		t.Errorf("system properties (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"room": "kitchen & hall"}, app); diff != "" {
		t.Errorf("application properties (-want +got):\n%s", diff)
	}

	for range 2 {
		if _, err := mh.client.SendCloudMessage(ctx, "ghost", CloudMessage{}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("message to an unknown device: %v, want ErrNotFound", err)
		}
	}
	mh.sess.Close(nil)
	for range 3 {
		if _, err := mh.client.SendCloudMessage(ctx, "dev1", CloudMessage{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := mh.client.PurgeCloudMessages(ctx, "dev1"); err != nil || n != 3 {
		t.Fatalf("PurgeCloudMessages: %d, %v; want 3", n, err)
	}
	if _, err := mh.client.PurgeCloudMessages(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("purge of an unknown device: %v, want ErrNotFound", err)
	}
}

func TestCloudMessageRefusedLocally(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    CloudMessage
		want string
	}{
		{"too large", CloudMessage{Body: make([]byte, MaxCloudMessageBytes+1)}, "65537 bytes"},
		{"bad ack", CloudMessage{Ack: "always"}, `ack "always"`},
		{"upper-case property", CloudMessage{Properties: map[string]string{"Room": "x"}}, "upper-case"},
		{"property name with a space", CloudMessage{Properties: map[string]string{"a b": "x"}}, "HTTP tokens"},
		{"line break in a value", CloudMessage{Properties: map[string]string{"a": "x\ny"}}, "line break"},
		{"line break in the message ID", CloudMessage{MessageID: "a\r\nb"}, "line break"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.m.headers(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("headers: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
