package bench

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/sas"
)

const testScope = "0ne0000BENCH"

var testGroupKey = []byte("0123456789abcdef0123456789abcdef")

// testNow is the bare HMAC handler's clock in the handler tests.
var testNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func deviceToken(id string, key []byte, exp time.Time) string {
	return sas.Sign(testScope+"/registrations/"+id, key, "registration", exp)
}

func TestHMACHandler(t *testing.T) {
	h := &hmacHandler{idScope: testScope, groupKey: testGroupKey, now: func() time.Time { return testNow }}
	later := testNow.Add(time.Hour)
	good := deviceToken("dev-1", sas.Derive(testGroupKey, "dev-1"), later)
	tests := []struct {
		name     string
		method   string
		path     string
		auth     string
		body     string
		status   int
		wantBody string // for 200
	}{
		{name: "valid", method: http.MethodPut, path: "/" + testScope + "/registrations/dev-1/register", auth: good, body: `{"registrationId":"dev-1"}`, status: 200,
			wantBody: `{"operationId":"bare.dev-1","status":"assigned","registrationState":{"registrationId":"dev-1","assignedHub":"bare-ceiling.invalid","deviceId":"dev-1","status":"assigned","substatus":"initialAssignment"}}`},
		{name: "body id differs in case only", method: http.MethodPut, path: "/" + testScope + "/registrations/dev-1/register", auth: good, body: `{"registrationId":"DEV-1"}`, status: 200},
		{name: "other scope", method: http.MethodPut, path: "/0neOTHER/registrations/dev-1/register", auth: good, body: `{"registrationId":"dev-1"}`, status: 404},
		{name: "no token", method: http.MethodPut, path: "/" + testScope + "/registrations/dev-1/register", body: `{"registrationId":"dev-1"}`, status: 401},
		{name: "malformed token", method: http.MethodPut, path: "/" + testScope + "/registrations/dev-1/register", auth: "SharedAccessSignature sr=x", body: `{}`, status: 401},
		{name: "expired", method: http.MethodPut, path: "/" + testScope + "/registrations/dev-1/register", auth: deviceToken("dev-1", sas.Derive(testGroupKey, "dev-1"), testNow.Add(-time.Minute)), body: `{"registrationId":"dev-1"}`, status: 401},
		{name: "token for another registration", method: http.MethodPut, path: "/" + testScope + "/registrations/dev-2/register", auth: good, body: `{"registrationId":"dev-2"}`, status: 401},
		{name: "group key instead of the derived key", method: http.MethodPut, path: "/" + testScope + "/registrations/dev-1/register", auth: deviceToken("dev-1", testGroupKey, later), body: `{"registrationId":"dev-1"}`, status: 401},
		{name: "body names another device", method: http.MethodPut, path: "/" + testScope + "/registrations/dev-1/register", auth: good, body: `{"registrationId":"dev-2"}`, status: 400},
		{name: "body is not JSON", method: http.MethodPut, path: "/" + testScope + "/registrations/dev-1/register", auth: good, body: `registrationId=dev-1`, status: 400},
		{name: "body too large", method: http.MethodPut, path: "/" + testScope + "/registrations/dev-1/register", auth: good, body: `{"registrationId":"dev-1","payload":"` + strings.Repeat("x", maxBareBody) + `"}`, status: 400},
		{name: "GET is not routed", method: http.MethodGet, path: "/" + testScope + "/registrations/dev-1/register", auth: good, status: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.mux().ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body.String())
			}
			if tc.wantBody != "" {
				if diff := cmp.Diff(tc.wantBody, rec.Body.String()); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			}
			if tc.status != 200 && tc.status != 405 {
				var e struct {
					ErrorCode int    `json:"errorCode"`
					Message   string `json:"message"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.ErrorCode/1000 != tc.status || e.Message == "" {
					t.Errorf("error body %s (%v): want errorCode %dxxx and a message", rec.Body.String(), err, tc.status)
				}
			}
		})
	}
}

// FuzzHMACHandler feeds arbitrary registration IDs, Authorization headers
// and bodies to the bare HMAC handler: it must never panic, must answer
// only with its known statuses, and must assign only a request whose token
// verifies with the device key derived for the path's registration ID.
func FuzzHMACHandler(f *testing.F) {
	later := testNow.Add(time.Hour)
	f.Add("dev-1", deviceToken("dev-1", sas.Derive(testGroupKey, "dev-1"), later), `{"registrationId":"dev-1"}`)
	f.Add("dev-1", deviceToken("dev-1", testGroupKey, later), `{"registrationId":"dev-1"}`)
	f.Add("a%2Fb", "SharedAccessSignature sr=0ne0000BENCH%2Fregistrations%2Fa%252Fb&sig=AAAA&se=99999999999", `{"registrationId":"a/b"}`)
	f.Add("x", "sr=&sig=&se=&skn=", `{`)
	f.Add("", "", "")
	f.Add("dev", "SharedAccessSignature se=1&se=2", `{"registrationId":null}`)
	f.Add(".", "0", "0")
	h := &hmacHandler{idScope: testScope, groupKey: testGroupKey, now: func() time.Time { return testNow }}
	mux := h.mux()
	f.Fuzz(func(t *testing.T, id, auth, body string) {
		if strings.ContainsAny(id, "/?#%") || id == "" {
			return // not one path segment
		}
		req, err := http.NewRequest(http.MethodPut, "https://127.0.0.1/"+testScope+"/registrations/"+id+"/register", strings.NewReader(body))
		if err != nil {
			return // not a URL a client can send
		}
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			tok, err := sas.Parse(auth)
			if err != nil || !tok.VerifyKey(sas.Derive(testGroupKey, id)) {
				t.Fatalf("assigned %q with a token that does not verify: %q", id, auth)
			}
		case 400, 401, 404:
		case http.StatusTemporaryRedirect:
			if id != "." && id != ".." {
				t.Fatalf("redirect for id %q", id)
			}
			// ServeMux redirects a path with dot segments to its clean form.
		default:
			t.Fatalf("status %d for id %q auth %q body %q", rec.Code, id, auth, body)
		}
	})
}

// testDevices returns n symmetric devices of testGroupKey and n device
// certificates under an intermediate CA.
func testDevices(t *testing.T, n int) (symmetricDevices, []*tls.Certificate) {
	t.Helper()
	devs := symmetricDevices{}
	for i := range n {
		id := "bench-test-" + string(rune('a'+i))
		devs.ids = append(devs.ids, id)
		devs.keys = append(devs.keys, base64.StdEncoding.EncodeToString(sas.Derive(testGroupKey, id)))
	}
	root, err := pki.NewRoot("Bench Test Root")
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.NewIntermediate("Bench Test Intermediate")
	if err != nil {
		t.Fatal(err)
	}
	_, certs, err := issueDevices(context.Background(), inter, "bench-test-x509", n)
	if err != nil {
		t.Fatal(err)
	}
	return devs, certs
}

// TestCeilings measures both ceilings briefly: every operation succeeds.
func TestCeilings(t *testing.T) {
	id, err := newCeilingIdentity()
	if err != nil {
		t.Fatal(err)
	}
	devs, certs := testDevices(t, 3)
	load := Load{Concurrency: 2, Duration: 200 * time.Millisecond, Classify: ErrorKind}
	tests := []struct {
		name string
		run  func() (*Result, error)
	}{
		{CeilingHMAC, func() (*Result, error) {
			return measureHMACCeiling(context.Background(), load, id, testScope, testGroupKey, devs, 10*time.Second)
		}},
		{CeilingMTLS, func() (*Result, error) {
			return measureMTLSCeiling(context.Background(), load, id, certs, 10*time.Second)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := tc.run()
			if err != nil {
				t.Fatalf("measure: %v", err)
			}
			if res.Succeeded == 0 || res.Failed != 0 {
				t.Errorf("result %+v: want successes only (errors: %v)", res, res.ErrorSamples)
			}
			if want := float64(res.Window.Succeeded) / res.Window.Elapsed.Seconds(); res.Window.Rate != want {
				t.Errorf("window rate %v, want %v successes per second of the window", res.Window.Rate, want)
			}
		})
	}
}

// TestCeilingFailures checks that the ceilings count what the bare servers
// refuse instead of measuring it: a device key the group key did not derive,
// and a handshake without a client certificate.
func TestCeilingFailures(t *testing.T) {
	id, err := newCeilingIdentity()
	if err != nil {
		t.Fatal(err)
	}
	devs, _ := testDevices(t, 1)
	load := Load{Concurrency: 1, Duration: 100 * time.Millisecond, Classify: ErrorKind}

	wrong := symmetricDevices{ids: devs.ids, keys: []string{base64.StdEncoding.EncodeToString([]byte("not the derived key, 32 bytes..."))}}
	res, err := measureHMACCeiling(context.Background(), load, id, testScope, testGroupKey, wrong, 10*time.Second)
	if err != nil {
		t.Fatalf("measure HMAC: %v", err)
	}
	if res.Succeeded != 0 || res.Failed == 0 || res.Errors["status_401"] != res.Failed {
		t.Errorf("HMAC ceiling with a wrong key: %+v, want only status_401 failures", res)
	}

	res, err = measureMTLSCeiling(context.Background(), load, id, []*tls.Certificate{{}}, 10*time.Second)
	if err != nil {
		t.Fatalf("measure mTLS: %v", err)
	}
	if res.Succeeded != 0 || res.Failed == 0 || res.Errors[KindNoClientCert] != res.Failed {
		t.Errorf("mTLS ceiling without a client certificate: %+v, want only %s failures", res, KindNoClientCert)
	}
}
