package sas

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseConnectionString(t *testing.T) {
	const key = testKeyB64
	tests := []struct {
		name string
		in   string
		want ConnectionString
	}{
		{
			name: "service policy",
			in:   "HostName=mydps.example.com;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=" + key,
			want: ConnectionString{HostName: "mydps.example.com", SharedAccessKeyName: "provisioningserviceowner", SharedAccessKey: key},
		},
		{
			name: "device",
			in:   "HostName=hub.example.com;DeviceId=dev1;SharedAccessKey=" + key,
			want: ConnectionString{HostName: "hub.example.com", DeviceID: "dev1", SharedAccessKey: key},
		},
		{
			name: "module through a gateway, keys in other case and order",
			in:   "gatewayhostname=edge.local;sharedaccesskey=" + key + ";MODULEID=$edgeHub;deviceid=edge1;hostname=hub.example.com",
			want: ConnectionString{HostName: "hub.example.com", DeviceID: "edge1", ModuleID: "$edgeHub", SharedAccessKey: key, GatewayHostName: "edge.local"},
		},
		{
			name: "spaces, empty pairs and unknown keys",
			in:   "  HostName = hub.example.com ;; DeviceId=dev1; Foo=bar;SharedAccessKey=" + key + ";",
			want: ConnectionString{HostName: "hub.example.com", DeviceID: "dev1", SharedAccessKey: key},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConnectionString(tc.in)
			if err != nil {
				t.Fatalf("ParseConnectionString: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
			again, err := ParseConnectionString(got.String())
			if err != nil {
				t.Fatalf("ParseConnectionString(String()): %v", err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseConnectionStringErrors(t *testing.T) {
	const key = testKeyB64
	tests := []struct {
		name    string
		in      string
		wantKey string
		wantMsg string
	}{
		{"empty", "  ", "", "empty"},
		{"too long", "HostName=" + strings.Repeat("h", MaxConnectionStringLen) + ";SharedAccessKey=" + key, "", "limit"},
		{"missing HostName", "DeviceId=d;SharedAccessKey=" + key, "HostName", "missing"},
		{"empty HostName", "HostName=;SharedAccessKey=" + key, "HostName", "missing or empty"},
		{"missing key", "HostName=h;DeviceId=d", "SharedAccessKey", "missing"},
		{"duplicate HostName", "HostName=a;hostname=b;SharedAccessKey=" + key, "HostName", "more than once"},
		{"duplicate key", "HostName=a;SharedAccessKey=" + key + ";SharedAccessKey=" + key, "SharedAccessKey", "more than once"},
		{"pair without =", "HostName=a;DeviceId;SharedAccessKey=" + key, "DeviceId", "no '='"},
		{"empty key name", "HostName=a;=secret;SharedAccessKey=" + key, "", "empty key"},
		{"key not base64", "HostName=a;SharedAccessKey=not-base64!", "SharedAccessKey", "base64"},
		{"module without device", "HostName=a;ModuleId=m;SharedAccessKey=" + key, "ModuleId", "without DeviceId"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConnectionString(tc.in)
			if err == nil {
				t.Fatalf("ParseConnectionString succeeded: %+v", got)
			}
			if !errors.Is(err, ErrInvalidConnectionString) {
				t.Errorf("errors.Is(%v, ErrInvalidConnectionString) = false", err)
			}
			var ce *ConnectionStringError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not *ConnectionStringError", err)
			}
			if ce.Key != tc.wantKey {
				t.Errorf("Key = %q, want %q (%v)", ce.Key, tc.wantKey, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tc.wantMsg)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q repeats a value", err)
			}
		})
	}
}

func TestConnectionStringString(t *testing.T) {
	tests := []struct {
		name string
		in   ConnectionString
		want string
	}{
		{"service", ConnectionString{HostName: "h", SharedAccessKeyName: "owner", SharedAccessKey: "a2V5"}, "HostName=h;SharedAccessKeyName=owner;SharedAccessKey=a2V5"},
		{"module via gateway", ConnectionString{HostName: "h", DeviceID: "d", ModuleID: "m", SharedAccessKey: "a2V5", GatewayHostName: "g"}, "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5;GatewayHostName=g"},
		{"empty", ConnectionString{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.in.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}
