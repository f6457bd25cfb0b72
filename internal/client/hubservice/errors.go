package hubservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/muster-iot/muster/internal/client/svcconn"
)

// Sentinel errors callers branch on; an *Error matches the one of its
// answer with errors.Is.
var (
	// ErrNotFound: the device does not exist (404 DeviceNotFound).
	ErrNotFound = errors.New("hubservice: device not found")
	// ErrConflict: the device already exists (409).
	ErrConflict = errors.New("hubservice: device already exists")
	// ErrPrecondition: If-Match did not equal the current etag (412).
	ErrPrecondition = errors.New("hubservice: etag mismatch")
	// ErrUnauthorized: the hub refused the SAS token (401) or the policy
	// lacks a right (403).
	ErrUnauthorized = errors.New("hubservice: unauthorized")
)

// codeDeviceNotFound is IoT Hub's error name for a missing device.
const codeDeviceNotFound = "DeviceNotFound"

// maxErrorText caps how much of an error message an Error quotes.
const maxErrorText = 512

// Error is a non-2xx answer of the hub.
type Error struct {
	// Hub is the hub's host name.
	Hub string
	// Method and Path name the call ("PUT", "/devices/dev1").
	Method, Path string
	// Status is the HTTP status code.
	Status int
	// Code is IoT Hub's error name ("DeviceNotFound"), from the
	// iothub-errorcode header or the body's "ErrorCode:<Name>;" prefix.
	Code string
	// Message is the hub's explanation (or the start of a non-JSON body).
	Message string
	// TrackingID ties the answer to the hub's log.
	TrackingID string
}

// Error says what the hub answered to which call.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hub %s: %s %s: answered %d %s", e.Hub, e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.TrackingID != "" {
		fmt.Fprintf(&b, " [tracking ID %s]", e.TrackingID)
	}
	return b.String()
}

// Is matches the sentinel of the answer.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound && strings.EqualFold(e.Code, codeDeviceNotFound)
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrPrecondition:
		return e.Status == http.StatusPreconditionFailed
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	}
	return false
}

// parseError turns a non-2xx answer into *Error. It reads IoT Hub's body
// ({"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking
// ID:<id>-TimeStamp:…"}) or quotes a body of another shape.
func parseError(status int, h http.Header, body []byte) *Error {
	e := &Error{Status: status, Code: svcconn.Shorten(strings.TrimSpace(h.Get("iothub-errorcode")), maxErrorText)}
	var eb struct {
		Message          string `json:"Message"`
		ExceptionMessage string `json:"ExceptionMessage"`
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &eb) == nil {
		code, text := splitErrorCode(eb.Message)
		if e.Code == "" {
			e.Code = svcconn.Shorten(code, maxErrorText)
		}
		e.Message = svcconn.Shorten(text, maxErrorText)
		e.TrackingID = svcconn.Shorten(trackingID(eb.ExceptionMessage), maxErrorText)
	} else if len(trimmed) > 0 {
		e.Message = svcconn.Shorten(string(trimmed), maxErrorText)
	}
	if e.TrackingID == "" {
		e.TrackingID = svcconn.Shorten(h.Get("x-ms-request-id"), maxErrorText)
	}
	return e
}

// splitErrorCode splits "ErrorCode:<Name>;<text>" into name and text; a
// message without the prefix is all text.
func splitErrorCode(msg string) (code, text string) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(msg), "ErrorCode:")
	if !ok {
		return "", msg
	}
	code, text, _ = strings.Cut(rest, ";")
	return strings.TrimSpace(code), strings.TrimSpace(text)
}

// trackingID extracts <id> from "Tracking ID:<id>-TimeStamp:…".
func trackingID(exception string) string {
	rest, ok := strings.CutPrefix(strings.TrimSpace(exception), "Tracking ID:")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "-TimeStamp:")
	return strings.TrimSpace(id)
}
