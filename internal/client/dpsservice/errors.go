package dpsservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/muster-iot/muster/internal/client/svcconn"
	"github.com/muster-iot/muster/internal/provision"
	"net/http"
	"strconv"
	"strings"
)

// Sentinel errors callers branch on; an *Error matches the one of its
// HTTP status with errors.Is.
var (
	// ErrNotFound: the enrollment, group, registration or CA does not exist (404).
	ErrNotFound = errors.New("dpsservice: not found")
	// ErrConflict: the object already exists (409).
	ErrConflict = errors.New("dpsservice: already exists")
	// ErrPrecondition: If-Match did not equal the current etag (412).
	ErrPrecondition = errors.New("dpsservice: etag mismatch")
	// ErrUnauthorized: the service refused the SAS token (401) or the
	// policy lacks the right (403).
	ErrUnauthorized = errors.New("dpsservice: unauthorized")
)

// maxErrorText caps how much of a non-JSON error body an Error quotes.
const maxErrorText = 512

// Error is a non-2xx answer of the service.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// ErrorCode is the service's 6-digit code (its first three digits are
	// the status); 0 when the body carried none.
	ErrorCode int
	// Message is the service's explanation (or the start of a non-JSON body).
	Message string
	// TrackingID ties the answer to the server's log line.
	TrackingID string
}

// Error says what the service answered: status, errorCode, message and
// tracking ID.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "service answered %d %s", e.Status, http.StatusText(e.Status))
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

// Is matches the sentinel of the error's HTTP status.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrPrecondition:
		return e.Status == http.StatusPreconditionFailed
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	}
	return false
}

// errorBody is ProvisioningServiceErrorDetails. errorCode is a number on
// the wire, but some services send it as a string; both are accepted.
type errorBody struct {
	ErrorCode  json.RawMessage `json:"errorCode"`
	TrackingID string          `json:"trackingId"`
	Message    string          `json:"message"`
}

// parseError turns a non-2xx answer into *Error. A body that is not the
// service's JSON error shape is quoted (shortened, as valid UTF-8).
func parseError(status int, h http.Header, body []byte) *Error {
	e := &Error{Status: status}
	var eb errorBody
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &eb) == nil {
		e.ErrorCode = provision.ParseErrorCode(eb.ErrorCode)
		e.TrackingID = eb.TrackingID
		e.Message = eb.Message
	} else if len(trimmed) > 0 {
		e.Message = svcconn.Shorten(string(trimmed), maxErrorText)
	}
	if e.ErrorCode == 0 {
		if n, err := strconv.Atoi(h.Get("x-ms-error-code")); err == nil {
			e.ErrorCode = n
		}
	}
	if e.TrackingID == "" {
		e.TrackingID = h.Get("x-ms-request-id")
	}
	return e
}
