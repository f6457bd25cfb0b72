package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/hub"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/telemetry"
)

// fakeMessaging records calls and answers with fixed results.
type fakeMessaging struct {
	mu      sync.Mutex
	calls   []hub.MethodCall
	msgs    []hub.CloudMessage
	result  hub.MethodResult
	err     error
	msgID   string
	deviceT string
	purged  int
}

func (f *fakeMessaging) HostName() string { return hubHost }

func (f *fakeMessaging) InvokeMethod(_ context.Context, c hub.MethodCall) (hub.MethodResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	return f.result, f.err
}

func (f *fakeMessaging) SendCloudMessage(_ context.Context, deviceID string, m hub.CloudMessage) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, m)
	f.deviceT = deviceID
	return f.msgID, f.err
}

func (f *fakeMessaging) PurgeCloudMessages(_ context.Context, deviceID string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deviceT = deviceID
	return f.purged, f.err
}

func newMessagingHarness(t *testing.T, f *fakeMessaging) *hubHarness {
	t.Helper()
	h := newHubHarness(t)
	if err := h.api.MountHubMessaging(f); err != nil {
		t.Fatalf("MountHubMessaging: %v", err)
	}
	return h
}

func TestHubInvokeMethod(t *testing.T) {
	for _, tc := range []struct {
		name     string
		path     string
		body     string
		result   hub.MethodResult
		err      error
		wantCall *hub.MethodCall
		status   int
		code     string
		wantBody string
		wantText string
	}{
		{
			name: "device answers", path: "/twins/dev1/methods",
			body:     `{"methodName":"reboot","payload":{"delay":5},"responseTimeoutInSeconds":10,"connectTimeoutInSeconds":2}`,
			result:   hub.MethodResult{Status: 201, Payload: json.RawMessage(`{"ok":true}`)},
			wantCall: &hub.MethodCall{DeviceID: "dev1", Name: "reboot", Payload: json.RawMessage(`{"delay":5}`), ResponseTimeout: 10 * time.Second, ConnectTimeout: 2 * time.Second},
			status:   http.StatusOK, wantBody: `{"status":201,"payload":{"ok":true}}`,
		},
		{
			name: "defaults and module", path: "/twins/dev1/modules/mod1/methods", body: `{"methodName":"m"}`,
			result:   hub.MethodResult{Status: 500},
			wantCall: &hub.MethodCall{DeviceID: "dev1", ModuleID: "mod1", Name: "m", ResponseTimeout: 30 * time.Second},
			status:   http.StatusOK, wantBody: `{"status":500,"payload":null}`,
		},
		{
			name: "device not online", path: "/twins/dev1/methods", body: `{"methodName":"m"}`, err: fmt.Errorf("x: %w", hub.ErrDeviceNotOnline),
			wantCall: &hub.MethodCall{DeviceID: "dev1", Name: "m", ResponseTimeout: 30 * time.Second},
			status:   http.StatusNotFound, code: hubDeviceNotOnline, wantText: "404103",
		},
		{
			name: "no answer", path: "/twins/dev1/methods", body: `{"methodName":"m"}`, err: fmt.Errorf("x: %w", hub.ErrMethodTimeout),
			wantCall: &hub.MethodCall{DeviceID: "dev1", Name: "m", ResponseTimeout: 30 * time.Second},
			status:   http.StatusGatewayTimeout, code: hubGatewayTimeout, wantText: "504101",
		},
		{
			name: "unknown device", path: "/twins/ghost/methods", body: `{"methodName":"m"}`, err: fmt.Errorf("x: %w", registry.ErrNotFound),
			wantCall: &hub.MethodCall{DeviceID: "ghost", Name: "m", ResponseTimeout: 30 * time.Second},
			status:   http.StatusNotFound, code: hubDeviceNotFound, wantText: "ghost",
		},
		{
			name: "invalid name", path: "/twins/dev1/methods", body: `{"methodName":"a#b"}`, err: fmt.Errorf("x: %w", hub.ErrInvalidMethod),
			wantCall: &hub.MethodCall{DeviceID: "dev1", Name: "a#b", ResponseTimeout: 30 * time.Second},
			status:   http.StatusBadRequest, code: hubArgumentInvalid,
		},
		{name: "response timeout too short", path: "/twins/dev1/methods", body: `{"methodName":"m","responseTimeoutInSeconds":4}`, status: http.StatusBadRequest, code: hubArgumentInvalid, wantText: "responseTimeoutInSeconds"},
		{name: "connect timeout too long", path: "/twins/dev1/methods", body: `{"methodName":"m","connectTimeoutInSeconds":301}`, status: http.StatusBadRequest, code: hubArgumentInvalid, wantText: "connectTimeoutInSeconds"},
		{name: "no method name", path: "/twins/dev1/methods", body: `{"payload":1}`, status: http.StatusBadRequest, code: hubArgumentInvalid, wantText: "methodName"},
		{name: "empty body", path: "/twins/dev1/methods", status: http.StatusBadRequest, code: hubArgumentInvalid},
		{name: "not JSON", path: "/twins/dev1/methods", body: `{`, status: http.StatusBadRequest, code: hubArgumentInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeMessaging{result: tc.result, err: tc.err}
			h := newMessagingHarness(t, f)
			res := h.hub(http.MethodPost, tc.path+hubVersion, tc.body, map[string]string{"Authorization": h.hubToken("service")})
			if res.status != tc.status || res.code != tc.code {
				t.Fatalf("%d %s %s, want %d %s", res.status, res.code, res.body, tc.status, tc.code)
			}
			if tc.wantBody != "" && string(res.body) != tc.wantBody {
				t.Errorf("body %s, want %s", res.body, tc.wantBody)
			}
			if !strings.Contains(res.message, tc.wantText) {
				t.Errorf("message %q does not contain %q", res.message, tc.wantText)
			}
			var want []hub.MethodCall
			if tc.wantCall != nil {
				want = []hub.MethodCall{*tc.wantCall}
			}
			if diff := cmp.Diff(want, f.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHubMessagingAuth(t *testing.T) {
	for _, tc := range []struct {
		policy string
		ok     bool
	}{{"iothubowner", true}, {"service", true}, {"registryReadWrite", false}, {"device", false}} {
		t.Run(tc.policy, func(t *testing.T) {
			h := newMessagingHarness(t, &fakeMessaging{msgID: "m"})
			auth := map[string]string{"Authorization": h.hubToken(tc.policy)}
			for _, r := range []struct{ path, body string }{{"/twins/dev1/methods", `{"methodName":"m"}`}, {"/devices/dev1/messages/deviceBound", "x"}} {
				res := h.hub(http.MethodPost, r.path+hubVersion, r.body, auth)
				if tc.ok != (res.status == http.StatusOK) || !tc.ok && res.code != hubUnauthorized {
					t.Errorf("POST %s: %d %s, want success %v", r.path, res.status, res.code, tc.ok)
				}
			}
		})
	}
}

func TestHubSendCloudMessage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hdr     map[string]string
		body    string
		err     error
		want    *hub.CloudMessage
		status  int
		code    string
		wantMsg string
	}{
		{
			name: "properties from headers",
			hdr: map[string]string{"iothub-messageid": "m-1", "iothub-correlationid": "c-1", "iothub-ack": "full",
				"iothub-contenttype": "application/json", "iothub-expiry": "2030-01-01T00:00:00Z", "IoTHub-App-Color": "blue", "Content-Type": "text/plain"},
			body: `{"a":1}`,
			want: &hub.CloudMessage{
				System: map[string]string{telemetry.PropMessageID: "m-1", telemetry.PropCorrelationID: "c-1", telemetry.PropAck: "full",
					telemetry.PropContentType: "application/json", telemetry.PropExpiryTime: "2030-01-01T00:00:00Z"},
				App:  map[string]string{"color": "blue"},
				Body: []byte(`{"a":1}`),
			},
			status: http.StatusOK,
		},
		{name: "queue full", body: "x", err: fmt.Errorf("x: %w", hub.ErrQueueFull), want: &hub.CloudMessage{System: map[string]string{}, App: map[string]string{}, Body: []byte("x")},
			status: http.StatusForbidden, code: hubQueueDepthExceeded, wantMsg: "403004"},
		{name: "invalid", body: "x", err: fmt.Errorf("x: %w", hub.ErrInvalidC2D), want: &hub.CloudMessage{System: map[string]string{}, App: map[string]string{}, Body: []byte("x")},
			status: http.StatusBadRequest, code: hubArgumentInvalid},
		{name: "unknown device", body: "x", err: fmt.Errorf("x: %w", registry.ErrNotFound), want: &hub.CloudMessage{System: map[string]string{}, App: map[string]string{}, Body: []byte("x")},
			status: http.StatusNotFound, code: hubDeviceNotFound},
		{name: "bad ack", hdr: map[string]string{"iothub-ack": "maybe"}, body: "x", status: http.StatusBadRequest, code: hubArgumentInvalid, wantMsg: "iothub-ack"},
		{name: "too large", body: strings.Repeat("x", hub.MaxC2DBodyBytes+1), status: http.StatusRequestEntityTooLarge, code: hubMessageTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeMessaging{msgID: "m-1", err: tc.err}
			h := newMessagingHarness(t, f)
			res := h.hub(http.MethodPost, "/devices/dev1/messages/deviceBound"+hubVersion, tc.body, tc.hdr)
			if res.status != tc.status || res.code != tc.code {
				t.Fatalf("%d %s %s, want %d %s", res.status, res.code, res.body, tc.status, tc.code)
			}
			if tc.status == http.StatusOK && string(res.body) != `{"messageId":"m-1"}` {
				t.Errorf("body %s", res.body)
			}
			if !strings.Contains(res.message, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", res.message, tc.wantMsg)
			}
			var want []hub.CloudMessage
			if tc.want != nil {
				want = []hub.CloudMessage{*tc.want}
			}
			if diff := cmp.Diff(want, f.msgs); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
			if tc.want != nil && f.deviceT != "dev1" {
				t.Errorf("message sent to %q, want dev1", f.deviceT)
			}
		})
	}
}

func TestHubPurgeCloudMessages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
		body   string
	}{
		{name: "purged", status: http.StatusOK, body: `{"totalMessagesPurged":3,"deviceId":"dev1"}`},
		{name: "unknown device", err: fmt.Errorf("x: %w", registry.ErrNotFound), status: http.StatusNotFound, code: hubDeviceNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeMessaging{purged: 3, err: tc.err}
			h := newMessagingHarness(t, f)
			res := h.hub(http.MethodDelete, "/devices/dev1/commands"+hubVersion, "", nil)
			if res.status != tc.status || res.code != tc.code {
				t.Fatalf("%d %s %s, want %d %s", res.status, res.code, res.body, tc.status, tc.code)
			}
			if tc.body != "" && string(res.body) != tc.body {
				t.Errorf("body %s, want %s", res.body, tc.body)
			}
			if f.deviceT != "dev1" {
				t.Errorf("purged %q, want dev1", f.deviceT)
			}
		})
	}
}

func TestMountHubMessagingErrors(t *testing.T) {
	h := newHarness(t)
	if err := h.api.MountHubMessaging(nil); err == nil {
		t.Error("MountHubMessaging(nil) succeeded")
	}
	if err := h.api.MountHubMessaging(&badHost{}); err == nil || !strings.Contains(err.Error(), "host name") {
		t.Errorf("MountHubMessaging with a bad host: %v", err)
	}
}

type badHost struct{ fakeMessaging }

func (*badHost) HostName() string { return "a b" }

// FuzzDecodeMethodCall checks that an accepted call has a name and
// timeouts in range, and that the payload is kept byte for byte.
func FuzzDecodeMethodCall(f *testing.F) {
	for _, s := range []string{
		`{"methodName":"reboot","payload":{"delay":5},"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0}`,
		`{"methodName":"m"}`,
		`{"methodName":"m","responseTimeoutInSeconds":1e308}`,
		`{"methodName":"m","responseTimeoutInSeconds":-5}`,
		`{"methodName":"m","connectTimeoutInSeconds":300.5}`,
		`{"methodName":"","payload":null}`,
		`{"methodName":"m"} {}`,
		``, `{`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeMethodCall(data, "dev1", "")
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) || he.status != http.StatusBadRequest {
				t.Fatalf("%q: error %v is not a 400", data, err)
			}
			return
		}
		if c.Name == "" || c.DeviceID != "dev1" {
			t.Fatalf("%q: accepted %+v", data, c)
		}
		if c.ResponseTimeout < minMethodResponseTimeout || c.ResponseTimeout > maxMethodTimeout || c.ConnectTimeout < 0 || c.ConnectTimeout > maxMethodTimeout {
			t.Fatalf("%q: timeouts out of range: %+v", data, c)
		}
		if len(c.Payload) > 0 && !json.Valid(c.Payload) {
			t.Fatalf("%q: payload %q is not JSON", data, c.Payload)
		}
	})
}
