package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// wrap64 breaks s into lines of n characters joined by sep.
func wrap64(s string, n int, sep string) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + sep)
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

func TestParseCertificates(t *testing.T) {
	root := mustRoot(t, "Parse Root")
	inter := must(t)(root.NewIntermediate("Parse Int"))
	leaf := must(t)(inter.NewDevice("parse-dev"))
	keyPEM, err := leaf.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	one := string(leaf.CertPEM())
	crlf := strings.ReplaceAll(one, "\n", "\r\n")
	multi := one + string(keyPEM) + string(inter.CertPEM()) + string(root.CertPEM())
	der := leaf.Cert.Raw
	concatDER := append(append([]byte(nil), leaf.Cert.Raw...), inter.Cert.Raw...)
	corrupt := one + "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n"
	ours := []string{"parse-dev"}

	tests := []struct {
		name    string
		in      []byte
		want    []string // subject CNs
		wantErr string
	}{
		{name: "PEM", in: []byte(one), want: ours},
		{name: "PEM with CRLF and whitespace", in: []byte("\r\n  \t" + crlf + "\r\n\r\n"), want: ours},
		{name: "PEM with text around", in: []byte("subject=CN=parse-dev\nissuer=CN=Parse Int\n" + one + "trailing words\n"), want: ours},
		{name: "multi PEM with key block", in: []byte(multi), want: []string{"parse-dev", "Parse Int", "Parse Root"}},
		{name: "X509 CERTIFICATE block", in: pem.EncodeToMemory(&pem.Block{Type: "X509 CERTIFICATE", Bytes: der}), want: ours},
		{name: "base64 of PEM", in: []byte(base64.StdEncoding.EncodeToString([]byte(one))), want: ours},
		{name: "base64 of multi PEM", in: []byte(base64.StdEncoding.EncodeToString([]byte(multi))), want: []string{"parse-dev", "Parse Int", "Parse Root"}},
		{name: "base64 DER std", in: []byte(base64.StdEncoding.EncodeToString(der)), want: ours},
		{name: "base64 DER std unpadded", in: []byte(base64.RawStdEncoding.EncodeToString(der)), want: ours},
		{name: "base64 DER URL", in: []byte(base64.URLEncoding.EncodeToString(der)), want: ours},
		{name: "base64 DER URL unpadded", in: []byte(base64.RawURLEncoding.EncodeToString(der)), want: ours},
		{name: "base64 DER with line breaks", in: []byte("\n" + wrap64(base64.StdEncoding.EncodeToString(der), 64, "\r\n") + "\n"), want: ours},
		{name: "base64 of concatenated DER", in: []byte(base64.StdEncoding.EncodeToString(concatDER)), want: []string{"parse-dev", "Parse Int"}},
		{name: "raw DER", in: der, want: ours},
		{name: "raw concatenated DER", in: concatDER, want: []string{"parse-dev", "Parse Int"}},
		{name: "empty", in: nil, wantErr: "no certificate found: the input is empty"},
		{name: "whitespace", in: []byte(" \r\n\t"), wantErr: "no certificate found: the input is empty"},
		{name: "garbage", in: []byte("this is not a certificate!"), wantErr: "no certificate found: the input is neither PEM, base64 nor DER"},
		{name: "key only", in: keyPEM, wantErr: "no certificate found: the PEM input holds only PRIVATE KEY blocks"},
		{name: "truncated PEM", in: []byte(one[:len(one)-30]), wantErr: "no certificate found: the PEM input has no complete BEGIN/END block"},
		{name: "second PEM certificate corrupt", in: []byte(corrupt), wantErr: "certificate 2 in PEM: x509: "},
		{name: "bad base64", in: []byte("TUlJQ=Q"), wantErr: "neither PEM nor valid base64"},
		{name: "base64 of garbage", in: []byte(base64.StdEncoding.EncodeToString([]byte("garbage bytes here"))), wantErr: "base64-encoded DER: x509: "},
		{name: "truncated DER", in: der[:len(der)-10], wantErr: "DER: x509: "},
		{name: "too large", in: bytes.Repeat([]byte("A"), MaxInputSize+1), wantErr: "input too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certs, err := ParseCertificates(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range certs {
				got = append(got, c.Subject.CommonName)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("certificates (-want +got):\n%s", diff)
			}
			first, err := ParseCertificate(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !first.Equal(certs[0]) {
				t.Error("ParseCertificate differs from the first of ParseCertificates")
			}
		})
	}
}

func TestParseErrorsAreSentinels(t *testing.T) {
	tests := []struct {
		in   []byte
		want error
	}{
		{in: nil, want: ErrNoCertificate},
		{in: []byte("%%%"), want: ErrNoCertificate},
		{in: make([]byte, MaxInputSize+1), want: ErrInputTooLarge},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.want), func(t *testing.T) {
			if _, err := ParseCertificates(tc.in); !errors.Is(err, tc.want) {
				t.Errorf("error = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := ParsePrivateKey(nil); !errors.Is(err, ErrNoPrivateKey) {
		t.Errorf("ParsePrivateKey(nil) error = %v, want ErrNoPrivateKey", err)
	}
}

func TestParsePrivateKey(t *testing.T) {
	ec := mustRoot(t, "EC Key")
	rs := mustRoot(t, "RSA Key", WithKeyType(KeyRSA2048))
	pkcs8EC, err := ec.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	pkcs8RSA, err := rs.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	sec1DER, err := x509.MarshalECPrivateKey(ec.Key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})
	oid, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: oid})
	pkcs1DER := x509.MarshalPKCS1PrivateKey(rs.Key.(*rsa.PrivateKey))
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: pkcs1DER})
	legacyEncrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte{1, 2, 3}})
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	badPKCS8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 1, 2, 3}})

	tests := []struct {
		name    string
		in      []byte
		cert    *x509.Certificate
		wantErr string
	}{
		{name: "PKCS#8 EC", in: pkcs8EC, cert: ec.Cert},
		{name: "PKCS#8 RSA", in: pkcs8RSA, cert: rs.Cert},
		{name: "SEC1 EC", in: sec1, cert: ec.Cert},
		{name: "SEC1 EC after EC PARAMETERS (openssl ecparam -genkey)", in: append(append([]byte(nil), ecParams...), sec1...), cert: ec.Cert},
		{name: "PKCS#1 RSA", in: pkcs1, cert: rs.Cert},
		{name: "key after certificate", in: append(ec.CertPEM(), pkcs8EC...), cert: ec.Cert},
		{name: "CRLF", in: bytes.ReplaceAll(pkcs8EC, []byte("\n"), []byte("\r\n")), cert: ec.Cert},
		{name: "DER PKCS#8", in: mustDER(t, pkcs8EC), cert: ec.Cert},
		{name: "DER SEC1", in: sec1DER, cert: ec.Cert},
		{name: "DER PKCS#1", in: pkcs1DER, cert: rs.Cert},
		{name: "legacy encrypted", in: legacyEncrypted, wantErr: "the RSA PRIVATE KEY block is encrypted"},
		{name: "PKCS#8 encrypted", in: encrypted, wantErr: "the ENCRYPTED PRIVATE KEY block is encrypted"},
		{name: "certificate only", in: ec.CertPEM(), wantErr: "no private key found: the PEM input holds only CERTIFICATE blocks"},
		{name: "corrupt PKCS#8", in: badPKCS8, wantErr: "PKCS#8 PRIVATE KEY block: "},
		{name: "garbage", in: []byte("not a key"), wantErr: "no private key found: the input is not PEM"},
		{name: "empty", in: []byte("\n"), wantErr: "no private key found: the input is empty"},
		{name: "too large", in: make([]byte, MaxInputSize+1), wantErr: "input too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParsePrivateKey(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !KeyMatches(tc.cert, k) {
				t.Error("parsed key does not match its certificate")
			}
		})
	}
}

func mustDER(t *testing.T, p []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}

func TestThumbprints(t *testing.T) {
	// Known answers: SHA-1 and SHA-256 of "abc" (FIPS 180 test vectors).
	abc := &x509.Certificate{Raw: []byte("abc")}
	if got, want := SHA1Thumbprint(abc), "A9993E364706816ABA3E25717850C26C9CD0D89D"; got != want {
		t.Errorf("SHA1Thumbprint(abc) = %s, want %s", got, want)
	}
	if got, want := SHA256Thumbprint(abc), "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"; got != want {
		t.Errorf("SHA256Thumbprint(abc) = %s, want %s", got, want)
	}
	// The same digests openssl x509 -fingerprint prints (without colons).
	d, err := NewSelfSignedDevice("thumb")
	if err != nil {
		t.Fatal(err)
	}
	s1, s256 := sha1.Sum(d.Cert.Raw), sha256.Sum256(d.Cert.Raw)
	if got, want := SHA1Thumbprint(d.Cert), fmt.Sprintf("%X", s1); got != want {
		t.Errorf("SHA1Thumbprint = %s, want %s", got, want)
	}
	if got, want := SHA256Thumbprint(d.Cert), fmt.Sprintf("%X", s256); got != want {
		t.Errorf("SHA256Thumbprint = %s, want %s", got, want)
	}
}

func TestDistinguishedName(t *testing.T) {
	withNames := func(attrs ...pkix.AttributeTypeAndValue) pkix.Name { return pkix.Name{Names: attrs} }
	attr := func(oid asn1.ObjectIdentifier, v any) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oid, Value: v}
	}
	tests := []struct {
		name string
		in   pkix.Name
		want string
	}{
		{name: "empty", in: pkix.Name{}, want: ""},
		{name: "CN only", in: pkix.Name{CommonName: "leaf"}, want: "CN=leaf"},
		{name: "Azure sample", in: pkix.Name{CommonName: "leaf", OrganizationalUnit: []string{"Azure IoT"}, Organization: []string{"MSFT"}, Country: []string{"US"}},
			want: "CN=leaf, OU=Azure IoT, O=MSFT, C=US"},
		{name: "all short names", in: pkix.Name{CommonName: "c", SerialNumber: "42", Country: []string{"DE"}, Province: []string{"Bayern"}, Locality: []string{"München"},
			StreetAddress: []string{"Weg 1"}, Organization: []string{"O1"}, OrganizationalUnit: []string{"U1"}},
			want: "SERIALNUMBER=42, CN=c, OU=U1, O=O1, STREET=Weg 1, L=München, S=Bayern, C=DE"},
		{name: "quoting", in: pkix.Name{CommonName: `a, "b"`, Organization: []string{" padded"}, OrganizationalUnit: []string{"x=y"}},
			want: `CN="a, ""b""", OU="x=y", O=" padded"`},
		{name: "parsed Names order", in: withNames(
			attr(asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, "com"),
			attr(asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, "contoso"),
			attr(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, "ops@contoso.com"),
			attr(asn1.ObjectIdentifier{2, 5, 4, 3}, "dev"),
			attr(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 60, 2, 1, 3}, "US")),
			want: "OID.1.3.6.1.4.1.311.60.2.1.3=US, CN=dev, E=ops@contoso.com, DC=contoso, DC=com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := DistinguishedName(tc.in); got != tc.want {
				t.Errorf("DistinguishedName = %q, want %q", got, tc.want)
			}
		})
	}
	// A parsed certificate renders the same as its template.
	d, err := NewSelfSignedDevice("leaf", WithSubject(pkix.Name{OrganizationalUnit: []string{"Azure IoT"}, Organization: []string{"MSFT"}, Country: []string{"US"}}))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []pkix.Name{d.Cert.Subject, d.Cert.Issuer} {
		if got, want := DistinguishedName(n), "CN=leaf, OU=Azure IoT, O=MSFT, C=US"; got != want {
			t.Errorf("DistinguishedName(parsed) = %q, want %q", got, want)
		}
	}
}

func FuzzParseCertificates(f *testing.F) {
	root, err := NewRoot("Fuzz Root")
	if err != nil {
		f.Fatal(err)
	}
	leaf, err := root.NewDevice("fuzz-dev")
	if err != nil {
		f.Fatal(err)
	}
	keyPEM, err := leaf.KeyPEM()
	if err != nil {
		f.Fatal(err)
	}
	chain := append(leaf.CertPEM(), root.CertPEM()...)
	f.Add(leaf.CertPEM())
	f.Add(append(append(leaf.CertPEM(), keyPEM...), root.CertPEM()...))
	f.Add(bytes.ReplaceAll(chain, []byte("\n"), []byte("\r\n")))
	f.Add([]byte(base64.StdEncoding.EncodeToString(chain)))
	f.Add([]byte(base64.StdEncoding.EncodeToString(leaf.Cert.Raw)))
	f.Add([]byte(base64.RawURLEncoding.EncodeToString(leaf.Cert.Raw)))
	f.Add(leaf.Cert.Raw)
	f.Add(append(append([]byte(nil), leaf.Cert.Raw...), root.Cert.Raw...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte(""))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, in []byte) {
		certs, err := ParseCertificates(in)
		if err != nil {
			if certs != nil {
				t.Fatalf("certificates returned with error %v", err)
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		for i, c := range certs {
			if c == nil || len(c.Raw) == 0 {
				t.Fatalf("certificate %d is empty", i+1)
			}
			_ = DistinguishedName(c.Subject)
			_ = SHA1Thumbprint(c)
		}
	})
}

func FuzzParsePrivateKey(f *testing.F) {
	ec, err := NewRoot("Fuzz EC")
	if err != nil {
		f.Fatal(err)
	}
	rs, err := NewRoot("Fuzz RSA", WithKeyType(KeyRSA2048))
	if err != nil {
		f.Fatal(err)
	}
	for _, i := range []*Issued{ec, rs} {
		p, err := i.KeyPEM()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
		f.Add(append(i.CertPEM(), p...))
	}
	sec1, err := x509.MarshalECPrivateKey(ec.Key.(*ecdsa.PrivateKey))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	f.Add(sec1)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rs.Key.(*rsa.PrivateKey))}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := ParsePrivateKey(in)
		if err != nil {
			if k != nil {
				t.Fatalf("key returned with error %v", err)
			}
			return
		}
		if k == nil || k.Public() == nil {
			t.Fatal("no error and no usable key")
		}
	})
}
