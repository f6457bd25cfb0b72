package hubclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/muster-iot/muster/internal/client/svcconn"
	"net/http"
	"strings"
)

// Sentinel errors callers branch on; an *Error matches the one of its
// answer with errors.Is.
var (
	// ErrNotFound: the device does not exist (404 with error code
	// DeviceNotFound; a 404 without it, such as a wrong address, is not this).
	ErrNotFound = errors.New("hubclient: device not found")
	// ErrConflict: the device already exists (409).
	ErrConflict = errors.New("hubclient: device already exists")
	// ErrPrecondition: If-Match did not equal the current etag (412).
	ErrPrecondition = errors.New("hubclient: etag mismatch")
	// ErrUnauthorized: the hub refused the SAS token (401) or the policy
	// lacks a right (403).
	ErrUnauthorized = errors.New("hubclient: unauthorized")
)

// codeDeviceNotFound is IoT Hub's error name for a missing device.
const codeDeviceNotFound = "DeviceNotFound"

// MaxErrorText caps how much of an error message an Error quotes.
const MaxErrorText = 512

// Error is a non-2xx answer of a hub.
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

// ParseError turns a non-2xx answer into *Error. It reads IoT Hub's body
// ({"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking
// ID:<id>-TimeStamp:…"}), the lower-case and "errorMessage" variants some
// hubs send, or quotes a body of another shape.
func ParseError(status int, h http.Header, body []byte) *Error {
	e := &Error{Status: status, Code: svcconn.Shorten(strings.TrimSpace(h.Get("iothub-errorcode")), MaxErrorText)}
	var eb struct {
		Message          string `json:"Message"`
		LowerMessage     string `json:"message"`
		ErrorMessage     string `json:"errorMessage"`
		ExceptionMessage string `json:"ExceptionMessage"`
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &eb) == nil {
		msg := eb.Message
		for _, alt := range []string{eb.LowerMessage, eb.ErrorMessage} {
			if msg == "" {
				msg = alt
			}
		}
		code, text := splitErrorCode(msg)
		if e.Code == "" {
			e.Code = svcconn.Shorten(code, MaxErrorText)
		}
		e.Message = svcconn.Shorten(text, MaxErrorText)
		e.TrackingID = svcconn.Shorten(trackingID(eb.ExceptionMessage), MaxErrorText)
	} else if len(trimmed) > 0 {
		e.Message = svcconn.Shorten(string(trimmed), MaxErrorText)
	}
	if e.TrackingID == "" {
		e.TrackingID = svcconn.Shorten(h.Get("x-ms-request-id"), MaxErrorText)
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
