package dpsclient

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/muster-iot/muster/internal/sas"
)

// DeviceKeyFromGroup derives the base64 device key of registrationID from
// the base64 key of a symmetric-key enrollment group:
// base64(HMAC-SHA256(base64decode(groupKey), registrationID)).
func DeviceKeyFromGroup(groupKey, registrationID string) (string, error) {
	if registrationID == "" {
		return "", errors.New("derive device key: registration ID is empty")
	}
	k, err := sas.DeriveKey(groupKey, registrationID)
	if err != nil {
		return "", fmt.Errorf("derive device key of %q: %w", registrationID, err)
	}
	return k, nil
}

// LoadX509 reads a device identity: certFile is a PEM file holding the
// leaf certificate followed by its chain, keyFile a PEM private key
// (PKCS#8, PKCS#1 or SEC1, unencrypted). Both may be plain paths or file://
// URIs (as iotedge configuration stores them). It returns the certificate
// with Leaf set, and the leaf subject CN (the default registration ID).
func LoadX509(certFile, keyFile string) (*tls.Certificate, string, error) {
	certPath, err := filePath(certFile)
	if err != nil {
		return nil, "", fmt.Errorf("load x509 identity: certificate: %w", err)
	}
	keyPath, err := filePath(keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("load x509 identity: key: %w", err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, "", fmt.Errorf("load x509 identity: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, "", fmt.Errorf("load x509 identity: read key: %w", err)
	}
	chain, err := parseChain(certPEM)
	if err != nil {
		return nil, "", fmt.Errorf("load x509 identity: certificate file %s: %w", certPath, err)
	}
	if err := checkKeyPEM(keyPEM); err != nil {
		return nil, "", fmt.Errorf("load x509 identity: key file %s: %w", keyPath, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "", fmt.Errorf("load x509 identity: pair %s with %s: %w", certPath, keyPath, err)
	}
	cert.Leaf = chain[0]
	return &cert, chain[0].Subject.CommonName, nil
}

// parseChain parses every CERTIFICATE block of data, leaf first, and
// checks that each certificate is signed by the next one.
func parseChain(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(chain)+1, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return nil, fmt.Errorf("certificate %d (%q) is not signed by certificate %d (%q); the chain must be leaf first: %w",
				i+1, chain[i].Subject.CommonName, i+2, chain[i+1].Subject.CommonName, err)
		}
	}
	return chain, nil
}

// checkKeyPEM rejects encrypted keys and files without a key block with a
// clearer message than tls.X509KeyPair gives.
func checkKeyPEM(data []byte) error {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return errors.New("no PEM PRIVATE KEY block")
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" || (strings.HasSuffix(b.Type, "PRIVATE KEY") && b.Headers["Proc-Type"] != "") {
			return errors.New("the private key is encrypted; an unencrypted PKCS#8, PKCS#1 or SEC1 key is required")
		}
		if b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY") {
			return nil
		}
	}
}

// filePath turns a plain path or a file:// URI into a local path.
func filePath(s string) (string, error) {
	if s == "" {
		return "", errors.New("path is empty")
	}
	if !strings.HasPrefix(strings.ToLower(s), "file:") {
		return s, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("parse file URI %q: %w", s, err)
	}
	if u.Host != "" && !strings.EqualFold(u.Host, "localhost") {
		return "", fmt.Errorf("file URI %q names host %q; only local files are supported", s, u.Host)
	}
	p := u.Path
	if p == "" {
		p = u.Opaque
	}
	if p == "" {
		return "", fmt.Errorf("file URI %q has no path", s)
	}
	// file:///C:/dir/key.pem: on Windows the path is C:/dir/key.pem
	// (VolumeName is always empty elsewhere).
	if len(p) > 1 && p[0] == '/' && filepath.VolumeName(p[1:]) != "" {
		p = p[1:]
	}
	return filepath.FromSlash(p), nil
}
