package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/telemetry"
)

// hubCall is a hub service API answer.
type hubCall struct {
	status int
	header http.Header
	body   []byte
}

// callHub calls the hub service API with the server's iothubowner
// connection string and extra headers.
func callHub(t *testing.T, ts *testServer, method, path, body string, hdr map[string]string) hubCall {
	t.Helper()
	cs, err := sas.ParseConnectionString(ts.ep.HubConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	key, err := sas.DecodeKey(cs.SharedAccessKey)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctxT(t), method, "https://"+lhLoopback(t, ts.ep.HTTPSAddr)+path+"?api-version=2021-04-12", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", sas.Sign(cs.HostName, key, cs.SharedAccessKeyName, time.Now().Add(time.Hour)))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
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
	return hubCall{status: res.StatusCode, header: res.Header, body: raw}
}

// hubDevice creates a SAS device through the service API and returns the
// hub host name and its primary key.
func hubDevice(t *testing.T, ts *testServer, id string) (hubHost, key string) {
	t.Helper()
	res := callHub(t, ts, http.MethodPut, "/devices/"+id, `{"deviceId":"`+id+`"}`, map[string]string{"Content-Type": "application/json"})
	var d struct {
		Authentication struct {
			SymmetricKey struct {
				PrimaryKey string `json:"primaryKey"`
			} `json:"symmetricKey"`
		} `json:"authentication"`
	}
	if res.status != http.StatusOK || json.Unmarshal(res.body, &d) != nil || d.Authentication.SymmetricKey.PrimaryKey == "" {
		t.Fatalf("PUT /devices/%s: %d %s", id, res.status, res.body)
	}
	cs, err := sas.ParseConnectionString(ts.ep.HubConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	return cs.HostName, d.Authentication.SymmetricKey.PrimaryKey
}

// subscribeQoS1 subscribes to filter at QoS 1.
func (c *hubMQTT) subscribeQoS1(t *testing.T, filter string) {
	t.Helper()
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { c.msgs <- m })
	if !tok.WaitTimeout(hubWait) || tok.Error() != nil {
		t.Fatalf("SUBSCRIBE %s: %v", filter, tok.Error())
	}
	if code := tok.(*paho.SubscribeToken).Result()[filter]; code != 1 {
		t.Fatalf("SUBACK %d for %s, want 1", code, filter)
	}
}

// TestHubMethodsAndC2DEndToEnd calls direct methods and sends
// cloud-to-device messages through the hub service API of a real server
// to a device connected over MQTT.
func TestHubMethodsAndC2DEndToEnd(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	hubHost, key := hubDevice(t, ts, "m-dev")
	hubDevice(t, ts, "m-off")
	dev, rc := connectHub(t, ts, hubHost, "m-dev", key)
	if rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	if codes := dev.subscribe(t, "$iothub/methods/POST/#"); !bytes.Equal(codes, []byte{0}) {
		t.Fatalf("SUBACK %v for methods", codes)
	}
	jsonHdr := map[string]string{"Content-Type": "application/json"}

	t.Run("method round trip", func(t *testing.T) {
		done := make(chan hubCall, 1)
		go func() {
			done <- callHub(t, ts, http.MethodPost, "/twins/m-dev/methods",
				`{"methodName":"reboot","payload":{"delay":5},"responseTimeoutInSeconds":30}`, jsonHdr)
		}()
		req := dev.next(t)
		name, rid, ok := strings.Cut(strings.TrimPrefix(req.Topic(), "$iothub/methods/POST/"), "/?$rid=")
		if !ok || name != "reboot" || rid == "" || string(req.Payload()) != `{"delay":5}` {
			t.Fatalf("method request %s %s", req.Topic(), req.Payload())
		}
		dev.publish(t, "$iothub/methods/res/202/?$rid="+rid, 0, `{"rebooting":true}`)
		var res hubCall
		select {
		case res = <-done:
		case <-time.After(hubWait):
			t.Fatalf("no HTTP answer within %v", hubWait)
		}
		if res.status != http.StatusOK || string(res.body) != `{"status":202,"payload":{"rebooting":true}}` {
			t.Fatalf("POST methods: %d %s", res.status, res.body)
		}
	})

	for _, tc := range []struct {
		name, path, body string
		status           int
		code, numeric    string
	}{
		{"offline device", "/twins/m-off/methods", `{"methodName":"m","connectTimeoutInSeconds":0}`, http.StatusNotFound, "DeviceNotOnline", "404103"},
		{"unknown device", "/twins/ghost/methods", `{"methodName":"m"}`, http.StatusNotFound, "DeviceNotFound", ""},
		{"no answer", "/twins/m-dev/methods", `{"methodName":"ignored","responseTimeoutInSeconds":5}`, http.StatusGatewayTimeout, "GatewayTimeout", "504101"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := callHub(t, ts, http.MethodPost, tc.path, tc.body, jsonHdr)
			if res.status != tc.status || res.header.Get("iothub-errorcode") != tc.code || !bytes.Contains(res.body, []byte(tc.numeric)) {
				t.Fatalf("POST %s: %d %s %s, want %d %s (%s)", tc.path, res.status, res.header.Get("iothub-errorcode"), res.body, tc.status, tc.code, tc.numeric)
			}
		})
	}
	// The request of "no answer" reached the device; drop it.
	if m := dev.next(t); !strings.HasPrefix(m.Topic(), "$iothub/methods/POST/ignored/?$rid=") {
		t.Fatalf("unexpected message %s", m.Topic())
	}

	t.Run("cloud-to-device", func(t *testing.T) {
		res := callHub(t, ts, http.MethodPost, "/devices/m-dev/messages/deviceBound", `{"cmd":"on"}`, map[string]string{
			"iothub-messageid": "c2d-1", "iothub-correlationid": "corr/1", "iothub-ack": "full",
			"iothub-contenttype": "application/json", "iothub-app-room": "kitchen & hall",
		})
		if res.status != http.StatusOK || string(res.body) != `{"messageId":"c2d-1"}` {
			t.Fatalf("POST deviceBound: %d %s", res.status, res.body)
		}
		dev.subscribeQoS1(t, "devices/m-dev/messages/devicebound/#") // queued before: delivered now
		m := dev.next(t)
		bag, ok := strings.CutPrefix(m.Topic(), "devices/m-dev/messages/devicebound/")
		if !ok || m.Qos() != 1 || string(m.Payload()) != `{"cmd":"on"}` {
			t.Fatalf("C2D delivery %s QoS %d %s", m.Topic(), m.Qos(), m.Payload())
		}
		sys, app, err := telemetry.ParseBag(bag)
		if err != nil {
			t.Fatalf("C2D property bag %q: %v", bag, err)
		}
		want := map[string]string{telemetry.PropMessageID: "c2d-1", telemetry.PropCorrelationID: "corr/1", telemetry.PropAck: "full",
			telemetry.PropContentType: "application/json", telemetry.PropTo: "/devices/m-dev/messages/deviceBound"}
		for k, v := range want {
			if sys[k] != v {
				t.Errorf("system property %s = %q, want %q (bag %q)", k, sys[k], v, bag)
			}
		}
		if app["room"] != "kitchen & hall" {
			t.Errorf("application properties %v (bag %q)", app, bag)
		}
	})

	t.Run("cloud-to-device queue bound", func(t *testing.T) {
		for i := range 50 {
			if res := callHub(t, ts, http.MethodPost, "/devices/m-off/messages/deviceBound", "x", nil); res.status != http.StatusOK {
				t.Fatalf("message %d: %d %s", i, res.status, res.body)
			}
		}
		res := callHub(t, ts, http.MethodPost, "/devices/m-off/messages/deviceBound", "x", nil)
		if res.status != http.StatusForbidden || res.header.Get("iothub-errorcode") != "DeviceMaximumQueueDepthExceeded" || !bytes.Contains(res.body, []byte("403004")) {
			t.Fatalf("message 51: %d %s", res.status, res.body)
		}
	})
}
