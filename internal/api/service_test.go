package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/store"
)

func TestServiceAuth(t *testing.T) {
	owner, ownerSecondary := testKey("owner-primary"), testKey("owner-secondary")
	type tokenFunc func(now time.Time) string
	tests := []struct {
		name    string
		method  string
		path    string
		auth    tokenFunc
		wantOK  bool
		wantLog string // the precise reason, logged only
	}{
		{
			name: "Node order sr,sig,skn,se",
			auth: func(now time.Time) string {
				return token(testHost, "provisioningserviceowner", owner, now.Add(time.Hour))
			},
			wantOK: true,
		},
		{
			name: "C# order sr,sig,se,skn with the secondary key and an upper-case host",
			auth: func(now time.Time) string {
				return token("MUSTER.example.test", "provisioningserviceowner", ownerSecondary, now.Add(24*time.Hour), "sr", "sig", "se", "skn")
			},
			wantOK: true,
		},
		{
			name: "second configured host name",
			auth: func(now time.Time) string {
				return token("dps.other.test", "provisioningserviceowner", owner, now.Add(time.Hour))
			},
			wantOK: true,
		},
		{
			name: "sr with a port on the host",
			auth: func(now time.Time) string {
				return token(testHost+":8443", "provisioningserviceowner", owner, now.Add(time.Hour))
			},
			wantOK: true,
		},
		{
			name: "URL-encoded sr (C#, Python)",
			auth: func(now time.Time) string {
				return token("muster.example.test%2Fenrollments", "provisioningserviceowner", owner, now.Add(time.Hour))
			},
			wantOK: true,
		},
		{
			name: "sr with a path prefix covering the request",
			auth: func(now time.Time) string {
				return token(testHost+"/enrollments", "provisioningserviceowner", owner, now.Add(time.Hour))
			},
			wantOK: true,
		},
		{
			name: "expired within the allowed skew",
			auth: func(now time.Time) string {
				return token(testHost, "provisioningserviceowner", owner, now.Add(-4*time.Minute))
			},
			wantOK: true,
		},
		{
			name:    "no Authorization header",
			auth:    func(time.Time) string { return "" },
			wantLog: "no Authorization header",
		},
		{
			name:    "bearer token",
			auth:    func(time.Time) string { return "Bearer eyJ0eXAiOi" },
			wantLog: "is not SharedAccessSignature",
		},
		{
			name:    "malformed token",
			auth:    func(time.Time) string { return "SharedAccessSignature sr=x&sig=%%&se=1&skn=p" },
			wantLog: "parse service token",
		},
		{
			name: "wrong key",
			auth: func(now time.Time) string {
				return token(testHost, "provisioningserviceowner", testKey("someone else"), now.Add(time.Hour))
			},
			wantLog: "signature matches neither key",
		},
		{
			name: "expired",
			auth: func(now time.Time) string {
				return token(testHost, "provisioningserviceowner", owner, now.Add(-10*time.Minute))
			},
			wantLog: "expired",
		},
		{
			name: "unknown policy",
			auth: func(now time.Time) string {
				return token(testHost, "nobody", owner, now.Add(time.Hour))
			},
			wantLog: `unknown policy "nobody"`,
		},
		{
			name: "missing skn",
			auth: func(now time.Time) string {
				return token(testHost, "", owner, now.Add(time.Hour), "sr", "sig", "se")
			},
			wantLog: "no skn",
		},
		{
			name: "hub-realm policy is refused",
			auth: func(now time.Time) string {
				return token(testHost, "iothubowner", testKey("hub-primary"), now.Add(time.Hour))
			},
			wantLog: `realm "hub"`,
		},
		{
			name: "host not served",
			auth: func(now time.Time) string {
				return token("evil.example.test", "provisioningserviceowner", owner, now.Add(time.Hour))
			},
			wantLog: `sr host "evil.example.test"`,
		},
		{
			name: "sr path prefix does not cover the request",
			auth: func(now time.Time) string {
				return token(testHost+"/enrollmentgroups", "provisioningserviceowner", owner, now.Add(time.Hour))
			},
			wantLog: "does not cover the request path",
		},
		{
			name: "sr path must match whole segments",
			auth: func(now time.Time) string {
				return token(testHost+"/enroll", "provisioningserviceowner", owner, now.Add(time.Hour))
			},
			wantLog: "does not cover the request path",
		},
		{
			name:   "policy without the right",
			method: http.MethodPut,
			path:   "/enrollments/dev1?api-version=2021-10-01",
			auth: func(now time.Time) string {
				return token(testHost, "reader", testKey("reader-primary"), now.Add(time.Hour))
			},
			wantLog: "lacks the EnrollmentWrite right",
		},
		{
			name:   "reader may read",
			method: http.MethodGet,
			path:   "/enrollments/dev1?api-version=2021-10-01",
			auth: func(now time.Time) string {
				return token(testHost, "reader", testKey("reader-primary"), now.Add(time.Hour))
			},
			wantOK: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.enr.seed(func() {
				h.enr.enrollments["dev1"] = &enroll.IndividualEnrollment{RegistrationID: "dev1"}
			})
			method, path := tc.method, tc.path
			if method == "" {
				method, path = http.MethodGet, "/enrollments/dev1?api-version=2021-10-01"
			}
			hdr := map[string]string{}
			tok := tc.auth(h.now)
			if tok != "" {
				hdr["Authorization"] = tok
			}
			body := ""
			if method == http.MethodPut {
				body = `{"attestation":{"type":"none"}}`
			}
			res := h.do(nil, method, path, body, hdr)
			logs := strings.ReplaceAll(h.logs.take(), `\"`, `"`) // the text handler escapes quotes
			if tc.wantOK {
				if res.status != http.StatusOK {
					t.Fatalf("status %d, want 200: %s\nlog: %s", res.status, res.body, logs)
				}
				return
			}
			if res.status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", res.status, res.body)
			}
			b := res.errorBody(t)
			if b.ErrorCode != 401002 || b.Message != "Unauthorized" {
				t.Errorf("error %d %q, want 401002 \"Unauthorized\" (nothing about the cause)", b.ErrorCode, b.Message)
			}
			if !strings.Contains(logs, tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs)
			}
			if _, sig, ok := strings.Cut(tok, "sig="); ok && len(sig) > 10 && strings.Contains(logs, sig[:10]) {
				t.Errorf("log contains the token signature:\n%s", logs)
			}
			for _, k := range []string{owner, ownerSecondary, testKey("hub-primary")} {
				if strings.Contains(logs, k) {
					t.Errorf("log contains a key:\n%s", logs)
				}
			}
			if calls := h.enr.took(); len(calls) != 0 {
				t.Errorf("enrollment service called despite refusal: %v", calls)
			}
		})
	}
}

func TestServiceRoutes(t *testing.T) {
	symmetric := &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey,
		SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: "cA==", SecondaryKey: "cw=="}}
	seed := func(h *harness) {
		h.enr.seed(func() {
			h.enr.enrollments["dev1"] = &enroll.IndividualEnrollment{RegistrationID: "dev1", Common: enroll.Common{Attestation: symmetric, ETag: `"e1"`}}
			h.enr.enrollments["dev:2"] = &enroll.IndividualEnrollment{RegistrationID: "dev:2", Common: enroll.Common{Attestation: symmetric, ETag: `"e2"`}}
			h.enr.groups["grp1"] = &enroll.EnrollmentGroup{EnrollmentGroupID: "grp1", Common: enroll.Common{Attestation: symmetric, ETag: `"g1"`}}
			h.enr.cas["root"] = &enroll.CACertificate{Name: "root", Certificate: "pem", ETag: `"c1"`}
		})
		h.regs.seed(func() {
			h.regs.states["dev1"] = &enroll.RegistrationStateView{RegistrationID: "dev1", Status: "assigned", ETag: "r1"}
			h.regs.states["dev3"] = &enroll.RegistrationStateView{RegistrationID: "dev3", Status: "assigned"}
			h.regs.groupOf["dev1"], h.regs.groupOf["dev3"] = "grp1", "grp1"
			h.regs.attempts = []store.Attempt{
				{ID: "a3", RegistrationID: "dev1", Outcome: "assigned"},
				{ID: "a2", RegistrationID: "dev9", Outcome: "denied", Reason: "sas_signature_mismatch"},
				{ID: "a1", RegistrationID: "dev1", Outcome: "denied"},
			}
		})
	}
	const v = "?api-version=2021-10-01"
	tests := []struct {
		name         string
		method, path string
		body         string
		header       map[string]string
		wantStatus   int
		wantCalls    []call
		wantItemType string
		wantCont     string
		wantBody     string // JSON the body must equal, when set
	}{
		{name: "create enrollment", method: http.MethodPut, path: "/enrollments/new1" + v,
			body:       `{"registrationId":"new1","attestation":{"type":"symmetricKey"},"futureField":1}`,
			wantStatus: 200, wantCalls: []call{{Op: "PutEnrollment", ID: "new1"}}},
		{name: "create enrollment, id from the path", method: http.MethodPut, path: "/enrollments/new%3A2" + v,
			body:       `{"attestation":{"type":"symmetricKey"}}`,
			wantStatus: 200, wantCalls: []call{{Op: "PutEnrollment", ID: "new:2"}}},
		{name: "update with If-Match passed verbatim", method: http.MethodPut, path: "/enrollments/dev1" + v,
			body: `{"registrationId":"DEV1","attestation":{"type":"symmetricKey"}}`, header: map[string]string{"If-Match": `"e1"`},
			wantStatus: 200, wantCalls: []call{{Op: "PutEnrollment", ID: "DEV1", IfMatch: `"e1"`}}},
		{name: "enrollment body id mismatch", method: http.MethodPut, path: "/enrollments/dev1" + v,
			body: `{"registrationId":"other","attestation":{"type":"symmetricKey"}}`, wantStatus: 400},
		{name: "enrollment empty body", method: http.MethodPut, path: "/enrollments/dev1" + v, wantStatus: 400},
		{name: "get enrollment", method: http.MethodGet, path: "/enrollments/dev1" + v,
			wantStatus: 200, wantCalls: []call{{Op: "GetEnrollment", ID: "dev1"}}},
		{name: "get percent-encoded enrollment id, upper-case path", method: http.MethodGet, path: "/ENROLLMENTS/dev%3A2" + v,
			wantStatus: 200, wantCalls: []call{{Op: "GetEnrollment", ID: "dev:2"}}},
		{name: "get missing enrollment", method: http.MethodGet, path: "/enrollments/nope" + v,
			wantStatus: 404, wantCalls: []call{{Op: "GetEnrollment", ID: "nope"}}},
		{name: "missing api-version", method: http.MethodGet, path: "/enrollments/dev1", wantStatus: 400},
		{name: "delete enrollment", method: http.MethodDelete, path: "/enrollments/dev1" + v, header: map[string]string{"If-Match": `"e1"`},
			wantStatus: 204, wantCalls: []call{{Op: "DeleteEnrollment", ID: "dev1", IfMatch: `"e1"`}}},
		{name: "delete enrollment with stale etag", method: http.MethodDelete, path: "/enrollments/dev1" + v, header: map[string]string{"If-Match": `"old"`},
			wantStatus: 412, wantCalls: []call{{Op: "DeleteEnrollment", ID: "dev1", IfMatch: `"old"`}}},
		{name: "enrollment attestation without body", method: http.MethodPost, path: "/enrollments/dev1/attestationmechanism" + v,
			wantStatus: 200, wantCalls: []call{{Op: "EnrollmentAttestation", ID: "dev1"}},
			wantBody: `{"type":"symmetricKey","symmetricKey":{"primaryKey":"cA==","secondaryKey":"cw=="}}`},
		{name: "query enrollments, last page", method: http.MethodPost, path: "/enrollments/query" + v, body: `{"query":"*"}`,
			wantStatus: 200, wantCalls: []call{{Op: "QueryEnrollments", Query: "*", Max: 100}}, wantItemType: "enrollment"},
		{name: "query enrollments, first of two pages", method: http.MethodPost, path: "/enrollments/query" + v, body: `{"query":"*"}`,
			header:     map[string]string{"x-ms-max-item-count": "1"},
			wantStatus: 200, wantCalls: []call{{Op: "QueryEnrollments", Query: "*", Max: 1}}, wantItemType: "enrollment", wantCont: "1"},
		{name: "query enrollments, continuation in, no body", method: http.MethodPost, path: "/enrollments/query" + v,
			header:     map[string]string{"x-ms-max-item-count": "1", "x-ms-continuation": "1"},
			wantStatus: 200, wantCalls: []call{{Op: "QueryEnrollments", Continuation: "1", Max: 1}}, wantItemType: "enrollment"},
		{name: "query page size is capped", method: http.MethodPost, path: "/enrollments/query" + v,
			header:     map[string]string{"x-ms-max-item-count": "5000"},
			wantStatus: 200, wantCalls: []call{{Op: "QueryEnrollments", Max: 1000}}, wantItemType: "enrollment"},
		{name: "query page size must be a number", method: http.MethodPost, path: "/enrollments/query" + v,
			header: map[string]string{"x-ms-max-item-count": "lots"}, wantStatus: 400},
		{name: "bulk enrollments with Node's trailing slash", method: http.MethodPost, path: "/enrollments/" + v,
			body:       `{"mode":"create","enrollments":[{"registrationId":"b1","attestation":{"type":"symmetricKey"}},{"registrationId":"dev1"}]}`,
			wantStatus: 200, wantCalls: []call{{Op: "BulkEnrollments", Mode: "create", Items: 2}},
			wantBody: `{"isSuccessful":false,"errors":[{"registrationId":"dev1","errorCode":409001,"errorStatus":"already exists"}]}`},
		{name: "bulk enrollments over the limit", method: http.MethodPost, path: "/enrollments" + v,
			body: `{"mode":"create","enrollments":[` + strings.TrimSuffix(strings.Repeat(`{"registrationId":"x"},`, 11), ",") + `]}`, wantStatus: 400},

		{name: "create group", method: http.MethodPut, path: "/enrollmentGroups/g2" + v,
			body:       `{"enrollmentGroupId":"g2","attestation":{"type":"symmetricKey"}}`,
			wantStatus: 200, wantCalls: []call{{Op: "PutGroup", ID: "g2"}}},
		{name: "group body id mismatch", method: http.MethodPut, path: "/enrollmentGroups/g2" + v,
			body: `{"enrollmentGroupId":"g3","attestation":{"type":"symmetricKey"}}`, wantStatus: 400},
		{name: "get group", method: http.MethodGet, path: "/enrollmentGroups/grp1" + v,
			wantStatus: 200, wantCalls: []call{{Op: "GetGroup", ID: "grp1"}}},
		{name: "delete group", method: http.MethodDelete, path: "/enrollmentgroups/grp1" + v,
			wantStatus: 204, wantCalls: []call{{Op: "DeleteGroup", ID: "grp1"}}},
		{name: "group attestation on Node's lower-case path", method: http.MethodPost, path: "/enrollmentgroups/grp1/attestationmechanism" + v,
			wantStatus: 200, wantCalls: []call{{Op: "GroupAttestation", ID: "grp1"}}},
		{name: "query groups", method: http.MethodPost, path: "/enrollmentGroups/query" + v, body: `{"query":"SELECT * FROM enrollmentGroups"}`,
			wantStatus: 200, wantCalls: []call{{Op: "QueryGroups", Query: "SELECT * FROM enrollmentGroups", Max: 100}}, wantItemType: "enrollmentGroup"},
		{name: "bulk groups", method: http.MethodPost, path: "/enrollmentGroups/" + v,
			body:       `{"mode":"update","enrollmentGroups":[{"enrollmentGroupId":"g9","attestation":{"type":"symmetricKey"}}]}`,
			wantStatus: 200, wantCalls: []call{{Op: "BulkGroups", Mode: "update", Items: 1}}, wantBody: `{"isSuccessful":true,"errors":[]}`},

		{name: "get registration", method: http.MethodGet, path: "/registrations/dev1" + v,
			wantStatus: 200, wantCalls: []call{{Op: "GetRegistration", ID: "dev1"}},
			wantBody: `{"registrationId":"dev1","status":"assigned","etag":"r1"}`},
		{name: "delete registration", method: http.MethodDelete, path: "/registrations/dev1" + v, header: map[string]string{"If-Match": "r1"},
			wantStatus: 204, wantCalls: []call{{Op: "DeleteRegistration", ID: "dev1", IfMatch: "r1"}}},
		{name: "query group registrations, Node body ignored", method: http.MethodPost, path: "/registrations/grp1/query" + v, body: `{"query":"*"}`,
			header:     map[string]string{"x-ms-max-item-count": "1"},
			wantStatus: 200, wantCalls: []call{{Op: "QueryGroupRegistrations", ID: "grp1", Max: 1}}, wantItemType: "deviceRegistration", wantCont: "1",
			wantBody: `[{"registrationId":"dev1","status":"assigned","etag":"r1"}]`},
		{name: "query group registrations, empty result is an array", method: http.MethodPost, path: "/registrations/none/query" + v,
			wantStatus: 200, wantCalls: []call{{Op: "QueryGroupRegistrations", ID: "none", Max: 100}}, wantItemType: "deviceRegistration",
			wantBody: `[]`},

		{name: "upload CA", method: http.MethodPut, path: "/certificates/ca2", body: `{"certificate":"pem2"}`,
			wantStatus: 200, wantCalls: []call{{Op: "PutCA", ID: "ca2", Cert: "pem2"}}},
		{name: "upload CA without certificate", method: http.MethodPut, path: "/certificates/ca2", body: `{}`, wantStatus: 400},
		{name: "list CAs", method: http.MethodGet, path: "/certificates",
			wantStatus: 200, wantCalls: []call{{Op: "ListCAs"}}, wantBody: `[{"name":"root","certificate":"pem","subject":"","thumbprint":"","sha256Thumbprint":"","isVerified":false,"expiry":"0001-01-01T00:00:00Z","created":"0001-01-01T00:00:00Z","updated":"0001-01-01T00:00:00Z","etag":"\"c1\""}]`},
		{name: "get CA", method: http.MethodGet, path: "/certificates/root",
			wantStatus: 200, wantCalls: []call{{Op: "GetCA", ID: "root"}}},
		{name: "get missing CA", method: http.MethodGet, path: "/certificates/none",
			wantStatus: 404, wantCalls: []call{{Op: "GetCA", ID: "none"}}},
		{name: "generate verification code", method: http.MethodPost, path: "/certificates/root/generateVerificationCode", header: map[string]string{"If-Match": `"c1"`},
			wantStatus: 200, wantCalls: []call{{Op: "GenerateVerificationCode", ID: "root", IfMatch: `"c1"`}}},
		{name: "verify CA with a wrong proof", method: http.MethodPost, path: "/certificates/root/verify", body: `{"certificate":"wrong"}`,
			wantStatus: 400, wantCalls: []call{{Op: "VerifyCA", ID: "root", Cert: "wrong"}}},
		{name: "delete CA", method: http.MethodDelete, path: "/certificates/root",
			wantStatus: 204, wantCalls: []call{{Op: "DeleteCA", ID: "root"}}},

		{name: "attempts of one registration, lower-cased", method: http.MethodGet, path: "/registrations/DEV1/attempts?limit=5",
			wantStatus: 200, wantCalls: []call{{Op: "Attempts", ID: "dev1", Max: 5}},
			wantBody: `[{"id":"a3","time":"0001-01-01T00:00:00Z","registrationId":"dev1","protocol":"","attestation":"","outcome":"assigned"},{"id":"a1","time":"0001-01-01T00:00:00Z","registrationId":"dev1","protocol":"","attestation":"","outcome":"denied"}]`},
		{name: "recent attempts", method: http.MethodGet, path: "/attempts?limit=1",
			wantStatus: 200, wantCalls: []call{{Op: "Attempts", Max: 1}},
			wantBody: `[{"id":"a3","time":"0001-01-01T00:00:00Z","registrationId":"dev1","protocol":"","attestation":"","outcome":"assigned"}]`},
		{name: "attempts with no limit", method: http.MethodGet, path: "/attempts/",
			wantStatus: 200, wantCalls: []call{{Op: "Attempts"}}},
		{name: "attempts with a bad limit", method: http.MethodGet, path: "/attempts?limit=0", wantStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			seed(h)
			res := h.service(tc.method, tc.path, tc.body, tc.header)
			if res.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", res.status, tc.wantStatus, res.body)
			}
			calls := append(h.enr.took(), h.regs.took()...)
			if diff := cmp.Diff(tc.wantCalls, calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if got := res.header.Get("x-ms-item-type"); got != tc.wantItemType {
				t.Errorf("x-ms-item-type %q, want %q", got, tc.wantItemType)
			}
			if got, present := res.header["X-Ms-Continuation"]; tc.wantCont == "" && present {
				t.Errorf("x-ms-continuation %q present on the last page", got)
			} else if tc.wantCont != "" && res.header.Get("x-ms-continuation") != tc.wantCont {
				t.Errorf("x-ms-continuation %q, want %q", res.header.Get("x-ms-continuation"), tc.wantCont)
			}
			if tc.wantItemType != "" && !strings.HasPrefix(string(res.body), "[") {
				t.Errorf("query answer is not an array: %s", res.body)
			}
			if tc.wantBody != "" && string(res.body) != tc.wantBody {
				t.Errorf("body\n got %s\nwant %s", res.body, tc.wantBody)
			}
		})
	}
}

func TestServicePutReturnsStored(t *testing.T) {
	h := newHarness(t)
	res := h.service(http.MethodPut, "/enrollments/dev1?api-version=2021-10-01",
		`{"registrationId":"dev1","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"cA==","secondaryKey":"cw=="}},"etag":"\"ignored\"","capabilities":{"iotEdge":true}}`, nil)
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	var got enroll.IndividualEnrollment
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatal(err)
	}
	want := enroll.IndividualEnrollment{RegistrationID: "dev1", Common: enroll.Common{
		Attestation: &enroll.AttestationMechanism{Type: "symmetricKey",
			SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: "cA==", SecondaryKey: "cw=="}},
		Capabilities: &enroll.Capabilities{IoTEdge: true}, ETag: `"1"`}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name       string
		path       string
		err        error
		wantStatus int
		wantCode   int
		wantMsg    string
	}{
		{"enrollment not found", "/enrollments/x", fmt.Errorf("get x: %w", enroll.ErrNotFound), 404, 404201, "the enrollment does not exist"},
		{"registration not found", "/registrations/x", enroll.ErrNotFound, 404, 404201, "the registration does not exist"},
		{"group not found", "/enrollmentGroups/x", enroll.ErrNotFound, 404, 404202, "the enrollment group does not exist"},
		{"CA not found", "/certificates/x", enroll.ErrNotFound, 404, 404202, "the CA certificate does not exist"},
		{"precondition", "/enrollments/x", fmt.Errorf("put: %w", enroll.ErrPrecondition), 412, 412002, "If-Match does not match the current etag of the enrollment"},
		{"conflict", "/enrollmentGroups/x", enroll.ErrConflict, 409, 409001, "the enrollment group already exists"},
		{"validation", "/enrollments/x", fmt.Errorf("put: %w", enroll.Invalid("attestation.type", "%q is unknown", "y")), 400, 400004, `invalid attestation.type: "y" is unknown`},
		{"provision error", "/registrations/x", &provision.Error{Status: 429, Code: 429001, Message: "slow down", RetryAfter: 2}, 429, 429001, "slow down"},
		{"anything else", "/enrollments/x", errors.New("disk full at /var/lib/secret"), 500, 500000, "internal error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.enr.setErr(tc.err)
			h.regs.setErr(tc.err)
			res := h.service(http.MethodGet, tc.path+"?api-version=2021-10-01", "", nil)
			if res.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", res.status, tc.wantStatus, res.body)
			}
			b := res.errorBody(t)
			if b.ErrorCode != tc.wantCode || !strings.Contains(b.Message, tc.wantMsg) {
				t.Errorf("error %d %q, want %d containing %q", b.ErrorCode, b.Message, tc.wantCode, tc.wantMsg)
			}
			if got := res.header.Get("x-ms-error-code"); got != fmt.Sprint(tc.wantCode) {
				t.Errorf("x-ms-error-code %q, want %d", got, tc.wantCode)
			}
			if strings.Contains(string(res.body), "/var/lib/secret") {
				t.Errorf("internal detail leaked: %s", res.body)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	h := newHarness(t)
	res := h.do(nil, http.MethodGet, "/healthz", "", nil)
	if res.status != http.StatusOK || string(res.body) != `{"status":"ok"}` {
		t.Errorf("got %d %s", res.status, res.body)
	}
}

func TestRoutingErrors(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantAllow  string
	}{
		{"unknown service path", http.MethodGet, "/nothing/here", 404, ""},
		{"wrong method on an enrollment", http.MethodPatch, "/enrollments/dev1?api-version=1", 405, "DELETE, GET, PUT"},
		{"wrong method on bulk", http.MethodGet, "/enrollments/?api-version=1", 405, "POST"},
		{"wrong method on register", http.MethodPost, "/0ne00000001/registrations/dev1/register?api-version=1", 405, "PUT"},
		{"device route cannot hide under a reserved segment", http.MethodPut, "/enrollments/registrations/dev1/register?api-version=1", 404, ""},
		{"empty segment", http.MethodGet, "/enrollments//x", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			res := h.service(tc.method, tc.path, "", nil)
			if res.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", res.status, tc.wantStatus, res.body)
			}
			if got := res.header.Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow %q, want %q", got, tc.wantAllow)
			}
			h.reg.mu.Lock()
			defer h.reg.mu.Unlock()
			if calls := len(h.reg.register) + len(h.enr.took()) + len(h.regs.took()); calls != 0 {
				t.Errorf("%d backend calls, want none", calls)
			}
		})
	}
}

func TestNew(t *testing.T) {
	full := func() Options {
		return Options{Registrar: &fakeRegistrar{}, Registrations: newFakeRegistrations(), Enrollments: newFakeEnrollments(),
			Policies: fakePolicies{}, ServiceHostNames: []string{"h.test"}}
	}
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{"complete", func(*Options) {}, ""},
		{"missing dependencies", func(o *Options) { o.Registrar, o.Policies = nil, nil }, "options Registrar, Policies are required"},
		{"no host names", func(o *Options) { o.ServiceHostNames = nil }, "ServiceHostNames needs at least one"},
		{"bad host name", func(o *Options) { o.ServiceHostNames = []string{"h.test/path"} }, `ServiceHostNames[0] "h.test/path"`},
		{"negative body limit", func(o *Options) { o.MaxBodyBytes = -1 }, "MaxBodyBytes -1 is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := full()
			tc.mutate(&o)
			a, err := New(o)
			if tc.wantErr == "" {
				if err != nil || a == nil {
					t.Fatalf("New: %v", err)
				}
				if a.maxBody != DefaultMaxBodyBytes {
					t.Errorf("default body limit %d, want %d", a.maxBody, DefaultMaxBodyBytes)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
