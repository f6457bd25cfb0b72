package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/client/dpsclient"
	"github.com/muster-iot/muster/internal/client/dpsservice"
	"github.com/muster-iot/muster/internal/config"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store"
)

// testServer is a real `muster serve` on loopback ports chosen by the kernel.
type testServer struct {
	ep      instance.Endpoints
	dir     string
	roots   *x509.CertPool
	svc     *dpsservice.Client
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

func startServer(t *testing.T, dir string, mod func(*config.Server)) *testServer {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir, cfg.HTTPSAddr, cfg.MQTTAddr, cfg.LogLevel = dir, "127.0.0.1:0", "127.0.0.1:0", "error"
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{dir: dir, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan instance.Endpoints, 1)
	go func() {
		ts.done <- serve(ctx, cfg, io.Discard, testLogWriter{t}, func(ep instance.Endpoints) { ready <- ep })
	}()
	select {
	case ts.ep = <-ready:
	case err := <-ts.done:
		t.Fatalf("serve: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start within 60s")
	}
	t.Cleanup(ts.stop)
	pemBytes, err := os.ReadFile(ts.ep.CACertFile)
	if err != nil {
		t.Fatal(err)
	}
	ts.roots = x509.NewCertPool()
	if !ts.roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("CA file has no certificate")
	}
	ts.svc, err = dpsservice.New(dpsservice.Options{ConnectionString: ts.ep.DPSServiceConnectionString, Server: ts.ep.HTTPSAddr, RootCAs: ts.roots})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func (ts *testServer) stop() {
	if ts.stopped {
		return
	}
	ts.stopped = true
	ts.cancel()
	select {
	case <-ts.done:
	case <-time.After(30 * time.Second):
	}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (ts *testServer) client(t *testing.T, transport string) *dpsclient.Client {
	t.Helper()
	endpoint := ts.ep.DPSDeviceEndpoint
	if transport == "mqtt" {
		endpoint = ts.ep.MQTTAddr
	}
	c, err := dpsclient.New(dpsclient.Options{Endpoint: endpoint, IDScope: ts.ep.IDScope, Transport: transport, RootCAs: ts.roots, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func tlsCert(leaf *pki.Issued, chain ...*pki.Issued) *tls.Certificate {
	c := &tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key, Leaf: leaf.Cert}
	for _, ca := range chain {
		c.Certificate = append(c.Certificate, ca.Cert.Raw)
	}
	return c
}

// testPKI is a chain of trust made for one test.
type testPKI struct {
	root, inter *pki.Issued
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	root, err := pki.NewRoot("Muster Test Root " + t.Name())
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.NewIntermediate("Muster Test Intermediate")
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{root: root, inter: inter}
}

func (p *testPKI) device(t *testing.T, cn string, opts ...pki.Option) *pki.Issued {
	t.Helper()
	d, err := p.inter.NewDevice(cn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustRegister(t *testing.T, c *dpsclient.Client, d dpsclient.Device) *provision.DeviceRegistrationResult {
	t.Helper()
	res, err := c.Register(ctxT(t), d)
	if err != nil {
		t.Fatalf("register %s: %v", d.RegistrationID, err)
	}
	if res.Status != provision.StatusAssigned || res.AssignedHub == "" || res.DeviceID == "" {
		t.Fatalf("register %s: %+v", d.RegistrationID, res)
	}
	return res
}

// attemptReason returns the newest attempt's outcome and reason.
func (ts *testServer) attemptReason(t *testing.T, regID string) store.Attempt {
	t.Helper()
	at, err := ts.svc.Attempts(ctxT(t), regID, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(at) == 0 {
		t.Fatalf("no attempt recorded for %s", regID)
	}
	return at[0]
}

// TestSeedPaths walks every seed combination over HTTPS and MQTT against a
// real server: the enrollment ends up assigned with the device ID, and
// groups list their registration records.
func TestSeedPaths(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := newTestPKI(t)
	tags := json.RawMessage(`{"environment":"test","fleet":"seed"}`)

	// CA certificate verified by proof of possession, for the caReference group.
	caRoot, err := pki.NewRoot("Muster Verified CA")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.svc.PutCA(ctx, "verified-root", string(caRoot.CertPEM()), ""); err != nil {
		t.Fatal(err)
	}
	ca, err := ts.svc.GenerateVerificationCode(ctx, "verified-root", "")
	if err != nil {
		t.Fatal(err)
	}
	proof, err := caRoot.NewVerification(ca.VerificationCode)
	if err != nil {
		t.Fatal(err)
	}
	ca, err = ts.svc.VerifyCA(ctx, "verified-root", string(proof.CertPEM()), ca.ETag)
	if err != nil || !ca.IsVerified {
		t.Fatalf("verify CA: %v %+v", err, ca)
	}

	skGroup, err := ts.svc.PutGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "sk-group", Common: enroll.Common{
		Attestation:  &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey},
		Capabilities: &enroll.Capabilities{IoTEdge: true}, InitialTwin: &enroll.InitialTwin{Tags: tags}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	mkX509Group := func(id string, x *enroll.X509Attestation) {
		if _, err := ts.svc.PutGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: id, Common: enroll.Common{
			Attestation:  &enroll.AttestationMechanism{Type: enroll.AttestationX509, X509: x},
			Capabilities: &enroll.Capabilities{IoTEdge: true}, InitialTwin: &enroll.InitialTwin{Tags: tags}}}, ""); err != nil {
			t.Fatalf("create group %s: %v", id, err)
		}
	}
	// Anchored at the root; a second root for the intermediate-anchored group so
	// matching order is unambiguous.
	p2 := newTestPKI(t)
	mkX509Group("x509-root-group", &enroll.X509Attestation{SigningCertificates: &enroll.X509Certificates{Primary: &enroll.X509CertificateWithInfo{Certificate: string(p.root.CertPEM())}}})
	mkX509Group("x509-intermediate-group", &enroll.X509Attestation{SigningCertificates: &enroll.X509Certificates{Primary: &enroll.X509CertificateWithInfo{Certificate: string(p2.inter.CertPEM())}}})
	mkX509Group("x509-ca-group", &enroll.X509Attestation{CAReferences: &enroll.X509CAReferences{Primary: "verified-root"}})

	t.Run("transports", func(t *testing.T) {
		for _, transport := range []string{"https", "mqtt"} {
			t.Run(transport, func(t *testing.T) {
				t.Parallel() // the transports share the server, not devices
				c := ts.client(t, transport)
				t.Run("symmetric individual", func(t *testing.T) {
					id := "sk-individual-" + transport
					e, err := ts.svc.PutEnrollment(ctx, &enroll.IndividualEnrollment{RegistrationID: id, DeviceID: id + "-device", Common: enroll.Common{
						Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey}, InitialTwin: &enroll.InitialTwin{Tags: tags}}}, "")
					if err != nil {
						t.Fatal(err)
					}
					res := mustRegister(t, c, dpsclient.Device{RegistrationID: id, Credential: dpsclient.Credential{SymmetricKey: e.Attestation.SymmetricKey.PrimaryKey}})
					if res.DeviceID != id+"-device" {
						t.Fatalf("deviceId = %q", res.DeviceID)
					}
					// the secondary key works too
					mustRegister(t, c, dpsclient.Device{RegistrationID: id, Credential: dpsclient.Credential{SymmetricKey: e.Attestation.SymmetricKey.SecondaryKey}})
					got, err := ts.svc.GetEnrollment(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					if got.RegistrationState == nil || got.RegistrationState.Status != "assigned" || got.RegistrationState.DeviceID != id+"-device" {
						t.Fatalf("enrollment registration state = %+v", got.RegistrationState)
					}
				})
				t.Run("symmetric group derived key", func(t *testing.T) {
					id := "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6-" + transport
					key, err := sas.DeriveKey(skGroup.Attestation.SymmetricKey.PrimaryKey, id)
					if err != nil {
						t.Fatal(err)
					}
					res := mustRegister(t, c, dpsclient.Device{RegistrationID: id, Credential: dpsclient.Credential{SymmetricKey: key}})
					if res.DeviceID != id || res.SymmetricKey == nil || res.SymmetricKey.EnrollmentGroupID != "sk-group" {
						t.Fatalf("result = %+v", res)
					}
					key2, _ := sas.DeriveKey(skGroup.Attestation.SymmetricKey.SecondaryKey, id)
					mustRegister(t, c, dpsclient.Device{RegistrationID: id, Credential: dpsclient.Credential{SymmetricKey: key2}})
				})
				t.Run("x509 individual", func(t *testing.T) {
					id := "x509-individual-" + transport
					dev := p.device(t, id)
					if _, err := ts.svc.PutEnrollment(ctx, &enroll.IndividualEnrollment{RegistrationID: id, Common: enroll.Common{
						Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationX509, X509: &enroll.X509Attestation{
							ClientCertificates: &enroll.X509Certificates{Primary: &enroll.X509CertificateWithInfo{Certificate: string(dev.CertPEM())}}}}}}, ""); err != nil {
						t.Fatal(err)
					}
					res := mustRegister(t, c, dpsclient.Device{Credential: dpsclient.Credential{Certificate: tlsCert(dev, p.inter)}})
					if res.DeviceID != id {
						t.Fatalf("deviceId = %q", res.DeviceID)
					}
					e, err := ts.svc.GetEnrollment(ctx, id)
					if err != nil || e.RegistrationState == nil || e.RegistrationState.Status != "assigned" || e.RegistrationState.DeviceID != id {
						t.Fatalf("enrollment = %+v, %v", e, err)
					}
				})
				groupCase := func(name, group string, pk *testPKI, chain func(dev *pki.Issued) *tls.Certificate) {
					t.Run(name, func(t *testing.T) {
						id := strings.ReplaceAll(name, " ", "-") + "-" + transport
						dev := pk.device(t, id)
						res := mustRegister(t, c, dpsclient.Device{Credential: dpsclient.Credential{Certificate: chain(dev)}})
						if res.DeviceID != id || res.X509 == nil || res.X509.EnrollmentGroupID != group {
							t.Fatalf("result = %+v", res)
						}
						regs, err := ts.svc.QueryGroupRegistrations(ctx, group, 100)
						if err != nil {
							t.Fatal(err)
						}
						found := false
						for _, r := range regs {
							if r.RegistrationID == id && r.Status == "assigned" && r.DeviceID == id {
								found = true
							}
						}
						if !found {
							t.Fatalf("group %s registration records do not list %s: %+v", group, id, regs)
						}
					})
				}
				groupCase("x509 group root", "x509-root-group", p, func(dev *pki.Issued) *tls.Certificate { return tlsCert(dev, p.inter, p.root) })
				groupCase("x509 group intermediate full chain", "x509-intermediate-group", p2, func(dev *pki.Issued) *tls.Certificate { return tlsCert(dev, p2.inter, p2.root) })
				groupCase("x509 group verified CA", "x509-ca-group", &testPKI{root: caRoot, inter: caRoot}, func(dev *pki.Issued) *tls.Certificate { return tlsCert(dev) })
			})
		}
	})
	// The symmetric-key group's registration records list both transports' devices.
	regs, err := ts.svc.QueryGroupRegistrations(ctx, "sk-group", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 2 {
		t.Fatalf("sk-group has %d registration records, want 2 (paged one at a time)", len(regs))
	}
}

// rawRegister sends one register PUT exactly as given and returns the status
// and decoded body.
func (ts *testServer) rawRegister(t *testing.T, scope, regID, auth string, cert *tls.Certificate) (int, map[string]any) {
	t.Helper()
	cfg := &tls.Config{RootCAs: ts.roots, ServerName: "localhost"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	body := fmt.Sprintf(`{"registrationId":%q}`, regID)
	req, _ := http.NewRequest(http.MethodPut, "https://"+ts.ep.DPSDeviceEndpoint+"/"+scope+"/registrations/"+regID+"/register?api-version=2019-03-31", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("decode body: %v", err)
	}
	return resp.StatusCode, m
}

func token(scope, regID, key string, exp time.Time) string {
	raw, _ := sas.DecodeKey(key)
	return sas.Sign(scope+"/registrations/"+regID, raw, "registration", exp)
}

// TestDenialReasons checks, for each refusal, what the device is told and
// the precise reason the operator sees.
func TestDenialReasons(t *testing.T) {
	var hookMu sync.Mutex
	hookStatus := http.StatusInternalServerError
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookMu.Lock()
		defer hookMu.Unlock()
		w.WriteHeader(hookStatus)
		fmt.Fprint(w, `{}`)
	}))
	defer hook.Close()
	ts := startServer(t, t.TempDir(), nil)
	ctx := ctxT(t)
	scope := ts.ep.IDScope
	p := newTestPKI(t)
	later := time.Now().Add(time.Hour)

	put := func(e *enroll.IndividualEnrollment) *enroll.IndividualEnrollment {
		t.Helper()
		out, err := ts.svc.PutEnrollment(ctx, e, "")
		if err != nil {
			t.Fatalf("create enrollment %s: %v", e.RegistrationID, err)
		}
		return out
	}
	symmetric := func(id string, mod func(*enroll.Common)) *enroll.IndividualEnrollment {
		e := &enroll.IndividualEnrollment{RegistrationID: id, Common: enroll.Common{Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey}}}
		if mod != nil {
			mod(&e.Common)
		}
		return put(e)
	}
	okInd := symmetric("deny-sk", nil)
	disabled := symmetric("deny-disabled", func(c *enroll.Common) { c.ProvisioningStatus = enroll.StatusDisabled })
	group, err := ts.svc.PutGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "deny-group", Common: enroll.Common{Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	hookInd := symmetric("deny-webhook", func(c *enroll.Common) {
		c.AllocationPolicy = enroll.AllocationCustom
		c.CustomAllocationDefinition = &enroll.CustomAllocationDefinition{WebhookURL: hook.URL + "/api/allocate?code=secret", APIVersion: "2021-10-01"}
	})
	if _, err := ts.svc.PutGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "deny-x509-root", Common: enroll.Common{Attestation: &enroll.AttestationMechanism{
		Type: enroll.AttestationX509, X509: &enroll.X509Attestation{SigningCertificates: &enroll.X509Certificates{Primary: &enroll.X509CertificateWithInfo{Certificate: string(p.root.CertPEM())}}}}}}, ""); err != nil {
		t.Fatal(err)
	}
	unverifiedCA := newTestPKI(t)
	if _, err := ts.svc.PutCA(ctx, "unverified", string(unverifiedCA.root.CertPEM()), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.svc.PutGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "deny-unverified", Common: enroll.Common{Attestation: &enroll.AttestationMechanism{
		Type: enroll.AttestationX509, X509: &enroll.X509Attestation{CAReferences: &enroll.X509CAReferences{Primary: "unverified"}}}}}, ""); err != nil {
		t.Fatal(err)
	}
	stranger := newTestPKI(t)

	cases := []struct {
		name   string
		regID  string
		scope  string
		auth   string
		cert   *tls.Certificate
		reason string
	}{
		{name: "sas_malformed", regID: "deny-sk", auth: "SharedAccessSignature sr=abc&se=notanumber", reason: "sas_malformed"},
		{name: "sas_expired", regID: "deny-sk", auth: token(scope, "deny-sk", okInd.Attestation.SymmetricKey.PrimaryKey, time.Now().Add(-time.Hour)), reason: "sas_expired"},
		{name: "sas_signature_mismatch", regID: "deny-sk", auth: token(scope, "deny-sk", group.Attestation.SymmetricKey.PrimaryKey, later), reason: "sas_signature_mismatch"},
		{name: "derived_key_mismatch", regID: "deny-group-device", auth: token(scope, "deny-group-device", group.Attestation.SymmetricKey.PrimaryKey, later), reason: "derived_key_mismatch"},
		{name: "scope_unknown", regID: "deny-sk", scope: "0neFFFFFFFF", auth: token("0neFFFFFFFF", "deny-sk", okInd.Attestation.SymmetricKey.PrimaryKey, later), reason: "scope_unknown"},
		{name: "cn_registration_id_mismatch", regID: "deny-cn", cert: tlsCert(p.device(t, "another-name"), p.inter), reason: "cn_registration_id_mismatch"},
		{name: "certificate_expired", regID: "deny-expired", cert: tlsCert(p.device(t, "deny-expired", pki.WithValidity(time.Now().AddDate(-2, 0, 0), time.Now().AddDate(-1, 0, 0))), p.inter), reason: "certificate_expired"},
		{name: "certificate_not_yet_valid", regID: "deny-future", cert: tlsCert(p.device(t, "deny-future", pki.WithValidity(time.Now().AddDate(1, 0, 0), time.Now().AddDate(2, 0, 0))), p.inter), reason: "certificate_not_yet_valid"},
		{name: "chain_incomplete", regID: "deny-incomplete", cert: tlsCert(p.device(t, "deny-incomplete")), reason: "chain_incomplete"},
		{name: "chain_untrusted", regID: "deny-stranger", cert: tlsCert(stranger.device(t, "deny-stranger"), stranger.inter, stranger.root), reason: "chain_untrusted"},
		{name: "ca_not_verified", regID: "deny-unverified-dev", cert: tlsCert(unverifiedCA.device(t, "deny-unverified-dev"), unverifiedCA.inter), reason: "ca_not_verified"},
		{name: "eku_not_client_auth", regID: "deny-eku", cert: tlsCert(p.device(t, "deny-eku", pki.WithEKU(x509.ExtKeyUsageServerAuth)), p.inter), reason: "eku_not_client_auth"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc := scope
			if tc.scope != "" {
				sc = tc.scope
			}
			status, body := ts.rawRegister(t, sc, tc.regID, tc.auth, tc.cert)
			if status != http.StatusUnauthorized || body["errorCode"] != float64(401002) {
				t.Fatalf("device got %d %v, want 401 with errorCode 401002", status, body)
			}
			if msg, _ := body["message"].(string); strings.Contains(msg, tc.reason) || strings.Contains(strings.ToLower(msg), "key") {
				t.Fatalf("device message %q reveals too much", msg)
			}
			a := ts.attemptReason(t, tc.regID)
			if a.Outcome != "denied" || a.Reason != tc.reason || a.Hint == "" {
				t.Fatalf("operator sees %+v, want reason %s with a hint", a, tc.reason)
			}
		})
	}

	c := ts.client(t, "https")
	t.Run("enrollment_disabled", func(t *testing.T) {
		_, err := c.Register(ctx, dpsclient.Device{RegistrationID: "deny-disabled", Credential: dpsclient.Credential{SymmetricKey: disabled.Attestation.SymmetricKey.PrimaryKey}})
		var fe *dpsclient.FailedError
		if !errors.As(err, &fe) || fe.State == nil || fe.State.Status != "disabled" {
			t.Fatalf("device got %v, want a disabled registration", err)
		}
		if a := ts.attemptReason(t, "deny-disabled"); a.Outcome != "disabled" || a.Reason != "enrollment_disabled" {
			t.Fatalf("operator sees %+v", a)
		}
	})
	t.Run("webhook_failed", func(t *testing.T) {
		_, err := c.Register(ctx, dpsclient.Device{RegistrationID: "deny-webhook", Credential: dpsclient.Credential{SymmetricKey: hookInd.Attestation.SymmetricKey.PrimaryKey}})
		var fe *dpsclient.FailedError
		if !errors.As(err, &fe) || fe.ErrorCode != 400209 || !strings.Contains(fe.Message, "500") {
			t.Fatalf("device got %v, want failed 400209 naming status 500", err)
		}
		a := ts.attemptReason(t, "deny-webhook")
		if a.Outcome != "failed" || a.Reason != "webhook_failed" || strings.Contains(a.Hint, "secret") {
			t.Fatalf("operator sees %+v", a)
		}
	})
}

// TestAllocationFailed: with the only hub out of hashed rotation, a hashed
// enrollment cannot be placed.
func TestAllocationFailed(t *testing.T) {
	ts := startServer(t, t.TempDir(), func(c *config.Server) { c.HubApplyAllocationPolicy = false })
	ctx := ctxT(t)
	e, err := ts.svc.PutEnrollment(ctx, &enroll.IndividualEnrollment{RegistrationID: "alloc", Common: enroll.Common{Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.client(t, "mqtt").Register(ctx, dpsclient.Device{RegistrationID: "alloc", Credential: dpsclient.Credential{SymmetricKey: e.Attestation.SymmetricKey.PrimaryKey}})
	var fe *dpsclient.FailedError
	if !errors.As(err, &fe) || fe.ErrorCode != 400208 {
		t.Fatalf("device got %v, want failed 400208", err)
	}
	if a := ts.attemptReason(t, "alloc"); a.Outcome != "failed" || a.Reason != "allocation_failed" || a.Hint == "" {
		t.Fatalf("operator sees %+v", a)
	}
	// With no enrollment group at all, an unknown registration ID is
	// enrollment_not_found (with groups it is derived_key_mismatch).
	status, body := ts.rawRegister(t, ts.ep.IDScope, "nobody", token(ts.ep.IDScope, "nobody", e.Attestation.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour)), nil)
	if status != http.StatusUnauthorized || body["errorCode"] != float64(401002) {
		t.Fatalf("unknown device got %d %v", status, body)
	}
	if a := ts.attemptReason(t, "nobody"); a.Reason != "enrollment_not_found" || a.Hint == "" {
		t.Fatalf("operator sees %+v, want enrollment_not_found", a)
	}
	// naming the hub explicitly (static) still works
	e.AllocationPolicy, e.IoTHubs = enroll.AllocationStatic, []string{ts.ep.HubHostName}
	if _, err := ts.svc.PutEnrollment(ctx, e, e.ETag); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, ts.client(t, "https"), dpsclient.Device{RegistrationID: "alloc", Credential: dpsclient.Credential{SymmetricKey: e.Attestation.SymmetricKey.PrimaryKey}})
}

// TestRestartPersistence: scope, keys, enrollments and registrations survive
// a restart on the same data directory.
func TestRestartPersistence(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	ctx := ctxT(t)
	e, err := ts.svc.PutEnrollment(ctx, &enroll.IndividualEnrollment{RegistrationID: "persist", Common: enroll.Common{Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	first := mustRegister(t, ts.client(t, "https"), dpsclient.Device{RegistrationID: "persist", Credential: dpsclient.Credential{SymmetricKey: e.Attestation.SymmetricKey.PrimaryKey}})
	ep1 := ts.ep
	ts.stop()

	ts2 := startServer(t, dir, nil)
	if ts2.ep.IDScope != ep1.IDScope || ts2.ep.DPSServiceConnectionString != ep1.DPSServiceConnectionString || ts2.ep.HubConnectionString != ep1.HubConnectionString {
		t.Fatalf("identity changed across restart: %+v vs %+v", ts2.ep, ep1)
	}
	got, err := ts2.svc.GetEnrollment(ctx, "persist")
	if err != nil || got.RegistrationState == nil || got.RegistrationState.DeviceID != first.DeviceID {
		t.Fatalf("after restart: %+v %v", got, err)
	}
	// the old client trust (same CA) and keys still work
	mustRegister(t, ts2.client(t, "mqtt"), dpsclient.Device{RegistrationID: "persist", Credential: dpsclient.Credential{SymmetricKey: e.Attestation.SymmetricKey.PrimaryKey}})
}
