package hubauth

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseUsername(t *testing.T) {
	nodeQuery := url.Values{"api-version": {"2021-04-12"}, "DeviceClientType": {"azure-iot-device/1.18.4 (node v20.20.2; Debian 12; x64)"}}
	tests := []struct {
		name string
		in   string
		want Username
	}{
		{"node device", nodeDeviceUsername,
			Username{HubHost: vectorHub, DeviceID: "dev1", APIVersion: "2021-04-12", Query: nodeQuery}},
		{"node module (spec example)", nodeModuleUsername,
			Username{HubHost: vectorHub, DeviceID: "dev1", ModuleID: "mod1", APIVersion: "2021-04-12", Query: nodeQuery}},
		{"C SDK with model-id", cDeviceUsername,
			Username{HubHost: vectorHub, DeviceID: "dev1", APIVersion: "2020-09-30", Query: url.Values{
				"api-version": {"2020-09-30"}, "DeviceClientType": {"iothubclient/1.11.0 (native; Linux; x86_64)"},
				"model-id": {"dtmi:com:example:Thermostat;1"}}}},
		{"no query", vectorHub + "/dev1/",
			Username{HubHost: vectorHub, DeviceID: "dev1", Query: url.Values{}}},
		{"no trailing slash", vectorHub + "/dev1",
			Username{HubHost: vectorHub, DeviceID: "dev1", Query: url.Values{}}},
		{"module without trailing slash", vectorHub + "/dev1/$edgeAgent",
			Username{HubHost: vectorHub, DeviceID: "dev1", ModuleID: "$edgeAgent", Query: url.Values{}}},
		{"query without api-version", vectorHub + "/dev1/?DeviceClientType=x",
			Username{HubHost: vectorHub, DeviceID: "dev1", Query: url.Values{"DeviceClientType": {"x"}}}},
		{"legacy query without '?'", vectorHub + "/dev1/api-version=2016-11-14&DeviceClientType=java/1.0",
			Username{HubHost: vectorHub, DeviceID: "dev1", APIVersion: "2016-11-14", Query: url.Values{
				"api-version": {"2016-11-14"}, "DeviceClientType": {"java/1.0"}}}},
		{"legacy query after a module", vectorHub + "/dev1/mod1/api-version=2016-11-14",
			Username{HubHost: vectorHub, DeviceID: "dev1", ModuleID: "mod1", APIVersion: "2016-11-14", Query: url.Values{"api-version": {"2016-11-14"}}}},
		{"api-version spelled differently", vectorHub + "/dev1/?API-Version=2019-03-30",
			Username{HubHost: vectorHub, DeviceID: "dev1", APIVersion: "2019-03-30", Query: url.Values{"API-Version": {"2019-03-30"}}}},
		{"IDs are taken literally", vectorHub + "/d%2B1?x=y/m(1)/?api-version=1",
			Username{HubHost: vectorHub, DeviceID: "d%2B1?x=y", ModuleID: "m(1)", APIVersion: "1", Query: url.Values{"api-version": {"1"}}}},
		{"bad percent-encoding kept verbatim", vectorHub + "/dev1/?api-version=1&DeviceClientType=100%&k",
			Username{HubHost: vectorHub, DeviceID: "dev1", APIVersion: "1", Query: url.Values{"api-version": {"1"}, "DeviceClientType": {"100%"}, "k": {""}}}},
		{"unencoded slash in the query", vectorHub + "/dev1/?api-version=1&DeviceClientType=py/2.0",
			Username{HubHost: vectorHub, DeviceID: "dev1", APIVersion: "1", Query: url.Values{"api-version": {"1"}, "DeviceClientType": {"py/2.0"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseUsername(tc.in)
			if err != nil {
				t.Fatalf("ParseUsername(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseUsername(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestParseUsernameErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "the username is empty"},
		{"too long", vectorHub + "/dev1/?x=" + strings.Repeat("a", MaxUsernameLen), "longer than the 4096-byte limit"},
		{"no slash", vectorHub, "has no '/'"},
		{"empty host", "/dev1/", "hub host name \"\" is not a host name"},
		{"bad host", "my hub/dev1/", "hub host name \"my hub\" is not a host name"},
		{"empty device", vectorHub + "//?api-version=1", "the device ID is empty"},
		{"device ID with a space", vectorHub + "/dev 1/", "device ID \"dev 1\" is not 1 to 128 characters"},
		{"device ID too long", vectorHub + "/" + strings.Repeat("d", 129) + "/", "is not 1 to 128 characters"},
		{"empty module", vectorHub + "/dev1//?api-version=1", "the module ID is empty"},
		{"module ID with '&'", vectorHub + "/dev1/a&b/", "module ID \"a&b\" is not 1 to 128 characters"},
		{"extra segment", vectorHub + "/dev1/mod1/extra/?api-version=1", "unexpected path segment \"extra/?api-version=1\" after module ID \"mod1\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseUsername(tc.in)
			if !errors.Is(err, ErrUsernameMalformed) {
				t.Fatalf("ParseUsername(%.60q) error %v, want ErrUsernameMalformed", tc.in, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
