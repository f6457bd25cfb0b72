package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/muster-iot/muster/internal/client/hubservice"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/telemetry"
)

// c2dDevice is a paho device client with a persistent session (clean
// session 0, as the Azure SDKs connect) that hands every message to msgs,
// also those of subscriptions its session inherited. With manualAck it
// never acknowledges a message unless the test calls Ack.
type c2dDevice struct {
	paho.Client
	msgs chan paho.Message
}

func dialC2DDevice(t *testing.T, broker string, ts *testServer, hubHost, id, key string, manualAck bool) *c2dDevice {
	t.Helper()
	raw, err := sas.DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	d := &c2dDevice{msgs: make(chan paho.Message, 64)}
	opts := paho.NewClientOptions().AddBroker(broker).
		SetTLSConfig(&tls.Config{RootCAs: ts.roots, ServerName: hubHost, MinVersion: tls.VersionTLS12}).
		SetClientID(id).
		SetUsername(hubHost + "/" + id + "/?api-version=2021-04-12&DeviceClientType=muster-e2e").
		SetPassword(sas.Sign(hubHost+"/devices/"+id, raw, "", time.Now().Add(time.Hour))).
		SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(hubWait).SetKeepAlive(time.Minute).SetWriteTimeout(hubWait).
		SetAutoAckDisabled(manualAck).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { d.msgs <- m })
	d.Client = paho.NewClient(opts)
	tok := d.Connect()
	if !tok.WaitTimeout(hubWait) || tok.Error() != nil {
		t.Fatalf("CONNECT %s to %s: %v", id, broker, tok.Error())
	}
	t.Cleanup(func() { d.Disconnect(50) })
	return d
}

// subscribe subscribes to filter at QoS 1; messages go to msgs.
func (d *c2dDevice) subscribe(t *testing.T, filter string) {
	t.Helper()
	tok := d.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { d.msgs <- m })
	if !tok.WaitTimeout(hubWait) || tok.Error() != nil {
		t.Fatalf("SUBSCRIBE %s: %v", filter, tok.Error())
	}
	if code := tok.(*paho.SubscribeToken).Result()[filter]; code != 1 {
		t.Fatalf("SUBACK 0x%02x for %s, want 1", code, filter)
	}
}

func (d *c2dDevice) next(t *testing.T) paho.Message {
	t.Helper()
	select {
	case m := <-d.msgs:
		return m
	case <-time.After(hubWait):
		t.Fatalf("no message within %v", hubWait)
		return nil
	}
}

// c2dProps decodes a delivered C2D message's property bag.
func c2dProps(t *testing.T, deviceID string, m paho.Message) (sys, app map[string]string) {
	t.Helper()
	bag, ok := strings.CutPrefix(m.Topic(), "devices/"+deviceID+"/messages/devicebound/")
	if !ok || m.Qos() != 1 {
		t.Fatalf("C2D delivery on %s at QoS %d", m.Topic(), m.Qos())
	}
	sys, app, err := telemetry.ParseBag(bag)
	if err != nil {
		t.Fatalf("property bag %q: %v", bag, err)
	}
	return sys, app
}

// getDevice reads a device through the hub service API.
func getDevice(t *testing.T, ts *testServer, id string) registry.Device {
	t.Helper()
	res := callHub(t, ts, http.MethodGet, "/devices/"+id, "", nil)
	var d registry.Device
	if res.status != http.StatusOK || json.Unmarshal(res.body, &d) != nil {
		t.Fatalf("GET /devices/%s: %d %s", id, res.status, res.body)
	}
	return d
}

// awaitDevice reads a device until ok accepts it (the hub records
// connection state and completions in the background), within hubWait.
func awaitDevice(t *testing.T, ts *testServer, id, what string, ok func(registry.Device) bool) registry.Device {
	t.Helper()
	deadline := time.Now().Add(hubWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		d := getDevice(t, ts, id)
		if ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s: not %s within %v: %+v", id, what, hubWait, d)
		}
		<-tick.C
	}
}

// TestC2DEndToEnd sends cloud-to-device messages with `muster c2d send` to
// a device of a real server over TLS MQTT: sent while the device is
// offline, delivered when it subscribes; not acknowledged, delivered again
// on the next connection (whose persistent session needs no new
// SUBSCRIBE); queued before a restart of the server, delivered after it;
// the 51st waiting message refused with 403004. The device's connection
// state, last activity and queue depth follow on GET /devices/{id}, in
// `muster device show` and in twin queries.
func TestC2DEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	hubHost, key := hubDevice(t, ts, "c2d-dev")
	run := func(args ...string) string {
		t.Helper()
		out, stderr, err := runCLI(t, nil, append([]string{"--data-dir", dir}, args...)...)
		if err != nil {
			t.Fatalf("muster %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return out
	}
	mqttURL := func() string { return "ssl://" + lhLoopback(t, ts.ep.MQTTAddr) }

	sent := decodeJSON[sentC2D](t, run("c2d", "send", "c2d-dev", "--body", `{"cmd":"on"}`, "--message-id", "msg-1",
		"--property", "room=kitchen & hall", "--content-type", "application/json", "--expiry", "1h", "-o", "json"))
	if sent.MessageID != "msg-1" || sent.DeviceID != "c2d-dev" {
		t.Fatalf("c2d send printed %+v", sent)
	}
	if d := getDevice(t, ts, "c2d-dev"); d.CloudToDeviceMessageCount != 1 || d.ConnectionState != registry.StateDisconnected {
		t.Fatalf("before the device connects: %d queued, %s; want 1, Disconnected", d.CloudToDeviceMessageCount, d.ConnectionState)
	}

	// Offline → delivered on subscription; not acknowledged.
	dev := dialC2DDevice(t, mqttURL(), ts, hubHost, "c2d-dev", key, true)
	dev.subscribe(t, "devices/c2d-dev/messages/devicebound/#")
	first := dev.next(t)
	sys, app := c2dProps(t, "c2d-dev", first)
	if string(first.Payload()) != `{"cmd":"on"}` || sys[telemetry.PropMessageID] != "msg-1" || sys[telemetry.PropContentType] != "application/json" ||
		sys[telemetry.PropTo] != "/devices/c2d-dev/messages/deviceBound" || sys[telemetry.PropExpiryTime] == "" || app["room"] != "kitchen & hall" {
		t.Fatalf("delivery %s %s", first.Topic(), first.Payload())
	}
	connected := awaitDevice(t, ts, "c2d-dev", "connected", func(d registry.Device) bool { return d.ConnectionState == registry.StateConnected })
	if connected.LastActivityTime.IsZero() || connected.ConnectionStateUpdatedTime.IsZero() || connected.CloudToDeviceMessageCount != 1 {
		t.Fatalf("connected device %+v: want activity and state times, and the unacknowledged message still queued", connected)
	}
	checkRow(t, run("device", "show", "c2d-dev"), "Connection state", registry.StateConnected)
	q := callHub(t, ts, http.MethodPost, "/devices/query", `{"query":"SELECT deviceId FROM devices WHERE connectionState = 'Connected'"}`,
		map[string]string{"Content-Type": "application/json"})
	if q.status != http.StatusOK || !bytes.Contains(q.body, []byte(`"c2d-dev"`)) {
		t.Fatalf("query for connected devices: %d %s", q.status, q.body)
	}
	dev.Disconnect(50)
	awaitDevice(t, ts, "c2d-dev", "disconnected", func(d registry.Device) bool { return d.ConnectionState == registry.StateDisconnected })

	// The next connection gets it again, without subscribing again (its
	// session kept the subscription), and acknowledges it.
	dev = dialC2DDevice(t, mqttURL(), ts, hubHost, "c2d-dev", key, false)
	again := dev.next(t)
	if again.Topic() != first.Topic() || string(again.Payload()) != string(first.Payload()) {
		t.Fatalf("redelivery %s %s, want %s %s", again.Topic(), again.Payload(), first.Topic(), first.Payload())
	}
	awaitDevice(t, ts, "c2d-dev", "without queued messages", func(d registry.Device) bool { return d.CloudToDeviceMessageCount == 0 })
	dev.Disconnect(50)
	awaitDevice(t, ts, "c2d-dev", "disconnected", func(d registry.Device) bool { return d.ConnectionState == registry.StateDisconnected })

	// Queued before a restart, delivered after it.
	run("c2d", "send", "c2d-dev", "--body", "survives")
	ts.stop()
	ts = startServer(t, dir, nil)
	dev = dialC2DDevice(t, mqttURL(), ts, hubHost, "c2d-dev", key, false)
	dev.subscribe(t, "devices/c2d-dev/messages/devicebound/#")
	if m := dev.next(t); string(m.Payload()) != "survives" {
		t.Fatalf("after the restart: %s %s", m.Topic(), m.Payload())
	}
	awaitDevice(t, ts, "c2d-dev", "without queued messages", func(d registry.Device) bool { return d.CloudToDeviceMessageCount == 0 })
	dev.Disconnect(50)

	// The queue holds 50 waiting messages.
	hubDevice(t, ts, "c2d-full")
	for i := range 50 {
		if res := callHub(t, ts, http.MethodPost, "/devices/c2d-full/messages/deviceBound", "x", nil); res.status != http.StatusOK {
			t.Fatalf("message %d: %d %s", i, res.status, res.body)
		}
	}
	_, stderr, err := runCLI(t, nil, "--data-dir", dir, "c2d", "send", "c2d-full", "--body", "one too many")
	if err == nil || !strings.Contains(err.Error(), "DeviceMaximumQueueDepthExceeded") || !strings.Contains(err.Error(), "403004") {
		t.Fatalf("51st message: %v (%s), want DeviceMaximumQueueDepthExceeded 403004", err, stderr)
	}
	if out := run("c2d", "purge", "c2d-full"); !strings.Contains(out, "Dropped 50 waiting messages") {
		t.Fatalf("c2d purge printed %q", out)
	}
}

// TestMethodInvokeCLI calls a direct method with `muster method invoke`
// on a device of a real server that answers over MQTT, and on one that is
// offline.
func TestMethodInvokeCLI(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	hubHost, key := hubDevice(t, ts, "meth-dev")
	hubDevice(t, ts, "meth-off")
	dev := dialC2DDevice(t, "ssl://"+lhLoopback(t, ts.ep.MQTTAddr), ts, hubHost, "meth-dev", key, false)
	tok := dev.Subscribe("$iothub/methods/POST/#", 0, func(c paho.Client, m paho.Message) {
		_, rid, _ := strings.Cut(m.Topic(), "/?$rid=")
		c.Publish("$iothub/methods/res/207/?$rid="+rid, 0, false, `{"got":`+string(m.Payload())+`}`)
	})
	if !tok.WaitTimeout(hubWait) || tok.Error() != nil {
		t.Fatalf("SUBSCRIBE methods: %v", tok.Error())
	}

	out, stderr, err := runCLI(t, nil, "--data-dir", dir, "method", "invoke", "meth-dev", "reboot", "--payload", `{"delay":5}`, "--timeout", "20s", "-o", "json")
	if err != nil {
		t.Fatalf("method invoke: %v\n%s", err, stderr)
	}
	res := decodeJSON[hubservice.MethodResult](t, out)
	var payload bytes.Buffer
	if err := json.Compact(&payload, res.Payload); err != nil || res.Status != 207 || payload.String() != `{"got":{"delay":5}}` {
		t.Fatalf("method invoke printed %s", out)
	}
	out, _, err = runCLI(t, nil, "--data-dir", dir, "method", "invoke", "meth-dev", "ping")
	if err != nil {
		t.Fatal(err)
	}
	checkRow(t, out, "Status", "207")
	checkRow(t, out, "Payload", `{"got":null}`)

	_, _, err = runCLI(t, nil, "--data-dir", dir, "method", "invoke", "meth-off", "reboot")
	if err == nil || !strings.Contains(err.Error(), "DeviceNotOnline") || !strings.Contains(err.Error(), "404103") {
		t.Fatalf("method on an offline device: %v, want DeviceNotOnline 404103", err)
	}
	for _, args := range [][]string{
		{"method", "invoke", "meth-dev", "m", "--payload", "{"},
		{"method", "invoke", "meth-dev", "m", "--timeout", "1s"},
		{"c2d", "send", "meth-dev"},
		{"c2d", "send", "meth-dev", "--body", "x", "--property", "novalue"},
		{"c2d", "send", "meth-dev", "--body", "x", "--expiry", "yesterday"},
	} {
		if _, _, err := runCLI(t, nil, append([]string{"--data-dir", dir}, args...)...); err == nil {
			t.Errorf("muster %s succeeded, want an error", strings.Join(args, " "))
		}
	}
}
