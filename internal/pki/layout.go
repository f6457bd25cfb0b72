package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Layout is the directory of the demo-certificate flow ("Create demo
// certificates to test IoT Edge device features"), with the file names the
// Azure IoT Edge scripts use, so guides written for them apply unchanged:
//
//	certs/azure-iot-test-only.root.ca.cert.pem
//	certs/azure-iot-test-only.intermediate.cert.pem
//	certs/iot-edge-device-identity-<name>.cert.pem
//	certs/iot-edge-device-identity-<name>-full-chain.cert.pem
//	certs/iot-edge-device-ca-<name>.cert.pem
//	certs/iot-edge-device-ca-<name>-full-chain.cert.pem
//	certs/verification-code.cert.pem
//	private/<the same base names>.key.pem
//
// Certificates are written with mode 0644 and keys with mode 0600 (the
// private directory 0700). An existing key or certificate is never replaced
// unless Force is set. Every write is atomic (a temporary file renamed into
// place).
type Layout struct {
	// Dir is the base directory; certs/ and private/ are created below it.
	Dir string
	// Force allows replacing existing files.
	Force bool
}

// DevicePaths are the files written for one certificate.
type DevicePaths struct {
	// Cert is the certificate alone.
	Cert string
	// FullChain is the certificate followed by the intermediate (if any) and
	// the root; empty for verification certificates.
	FullChain string
	// Key is the private key (PKCS#8 PEM).
	Key string
}

// The base names of the layout's files.
const (
	rootBase          = "azure-iot-test-only.root.ca"
	intermediateBase  = "azure-iot-test-only.intermediate"
	deviceIdentityPfx = "iot-edge-device-identity-"
	edgeCAPfx         = "iot-edge-device-ca-"
	verificationBase  = "verification-code"
)

// Signers accepted by CreateVerification.
const (
	SignerRoot         = "root"
	SignerIntermediate = "intermediate"
)

func (l Layout) certPath(base string) string {
	return filepath.Join(l.Dir, "certs", base+".cert.pem")
}

func (l Layout) keyPath(base string) string {
	return filepath.Join(l.Dir, "private", base+".key.pem")
}

// RootPaths returns where the root CA's files live.
func (l Layout) RootPaths() DevicePaths {
	return DevicePaths{Cert: l.certPath(rootBase), Key: l.keyPath(rootBase)}
}

// IntermediatePaths returns where the intermediate CA's files live.
func (l Layout) IntermediatePaths() DevicePaths {
	return DevicePaths{Cert: l.certPath(intermediateBase), Key: l.keyPath(intermediateBase)}
}

// CreateRoot creates a self-signed root CA and writes it. Options apply as
// for NewRoot.
func (l Layout) CreateRoot(cn string, opts ...Option) (*Issued, error) {
	if err := l.refuseExisting(l.RootPaths()); err != nil {
		return nil, fmt.Errorf("create root CA: %w", err)
	}
	root, err := NewRoot(cn, opts...)
	if err != nil {
		return nil, fmt.Errorf("create root CA: %w", err)
	}
	if err := l.write(l.RootPaths(), root, nil); err != nil {
		return nil, fmt.Errorf("create root CA: %w", err)
	}
	return root, nil
}

// LoadRoot reads the root CA and its key.
func (l Layout) LoadRoot() (*Issued, error) {
	return l.load("root CA", l.RootPaths())
}

// CreateIntermediate creates an intermediate CA signed by the root on disk
// and writes it. Unlike NewIntermediate it defaults to path length 1, so
// the intermediate can sign an IoT Edge device CA (whose workload
// certificates then verify); WithMaxPathLen overrides that.
func (l Layout) CreateIntermediate(cn string, opts ...Option) (*Issued, error) {
	if err := l.refuseExisting(l.IntermediatePaths()); err != nil {
		return nil, fmt.Errorf("create intermediate CA: %w", err)
	}
	root, err := l.LoadRoot()
	if err != nil {
		return nil, fmt.Errorf("create intermediate CA: %w", err)
	}
	inter, err := root.NewIntermediate(cn, append([]Option{WithMaxPathLen(1)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("create intermediate CA: %w", err)
	}
	if err := l.write(l.IntermediatePaths(), inter, nil); err != nil {
		return nil, fmt.Errorf("create intermediate CA: %w", err)
	}
	return inter, nil
}

// LoadIntermediate reads the intermediate CA and its key.
func (l Layout) LoadIntermediate() (*Issued, error) {
	return l.load("intermediate CA", l.IntermediatePaths())
}

// HasIntermediate reports whether an intermediate CA certificate exists.
func (l Layout) HasIntermediate() (bool, error) {
	_, err := os.Stat(l.IntermediatePaths().Cert)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("look for the intermediate CA: %w", err)
	}
}

// issuerChain returns the CA that signs devices (the intermediate when it
// exists, else the root) and the chain above the issued certificate.
func (l Layout) issuerChain() (*Issued, []*x509.Certificate, error) {
	root, err := l.LoadRoot()
	if err != nil {
		return nil, nil, err
	}
	ok, err := l.HasIntermediate()
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return root, []*x509.Certificate{root.Cert}, nil
	}
	inter, err := l.LoadIntermediate()
	if err != nil {
		return nil, nil, err
	}
	if err := inter.Cert.CheckSignatureFrom(root.Cert); err != nil {
		return nil, nil, fmt.Errorf("the intermediate CA in %s is not signed by the root CA in %s (recreate the intermediate): %w",
			l.IntermediatePaths().Cert, l.RootPaths().Cert, err)
	}
	return inter, []*x509.Certificate{inter.Cert, root.Cert}, nil
}

// CreateDeviceIdentity creates a device identity certificate with CN = name
// (the registration ID), signed by the intermediate if one exists, else by
// the root, and writes it with its full chain.
func (l Layout) CreateDeviceIdentity(name string, opts ...Option) (DevicePaths, error) {
	return l.createSigned("device identity", deviceIdentityPfx, name, func(ca *Issued) (*Issued, error) {
		return ca.NewDevice(name, opts...)
	})
}

// CreateEdgeCA creates an IoT Edge device CA certificate with CN = name,
// signed by the intermediate if one exists, else by the root, and writes it
// with its full chain.
func (l Layout) CreateEdgeCA(name string, opts ...Option) (DevicePaths, error) {
	return l.createSigned("edge CA", edgeCAPfx, name, func(ca *Issued) (*Issued, error) {
		return ca.NewEdgeCA(name, opts...)
	})
}

func (l Layout) createSigned(what, prefix, name string, issue func(*Issued) (*Issued, error)) (DevicePaths, error) {
	fail := func(err error) (DevicePaths, error) {
		return DevicePaths{}, fmt.Errorf("create %s certificate %q: %w", what, name, err)
	}
	if err := checkFileName(name); err != nil {
		return fail(err)
	}
	ca, chain, err := l.issuerChain()
	if err != nil {
		return fail(err)
	}
	base := prefix + name
	p := DevicePaths{Cert: l.certPath(base), FullChain: l.certPath(base + "-full-chain"), Key: l.keyPath(base)}
	if err := l.refuseExisting(p); err != nil {
		return fail(err)
	}
	iss, err := issue(ca)
	if err != nil {
		return fail(err)
	}
	if err := l.write(p, iss, chain); err != nil {
		return fail(err)
	}
	return p, nil
}

// CreateVerification creates a proof-of-possession certificate with CN =
// code, signed by SignerRoot or SignerIntermediate, and writes it to
// certs/verification-code.cert.pem (replacing an earlier one only with
// Force).
func (l Layout) CreateVerification(code string, signer string, opts ...Option) (DevicePaths, error) {
	fail := func(err error) (DevicePaths, error) {
		return DevicePaths{}, fmt.Errorf("create verification certificate: %w", err)
	}
	var (
		ca  *Issued
		err error
	)
	switch strings.ToLower(signer) {
	case SignerRoot:
		ca, err = l.LoadRoot()
	case SignerIntermediate:
		ca, err = l.LoadIntermediate()
	default:
		return fail(fmt.Errorf("signer %q is neither %q nor %q", signer, SignerRoot, SignerIntermediate))
	}
	if err != nil {
		return fail(err)
	}
	p := DevicePaths{Cert: l.certPath(verificationBase), Key: l.keyPath(verificationBase)}
	if err := l.refuseExisting(p); err != nil {
		return fail(err)
	}
	v, err := ca.NewVerification(code, opts...)
	if err != nil {
		return fail(err)
	}
	if err := l.write(p, v, nil); err != nil {
		return fail(err)
	}
	return p, nil
}

// checkFileName refuses names that would escape the layout or hide a file.
func checkFileName(name string) error {
	if name == "" {
		return errors.New("the name is empty")
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("the name %q starts with %q", name, name[0])
	}
	for _, r := range name {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("the name %q holds %q, which is not allowed in a file name", name, r)
		}
	}
	return nil
}

func (l Layout) load(what string, p DevicePaths) (*Issued, error) {
	fail := func(err error) (*Issued, error) { return nil, fmt.Errorf("load %s: %w", what, err) }
	certPEM, err := os.ReadFile(p.Cert)
	if err != nil {
		return fail(err)
	}
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", p.Cert, err))
	}
	keyPEM, err := os.ReadFile(p.Key)
	if err != nil {
		return fail(err)
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", p.Key, err))
	}
	if !KeyMatches(cert, key) {
		return fail(fmt.Errorf("the key in %s does not belong to the certificate in %s", p.Key, p.Cert))
	}
	return &Issued{Cert: cert, Key: key}, nil
}

// refuseExisting fails with fs.ErrExist when one of the files exists and
// Force is not set.
func (l Layout) refuseExisting(p DevicePaths) error {
	if l.Force {
		return nil
	}
	for _, f := range []string{p.Key, p.Cert, p.FullChain} {
		if f == "" {
			continue
		}
		_, err := os.Lstat(f)
		switch {
		case err == nil:
			return fmt.Errorf("%s: %w (set Force to replace it)", f, fs.ErrExist)
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	return nil
}

// write stores the key, the certificate and (when p.FullChain is set) the
// certificate followed by chain.
func (l Layout) write(p DevicePaths, iss *Issued, chain []*x509.Certificate) error {
	if err := l.refuseExisting(p); err != nil {
		return err
	}
	keyPEM, err := iss.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p.Key), 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(p.Cert), 0o755); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	if err := writeFileAtomic(p.Key, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(p.Cert, iss.CertPEM(), 0o644); err != nil {
		return err
	}
	if p.FullChain != "" {
		full := EncodeCertificates(append([]*x509.Certificate{iss.Cert}, chain...)...)
		if err := writeFileAtomic(p.FullChain, full, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic writes data to a temporary file in path's directory with
// the given mode (not subject to the umask) and renames it to path.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	cleanup := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		return cleanup(err)
	}
	if _, err := f.Write(data); err != nil {
		return cleanup(err)
	}
	if err := f.Sync(); err != nil {
		return cleanup(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
