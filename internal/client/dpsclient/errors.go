package dpsclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/muster-iot/muster/internal/provision"
)

// maxMessageLen bounds the message taken from a non-JSON error body.
const maxMessageLen = 256

// StatusError is an error status the DPS answered with (HTTP status, or
// the status in the MQTT response topic), with the details of its
// ProvisioningServiceErrorDetails body when the body is JSON.
type StatusError struct {
	// Status is the HTTP status, e.g. 401.
	Status int
	// ErrorCode is the 6-digit DPS error code (e.g. 401002), 0 if absent.
	ErrorCode int
	// Message is the error message of the body, the start of a non-JSON
	// body, or the status text when the body is empty.
	Message string
	// TrackingID is the body's trackingId or the x-ms-request-id header.
	TrackingID string
	// RetryAfter is the Retry-After the server sent, 0 if none.
	RetryAfter time.Duration
}

// Error describes the status, the DPS error code, the message and the
// tracking ID.
func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dps answered status %d", e.Status)
	if e.ErrorCode != 0 {
		fmt.Fprintf(&b, " (errorCode %d)", e.ErrorCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.TrackingID != "" {
		fmt.Fprintf(&b, " [trackingId %s]", e.TrackingID)
	}
	return b.String()
}

// FailedError is a registration that reached a final status other than
// "assigned": "failed" (with the DPS errorCode and errorMessage),
// "disabled", or a status this client does not know.
type FailedError struct {
	// Status is the final operation status, lower-cased.
	Status string
	// ErrorCode is registrationState.errorCode (e.g. 400209), 0 if absent.
	ErrorCode int
	// Message is registrationState.errorMessage or a description of the
	// status.
	Message string
	// State is the registration state the server returned, if any.
	State *provision.DeviceRegistrationResult
}

// Error describes the final status, the DPS error code and the message.
func (e *FailedError) Error() string {
	id := ""
	if e.State != nil && e.State.RegistrationID != "" {
		id = " of " + strconv.Quote(e.State.RegistrationID)
	}
	if e.ErrorCode != 0 {
		return fmt.Sprintf("registration%s ended %s (errorCode %d): %s", id, e.Status, e.ErrorCode, e.Message)
	}
	return fmt.Sprintf("registration%s ended %s: %s", id, e.Status, e.Message)
}

// newStatusError builds a StatusError from an error reply, tolerating
// bodies that are not JSON.
func newStatusError(r reply) *StatusError {
	se := &StatusError{Status: r.status, TrackingID: r.trackingID}
	if r.hasRetryAfter {
		se.RetryAfter = r.retryAfter
	}
	var body struct {
		ErrorCode  json.RawMessage `json:"errorCode"`
		TrackingID string          `json:"trackingId"`
		Message    string          `json:"message"`
	}
	trimmed := bytes.TrimSpace(r.body)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &body) == nil {
		se.ErrorCode = provision.ParseErrorCode(body.ErrorCode)
		se.Message = body.Message
		if body.TrackingID != "" {
			se.TrackingID = body.TrackingID
		}
	} else if len(trimmed) > 0 {
		se.Message = printable(trimmed)
	}
	if se.Message == "" {
		se.Message = http.StatusText(r.status)
	}
	return se
}

// printable returns the start of b as a single printable line.
func printable(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 && sb.Len() < maxMessageLen {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		switch {
		case r == utf8.RuneError && size <= 1:
			sb.WriteRune('\uFFFD')
		case r == '\n' || r == '\r' || r == '\t':
			sb.WriteByte(' ')
		case r < 0x20 || r == 0x7f:
			sb.WriteRune('\uFFFD')
		default:
			sb.WriteRune(r)
		}
	}
	if len(b) > 0 {
		sb.WriteString("…")
	}
	return sb.String()
}
