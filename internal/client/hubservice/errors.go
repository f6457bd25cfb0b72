package hubservice

import (
	"net/http"

	"github.com/muster-iot/muster/internal/hubclient"
)

// Error is a non-2xx answer of the hub. The hub service API's error shape
// is the same one the provisioning service's remote hub client reads, so
// both clients share hubclient's type and parser.
type Error = hubclient.Error

// Sentinel errors callers branch on; an *Error matches the one of its
// answer with errors.Is.
var (
	// ErrNotFound: the device does not exist (404 DeviceNotFound).
	ErrNotFound = hubclient.ErrNotFound
	// ErrConflict: the device already exists (409).
	ErrConflict = hubclient.ErrConflict
	// ErrPrecondition: If-Match did not equal the current etag (412).
	ErrPrecondition = hubclient.ErrPrecondition
	// ErrUnauthorized: the hub refused the SAS token (401) or the policy
	// lacks a right (403).
	ErrUnauthorized = hubclient.ErrUnauthorized
)

// parseError turns a non-2xx answer into *Error.
func parseError(status int, h http.Header, body []byte) *Error {
	return hubclient.ParseError(status, h, body)
}
