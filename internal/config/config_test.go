package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Every validation rule has a bad file and the message it must produce.
func TestBadConfigs(t *testing.T) {
	cases := map[string]string{
		"empty_data_dir.bad.toml":    "data_dir: must not be empty",
		"https_addr.bad.toml":        `https_addr: "8443" is not host:port`,
		"mqtt_port.bad.toml":         `mqtt_addr: "localhost:99999" has an invalid port`,
		"no_hostnames.bad.toml":      "hostnames: at least one host name is required",
		"hostname.bad.toml":          `hostnames: entry 0 "bad_host!" is not a host name or IP address`,
		"hostname_ip_first.bad.toml": `hostnames: the first entry "127.0.0.1" names the hub`,
		"log_level.bad.toml":         `log_level: "verbose" is not debug, info, warn or error`,
		"log_format.bad.toml":        `log_format: "xml" is not text or json`,
		"store.bad.toml":             `store: "mysql://xxxxx@db.example.com/muster" is not sqlite:<path> or a postgres:// (postgresql://) URL`,
		"store_postgres.bad.toml":    "store: the PostgreSQL URL does not parse: missing ']' in host",
		"store_sqlite.bad.toml":      "store: sqlite: needs a file path",
		"hub_weight.bad.toml":        "hub_weight: 0 is not between 1 and 1000",
		"webhook_timeout.bad.toml":   "webhook_timeout: 10m0s is not between 0 and 5m",
		"unknown_key.bad.toml":       "data_dri",
		"duration.bad.toml":          `invalid duration "soon"`,

		"linked_hub_host_name.bad.toml":                "linked_hub[0].host_name: is required",
		"linked_hub_host_name_invalid.bad.toml":        `linked_hub[0].host_name: "hub_2!" is not a host name or IP address`,
		"linked_hub_self.bad.toml":                     `linked_hub[0].host_name: "Muster.Example.com" is the in-process hub's name (hostnames[0])`,
		"linked_hub_duplicate.bad.toml":                `linked_hub[1].host_name: "HUB2.example.com" is already linked by linked_hub[0]`,
		"linked_hub_connection_string.bad.toml":        "linked_hub[0].connection_string: is required",
		"linked_hub_connection_string_key.bad.toml":    "linked_hub[0].connection_string: invalid connection string: SharedAccessKey: decode key: sas: invalid key",
		"linked_hub_connection_string_device.bad.toml": "linked_hub[0].connection_string: SharedAccessKeyName is missing",
		"linked_hub_connection_string_host.bad.toml":   `linked_hub[0].connection_string: HostName "hub3.example.com" does not match host_name "hub2.example.com"`,
		"linked_hub_address.bad.toml":                  `linked_hub[0].address: "10.0.0.7" is not host:port`,
		"linked_hub_address_port.bad.toml":             `linked_hub[0].address: "10.0.0.7:0" needs a host and a port from 1 to 65535`,
		"linked_hub_weight.bad.toml":                   "linked_hub[0].weight: 1001 is not between 1 and 1000",
		"linked_hub_ca_file.bad.toml":                  "linked_hub[0].ca_file: must not be blank",
		"linked_hub_unknown_key.bad.toml":              "wieght",
	}
	files, err := filepath.Glob("testdata/*.bad.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Fatalf("%d bad files but %d expectations", len(files), len(cases))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			want, ok := cases[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			c := Defaults()
			err := c.LoadFile(f)
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error = %v, want it to contain %q", err, want)
			}
		})
	}
}

func TestGoodConfigAndPrecedence(t *testing.T) {
	c := Defaults()
	if err := c.LoadFile("testdata/full.good.toml"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MUSTER_HTTPS_ADDR": "127.0.0.1:9443", "MUSTER_HOSTNAME": "a.example, b.example", "MUSTER_HUB_APPLY_ALLOCATION_POLICY": "true"}
	if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Server{DataDir: "/var/lib/muster", HTTPSAddr: "127.0.0.1:9443", MQTTAddr: ":8883",
		Hostnames: []string{"a.example", "b.example"}, LogLevel: "debug", LogFormat: "json", HubWeight: 5,
		HubApplyAllocationPolicy: true, WebhookTimeout: Duration{3 * time.Second}}
	if d := cmp.Diff(want, c); d != "" {
		t.Fatalf("config (-want +got):\n%s", d)
	}
}

func TestLinkedHubs(t *testing.T) {
	c := Defaults()
	if err := c.LoadFile("testdata/linked_hub.good.toml"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	weight, apply := 250, false
	want := []LinkedHub{
		{HostName: "hub2.example.com", ConnectionString: "HostName=hub2.example.com;SharedAccessKeyName=registryReadWrite;SharedAccessKey=" + key},
		{HostName: "hub3.example.com", ConnectionString: "HostName=hub3.example.com;SharedAccessKeyName=iothubowner;SharedAccessKey=" + key,
			Address: "10.0.0.7:8443", CAFile: "/etc/muster/hub3-ca.pem", Weight: &weight, ApplyAllocationPolicy: &apply},
	}
	if d := cmp.Diff(want, c.LinkedHubs); d != "" {
		t.Fatalf("linked hubs (-want +got):\n%s", d)
	}
	type effective struct {
		Weight int
		Apply  bool
	}
	var got []effective
	for _, h := range c.LinkedHubs {
		got = append(got, effective{h.EffectiveWeight(), h.AppliesAllocationPolicy()})
	}
	if d := cmp.Diff([]effective{{1, true}, {250, false}}, got); d != "" {
		t.Fatalf("defaults (-want +got):\n%s", d)
	}
}

// A rejected connection string is described without quoting its key.
func TestLinkedHubErrorsKeepKeysOut(t *testing.T) {
	const secret = "c2VjcmV0LWtleS1tYXRlcmlhbC0wMTIzNDU2Nzg5YWI="
	tests := []struct {
		name, conn string
	}{
		{"host mismatch", "HostName=other.example.com;SharedAccessKeyName=p;SharedAccessKey=" + secret},
		{"device string", "HostName=hub2.example.com;DeviceId=d;SharedAccessKey=" + secret},
		{"bad key", "HostName=hub2.example.com;SharedAccessKeyName=p;SharedAccessKey=" + secret + "!"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.LinkedHubs = []LinkedHub{{HostName: "hub2.example.com", ConnectionString: tc.conn}}
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), "linked_hub[0].connection_string:") {
				t.Fatalf("error = %v, want one naming linked_hub[0].connection_string", err)
			}
			if strings.Contains(err.Error(), secret[:16]) {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
}

func TestStoreSettings(t *testing.T) {
	const password = "pg-s3cret"
	tests := []struct {
		store string
		want  string // "" when valid
	}{
		{"", ""},
		{"sqlite:/var/lib/muster/muster.db", ""},
		{"sqlite:relative/muster.db", ""},
		{"postgres://muster:" + password + "@db.example.com:5432/muster?sslmode=verify-full", ""},
		{"postgresql://db.example.com/muster?search_path=fleet", ""},
		{"sqlite:", "store: sqlite: needs a file path"},
		{"sqlite::memory:", `store: "sqlite::memory:": the SQLite store needs a file path`},
		{"sqlite:file:x.db?mode=ro", "the SQLite store needs a file path (no :memory:, no file: URI)"},
		{"postgres://muster:" + password + "@[::1/muster", "store: the PostgreSQL URL does not parse"},
		{"postgress://muster:" + password + "@db.example.com/muster", `store: "postgress://xxxxx@db.example.com/muster" is not sqlite:<path>`},
		{"/var/lib/muster/muster.db", `store: "/var/lib/muster/muster.db" is not sqlite:<path>`},
	}
	for _, tc := range tests {
		t.Run(tc.store, func(t *testing.T) {
			c := Defaults()
			if err := c.ApplyEnv(func(k string) (string, bool) { return tc.store, k == "MUSTER_STORE" }); err != nil {
				t.Fatal(err)
			}
			if c.Store != tc.store {
				t.Fatalf("MUSTER_STORE gave store %q", c.Store)
			}
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v; want an error containing %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), password):
				t.Fatalf("error quotes the password: %v", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Defaults()
	c.DataDir, c.LogLevel, c.HubWeight = "", "loud", 2000
	err := c.Validate()
	for _, key := range []string{"data_dir", "log_level", "hub_weight"} {
		if err == nil || !strings.Contains(err.Error(), key+":") {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
}

func TestEnvErrorsNameTheVariable(t *testing.T) {
	c := Defaults()
	err := c.ApplyEnv(func(k string) (string, bool) {
		if k == "MUSTER_HUB_WEIGHT" {
			return "many", true
		}
		return "", false
	})
	if err == nil || !strings.Contains(err.Error(), "MUSTER_HUB_WEIGHT") {
		t.Fatalf("error = %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, p := range []string{"testdata/full.good.toml", "testdata/duration.bad.toml", "testdata/linked_hub.good.toml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("hostnames = [\"a\", 1]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Defaults()
		if c.Decode(b) == nil {
			_ = c.Validate()
		}
	})
}
