package dpsclient

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"
)

// testCert is a certificate generated for a test, with its key.
type testCert struct {
	cert *x509.Certificate
	der  []byte
	key  crypto.Signer
}

type certKind int

const (
	kindCA certKind = iota
	kindClient
	kindServer
)

// newTestCert issues a certificate with an ECDSA P-256 key (or rsaKey when
// set) signed by parent (self-signed when parent is nil).
func newTestCert(t testing.TB, cn string, kind certKind, parent *testCert, rsaKey bool) *testCert {
	t.Helper()
	var key crypto.Signer
	var err error
	if rsaKey {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatalf("generate key for %s: %v", cn, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("serial: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	switch kind {
	case kindCA:
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	case kindClient:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case kindServer:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		t.Fatalf("create certificate %s: %v", cn, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate %s: %v", cn, err)
	}
	return &testCert{cert: c, der: der, key: key}
}

// tlsCert returns c with chain as a tls.Certificate (leaf first).
func (c *testCert) tlsCert(chain ...*testCert) *tls.Certificate {
	tc := &tls.Certificate{Certificate: [][]byte{c.der}, PrivateKey: c.key}
	for _, p := range chain {
		tc.Certificate = append(tc.Certificate, p.der)
	}
	return tc
}

func (c *testCert) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der})
}

// testPKI is a root CA, an intermediate, a server certificate for
// 127.0.0.1 and a client (device) certificate issued by the intermediate.
type testPKI struct {
	root, inter, server, device *testCert
	pool                        *x509.CertPool
}

func newTestPKI(t testing.TB, deviceCN string) *testPKI {
	t.Helper()
	p := &testPKI{root: newTestCert(t, "test root", kindCA, nil, false)}
	p.inter = newTestCert(t, "test intermediate", kindCA, p.root, false)
	p.server = newTestCert(t, "127.0.0.1", kindServer, p.root, false)
	p.device = newTestCert(t, deviceCN, kindClient, p.inter, false)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.root.cert)
	return p
}
