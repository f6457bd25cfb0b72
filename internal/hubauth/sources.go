package hubauth

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/muster-iot/muster/internal/access"
	"github.com/muster-iot/muster/internal/attest"
	"github.com/muster-iot/muster/internal/registry"
)

// Module is a module identity as authentication needs it.
type Module struct {
	DeviceID string
	ModuleID string
	// Authentication is the module's credential, in the Device JSON shape.
	Authentication registry.Authentication
}

// Identities gives the authenticator the hub's identities. A missing
// identity is an error matching ErrNotFound; any other error is a failure
// of the service.
type Identities interface {
	Device(ctx context.Context, deviceID string) (*registry.Device, error)
	Module(ctx context.Context, deviceID, moduleID string) (*Module, error)
}

// Anchors gives the certificates a certificateAuthority identity's chain
// may verify to.
type Anchors interface {
	// TrustAnchors returns the trust for device (for a module: its
	// device). An error is a failure of the service.
	TrustAnchors(ctx context.Context, device *registry.Device) (Trust, error)
}

// Trust is the set of anchors for one device.
type Trust struct {
	Anchors []Anchor
	// Notes say why configured trust could not be used (a CA reference to
	// a deleted CA, a certificate that does not parse), for the operator.
	Notes []string
}

// Where an Anchor comes from (Anchor.Source).
const (
	// AnchorCACertificate is a CA certificate registered with the service.
	AnchorCACertificate = "caCertificate"
	// AnchorSigningCertificate is a signing certificate of the enrollment
	// group that provisioned the device.
	AnchorSigningCertificate = attest.AnchorSigningCertificate
	// AnchorCAReference is a CA certificate the provisioning group references.
	AnchorCAReference = attest.AnchorCAReference
)

// Anchor is one trust anchor.
type Anchor struct {
	Cert *x509.Certificate
	// Source is AnchorCACertificate, AnchorSigningCertificate or AnchorCAReference.
	Source string
	// Name is the CA certificate's name (CA certificates and references).
	Name string
	// GroupID is the enrollment group (signing certificates and references).
	GroupID string
	// Slot is "primary" or "secondary" within the group.
	Slot string
	// Verified is false for a CA certificate without proof of possession;
	// a chain that verifies only to unverified anchors is refused.
	Verified bool
}

// String describes the anchor for the operator.
func (an Anchor) String() string {
	subject := "no certificate"
	if an.Cert != nil {
		subject = dn(an.Cert)
	}
	switch an.Source {
	case AnchorSigningCertificate:
		return fmt.Sprintf("%s signing certificate (%s) of enrollment group %s", an.Slot, subject, an.GroupID)
	case AnchorCAReference:
		return fmt.Sprintf("CA certificate %q (%s) referenced by enrollment group %s", an.Name, subject, an.GroupID)
	}
	return fmt.Sprintf("CA certificate %q (%s)", an.Name, subject)
}

// Policies looks up shared access policies by name (case-insensitively);
// only policies of realm "hub" are used.
type Policies interface {
	Policy(name string) (access.Policy, bool)
}
