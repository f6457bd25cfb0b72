package hubservice

// Messaging: cloud-to-device messages (Muster's POST
// /devices/{id}/messages/deviceBound, DELETE /devices/{id}/commands) and
// direct methods (POST /twins/{id}[/modules/{mid}]/methods,
// hub-edge-protocol §4.7).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Direct-method timeouts (Azure's ranges and the SDKs' default).
const (
	DefaultMethodResponseTimeout = 30 * time.Second
	MinMethodResponseTimeout     = 5 * time.Second
	MaxMethodTimeout             = 300 * time.Second
	// MaxMethodWait is the longest a method call can wait for its answer
	// (the longest connect timeout plus the longest response timeout).
	MaxMethodWait = 2 * MaxMethodTimeout
)

// MaxCloudMessageBytes caps a C2D message body (IoT Hub's limit).
const MaxCloudMessageBytes = 64 << 10

// segCommands is the C2D queue of a device (DELETE purges it).
const segCommands = "commands"

// C2D feedback requests (iothub-ack).
var cloudAcks = []string{"none", "positive", "negative", "full"}

// CloudMessage is a cloud-to-device message to send.
type CloudMessage struct {
	// Body is the payload (at most MaxCloudMessageBytes).
	Body []byte
	// MessageID identifies the message (empty: the hub makes one up).
	MessageID string
	// CorrelationID and UserID are passed to the device as they are.
	CorrelationID, UserID string
	// ExpiryTime drops the message undelivered after it (zero: the hub's
	// default of one hour; the hub caps it at 48 hours).
	ExpiryTime time.Time
	// Ack is the feedback request: none, positive, negative or full
	// (empty: none).
	Ack string
	// ContentType and ContentEncoding describe the body.
	ContentType, ContentEncoding string
	// Properties are the application properties. Their names are sent as
	// HTTP header names, so they must be lower-case HTTP tokens.
	Properties map[string]string
}

// headers returns the message's properties as the hub's request headers.
func (m CloudMessage) headers() (http.Header, error) {
	if len(m.Body) > MaxCloudMessageBytes {
		return nil, fmt.Errorf("body is %d bytes, more than the %d-byte limit", len(m.Body), MaxCloudMessageBytes)
	}
	if m.Ack != "" && !slices.Contains(cloudAcks, m.Ack) {
		return nil, fmt.Errorf("ack %q is not one of %s", m.Ack, strings.Join(cloudAcks, ", "))
	}
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	for _, p := range [...][2]string{
		{"iothub-messageid", m.MessageID}, {"iothub-correlationid", m.CorrelationID}, {"iothub-userid", m.UserID},
		{"iothub-ack", m.Ack}, {"iothub-contenttype", m.ContentType}, {"iothub-contentencoding", m.ContentEncoding},
	} {
		if p[1] != "" {
			if err := checkHeaderValue(p[0], p[1]); err != nil {
				return nil, err
			}
			h.Set(p[0], p[1])
		}
	}
	if !m.ExpiryTime.IsZero() {
		h.Set("iothub-expiry", m.ExpiryTime.UTC().Format(time.RFC3339Nano))
	}
	for k, v := range m.Properties {
		if err := checkPropertyName(k); err != nil {
			return nil, err
		}
		if err := checkHeaderValue("property "+k, v); err != nil {
			return nil, err
		}
		h.Set("iothub-app-"+k, v)
	}
	return h, nil
}

// checkPropertyName accepts lower-case HTTP tokens (RFC 9110 tchar): the
// hub reads property names from header names, which HTTP does not keep
// the case of.
func checkPropertyName(k string) error {
	if k == "" {
		return errors.New("a property has an empty name")
	}
	for _, r := range k {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		case r >= 'A' && r <= 'Z':
			return fmt.Errorf("property name %q has upper-case letters; the hub receives names lower-cased", k)
		default:
			return fmt.Errorf("property name %q contains %q; names are HTTP tokens (letters, digits and !#$%%&'*+-.^_`|~)", k, r)
		}
	}
	return nil
}

// checkHeaderValue refuses what an HTTP header value cannot carry.
func checkHeaderValue(what, v string) error {
	if strings.ContainsAny(v, "\r\n\x00") {
		return fmt.Errorf("%s %.40q contains a line break or NUL", what, v)
	}
	return nil
}

// SendCloudMessage queues a C2D message for a device and returns its
// message ID once the hub has stored it. The hub refuses a 51st waiting
// message (*Error with code DeviceMaximumQueueDepthExceeded); an unknown
// device is ErrNotFound.
func (c *Client) SendCloudMessage(ctx context.Context, deviceID string, m CloudMessage) (string, error) {
	if err := checkID("device ID", deviceID); err != nil {
		return "", fmt.Errorf("send cloud-to-device message: %w", err)
	}
	h, err := m.headers()
	if err != nil {
		return "", fmt.Errorf("send cloud-to-device message to %s: %w", deviceID, err)
	}
	raw := m.Body
	if raw == nil {
		raw = []byte{}
	}
	var out struct {
		MessageID string `json:"messageId"`
	}
	if _, err := c.call(ctx, request{method: http.MethodPost, segs: []string{segDevices, deviceID, segMessages, "deviceBound"}, raw: raw, header: h}, &out); err != nil {
		return "", err
	}
	return out.MessageID, nil
}

// PurgeCloudMessages drops every C2D message waiting for a device and
// returns how many the hub dropped.
func (c *Client) PurgeCloudMessages(ctx context.Context, deviceID string) (int, error) {
	if err := checkID("device ID", deviceID); err != nil {
		return 0, fmt.Errorf("purge cloud-to-device messages: %w", err)
	}
	var out struct {
		TotalMessagesPurged int `json:"totalMessagesPurged"`
	}
	if _, err := c.call(ctx, request{method: http.MethodDelete, segs: []string{segDevices, deviceID, segCommands}}, &out); err != nil {
		return 0, err
	}
	return out.TotalMessagesPurged, nil
}

// MethodCall is a direct-method invocation.
type MethodCall struct {
	// DeviceID is the target; ModuleID, when set, a module of it.
	DeviceID, ModuleID string
	// Name is the method name.
	Name string
	// Payload is the JSON sent to the device (nil: null).
	Payload json.RawMessage
	// ResponseTimeout bounds the wait for the device's answer (0:
	// DefaultMethodResponseTimeout; else MinMethodResponseTimeout to
	// MaxMethodTimeout).
	ResponseTimeout time.Duration
	// ConnectTimeout is how long the hub waits for an offline target to
	// connect (0 to MaxMethodTimeout; 0 fails at once).
	ConnectTimeout time.Duration
}

// MethodResult is the device's answer.
type MethodResult struct {
	// Status is the status the device answered with.
	Status int `json:"status"`
	// Payload is the device's JSON answer (null when it sent none).
	Payload json.RawMessage `json:"payload"`
}

// methodRequest is the body of a method call.
type methodRequest struct {
	MethodName      string          `json:"methodName"`
	Payload         json.RawMessage `json:"payload"`
	ResponseTimeout float64         `json:"responseTimeoutInSeconds"`
	ConnectTimeout  float64         `json:"connectTimeoutInSeconds"`
}

// InvokeMethod calls a direct method and returns the device's answer,
// whatever its status. The hub answers 404 DeviceNotOnline (*Error) when
// the target is not connected and subscribed to methods within the
// connect timeout, and 504 GatewayTimeout when it does not answer within
// the response timeout; an unknown device is ErrNotFound.
func (c *Client) InvokeMethod(ctx context.Context, call MethodCall) (*MethodResult, error) {
	if err := checkID("device ID", call.DeviceID); err != nil {
		return nil, fmt.Errorf("invoke method: %w", err)
	}
	if strings.TrimSpace(call.Name) == "" {
		return nil, errors.New("invoke method: the method name is empty")
	}
	resp := call.ResponseTimeout
	if resp == 0 {
		resp = DefaultMethodResponseTimeout
	}
	if resp < MinMethodResponseTimeout || resp > MaxMethodTimeout {
		return nil, fmt.Errorf("invoke method %s: response timeout %v is outside %v to %v", call.Name, resp, MinMethodResponseTimeout, MaxMethodTimeout)
	}
	if call.ConnectTimeout < 0 || call.ConnectTimeout > MaxMethodTimeout {
		return nil, fmt.Errorf("invoke method %s: connect timeout %v is outside 0s to %v", call.Name, call.ConnectTimeout, MaxMethodTimeout)
	}
	payload := json.RawMessage("null")
	if len(call.Payload) > 0 {
		if !json.Valid(call.Payload) {
			return nil, fmt.Errorf("invoke method %s: the payload is not JSON", call.Name)
		}
		payload = call.Payload
	}
	segs := []string{segTwins, call.DeviceID, "methods"}
	if call.ModuleID != "" {
		segs = []string{segTwins, call.DeviceID, "modules", call.ModuleID, "methods"}
	}
	body := methodRequest{MethodName: call.Name, Payload: payload, ResponseTimeout: resp.Seconds(), ConnectTimeout: call.ConnectTimeout.Seconds()}
	var out MethodResult
	if _, err := c.call(ctx, request{method: http.MethodPost, segs: segs, body: body}, &out); err != nil {
		return nil, err
	}
	if len(out.Payload) == 0 {
		out.Payload = json.RawMessage("null")
	}
	return &out, nil
}
