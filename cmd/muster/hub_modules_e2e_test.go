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

	"github.com/muster-iot/muster/internal/client/dpsclient"
	"github.com/muster-iot/muster/internal/client/hubservice"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
)

// deviceCredentialCall calls the hub's HTTPS API as the edge identity
// service does (hub-edge-protocol §4.9): with a device SAS token for
// sr={hub}/devices/{signer} signed with key, and api-version
// 2017-11-08-preview.
func deviceCredentialCall(t *testing.T, ts *testServer, hubHost, signer, key, method, path, body string, hdr map[string]string) (int, []byte) {
	t.Helper()
	raw, err := sas.DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	u := "https://" + lhLoopback(t, ts.ep.HTTPSAddr) + path + "?api-version=2017-11-08-preview"
	req, err := http.NewRequestWithContext(ctxT(t), method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	// identityd's token: sr={hub}%2Fdevices%2F{id}, a 30-second lifetime.
	req.Header.Set("Authorization", sas.Sign(hubHost+"/devices/"+signer, raw, "", time.Now().Add(30*time.Second)))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.roots, ServerName: hubHost}}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: hubWait}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, out
}

// connectModule connects to the server's MQTT listener as module
// deviceID/moduleID with a SAS token signed with the module's key.
func connectModule(t *testing.T, ts *testServer, hubHost, deviceID, moduleID, key string) *hubMQTT {
	t.Helper()
	raw, err := sas.DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &hubMQTT{msgs: make(chan paho.Message, 64)}
	opts := paho.NewClientOptions().AddBroker("ssl://" + lhLoopback(t, ts.ep.MQTTAddr)).
		SetTLSConfig(&tls.Config{RootCAs: ts.roots, ServerName: hubHost, MinVersion: tls.VersionTLS12}).
		SetClientID(deviceID + "/" + moduleID).
		SetUsername(hubHost + "/" + deviceID + "/" + moduleID + "/?api-version=2021-04-12&DeviceClientType=muster-e2e").
		SetPassword(sas.Sign(hubHost+"/devices/"+deviceID+"/modules/"+moduleID, raw, "", time.Now().Add(time.Hour))).
		SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(hubWait).SetKeepAlive(time.Minute).SetWriteTimeout(hubWait)
	c.Client = paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(hubWait) || tok.Error() != nil {
		t.Fatalf("CONNECT %s/%s: %v", deviceID, moduleID, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

// TestHubModulesEndToEnd provisions an IoT Edge device through DPS; the
// device creates a module with its own SAS token over HTTPS (as the edge
// identity service does), and the module connects over MQTTS with the
// key it was given: twin GET, reported PATCH, a desired patch made through
// the service API, an output message read back from /messages/events, and
// the module-only topic rules.
func TestHubModulesEndToEnd(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	ctx := ctxT(t)
	group, err := ts.svc.PutGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "edge-group", Common: enroll.Common{
		Attestation:  &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey},
		Capabilities: &enroll.Capabilities{IoTEdge: true},
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
		return res.AssignedHub, key
	}
	hubHost, edgeKey := register("edge-e2e")
	_, otherKey := register("edge-other")

	// The device creates its module with its own credential and gets the keys.
	status, body := deviceCredentialCall(t, ts, hubHost, "edge-e2e", edgeKey, http.MethodPut, "/devices/edge-e2e/modules/sensor",
		`{"moduleId":"sensor","managedBy":"IotEdge","deviceId":"edge-e2e","authentication":{"type":"sas"}}`, nil)
	var mod registry.Module
	if status != http.StatusOK || json.Unmarshal(body, &mod) != nil || mod.Authentication.SymmetricKey == nil || mod.Authentication.SymmetricKey.PrimaryKey == "" {
		t.Fatalf("PUT module with the device's token: %d %s", status, body)
	}
	status, body = deviceCredentialCall(t, ts, hubHost, "edge-e2e", edgeKey, http.MethodGet, "/devices/edge-e2e/modules", "", nil)
	var mods []registry.Module
	if status != http.StatusOK || json.Unmarshal(body, &mods) != nil || len(mods) != 3 {
		t.Fatalf("GET modules with the device's token: %d %s", status, body)
	}
	// Another edge device's token reaches neither the modules nor the keys.
	if status, body := deviceCredentialCall(t, ts, hubHost, "edge-other", otherKey, http.MethodGet, "/devices/edge-e2e/modules/sensor", "", nil); status != http.StatusUnauthorized {
		t.Fatalf("GET another device's module: %d %s", status, body)
	}
	if status, body := deviceCredentialCall(t, ts, hubHost, "edge-e2e", edgeKey, http.MethodPut, "/devices/edge-other/modules/x", `{}`, nil); status != http.StatusUnauthorized {
		t.Fatalf("PUT a module on another device: %d %s", status, body)
	}

	m := connectModule(t, ts, hubHost, "edge-e2e", "sensor", mod.Authentication.SymmetricKey.PrimaryKey)
	if codes := m.subscribe(t, "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#", "devices/edge-e2e/modules/sensor/inputs/#",
		"devices/edge-e2e/modules/other/inputs/#", "devices/edge-e2e/messages/devicebound/#"); !bytes.Equal(codes, []byte{0, 0, 0, 0x80, 0x80}) {
		t.Fatalf("SUBACK %v, want the module's own topics only", codes)
	}

	m.publish(t, "$iothub/twin/GET/?$rid=1", 0, "")
	if msg := m.next(t); msg.Topic() != "$iothub/twin/res/200/?$rid=1" || string(msg.Payload()) != `{"desired":{"$version":1},"reported":{"$version":1}}` {
		t.Fatalf("module twin GET: %s %s", msg.Topic(), msg.Payload())
	}
	m.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=2", 0, `{"state":"running"}`)
	if msg := m.next(t); msg.Topic() != "$iothub/twin/res/204/?$rid=2&$version=2" {
		t.Fatalf("module reported PATCH: %s %s", msg.Topic(), msg.Payload())
	}
	status, tw := hubAPI(t, ts, http.MethodGet, "/twins/edge-e2e/modules/sensor", "")
	props, _ := tw["properties"].(map[string]any)
	rep, _ := props["reported"].(map[string]any)
	if status != http.StatusOK || tw["moduleId"] != "sensor" || rep["state"] != "running" {
		t.Fatalf("GET module twin: %d %v", status, tw)
	}

	if status, _ := hubAPI(t, ts, http.MethodPatch, "/twins/edge-e2e/modules/sensor", `{"properties":{"desired":{"SendInterval":5}}}`); status != http.StatusOK {
		t.Fatalf("PATCH module twin: %d", status)
	}
	if msg := m.next(t); msg.Topic() != "$iothub/twin/PATCH/properties/desired/?$version=2" || string(msg.Payload()) != `{"SendInterval":5,"$version":2}` {
		t.Fatalf("module desired notification: %s %s", msg.Topic(), msg.Payload())
	}

	// A direct method to the module.
	m.subscribe(t, "$iothub/methods/POST/#")
	answer := make(chan hubCall, 1)
	go func() {
		answer <- callHub(t, ts, http.MethodPost, "/twins/edge-e2e/modules/sensor/methods", `{"methodName":"ping","payload":{"n":1},"responseTimeoutInSeconds":30}`, nil)
	}()
	req := m.next(t)
	rid, ok := strings.CutPrefix(req.Topic(), "$iothub/methods/POST/ping/?$rid=")
	if !ok || string(req.Payload()) != `{"n":1}` {
		t.Fatalf("method request %s %s", req.Topic(), req.Payload())
	}
	m.publish(t, "$iothub/methods/res/200/?$rid="+rid, 0, `{"pong":true}`)
	select {
	case res := <-answer:
		if res.status != http.StatusOK || string(res.body) != `{"status":200,"payload":{"pong":true}}` {
			t.Fatalf("method answer %d %s", res.status, res.body)
		}
	case <-time.After(hubWait):
		t.Fatal("no method answer")
	}
	if res := callHub(t, ts, http.MethodPost, "/twins/edge-e2e/modules/ghost/methods", `{"methodName":"ping"}`, nil); res.status != http.StatusNotFound ||
		res.header.Get("iothub-errorcode") != "ModuleNotFound" {
		t.Fatalf("method to a missing module: %d %s", res.status, res.body)
	}

	m.publish(t, "devices/edge-e2e/modules/sensor/messages/events/%24.on=temperatureOutput&%24.mid=out-1&%24.ct=application%2Fjson&alert=high/", 1, `{"t":31}`)
	hub, err := hubservice.New(hubservice.Options{ConnectionString: ts.ep.HubConnectionString, Server: lhLoopback(t, ts.ep.HTTPSAddr), RootCAs: ts.roots})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.CloseIdleConnections()
	msgs, _, err := hub.ReadEvents(ctx, hubservice.EventsQuery{DeviceID: "edge-e2e", ModuleID: "sensor", Wait: hubWait})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages of the module, want 1: %+v", len(msgs), msgs)
	}
	ev := msgs[0]
	if ev.ModuleID != "sensor" || string(ev.Body) != `{"t":31}` || ev.SystemProperties["iothub-outputname"] != "temperatureOutput" ||
		ev.SystemProperties["iothub-connection-module-id"] != "sensor" || ev.SystemProperties["message-id"] != "out-1" || ev.Properties["alert"] != "high" {
		t.Fatalf("module output message %+v", ev)
	}
}
