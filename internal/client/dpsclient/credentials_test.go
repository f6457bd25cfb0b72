package dpsclient

import (
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDeviceKeyFromGroup(t *testing.T) {
	groupB64, group := newKey(t)
	mac := hmac.New(sha256.New, group)
	mac.Write([]byte("Dev-1"))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))

	got, err := DeviceKeyFromGroup(groupB64, "Dev-1")
	if err != nil {
		t.Fatalf("DeviceKeyFromGroup: %v", err)
	}
	if got != want {
		t.Errorf("DeviceKeyFromGroup = %q, want %q", got, want)
	}
	lower, err := DeviceKeyFromGroup(groupB64, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if lower == got {
		t.Error("derivation ignores the case of the registration ID")
	}
	for _, tc := range []struct{ name, key, id string }{
		{"bad group key", "***", "dev-1"},
		{"empty group key", "", "dev-1"},
		{"empty registration ID", groupB64, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if k, err := DeviceKeyFromGroup(tc.key, tc.id); err == nil {
				t.Errorf("DeviceKeyFromGroup = %q, want an error", k)
			}
		})
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func keyPEM(t *testing.T, format string, c *testCert) []byte {
	t.Helper()
	var (
		der []byte
		typ string
		err error
	)
	switch format {
	case "pkcs8":
		typ = "PRIVATE KEY"
		der, err = x509.MarshalPKCS8PrivateKey(c.key)
	case "sec1":
		typ = "EC PRIVATE KEY"
		der, err = x509.MarshalECPrivateKey(c.key.(*ecdsa.PrivateKey))
	case "pkcs1":
		typ = "RSA PRIVATE KEY"
		der = x509.MarshalPKCS1PrivateKey(c.key.(*rsa.PrivateKey))
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestLoadX509(t *testing.T) {
	dir := t.TempDir()
	p := newTestPKI(t, "x509-device-1")
	rsaDev := newTestCert(t, "rsa-device", kindClient, p.inter, true)
	other := newTestCert(t, "other", kindClient, p.inter, false)

	chainPEM := append(append(p.device.pem(), p.inter.pem()...), p.root.pem()...)
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})

	chainFile := writeFile(t, dir, "chain.pem", chainPEM)
	rsaChain := writeFile(t, dir, "rsa-chain.pem", append(rsaDev.pem(), p.inter.pem()...))
	reversed := writeFile(t, dir, "reversed.pem", append(p.inter.pem(), p.device.pem()...))
	noCert := writeFile(t, dir, "nocert.pem", keyPEM(t, "pkcs8", p.device))
	pkcs8 := writeFile(t, dir, "pkcs8.key", keyPEM(t, "pkcs8", p.device))
	sec1 := writeFile(t, dir, "sec1.key", append(ecParams, keyPEM(t, "sec1", p.device)...))
	pkcs1 := writeFile(t, dir, "pkcs1.key", keyPEM(t, "pkcs1", rsaDev))
	wrongKey := writeFile(t, dir, "other.key", keyPEM(t, "pkcs8", other))
	encrypted := writeFile(t, dir, "enc.key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}))
	noKey := writeFile(t, dir, "nokey.key", p.device.pem())
	fileURI := (&url.URL{Scheme: "file", Path: filepath.ToSlash(chainFile)}).String()
	keyURI := (&url.URL{Scheme: "file", Path: filepath.ToSlash(pkcs8)}).String()

	tests := []struct {
		name      string
		cert, key string
		wantCN    string
		wantChain [][]byte
		wantErr   bool
	}{
		{name: "PKCS#8 EC key, full chain", cert: chainFile, key: pkcs8, wantCN: "x509-device-1", wantChain: [][]byte{p.device.der, p.inter.der, p.root.der}},
		{name: "SEC1 EC key after EC PARAMETERS", cert: chainFile, key: sec1, wantCN: "x509-device-1", wantChain: [][]byte{p.device.der, p.inter.der, p.root.der}},
		{name: "PKCS#1 RSA key", cert: rsaChain, key: pkcs1, wantCN: "rsa-device", wantChain: [][]byte{rsaDev.der, p.inter.der}},
		{name: "file URIs", cert: fileURI, key: keyURI, wantCN: "x509-device-1", wantChain: [][]byte{p.device.der, p.inter.der, p.root.der}},
		{name: "file://localhost URI", cert: "file://localhost" + filepath.ToSlash(chainFile), key: pkcs8, wantCN: "x509-device-1", wantChain: [][]byte{p.device.der, p.inter.der, p.root.der}},
		{name: "remote file URI", cert: "file://server/share/chain.pem", key: pkcs8, wantErr: true},
		{name: "key does not match", cert: chainFile, key: wrongKey, wantErr: true},
		{name: "chain not leaf first", cert: reversed, key: pkcs8, wantErr: true},
		{name: "no certificate", cert: noCert, key: pkcs8, wantErr: true},
		{name: "encrypted key", cert: chainFile, key: encrypted, wantErr: true},
		{name: "no key block", cert: chainFile, key: noKey, wantErr: true},
		{name: "missing certificate file", cert: filepath.Join(dir, "absent.pem"), key: pkcs8, wantErr: true},
		{name: "missing key file", cert: chainFile, key: filepath.Join(dir, "absent.key"), wantErr: true},
		{name: "empty path", cert: "", key: pkcs8, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert, cn, err := LoadX509(tc.cert, tc.key)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("LoadX509 succeeded with CN %q, want an error", cn)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadX509: %v", err)
			}
			if cn != tc.wantCN {
				t.Errorf("CN = %q, want %q", cn, tc.wantCN)
			}
			if diff := cmp.Diff(tc.wantChain, cert.Certificate); diff != "" {
				t.Errorf("chain (-want +got):\n%s", diff)
			}
			if cert.Leaf == nil || cert.Leaf.Subject.CommonName != tc.wantCN {
				t.Errorf("Leaf = %v, want the parsed leaf", cert.Leaf)
			}
			if cert.PrivateKey == nil {
				t.Error("PrivateKey is nil")
			}
		})
	}
}
