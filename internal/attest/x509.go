package attest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
)

// Where the trust anchor of an X.509 match came from (Match.AnchorSource).
const (
	AnchorClientCertificate  = "clientCertificate"
	AnchorSigningCertificate = "signingCertificate"
	AnchorCAReference        = "caReference"
)

// Enrollment kinds as Denial.EnrollmentKind names them.
const (
	kindIndividual = "individual"
	kindGroup      = "group"
)

// x509DefaultSkew is the tolerance on certificate validity when
// Options.ClockSkew is zero.
const x509DefaultSkew = 5 * time.Minute

// x509MaxChainLength bounds the presented chain: real device chains have a
// handful of certificates, and each extra one costs matching work.
const x509MaxChainLength = 16

// x509CertCacheSize bounds the cache of parsed enrollment certificates.
const x509CertCacheSize = 1024

// X509 attests devices by their TLS client certificate chain, in Azure DPS's
// matching order: the individual enrollment for the registration ID first
// (its device certificates by thumbprint, or its own signing certificates or
// CA references); otherwise the X.509 enrollment group whose trust anchor
// sits lowest in the presented chain. The TLS layer only requests the
// certificate; every check happens here. It is safe for concurrent use.
type X509 struct {
	src   Source
	now   func() time.Time
	skew  time.Duration
	certs *pki.ParseCache
}

// NewX509 returns an X.509 attester reading enrollments from src. A zero
// Options.ClockSkew means 5 minutes; a negative one means no tolerance.
func NewX509(src Source, opts Options) *X509 {
	a := &X509{src: src, now: opts.Now, skew: opts.ClockSkew, certs: pki.NewParseCache(x509CertCacheSize)}
	if a.now == nil {
		a.now = time.Now
	}
	switch {
	case a.skew == 0:
		a.skew = x509DefaultSkew
	case a.skew < 0:
		a.skew = 0
	}
	return a
}

// Attest checks a presented chain (leaf first, as the device sent it) for
// registrationID. It returns the match, a *Denial naming the precise
// reason, or a wrapped error of the Source.
func (a *X509) Attest(ctx context.Context, registrationID string, chain []*x509.Certificate) (*Match, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, &Denial{Reason: ReasonNoCredential, Detail: "the device presented no TLS client certificate",
			Hint: "present the device certificate (and its chain) in the TLS handshake"}
	}
	if len(chain) > x509MaxChainLength {
		return nil, &Denial{Reason: ReasonChainUntrusted,
			Detail: fmt.Sprintf("the device presented %d certificates; at most %d are accepted", len(chain), x509MaxChainLength),
			Hint:   "send the device certificate and the CA certificates up to the enrolled one, no more"}
	}
	for i, c := range chain {
		if c == nil {
			return nil, &Denial{Reason: ReasonBadRequest, Detail: fmt.Sprintf("certificate %d of the presented chain is empty", i+1)}
		}
	}
	leaf := chain[0]
	now := a.now()

	cn := leaf.Subject.CommonName
	if cn == "" {
		return nil, &Denial{Reason: ReasonCNRegistrationIDMismatch,
			Detail: fmt.Sprintf("leaf certificate %s has no CN; registration ID is %q", pki.DistinguishedName(leaf.Subject), registrationID),
			Hint:   "set the certificate CN to the registration ID"}
	}
	if !strings.EqualFold(cn, registrationID) {
		return nil, &Denial{Reason: ReasonCNRegistrationIDMismatch,
			Detail: fmt.Sprintf("leaf CN %q vs registration ID %q", cn, registrationID),
			Hint:   "set the certificate CN to the registration ID, or use the CN as registration ID"}
	}
	if d := a.checkValidity(leaf, "leaf certificate ("+pki.DistinguishedName(leaf.Subject)+")", now); d != nil {
		return nil, d
	}
	if !certAllowsClientAuth(leaf) {
		return nil, &Denial{Reason: ReasonEKUNotClientAuth,
			Detail: fmt.Sprintf("leaf certificate (%s) has extended key usages %s but not clientAuth", pki.DistinguishedName(leaf.Subject), certEKUNames(leaf)),
			Hint:   "issue the device certificate with extendedKeyUsage clientAuth (or without an extended key usage extension)"}
	}

	ind, err := a.src.IndividualEnrollment(ctx, registrationID)
	if err != nil {
		return nil, fmt.Errorf("look up individual enrollment %q: %w", registrationID, err)
	}
	if ind != nil {
		return a.attestIndividual(ctx, ind, chain, now)
	}

	groups, err := a.src.Groups(ctx, enroll.AttestationX509)
	if err != nil {
		return nil, fmt.Errorf("list X.509 enrollment groups: %w", err)
	}
	if len(groups) == 0 {
		return nil, &Denial{Reason: ReasonEnrollmentNotFound,
			Detail: fmt.Sprintf("no individual enrollment for registration ID %q and no X.509 enrollment group", registrationID),
			Hint:   "create an individual enrollment with the device certificate, or an X.509 enrollment group whose signing certificate or CA reference is in the device's chain"}
	}
	var (
		sets  []*trustSet
		notes []string
	)
	for _, g := range groups {
		if g == nil || g.Attestation == nil || g.Attestation.X509 == nil || !strings.EqualFold(g.Attestation.Type, enroll.AttestationX509) {
			continue
		}
		ts := &trustSet{kind: kindGroup, id: g.EnrollmentGroupID, group: g, disabled: x509IsDisabled(g.ProvisioningStatus)}
		n, err := a.collectAnchors(ctx, ts, g.Attestation.X509)
		if err != nil {
			return nil, err
		}
		notes = append(notes, n...)
		if len(ts.anchors) > 0 {
			sets = append(sets, ts)
		}
	}
	am, nearMiss := findAnchor(chain, sets)
	if am == nil {
		return nil, unmatchedChain(chain, nearMiss, notes, "no enrollment group or verified CA")
	}
	return a.verifyFound(am, chain, now)
}

// attestIndividual decides with the registration's individual enrollment.
func (a *X509) attestIndividual(ctx context.Context, e *enroll.IndividualEnrollment, chain []*x509.Certificate, now time.Time) (*Match, error) {
	deny := func(r Reason, detail, hint string) error {
		return &Denial{Reason: r, Detail: detail, Hint: hint, EnrollmentKind: kindIndividual, EnrollmentID: e.RegistrationID}
	}
	if e.Attestation == nil || !strings.EqualFold(e.Attestation.Type, enroll.AttestationX509) {
		typ := "no"
		if e.Attestation != nil {
			typ = e.Attestation.Type
		}
		return nil, deny(ReasonAttestationMismatch,
			fmt.Sprintf("individual enrollment %s uses %s attestation, but the device presented an X.509 certificate", e.RegistrationID, typ),
			"connect with the credential the enrollment expects, or change the enrollment's attestation to x509")
	}
	x := e.Attestation.X509
	if x == nil {
		return nil, deny(ReasonChainUntrusted,
			fmt.Sprintf("individual enrollment %s has x509 attestation without certificates", e.RegistrationID),
			"add the device certificate to the enrollment's clientCertificates")
	}
	leaf := chain[0]
	disabled := x509IsDisabled(e.ProvisioningStatus)

	var (
		tried []string
		notes []string
	)
	if cc := x.ClientCertificates; cc != nil {
		for _, slot := range []struct {
			name string
			cert *enroll.X509CertificateWithInfo
		}{{"primary", cc.Primary}, {"secondary", cc.Secondary}} {
			if slot.cert == nil || (slot.cert.Certificate == "" && slot.cert.Info == nil) {
				continue
			}
			tried = append(tried, slot.name)
			enrolled, ok, err := a.matchClientCertificate(leaf, slot.cert)
			if err != nil {
				notes = append(notes, fmt.Sprintf("its %s certificate does not parse: %v", slot.name, err))
				continue
			}
			if !ok {
				continue
			}
			if disabled {
				return nil, deny(ReasonEnrollmentDisabled,
					fmt.Sprintf("individual enrollment %s is disabled", e.RegistrationID), "enable the enrollment (provisioningStatus enabled)")
			}
			return &Match{Individual: e, Leaf: leaf, Chain: []*x509.Certificate{leaf}, Anchor: enrolled, AnchorSource: AnchorClientCertificate}, nil
		}
	}

	ts := &trustSet{kind: kindIndividual, id: e.RegistrationID, individual: e, disabled: disabled}
	anchorNotes, err := a.collectAnchors(ctx, ts, x)
	if err != nil {
		return nil, err
	}
	notes = append(notes, anchorNotes...)
	if len(ts.anchors) > 0 {
		if am, nearMiss := findAnchor(chain, []*trustSet{ts}); am != nil {
			return a.verifyFound(am, chain, now)
		} else if len(tried) == 0 {
			d := unmatchedChain(chain, nearMiss, notes, "no signing certificate or CA reference of individual enrollment "+e.RegistrationID)
			d.EnrollmentKind, d.EnrollmentID = kindIndividual, e.RegistrationID
			return nil, d
		}
	}
	if len(tried) == 0 {
		detail := fmt.Sprintf("individual enrollment %s has no usable certificate", e.RegistrationID)
		if len(notes) > 0 {
			detail += " (" + strings.Join(notes, "; ") + ")"
		}
		return nil, deny(ReasonChainUntrusted, detail, "add the device certificate to the enrollment's clientCertificates")
	}
	var which string
	switch {
	case len(tried) == 2:
		which = "neither the primary nor the secondary certificate"
	default:
		which = "not the " + tried[0] + " certificate (no other is set)"
	}
	detail := fmt.Sprintf("leaf thumbprint %s (SHA-1 %s) matches %s of enrollment %s",
		pki.SHA256Thumbprint(leaf), pki.SHA1Thumbprint(leaf), which, e.RegistrationID)
	if len(ts.anchors) > 0 {
		detail += ", and the chain does not lead to its signing certificates or CA references"
	}
	if len(notes) > 0 {
		detail += " (" + strings.Join(notes, "; ") + ")"
	}
	return nil, deny(ReasonChainUntrusted, detail, "put the device's current certificate into the enrollment's clientCertificates")
}

// matchClientCertificate compares the leaf with one enrolled device
// certificate: by DER when the certificate is given, else by the
// thumbprints of its info.
func (a *X509) matchClientCertificate(leaf *x509.Certificate, w *enroll.X509CertificateWithInfo) (*x509.Certificate, bool, error) {
	if w.Certificate != "" {
		certs, err := a.certs.Parse(w.Certificate)
		if err != nil {
			return nil, false, err
		}
		return certs[0], bytes.Equal(certs[0].Raw, leaf.Raw), nil
	}
	eq := func(a, b string) bool {
		return a != "" && subtle.ConstantTimeCompare([]byte(strings.ToUpper(a)), []byte(b)) == 1
	}
	if eq(w.Info.SHA256Thumbprint, pki.SHA256Thumbprint(leaf)) || eq(w.Info.SHA1Thumbprint, pki.SHA1Thumbprint(leaf)) {
		return leaf, true, nil
	}
	return nil, false, nil
}

// anchor is one trust anchor of an enrollment.
type anchor struct {
	cert     *x509.Certificate
	source   string // AnchorSigningCertificate or AnchorCAReference
	slot     string // primary or secondary
	caName   string // for CA references
	verified bool   // signing certificates are; CA references once proven
}

// trustSet is the anchors of one enrollment.
type trustSet struct {
	kind       string
	id         string
	group      *enroll.EnrollmentGroup
	individual *enroll.IndividualEnrollment
	disabled   bool
	anchors    []anchor
}

func (ts *trustSet) describe() string {
	if ts.kind == kindGroup {
		return "enrollment group " + ts.id
	}
	return "individual enrollment " + ts.id
}

func (ts *trustSet) deny(r Reason, detail, hint string) *Denial {
	return &Denial{Reason: r, Detail: detail, Hint: hint, EnrollmentKind: ts.kind, EnrollmentID: ts.id}
}

// describeAnchor names an anchor for the operator.
func (ts *trustSet) describeAnchor(an anchor) string {
	if an.source == AnchorCAReference {
		return fmt.Sprintf("CA certificate %q (%s) referenced by %s", an.caName, pki.DistinguishedName(an.cert.Subject), ts.describe())
	}
	return fmt.Sprintf("%s signing certificate (%s) of %s", an.slot, pki.DistinguishedName(an.cert.Subject), ts.describe())
}

// collectAnchors resolves an attestation's signing certificates and CA
// references into ts.anchors. Unusable entries are skipped and described in
// the returned notes; only Source failures are errors.
func (a *X509) collectAnchors(ctx context.Context, ts *trustSet, x *enroll.X509Attestation) ([]string, error) {
	var notes []string
	if sc := x.SigningCertificates; sc != nil {
		for _, slot := range []struct {
			name string
			cert *enroll.X509CertificateWithInfo
		}{{"primary", sc.Primary}, {"secondary", sc.Secondary}} {
			if slot.cert == nil || slot.cert.Certificate == "" {
				continue
			}
			certs, err := a.certs.Parse(slot.cert.Certificate)
			if err != nil {
				notes = append(notes, fmt.Sprintf("the %s signing certificate of %s does not parse: %v", slot.name, ts.describe(), err))
				continue
			}
			ts.anchors = append(ts.anchors, anchor{cert: certs[0], source: AnchorSigningCertificate, slot: slot.name, verified: true})
		}
	}
	if refs := x.CAReferences; refs != nil {
		for _, slot := range []struct{ name, ref string }{{"primary", refs.Primary}, {"secondary", refs.Secondary}} {
			if slot.ref == "" {
				continue
			}
			ca, err := a.src.CACertificate(ctx, slot.ref)
			if err != nil {
				return nil, fmt.Errorf("look up CA certificate %q for %s: %w", slot.ref, ts.describe(), err)
			}
			if ca == nil {
				notes = append(notes, fmt.Sprintf("%s references CA certificate %q, which does not exist", ts.describe(), slot.ref))
				continue
			}
			certs, err := a.certs.Parse(ca.Certificate)
			if err != nil {
				notes = append(notes, fmt.Sprintf("CA certificate %q referenced by %s does not parse: %v", slot.ref, ts.describe(), err))
				continue
			}
			ts.anchors = append(ts.anchors, anchor{cert: certs[0], source: AnchorCAReference, slot: slot.name, caName: ca.Name, verified: ca.IsVerified})
		}
	}
	return notes, nil
}

// anchorMatch is the enrollment whose anchor sits lowest in the presented chain.
type anchorMatch struct {
	set *trustSet
	an  anchor
	// k is the anchor's position: the path is chain[:k] followed by the anchor.
	k int
}

// findAnchor walks the presented chain upward from the first certificate
// above the leaf. At position k (1 ≤ k ≤ len(chain)) an anchor matches when
// it is chain[k] itself or when it signed chain[k-1]; the first trust set
// (in Source order) with a matching anchor at the lowest position decides,
// preferring a verified anchor within that set. nearMiss describes an
// anchor whose name is chain[k-1]'s issuer but whose key did not sign it.
func findAnchor(chain []*x509.Certificate, sets []*trustSet) (*anchorMatch, string) {
	var nearMiss string
	for k := 1; k <= len(chain); k++ {
		below := chain[k-1]
		for _, ts := range sets {
			var (
				best  anchor
				match bool
			)
			for _, an := range ts.anchors {
				ok := k < len(chain) && bytes.Equal(an.cert.Raw, chain[k].Raw)
				if !ok && bytes.Equal(an.cert.RawSubject, below.RawIssuer) {
					if certSignedBy(below, an.cert) {
						ok = true
					} else if nearMiss == "" {
						nearMiss = fmt.Sprintf("%s names %s as its issuer, but its signature does not verify with the key of the %s",
							describeChainCert(chain, k-1), pki.DistinguishedName(below.Issuer), ts.describeAnchor(an))
					}
				}
				if ok && (!match || (!best.verified && an.verified)) {
					best, match = an, true
				}
			}
			if match {
				return &anchorMatch{set: ts, an: best, k: k}, nearMiss
			}
		}
	}
	return nil, nearMiss
}

// certSignedBy reports whether parent's key made child's signature (names and CA
// constraints are checked separately).
func certSignedBy(child, parent *x509.Certificate) bool {
	return certCheckSignedBy(child, parent) == nil
}

func certCheckSignedBy(child, parent *x509.Certificate) error {
	return parent.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature)
}

func describeChainCert(chain []*x509.Certificate, i int) string {
	return fmt.Sprintf("certificate %d (%s)", i+1, pki.DistinguishedName(chain[i].Subject))
}

// verifyFound checks the path from the leaf to the anchor that decided and
// then the enrollment's state. The device must prove its chain before it
// is told that the enrollment is disabled.
func (a *X509) verifyFound(f *anchorMatch, chain []*x509.Certificate, now time.Time) (*Match, error) {
	ts, an := f.set, f.an
	path := append(append([]*x509.Certificate(nil), chain[:f.k]...), an.cert)
	names := make([]string, len(path))
	for i := range f.k {
		names[i] = describeChainCert(chain, i)
	}
	names[f.k] = ts.describeAnchor(an)
	if f.k < len(chain) && bytes.Equal(chain[f.k].Raw, an.cert.Raw) {
		names[f.k] = describeChainCert(chain, f.k)
	}

	for i := 1; i < len(path); i++ {
		if d := a.checkValidity(path[i], names[i], now); d != nil {
			d.EnrollmentKind, d.EnrollmentID = ts.kind, ts.id
			return nil, d
		}
	}
	verified, err := a.verifyPath(path, now)
	if err != nil {
		return nil, diagnosePath(ts, path, names, err)
	}
	if ts.disabled {
		return nil, ts.deny(ReasonEnrollmentDisabled, fmt.Sprintf("%s is disabled", ts.describe()), "enable the enrollment (provisioningStatus enabled)")
	}
	if !an.verified {
		return nil, ts.deny(ReasonCANotVerified,
			fmt.Sprintf("the device's chain leads to CA certificate %q (%s), which is not verified", an.caName, pki.DistinguishedName(an.cert.Subject)),
			fmt.Sprintf("verify CA certificate %q by proof of possession: generate a verification code and upload a certificate with that CN signed by the CA", an.caName))
	}
	m := &Match{Leaf: chain[0], Chain: verified, Anchor: an.cert, AnchorSource: an.source}
	if ts.group != nil {
		m.Group = ts.group
	} else {
		m.Individual = ts.individual
	}
	return m, nil
}

// verifyPath runs x509 path validation from path[0] to the anchor (the last
// element, used as the only root), with the certificates between as
// intermediates. Every certificate's validity has been checked with the
// clock skew already; the verification time is the instant nearest to now
// that lies inside every validity window, so the skew carries over.
func (a *X509) verifyPath(path []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	leaf, anchorCert := path[0], path[len(path)-1]
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(anchorCert)
	for _, c := range path[1 : len(path)-1] {
		inters.AddCert(c)
	}
	lo, hi := path[0].NotBefore, path[0].NotAfter
	for _, c := range path[1:] {
		if c.NotBefore.After(lo) {
			lo = c.NotBefore
		}
		if c.NotAfter.Before(hi) {
			hi = c.NotAfter
		}
	}
	at := now
	if !lo.After(hi) {
		if at.Before(lo) {
			at = lo
		}
		if at.After(hi) {
			at = hi
		}
	}
	usage := x509.ExtKeyUsageAny
	if certHasEKU(leaf) {
		usage = x509.ExtKeyUsageClientAuth
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return nil, err
	}
	return chains[0], nil
}

// diagnosePath finds which link of a path that failed verification is at fault.
func diagnosePath(ts *trustSet, path []*x509.Certificate, names []string, verr error) *Denial {
	untrusted := func(detail string) *Denial {
		return ts.deny(ReasonChainUntrusted, detail,
			"send the device's own chain: each certificate must be signed by the next, up to the enrolled certificate")
	}
	for i := 0; i+1 < len(path); i++ {
		child, parent := path[i], path[i+1]
		if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
			return ts.deny(ReasonChainIncomplete,
				fmt.Sprintf("%s is issued by %s, but the next certificate is %s; the device did not send the certificate in between",
					names[i], pki.DistinguishedName(child.Issuer), names[i+1]),
				"send the full chain up to the enrolled certificate")
		}
		if err := certCheckSignedBy(child, parent); err != nil {
			var insecure x509.InsecureAlgorithmError
			if errors.As(err, &insecure) {
				return untrusted(fmt.Sprintf("%s is signed with the insecure algorithm %s", names[i], child.SignatureAlgorithm))
			}
			return untrusted(fmt.Sprintf("%s is not signed by %s", names[i], names[i+1]))
		}
		if !parent.BasicConstraintsValid || !parent.IsCA {
			return untrusted(fmt.Sprintf("%s signs %s but is not a CA certificate (basicConstraints CA:TRUE missing)", names[i+1], names[i]))
		}
		if parent.KeyUsage != 0 && parent.KeyUsage&x509.KeyUsageCertSign == 0 {
			return untrusted(fmt.Sprintf("%s signs %s but lacks the keyCertSign key usage", names[i+1], names[i]))
		}
		// i CA certificates lie between the leaf and the parent.
		if parent.MaxPathLen >= 0 && i > parent.MaxPathLen {
			return untrusted(fmt.Sprintf("%s allows %d intermediate CA certificates below it (pathlen), the chain has %d", names[i+1], parent.MaxPathLen, i))
		}
	}
	if certHasEKU(path[0]) {
		for i := 1; i < len(path); i++ {
			if !certAllowsClientAuth(path[i]) {
				return ts.deny(ReasonEKUNotClientAuth,
					fmt.Sprintf("%s restricts its chain to extended key usages %s, which exclude clientAuth", names[i], certEKUNames(path[i])),
					"issue the CA certificates without an extended key usage extension, or include clientAuth")
			}
		}
	}
	for i, c := range path {
		if len(c.UnhandledCriticalExtensions) > 0 {
			return untrusted(fmt.Sprintf("%s has the unsupported critical extension %s", names[i], c.UnhandledCriticalExtensions[0]))
		}
	}
	return untrusted(fmt.Sprintf("the chain from %s to the %s does not verify: %v", names[0], names[len(names)-1], verr))
}

// unmatchedChain explains why no enrollment's anchor is in or above the chain;
// what names the trust that was searched ("no enrollment group or verified
// CA").
func unmatchedChain(chain []*x509.Certificate, nearMiss string, notes []string, what string) *Denial {
	withNotes := func(s string) string {
		if len(notes) > 0 {
			s += " (" + strings.Join(notes, "; ") + ")"
		}
		return s
	}
	if nearMiss != "" {
		return &Denial{Reason: ReasonChainUntrusted, Detail: withNotes(nearMiss),
			Hint: "the device's certificate was issued by a different key than the enrolled certificate with that name; enroll the CA that really issued it"}
	}
	// The top is the last certificate of the name-linked run from the leaf.
	top := 0
	for top+1 < len(chain) && bytes.Equal(chain[top].RawIssuer, chain[top+1].RawSubject) {
		top++
	}
	t := chain[top]
	if bytes.Equal(t.RawIssuer, t.RawSubject) && certSignedBy(t, t) {
		return &Denial{Reason: ReasonChainUntrusted,
			Detail: withNotes(fmt.Sprintf("the chain ends at self-signed %s, which %s trusts", pki.DistinguishedName(t.Subject), what)),
			Hint:   "add the root or an intermediate of the device's chain to an enrollment group's signing certificates, or reference it as a verified CA certificate"}
	}
	return &Denial{Reason: ReasonChainIncomplete,
		Detail: withNotes(fmt.Sprintf("the chain ends at %s, issued by %s, which the device did not send and %s trusts; send the full chain up to the enrolled certificate",
			pki.DistinguishedName(t.Subject), pki.DistinguishedName(t.Issuer), what)),
		Hint: "send the full chain up to the enrolled certificate, or enroll the certificate that issued the top of the chain"}
}

// checkValidity denies a certificate outside its validity period (with the
// clock skew).
func (a *X509) checkValidity(c *x509.Certificate, name string, now time.Time) *Denial {
	switch {
	case now.Add(-a.skew).After(c.NotAfter):
		return &Denial{Reason: ReasonCertificateExpired,
			Detail: fmt.Sprintf("%s expired at %s", name, c.NotAfter.UTC().Format(time.RFC3339)),
			Hint:   "renew the certificate"}
	case now.Add(a.skew).Before(c.NotBefore):
		return &Denial{Reason: ReasonCertificateNotYetValid,
			Detail: fmt.Sprintf("%s is not valid before %s", name, c.NotBefore.UTC().Format(time.RFC3339)),
			Hint:   "check the device's and the server's clocks, or the certificate's notBefore"}
	}
	return nil
}

func certHasEKU(c *x509.Certificate) bool {
	return len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0
}

// certAllowsClientAuth reports whether a certificate's extended key usages, if
// it has any, permit TLS client authentication.
func certAllowsClientAuth(c *x509.Certificate) bool {
	if !certHasEKU(c) {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func certEKUNames(c *x509.Certificate) string {
	var names []string
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			names = append(names, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			names = append(names, "clientAuth")
		case x509.ExtKeyUsageCodeSigning:
			names = append(names, "codeSigning")
		case x509.ExtKeyUsageEmailProtection:
			names = append(names, "emailProtection")
		case x509.ExtKeyUsageTimeStamping:
			names = append(names, "timeStamping")
		case x509.ExtKeyUsageOCSPSigning:
			names = append(names, "OCSPSigning")
		default:
			names = append(names, fmt.Sprintf("usage(%d)", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		names = append(names, oid.String())
	}
	return "[" + strings.Join(names, ", ") + "]"
}

func x509IsDisabled(status string) bool {
	return strings.EqualFold(status, enroll.StatusDisabled)
}
