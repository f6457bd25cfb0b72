package attest

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/sas"
)

// symDefaultSkew is the tolerance used when Options.ClockSkew is zero.
const symDefaultSkew = 5 * time.Minute

// symRegistrationKeyName is the only skn a device registration token may carry.
const symRegistrationKeyName = "registration"

// Key names reported in Match.KeyUsed.
const (
	KeyPrimary   = "primary"
	KeySecondary = "secondary"
)

// Symmetric attests devices that present a SAS token signed with a
// symmetric key: an individual enrollment's own key, or a key derived from
// a symmetric-key enrollment group's key and the registration ID.
type Symmetric struct {
	src  Source
	now  func() time.Time
	skew time.Duration
}

// NewSymmetric returns a symmetric-key attester reading enrollments from src.
func NewSymmetric(src Source, opts Options) *Symmetric {
	a := &Symmetric{src: src, now: opts.Now, skew: opts.ClockSkew}
	if a.now == nil {
		a.now = time.Now
	}
	if a.skew == 0 {
		a.skew = symDefaultSkew
	}
	if a.skew < 0 {
		a.skew = 0
	}
	return a
}

// Attest checks the SAS token a device sent to register registrationID in
// idScope. It returns the matching enrollment, a *Denial naming the precise
// reason (including ReasonEnrollmentDisabled once the device has proved its
// key), or a wrapped error from the Source.
//
// An individual enrollment for the registration ID takes precedence over
// enrollment groups; otherwise the first symmetric-key group (in the
// Source's order) whose derived primary or secondary key verifies the
// signature matches.
func (a *Symmetric) Attest(ctx context.Context, idScope, registrationID, token string) (*Match, error) {
	tok, d := a.checkToken(idScope, registrationID, token)
	if d != nil {
		return nil, d
	}
	ie, err := a.src.IndividualEnrollment(ctx, registrationID)
	if err != nil {
		return nil, fmt.Errorf("look up individual enrollment %q: %w", registrationID, err)
	}
	if ie != nil {
		return a.attestIndividual(ctx, tok, registrationID, ie)
	}
	groups, err := a.src.Groups(ctx, enroll.AttestationSymmetricKey)
	if err != nil {
		return nil, fmt.Errorf("list symmetric-key enrollment groups: %w", err)
	}
	set := symGroupKeys(groups)
	if m, err := set.match(tok, registrationID); m != nil || err != nil {
		return m, err
	}
	return nil, set.diagnose(tok, registrationID)
}

// checkToken parses the token and checks its expiry, resource and key name.
func (a *Symmetric) checkToken(idScope, registrationID, token string) (*sas.Token, *Denial) {
	tok, err := sas.Parse(token)
	if err != nil {
		return nil, &Denial{Reason: ReasonSASMalformed, Detail: err.Error(),
			Hint: "send a token of the form \"SharedAccessSignature sr={idScope}%2Fregistrations%2F{registrationId}&sig={signature}&se={expiry}&skn=registration\""}
	}
	now := a.now()
	if err := tok.CheckExpiry(now, a.skew); err != nil {
		return nil, &Denial{Reason: ReasonSASExpired,
			Detail: fmt.Sprintf("the token expired at %s; server time is %s (clock skew tolerance %s)",
				tok.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), a.skew),
			Hint: "check the device's clock (NTP) and sign a fresh token before each registration"}
	}
	res, err := tok.DecodedResource()
	if err != nil {
		return nil, &Denial{Reason: ReasonSASMalformed, Detail: err.Error(),
			Hint: "URL-encode the token's sr field consistently"}
	}
	want := idScope + "/registrations/" + registrationID
	if !strings.EqualFold(res, want) {
		return nil, &Denial{Reason: ReasonSASResourceMismatch,
			Detail: fmt.Sprintf("the token's resource (sr) is %q, expected %q", res, want),
			Hint:   "sign the token for {idScope}/registrations/{registrationId} with the same ID scope and registration ID the device registers with"}
	}
	if tok.KeyName != "" && !strings.EqualFold(tok.KeyName, symRegistrationKeyName) {
		return nil, &Denial{Reason: ReasonSASMalformed,
			Detail: fmt.Sprintf("the token's key name (skn) is %q; a device registration token carries skn=registration or none", tok.KeyName),
			Hint:   "sign the registration token with the device key and skn=registration, not with a service policy key"}
	}
	return tok, nil
}

// attestIndividual verifies the token against an individual enrollment.
func (a *Symmetric) attestIndividual(ctx context.Context, tok *sas.Token, registrationID string, ie *enroll.IndividualEnrollment) (*Match, error) {
	deny := func(r Reason, detail, hint string) *Denial {
		return &Denial{Reason: r, Detail: detail, Hint: hint, EnrollmentKind: "individual", EnrollmentID: ie.RegistrationID}
	}
	if ie.Attestation == nil || ie.Attestation.Type != enroll.AttestationSymmetricKey {
		typ := "no"
		if ie.Attestation != nil && ie.Attestation.Type != "" {
			typ = ie.Attestation.Type
		}
		return nil, deny(ReasonAttestationMismatch,
			fmt.Sprintf("enrollment %s uses %s attestation, but the device sent a SAS token", ie.RegistrationID, typ),
			"authenticate the device as its enrollment requires, or change the enrollment's attestation to symmetricKey")
	}
	var primary, secondary string
	if sk := ie.Attestation.SymmetricKey; sk != nil {
		primary, secondary = sk.PrimaryKey, sk.SecondaryKey
	}
	var (
		problems []string
		keys     = make([][]byte, 2)
	)
	for i, b64 := range [2]string{primary, secondary} {
		if b64 == "" {
			problems = append(problems, "it has no "+symKeyName(i)+" key")
			continue
		}
		k, err := sas.DecodeKey(b64)
		if err != nil {
			problems = append(problems, fmt.Sprintf("its %s key is unusable (%v)", symKeyName(i), err))
			continue
		}
		keys[i] = k
	}
	if i := tok.VerifyKeys(keys); i >= 0 {
		if strings.EqualFold(ie.ProvisioningStatus, enroll.StatusDisabled) {
			return nil, deny(ReasonEnrollmentDisabled,
				fmt.Sprintf("individual enrollment %s is disabled", ie.RegistrationID),
				"set the enrollment's provisioningStatus to enabled to let the device register")
		}
		return &Match{Individual: ie, PrimaryKey: primary, SecondaryKey: secondary, KeyUsed: symKeyName(i)}, nil
	}
	detail := fmt.Sprintf("the signature verifies with neither the primary nor the secondary key of individual enrollment %s", ie.RegistrationID)
	if len(problems) > 0 {
		detail += "; " + strings.Join(problems, ", ")
	}
	hint := "the token was not signed with the enrollment's primary or secondary key"
	// Explain the most likely confusion: the device holds a group-derived
	// key, but its individual enrollment takes precedence over groups.
	groups, err := a.src.Groups(ctx, enroll.AttestationSymmetricKey)
	if err != nil {
		return nil, fmt.Errorf("list symmetric-key enrollment groups: %w", err)
	}
	set := symGroupKeys(groups)
	if gi, _, _ := set.find(tok, func(k []byte) []byte { return sas.Derive(k, registrationID) }); gi >= 0 {
		hint += fmt.Sprintf("; it was signed with a key derived from enrollment group %s, but an individual enrollment takes precedence over groups: delete the individual enrollment or give the device its key", set.groups[gi].EnrollmentGroupID)
	}
	return nil, deny(ReasonSASSignatureMismatch, detail, hint)
}

// symKeyName names key i of a primary/secondary pair.
func symKeyName(i int) string {
	if i == 0 {
		return KeyPrimary
	}
	return KeySecondary
}

// symGroupSet is the symmetric-key enrollment groups with their decoded keys.
type symGroupSet struct {
	groups []*enroll.EnrollmentGroup
	// keys[i] are groups[i]'s decoded primary and secondary keys (nil when
	// absent or not base64).
	keys [][2][]byte
	// problems describe keys that could not be decoded.
	problems []string
}

// symGroupKeys keeps the symmetric-key groups among groups and decodes their keys.
func symGroupKeys(groups []*enroll.EnrollmentGroup) *symGroupSet {
	set := &symGroupSet{}
	for _, g := range groups {
		if g == nil || g.Attestation == nil || g.Attestation.Type != enroll.AttestationSymmetricKey || g.Attestation.SymmetricKey == nil {
			continue
		}
		var pair [2][]byte
		for i, b64 := range [2]string{g.Attestation.SymmetricKey.PrimaryKey, g.Attestation.SymmetricKey.SecondaryKey} {
			if b64 == "" {
				continue
			}
			k, err := sas.DecodeKey(b64)
			if err != nil {
				set.problems = append(set.problems, fmt.Sprintf("group %s's %s key is unusable (%v)", g.EnrollmentGroupID, symKeyName(i), err))
				continue
			}
			pair[i] = k
		}
		set.groups = append(set.groups, g)
		set.keys = append(set.keys, pair)
	}
	return set
}

// find turns every group key into a device key with derive and returns the
// index of the first group whose key verifies tok, which of its keys did
// (0 primary, 1 secondary), and the device keys of all groups (flattened:
// group i's at 2i and 2i+1). gi is -1 when none verifies.
func (s *symGroupSet) find(tok *sas.Token, derive func([]byte) []byte) (gi, ki int, deviceKeys [][]byte) {
	deviceKeys = make([][]byte, 2*len(s.keys))
	for i, pair := range s.keys {
		for k, key := range pair {
			if key != nil {
				deviceKeys[2*i+k] = derive(key)
			}
		}
	}
	idx := tok.VerifyKeys(deviceKeys)
	if idx < 0 {
		return -1, -1, deviceKeys
	}
	return idx / 2, idx % 2, deviceKeys
}

// match returns the match of the first group whose key derived for
// registrationID verifies the token, a *Denial if that group is disabled,
// or nil, nil when none verifies.
func (s *symGroupSet) match(tok *sas.Token, registrationID string) (*Match, error) {
	gi, ki, dk := s.find(tok, func(k []byte) []byte { return sas.Derive(k, registrationID) })
	if gi < 0 {
		return nil, nil
	}
	g := s.groups[gi]
	if strings.EqualFold(g.ProvisioningStatus, enroll.StatusDisabled) {
		return nil, &Denial{Reason: ReasonEnrollmentDisabled,
			Detail:         fmt.Sprintf("enrollment group %s is disabled", g.EnrollmentGroupID),
			Hint:           "set the group's provisioningStatus to enabled to let its devices register",
			EnrollmentKind: "group", EnrollmentID: g.EnrollmentGroupID}
	}
	m := &Match{Group: g, KeyUsed: symKeyName(ki)}
	if k := dk[2*gi]; k != nil {
		m.PrimaryKey = base64.StdEncoding.EncodeToString(k)
	}
	if k := dk[2*gi+1]; k != nil {
		m.SecondaryKey = base64.StdEncoding.EncodeToString(k)
	}
	return m, nil
}

// diagnose explains why no group verified the token.
func (s *symGroupSet) diagnose(tok *sas.Token, registrationID string) *Denial {
	if len(s.groups) == 0 {
		return &Denial{Reason: ReasonEnrollmentNotFound,
			Detail: fmt.Sprintf("no individual enrollment for registration ID %q and no symmetric-key enrollment group", registrationID),
			Hint:   "create an individual enrollment for the device, or a symmetric-key enrollment group and give the device the key derived from the group key"}
	}
	groupDeny := func(gi int, detail, hint string) *Denial {
		id := s.groups[gi].EnrollmentGroupID
		return &Denial{Reason: ReasonDerivedKeyMismatch, Detail: detail, Hint: hint, EnrollmentKind: "group", EnrollmentID: id}
	}
	// The group key itself, used as the device key.
	if gi, ki, _ := s.find(tok, func(k []byte) []byte { return k }); gi >= 0 {
		return groupDeny(gi,
			fmt.Sprintf("the token is signed with the %s key of enrollment group %s itself", symKeyName(ki), s.groups[gi].EnrollmentGroupID),
			fmt.Sprintf("the device signed with the group key itself, not the key derived from it; derive the device key with `muster key derive --group-key <group key> --registration-id %s` and keep the group key off the device", registrationID))
	}
	// A key derived from the registration ID in another letter case.
	for _, v := range [2]string{strings.ToLower(registrationID), strings.ToUpper(registrationID)} {
		if v == registrationID {
			continue
		}
		if gi, ki, _ := s.find(tok, func(k []byte) []byte { return sas.Derive(k, v) }); gi >= 0 {
			return groupDeny(gi,
				fmt.Sprintf("the token is signed with a key derived from enrollment group %s's %s key for registration ID %q, but the device registers as %q", s.groups[gi].EnrollmentGroupID, symKeyName(ki), v, registrationID),
				fmt.Sprintf("the key derivation is case-sensitive: derive the device key from exactly %q (`muster key derive --group-key <group key> --registration-id %s`), or register the device as %q", registrationID, registrationID, v))
		}
	}
	detail := fmt.Sprintf("no symmetric-key enrollment group's derived key verifies the signature (%d group(s) tried)", len(s.groups))
	if len(s.problems) > 0 {
		detail += "; " + strings.Join(s.problems, ", ")
	}
	return &Denial{Reason: ReasonDerivedKeyMismatch, Detail: detail,
		Hint: fmt.Sprintf("give the device the key derived from its group's primary or secondary key for exactly this registration ID (`muster key derive --group-key <group key> --registration-id %s`), or create an individual enrollment for it", registrationID)}
}
