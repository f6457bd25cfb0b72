package config

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/pki"
)

// testPKI is a root → intermediate → device chain written to a temporary
// directory, plus a second device whose key does not match.
type testPKI struct {
	dir                        string
	root, inter, device, other *pki.Issued
	rootPath, chainPath        string
	keyPath, otherKeyPath      string
	caFirstPath, garbagePath   string
	badCNChainPath, badCNKey   string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	must := func(iss *pki.Issued, err error) *pki.Issued {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	p := &testPKI{dir: t.TempDir()}
	p.root = must(pki.NewRoot("Muster Test Root"))
	p.inter = must(p.root.NewIntermediate("Muster Test Intermediate"))
	p.device = must(p.inter.NewDevice("edge-01"))
	p.other = must(p.inter.NewDevice("edge-02"))
	badCN := must(p.inter.NewDevice("bad id!"))
	write := func(name string, data []byte) string {
		t.Helper()
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keyPEM := func(iss *pki.Issued) []byte {
		t.Helper()
		b, err := iss.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p.rootPath = write("root.pem", p.root.CertPEM())
	p.chainPath = write("device-full-chain.pem", pki.EncodeCertificates(p.device.Cert, p.inter.Cert))
	p.keyPath = write("device.key.pem", keyPEM(p.device))
	p.otherKeyPath = write("other.key.pem", keyPEM(p.other))
	p.caFirstPath = write("ca-first.pem", pki.EncodeCertificates(p.inter.Cert, p.device.Cert))
	p.garbagePath = write("garbage.pem", []byte("this is not PEM\n"))
	p.badCNChainPath = write("bad-cn.pem", badCN.CertPEM())
	p.badCNKey = write("bad-cn.key.pem", keyPEM(badCN))
	return p
}

func (p *testPKI) x509Config(certPath, keyPath string) *Config {
	c := &Config{
		Homedir:         filepath.Join(p.dir, "home"),
		TrustBundleCert: PathToFileURI(p.rootPath),
		Provisioning: Provisioning{
			Source: SourceDPS, GlobalEndpoint: "localhost:8443", IDScope: "0ne0045B3C6",
			Attestation: &Attestation{Method: MethodX509, IdentityCert: PathToFileURI(certPath), IdentityPK: keyPath},
		},
	}
	c.SetDefaults()
	return c
}

func TestX509Identity(t *testing.T) {
	p := newTestPKI(t)
	c := p.x509Config(p.chainPath, p.keyPath)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckFiles(); err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := c.IdentityFiles()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{p.chainPath, p.keyPath}, []string{certPath, keyPath}); d != "" {
		t.Errorf("IdentityFiles (-want +got):\n%s", d)
	}
	tc, err := c.IdentityCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([][]byte{p.device.Cert.Raw, p.inter.Cert.Raw}, tc.Certificate); d != "" {
		t.Errorf("certificate chain (-want +got):\n%s", d)
	}
	if signer, ok := tc.PrivateKey.(crypto.Signer); !ok || !pki.KeyMatches(tc.Leaf, signer) {
		t.Error("IdentityCertificate key does not match its leaf")
	}
	regID, err := c.RegistrationID()
	if err != nil || regID != "edge-01" {
		t.Errorf("RegistrationID() = %q, %v; want the CN edge-01", regID, err)
	}
	pool, err := c.TrustBundle()
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	inter.AddCert(p.inter.Cert)
	if _, err := p.device.Cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the trust bundle does not verify the device chain: %v", err)
	}
	if _, err := c.SymmetricKey(); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("SymmetricKey() of an X.509 configuration: %v, want ErrNotApplicable", err)
	}
	c.Provisioning.Attestation.RegistrationID = "custom-id"
	if regID, err := c.RegistrationID(); err != nil || regID != "custom-id" {
		t.Errorf("RegistrationID() = %q, %v; want custom-id", regID, err)
	}
}

// CheckFiles names the key and the file at fault, and reports every
// problem at once.
func TestCheckFilesProblems(t *testing.T) {
	p := newTestPKI(t)
	dirPath := filepath.Join(p.dir, "a-directory")
	if err := os.Mkdir(dirPath, 0o700); err != nil {
		t.Fatal(err)
	}
	emptyKey := filepath.Join(p.dir, "empty.key")
	if err := os.WriteFile(emptyKey, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	badJSON := filepath.Join(p.dir, "payload.json")
	if err := os.WriteFile(badJSON, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(p.dir, "missing.pem")
	cases := []struct {
		name   string
		config func() *Config
		want   []string
	}{
		{"mismatched key", func() *Config { return p.x509Config(p.chainPath, p.otherKeyPath) },
			[]string{"provisioning.attestation.identity_pk: the private key in " + p.otherKeyPath + " does not belong to the certificate in " + p.chainPath + " (CN=edge-01)"}},
		{"CA certificate first", func() *Config { return p.x509Config(p.caFirstPath, p.keyPath) },
			[]string{"provisioning.attestation.identity_cert: " + p.caFirstPath + ": the first certificate (CN=Muster Test Intermediate) is a CA certificate"}},
		{"certificate is not PEM", func() *Config { return p.x509Config(p.garbagePath, p.keyPath) },
			[]string{"provisioning.attestation.identity_cert: " + p.garbagePath + ": parse certificates"}},
		{"key is not a key", func() *Config { return p.x509Config(p.chainPath, p.rootPath) },
			[]string{"provisioning.attestation.identity_pk: " + p.rootPath + ": parse private key: no private key found"}},
		{"certificate missing and key a directory", func() *Config { return p.x509Config(missing, dirPath) }, []string{
			"provisioning.attestation.identity_cert: read " + missing + ": no such file or directory",
			"provisioning.attestation.identity_pk: read " + dirPath + ": not a regular file",
		}},
		{"CN is not a registration ID", func() *Config { return p.x509Config(p.badCNChainPath, p.badCNKey) },
			[]string{`provisioning.attestation.registration_id: missing, and the CN "bad id!" of the certificate in ` + p.badCNChainPath + ` is not a registration ID`}},
		{"trust bundle is not PEM", func() *Config {
			c := p.x509Config(p.chainPath, p.keyPath)
			c.TrustBundleCert = p.garbagePath
			return c
		}, []string{"trust_bundle_cert: " + p.garbagePath + ": parse certificates"}},
		{"empty key file and bad payload", func() *Config {
			c := &Config{Provisioning: Provisioning{Source: SourceDPS, GlobalEndpoint: "localhost", IDScope: "0ne0045B3C6",
				Payload:     &FileRef{URI: PathToFileURI(badJSON)},
				Attestation: &Attestation{Method: MethodSymmetricKey, RegistrationID: "edge-01", SymmetricKey: &Secret{URI: PathToFileURI(emptyKey)}}}}
			c.SetDefaults()
			return c
		}, []string{
			"provisioning.attestation.symmetric_key.uri: " + emptyKey + ": the key file is empty",
			"provisioning.payload.uri: " + badJSON + ": not valid JSON",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.config()
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			err := c.CheckFiles()
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("CheckFiles() = %v, want a *ValidationError", err)
			}
			if len(ve.Problems) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%v", len(ve.Problems), len(tc.want), err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error:\n%v\nwant it to contain %q", err, want)
				}
			}
		})
	}
}

func TestSymmetricKey(t *testing.T) {
	dir := t.TempDir()
	raw := []byte("raw-key-bytes\x00\x01\x02")
	keyFile := filepath.Join(dir, "device-id")
	if err := os.WriteFile(keyFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		secret *Secret
		want   []byte
	}{
		{"inline", &Secret{Value: base64.StdEncoding.EncodeToString(raw)}, raw},
		{"inline without padding", &Secret{Value: base64.RawStdEncoding.EncodeToString(raw)}, raw},
		{"file holds raw bytes", &Secret{URI: PathToFileURI(keyFile)}, raw},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{Provisioning: Provisioning{Source: SourceDPS,
				Attestation: &Attestation{Method: MethodSymmetricKey, RegistrationID: "edge-01", SymmetricKey: tc.secret}}}
			got, err := c.SymmetricKey()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("SymmetricKey() = %q, want %q", got, tc.want)
			}
			if _, _, err := c.IdentityFiles(); !errors.Is(err, ErrNotApplicable) {
				t.Errorf("IdentityFiles() of a symmetric key configuration: %v, want ErrNotApplicable", err)
			}
		})
	}
}

func TestDPSEndpointAndPayload(t *testing.T) {
	cases := []struct {
		endpoint, transport, want string
	}{
		{"https://localhost:8443/", TransportHTTPS, "localhost:8443"},
		{"localhost:8443", TransportHTTPS, "localhost:8443"},
		{"https://global.azure-devices-provisioning.net", TransportHTTPS, "global.azure-devices-provisioning.net:443"},
		{"mqtts://localhost/", TransportMQTT, "localhost:8883"},
		{"dps.example.com:18883", TransportMQTT, "dps.example.com:18883"},
		{"https://[::1]:8443", TransportHTTPS, "[::1]:8443"},
	}
	for _, tc := range cases {
		t.Run(tc.endpoint, func(t *testing.T) {
			c := &Config{Provisioning: Provisioning{Source: SourceDPS, Transport: tc.transport, GlobalEndpoint: tc.endpoint}}
			got, err := c.DPSEndpoint()
			if err != nil || got != tc.want {
				t.Errorf("DPSEndpoint() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	manual := &Config{Provisioning: Provisioning{Source: SourceManual}}
	if _, err := manual.DPSEndpoint(); !errors.Is(err, ErrNotApplicable) {
		t.Errorf("DPSEndpoint() of a manual configuration: %v, want ErrNotApplicable", err)
	}
	if b, err := manual.Payload(); b != nil || err != nil {
		t.Errorf("Payload() without payload = %q, %v; want nil, nil", b, err)
	}
	payload := filepath.Join(t.TempDir(), "payload.json")
	if err := os.WriteFile(payload, []byte(`{"modelId":"dtmi:x;1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Config{Provisioning: Provisioning{Source: SourceDPS, Payload: &FileRef{URI: PathToFileURI(payload)}}}
	if b, err := c.Payload(); err != nil || string(b) != `{"modelId":"dtmi:x;1"}` {
		t.Errorf("Payload() = %q, %v", b, err)
	}
}

func TestNormalizeEndpoint(t *testing.T) {
	cases := []struct {
		in, transport, want, wantErr string
	}{
		{in: "localhost:8443", transport: TransportHTTPS, want: "https://localhost:8443/"},
		{in: "HTTPS://Localhost:8443", transport: TransportHTTPS, want: "https://Localhost:8443/"},
		{in: " https://dps.example.com/ ", transport: TransportHTTPS, want: "https://dps.example.com/"},
		{in: "127.0.0.1:8883", transport: TransportMQTT, want: "mqtts://127.0.0.1:8883/"},
		{in: "[::1]:8443", transport: TransportHTTPS, want: "https://[::1]:8443/"},
		{in: "", transport: TransportHTTPS, wantErr: "endpoint is empty"},
		{in: "https://localhost:0", transport: TransportHTTPS, wantErr: `has an invalid port "0"`},
		{in: "https://localhost:", transport: TransportHTTPS, wantErr: "has an empty port"},
		{in: "https://user@localhost", transport: TransportHTTPS, wantErr: "must be only a scheme, a host and a port"},
		{in: "https://localhost/?x=1", transport: TransportHTTPS, wantErr: "must be only a scheme, a host and a port"},
		{in: "https://bad_host/", transport: TransportHTTPS, wantErr: `"bad_host" is not a host name or IP address`},
		{in: "https://:8443", transport: TransportHTTPS, wantErr: "has no host"},
		{in: "mqtts://localhost", transport: TransportHTTPS, wantErr: `has scheme "mqtts"; want https://host[:port]`},
		{in: "https://localhost", transport: TransportMQTT, wantErr: `transport = "mqtt" needs mqtts://host[:port]`},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeEndpoint(tc.in, tc.transport)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NormalizeEndpoint(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeEndpoint(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}
