package api

import (
	"net/http"
	"testing"
)

// TestRequestIDHeaderIsCanonical pins the request ID header name to its
// canonical form: the one net/http writes on the wire whatever the case
// it is set with, and the one Header.Set and Get use without allocating.
func TestRequestIDHeaderIsCanonical(t *testing.T) {
	if got := http.CanonicalHeaderKey(headerRequestID); got != headerRequestID || got != http.CanonicalHeaderKey("x-ms-request-id") {
		t.Fatalf("headerRequestID %q is not the canonical x-ms-request-id (%q)", headerRequestID, got)
	}
}
