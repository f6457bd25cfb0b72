package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/provision"
)

func TestAllocate(t *testing.T) {
	var gotReq provision.AllocationRequest
	var gotHeader http.Header
	cases := []struct {
		name       string
		status     int
		body       string
		delay      time.Duration
		want       *provision.AllocationResponse
		wantStatus int
		wantMsg    string
	}{
		{name: "ok", status: 200, body: `{"iotHubHostName":"hub1","initialTwin":{"tags":{"a":1}},"payload":{"x":true}}`,
			want: &provision.AllocationResponse{IoTHubHostName: "hub1", InitialTwin: json.RawMessage(`{"tags":{"a":1}}`), Payload: json.RawMessage(`{"x":true}`)}},
		{name: "doc table spelling", status: 200, body: `{"iotHubHostname":"hub2"}`, want: &provision.AllocationResponse{IoTHubHostName: "hub2"}},
		{name: "non-2xx", status: 401, body: `{}`, wantStatus: 401, wantMsg: "webhook answered HTTP 401"},
		{name: "not json", status: 200, body: `<html>`, wantMsg: "not an allocation response"},
		{name: "no hub", status: 200, body: `{"payload":{}}`, wantMsg: "names no iotHubHostName"},
		{name: "oversized", status: 200, body: `{"iotHubHostName":"h","payload":"` + strings.Repeat("x", MaxResponseBytes) + `"}`, wantMsg: "over"},
		{name: "timeout", status: 200, body: `{"iotHubHostName":"h"}`, delay: 2 * time.Second, wantMsg: "did not answer before the timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotHeader = r.Header.Clone()
				_ = json.NewDecoder(r.Body).Decode(&gotReq)
				if tc.delay > 0 {
					select {
					case <-time.After(tc.delay):
					case <-r.Context().Done():
						return
					}
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			req := &provision.AllocationRequest{LinkedHubs: []string{"hub1", "hub2"}, DeviceRuntimeContext: provision.DeviceRuntimeContext{RegistrationID: "dev-1", Payload: json.RawMessage(`{"p":1}`)}}
			got, err := New(srv.Client()).Allocate(ctx, srv.URL+"/api/alloc?code=secret", "2021-10-01", req)
			if tc.want != nil {
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(tc.want, got); d != "" {
					t.Fatalf("response (-want +got):\n%s", d)
				}
				if d := cmp.Diff(*req, gotReq); d != "" {
					t.Fatalf("webhook saw a different request (-sent +seen):\n%s", d)
				}
				if ct := gotHeader.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Fatalf("content-type %q", ct)
				}
				return
			}
			var we *provision.WebhookError
			if !errors.As(err, &we) {
				t.Fatalf("error %v is not a WebhookError", err)
			}
			if we.Status != tc.wantStatus || !strings.Contains(we.Msg, tc.wantMsg) {
				t.Fatalf("error = %+v, want status %d and message containing %q", we, tc.wantStatus, tc.wantMsg)
			}
		})
	}
}

func TestAllocateUnreachableKeepsFunctionKeyOutOfErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = New(nil).Allocate(ctx, "http://"+addr+"/alloc?code=topsecret", "", &provision.AllocationRequest{})
	var we *provision.WebhookError
	if !errors.As(err, &we) {
		t.Fatalf("error %v is not a WebhookError", err)
	}
	if strings.Contains(we.Msg, "topsecret") || !strings.Contains(we.Msg, "webhook call failed") {
		t.Fatalf("message %q", we.Msg)
	}
}
