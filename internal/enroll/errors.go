package enroll

import (
	"errors"
	"fmt"
)

// Sentinel errors of the enrollment service; adapters map them to HTTP.
var (
	// ErrNotFound: no such enrollment, group, registration or CA certificate (404).
	ErrNotFound = errors.New("not found")
	// ErrPrecondition: If-Match did not equal the current etag (412).
	ErrPrecondition = errors.New("etag mismatch")
	// ErrConflict: the object already exists (409).
	ErrConflict = errors.New("already exists")
)

// ValidationError says which field of a request is invalid (400).
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Message)
}

// Invalid returns a *ValidationError.
func Invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}
