package hubauth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store"
)

func TestRegistryIdentities(t *testing.T) {
	f := newFixture(t, time.Now())
	f.sasDevice("dev1", vectorKey, otherKey)
	ids := NewRegistryIdentities(f.hub)

	d, err := ids.Device(f.ctx(), "dev1")
	if err != nil {
		t.Fatal(err)
	}
	if d.DeviceID != "dev1" || d.Authentication.Type != AuthSAS {
		t.Errorf("Device(dev1) = %+v", d)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"missing device", func() error { _, err := ids.Device(f.ctx(), "nosuch"); return err }},
		{"device IDs are case-sensitive", func() error { _, err := ids.Device(f.ctx(), "DEV1"); return err }},
		{"missing module", func() error { _, err := ids.Module(f.ctx(), "dev1", "mod1"); return err }},
		{"module of a missing device", func() error { _, err := ids.Module(f.ctx(), "nosuch", "mod1"); return err }},
		{"registry without modules", func() error {
			_, err := NewRegistryIdentities(deviceOnly{f.hub}).Module(f.ctx(), "dev1", "mod1")
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, ErrNotFound) {
				t.Errorf("error %v, want ErrNotFound", err)
			}
		})
	}
}

// deviceOnly is a registry that has no module identities.
type deviceOnly struct{ hub *registry.Hub }

func (d deviceOnly) GetDevice(ctx context.Context, id string) (*registry.Device, error) {
	return d.hub.GetDevice(ctx, id)
}

// TestRegistryModules checks that module identities stored in the registry
// authenticate with their own SAS keys.
func TestRegistryModules(t *testing.T) {
	f := newFixture(t, time.Now())
	f.sasDevice("dev1", otherKey, otherKey)
	if _, err := f.hub.PutModule(f.ctx(), &registry.Module{DeviceID: "dev1", ModuleID: "mod1",
		Authentication: registry.Authentication{Type: AuthSAS, SymmetricKey: &registry.SymmetricKey{PrimaryKey: vectorKey, SecondaryKey: otherKey}}}, ""); err != nil {
		t.Fatal(err)
	}
	ids := NewRegistryIdentities(f.hub)
	m, err := ids.Module(f.ctx(), "dev1", "mod1")
	if err != nil {
		t.Fatal(err)
	}
	want := &Module{DeviceID: "dev1", ModuleID: "mod1",
		Authentication: registry.Authentication{Type: AuthSAS, SymmetricKey: &registry.SymmetricKey{PrimaryKey: vectorKey, SecondaryKey: otherKey}}}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("Module (-want +got):\n%s", diff)
	}
	a, err := New(Options{HubHostName: vectorHub, Identities: ids, Attempts: f.st, Now: func() time.Time { return time.Unix(vectorExpiry-60, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		req        Request
		wantModule string
		wantReason Reason
	}{
		{"module token", Request{ClientID: "dev1/mod1", Username: nodeModuleUsername, Password: vectorModuleToken}, "mod1", ""},
		{"removed module", Request{ClientID: "dev1/gone", Username: vectorHub + "/dev1/gone/", Password: sas.Sign(vectorHub+"/devices/dev1/modules/gone", key(t, vectorKey), "", time.Unix(vectorExpiry, 0))}, "", ReasonModuleNotFound},
	}
	if _, err := f.hub.PutModule(f.ctx(), &registry.Module{DeviceID: "dev1", ModuleID: "gone"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.hub.RemoveModule(f.ctx(), "dev1", "gone", ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authenticate(f.ctx(), tc.req)
			if tc.wantReason != "" {
				var d *Denial
				if !errors.As(err, &d) || d.Reason != tc.wantReason {
					t.Errorf("Authenticate = %+v, %v; want a %s denial", id, err, tc.wantReason)
				}
				return
			}
			if err != nil || id.DeviceID != "dev1" || id.ModuleID != tc.wantModule || id.Credential != "primary" {
				t.Errorf("Authenticate = %+v, %v", id, err)
			}
		})
	}
}

// failingDevices is a registry whose storage fails.
type failingDevices struct{ err error }

func (f failingDevices) GetDevice(ctx context.Context, id string) (*registry.Device, error) {
	return nil, f.err
}

// failingTrust is an enrollment service whose storage fails.
type failingTrust struct{ err error }

func (f failingTrust) GetGroup(ctx context.Context, id string) (*enroll.EnrollmentGroup, error) {
	return nil, f.err
}
func (f failingTrust) CACertificate(ctx context.Context, name string) (*enroll.CACertificate, error) {
	return nil, f.err
}
func (f failingTrust) ListCAs(ctx context.Context) ([]*enroll.CACertificate, error) {
	return nil, f.err
}

// TestAuthenticateServiceFailure checks that a failing registry or
// enrollment service is an error, not a denial: the client gets "server
// unavailable" and nothing is written to the attempt log.
func TestAuthenticateServiceFailure(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	must := issuer(t)
	root := must(pki.NewRoot("Root"))
	leaf := must(root.NewDevice("d1"))
	storageDown := errors.New("storage is down")

	f := newFixture(t, now)
	f.caDevice("d1", "")
	tests := []struct {
		name string
		opts Options
		req  Request
	}{
		{"registry fails", Options{Identities: NewRegistryIdentities(failingDevices{storageDown})},
			Request{ClientID: "dev1", Username: nodeDeviceUsername, Password: vectorDeviceToken}},
		{"registry fails under a policy token", Options{Identities: NewRegistryIdentities(failingDevices{storageDown}), Policies: testPolicies},
			Request{ClientID: "dev1", Username: nodeDeviceUsername, Password: vectorServiceToken}},
		{"enrollment service fails", Options{Identities: f.ids, Anchors: NewEnrollmentAnchors(failingTrust{storageDown})},
			Request{ClientID: "d1", Username: vectorHub + "/d1/", Chain: chainOf(leaf)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.HubHostName, o.Attempts, o.Now = vectorHub, f.st, func() time.Time { return time.Unix(vectorExpiry-60, 0) }
			if tc.req.Chain != nil {
				o.Now = func() time.Time { return now }
			}
			a, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			id, err := a.Authenticate(f.ctx(), tc.req)
			if id != nil || !errors.Is(err, storageDown) {
				t.Fatalf("Authenticate = %+v, %v; want an error wrapping %v", id, err, storageDown)
			}
			var d *Denial
			if errors.As(err, &d) {
				t.Errorf("a service failure is a denial: %v", d)
			}
			if got := ConnackCode(err); got != ConnackServerUnavailable {
				t.Errorf("ConnackCode = %d, want %d", got, ConnackServerUnavailable)
			}
			dev, _, _ := strings.Cut(tc.req.ClientID, "/")
			if got, _ := f.st.Attempts(f.ctx(), dev, 10); len(got) != 0 {
				t.Errorf("a service failure was logged as an attempt: %+v", got)
			}
		})
	}
}

func TestEnrollmentAnchors(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	must := issuer(t)
	f := newFixture(t, now)
	rootA := must(pki.NewRoot("Root A"))
	rootB := must(pki.NewRoot("Root B"))
	rootC := must(pki.NewRoot("Root C"))
	signer := must(rootC.NewIntermediate("Signer"))
	f.registerCA("a", rootA, true)
	f.registerCA("b", rootB, false)
	f.x509Group("grp", signer, "b")
	f.x509Group("grp-ref", nil, "a")
	if _, err := f.enr.PutGroup(f.ctx(), &enroll.EnrollmentGroup{EnrollmentGroupID: "sym",
		Common: enroll.Common{Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{}}}}, ""); err != nil {
		t.Fatal(err)
	}
	caA := Anchor{Cert: rootA.Cert, Source: AnchorCACertificate, Name: "a", Verified: true}
	caB := Anchor{Cert: rootB.Cert, Source: AnchorCACertificate, Name: "b"}
	provisioned := func(group string) *registry.Device {
		return &registry.Device{DeviceID: "d1", ProvisionedBy: &registry.Provenance{RegistrationID: "d1", EnrollmentGroupID: group}}
	}
	tests := []struct {
		name   string
		device *registry.Device
		want   Trust
	}{
		{"device without provenance: registered CAs only", &registry.Device{DeviceID: "d1"},
			Trust{Anchors: []Anchor{caA, caB}}},
		{"group signing certificate; its CA reference is a registered CA already", provisioned("grp"),
			Trust{Anchors: []Anchor{caA, caB, {Cert: signer.Cert, Source: AnchorSigningCertificate, GroupID: "grp", Slot: "primary", Verified: true}}}},
		{"group of another attestation type", provisioned("sym"),
			Trust{Anchors: []Anchor{caA, caB}, Notes: []string{`device "d1" was provisioned by enrollment group sym, which has symmetricKey attestation, not x509`}}},
		{"deleted group", provisioned("deleted"),
			Trust{Anchors: []Anchor{caA, caB}, Notes: []string{`device "d1" was provisioned by enrollment group deleted, which no longer exists`}}},
	}
	ea := NewEnrollmentAnchors(f.enr)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ea.TrustAnchors(f.ctx(), tc.device)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b *x509.Certificate) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("TrustAnchors (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("CA reference to a CA that is not listed", func(t *testing.T) {
		// The listing is a snapshot: a reference it misses is read by name,
		// and a reference to a deleted CA becomes a note.
		src := &staleList{EnrollmentTrust: f.enr}
		got, err := NewEnrollmentAnchors(src).TrustAnchors(f.ctx(), provisioned("grp-ref"))
		if err != nil {
			t.Fatal(err)
		}
		want := Trust{Anchors: []Anchor{{Cert: rootA.Cert, Source: AnchorCAReference, Name: "a", GroupID: "grp-ref", Slot: "primary", Verified: true}}}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b *x509.Certificate) bool { return a.Equal(b) })); diff != "" {
			t.Errorf("TrustAnchors (-want +got):\n%s", diff)
		}
		if err := f.enr.DeleteCA(f.ctx(), "a", ""); err != nil {
			t.Fatal(err)
		}
		got, err = NewEnrollmentAnchors(src).TrustAnchors(f.ctx(), provisioned("grp-ref"))
		if err != nil {
			t.Fatal(err)
		}
		want = Trust{Notes: []string{`enrollment group grp-ref references CA certificate "a", which does not exist`}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("TrustAnchors (-want +got):\n%s", diff)
		}
	})
}

// staleList is an enrollment service whose CA listing is empty.
type staleList struct{ EnrollmentTrust }

func (s *staleList) ListCAs(ctx context.Context) ([]*enroll.CACertificate, error) { return nil, nil }

func TestCertCache(t *testing.T) {
	must := issuer(t)
	c := pki.NewParseCache(2)
	var pems []string
	for i := range 3 {
		pems = append(pems, string(must(pki.NewRoot(fmt.Sprintf("Root %d", i))).CertPEM()))
	}
	for round := range 2 {
		for i, p := range pems {
			certs, err := c.Parse(p)
			if err != nil {
				t.Fatalf("round %d: parse %d: %v", round, i, err)
			}
			if want := fmt.Sprintf("Root %d", i); certs[0].Subject.CommonName != want {
				t.Errorf("round %d: parse %d = %s, want %s", round, i, certs[0].Subject.CommonName, want)
			}
		}
	}
	if got := c.Len(); got != 2 {
		t.Errorf("cache holds %d entries, want its bound 2", got)
	}
	for range 2 {
		if _, err := c.Parse("not a certificate"); err == nil {
			t.Error("parse of garbage succeeded")
		}
	}
}

func TestNewOptions(t *testing.T) {
	st := newFixture(t, time.Now()).st
	ids := NewRegistryIdentities(failingDevices{})
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no host", Options{Identities: ids, Attempts: st}, `hub host name "" is not a host name`},
		{"host with a path", Options{HubHostName: "hub/x", Identities: ids, Attempts: st}, `hub host name "hub/x"`},
		{"no identities", Options{HubHostName: vectorHub, Attempts: st}, "Options.Identities is required"},
		{"no attempt log", Options{HubHostName: vectorHub, Identities: ids}, "Options.Attempts is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error %v, want one containing %q", err, tc.want)
			}
		})
	}
	a, err := New(Options{HubHostName: " " + vectorHub + " ", Identities: ids, Attempts: st})
	if err != nil {
		t.Fatal(err)
	}
	if a.HubHostName() != vectorHub {
		t.Errorf("HubHostName = %q", a.HubHostName())
	}
}

func TestConnackCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want byte
	}{
		{"accepted", nil, ConnackAccepted},
		{"not authorized", deny(ReasonSASExpired, "d", "h"), ConnackNotAuthorized},
		{"identifier rejected", deny(ReasonClientIDMismatch, "d", "h"), ConnackIdentifierRejected},
		{"bad username", deny(ReasonUsernameMalformed, "d", "h"), ConnackBadUsernameOrPassword},
		{"wrapped denial", fmt.Errorf("connect: %w", deny(ReasonDeviceDisabled, "d", "h")), ConnackNotAuthorized},
		{"service failure", store.ErrNotFound, ConnackServerUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ConnackCode(tc.err); got != tc.want {
				t.Errorf("ConnackCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestIdentityClientIDAndAnchorString(t *testing.T) {
	must := issuer(t)
	root := must(pki.NewRoot("Root"))
	tests := []struct {
		name, got, want string
	}{
		{"device client id", (&Identity{DeviceID: "d"}).ClientID(), "d"},
		{"module client id", (&Identity{DeviceID: "d", ModuleID: "$edgeHub"}).ClientID(), "d/$edgeHub"},
		{"CA certificate", Anchor{Cert: root.Cert, Source: AnchorCACertificate, Name: "r"}.String(), `CA certificate "r" (CN=Root)`},
		{"signing certificate", Anchor{Cert: root.Cert, Source: AnchorSigningCertificate, GroupID: "g", Slot: "secondary"}.String(),
			"secondary signing certificate (CN=Root) of enrollment group g"},
		{"CA reference", Anchor{Cert: root.Cert, Source: AnchorCAReference, Name: "r", GroupID: "g"}.String(),
			`CA certificate "r" (CN=Root) referenced by enrollment group g`},
		{"denial text", deny(ReasonDeviceDisabled, `device "d" is disabled`, "enable it").Error(),
			`hub connection denied: device_disabled: device "d" is disabled`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}
