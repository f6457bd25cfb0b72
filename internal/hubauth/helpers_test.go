package hubauth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/muster-iot/muster/internal/access"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
)

// The hub-edge-protocol §1.3 test vectors.
const (
	vectorHub          = "myhub.azure-devices.net"
	vectorKey          = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	vectorDeviceToken  = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1&sig=wosmA3uJK9T0mdB5CIYn%2BsAVA2ODflnucuvNO5S6mbM%3D&se=1700000000"
	vectorModuleToken  = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1%2Fmodules%2Fmod1&sig=ZId0CjYzILqd7GGIpC99uIpjPK4fJTkYbrDAh8qYiy8%3D&se=1700000000"
	vectorServiceToken = "SharedAccessSignature sr=myhub.azure-devices.net&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&skn=iothubowner&se=1700000000"
	// vectorExpiry is the se of the vectors.
	vectorExpiry = 1700000000
)

// Other keys of the fixtures (base64 of 32 bytes).
const (
	otherKey  = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
	thirdKey  = "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE="
	policyKey = "cG9saWN5LWtleS1wb2xpY3kta2V5LXBvbGljeS1rZXk="
)

// Usernames as the SDKs write them.
const (
	nodeDeviceUsername = vectorHub + "/dev1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4%20(node%20v20.20.2%3B%20Debian%2012%3B%20x64)"
	nodeModuleUsername = vectorHub + "/dev1/mod1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4%20(node%20v20.20.2%3B%20Debian%2012%3B%20x64)"
	cDeviceUsername    = vectorHub + "/dev1/?api-version=2020-09-30&DeviceClientType=iothubclient%2F1.11.0%20(native%3B%20Linux%3B%20x86_64)&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1"
)

// policies is a fixed set of shared access policies (the instance's shape).
type policies []access.Policy

func (ps policies) Policy(name string) (access.Policy, bool) {
	for _, p := range ps {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return access.Policy{}, false
}

var testPolicies = policies{
	{Name: "iothubowner", Realm: "hub", PrimaryKey: vectorKey, SecondaryKey: otherKey, Rights: []string{"RegistryRead", "RegistryWrite", "ServiceConnect", "DeviceConnect"}},
	{Name: "service", Realm: "hub", PrimaryKey: policyKey, SecondaryKey: otherKey, Rights: []string{"ServiceConnect"}},
	{Name: "device", Realm: "hub", PrimaryKey: policyKey, SecondaryKey: thirdKey, Rights: []string{"deviceconnect"}},
	{Name: "provisioningserviceowner", Realm: "dps", PrimaryKey: policyKey, SecondaryKey: otherKey, Rights: []string{"DeviceConnect"}},
}

// moduleIdentities adds module identities to the registry's devices (the
// registry has none of its own yet).
type moduleIdentities struct {
	*RegistryIdentities
	modules map[string]*Module // by deviceId/moduleId
}

func (m *moduleIdentities) Module(ctx context.Context, deviceID, moduleID string) (*Module, error) {
	if mod, ok := m.modules[deviceID+"/"+moduleID]; ok {
		return mod, nil
	}
	return m.RegistryIdentities.Module(ctx, deviceID, moduleID)
}

// fixture is a hub with its registry, enrollment service and attempt log
// over one memstore.
type fixture struct {
	t    testing.TB
	st   *memstore.Store
	hub  *registry.Hub
	enr  *enroll.Service
	ids  *moduleIdentities
	auth *Authenticator
	logs *bytes.Buffer
	now  time.Time
}

func newFixture(t testing.TB, now time.Time) *fixture {
	t.Helper()
	st := memstore.New(1000)
	clock := func() time.Time { return now }
	f := &fixture{t: t, st: st, now: now, logs: new(bytes.Buffer),
		hub: registry.New(vectorHub, st, clock),
		enr: enroll.NewService(st, enroll.ServiceOptions{Now: clock})}
	f.ids = &moduleIdentities{RegistryIdentities: NewRegistryIdentities(f.hub), modules: map[string]*Module{}}
	a, err := New(Options{HubHostName: vectorHub, Identities: f.ids, Anchors: NewEnrollmentAnchors(f.enr),
		Policies: testPolicies, Attempts: st, Now: clock,
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	f.auth = a
	return f
}

func (f *fixture) ctx() context.Context { return context.Background() }

// sasDevice creates a SAS device with the given keys.
func (f *fixture) sasDevice(id, primary, secondary string) {
	f.t.Helper()
	f.putDevice(&registry.Device{DeviceID: id, Authentication: registry.Authentication{Type: AuthSAS,
		SymmetricKey: &registry.SymmetricKey{PrimaryKey: primary, SecondaryKey: secondary}}})
}

// thumbprintDevice creates a selfSigned device with the given thumbprints.
func (f *fixture) thumbprintDevice(id, primary, secondary string) {
	f.t.Helper()
	d := &registry.Device{DeviceID: id, Authentication: registry.Authentication{Type: AuthSelfSigned}}
	if primary != "" {
		d.Authentication.X509Thumbprint.PrimaryThumbprint = &primary
	}
	if secondary != "" {
		d.Authentication.X509Thumbprint.SecondaryThumbprint = &secondary
	}
	f.putDevice(d)
}

// caDevice creates a certificateAuthority device, provisioned by group
// groupID when it is not empty.
func (f *fixture) caDevice(id, groupID string) {
	f.t.Helper()
	if groupID == "" {
		f.putDevice(&registry.Device{DeviceID: id, Authentication: registry.Authentication{Type: AuthCertificateAuthority}})
		return
	}
	err := f.hub.ProvisionDevice(f.ctx(), provision.DeviceSpec{DeviceID: id, RegistrationID: id, EnrollmentGroupID: groupID,
		Auth: provision.DeviceAuth{Type: provision.AuthCertificateAuthority}})
	if err != nil {
		f.t.Fatalf("provision device %s: %v", id, err)
	}
}

func (f *fixture) putDevice(d *registry.Device) {
	f.t.Helper()
	if _, err := f.hub.PutDevice(f.ctx(), d, ""); err != nil {
		f.t.Fatalf("create device %s: %v", d.DeviceID, err)
	}
}

// disable sets a device's status to disabled.
func (f *fixture) disable(id string) {
	f.t.Helper()
	d, err := f.hub.GetDevice(f.ctx(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	d.Status = registry.StatusDisabled
	reason := "stolen"
	d.StatusReason = &reason
	if _, err := f.hub.PutDevice(f.ctx(), d, "*"); err != nil {
		f.t.Fatalf("disable device %s: %v", id, err)
	}
}

// module adds a module identity.
func (f *fixture) module(deviceID, moduleID string, auth registry.Authentication) {
	f.ids.modules[deviceID+"/"+moduleID] = &Module{DeviceID: deviceID, ModuleID: moduleID, Authentication: auth}
}

// registerCA uploads a CA certificate and, when verify is set, completes
// proof of possession with the CA's key.
func (f *fixture) registerCA(name string, ca *pki.Issued, verify bool) {
	f.t.Helper()
	if _, err := f.enr.PutCA(f.ctx(), name, string(ca.CertPEM()), ""); err != nil {
		f.t.Fatalf("upload CA %s: %v", name, err)
	}
	if !verify {
		return
	}
	c, err := f.enr.GenerateVerificationCode(f.ctx(), name, "")
	if err != nil {
		f.t.Fatalf("verification code for CA %s: %v", name, err)
	}
	proof, err := ca.NewVerification(c.VerificationCode)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.enr.VerifyCA(f.ctx(), name, string(proof.CertPEM()), ""); err != nil {
		f.t.Fatalf("verify CA %s: %v", name, err)
	}
}

// x509Group creates an X.509 enrollment group with a signing certificate
// (signer) and/or a CA reference (caRef).
func (f *fixture) x509Group(id string, signer *pki.Issued, caRef string) {
	f.t.Helper()
	x := &enroll.X509Attestation{}
	if signer != nil {
		x.SigningCertificates = &enroll.X509Certificates{Primary: &enroll.X509CertificateWithInfo{Certificate: string(signer.CertPEM())}}
	}
	if caRef != "" {
		x.CAReferences = &enroll.X509CAReferences{Primary: caRef}
	}
	g := &enroll.EnrollmentGroup{EnrollmentGroupID: id, Common: enroll.Common{Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationX509, X509: x}}}
	if _, err := f.enr.PutGroup(f.ctx(), g, ""); err != nil {
		f.t.Fatalf("create group %s: %v", id, err)
	}
}

// outcome is what a test expects of Authenticate: an identity, or a
// refusal with its reason and CONNACK code.
type outcome struct {
	id      *Identity
	reason  Reason
	connack byte
	// detail, when set, must be contained in the denial's detail.
	detail string
}

func allowed(id Identity) outcome { return outcome{id: &id} }

func denied(r Reason, detail string) outcome {
	return outcome{reason: r, connack: connackFor(r), detail: detail}
}

// check runs Authenticate and compares the outcome; a refusal must be the
// newest attempt of the device, and a success must leave no attempt.
func (f *fixture) check(t *testing.T, req Request, want outcome) {
	t.Helper()
	// Refusals are logged under the username's device, or the client id's
	// when the username does not parse.
	dev, _, _ := strings.Cut(req.ClientID, "/")
	if u, err := ParseUsername(req.Username); err == nil {
		dev = u.DeviceID
	}
	attemptKey := strings.ToLower(dev)
	before, err := f.st.Attempts(f.ctx(), attemptKey, 1000)
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.auth.Authenticate(f.ctx(), req)
	after, aerr := f.st.Attempts(f.ctx(), attemptKey, 1000)
	if aerr != nil {
		t.Fatal(aerr)
	}
	if want.id != nil {
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if diff := cmp.Diff(want.id, id); diff != "" {
			t.Errorf("identity (-want +got):\n%s", diff)
		}
		if len(after) != len(before) {
			t.Errorf("a successful connection added %d attempts to the log", len(after)-len(before))
		}
		return
	}
	var d *Denial
	if !errors.As(err, &d) {
		t.Fatalf("Authenticate = %+v, %v; want a *Denial %s", id, err, want.reason)
	}
	if id != nil {
		t.Errorf("a refusal returned identity %+v", id)
	}
	if diff := cmp.Diff(want.reason, d.Reason); diff != "" {
		t.Errorf("reason (-want +got):\n%s\ndetail: %s", diff, d.Detail)
	}
	if d.ConnackCode != want.connack || ConnackCode(err) != want.connack {
		t.Errorf("CONNACK code %d (ConnackCode %d), want %d", d.ConnackCode, ConnackCode(err), want.connack)
	}
	if !strings.Contains(d.Detail, want.detail) {
		t.Errorf("detail %q does not contain %q", d.Detail, want.detail)
	}
	if d.Detail == "" || d.Hint == "" {
		t.Errorf("denial without detail or hint: %+v", d)
	}
	if len(after) != len(before)+1 {
		t.Fatalf("attempt log for %q grew by %d entries, want 1", attemptKey, len(after)-len(before))
	}
	proto := req.Protocol
	if proto == "" {
		proto = ProtocolMQTT
	}
	wantAttempt := store.Attempt{RegistrationID: attemptKey, Protocol: proto, Outcome: "denied", Reason: string(want.reason), RemoteAddr: req.RemoteAddr}
	if diff := cmp.Diff(wantAttempt, after[0], cmpopts.IgnoreFields(store.Attempt{}, "ID", "Time", "Hint", "Attestation")); diff != "" {
		t.Errorf("attempt (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(after[0].Hint, strings.TrimSuffix(d.Detail, ".")) || !strings.HasSuffix(after[0].Hint, d.Hint) {
		t.Errorf("attempt hint %q is not detail %q + hint %q", after[0].Hint, d.Detail, d.Hint)
	}
	if !after[0].Time.Equal(f.now.UTC()) || after[0].ID == "" {
		t.Errorf("attempt time %v id %q, want time %v and an id", after[0].Time, after[0].ID, f.now.UTC())
	}
	// Secrets never reach the attempt log or the logs.
	if req.Password != "" {
		for _, where := range []string{after[0].Hint, f.logs.String()} {
			if strings.Contains(where, req.Password) || (sigOf(req.Password) != "" && strings.Contains(where, sigOf(req.Password))) {
				t.Errorf("the password or its signature leaked into %q", where)
			}
		}
	}
}

// sigOf returns the sig field of a SAS token text ("" if none).
func sigOf(token string) string {
	for part := range strings.SplitSeq(token, "&") {
		if name, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(name), "sig") && len(v) > 8 {
			return v
		}
	}
	return ""
}

// issuer returns a function that fails the test on a certificate issuing
// error (so that it takes an issuing call's two results).
func issuer(t testing.TB) func(*pki.Issued, error) *pki.Issued {
	return func(iss *pki.Issued, err error) *pki.Issued {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
}

// signedByAnyone issues a client certificate for cn signed with parent's
// key whatever parent is (pki refuses to sign with a non-CA certificate).
func signedByAnyone(t *testing.T, parent *pki.Issued, cn string) *pki.Issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Issued{Cert: cert, Key: key}
}

// chainOf returns the certificates of issued items, in order.
func chainOf(items ...*pki.Issued) []*x509.Certificate {
	out := make([]*x509.Certificate, len(items))
	for i, it := range items {
		out[i] = it.Cert
	}
	return out
}

// colonThumbprint renders a thumbprint lower-case with ':' separators.
func colonThumbprint(tp string) string {
	var b strings.Builder
	for i := 0; i < len(tp); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strings.ToLower(tp[i : i+2]))
	}
	return b.String()
}
