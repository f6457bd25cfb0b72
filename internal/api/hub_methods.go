package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/hub"
	"github.com/muster-iot/muster/internal/telemetry"
)

// HubMessaging is the hub's messaging core as the hub service API uses
// it; *hub.Service implements it.
type HubMessaging interface {
	// HostName is the hub's host name: service tokens must name it (sr).
	HostName() string
	InvokeMethod(ctx context.Context, c hub.MethodCall) (hub.MethodResult, error)
	SendCloudMessage(ctx context.Context, deviceID string, m hub.CloudMessage) (string, error)
	PurgeCloudMessages(ctx context.Context, deviceID string) (int, error)
}

// Hub error names of the messaging routes, and the numeric IoT Hub error
// codes their messages quote.
const (
	hubDeviceNotOnline     = "DeviceNotOnline"                 // 404103
	hubGatewayTimeout      = "GatewayTimeout"                  // 504101
	hubQueueDepthExceeded  = "DeviceMaximumQueueDepthExceeded" // 403004
	codeDeviceNotOnline    = 404103
	codeGatewayTimeout     = 504101
	codeQueueDepthExceeded = 403004
)

// Direct-method timeouts (hub-edge-protocol §4.7: Node's defaults, Azure's ranges).
const (
	defaultMethodResponseTimeout = 30 * time.Second
	minMethodResponseTimeout     = 5 * time.Second
	maxMethodTimeout             = 300 * time.Second
)

// hubStatusError is a hub API answer with its own status and error name.
type hubStatusError struct {
	status  int
	name    string
	message string
	err     error
}

func (e *hubStatusError) Error() string {
	if e.err != nil {
		return e.message + ": " + e.err.Error()
	}
	return e.message
}

func (e *hubStatusError) Unwrap() error { return e.err }

// MountHubMessaging adds the hub's messaging routes over m to the router;
// requests are authorised like MountHub's, with the ServiceConnect right:
//
//   - POST /twins/{id}/methods and /twins/{id}/modules/{mid}/methods
//     (hub-edge-protocol §4.7): body {"methodName", "payload",
//     "responseTimeoutInSeconds" (5–300, default 30),
//     "connectTimeoutInSeconds" (0–300, default 0)}; 200 with
//     {"status","payload"} as the device answered; 404 DeviceNotOnline
//     (404103), 504 GatewayTimeout (504101), 404 DeviceNotFound.
//   - POST /devices/{id}/messages/deviceBound (a Muster extension: IoT Hub
//     sends C2D over AMQP only): the body is the message, its properties
//     are headers as on the device HTTPS API (iothub-messageid,
//     iothub-correlationid, iothub-userid, iothub-expiry (RFC 3339),
//     iothub-ack, iothub-contenttype, iothub-contentencoding and
//     iothub-app-<name>, whose names arrive lower-cased); 200 with
//     {"messageId"} once the message is durable; 403
//     DeviceMaximumQueueDepthExceeded (403004) when 50 messages already
//     wait (sent ones count until the device acknowledges them).
//   - DELETE /devices/{id}/commands (hub-edge-protocol §4.8): drops the
//     device's queued C2D messages; 200 with {"totalMessagesPurged",
//     "deviceId"}.
//
// Call it once, before serving.
func (a *API) MountHubMessaging(m HubMessaging) error {
	if m == nil {
		return errors.New("api: MountHubMessaging needs the hub messaging core")
	}
	host := strings.ToLower(strings.TrimSpace(m.HostName()))
	if host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("api: hub host name %q is not a host name", m.HostName())
	}
	hs := &hubService{a: a, hosts: []string{host}}
	hm := &hubMessaging{hs: hs, m: m}
	for _, e := range []hubEndpoint{
		{method: http.MethodPost, pattern: "/twins/{id}/methods", right: RightServiceConnect, noun: hubDeviceNoun, serve: hm.invokeMethod},
		{method: http.MethodPost, pattern: "/twins/{id}/modules/{mid}/methods", right: RightServiceConnect, noun: hubDeviceNoun, serve: hm.invokeMethod},
		{method: http.MethodPost, pattern: "/devices/{id}/messages/deviceBound", right: RightServiceConnect, noun: hubDeviceNoun, serve: hm.sendCloudMessage},
		{method: http.MethodDelete, pattern: "/devices/{id}/commands", right: RightServiceConnect, noun: hubDeviceNoun, serve: hm.purgeCloudMessages},
	} {
		if err := a.router.handle(e.method, e.pattern, hs.handler(e)); err != nil {
			return fmt.Errorf("api: mount hub messaging: %w", err)
		}
	}
	return nil
}

// hubMessaging serves the messaging routes.
type hubMessaging struct {
	hs *hubService
	m  HubMessaging
}

// methodInput is the body of a direct-method call.
type methodInput struct {
	MethodName      string          `json:"methodName"`
	Payload         json.RawMessage `json:"payload"`
	ResponseTimeout *float64        `json:"responseTimeoutInSeconds"`
	ConnectTimeout  *float64        `json:"connectTimeoutInSeconds"`
}

// seconds converts a timeout field, checking its range.
func seconds(field string, v *float64, def, lo, hi time.Duration) (time.Duration, error) {
	if v == nil {
		return def, nil
	}
	d := time.Duration(*v * float64(time.Second))
	if *v != *v || d < lo || d > hi { // *v != *v: NaN
		return 0, badRequest("%s %v is outside %v to %v", field, *v, lo.Seconds(), hi.Seconds())
	}
	return d, nil
}

// decodeMethodCall decodes a direct-method call body for its target.
func decodeMethodCall(data []byte, deviceID, moduleID string) (hub.MethodCall, error) {
	var in methodInput
	if len(strings.TrimSpace(string(data))) == 0 {
		return hub.MethodCall{}, badRequest("request body is empty; it must be {\"methodName\":…}")
	}
	if err := unmarshalStrict(data, &in); err != nil {
		return hub.MethodCall{}, err
	}
	if in.MethodName == "" {
		return hub.MethodCall{}, badRequest("methodName is missing")
	}
	resp, err := seconds("responseTimeoutInSeconds", in.ResponseTimeout, defaultMethodResponseTimeout, minMethodResponseTimeout, maxMethodTimeout)
	if err != nil {
		return hub.MethodCall{}, err
	}
	conn, err := seconds("connectTimeoutInSeconds", in.ConnectTimeout, 0, 0, maxMethodTimeout)
	if err != nil {
		return hub.MethodCall{}, err
	}
	return hub.MethodCall{DeviceID: deviceID, ModuleID: moduleID, Name: in.MethodName, Payload: in.Payload,
		ResponseTimeout: resp, ConnectTimeout: conn}, nil
}

// invokeMethod is POST /twins/{id}[/modules/{mid}]/methods.
func (hm *hubMessaging) invokeMethod(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	c, err := decodeMethodCall(data, id, r.PathValue("mid"))
	if err != nil {
		return err
	}
	res, err := hm.m.InvokeMethod(r.Context(), c)
	switch {
	case err == nil:
		if len(res.Payload) == 0 {
			res.Payload = json.RawMessage("null")
		}
		hm.hs.a.writeJSON(w, r, http.StatusOK, res)
		return nil
	case errors.Is(err, hub.ErrInvalidMethod):
		return badRequest("%s", err.Error())
	case errors.Is(err, hub.ErrDeviceNotOnline):
		return &hubStatusError{status: http.StatusNotFound, name: hubDeviceNotOnline, err: err,
			message: fmt.Sprintf("Timed out waiting for %s to connect and subscribe to direct methods (errorCode %d)", target(c), codeDeviceNotOnline)}
	case errors.Is(err, hub.ErrMethodTimeout):
		return &hubStatusError{status: http.StatusGatewayTimeout, name: hubGatewayTimeout, err: err,
			message: fmt.Sprintf("Timed out waiting for the response from %s (errorCode %d)", target(c), codeGatewayTimeout)}
	}
	return err
}

// target names a method call's target in messages.
func target(c hub.MethodCall) string {
	if c.ModuleID == "" {
		return "device " + c.DeviceID
	}
	return "module " + c.ModuleID + " of device " + c.DeviceID
}

// cloudMessageHeaders maps C2D request headers to system properties.
func cloudMessageHeaders() [7][2]string {
	return [...][2]string{
		{"iothub-messageid", telemetry.PropMessageID},
		{"iothub-correlationid", telemetry.PropCorrelationID},
		{"iothub-userid", telemetry.PropUserID},
		{"iothub-expiry", telemetry.PropExpiryTime},
		{"iothub-ack", telemetry.PropAck},
		{"iothub-contenttype", telemetry.PropContentType},
		{"iothub-contentencoding", telemetry.PropContentEncoding},
	}
}

// headerAppPrefix starts the headers of application properties.
const headerAppPrefix = "iothub-app-"

// decodeCloudMessage reads a C2D message from a request's headers and body.
func decodeCloudMessage(h http.Header, body []byte) (hub.CloudMessage, error) {
	if len(body) > hub.MaxC2DBodyBytes {
		return hub.CloudMessage{}, &hubStatusError{status: http.StatusRequestEntityTooLarge, name: hubMessageTooLarge,
			message: fmt.Sprintf("message body is %d bytes, more than the %d-byte limit", len(body), hub.MaxC2DBodyBytes)}
	}
	m := hub.CloudMessage{System: map[string]string{}, App: map[string]string{}, Body: body}
	for _, p := range cloudMessageHeaders() {
		if vs := h.Values(p[0]); len(vs) > 0 {
			if len(vs) > 1 {
				return hub.CloudMessage{}, badRequest("header %s is given %d times", p[0], len(vs))
			}
			m.System[p[1]] = vs[0]
		}
	}
	switch ack := m.System[telemetry.PropAck]; ack {
	case "", "none", "positive", "negative", "full":
	default:
		return hub.CloudMessage{}, badRequest("iothub-ack %.32q is not none, positive, negative or full", ack)
	}
	for k, vs := range h {
		name, ok := strings.CutPrefix(strings.ToLower(k), headerAppPrefix)
		if !ok {
			continue
		}
		if name == "" || len(vs) > 1 {
			return hub.CloudMessage{}, badRequest("header %.80s must name a property and be given once", k)
		}
		m.App[name] = vs[0]
	}
	return m, nil
}

// sendCloudMessage is POST /devices/{id}/messages/deviceBound.
func (hm *hubMessaging) sendCloudMessage(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	m, err := decodeCloudMessage(r.Header, data)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	mid, err := hm.m.SendCloudMessage(r.Context(), id, m)
	switch {
	case err == nil:
		hm.hs.a.writeJSON(w, r, http.StatusOK, struct {
			MessageID string `json:"messageId"`
		}{mid})
		return nil
	case errors.Is(err, hub.ErrInvalidC2D):
		return badRequest("%s", err.Error())
	case errors.Is(err, hub.ErrQueueFull):
		return &hubStatusError{status: http.StatusForbidden, name: hubQueueDepthExceeded, err: err,
			message: fmt.Sprintf("Device %s already has %d undelivered cloud-to-device messages (errorCode %d)", id, hub.C2DQueueDepth, codeQueueDepthExceeded)}
	}
	return err
}

// purgeResult is the answer of DELETE /devices/{id}/commands (the service
// SDKs' PurgeMessageQueueResult).
type purgeResult struct {
	TotalMessagesPurged int    `json:"totalMessagesPurged"`
	DeviceID            string `json:"deviceId"`
}

// purgeCloudMessages is DELETE /devices/{id}/commands.
func (hm *hubMessaging) purgeCloudMessages(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	n, err := hm.m.PurgeCloudMessages(r.Context(), id)
	if err != nil {
		return err
	}
	hm.hs.a.writeJSON(w, r, http.StatusOK, purgeResult{TotalMessagesPurged: n, DeviceID: id})
	return nil
}
