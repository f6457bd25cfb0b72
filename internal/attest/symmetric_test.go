package attest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/sas"
)

// symSource is an in-memory Source for the symmetric-key attester tests.
type symSource struct {
	individuals []*enroll.IndividualEnrollment
	groups      []*enroll.EnrollmentGroup
	indErr      error
	groupsErr   error
	groupCalls  int
}

func (s *symSource) IndividualEnrollment(_ context.Context, registrationID string) (*enroll.IndividualEnrollment, error) {
	if s.indErr != nil {
		return nil, s.indErr
	}
	for _, e := range s.individuals {
		if strings.EqualFold(e.RegistrationID, registrationID) {
			return e, nil
		}
	}
	return nil, nil
}

func (s *symSource) Groups(_ context.Context, attestationType string) ([]*enroll.EnrollmentGroup, error) {
	s.groupCalls++
	if s.groupsErr != nil {
		return nil, s.groupsErr
	}
	var out []*enroll.EnrollmentGroup
	for _, g := range s.groups {
		if g.Attestation != nil && g.Attestation.Type == attestationType {
			out = append(out, g)
		}
	}
	return out, nil
}

func (s *symSource) CACertificate(context.Context, string) (*enroll.CACertificate, error) {
	return nil, nil
}

func symKey(t *testing.T) string {
	t.Helper()
	k, err := sas.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func symDerive(t *testing.T, groupKey, regID string) string {
	t.Helper()
	k, err := sas.DeriveKey(groupKey, regID)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func symIndividual(regID, typ, status, primary, secondary string) *enroll.IndividualEnrollment {
	e := &enroll.IndividualEnrollment{RegistrationID: regID, Common: enroll.Common{
		Attestation:        &enroll.AttestationMechanism{Type: typ},
		ProvisioningStatus: status,
	}}
	if typ == enroll.AttestationSymmetricKey {
		e.Attestation.SymmetricKey = &enroll.SymmetricKeyAttestation{PrimaryKey: primary, SecondaryKey: secondary}
	}
	return e
}

func symGroup(id, status, primary, secondary string) *enroll.EnrollmentGroup {
	return &enroll.EnrollmentGroup{EnrollmentGroupID: id, Common: enroll.Common{
		Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey,
			SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: primary, SecondaryKey: secondary}},
		ProvisioningStatus: status,
	}}
}

func TestSymmetricAttest(t *testing.T) {
	const scope = "0ne0000ABCD"
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)

	indP, indS := symKey(t), symKey(t)
	disP := symKey(t)
	bothP := symKey(t)
	grpP, grpS := symKey(t), symKey(t)
	offP := symKey(t)
	stranger := symKey(t)

	ind := symIndividual("dev-ind", enroll.AttestationSymmetricKey, enroll.StatusEnabled, indP, indS)
	mixed := symIndividual("Dev-Mixed", enroll.AttestationSymmetricKey, "", indP, indS)
	dis := symIndividual("dev-dis", enroll.AttestationSymmetricKey, enroll.StatusDisabled, disP, "")
	x509 := symIndividual("dev-x509", enroll.AttestationX509, enroll.StatusEnabled, "", "")
	both := symIndividual("dev-both", enroll.AttestationSymmetricKey, enroll.StatusEnabled, bothP, "")
	grp := symGroup("grp-a", enroll.StatusEnabled, grpP, grpS)
	off := symGroup("grp-off", enroll.StatusDisabled, offP, "")
	x509Group := &enroll.EnrollmentGroup{EnrollmentGroupID: "grp-x509", Common: enroll.Common{
		Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationX509}}}
	full := func() *symSource {
		return &symSource{
			individuals: []*enroll.IndividualEnrollment{ind, mixed, dis, x509, both},
			groups:      []*enroll.EnrollmentGroup{x509Group, off, grp},
		}
	}

	// sign makes a token the way the C#/Python SDKs do (sr URL-encoded).
	sign := func(regID, keyB64 string, expiry time.Time) string {
		k, err := sas.DecodeKey(keyB64)
		if err != nil {
			t.Fatal(err)
		}
		return sas.Sign(scope+"/registrations/"+regID, k, "registration", expiry)
	}
	signRaw := func(resource, keyB64, skn string) string {
		k, err := sas.DecodeKey(keyB64)
		if err != nil {
			t.Fatal(err)
		}
		return sas.SignRaw(resource, k, skn, exp)
	}
	validSig := "hEm%2FPbuMRj5eUD7JRpH0mT8JQIJPRExjdXl662d8SVE%3D"
	srcErr := errors.New("database is on fire")

	type denial struct {
		reason    Reason
		kind, id  string
		detailHas []string
		hintHas   []string
	}
	tests := []struct {
		name      string
		src       *symSource
		scope     string // defaults to scope
		regID     string
		token     string
		wantMatch *Match
		wantDeny  *denial
		wantErr   error
	}{
		{
			name: "individual primary", regID: "dev-ind", token: sign("dev-ind", indP, exp),
			wantMatch: &Match{Individual: ind, PrimaryKey: indP, SecondaryKey: indS, KeyUsed: "primary"},
		},
		{
			name: "individual secondary", regID: "dev-ind", token: sign("dev-ind", indS, exp),
			wantMatch: &Match{Individual: ind, PrimaryKey: indP, SecondaryKey: indS, KeyUsed: "secondary"},
		},
		{
			name: "individual, node raw sr and field order", regID: "dev-ind",
			token:     signRaw(scope+"/registrations/dev-ind", indP, "registration"),
			wantMatch: &Match{Individual: ind, PrimaryKey: indP, SecondaryKey: indS, KeyUsed: "primary"},
		},
		{
			name: "individual, python token without skn", regID: "dev-ind",
			token:     signRaw(scope+"/registrations/dev-ind", indP, ""),
			wantMatch: &Match{Individual: ind, PrimaryKey: indP, SecondaryKey: indS, KeyUsed: "primary"},
		},
		{
			name: "individual, skn in other case", regID: "dev-ind",
			token:     signRaw(scope+"/registrations/dev-ind", indP, "Registration"),
			wantMatch: &Match{Individual: ind, PrimaryKey: indP, SecondaryKey: indS, KeyUsed: "primary"},
		},
		{
			name: "expired within the clock skew is accepted", regID: "dev-ind", token: sign("dev-ind", indP, now.Add(-4*time.Minute)),
			wantMatch: &Match{Individual: ind, PrimaryKey: indP, SecondaryKey: indS, KeyUsed: "primary"},
		},
		{
			name: "case-insensitive registration id lookup", regID: "dev-mixed", token: sign("dev-mixed", indP, exp),
			wantMatch: &Match{Individual: mixed, PrimaryKey: indP, SecondaryKey: indS, KeyUsed: "primary"},
		},
		{
			name: "case-insensitive scope and resource", scope: "0NE0000abcd", regID: "DEV-IND",
			token:     signRaw(strings.ToLower(scope)+"/registrations/dev-ind", indP, "registration"),
			wantMatch: &Match{Individual: ind, PrimaryKey: indP, SecondaryKey: indS, KeyUsed: "primary"},
		},
		{
			name: "group primary-derived", regID: "grp-dev-1", token: sign("grp-dev-1", symDerive(t, grpP, "grp-dev-1"), exp),
			wantMatch: &Match{Group: grp, PrimaryKey: symDerive(t, grpP, "grp-dev-1"), SecondaryKey: symDerive(t, grpS, "grp-dev-1"), KeyUsed: "primary"},
		},
		{
			name: "group secondary-derived", regID: "grp-dev-1", token: sign("grp-dev-1", symDerive(t, grpS, "grp-dev-1"), exp),
			wantMatch: &Match{Group: grp, PrimaryKey: symDerive(t, grpP, "grp-dev-1"), SecondaryKey: symDerive(t, grpS, "grp-dev-1"), KeyUsed: "secondary"},
		},
		{
			name: "individual wins over group", regID: "dev-both", token: sign("dev-both", bothP, exp),
			wantMatch: &Match{Individual: both, PrimaryKey: bothP, KeyUsed: "primary"},
		},
		{
			name: "group-derived key refused when an individual enrollment exists", regID: "dev-both",
			token: sign("dev-both", symDerive(t, grpP, "dev-both"), exp),
			wantDeny: &denial{reason: ReasonSASSignatureMismatch, kind: "individual", id: "dev-both",
				detailHas: []string{"dev-both"}, hintHas: []string{"primary or secondary key", "grp-a", "precedence"}},
		},
		{
			name: "expired", regID: "dev-ind", token: sign("dev-ind", indP, now.Add(-time.Hour)),
			wantDeny: &denial{reason: ReasonSASExpired, detailHas: []string{"2030-06-01T11:00:00Z", "2030-06-01T12:00:00Z"}, hintHas: []string{"clock"}},
		},
		{
			name: "malformed: empty token", regID: "dev-ind", token: "",
			wantDeny: &denial{reason: ReasonSASMalformed, detailHas: []string{"empty"}, hintHas: []string{"SharedAccessSignature"}},
		},
		{
			name: "malformed: missing sig", regID: "dev-ind", token: "SharedAccessSignature sr=" + scope + "%2Fregistrations%2Fdev-ind&se=1906977600&skn=registration",
			wantDeny: &denial{reason: ReasonSASMalformed, detailHas: []string{"field sig", "missing"}},
		},
		{
			name: "malformed: se not a number", regID: "dev-ind", token: "SharedAccessSignature sr=" + scope + "%2Fregistrations%2Fdev-ind&sig=" + validSig + "&se=tomorrow",
			wantDeny: &denial{reason: ReasonSASMalformed, detailHas: []string{"field se"}},
		},
		{
			name: "malformed: signature not base64", regID: "dev-ind", token: "SharedAccessSignature sr=" + scope + "%2Fregistrations%2Fdev-ind&sig=%%%&se=1906977600",
			wantDeny: &denial{reason: ReasonSASMalformed, detailHas: []string{"field sig"}},
		},
		{
			name: "malformed: duplicate sr", regID: "dev-ind", token: "SharedAccessSignature sr=a&sr=b&sig=" + validSig + "&se=1906977600",
			wantDeny: &denial{reason: ReasonSASMalformed, detailHas: []string{"field sr", "more than once"}},
		},
		{
			name: "wrong registration id in resource", regID: "dev-ind", token: sign("dev-other", indP, exp),
			wantDeny: &denial{reason: ReasonSASResourceMismatch, detailHas: []string{scope + "/registrations/dev-other", scope + "/registrations/dev-ind"}, hintHas: []string{"registration ID"}},
		},
		{
			name: "wrong scope in resource", regID: "dev-ind", token: signRaw("0ne99999999/registrations/dev-ind", indP, "registration"),
			wantDeny: &denial{reason: ReasonSASResourceMismatch, detailHas: []string{"0ne99999999/registrations/dev-ind", scope + "/registrations/dev-ind"}},
		},
		{
			name: "wrong skn", regID: "dev-ind", token: signRaw(scope+"/registrations/dev-ind", indP, "provisioningserviceowner"),
			wantDeny: &denial{reason: ReasonSASMalformed, detailHas: []string{"skn", "provisioningserviceowner"}, hintHas: []string{"registration"}},
		},
		{
			name: "signature mismatch individual", regID: "dev-ind", token: sign("dev-ind", stranger, exp),
			wantDeny: &denial{reason: ReasonSASSignatureMismatch, kind: "individual", id: "dev-ind",
				detailHas: []string{"neither the primary nor the secondary key", "dev-ind"},
				hintHas:   []string{"the token was not signed with the enrollment's primary or secondary key"}},
		},
		{
			name: "disabled individual", regID: "dev-dis", token: sign("dev-dis", disP, exp),
			wantDeny: &denial{reason: ReasonEnrollmentDisabled, kind: "individual", id: "dev-dis", detailHas: []string{"dev-dis", "disabled"}, hintHas: []string{"enabled"}},
		},
		{
			name: "disabled individual with a wrong key reveals nothing about its status", regID: "dev-dis", token: sign("dev-dis", stranger, exp),
			wantDeny: &denial{reason: ReasonSASSignatureMismatch, kind: "individual", id: "dev-dis", detailHas: []string{"no secondary key"}},
		},
		{
			name: "individual with x509 attestation", regID: "dev-x509", token: sign("dev-x509", stranger, exp),
			wantDeny: &denial{reason: ReasonAttestationMismatch, kind: "individual", id: "dev-x509",
				detailHas: []string{"enrollment dev-x509 uses x509 attestation"}, hintHas: []string{"symmetricKey"}},
		},
		{
			name: "disabled group", regID: "off-dev", token: sign("off-dev", symDerive(t, offP, "off-dev"), exp),
			wantDeny: &denial{reason: ReasonEnrollmentDisabled, kind: "group", id: "grp-off", detailHas: []string{"grp-off", "disabled"}, hintHas: []string{"enabled"}},
		},
		{
			name: "group key used directly", regID: "grp-dev-2", token: sign("grp-dev-2", grpP, exp),
			wantDeny: &denial{reason: ReasonDerivedKeyMismatch, kind: "group", id: "grp-a",
				detailHas: []string{"primary key of enrollment group grp-a itself"},
				hintHas:   []string{"the device signed with the group key itself, not the key derived from it", "muster key derive", "--registration-id grp-dev-2"}},
		},
		{
			name: "secondary group key used directly", regID: "grp-dev-2", token: sign("grp-dev-2", grpS, exp),
			wantDeny: &denial{reason: ReasonDerivedKeyMismatch, kind: "group", id: "grp-a",
				detailHas: []string{"secondary key"}, hintHas: []string{"group key itself"}},
		},
		{
			name: "key derived from the lower-cased registration id", regID: "Grp-Dev-3", token: sign("Grp-Dev-3", symDerive(t, grpP, "grp-dev-3"), exp),
			wantDeny: &denial{reason: ReasonDerivedKeyMismatch, kind: "group", id: "grp-a",
				detailHas: []string{`"grp-dev-3"`, `"Grp-Dev-3"`}, hintHas: []string{"case-sensitive"}},
		},
		{
			name: "key derived from the upper-cased registration id", regID: "grp-dev-4", token: sign("grp-dev-4", symDerive(t, grpS, "GRP-DEV-4"), exp),
			wantDeny: &denial{reason: ReasonDerivedKeyMismatch, kind: "group", id: "grp-a",
				detailHas: []string{`"GRP-DEV-4"`, "secondary"}, hintHas: []string{"case-sensitive"}},
		},
		{
			name: "key derived for another registration id", regID: "grp-dev-5", token: sign("grp-dev-5", symDerive(t, grpP, "grp-dev-6"), exp),
			wantDeny: &denial{reason: ReasonDerivedKeyMismatch, detailHas: []string{"no symmetric-key enrollment group's derived key verifies the signature", "2 group(s)"},
				hintHas: []string{"muster key derive"}},
		},
		{
			name: "unusable group key is named", regID: "grp-dev-5",
			src:   &symSource{groups: []*enroll.EnrollmentGroup{symGroup("grp-bad", enroll.StatusEnabled, "not*base64", "")}},
			token: sign("grp-dev-5", stranger, exp),
			wantDeny: &denial{reason: ReasonDerivedKeyMismatch, detailHas: []string{"group grp-bad's primary key is unusable"},
				hintHas: []string{"muster key derive"}},
		},
		{
			name: "first verifying group decides", regID: "dup-dev",
			src: &symSource{groups: []*enroll.EnrollmentGroup{
				symGroup("grp-1-off", enroll.StatusDisabled, offP, ""), symGroup("grp-2-on", enroll.StatusEnabled, offP, "")}},
			token:    sign("dup-dev", symDerive(t, offP, "dup-dev"), exp),
			wantDeny: &denial{reason: ReasonEnrollmentDisabled, kind: "group", id: "grp-1-off", detailHas: []string{"grp-1-off"}},
		},
		{
			name: "no enrollment at all", regID: "nobody", src: &symSource{groups: []*enroll.EnrollmentGroup{x509Group}},
			token:    sign("nobody", stranger, exp),
			wantDeny: &denial{reason: ReasonEnrollmentNotFound, detailHas: []string{`"nobody"`}, hintHas: []string{"enrollment"}},
		},
		{
			name: "individual lookup fails", regID: "dev-ind", src: &symSource{indErr: srcErr},
			token: sign("dev-ind", indP, exp), wantErr: srcErr,
		},
		{
			name: "group listing fails", regID: "grp-dev-1", src: &symSource{groupsErr: srcErr},
			token: sign("grp-dev-1", symDerive(t, grpP, "grp-dev-1"), exp), wantErr: srcErr,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if src == nil {
				src = full()
			}
			sc := tc.scope
			if sc == "" {
				sc = scope
			}
			a := NewSymmetric(src, Options{Now: func() time.Time { return now }})
			m, err := a.Attest(context.Background(), sc, tc.regID, tc.token)
			switch {
			case tc.wantMatch != nil:
				if err != nil {
					t.Fatalf("Attest: %v", err)
				}
				if diff := cmp.Diff(tc.wantMatch, m); diff != "" {
					t.Errorf("Match mismatch (-want +got):\n%s", diff)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Attest error = %v, want %v", err, tc.wantErr)
				}
				var d *Denial
				if errors.As(err, &d) {
					t.Fatalf("a Source failure became a denial: %v", d)
				}
				if m != nil {
					t.Errorf("Match = %+v alongside an error", m)
				}
			default:
				if m != nil {
					t.Fatalf("Attest matched %s %s, want denial %s", m.EnrollmentKind(), m.EnrollmentID(), tc.wantDeny.reason)
				}
				var d *Denial
				if !errors.As(err, &d) {
					t.Fatalf("Attest error = %v (%T), want a *Denial", err, err)
				}
				got := denial{reason: d.Reason, kind: d.EnrollmentKind, id: d.EnrollmentID}
				want := denial{reason: tc.wantDeny.reason, kind: tc.wantDeny.kind, id: tc.wantDeny.id}
				if diff := cmp.Diff(want, got, cmp.AllowUnexported(denial{})); diff != "" {
					t.Errorf("denial mismatch (-want +got):\n%s\ndetail: %s\nhint: %s", diff, d.Detail, d.Hint)
				}
				if d.Detail == "" || d.Hint == "" {
					t.Errorf("denial %s lacks a detail or hint: %+v", d.Reason, d)
				}
				for _, s := range tc.wantDeny.detailHas {
					if !strings.Contains(d.Detail, s) {
						t.Errorf("detail %q does not contain %q", d.Detail, s)
					}
				}
				for _, s := range tc.wantDeny.hintHas {
					if !strings.Contains(d.Hint, s) {
						t.Errorf("hint %q does not contain %q", d.Hint, s)
					}
				}
				for _, key := range []string{indP, indS, disP, bothP, grpP, grpS, offP, stranger} {
					if strings.Contains(d.Detail, key) || strings.Contains(d.Hint, key) || strings.Contains(d.Error(), key) {
						t.Errorf("denial %s reveals a key", d.Reason)
					}
				}
			}
		})
	}
}

func TestNewSymmetricDefaults(t *testing.T) {
	key := symKey(t)
	raw, err := sas.DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	src := &symSource{individuals: []*enroll.IndividualEnrollment{
		symIndividual("dev", enroll.AttestationSymmetricKey, enroll.StatusEnabled, key, "")}}
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		skew    time.Duration
		expired time.Duration // how long ago the token expired
		ok      bool
	}{
		{"default skew tolerates 4m", 0, 4 * time.Minute, true},
		{"default skew refuses 6m", 0, 6 * time.Minute, false},
		{"custom skew tolerates 9m", 10 * time.Minute, 9 * time.Minute, true},
		{"negative skew means none", -time.Minute, time.Second, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewSymmetric(src, Options{Now: func() time.Time { return base }, ClockSkew: tc.skew})
			tok := sas.Sign("0ne00000001/registrations/dev", raw, "registration", base.Add(-tc.expired))
			_, err := a.Attest(context.Background(), "0ne00000001", "dev", tok)
			if tc.ok {
				if err != nil {
					t.Fatalf("Attest: %v", err)
				}
				return
			}
			var d *Denial
			if !errors.As(err, &d) || d.Reason != ReasonSASExpired {
				t.Fatalf("Attest = %v, want %s", err, ReasonSASExpired)
			}
		})
	}
	t.Run("nil Now uses the wall clock", func(t *testing.T) {
		a := NewSymmetric(src, Options{})
		tok := sas.Sign("0ne00000001/registrations/dev", raw, "registration", time.Now().Add(time.Hour))
		if _, err := a.Attest(context.Background(), "0ne00000001", "dev", tok); err != nil {
			t.Fatalf("Attest: %v", err)
		}
	})
}

// BenchmarkSymmetricGroup measures a group member's attestation with 100
// symmetric-key groups ahead of the matching one (the Azure group limit).
func BenchmarkSymmetricGroup(b *testing.B) {
	src := &symSource{}
	var last string
	for i := 0; i < 100; i++ {
		p, err := sas.GenerateKey()
		if err != nil {
			b.Fatal(err)
		}
		src.groups = append(src.groups, symGroup(fmt.Sprintf("grp-%03d", i), enroll.StatusEnabled, p, ""))
		last = p
	}
	dk, err := sas.DeriveKey(last, "bench-dev")
	if err != nil {
		b.Fatal(err)
	}
	raw, err := sas.DecodeKey(dk)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tok := sas.Sign("0ne00000001/registrations/bench-dev", raw, "registration", now.Add(time.Hour))
	a := NewSymmetric(src, Options{Now: func() time.Time { return now }})
	b.ReportAllocs()
	for b.Loop() {
		m, err := a.Attest(context.Background(), "0ne00000001", "bench-dev", tok)
		if err != nil || m.Group.EnrollmentGroupID != "grp-099" {
			b.Fatalf("Attest = %v, %v", m, err)
		}
	}
}
