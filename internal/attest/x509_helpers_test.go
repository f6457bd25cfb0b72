package attest

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
)

// x509Source is an in-memory Source for the X.509 attester tests.
type x509Source struct {
	individuals []*enroll.IndividualEnrollment
	groups      []*enroll.EnrollmentGroup
	cas         []*enroll.CACertificate
	indErr      error
	groupsErr   error
	caErr       error
}

func (s *x509Source) IndividualEnrollment(_ context.Context, registrationID string) (*enroll.IndividualEnrollment, error) {
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

func (s *x509Source) Groups(_ context.Context, attestationType string) ([]*enroll.EnrollmentGroup, error) {
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

func (s *x509Source) CACertificate(_ context.Context, name string) (*enroll.CACertificate, error) {
	if s.caErr != nil {
		return nil, s.caErr
	}
	for _, c := range s.cas {
		if c.Name == name {
			return c, nil
		}
	}
	return nil, nil
}

// Certificate encodings enrollments carry.
func x509PEM(i *pki.Issued) string    { return string(i.CertPEM()) }
func x509B64PEM(i *pki.Issued) string { return base64.StdEncoding.EncodeToString(i.CertPEM()) }
func x509B64DER(i *pki.Issued) string { return base64.StdEncoding.EncodeToString(i.Cert.Raw) }
func x509Cert(s string) *enroll.X509CertificateWithInfo {
	if s == "" {
		return nil
	}
	return &enroll.X509CertificateWithInfo{Certificate: s}
}

// x509Individual is an individual enrollment with device certificates.
func x509Individual(regID, status, primary, secondary string) *enroll.IndividualEnrollment {
	return &enroll.IndividualEnrollment{RegistrationID: regID, Common: enroll.Common{
		ProvisioningStatus: status,
		Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationX509, X509: &enroll.X509Attestation{
			ClientCertificates: &enroll.X509Certificates{Primary: x509Cert(primary), Secondary: x509Cert(secondary)}}}}}
}

// x509SigningGroup is a group trusting signing certificates.
func x509SigningGroup(id, status, primary, secondary string) *enroll.EnrollmentGroup {
	return &enroll.EnrollmentGroup{EnrollmentGroupID: id, Common: enroll.Common{
		ProvisioningStatus: status,
		Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationX509, X509: &enroll.X509Attestation{
			SigningCertificates: &enroll.X509Certificates{Primary: x509Cert(primary), Secondary: x509Cert(secondary)}}}}}
}

// x509CAGroup is a group trusting CA certificates by reference.
func x509CAGroup(id, primary, secondary string) *enroll.EnrollmentGroup {
	return &enroll.EnrollmentGroup{EnrollmentGroupID: id, Common: enroll.Common{
		Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationX509, X509: &enroll.X509Attestation{
			CAReferences: &enroll.X509CAReferences{Primary: primary, Secondary: secondary}}}}}
}

// x509CA is a CA certificate registered with the service.
func x509CA(name string, ca *pki.Issued, verified bool) *enroll.CACertificate {
	return &enroll.CACertificate{Name: name, Certificate: x509PEM(ca), Subject: pki.DistinguishedName(ca.Cert.Subject),
		Thumbprint: pki.SHA1Thumbprint(ca.Cert), SHA256Thumbprint: pki.SHA256Thumbprint(ca.Cert), IsVerified: verified}
}

// x509Must returns a function that fails t on error: x509Must(t)(ca.NewDevice("x")).
func x509Must(t testing.TB) func(*pki.Issued, error) *pki.Issued {
	return func(i *pki.Issued, err error) *pki.Issued {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
}

// x509Chain is the presented chain: the certificates of the given issued pairs.
func x509Chain(is ...*pki.Issued) []*x509.Certificate {
	out := make([]*x509.Certificate, len(is))
	for i, c := range is {
		out[i] = c.Cert
	}
	return out
}

// x509CNs lists the subject CNs of certificates.
func x509CNs(cs []*x509.Certificate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Subject.CommonName)
	}
	return out
}
