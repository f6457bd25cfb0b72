package enroll

import (
	"encoding/json"
	"time"
)

// Registration is the stored registration record of one device (its
// "registration state"). The provisioning service writes it; the service API
// shows its RegistrationStateView. Internal fields never reach a device.
type Registration struct {
	RegistrationID string          `json:"registrationId"`
	Created        time.Time       `json:"createdDateTimeUtc"`
	Updated        time.Time       `json:"lastUpdatedDateTimeUtc"`
	AssignedHub    string          `json:"assignedHub,omitempty"`
	DeviceID       string          `json:"deviceId,omitempty"`
	Status         string          `json:"status"`
	Substatus      string          `json:"substatus,omitempty"`
	ErrorCode      int             `json:"errorCode,omitempty"`
	ErrorMessage   string          `json:"errorMessage,omitempty"`
	Payload        json.RawMessage `json:"payload,omitempty"`

	// OperationID is the last registration operation; polls must name it.
	OperationID string `json:"operationId"`
	// Attestation is the mechanism the device used (symmetricKey, x509).
	Attestation string `json:"attestation"`
	// EnrollmentGroupID is set for group registrations.
	EnrollmentGroupID string `json:"enrollmentGroupId,omitempty"`
	// InitialHub is the first hub ever assigned, for the
	// reprovisionedToInitialAssignment substatus.
	InitialHub string `json:"initialHub,omitempty"`
	// ETag is the store's etag (not serialised in the stored document).
	ETag string `json:"-"`
}

// View returns the service API's DeviceRegistrationState.
func (r *Registration) View() *RegistrationStateView {
	created, updated := r.Created, r.Updated
	v := &RegistrationStateView{
		RegistrationID:         r.RegistrationID,
		CreatedDateTimeUTC:     &created,
		AssignedHub:            r.AssignedHub,
		DeviceID:               r.DeviceID,
		Status:                 r.Status,
		Substatus:              r.Substatus,
		ErrorCode:              r.ErrorCode,
		ErrorMessage:           r.ErrorMessage,
		LastUpdatedDateTimeUTC: &updated,
		Payload:                r.Payload,
	}
	if r.ETag != "" {
		v.ETag = RegistrationETag(r.ETag)
	}
	return v
}
