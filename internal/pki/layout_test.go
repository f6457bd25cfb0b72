package pki

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// listFiles returns dir's files relative to it, with their permission bits.
func listFiles(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "." {
			out[filepath.ToSlash(rel)] = info.Mode().Perm()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readChain(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseCertificates(b)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func TestLayoutFullFlow(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	root, err := l.CreateRoot("Azure_IoT_Hub_CA_Cert_Test_Only")
	if err != nil {
		t.Fatal(err)
	}
	inter, err := l.CreateIntermediate("Azure_IoT_Hub_Intermediate_Cert_Test_Only")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := l.CreateDeviceIdentity("edge-device-1")
	if err != nil {
		t.Fatal(err)
	}
	edge, err := l.CreateEdgeCA("edge-device-1-ca")
	if err != nil {
		t.Fatal(err)
	}
	ver, err := l.CreateVerification("7DA1B52C", SignerIntermediate)
	if err != nil {
		t.Fatal(err)
	}

	wantDev := DevicePaths{
		Cert:      filepath.Join(l.Dir, "certs", "iot-edge-device-identity-edge-device-1.cert.pem"),
		FullChain: filepath.Join(l.Dir, "certs", "iot-edge-device-identity-edge-device-1-full-chain.cert.pem"),
		Key:       filepath.Join(l.Dir, "private", "iot-edge-device-identity-edge-device-1.key.pem"),
	}
	if diff := cmp.Diff(wantDev, dev); diff != "" {
		t.Errorf("device paths (-want +got):\n%s", diff)
	}
	wantEdge := DevicePaths{
		Cert:      filepath.Join(l.Dir, "certs", "iot-edge-device-ca-edge-device-1-ca.cert.pem"),
		FullChain: filepath.Join(l.Dir, "certs", "iot-edge-device-ca-edge-device-1-ca-full-chain.cert.pem"),
		Key:       filepath.Join(l.Dir, "private", "iot-edge-device-ca-edge-device-1-ca.key.pem"),
	}
	if diff := cmp.Diff(wantEdge, edge); diff != "" {
		t.Errorf("edge CA paths (-want +got):\n%s", diff)
	}
	wantVer := DevicePaths{
		Cert: filepath.Join(l.Dir, "certs", "verification-code.cert.pem"),
		Key:  filepath.Join(l.Dir, "private", "verification-code.key.pem"),
	}
	if diff := cmp.Diff(wantVer, ver); diff != "" {
		t.Errorf("verification paths (-want +got):\n%s", diff)
	}

	files := listFiles(t, l.Dir)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	wantNames := []string{
		"certs",
		"certs/azure-iot-test-only.intermediate.cert.pem",
		"certs/azure-iot-test-only.root.ca.cert.pem",
		"certs/iot-edge-device-ca-edge-device-1-ca-full-chain.cert.pem",
		"certs/iot-edge-device-ca-edge-device-1-ca.cert.pem",
		"certs/iot-edge-device-identity-edge-device-1-full-chain.cert.pem",
		"certs/iot-edge-device-identity-edge-device-1.cert.pem",
		"certs/verification-code.cert.pem",
		"private",
		"private/azure-iot-test-only.intermediate.key.pem",
		"private/azure-iot-test-only.root.ca.key.pem",
		"private/iot-edge-device-ca-edge-device-1-ca.key.pem",
		"private/iot-edge-device-identity-edge-device-1.key.pem",
		"private/verification-code.key.pem",
	}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if runtime.GOOS != "windows" {
		for n, mode := range files {
			want := fs.FileMode(0o644)
			switch {
			case n == "private":
				want = 0o700
			case n == "certs":
				want = 0o755
			case strings.HasPrefix(n, "private/"):
				want = 0o600
			}
			if mode != want {
				t.Errorf("%s mode = %v, want %v", n, mode, want)
			}
		}
	}

	// Loaded CAs are the created ones.
	lr, err := l.LoadRoot()
	if err != nil {
		t.Fatal(err)
	}
	li, err := l.LoadIntermediate()
	if err != nil {
		t.Fatal(err)
	}
	if !lr.Cert.Equal(root.Cert) || !li.Cert.Equal(inter.Cert) || !KeyMatches(lr.Cert, lr.Key) || !KeyMatches(li.Cert, li.Key) {
		t.Error("loaded CAs differ from the created ones")
	}

	// The full chains are leaf, intermediate, root and verify.
	now := time.Now()
	for _, p := range []DevicePaths{dev, edge} {
		chain := readChain(t, p.FullChain)
		var cns []string
		for _, c := range chain {
			cns = append(cns, c.Subject.CommonName)
		}
		want := []string{readChain(t, p.Cert)[0].Subject.CommonName, "Azure_IoT_Hub_Intermediate_Cert_Test_Only", "Azure_IoT_Hub_CA_Cert_Test_Only"}
		if diff := cmp.Diff(want, cns); diff != "" {
			t.Errorf("%s chain (-want +got):\n%s", p.FullChain, diff)
		}
	}
	devChain := readChain(t, dev.FullChain)
	if err := verify(devChain[0], devChain[2:], devChain[1:2], now); err != nil {
		t.Errorf("device identity chain: %v", err)
	}
	// The edge CA can sign workload certificates that verify up to the root.
	edgeCert := readChain(t, edge.Cert)[0]
	edgeKeyPEM, err := os.ReadFile(edge.Key)
	if err != nil {
		t.Fatal(err)
	}
	edgeKey, err := ParsePrivateKey(edgeKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	workload, err := (&Issued{Cert: edgeCert, Key: edgeKey}).NewDevice("module-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(workload.Cert, []*x509.Certificate{root.Cert}, []*x509.Certificate{edgeCert, inter.Cert}, now); err != nil {
		t.Errorf("workload under edge CA: %v", err)
	}
	if !edgeCert.IsCA || edgeCert.MaxPathLen != 0 || !edgeCert.MaxPathLenZero {
		t.Errorf("edge CA: IsCA %v, pathlen %d", edgeCert.IsCA, edgeCert.MaxPathLen)
	}
	vc := readChain(t, ver.Cert)[0]
	if vc.Subject.CommonName != "7DA1B52C" || vc.CheckSignatureFrom(inter.Cert) != nil {
		t.Errorf("verification certificate CN %q, signed by intermediate: %v", vc.Subject.CommonName, vc.CheckSignatureFrom(inter.Cert))
	}
}

func TestLayoutWithoutIntermediate(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	root, err := l.CreateRoot("Root Only")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := l.CreateDeviceIdentity("dev-1", WithKeyType(KeyP384))
	if err != nil {
		t.Fatal(err)
	}
	chain := readChain(t, dev.FullChain)
	if len(chain) != 2 || !chain[1].Equal(root.Cert) {
		t.Fatalf("full chain has %d certificates, want leaf and root", len(chain))
	}
	if err := verify(chain[0], chain[1:], nil, time.Now()); err != nil {
		t.Error(err)
	}
	ver, err := l.CreateVerification("ABC", SignerRoot)
	if err != nil {
		t.Fatal(err)
	}
	if vc := readChain(t, ver.Cert)[0]; vc.CheckSignatureFrom(root.Cert) != nil {
		t.Error("verification certificate is not signed by the root")
	}
	if _, err := l.CreateVerification("ABC", SignerIntermediate, WithValidityDays(1)); err == nil {
		t.Error("verification by a missing intermediate succeeded")
	}
}

func TestLayoutRefusesOverwrite(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	first, err := l.CreateRoot("First")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateIntermediate("Int"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateDeviceIdentity("dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateVerification("C1", SignerRoot); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		run  func(Layout) error
	}{
		{name: "root", run: func(l Layout) error { _, err := l.CreateRoot("Second"); return err }},
		{name: "intermediate", run: func(l Layout) error { _, err := l.CreateIntermediate("Int2"); return err }},
		{name: "device", run: func(l Layout) error { _, err := l.CreateDeviceIdentity("dev"); return err }},
		{name: "verification", run: func(l Layout) error { _, err := l.CreateVerification("C2", SignerRoot); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(l)
			if !errors.Is(err, fs.ErrExist) {
				t.Fatalf("error = %v, want fs.ErrExist", err)
			}
		})
	}
	r, err := l.LoadRoot()
	if err != nil {
		t.Fatal(err)
	}
	if !r.Cert.Equal(first.Cert) {
		t.Fatal("the root was replaced without Force")
	}
	// A device whose key file alone exists is refused too.
	if err := os.Remove(filepath.Join(l.Dir, "certs", "iot-edge-device-identity-dev.cert.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateDeviceIdentity("dev"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("device with a leftover key: error = %v, want fs.ErrExist", err)
	}

	forced := Layout{Dir: l.Dir, Force: true}
	second, err := forced.CreateRoot("Second")
	if err != nil {
		t.Fatal(err)
	}
	r, err = l.LoadRoot()
	if err != nil {
		t.Fatal(err)
	}
	if !r.Cert.Equal(second.Cert) {
		t.Fatal("Force did not replace the root")
	}
	// The intermediate still belongs to the replaced root: refuse to build
	// a chain that cannot verify.
	if _, err := forced.CreateDeviceIdentity("dev"); err == nil || !strings.Contains(err.Error(), "is not signed by the root CA") {
		t.Fatalf("device under a stale intermediate: error = %v", err)
	}
	if _, err := forced.CreateIntermediate("Int3"); err != nil {
		t.Fatal(err)
	}
	if _, err := forced.CreateDeviceIdentity("dev"); err != nil {
		t.Fatal(err)
	}
}

func TestLayoutErrors(t *testing.T) {
	empty := Layout{Dir: t.TempDir()}
	if _, err := empty.CreateIntermediate("Int"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("intermediate without root: error = %v, want fs.ErrNotExist", err)
	}
	if _, err := empty.CreateDeviceIdentity("dev"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("device without root: error = %v, want fs.ErrNotExist", err)
	}
	l := Layout{Dir: t.TempDir()}
	if _, err := l.CreateRoot("Root"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "../escape", `a\b`, ".hidden", "-flag", "tab\tname"} {
		t.Run("name "+name, func(t *testing.T) {
			if _, err := l.CreateDeviceIdentity(name); err == nil {
				t.Errorf("CreateDeviceIdentity(%q) succeeded", name)
			}
			if _, err := l.CreateEdgeCA(name); err == nil {
				t.Errorf("CreateEdgeCA(%q) succeeded", name)
			}
		})
	}
	if _, err := l.CreateVerification("C", "leaf"); err == nil || !strings.Contains(err.Error(), `signer "leaf"`) {
		t.Errorf("bad signer: error = %v", err)
	}
	// A key that does not belong to the certificate is detected on load.
	other, err := NewRoot("Other")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := other.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.RootPaths().Key, kp, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := l.LoadRoot(); err == nil || !strings.Contains(err.Error(), "does not belong to the certificate") {
		t.Errorf("mismatched key: error = %v", err)
	}
}
