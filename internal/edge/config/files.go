package config

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/sas"
)

// ErrNotApplicable is returned by an accessor asked for something the
// configuration does not use, such as the symmetric key of an X.509 device.
var ErrNotApplicable = errors.New("does not apply to this configuration")

// CheckFiles reads the files the configuration names and checks them, and
// returns every problem at once as a *ValidationError naming the key and the
// file: the trust bundle holds certificates; the X.509 identity certificate
// chain parses and starts with the device's (non-CA) certificate; the
// private key parses and belongs to that certificate; without
// registration_id the certificate's CN is a valid registration ID; a
// symmetric key file is not empty; a payload file holds JSON. Call it on a
// configuration Validate accepts.
func (c *Config) CheckFiles() error {
	var p problems
	if c.TrustBundleCert != "" {
		if path, err := resolveFileRef(c.TrustBundleCert, true); err == nil {
			if _, err := loadCertificates(path); err != nil {
				p.add("trust_bundle_cert", "%v", err)
			}
		}
	}
	pr := &c.Provisioning
	if pr.Source != SourceDPS {
		return p.err()
	}
	if pr.Payload != nil {
		if path, err := resolveFileRef(pr.Payload.URI, false); err == nil {
			if _, err := loadPayload(path); err != nil {
				p.add("provisioning.payload.uri", "%v", err)
			}
		}
	}
	a := pr.Attestation
	switch {
	case a == nil:
	case a.Method == MethodSymmetricKey && a.SymmetricKey != nil && a.SymmetricKey.URI != "":
		if path, err := resolveFileRef(a.SymmetricKey.URI, false); err == nil {
			if _, err := loadKeyFile(path); err != nil {
				p.add(keyAttestation+".symmetric_key.uri", "%v", err)
			}
		}
	case a.Method == MethodX509:
		checkIdentity(a, &p)
	}
	return p.err()
}

// checkIdentity checks the X.509 identity files of a.
func checkIdentity(a *Attestation, p *problems) {
	certPath, cerr := resolveFileRef(a.IdentityCert, true)
	keyPath, kerr := resolveFileRef(a.IdentityPK, true)
	if cerr != nil || kerr != nil {
		return // Validate reports these.
	}
	chain, err := loadIdentityChain(certPath)
	if err != nil {
		p.add(keyAttestation+".identity_cert", "%v", err)
	}
	key, err := loadPrivateKey(keyPath)
	if err != nil {
		p.add(keyAttestation+".identity_pk", "%v", err)
	}
	if chain == nil || key == nil {
		return
	}
	if !pki.KeyMatches(chain[0], key) {
		p.add(keyAttestation+".identity_pk", "the private key in %s does not belong to the certificate in %s (%s); give the key of that certificate",
			keyPath, certPath, pki.DistinguishedName(chain[0].Subject))
	}
	if a.RegistrationID == "" && !enroll.ValidRegistrationID(chain[0].Subject.CommonName) {
		p.add(keyAttestation+".registration_id", "missing, and the CN %q of the certificate in %s is not a registration ID; set registration_id",
			chain[0].Subject.CommonName, certPath)
	}
}

// SymmetricKey returns the decoded symmetric key: the inline base64 value,
// or the raw bytes of the key file (as upstream key files hold them).
func (c *Config) SymmetricKey() ([]byte, error) {
	a, err := c.attestation(MethodSymmetricKey)
	if err != nil {
		return nil, err
	}
	const key = keyAttestation + ".symmetric_key"
	s := a.SymmetricKey
	switch {
	case s == nil:
		return nil, fmt.Errorf("%s: missing", key)
	case s.Value != "":
		k, err := sas.DecodeKey(s.Value)
		if err != nil {
			return nil, fmt.Errorf("%s.value: %w", key, err)
		}
		return k, nil
	default:
		path, err := resolveFileRef(s.URI, false)
		if err != nil {
			return nil, fmt.Errorf("%s.uri: %w", key, err)
		}
		k, err := loadKeyFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s.uri: %w", key, err)
		}
		return k, nil
	}
}

// IdentityFiles returns the local paths of the X.509 identity certificate
// chain and its private key.
func (c *Config) IdentityFiles() (certPath, keyPath string, err error) {
	a, err := c.attestation(MethodX509)
	if err != nil {
		return "", "", err
	}
	certPath, err = resolveFileRef(a.IdentityCert, true)
	if err != nil {
		return "", "", fmt.Errorf("%s.identity_cert: %w", keyAttestation, err)
	}
	keyPath, err = resolveFileRef(a.IdentityPK, true)
	if err != nil {
		return "", "", fmt.Errorf("%s.identity_pk: %w", keyAttestation, err)
	}
	return certPath, keyPath, nil
}

// IdentityCertificate loads the X.509 identity: the chain (leaf first) and
// the private key, checked to belong together.
func (c *Config) IdentityCertificate() (tls.Certificate, error) {
	certPath, keyPath, err := c.IdentityFiles()
	if err != nil {
		return tls.Certificate{}, err
	}
	chain, err := loadIdentityChain(certPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s.identity_cert: %w", keyAttestation, err)
	}
	key, err := loadPrivateKey(keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s.identity_pk: %w", keyAttestation, err)
	}
	if !pki.KeyMatches(chain[0], key) {
		return tls.Certificate{}, fmt.Errorf("%s.identity_pk: the private key in %s does not belong to the certificate in %s (%s)",
			keyAttestation, keyPath, certPath, pki.DistinguishedName(chain[0].Subject))
	}
	out := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, cert := range chain {
		out.Certificate = append(out.Certificate, cert.Raw)
	}
	return out, nil
}

// RegistrationID returns the DPS registration ID: registration_id, or for
// X.509 without it the subject CN of the identity certificate.
func (c *Config) RegistrationID() (string, error) {
	if c.Provisioning.Source != SourceDPS || c.Provisioning.Attestation == nil {
		return "", fmt.Errorf("registration ID: %w (provisioning.source is %q)", ErrNotApplicable, c.Provisioning.Source)
	}
	a := c.Provisioning.Attestation
	if a.RegistrationID != "" || a.Method != MethodX509 {
		return a.RegistrationID, nil
	}
	certPath, _, err := c.IdentityFiles()
	if err != nil {
		return "", err
	}
	chain, err := loadIdentityChain(certPath)
	if err != nil {
		return "", fmt.Errorf("%s.identity_cert: %w", keyAttestation, err)
	}
	return chain[0].Subject.CommonName, nil
}

// TrustBundle returns the certificates of trust_bundle_cert as a pool, or
// nil without error when trust_bundle_cert is not set (meaning: verify with
// the system roots). When set, only the bundle's certificates are trusted.
func (c *Config) TrustBundle() (*x509.CertPool, error) {
	if c.TrustBundleCert == "" {
		return nil, nil
	}
	path, err := resolveFileRef(c.TrustBundleCert, true)
	if err != nil {
		return nil, fmt.Errorf("trust_bundle_cert: %w", err)
	}
	certs, err := loadCertificates(path)
	if err != nil {
		return nil, fmt.Errorf("trust_bundle_cert: %w", err)
	}
	pool := x509.NewCertPool()
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool, nil
}

// DPSEndpoint returns the DPS device endpoint as host:port, the port
// defaulting to 443 for https and 8883 for mqtts.
func (c *Config) DPSEndpoint() (string, error) {
	pr := &c.Provisioning
	if pr.Source != SourceDPS {
		return "", fmt.Errorf("DPS endpoint: %w (provisioning.source is %q)", ErrNotApplicable, pr.Source)
	}
	ep, err := NormalizeEndpoint(pr.GlobalEndpoint, pr.Transport)
	if err != nil {
		return "", fmt.Errorf("provisioning.global_endpoint: %w", err)
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", fmt.Errorf("provisioning.global_endpoint: %w", err)
	}
	port := u.Port()
	if port == "" {
		port = DefaultHTTPSPort
		if u.Scheme == "mqtts" {
			port = DefaultMQTTPort
		}
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// Payload returns the DPS registration payload, or nil without error when
// none is configured.
func (c *Config) Payload() (json.RawMessage, error) {
	pr := &c.Provisioning
	if pr.Source != SourceDPS || pr.Payload == nil {
		return nil, nil
	}
	path, err := resolveFileRef(pr.Payload.URI, false)
	if err != nil {
		return nil, fmt.Errorf("provisioning.payload.uri: %w", err)
	}
	b, err := loadPayload(path)
	if err != nil {
		return nil, fmt.Errorf("provisioning.payload.uri: %w", err)
	}
	return b, nil
}

// attestation returns the attestation section if it uses method.
func (c *Config) attestation(method string) (*Attestation, error) {
	pr := &c.Provisioning
	if pr.Source != SourceDPS || pr.Attestation == nil {
		return nil, fmt.Errorf("%s attestation: %w (provisioning.source is %q)", method, ErrNotApplicable, pr.Source)
	}
	if pr.Attestation.Method != method {
		return nil, fmt.Errorf("%s attestation: %w (provisioning.attestation.method is %q)", method, ErrNotApplicable, pr.Attestation.Method)
	}
	return pr.Attestation, nil
}

// loadCertificates reads one or more certificates from a PEM file.
func loadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := readRegular(path, pki.MaxInputSize)
	if err != nil {
		return nil, err
	}
	certs, err := pki.ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// loadIdentityChain reads an identity certificate chain and checks that it
// starts with the device's own certificate.
func loadIdentityChain(path string) ([]*x509.Certificate, error) {
	chain, err := loadCertificates(path)
	if err != nil {
		return nil, err
	}
	if leaf := chain[0]; leaf.BasicConstraintsValid && leaf.IsCA {
		return nil, fmt.Errorf("%s: the first certificate (%s) is a CA certificate; the file must start with the device's identity certificate, followed by its issuers",
			path, pki.DistinguishedName(leaf.Subject))
	}
	return chain, nil
}

// loadPrivateKey reads an unencrypted private key from a PEM file.
func loadPrivateKey(path string) (crypto.Signer, error) {
	b, err := readRegular(path, pki.MaxInputSize)
	if err != nil {
		return nil, err
	}
	k, err := pki.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// loadKeyFile reads a symmetric key file (raw key bytes).
func loadKeyFile(path string) ([]byte, error) {
	b, err := readRegular(path, MaxKeyFileSize)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: the key file is empty", path)
	}
	return b, nil
}

// loadPayload reads a JSON payload file.
func loadPayload(path string) (json.RawMessage, error) {
	b, err := readRegular(path, MaxPayloadSize)
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%s: not valid JSON", path)
	}
	return json.RawMessage(b), nil
}
