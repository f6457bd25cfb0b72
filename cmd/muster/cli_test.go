package main

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/store"
)

func TestRegistrationCommands(t *testing.T) {
	f := newFakeService(t)
	at := func(min int) time.Time { return fakeTime.Add(time.Duration(min) * time.Minute) }
	updated := at(3)
	f.regs["dev-1"] = &enroll.RegistrationStateView{RegistrationID: "dev-1", Status: "assigned", Substatus: "initialAssignment",
		DeviceID: "dev-1", AssignedHub: "hub.example.com", LastUpdatedDateTimeUTC: &updated, ETag: "r1"}
	f.regs["dev-2"] = &enroll.RegistrationStateView{RegistrationID: "dev-2", Status: "failed", ErrorCode: 401002, ErrorMessage: "Unauthorized"}
	// Stored oldest first, so the CLI must sort newest first itself.
	f.attempts = []store.Attempt{
		{ID: "1", Time: at(1), RegistrationID: "dev-1", Protocol: "mqtt", Attestation: "symmetricKey", Outcome: "denied",
			Reason: "derived_key_mismatch", Hint: "derive the device key from the group key with the exact registration ID & try again",
			EnrollmentKind: "group", EnrollmentID: "fleet"},
		{ID: "2", Time: at(2), RegistrationID: "dev-2", Protocol: "https", Attestation: "x509", Outcome: "denied",
			Reason: "chain_untrusted", EnrollmentKind: "group", EnrollmentID: "fleet"},
		{ID: "3", Time: at(3), RegistrationID: "dev-1", Protocol: "mqtt", Attestation: "symmetricKey", Outcome: "assigned",
			EnrollmentKind: "group", EnrollmentID: "fleet"},
	}

	out := f.run(t, "registration", "list", "--group", "fleet")
	want := `REGISTRATION ID  DEVICE ID  STATUS    SUBSTATUS          ASSIGNED HUB     UPDATED               ERROR
dev-1            dev-1      assigned  initialAssignment  hub.example.com  2031-05-06T07:11:09Z  -
dev-2            -          failed    -                  -                -                     401002: Unauthorized
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	out = f.run(t, "registration", "why", "DEV-1")
	want = `TIME                  PROTOCOL  ATTESTATION   OUTCOME   REASON                ENROLLMENT   HINT
2031-05-06T07:11:09Z  mqtt      symmetricKey  assigned  -                     group/fleet  -
2031-05-06T07:09:09Z  mqtt      symmetricKey  denied    derived_key_mismatch  group/fleet  derive the device key from the group key with the exact registration ID & try again
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("why (-want +got):\n%s", diff)
	}
	if got := f.requests()[len(f.requests())-1]; got.Path != "/registrations/DEV-1/attempts" {
		t.Errorf("why requested %s", got.Path)
	}

	out = f.run(t, "registration", "why", "--limit", "2")
	want = `TIME                  REGISTRATION ID  PROTOCOL  ATTESTATION   OUTCOME   REASON           ENROLLMENT   HINT
2031-05-06T07:11:09Z  dev-1            mqtt      symmetricKey  assigned  -                group/fleet  -
2031-05-06T07:10:09Z  dev-2            https     x509          denied    chain_untrusted  group/fleet  -
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("why without ID (-want +got):\n%s", diff)
	}

	out = f.run(t, "registration", "why", "dev-1", "--limit", "2", "-o", "json")
	if !strings.Contains(out, "registration ID & try again") {
		t.Errorf("JSON output escapes HTML characters:\n%s", out)
	}
	js := decodeJSON[[]store.Attempt](t, f.run(t, "registration", "why", "dev-2", "-o", "json"))
	if diff := cmp.Diff(f.attempts[1:2], js); diff != "" {
		t.Errorf("why JSON (-want +got):\n%s", diff)
	}

	stdout, stderr, err := runCLI(t, nil, "--data-dir", f.dir, "registration", "why", "ghost")
	if err != nil || stdout != "" || !strings.Contains(stderr, `No registration attempts are recorded for "ghost"`) {
		t.Errorf("why ghost: err %v, stdout %q, stderr %q", err, stdout, stderr)
	}

	out = f.run(t, "registration", "show", "dev-2")
	checkRow(t, out, "Status", "failed")
	checkRow(t, out, "Error", "401002: Unauthorized")

	f.run(t, "registration", "delete", "dev-1", "--etag", "r1")
	if _, ok := f.regs["dev-1"]; ok {
		t.Error("registration still exists after delete")
	}
	err = f.runErr(t, "registration", "show", "dev-1")
	if !strings.Contains(err.Error(), "404") {
		t.Errorf("show deleted registration: %v", err)
	}
}

func TestCACommands(t *testing.T) {
	f := newFakeService(t)
	rootPath, devicePath, _ := testChain(t, "proof")

	out := f.run(t, "ca", "upload", "my-root", "--certificate-path", rootPath)
	checkRow(t, out, "Verified", "no")
	out = f.run(t, "ca", "list")
	want := `NAME     SUBJECT     VERIFIED  EXPIRES               SHA-1 THUMBPRINT
my-root  CN=my-root  no        2041-05-06T07:08:09Z  AB12
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	// The etag is fetched when not given.
	before := len(f.requests())
	out, stderr, err := runCLI(t, nil, "--data-dir", f.dir, "ca", "verification-code", "my-root")
	if err != nil {
		t.Fatal(err)
	}
	checkRow(t, out, "Verification code", "C0DE1")
	if !strings.Contains(stderr, "muster certs verification C0DE1 --signer root") {
		t.Errorf("verification-code gives no next step:\n%s", stderr)
	}
	wantCalls := []fakeCall{{Method: "GET", Path: "/certificates/my-root"}, {Method: "POST", Path: "/certificates/my-root/generateVerificationCode", IfMatch: `"etag-1"`}}
	if diff := cmp.Diff(wantCalls, f.requests()[before:]); diff != "" {
		t.Errorf("verification-code requests (-want +got):\n%s", diff)
	}

	out = f.run(t, "ca", "verify", "my-root", "--certificate-path", devicePath, "-o", "json")
	ca := decodeJSON[enroll.CACertificate](t, out)
	if !ca.IsVerified || ca.VerifiedAt == nil {
		t.Errorf("verify answer = %+v", ca)
	}
	if got := f.requests()[len(f.requests())-1]; got.IfMatch != `"etag-2"` {
		t.Errorf("verify If-Match = %q", got.IfMatch)
	}

	err = f.runErr(t, "ca", "delete", "my-root", "--etag", `"stale"`)
	if !strings.Contains(err.Error(), "412") {
		t.Errorf("delete with a stale etag: %v", err)
	}
	f.run(t, "ca", "delete", "my-root")
	if len(f.cas) != 0 {
		t.Error("CA still exists after delete")
	}
	err = f.runErr(t, "ca", "upload", "x")
	if !strings.Contains(err.Error(), "--certificate-path: give the PEM file") {
		t.Errorf("upload without a file: %v", err)
	}
}

func TestKeyDerive(t *testing.T) {
	// The group key and result of the Azure documentation's example.
	const (
		groupKey = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
		regID    = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
		derived  = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
	)
	// Pure local computation: no data dir, no connection string needed.
	empty := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{name: "table", args: []string{"key", "derive", "--group-key", groupKey, "--registration-id", regID}, want: derived + "\n"},
		{name: "json", args: []string{"key", "derive", "--group-key", groupKey, "--registration-id", regID, "-o", "json"},
			want: "{\n  \"registrationId\": \"" + regID + "\",\n  \"derivedKey\": \"" + derived + "\"\n}\n"},
		{name: "bad group key", args: []string{"key", "derive", "--group-key", "%%%", "--registration-id", regID}, wantErr: "--group-key: derive device key: group key: decode key: sas: invalid key"},
		{name: "no registration id", args: []string{"key", "derive", "--group-key", groupKey}, wantErr: "--registration-id: give the device's registration ID"},
		{name: "no key", args: []string{"key", "derive", "--registration-id", regID}, wantErr: "give the group's key with --group-key, or its ID with --group-id"},
		{name: "both", args: []string{"key", "derive", "--group-key", groupKey, "--group-id", "g", "--registration-id", regID}, wantErr: "give --group-key or --group-id, not both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCLI(t, nil, append([]string{"--data-dir", empty}, tc.args...)...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out != tc.want {
				t.Errorf("output = %q, want %q", out, tc.want)
			}
		})
	}
}

func TestCertsChain(t *testing.T) {
	dir := t.TempDir()
	out, _, err := runCLI(t, nil, "certs", "chain", "edge-1", "--dir", dir, "--not-after", "2051-01-01", "--key-type", "p384")
	if err != nil {
		t.Fatal(err)
	}
	l := pki.Layout{Dir: dir}
	dev := filepath.Join(dir, "certs", "iot-edge-device-identity-edge-1.cert.pem")
	full := filepath.Join(dir, "certs", "iot-edge-device-identity-edge-1-full-chain.cert.pem")
	devKey := filepath.Join(dir, "private", "iot-edge-device-identity-edge-1.key.pem")
	for _, r := range [][]string{
		{"ROLE", "CERTIFICATE", "FULL", "CHAIN", "KEY"},
		{"root", "CA", l.RootPaths().Cert, "-", l.RootPaths().Key},
		{"intermediate", "CA", l.IntermediatePaths().Cert, "-", l.IntermediatePaths().Key},
		{"device", "identity", dev, full, devKey},
	} {
		if !containsFields(out, r) {
			t.Errorf("output lacks the row %v:\n%s", r, out)
		}
	}
	for _, key := range []string{l.RootPaths().Key, l.IntermediatePaths().Key, devKey} {
		st, err := os.Stat(key)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", key, st.Mode().Perm())
		}
	}

	// The device certificate chains to the root through the intermediate,
	// expires on the date given (past 2050) and has the key type asked for.
	root := parseTestCert(t, l.RootPaths().Cert)
	inter := parseTestCert(t, l.IntermediatePaths().Cert)
	leaf := parseTestCert(t, dev)
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inters.AddCert(inter)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("device certificate does not verify: %v", err)
	}
	if want := time.Date(2051, 1, 1, 0, 0, 0, 0, time.UTC); !leaf.NotAfter.Equal(want) || leaf.Subject.CommonName != "edge-1" {
		t.Errorf("device certificate: CN %q, notAfter %v", leaf.Subject.CommonName, leaf.NotAfter)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve.Params().BitSize != 384 {
		t.Errorf("device key is %T, want P-384", leaf.PublicKey)
	}
	if n := len(mustParseCerts(t, full)); n != 3 {
		t.Errorf("full chain holds %d certificates, want 3", n)
	}

	// A second device reuses the chain; an existing device needs --force.
	js, _, err := runCLI(t, nil, "certs", "chain", "edge-2", "--dir", dir, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	ws := decodeJSON[[]written](t, js)
	if len(ws) != 3 || !ws[0].Kept || !ws[1].Kept || ws[2].Kept {
		t.Errorf("second chain = %+v, want root and intermediate kept", ws)
	}
	if got := parseTestCert(t, l.RootPaths().Cert); !got.Equal(root) {
		t.Error("the root was replaced without --force")
	}
	_, _, err = runCLI(t, nil, "certs", "device", "edge-1", "--dir", dir)
	if err == nil || !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "pass --force to replace it") {
		t.Errorf("existing device without --force: %v", err)
	}
	if _, _, err := runCLI(t, nil, "certs", "device", "edge-1", "--dir", dir, "--force", "--key-type", "rsa2048", "--days", "30"); err != nil {
		t.Fatalf("--force: %v", err)
	}
	leaf = parseTestCert(t, dev)
	if _, ok := leaf.PublicKey.(*rsa.PublicKey); !ok {
		t.Errorf("replaced device key is %T, want RSA", leaf.PublicKey)
	}
	if d := time.Until(leaf.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("--days 30 gave notAfter %v", leaf.NotAfter)
	}
}

func TestCertsCommands(t *testing.T) {
	dir := t.TempDir()
	steps := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "device before root", args: []string{"certs", "device", "d"}, wantErr: "load root CA"},
		{name: "root", args: []string{"certs", "root", "--cn", "My Root", "--days", "3650"}},
		{name: "root again", args: []string{"certs", "root"}, wantErr: "pass --force to replace it"},
		{name: "intermediate", args: []string{"certs", "intermediate"}},
		{name: "edge CA", args: []string{"certs", "edge-ca", "edge-1"}},
		{name: "verification", args: []string{"certs", "verification", "ABC123", "--signer", "intermediate"}},
		{name: "bad signer", args: []string{"certs", "verification", "ABC123", "--signer", "leaf", "--force"}, wantErr: `--signer "leaf": must be root or intermediate`},
		{name: "bad key type", args: []string{"certs", "device", "d", "--key-type", "ed448"}, wantErr: "--key-type: parse key type \"ed448\""},
		{name: "days and not-after", args: []string{"certs", "device", "d", "--days", "3", "--not-after", "2051-01-01"}, wantErr: "give --days or --not-after, not both"},
		{name: "bad date", args: []string{"certs", "device", "d", "--not-after", "01/01/2051"}, wantErr: `--not-after "01/01/2051": use a date such as 2051-01-01`},
		{name: "past date", args: []string{"certs", "device", "d", "--not-after", "2001-01-01"}, wantErr: "--not-after 2001-01-01: the date has passed"},
		{name: "zero days", args: []string{"certs", "device", "d", "--days", "0"}, wantErr: "--days 0: must be at least 1"},
		{name: "path in name", args: []string{"certs", "device", "a/b"}, wantErr: "not allowed in a file name"},
	}
	for _, s := range steps {
		_, _, err := runCLI(t, nil, append(s.args, "--dir", dir)...)
		switch {
		case s.wantErr == "" && err != nil:
			t.Fatalf("%s: %v", s.name, err)
		case s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)):
			t.Fatalf("%s: err = %v, want %q", s.name, err, s.wantErr)
		}
	}
	root := parseTestCert(t, filepath.Join(dir, "certs", "azure-iot-test-only.root.ca.cert.pem"))
	if root.Subject.CommonName != "My Root" {
		t.Errorf("root CN = %q", root.Subject.CommonName)
	}
	v := parseTestCert(t, filepath.Join(dir, "certs", "verification-code.cert.pem"))
	inter := parseTestCert(t, filepath.Join(dir, "certs", "azure-iot-test-only.intermediate.cert.pem"))
	if v.Subject.CommonName != "ABC123" || v.CheckSignatureFrom(inter) != nil {
		t.Errorf("verification certificate CN %q, signed by the intermediate: %v", v.Subject.CommonName, v.CheckSignatureFrom(inter))
	}
	edge := parseTestCert(t, filepath.Join(dir, "certs", "iot-edge-device-ca-edge-1.cert.pem"))
	if !edge.IsCA {
		t.Error("edge CA certificate is not a CA")
	}
}

func TestTargetResolution(t *testing.T) {
	f := newFakeService(t)
	badKey := f.connString("d3Jvbmcga2V5")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	emptyDir := t.TempDir()
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{name: "endpoints.json alone", args: []string{"--data-dir", f.dir}},
		{name: "data dir from the environment", env: map[string]string{envDataDir: f.dir}},
		{name: "environment beats endpoints.json", env: map[string]string{envConnectionString: badKey}, args: []string{"--data-dir", f.dir},
			wantErr: "service answered 401 Unauthorized (errorCode 401002)"},
		{name: "flag beats environment", env: map[string]string{envConnectionString: badKey}, args: []string{"--data-dir", f.dir, "--connection-string", f.connString(f.key)}},
		{name: "server flag beats endpoints.json", args: []string{"--data-dir", f.dir, "--server", closedAddr}, wantErr: "connection refused"},
		{name: "server from the environment", env: map[string]string{envServer: closedAddr}, args: []string{"--data-dir", f.dir}, wantErr: "connection refused"},
		{name: "everything from flags", args: []string{"--data-dir", emptyDir, "--connection-string", f.connString(f.key), "--server", f.srv.Listener.Addr().String(), "--ca-file", f.caFile}},
		{name: "CA file from the environment", env: map[string]string{envCAFile: f.caFile, envServer: f.srv.Listener.Addr().String(), envConnectionString: f.connString(f.key)}, args: []string{"--data-dir", emptyDir}},
		{name: "untrusted server", args: []string{"--data-dir", emptyDir, "--connection-string", f.connString(f.key), "--server", f.srv.Listener.Addr().String()},
			wantErr: "certificate signed by unknown authority"},
		{name: "nothing to go on", args: []string{"--data-dir", emptyDir},
			wantErr: "no DPS connection string: pass --connection-string, set MUSTER_DPS_CONNECTION_STRING, or point --data-dir (MUSTER_DATA_DIR) at the data directory of a running \"muster serve\" (" + filepath.Join(emptyDir, "endpoints.json") + " does not exist)"},
		{name: "missing CA file", args: []string{"--data-dir", f.dir, "--ca-file", filepath.Join(emptyDir, "nope.pem")},
			wantErr: "read --ca-file " + filepath.Join(emptyDir, "nope.pem") + ": no such file or directory"},
		{name: "bad connection string", args: []string{"--data-dir", emptyDir, "--connection-string", "HostName=x"},
			wantErr: "connect to the service API: parse connection string: invalid connection string: SharedAccessKey: missing or empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, tc.env, append(tc.args, "ca", "list")...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ca list: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestEndpointsOnlyForTheirHost(t *testing.T) {
	f := newFakeService(t)
	other := "HostName=dps.other.example;SharedAccessKeyName=p;SharedAccessKey=" + f.key
	tests := []struct {
		name string
		args []string
		want target
	}{
		{name: "same host takes address and CA", args: []string{"--data-dir", f.dir},
			want: target{connectionString: f.connString(f.key), server: f.srv.Listener.Addr().String(), caFile: f.caFile}},
		{name: "other host ignores them", args: []string{"--data-dir", f.dir, "--connection-string", other},
			want: target{connectionString: other}},
		{name: "flags win", args: []string{"--data-dir", f.dir, "--server", "h:1", "--ca-file", "x.pem"},
			want: target{connectionString: f.connString(f.key), server: "h:1", caFile: "x.pem"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &cli{stdout: io.Discard, stderr: io.Discard, lookupEnv: func(string) (string, bool) { return "", false }}
			root := c.rootCmd()
			if err := root.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := c.resolveTarget()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(target{})); diff != "" {
				t.Errorf("target (-want +got):\n%s", diff)
			}
		})
	}
}

func parseTestCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	return mustParseCerts(t, path)[0]
}

func mustParseCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return certs
}

// containsFields reports whether some line of out has exactly the given
// whitespace-separated fields.
func containsFields(out string, fields []string) bool {
	for _, line := range strings.Split(out, "\n") {
		if cmp.Equal(strings.Fields(line), fields) {
			return true
		}
	}
	return false
}
