package dpsclient

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/provision"
)

const testScope = "0ne00000001"

// Response bodies of the fake DPS.
const (
	bodyAssigning     = `{"operationId":"4.0123456789abcdef.op-1","status":"assigning"}`
	bodyAssigningPoll = `{"operationId":"4.0123456789abcdef.op-1","status":"assigning","registrationState":{"registrationId":"dev-1","status":"assigning"}}`
	bodyAssigned      = `{"operationId":"4.0123456789abcdef.op-1","status":"assigned","registrationState":{` +
		`"registrationId":"dev-1","createdDateTimeUtc":"2022-08-31T22:02:50.5163352Z","assignedHub":"hub1.example.net",` +
		`"deviceId":"dev-1","status":"assigned","substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2022-08-31T22:02:50.7370676Z",` +
		`"etag":"IjY5MDAzNTUyLTAwMDAtMDMwMC0wMDAwLTYzMGZkYThhMDAwMCI=","payload":{"k":"v"}}}`
	bodyFailed = `{"operationId":"4.0123456789abcdef.op-1","status":"failed","registrationState":{"registrationId":"dev-1",` +
		`"status":"failed","errorCode":400209,"errorMessage":"Custom allocation failed with status code: 401"}}`
	bodyDisabled   = `{"operationId":"4.0123456789abcdef.op-1","status":"disabled","registrationState":{"registrationId":"dev-1","status":"disabled"}}`
	bodyWeird      = `{"operationId":"4.0123456789abcdef.op-1","status":"Frozen"}`
	bodyNoHub      = `{"operationId":"4.0123456789abcdef.op-1","status":"assigned","registrationState":{"registrationId":"dev-1","status":"assigned","deviceId":"dev-1"}}`
	bodyNoOp       = `{"status":"assigning"}`
	bodyNoStatus   = `{"operationId":"x"}`
	bodyUnauth     = `{"errorCode":401002,"trackingId":"f40da7ba-8c91-4796-8fc3-89e1dfbdbe05","message":"Unauthorized","timestampUtc":"2019-03-15T19:43:02.7904455Z"}`
	bodyThrottled  = `{"errorCode":429001,"trackingId":"t-429","message":"Too many requests"}`
	bodyNotFound   = `{"errorCode":404201,"trackingId":"t-404","message":"Operation not found"}`
	bodyStringCode = `{"errorCode":"400004","message":"Bad request"}`
)

const opID = "4.0123456789abcdef.op-1"

func stateOf(t *testing.T, body string) *provision.DeviceRegistrationResult {
	t.Helper()
	var op provision.OperationStatus
	if err := json.Unmarshal([]byte(body), &op); err != nil {
		t.Fatalf("decode test body: %v", err)
	}
	return op.RegistrationState
}

func newKey(t *testing.T) (string, []byte) {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k), k
}

// newTestClient starts the fake on transport and returns a client for it
// whose waits are recorded instead of slept.
func newTestClient(t *testing.T, transport string, f *fakeDPS, mod func(*Options)) (*Client, *recorder, *testPKI) {
	t.Helper()
	p := newTestPKI(t, "x509-device-1")
	o := Options{
		IDScope:        testScope,
		Transport:      transport,
		UserAgent:      "muster-dpsclient/test 1",
		PollInterval:   250 * time.Millisecond,
		RequestTimeout: 5 * time.Second,
		MaxPolls:       10,
	}
	switch transport {
	case TransportHTTPS:
		o.Endpoint, o.RootCAs = f.startHTTPS(t)
	case TransportMQTT:
		o.Endpoint, o.RootCAs = f.startMQTT(t, p), p.pool
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	rec := &recorder{}
	c.sleep = rec.sleep
	return c, rec, p
}

var transports = []string{TransportHTTPS, TransportMQTT}

// TestRegisterScenarios runs the registration state machine against the
// same scripted answers over HTTPS and over MQTT.
func TestRegisterScenarios(t *testing.T) {
	type want struct {
		state  string // body whose registrationState is the expected result
		failed *FailedError
		status *StatusError
		is     error // sentinel the error must match
		kinds  []string
		waits  []time.Duration
	}
	tests := []struct {
		name     string
		steps    []step
		maxPolls int
		want     want
	}{
		{
			name:  "202 then polls then 200 assigned, Retry-After honoured and clamped",
			steps: []step{{202, "1", bodyAssigning}, {202, "0", bodyAssigningPoll}, {200, "", bodyAssigned}},
			want: want{state: bodyAssigned, kinds: []string{"register", "poll", "poll"},
				waits: []time.Duration{time.Second, MinWait}},
		},
		{
			name:  "no Retry-After waits PollInterval",
			steps: []step{{202, "", bodyAssigning}, {200, "", bodyAssigned}},
			want:  want{state: bodyAssigned, kinds: []string{"register", "poll"}, waits: []time.Duration{250 * time.Millisecond}},
		},
		{
			name:  "Retry-After above the maximum is clamped",
			steps: []step{{202, "3600", bodyAssigning}, {200, "", bodyAssigned}},
			want:  want{state: bodyAssigned, kinds: []string{"register", "poll"}, waits: []time.Duration{MaxWait}},
		},
		{
			name:  "assigned directly on register",
			steps: []step{{200, "", bodyAssigned}},
			want:  want{state: bodyAssigned, kinds: []string{"register"}},
		},
		{
			name:  "failed gives FailedError with the errorCode",
			steps: []step{{202, "0", bodyAssigning}, {200, "", bodyFailed}},
			want: want{failed: &FailedError{Status: "failed", ErrorCode: 400209, Message: "Custom allocation failed with status code: 401"},
				kinds: []string{"register", "poll"}, waits: []time.Duration{MinWait}},
		},
		{
			name:  "disabled gives FailedError",
			steps: []step{{202, "0", bodyAssigning}, {200, "", bodyDisabled}},
			want: want{failed: &FailedError{Status: "disabled", Message: `the enrollment or enrollment group of registration "dev-1" is disabled`},
				kinds: []string{"register", "poll"}, waits: []time.Duration{MinWait}},
		},
		{
			name:  "unknown status gives FailedError",
			steps: []step{{200, "", bodyWeird}},
			want:  want{failed: &FailedError{Status: "frozen", Message: `unexpected registration status "Frozen"`}, kinds: []string{"register"}},
		},
		{
			name:  "401 is not retried",
			steps: []step{{401, "", bodyUnauth}, {200, "", bodyAssigned}},
			want: want{status: &StatusError{Status: 401, ErrorCode: 401002, Message: "Unauthorized", TrackingID: "f40da7ba-8c91-4796-8fc3-89e1dfbdbe05"},
				kinds: []string{"register"}},
		},
		{
			name:  "404 on poll is not retried",
			steps: []step{{202, "0", bodyAssigning}, {404, "", bodyNotFound}},
			want: want{status: &StatusError{Status: 404, ErrorCode: 404201, Message: "Operation not found", TrackingID: "t-404"},
				kinds: []string{"register", "poll"}, waits: []time.Duration{MinWait}},
		},
		{
			name:  "429 on register is retried after Retry-After",
			steps: []step{{429, "2", bodyThrottled}, {202, "0", bodyAssigning}, {200, "", bodyAssigned}},
			want: want{state: bodyAssigned, kinds: []string{"register", "register", "poll"},
				waits: []time.Duration{2 * time.Second, MinWait}},
		},
		{
			name:  "5xx with a non-JSON body on poll is retried",
			steps: []step{{202, "0", bodyAssigning}, {503, "", "upstream <b>down</b>\n"}, {200, "", bodyAssigned}},
			want: want{state: bodyAssigned, kinds: []string{"register", "poll", "poll"},
				waits: []time.Duration{MinWait, 250 * time.Millisecond}},
		},
		{
			name:  "400 with a non-JSON body",
			steps: []step{{400, "", "bad\tthings\nhappened"}},
			want:  want{status: &StatusError{Status: 400, Message: "bad things happened"}, kinds: []string{"register"}},
		},
		{
			name:  "400 with an empty body uses the status text",
			steps: []step{{400, "", ""}},
			want:  want{status: &StatusError{Status: 400, Message: "Bad Request"}, kinds: []string{"register"}},
		},
		{
			name:  "errorCode as a string",
			steps: []step{{400, "", bodyStringCode}},
			want:  want{status: &StatusError{Status: 400, ErrorCode: 400004, Message: "Bad request"}, kinds: []string{"register"}},
		},
		{
			name:     "poll limit",
			maxPolls: 3,
			steps:    []step{{202, "0", bodyAssigning}},
			want: want{is: ErrPollLimit, kinds: []string{"register", "poll", "poll", "poll"},
				waits: []time.Duration{MinWait, MinWait, MinWait}},
		},
		{
			name:     "429 until the poll limit keeps the last status",
			maxPolls: 2,
			steps:    []step{{429, "0", bodyThrottled}},
			want: want{is: ErrPollLimit, status: &StatusError{Status: 429, ErrorCode: 429001, Message: "Too many requests", TrackingID: "t-429"},
				kinds: []string{"register", "register", "register"}, waits: []time.Duration{MinWait, MinWait}},
		},
		{
			name:  "assigned without assignedHub is a protocol violation",
			steps: []step{{200, "", bodyNoHub}},
			want:  want{is: ErrProtocol, kinds: []string{"register"}},
		},
		{
			name:  "assigning without operationId is a protocol violation",
			steps: []step{{202, "", bodyNoOp}},
			want:  want{is: ErrProtocol, kinds: []string{"register"}},
		},
		{
			name:  "missing status is a protocol violation",
			steps: []step{{200, "", bodyNoStatus}},
			want:  want{is: ErrProtocol, kinds: []string{"register"}},
		},
		{
			name:  "malformed JSON is a protocol violation",
			steps: []step{{202, "", `{"operationId":`}},
			want:  want{is: ErrProtocol, kinds: []string{"register"}},
		},
	}
	for _, transport := range transports {
		for _, tc := range tests {
			t.Run(transport+"/"+tc.name, func(t *testing.T) {
				f := &fakeDPS{steps: tc.steps}
				c, rec, _ := newTestClient(t, transport, f, func(o *Options) {
					if tc.maxPolls != 0 {
						o.MaxPolls = tc.maxPolls
					}
				})
				key, _ := newKey(t)
				res, err := c.Register(context.Background(), Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: key}})

				if tc.want.state != "" {
					if err != nil {
						t.Fatalf("Register: %v", err)
					}
					if diff := cmp.Diff(stateOf(t, tc.want.state), res); diff != "" {
						t.Errorf("result (-want +got):\n%s", diff)
					}
				} else if res != nil || err == nil {
					t.Fatalf("Register = %+v, %v; want an error", res, err)
				}
				if tc.want.failed != nil {
					var fe *FailedError
					if !errors.As(err, &fe) {
						t.Fatalf("error %v is not a *FailedError", err)
					}
					want := *tc.want.failed
					want.State = stateOf(t, tc.steps[len(tc.steps)-1].body)
					if diff := cmp.Diff(&want, fe); diff != "" {
						t.Errorf("FailedError (-want +got):\n%s", diff)
					}
				}
				if tc.want.status != nil {
					var se *StatusError
					if !errors.As(err, &se) {
						t.Fatalf("error %v is not a *StatusError", err)
					}
					if diff := cmp.Diff(tc.want.status, se); diff != "" {
						t.Errorf("StatusError (-want +got):\n%s", diff)
					}
				}
				if tc.want.is != nil && !errors.Is(err, tc.want.is) {
					t.Errorf("error %v does not match %v", err, tc.want.is)
				}
				if diff := cmp.Diff(tc.want.kinds, f.kinds()); diff != "" {
					t.Errorf("requests (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tc.want.waits, rec.got()); diff != "" {
					t.Errorf("waits (-want +got):\n%s", diff)
				}
				for i, r := range f.requests() {
					if r.Kind == "poll" && r.OperationID != opID {
						t.Errorf("request %d polls operation %q, want %q", i, r.OperationID, opID)
					}
				}
			})
		}
	}
}

// sasFields splits a SharedAccessSignature token into its raw fields and
// their order.
func sasFields(t *testing.T, tok string) (map[string]string, []string) {
	t.Helper()
	rest, ok := strings.CutPrefix(tok, "SharedAccessSignature ")
	if !ok {
		t.Fatalf("token %q lacks the SharedAccessSignature prefix", tok)
	}
	fields := map[string]string{}
	var order []string
	for _, kv := range strings.Split(rest, "&") {
		k, v, _ := strings.Cut(kv, "=")
		fields[k] = v
		order = append(order, k)
	}
	return fields, order
}

// checkSAS verifies a token independently of internal/sas: the signature
// is HMAC-SHA256(key, literal sr + "\n" + se).
func checkSAS(t *testing.T, tok string, key []byte, wantSR string, now time.Time, ttl time.Duration) {
	t.Helper()
	f, _ := sasFields(t, tok)
	if f["sr"] != wantSR {
		t.Errorf("sr = %q, want %q", f["sr"], wantSR)
	}
	if f["skn"] != "registration" {
		t.Errorf("skn = %q, want registration", f["skn"])
	}
	se, err := strconv.ParseInt(f["se"], 10, 64)
	if err != nil {
		t.Fatalf("se %q: %v", f["se"], err)
	}
	if want := now.Add(ttl).Unix(); se != want {
		t.Errorf("se = %d, want now+TTL = %d", se, want)
	}
	if se <= time.Now().Unix() {
		t.Errorf("se = %d is not in the future", se)
	}
	sig, err := url.QueryUnescape(f["sig"])
	if err != nil {
		t.Fatalf("sig %q: %v", f["sig"], err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(f["sr"] + "\n" + f["se"]))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); sig != want {
		t.Errorf("sig = %q does not verify with the device key (want %q)", sig, want)
	}
}

func TestHTTPSRequestShape(t *testing.T) {
	now := time.Now().Add(time.Hour).Truncate(time.Second)
	tests := []struct {
		name      string
		raw       bool
		device    func(key string) Device
		opID      string
		wantSR    string
		wantQuery string
		wantBody  string
		wantPoll  string
	}{
		{
			name: "url-encoded sr, payload",
			device: func(k string) Device {
				return Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: k}, Payload: json.RawMessage(`{"model":"x1"}`)}
			},
			opID:      opID,
			wantSR:    "0ne00000001%2Fregistrations%2Fdev-1",
			wantQuery: "api-version=2019-03-31",
			wantBody:  `{"registrationId":"dev-1","payload":{"model":"x1"}}`,
			wantPoll:  "/0ne00000001/registrations/dev-1/operations/4.0123456789abcdef.op-1",
		},
		{
			name: "raw sr like Node, forceRegistration, escaped operation ID",
			raw:  true,
			device: func(k string) Device {
				return Device{RegistrationID: "Dev:2", Credential: Credential{SymmetricKey: k}, ForceRegistration: true}
			},
			opID:      "op/with space",
			wantSR:    "0ne00000001/registrations/Dev:2",
			wantQuery: "api-version=2019-03-31&forceRegistration=true",
			wantBody:  `{"registrationId":"Dev:2"}`,
			wantPoll:  "/0ne00000001/registrations/Dev:2/operations/op%2Fwith%20space",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDPS{steps: []step{
				{202, "0", `{"operationId":"` + tc.opID + `","status":"assigning"}`},
				{200, "", bodyAssigned},
			}}
			c, _, _ := newTestClient(t, TransportHTTPS, f, func(o *Options) {
				o.RawResource = tc.raw
				o.Now = func() time.Time { return now }
			})
			keyB64, key := newKey(t)
			d := tc.device(keyB64)
			if _, err := c.Register(context.Background(), d); err != nil {
				t.Fatalf("Register: %v", err)
			}
			reqs := f.requests()
			if len(reqs) != 2 {
				t.Fatalf("got %d requests, want 2", len(reqs))
			}
			put, get := reqs[0], reqs[1]
			type shape struct{ Method, Path, Query, Body, Accept, ContentType, UserAgent string }
			gotPut := shape{put.Method, put.EscapedPath, put.RawQuery, put.Body, put.Header.Get("Accept"), put.Header.Get("Content-Type"), put.Header.Get("User-Agent")}
			wantPut := shape{"PUT", "/0ne00000001/registrations/" + d.RegistrationID + "/register", tc.wantQuery, tc.wantBody,
				"application/json", "application/json; charset=utf-8", "muster-dpsclient/test 1"}
			if diff := cmp.Diff(wantPut, gotPut); diff != "" {
				t.Errorf("PUT (-want +got):\n%s", diff)
			}
			gotGet := shape{get.Method, get.EscapedPath, get.RawQuery, get.Body, get.Header.Get("Accept"), get.Header.Get("Content-Type"), get.Header.Get("User-Agent")}
			wantGet := shape{"GET", tc.wantPoll, "api-version=2019-03-31", "", "application/json", "", "muster-dpsclient/test 1"}
			if diff := cmp.Diff(wantGet, gotGet); diff != "" {
				t.Errorf("GET (-want +got):\n%s", diff)
			}
			for _, r := range reqs {
				checkSAS(t, r.Header.Get("Authorization"), key, tc.wantSR, now, DefaultTokenTTL)
			}
			if _, order := sasFields(t, put.Header.Get("Authorization")); tc.raw {
				if diff := cmp.Diff([]string{"sr", "sig", "skn", "se"}, order); diff != "" {
					t.Errorf("raw token field order (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestHTTPSKeepAlive(t *testing.T) {
	f := &fakeDPS{respond: func(r dpsRequest) step {
		if r.Kind == "register" {
			return step{202, "0", bodyAssigning}
		}
		return step{200, "", bodyAssigned}
	}}
	c, _, _ := newTestClient(t, TransportHTTPS, f, nil)
	const n = 20
	for i := range n {
		key, _ := newKey(t)
		d := Device{RegistrationID: "dev-" + strconv.Itoa(i), Credential: Credential{SymmetricKey: key}}
		if _, err := c.Register(context.Background(), d); err != nil {
			t.Fatalf("Register %s: %v", d.RegistrationID, err)
		}
	}
	if got := len(f.requests()); got != 2*n {
		t.Errorf("server saw %d requests, want %d", got, 2*n)
	}
	f.mu.Lock()
	conns := f.conns
	f.mu.Unlock()
	if conns < 1 || conns > 3 {
		t.Errorf("%d SAS registrations opened %d TCP connections, want at most 3 (keep-alive)", n, conns)
	}
}

func TestHTTPSX509(t *testing.T) {
	f := &fakeDPS{respond: func(r dpsRequest) step {
		if r.Kind == "register" {
			return step{202, "0", bodyAssigning}
		}
		return step{200, "", bodyAssigned}
	}}
	c, _, p := newTestClient(t, TransportHTTPS, f, nil)
	cert := p.device.tlsCert(p.inter)
	const n = 3
	for range n {
		if _, err := c.Register(context.Background(), Device{Credential: Credential{Certificate: cert}, Payload: json.RawMessage(`[1,2]`)}); err != nil {
			t.Fatalf("Register: %v", err)
		}
	}
	reqs := f.requests()
	if len(reqs) != 2*n {
		t.Fatalf("got %d requests, want %d", len(reqs), 2*n)
	}
	for i, r := range reqs {
		if diff := cmp.Diff([][]byte{p.device.der, p.inter.der}, r.PeerCerts); diff != "" {
			t.Errorf("request %d: presented chain is not leaf, intermediate (-want +got):\n%s", i, diff)
		}
		if a := r.Header.Get("Authorization"); a != "" {
			t.Errorf("request %d: X.509 request carries Authorization %q", i, a)
		}
		if !strings.HasPrefix(r.EscapedPath, "/0ne00000001/registrations/x509-device-1/") {
			t.Errorf("request %d: path %q does not use the CN as registration ID", i, r.EscapedPath)
		}
	}
	if want := `{"registrationId":"x509-device-1","payload":[1,2]}`; reqs[0].Body != want {
		t.Errorf("body = %s, want %s", reqs[0].Body, want)
	}
	// Each registration dials its own connection and polls over it.
	if conns := f.connCount(); conns != n {
		t.Errorf("%d X.509 registrations used %d connections, want one fresh mTLS connection per registration", n, conns)
	}
}

// TestHTTPSX509ConnectionClose checks that a response that closes the
// connection makes the poll dial a new one.
func TestHTTPSX509ConnectionClose(t *testing.T) {
	f := &fakeDPS{closeOn: "register", respond: func(r dpsRequest) step {
		if r.Kind == "register" {
			return step{202, "0", bodyAssigning}
		}
		return step{200, "", bodyAssigned}
	}}
	c, _, p := newTestClient(t, TransportHTTPS, f, nil)
	res, err := c.Register(context.Background(), Device{Credential: Credential{Certificate: p.device.tlsCert(p.inter)}})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if res.DeviceID == "" {
		t.Fatalf("Register returned %+v", res)
	}
	if got := f.kinds(); !slices.Equal(got, []string{"register", "poll"}) {
		t.Fatalf("requests %v, want register, poll", got)
	}
	if conns := f.connCount(); conns != 2 {
		t.Errorf("%d connections, want 2: the poll must dial again after Connection: close", conns)
	}
}

// TestHTTPSX509Cancel checks that cancelling the context interrupts an
// X.509 registration waiting for its answer.
func TestHTTPSX509Cancel(t *testing.T) {
	f := &fakeDPS{hold: make(chan struct{}), steps: []step{{202, "0", bodyAssigning}}}
	defer close(f.hold)
	c, _, p := newTestClient(t, TransportHTTPS, f, func(o *Options) { o.RequestTimeout = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Register(ctx, Device{Credential: Credential{Certificate: p.device.tlsCert(p.inter)}})
		errc <- err
	}()
	for len(f.requests()) == 0 {
		select {
		case err := <-errc:
			t.Fatalf("Register returned %v before the server got the request", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Register = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Register did not return after its context was cancelled")
	}
}

func TestMQTTWireShape(t *testing.T) {
	now := time.Now().Add(time.Minute).Truncate(time.Second)
	f := &fakeDPS{steps: []step{
		{202, "0", `{"operationId":"op&id=1 x","status":"assigning"}`},
		{202, "0", `{"operationId":"op&id=1 x","status":"assigning"}`},
		{200, "", bodyAssigned},
	}}
	c, _, _ := newTestClient(t, TransportMQTT, f, func(o *Options) {
		o.Now = func() time.Time { return now }
		o.TokenTTL = 10 * time.Minute
	})
	keyB64, key := newKey(t)
	if _, err := c.Register(context.Background(), Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: keyB64}, Payload: json.RawMessage(`{"a":true}`)}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	f.mu.Lock()
	connects, subs := f.connects, f.subs
	f.mu.Unlock()
	if len(connects) != 1 {
		t.Fatalf("got %d CONNECTs, want 1", len(connects))
	}
	cn := connects[0]
	checkSAS(t, cn.Password, key, "0ne00000001%2Fregistrations%2Fdev-1", now, 10*time.Minute)
	cn.Password = ""
	wantConnect := mqttConnect{
		ClientID:        "dev-1",
		Username:        "0ne00000001/registrations/dev-1/api-version=2019-03-31&ClientVersion=muster-dpsclient%2Ftest%201",
		PasswordFlag:    true,
		Clean:           true,
		Keepalive:       60,
		ProtocolVersion: 4,
	}
	if diff := cmp.Diff(wantConnect, cn); diff != "" {
		t.Errorf("CONNECT (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]mqttSub{{Filter: "$dps/registrations/res/#", QoS: 1}}, subs); diff != "" {
		t.Errorf("SUBSCRIBE (-want +got):\n%s", diff)
	}
	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("got %d requests, want 3", len(reqs))
	}
	rids := map[string]bool{}
	for i, r := range reqs {
		if r.RID == "" || rids[r.RID] {
			t.Errorf("request %d: $rid %q is empty or reused", i, r.RID)
		}
		rids[r.RID] = true
		want := "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=" + r.RID + "&operationId=op%26id%3D1%20x"
		wantBody := ""
		if i == 0 {
			want, wantBody = "$dps/registrations/PUT/iotdps-register/?$rid="+r.RID, `{"registrationId":"dev-1","payload":{"a":true}}`
		} else if r.OperationID != "op&id=1 x" {
			t.Errorf("request %d: operationId decodes to %q", i, r.OperationID)
		}
		if r.Topic != want {
			t.Errorf("request %d: topic %q, want %q", i, r.Topic, want)
		}
		if r.Body != wantBody {
			t.Errorf("request %d: payload %q, want %q", i, r.Body, wantBody)
		}
	}
}

func TestMQTTX509(t *testing.T) {
	f := &fakeDPS{steps: []step{{200, "", bodyAssigned}}}
	c, _, p := newTestClient(t, TransportMQTT, f, nil)
	if _, err := c.Register(context.Background(), Device{Credential: Credential{Certificate: p.device.tlsCert(p.inter)}}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.connects) != 1 {
		t.Fatalf("got %d CONNECTs, want 1", len(f.connects))
	}
	got := f.connects[0]
	want := mqttConnect{
		ClientID:        "x509-device-1",
		Username:        "0ne00000001/registrations/x509-device-1/api-version=2019-03-31&ClientVersion=muster-dpsclient%2Ftest%201",
		Clean:           true,
		Keepalive:       60,
		ProtocolVersion: 4,
		PeerCerts:       [][]byte{p.device.der, p.inter.der},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CONNECT (-want +got):\n%s", diff)
	}
}

func TestMQTTRIDMatching(t *testing.T) {
	f := &fakeDPS{strayRID: true, steps: []step{{202, "0", bodyAssigning}, {200, "", bodyAssigned}}}
	c, _, _ := newTestClient(t, TransportMQTT, f, nil)
	key, _ := newKey(t)
	res, err := c.Register(context.Background(), Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: key}})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if diff := cmp.Diff(stateOf(t, bodyAssigned), res); diff != "" {
		t.Errorf("result follows a response for another $rid (-want +got):\n%s", diff)
	}
}

func TestMQTTFailures(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fakeDPS)
		device func(key string) Device
		is     error
	}{
		{
			name:   "SUBACK 0x80",
			setup:  func(f *fakeDPS) { f.refuseSubscribe = true },
			device: func(k string) Device { return Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: k}} },
			is:     ErrSubscribeRefused,
		},
		{
			name:   "no response",
			setup:  func(f *fakeDPS) { f.silent = true; f.steps = []step{{200, "", bodyAssigned}} },
			device: func(k string) Device { return Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: k}} },
			is:     ErrResponseTimeout,
		},
		{
			name:  "forceRegistration",
			setup: func(*fakeDPS) {},
			device: func(k string) Device {
				return Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: k}, ForceRegistration: true}
			},
			is: ErrForceRegistrationUnsupported,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDPS{}
			tc.setup(f)
			c, _, _ := newTestClient(t, TransportMQTT, f, func(o *Options) { o.RequestTimeout = 500 * time.Millisecond })
			key, _ := newKey(t)
			res, err := c.Register(context.Background(), tc.device(key))
			if res != nil || !errors.Is(err, tc.is) {
				t.Errorf("Register = %v, %v; want error %v", res, err, tc.is)
			}
		})
	}
}

func TestMQTTConnectRefused(t *testing.T) {
	f := &fakeDPS{refuseConnect: true}
	c, _, _ := newTestClient(t, TransportMQTT, f, nil)
	key, _ := newKey(t)
	_, err := c.Register(context.Background(), Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: key}})
	var se *StatusError
	if err == nil || errors.As(err, &se) || errors.Is(err, ErrResponseTimeout) {
		t.Fatalf("Register error = %v; want a connect refusal", err)
	}
	if got := len(f.requests()); got != 0 {
		t.Errorf("server saw %d requests after refusing CONNECT", got)
	}
}

func TestRegisterContextCanceledWhileWaiting(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			f := &fakeDPS{steps: []step{{202, "0", bodyAssigning}}}
			c, _, _ := newTestClient(t, transport, f, nil)
			ctx, cancel := context.WithCancel(context.Background())
			c.sleep = func(context.Context, time.Duration) error { cancel(); return ctx.Err() }
			key, _ := newKey(t)
			_, err := c.Register(ctx, Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: key}})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Register error = %v, want context.Canceled", err)
			}
			if diff := cmp.Diff([]string{"register"}, f.kinds()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRegisterAfterClose(t *testing.T) {
	f := &fakeDPS{steps: []step{{200, "", bodyAssigned}}}
	c, _, _ := newTestClient(t, TransportHTTPS, f, nil)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	key, _ := newKey(t)
	if _, err := c.Register(context.Background(), Device{RegistrationID: "dev-1", Credential: Credential{SymmetricKey: key}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Register after Close = %v, want ErrClosed", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("server saw %d requests after Close", n)
	}
}
