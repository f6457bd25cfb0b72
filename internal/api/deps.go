package api

import (
	"context"
	"github.com/muster-iot/muster/internal/access"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/store"
)

// Registrar is the provisioning service (device side).
type Registrar interface {
	Register(ctx context.Context, req provision.RegisterRequest) (*provision.OperationStatus, error)
	OperationStatus(ctx context.Context, req provision.OperationRequest) (*provision.OperationStatus, error)
	// RegistrationStatus is the optional "registration status lookup" (POST /{idScope}/registrations/{id}).
	RegistrationStatus(ctx context.Context, req provision.RegisterRequest) (*provision.DeviceRegistrationResult, error)
}

// Registrations is the service view of registration records and the attempt log.
type Registrations interface {
	GetRegistration(ctx context.Context, registrationID string) (*enroll.RegistrationStateView, error)
	DeleteRegistration(ctx context.Context, registrationID, ifMatch string) error
	// QueryGroupRegistrations lists a group's registration records; continuation "" starts; next "" means last page.
	QueryGroupRegistrations(ctx context.Context, groupID, continuation string, max int) (items []*enroll.RegistrationStateView, next string, err error)
	Attempts(ctx context.Context, registrationID string, limit int) ([]store.Attempt, error)
}

// Enrollments is the enrollment service.
type Enrollments interface {
	PutEnrollment(ctx context.Context, e *enroll.IndividualEnrollment, ifMatch string) (*enroll.IndividualEnrollment, error)
	GetEnrollment(ctx context.Context, id string) (*enroll.IndividualEnrollment, error)
	DeleteEnrollment(ctx context.Context, id, ifMatch string) error
	EnrollmentAttestation(ctx context.Context, id string) (*enroll.AttestationMechanism, error)
	QueryEnrollments(ctx context.Context, query, continuation string, max int) ([]*enroll.IndividualEnrollment, string, error)
	BulkEnrollments(ctx context.Context, mode string, items []*enroll.IndividualEnrollment) (*enroll.BulkResult, error)
	PutGroup(ctx context.Context, g *enroll.EnrollmentGroup, ifMatch string) (*enroll.EnrollmentGroup, error)
	GetGroup(ctx context.Context, id string) (*enroll.EnrollmentGroup, error)
	DeleteGroup(ctx context.Context, id, ifMatch string) error
	GroupAttestation(ctx context.Context, id string) (*enroll.AttestationMechanism, error)
	QueryGroups(ctx context.Context, query, continuation string, max int) ([]*enroll.EnrollmentGroup, string, error)
	BulkGroups(ctx context.Context, mode string, items []*enroll.EnrollmentGroup) (*enroll.BulkResult, error)
	PutCA(ctx context.Context, name, certificate, ifMatch string) (*enroll.CACertificate, error)
	GetCA(ctx context.Context, name string) (*enroll.CACertificate, error)
	ListCAs(ctx context.Context) ([]*enroll.CACertificate, error)
	DeleteCA(ctx context.Context, name, ifMatch string) error
	GenerateVerificationCode(ctx context.Context, name, ifMatch string) (*enroll.CACertificate, error)
	VerifyCA(ctx context.Context, name, certificate, ifMatch string) (*enroll.CACertificate, error)
}

// Policy is a shared access policy (see package access).
type Policy = access.Policy

// Policies looks up shared access policies by name.
type Policies interface {
	Policy(name string) (Policy, bool)
}

// Policy realms.
const (
	// RealmDPS policies authorise the provisioning service API.
	RealmDPS = "dps"
	// RealmHub policies authorise the hub service API.
	RealmHub = "hub"
)

// The DPS policy rights (Azure's vocabulary) that the service API checks.
const (
	RightServiceConfig           = "ServiceConfig"
	RightEnrollmentRead          = "EnrollmentRead"
	RightEnrollmentWrite         = "EnrollmentWrite"
	RightRegistrationStatusRead  = "RegistrationStatusRead"
	RightRegistrationStatusWrite = "RegistrationStatusWrite"
)
