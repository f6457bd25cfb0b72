package attest

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/muster-iot/muster/internal/enroll"
)

// Source gives the attesters the enrollments that may vouch for a device.
// Implementations read the current state (they may cache, but a change made
// through the service API must be visible to the next attestation).
type Source interface {
	// IndividualEnrollment returns the individual enrollment for a
	// registration ID (matched case-insensitively), or nil, nil if none.
	IndividualEnrollment(ctx context.Context, registrationID string) (*enroll.IndividualEnrollment, error)
	// Groups returns every enrollment group whose attestation type is
	// attestationType (enroll.AttestationSymmetricKey or enroll.AttestationX509),
	// enabled and disabled alike, in a stable order.
	Groups(ctx context.Context, attestationType string) ([]*enroll.EnrollmentGroup, error)
	// CACertificate returns the CA certificate registered under name, or nil, nil.
	CACertificate(ctx context.Context, name string) (*enroll.CACertificate, error)
}

// Match is a successful attestation: exactly one of Individual and Group is set.
type Match struct {
	Individual *enroll.IndividualEnrollment
	Group      *enroll.EnrollmentGroup

	// Symmetric-key attestation: the device's keys as the hub should know
	// them (the individual enrollment's keys, or the keys derived from the
	// group's primary and secondary keys). KeyUsed is "primary" or "secondary".
	PrimaryKey   string
	SecondaryKey string
	KeyUsed      string

	// X.509 attestation: the verified leaf, the verified chain from the leaf
	// to the trust anchor (anchor last), and the anchor itself.
	Leaf   *x509.Certificate
	Chain  []*x509.Certificate
	Anchor *x509.Certificate
	// AnchorSource says where the anchor came from: "clientCertificate"
	// (individual), "signingCertificate" or "caReference" (groups).
	AnchorSource string
}

// EnrollmentKind returns "individual" or "group".
func (m *Match) EnrollmentKind() string {
	if m.Group != nil {
		return "group"
	}
	return "individual"
}

// EnrollmentID returns the matched enrollment's registration ID or group ID.
func (m *Match) EnrollmentID() string {
	if m.Group != nil {
		return m.Group.EnrollmentGroupID
	}
	return m.Individual.RegistrationID
}

// Options tune the attesters.
type Options struct {
	// Now returns the current time (time.Now when nil).
	Now func() time.Time
	// ClockSkew is tolerated on SAS expiry and certificate validity
	// (default 5 minutes).
	ClockSkew time.Duration
}
