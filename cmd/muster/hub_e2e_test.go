package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/muster-iot/muster/internal/client/dpsclient"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store/sqlite"
	"github.com/muster-iot/muster/internal/telemetry"
)

// hubWait bounds every wait for the hub's MQTT endpoint.
const hubWait = 30 * time.Second

// hubMQTT is a paho client of a test server's hub that collects what it
// receives on its subscriptions.
type hubMQTT struct {
	paho.Client
	msgs chan paho.Message
}

// connectHub connects to the server's MQTT listener as device id with a
// SAS token for {hub}/devices/{id} signed with key (base64); it returns
// the client (nil when refused) and the CONNACK code.
func connectHub(t *testing.T, ts *testServer, hubHost, id, key string) (*hubMQTT, byte) {
	t.Helper()
	raw, err := sas.DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &hubMQTT{msgs: make(chan paho.Message, 64)}
	opts := paho.NewClientOptions().AddBroker("ssl://" + lhLoopback(t, ts.ep.MQTTAddr)).
		SetTLSConfig(&tls.Config{RootCAs: ts.roots, ServerName: hubHost, MinVersion: tls.VersionTLS12}).
		SetClientID(id).
		SetUsername(hubHost + "/" + id + "/?api-version=2021-04-12&DeviceClientType=muster-e2e").
		SetPassword(sas.Sign(hubHost+"/devices/"+id, raw, "", time.Now().Add(time.Hour))).
		SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(hubWait).SetKeepAlive(time.Minute).SetWriteTimeout(hubWait)
	c.Client = paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(hubWait) {
		t.Fatalf("CONNECT %s: no CONNACK within %v", id, hubWait)
	}
	if tok.Error() != nil {
		rc := tok.(*paho.ConnectToken).ReturnCode()
		if rc == 0 {
			t.Fatalf("CONNECT %s: %v", id, tok.Error())
		}
		return nil, rc
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, 0
}

// subscribe subscribes to filters and returns the SUBACK codes.
func (c *hubMQTT) subscribe(t *testing.T, filters ...string) []byte {
	t.Helper()
	var codes []byte
	for _, f := range filters { // one by one: paho routes by its own filter table
		tok := c.Subscribe(f, 0, func(_ paho.Client, m paho.Message) { c.msgs <- m })
		if !tok.WaitTimeout(hubWait) || tok.Error() != nil {
			t.Fatalf("SUBSCRIBE %s: %v", f, tok.Error())
		}
		codes = append(codes, tok.(*paho.SubscribeToken).Result()[f])
	}
	return codes
}

func (c *hubMQTT) publish(t *testing.T, topic string, qos byte, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(hubWait) || tok.Error() != nil {
		t.Fatalf("PUBLISH %s: %v", topic, tok.Error())
	}
}

func (c *hubMQTT) next(t *testing.T) paho.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(hubWait):
		t.Fatalf("no message within %v", hubWait)
		return nil
	}
}

// hubAPI calls the server's hub service API with its iothubowner
// connection string and returns the status and the decoded JSON body.
func hubAPI(t *testing.T, ts *testServer, method, path, body string) (int, map[string]any) {
	t.Helper()
	cs, err := sas.ParseConnectionString(ts.ep.HubConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	key, err := sas.DecodeKey(cs.SharedAccessKey)
	if err != nil {
		t.Fatal(err)
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctxT(t), method, "https://"+lhLoopback(t, ts.ep.HTTPSAddr)+path+"?api-version=2021-04-12", rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", sas.Sign(cs.HostName, key, cs.SharedAccessKeyName, time.Now().Add(time.Hour)))
	req.Header.Set("Content-Type", "application/json")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.roots, ServerName: cs.HostName}}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: hubWait}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: body %s: %v", method, path, raw, err)
		}
	}
	return res.StatusCode, out
}

// jsonEq reports whether a decoded JSON value encodes as want (compact,
// sorted keys).
func jsonEq(t *testing.T, v any, want string) bool {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b) == want
}

// TestHubDeviceEndToEnd provisions a symmetric-key group device through
// DPS and uses the hub over MQTT with its derived key: twin GET and
// reported PATCH, a desired change made through the hub service API,
// telemetry into the built-in endpoint, and the per-device topic rules
// and credential refusals.
func TestHubDeviceEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	group, err := ts.svc.PutGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "hub-group", Common: enroll.Common{
		Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey},
		InitialTwin: &enroll.InitialTwin{
			Tags:       json.RawMessage(`{"fleet":"e2e"}`),
			Properties: &enroll.InitialTwinProperties{Desired: json.RawMessage(`{"interval":30}`)},
		},
	}}, "")
	if err != nil {
		t.Fatal(err)
	}
	register := func(id string) (hubHost, key string) {
		key, err := sas.DeriveKey(group.Attestation.SymmetricKey.PrimaryKey, id)
		if err != nil {
			t.Fatal(err)
		}
		res := mustRegister(t, ts.client(t, "https"), dpsclient.Device{RegistrationID: id, Credential: dpsclient.Credential{SymmetricKey: key}})
		if res.DeviceID != id {
			t.Fatalf("device ID %q, want %q", res.DeviceID, id)
		}
		return res.AssignedHub, key
	}
	hubHost, keyA := register("hub-dev-a")
	_, keyB := register("hub-dev-b")

	a, rc := connectHub(t, ts, hubHost, "hub-dev-a", keyA)
	if rc != 0 {
		t.Fatalf("CONNACK %d for hub-dev-a", rc)
	}
	if codes := a.subscribe(t, "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#"); !bytes.Equal(codes, []byte{0, 0}) {
		t.Fatalf("SUBACK %v for the twin topics", codes)
	}

	t.Run("initial twin", func(t *testing.T) {
		a.publish(t, "$iothub/twin/GET/?$rid=1", 0, "")
		m := a.next(t)
		if m.Topic() != "$iothub/twin/res/200/?$rid=1" || string(m.Payload()) != `{"desired":{"interval":30,"$version":1},"reported":{"$version":1}}` {
			t.Fatalf("twin GET: %s %s", m.Topic(), m.Payload())
		}
		status, tw := hubAPI(t, ts, http.MethodGet, "/twins/hub-dev-a", "")
		if status != http.StatusOK || !jsonEq(t, tw["tags"], `{"fleet":"e2e"}`) {
			t.Fatalf("GET /twins: %d tags %v", status, tw["tags"])
		}
	})

	t.Run("reported", func(t *testing.T) {
		a.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=2", 0, `{"fw":"1.2.3","battery":{"level":80}}`)
		if m := a.next(t); m.Topic() != "$iothub/twin/res/204/?$rid=2&$version=2" {
			t.Fatalf("reported PATCH answer: %s %s", m.Topic(), m.Payload())
		}
		status, tw := hubAPI(t, ts, http.MethodGet, "/twins/hub-dev-a", "")
		props, _ := tw["properties"].(map[string]any)
		rep, _ := props["reported"].(map[string]any)
		if status != http.StatusOK || rep["fw"] != "1.2.3" || !jsonEq(t, rep["battery"], `{"level":80}`) || rep["$version"] != float64(2) {
			t.Fatalf("GET /twins: %d reported %v", status, rep)
		}
	})

	t.Run("desired notification", func(t *testing.T) {
		status, _ := hubAPI(t, ts, http.MethodPatch, "/twins/hub-dev-a", `{"properties":{"desired":{"interval":10,"mode":"eco"}}}`)
		if status != http.StatusOK {
			t.Fatalf("PATCH /twins: %d", status)
		}
		m := a.next(t)
		if m.Topic() != "$iothub/twin/PATCH/properties/desired/?$version=2" || string(m.Payload()) != `{"interval":10,"mode":"eco","$version":2}` {
			t.Fatalf("desired notification: %s %s", m.Topic(), m.Payload())
		}
	})

	t.Run("foreign subscription", func(t *testing.T) {
		if codes := a.subscribe(t, "devices/hub-dev-b/messages/devicebound/#", "devices/hub-dev-a/messages/devicebound/#"); !bytes.Equal(codes, []byte{0x80, 0}) {
			t.Fatalf("SUBACK %v, want [0x80 0]", codes)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		if c, rc := connectHub(t, ts, hubHost, "hub-dev-b", keyA); c != nil || rc != 5 {
			t.Fatalf("CONNACK %d with another device's key, want 5", rc)
		}
		at := ts.attemptReason(t, "hub-dev-b")
		if at.Reason != "sas_signature_mismatch" || at.Protocol != "hub-mqtt" || at.Outcome != "denied" {
			t.Fatalf("attempt %+v, want a denied hub-mqtt sas_signature_mismatch", at)
		}
		if b, rc := connectHub(t, ts, hubHost, "hub-dev-b", keyB); b == nil || rc != 0 {
			t.Fatalf("CONNACK %d with the device's own key", rc)
		}
	})

	// Telemetry last: the stream is read from the store once the server
	// has stopped.
	a.publish(t, "devices/hub-dev-a/messages/events/%24.mid=msg-1&%24.ct=application%2Fjson&%24.cdid=hub-dev-b&temp%20unit=C", 1, `{"temp":21.5}`)
	a.publish(t, "devices/hub-dev-a/messages/events/", 1, "raw")
	ts.stop()

	st, err := sqlite.Open(ctx, filepath.Join(dir, "muster.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	events, err := telemetry.NewEndpoint(st, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := events.Read(ctx, 0, telemetry.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("%d telemetry messages stored, want 2: %+v", len(msgs), msgs)
	}
	m := msgs[0]
	if m.DeviceID != "hub-dev-a" || string(m.Body) != `{"temp":21.5}` || m.EnqueuedTime.IsZero() ||
		m.SystemProperties["message-id"] != "msg-1" || m.SystemProperties["content-type"] != "application/json" ||
		m.SystemProperties["iothub-connection-device-id"] != "hub-dev-a" || m.Properties["temp unit"] != "C" {
		t.Fatalf("stored telemetry %+v", m)
	}
	if msgs[1].DeviceID != "hub-dev-a" || string(msgs[1].Body) != "raw" {
		t.Fatalf("second message %+v", msgs[1])
	}
}
