package dpsservice

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store"
)

// testHost is a DNS name the httptest certificate is valid for.
const testHost = "example.com"

const testPolicy = "provisioningserviceowner"

var testNow = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

// seen is what the fake server observed of one request.
type seen struct {
	Method      string
	Path        string // escaped
	APIVersion  string
	Query       map[string]string // other query parameters
	IfMatch     string
	ContentType string
	MaxItems    string
	Cont        string
	Body        string
}

// fake is a TLS test server whose handler answers with a scripted function
// after checking the SAS token.
type fake struct {
	t    *testing.T
	srv  *httptest.Server
	key  []byte
	keyB string

	mu    sync.Mutex
	reqs  []seen
	reply func(n int, r *http.Request, s seen) (status int, header http.Header, body string)
}

func newFake(t *testing.T) *fake {
	t.Helper()
	key := []byte("0123456789abcdef0123456789abcdef")
	f := &fake{t: t, key: key, keyB: base64.StdEncoding.EncodeToString(key)}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := f.checkAuth(r.Header.Get("Authorization")); err != "" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errorCode":401002,"trackingId":"t-auth","message":"`+err+`"}`)
		return
	}
	q := r.URL.Query()
	s := seen{
		Method:      r.Method,
		Path:        r.URL.EscapedPath(),
		APIVersion:  q.Get("api-version"),
		IfMatch:     r.Header.Get("If-Match"),
		ContentType: r.Header.Get("Content-Type"),
		MaxItems:    r.Header.Get("x-ms-max-item-count"),
		Cont:        r.Header.Get("x-ms-continuation"),
		Body:        string(body),
	}
	for k := range q {
		if k != "api-version" {
			if s.Query == nil {
				s.Query = map[string]string{}
			}
			s.Query[k] = q.Get(k)
		}
	}
	f.mu.Lock()
	n := len(f.reqs)
	f.reqs = append(f.reqs, s)
	reply := f.reply
	f.mu.Unlock()
	status, h, out := 200, http.Header(nil), "{}"
	if reply != nil {
		status, h, out = reply(n, r, s)
	}
	for k, v := range h {
		w.Header()[k] = v
	}
	if out != "" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, out)
}

// checkAuth verifies the service SAS token; it returns "" when it is good.
func (f *fake) checkAuth(h string) string {
	tok, err := sas.Parse(h)
	if err != nil {
		return "parse: " + err.Error()
	}
	if !strings.HasPrefix(h, sas.Prefix) {
		return "no SharedAccessSignature prefix"
	}
	if tok.Resource != testHost {
		return "sr is " + tok.Resource
	}
	if tok.KeyName != testPolicy {
		return "skn is " + tok.KeyName
	}
	if !tok.Expiry.Equal(testNow.Add(TokenTTL)) {
		return "se is " + tok.Expiry.String()
	}
	if !tok.VerifyKey(f.key) {
		return "signature does not verify"
	}
	return ""
}

func (f *fake) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

func (f *fake) connString() string {
	return "HostName=" + testHost + ";SharedAccessKeyName=" + testPolicy + ";SharedAccessKey=" + f.keyB
}

func (f *fake) client(t *testing.T) *Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	c, err := New(Options{
		ConnectionString: f.connString(),
		Server:           f.srv.Listener.Addr().String(),
		RootCAs:          pool,
		Now:              func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestOperations(t *testing.T) {
	symEnrollment := &enroll.IndividualEnrollment{
		RegistrationID: "dev 1/x",
		Common: enroll.Common{
			Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey},
		},
	}
	group := &enroll.EnrollmentGroup{
		EnrollmentGroupID: "g1",
		Common:            enroll.Common{Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey}},
	}
	const jsonCT = "application/json; charset=utf-8"
	tests := []struct {
		name  string
		reply string
		call  func(ctx context.Context, c *Client) (any, error)
		want  seen
		out   any
	}{
		{
			name:  "put enrollment escapes the id and sends If-Match",
			reply: `{"registrationId":"dev 1/x","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"cA==","secondaryKey":"cw=="}},"etag":"\"e2\""}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.PutEnrollment(ctx, symEnrollment, `"e1"`)
			},
			want: seen{Method: "PUT", Path: "/enrollments/dev%201%2Fx", IfMatch: `"e1"`, ContentType: jsonCT,
				Body: `{"registrationId":"dev 1/x","attestation":{"type":"symmetricKey"}}`},
			out: &enroll.IndividualEnrollment{RegistrationID: "dev 1/x", Common: enroll.Common{
				Attestation: &enroll.AttestationMechanism{Type: "symmetricKey", SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: "cA==", SecondaryKey: "cw=="}},
				ETag:        `"e2"`,
			}},
		},
		{
			name:  "get enrollment",
			reply: `{"registrationId":"dev1","attestation":{"type":"x509"},"registrationState":{"registrationId":"dev1","status":"assigned","deviceId":"dev1"}}`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.GetEnrollment(ctx, "dev1") },
			want:  seen{Method: "GET", Path: "/enrollments/dev1"},
			out: &enroll.IndividualEnrollment{RegistrationID: "dev1",
				RegistrationState: &enroll.RegistrationStateView{RegistrationID: "dev1", Status: "assigned", DeviceID: "dev1"},
				Common:            enroll.Common{Attestation: &enroll.AttestationMechanism{Type: "x509"}}},
		},
		{
			name: "delete enrollment",
			call: func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteEnrollment(ctx, "dev1", "*") },
			want: seen{Method: "DELETE", Path: "/enrollments/dev1", IfMatch: "*"},
		},
		{
			name:  "enrollment attestation posts no body",
			reply: `{"type":"symmetricKey","symmetricKey":{"primaryKey":"a2V5"}}`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.EnrollmentAttestation(ctx, "dev1") },
			want:  seen{Method: "POST", Path: "/enrollments/dev1/attestationmechanism"},
			out:   &enroll.AttestationMechanism{Type: "symmetricKey", SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: "a2V5"}},
		},
		{
			name:  "bulk enrollments",
			reply: `{"isSuccessful":false,"errors":[{"registrationId":"dev 1/x","errorCode":409001,"errorStatus":"exists"}]}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.BulkEnrollments(ctx, BulkCreate, []*enroll.IndividualEnrollment{symEnrollment})
			},
			want: seen{Method: "POST", Path: "/enrollments", ContentType: jsonCT,
				Body: `{"mode":"create","enrollments":[{"registrationId":"dev 1/x","attestation":{"type":"symmetricKey"}}]}`},
			out: &enroll.BulkResult{Errors: []enroll.BulkError{{RegistrationID: "dev 1/x", ErrorCode: 409001, ErrorStatus: "exists"}}},
		},
		{
			name:  "put group",
			reply: `{"enrollmentGroupId":"g1","attestation":{"type":"symmetricKey"}}`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.PutGroup(ctx, group, "") },
			want: seen{Method: "PUT", Path: "/enrollmentGroups/g1", ContentType: jsonCT,
				Body: `{"enrollmentGroupId":"g1","attestation":{"type":"symmetricKey"}}`},
			out: group,
		},
		{
			name:  "get group",
			reply: `{"enrollmentGroupId":"g1","attestation":{"type":"symmetricKey"}}`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.GetGroup(ctx, "g1") },
			want:  seen{Method: "GET", Path: "/enrollmentGroups/g1"},
			out:   group,
		},
		{
			name: "delete group",
			call: func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteGroup(ctx, "g1", `"e"`) },
			want: seen{Method: "DELETE", Path: "/enrollmentGroups/g1", IfMatch: `"e"`},
		},
		{
			name:  "group attestation",
			reply: `{"type":"x509","x509":{"caReferences":{"primary":"root"}}}`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.GroupAttestation(ctx, "g1") },
			want:  seen{Method: "POST", Path: "/enrollmentGroups/g1/attestationmechanism"},
			out:   &enroll.AttestationMechanism{Type: "x509", X509: &enroll.X509Attestation{CAReferences: &enroll.X509CAReferences{Primary: "root"}}},
		},
		{
			name:  "bulk groups",
			reply: `{"isSuccessful":true,"errors":[]}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.BulkGroups(ctx, BulkDelete, []*enroll.EnrollmentGroup{group})
			},
			want: seen{Method: "POST", Path: "/enrollmentGroups", ContentType: jsonCT,
				Body: `{"mode":"delete","enrollmentGroups":[{"enrollmentGroupId":"g1","attestation":{"type":"symmetricKey"}}]}`},
			out: &enroll.BulkResult{IsSuccessful: true, Errors: []enroll.BulkError{}},
		},
		{
			name:  "get registration",
			reply: `{"registrationId":"dev1","status":"failed","errorCode":401002,"errorMessage":"no"}`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.GetRegistration(ctx, "dev1") },
			want:  seen{Method: "GET", Path: "/registrations/dev1"},
			out:   &enroll.RegistrationStateView{RegistrationID: "dev1", Status: "failed", ErrorCode: 401002, ErrorMessage: "no"},
		},
		{
			name: "delete registration",
			call: func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteRegistration(ctx, "dev1", "") },
			want: seen{Method: "DELETE", Path: "/registrations/dev1"},
		},
		{
			name:  "attempts of one registration",
			reply: `[{"id":"a1","time":"2031-05-06T07:00:00Z","registrationId":"dev1","protocol":"https","attestation":"symmetricKey","outcome":"denied","reason":"sas_signature_mismatch"}]`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.Attempts(ctx, "Dev1", 5) },
			want:  seen{Method: "GET", Path: "/registrations/Dev1/attempts", Query: map[string]string{"limit": "5"}},
			out: []store.Attempt{{ID: "a1", Time: time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC), RegistrationID: "dev1",
				Protocol: "https", Attestation: "symmetricKey", Outcome: "denied", Reason: "sas_signature_mismatch"}},
		},
		{
			name:  "attempts of every device",
			reply: `[]`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.Attempts(ctx, "", 0) },
			want:  seen{Method: "GET", Path: "/attempts"},
			out:   []store.Attempt{},
		},
		{
			name:  "put CA",
			reply: `{"name":"root","subject":"CN=root","isVerified":false,"etag":"\"c1\""}`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.PutCA(ctx, "root", "PEM", "") },
			want:  seen{Method: "PUT", Path: "/certificates/root", ContentType: jsonCT, Body: `{"certificate":"PEM"}`},
			out:   &enroll.CACertificate{Name: "root", Subject: "CN=root", ETag: `"c1"`},
		},
		{
			name:  "get CA",
			reply: `{"name":"root","isVerified":true}`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.GetCA(ctx, "root") },
			want:  seen{Method: "GET", Path: "/certificates/root"},
			out:   &enroll.CACertificate{Name: "root", IsVerified: true},
		},
		{
			name:  "list CAs as an array",
			reply: `[{"name":"a"},{"name":"b"}]`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.ListCAs(ctx) },
			want:  seen{Method: "GET", Path: "/certificates"},
			out:   []*enroll.CACertificate{{Name: "a"}, {Name: "b"}},
		},
		{
			name:  "list CAs as an ARM value object",
			reply: `{"value":[{"name":"a"}]}`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.ListCAs(ctx) },
			want:  seen{Method: "GET", Path: "/certificates"},
			out:   []*enroll.CACertificate{{Name: "a"}},
		},
		{
			name: "delete CA",
			call: func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteCA(ctx, "root", `"c1"`) },
			want: seen{Method: "DELETE", Path: "/certificates/root", IfMatch: `"c1"`},
		},
		{
			name:  "generate verification code",
			reply: `{"name":"root","verificationCode":"ABC","etag":"\"c2\""}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.GenerateVerificationCode(ctx, "root", `"c1"`)
			},
			want: seen{Method: "POST", Path: "/certificates/root/generateVerificationCode", IfMatch: `"c1"`},
			out:  &enroll.CACertificate{Name: "root", VerificationCode: "ABC", ETag: `"c2"`},
		},
		{
			name:  "verify CA",
			reply: `{"name":"root","isVerified":true}`,
			call:  func(ctx context.Context, c *Client) (any, error) { return c.VerifyCA(ctx, "root", "PROOF", `"c2"`) },
			want: seen{Method: "POST", Path: "/certificates/root/verify", IfMatch: `"c2"`, ContentType: jsonCT,
				Body: `{"certificate":"PROOF"}`},
			out: &enroll.CACertificate{Name: "root", IsVerified: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.reply = func(int, *http.Request, seen) (int, http.Header, string) {
				if tc.reply == "" {
					return http.StatusNoContent, nil, ""
				}
				return http.StatusOK, nil, tc.reply
			}
			got, err := tc.call(t.Context(), f.client(t))
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			want := tc.want
			want.APIVersion = APIVersion
			if diff := cmp.Diff([]seen{want}, f.requests()); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
			if tc.out != nil {
				if diff := cmp.Diff(tc.out, got); diff != "" {
					t.Errorf("result (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestQueryFollowsContinuation(t *testing.T) {
	tests := []struct {
		name     string
		pageSize int
		call     func(ctx context.Context, c *Client) ([]string, error)
		path     string
	}{
		{
			name: "enrollments", pageSize: 2, path: "/enrollments/query",
			call: func(ctx context.Context, c *Client) ([]string, error) {
				items, err := c.QueryEnrollments(ctx, QueryAll, 2)
				var ids []string
				for _, e := range items {
					ids = append(ids, e.RegistrationID)
				}
				return ids, err
			},
		},
		{
			name: "groups", pageSize: 0, path: "/enrollmentGroups/query",
			call: func(ctx context.Context, c *Client) ([]string, error) {
				items, err := c.QueryGroups(ctx, QueryAll, 0)
				var ids []string
				for _, e := range items {
					ids = append(ids, e.EnrollmentGroupID)
				}
				return ids, err
			},
		},
		{
			name: "group registrations", pageSize: 7, path: "/registrations/my%20group/query",
			call: func(ctx context.Context, c *Client) ([]string, error) {
				items, err := c.QueryGroupRegistrations(ctx, "my group", 7)
				var ids []string
				for _, e := range items {
					ids = append(ids, e.RegistrationID)
				}
				return ids, err
			},
		},
	}
	pages := []string{
		`[{"registrationId":"a","enrollmentGroupId":"a"},{"registrationId":"b","enrollmentGroupId":"b"}]`,
		`[{"registrationId":"c","enrollmentGroupId":"c"},{"registrationId":"d","enrollmentGroupId":"d"}]`,
		`[{"registrationId":"e","enrollmentGroupId":"e"}]`,
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.reply = func(n int, _ *http.Request, _ seen) (int, http.Header, string) {
				h := http.Header{}
				if n+1 < len(pages) {
					h.Set("x-ms-continuation", "tok"+strconv.Itoa(n+1))
				}
				if n >= len(pages) {
					return http.StatusBadRequest, nil, `{"errorCode":400004,"message":"too many pages"}`
				}
				return http.StatusOK, h, pages[n]
			}
			ids, err := tc.call(t.Context(), f.client(t))
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			if diff := cmp.Diff([]string{"a", "b", "c", "d", "e"}, ids); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
			max := ""
			if tc.pageSize > 0 {
				max = strconv.Itoa(tc.pageSize)
			}
			var want []seen
			for _, cont := range []string{"", "tok1", "tok2"} {
				want = append(want, seen{Method: "POST", Path: tc.path, APIVersion: APIVersion,
					ContentType: "application/json; charset=utf-8", MaxItems: max, Cont: cont, Body: `{"query":"*"}`})
			}
			if diff := cmp.Diff(want, f.requests()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestQueryRejectsRepeatedContinuation(t *testing.T) {
	f := newFake(t)
	f.reply = func(n int, _ *http.Request, _ seen) (int, http.Header, string) {
		if n > 5 {
			return http.StatusBadRequest, nil, `{"errorCode":400004,"message":"the client looped"}`
		}
		return http.StatusOK, http.Header{"X-Ms-Continuation": {"same"}}, `[]`
	}
	_, err := f.client(t).QueryEnrollments(t.Context(), QueryAll, 0)
	if err == nil || !strings.Contains(err.Error(), `repeated continuation token "same"`) {
		t.Fatalf("err = %v, want a repeated-token error", err)
	}
	if n := len(f.requests()); n != 2 {
		t.Errorf("sent %d requests, want 2", n)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		header   http.Header
		body     string
		want     *Error
		sentinel error
		text     string
	}{
		{
			name: "service error body", status: 404,
			body:     `{"errorCode":404201,"trackingId":"t-1","message":"the enrollment does not exist","timestampUtc":"2031-01-01T00:00:00Z"}`,
			want:     &Error{Status: 404, ErrorCode: 404201, Message: "the enrollment does not exist", TrackingID: "t-1"},
			sentinel: ErrNotFound,
			text:     `get enrollment "dev1": service answered 404 Not Found (errorCode 404201): the enrollment does not exist [trackingId t-1]`,
		},
		{
			name: "errorCode as a string", status: 412,
			body:     `{"errorCode":"412002","message":"etag"}`,
			want:     &Error{Status: 412, ErrorCode: 412002, Message: "etag"},
			sentinel: ErrPrecondition,
		},
		{
			name: "plain text body with header code", status: 409,
			header:   http.Header{"X-Ms-Error-Code": {"409001"}, "X-Ms-Request-Id": {"r-9"}},
			body:     "conflict\n",
			want:     &Error{Status: 409, ErrorCode: 409001, Message: "conflict", TrackingID: "r-9"},
			sentinel: ErrConflict,
		},
		{
			name: "empty body", status: 403,
			want:     &Error{Status: 403},
			sentinel: ErrUnauthorized,
			text:     `get enrollment "dev1": service answered 403 Forbidden`,
		},
		{
			name: "server error", status: 500,
			body: `{"errorCode":500000,"trackingId":"x","message":"internal error"}`,
			want: &Error{Status: 500, ErrorCode: 500000, Message: "internal error", TrackingID: "x"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.reply = func(int, *http.Request, seen) (int, http.Header, string) { return tc.status, tc.header, tc.body }
			_, err := f.client(t).GetEnrollment(t.Context(), "dev1")
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if diff := cmp.Diff(tc.want, se); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			for _, s := range []error{ErrNotFound, ErrConflict, ErrPrecondition, ErrUnauthorized} {
				if got, want := errors.Is(err, s), s == tc.sentinel; got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", s, got, want)
				}
			}
			if tc.text != "" && err.Error() != tc.text {
				t.Errorf("Error() = %q, want %q", err.Error(), tc.text)
			}
		})
	}
}

func TestWrongKeyIsUnauthorized(t *testing.T) {
	f := newFake(t)
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	c, err := New(Options{
		ConnectionString: "HostName=" + testHost + ";SharedAccessKeyName=" + testPolicy + ";SharedAccessKey=" + base64.StdEncoding.EncodeToString([]byte("wrong key")),
		Server:           f.srv.Listener.Addr().String(),
		RootCAs:          pool,
		Now:              func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_, err = c.GetCA(t.Context(), "root")
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "signature does not verify") {
		t.Fatalf("err = %v, want unauthorized: signature does not verify", err)
	}
}

func TestTLSVerification(t *testing.T) {
	f := newFake(t)
	good := x509.NewCertPool()
	good.AddCert(f.srv.Certificate())
	tests := []struct {
		name    string
		host    string
		roots   *x509.CertPool
		wantErr string
	}{
		{name: "trusted DNS name", host: testHost, roots: good},
		{name: "IP host name verified by IP SAN", host: "127.0.0.1", roots: good},
		{name: "untrusted root", host: testHost, roots: x509.NewCertPool(), wantErr: "certificate signed by unknown authority"},
		{name: "name not in certificate", host: "muster.invalid", roots: good, wantErr: "muster.invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Options{
				ConnectionString: "HostName=" + tc.host + ";SharedAccessKeyName=" + testPolicy + ";SharedAccessKey=" + f.keyB,
				Server:           f.srv.Listener.Addr().String(),
				RootCAs:          tc.roots,
				Now:              func() time.Time { return testNow },
			})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			_, err = c.ListCAs(t.Context())
			var se *Error
			switch {
			case tc.wantErr == "" && errors.As(err, &se) && se.Status == http.StatusUnauthorized:
				// The TLS handshake succeeded; the fake refused the sr, as expected for an IP host.
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ListCAs: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewValidation(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("k"))
	tests := []struct {
		name       string
		opts       Options
		wantErr    string
		wantServer string
	}{
		{name: "default port", opts: Options{ConnectionString: "HostName=h.test;SharedAccessKeyName=p;SharedAccessKey=" + key}, wantServer: "h.test:443"},
		{name: "server without port", opts: Options{ConnectionString: "HostName=h.test;SharedAccessKeyName=p;SharedAccessKey=" + key, Server: "10.0.0.1"}, wantServer: "10.0.0.1:443"},
		{name: "server with port", opts: Options{ConnectionString: "HostName=h.test;SharedAccessKeyName=p;SharedAccessKey=" + key, Server: "[::1]:8443"}, wantServer: "[::1]:8443"},
		{name: "empty", opts: Options{}, wantErr: "parse connection string: invalid connection string: connection string is empty"},
		{name: "device connection string", opts: Options{ConnectionString: "HostName=h.test;DeviceId=d;SharedAccessKey=" + key}, wantErr: "SharedAccessKeyName is missing"},
		{name: "bad key", opts: Options{ConnectionString: "HostName=h.test;SharedAccessKeyName=p;SharedAccessKey=!!!"}, wantErr: "SharedAccessKey"},
		{name: "bad port", opts: Options{ConnectionString: "HostName=h.test;SharedAccessKeyName=p;SharedAccessKey=" + key, Server: "h:99999"}, wantErr: `port "99999" is not a number from 1 to 65535`},
		{name: "empty host", opts: Options{ConnectionString: "HostName=h.test;SharedAccessKeyName=p;SharedAccessKey=" + key, Server: ":8443"}, wantErr: "host is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if c.Server() != tc.wantServer {
				t.Errorf("Server() = %q, want %q", c.Server(), tc.wantServer)
			}
		})
	}
}

func TestArgumentValidation(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	ctx := t.Context()
	tests := []struct {
		name    string
		call    func() error
		wantErr string
	}{
		{"empty registration id", func() error { _, err := c.GetEnrollment(ctx, ""); return err }, "get enrollment: registration ID is empty"},
		{"nil enrollment", func() error { _, err := c.PutEnrollment(ctx, nil, ""); return err }, "put enrollment: enrollment is nil"},
		{"empty group id", func() error { return c.DeleteGroup(ctx, "", "") }, "delete enrollment group: enrollment group ID is empty"},
		{"empty CA name", func() error { _, err := c.VerifyCA(ctx, "", "x", ""); return err }, "verify CA certificate: CA name is empty"},
		{"bad bulk mode", func() error {
			_, err := c.BulkEnrollments(ctx, "upsert", []*enroll.IndividualEnrollment{{RegistrationID: "a"}})
			return err
		}, `bulk mode "upsert" is not one of`},
		{"too many bulk items", func() error {
			_, err := c.BulkGroups(ctx, BulkCreate, make([]*enroll.EnrollmentGroup, 11))
			return err
		}, "bulk operation has 11 items; it takes 1 to 10"},
		{"negative page size", func() error { _, err := c.QueryGroups(ctx, QueryAll, -1); return err }, "page size -1 is negative"},
		{"negative limit", func() error { _, err := c.Attempts(ctx, "a", -1); return err }, "limit -1 is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("invalid calls sent %d requests", n)
	}
}

func TestMalformedSuccessBody(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{"empty", "", "the body is empty"},
		{"syntax", `{"registrationId":`, "invalid JSON at offset"},
		{"wrong type", `[1,2]`, "cannot unmarshal array"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.reply = func(int, *http.Request, seen) (int, http.Header, string) { return 200, nil, tc.body }
			_, err := f.client(t).GetEnrollment(t.Context(), "dev1")
			if err == nil || !strings.Contains(err.Error(), "decode response to GET /enrollments/dev1") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want a decode error containing %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzParseError(f *testing.F) {
	f.Add(404, `{"errorCode":404201,"trackingId":"t","message":"m"}`, "")
	f.Add(412, `{"errorCode":"412002"}`, "412002")
	f.Add(500, "plain text", "x")
	f.Add(400, `{"errorCode":1e99}`, "")
	f.Add(409, strings.Repeat("é", 400), "")
	f.Add(401, `{`, "401002")
	f.Fuzz(func(t *testing.T, status int, body, code string) {
		e := parseError(status, http.Header{"X-Ms-Error-Code": {code}}, []byte(body))
		if e.Status != status {
			t.Fatalf("Status = %d, want %d", e.Status, status)
		}
		if len(e.Message) > maxErrorText+len("…") && !json.Valid([]byte(body)) {
			t.Fatalf("message of a non-JSON body is %d bytes", len(e.Message))
		}
		if utf8.ValidString(body) && !utf8.ValidString(e.Message) {
			t.Fatalf("message %q of a UTF-8 body is not UTF-8", e.Message)
		}
		if !strings.HasPrefix(e.Error(), "service answered "+strconv.Itoa(status)) {
			t.Fatalf("Error() = %q", e.Error())
		}
		if errors.Is(e, ErrNotFound) != (status == http.StatusNotFound) {
			t.Fatalf("errors.Is(ErrNotFound) wrong for status %d", status)
		}
	})
}
