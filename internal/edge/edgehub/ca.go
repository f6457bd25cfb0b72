package edgehub

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/pki"
)

// The edge CA's files under its directory.
const (
	caCertFile = "edge-ca.cert.pem"
	caKeyFile  = "edge-ca.key.pem"
)

// Validity of the generated certificates.
const (
	// CAValidity is the validity of a generated edge CA.
	CAValidity = 365 * 24 * time.Hour
	// CARenewBefore is how close to its end a CA is replaced at start.
	CARenewBefore = 30 * 24 * time.Hour
	// ServerValidity is the validity of the edge hub's server certificate;
	// it is re-issued from the CA when a day of it is left.
	ServerValidity    = 30 * 24 * time.Hour
	serverRenewBefore = 24 * time.Hour
)

// CA is the device-local certificate authority that issues the edge hub's
// TLS server certificate; modules trust it through
// EdgeModuleCACertificateFile. It is generated on first use and kept in a
// directory readable by the runtime only (the key file is mode 0600).
type CA struct {
	issued   *pki.Issued
	certPath string
}

// CACertPath returns where the edge CA certificate of dir is.
func CACertPath(dir string) string { return filepath.Join(dir, caCertFile) }

// LoadOrCreateCA loads the edge CA of dir, or creates one (CN names the
// device) when there is none, it cannot be read, or less than
// CARenewBefore of its validity is left at now.
func LoadOrCreateCA(dir, deviceID string, now time.Time) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	// A CA that is missing, unreadable or close to its end is replaced:
	// modules trust the new one from their next start.
	if ca, err := loadCA(certPath, keyPath); err == nil && now.Add(CARenewBefore).Before(ca.issued.Cert.NotAfter) && !now.Before(ca.issued.Cert.NotBefore) {
		return ca, nil
	}
	issued, err := pki.NewRoot("Muster iotedge edge CA "+deviceID, pki.WithValidity(now.Add(-time.Minute), now.Add(CAValidity)), pki.WithMaxPathLen(0))
	if err != nil {
		return nil, fmt.Errorf("create the edge CA: %w", err)
	}
	keyPEM, err := issued.KeyPEM()
	if err != nil {
		return nil, fmt.Errorf("create the edge CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the edge CA directory %s: %w", dir, err)
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write the edge CA key: %w", err)
	}
	if err := writeFileAtomic(certPath, issued.CertPEM(), 0o644); err != nil {
		return nil, fmt.Errorf("write the edge CA certificate: %w", err)
	}
	return &CA{issued: issued, certPath: certPath}, nil
}

func loadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	cert, err := pki.ParseCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	key, err := pki.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if !pki.KeyMatches(cert, key) || !cert.IsCA {
		return nil, fmt.Errorf("%s and %s are not a CA and its key", certPath, keyPath)
	}
	return &CA{issued: &pki.Issued{Cert: cert, Key: key}, certPath: certPath}, nil
}

// writeFileAtomic replaces path with data (temporary file, sync, rename).
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// CertPath is the CA certificate file modules trust.
func (ca *CA) CertPath() string { return ca.certPath }

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.issued.Cert }

// ServerCertificates issues the edge hub's server certificate for the
// given host names and IP addresses on demand, and re-issues it when
// little of its validity is left.
type ServerCertificates struct {
	ca    *CA
	names []string
	now   func() time.Time

	mu   sync.Mutex
	cert *tls.Certificate
	leaf *x509.Certificate
}

// NewServerCertificates returns the server certificate source for names
// (DNS names or IP addresses).
func (ca *CA) NewServerCertificates(names []string, now func() time.Time) *ServerCertificates {
	if now == nil {
		now = time.Now
	}
	return &ServerCertificates{ca: ca, names: names, now: now}
}

// GetCertificate is a tls.Config.GetCertificate.
func (s *ServerCertificates) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.cert != nil && now.Add(serverRenewBefore).Before(s.leaf.NotAfter) {
		return s.cert, nil
	}
	var dns []string
	var ips []net.IP
	for _, n := range s.names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else if n != "" {
			dns = append(dns, n)
		}
	}
	cn := "edgehub"
	if len(dns) > 0 {
		cn = dns[0]
	}
	notAfter := now.Add(ServerValidity)
	if caEnd := s.ca.issued.Cert.NotAfter; caEnd.Before(notAfter) {
		notAfter = caEnd
	}
	issued, err := s.ca.issued.NewServer(cn, pki.WithDNSNames(dns...), pki.WithIPs(ips...), pki.WithValidity(now.Add(-time.Minute), notAfter))
	if err != nil {
		return nil, fmt.Errorf("issue the edge hub's server certificate: %w", err)
	}
	s.cert = &tls.Certificate{Certificate: [][]byte{issued.Cert.Raw, s.ca.issued.Cert.Raw}, PrivateKey: issued.Key, Leaf: issued.Cert}
	s.leaf = issued.Cert
	return s.cert, nil
}
