// Package attest owns device attestation for the provisioning service: it
// checks a symmetric-key SAS token or a presented X.509 chain against the
// enrollments that could vouch for the device, in Azure DPS's matching order,
// and either returns the matching enrollment or a Denial that names the
// precise reason for the operator. It knows nothing of HTTP or MQTT.
package attest

// Reason is a stable machine-readable cause of a refused registration.
type Reason string

// The denial reasons. They are part of the operator API: never rename one.
const (
	ReasonSASMalformed             Reason = "sas_malformed"
	ReasonSASExpired               Reason = "sas_expired"
	ReasonSASSignatureMismatch     Reason = "sas_signature_mismatch"
	ReasonSASResourceMismatch      Reason = "sas_resource_mismatch"
	ReasonDerivedKeyMismatch       Reason = "derived_key_mismatch"
	ReasonEnrollmentNotFound       Reason = "enrollment_not_found"
	ReasonEnrollmentDisabled       Reason = "enrollment_disabled"
	ReasonCNRegistrationIDMismatch Reason = "cn_registration_id_mismatch"
	ReasonCertificateExpired       Reason = "certificate_expired"
	ReasonCertificateNotYetValid   Reason = "certificate_not_yet_valid"
	ReasonChainIncomplete          Reason = "chain_incomplete"
	ReasonChainUntrusted           Reason = "chain_untrusted"
	ReasonCANotVerified            Reason = "ca_not_verified"
	ReasonEKUNotClientAuth         Reason = "eku_not_client_auth"
	ReasonScopeUnknown             Reason = "scope_unknown"
	ReasonAllocationFailed         Reason = "allocation_failed"
	ReasonWebhookFailed            Reason = "webhook_failed"
	ReasonAttestationMismatch      Reason = "attestation_type_mismatch"
	ReasonNoCredential             Reason = "no_credential"
	ReasonBadRequest               Reason = "bad_request"
)

// Denial is a refused attestation. Detail and Hint are for the operator
// only; a device is told no more than the Azure-shaped error.
type Denial struct {
	Reason Reason
	// Detail says what exactly failed (which key, which certificate link).
	Detail string
	// Hint says how to fix it.
	Hint string
	// EnrollmentKind ("individual" or "group") and EnrollmentID name the
	// enrollment involved, when one was found.
	EnrollmentKind string
	EnrollmentID   string
}

func (d *Denial) Error() string {
	s := "attestation denied: " + string(d.Reason)
	if d.Detail != "" {
		s += ": " + d.Detail
	}
	return s
}
