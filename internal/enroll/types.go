// Package enroll owns the provisioning service's enrollment model:
// individual enrollments, enrollment groups, their attestation mechanisms,
// CA certificates registered for proof-of-possession, and the rules that
// validate, normalise and redact them. The JSON shapes are the Azure DPS
// service API's (api-version 2021-10-01), so SDK clients read and write them
// unchanged. It imports neither net/http nor any store driver.
package enroll

import (
	"encoding/json"
	"time"
)

// Attestation types.
const (
	AttestationSymmetricKey = "symmetricKey"
	AttestationX509         = "x509"
	AttestationTPM          = "tpm"
	AttestationNone         = "none"
)

// Provisioning statuses.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// Allocation policies.
const (
	AllocationHashed     = "hashed"
	AllocationGeoLatency = "geoLatency"
	AllocationStatic     = "static"
	AllocationCustom     = "custom"
)

// AttestationMechanism is the attestation of an enrollment.
type AttestationMechanism struct {
	Type         string                   `json:"type"`
	TPM          *TPMAttestation          `json:"tpm,omitempty"`
	X509         *X509Attestation         `json:"x509,omitempty"`
	SymmetricKey *SymmetricKeyAttestation `json:"symmetricKey,omitempty"`
}

// TPMAttestation holds a TPM's endorsement and storage root keys (base64).
type TPMAttestation struct {
	EndorsementKey string `json:"endorsementKey"`
	StorageRootKey string `json:"storageRootKey,omitempty"`
}

// SymmetricKeyAttestation holds base64 keys. For groups these are group keys
// from which device keys are derived.
type SymmetricKeyAttestation struct {
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
}

// X509Attestation is an X.509 attestation: device certificates (individual
// enrollments), signing certificates (groups) or references to verified CA
// certificates (groups).
type X509Attestation struct {
	ClientCertificates  *X509Certificates `json:"clientCertificates,omitempty"`
	SigningCertificates *X509Certificates `json:"signingCertificates,omitempty"`
	CAReferences        *X509CAReferences `json:"caReferences,omitempty"`
}

// X509Certificates is a primary and an optional secondary certificate.
type X509Certificates struct {
	Primary   *X509CertificateWithInfo `json:"primary,omitempty"`
	Secondary *X509CertificateWithInfo `json:"secondary,omitempty"`
}

// X509CertificateWithInfo carries a certificate as the client sent it
// (PEM, base64 of PEM or base64 of DER) and the info the service derives.
type X509CertificateWithInfo struct {
	Certificate string               `json:"certificate,omitempty"`
	Info        *X509CertificateInfo `json:"info,omitempty"`
}

// X509CertificateInfo describes a certificate.
type X509CertificateInfo struct {
	SubjectName      string    `json:"subjectName"`
	SHA1Thumbprint   string    `json:"sha1Thumbprint"`
	SHA256Thumbprint string    `json:"sha256Thumbprint"`
	IssuerName       string    `json:"issuerName"`
	NotBeforeUTC     time.Time `json:"notBeforeUtc"`
	NotAfterUTC      time.Time `json:"notAfterUtc"`
	SerialNumber     string    `json:"serialNumber"`
	Version          int       `json:"version"`
}

// X509CAReferences names CA certificates registered with the service.
type X509CAReferences struct {
	Primary   string `json:"primary,omitempty"`
	Secondary string `json:"secondary,omitempty"`
}

// Capabilities are device capabilities.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// InitialTwin is the twin state applied on first assignment. Collections
// are kept verbatim.
type InitialTwin struct {
	Tags       json.RawMessage        `json:"tags,omitempty"`
	Properties *InitialTwinProperties `json:"properties,omitempty"`
}

// InitialTwinProperties holds the desired properties of an initial twin.
type InitialTwinProperties struct {
	Desired json.RawMessage `json:"desired,omitempty"`
}

// ReprovisionPolicy says what happens when a registered device registers again.
type ReprovisionPolicy struct {
	UpdateHubAssignment bool `json:"updateHubAssignment"`
	MigrateDeviceData   bool `json:"migrateDeviceData"`
}

// CustomAllocationDefinition points at an allocation webhook.
type CustomAllocationDefinition struct {
	WebhookURL string `json:"webhookUrl"`
	APIVersion string `json:"apiVersion"`
}

// RegistrationStateView is the service's read-only view of a registration
// (DeviceRegistrationState).
type RegistrationStateView struct {
	RegistrationID         string          `json:"registrationId"`
	CreatedDateTimeUTC     *time.Time      `json:"createdDateTimeUtc,omitempty"`
	AssignedHub            string          `json:"assignedHub,omitempty"`
	DeviceID               string          `json:"deviceId,omitempty"`
	Status                 string          `json:"status"`
	Substatus              string          `json:"substatus,omitempty"`
	ErrorCode              int             `json:"errorCode,omitempty"`
	ErrorMessage           string          `json:"errorMessage,omitempty"`
	LastUpdatedDateTimeUTC *time.Time      `json:"lastUpdatedDateTimeUtc,omitempty"`
	ETag                   string          `json:"etag,omitempty"`
	Payload                json.RawMessage `json:"payload,omitempty"`
}

// Common holds the fields individual enrollments and groups share.
type Common struct {
	Attestation                *AttestationMechanism       `json:"attestation"`
	Capabilities               *Capabilities               `json:"capabilities,omitempty"`
	IoTHubHostName             string                      `json:"iotHubHostName,omitempty"`
	InitialTwin                *InitialTwin                `json:"initialTwin,omitempty"`
	ETag                       string                      `json:"etag,omitempty"`
	ProvisioningStatus         string                      `json:"provisioningStatus,omitempty"`
	ReprovisionPolicy          *ReprovisionPolicy          `json:"reprovisionPolicy,omitempty"`
	CreatedDateTimeUTC         *time.Time                  `json:"createdDateTimeUtc,omitempty"`
	LastUpdatedDateTimeUTC     *time.Time                  `json:"lastUpdatedDateTimeUtc,omitempty"`
	AllocationPolicy           string                      `json:"allocationPolicy,omitempty"`
	IoTHubs                    []string                    `json:"iotHubs,omitempty"`
	CustomAllocationDefinition *CustomAllocationDefinition `json:"customAllocationDefinition,omitempty"`
}

// IndividualEnrollment is one device's enrollment.
type IndividualEnrollment struct {
	RegistrationID            string                 `json:"registrationId"`
	DeviceID                  string                 `json:"deviceId,omitempty"`
	RegistrationState         *RegistrationStateView `json:"registrationState,omitempty"`
	OptionalDeviceInformation json.RawMessage        `json:"optionalDeviceInformation,omitempty"`
	Common
}

// EnrollmentGroup is an enrollment shared by many devices.
type EnrollmentGroup struct {
	EnrollmentGroupID string `json:"enrollmentGroupId"`
	Common
}

// CACertificate is a CA certificate registered with the service and, once
// verified by proof-of-possession, usable as a group trust anchor through
// caReferences. Its JSON mirrors the ARM certificate resource's properties.
type CACertificate struct {
	Name             string     `json:"name"`
	Certificate      string     `json:"certificate"` // PEM
	Subject          string     `json:"subject"`
	Thumbprint       string     `json:"thumbprint"` // SHA-1, upper-case hex
	SHA256Thumbprint string     `json:"sha256Thumbprint"`
	IsVerified       bool       `json:"isVerified"`
	VerificationCode string     `json:"verificationCode,omitempty"`
	Expiry           time.Time  `json:"expiry"`
	Created          time.Time  `json:"created"`
	Updated          time.Time  `json:"updated"`
	ETag             string     `json:"etag,omitempty"`
	VerifiedAt       *time.Time `json:"verifiedAt,omitempty"`
}

// BulkResult is the answer to a bulk enrollment operation.
type BulkResult struct {
	IsSuccessful bool        `json:"isSuccessful"`
	Errors       []BulkError `json:"errors"`
}

// BulkError is one failed item of a bulk operation.
type BulkError struct {
	RegistrationID    string `json:"registrationId,omitempty"`
	EnrollmentGroupID string `json:"enrollmentGroupId,omitempty"`
	ErrorCode         int    `json:"errorCode"`
	ErrorStatus       string `json:"errorStatus"`
}
