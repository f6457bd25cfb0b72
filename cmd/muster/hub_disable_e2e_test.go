package main

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/muster-iot/muster/internal/sas"
)

// watchedHubClient connects device id to the server's hub like
// connectHub, and returns a channel that receives the error when the
// connection is lost.
func watchedHubClient(t *testing.T, ts *testServer, hubHost, id, key string) (paho.Client, <-chan error) {
	t.Helper()
	raw, err := sas.DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	lost := make(chan error, 1)
	opts := paho.NewClientOptions().AddBroker("ssl://" + lhLoopback(t, ts.ep.MQTTAddr)).
		SetTLSConfig(&tls.Config{RootCAs: ts.roots, ServerName: hubHost, MinVersion: tls.VersionTLS12}).
		SetClientID(id).
		SetUsername(hubHost + "/" + id + "/?api-version=2021-04-12&DeviceClientType=muster-e2e").
		SetPassword(sas.Sign(hubHost+"/devices/"+id, raw, "", time.Now().Add(time.Hour))).
		SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(hubWait).SetKeepAlive(time.Minute).SetWriteTimeout(hubWait).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(hubWait) || tok.Error() != nil {
		t.Fatalf("CONNECT %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, lost
}

// TestHubRevokedDeviceIsDropped checks that a disabled device is refused
// and a connected one is dropped, and likewise for a deleted device,
// through the hub service API of a real server, while another device
// stays connected.
func TestHubRevokedDeviceIsDropped(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	hubHost, keyOff := hubDevice(t, ts, "rv-disabled")
	_, keyGone := hubDevice(t, ts, "rv-deleted")
	_, keyStay := hubDevice(t, ts, "rv-stays")

	stay, stayLost := watchedHubClient(t, ts, hubHost, "rv-stays", keyStay)

	tests := []struct {
		name   string
		id     string
		key    string
		revoke func(t *testing.T)
	}{
		{"disabled", "rv-disabled", keyOff, func(t *testing.T) {
			got := callHub(t, ts, http.MethodGet, "/devices/rv-disabled", "", nil)
			var d map[string]any
			if got.status != http.StatusOK || json.Unmarshal(got.body, &d) != nil {
				t.Fatalf("GET /devices/rv-disabled: %d %s", got.status, got.body)
			}
			d["status"] = "disabled"
			body, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			res := callHub(t, ts, http.MethodPut, "/devices/rv-disabled", string(body),
				map[string]string{"Content-Type": "application/json", "If-Match": "*"})
			if res.status != http.StatusOK {
				t.Fatalf("PUT /devices/rv-disabled status disabled: %d %s", res.status, res.body)
			}
		}},
		{"deleted", "rv-deleted", keyGone, func(t *testing.T) {
			if res := callHub(t, ts, http.MethodDelete, "/devices/rv-deleted", "", nil); res.status != http.StatusNoContent && res.status != http.StatusOK {
				t.Fatalf("DELETE /devices/rv-deleted: %d %s", res.status, res.body)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, lost := watchedHubClient(t, ts, hubHost, tt.id, tt.key)
			tt.revoke(t)
			select {
			case err := <-lost:
				t.Logf("connection of %s lost: %v", tt.id, err)
			case <-time.After(hubWait):
				t.Fatalf("%s stayed connected for %v after the revocation", tt.id, hubWait)
			}
			if c.IsConnected() {
				t.Errorf("paho still reports %s connected", tt.id)
			}
			if again, rc := connectHub(t, ts, hubHost, tt.id, tt.key); again != nil || rc != 5 {
				t.Errorf("reconnect of %s: CONNACK %d, want 5 (not authorized)", tt.id, rc)
			}
		})
	}

	select {
	case err := <-stayLost:
		t.Fatalf("the unaffected device lost its connection: %v", err)
	default:
	}
	if tok := stay.Publish("devices/rv-stays/messages/events/", 1, false, `{"still":"here"}`); !tok.WaitTimeout(hubWait) || tok.Error() != nil {
		t.Fatalf("the unaffected device cannot publish: %v", tok.Error())
	}
}
