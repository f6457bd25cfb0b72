package attest

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
)

// x509Result is what a test compares: the match or the denial.
type x509Result struct {
	Kind, ID     string
	AnchorSource string
	Chain        []string
	Anchor       string
	Reason       Reason
}

func x509Outcome(m *Match, err error) (x509Result, string, error) {
	if err != nil {
		var d *Denial
		if !errors.As(err, &d) {
			return x509Result{}, "", err
		}
		return x509Result{Kind: d.EnrollmentKind, ID: d.EnrollmentID, Reason: d.Reason}, d.Detail, nil
	}
	r := x509Result{Kind: m.EnrollmentKind(), ID: m.EnrollmentID(), AnchorSource: m.AnchorSource, Chain: x509CNs(m.Chain)}
	if m.Anchor != nil {
		r.Anchor = m.Anchor.Subject.CommonName
	}
	return r, "", nil
}

// x509NotCAChild creates a CA-shaped certificate signed by a leaf (which
// pki refuses to do) to exercise the "not a CA" diagnosis.
func x509NotCAChild(t *testing.T, parent *pki.Issued, cn string) *pki.Issued {
	t.Helper()
	key, err := pki.GenerateKey(pki.KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatalf("create certificate under a leaf: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Issued{Cert: c, Key: key}
}

func TestX509Attest(t *testing.T) {
	must := x509Must(t)
	now := time.Now()
	root := must(pki.NewRoot("Test Root"))
	inter := must(root.NewIntermediate("Test Intermediate"))
	int1 := must(root.NewIntermediate("Test Int1", pki.WithMaxPathLen(1)))
	int2 := must(int1.NewIntermediate("Test Int2"))
	stranger := must(pki.NewRoot("Stranger Root"))
	strangerInt := must(stranger.NewIntermediate("Stranger Int"))
	caRoot := must(pki.NewRoot("Verified CA Root"))
	unverifiedRoot := must(pki.NewRoot("Unverified CA Root"))
	unverifiedInt := must(unverifiedRoot.NewIntermediate("Unverified CA Int"))
	expiredInt := must(root.NewIntermediate("Expired Int", pki.WithValidity(now.AddDate(-2, 0, 0), now.AddDate(-1, 0, 0))))
	ekuInt := must(root.NewIntermediate("Server-only Int", pki.WithEKU(x509.ExtKeyUsageServerAuth)))
	deepUnderZero := must(inter.NewIntermediate("Int under pathlen 0"))
	notCALeaf := must(root.NewDevice("Not A CA"))
	notCAChild := x509NotCAChild(t, notCALeaf, "Child of a leaf")
	rogue := must(pki.NewRoot("Test Intermediate")) // same name as inter, different key

	dev := func(ca *pki.Issued, cn string, opts ...pki.Option) *pki.Issued {
		return must(ca.NewDevice(cn, opts...))
	}

	indPrimary := dev(inter, "ind-primary")
	indSecondary := dev(inter, "ind-secondary")
	other := dev(inter, "someone-else")
	selfSigned := must(pki.NewSelfSignedDevice("ind-self"))
	indThumb := dev(inter, "ind-thumb")
	indSigned := dev(inter, "ind-signed")
	indCA := dev(unverifiedInt, "ind-ca")
	both := dev(inter, "both")
	leafOnly := dev(root, "grp-leaf-only")
	full := dev(inter, "grp-full")
	deep := dev(int2, "grp-deep")
	viaCA := dev(caRoot, "grp-ca")
	viaUnverified := dev(unverifiedInt, "grp-unverified")
	expired := dev(inter, "expired", pki.WithValidity(now.AddDate(-1, 0, 0), now.Add(-time.Hour)))
	future := dev(inter, "future", pki.WithValidity(now.Add(time.Hour), now.AddDate(1, 0, 0)))
	underExpired := dev(expiredInt, "under-expired")
	serverOnly := dev(inter, "server-only", pki.WithEKU(x509.ExtKeyUsageServerAuth))
	noEKU := dev(inter, "no-eku", pki.WithEKU())
	underEKUInt := dev(ekuInt, "under-eku-int")
	incomplete := dev(inter, "incomplete")
	strangerDev := dev(strangerInt, "stranger")
	forged := dev(rogue, "forged")
	tooDeep := dev(deepUnderZero, "too-deep")
	underNotCA := dev(notCAChild, "under-not-ca")
	blocked := dev(inter, "blocked")
	slightlyEarly := dev(inter, "slightly-early", pki.WithValidity(now.Add(2*time.Minute), now.AddDate(1, 0, 0)))
	justExpired := dev(inter, "just-expired", pki.WithValidity(now.AddDate(-1, 0, 0), now.Add(-2*time.Minute)))

	far := func(year int) (*pki.Issued, *pki.Issued, *pki.Issued) {
		na := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
		if year == 9999 {
			na = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
		}
		v := pki.WithValidity(now.Add(-time.Hour), na)
		r := must(pki.NewRoot(fmt.Sprintf("Root %d", year), v))
		i := must(r.NewIntermediate(fmt.Sprintf("Int %d", year), v))
		return r, i, must(i.NewDevice(fmt.Sprintf("dev-%d", year), v))
	}
	root2051, int2051, dev2051 := far(2051)
	root9999, int9999, dev9999 := far(9999)

	rootGroup := x509SigningGroup("root-group", "", x509B64PEM(root), "")
	interGroup := x509SigningGroup("inter-group", "", x509PEM(inter), "")

	tests := []struct {
		name   string
		src    *x509Source
		opts   Options
		regID  string
		chain  []*x509.Certificate
		want   x509Result
		detail string // a substring of the denial's detail
	}{
		// Individual enrollments.
		{name: "individual primary by thumbprint", regID: "ind-primary", chain: x509Chain(indPrimary, inter),
			src:  &x509Source{individuals: []*enroll.IndividualEnrollment{x509Individual("ind-primary", "", x509PEM(indPrimary), x509PEM(other))}},
			want: x509Result{Kind: "individual", ID: "ind-primary", AnchorSource: AnchorClientCertificate, Chain: []string{"ind-primary"}, Anchor: "ind-primary"}},
		{name: "individual secondary (base64 DER)", regID: "IND-SECONDARY", chain: x509Chain(indSecondary),
			src:  &x509Source{individuals: []*enroll.IndividualEnrollment{x509Individual("ind-secondary", "enabled", x509PEM(other), x509B64DER(indSecondary))}},
			want: x509Result{Kind: "individual", ID: "ind-secondary", AnchorSource: AnchorClientCertificate, Chain: []string{"ind-secondary"}, Anchor: "ind-secondary"}},
		{name: "individual self-signed (base64 PEM)", regID: "ind-self", chain: x509Chain(selfSigned),
			src:  &x509Source{individuals: []*enroll.IndividualEnrollment{x509Individual("ind-self", "", x509B64PEM(selfSigned), "")}},
			want: x509Result{Kind: "individual", ID: "ind-self", AnchorSource: AnchorClientCertificate, Chain: []string{"ind-self"}, Anchor: "ind-self"}},
		{name: "individual by info thumbprint", regID: "ind-thumb", chain: x509Chain(indThumb, inter),
			src: &x509Source{individuals: []*enroll.IndividualEnrollment{{RegistrationID: "ind-thumb", Common: enroll.Common{Attestation: &enroll.AttestationMechanism{
				Type: enroll.AttestationX509, X509: &enroll.X509Attestation{ClientCertificates: &enroll.X509Certificates{Primary: &enroll.X509CertificateWithInfo{
					Info: &enroll.X509CertificateInfo{SHA1Thumbprint: strings.ToLower(pki.SHA1Thumbprint(indThumb.Cert))}}}}}}}}},
			want: x509Result{Kind: "individual", ID: "ind-thumb", AnchorSource: AnchorClientCertificate, Chain: []string{"ind-thumb"}, Anchor: "ind-thumb"}},
		{name: "individual thumbprint mismatch", regID: "ind-primary", chain: x509Chain(indPrimary, inter),
			src:    &x509Source{individuals: []*enroll.IndividualEnrollment{x509Individual("ind-primary", "", x509PEM(other), x509PEM(selfSigned))}},
			want:   x509Result{Kind: "individual", ID: "ind-primary", Reason: ReasonChainUntrusted},
			detail: "leaf thumbprint " + pki.SHA256Thumbprint(indPrimary.Cert) + " (SHA-1 " + pki.SHA1Thumbprint(indPrimary.Cert) + ") matches neither the primary nor the secondary certificate of enrollment ind-primary"},
		{name: "individual thumbprint mismatch primary only", regID: "ind-primary", chain: x509Chain(indPrimary, inter),
			src:    &x509Source{individuals: []*enroll.IndividualEnrollment{x509Individual("ind-primary", "", x509PEM(other), "")}},
			want:   x509Result{Kind: "individual", ID: "ind-primary", Reason: ReasonChainUntrusted},
			detail: "matches not the primary certificate (no other is set) of enrollment ind-primary"},
		{name: "individual disabled", regID: "ind-primary", chain: x509Chain(indPrimary, inter),
			src:    &x509Source{individuals: []*enroll.IndividualEnrollment{x509Individual("ind-primary", "disabled", x509PEM(indPrimary), "")}},
			want:   x509Result{Kind: "individual", ID: "ind-primary", Reason: ReasonEnrollmentDisabled},
			detail: "individual enrollment ind-primary is disabled"},
		{name: "individual with symmetric key", regID: "ind-primary", chain: x509Chain(indPrimary, inter),
			src: &x509Source{individuals: []*enroll.IndividualEnrollment{{RegistrationID: "ind-primary", Common: enroll.Common{
				Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: "a2V5"}}}}}},
			want:   x509Result{Kind: "individual", ID: "ind-primary", Reason: ReasonAttestationMismatch},
			detail: "uses symmetricKey attestation"},
		{name: "individual with signing certificate", regID: "ind-signed", chain: x509Chain(indSigned, inter),
			src: &x509Source{individuals: []*enroll.IndividualEnrollment{{RegistrationID: "ind-signed", Common: enroll.Common{Attestation: &enroll.AttestationMechanism{
				Type: enroll.AttestationX509, X509: &enroll.X509Attestation{SigningCertificates: &enroll.X509Certificates{Primary: x509Cert(x509PEM(root))}}}}}}},
			want: x509Result{Kind: "individual", ID: "ind-signed", AnchorSource: AnchorSigningCertificate, Chain: []string{"ind-signed", "Test Intermediate", "Test Root"}, Anchor: "Test Root"}},
		{name: "individual with unverified CA reference", regID: "ind-ca", chain: x509Chain(indCA, unverifiedInt),
			src: &x509Source{cas: []*enroll.CACertificate{x509CA("unverified", unverifiedRoot, false)}, individuals: []*enroll.IndividualEnrollment{{RegistrationID: "ind-ca", Common: enroll.Common{Attestation: &enroll.AttestationMechanism{
				Type: enroll.AttestationX509, X509: &enroll.X509Attestation{CAReferences: &enroll.X509CAReferences{Primary: "unverified"}}}}}}},
			want:   x509Result{Kind: "individual", ID: "ind-ca", Reason: ReasonCANotVerified},
			detail: `CA certificate "unverified" (CN=Unverified CA Root), which is not verified`},
		{name: "individual with signing certificate of another chain", regID: "stranger", chain: x509Chain(strangerDev, strangerInt, stranger),
			src: &x509Source{individuals: []*enroll.IndividualEnrollment{{RegistrationID: "stranger", Common: enroll.Common{Attestation: &enroll.AttestationMechanism{
				Type: enroll.AttestationX509, X509: &enroll.X509Attestation{SigningCertificates: &enroll.X509Certificates{Primary: x509Cert(x509PEM(root))}}}}}}},
			want:   x509Result{Kind: "individual", ID: "stranger", Reason: ReasonChainUntrusted},
			detail: "the chain ends at self-signed CN=Stranger Root, which no signing certificate or CA reference of individual enrollment stranger trusts"},
		{name: "individual wins over group", regID: "both", chain: x509Chain(both, inter, root),
			src: &x509Source{individuals: []*enroll.IndividualEnrollment{x509Individual("both", "", x509PEM(both), "")},
				groups: []*enroll.EnrollmentGroup{rootGroup, interGroup}},
			want: x509Result{Kind: "individual", ID: "both", AnchorSource: AnchorClientCertificate, Chain: []string{"both"}, Anchor: "both"}},
		{name: "individual mismatch does not fall back to a group", regID: "both", chain: x509Chain(both, inter, root),
			src: &x509Source{individuals: []*enroll.IndividualEnrollment{x509Individual("both", "", x509PEM(other), "")},
				groups: []*enroll.EnrollmentGroup{rootGroup}},
			want:   x509Result{Kind: "individual", ID: "both", Reason: ReasonChainUntrusted},
			detail: "of enrollment both"},

		// Groups.
		{name: "group at root, leaf only (Node e2e without chain)", regID: "grp-leaf-only", chain: x509Chain(leafOnly),
			src:  &x509Source{groups: []*enroll.EnrollmentGroup{interGroup, rootGroup}},
			want: x509Result{Kind: "group", ID: "root-group", AnchorSource: AnchorSigningCertificate, Chain: []string{"grp-leaf-only", "Test Root"}, Anchor: "Test Root"}},
		{name: "group at root, full chain", regID: "grp-full", chain: x509Chain(full, inter, root),
			src:  &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want: x509Result{Kind: "group", ID: "root-group", AnchorSource: AnchorSigningCertificate, Chain: []string{"grp-full", "Test Intermediate", "Test Root"}, Anchor: "Test Root"}},
		{name: "group at intermediate, full chain", regID: "grp-full", chain: x509Chain(full, inter, root),
			src:  &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup, interGroup}},
			want: x509Result{Kind: "group", ID: "inter-group", AnchorSource: AnchorSigningCertificate, Chain: []string{"grp-full", "Test Intermediate"}, Anchor: "Test Intermediate"}},
		{name: "group at int2, leaf+int2+int1 (Node e2e with chain)", regID: "grp-deep", chain: x509Chain(deep, int2, int1),
			src:  &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup, x509SigningGroup("int2-group", "", x509B64PEM(int2), "")}},
			want: x509Result{Kind: "group", ID: "int2-group", AnchorSource: AnchorSigningCertificate, Chain: []string{"grp-deep", "Test Int2"}, Anchor: "Test Int2"}},
		{name: "group at secondary signing certificate", regID: "grp-deep", chain: x509Chain(deep, int2, int1),
			src:  &x509Source{groups: []*enroll.EnrollmentGroup{x509SigningGroup("int1-group", "", x509PEM(stranger), x509B64DER(int1))}},
			want: x509Result{Kind: "group", ID: "int1-group", AnchorSource: AnchorSigningCertificate, Chain: []string{"grp-deep", "Test Int2", "Test Int1"}, Anchor: "Test Int1"}},
		{name: "group through verified CA reference", regID: "grp-ca", chain: x509Chain(viaCA),
			src: &x509Source{cas: []*enroll.CACertificate{x509CA("verified-root", caRoot, true)},
				groups: []*enroll.EnrollmentGroup{rootGroup, x509CAGroup("ca-group", "missing", "verified-root")}},
			want: x509Result{Kind: "group", ID: "ca-group", AnchorSource: AnchorCAReference, Chain: []string{"grp-ca", "Verified CA Root"}, Anchor: "Verified CA Root"}},
		{name: "unverified CA", regID: "grp-unverified", chain: x509Chain(viaUnverified, unverifiedInt),
			src: &x509Source{cas: []*enroll.CACertificate{x509CA("unverified", unverifiedRoot, false)},
				groups: []*enroll.EnrollmentGroup{x509CAGroup("unverified-group", "unverified", "")}},
			want:   x509Result{Kind: "group", ID: "unverified-group", Reason: ReasonCANotVerified},
			detail: `CA certificate "unverified"`},
		{name: "disabled group at intermediate blocks the enabled root group", regID: "blocked", chain: x509Chain(blocked, inter, root),
			src:    &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup, x509SigningGroup("disabled-inter", "disabled", x509PEM(inter), "")}},
			want:   x509Result{Kind: "group", ID: "disabled-inter", Reason: ReasonEnrollmentDisabled},
			detail: "enrollment group disabled-inter is disabled"},
		{name: "disabled group still needs a valid chain", regID: "forged", chain: x509Chain(forged, inter, root),
			src:    &x509Source{groups: []*enroll.EnrollmentGroup{x509SigningGroup("disabled-inter", "disabled", x509PEM(inter), "")}},
			want:   x509Result{Kind: "group", ID: "disabled-inter", Reason: ReasonChainUntrusted},
			detail: "certificate 1 (CN=forged) is not signed by certificate 2 (CN=Test Intermediate)"},
		{name: "NotAfter 2051", regID: "dev-2051", chain: x509Chain(dev2051, int2051),
			src:  &x509Source{groups: []*enroll.EnrollmentGroup{x509SigningGroup("g2051", "", x509PEM(root2051), "")}},
			want: x509Result{Kind: "group", ID: "g2051", AnchorSource: AnchorSigningCertificate, Chain: []string{"dev-2051", "Int 2051", "Root 2051"}, Anchor: "Root 2051"}},
		{name: "NotAfter 9999", regID: "dev-9999", chain: x509Chain(dev9999, int9999, root9999),
			src:  &x509Source{groups: []*enroll.EnrollmentGroup{x509SigningGroup("g9999", "", x509PEM(root9999), "")}},
			want: x509Result{Kind: "group", ID: "g9999", AnchorSource: AnchorSigningCertificate, Chain: []string{"dev-9999", "Int 9999", "Root 9999"}, Anchor: "Root 9999"}},
		{name: "leaf without EKU", regID: "no-eku", chain: x509Chain(noEKU, inter),
			src:  &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want: x509Result{Kind: "group", ID: "root-group", AnchorSource: AnchorSigningCertificate, Chain: []string{"no-eku", "Test Intermediate", "Test Root"}, Anchor: "Test Root"}},
		{name: "leaf 2 minutes early is within the clock skew", regID: "slightly-early", chain: x509Chain(slightlyEarly, inter),
			src:  &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want: x509Result{Kind: "group", ID: "root-group", AnchorSource: AnchorSigningCertificate, Chain: []string{"slightly-early", "Test Intermediate", "Test Root"}, Anchor: "Test Root"}},
		{name: "leaf expired 2 minutes ago is within the clock skew", regID: "just-expired", chain: x509Chain(justExpired, inter),
			src:  &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want: x509Result{Kind: "group", ID: "root-group", AnchorSource: AnchorSigningCertificate, Chain: []string{"just-expired", "Test Intermediate", "Test Root"}, Anchor: "Test Root"}},

		// Denials before any enrollment is looked at.
		{name: "no certificate", regID: "x", chain: nil, src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want: x509Result{Reason: ReasonNoCredential}},
		{name: "chain too long", regID: "grp-full", chain: x509Chain(full, inter, inter, inter, inter, inter, inter, inter, inter, inter, inter, inter, inter, inter, inter, inter, root),
			src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}}, want: x509Result{Reason: ReasonChainUntrusted}, detail: "the device presented 17 certificates; at most 16 are accepted"},
		{name: "empty certificate in chain", regID: "grp-full", chain: []*x509.Certificate{full.Cert, nil},
			src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}}, want: x509Result{Reason: ReasonBadRequest}, detail: "certificate 2 of the presented chain is empty"},
		{name: "CN mismatch", regID: "deny-cn", chain: x509Chain(other, inter), src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want: x509Result{Reason: ReasonCNRegistrationIDMismatch}, detail: `leaf CN "someone-else" vs registration ID "deny-cn"`},
		{name: "expired leaf", regID: "expired", chain: x509Chain(expired, inter), src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want: x509Result{Reason: ReasonCertificateExpired}, detail: "leaf certificate (CN=expired) expired at " + expired.Cert.NotAfter.UTC().Format(time.RFC3339)},
		{name: "not yet valid leaf", regID: "future", chain: x509Chain(future, inter), src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want: x509Result{Reason: ReasonCertificateNotYetValid}, detail: "leaf certificate (CN=future) is not valid before " + future.Cert.NotBefore.UTC().Format(time.RFC3339)},
		{name: "no clock skew tolerated", regID: "slightly-early", chain: x509Chain(slightlyEarly, inter), opts: Options{ClockSkew: -1},
			src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}}, want: x509Result{Reason: ReasonCertificateNotYetValid}},
		{name: "leaf EKU serverAuth only", regID: "server-only", chain: x509Chain(serverOnly, inter), src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want: x509Result{Reason: ReasonEKUNotClientAuth}, detail: "has extended key usages [serverAuth] but not clientAuth"},

		// Chain problems.
		{name: "expired intermediate", regID: "under-expired", chain: x509Chain(underExpired, expiredInt), src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want:   x509Result{Kind: "group", ID: "root-group", Reason: ReasonCertificateExpired},
			detail: "certificate 2 (CN=Expired Int) expired at " + expiredInt.Cert.NotAfter.UTC().Format(time.RFC3339)},
		{name: "chain missing the intermediate", regID: "incomplete", chain: x509Chain(incomplete), src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want:   x509Result{Reason: ReasonChainIncomplete},
			detail: "the chain ends at CN=incomplete, issued by CN=Test Intermediate, which the device did not send and no enrollment group or verified CA trusts"},
		{name: "chain skipping the intermediate", regID: "incomplete", chain: x509Chain(incomplete, root), src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want:   x509Result{Kind: "group", ID: "root-group", Reason: ReasonChainIncomplete},
			detail: "certificate 1 (CN=incomplete) is issued by CN=Test Intermediate, but the next certificate is certificate 2 (CN=Test Root)"},
		{name: "untrusted self-signed root", regID: "stranger", chain: x509Chain(strangerDev, strangerInt, stranger),
			src:    &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup, interGroup}},
			want:   x509Result{Reason: ReasonChainUntrusted},
			detail: "the chain ends at self-signed CN=Stranger Root, which no enrollment group or verified CA trusts"},
		{name: "forged link", regID: "forged", chain: x509Chain(forged, inter, root), src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want:   x509Result{Kind: "group", ID: "root-group", Reason: ReasonChainUntrusted},
			detail: "certificate 1 (CN=forged) is not signed by certificate 2 (CN=Test Intermediate)"},
		{name: "forged leaf alone", regID: "forged", chain: x509Chain(forged), src: &x509Source{groups: []*enroll.EnrollmentGroup{interGroup}},
			want:   x509Result{Reason: ReasonChainUntrusted},
			detail: "certificate 1 (CN=forged) names CN=Test Intermediate as its issuer, but its signature does not verify with the key of the primary signing certificate (CN=Test Intermediate) of enrollment group inter-group"},
		{name: "intermediate EKU excludes clientAuth", regID: "under-eku-int", chain: x509Chain(underEKUInt, ekuInt), src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want:   x509Result{Kind: "group", ID: "root-group", Reason: ReasonEKUNotClientAuth},
			detail: "certificate 2 (CN=Server-only Int) restricts its chain to extended key usages [serverAuth]"},
		{name: "path length exceeded", regID: "too-deep", chain: x509Chain(tooDeep, deepUnderZero, inter), src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want:   x509Result{Kind: "group", ID: "root-group", Reason: ReasonChainUntrusted},
			detail: "certificate 3 (CN=Test Intermediate) allows 0 intermediate CA certificates below it (pathlen), the chain has 1"},
		{name: "issuer not a CA", regID: "under-not-ca", chain: x509Chain(underNotCA, notCAChild, notCALeaf), src: &x509Source{groups: []*enroll.EnrollmentGroup{rootGroup}},
			want:   x509Result{Kind: "group", ID: "root-group", Reason: ReasonChainUntrusted},
			detail: "certificate 3 (CN=Not A CA) signs certificate 2 (CN=Child of a leaf) but is not a CA certificate"},
		{name: "missing CA reference is noted", regID: "grp-ca", chain: x509Chain(viaCA),
			src:    &x509Source{groups: []*enroll.EnrollmentGroup{x509CAGroup("ca-group", "gone", "")}},
			want:   x509Result{Reason: ReasonChainIncomplete},
			detail: `enrollment group ca-group references CA certificate "gone", which does not exist`},
		{name: "expired anchor", regID: "under-expired", chain: x509Chain(underExpired), src: &x509Source{groups: []*enroll.EnrollmentGroup{x509SigningGroup("expired-anchor", "", x509PEM(expiredInt), "")}},
			want:   x509Result{Kind: "group", ID: "expired-anchor", Reason: ReasonCertificateExpired},
			detail: "primary signing certificate (CN=Expired Int) of enrollment group expired-anchor expired at"},
		{name: "no enrollment at all", regID: "grp-full", chain: x509Chain(full, inter, root), src: &x509Source{},
			want:   x509Result{Reason: ReasonEnrollmentNotFound},
			detail: `no individual enrollment for registration ID "grp-full" and no X.509 enrollment group`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewX509(tc.src, tc.opts)
			got, detail, err := x509Outcome(a.Attest(context.Background(), tc.regID, tc.chain))
			if err != nil {
				t.Fatalf("infrastructure error: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s\ndetail: %s", diff, detail)
			}
			if !strings.Contains(detail, tc.detail) {
				t.Errorf("detail = %q\nwant it to contain %q", detail, tc.detail)
			}
		})
	}
}

func TestX509MatchDetails(t *testing.T) {
	must := x509Must(t)
	root := must(pki.NewRoot("Match Root"))
	inter := must(root.NewIntermediate("Match Int"))
	leaf := must(inter.NewDevice("match-dev"))
	g := x509SigningGroup("g", "", x509PEM(root), "")
	a := NewX509(&x509Source{groups: []*enroll.EnrollmentGroup{g}}, Options{})
	m, err := a.Attest(context.Background(), "match-dev", x509Chain(leaf, inter, root))
	if err != nil {
		t.Fatal(err)
	}
	if m.Group != g || m.Individual != nil {
		t.Errorf("match enrollment: group %v individual %v", m.Group, m.Individual)
	}
	if !m.Leaf.Equal(leaf.Cert) || !m.Anchor.Equal(root.Cert) || !m.Chain[len(m.Chain)-1].Equal(root.Cert) {
		t.Error("leaf, anchor or chain end differ from the presented certificates")
	}
	if m.PrimaryKey != "" || m.KeyUsed != "" {
		t.Error("symmetric-key fields set on an X.509 match")
	}
}

func TestX509SourceErrors(t *testing.T) {
	must := x509Must(t)
	root := must(pki.NewRoot("Err Root"))
	leaf := must(root.NewDevice("err-dev"))
	boom := errors.New("database is down")
	tests := []struct {
		name string
		src  *x509Source
		want string
	}{
		{name: "individual", src: &x509Source{indErr: boom}, want: `look up individual enrollment "err-dev": database is down`},
		{name: "groups", src: &x509Source{groupsErr: boom}, want: "list X.509 enrollment groups: database is down"},
		{name: "CA certificate", src: &x509Source{caErr: boom, groups: []*enroll.EnrollmentGroup{x509CAGroup("cg", "ca", "")}},
			want: `look up CA certificate "ca" for enrollment group cg: database is down`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewX509(tc.src, Options{}).Attest(context.Background(), "err-dev", x509Chain(leaf))
			var d *Denial
			if errors.As(err, &d) {
				t.Fatalf("got denial %v, want an infrastructure error", d)
			}
			if !errors.Is(err, boom) || err.Error() != tc.want {
				t.Errorf("error = %v, want %q wrapping the source error", err, tc.want)
			}
		})
	}
}

func TestX509FixedClock(t *testing.T) {
	must := x509Must(t)
	start := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	v := pki.WithValidity(start, start.AddDate(1, 0, 0))
	root := must(pki.NewRoot("Clock Root", v))
	leaf := must(root.NewDevice("clock-dev", v))
	src := &x509Source{groups: []*enroll.EnrollmentGroup{x509SigningGroup("g", "", x509PEM(root), "")}}
	tests := []struct {
		name string
		now  time.Time
		want Reason
	}{
		{name: "inside", now: start.AddDate(0, 6, 0)},
		{name: "before", now: start.Add(-time.Hour), want: ReasonCertificateNotYetValid},
		{name: "within skew before", now: start.Add(-4 * time.Minute)},
		{name: "within skew after", now: start.AddDate(1, 0, 0).Add(4 * time.Minute)},
		{name: "after", now: start.AddDate(1, 0, 1), want: ReasonCertificateExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewX509(src, Options{Now: func() time.Time { return tc.now }})
			got, detail, err := x509Outcome(a.Attest(context.Background(), "clock-dev", x509Chain(leaf)))
			if err != nil {
				t.Fatal(err)
			}
			if got.Reason != tc.want {
				t.Errorf("reason = %q, want %q (%s)", got.Reason, tc.want, detail)
			}
		})
	}
}

func TestX509CertCache(t *testing.T) {
	must := x509Must(t)
	var pems []string
	for i := range 3 {
		pems = append(pems, x509PEM(must(pki.NewRoot(fmt.Sprintf("Cache %d", i)))))
	}
	c := pki.NewParseCache(2)
	first, err := c.Parse(pems[0])
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Parse(pems[0])
	if err != nil {
		t.Fatal(err)
	}
	if first[0] != again[0] {
		t.Error("a cached certificate was parsed again")
	}
	for _, p := range pems[1:] {
		if _, err := c.Parse(p); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Len(); n != 2 {
		t.Errorf("cache holds %d entries, want at most 2", n)
	}
	if _, err := c.Parse("-----BEGIN CERTIFICATE-----\ngarbage"); !errors.Is(err, pki.ErrNoCertificate) {
		t.Errorf("garbage: error = %v, want pki.ErrNoCertificate", err)
	}
	if _, err := c.Parse("-----BEGIN CERTIFICATE-----\ngarbage"); !errors.Is(err, pki.ErrNoCertificate) {
		t.Errorf("cached garbage: error = %v, want pki.ErrNoCertificate", err)
	}
	if n := c.Len(); n != 2 {
		t.Errorf("cache holds %d entries after errors, want 2", n)
	}
}

func TestX509Concurrent(t *testing.T) {
	must := x509Must(t)
	root := must(pki.NewRoot("Concurrent Root"))
	inter := must(root.NewIntermediate("Concurrent Int"))
	src := &x509Source{groups: []*enroll.EnrollmentGroup{x509SigningGroup("g", "", x509PEM(root), "")}}
	a := NewX509(src, Options{})
	const workers = 8
	devs := make([]*pki.Issued, workers)
	for i := range devs {
		devs[i] = must(inter.NewDevice(fmt.Sprintf("conc-%d", i)))
	}
	errs := make(chan error, workers)
	for i := range workers {
		go func() {
			for range 5 {
				if _, err := a.Attest(context.Background(), devs[i].Cert.Subject.CommonName, x509Chain(devs[i], inter)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkAttestGroupChain(b *testing.B) {
	must := x509Must(b)
	root := must(pki.NewRoot("Bench Root"))
	inter := must(root.NewIntermediate("Bench Int"))
	leaf := must(inter.NewDevice("bench-dev"))
	var groups []*enroll.EnrollmentGroup
	for i := range 9 { // unrelated groups searched before the matching one
		groups = append(groups, x509SigningGroup(fmt.Sprintf("other-%d", i), "", x509PEM(must(pki.NewRoot(fmt.Sprintf("Other %d", i)))), ""))
	}
	groups = append(groups, x509SigningGroup("bench", "", x509B64PEM(root), ""))
	a := NewX509(&x509Source{groups: groups}, Options{})
	chain := x509Chain(leaf, inter, root)
	ctx := context.Background()
	for b.Loop() {
		if _, err := a.Attest(ctx, "bench-dev", chain); err != nil {
			b.Fatal(err)
		}
	}
}
