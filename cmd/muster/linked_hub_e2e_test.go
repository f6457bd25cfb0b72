package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/client/dpsclient"
	"github.com/muster-iot/muster/internal/config"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/hubclient"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/sas"
)

// remoteHubName is server B's host name: its hub's name, and the name its
// server certificate carries. It is never resolved: clients dial loopback.
const remoteHubName = "hub-b.localhost"

// lhLoopback is 127.0.0.1 with the port of an endpoint ("host:port").
func lhLoopback(t *testing.T, endpoint string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		t.Fatalf("endpoint %q: %v", endpoint, err)
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// lhHubClient returns a service API client of a test server's hub.
func lhHubClient(t *testing.T, ts *testServer) *hubclient.Client {
	t.Helper()
	c, err := hubclient.New(hubclient.Options{ConnectionString: ts.ep.HubConnectionString, Address: lhLoopback(t, ts.ep.HTTPSAddr), RootCAs: ts.roots})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// lhDevice GETs /devices/{id} from a test server's hub API with its
// iothubowner connection string; it returns the status and the Device.
func lhDevice(t *testing.T, ts *testServer, id string) (int, map[string]any) {
	t.Helper()
	cs, err := sas.ParseConnectionString(ts.ep.HubConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	key, err := sas.DecodeKey(cs.SharedAccessKey)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, "https://"+lhLoopback(t, ts.ep.HTTPSAddr)+"/devices/"+id+"?api-version=2021-04-12", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", sas.Sign(cs.HostName, key, cs.SharedAccessKeyName, time.Now().Add(time.Hour)))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.roots, ServerName: cs.HostName}}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &d); err != nil {
			t.Fatalf("device %s: %v", body, err)
		}
	}
	return res.StatusCode, d
}

// TestLinkedRemoteHub runs two real servers: A links B's hub as a remote
// hub. A device enrolled on A with static allocation to B is created in B
// with its key and initial twin; moving it back to A's own hub migrates its
// twin out of B and deletes it there.
func TestLinkedRemoteHub(t *testing.T) {
	b := startServer(t, t.TempDir(), func(c *config.Server) { c.Hostnames = []string{remoteHubName} })
	a := startServer(t, t.TempDir(), func(c *config.Server) {
		c.LinkedHubs = []config.LinkedHub{{
			HostName: remoteHubName, ConnectionString: b.ep.HubConnectionString,
			Address: lhLoopback(t, b.ep.HTTPSAddr), CAFile: b.ep.CACertFile,
		}}
	})
	ctx := ctxT(t)
	const regID = "remote-dev-1"
	e, err := a.svc.PutEnrollment(ctx, &enroll.IndividualEnrollment{RegistrationID: regID, Common: enroll.Common{
		Attestation:      &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey},
		AllocationPolicy: enroll.AllocationStatic, IoTHubs: []string{remoteHubName},
		InitialTwin: &enroll.InitialTwin{Tags: json.RawMessage(`{"site":"plant-b","fleet":{"ring":2}}`),
			Properties: &enroll.InitialTwinProperties{Desired: json.RawMessage(`{"interval":15}`)}},
	}}, "")
	if err != nil {
		t.Fatal(err)
	}
	dev := dpsclient.Device{RegistrationID: regID, Credential: dpsclient.Credential{SymmetricKey: e.Attestation.SymmetricKey.PrimaryKey}}
	res := mustRegister(t, a.client(t, "https"), dev)
	if res.AssignedHub != remoteHubName || res.DeviceID != regID {
		t.Fatalf("registration = %+v, want assigned to %s", res, remoteHubName)
	}

	// B's hub API has the identity with the enrollment's keys ...
	status, d := lhDevice(t, b, regID)
	if status != http.StatusOK {
		t.Fatalf("GET /devices/%s on B: %d", regID, status)
	}
	auth, _ := d["authentication"].(map[string]any)
	keys, _ := auth["symmetricKey"].(map[string]any)
	if auth["type"] != "sas" || keys["primaryKey"] != e.Attestation.SymmetricKey.PrimaryKey || keys["secondaryKey"] != e.Attestation.SymmetricKey.SecondaryKey || d["status"] != "enabled" {
		t.Errorf("device on B = %v", d)
	}
	// ... and its initial twin.
	twinB, err := lhHubClient(t, b).DeviceTwin(ctx, regID)
	if err != nil || twinB == nil {
		t.Fatalf("twin on B: %v, %v", twinB, err)
	}
	want := [2]string{`{"fleet":{"ring":2},"site":"plant-b"}`, `{"interval":15}`}
	if diff := cmp.Diff(want, [2]string{lhCanon(t, twinB.Tags), lhCanon(t, twinB.Desired)}); diff != "" {
		t.Errorf("twin on B (-want +got):\n%s", diff)
	}
	// A's own hub does not have it.
	if status, _ := lhDevice(t, a, regID); status != http.StatusNotFound {
		t.Errorf("GET /devices/%s on A: %d, want 404", regID, status)
	}

	// Move the device to A's in-process hub: its twin migrates and B forgets it.
	e.AllocationPolicy, e.IoTHubs = enroll.AllocationStatic, []string{"localhost"}
	if _, err := a.svc.PutEnrollment(ctx, e, e.ETag); err != nil {
		t.Fatal(err)
	}
	res = mustRegister(t, a.client(t, "https"), dev)
	if res.AssignedHub != "localhost" || res.Substatus != provision.SubstatusDeviceDataMigrated {
		t.Fatalf("re-registration = %+v, want localhost with deviceDataMigrated", res)
	}
	twinA, err := lhHubClient(t, a).DeviceTwin(ctx, regID)
	if err != nil || twinA == nil {
		t.Fatalf("twin on A: %v, %v", twinA, err)
	}
	if diff := cmp.Diff(want, [2]string{lhCanon(t, twinA.Tags), lhCanon(t, twinA.Desired)}); diff != "" {
		t.Errorf("migrated twin on A (-want +got):\n%s", diff)
	}
	if status, _ := lhDevice(t, b, regID); status != http.StatusNotFound {
		t.Errorf("GET /devices/%s on B after the move: %d, want 404", regID, status)
	}
	if twin, err := lhHubClient(t, b).DeviceTwin(context.Background(), regID); err != nil || twin != nil {
		t.Errorf("twin on B after the move: %v, %v; want none", twin, err)
	}
}

// lhCanon re-encodes JSON with sorted keys.
func lhCanon(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
