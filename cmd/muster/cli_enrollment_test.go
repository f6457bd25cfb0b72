package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
)

func TestEnrollmentSymmetricKeyLifecycle(t *testing.T) {
	f := newFakeService(t)
	out := f.run(t, "enrollment", "create", "sn-007-888-abc", "--device-id", "edge-1", "--edge-enabled",
		"--initial-twin-tags", `{"site": "plant-1"}`, "--initial-twin-properties", `{"interval":30}`,
		"--allocation-policy", "HASHED", "--iot-hubs", "hub1.example.com,hub2.example.com",
		"--reprovision-policy", "reprovisionandresetdata")
	want := `Registration ID:             sn-007-888-abc
Device ID:                   edge-1
Attestation:                 symmetricKey
Primary key:                 ` + fakeKey("primary", "sn-007-888-abc") + `
Secondary key:               ` + fakeKey("secondary", "sn-007-888-abc") + `
Provisioning status:         enabled
IoT Edge:                    yes
Allocation policy:           hashed
IoT hubs:                    hub1.example.com, hub2.example.com
Reprovision policy:          reprovisionandresetdata
Initial twin tags:           {"site":"plant-1"}
Initial desired properties:  {"interval":30}
ETag:                        "etag-1"
Created:                     2031-05-06T07:08:09Z
Updated:                     2031-05-06T07:08:10Z
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("create output (-want +got):\n%s", diff)
	}

	// What the service received: only what was asked for, keys left to the service.
	stored := f.enrollments["sn-007-888-abc"]
	wantStored := &enroll.IndividualEnrollment{
		RegistrationID: "sn-007-888-abc",
		DeviceID:       "edge-1",
		Common: enroll.Common{
			Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{
				PrimaryKey: fakeKey("primary", "sn-007-888-abc"), SecondaryKey: fakeKey("secondary", "sn-007-888-abc")}},
			Capabilities:      &enroll.Capabilities{IoTEdge: true},
			InitialTwin:       &enroll.InitialTwin{Tags: json.RawMessage(`{"site":"plant-1"}`), Properties: &enroll.InitialTwinProperties{Desired: json.RawMessage(`{"interval":30}`)}},
			ReprovisionPolicy: &enroll.ReprovisionPolicy{UpdateHubAssignment: true},
			AllocationPolicy:  enroll.AllocationHashed,
			IoTHubs:           []string{"hub1.example.com", "hub2.example.com"},
		},
	}
	if diff := cmp.Diff(wantStored, stored, cmp.FilterPath(func(p cmp.Path) bool {
		s := p.String()
		return s == "Common.ETag" || s == "Common.CreatedDateTimeUTC" || s == "Common.LastUpdatedDateTimeUTC"
	}, cmp.Ignore())); diff != "" {
		t.Errorf("stored enrollment (-want +got):\n%s", diff)
	}

	// show hides keys unless asked; the registration state is shown.
	f.regs["sn-007-888-abc"] = &enroll.RegistrationStateView{RegistrationID: "sn-007-888-abc", Status: "assigned", DeviceID: "edge-1",
		AssignedHub: "hub1.example.com", Substatus: "initialAssignment"}
	out = f.run(t, "enrollment", "show", "sn-007-888-abc")
	if strings.Contains(out, "Primary key") {
		t.Errorf("show without --show-keys printed a key:\n%s", out)
	}
	for _, r := range [][2]string{{"Registration status", "assigned"}, {"Assigned hub", "hub1.example.com"}, {"Assigned device ID", "edge-1"}} {
		checkRow(t, out, r[0], r[1])
	}
	out = f.run(t, "enrollment", "show", "sn-007-888-abc", "--show-keys", "-o", "json")
	got := decodeJSON[enroll.IndividualEnrollment](t, out)
	if diff := cmp.Diff(stored.Attestation, got.Attestation); diff != "" {
		t.Errorf("show --show-keys attestation (-want +got):\n%s", diff)
	}
	if got.RegistrationState == nil || got.RegistrationState.Status != "assigned" {
		t.Errorf("show JSON registrationState = %+v, want assigned", got.RegistrationState)
	}

	// update changes only what is given, under the etag just read.
	before := len(f.requests())
	f.run(t, "enrollment", "update", "sn-007-888-abc", "--provisioning-status", "disabled", "--secondary-key", "c2Vjb25k")
	calls := f.requests()[before:]
	wantCalls := []fakeCall{{Method: "GET", Path: "/enrollments/sn-007-888-abc"}, {Method: "PUT", Path: "/enrollments/sn-007-888-abc", IfMatch: `"etag-1"`}}
	if diff := cmp.Diff(wantCalls, calls); diff != "" {
		t.Errorf("update requests (-want +got):\n%s", diff)
	}
	stored = f.enrollments["sn-007-888-abc"]
	if stored.ProvisioningStatus != "disabled" || stored.DeviceID != "edge-1" || string(stored.InitialTwin.Tags) != `{"site":"plant-1"}` {
		t.Errorf("update lost or missed settings: %+v", stored)
	}
	if k := stored.Attestation.SymmetricKey; k.SecondaryKey != "c2Vjb25k" || k.PrimaryKey != fakeKey("primary", "sn-007-888-abc") {
		t.Errorf("update keys = %+v, want the primary kept and the secondary replaced", k)
	}

	// a stale etag is refused by the service and reported.
	err := f.runErr(t, "enrollment", "update", "sn-007-888-abc", "--edge-enabled=false", "--etag", `"etag-1"`)
	if !strings.Contains(err.Error(), `put enrollment "sn-007-888-abc": service answered 412 Precondition Failed (errorCode 412002)`) {
		t.Errorf("stale etag error = %v", err)
	}

	out = f.run(t, "enrollment", "delete", "sn-007-888-abc", "--etag", `"etag-2"`)
	if out != "Deleted enrollment sn-007-888-abc.\n" {
		t.Errorf("delete output = %q", out)
	}
	if _, ok := f.enrollments["sn-007-888-abc"]; ok {
		t.Error("the enrollment still exists after delete")
	}
	err = f.runErr(t, "enrollment", "show", "sn-007-888-abc")
	if want := `get enrollment "sn-007-888-abc": service answered 404 Not Found (errorCode 404201): the enrollment does not exist [trackingId track-1]`; err.Error() != want {
		t.Errorf("show after delete: %v, want %s", err, want)
	}
}

func TestEnrollmentList(t *testing.T) {
	f := newFakeService(t)
	for _, id := range []string{"dev-c", "dev-a", "dev-e", "dev-b", "dev-d"} {
		f.run(t, "enrollment", "create", id)
	}
	f.run(t, "enrollment", "create", "dev-f", "--provisioning-status", "disabled", "--edge-enabled")
	f.regs["dev-a"] = &enroll.RegistrationStateView{RegistrationID: "dev-a", Status: "assigned", AssignedHub: "hub.example.com"}
	before := len(f.requests())
	out := f.run(t, "enrollment", "list", "--page-size", "2")
	want := `REGISTRATION ID  DEVICE ID  ATTESTATION   PROVISIONING  EDGE  REGISTRATION  HUB
dev-a            -          symmetricKey  enabled       no    assigned      hub.example.com
dev-b            -          symmetricKey  enabled       no    -             -
dev-c            -          symmetricKey  enabled       no    -             -
dev-d            -          symmetricKey  enabled       no    -             -
dev-e            -          symmetricKey  enabled       no    -             -
dev-f            -          symmetricKey  disabled      yes   -             -
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if n := len(f.requests()) - before; n != 3 {
		t.Errorf("list sent %d query requests, want 3 pages", n)
	}
	js := decodeJSON[[]enroll.IndividualEnrollment](t, f.run(t, "enrollment", "list", "-o", "json"))
	if len(js) != 6 || js[5].ProvisioningStatus != "disabled" {
		t.Errorf("list JSON = %+v", js)
	}

	empty := newFakeService(t)
	if out := empty.run(t, "enrollment-group", "list", "-o", "json"); out != "[]\n" {
		t.Errorf("empty list JSON = %q, want []", out)
	}
}

// testChain writes a root, an intermediate and a device certificate and
// returns the paths of the root, the device and the device's full chain.
func testChain(t *testing.T, device string) (rootPath, devicePath, fullChainPath string) {
	t.Helper()
	dir := t.TempDir()
	l := pki.Layout{Dir: dir}
	if _, err := l.CreateRoot("Test Root"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateIntermediate("Test Intermediate"); err != nil {
		t.Fatal(err)
	}
	p, err := l.CreateDeviceIdentity(device)
	if err != nil {
		t.Fatal(err)
	}
	return l.RootPaths().Cert, p.Cert, p.FullChain
}

func TestEnrollmentX509(t *testing.T) {
	f := newFakeService(t)
	_, devicePath, fullChain := testChain(t, "dev-x509")
	devicePEM := readTestFile(t, devicePath)

	// The registration ID defaults to the certificate's CN.
	out := f.run(t, "enrollment", "create", "--certificate-path", devicePath, "--edge-enabled")
	stored := f.enrollments["dev-x509"]
	if stored == nil {
		t.Fatalf("no enrollment dev-x509 stored; output:\n%s", out)
	}
	wantAtt := &enroll.AttestationMechanism{Type: enroll.AttestationX509, X509: &enroll.X509Attestation{
		ClientCertificates: &enroll.X509Certificates{Primary: &enroll.X509CertificateWithInfo{Certificate: devicePEM}}}}
	if diff := cmp.Diff(wantAtt, stored.Attestation); diff != "" {
		t.Errorf("attestation (-want +got):\n%s", diff)
	}
	checkRow(t, out, "Attestation", "x509 (device certificate)")
	checkRow(t, out, "Primary certificate", "CN=dev-x509")

	// A full-chain file: the leaf is sent, with a note; a CN mismatch warns.
	_, stderr, err := runCLI(t, nil, "--data-dir", f.dir, "enrollment", "create", "other-id", "--attestation-type", "x509", "--certificate-path", fullChain)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.enrollments["other-id"].Attestation.X509.ClientCertificates.Primary.Certificate; got != devicePEM {
		t.Errorf("sent certificate is not the leaf alone:\n%s", got)
	}
	for _, want := range []string{"holds 3 certificates; using the first (CN=dev-x509)", `warning: the certificate's CN "dev-x509" is not the registration ID "other-id"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	// Secondary certificate on update keeps the primary slot as read.
	f.run(t, "enrollment", "update", "dev-x509", "--secondary-certificate-path", devicePath)
	cc := f.enrollments["dev-x509"].Attestation.X509.ClientCertificates
	if cc.Primary == nil || cc.Primary.Certificate != devicePEM || cc.Secondary == nil || cc.Secondary.Certificate != devicePEM {
		t.Errorf("after update: %+v", cc)
	}
}

func TestGroups(t *testing.T) {
	f := newFakeService(t)
	rootPath, _, _ := testChain(t, "unused")
	rootPEM := readTestFile(t, rootPath)

	out := f.run(t, "enrollment-group", "create", "--group-id", "sk-group", "--edge-enabled")
	checkRow(t, out, "Primary key", fakeKey("primary", "sk-group"))
	f.run(t, "enrollment-group", "create", "signing-group", "--certificate-path", rootPath)
	f.run(t, "enrollment-group", "create", "ca-group", "--ca-name", "my-root", "--secondary-ca-name", "next-root", "--provisioning-status", "disabled")

	want := map[string]*enroll.AttestationMechanism{
		"sk-group": {Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{
			PrimaryKey: fakeKey("primary", "sk-group"), SecondaryKey: fakeKey("secondary", "sk-group")}},
		"signing-group": {Type: enroll.AttestationX509, X509: &enroll.X509Attestation{
			SigningCertificates: &enroll.X509Certificates{Primary: &enroll.X509CertificateWithInfo{Certificate: rootPEM}}}},
		"ca-group": {Type: enroll.AttestationX509, X509: &enroll.X509Attestation{
			CAReferences: &enroll.X509CAReferences{Primary: "my-root", Secondary: "next-root"}}},
	}
	for id, w := range want {
		if diff := cmp.Diff(w, f.groups[id].Attestation); diff != "" {
			t.Errorf("group %s attestation (-want +got):\n%s", id, diff)
		}
	}

	out = f.run(t, "enrollment-group", "list")
	wantList := `GROUP ID       ATTESTATION                 PROVISIONING  EDGE  ALLOCATION  HUBS
ca-group       x509 (CA my-root)           disabled      no    -           -
signing-group  x509 (signing certificate)  enabled       no    -           -
sk-group       symmetricKey                enabled       yes   -           -
`
	if diff := cmp.Diff(wantList, out); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	// Switching a group from CA references to a signing certificate drops the references.
	f.run(t, "enrollment-group", "update", "ca-group", "--certificate-path", rootPath)
	x := f.groups["ca-group"].Attestation.X509
	if x.CAReferences != nil || x.SigningCertificates == nil || x.SigningCertificates.Primary.Certificate != rootPEM {
		t.Errorf("after switching: %+v", x)
	}

	out = f.run(t, "enrollment-group", "show", "sk-group", "--show-keys")
	if !strings.Contains(out, fakeKey("secondary", "sk-group")) {
		t.Errorf("show --show-keys lacks the secondary key:\n%s", out)
	}

	// key derive --group-id fetches the group key from the service.
	out = f.run(t, "key", "derive", "--group-id", "sk-group", "--registration-id", "dev-1")
	local := f.run(t, "key", "derive", "--group-key", fakeKey("primary", "sk-group"), "--registration-id", "dev-1")
	if out != local || len(out) != 45 {
		t.Errorf("derive via --group-id = %q, via --group-key = %q", out, local)
	}
	err := f.runErr(t, "key", "derive", "--group-id", "signing-group", "--registration-id", "dev-1")
	if !strings.Contains(err.Error(), `enrollment group "signing-group" uses x509 attestation, not a symmetric key`) {
		t.Errorf("derive from an x509 group: %v", err)
	}

	f.run(t, "enrollment-group", "delete", "sk-group")
	if _, ok := f.groups["sk-group"]; ok {
		t.Error("group still exists after delete")
	}
}

func TestEnrollmentFlagValidation(t *testing.T) {
	f := newFakeService(t)
	_, devicePath, _ := testChain(t, "dev-v")
	missing := filepath.Join(t.TempDir(), "x.pem")
	notPEM := writeFile(t, t.TempDir(), "not.pem", []byte("hello"))
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"invalid twin JSON", []string{"enrollment", "create", "d", "--initial-twin-tags", `{"a":}`}, "--initial-twin-tags: invalid JSON at offset 6"},
		{"twin tags not an object", []string{"enrollment", "create", "d", "--initial-twin-tags", `[1]`}, "--initial-twin-tags: must be a JSON object, got an array"},
		{"desired not an object", []string{"enrollment-group", "create", "g", "--initial-twin-properties", `"x"`}, "--initial-twin-properties: must be a JSON object, got a string"},
		{"provisioning status", []string{"enrollment", "create", "d", "--provisioning-status", "on"}, `--provisioning-status "on": must be enabled or disabled`},
		{"allocation policy", []string{"enrollment", "create", "d", "--allocation-policy", "random"}, `--allocation-policy "random": must be hashed, geoLatency, static or custom`},
		{"custom without webhook", []string{"enrollment", "create", "d", "--allocation-policy", "custom"}, "--allocation-policy custom needs --webhook-url"},
		{"webhook without custom", []string{"enrollment", "create", "d", "--webhook-url", "https://f.example/api"}, "--webhook-url applies only with --allocation-policy custom"},
		{"webhook not a URL", []string{"enrollment", "create", "d", "--allocation-policy", "custom", "--webhook-url", "f.example/api"}, `--webhook-url "f.example/api": must be an absolute http or https URL`},
		{"static with two hubs", []string{"enrollment", "create", "d", "--allocation-policy", "static", "--iot-hubs", "a,b"}, "--allocation-policy static takes exactly one hub in --iot-hubs, got 2 (a, b)"},
		{"reprovision policy", []string{"enrollment", "create", "d", "--reprovision-policy", "always"}, `--reprovision-policy "always": must be reprovisionandmigratedata, reprovisionandresetdata or neverreprovision`},
		{"attestation type", []string{"enrollment", "create", "d", "--attestation-type", "tpm"}, `--attestation-type "tpm": must be symmetrickey or x509`},
		{"bad key", []string{"enrollment", "create", "d", "--primary-key", "not base64!"}, "--primary-key: decode key: sas: invalid key: not standard base64"},
		{"key with x509", []string{"enrollment", "create", "d", "--attestation-type", "x509", "--primary-key", "a2V5", "--certificate-path", devicePath}, "--primary-key applies to --attestation-type symmetrickey, not x509"},
		{"certificate with symmetric key", []string{"enrollment", "create", "d", "--attestation-type", "symmetrickey", "--certificate-path", devicePath}, "--certificate-path applies to --attestation-type x509, not symmetrickey"},
		{"x509 without certificate", []string{"enrollment", "create", "d", "--attestation-type", "x509"}, "--attestation-type x509 needs --certificate-path (the device's certificate)"},
		{"group x509 without anchor", []string{"enrollment-group", "create", "g", "--attestation-type", "x509"}, "needs --certificate-path (a signing certificate) or --ca-name (a verified CA certificate)"},
		{"group secondary CA alone", []string{"enrollment-group", "create", "g", "--secondary-ca-name", "b"}, "needs --certificate-path (a signing certificate) or --ca-name"},
		{"group certificate and CA", []string{"enrollment-group", "create", "g", "--certificate-path", devicePath, "--ca-name", "r"}, "give either --certificate-path (a signing certificate) or --ca-name (a verified CA certificate), not both"},
		{"missing certificate file", []string{"enrollment", "create", "d", "--certificate-path", missing}, "read --certificate-path " + missing + ": no such file or directory"},
		{"not a certificate", []string{"enrollment", "create", "d", "--certificate-path", notPEM}, "--certificate-path " + notPEM + ": parse certificates"},
		{"no registration id", []string{"enrollment", "create"}, "give the registration ID as an argument or with --registration-id"},
		{"argument and flag disagree", []string{"enrollment", "create", "a", "--registration-id", "b"}, `the argument "a" and --registration-id "b" disagree`},
		{"no group id", []string{"enrollment-group", "create"}, "give the group id as an argument or with --group-id"},
		{"output format", []string{"enrollment", "list", "-o", "yaml"}, `--output "yaml": must be table or json`},
		{"too many arguments", []string{"enrollment", "show", "a", "b"}, "accepts 1 arg(s), received 2"},
		{"unknown flag", []string{"enrollment", "create", "d", "--colour"}, "unknown flag: --colour"},
		{"registration list needs group", []string{"registration", "list"}, "--group: give the enrollment group"},
		{"why limit", []string{"registration", "why", "d", "--limit", "0"}, "--limit 0: must be at least 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := f.runErr(t, tc.args...)
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	if calls := f.requests(); len(calls) != 0 {
		t.Errorf("invalid commands sent requests: %+v", calls)
	}
}

// checkRow fails the test unless a details output has the row name: value.
func checkRow(t *testing.T, out, name, value string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		n, v, ok := strings.Cut(line, ":")
		if ok && n == name && strings.TrimLeft(v, " ") == value {
			return
		}
	}
	t.Errorf("output lacks the row %s: %s\n%s", name, value, out)
}

// readTestFile reads a file as a string.
func readTestFile(t *testing.T, path string) string {
	t.Helper()
	b, err := readFlagFile("test file", path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func FuzzJSONObjectFlag(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":}`, `[1]`, `""`, ``, `  `, `null`, `{"a":{"b":[1,2,{"c":null}]}}`, "{\"\xff\":1}", `{} {}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		raw, err := jsonObjectFlag("--initial-twin-tags", s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--initial-twin-tags: ") {
				t.Fatalf("error %q does not name the flag", err)
			}
			return
		}
		if strings.TrimSpace(s) == "" {
			if raw != nil {
				t.Fatalf("blank input gave %q", raw)
			}
			return
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil || m == nil {
			t.Fatalf("accepted %q, which is not a JSON object: %v", s, err)
		}
	})
}
