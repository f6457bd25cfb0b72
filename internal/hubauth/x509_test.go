package hubauth

import (
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/registry"
)

func TestAuthenticateX509(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	must := issuer(t)
	f := newFixture(t, now)

	// Self-signed devices.
	ss := must(pki.NewSelfSignedDevice("ss1"))
	ss2 := must(pki.NewSelfSignedDevice("ss2"))
	ssOld := must(pki.NewSelfSignedDevice("ss-old", pki.WithValidity(now.Add(-48*time.Hour), now.Add(-24*time.Hour))))
	f.thumbprintDevice("ss1", colonThumbprint(pki.SHA1Thumbprint(ss.Cert)), "")
	f.thumbprintDevice("ss256", pki.SHA1Thumbprint(ss.Cert), strings.ToLower(pki.SHA256Thumbprint(ss2.Cert)))
	f.thumbprintDevice("ss-old", pki.SHA1Thumbprint(ssOld.Cert), "")
	f.sasDevice("sas1", vectorKey, otherKey)

	// A verified CA with an intermediate, and an unverified CA.
	root := must(pki.NewRoot("Verified Root"))
	inter := must(root.NewIntermediate("Verified Intermediate"))
	f.registerCA("verified-root", root, true)
	unvRoot := must(pki.NewRoot("Unverified Root"))
	f.registerCA("unverified-root", unvRoot, false)
	f.caDevice("ca1", "")
	f.caDevice("ca2", "")
	f.caDevice("Ca3", "")
	f.caDevice("unv1", "")

	// An enrollment group whose signing certificate is a root not registered
	// as a CA, one whose signing certificate is an intermediate, and one
	// referencing the unverified CA.
	grpRoot := must(pki.NewRoot("Group Root"))
	grpInter := must(grpRoot.NewIntermediate("Group Intermediate"))
	f.x509Group("grp-root", grpRoot, "")
	f.x509Group("grp-inter", grpInter, "")
	f.x509Group("grp-unverified", nil, "unverified-root")
	f.caDevice("g1", "grp-root")
	f.caDevice("g2", "grp-inter")
	f.caDevice("g3", "grp-unverified")
	f.caDevice("stranger", "") // not provisioned by the group

	// A module with a thumbprint and one signed by the verified CA.
	modCert := must(pki.NewSelfSignedDevice("modss"))
	tp := pki.SHA256Thumbprint(modCert.Cert)
	f.module("ca1", "modss", registry.Authentication{Type: AuthSelfSigned, X509Thumbprint: registry.X509Thumbprint{PrimaryThumbprint: &tp}})
	f.module("ca1", "modca", registry.Authentication{Type: AuthCertificateAuthority})
	f.caDevice("off", "")
	f.disable("off")

	// Device certificates.
	leaf := func(iss *pki.Issued, cn string, opts ...pki.Option) *pki.Issued {
		return must(iss.NewDevice(cn, opts...))
	}
	ca1 := leaf(root, "ca1")
	ca2 := leaf(inter, "ca2")
	ca3 := leaf(root, "ca3")
	unv1 := leaf(unvRoot, "unv1")
	g1 := leaf(grpRoot, "g1")
	g2 := leaf(grpInter, "g2")
	g3 := leaf(unvRoot, "g3")
	stranger := leaf(grpRoot, "stranger")
	modca := leaf(root, "modca")
	modcaQualified := leaf(root, "ca1/modca")
	off := leaf(root, "off")
	expired := leaf(root, "ca1", pki.WithValidity(now.Add(-48*time.Hour), now.Add(-time.Hour)))
	skewed := leaf(root, "ca1", pki.WithValidity(now.Add(2*time.Minute), now.Add(time.Hour)))
	future := leaf(root, "ca1", pki.WithValidity(now.Add(time.Hour), now.Add(2*time.Hour)))
	serverOnly := leaf(root, "ca1", pki.WithEKU(x509.ExtKeyUsageServerAuth))
	noEKU := leaf(root, "ca1", pki.WithEKU())
	oldInter := must(root.NewIntermediate("Old Intermediate", pki.WithValidity(now.Add(-48*time.Hour), now.Add(-time.Hour))))
	viaOldInter := leaf(oldInter, "ca2")
	// A root with the verified root's name but another key.
	fakeRoot := must(pki.NewRoot("Verified Root"))
	forged := leaf(fakeRoot, "ca1")
	unknownRoot := must(pki.NewRoot("Unknown Root"))
	unknownInter := must(unknownRoot.NewIntermediate("Unknown Intermediate"))
	untrusted := leaf(unknownInter, "ca2")
	// An intermediate with the real one's name but another key.
	fakeInter := must(root.NewIntermediate("Verified Intermediate"))
	// A leaf signed by a non-CA certificate that the verified root issued.
	notCA := leaf(root, "not-a-ca")
	underNotCA := signedByAnyone(t, notCA, "ca2")

	x509Req := func(clientID string, chain ...*pki.Issued) Request {
		dev, mod, _ := strings.Cut(clientID, "/")
		user := vectorHub + "/" + dev + "/"
		if mod != "" {
			user += mod + "/"
		}
		return Request{ClientID: clientID, Username: user + "?api-version=2021-04-12", Chain: chainOf(chain...), RemoteAddr: "198.51.100.1:1234"}
	}
	caAnchor := `CA certificate "verified-root" (CN=Verified Root)`

	tests := []struct {
		name string
		req  Request
		want outcome
	}{
		// selfSigned.
		{"SHA-1 thumbprint, lower-case with colons", x509Req("ss1", ss),
			allowed(Identity{DeviceID: "ss1", AuthType: AuthSelfSigned, Credential: "primary", CertificateExpiry: ss.Cert.NotAfter})},
		{"SHA-256 thumbprint as secondary", x509Req("ss256", ss2),
			allowed(Identity{DeviceID: "ss256", AuthType: AuthSelfSigned, Credential: "secondary", CertificateExpiry: ss2.Cert.NotAfter})},
		{"password ignored next to a certificate", func() Request { r := x509Req("ss1", ss); r.Password = "not a token"; return r }(),
			allowed(Identity{DeviceID: "ss1", AuthType: AuthSelfSigned, Credential: "primary", CertificateExpiry: ss.Cert.NotAfter})},
		{"module thumbprint", x509Req("ca1/modss", modCert),
			allowed(Identity{DeviceID: "ca1", ModuleID: "modss", AuthType: AuthSelfSigned, Credential: "primary", CertificateExpiry: modCert.Cert.NotAfter})},
		{"another certificate", x509Req("ss1", ss2),
			denied(ReasonThumbprintMismatch, fmt.Sprintf("has SHA-1 thumbprint %s and SHA-256 thumbprint %s; device \"ss1\" has primary %s",
				pki.SHA1Thumbprint(ss2.Cert), pki.SHA256Thumbprint(ss2.Cert), pki.SHA1Thumbprint(ss.Cert)))},
		{"expired self-signed certificate", x509Req("ss-old", ssOld),
			denied(ReasonCertificateExpired, "the client certificate (CN=ss-old) expired at")},

		// certificateAuthority through a verified CA.
		{"verified CA, leaf only", x509Req("ca1", ca1),
			allowed(Identity{DeviceID: "ca1", AuthType: AuthCertificateAuthority, Anchor: caAnchor, CertificateExpiry: ca1.Cert.NotAfter})},
		{"verified CA, leaf and intermediate", x509Req("ca2", ca2, inter),
			allowed(Identity{DeviceID: "ca2", AuthType: AuthCertificateAuthority, Anchor: caAnchor, CertificateExpiry: ca2.Cert.NotAfter})},
		{"verified CA, full chain including the root", x509Req("ca2", ca2, inter, root),
			allowed(Identity{DeviceID: "ca2", AuthType: AuthCertificateAuthority, Anchor: caAnchor, CertificateExpiry: ca2.Cert.NotAfter})},
		{"leaf without extended key usage", x509Req("ca1", noEKU),
			allowed(Identity{DeviceID: "ca1", AuthType: AuthCertificateAuthority, Anchor: caAnchor, CertificateExpiry: noEKU.Cert.NotAfter})},
		{"leaf not yet valid within the clock skew", x509Req("ca1", skewed),
			allowed(Identity{DeviceID: "ca1", AuthType: AuthCertificateAuthority, Anchor: caAnchor, CertificateExpiry: skewed.Cert.NotAfter})},
		{"module, CN = module ID", x509Req("ca1/modca", modca),
			allowed(Identity{DeviceID: "ca1", ModuleID: "modca", AuthType: AuthCertificateAuthority, Anchor: caAnchor, CertificateExpiry: modca.Cert.NotAfter})},
		{"module, CN = deviceId/moduleId", x509Req("ca1/modca", modcaQualified),
			allowed(Identity{DeviceID: "ca1", ModuleID: "modca", AuthType: AuthCertificateAuthority, Anchor: caAnchor, CertificateExpiry: modcaQualified.Cert.NotAfter})},

		// certificateAuthority through the provisioning group.
		{"group signing certificate (root)", x509Req("g1", g1),
			allowed(Identity{DeviceID: "g1", AuthType: AuthCertificateAuthority, Anchor: "primary signing certificate (CN=Group Root) of enrollment group grp-root", CertificateExpiry: g1.Cert.NotAfter})},
		{"group signing certificate (intermediate), chain without it", x509Req("g2", g2),
			allowed(Identity{DeviceID: "g2", AuthType: AuthCertificateAuthority, Anchor: "primary signing certificate (CN=Group Intermediate) of enrollment group grp-inter", CertificateExpiry: g2.Cert.NotAfter})},
		{"group signing certificate (intermediate), chain with it", x509Req("g2", g2, grpInter, grpRoot),
			allowed(Identity{DeviceID: "g2", AuthType: AuthCertificateAuthority, Anchor: "primary signing certificate (CN=Group Intermediate) of enrollment group grp-inter", CertificateExpiry: g2.Cert.NotAfter})},
		{"group anchors apply only to the group's devices", x509Req("stranger", stranger, grpRoot),
			denied(ReasonChainUntrusted, `the chain of device "stranger" ends at self-signed CN=Group Root`)},

		// Refusals.
		{"unverified CA", x509Req("unv1", unv1),
			denied(ReasonCANotVerified, `leads to CA certificate "unverified-root" (CN=Unverified Root), which is not verified`)},
		{"group references an unverified CA", x509Req("g3", g3),
			denied(ReasonCANotVerified, `CA certificate "unverified-root"`)},
		{"CN is not the device ID", x509Req("ca2", ca1),
			denied(ReasonCNDeviceIDMismatch, `the leaf certificate (CN=ca1) has CN "ca1"; device "ca2" needs the device ID "ca2"`)},
		{"CN differs only in case", x509Req("Ca3", ca3),
			denied(ReasonCNDeviceIDMismatch, "they differ only in case")},
		{"module CN is the device ID", x509Req("ca1/modca", ca1),
			denied(ReasonCNDeviceIDMismatch, `needs the module ID "modca" or "ca1/modca"`)},
		{"expired leaf", x509Req("ca1", expired),
			denied(ReasonCertificateExpired, "the leaf certificate (CN=ca1) expired at")},
		{"leaf valid only in an hour", x509Req("ca1", future),
			denied(ReasonCertificateNotYetValid, "the leaf certificate (CN=ca1) is not valid before")},
		{"expired intermediate", x509Req("ca2", viaOldInter, oldInter),
			denied(ReasonCertificateExpired, "certificate 2 (CN=Old Intermediate) of the presented chain expired at")},
		{"leaf for servers only", x509Req("ca1", serverOnly),
			denied(ReasonEKUNotClientAuth, "exclude clientAuth")},
		{"intermediate not sent", x509Req("ca2", ca2),
			denied(ReasonChainIncomplete, "ends at the leaf certificate (CN=ca2), issued by CN=Verified Intermediate, which the client did not send")},
		{"chain to an unknown root", x509Req("ca2", untrusted, unknownInter, unknownRoot),
			denied(ReasonChainUntrusted, "ends at self-signed CN=Unknown Root, which is not a trust anchor; trusted are ")},
		{"issuer with the CA's name but another key", x509Req("ca1", forged),
			denied(ReasonChainUntrusted, `the leaf certificate (CN=ca1) names CN=Verified Root as its issuer, but its signature does not verify with the key of the CA certificate "verified-root"`)},
		{"intermediate with the right name but another key", x509Req("ca2", ca2, fakeInter),
			denied(ReasonChainUntrusted, "the leaf certificate (CN=ca2) names certificate 2 (CN=Verified Intermediate) of the presented chain as its issuer but is not signed by its key")},
		{"signed by a certificate that is no CA", x509Req("ca2", underNotCA, notCA),
			denied(ReasonChainUntrusted, "certificate 2 (CN=not-a-ca) of the presented chain signs another certificate of the chain but is not a CA certificate (basicConstraints CA:TRUE is missing)")},
		{"too many certificates", x509Req("ca1", ca1, ca1, ca1, ca1, ca1, ca1, ca1, ca1, ca1, ca1, ca1, ca1, ca1, ca1, ca1, ca1, ca1),
			denied(ReasonChainUntrusted, "the client presented 17 certificates; at most 16 are accepted")},
		{"disabled device with a valid certificate", x509Req("off", off),
			denied(ReasonDeviceDisabled, `device "off" is disabled`)},
		{"X.509 certificate for a SAS device", x509Req("sas1", ca1),
			denied(ReasonAuthTypeMismatch, `device "sas1" uses SAS authentication, but the client presented an X.509 certificate (CN=ca1) and no SAS token`)},
		{"unknown device with a certificate", x509Req("nosuch", ca1),
			denied(ReasonDeviceNotFound, `device "nosuch" does not exist`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.check(t, tc.req, tc.want)
		})
	}
}

// TestAuthenticateX509NoAnchors covers a hub without trust: no Anchors at
// all, and anchors that are all unusable.
func TestAuthenticateX509NoAnchors(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	must := issuer(t)
	root := must(pki.NewRoot("Root"))
	dev := must(root.NewDevice("d1"))
	req := Request{ClientID: "d1", Username: vectorHub + "/d1/", Chain: chainOf(dev)}

	t.Run("no Anchors configured", func(t *testing.T) {
		f := newFixture(t, now)
		f.caDevice("d1", "")
		a, err := New(Options{HubHostName: vectorHub, Identities: f.ids, Attempts: f.st, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		f.auth = a
		f.check(t, req, denied(ReasonChainUntrusted, "this hub has no trust anchors configured"))
	})
	t.Run("no CA and no group", func(t *testing.T) {
		f := newFixture(t, now)
		f.caDevice("d1", "")
		f.check(t, req, denied(ReasonChainUntrusted, `no trust anchor applies to device "d1"`))
	})
	t.Run("the provisioning group was deleted", func(t *testing.T) {
		f := newFixture(t, now)
		f.x509Group("grp", root, "")
		f.caDevice("d1", "grp")
		if err := f.enr.DeleteGroup(f.ctx(), "grp", ""); err != nil {
			t.Fatal(err)
		}
		f.check(t, req, denied(ReasonChainUntrusted, `(device "d1" was provisioned by enrollment group grp, which no longer exists)`))
	})
}

// TestAuthenticateX509UnverifiedIntermediate registers the intermediate of a
// verified root as an unverified CA: a chain through it to the root is
// accepted, and a chain that reaches only the intermediate is refused as
// ca_not_verified.
func TestAuthenticateX509UnverifiedIntermediate(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	must := issuer(t)
	f := newFixture(t, now)
	root := must(pki.NewRoot("Root"))
	inter := must(root.NewIntermediate("Intermediate"))
	f.registerCA("root", root, true)
	f.registerCA("inter", inter, false)
	f.caDevice("d1", "")
	dev := must(inter.NewDevice("d1"))
	tests := []struct {
		name  string
		chain []*x509.Certificate
		want  outcome
	}{
		{"chain reaches the verified root", chainOf(dev, inter),
			allowed(Identity{DeviceID: "d1", AuthType: AuthCertificateAuthority, Anchor: `CA certificate "root" (CN=Root)`, CertificateExpiry: dev.Cert.NotAfter})},
		{"chain reaches only the unverified intermediate", chainOf(dev),
			denied(ReasonCANotVerified, `the chain of device "d1" leads to CA certificate "inter" (CN=Intermediate), which is not verified`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.check(t, Request{ClientID: "d1", Username: vectorHub + "/d1/?api-version=1", Chain: tc.chain}, tc.want)
		})
	}
}
