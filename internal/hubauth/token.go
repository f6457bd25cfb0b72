package hubauth

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
)

// Hints shared by several SAS denials.
const (
	hintIdentityToken = "sign the token for {hub}/devices/{deviceId} (a module: {hub}/devices/{deviceId}/modules/{moduleId}) with the identity's own key and no skn"
	hintFreshToken    = "check the client's clock (NTP) and sign a fresh token; SDKs renew tokens before they expire"
)

// resource returns the resource URI of a target: {hub}/devices/{id}[/modules/{mid}].
func (a *Authenticator) resource(t target) string {
	r := a.host + "/devices/" + t.deviceID
	if t.moduleID != "" {
		r += "/modules/" + t.moduleID
	}
	return r
}

// checkExpiry refuses an expired token.
func (a *Authenticator) checkExpiry(tok *sas.Token, now time.Time) *Denial {
	if err := tok.CheckExpiry(now, a.skew); err != nil {
		return deny(ReasonSASExpired,
			fmt.Sprintf("the SAS token expired at %s; server time is %s (clock skew tolerance %s)",
				tok.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), a.skew),
			hintFreshToken)
	}
	return nil
}

// decodedResource returns the token's sr, URL-decoded.
func decodedResource(tok *sas.Token) (string, *Denial) {
	res, err := tok.DecodedResource()
	if err != nil {
		return "", deny(ReasonSASMalformed, err.Error(), "URL-encode the token's sr field consistently")
	}
	return res, nil
}

// policyCovers reports whether a policy token's decoded resource covers the
// target: the hub host (case-insensitively), optionally followed by a path
// that is a segment prefix of the target's resource path.
func (a *Authenticator) policyCovers(res string, t target) bool {
	host, path, _ := strings.Cut(res, "/")
	if !strings.EqualFold(host, a.host) {
		return false
	}
	path = strings.Trim(path, "/")
	if path == "" {
		return true
	}
	full := strings.TrimPrefix(a.resource(t), a.host+"/")
	return strings.EqualFold(path, full) || (len(full) > len(path) && strings.EqualFold(full[:len(path)], path) && full[len(path)] == '/')
}

// policyToken authenticates with a token signed by a hub policy's key:
// the policy must exist in the hub realm, its token must cover the target,
// be unexpired and verify with one of the policy's keys, and the policy
// must hold DeviceConnect. The identity must then exist and be enabled;
// its own authentication type does not matter.
func (a *Authenticator) policyToken(ctx context.Context, t target, tok *sas.Token, now time.Time) (*Identity, *Denial, error) {
	hintPolicy := "sign with the key of a hub policy that has DeviceConnect (for example \"device\" or \"iothubowner\"), or with the identity's own key and no skn"
	if a.policies == nil {
		return nil, deny(ReasonPolicyNotFound,
			fmt.Sprintf("the token names shared access policy %s (skn), but this hub accepts no policy tokens for device connections", quote(tok.KeyName)),
			"sign the token with the identity's own key and no skn"), nil
	}
	p, ok := a.policies.Policy(tok.KeyName)
	if !ok {
		return nil, deny(ReasonPolicyNotFound,
			fmt.Sprintf("the token names shared access policy %s (skn), which this hub does not have", quote(tok.KeyName)), hintPolicy), nil
	}
	if !strings.EqualFold(p.Realm, RealmHub) {
		return nil, deny(ReasonPolicyNotFound,
			fmt.Sprintf("the token names shared access policy %q, which belongs to realm %q, not the hub", p.Name, p.Realm), hintPolicy), nil
	}
	res, d := decodedResource(tok)
	if d != nil {
		return nil, d, nil
	}
	if !a.policyCovers(res, t) {
		return nil, deny(ReasonSASResourceMismatch,
			fmt.Sprintf("the token of policy %q has resource (sr) %s, which does not cover %s: expected %q or a path prefix of %q",
				p.Name, quote(res), t, a.host, a.resource(t)),
			"sign policy tokens for the hub host name ({hub}), or for the identity's resource"), nil
	}
	if d := a.checkExpiry(tok, now); d != nil {
		return nil, d, nil
	}
	keys, notes := decodeKeys("policy "+fmt.Sprintf("%q", p.Name), p.PrimaryKey, p.SecondaryKey)
	i := tok.VerifyKeys(keys)
	if i < 0 {
		detail := fmt.Sprintf("the token is signed with neither the primary nor the secondary key of policy %q", p.Name)
		if len(notes) > 0 {
			detail += " (" + strings.Join(notes, "; ") + ")"
		}
		return nil, deny(ReasonSASSignatureMismatch, detail,
			"sign the token with the policy's current key (keys change when they are regenerated)"), nil
	}
	if !slices.ContainsFunc(p.Rights, func(r string) bool { return strings.EqualFold(r, RightDeviceConnect) }) {
		return nil, deny(ReasonPolicyLacksDeviceConnect,
			fmt.Sprintf("policy %q has the rights [%s] but not %s", p.Name, strings.Join(p.Rights, ", "), RightDeviceConnect),
			"use a policy with DeviceConnect (for example \"device\" or \"iothubowner\"), or the identity's own key"), nil
	}
	dev, _, d, err := a.lookup(ctx, t)
	if d != nil || err != nil {
		return nil, d, err
	}
	if d := disabled(t, dev); d != nil {
		return nil, d, nil
	}
	return &Identity{DeviceID: t.deviceID, ModuleID: t.moduleID, AuthType: AuthSAS, PolicyName: p.Name,
		Credential: keySlot(i), TokenExpiry: tok.Expiry.Add(a.skew)}, nil, nil
}

// identityToken authenticates with a token signed by the identity's own
// symmetric key; its resource must be exactly the identity's.
func (a *Authenticator) identityToken(t target, tok *sas.Token, auth registry.Authentication, now time.Time) (*Identity, *Denial) {
	res, d := decodedResource(tok)
	if d != nil {
		return nil, d
	}
	if want := a.resource(t); !strings.EqualFold(res, want) {
		return nil, deny(ReasonSASResourceMismatch,
			fmt.Sprintf("the token's resource (sr) is %s; %s needs %q", quote(res), t, want), hintIdentityToken)
	}
	if d := a.checkExpiry(tok, now); d != nil {
		return nil, d
	}
	var primary, secondary string
	if k := auth.SymmetricKey; k != nil {
		primary, secondary = k.PrimaryKey, k.SecondaryKey
	}
	keys, notes := decodeKeys(t.String(), primary, secondary)
	i := tok.VerifyKeys(keys)
	if i < 0 {
		detail := fmt.Sprintf("the token is signed with neither the primary nor the secondary key of %s", t)
		if len(notes) > 0 {
			detail += " (" + strings.Join(notes, "; ") + ")"
		}
		return nil, deny(ReasonSASSignatureMismatch, detail,
			"sign the token with the identity's current key (from its connection string; keys change when they are regenerated)")
	}
	return &Identity{DeviceID: t.deviceID, ModuleID: t.moduleID, AuthType: AuthSAS, Credential: keySlot(i), TokenExpiry: tok.Expiry.Add(a.skew)}, nil
}

// decodeKeys decodes a primary and a secondary base64 key. A missing or
// undecodable key is nil (never verifies) and described in notes.
func decodeKeys(owner, primary, secondary string) ([][]byte, []string) {
	keys := make([][]byte, 2)
	var notes []string
	for i, k := range []string{primary, secondary} {
		if k == "" {
			notes = append(notes, fmt.Sprintf("%s has no %s key", owner, keySlot(i)))
			continue
		}
		raw, err := sas.DecodeKey(k)
		if err != nil {
			notes = append(notes, fmt.Sprintf("the %s key of %s does not decode: %v", keySlot(i), owner, err))
			continue
		}
		keys[i] = raw
	}
	return keys, notes
}

func keySlot(i int) string {
	if i == 1 {
		return "secondary"
	}
	return "primary"
}
