package enroll

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
)

func newSvc(t *testing.T) (*Service, store.Store) {
	t.Helper()
	st := memstore.New(100)
	return NewService(st, ServiceOptions{LinkedHubs: func() []string { return []string{"hub-a.example", "hub-b.example"} }}), st
}

func sk() *AttestationMechanism { return &AttestationMechanism{Type: "symmetricKey"} }

func TestPutEnrollmentDefaultsAndKeys(t *testing.T) {
	s, _ := newSvc(t)
	ctx := context.Background()
	e, err := s.PutEnrollment(ctx, &IndividualEnrollment{RegistrationID: "Dev-1", Common: Common{Attestation: sk()}}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{e.Attestation.SymmetricKey.PrimaryKey, e.Attestation.SymmetricKey.SecondaryKey} {
		raw, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(raw) != 64 || len(k) != 88 {
			t.Fatalf("generated key %q: %d bytes, %v", k, len(raw), err)
		}
	}
	if e.ProvisioningStatus != "enabled" || e.AllocationPolicy != "hashed" || e.Capabilities == nil || e.Capabilities.IoTEdge ||
		e.ReprovisionPolicy == nil || !e.ReprovisionPolicy.UpdateHubAssignment || !e.ReprovisionPolicy.MigrateDeviceData {
		t.Fatalf("defaults not filled: %+v", e.Common)
	}
	if !strings.HasPrefix(e.ETag, `"`) || e.CreatedDateTimeUTC == nil || e.LastUpdatedDateTimeUTC == nil {
		t.Fatalf("server fields: etag %q created %v", e.ETag, e.CreatedDateTimeUTC)
	}
	// reads are case-insensitive and redacted
	got, err := s.GetEnrollment(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Attestation.SymmetricKey == nil || got.Attestation.SymmetricKey.PrimaryKey != "" {
		t.Fatalf("GET leaks keys: %+v", got.Attestation.SymmetricKey)
	}
	am, err := s.EnrollmentAttestation(ctx, "DEV-1")
	if err != nil || am.SymmetricKey.PrimaryKey != e.Attestation.SymmetricKey.PrimaryKey {
		t.Fatalf("attestation mechanism %+v %v", am, err)
	}
	// read-modify-write of a redacted object keeps the keys; If-Match with the quoted etag
	got.ProvisioningStatus = "disabled"
	up, err := s.PutEnrollment(ctx, got, got.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if up.ProvisioningStatus != "disabled" || up.Attestation.SymmetricKey.PrimaryKey != e.Attestation.SymmetricKey.PrimaryKey {
		t.Fatalf("update lost keys or status: %+v", up)
	}
	if up.CreatedDateTimeUTC.UnixNano() != e.CreatedDateTimeUTC.UnixNano() || up.ETag == e.ETag {
		t.Fatalf("update must keep created and change etag")
	}
	// stale etag
	if _, err := s.PutEnrollment(ctx, got, e.ETag); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("stale If-Match: %v", err)
	}
	if err := s.DeleteEnrollment(ctx, "dev-1", e.ETag); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("delete stale etag: %v", err)
	}
	if err := s.DeleteEnrollment(ctx, "dev-1", "W/"+up.ETag); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetEnrollment(ctx, "dev-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestValidationNamesTheField(t *testing.T) {
	s, _ := newSvc(t)
	root, err := pki.NewRoot("root")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		e     *IndividualEnrollment
		field string
	}{
		{"bad registration id", &IndividualEnrollment{RegistrationID: "bad id!", Common: Common{Attestation: sk()}}, "registrationId"},
		{"registration id ends with dot", &IndividualEnrollment{RegistrationID: "dev.", Common: Common{Attestation: sk()}}, "registrationId"},
		{"bad device id", &IndividualEnrollment{RegistrationID: "d", DeviceID: "a/b", Common: Common{Attestation: sk()}}, "deviceId"},
		{"no attestation", &IndividualEnrollment{RegistrationID: "d"}, "attestation.type"},
		{"unknown attestation", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: &AttestationMechanism{Type: "magic"}}}, "attestation.type"},
		{"short key", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: &AttestationMechanism{Type: "symmetricKey", SymmetricKey: &SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString([]byte("short"))}}}}, "attestation.symmetricKey.primaryKey"},
		{"not base64 key", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: &AttestationMechanism{Type: "symmetricKey", SymmetricKey: &SymmetricKeyAttestation{SecondaryKey: "@@@"}}}}, "attestation.symmetricKey.secondaryKey"},
		{"x509 without certs", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: &AttestationMechanism{Type: "x509", X509: &X509Attestation{}}}}, "attestation.x509"},
		{"garbage certificate", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: &AttestationMechanism{Type: "x509", X509: &X509Attestation{ClientCertificates: &X509Certificates{Primary: &X509CertificateWithInfo{Certificate: "not a cert"}}}}}}, "attestation.x509.clientCertificates.primary.certificate"},
		{"tpm without ek", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: &AttestationMechanism{Type: "tpm"}}}, "attestation.tpm.endorsementKey"},
		{"status", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: sk(), ProvisioningStatus: "paused"}}, "provisioningStatus"},
		{"allocation", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: sk(), AllocationPolicy: "random"}}, "allocationPolicy"},
		{"unlinked hub", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: sk(), IoTHubs: []string{"elsewhere.example"}}}, "iotHubs"},
		{"static needs one hub", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: sk(), AllocationPolicy: "static", IoTHubs: []string{"hub-a.example", "hub-b.example"}}}, "iotHubs"},
		{"custom needs webhook", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: sk(), AllocationPolicy: "custom"}}, "customAllocationDefinition.webhookUrl"},
		{"custom webhook scheme", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: sk(), AllocationPolicy: "custom", CustomAllocationDefinition: &CustomAllocationDefinition{WebhookURL: "ftp://x"}}}, "customAllocationDefinition.webhookUrl"},
		{"tags not object", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: sk(), InitialTwin: &InitialTwin{Tags: json.RawMessage(`[1]`)}}}, "initialTwin.tags"},
		{"desired not object", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: sk(), InitialTwin: &InitialTwin{Properties: &InitialTwinProperties{Desired: json.RawMessage(`"x"`)}}}}, "initialTwin.properties.desired"},
		{"device info", &IndividualEnrollment{RegistrationID: "d", OptionalDeviceInformation: json.RawMessage(`7`), Common: Common{Attestation: sk()}}, "optionalDeviceInformation"},
		{"both cert kinds", &IndividualEnrollment{RegistrationID: "d", Common: Common{Attestation: &AttestationMechanism{Type: "x509", X509: &X509Attestation{
			ClientCertificates:  &X509Certificates{Primary: &X509CertificateWithInfo{Certificate: string(root.CertPEM())}},
			SigningCertificates: &X509Certificates{Primary: &X509CertificateWithInfo{Certificate: string(root.CertPEM())}}}}}}, "attestation.x509"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.PutEnrollment(context.Background(), tc.e, "")
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field || ve.Message == "" {
				t.Fatalf("error = %v, want a validation error on %s", err, tc.field)
			}
		})
	}
}

func TestCertificateEncodingsAndInfo(t *testing.T) {
	s, _ := newSvc(t)
	root, err := pki.NewRoot("Enc Root", pki.WithValidity(time.Now().Add(-time.Hour), time.Date(2051, 1, 1, 0, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	encodings := map[string]string{
		"pem":        string(root.CertPEM()),
		"base64-pem": base64.StdEncoding.EncodeToString(root.CertPEM()),
		"base64-der": base64.StdEncoding.EncodeToString(root.Cert.Raw),
	}
	for name, enc := range encodings {
		t.Run(name, func(t *testing.T) {
			g, err := s.PutGroup(context.Background(), &EnrollmentGroup{EnrollmentGroupID: "g-" + name, Common: Common{Attestation: &AttestationMechanism{Type: "x509",
				X509: &X509Attestation{SigningCertificates: &X509Certificates{Primary: &X509CertificateWithInfo{Certificate: enc}}}}}}, "")
			if err != nil {
				t.Fatal(err)
			}
			info := g.Attestation.X509.SigningCertificates.Primary.Info
			want := &X509CertificateInfo{SubjectName: "CN=Enc Root", IssuerName: "CN=Enc Root", SHA1Thumbprint: pki.SHA1Thumbprint(root.Cert), SHA256Thumbprint: pki.SHA256Thumbprint(root.Cert),
				NotBeforeUTC: root.Cert.NotBefore.UTC(), NotAfterUTC: time.Date(2051, 1, 1, 0, 0, 0, 0, time.UTC), SerialNumber: strings.ToUpper(root.Cert.SerialNumber.Text(16)), Version: 3}
			if d := cmp.Diff(want, info); d != "" {
				t.Fatalf("info (-want +got):\n%s", d)
			}
		})
	}
}

func TestGroupsCacheSeesOwnWrites(t *testing.T) {
	s, _ := newSvc(t)
	ctx := context.Background()
	if gs, err := s.Groups(ctx, "symmetricKey"); err != nil || len(gs) != 0 {
		t.Fatalf("groups %v %v", gs, err)
	}
	if _, err := s.PutGroup(ctx, &EnrollmentGroup{EnrollmentGroupID: "G1", Common: Common{Attestation: sk()}}, ""); err != nil {
		t.Fatal(err)
	}
	gs, err := s.Groups(ctx, "symmetricKey")
	if err != nil || len(gs) != 1 || gs[0].Attestation.SymmetricKey.PrimaryKey == "" {
		t.Fatalf("groups after create: %v %v", gs, err)
	}
	if err := s.DeleteGroup(ctx, "g1", ""); err != nil {
		t.Fatal(err)
	}
	if gs, _ := s.Groups(ctx, "symmetricKey"); len(gs) != 0 {
		t.Fatalf("deleted group still attests: %v", gs)
	}
	if gs, _ := s.Groups(ctx, "x509"); len(gs) != 0 {
		t.Fatalf("x509 groups: %v", gs)
	}
}

func TestQueryPagingAndBulk(t *testing.T) {
	s, _ := newSvc(t)
	ctx := context.Background()
	var items []*IndividualEnrollment
	for _, id := range []string{"a1", "a2", "a3", "a4", "a5"} {
		items = append(items, &IndividualEnrollment{RegistrationID: id, Common: Common{Attestation: sk()}})
	}
	res, err := s.BulkEnrollments(ctx, BulkCreate, items)
	if err != nil || !res.IsSuccessful {
		t.Fatalf("bulk create: %+v %v", res, err)
	}
	res, err = s.BulkEnrollments(ctx, BulkCreate, items[:1])
	if err != nil || res.IsSuccessful || len(res.Errors) != 1 || res.Errors[0].ErrorCode != 409001 || res.Errors[0].RegistrationID != "a1" {
		t.Fatalf("duplicate create: %+v %v", res, err)
	}
	var ids []string
	cont := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		got, next, err := s.QueryEnrollments(ctx, "SELECT * FROM enrollments", cont, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range got {
			ids = append(ids, e.RegistrationID)
			if e.Attestation.SymmetricKey.PrimaryKey != "" {
				t.Fatal("query leaks keys")
			}
		}
		if next == "" {
			break
		}
		cont = next
	}
	if d := cmp.Diff([]string{"a1", "a2", "a3", "a4", "a5"}, ids); d != "" {
		t.Fatalf("paged ids:\n%s", d)
	}
	if _, _, err := s.QueryEnrollments(ctx, "SELECT * FROM enrollments WHERE x = 1", "", 10); err == nil {
		t.Fatal("unsupported query accepted")
	}
	if _, err := s.BulkEnrollments(ctx, "explode", items[:1]); err == nil {
		t.Fatal("bad mode accepted")
	}
	eleven := make([]*IndividualEnrollment, 11)
	for i := range eleven {
		eleven[i] = items[0]
	}
	if _, err := s.BulkEnrollments(ctx, BulkDelete, eleven); err == nil {
		t.Fatal("11 items accepted")
	}
	res, err = s.BulkEnrollments(ctx, BulkDelete, items)
	if err != nil || !res.IsSuccessful {
		t.Fatalf("bulk delete: %+v %v", res, err)
	}
}

func TestCAProofOfPossession(t *testing.T) {
	s, _ := newSvc(t)
	ctx := context.Background()
	ca, err := pki.NewRoot("PoP CA")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewRoot("Other CA")
	c, err := s.PutCA(ctx, "pop", string(ca.CertPEM()), "")
	if err != nil || c.IsVerified || c.Subject != "CN=PoP CA" {
		t.Fatalf("upload: %+v %v", c, err)
	}
	leaf, _ := ca.NewDevice("leaf")
	if _, err := s.PutCA(ctx, "leafy", string(leaf.CertPEM()), ""); err == nil {
		t.Fatal("a leaf was accepted as CA")
	}
	if _, err := s.VerifyCA(ctx, "pop", string(leaf.CertPEM()), ""); err == nil {
		t.Fatal("verify before a code was issued")
	}
	c, err = s.GenerateVerificationCode(ctx, "pop", c.ETag)
	if err != nil || len(c.VerificationCode) != 48 {
		t.Fatalf("code: %+v %v", c, err)
	}
	wrongCN, _ := ca.NewVerification("not-the-code")
	if _, err := s.VerifyCA(ctx, "pop", string(wrongCN.CertPEM()), ""); err == nil || !strings.Contains(err.Error(), "not the verification code") {
		t.Fatalf("wrong CN: %v", err)
	}
	wrongSigner, _ := other.NewVerification(c.VerificationCode)
	if _, err := s.VerifyCA(ctx, "pop", string(wrongSigner.CertPEM()), ""); err == nil || !strings.Contains(err.Error(), "not signed by CA") {
		t.Fatalf("wrong signer: %v", err)
	}
	proof, _ := ca.NewVerification(c.VerificationCode)
	v, err := s.VerifyCA(ctx, "pop", string(proof.CertPEM()), c.ETag)
	if err != nil || !v.IsVerified || v.VerificationCode != "" {
		t.Fatalf("verify: %+v %v", v, err)
	}
	// a group may reference a registered CA; an unknown name is refused
	if _, err := s.PutGroup(ctx, &EnrollmentGroup{EnrollmentGroupID: "g", Common: Common{Attestation: &AttestationMechanism{Type: "x509", X509: &X509Attestation{CAReferences: &X509CAReferences{Primary: "nope"}}}}}, ""); err == nil {
		t.Fatal("unknown CA reference accepted")
	}
	if _, err := s.PutGroup(ctx, &EnrollmentGroup{EnrollmentGroupID: "g", Common: Common{Attestation: &AttestationMechanism{Type: "x509", X509: &X509Attestation{CAReferences: &X509CAReferences{Primary: "pop"}}}}}, ""); err != nil {
		t.Fatal(err)
	}
}

func TestStoreETag(t *testing.T) {
	cases := map[string]string{
		`"abc"`: "abc", `W/"abc"`: "abc", "abc": "abc", "*": "*", "": "",
		RegistrationETag("abc"): "abc",
	}
	for in, want := range cases {
		if got := StoreETag(in); got != want {
			t.Errorf("StoreETag(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzPutEnrollmentJSON(f *testing.F) {
	f.Add([]byte(`{"registrationId":"dev1","attestation":{"type":"symmetricKey"},"initialTwin":{"tags":{"a":1}}}`))
	f.Add([]byte(`{"registrationId":"dev1","attestation":{"type":"x509","x509":{"clientCertificates":{"primary":{"certificate":"MIIB"}}}}}`))
	f.Add([]byte(`{"registrationId":"dev1","attestation":{"type":"tpm","tpm":{"endorsementKey":"AAAA"}},"allocationPolicy":"custom"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e IndividualEnrollment
		if json.Unmarshal(b, &e) != nil {
			return
		}
		s := NewService(memstore.New(10), ServiceOptions{})
		_, _ = s.PutEnrollment(context.Background(), &e, "")
	})
}

func TestIndividualEnrollmentNegativeCache(t *testing.T) {
	st := memstore.New(10)
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	a := NewService(st, ServiceOptions{Now: clock})
	b := NewService(st, ServiceOptions{Now: clock}) // another instance on the same store
	ctx := context.Background()
	if e, err := a.IndividualEnrollment(ctx, "late"); e != nil || err != nil {
		t.Fatalf("before create: %v %v", e, err)
	}
	// written through the same service: seen at once
	if _, err := a.PutEnrollment(ctx, &IndividualEnrollment{RegistrationID: "late", Common: Common{Attestation: sk()}}, ""); err != nil {
		t.Fatal(err)
	}
	if e, err := a.IndividualEnrollment(ctx, "LATE"); e == nil || err != nil {
		t.Fatalf("own write not seen: %v %v", e, err)
	}
	// written by another instance: seen once the cache TTL has passed
	if e, _ := a.IndividualEnrollment(ctx, "other"); e != nil {
		t.Fatal("unexpected enrollment")
	}
	if _, err := b.PutEnrollment(ctx, &IndividualEnrollment{RegistrationID: "other", Common: Common{Attestation: sk()}}, ""); err != nil {
		t.Fatal(err)
	}
	if e, _ := a.IndividualEnrollment(ctx, "other"); e != nil {
		t.Fatal("the negative cache expired early")
	}
	now = now.Add(2 * time.Second)
	if e, err := a.IndividualEnrollment(ctx, "other"); e == nil || err != nil {
		t.Fatalf("another instance's enrollment not seen after the TTL: %v %v", e, err)
	}
}

// countingDocs counts point reads of individual enrollments.
type countingDocs struct {
	store.Docs
	gets int
}

func (c *countingDocs) Get(ctx context.Context, kind store.Kind, id string) (store.Record, error) {
	if kind == store.KindEnrollment {
		c.gets++
	}
	return c.Docs.Get(ctx, kind, id)
}

// With no individual enrollments at all, a group device's lookup reads no
// record; an enrollment created by another instance is seen within the TTL,
// one created through this service at once.
func TestNoIndividualEnrollmentsSkipsLookups(t *testing.T) {
	st := memstore.New(10)
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	docs := &countingDocs{Docs: st}
	a := NewService(docs, ServiceOptions{Now: clock})
	b := NewService(st, ServiceOptions{Now: clock})
	ctx := context.Background()
	for _, id := range []string{"g-1", "g-2", "g-3"} {
		if e, err := a.IndividualEnrollment(ctx, id); e != nil || err != nil {
			t.Fatalf("%s: %v %v", id, e, err)
		}
	}
	if docs.gets != 0 {
		t.Fatalf("%d enrollment reads with no individual enrollments", docs.gets)
	}
	if _, err := b.PutEnrollment(ctx, &IndividualEnrollment{RegistrationID: "fresh", Common: Common{Attestation: sk()}}, ""); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if e, err := a.IndividualEnrollment(ctx, "fresh"); e == nil || err != nil {
		t.Fatalf("another instance's enrollment after the TTL: %v %v", e, err)
	}
	if _, err := a.PutEnrollment(ctx, &IndividualEnrollment{RegistrationID: "own", Common: Common{Attestation: sk()}}, ""); err != nil {
		t.Fatal(err)
	}
	if e, err := a.IndividualEnrollment(ctx, "own"); e == nil || err != nil {
		t.Fatalf("own enrollment: %v %v", e, err)
	}
}
