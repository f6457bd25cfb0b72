package mqtt

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDPSUsername(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    DPSUsername
		wantErr string // substring; "" for success
	}{
		{"node", "0ne00000001/registrations/my-device/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1",
			DPSUsername{"0ne00000001", "my-device", "2019-03-31", "azure-iot-provisioning-device/1.9.1"}, ""},
		{"c raw", "0ne00000001/registrations/dev/api-version=2021-06-01&ClientVersion=1.15.0",
			DPSUsername{"0ne00000001", "dev", "2021-06-01", "1.15.0"}, ""},
		{"raw user agent with slashes and spaces", "0ne00000001/registrations/dev/api-version=2021-06-01&ClientVersion=iothubclient/1.15.0 (native; Linux)",
			DPSUsername{"0ne00000001", "dev", "2021-06-01", "iothubclient/1.15.0 (native; Linux)"}, ""},
		{"python quote_plus", "0ne00000001/registrations/dev/api-version=2019-03-31&ClientVersion=py-azure-iot-device%2F2.12.0+Linux",
			DPSUsername{"0ne00000001", "dev", "2019-03-31", "py-azure-iot-device/2.12.0 Linux"}, ""},
		{"embedded c", "0ne00000001/registrations/dev/api-version=2019-03-31",
			DPSUsername{"0ne00000001", "dev", "2019-03-31", ""}, ""},
		{"unknown keys and empty pairs", "0ne00000001/registrations/dev/&x=1&&api-version=&y",
			DPSUsername{"0ne00000001", "dev", "", ""}, ""},
		{"first api-version wins", "s/registrations/d/api-version=1&api-version=2",
			DPSUsername{"s", "d", "1", ""}, ""},
		{"invalid escape kept raw", "s/registrations/d/api-version=%zz&ClientVersion=%",
			DPSUsername{"s", "d", "%zz", "%"}, ""},
		{"registration id kept verbatim", "s/registrations/a%2Fb:C_1/api-version=1",
			DPSUsername{"s", "a%2Fb:C_1", "1", ""}, ""},
		{"no separator", "myhub.azure-devices.net/dev1/?api-version=2021-04-12", DPSUsername{}, `no "/registrations/" separator`},
		{"empty scope", "/registrations/dev/api-version=1", DPSUsername{}, "empty ID scope"},
		{"scope with slash", "a/b/registrations/dev/api-version=1", DPSUsername{}, `ID scope "a/b" contains '/'`},
		{"empty registration id", "s/registrations//api-version=1", DPSUsername{}, "empty registration ID"},
		{"no parameters", "s/registrations/dev", DPSUsername{}, `no '/' and parameters after registration ID "dev"`},
		{"no api-version", "s/registrations/dev/ClientVersion=1", DPSUsername{}, `no api-version parameter after registration ID "dev"`},
		{"hub module named registrations", "hub/registrations/mod/?api-version=1", DPSUsername{}, "no api-version parameter"},
		{"empty", "", DPSUsername{}, "no \"/registrations/\" separator"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDPSUsername(tc.in)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrNotDPSUsername) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want ErrNotDPSUsername mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseDPSTopic(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    DPSRequest
		wantErr string
	}{
		{"register", "$dps/registrations/PUT/iotdps-register/?$rid=1", DPSRequest{RequestRegister, "1", ""}, ""},
		{"register without slash", "$dps/registrations/PUT/iotdps-register?$rid=abc", DPSRequest{RequestRegister, "abc", ""}, ""},
		{"register rid kept encoded", "$dps/registrations/PUT/iotdps-register/?$rid=%7B1%7D", DPSRequest{RequestRegister, "%7B1%7D", ""}, ""},
		{"register ignores operationId", "$dps/registrations/PUT/iotdps-register/?$rid=1&operationId=x", DPSRequest{RequestRegister, "1", ""}, ""},
		{"encoded rid key", "$dps/registrations/PUT/iotdps-register/?%24rid=5", DPSRequest{RequestRegister, "5", ""}, ""},
		{"poll", "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.d0a671905ea5b2c8.e7173b7b-0e54", DPSRequest{RequestOperationStatus, "2", "4.d0a671905ea5b2c8.e7173b7b-0e54"}, ""},
		{"poll encoded operationId", "$dps/registrations/GET/iotdps-get-operationstatus/?operationId=a%2Fb%3Ac%2B&$rid=x", DPSRequest{RequestOperationStatus, "x", "a/b:c+"}, ""},
		{"poll plus kept", "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=a+b", DPSRequest{RequestOperationStatus, "1", "a+b"}, ""},
		{"poll invalid escape raw", "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=%g1", DPSRequest{RequestOperationStatus, "1", "%g1"}, ""},
		{"poll without operationId", "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1", DPSRequest{RequestOperationStatus, "1", ""}, ""},
		{"first rid wins", "$dps/registrations/PUT/iotdps-register/?$rid=1&$rid=2", DPSRequest{RequestRegister, "1", ""}, ""},
		{"rid with equals", "$dps/registrations/PUT/iotdps-register/?$rid=a=b", DPSRequest{RequestRegister, "a=b", ""}, ""},
		{"no rid", "$dps/registrations/PUT/iotdps-register/?x=1", DPSRequest{}, "no $rid parameter"},
		{"empty rid", "$dps/registrations/PUT/iotdps-register/?$rid=", DPSRequest{}, "no $rid parameter"},
		{"no query", "$dps/registrations/PUT/iotdps-register/", DPSRequest{}, "no '?' parameters"},
		{"response topic", "$dps/registrations/res/200/?$rid=1", DPSRequest{}, `unknown request path "$dps/registrations/res/200/"`},
		{"wrong method", "$dps/registrations/GET/iotdps-register/?$rid=1", DPSRequest{}, "unknown request path"},
		{"deeper path", "$dps/registrations/PUT/iotdps-register/x/?$rid=1", DPSRequest{}, "unknown request path"},
		{"other prefix", "devices/d/messages/events/?$rid=1", DPSRequest{}, "not under $dps/registrations/"},
		{"empty", "", DPSRequest{}, "not under"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDPSTopic(tc.in)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrNotDPSRequest) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want ErrNotDPSRequest mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDPSResponseTopic(t *testing.T) {
	tests := []struct {
		status, retry int
		rid, want     string
	}{
		{202, 3, "abc", "$dps/registrations/res/202/?$rid=abc&retry-after=3"},
		{200, 0, "1", "$dps/registrations/res/200/?$rid=1"},
		{401, 0, "%7Bx%7D", "$dps/registrations/res/401/?$rid=%7Bx%7D"},
		{503, 10, "r", "$dps/registrations/res/503/?$rid=r&retry-after=10"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := dpsResponseTopic(tc.status, tc.rid, tc.retry); got != tc.want {
				t.Errorf("got %q", got)
			}
		})
	}
}

func FuzzParseDPSUsername(f *testing.F) {
	for _, s := range []string{
		"0ne00000001/registrations/my-device/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1",
		"0ne00000001/registrations/dev/api-version=2021-06-01&ClientVersion=1.15.0",
		"s/registrations/d/api-version=%zz&ClientVersion=%",
		"hub/registrations/mod/?api-version=1",
		"myhub.azure-devices.net/dev1/?api-version=2021-04-12",
		"/registrations//",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseDPSUsername(s)
		if err != nil {
			if !errors.Is(err, ErrNotDPSUsername) {
				t.Fatalf("error %v is not ErrNotDPSUsername", err)
			}
			return
		}
		if u.IDScope == "" || strings.Contains(u.IDScope, "/") {
			t.Fatalf("ID scope %q", u.IDScope)
		}
		if u.RegistrationID == "" || strings.Contains(u.RegistrationID, "/") {
			t.Fatalf("registration ID %q", u.RegistrationID)
		}
		if !strings.HasPrefix(s, u.IDScope+registrationsSep+u.RegistrationID+"/") {
			t.Fatalf("%q does not start with its scope and registration ID", s)
		}
		// The parse is stable: the canonical form parses to the same scope and ID.
		again, err := ParseDPSUsername(u.IDScope + registrationsSep + u.RegistrationID + "/api-version=x")
		if err != nil || again.IDScope != u.IDScope || again.RegistrationID != u.RegistrationID {
			t.Fatalf("canonical form of %+v parses to %+v, %v", u, again, err)
		}
	})
}

func FuzzParseDPSTopic(f *testing.F) {
	for _, s := range []string{
		"$dps/registrations/PUT/iotdps-register/?$rid=1",
		"$dps/registrations/PUT/iotdps-register?$rid=abc",
		"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.d0a671905ea5b2c8.e7173b7b",
		"$dps/registrations/GET/iotdps-get-operationstatus/?operationId=a%2Fb&%24rid=x",
		"$dps/registrations/res/200/?$rid=1",
		"$dps/registrations/PUT/iotdps-register/?$rid=",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		req, err := ParseDPSTopic(s)
		if err != nil {
			if !errors.Is(err, ErrNotDPSRequest) {
				t.Fatalf("error %v is not ErrNotDPSRequest", err)
			}
			return
		}
		if req.Kind != RequestRegister && req.Kind != RequestOperationStatus {
			t.Fatalf("kind %v", req.Kind)
		}
		if req.RID == "" || strings.Contains(req.RID, "&") {
			t.Fatalf("rid %q", req.RID)
		}
		if req.Kind == RequestRegister && req.OperationID != "" {
			t.Fatalf("register with operation ID %q", req.OperationID)
		}
		// The rid round-trips through a canonical request topic.
		again, err := ParseDPSTopic(dpsRegisterPath + "/?$rid=" + req.RID)
		if err != nil || again.RID != req.RID {
			t.Fatalf("rid %q does not round-trip: %+v, %v", req.RID, again, err)
		}
		// The response topic keeps the rid and puts retry-after after it.
		resp := dpsResponseTopic(202, req.RID, 3)
		if !strings.HasPrefix(resp, dpsResponsePrefix+"202/?$rid="+req.RID+"&") || !strings.HasSuffix(resp, "&retry-after=3") {
			t.Fatalf("response topic %q", resp)
		}
	})
}
