package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	cmqtt "github.com/wind-c/comqtt/v2/mqtt"
	"github.com/wind-c/comqtt/v2/mqtt/packets"

	"github.com/muster-iot/muster/internal/provision"
)

const scope = "0ne00000001"

// dpsEnv is a Server on a fake DPS behind a loopback TLS listener.
type dpsEnv struct {
	pki    *testPKI
	dps    *fakeDPS
	srv    *Server
	broker string
	served <-chan error
}

func newDPSEnv(t *testing.T) *dpsEnv {
	t.Helper()
	e := &dpsEnv{pki: newTestPKI(t), dps: &fakeDPS{}}
	e.srv = newTestServer(t, e.dps, nil)
	addr, served := serveTLS(t, e.srv, e.pki.serverTLS())
	e.broker, e.served = "ssl://"+addr, served
	return e
}

// device connects a SAS (or, with x509, certificate) device and subscribes
// it to the DPS response topic.
func (e *dpsEnv) device(t *testing.T, regID string, x509 bool) *pahoClient {
	t.Helper()
	cc := clientConfig{broker: e.broker, tls: e.pki.clientTLS(x509), clientID: regID, username: dpsUsername(scope, regID)}
	if !x509 {
		cc.password = "SharedAccessSignature sr=" + scope + "%2Fregistrations%2F" + regID + "&sig=abc&se=1900000000&skn=registration"
	}
	pc, rc := connectPaho(t, cc)
	if rc != 0 {
		t.Fatalf("CONNECT refused with 0x%02x", rc)
	}
	if got := pc.subscribe(t, map[string]byte{dpsResponseFilter: 1}); got[dpsResponseFilter] != 1 {
		t.Fatalf("SUBACK %v, want QoS 1 granted", got)
	}
	return pc
}

func TestConnectUsernames(t *testing.T) {
	e := newDPSEnv(t)
	tests := []struct {
		name     string
		username string
		want     byte
	}{
		{"node", dpsUsername(scope, "dev1"), 0},
		{"python urlencoded query", scope + "/registrations/dev1/api-version=2019-03-31&ClientVersion=azure-iot-device%2F2.12.0", 0},
		{"c raw client version", scope + "/registrations/dev1/api-version=2021-06-01&ClientVersion=1.15.0 (native; Linux; x86_64)", 0},
		{"embedded c without ClientVersion", scope + "/registrations/dev1/api-version=2019-03-31", 0},
		{"unknown parameters", scope + "/registrations/dev1/model-id=x&api-version=2019-03-31&foo", 0},
		{"empty registration id", scope + "/registrations//api-version=2019-03-31", 5},
		{"no api-version", scope + "/registrations/dev1/ClientVersion=1", 5},
		{"no parameters", scope + "/registrations/dev1", 5},
		{"hub device username", "myhub.azure-devices.net/dev1/?api-version=2021-04-12&DeviceClientType=x", 5},
		{"hub module named like dps", "myhub/registrations/mod1/?api-version=2021-04-12", 5},
		{"garbage", "\x01\x02", 5},
		{"empty", "", 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc, rc := connectPaho(t, clientConfig{broker: e.broker, tls: e.pki.clientTLS(false), clientID: "dev1", username: tc.username, password: "sas"})
			if rc != tc.want {
				t.Fatalf("CONNACK return code 0x%02x, want 0x%02x", rc, tc.want)
			}
			if (pc != nil) != (tc.want == 0) {
				t.Fatalf("client connected = %v, want %v", pc != nil, tc.want == 0)
			}
		})
	}
}

func TestSubscribeGrants(t *testing.T) {
	e := newDPSEnv(t)
	pc, _ := connectPaho(t, clientConfig{broker: e.broker, tls: e.pki.clientTLS(false), clientID: "dev1", username: dpsUsername(scope, "dev1"), password: "sas"})
	tests := []struct {
		name    string
		filters map[string]byte
		want    map[string]byte
	}{
		{"response filter at QoS 1", map[string]byte{dpsResponseFilter: 1}, map[string]byte{dpsResponseFilter: 1}},
		{"response filter at QoS 2 is granted 1", map[string]byte{dpsResponseFilter: 2}, map[string]byte{dpsResponseFilter: 1}},
		{"response filter at QoS 0", map[string]byte{dpsResponseFilter: 0}, map[string]byte{dpsResponseFilter: 0}},
		{"other filters refused", map[string]byte{
			"#":                                   1,
			"$dps/registrations/res/202/#":        1,
			"$dps/registrations/#":                1,
			"devices/dev1/messages/devicebound/#": 1,
			"$SYS/#":                              0,
			"$iothub/twin/res/#":                  0,
		}, map[string]byte{
			"#":                                   0x80,
			"$dps/registrations/res/202/#":        0x80,
			"$dps/registrations/#":                0x80,
			"devices/dev1/messages/devicebound/#": 0x80,
			"$SYS/#":                              0x80,
			"$iothub/twin/res/#":                  0x80,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, pc.subscribe(t, tc.filters)); diff != "" {
				t.Errorf("SUBACK return codes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRegisterAnswers202(t *testing.T) {
	e := newDPSEnv(t)
	pc := e.device(t, "dev1", false)
	pc.publish(t, "$dps/registrations/PUT/iotdps-register/?$rid=abc", 1, []byte(`{"registrationId":"dev1","payload":{"model":"m1"}}`))
	m := pc.next(t)
	if got, want := m.Topic(), "$dps/registrations/res/202/?$rid=abc&retry-after=3"; got != want {
		t.Errorf("response topic %q, want %q", got, want)
	}
	if m.Qos() != 1 {
		t.Errorf("response QoS %d, want 1", m.Qos())
	}
	var got provision.OperationStatus
	if err := json.Unmarshal(m.Payload(), &got); err != nil {
		t.Fatalf("response payload %q: %v", m.Payload(), err)
	}
	if diff := cmp.Diff(*assigning("dev1"), got); diff != "" {
		t.Errorf("response body (-want +got):\n%s", diff)
	}
	reqs := e.dps.registerRequests()
	if len(reqs) != 1 {
		t.Fatalf("DPS got %d register requests, want 1", len(reqs))
	}
	req := reqs[0]
	if !strings.HasPrefix(req.RemoteAddr, "127.0.0.1:") {
		t.Errorf("RemoteAddr %q, want 127.0.0.1:port", req.RemoteAddr)
	}
	req.RemoteAddr = ""
	want := provision.RegisterRequest{
		IDScope: scope, RegistrationID: "dev1", BodyRegistrationID: "dev1",
		SAS:     "SharedAccessSignature sr=" + scope + "%2Fregistrations%2Fdev1&sig=abc&se=1900000000&skn=registration",
		Payload: json.RawMessage(`{"model":"m1"}`), Protocol: "mqtt",
	}
	if diff := cmp.Diff(want, req); diff != "" {
		t.Errorf("RegisterRequest (-want +got):\n%s", diff)
	}
}

func TestRegisterBodies(t *testing.T) {
	e := newDPSEnv(t)
	pc := e.device(t, "dev1", false)
	tests := []struct {
		name       string
		body       string
		wantStatus int
		want       *provision.RegisterRequest // body fields only; nil when DPS must not be asked
	}{
		{"csharp empty payload", "", 202, &provision.RegisterRequest{}},
		{"python payload null", `{"payload":null,"registrationId":"dev1"}`, 202, &provision.RegisterRequest{BodyRegistrationID: "dev1"}},
		{"node without payload", `{"registrationId":"dev1"}`, 202, &provision.RegisterRequest{BodyRegistrationID: "dev1"}},
		{"csharp payload only", `{"payload":{"a":[1,2]}}`, 202, &provision.RegisterRequest{Payload: json.RawMessage(`{"a":[1,2]}`)}},
		{"different body registration id goes to DPS", `{"registrationId":"other"}`, 202, &provision.RegisterRequest{BodyRegistrationID: "other"}},
		{"tpm", `{"registrationId":"dev1","tpm":{"endorsementKey":"ek"}}`, 202, &provision.RegisterRequest{BodyRegistrationID: "dev1", HasTPM: true}},
		{"whitespace", " \n", 202, &provision.RegisterRequest{}},
		{"invalid json", `{"registrationId":`, 400, nil},
		{"not an object", `["dev1"]`, 400, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.dps.registerRequests())
			rid := fmt.Sprint(i + 1)
			pc.publish(t, "$dps/registrations/PUT/iotdps-register/?$rid="+rid, 1, []byte(tc.body))
			m := pc.next(t)
			wantTopic := fmt.Sprintf("$dps/registrations/res/%d/?$rid=%s", tc.wantStatus, rid)
			if tc.wantStatus == 202 {
				wantTopic += "&retry-after=3"
			}
			if m.Topic() != wantTopic {
				t.Errorf("response topic %q, want %q (payload %s)", m.Topic(), wantTopic, m.Payload())
			}
			reqs := e.dps.registerRequests()
			if tc.want == nil {
				if len(reqs) != before {
					t.Errorf("DPS was asked about an invalid body")
				}
				var body provision.ErrorBody
				if err := json.Unmarshal(m.Payload(), &body); err != nil || body.ErrorCode != 400004 {
					t.Errorf("error body %s (%v), want errorCode 400004", m.Payload(), err)
				}
				return
			}
			if len(reqs) != before+1 {
				t.Fatalf("DPS got %d new requests, want 1", len(reqs)-before)
			}
			got := reqs[len(reqs)-1]
			got = provision.RegisterRequest{BodyRegistrationID: got.BodyRegistrationID, Payload: got.Payload, HasTPM: got.HasTPM}
			if diff := cmp.Diff(*tc.want, got); diff != "" {
				t.Errorf("body fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOperationStatusPoll(t *testing.T) {
	e := newDPSEnv(t)
	created := fixedNow.Add(-time.Minute)
	e.dps.poll = func(req provision.OperationRequest) (*provision.OperationStatus, error) {
		if req.OperationID != "4.d0a671905ea5b2c8/é+x y" {
			return nil, &provision.Error{Status: 404, Code: 404201, Message: "Operation not found"}
		}
		return &provision.OperationStatus{OperationID: req.OperationID, Status: provision.StatusAssigned,
			RegistrationState: &provision.DeviceRegistrationResult{
				RegistrationID: req.RegistrationID, CreatedDateTimeUTC: &created, AssignedHub: "hub.example", DeviceID: "dev1",
				Status: provision.StatusAssigned, Substatus: provision.SubstatusInitialAssignment,
				Payload: json.RawMessage(`{"greeting":"grüß dich 🙂"}`),
			}}, nil
	}
	pc := e.device(t, "dev1", false)
	pc.publish(t, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%7Bx%7D&operationId=4.d0a671905ea5b2c8%2F%C3%A9%2Bx%20y", 1, []byte(" "))
	m := pc.next(t)
	if got, want := m.Topic(), "$dps/registrations/res/200/?$rid=%7Bx%7D"; got != want {
		t.Errorf("response topic %q, want %q", got, want)
	}
	for i, c := range m.Payload() {
		if c >= 0x80 {
			t.Fatalf("payload byte %d is not ASCII: %s", i, m.Payload())
		}
	}
	if !strings.Contains(string(m.Payload()), `gr\u00fc\u00df dich \ud83d\ude42`) {
		t.Errorf("payload %s does not carry the escaped greeting", m.Payload())
	}
	var got provision.OperationStatus
	if err := json.Unmarshal(m.Payload(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != provision.StatusAssigned || got.RegistrationState == nil || got.RegistrationState.DeviceID != "dev1" {
		t.Errorf("response %+v, want assigned dev1", got)
	}
	var p struct{ Greeting string }
	if err := json.Unmarshal(got.RegistrationState.Payload, &p); err != nil || p.Greeting != "grüß dich 🙂" {
		t.Errorf("payload greeting %q (%v)", p.Greeting, err)
	}
	polls := e.dps.pollRequests()
	if len(polls) != 1 || polls[0].RegistrationID != "dev1" || polls[0].IDScope != scope || polls[0].Protocol != "mqtt" {
		t.Errorf("poll requests %+v", polls)
	}

	t.Run("missing operationId", func(t *testing.T) {
		pc.publish(t, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=9", 1, nil)
		m := pc.next(t)
		if m.Topic() != "$dps/registrations/res/400/?$rid=9" {
			t.Errorf("response topic %q", m.Topic())
		}
		if n := len(e.dps.pollRequests()); n != 1 {
			t.Errorf("DPS got %d polls, want 1", n)
		}
	})
}

func TestErrorAnswers(t *testing.T) {
	e := newDPSEnv(t)
	tests := []struct {
		name      string
		err       error
		wantTopic string
		wantBody  provision.ErrorBody
	}{
		{"unauthorized", provision.ErrUnauthorized, "$dps/registrations/res/401/?$rid=r1",
			provision.ErrorBody{ErrorCode: 401002, Message: "Unauthorized", TimestampUTC: fixedNow}},
		{"not found", provision.ErrNotFound, "$dps/registrations/res/404/?$rid=r1",
			provision.ErrorBody{ErrorCode: 404201, Message: "Registration not found", TimestampUTC: fixedNow}},
		{"throttled", &provision.Error{Status: 429, Code: 429001, Message: "Too many requests", RetryAfter: 7}, "$dps/registrations/res/429/?$rid=r1&retry-after=7",
			provision.ErrorBody{ErrorCode: 429001, Message: "Too many requests", TimestampUTC: fixedNow}},
		{"internal error without retry", errors.New("database is on fire"), "$dps/registrations/res/500/?$rid=r1&retry-after=3",
			provision.ErrorBody{ErrorCode: 500000, Message: "Internal error", TimestampUTC: fixedNow}},
		{"wrapped device error", fmt.Errorf("register: %w", provision.ErrTPMUnsupported), "$dps/registrations/res/400/?$rid=r1",
			provision.ErrorBody{ErrorCode: 400002, Message: "TPM attestation is not supported by this service", TimestampUTC: fixedNow}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.dps.mu.Lock()
			e.dps.register = func(provision.RegisterRequest) (*provision.OperationStatus, error) { return nil, tc.err }
			e.dps.mu.Unlock()
			pc := e.device(t, "dev1", false)
			pc.publish(t, "$dps/registrations/PUT/iotdps-register/?$rid=r1", 1, []byte(`{"registrationId":"dev1"}`))
			m := pc.next(t)
			if m.Topic() != tc.wantTopic {
				t.Errorf("response topic %q, want %q", m.Topic(), tc.wantTopic)
			}
			var got provision.ErrorBody
			if err := json.Unmarshal(m.Payload(), &got); err != nil {
				t.Fatalf("error body %q: %v", m.Payload(), err)
			}
			if len(got.TrackingID) != 36 {
				t.Errorf("trackingId %q is not a UUID", got.TrackingID)
			}
			got.TrackingID = ""
			if diff := cmp.Diff(tc.wantBody, got); diff != "" {
				t.Errorf("error body (-want +got):\n%s", diff)
			}
		})
	}
}

// TestResponsesGoOnlyToRequester: client A, subscribed to the same filter,
// never sees client B's response. A's own request and response afterwards
// are the barrier: anything sent to A before would have arrived first.
func TestResponsesGoOnlyToRequester(t *testing.T) {
	e := newDPSEnv(t)
	a := e.device(t, "dev-a", false)
	b := e.device(t, "dev-b", false)
	b.publish(t, "$dps/registrations/PUT/iotdps-register/?$rid=b1", 1, []byte(`{"registrationId":"dev-b"}`))
	if m := b.next(t); m.Topic() != "$dps/registrations/res/202/?$rid=b1&retry-after=3" {
		t.Fatalf("B got %q", m.Topic())
	}
	a.publish(t, "$dps/registrations/PUT/iotdps-register/?$rid=a1", 1, []byte(`{"registrationId":"dev-a"}`))
	m := a.next(t)
	if m.Topic() != "$dps/registrations/res/202/?$rid=a1&retry-after=3" || !strings.Contains(string(m.Payload()), `"op-dev-a"`) {
		t.Fatalf("A's first message is %q %s, want its own response", m.Topic(), m.Payload())
	}
	select {
	case m := <-b.msgs:
		t.Fatalf("B got an extra message %q", m.Topic())
	default:
	}
}

// TestSameClientIDNoTakeover: DPS CONNECTs are unauthenticated, so a second
// connection with the same client ID must not take the first one over.
func TestSameClientIDNoTakeover(t *testing.T) {
	e := newDPSEnv(t)
	first := e.device(t, "dev1", false)
	second := e.device(t, "dev1", false)
	for _, pc := range []*pahoClient{first, second} {
		pc.publish(t, "$dps/registrations/PUT/iotdps-register/?$rid=1", 1, nil)
		if m := pc.next(t); m.Topic() != "$dps/registrations/res/202/?$rid=1&retry-after=3" {
			t.Fatalf("response topic %q", m.Topic())
		}
	}
	if !first.IsConnectionOpen() || !second.IsConnectionOpen() {
		t.Fatal("a DPS connection was taken over")
	}
}

func TestPeerCertificateChainReachesDPS(t *testing.T) {
	e := newDPSEnv(t)
	pc := e.device(t, "x509-device", true)
	pc.publish(t, "$dps/registrations/PUT/iotdps-register/?$rid=1", 1, []byte(`{"registrationId":"x509-device"}`))
	pc.next(t)
	reqs := e.dps.registerRequests()
	if len(reqs) != 1 {
		t.Fatalf("%d register requests", len(reqs))
	}
	checkChain(t, reqs[0], e.pki)
}

func checkChain(t *testing.T, req provision.RegisterRequest, p *testPKI) {
	t.Helper()
	if req.SAS != "" {
		t.Errorf("SAS %q, want none", req.SAS)
	}
	var got, want [][]byte
	for _, c := range req.Chain {
		got = append(got, c.Raw)
	}
	for _, c := range p.chain {
		want = append(want, c.Raw)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chain DER (-want +got):\n%s", diff)
	}
}

func TestWebSocket(t *testing.T) {
	p := newTestPKI(t)
	dps := &fakeDPS{}
	srv := newTestServer(t, dps, nil)
	mux := http.NewServeMux()
	mux.Handle("GET /$iothub/websocket", srv.WebSocketHandler())
	mux.Handle("GET /", srv.WebSocketHandler())
	ts := httptest.NewUnstartedServer(mux)
	ts.TLS = p.serverTLS()
	ts.StartTLS()
	t.Cleanup(ts.Close)
	t.Cleanup(func() { srv.Close() }) // runs before ts.Close: ends the hijacked connections

	for _, path := range []string{"/$iothub/websocket", "/"} {
		t.Run(path, func(t *testing.T) {
			before := len(dps.registerRequests())
			pc, rc := connectPaho(t, clientConfig{broker: "wss://" + ts.Listener.Addr().String() + path, tls: p.clientTLS(true),
				clientID: "x509-device", username: dpsUsername(scope, "x509-device")})
			if rc != 0 {
				t.Fatalf("CONNACK 0x%02x", rc)
			}
			if got := pc.subscribe(t, map[string]byte{dpsResponseFilter: 1}); got[dpsResponseFilter] != 1 {
				t.Fatalf("SUBACK %v", got)
			}
			pc.publish(t, "$dps/registrations/PUT/iotdps-register/?$rid=ws", 1, []byte(`{"registrationId":"x509-device"}`))
			if m := pc.next(t); m.Topic() != "$dps/registrations/res/202/?$rid=ws&retry-after=3" {
				t.Errorf("response topic %q", m.Topic())
			}
			reqs := dps.registerRequests()
			if len(reqs) != before+1 {
				t.Fatalf("%d new register requests", len(reqs)-before)
			}
			checkChain(t, reqs[len(reqs)-1], p)
		})
	}

	t.Run("without the mqtt subprotocol", func(t *testing.T) {
		client := ts.Client()
		client.Transport.(*http.Transport).TLSClientConfig = p.clientTLS(false)
		req, err := http.NewRequest(http.MethodGet, ts.URL+"/$iothub/websocket", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		req.Header.Set("Sec-WebSocket-Protocol", "AMQPWSB10")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
	})
}

func TestCloseDisconnectsClients(t *testing.T) {
	p := newTestPKI(t)
	srv := newTestServer(t, &fakeDPS{}, nil)
	addr, served := serveTLS(t, srv, p.serverTLS())
	pc, _ := connectPaho(t, clientConfig{broker: "ssl://" + addr, tls: p.clientTLS(false), clientID: "dev1", username: dpsUsername(scope, "dev1"), password: "sas"})
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-pc.lost:
	case <-time.After(waitLimit):
		t.Fatal("client still connected after Close")
	}
	if err := waitDone(t, served); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	if err := srv.Serve(nil); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close returned %v, want ErrServerClosed", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestQoS1Inflight: a response waits in the client's inflight table until
// its PUBACK, with a packet identifier of its own.
func TestQoS1Inflight(t *testing.T) {
	srv := newTestServer(t, &fakeDPS{}, nil)
	rc, done := servePipe(t, srv, 4, nil, "pipe-peer")
	rc.send(connectPacket(4, "dev1", dpsUsername(scope, "dev1"), "sas"))
	if ack := rc.expect(packets.Connack); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
	}
	rc.send(subscribePacket(1, dpsResponseFilter, 1))
	if sa := rc.expect(packets.Suback); !cmp.Equal(sa.ReasonCodes, []byte{1}) {
		t.Fatalf("SUBACK %v", sa.ReasonCodes)
	}
	rc.send(publishPacket(7, "$dps/registrations/PUT/iotdps-register/?$rid=q", 1, ""))
	if ack := rc.expect(packets.Puback); ack.PacketID != 7 {
		t.Fatalf("PUBACK for %d, want 7", ack.PacketID)
	}
	resp := rc.expect(packets.Publish)
	if resp.FixedHeader.Qos != 1 || resp.PacketID == 0 || resp.TopicName != "$dps/registrations/res/202/?$rid=q&retry-after=3" {
		t.Fatalf("response QoS %d id %d topic %q", resp.FixedHeader.Qos, resp.PacketID, resp.TopicName)
	}
	cl := onlyClient(t, srv)
	if _, ok := cl.State.Inflight.Get(resp.PacketID); !ok {
		t.Errorf("response %d is not inflight before its PUBACK", resp.PacketID)
	}
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: resp.PacketID})
	if extra := rc.ping(); len(extra) != 0 {
		t.Errorf("unexpected packets %v", extra)
	}
	if n := cl.State.Inflight.Len(); n != 0 {
		t.Errorf("%d messages inflight after the PUBACK", n)
	}
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	if err := waitDone(t, done); err != nil {
		t.Errorf("ServeConn after DISCONNECT: %v", err)
	}
	if n := srv.broker.Clients.Len(); n != 0 {
		t.Errorf("%d broker clients remain", n)
	}
}

func onlyClient(t *testing.T, s *Server) *cmqtt.Client {
	t.Helper()
	all := s.broker.Clients.GetAll()
	if len(all) != 1 {
		t.Fatalf("%d broker clients, want 1", len(all))
	}
	for id, cl := range all {
		if !strings.HasPrefix(id, dpsClientIDPrefix) || !strings.HasSuffix(id, "/dev1") {
			t.Errorf("broker client ID %q", id)
		}
		return cl
	}
	return nil
}

func TestServeConnRemoteAddrAndRefusals(t *testing.T) {
	dps := &fakeDPS{}
	srv := newTestServer(t, dps, nil)

	t.Run("remote address reaches DPS", func(t *testing.T) {
		rc, _ := servePipe(t, srv, 4, nil, "192.0.2.7:4242")
		rc.send(connectPacket(4, "dev1", dpsUsername(scope, "dev1"), "sas"))
		rc.expect(packets.Connack)
		rc.send(subscribePacket(1, dpsResponseFilter, 1))
		rc.expect(packets.Suback)
		rc.send(publishPacket(0, "$dps/registrations/PUT/iotdps-register/?$rid=1", 0, "{}"))
		rc.expect(packets.Publish)
		reqs := dps.registerRequests()
		if len(reqs) == 0 || reqs[len(reqs)-1].RemoteAddr != "192.0.2.7:4242" {
			t.Errorf("requests %+v, want RemoteAddr 192.0.2.7:4242", reqs)
		}
	})

	t.Run("not authorized username", func(t *testing.T) {
		rc, done := servePipe(t, srv, 4, nil, "")
		rc.send(connectPacket(4, "dev1", "hub.example/dev1/?api-version=2021-04-12", "sas"))
		if ack := rc.expect(packets.Connack); ack.ReasonCode != 5 {
			t.Errorf("CONNACK 0x%02x, want 0x05", ack.ReasonCode)
		}
		rc.expectClosed()
		if err := waitDone(t, done); err == nil {
			t.Error("ServeConn returned nil for a refused CONNECT")
		}
	})

	t.Run("publish to another topic at QoS 1 disconnects", func(t *testing.T) {
		rc, _ := servePipe(t, srv, 4, nil, "")
		rc.send(connectPacket(4, "dev1", dpsUsername(scope, "dev1"), "sas"))
		rc.expect(packets.Connack)
		rc.send(publishPacket(3, "$dps/registrations/res/200/?$rid=1", 1, "{}"))
		rc.expectClosed(packets.Disconnect) // the library sends one even to MQTT 3.1.1 clients
	})

	t.Run("publish to another topic at QoS 0 is dropped", func(t *testing.T) {
		rc, _ := servePipe(t, srv, 4, nil, "")
		rc.send(connectPacket(4, "dev1", dpsUsername(scope, "dev1"), "sas"))
		rc.expect(packets.Connack)
		rc.send(subscribePacket(1, dpsResponseFilter, 1))
		rc.expect(packets.Suback)
		before := len(dps.registerRequests())
		rc.send(publishPacket(0, "devices/dev1/messages/events/", 0, "{}"))
		rc.send(publishPacket(0, "$dps/registrations/PUT/iotdps-register/", 0, "{}")) // no $rid
		if extra := rc.ping(); len(extra) != 0 {
			t.Errorf("unexpected packets %v", extra)
		}
		if n := len(dps.registerRequests()) - before; n != 0 {
			t.Errorf("DPS got %d requests", n)
		}
	})

	t.Run("QoS 2 publish closes the connection", func(t *testing.T) {
		rc, _ := servePipe(t, srv, 4, nil, "")
		rc.send(connectPacket(4, "dev1", dpsUsername(scope, "dev1"), "sas"))
		rc.expect(packets.Connack)
		rc.send(publishPacket(4, "$dps/registrations/PUT/iotdps-register/?$rid=1", 2, "{}"))
		rc.expectClosed()
	})

	t.Run("malformed MQTT 5 SUBSCRIBE", func(t *testing.T) {
		rc, done := servePipe(t, srv, 5, nil, "")
		rc.send(connectPacket(5, "dev1", dpsUsername(scope, "dev1"), "sas"))
		if ack := rc.expect(packets.Connack); ack.ReasonCode != 0 {
			t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
		}
		if _, err := rc.c.Write([]byte{0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00}); err != nil {
			t.Fatal(err)
		}
		rc.expectClosed(packets.Disconnect, packets.Suback)
		waitDone(t, done)
	})
}

// hubRealm is a minimal device realm: username {host}/{id}/?…, client ID =
// device ID, topics devices/{id}/….
type hubRealm struct {
	mu       sync.Mutex
	sessions map[string]*hubSession
	infos    []ConnectInfo
}

type hubSession struct {
	id     string
	peer   Peer
	msgs   chan Message
	closed chan error
}

func (h *hubRealm) Connect(_ context.Context, info ConnectInfo, p Peer) (Session, error) {
	parts := strings.Split(info.Username, "/")
	if info.Password == "panic" {
		panic("realm panics for " + info.ClientID)
	}
	if len(parts) != 3 || parts[1] != info.ClientID || info.Password != "hub-sas" {
		return nil, fmt.Errorf("bad credentials for %q", info.ClientID)
	}
	s := &hubSession{id: info.ClientID, peer: p, msgs: make(chan Message, 16), closed: make(chan error, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.infos = append(h.infos, info)
	h.sessions[info.ClientID] = s
	return s, nil
}

func (s *hubSession) Allow(topic string, write bool) bool {
	if write {
		return strings.HasPrefix(topic, "devices/"+s.id+"/messages/events/")
	}
	return topic == "devices/"+s.id+"/messages/devicebound/#"
}

func (s *hubSession) Publish(_ context.Context, m Message) error {
	if strings.Contains(m.Topic, "reject") {
		return errors.New("rejected by the test realm")
	}
	s.msgs <- m
	return nil
}

func (s *hubSession) Close(err error) { s.closed <- err }

// newFakeHubEnv is a Server with the fake hub realm behind a loopback TLS
// listener, and the broker URL of that listener.
func newFakeHubEnv(t *testing.T) (*testPKI, *hubRealm, *Server, string) {
	t.Helper()
	p := newTestPKI(t)
	hub := &hubRealm{sessions: map[string]*hubSession{}}
	srv := newTestServer(t, &fakeDPS{}, hub)
	addr, _ := serveTLS(t, srv, p.serverTLS())
	return p, hub, srv, "ssl://" + addr
}

func TestHubRealm(t *testing.T) {
	p, hub, _, broker := newFakeHubEnv(t)

	if _, rc := connectPaho(t, clientConfig{broker: broker, tls: p.clientTLS(false), clientID: "dev1", username: "hub.example/dev1/?api-version=2021-04-12", password: "wrong"}); rc != 5 {
		t.Fatalf("CONNACK 0x%02x for bad credentials, want 0x05", rc)
	}
	pc, rc := connectPaho(t, clientConfig{broker: broker, tls: p.clientTLS(true), clientID: "dev1", username: "hub.example/dev1/?api-version=2021-04-12", password: "hub-sas"})
	if rc != 0 {
		t.Fatalf("CONNACK 0x%02x", rc)
	}
	hub.mu.Lock()
	sess, info := hub.sessions["dev1"], hub.infos[0]
	hub.mu.Unlock()
	if len(info.PeerCertificates) != 2 || info.ProtocolVersion != 4 || !info.CleanSession || !strings.HasPrefix(info.RemoteAddr, "127.0.0.1:") {
		t.Errorf("ConnectInfo %+v", info)
	}
	got := pc.subscribe(t, map[string]byte{"devices/dev1/messages/devicebound/#": 1, "devices/dev2/messages/devicebound/#": 1, dpsResponseFilter: 1})
	want := map[string]byte{"devices/dev1/messages/devicebound/#": 1, "devices/dev2/messages/devicebound/#": 0x80, dpsResponseFilter: 0x80}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SUBACK (-want +got):\n%s", diff)
	}

	pc.publish(t, "devices/dev1/messages/events/a=1", 1, []byte("telemetry"))
	select {
	case m := <-sess.msgs:
		if diff := cmp.Diff(Message{Topic: "devices/dev1/messages/events/a=1", Payload: []byte("telemetry"), QoS: 1}, m); diff != "" {
			t.Errorf("message (-want +got):\n%s", diff)
		}
	case <-time.After(waitLimit):
		t.Fatal("the session got no message")
	}

	if err := sess.peer.Publish("devices/dev1/messages/devicebound/%24.mid=1", []byte("c2d"), 1); err != nil {
		t.Fatalf("Peer.Publish: %v", err)
	}
	if m := pc.next(t); m.Topic() != "devices/dev1/messages/devicebound/%24.mid=1" || string(m.Payload()) != "c2d" || m.Qos() != 1 {
		t.Errorf("C2D message %q %q QoS %d", m.Topic(), m.Payload(), m.Qos())
	}
	if err := sess.peer.Publish("devices/dev1/other", []byte("x"), 1); !errors.Is(err, ErrNotSubscribed) {
		t.Errorf("Publish without subscription: %v, want ErrNotSubscribed", err)
	}

	pc.Disconnect(50)
	select {
	case err := <-sess.closed:
		if err != nil {
			t.Errorf("Close(%v) after a clean DISCONNECT, want nil", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("session not closed")
	}
	if err := sess.peer.Publish("devices/dev1/messages/devicebound/x", nil, 1); !errors.Is(err, ErrClientGone) {
		t.Errorf("Publish after disconnect: %v, want ErrClientGone", err)
	}

	t.Run("refused publish disconnects", func(t *testing.T) {
		pc, _ := connectPaho(t, clientConfig{broker: broker, tls: p.clientTLS(false), clientID: "dev3", username: "hub.example/dev3/?api-version=1", password: "hub-sas"})
		hub.mu.Lock()
		sess := hub.sessions["dev3"]
		hub.mu.Unlock()
		pc.Publish("devices/dev3/messages/events/reject", 1, false, []byte("x"))
		select {
		case err := <-sess.closed:
			if err == nil {
				t.Error("Close(nil) after a refused publish, want an error")
			}
		case <-time.After(waitLimit):
			t.Fatal("session not closed")
		}
	})
}

// TestIdleConnectionGoroutines checks what an idle connection costs in
// goroutines: one, waiting for the next packet in the broker's read loop.
// The TLS handshake and the CONNECT phase ran on goroutines that have
// ended (so their deep stacks are gone), and the broker's write loop,
// which only broker-routed messages use, was never started.
func TestIdleConnectionGoroutines(t *testing.T) {
	p, _, _, broker := newFakeHubEnv(t)
	const n = 3
	for i := range n {
		id := fmt.Sprintf("idle%d", i)
		if _, rc := connectPaho(t, clientConfig{broker: broker, tls: p.clientTLS(false), clientID: id, username: "hub.example/" + id + "/?api-version=2021-04-12", password: "hub-sas"}); rc != 0 {
			t.Fatalf("CONNACK 0x%02x for %s", rc, id)
		}
	}
	want := map[string]int{
		"mqtt.(*Server).attachClient":      n,
		"mqtt.(*Client).WriteLoop":         0,
		"mqtt.(*Server).connectClient":     0,
		"mqtt.(*Server).handshakeAccepted": 0,
	}
	var got map[string]int
	deadline := time.Now().Add(waitLimit)
	for {
		got = countGoroutines(want)
		if cmp.Equal(want, got) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("goroutines whose stack holds each function (-want +got):\n%s", diff)
	}
}

// countGoroutines counts, for each key of funcs, the goroutines whose
// stack holds a frame of that function.
func countGoroutines(funcs map[string]int) map[string]int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	got := make(map[string]int, len(funcs))
	for _, g := range strings.Split(string(buf), "\n\n") {
		for f := range funcs {
			if strings.Contains(g, "/comqtt/v2/"+f+"(") || strings.Contains(g, "/internal/"+f+"(") {
				got[f]++
			}
		}
	}
	for f := range funcs {
		got[f] += 0
	}
	return got
}

// TestConnectPhasePanic checks that a panic during the CONNECT phase,
// which runs on a goroutine of its own, ends only that connection and is
// counted like any other connection panic.
func TestConnectPhasePanic(t *testing.T) {
	p, _, srv, broker := newFakeHubEnv(t)
	if _, rc := connectPaho(t, clientConfig{broker: broker, tls: p.clientTLS(false), clientID: "boom", username: "hub.example/boom/?api-version=2021-04-12", password: "panic"}); rc == 0 {
		t.Fatal("CONNACK accepted the connection whose realm panicked")
	}
	deadline := time.Now().Add(waitLimit)
	for srv.panics.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.panics.Swap(0); n != 1 {
		t.Fatalf("the server recovered %d panics, want 1", n)
	}
	if _, rc := connectPaho(t, clientConfig{broker: broker, tls: p.clientTLS(false), clientID: "dev1", username: "hub.example/dev1/?api-version=2021-04-12", password: "hub-sas"}); rc != 0 {
		t.Fatalf("CONNACK 0x%02x after the panic, want the server still serving", rc)
	}
}

func TestCloseSendsMQTT5Disconnect(t *testing.T) {
	srv := newTestServer(t, &fakeDPS{}, nil)
	rc, done := servePipe(t, srv, 5, nil, "")
	rc.send(connectPacket(5, "dev1", dpsUsername(scope, "dev1"), "sas"))
	rc.expect(packets.Connack)
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	if pk := rc.expect(packets.Disconnect); pk.ReasonCode != packets.ErrServerShuttingDown.Code {
		t.Errorf("DISCONNECT reason 0x%02x, want 0x8b", pk.ReasonCode)
	}
	rc.expectClosed()
	if err := waitDone(t, closed); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := waitDone(t, done); !errors.Is(err, ErrServerClosed) {
		t.Errorf("ServeConn returned %v, want ErrServerClosed", err)
	}
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"defaults", Options{}, ""},
		{"negative packet size", Options{MaxPacketSize: -1}, "MaxPacketSize -1 is negative"},
		{"packet size too large", Options{MaxPacketSize: 1 << 30}, "exceeds the MQTT maximum"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestMaxPacketSize(t *testing.T) {
	s, err := New(Options{Logger: testLogger(t), DPS: &fakeDPS{}, MaxPacketSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rc, _ := servePipe(t, s, 4, nil, "")
	rc.send(connectPacket(4, "dev1", dpsUsername(scope, "dev1"), ""))
	rc.expect(packets.Connack)
	rc.send(publishPacket(1, "$dps/registrations/PUT/iotdps-register/?$rid=1", 1, strings.Repeat("x", 200)))
	rc.expectClosed()
}
