package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/provision"
)

const (
	testScope = "0ne00000001"
	testHost  = "muster.example.test"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// harness is an API behind a TLS test server that requests (but does not
// verify) client certificates, with fakes behind it.
type harness struct {
	t        *testing.T
	now      time.Time
	srv      *httptest.Server
	api      *API
	client   *http.Client
	reg      *fakeRegistrar
	regs     *fakeRegistrations
	enr      *fakeEnrollments
	policies fakePolicies
	logs     *syncBuffer
}

// testKey returns a deterministic base64 key for a label.
func testKey(label string) string {
	sum := sha256.Sum256([]byte(label))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func newHarness(t *testing.T, mutate ...func(*Options)) *harness {
	t.Helper()
	h := &harness{
		t:    t,
		now:  time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC),
		reg:  &fakeRegistrar{},
		regs: newFakeRegistrations(),
		enr:  newFakeEnrollments(),
		policies: fakePolicies{
			"provisioningserviceowner": {Name: "provisioningserviceowner", Realm: RealmDPS,
				PrimaryKey: testKey("owner-primary"), SecondaryKey: testKey("owner-secondary"),
				Rights: []string{RightServiceConfig, RightEnrollmentRead, RightEnrollmentWrite, "DeviceConnect", RightRegistrationStatusRead, RightRegistrationStatusWrite}},
			"reader": {Name: "reader", Realm: RealmDPS, PrimaryKey: testKey("reader-primary"),
				Rights: []string{RightEnrollmentRead, RightRegistrationStatusRead}},
			"iothubowner": {Name: "iothubowner", Realm: RealmHub, PrimaryKey: testKey("hub-primary"),
				Rights: []string{RightServiceConfig, RightEnrollmentRead, RightEnrollmentWrite, RightRegistrationStatusRead, RightRegistrationStatusWrite}},
		},
		logs: &syncBuffer{},
	}
	opts := Options{
		Logger:           slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		IDScope:          testScope,
		Registrar:        h.reg,
		Registrations:    h.regs,
		Enrollments:      h.enr,
		Policies:         h.policies,
		ServiceHostNames: []string{"Muster.Example.Test", "dps.other.test"},
		Now:              func() time.Time { return h.now },
		MaxBodyBytes:     4096,
	}
	for _, m := range mutate {
		m(&opts)
	}
	a, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.api = a
	h.srv = httptest.NewUnstartedServer(a.Handler())
	h.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	h.client = h.srv.Client()
	h.client.Timeout = 10 * time.Second
	return h
}

// withClientCert returns a client presenting a fresh self-signed
// certificate with the given CN.
func (h *harness) withClientCert(cn string) (*http.Client, *x509.Certificate) {
	h.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		h.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    h.now.Add(-time.Hour),
		NotAfter:     h.now.Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		h.t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		h.t.Fatal(err)
	}
	tr := h.srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, cert
}

// token mints a service SAS token in the Node SDK's field order
// (sr, sig, skn, se) unless order says otherwise.
func token(sr, policy, b64Key string, expiry time.Time, order ...string) string {
	se := strconv.FormatInt(expiry.Unix(), 10)
	key, err := base64.StdEncoding.DecodeString(b64Key)
	if err != nil {
		panic(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(sr + "\n" + se))
	fields := map[string]string{
		"sr":  sr,
		"sig": url.QueryEscape(base64.StdEncoding.EncodeToString(mac.Sum(nil))),
		"se":  se,
		"skn": policy,
	}
	if len(order) == 0 {
		order = []string{"sr", "sig", "skn", "se"}
	}
	var parts []string
	for _, f := range order {
		parts = append(parts, f+"="+fields[f])
	}
	return "SharedAccessSignature " + strings.Join(parts, "&")
}

// ownerToken is a valid token of the all-rights policy.
func (h *harness) ownerToken() string {
	return token(testHost, "provisioningserviceowner", testKey("owner-primary"), h.now.Add(time.Hour))
}

// response is a completed HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorBody decodes a ProvisioningServiceErrorDetails body.
func (r response) errorBody(t *testing.T) provision.ErrorBody {
	t.Helper()
	var b provision.ErrorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return b
}

// do sends a request and checks the headers every answer carries.
func (h *harness) do(client *http.Client, method, path, body string, hdr map[string]string) response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatalf("new request %s %s: %v", method, path, err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if client == nil {
		client = h.client
	}
	res, err := client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatalf("read %s %s: %v", method, path, err)
	}
	if id := res.Header.Get("x-ms-request-id"); !uuidPattern.MatchString(id) {
		h.t.Errorf("%s %s: x-ms-request-id %q is not a UUID", method, path, id)
	}
	if res.StatusCode == http.StatusNoContent {
		if len(data) != 0 {
			h.t.Errorf("%s %s: 204 with body %q", method, path, data)
		}
	} else {
		if ct := res.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			h.t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
		if !json.Valid(data) {
			h.t.Errorf("%s %s: body is not JSON: %q", method, path, data)
		}
	}
	if res.StatusCode >= 400 {
		var b provision.ErrorBody
		if err := json.Unmarshal(data, &b); err != nil {
			h.t.Errorf("%s %s: error body %q: %v", method, path, data, err)
		}
		if b.TrackingID != res.Header.Get("x-ms-request-id") {
			h.t.Errorf("%s %s: trackingId %q != x-ms-request-id %q", method, path, b.TrackingID, res.Header.Get("x-ms-request-id"))
		}
		if b.ErrorCode/1000 != res.StatusCode {
			h.t.Errorf("%s %s: errorCode %d does not start with status %d", method, path, b.ErrorCode, res.StatusCode)
		}
		if !b.TimestampUTC.Equal(h.now) {
			h.t.Errorf("%s %s: timestampUtc %v, want %v", method, path, b.TimestampUTC, h.now)
		}
	}
	return response{status: res.StatusCode, header: res.Header, body: data}
}

// service sends a service API request with the owner's token.
func (h *harness) service(method, path, body string, hdr map[string]string) response {
	h.t.Helper()
	all := map[string]string{"Authorization": h.ownerToken()}
	for k, v := range hdr {
		all[k] = v
	}
	return h.do(nil, method, path, body, all)
}
