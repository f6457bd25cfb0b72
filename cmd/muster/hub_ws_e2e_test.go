package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/client/hubservice"
	"github.com/muster-iot/muster/internal/registry"
)

// TestHubOverWebSocket connects a device with its SAS token over MQTT over
// WebSockets (wss://…/$iothub/websocket, subprotocol mqtt) on the HTTPS
// listener of a real server, as the SDKs' MqttWs transports do: its
// telemetry reaches the built-in endpoint with its properties, it reads
// its twin and reports properties, and a cloud-to-device message reaches
// it.
func TestHubOverWebSocket(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	hubHost, key := hubDevice(t, ts, "ws-dev")
	if res := callHub(t, ts, http.MethodPatch, "/twins/ws-dev", `{"properties":{"desired":{"interval":7}}}`,
		map[string]string{"Content-Type": "application/json", "If-Match": "*"}); res.status != http.StatusOK {
		t.Fatalf("PATCH twin: %d %s", res.status, res.body)
	}
	url := "wss://" + lhLoopback(t, ts.ep.HTTPSAddr) + "/$iothub/websocket"
	dev := dialC2DDevice(t, url, ts, hubHost, "ws-dev", key, false)

	// Telemetry.
	if tok := dev.Publish("devices/ws-dev/messages/events/%24.ct=application%2Fjson&source=ws", 1, false, `{"temp":21}`); !tok.WaitTimeout(hubWait) || tok.Error() != nil {
		t.Fatalf("PUBLISH telemetry: %v", tok.Error())
	}
	svc, err := hubservice.New(hubservice.Options{ConnectionString: ts.ep.HubConnectionString, Server: lhLoopback(t, ts.ep.HTTPSAddr), RootCAs: ts.roots})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.CloseIdleConnections)
	msgs, _, err := svc.ReadEvents(ctxT(t), hubservice.EventsQuery{DeviceID: "ws-dev", Wait: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || string(msgs[0].Body) != `{"temp":21}` || msgs[0].Properties["source"] != "ws" || msgs[0].SystemProperties["content-type"] != "application/json" {
		t.Fatalf("telemetry read back: %+v", msgs)
	}

	// Twin GET and reported PATCH.
	dev.subscribe(t, "$iothub/twin/res/#")
	if tok := dev.Publish("$iothub/twin/GET/?$rid=1", 0, false, ""); !tok.WaitTimeout(hubWait) || tok.Error() != nil {
		t.Fatalf("PUBLISH twin GET: %v", tok.Error())
	}
	res := dev.next(t)
	var view struct {
		Desired map[string]any `json:"desired"`
	}
	if res.Topic() != "$iothub/twin/res/200/?$rid=1" || json.Unmarshal(res.Payload(), &view) != nil || view.Desired["interval"] != float64(7) {
		t.Fatalf("twin GET answer %s %s", res.Topic(), res.Payload())
	}
	if tok := dev.Publish("$iothub/twin/PATCH/properties/reported/?$rid=2", 0, false, `{"fw":"1.2"}`); !tok.WaitTimeout(hubWait) || tok.Error() != nil {
		t.Fatalf("PUBLISH reported: %v", tok.Error())
	}
	if res := dev.next(t); !strings.HasPrefix(res.Topic(), "$iothub/twin/res/204/?$rid=2&$version=") {
		t.Fatalf("reported PATCH answer %s %s", res.Topic(), res.Payload())
	}
	tw, err := svc.GetTwin(ctxT(t), "ws-dev")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(tw.Properties.Reported), `"fw":"1.2"`) {
		t.Fatalf("reported properties %s", tw.Properties.Reported)
	}

	// Cloud-to-device.
	dev.subscribe(t, "devices/ws-dev/messages/devicebound/#")
	if _, err := svc.SendCloudMessage(ctxT(t), "ws-dev", hubservice.CloudMessage{Body: []byte("over ws")}); err != nil {
		t.Fatal(err)
	}
	if m := dev.next(t); string(m.Payload()) != "over ws" {
		t.Fatalf("C2D %s %s", m.Topic(), m.Payload())
	}
	awaitDevice(t, ts, "ws-dev", "connected and without queued messages", func(d registry.Device) bool {
		return d.ConnectionState == registry.StateConnected && d.CloudToDeviceMessageCount == 0
	})
}
