package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustRoot(t testing.TB, cn string, opts ...Option) *Issued {
	t.Helper()
	r, err := NewRoot(cn, opts...)
	if err != nil {
		t.Fatalf("NewRoot(%q): %v", cn, err)
	}
	return r
}

// must returns a function that fails t on error: must(t)(ca.NewDevice("x")).
func must(t testing.TB) func(*Issued, error) *Issued {
	return func(i *Issued, err error) *Issued {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
}

func TestParseKeyType(t *testing.T) {
	tests := []struct {
		in      string
		want    KeyType
		wantErr bool
	}{
		{in: "", want: KeyP256},
		{in: "p256", want: KeyP256},
		{in: "P-256", want: KeyP256},
		{in: "prime256v1", want: KeyP256},
		{in: "p384", want: KeyP384},
		{in: "secp384r1", want: KeyP384},
		{in: "rsa2048", want: KeyRSA2048},
		{in: "rsa-3072", want: KeyRSA3072},
		{in: "RSA_4096", want: KeyRSA4096},
		{in: "ed25519", wantErr: true},
		{in: "rsa1024", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseKeyType(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrUnknownKeyType) {
					t.Fatalf("ParseKeyType(%q) error = %v, want ErrUnknownKeyType", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ParseKeyType(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestKeyTypes(t *testing.T) {
	tests := []struct {
		kt     KeyType
		alg    x509.PublicKeyAlgorithm
		sig    x509.SignatureAlgorithm
		size   int // curve bits or modulus bits
		keyEnc bool
	}{
		{kt: KeyP256, alg: x509.ECDSA, sig: x509.ECDSAWithSHA256, size: 256},
		{kt: KeyP384, alg: x509.ECDSA, sig: x509.ECDSAWithSHA384, size: 384},
		{kt: KeyRSA2048, alg: x509.RSA, sig: x509.SHA256WithRSA, size: 2048, keyEnc: true},
		{kt: KeyRSA3072, alg: x509.RSA, sig: x509.SHA256WithRSA, size: 3072, keyEnc: true},
	}
	for _, tc := range tests {
		t.Run(string(tc.kt), func(t *testing.T) {
			d, err := NewSelfSignedDevice("dev-"+string(tc.kt), WithKeyType(tc.kt))
			if err != nil {
				t.Fatal(err)
			}
			if d.Cert.PublicKeyAlgorithm != tc.alg || d.Cert.SignatureAlgorithm != tc.sig {
				t.Errorf("algorithms = %v/%v, want %v/%v", d.Cert.PublicKeyAlgorithm, d.Cert.SignatureAlgorithm, tc.alg, tc.sig)
			}
			var size int
			switch k := d.Cert.PublicKey.(type) {
			case *ecdsa.PublicKey:
				size = k.Curve.Params().BitSize
			case *rsa.PublicKey:
				size = k.N.BitLen()
			}
			if size != tc.size {
				t.Errorf("key size = %d, want %d", size, tc.size)
			}
			if got := d.Cert.KeyUsage&x509.KeyUsageKeyEncipherment != 0; got != tc.keyEnc {
				t.Errorf("keyEncipherment = %v, want %v", got, tc.keyEnc)
			}
			if !KeyMatches(d.Cert, d.Key) {
				t.Error("key does not match certificate")
			}
		})
	}
	if _, err := NewRoot("bad", WithKeyType("dsa")); !errors.Is(err, ErrUnknownKeyType) {
		t.Errorf("NewRoot with key type dsa: err = %v, want ErrUnknownKeyType", err)
	}
}

func TestProfiles(t *testing.T) {
	root := mustRoot(t, "Profile Root")
	inter := must(t)(root.NewIntermediate("Profile Intermediate"))
	type profile struct {
		IsCA       bool
		MaxPathLen int
		KeyUsage   x509.KeyUsage
		EKU        []x509.ExtKeyUsage
		CN         string
		Issuer     string
		DNS        []string
		IPs        []string
	}
	caKU := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	tests := []struct {
		name     string
		issue    func() (*Issued, error)
		want     profile
		validity time.Duration
	}{
		{name: "root", issue: func() (*Issued, error) { return NewRoot("r") }, validity: DefaultRootValidity,
			want: profile{IsCA: true, MaxPathLen: 2, KeyUsage: caKU, CN: "r", Issuer: "r"}},
		{name: "root pathlen 5", issue: func() (*Issued, error) { return NewRoot("r", WithMaxPathLen(5)) }, validity: DefaultRootValidity,
			want: profile{IsCA: true, MaxPathLen: 5, KeyUsage: caKU, CN: "r", Issuer: "r"}},
		{name: "root unconstrained", issue: func() (*Issued, error) { return NewRoot("r", WithMaxPathLen(-1)) }, validity: DefaultRootValidity,
			want: profile{IsCA: true, MaxPathLen: -1, KeyUsage: caKU, CN: "r", Issuer: "r"}},
		{name: "intermediate", issue: func() (*Issued, error) { return root.NewIntermediate("i") }, validity: DefaultValidity,
			want: profile{IsCA: true, MaxPathLen: 0, KeyUsage: caKU, CN: "i", Issuer: "Profile Root"}},
		{name: "edge CA", issue: func() (*Issued, error) { return inter.NewEdgeCA("edge-ca") }, validity: DefaultValidity,
			want: profile{IsCA: true, MaxPathLen: 0, KeyUsage: caKU, CN: "edge-ca", Issuer: "Profile Intermediate"}},
		{name: "device", issue: func() (*Issued, error) { return inter.NewDevice("dev-1") }, validity: DefaultValidity,
			want: profile{MaxPathLen: -1, KeyUsage: x509.KeyUsageDigitalSignature, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CN: "dev-1", Issuer: "Profile Intermediate"}},
		{name: "self-signed device", issue: func() (*Issued, error) { return NewSelfSignedDevice("dev-2") }, validity: DefaultValidity,
			want: profile{MaxPathLen: -1, KeyUsage: x509.KeyUsageDigitalSignature, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CN: "dev-2", Issuer: "dev-2"}},
		{name: "device without EKU", issue: func() (*Issued, error) { return inter.NewDevice("dev-3", WithEKU()) }, validity: DefaultValidity,
			want: profile{MaxPathLen: -1, KeyUsage: x509.KeyUsageDigitalSignature, CN: "dev-3", Issuer: "Profile Intermediate"}},
		{name: "device 30 days", issue: func() (*Issued, error) { return inter.NewDevice("dev-4", WithValidityDays(30)) }, validity: 30 * 24 * time.Hour,
			want: profile{MaxPathLen: -1, KeyUsage: x509.KeyUsageDigitalSignature, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CN: "dev-4", Issuer: "Profile Intermediate"}},
		{name: "server with SANs", issue: func() (*Issued, error) {
			return root.NewServer("dps.local", WithDNSNames("dps.local", "localhost"), WithIPs(net.ParseIP("127.0.0.1"), net.ParseIP("::1")))
		}, validity: DefaultValidity,
			want: profile{MaxPathLen: -1, KeyUsage: x509.KeyUsageDigitalSignature, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CN: "dps.local", Issuer: "Profile Root",
				DNS: []string{"dps.local", "localhost"}, IPs: []string{"127.0.0.1", "::1"}}},
		{name: "server default DNS SAN", issue: func() (*Issued, error) { return root.NewServer("hub.example.net") }, validity: DefaultValidity,
			want: profile{MaxPathLen: -1, KeyUsage: x509.KeyUsageDigitalSignature, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CN: "hub.example.net", Issuer: "Profile Root",
				DNS: []string{"hub.example.net"}}},
		{name: "server default IP SAN", issue: func() (*Issued, error) { return root.NewServer("10.0.0.7") }, validity: DefaultValidity,
			want: profile{MaxPathLen: -1, KeyUsage: x509.KeyUsageDigitalSignature, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CN: "10.0.0.7", Issuer: "Profile Root",
				IPs: []string{"10.0.0.7"}}},
		{name: "verification", issue: func() (*Issued, error) { return root.NewVerification("5A1F0C3B2D") }, validity: DefaultValidity,
			want: profile{MaxPathLen: -1, KeyUsage: x509.KeyUsageDigitalSignature, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CN: "5A1F0C3B2D", Issuer: "Profile Root"}},
	}
	serials := map[string]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			iss, err := tc.issue()
			if err != nil {
				t.Fatal(err)
			}
			c := iss.Cert
			got := profile{IsCA: c.IsCA, MaxPathLen: c.MaxPathLen, KeyUsage: c.KeyUsage, EKU: c.ExtKeyUsage,
				CN: c.Subject.CommonName, Issuer: c.Issuer.CommonName, DNS: c.DNSNames}
			if !c.IsCA {
				got.MaxPathLen = -1 // not meaningful for leaves
			}
			for _, ip := range c.IPAddresses {
				got.IPs = append(got.IPs, ip.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("profile (-want +got):\n%s", diff)
			}
			if !c.BasicConstraintsValid {
				t.Error("basicConstraints missing")
			}
			if c.IsCA && c.MaxPathLen == 0 && !c.MaxPathLenZero {
				t.Error("pathlen 0 not encoded (MaxPathLenZero false)")
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %s is not a positive 128-bit number", c.SerialNumber)
			}
			if prev, dup := serials[c.SerialNumber.String()]; dup {
				t.Errorf("serial %s reused (also %s)", c.SerialNumber, prev)
			}
			serials[c.SerialNumber.String()] = tc.name
			wantNB := before.Add(-BackdateNotBefore).Truncate(time.Second)
			if d := c.NotBefore.Sub(wantNB); d < -time.Second || d > time.Minute {
				t.Errorf("notBefore = %s, want about %s", c.NotBefore, wantNB)
			}
			if d := c.NotAfter.Sub(before.Add(tc.validity)); d < -time.Second || d > time.Minute {
				t.Errorf("notAfter = %s, want about %s", c.NotAfter, before.Add(tc.validity))
			}
			if !KeyMatches(c, iss.Key) {
				t.Error("key does not match certificate")
			}
		})
	}
}

func TestSubjectAndURIs(t *testing.T) {
	u, _ := url.Parse("urn:muster:device:dev-9")
	d, err := NewSelfSignedDevice("dev-9",
		WithSubject(pkix.Name{CommonName: "ignored", Organization: []string{"MSFT"}, OrganizationalUnit: []string{"Azure IoT"}, Country: []string{"US"}}),
		WithURIs(u))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := DistinguishedName(d.Cert.Subject), "CN=dev-9, OU=Azure IoT, O=MSFT, C=US"; got != want {
		t.Errorf("subject = %q, want %q", got, want)
	}
	if len(d.Cert.URIs) != 1 || d.Cert.URIs[0].String() != u.String() {
		t.Errorf("URIs = %v, want [%v]", d.Cert.URIs, u)
	}
}

func verify(leaf *x509.Certificate, roots []*x509.Certificate, inters []*x509.Certificate, at time.Time) error {
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range roots {
		rp.AddCert(c)
	}
	for _, c := range inters {
		ip.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

func TestChainsVerify(t *testing.T) {
	root := mustRoot(t, "Chain Root")
	int1 := must(t)(root.NewIntermediate("Chain Int1", WithMaxPathLen(1)))
	int2 := must(t)(int1.NewIntermediate("Chain Int2"))
	leaf2 := must(t)(int2.NewDevice("dev-deep"))
	intA := must(t)(root.NewIntermediate("Chain IntA"))
	leafA := must(t)(intA.NewDevice("dev-a"))
	leafRoot := must(t)(root.NewDevice("dev-root"))
	edge := must(t)(int1.NewEdgeCA("edge-1"))
	workload := must(t)(edge.NewServer("edgehub", WithEKU(x509.ExtKeyUsageClientAuth)))
	// A default intermediate (path length 0) cannot sign another CA.
	int0 := must(t)(intA.NewIntermediate("Chain Int0 under pathlen 0"))
	leaf0 := must(t)(int0.NewDevice("dev-too-deep"))
	now := time.Now()

	tests := []struct {
		name    string
		leaf    *Issued
		inters  []*Issued
		wantErr bool
	}{
		{name: "root→leaf", leaf: leafRoot},
		{name: "root→int→leaf", leaf: leafA, inters: []*Issued{intA}},
		{name: "root→int1→int2→leaf", leaf: leaf2, inters: []*Issued{int2, int1}},
		{name: "root→int1→edgeCA→workload", leaf: workload, inters: []*Issued{edge, int1}},
		{name: "pathlen 0 intermediate cannot sign a CA", leaf: leaf0, inters: []*Issued{int0, intA}, wantErr: true},
		{name: "missing intermediate", leaf: leaf2, inters: []*Issued{int2}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var inters []*x509.Certificate
			for _, i := range tc.inters {
				inters = append(inters, i.Cert)
			}
			err := verify(tc.leaf.Cert, []*x509.Certificate{root.Cert}, inters, now)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Verify error = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

// validityTags returns the ASN.1 tags of notBefore and notAfter.
func validityTags(t *testing.T, c *x509.Certificate) (int, int) {
	t.Helper()
	var tbs struct {
		Version      asn1.RawValue `asn1:"optional,explicit,default:0,tag:0"`
		Serial       asn1.RawValue
		SigAlg       asn1.RawValue
		Issuer       asn1.RawValue
		Validity     struct{ NotBefore, NotAfter asn1.RawValue }
		Subject      asn1.RawValue
		PublicKey    asn1.RawValue
		UniqueAndExt []asn1.RawValue `asn1:"optional"`
	}
	if _, err := asn1.Unmarshal(c.RawTBSCertificate, &tbs); err != nil {
		t.Fatalf("decode TBSCertificate: %v", err)
	}
	return tbs.Validity.NotBefore.Tag, tbs.Validity.NotAfter.Tag
}

func TestFarFutureDates(t *testing.T) {
	const utcTime, generalizedTime = asn1.TagUTCTime, asn1.TagGeneralizedTime
	nb := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		notAfter time.Time
		tag      int
	}{
		{name: "2038", notAfter: time.Date(2038, 1, 19, 3, 14, 8, 0, time.UTC), tag: utcTime},
		{name: "2049 last UTCTime", notAfter: time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC), tag: utcTime},
		{name: "2051", notAfter: time.Date(2051, 1, 1, 0, 0, 0, 0, time.UTC), tag: generalizedTime},
		{name: "9999", notAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), tag: generalizedTime},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := mustRoot(t, "Far Root "+tc.name, WithValidity(nb, tc.notAfter))
			inter := must(t)(root.NewIntermediate("Far Int", WithValidity(nb, tc.notAfter)))
			leaf := must(t)(inter.NewDevice("far-dev", WithValidity(nb, tc.notAfter)))
			for _, c := range []*x509.Certificate{root.Cert, inter.Cert, leaf.Cert} {
				reparsed, err := ParseCertificate(EncodeCertificates(c))
				if err != nil {
					t.Fatal(err)
				}
				if !reparsed.NotAfter.Equal(tc.notAfter) || !reparsed.NotBefore.Equal(nb) {
					t.Errorf("%s validity = %s..%s, want %s..%s", c.Subject.CommonName, reparsed.NotBefore, reparsed.NotAfter, nb, tc.notAfter)
				}
				nbTag, naTag := validityTags(t, c)
				if nbTag != utcTime || naTag != tc.tag {
					t.Errorf("%s validity tags = %d/%d, want %d/%d", c.Subject.CommonName, nbTag, naTag, utcTime, tc.tag)
				}
			}
			// The chain verifies shortly before it expires.
			if err := verify(leaf.Cert, []*x509.Certificate{root.Cert}, []*x509.Certificate{inter.Cert}, tc.notAfter.Add(-time.Hour)); err != nil {
				t.Errorf("verify near notAfter: %v", err)
			}
			if err := verify(leaf.Cert, []*x509.Certificate{root.Cert}, []*x509.Certificate{inter.Cert}, tc.notAfter.Add(time.Second)); err == nil {
				t.Error("verify after notAfter succeeded")
			}
		})
	}
}

func TestIssueErrors(t *testing.T) {
	root := mustRoot(t, "Err Root")
	leaf := must(t)(root.NewDevice("leaf"))
	other := mustRoot(t, "Other Root")
	now := time.Now()
	tests := []struct {
		name  string
		issue func() (*Issued, error)
		want  string
	}{
		{name: "empty CN", issue: func() (*Issued, error) { return NewRoot(" ") }, want: "common name is empty"},
		{name: "zero days", issue: func() (*Issued, error) { return NewRoot("r", WithValidityDays(0)) }, want: "validity of 0 days"},
		{name: "reversed validity", issue: func() (*Issued, error) { return NewRoot("r", WithValidity(now, now.Add(-time.Hour))) }, want: "is not after notBefore"},
		{name: "year 10000", issue: func() (*Issued, error) {
			return NewRoot("r", WithValidity(now, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)))
		}, want: "between 1950 and 9999"},
		{name: "leaf as issuer", issue: func() (*Issued, error) { return leaf.NewDevice("x") }, want: "is not a CA certificate"},
		{name: "wrong issuer key", issue: func() (*Issued, error) {
			return (&Issued{Cert: root.Cert, Key: other.Key}).NewDevice("x")
		}, want: "issuer key does not match"},
		{name: "no issuer key", issue: func() (*Issued, error) { return (&Issued{Cert: root.Cert}).NewDevice("x") }, want: "no key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.issue()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestWithKeyReissues(t *testing.T) {
	root := mustRoot(t, "Reissue Root")
	first := must(t)(root.NewDevice("dev"))
	second := must(t)(root.NewDevice("dev", WithKey(first.Key)))
	if !second.Cert.PublicKey.(*ecdsa.PublicKey).Equal(first.Cert.PublicKey) {
		t.Error("re-issued certificate has a different key")
	}
	if second.Cert.SerialNumber.Cmp(first.Cert.SerialNumber) == 0 {
		t.Error("re-issued certificate has the same serial")
	}
}

func TestPEMRoundTrip(t *testing.T) {
	for _, kt := range []KeyType{KeyP256, KeyRSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			d, err := NewSelfSignedDevice("pem-"+string(kt), WithKeyType(kt))
			if err != nil {
				t.Fatal(err)
			}
			c, err := ParseCertificate(d.CertPEM())
			if err != nil {
				t.Fatal(err)
			}
			if !c.Equal(d.Cert) {
				t.Error("CertPEM does not round-trip")
			}
			kp, err := d.KeyPEM()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(kp), "-----BEGIN PRIVATE KEY-----") {
				t.Errorf("KeyPEM is not PKCS#8: %.30q", kp)
			}
			k, err := ParsePrivateKey(kp)
			if err != nil {
				t.Fatal(err)
			}
			if !KeyMatches(c, k) {
				t.Error("KeyPEM does not round-trip")
			}
		})
	}
}

func TestKeyMatches(t *testing.T) {
	a, b := mustRoot(t, "A"), mustRoot(t, "B")
	r := mustRoot(t, "R", WithKeyType(KeyRSA2048))
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		iss  *Issued
		want bool
	}{
		{name: "own key", iss: a, want: true},
		{name: "other key", iss: &Issued{Cert: a.Cert, Key: b.Key}},
		{name: "RSA key for ECDSA certificate", iss: &Issued{Cert: a.Cert, Key: r.Key}},
		{name: "P-384 key for P-256 certificate", iss: &Issued{Cert: a.Cert, Key: p384}},
		{name: "RSA own key", iss: r, want: true},
		{name: "nil key", iss: &Issued{Cert: a.Cert}},
		{name: "nil cert", iss: &Issued{Key: a.Key}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := KeyMatches(tc.iss.Cert, tc.iss.Key); got != tc.want {
				t.Errorf("KeyMatches = %v, want %v", got, tc.want)
			}
		})
	}
}
