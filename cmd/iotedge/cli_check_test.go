package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/edge/provisioning"
	"github.com/muster-iot/muster/internal/pki"
)

// checkFixture is a device configuration with a DPS endpoint and a hub,
// both TLS listeners on loopback with certificates from a test CA.
type checkFixture struct {
	configPath, home string
	dps, hub         *httptest.Server
	ca               *pki.Issued
}

func tlsListener(t *testing.T, ca *pki.Issued) *httptest.Server {
	t.Helper()
	leaf, err := ca.NewServer("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func writeTestFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newCheckFixture writes an X.509 DPS configuration trusting bundleCA (the
// listeners' CA when nil), and caches an assignment to the hub listener
// when provisioned.
func newCheckFixture(t *testing.T, bundleCA *pki.Issued, provisioned bool) *checkFixture {
	t.Helper()
	ca, err := pki.NewRoot("check-ca")
	if err != nil {
		t.Fatal(err)
	}
	if bundleCA == nil {
		bundleCA = ca
	}
	f := &checkFixture{ca: ca, dps: tlsListener(t, ca), hub: tlsListener(t, ca), home: t.TempDir()}
	dir := t.TempDir()
	dev, err := ca.NewDevice("edge-check")
	if err != nil {
		t.Fatal(err)
	}
	key, err := dev.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	certPath := writeTestFile(t, dir, "device.pem", append(dev.CertPEM(), ca.CertPEM()...))
	keyPath := writeTestFile(t, dir, "device.key", key)
	bundle := writeTestFile(t, dir, "bundle.pem", bundleCA.CertPEM())
	doc := fmt.Sprintf(`homedir = %q
trust_bundle_cert = %q

[provisioning]
source = "dps"
global_endpoint = "https://%s"
id_scope = "0ne0000000C"

[provisioning.attestation]
method = "x509"
identity_cert = %q
identity_pk = %q
`, f.home, bundle, f.dps.Listener.Addr(), certPath, keyPath)
	f.configPath = writeTestFile(t, dir, "config.toml", []byte(doc))
	if provisioned {
		c, err := config.Load(f.configPath)
		if err != nil {
			t.Fatal(err)
		}
		id, err := provisioning.IdentityOf(c)
		if err != nil {
			t.Fatal(err)
		}
		err = provisioning.SaveCache(f.home, &provisioning.Cache{
			Version: provisioning.CacheVersion, AssignedHub: f.hub.Listener.Addr().String(), DeviceID: "edge-check",
			RegistrationID: id.RegistrationID, IDScope: id.IDScope, Endpoint: id.Endpoint, Credential: id.Credential,
			ProvisionedAt: time.Now(), Substatus: "initialAssignment",
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// runIotedge runs the root command with args and returns its output.
func runIotedge(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd(&out)
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.Execute()
	return out.String(), err
}

func TestCheckAllPass(t *testing.T) {
	f := newCheckFixture(t, nil, true)
	out, err := runIotedge(t, "check", "-c", f.configPath)
	if err != nil {
		t.Fatalf("iotedge check: %v\n%s", err, out)
	}
	want := strings.Join([]string{
		"Configuration checks",
		"--------------------",
		"√ configuration file is well-formed - OK",
		"√ identity credential is readable and valid - OK",
		"√ production readiness: identity certificates expiry - OK",
		"√ host time is close to reference time - OK",
		"√ provisioning result is cached and matches the configuration - OK",
		"",
		"Connectivity checks",
		"-------------------",
		"√ host can connect to and perform TLS handshake with DPS endpoint - OK",
		"√ host can connect to and perform TLS handshake with iothub MQTT port - OK",
		"",
		"7 check(s) succeeded.",
		"",
	}, "\n")
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestCheckUntrustedServersFail(t *testing.T) {
	other, err := pki.NewRoot("other-ca")
	if err != nil {
		t.Fatal(err)
	}
	f := newCheckFixture(t, other, false)
	out, err := runIotedge(t, "check", "--config-file", f.configPath)
	if !errors.Is(err, errChecksFailed) {
		t.Fatalf("iotedge check = %v, want errChecksFailed\n%s", err, out)
	}
	if want := "check: one or more checks raised errors (1 error(s), 2 warning(s))"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	dpsAddr := f.dps.Listener.Addr().String()
	got := strings.ReplaceAll(out, dpsAddr, "DPS_ADDR")
	got = strings.ReplaceAll(got, provisioning.CachePath(f.home), "CACHE")
	got = strings.ReplaceAll(got, config.PathToFileURI(filepath.Join(filepath.Dir(f.configPath), "bundle.pem")), "BUNDLE")
	want := strings.Join([]string{
		"Configuration checks",
		"--------------------",
		"√ configuration file is well-formed - OK",
		"√ identity credential is readable and valid - OK",
		"√ production readiness: identity certificates expiry - OK",
		"‼ host time is close to reference time - Warning",
		"    could not read the reference time: the DPS endpoint DPS_ADDR presented a certificate (CN=127.0.0.1, issued by CN=check-ca) that the trust bundle does not verify",
		"    Fix: Add the CA certificate that issued the server's certificate to the trust bundle BUNDLE (trust_bundle_cert). For Muster it is the caCertFile named in the server's endpoints.json.",
		"‼ provisioning result is cached and matches the configuration - Warning",
		"    the device has not provisioned yet: there is no CACHE",
		"    Fix: Start the iotedge daemon, or run `iotedge system reprovision`.",
		"",
		"Connectivity checks",
		"-------------------",
		"× host can connect to and perform TLS handshake with DPS endpoint - Error",
		"    the DPS endpoint DPS_ADDR presented a certificate (CN=127.0.0.1, issued by CN=check-ca) that the trust bundle does not verify",
		"    Fix: Add the CA certificate that issued the server's certificate to the trust bundle BUNDLE (trust_bundle_cert). For Muster it is the caCertFile named in the server's endpoints.json.",
		"",
		"3 check(s) succeeded.",
		"2 check(s) raised warnings. Re-run with --verbose for more details.",
		"1 check(s) raised errors. Re-run with --verbose for more details.",
		"1 check(s) were skipped due to errors from other checks. Re-run with --verbose for more details.",
		"",
	}, "\n")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestCheckJSON(t *testing.T) {
	f := newCheckFixture(t, nil, false)
	out, err := runIotedge(t, "check", "-c", f.configPath, "-o", "json")
	if err != nil {
		t.Fatalf("iotedge check -o json: %v\n%s", err, out)
	}
	var doc struct {
		AdditionalInfo struct {
			IotedgeVersion string `json:"iotedge_version"`
			ConfigFile     string `json:"config_file"`
		} `json:"additional_info"`
		Checks map[string]struct {
			Result struct {
				Result string `json:"result"`
			} `json:"result"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("output is not one JSON document: %v\n%s", err, out)
	}
	got := map[string]string{}
	for id, c := range doc.Checks {
		got[id] = c.Result.Result
	}
	want := map[string]string{
		"config-well-formed": "ok", "identity-credential": "ok", "identity-certificate-expiry": "ok", "host-local-time": "ok",
		"provisioning-cached": "warning", "host-connect-dps-endpoint": "ok", "host-connect-iothub-mqtt": "skipped",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if doc.AdditionalInfo.IotedgeVersion != version || doc.AdditionalInfo.ConfigFile != f.configPath {
		t.Errorf("additional_info = %+v", doc.AdditionalInfo)
	}
}

func TestCheckExitStatus(t *testing.T) {
	f := newCheckFixture(t, nil, false) // not provisioned: one warning
	tests := []struct {
		name    string
		args    []string
		wantErr error
		errText string
	}{
		{"warnings pass", []string{"check", "-c", f.configPath}, nil, ""},
		{"warnings as errors", []string{"check", "-c", f.configPath, "--warnings-as-errors"}, errChecksFailed, ""},
		{"missing config fails", []string{"check", "-c", filepath.Join(t.TempDir(), "none.toml")}, errChecksFailed, ""},
		{"bad output", []string{"check", "-c", f.configPath, "-o", "yaml"}, nil, `--output "yaml" is neither "text" nor "json"`},
		{"bad timeout", []string{"check", "-c", f.configPath, "--timeout", "0s"}, nil, "--timeout 0s is not positive"},
		{"arguments", []string{"check", "extra"}, nil, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runIotedge(t, tc.args...)
			switch {
			case tc.errText != "":
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Errorf("error = %v, want one containing %q", err, tc.errText)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("error = %v, want %v\n%s", err, tc.wantErr, out)
				}
			case err != nil:
				t.Errorf("error = %v, want none\n%s", err, out)
			}
		})
	}
}

func TestCheckVerboseAndHubOverride(t *testing.T) {
	f := newCheckFixture(t, nil, false)
	out, err := runIotedge(t, "check", "-c", f.configPath, "--verbose", "--iothub-hostname", f.hub.Listener.Addr().String())
	if err != nil {
		t.Fatalf("iotedge check: %v\n%s", err, out)
	}
	for _, want := range []string{
		"√ host can connect to and perform TLS handshake with iothub MQTT port - OK\n    TLS handshake with the hub " + f.hub.Listener.Addr().String() + " succeeded",
		"    X.509 identity CN=edge-check issued by CN=check-ca",
		"6 check(s) succeeded.\n1 check(s) raised warnings.\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verbose output lacks %q:\n%s", want, out)
		}
	}
}
