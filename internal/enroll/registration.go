package enroll

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/muster-iot/muster/internal/fastjson"
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

// AppendJSON appends r's stored document as json.Marshal writes it, or
// reports false when r needs encoding/json (see fastjson).
func (r *Registration) AppendJSON(dst []byte) ([]byte, bool) {
	ok := true
	b := dst
	b = append(b, `{"registrationId":`...)
	b = fastjson.String(b, r.RegistrationID, &ok)
	b = append(b, `,"createdDateTimeUtc":`...)
	b = fastjson.Time(b, r.Created, &ok)
	b = append(b, `,"lastUpdatedDateTimeUtc":`...)
	b = fastjson.Time(b, r.Updated, &ok)
	b = fastjson.OmitEmpty(b, `,"assignedHub":`, r.AssignedHub, &ok)
	b = fastjson.OmitEmpty(b, `,"deviceId":`, r.DeviceID, &ok)
	b = append(b, `,"status":`...)
	b = fastjson.String(b, r.Status, &ok)
	b = fastjson.OmitEmpty(b, `,"substatus":`, r.Substatus, &ok)
	if r.ErrorCode != 0 {
		b = append(b, `,"errorCode":`...)
		b = strconv.AppendInt(b, int64(r.ErrorCode), 10)
	}
	b = fastjson.OmitEmpty(b, `,"errorMessage":`, r.ErrorMessage, &ok)
	if len(r.Payload) != 0 {
		b = append(b, `,"payload":`...)
		b = fastjson.Raw(b, r.Payload, &ok)
	}
	b = append(b, `,"operationId":`...)
	b = fastjson.String(b, r.OperationID, &ok)
	b = append(b, `,"attestation":`...)
	b = fastjson.String(b, r.Attestation, &ok)
	b = fastjson.OmitEmpty(b, `,"enrollmentGroupId":`, r.EnrollmentGroupID, &ok)
	b = fastjson.OmitEmpty(b, `,"initialHub":`, r.InitialHub, &ok)
	b = append(b, `}`...)
	return b, ok
}

// EncodeRegistration returns r's stored document, json.Marshal(r), written
// without reflection when r allows it (see fastjson).
func EncodeRegistration(r *Registration) ([]byte, error) {
	var s fastjson.Scratch
	if b, ok := r.AppendJSON(s[:0]); ok {
		return bytes.Clone(b), nil
	}
	return json.Marshal(r)
}
