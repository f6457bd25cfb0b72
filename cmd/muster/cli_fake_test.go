package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store"
)

// fakeHost is the service host name; the httptest certificate covers it.
const fakeHost = "example.com"

// fakeTime is the fake service's clock, so outputs are stable.
var fakeTime = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

// fakeCall is one request the fake service received.
type fakeCall struct {
	Method, Path, IfMatch string
}

// fakeService is an in-memory stand-in for the provisioning service API
// over TLS on loopback: enough state and rules (etags, If-Match, redaction,
// generated keys, paging) for the CLI's requests, with SAS checks.
type fakeService struct {
	t      *testing.T
	srv    *httptest.Server
	key    string // policy key, base64
	dir    string // data dir holding endpoints.json and the CA file
	caFile string

	mu          sync.Mutex
	calls       []fakeCall
	etag        int
	enrollments map[string]*enroll.IndividualEnrollment
	groups      map[string]*enroll.EnrollmentGroup
	regs        map[string]*enroll.RegistrationStateView
	cas         map[string]*enroll.CACertificate
	attempts    []store.Attempt
}

func newFakeService(t *testing.T) *fakeService {
	t.Helper()
	f := &fakeService{
		t:           t,
		key:         base64.StdEncoding.EncodeToString([]byte("fake service policy key 0123456789")),
		dir:         t.TempDir(),
		enrollments: map[string]*enroll.IndividualEnrollment{},
		groups:      map[string]*enroll.EnrollmentGroup{},
		regs:        map[string]*enroll.RegistrationStateView{},
		cas:         map[string]*enroll.CACertificate{},
	}
	mux := http.NewServeMux()
	f.routes(mux)
	f.srv = httptest.NewUnstartedServer(f.authorize(mux))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted-client test fails handshakes on purpose
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	f.caFile = filepath.Join(f.dir, "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	if err := os.WriteFile(f.caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ep := instance.Endpoints{
		IDScope:                    "0ne00000001",
		DPSServiceConnectionString: f.connString(f.key),
		HubHostName:                fakeHost,
		CACertFile:                 f.caFile,
		HTTPSAddr:                  f.srv.Listener.Addr().String(),
	}
	if err := instance.WriteEndpoints(f.dir, ep); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeService) connString(key string) string {
	return "HostName=" + fakeHost + ";SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=" + key
}

// requests returns the calls received so far.
func (f *fakeService) requests() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeService) nextETag() string {
	f.etag++
	return `"etag-` + strconv.Itoa(f.etag) + `"`
}

// fail answers with a ProvisioningServiceErrorDetails body.
func fail(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errorCode": code, "trackingId": "track-1", "message": msg})
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

// authorize checks the service SAS token and records the call.
func (f *fakeService) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls = append(f.calls, fakeCall{Method: r.Method, Path: r.URL.EscapedPath(), IfMatch: r.Header.Get("If-Match")})
		f.mu.Unlock()
		key, _ := sas.DecodeKey(f.key)
		tok, err := sas.Parse(r.Header.Get("Authorization"))
		switch {
		case err != nil:
			fail(w, 401, 401002, "Unauthorized: "+err.Error())
		case tok.Resource != fakeHost || tok.KeyName != "provisioningserviceowner":
			fail(w, 401, 401002, "Unauthorized: wrong sr or skn")
		case !tok.VerifyKey(key):
			fail(w, 401, 401002, "Unauthorized")
		case r.URL.Query().Get("api-version") == "":
			fail(w, 400, 400004, "api-version is required")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// ifMatchOK applies If-Match to the etag of an existing object ("" if absent).
func ifMatchOK(w http.ResponseWriter, r *http.Request, current string) bool {
	im := r.Header.Get("If-Match")
	if im == "" || (current != "" && (im == "*" || im == current)) {
		return true
	}
	fail(w, 412, 412002, "If-Match does not match the current etag")
	return false
}

// page serves one page of a query.
func page[T any](w http.ResponseWriter, r *http.Request, itemType string, all []T) {
	start, _ := strconv.Atoi(r.Header.Get("x-ms-continuation"))
	size, _ := strconv.Atoi(r.Header.Get("x-ms-max-item-count"))
	if size <= 0 {
		size = 100
	}
	end := min(start+size, len(all))
	if start > len(all) {
		start = len(all)
	}
	w.Header().Set("x-ms-item-type", itemType)
	if end < len(all) {
		w.Header().Set("x-ms-continuation", strconv.Itoa(end))
	}
	answer(w, all[start:end])
}

func fakeKey(kind, id string) string {
	return base64.StdEncoding.EncodeToString([]byte(kind + " key of " + id))
}

// redacted returns a copy of an attestation without symmetric keys.
func redacted(a *enroll.AttestationMechanism) *enroll.AttestationMechanism {
	if a == nil {
		return nil
	}
	cp := *a
	if a.SymmetricKey != nil {
		cp.SymmetricKey = &enroll.SymmetricKeyAttestation{}
	}
	return &cp
}

// fillCommon applies the service's server-side rules to a written enrollment.
func (f *fakeService) fillCommon(c *enroll.Common, prev *enroll.Common, id string) {
	if a := c.Attestation; a != nil && a.Type == enroll.AttestationSymmetricKey {
		if a.SymmetricKey == nil {
			a.SymmetricKey = &enroll.SymmetricKeyAttestation{}
		}
		var pk *enroll.SymmetricKeyAttestation
		if prev != nil && prev.Attestation != nil {
			pk = prev.Attestation.SymmetricKey
		}
		switch {
		case a.SymmetricKey.PrimaryKey != "":
		case pk != nil && pk.PrimaryKey != "":
			a.SymmetricKey.PrimaryKey = pk.PrimaryKey
		default:
			a.SymmetricKey.PrimaryKey = fakeKey("primary", id)
		}
		switch {
		case a.SymmetricKey.SecondaryKey != "":
		case pk != nil && pk.SecondaryKey != "":
			a.SymmetricKey.SecondaryKey = pk.SecondaryKey
		default:
			a.SymmetricKey.SecondaryKey = fakeKey("secondary", id)
		}
	}
	c.ETag = f.nextETag()
	created := fakeTime
	if prev != nil && prev.CreatedDateTimeUTC != nil {
		created = *prev.CreatedDateTimeUTC
	}
	updated := fakeTime.Add(time.Duration(f.etag) * time.Second)
	c.CreatedDateTimeUTC, c.LastUpdatedDateTimeUTC = &created, &updated
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		fail(w, 400, 400004, "bad body: "+err.Error())
		return false
	}
	return true
}

func (f *fakeService) routes(mux *http.ServeMux) {
	mux.HandleFunc("PUT /enrollments/{id}", func(w http.ResponseWriter, r *http.Request) {
		var e enroll.IndividualEnrollment
		if !decode(w, r, &e) {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		id := r.PathValue("id")
		prev := f.enrollments[strings.ToLower(id)]
		var cur string
		var prevCommon *enroll.Common
		if prev != nil {
			cur, prevCommon = prev.ETag, &prev.Common
		}
		if !ifMatchOK(w, r, cur) {
			return
		}
		e.RegistrationState = nil
		f.fillCommon(&e.Common, prevCommon, id)
		f.enrollments[strings.ToLower(id)] = &e
		answer(w, &e)
	})
	mux.HandleFunc("GET /enrollments/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		e, ok := f.enrollments[strings.ToLower(r.PathValue("id"))]
		if !ok {
			fail(w, 404, 404201, "the enrollment does not exist")
			return
		}
		cp := *e
		cp.Attestation = redacted(e.Attestation)
		cp.RegistrationState = f.regs[strings.ToLower(e.RegistrationID)]
		answer(w, &cp)
	})
	mux.HandleFunc("DELETE /enrollments/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		id := strings.ToLower(r.PathValue("id"))
		e, ok := f.enrollments[id]
		if !ok {
			fail(w, 404, 404201, "the enrollment does not exist")
			return
		}
		if !ifMatchOK(w, r, e.ETag) {
			return
		}
		delete(f.enrollments, id)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /enrollments/{id}/attestationmechanism", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		e, ok := f.enrollments[strings.ToLower(r.PathValue("id"))]
		if !ok {
			fail(w, 404, 404201, "the enrollment does not exist")
			return
		}
		answer(w, e.Attestation)
	})
	mux.HandleFunc("POST /enrollments/query", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var all []*enroll.IndividualEnrollment
		for _, e := range f.enrollments {
			cp := *e
			cp.Attestation = redacted(e.Attestation)
			cp.RegistrationState = f.regs[strings.ToLower(e.RegistrationID)]
			all = append(all, &cp)
		}
		sort.Slice(all, func(i, j int) bool { return all[i].RegistrationID < all[j].RegistrationID })
		page(w, r, "enrollment", all)
	})
	mux.HandleFunc("PUT /enrollmentGroups/{id}", func(w http.ResponseWriter, r *http.Request) {
		var g enroll.EnrollmentGroup
		if !decode(w, r, &g) {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		id := r.PathValue("id")
		prev := f.groups[strings.ToLower(id)]
		var cur string
		var prevCommon *enroll.Common
		if prev != nil {
			cur, prevCommon = prev.ETag, &prev.Common
		}
		if !ifMatchOK(w, r, cur) {
			return
		}
		f.fillCommon(&g.Common, prevCommon, id)
		f.groups[strings.ToLower(id)] = &g
		answer(w, &g)
	})
	mux.HandleFunc("GET /enrollmentGroups/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		g, ok := f.groups[strings.ToLower(r.PathValue("id"))]
		if !ok {
			fail(w, 404, 404202, "the enrollment group does not exist")
			return
		}
		cp := *g
		cp.Attestation = redacted(g.Attestation)
		answer(w, &cp)
	})
	mux.HandleFunc("DELETE /enrollmentGroups/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		id := strings.ToLower(r.PathValue("id"))
		g, ok := f.groups[id]
		if !ok {
			fail(w, 404, 404202, "the enrollment group does not exist")
			return
		}
		if !ifMatchOK(w, r, g.ETag) {
			return
		}
		delete(f.groups, id)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /enrollmentGroups/{id}/attestationmechanism", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		g, ok := f.groups[strings.ToLower(r.PathValue("id"))]
		if !ok {
			fail(w, 404, 404202, "the enrollment group does not exist")
			return
		}
		answer(w, g.Attestation)
	})
	mux.HandleFunc("POST /enrollmentGroups/query", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var all []*enroll.EnrollmentGroup
		for _, g := range f.groups {
			cp := *g
			cp.Attestation = redacted(g.Attestation)
			all = append(all, &cp)
		}
		sort.Slice(all, func(i, j int) bool { return all[i].EnrollmentGroupID < all[j].EnrollmentGroupID })
		page(w, r, "enrollmentGroup", all)
	})
	mux.HandleFunc("GET /registrations/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		rs, ok := f.regs[strings.ToLower(r.PathValue("id"))]
		if !ok {
			fail(w, 404, 404201, "the registration does not exist")
			return
		}
		answer(w, rs)
	})
	mux.HandleFunc("DELETE /registrations/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		id := strings.ToLower(r.PathValue("id"))
		rs, ok := f.regs[id]
		if !ok {
			fail(w, 404, 404201, "the registration does not exist")
			return
		}
		if !ifMatchOK(w, r, rs.ETag) {
			return
		}
		delete(f.regs, id)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /registrations/{group}/query", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		group := r.PathValue("group")
		var all []*enroll.RegistrationStateView
		for _, a := range f.attempts {
			if strings.EqualFold(a.EnrollmentKind, "group") && a.EnrollmentID == group {
				if rs := f.regs[a.RegistrationID]; rs != nil && !slices.Contains(all, rs) {
					all = append(all, rs)
				}
			}
		}
		sort.Slice(all, func(i, j int) bool { return all[i].RegistrationID < all[j].RegistrationID })
		page(w, r, "deviceRegistration", all)
	})
	attempts := func(w http.ResponseWriter, r *http.Request, id string) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if limit <= 0 {
			limit = 100
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		out := []store.Attempt{}
		for _, a := range f.attempts { // stored oldest first; answered in stored order
			if id == "" || a.RegistrationID == strings.ToLower(id) {
				out = append(out, a)
			}
		}
		if len(out) > limit {
			out = out[len(out)-limit:]
		}
		answer(w, out)
	}
	mux.HandleFunc("GET /registrations/{id}/attempts", func(w http.ResponseWriter, r *http.Request) { attempts(w, r, r.PathValue("id")) })
	mux.HandleFunc("GET /attempts", func(w http.ResponseWriter, r *http.Request) { attempts(w, r, "") })
	mux.HandleFunc("PUT /certificates/{name}", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Certificate string }
		if !decode(w, r, &body) {
			return
		}
		if !strings.Contains(body.Certificate, "BEGIN CERTIFICATE") {
			fail(w, 400, 400004, "invalid certificate: no PEM certificate")
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		name := r.PathValue("name")
		var cur string
		if prev := f.cas[strings.ToLower(name)]; prev != nil {
			cur = prev.ETag
		}
		if !ifMatchOK(w, r, cur) {
			return
		}
		ca := &enroll.CACertificate{Name: name, Certificate: body.Certificate, Subject: "CN=" + name, Thumbprint: "AB12",
			SHA256Thumbprint: "CD34", Expiry: fakeTime.AddDate(10, 0, 0), Created: fakeTime, Updated: fakeTime, ETag: f.nextETag()}
		f.cas[strings.ToLower(name)] = ca
		answer(w, ca)
	})
	mux.HandleFunc("GET /certificates/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		ca, ok := f.cas[strings.ToLower(r.PathValue("name"))]
		if !ok {
			fail(w, 404, 404202, "the CA certificate does not exist")
			return
		}
		answer(w, ca)
	})
	mux.HandleFunc("GET /certificates", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		all := []*enroll.CACertificate{}
		for _, ca := range f.cas {
			all = append(all, ca)
		}
		sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
		answer(w, all)
	})
	mux.HandleFunc("DELETE /certificates/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		name := strings.ToLower(r.PathValue("name"))
		ca, ok := f.cas[name]
		if !ok {
			fail(w, 404, 404202, "the CA certificate does not exist")
			return
		}
		if !ifMatchOK(w, r, ca.ETag) {
			return
		}
		delete(f.cas, name)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /certificates/{name}/generateVerificationCode", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		ca, ok := f.cas[strings.ToLower(r.PathValue("name"))]
		if !ok {
			fail(w, 404, 404202, "the CA certificate does not exist")
			return
		}
		if r.Header.Get("If-Match") == "" {
			fail(w, 400, 400004, "If-Match is required")
			return
		}
		if !ifMatchOK(w, r, ca.ETag) {
			return
		}
		ca.VerificationCode = "C0DE" + strconv.Itoa(f.etag)
		ca.ETag = f.nextETag()
		answer(w, ca)
	})
	mux.HandleFunc("POST /certificates/{name}/verify", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Certificate string }
		if !decode(w, r, &body) {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		ca, ok := f.cas[strings.ToLower(r.PathValue("name"))]
		if !ok {
			fail(w, 404, 404202, "the CA certificate does not exist")
			return
		}
		if r.Header.Get("If-Match") == "" {
			fail(w, 400, 400004, "If-Match is required")
			return
		}
		if !ifMatchOK(w, r, ca.ETag) {
			return
		}
		if !strings.Contains(body.Certificate, "BEGIN CERTIFICATE") {
			fail(w, 400, 400004, "invalid certificate")
			return
		}
		at := fakeTime.Add(time.Hour)
		ca.IsVerified, ca.VerifiedAt, ca.VerificationCode, ca.ETag = true, &at, "", f.nextETag()
		answer(w, ca)
	})
}

// runCLI runs the muster command tree in-process with the given
// environment and returns what it printed.
func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot(&out, &errOut, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	root.SetArgs(args)
	err = root.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// run runs the CLI against the fake through its endpoints.json and fails
// the test on error.
func (f *fakeService) run(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, nil, append([]string{"--data-dir", f.dir}, args...)...)
	if err != nil {
		t.Fatalf("muster %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// runErr runs the CLI against the fake and returns its error.
func (f *fakeService) runErr(t *testing.T, args ...string) error {
	t.Helper()
	_, _, err := runCLI(t, nil, append([]string{"--data-dir", f.dir}, args...)...)
	if err == nil {
		t.Fatalf("muster %s succeeded, want an error", strings.Join(args, " "))
	}
	return err
}

// decodeJSON decodes CLI JSON output.
func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode output %q: %v", s, err)
	}
	return v
}

// writeFile writes a test file and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
