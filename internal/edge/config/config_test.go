//go:build !windows

// The testdata files use POSIX paths, which are not absolute on Windows.

package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testKey = "c2VjcmV0LWtleS1mb3ItdGVzdHM="

// Every validation rule has a bad file and the messages it must produce.
func TestBadConfigs(t *testing.T) {
	cases := map[string][]string{
		"agent_env.bad.toml":                        {`agent.env: "A=B" is not an environment variable name`},
		"agent_type.bad.toml":                       {`agent.type: "kubernetes" is not process or docker`},
		"bad_mode.bad.toml":                         {`auto_reprovisioning_mode: "Sometimes" is not Dynamic, AlwaysOnStartup or OnErrorOnly`},
		"bad_registration_id.bad.toml":              {`provisioning.attestation.registration_id: "bad id!" is not a registration ID`},
		"bad_scope.bad.toml":                        {`provisioning.id_scope: "12345" is not an ID scope (0ne followed by 8 hexadecimal digits`},
		"bad_transport.bad.toml":                    {`provisioning.transport: "amqp" is not https or mqtt (Muster extension)`},
		"bad_uri_scheme.bad.toml":                   {`provisioning.attestation.symmetric_key.uri: URI scheme "http" is not supported; give a file URI`},
		"docker_no_image.bad.toml":                  {`agent.config.image: missing (required with type = "docker")`},
		"edge_hub_address.bad.toml":                 {`edge_hub.listen_address: "localhost" is not host:port (e.g. 127.0.0.1:8883)`},
		"edge_ca_section.bad.toml":                  {`edge_ca: an edge CA (gateway certificates) is not supported yet by Muster's iotedge`},
		"endpoint_path.bad.toml":                    {`provisioning.global_endpoint: "https://localhost:8443/dps" must be only a scheme, a host and a port`},
		"endpoint_scheme.bad.toml":                  {`provisioning.global_endpoint: "ftp://localhost" has scheme "ftp"; want https://host[:port]`},
		"est_identity_cert.bad.toml":                {`provisioning.attestation.identity_cert: dynamic issuance (method = "est") is not supported yet by Muster's iotedge`},
		"homedir_relative.bad.toml":                 {`homedir: "var/lib/edge" is not an absolute path`},
		"hostname.bad.toml":                         {`hostname: "bad_host!" is not a DNS host name`},
		"iothub_port.bad.toml":                      {`iothub.mqtt_port: 70000 is not a TCP port (1 to 65535; leave it out for the default)`},
		"key_bare_string.bad.toml":                  {`provisioning.attestation.symmetric_key: must be a table: { value = "<base64 key>" } or { uri = "file:///path/to/key" }; a bare string is the IoT Edge 1.1 form`},
		"key_both.bad.toml":                         {`provisioning.attestation.symmetric_key: has both value and uri; give one`},
		"key_missing.bad.toml":                      {`provisioning.attestation.symmetric_key: missing (required with method = "symmetric_key")`},
		"key_not_base64.bad.toml":                   {`provisioning.attestation.symmetric_key.value: decode key: sas: invalid key: not standard base64`},
		"key_unknown_subkey.bad.toml":               {`provisioning.attestation.symmetric_key.valeu: unknown key (want value or uri)`},
		"legacy_reprovisioning.bad.toml":            {`provisioning.always_reprovision_on_startup: an IoT Edge 1.1 key; use the top-level auto_reprovisioning_mode`, `provisioning.dynamic_reprovisioning: an IoT Edge 1.1 key`},
		"manual_authentication.bad.toml":            {`provisioning.authentication: manual provisioning with iothub_hostname, device_id and [provisioning.authentication] is not supported yet`, `provisioning.iothub_hostname: manual provisioning`, `provisioning.device_id: manual provisioning`},
		"manual_bad_connection_string.bad.toml":     {`provisioning.connection_string: invalid connection string: SharedAccessKey: missing or empty`},
		"manual_missing_connection_string.bad.toml": {`provisioning.connection_string: missing (required with source = "manual")`},
		"manual_module_connection_string.bad.toml":  {`provisioning.connection_string: is a module connection string (ModuleId=m1)`},
		"manual_with_id_scope.bad.toml":             {`provisioning.id_scope: only applies to source = "dps"`},
		"many_problems.bad.toml": {
			`8 problems:`,
			`agent.type: "vm" is not process or docker`,
			`auto_reprovisioning_mode: "Never" is not Dynamic`,
			`homedir: "relative" is not an absolute path`,
			`provisioning.attestation.registration_id: missing`,
			`provisioning.attestation.symmetric_key.value: decode key`,
			`provisioning.global_endpoint: missing`,
			`provisioning.id_scope: "scope" is not an ID scope`,
			`provisioning.transport: "amqp" is not https or mqtt`,
		},
		"missing_attestation.bad.toml":     {`provisioning.attestation: missing; add [provisioning.attestation] with method = "symmetric_key" or "x509"`},
		"missing_endpoint.bad.toml":        {`provisioning.global_endpoint: missing; give the provisioning service's device endpoint`},
		"missing_id_scope.bad.toml":        {`provisioning.id_scope: missing`},
		"missing_identity_cert.bad.toml":   {`provisioning.attestation.identity_cert: missing (required with method = "x509")`},
		"missing_identity_pk.bad.toml":     {`provisioning.attestation.identity_pk: missing (required with method = "x509")`},
		"missing_registration_id.bad.toml": {`provisioning.attestation.registration_id: missing (required with method = "symmetric_key")`},
		"missing_source.bad.toml":          {`provisioning.source: missing; set "dps" or "manual"`},
		"moby_uri.bad.toml":                {`moby_runtime.uri: scheme "ftp" is not unix, npipe, tcp, http or https`},
		"mqtt_https_endpoint.bad.toml":     {`provisioning.global_endpoint: "https://localhost:8443" has scheme "https"; transport = "mqtt" needs mqtts://host[:port]`},
		"payload_plain_path.bad.toml":      {`provisioning.payload.uri: "/var/secrets/payload.json" is not a URI; give a file URI`},
		"pkcs11_key.bad.toml":              {`provisioning.attestation.identity_pk: PKCS#11 URIs are not supported yet by Muster's iotedge`},
		"process_create_options.bad.toml":  {`agent.config.createOptions: only applies to type = "docker"`},
		"relative_file_uri.bad.toml":       {`provisioning.attestation.identity_cert: file URI "file://certs/device.pem": names host "certs"; a local file URI has three slashes`},
		"relative_path.bad.toml":           {`provisioning.attestation.identity_pk: "private/device.key.pem" is a relative path`},
		"scope_id_legacy.bad.toml":         {`provisioning.scope_id: an IoT Edge 1.1 key; use id_scope`, `provisioning.id_scope: missing`},
		"source_external.bad.toml":         {`provisioning.source: "external" is not supported yet by Muster's iotedge`},
		"symmetric_with_cert.bad.toml":     {`provisioning.attestation.identity_cert: only applies to method = "x509"`},
		"syntax.bad.toml":                  {`line 1 column 14: expected ']' to close table name`},
		"tpm_method.bad.toml":              {`provisioning.attestation.method: "tpm" is not supported yet by Muster's iotedge`},
		"tpm_section.bad.toml":             {`tpm: TPM is not supported yet by Muster's iotedge; remove the section`},
		"trust_bundle_relative.bad.toml":   {`trust_bundle_cert: "certs/root.pem" is a relative path`},
		"unknown_method.bad.toml":          {`provisioning.attestation.method: "password" is not "symmetric_key" or "x509"`},
		"unknown_nested_key.bad.toml":      {`provisioning.attestation.regisration_id: unknown key (line 10)`},
		"unknown_top_key.bad.toml":         {`hostnmae: unknown key (line 1)`},
		"unreadable_cert.bad.toml": {
			`provisioning.attestation.identity_cert: read /nonexistent/muster-edge-test/device.pem: no such file or directory`,
			`provisioning.attestation.identity_pk: read /nonexistent/muster-edge-test/device.key.pem: no such file or directory`,
		},
		"wrong_type.bad.toml":              {`hostname: line 1 column 12: wrong type: a TOML integer where a string is expected`},
		"x509_with_symmetric_key.bad.toml": {`provisioning.attestation.symmetric_key: only applies to method = "symmetric_key"`},
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
			wants, ok := cases[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			c, err := Load(f)
			if err == nil {
				t.Fatalf("Load accepted %s: %+v", name, c)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			for _, want := range wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error:\n%v\nwant it to contain %q", err, want)
				}
			}
			if !strings.HasPrefix(err.Error(), "load "+f+": ") {
				t.Errorf("error %q does not name the file", err)
			}
			var ve *ValidationError
			if errors.As(err, &ve) && len(wants) == 1 && len(ve.Problems) != 1 {
				t.Errorf("want exactly one problem, got %d:\n%v", len(ve.Problems), err)
			}
		})
	}
}

// The good files parse to the expected configuration (defaults applied,
// references normalised) and survive an encode/parse round trip unchanged.
func TestGoodConfigs(t *testing.T) {
	home := DefaultHomedir()
	cases := []struct {
		file string
		want *Config
	}{
		{"dps_symmetric.good.toml", &Config{
			Homedir: home, AutoReprovisioningMode: ReprovisionDynamic,
			Provisioning: Provisioning{
				Source: SourceDPS, Transport: TransportHTTPS, GlobalEndpoint: "https://localhost:8443/", IDScope: "0ne0045B3C6",
				Attestation: &Attestation{Method: MethodSymmetricKey, RegistrationID: "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", SymmetricKey: &Secret{Value: testKey}},
			},
		}},
		{"dps_x509.good.toml", &Config{
			Hostname: "edge-01.example.com", Homedir: home, TrustBundleCert: "file:///var/secrets/muster-ca.pem",
			AutoReprovisioningMode: ReprovisionAlwaysOnStartup,
			Provisioning: Provisioning{
				Source: SourceDPS, Transport: TransportHTTPS, GlobalEndpoint: "https://dps.example.com:8443/", IDScope: "0ne00ABCDEF",
				Attestation: &Attestation{Method: MethodX509,
					IdentityCert: "file:///var/secrets/iot-edge-device-identity-edge-01-full-chain.cert.pem",
					IdentityPK:   "file:///var/secrets/iot-edge-device-identity-edge-01.key.pem"},
			},
		}},
		{"dps_mqtt.good.toml", &Config{
			Homedir: "/srv/iotedge", AutoReprovisioningMode: ReprovisionOnErrorOnly,
			Provisioning: Provisioning{
				Source: SourceDPS, Transport: TransportMQTT, GlobalEndpoint: "mqtts://localhost:8883/", IDScope: "0ne0045b3c6",
				Payload: &FileRef{URI: "file:///etc/muster/payload.json"},
				Attestation: &Attestation{Method: MethodSymmetricKey, RegistrationID: "edge-02",
					SymmetricKey: &Secret{URI: "file:///srv/iotedge/secrets/device-id"}},
			},
			Agent:   &Agent{Name: DefaultAgentName, Type: AgentProcess, Env: map[string]string{"UpstreamProtocol": "Mqtt", "RuntimeLogLevel": "debug"}},
			IoTHub:  &IoTHub{MQTTPort: 18883, HTTPSPort: 18443},
			EdgeHub: &EdgeHub{ListenAddress: "127.0.0.1:0"},
		}},
		{"manual_docker.good.toml", &Config{
			Homedir: home, AutoReprovisioningMode: ReprovisionDynamic,
			Provisioning: Provisioning{
				Source: SourceManual, Transport: TransportHTTPS,
				ConnectionString: "HostName=hub.example.com;DeviceId=edge-03;SharedAccessKey=" + testKey,
			},
			Agent: &Agent{Name: DefaultAgentName, Type: AgentDocker, ImagePullPolicy: "on-create",
				Config: AgentConfig{
					Image:         "mcr.microsoft.com/azureiotedge-agent:1.5",
					CreateOptions: map[string]any{"HostConfig": map[string]any{"Binds": []any{"/var/run/docker.sock:/var/run/docker.sock"}}},
					Auth:          &RegistryAuth{ServerAddress: "registry.example.com", Username: "puller", Password: "pull-secret"},
				},
				Env: map[string]string{"UpstreamProtocol": "Mqtt"}},
			MobyRuntime: &MobyRuntime{URI: "unix:///var/run/docker.sock", Network: DefaultMobyNetwork},
		}},
		{"upstream_template.good.toml", &Config{
			Hostname: "my-device", Homedir: home, TrustBundleCert: "file:///etc/aziot/trust-bundle.pem",
			AutoReprovisioningMode: ReprovisionDynamic,
			Provisioning: Provisioning{
				Source: SourceDPS, Transport: TransportHTTPS, GlobalEndpoint: "https://global.azure-devices-provisioning.net/", IDScope: "0ne00000A0A",
				Attestation: &Attestation{Method: MethodX509, RegistrationID: "my-device",
					IdentityCert: "file:///var/secrets/device-id.pem", IdentityPK: "file:///var/secrets/device-id.key.pem"},
			},
			Agent:       &Agent{Name: DefaultAgentName, Type: AgentDocker, Config: AgentConfig{Image: "mcr.microsoft.com/azureiotedge-agent:1.5"}},
			MobyRuntime: &MobyRuntime{URI: defaultMobyURI, Network: DefaultMobyNetwork},
		}},
	}
	files, err := filepath.Glob("testdata/*.good.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Fatalf("%d good files but %d expectations", len(files), len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("config (-want +got):\n%s", d)
			}
			enc, err := Encode(got)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(enc)
			if err != nil {
				t.Fatalf("re-parse the encoded config: %v\n%s", err, enc)
			}
			if d := cmp.Diff(got, again); d != "" {
				t.Fatalf("round trip (-first +second):\n%s\nencoded:\n%s", d, enc)
			}
			enc2, err := Encode(again)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(string(enc), string(enc2)); d != "" {
				t.Fatalf("encoding is not stable (-first +second):\n%s", d)
			}
		})
	}
}
