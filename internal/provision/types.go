package provision

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/fastjson"
)

// Registration statuses (lower-case on the wire).
const (
	StatusUnassigned = "unassigned"
	StatusAssigning  = "assigning"
	StatusAssigned   = "assigned"
	StatusFailed     = "failed"
	StatusDisabled   = "disabled"
)

// Substatuses of an assigned registration.
const (
	SubstatusInitialAssignment                = "initialAssignment"
	SubstatusDeviceDataMigrated               = "deviceDataMigrated"
	SubstatusDeviceDataReset                  = "deviceDataReset"
	SubstatusReprovisionedToInitialAssignment = "reprovisionedToInitialAssignment"
)

// RegisterRequest is one device registration (or status poll) as a
// transport adapter received it. Adapters never interpret credentials.
type RegisterRequest struct {
	IDScope        string
	RegistrationID string // as the device sent it in the path or MQTT username
	// BodyRegistrationID is the registrationId field of the body, if any.
	BodyRegistrationID string
	// SAS is the SharedAccessSignature token (HTTP Authorization header or
	// MQTT password), empty for X.509.
	SAS string
	// Chain is the TLS client certificate chain as presented, leaf first.
	Chain []*x509.Certificate
	// Payload is the device's custom payload (JSON), if any.
	Payload json.RawMessage
	// HasTPM is set when the body carried a tpm object.
	HasTPM bool
	// Force is forceRegistration.
	Force bool
	// Protocol is "https" or "mqtt"; RemoteAddr the peer, for the attempt log.
	Protocol   string
	RemoteAddr string
}

// OperationRequest is a poll of a registration operation.
type OperationRequest struct {
	RegisterRequest
	OperationID string
}

// DeviceRegistrationResult is the device's view of its registration.
type DeviceRegistrationResult struct {
	RegistrationID         string              `json:"registrationId"`
	CreatedDateTimeUTC     *time.Time          `json:"createdDateTimeUtc,omitempty"`
	AssignedHub            string              `json:"assignedHub,omitempty"`
	DeviceID               string              `json:"deviceId,omitempty"`
	Status                 string              `json:"status"`
	Substatus              string              `json:"substatus,omitempty"`
	ErrorCode              int                 `json:"errorCode,omitempty"`
	ErrorMessage           string              `json:"errorMessage,omitempty"`
	LastUpdatedDateTimeUTC *time.Time          `json:"lastUpdatedDateTimeUtc,omitempty"`
	ETag                   string              `json:"etag,omitempty"`
	Payload                json.RawMessage     `json:"payload,omitempty"`
	X509                   *X509Result         `json:"x509,omitempty"`
	SymmetricKey           *SymmetricKeyResult `json:"symmetricKey,omitempty"`
}

// X509Result is the x509 part of a registration result.
type X509Result struct {
	EnrollmentGroupID string `json:"enrollmentGroupId,omitempty"`
}

// SymmetricKeyResult is the symmetricKey part of a registration result.
type SymmetricKeyResult struct {
	EnrollmentGroupID string `json:"enrollmentGroupId,omitempty"`
}

// OperationStatus is RegistrationOperationStatus, the body of register and
// poll responses.
type OperationStatus struct {
	OperationID       string                    `json:"operationId"`
	Status            string                    `json:"status"`
	RegistrationState *DeviceRegistrationResult `json:"registrationState,omitempty"`
}

// HTTPStatus is the status a transport answers with: 202 while assigning,
// 200 when final.
func (o *OperationStatus) HTTPStatus() int {
	if o.Status == StatusAssigning || o.Status == StatusUnassigned {
		return 202
	}
	return 200
}

// RetryAfterSeconds is the Retry-After given with 202 answers.
const RetryAfterSeconds = 3

// Error is a refusal as the device sees it: an HTTP status, a 6-digit
// errorCode whose first three digits are that status, and a message that
// reveals nothing secret. The precise reason goes to the attempt log.
type Error struct {
	Status     int
	Code       int
	Message    string
	RetryAfter int // seconds; 0 for none
}

func (e *Error) Error() string {
	return fmt.Sprintf("provisioning error %d (%d): %s", e.Status, e.Code, e.Message)
}

// ErrorBody is ProvisioningServiceErrorDetails.
type ErrorBody struct {
	ErrorCode    int               `json:"errorCode"`
	TrackingID   string            `json:"trackingId"`
	Message      string            `json:"message"`
	TimestampUTC time.Time         `json:"timestampUtc"`
	Info         map[string]string `json:"info,omitempty"`
}

// Body renders the error body with a tracking ID.
func (e *Error) Body(trackingID string, now time.Time) ErrorBody {
	return ErrorBody{ErrorCode: e.Code, TrackingID: trackingID, Message: e.Message, TimestampUTC: now.UTC()}
}

// Common device-facing errors.
var (
	ErrUnauthorized   = &Error{Status: 401, Code: 401002, Message: "Unauthorized"}
	ErrNotFound       = &Error{Status: 404, Code: 404201, Message: "Registration not found"}
	ErrBadRequest     = &Error{Status: 400, Code: 400004, Message: "Bad request"}
	ErrInternal       = &Error{Status: 500, Code: 500000, Message: "Internal error"}
	ErrTPMUnsupported = &Error{Status: 400, Code: 400002, Message: "TPM attestation is not supported by this service"}
)

// BadRequest returns a 400 with a message safe to show the device.
func BadRequest(msg string) *Error { return &Error{Status: 400, Code: 400004, Message: msg} }

// ParseErrorCode reads an errorCode field as clients meet it: a JSON number
// or a string of digits; anything else is 0.
func ParseErrorCode(raw json.RawMessage) int {
	if len(raw) == 0 {
		return 0
	}
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return n
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			return n
		}
	}
	return 0
}

// AppendJSON appends o as json.Marshal writes it, or reports false when o
// needs encoding/json (see fastjson).
func (o *OperationStatus) AppendJSON(b []byte) ([]byte, bool) {
	ok := true
	b = append(b, `{"operationId":`...)
	b = fastjson.String(b, o.OperationID, &ok)
	b = append(b, `,"status":`...)
	b = fastjson.String(b, o.Status, &ok)
	if o.RegistrationState != nil {
		b = append(b, `,"registrationState":`...)
		b = o.RegistrationState.appendJSON(b, &ok)
	}
	return append(b, '}'), ok
}

// AppendJSON appends r as json.Marshal writes it, or reports false when r
// needs encoding/json (see fastjson).
func (r *DeviceRegistrationResult) AppendJSON(b []byte) ([]byte, bool) {
	ok := true
	b = r.appendJSON(b, &ok)
	return b, ok
}

func (r *DeviceRegistrationResult) appendJSON(b []byte, ok *bool) []byte {
	b = append(b, `{"registrationId":`...)
	b = fastjson.String(b, r.RegistrationID, ok)
	if r.CreatedDateTimeUTC != nil {
		b = append(b, `,"createdDateTimeUtc":`...)
		b = fastjson.Time(b, *r.CreatedDateTimeUTC, ok)
	}
	b = fastjson.OmitEmpty(b, `,"assignedHub":`, r.AssignedHub, ok)
	b = fastjson.OmitEmpty(b, `,"deviceId":`, r.DeviceID, ok)
	b = append(b, `,"status":`...)
	b = fastjson.String(b, r.Status, ok)
	b = fastjson.OmitEmpty(b, `,"substatus":`, r.Substatus, ok)
	if r.ErrorCode != 0 {
		b = append(b, `,"errorCode":`...)
		b = strconv.AppendInt(b, int64(r.ErrorCode), 10)
	}
	b = fastjson.OmitEmpty(b, `,"errorMessage":`, r.ErrorMessage, ok)
	if r.LastUpdatedDateTimeUTC != nil {
		b = append(b, `,"lastUpdatedDateTimeUtc":`...)
		b = fastjson.Time(b, *r.LastUpdatedDateTimeUTC, ok)
	}
	b = fastjson.OmitEmpty(b, `,"etag":`, r.ETag, ok)
	if len(r.Payload) != 0 {
		b = append(b, `,"payload":`...)
		b = fastjson.Raw(b, r.Payload, ok)
	}
	if r.X509 != nil {
		b = append(b, `,"x509":`...)
		b = appendGroupID(b, r.X509.EnrollmentGroupID, ok)
	}
	if r.SymmetricKey != nil {
		b = append(b, `,"symmetricKey":`...)
		b = appendGroupID(b, r.SymmetricKey.EnrollmentGroupID, ok)
	}
	return append(b, '}')
}

// appendGroupID appends an X509Result or SymmetricKeyResult.
func appendGroupID(b []byte, id string, ok *bool) []byte {
	if id == "" {
		return append(b, "{}"...)
	}
	b = append(b, `{"enrollmentGroupId":`...)
	b = fastjson.String(b, id, ok)
	return append(b, '}')
}
