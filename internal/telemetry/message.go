package telemetry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

// MaxBodyBytes is the largest telemetry body (256 KiB, Azure's device-to-
// cloud limit; the Node SDK refuses larger messages before sending).
const MaxBodyBytes = 256 << 10

// Message is one device-to-cloud message of the built-in endpoint.
type Message struct {
	// Seq is the message's position in the stream, assigned by the store
	// on append; readers resume after it.
	Seq int64
	// DeviceID and ModuleID name the sender (ModuleID is empty for a
	// device).
	DeviceID, ModuleID string
	// EnqueuedTime is when the hub accepted the message (UTC).
	EnqueuedTime time.Time
	// SystemProperties are keyed by the Prop* names (message-id,
	// content-type, iothub-connection-device-id, …); unknown system
	// properties a device sent keep their "$." bag key.
	SystemProperties map[string]string
	// Properties are the application properties.
	Properties map[string]string
	// Body is the payload, at most MaxBodyBytes.
	Body []byte
}

// NewMessage builds the message a device or module published on a
// telemetry topic: it parses the topic's property bag, keeps a copy of
// body, and stamps the connection IDs with the authenticated identity
// (whatever the device put in $.cdid and $.cmid) and the enqueued time.
// Errors wrap ErrTooLarge, ErrInvalidBag or ErrInvalidMessage.
func NewMessage(deviceID, moduleID, bag string, body []byte, enqueued time.Time) (Message, error) {
	sys, app, err := ParseBag(bag)
	if err != nil {
		return Message{}, fmt.Errorf("parse properties of %s: %w", source(deviceID, moduleID), err)
	}
	sys[PropConnectionDeviceID] = deviceID
	if moduleID != "" {
		sys[PropConnectionModuleID] = moduleID
	} else {
		delete(sys, PropConnectionModuleID)
	}
	m := Message{
		DeviceID:         deviceID,
		ModuleID:         moduleID,
		EnqueuedTime:     enqueued.UTC(),
		SystemProperties: sys,
		Properties:       app,
		Body:             bytes.Clone(body),
	}
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// source names a message's sender in errors.
func source(deviceID, moduleID string) string {
	if moduleID == "" {
		return fmt.Sprintf("device %.64q", deviceID)
	}
	return fmt.Sprintf("module %.64q/%.64q", deviceID, moduleID)
}

// Validate reports why the endpoint cannot keep m: an invalid device or
// module ID, no enqueued time, a body above MaxBodyBytes, or properties
// above MaxProperties or MaxBagBytes or with names or values that are not
// valid UTF-8 or contain NUL bytes.
func (m Message) Validate() error {
	who := source(m.DeviceID, m.ModuleID)
	if !ValidID(m.DeviceID) {
		return fmt.Errorf("%w: device ID %.64q is not a valid ID", ErrInvalidMessage, m.DeviceID)
	}
	if m.ModuleID != "" && !ValidID(m.ModuleID) {
		return fmt.Errorf("%w: module ID %.64q is not a valid ID", ErrInvalidMessage, m.ModuleID)
	}
	if m.EnqueuedTime.IsZero() {
		return fmt.Errorf("%w: message of %s has no enqueued time", ErrInvalidMessage, who)
	}
	if len(m.Body) > MaxBodyBytes {
		return fmt.Errorf("%w: body of %s is %d bytes, more than %d", ErrTooLarge, who, len(m.Body), MaxBodyBytes)
	}
	if n := len(m.SystemProperties) + len(m.Properties); n > MaxProperties {
		return fmt.Errorf("%w: %s sent %d properties, more than %d", ErrTooLarge, who, n, MaxProperties)
	}
	size := 0
	for _, props := range []map[string]string{m.SystemProperties, m.Properties} {
		for name, value := range props {
			if err := checkProperty(name, value); err != nil {
				return fmt.Errorf("properties of %s: %w", who, err)
			}
			size += len(name) + len(value)
		}
	}
	if size > MaxBagBytes {
		return fmt.Errorf("%w: properties of %s are %d bytes, more than %d", ErrTooLarge, who, size, MaxBagBytes)
	}
	return nil
}

// metadata is the JSON document a message keeps in its stream entry; the
// IDs, the enqueued time and the body have their own fields.
type metadata struct {
	SystemProperties map[string]string `json:"systemProperties,omitempty"`
	Properties       map[string]string `json:"properties,omitempty"`
}

// Entry converts a valid message to its stream entry (Key: device ID,
// Sub: module ID, Time: enqueued time).
func (m Message) Entry() (store.StreamEntry, error) {
	if err := m.Validate(); err != nil {
		return store.StreamEntry{}, err
	}
	doc, err := json.Marshal(metadata{SystemProperties: m.SystemProperties, Properties: m.Properties})
	if err != nil {
		return store.StreamEntry{}, fmt.Errorf("encode properties of %s: %w", source(m.DeviceID, m.ModuleID), err)
	}
	return store.StreamEntry{Key: m.DeviceID, Sub: m.ModuleID, Time: m.EnqueuedTime, Doc: doc, Body: m.Body}, nil
}

// MessageFromEntry converts a stream entry back to a message.
func MessageFromEntry(e store.StreamEntry) (Message, error) {
	var md metadata
	if err := json.Unmarshal(e.Doc, &md); err != nil {
		return Message{}, fmt.Errorf("decode properties of message %d: %w", e.Seq, err)
	}
	return Message{
		Seq:              e.Seq,
		DeviceID:         e.Key,
		ModuleID:         e.Sub,
		EnqueuedTime:     e.Time.UTC(),
		SystemProperties: md.SystemProperties,
		Properties:       md.Properties,
		Body:             e.Body,
	}, nil
}

// Annotations returns the system properties as a reader of the built-in
// endpoint sees them: the message's own plus the hub's stamps
// (iothub-connection-device-id and -module-id, iothub-enqueuedtime in RFC
// 3339 with nanoseconds, iothub-message-source "Telemetry").
func (m Message) Annotations() map[string]string {
	out := maps.Clone(m.SystemProperties)
	if out == nil {
		out = map[string]string{}
	}
	out[PropConnectionDeviceID] = m.DeviceID
	if m.ModuleID != "" {
		out[PropConnectionModuleID] = m.ModuleID
	}
	out[PropEnqueuedTime] = m.EnqueuedTime.UTC().Format(time.RFC3339Nano)
	out[PropMessageSource] = "Telemetry"
	return out
}
