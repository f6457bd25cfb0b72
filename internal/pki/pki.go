// Package pki owns X.509 certificate issuance and certificate input parsing
// for Muster: test and deployment roots, intermediates, device identity
// certificates, IoT Edge device CA certificates, server certificates and
// proof-of-possession verification certificates, all on crypto/x509; the
// parsing of certificates and private keys as operators and SDKs send them
// (PEM, base64 of PEM, base64 of DER, raw DER); thumbprints and .NET-style
// distinguished names as DPS shows them; and the on-disk layout of the
// demo-certificate flow behind `muster certs`.
//
// It imports no network, MQTT or SQL package. Keys default to ECDSA P-256;
// RSA and P-384 are options. Nothing here holds state between calls.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

// KeyType names the algorithm and size of a generated key.
type KeyType string

// The supported key types. KeyP256 is the default.
const (
	KeyP256    KeyType = "p256"
	KeyP384    KeyType = "p384"
	KeyRSA2048 KeyType = "rsa2048"
	KeyRSA3072 KeyType = "rsa3072"
	KeyRSA4096 KeyType = "rsa4096"
)

// ErrUnknownKeyType is returned (wrapped) for a key type that is not one of
// the supported ones.
var ErrUnknownKeyType = errors.New("unknown key type")

// ParseKeyType parses a key type as an operator writes it. It is
// case-insensitive and ignores "-" and "_", so "rsa-3072", "RSA3072" and
// "P-384" are accepted; the curve names prime256v1, secp256r1 and secp384r1
// are aliases. An empty string gives the default, KeyP256.
func ParseKeyType(s string) (KeyType, error) {
	n := strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(strings.TrimSpace(s)))
	switch n {
	case "", "p256", "ecdsap256", "ecp256", "prime256v1", "secp256r1":
		return KeyP256, nil
	case "p384", "ecdsap384", "ecp384", "secp384r1":
		return KeyP384, nil
	case "rsa2048":
		return KeyRSA2048, nil
	case "rsa3072":
		return KeyRSA3072, nil
	case "rsa4096":
		return KeyRSA4096, nil
	}
	return "", fmt.Errorf("parse key type %q: %w (use p256, p384, rsa2048, rsa3072 or rsa4096)", s, ErrUnknownKeyType)
}

// GenerateKey creates a new private key of the given type.
func GenerateKey(kt KeyType) (crypto.Signer, error) {
	var (
		k   crypto.Signer
		err error
	)
	switch kt {
	case KeyP256, "":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyP384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyRSA2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA3072:
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	case KeyRSA4096:
		k, err = rsa.GenerateKey(rand.Reader, 4096)
	default:
		return nil, fmt.Errorf("generate key: %q: %w", string(kt), ErrUnknownKeyType)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", kt, err)
	}
	return k, nil
}

// Issued is a certificate together with its private key.
type Issued struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// CertPEM returns the certificate as one PEM CERTIFICATE block.
func (i *Issued) CertPEM() []byte {
	return EncodeCertificates(i.Cert)
}

// KeyPEM returns the private key as a PKCS#8 "PRIVATE KEY" PEM block.
func (i *Issued) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(i.Key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key of %s: %w", DistinguishedName(i.Cert.Subject), err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EncodeCertificates returns the certificates as consecutive PEM
// CERTIFICATE blocks, in the order given.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// Default validity periods.
const (
	// DefaultValidity is the validity of every certificate but roots.
	DefaultValidity = 365 * 24 * time.Hour
	// DefaultRootValidity is the validity of a root CA (10 years).
	DefaultRootValidity = 10 * 365 * 24 * time.Hour
	// BackdateNotBefore is how far before now notBefore is set by default,
	// so that devices whose clocks lag a little accept a new certificate.
	BackdateNotBefore = 5 * time.Minute
	// DefaultRootMaxPathLen is a root's default path length constraint:
	// room for two intermediate CAs (for example intermediate → edge CA).
	DefaultRootMaxPathLen = 2
)

// Option adjusts a certificate being issued.
type Option func(*options)

type options struct {
	keyType    KeyType
	key        crypto.Signer
	notBefore  time.Time
	notAfter   time.Time
	validSet   bool
	days       int
	eku        []x509.ExtKeyUsage
	ekuSet     bool
	dns        []string
	ips        []net.IP
	uris       []*url.URL
	subject    pkix.Name
	subjectSet bool
	maxPath    int
	maxPathSet bool
	err        error
}

// WithKeyType chooses the algorithm of the generated key (default KeyP256).
func WithKeyType(kt KeyType) Option {
	return func(o *options) { o.keyType = kt }
}

// WithKey issues the certificate for an existing key instead of generating
// one (for re-issuing a certificate with the same key).
func WithKey(key crypto.Signer) Option {
	return func(o *options) { o.key = key }
}

// WithValidity sets notBefore and notAfter exactly (both are truncated to
// whole seconds and stored in UTC). Dates past 2049 are encoded as
// GeneralizedTime; 9999-12-31T23:59:59Z is the RFC 5280 "no well-defined
// expiration" value.
func WithValidity(notBefore, notAfter time.Time) Option {
	return func(o *options) {
		o.notBefore, o.notAfter, o.validSet, o.days = notBefore, notAfter, true, 0
	}
}

// WithValidityDays makes the certificate valid from five minutes ago for the
// given number of days.
func WithValidityDays(days int) Option {
	return func(o *options) {
		if days <= 0 {
			o.err = fmt.Errorf("validity of %d days: must be at least 1", days)
			return
		}
		o.days, o.validSet = days, false
	}
}

// WithEKU replaces the default extended key usages. Called with no usage,
// the certificate gets no extended key usage extension at all.
func WithEKU(usages ...x509.ExtKeyUsage) Option {
	return func(o *options) { o.eku, o.ekuSet = append([]x509.ExtKeyUsage(nil), usages...), true }
}

// WithDNSNames adds DNS subject alternative names.
func WithDNSNames(names ...string) Option {
	return func(o *options) { o.dns = append(o.dns, names...) }
}

// WithIPs adds IP address subject alternative names.
func WithIPs(ips ...net.IP) Option {
	return func(o *options) { o.ips = append(o.ips, ips...) }
}

// WithURIs adds URI subject alternative names.
func WithURIs(uris ...*url.URL) Option {
	return func(o *options) { o.uris = append(o.uris, uris...) }
}

// WithSubject sets the subject's fields other than the common name (which
// always comes from the cn argument of the issuing function).
func WithSubject(n pkix.Name) Option {
	return func(o *options) { o.subject, o.subjectSet = n, true }
}

// WithMaxPathLen sets a CA's path length constraint: how many further
// intermediate CAs may follow it in a chain. 0 allows none (the CA signs
// only leaves); a negative value leaves the path length unconstrained. It
// has no effect on leaf certificates.
func WithMaxPathLen(n int) Option {
	return func(o *options) { o.maxPath, o.maxPathSet = n, true }
}

// kind is the profile of a certificate being issued.
type kind int

const (
	kindRoot kind = iota
	kindIntermediate
	kindEdgeCA
	kindDevice
	kindServer
	kindVerification
)

func (k kind) isCA() bool { return k == kindRoot || k == kindIntermediate || k == kindEdgeCA }

func (k kind) String() string {
	switch k {
	case kindRoot:
		return "root CA"
	case kindIntermediate:
		return "intermediate CA"
	case kindEdgeCA:
		return "edge CA"
	case kindDevice:
		return "device"
	case kindServer:
		return "server"
	default:
		return "verification"
	}
}

// NewRoot creates a self-signed root CA certificate: key usage certSign,
// cRLSign and digitalSignature, path length 2 unless WithMaxPathLen says
// otherwise, valid for 10 years unless WithValidity or WithValidityDays is
// given.
func NewRoot(cn string, opts ...Option) (*Issued, error) {
	return issue(kindRoot, cn, nil, opts)
}

// NewIntermediate creates an intermediate CA certificate signed by ca. By
// default its path length is 0: it signs leaves only. To build
// root → int1 → int2 → leaf, create int1 WithMaxPathLen(1).
func (ca *Issued) NewIntermediate(cn string, opts ...Option) (*Issued, error) {
	return issue(kindIntermediate, cn, ca, opts)
}

// NewDevice creates a device identity certificate signed by ca: CN = cn
// (the registration ID), key usage digitalSignature (plus keyEncipherment
// for RSA keys), extended key usage clientAuth, not a CA.
func (ca *Issued) NewDevice(cn string, opts ...Option) (*Issued, error) {
	return issue(kindDevice, cn, ca, opts)
}

// NewSelfSignedDevice creates a self-signed device certificate with the same
// profile as NewDevice, for individual enrollments.
func NewSelfSignedDevice(cn string, opts ...Option) (*Issued, error) {
	return issue(kindDevice, cn, nil, opts)
}

// NewServer creates a TLS server certificate signed by ca: extended key
// usage serverAuth, subject alternative names from WithDNSNames and WithIPs.
// Without either option, cn itself becomes the only SAN (an IP SAN when it
// is an IP address, a DNS name otherwise).
func (ca *Issued) NewServer(cn string, opts ...Option) (*Issued, error) {
	return issue(kindServer, cn, ca, opts)
}

// NewEdgeCA creates an IoT Edge device CA certificate signed by ca: a CA
// with path length 0 (it signs the edge runtime's workload certificates).
func (ca *Issued) NewEdgeCA(cn string, opts ...Option) (*Issued, error) {
	return issue(kindEdgeCA, cn, ca, opts)
}

// NewVerification creates a proof-of-possession verification certificate:
// a leaf whose CN is the verification code the service generated, signed by
// the CA being verified.
func (ca *Issued) NewVerification(code string, opts ...Option) (*Issued, error) {
	return issue(kindVerification, code, ca, opts)
}

// newSerial returns a positive 128-bit random serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for range 8 {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
	return nil, errors.New("generate serial number: random source returned zero repeatedly")
}

func issue(k kind, cn string, parent *Issued, opts []Option) (*Issued, error) {
	fail := func(err error) (*Issued, error) {
		return nil, fmt.Errorf("issue %s certificate %q: %w", k, cn, err)
	}
	if strings.TrimSpace(cn) == "" {
		return fail(errors.New("common name is empty"))
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return fail(o.err)
	}
	if parent != nil {
		if err := checkIssuer(parent); err != nil {
			return fail(err)
		}
	}

	now := time.Now()
	notBefore, notAfter := now.Add(-BackdateNotBefore), now.Add(DefaultValidity)
	switch {
	case o.validSet:
		notBefore, notAfter = o.notBefore, o.notAfter
	case o.days > 0:
		notAfter = now.Add(time.Duration(o.days) * 24 * time.Hour)
	case k == kindRoot:
		notAfter = now.Add(DefaultRootValidity)
	}
	notBefore, notAfter = notBefore.UTC().Truncate(time.Second), notAfter.UTC().Truncate(time.Second)
	if !notAfter.After(notBefore) {
		return fail(fmt.Errorf("validity: notAfter %s is not after notBefore %s", notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339)))
	}
	if notBefore.Year() < 1950 || notAfter.Year() > 9999 {
		return fail(fmt.Errorf("validity %s to %s: dates must lie between 1950 and 9999", notBefore.Format(time.RFC3339), notAfter.Format(time.RFC3339)))
	}

	key := o.key
	if key == nil {
		var err error
		if key, err = GenerateKey(o.keyType); err != nil {
			return fail(err)
		}
	}
	serial, err := newSerial()
	if err != nil {
		return fail(err)
	}

	subject := pkix.Name{}
	if o.subjectSet {
		subject = o.subject
	}
	subject.CommonName = cn

	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		DNSNames:              append([]string(nil), o.dns...),
		IPAddresses:           append([]net.IP(nil), o.ips...),
		URIs:                  append([]*url.URL(nil), o.uris...),
	}
	if k.isCA() {
		tmpl.IsCA = true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
		maxPath := 0
		if k == kindRoot {
			maxPath = DefaultRootMaxPathLen
		}
		if o.maxPathSet {
			maxPath = o.maxPath
		}
		switch {
		case maxPath < 0:
			tmpl.MaxPathLen = -1
		case maxPath == 0:
			tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
		default:
			tmpl.MaxPathLen = maxPath
		}
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		if _, isRSA := key.Public().(*rsa.PublicKey); isRSA {
			tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		}
		switch k {
		case kindServer:
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			if len(tmpl.DNSNames) == 0 && len(tmpl.IPAddresses) == 0 && len(tmpl.URIs) == 0 {
				if ip := net.ParseIP(cn); ip != nil {
					tmpl.IPAddresses = []net.IP{ip}
				} else {
					tmpl.DNSNames = []string{cn}
				}
			}
		default:
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
	}
	if o.ekuSet {
		tmpl.ExtKeyUsage = o.eku
	}

	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return fail(fmt.Errorf("sign: %w", err))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fail(fmt.Errorf("parse the signed certificate: %w", err))
	}
	return &Issued{Cert: cert, Key: key}, nil
}

// checkIssuer makes sure an issuer can sign certificates.
func checkIssuer(ca *Issued) error {
	if ca.Cert == nil || ca.Key == nil {
		return errors.New("issuer has no certificate or no key")
	}
	name := DistinguishedName(ca.Cert.Subject)
	if !ca.Cert.BasicConstraintsValid || !ca.Cert.IsCA {
		return fmt.Errorf("issuer %s is not a CA certificate", name)
	}
	if ca.Cert.KeyUsage != 0 && ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("issuer %s lacks the keyCertSign key usage", name)
	}
	if !KeyMatches(ca.Cert, ca.Key) {
		return fmt.Errorf("issuer key does not match the public key of issuer certificate %s", name)
	}
	return nil
}

// KeyMatches reports whether key is the private key of cert's public key.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	if cert == nil || key == nil {
		return false
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}
