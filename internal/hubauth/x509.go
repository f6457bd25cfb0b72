package hubauth

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/registry"
)

// maxAnchorsShown caps the anchors listed in a chain_untrusted detail.
const maxAnchorsShown = 5

// authX509 authenticates an X.509 identity (selfSigned or certificateAuthority)
// by its presented chain. dev is the device (a module's device).
func (a *Authenticator) authX509(ctx context.Context, t target, dev *registry.Device, auth registry.Authentication, chain []*x509.Certificate, now time.Time) (*Identity, *Denial, error) {
	if len(chain) > MaxChainLength {
		return nil, deny(ReasonChainUntrusted,
			fmt.Sprintf("the client presented %d certificates; at most %d are accepted", len(chain), MaxChainLength),
			"send the device certificate and the CA certificates up to a trusted CA, no more"), nil
	}
	for i, c := range chain {
		if c == nil {
			return nil, deny(ReasonChainUntrusted, fmt.Sprintf("certificate %d of the presented chain is empty", i+1),
				"send the device certificate and its CA certificates"), nil
		}
	}
	leaf := chain[0]
	if auth.Type == AuthSelfSigned {
		slot, d := matchThumbprint(t, leaf, auth.X509Thumbprint)
		if d != nil {
			return nil, d, nil
		}
		if d := a.checkValidity(leaf, "the client certificate ("+dn(leaf)+")", now); d != nil {
			return nil, d, nil
		}
		return &Identity{DeviceID: t.deviceID, ModuleID: t.moduleID, AuthType: AuthSelfSigned, Credential: slot,
			CertificateExpiry: leaf.NotAfter}, nil, nil
	}

	if d := checkCN(t, leaf); d != nil {
		return nil, d, nil
	}
	if d := a.checkValidity(leaf, "the leaf certificate ("+dn(leaf)+")", now); d != nil {
		return nil, d, nil
	}
	if a.anchors == nil {
		return nil, deny(ReasonChainUntrusted,
			fmt.Sprintf("%s uses certificateAuthority authentication, but this hub has no trust anchors configured", t),
			"configure the hub with the provisioning service's CA certificates"), nil
	}
	trust, err := a.anchors.TrustAnchors(ctx, dev)
	if err != nil {
		return nil, nil, fmt.Errorf("read trust anchors for device %q: %w", dev.DeviceID, err)
	}
	an, d := a.verifyChain(t, chain, trust, now)
	if d != nil {
		return nil, d, nil
	}
	return &Identity{DeviceID: t.deviceID, ModuleID: t.moduleID, AuthType: AuthCertificateAuthority, Anchor: an.String(),
		CertificateExpiry: leaf.NotAfter}, nil, nil
}

// normalizeThumbprint upper-cases a thumbprint and drops ':' and space separators.
func normalizeThumbprint(s string) string {
	return strings.ToUpper(strings.NewReplacer(":", "", " ", "").Replace(s))
}

// matchThumbprint compares the leaf's SHA-1 and SHA-256 thumbprints with a
// selfSigned identity's registered ones (40 hex digits: SHA-1, 64: SHA-256).
func matchThumbprint(t target, leaf *x509.Certificate, tp registry.X509Thumbprint) (string, *Denial) {
	sha1, sha256 := pki.SHA1Thumbprint(leaf), pki.SHA256Thumbprint(leaf)
	var (
		have  []string
		notes []string
	)
	for i, p := range []*string{tp.PrimaryThumbprint, tp.SecondaryThumbprint} {
		if p == nil || *p == "" {
			continue
		}
		slot := keySlot(i)
		n := normalizeThumbprint(*p)
		have = append(have, fmt.Sprintf("%s %s", slot, n))
		var got string
		switch len(n) {
		case len(sha1):
			got = sha1
		case len(sha256):
			got = sha256
		default:
			notes = append(notes, fmt.Sprintf("the %s thumbprint has %d hex digits, neither SHA-1 (40) nor SHA-256 (64)", slot, len(n)))
			continue
		}
		if subtle.ConstantTimeCompare([]byte(n), []byte(got)) == 1 {
			return slot, nil
		}
	}
	registered := "no thumbprint"
	if len(have) > 0 {
		registered = strings.Join(have, " and ")
	}
	detail := fmt.Sprintf("the client certificate (%s) has SHA-1 thumbprint %s and SHA-256 thumbprint %s; %s has %s",
		dn(leaf), sha1, sha256, t, registered)
	if len(notes) > 0 {
		detail += " (" + strings.Join(notes, "; ") + ")"
	}
	return "", deny(ReasonThumbprintMismatch, detail,
		"register the certificate's thumbprint (SHA-1 or SHA-256) as the identity's primary or secondary thumbprint, or present the registered certificate")
}

// checkCN requires a CA-signed leaf's subject CN to be the device ID; for a
// module, the module ID (the documented convention) or deviceId/moduleId.
// IDs are case-sensitive, so the comparison is exact.
func checkCN(t target, leaf *x509.Certificate) *Denial {
	cn := leaf.Subject.CommonName
	want := []string{t.deviceID}
	if t.moduleID != "" {
		want = []string{t.moduleID, t.deviceID + "/" + t.moduleID}
	}
	for _, w := range want {
		if cn == w {
			return nil
		}
	}
	expect := fmt.Sprintf("the device ID %q", t.deviceID)
	if t.moduleID != "" {
		expect = fmt.Sprintf("the module ID %q or %q", t.moduleID, t.deviceID+"/"+t.moduleID)
	}
	detail := fmt.Sprintf("the leaf certificate (%s) has CN %q; %s needs %s", dn(leaf), cn, t, expect)
	if cn == "" {
		detail = fmt.Sprintf("the leaf certificate (%s) has no CN; %s needs %s", dn(leaf), t, expect)
	}
	for _, w := range want {
		if cn != "" && cn != w && strings.EqualFold(cn, w) {
			detail += " (they differ only in case; IDs are case-sensitive)"
			break
		}
	}
	return deny(ReasonCNDeviceIDMismatch, detail,
		"issue the device certificate with the device ID as its subject CN, or connect as the identity the CN names")
}

// checkValidity refuses a certificate outside its validity period (with
// the clock skew).
func (a *Authenticator) checkValidity(c *x509.Certificate, name string, now time.Time) *Denial {
	switch {
	case now.Add(-a.skew).After(c.NotAfter):
		return deny(ReasonCertificateExpired,
			fmt.Sprintf("%s expired at %s; server time is %s", name, c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)),
			"renew the certificate")
	case now.Add(a.skew).Before(c.NotBefore):
		return deny(ReasonCertificateNotYetValid,
			fmt.Sprintf("%s is not valid before %s; server time is %s", name, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)),
			"check the device's and the server's clocks, or the certificate's notBefore")
	}
	return nil
}

// verifyChain verifies the chain (leaf first, the rest as intermediates)
// to the verified anchors. When that fails but the chain verifies to an
// unverified CA, the refusal is ca_not_verified; otherwise the failure is
// diagnosed link by link.
func (a *Authenticator) verifyChain(t target, chain []*x509.Certificate, trust Trust, now time.Time) (*Anchor, *Denial) {
	var verified, unverified []Anchor
	for _, an := range trust.Anchors {
		switch {
		case an.Cert == nil:
		case an.Verified:
			verified = append(verified, an)
		default:
			unverified = append(unverified, an)
		}
	}
	inters := x509.NewCertPool()
	for _, c := range chain[1:] {
		inters.AddCert(c)
	}
	path, err := a.verifyTo(chain[0], inters, verified, now)
	if err == nil {
		if an := anchorOf(path, verified); an != nil {
			return an, nil
		}
		return nil, deny(ReasonChainUntrusted, "the chain verified to a certificate that is not one of the trust anchors", "report this as a bug")
	}
	if len(unverified) > 0 {
		if upath, uerr := a.verifyTo(chain[0], inters, unverified, now); uerr == nil {
			if an := anchorOf(upath, unverified); an != nil {
				name := an.Name
				return nil, deny(ReasonCANotVerified,
					fmt.Sprintf("the chain of %s leads to %s, which is not verified", t, an),
					fmt.Sprintf("verify CA certificate %q by proof of possession: generate a verification code and upload a certificate with that CN signed by the CA", name))
			}
		}
	}
	return nil, a.diagnose(t, chain, trust, err, now)
}

// verifyTo runs path validation from leaf to one of anchors. A leaf with
// extended key usages must allow clientAuth along the chain; one without
// any (as DPS accepts) is not restricted. Certificate validity gets the
// clock skew: a path that fails only on validity at now is tried at now
// minus and plus the skew. The error is the one at now.
func (a *Authenticator) verifyTo(leaf *x509.Certificate, inters *x509.CertPool, anchors []Anchor, now time.Time) ([]*x509.Certificate, error) {
	roots := x509.NewCertPool() // never nil: a nil pool would mean the system roots
	for _, an := range anchors {
		roots.AddCert(an.Cert)
	}
	usage := x509.ExtKeyUsageAny
	if len(leaf.ExtKeyUsage) > 0 || len(leaf.UnknownExtKeyUsage) > 0 {
		usage = x509.ExtKeyUsageClientAuth
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}
	chains, err := leaf.Verify(opts)
	if err == nil {
		return chains[0], nil
	}
	var inv x509.CertificateInvalidError
	if a.skew > 0 && errors.As(err, &inv) && inv.Reason == x509.Expired {
		for _, at := range []time.Time{now.Add(-a.skew), now.Add(a.skew)} {
			opts.CurrentTime = at
			if chains, aerr := leaf.Verify(opts); aerr == nil {
				return chains[0], nil
			}
		}
	}
	return nil, err
}

// anchorOf returns the anchor at the top of a verified path.
func anchorOf(path []*x509.Certificate, anchors []Anchor) *Anchor {
	top := path[len(path)-1]
	for i := range anchors {
		if bytes.Equal(anchors[i].Cert.Raw, top.Raw) {
			return &anchors[i]
		}
	}
	return nil
}

// certName names a certificate of the presented chain or an anchor.
func certName(c *x509.Certificate, chain []*x509.Certificate, anchors []Anchor) string {
	for i, cc := range chain {
		if bytes.Equal(cc.Raw, c.Raw) {
			if i == 0 {
				return "the leaf certificate (" + dn(c) + ")"
			}
			return fmt.Sprintf("certificate %d (%s) of the presented chain", i+1, dn(c))
		}
	}
	for _, an := range anchors {
		if an.Cert != nil && bytes.Equal(an.Cert.Raw, c.Raw) {
			return "the " + an.String()
		}
	}
	return "certificate " + dn(c)
}

// diagnose explains why the chain did not verify to a verified anchor.
func (a *Authenticator) diagnose(t target, chain []*x509.Certificate, trust Trust, verr error, now time.Time) *Denial {
	withNotes := func(s string) string {
		if len(trust.Notes) > 0 {
			s += " (" + strings.Join(trust.Notes, "; ") + ")"
		}
		return s
	}
	untrusted := func(detail string) *Denial {
		return deny(ReasonChainUntrusted, withNotes(detail),
			"send the device's chain: each certificate must be signed by the next, up to a verified CA registered with the service or the provisioning group's signing certificate")
	}
	var inv x509.CertificateInvalidError
	if errors.As(verr, &inv) && inv.Cert != nil {
		name := certName(inv.Cert, chain, trust.Anchors)
		switch inv.Reason {
		case x509.Expired:
			if d := a.checkValidity(inv.Cert, name, now); d != nil {
				return d
			}
			return untrusted(fmt.Sprintf("%s is outside its validity period: %v", name, verr))
		case x509.NotAuthorizedToSign:
			return untrusted(fmt.Sprintf("%s signs another certificate of the chain but is not a CA certificate (basicConstraints CA:TRUE and keyCertSign are required)", name))
		case x509.TooManyIntermediates:
			return untrusted(fmt.Sprintf("%s limits how many intermediate CA certificates may follow it (pathlen %d), and the chain has more", name, inv.Cert.MaxPathLen))
		case x509.IncompatibleUsage:
			return deny(ReasonEKUNotClientAuth,
				withNotes(fmt.Sprintf("the extended key usages along the chain of %s exclude clientAuth: %v", name, verr)),
				"issue the device certificate with extendedKeyUsage clientAuth and the CA certificates without an extended key usage extension, or with clientAuth")
		}
		return untrusted(fmt.Sprintf("%s: %v", name, verr))
	}
	var ua x509.UnknownAuthorityError
	if !errors.As(verr, &ua) {
		return untrusted(fmt.Sprintf("the chain of %s does not verify: %v", t, verr))
	}

	var anchors []Anchor
	for _, an := range trust.Anchors {
		if an.Cert != nil {
			anchors = append(anchors, an)
		}
	}
	if len(anchors) == 0 {
		return deny(ReasonChainUntrusted,
			withNotes(fmt.Sprintf("no trust anchor applies to %s: no CA certificate is registered with the service and the device was not provisioned through an X.509 enrollment group", t)),
			"register the CA that issued the device certificate and verify it by proof of possession, or provision the device through an X.509 enrollment group")
	}
	// The name-linked run from the leaf: chain[0..top].
	top := 0
	for top+1 < len(chain) && bytes.Equal(chain[top].RawIssuer, chain[top+1].RawSubject) {
		top++
	}
	for i := 0; i < top; i++ {
		if d := linkProblem(chain, i, anchors); d != "" {
			return untrusted(d)
		}
	}
	for i := 0; i <= top; i++ {
		c := chain[i]
		for _, an := range anchors {
			if bytes.Equal(an.Cert.RawSubject, c.RawIssuer) &&
				an.Cert.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) != nil {
				return deny(ReasonChainUntrusted,
					withNotes(fmt.Sprintf("%s names %s as its issuer, but its signature does not verify with the key of the %s",
						certName(c, chain, nil), pki.DistinguishedName(c.Issuer), an)),
					"the device's certificate was issued by a different key than the trusted CA with that name; register (and verify) the CA that really issued it")
			}
		}
	}
	c := chain[top]
	for _, an := range anchors {
		if bytes.Equal(an.Cert.RawSubject, c.RawIssuer) || bytes.Equal(an.Cert.Raw, c.Raw) {
			// The path reaches an anchor by name and key, yet does not verify.
			return untrusted(fmt.Sprintf("the chain of %s does not verify to the %s: %v", t, an, verr))
		}
	}
	trusted := describeAnchors(anchors)
	if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil {
		return deny(ReasonChainUntrusted,
			withNotes(fmt.Sprintf("the chain of %s ends at self-signed %s, which is not a trust anchor; trusted are %s", t, dn(c), trusted)),
			"register the root or an intermediate of the device's chain as a CA certificate and verify it, or provision the device through an enrollment group whose signing certificate is in the chain")
	}
	return deny(ReasonChainIncomplete,
		withNotes(fmt.Sprintf("the chain of %s ends at %s, issued by %s, which the client did not send and which is not a trust anchor; trusted are %s",
			t, certName(c, chain, nil), pki.DistinguishedName(c.Issuer), trusted)),
		"send the full chain up to a trusted CA, or register (and verify) the CA that issued the top of the chain")
}

// linkProblem says what is wrong with the link from chain[i] to its issuer
// chain[i+1] (the names match), or "" when the link is sound.
func linkProblem(chain []*x509.Certificate, i int, anchors []Anchor) string {
	child, parent := chain[i], chain[i+1]
	childName, parentName := certName(child, chain, anchors), certName(parent, chain, anchors)
	if err := parent.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature); err != nil {
		var insecure x509.InsecureAlgorithmError
		if errors.As(err, &insecure) {
			return fmt.Sprintf("%s is signed with the insecure algorithm %s", childName, child.SignatureAlgorithm)
		}
		return fmt.Sprintf("%s names %s as its issuer but is not signed by its key", childName, parentName)
	}
	if !parent.BasicConstraintsValid || !parent.IsCA {
		return fmt.Sprintf("%s signs another certificate of the chain but is not a CA certificate (basicConstraints CA:TRUE is missing)", parentName)
	}
	if parent.KeyUsage != 0 && parent.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Sprintf("%s signs another certificate of the chain but lacks the keyCertSign key usage", parentName)
	}
	return ""
}

// describeAnchors lists anchors for a detail, at most maxAnchorsShown.
func describeAnchors(anchors []Anchor) string {
	var names []string
	for i, an := range anchors {
		if i == maxAnchorsShown {
			names = append(names, fmt.Sprintf("and %d more", len(anchors)-maxAnchorsShown))
			break
		}
		s := an.String()
		if !an.Verified {
			s += " (not verified)"
		}
		names = append(names, s)
	}
	return strings.Join(names, ", ")
}
