package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// MaxInputSize is the largest certificate or key input the parsers accept.
const MaxInputSize = 1 << 20

// Sentinel errors of the parsers (returned wrapped, with the precise cause).
var (
	// ErrNoCertificate means the input holds no certificate.
	ErrNoCertificate = errors.New("no certificate found")
	// ErrNoPrivateKey means the input holds no private key.
	ErrNoPrivateKey = errors.New("no private key found")
	// ErrInputTooLarge means the input is over MaxInputSize.
	ErrInputTooLarge = errors.New("input too large")
)

// ParseCertificates parses one or more certificates from untrusted input,
// as operators and SDKs send them:
//
//   - PEM: every CERTIFICATE block, in order (other block types such as
//     keys are skipped; CRLF line ends and surrounding text are tolerated);
//   - base64 of PEM text;
//   - base64 of DER (standard or URL alphabet, with or without padding and
//     line breaks), one certificate or several concatenated;
//   - raw DER, likewise.
//
// Inputs over MaxInputSize are refused. Errors say which certificate failed,
// for example "certificate 2 in PEM: x509: …".
func ParseCertificates(input []byte) ([]*x509.Certificate, error) {
	if len(input) > MaxInputSize {
		return nil, fmt.Errorf("parse certificates: %w: %d bytes, the limit is %d", ErrInputTooLarge, len(input), MaxInputSize)
	}
	certs, err := parseCertificates(input, true)
	if err != nil {
		return nil, fmt.Errorf("parse certificates: %w", err)
	}
	return certs, nil
}

// ParseCertificate parses input like ParseCertificates and returns the first
// certificate.
func ParseCertificate(input []byte) (*x509.Certificate, error) {
	certs, err := ParseCertificates(input)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// pemBegin starts every PEM block.
const pemBegin = "-----BEGIN"

func parseCertificates(input []byte, allowBase64 bool) ([]*x509.Certificate, error) {
	trimmed := bytes.TrimSpace(input)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: the input is empty", ErrNoCertificate)
	}
	if bytes.Contains(trimmed, []byte(pemBegin)) {
		return parsePEMCertificates(trimmed)
	}
	if allowBase64 && isBase64Text(trimmed) {
		der, err := decodeBase64(trimmed)
		if err != nil {
			return nil, fmt.Errorf("%w: the input is neither PEM nor valid base64: %w", ErrNoCertificate, err)
		}
		if bytes.Contains(der, []byte(pemBegin)) {
			certs, err := parseCertificates(der, false)
			if err != nil {
				return nil, fmt.Errorf("base64-encoded PEM: %w", err)
			}
			return certs, nil
		}
		certs, err := x509.ParseCertificates(der)
		if err != nil {
			return nil, fmt.Errorf("base64-encoded DER: %w", err)
		}
		if len(certs) == 0 {
			return nil, fmt.Errorf("%w: the base64 text decodes to nothing", ErrNoCertificate)
		}
		return certs, nil
	}
	der := input // DER is parsed untrimmed: its last byte may look like whitespace
	if der[0] != 0x30 {
		der = trimmed
	}
	if der[0] == 0x30 { // an ASN.1 SEQUENCE
		certs, err := x509.ParseCertificates(der)
		if err != nil {
			return nil, fmt.Errorf("DER: %w", err)
		}
		return certs, nil
	}
	return nil, fmt.Errorf("%w: the input is neither PEM, base64 nor DER", ErrNoCertificate)
}

func parsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var (
		certs  []*x509.Certificate
		others []string
		rest   = data
	)
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		switch block.Type {
		case "CERTIFICATE", "X509 CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d in PEM: %w", len(certs)+1, err)
			}
			certs = append(certs, c)
		default:
			others = append(others, block.Type)
		}
	}
	if len(certs) > 0 {
		return certs, nil
	}
	if len(others) > 0 {
		return nil, fmt.Errorf("%w: the PEM input holds only %s blocks", ErrNoCertificate, strings.Join(others, ", "))
	}
	return nil, fmt.Errorf("%w: the PEM input has no complete BEGIN/END block", ErrNoCertificate)
}

// isBase64Text reports whether b consists only of base64 characters (either
// alphabet), padding and whitespace.
func isBase64Text(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '+', c == '/', c == '-', c == '_', c == '=':
		case c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return false
		}
	}
	return true
}

// decodeBase64 decodes standard or URL-safe base64, padded or not, ignoring
// whitespace.
func decodeBase64(b []byte) ([]byte, error) {
	s := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, string(b))
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if !strings.HasSuffix(s, "=") {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.DecodeString(s)
}

// ParsePrivateKey parses a private key from PEM: PKCS#8 ("PRIVATE KEY"),
// PKCS#1 ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"). Other blocks (EC
// PARAMETERS, certificates) are skipped; the first key block is used.
// Without any PEM block the input is tried as DER in the same three formats.
// Encrypted keys are refused.
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	if len(pemBytes) > MaxInputSize {
		return nil, fmt.Errorf("parse private key: %w: %d bytes, the limit is %d", ErrInputTooLarge, len(pemBytes), MaxInputSize)
	}
	k, err := parsePrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	return k, nil
}

func parsePrivateKey(data []byte) (crypto.Signer, error) {
	if !bytes.Contains(data, []byte(pemBegin)) {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, fmt.Errorf("%w: the input is empty", ErrNoPrivateKey)
		}
		for _, parse := range []func([]byte) (crypto.Signer, error){parsePKCS8, parsePKCS1, parseSEC1} {
			if k, err := parse(data); err == nil {
				return k, nil
			}
		}
		return nil, fmt.Errorf("%w: the input is not PEM and not a PKCS#8, PKCS#1 or SEC1 DER key", ErrNoPrivateKey)
	}
	var others []string
	rest := data
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		if _, encrypted := block.Headers["DEK-Info"]; encrypted || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, fmt.Errorf("the %s block is encrypted; decrypt it first (for example openssl pkey -in key.pem -out plain.pem)", block.Type)
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := parsePKCS8(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PKCS#8 PRIVATE KEY block: %w", err)
			}
			return k, nil
		case "RSA PRIVATE KEY":
			k, err := parsePKCS1(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PKCS#1 RSA PRIVATE KEY block: %w", err)
			}
			return k, nil
		case "EC PRIVATE KEY":
			k, err := parseSEC1(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("SEC1 EC PRIVATE KEY block: %w", err)
			}
			return k, nil
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the ENCRYPTED PRIVATE KEY block is encrypted; decrypt it first (for example openssl pkey -in key.pem -out plain.pem)")
		default:
			others = append(others, block.Type)
		}
	}
	if len(others) > 0 {
		return nil, fmt.Errorf("%w: the PEM input holds only %s blocks", ErrNoPrivateKey, strings.Join(others, ", "))
	}
	return nil, fmt.Errorf("%w: the PEM input has no complete BEGIN/END block", ErrNoPrivateKey)
}

func parsePKCS8(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	switch s := k.(type) {
	case *ecdsa.PrivateKey:
		return s, nil
	case *rsa.PrivateKey:
		return s, nil
	case ed25519.PrivateKey:
		return s, nil
	default:
		return nil, fmt.Errorf("a %T key cannot sign certificates or TLS handshakes", k)
	}
}

func parsePKCS1(der []byte) (crypto.Signer, error) {
	return x509.ParsePKCS1PrivateKey(der)
}

func parseSEC1(der []byte) (crypto.Signer, error) {
	return x509.ParseECPrivateKey(der)
}

// SHA1Thumbprint returns the SHA-1 digest of the certificate's DER as
// upper-case hex, as DPS, IoT Hub and `openssl x509 -fingerprint` show it
// (without colons).
func SHA1Thumbprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// SHA256Thumbprint returns the SHA-256 digest of the certificate's DER as
// upper-case hex.
func SHA256Thumbprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// DistinguishedName renders a name as DPS (and .NET) show it: most specific
// attribute first, ", " between attributes, for example
// "CN=leaf, OU=Azure IoT, O=MSFT, C=US". Values holding separators or quotes,
// or with leading or trailing spaces, are double-quoted with inner quotes
// doubled. Unknown attribute types are written as OID.<dotted>.
func DistinguishedName(n pkix.Name) string {
	attrs := n.Names
	if len(attrs) == 0 {
		for _, rdn := range n.ToRDNSequence() {
			attrs = append(attrs, rdn...)
		}
	}
	parts := make([]string, 0, len(attrs))
	for i := len(attrs) - 1; i >= 0; i-- {
		a := attrs[i]
		parts = append(parts, attributeName(a.Type)+"="+quoteDNValue(fmt.Sprint(a.Value)))
	}
	return strings.Join(parts, ", ")
}

// attributeName returns the short name .NET's X500DistinguishedName uses
// for an attribute type.
func attributeName(oid asn1.ObjectIdentifier) string {
	s := oid.String()
	switch s {
	case "2.5.4.3":
		return "CN"
	case "2.5.4.4":
		return "SN"
	case "2.5.4.5":
		return "SERIALNUMBER"
	case "2.5.4.6":
		return "C"
	case "2.5.4.7":
		return "L"
	case "2.5.4.8":
		return "S"
	case "2.5.4.9":
		return "STREET"
	case "2.5.4.10":
		return "O"
	case "2.5.4.11":
		return "OU"
	case "2.5.4.12":
		return "T"
	case "2.5.4.42":
		return "G"
	case "2.5.4.43":
		return "I"
	case "1.2.840.113549.1.9.1":
		return "E"
	case "0.9.2342.19200300.100.1.25":
		return "DC"
	case "0.9.2342.19200300.100.1.1":
		return "UID"
	}
	return "OID." + s
}

// quoteDNValue double-quotes a value that would otherwise be ambiguous.
func quoteDNValue(v string) string {
	if v == "" {
		return v
	}
	if strings.ContainsAny(v, ",+=\"<>#;\n\r") || v[0] == ' ' || v[len(v)-1] == ' ' {
		return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
	}
	return v
}
