package telemetry

import "errors"

// Sentinel errors, wrapped by errors that name the precise cause.
var (
	// ErrNotTelemetry means a topic is not a telemetry topic.
	ErrNotTelemetry = errors.New("telemetry: not a telemetry topic")
	// ErrInvalidBag means a property bag, or a message's properties, cannot
	// be accepted (invalid UTF-8, NUL bytes, too many properties).
	ErrInvalidBag = errors.New("telemetry: invalid properties")
	// ErrInvalidMessage means a message lacks what the endpoint needs (a
	// valid device ID, an enqueued time).
	ErrInvalidMessage = errors.New("telemetry: invalid message")
	// ErrTooLarge means a body or a property bag exceeds its limit.
	ErrTooLarge = errors.New("telemetry: too large")
)
