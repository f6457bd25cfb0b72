package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/muster-iot/muster/internal/provision"
)

func assigning(id string) *provision.OperationStatus {
	return &provision.OperationStatus{OperationID: "4.0123456789abcdef.op", Status: provision.StatusAssigning,
		RegistrationState: &provision.DeviceRegistrationResult{RegistrationID: id, Status: provision.StatusAssigning}}
}

func assigned(id string) *provision.OperationStatus {
	return &provision.OperationStatus{OperationID: "4.0123456789abcdef.op", Status: provision.StatusAssigned,
		RegistrationState: &provision.DeviceRegistrationResult{RegistrationID: id, Status: provision.StatusAssigned,
			AssignedHub: "hub1.example.test", DeviceID: id, Substatus: provision.SubstatusInitialAssignment}}
}

// ignoreTransport leaves out the fields that vary by connection.
var ignoreTransport = cmpopts.IgnoreFields(provision.RegisterRequest{}, "RemoteAddr", "Chain")

func TestRegister(t *testing.T) {
	const sasHeader = "SharedAccessSignature sr=0ne00000001/registrations/dev1&sig=abc&skn=registration&se=1"
	tests := []struct {
		name       string
		path       string
		body       string
		header     map[string]string
		op         *provision.OperationStatus
		err        error
		wantStatus int
		wantCode   int    // errorCode of an error answer
		wantMsg    string // substring of the error message
		wantRetry  string
		wantLoc    string // path part of Location
		wantReq    *provision.RegisterRequest
	}{
		{
			name:       "symmetric key assigning answers 202",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			body:       `{"registrationId":"dev1","payload":{"model":"x"}}`,
			header:     map[string]string{"Authorization": sasHeader, "User-Agent": "azure-iot-provisioning-device/1.9.1"},
			op:         assigning("dev1"),
			wantStatus: http.StatusAccepted,
			wantRetry:  "3",
			wantLoc:    "/0ne00000001/registrations/dev1/register",
			wantReq: &provision.RegisterRequest{IDScope: testScope, RegistrationID: "dev1", BodyRegistrationID: "dev1",
				SAS: sasHeader, Payload: json.RawMessage(`{"model":"x"}`), Protocol: "https"},
		},
		{
			name:       "C SDK percent-encoded path, UserAgent header, case-insensitive body id",
			path:       "/0ne00000001/registrations/Dev%3A1.a_b/register?api-version=2021-06-01",
			body:       `{"registrationId":"dev:1.A_B"}`,
			header:     map[string]string{"Authorization": sasHeader, "UserAgent": "prov_device_client/1.0"},
			op:         assigning("Dev:1.a_b"),
			wantStatus: http.StatusAccepted,
			wantRetry:  "3",
			wantLoc:    "/0ne00000001/registrations/Dev%3A1.a_b/register",
			wantReq: &provision.RegisterRequest{IDScope: testScope, RegistrationID: "Dev:1.a_b", BodyRegistrationID: "dev:1.A_B",
				SAS: sasHeader, Protocol: "https"},
		},
		{
			name:       "upper-case literal segments and forceRegistration",
			path:       "/0ne00000001/Registrations/dev1/REGISTER?api-version=2019-03-31&forceRegistration=true",
			body:       `{"registrationId":"dev1"}`,
			header:     map[string]string{"Authorization": sasHeader},
			op:         assigning("dev1"),
			wantStatus: http.StatusAccepted,
			wantRetry:  "3",
			wantLoc:    "/0ne00000001/Registrations/dev1/REGISTER",
			wantReq: &provision.RegisterRequest{IDScope: testScope, RegistrationID: "dev1", BodyRegistrationID: "dev1",
				SAS: sasHeader, Force: true, Protocol: "https"},
		},
		{
			name:       "Python null payload and an empty body are accepted",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			body:       `{"payload": null, "registrationId": "dev1", "csr": "ignored"}`,
			op:         assigning("dev1"),
			wantStatus: http.StatusAccepted,
			wantRetry:  "3",
			wantLoc:    "/0ne00000001/registrations/dev1/register",
			wantReq:    &provision.RegisterRequest{IDScope: testScope, RegistrationID: "dev1", BodyRegistrationID: "dev1", Protocol: "https"},
		},
		{
			name:       "empty body",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			op:         assigning("dev1"),
			wantStatus: http.StatusAccepted,
			wantRetry:  "3",
			wantLoc:    "/0ne00000001/registrations/dev1/register",
			wantReq:    &provision.RegisterRequest{IDScope: testScope, RegistrationID: "dev1", Protocol: "https"},
		},
		{
			name:       "tpm body sets HasTPM",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			body:       `{"registrationId":"dev1","tpm":{"endorsementKey":"AAAA","storageRootKey":"BBBB"}}`,
			err:        provision.ErrTPMUnsupported,
			wantStatus: http.StatusBadRequest,
			wantCode:   400002,
			wantMsg:    "TPM attestation is not supported",
			wantReq:    &provision.RegisterRequest{IDScope: testScope, RegistrationID: "dev1", BodyRegistrationID: "dev1", HasTPM: true, Protocol: "https"},
		},
		{
			name:       "final answer on the PUT uses its own status",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			body:       `{"registrationId":"dev1"}`,
			op:         assigned("dev1"),
			wantStatus: http.StatusOK,
			wantReq:    &provision.RegisterRequest{IDScope: testScope, RegistrationID: "dev1", BodyRegistrationID: "dev1", Protocol: "https"},
		},
		{
			name:       "missing api-version",
			path:       "/0ne00000001/registrations/dev1/register",
			body:       `{"registrationId":"dev1"}`,
			wantStatus: http.StatusBadRequest,
			wantCode:   400004,
			wantMsg:    "api-version",
		},
		{
			name:       "body registrationId differs from the path",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			body:       `{"registrationId":"dev2"}`,
			wantStatus: http.StatusBadRequest,
			wantCode:   400004,
			wantMsg:    `registrationId "dev2" in the body does not match "dev1"`,
		},
		{
			name:       "malformed JSON",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			body:       `{"registrationId":`,
			wantStatus: http.StatusBadRequest,
			wantCode:   400004,
			wantMsg:    "truncated JSON",
		},
		{
			name:       "registrationId of the wrong type",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			body:       `{"registrationId":7}`,
			wantStatus: http.StatusBadRequest,
			wantCode:   400004,
			wantMsg:    "field registrationId must be a string, not a number",
		},
		{
			name:       "bad forceRegistration",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31&forceRegistration=maybe",
			wantStatus: http.StatusBadRequest,
			wantCode:   400004,
			wantMsg:    "forceRegistration",
		},
		{
			name:       "oversized body",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			body:       `{"registrationId":"dev1","payload":"` + strings.Repeat("x", 5000) + `"}`,
			wantStatus: http.StatusRequestEntityTooLarge,
			wantCode:   413001,
			wantMsg:    "larger than the 4096-byte limit",
		},
		{
			name:       "registrar refusal keeps its status, code and message",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			body:       `{"registrationId":"dev1"}`,
			header:     map[string]string{"Authorization": sasHeader},
			err:        provision.ErrUnauthorized,
			wantStatus: http.StatusUnauthorized,
			wantCode:   401002,
			wantMsg:    "Unauthorized",
			wantReq: &provision.RegisterRequest{IDScope: testScope, RegistrationID: "dev1", BodyRegistrationID: "dev1",
				SAS: sasHeader, Protocol: "https"},
		},
		{
			name:       "throttling carries Retry-After",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			err:        &provision.Error{Status: 429, Code: 429001, Message: "Too many requests", RetryAfter: 7},
			wantStatus: http.StatusTooManyRequests,
			wantCode:   429001,
			wantMsg:    "Too many requests",
			wantRetry:  "7",
			wantReq:    &provision.RegisterRequest{IDScope: testScope, RegistrationID: "dev1", Protocol: "https"},
		},
		{
			name:       "unexpected error is a generic 500",
			path:       "/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
			err:        errors.New("database on fire: secret-internal-detail"),
			wantStatus: http.StatusInternalServerError,
			wantCode:   500000,
			wantMsg:    "internal error",
			wantReq:    &provision.RegisterRequest{IDScope: testScope, RegistrationID: "dev1", Protocol: "https"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.reg.set(tc.op, nil, tc.err)
			res := h.do(nil, http.MethodPut, tc.path, tc.body, tc.header)
			if res.status != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", res.status, tc.wantStatus, res.body)
			}
			if got := res.header.Get("Retry-After"); got != tc.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, tc.wantRetry)
			}
			wantLoc := ""
			if tc.wantLoc != "" {
				wantLoc = "https://" + strings.TrimPrefix(h.srv.URL, "https://") + tc.wantLoc
			}
			if got := res.header.Get("Location"); got != wantLoc {
				t.Errorf("Location %q, want %q", got, wantLoc)
			}
			if tc.wantCode != 0 {
				b := res.errorBody(t)
				if b.ErrorCode != tc.wantCode || !strings.Contains(b.Message, tc.wantMsg) {
					t.Errorf("error %d %q, want %d containing %q", b.ErrorCode, b.Message, tc.wantCode, tc.wantMsg)
				}
				if strings.Contains(string(res.body), "secret-internal-detail") {
					t.Errorf("internal error text leaked to the caller: %s", res.body)
				}
			} else {
				var got provision.OperationStatus
				if err := json.Unmarshal(res.body, &got); err != nil {
					t.Fatalf("decode %s: %v", res.body, err)
				}
				if diff := cmp.Diff(tc.op, &got); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			}
			h.reg.mu.Lock()
			defer h.reg.mu.Unlock()
			if tc.wantReq == nil {
				if len(h.reg.register) != 0 {
					t.Errorf("registrar called %d times, want 0", len(h.reg.register))
				}
				return
			}
			if len(h.reg.register) != 1 {
				t.Fatalf("registrar called %d times, want 1", len(h.reg.register))
			}
			got := h.reg.register[0]
			if diff := cmp.Diff(*tc.wantReq, got, ignoreTransport); diff != "" {
				t.Errorf("RegisterRequest (-want +got):\n%s", diff)
			}
			if got.RemoteAddr == "" || len(got.Chain) != 0 {
				t.Errorf("RemoteAddr %q, chain of %d; want an address and no chain", got.RemoteAddr, len(got.Chain))
			}
		})
	}
}

func TestRegisterLogsInternalErrors(t *testing.T) {
	h := newHarness(t)
	h.reg.set(nil, nil, errors.New("database on fire"))
	res := h.do(nil, http.MethodPut, "/0ne00000001/registrations/dev1/register?api-version=2019-03-31", "", nil)
	if res.status != http.StatusInternalServerError {
		t.Fatalf("status %d", res.status)
	}
	logs := h.logs.take()
	id := res.header.Get("x-ms-request-id")
	if !strings.Contains(logs, "database on fire") || !strings.Contains(logs, id) {
		t.Errorf("log does not hold the cause and tracking ID %s:\n%s", id, logs)
	}
}

func TestRegisterX509Chain(t *testing.T) {
	h := newHarness(t)
	client, cert := h.withClientCert("x509-dev")
	h.reg.set(assigning("x509-dev"), nil, nil)
	res := h.do(client, http.MethodPut, "/0ne00000001/registrations/x509-dev/register?api-version=2019-03-31", `{"registrationId":"x509-dev"}`, nil)
	if res.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	h.reg.mu.Lock()
	defer h.reg.mu.Unlock()
	if len(h.reg.register) != 1 {
		t.Fatalf("registrar called %d times", len(h.reg.register))
	}
	got := h.reg.register[0]
	if len(got.Chain) != 1 || !got.Chain[0].Equal(cert) {
		t.Fatalf("chain of %d certificates, want the client certificate", len(got.Chain))
	}
	if got.SAS != "" {
		t.Errorf("SAS %q, want none", got.SAS)
	}
}

func TestOperationStatus(t *testing.T) {
	tests := []struct {
		name       string
		path       string
		body       string
		op         *provision.OperationStatus
		err        error
		wantStatus int
		wantRetry  string
		wantOpID   string
	}{
		{
			name:       "in progress with Node's {} body on GET",
			path:       "/0ne00000001/registrations/dev1/operations/4.0123456789abcdef.op?api-version=2019-03-31",
			body:       "{}",
			op:         assigning("dev1"),
			wantStatus: http.StatusAccepted,
			wantRetry:  "3",
			wantOpID:   "4.0123456789abcdef.op",
		},
		{
			name:       "final, with a percent-encoded operation ID and an unparseable body",
			path:       "/0ne00000001/registrations/dev1/operations/4.0123%2Fx?api-version=2019-03-31",
			body:       "not json at all",
			op:         assigned("dev1"),
			wantStatus: http.StatusOK,
			wantOpID:   "4.0123/x",
		},
		{
			name:       "unknown operation",
			path:       "/0ne00000001/registrations/dev1/operations/nope?api-version=2019-03-31",
			err:        &provision.Error{Status: 404, Code: 404201, Message: "Operation not found"},
			wantStatus: http.StatusNotFound,
			wantOpID:   "nope",
		},
		{
			name:       "missing api-version",
			path:       "/0ne00000001/registrations/dev1/operations/x",
			wantStatus: http.StatusBadRequest,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.reg.set(tc.op, nil, tc.err)
			res := h.do(nil, http.MethodGet, tc.path, tc.body, map[string]string{"Content-Type": "application/json; charset=utf-8"})
			if res.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", res.status, tc.wantStatus, res.body)
			}
			if got := res.header.Get("Retry-After"); got != tc.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, tc.wantRetry)
			}
			h.reg.mu.Lock()
			defer h.reg.mu.Unlock()
			if tc.wantOpID == "" {
				if len(h.reg.polls) != 0 {
					t.Errorf("registrar polled %d times, want 0", len(h.reg.polls))
				}
				return
			}
			if len(h.reg.polls) != 1 {
				t.Fatalf("registrar polled %d times, want 1", len(h.reg.polls))
			}
			want := provision.OperationRequest{OperationID: tc.wantOpID,
				RegisterRequest: provision.RegisterRequest{IDScope: testScope, RegistrationID: "dev1", Protocol: "https"}}
			if diff := cmp.Diff(want, h.reg.polls[0], ignoreTransport); diff != "" {
				t.Errorf("OperationRequest (-want +got):\n%s", diff)
			}
			if tc.op != nil {
				var got provision.OperationStatus
				if err := json.Unmarshal(res.body, &got); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.op, &got); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestRegistrationStatusLookup(t *testing.T) {
	h := newHarness(t)
	want := assigned("dev1").RegistrationState
	h.reg.set(nil, want, nil)
	res := h.do(nil, http.MethodPost, "/0ne00000001/registrations/dev1?api-version=2019-03-31", `{"registrationId":"dev1"}`,
		map[string]string{"Authorization": "SharedAccessSignature sr=x&sig=y&se=1"})
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	var got provision.DeviceRegistrationResult
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &got); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	h.reg.mu.Lock()
	defer h.reg.mu.Unlock()
	wantReq := provision.RegisterRequest{IDScope: testScope, RegistrationID: "dev1", BodyRegistrationID: "dev1",
		SAS: "SharedAccessSignature sr=x&sig=y&se=1", Protocol: "https"}
	if len(h.reg.lookups) != 1 {
		t.Fatalf("lookups %d, want 1", len(h.reg.lookups))
	}
	if diff := cmp.Diff(wantReq, h.reg.lookups[0], ignoreTransport); diff != "" {
		t.Errorf("RegisterRequest (-want +got):\n%s", diff)
	}
}

func TestRegistrarNilResult(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct{ method, path string }{
		{http.MethodPut, "/0ne00000001/registrations/dev1/register?api-version=1"},
		{http.MethodGet, "/0ne00000001/registrations/dev1/operations/o?api-version=1"},
		{http.MethodPost, "/0ne00000001/registrations/dev1?api-version=1"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			res := h.do(nil, tc.method, tc.path, "", nil)
			if res.status != http.StatusInternalServerError {
				t.Errorf("status %d, want 500", res.status)
			}
		})
	}
}

func TestDecodeDeviceRegistration(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    deviceRegistration
		wantErr string
	}{
		{name: "empty", body: "", want: deviceRegistration{}},
		{name: "whitespace", body: " \n\t", want: deviceRegistration{}},
		{name: "null", body: "null", want: deviceRegistration{}},
		{name: "empty object", body: "{}", want: deviceRegistration{}},
		{name: "node", body: `{"registrationId":"d"}`, want: deviceRegistration{RegistrationID: "d"}},
		{name: "null id", body: `{"registrationId":null}`, want: deviceRegistration{}},
		{name: "payload kept verbatim", body: `{"payload": {"a": [1, 2]} }`, want: deviceRegistration{Payload: json.RawMessage(`{"a": [1, 2]}`)}},
		{name: "scalar payload", body: `{"payload":"s"}`, want: deviceRegistration{Payload: json.RawMessage(`"s"`)}},
		{name: "tpm", body: `{"tpm":{"endorsementKey":"e"}}`, want: deviceRegistration{HasTPM: true}},
		{name: "null tpm", body: `{"tpm":null}`, want: deviceRegistration{}},
		{name: "unknown fields", body: `{"csr":"x","clientCertificateCsr":"y","registrationId":"d"}`, want: deviceRegistration{RegistrationID: "d"}},
		{name: "array", body: `[]`, wantErr: "request body must be an object, not an array"},
		{name: "tpm not an object", body: `{"tpm":"x"}`, wantErr: "field tpm must be an object"},
		{name: "trailing data", body: `{} {}`, wantErr: "data after its JSON value"},
		{name: "syntax", body: `{"a" 1}`, wantErr: "not valid JSON (offset"},
		{name: "truncated", body: `{"a":`, wantErr: "truncated JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeDeviceRegistration([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(errMessage(err), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// errMessage is what a caller would be told for err.
func errMessage(err error) string {
	_, _, msg, _ := classify(resource{}, err)
	return msg
}

// panicRegistrar panics on every call.
type panicRegistrar struct{ fakeRegistrar }

func (*panicRegistrar) Register(context.Context, provision.RegisterRequest) (*provision.OperationStatus, error) {
	panic("registrar bug")
}

func TestHandlerPanicIsA500(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Registrar = &panicRegistrar{} })
	res := h.do(nil, http.MethodPut, "/0ne00000001/registrations/dev1/register?api-version=1", "", nil)
	if res.status != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", res.status)
	}
	if logs := h.logs.take(); !strings.Contains(logs, "registrar bug") || !strings.Contains(logs, "level=ERROR") {
		t.Errorf("panic not logged as an error:\n%s", logs)
	}
}
