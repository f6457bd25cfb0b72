package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/pki"
)

// deviceFiles is a device identity issued by root → intermediate, written
// as the test certificate scripts lay it out, plus a stranger's key.
type deviceFiles struct {
	dir                     string
	rootCert, chain, key    string
	strangerKey             string
	deviceCN                string
	deviceRaw, intermediate []byte
}

func newDeviceFiles(t *testing.T) *deviceFiles {
	t.Helper()
	check := func(iss *pki.Issued, err error) *pki.Issued {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	root := check(pki.NewRoot("Azure IoT Hub CA Cert Test Only"))
	inter := check(root.NewIntermediate("Azure IoT Hub Intermediate Cert Test Only"))
	device := check(inter.NewDevice("edge-x509-01"))
	stranger := check(inter.NewDevice("someone-else"))
	d := &deviceFiles{dir: t.TempDir(), deviceCN: "edge-x509-01", deviceRaw: device.Cert.Raw, intermediate: inter.Cert.Raw}
	for _, sub := range []string{"certs", "private"} {
		if err := os.Mkdir(filepath.Join(d.dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name string, data []byte, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d.dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	d.rootCert = write(filepath.Join("certs", "azure-iot-test-only.root.ca.cert.pem"), root.CertPEM(), nil)
	d.chain = write(filepath.Join("certs", "iot-edge-device-identity-edge-x509-01-full-chain.cert.pem"), pki.EncodeCertificates(device.Cert, inter.Cert), nil)
	keyPEM, err := device.KeyPEM()
	d.key = write(filepath.Join("private", "iot-edge-device-identity-edge-x509-01.key.pem"), keyPEM, err)
	strangerPEM, err := stranger.KeyPEM()
	d.strangerKey = write(filepath.Join("private", "someone-else.key.pem"), strangerPEM, err)
	return d
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd(&out)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.Execute()
	return out.String(), err
}

func TestInit(t *testing.T) {
	d := newDeviceFiles(t)
	const scope = "0ne0045B3C6"
	symKey := base64.StdEncoding.EncodeToString([]byte("a device key derived from a group"))
	rel := func(p string) string {
		r, err := filepath.Rel(d.dir, p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	type want struct {
		out        []string // lines the command prints
		toml       []string // lines the written configuration holds
		notInToml  []string
		keyFile    []byte // the moved symmetric key, raw
		regID      string
		endpoint   string // DPSEndpoint() of the loaded configuration
		errContain []string
	}
	cases := []struct {
		name     string
		args     func(cfg, home string) []string
		existing bool
		want     want
	}{
		{
			name: "dps x509 with absolute paths",
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-x509", "--scope-id", scope, "--x509-identity-certificate", d.chain,
					"--x509-identity-private-key", d.key, "--global-endpoint", "localhost:8443", "--trust-bundle", d.rootCert,
					"--config-file", cfg, "--homedir", home}
			},
			want: want{
				out: []string{"IoT Edge has been configured successfully!"},
				toml: []string{
					"identity_cert = '" + config.PathToFileURI(d.chain) + "'",
					"identity_pk = '" + config.PathToFileURI(d.key) + "'",
					"trust_bundle_cert = '" + config.PathToFileURI(d.rootCert) + "'",
					"global_endpoint = 'https://localhost:8443/'",
					"method = 'x509'",
				},
				notInToml: []string{"registration_id"},
				regID:     "edge-x509-01",
				endpoint:  "localhost:8443",
			},
		},
		{
			name: "dps x509 with relative paths and a registration ID",
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-x509", "--scope-id", scope, "--registration-id", "custom-device",
					"--x509-identity-certificate", rel(d.chain), "--x509-identity-private-key", rel(d.key),
					"--global-endpoint", "https://localhost:8443", "--config-file", cfg, "--homedir", home}
			},
			want: want{
				toml: []string{
					"identity_cert = '" + config.PathToFileURI(d.chain) + "'",
					"identity_pk = '" + config.PathToFileURI(d.key) + "'",
					"registration_id = 'custom-device'",
				},
				regID:    "custom-device",
				endpoint: "localhost:8443",
			},
		},
		{
			name: "dps symmetric key over mqtt",
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-symmetric-key", "--scope-id", scope, "--registration-id", "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
					"--symmetric-key", symKey, "--global-endpoint", "localhost:8883", "--transport", "mqtt",
					"--auto-reprovisioning-mode", "AlwaysOnStartup", "--config-file", cfg, "--homedir", home}
			},
			want: want{
				out: []string{"Note: Symmetric key will be written to ", "IoT Edge has been configured successfully!"},
				toml: []string{
					"transport = 'mqtt'",
					"global_endpoint = 'mqtts://localhost:8883/'",
					"auto_reprovisioning_mode = 'AlwaysOnStartup'",
					"symmetric_key = {uri = 'file://",
				},
				notInToml: []string{symKey},
				keyFile:   []byte("a device key derived from a group"),
				regID:     "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
				endpoint:  "localhost:8883",
			},
		},
		{
			name: "hub ports and edge hub address",
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-symmetric-key", "--scope-id", scope, "--registration-id", "edge-ports",
					"--symmetric-key", symKey, "--global-endpoint", "localhost:18443", "--iothub-mqtt-port", "18883",
					"--iothub-https-port", "18443", "--edge-hub-address", "127.0.0.1:0", "--config-file", cfg, "--homedir", home}
			},
			want: want{
				toml:     []string{"[iothub]", "mqtt_port = 18883", "https_port = 18443", "[edge_hub]", "listen_address = '127.0.0.1:0'"},
				keyFile:  []byte("a device key derived from a group"),
				regID:    "edge-ports",
				endpoint: "localhost:18443",
			},
		},
		{
			name: "bad hub port and edge hub address name their flags",
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-symmetric-key", "--scope-id", scope, "--registration-id", "edge-ports",
					"--symmetric-key", symKey, "--global-endpoint", "localhost:18443", "--iothub-https-port", "-1",
					"--edge-hub-address", "nowhere", "--config-file", cfg, "--homedir", home}
			},
			want: want{errContain: []string{
				"--edge-hub-address (edge_hub.listen_address): \"nowhere\" is not host:port",
				"--iothub-https-port (iothub.https_port): -1 is not a TCP port",
			}},
		},
		{
			name: "mismatched key is refused naming the file",
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-x509", "--scope-id", scope, "--x509-identity-certificate", d.chain,
					"--x509-identity-private-key", d.strangerKey, "--global-endpoint", "localhost:8443", "--config-file", cfg, "--homedir", home}
			},
			want: want{errContain: []string{
				"--x509-identity-private-key (provisioning.attestation.identity_pk): the private key in " + d.strangerKey +
					" does not belong to the certificate in " + d.chain + " (CN=edge-x509-01)",
			}},
		},
		{
			name: "missing certificate file",
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-x509", "--scope-id", scope, "--x509-identity-certificate", filepath.Join(d.dir, "nope.pem"),
					"--x509-identity-private-key", d.key, "--global-endpoint", "localhost:8443", "--config-file", cfg, "--homedir", home}
			},
			want: want{errContain: []string{
				"--x509-identity-certificate (provisioning.attestation.identity_cert): read " + filepath.Join(d.dir, "nope.pem") + ":",
			}},
		},
		{
			name: "every missing or bad flag at once",
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-symmetric-key", "--scope-id", "not-a-scope", "--symmetric-key", "***",
					"--transport", "amqp", "--config-file", cfg, "--homedir", home}
			},
			want: want{errContain: []string{
				"init: 5 problems:",
				`--scope-id (provisioning.id_scope): "not-a-scope" is not an ID scope`,
				"--registration-id (provisioning.attestation.registration_id): missing (required with --dps-symmetric-key)",
				"--symmetric-key (provisioning.attestation.symmetric_key.value): decode key: sas: invalid key: not standard base64",
				`--transport (provisioning.transport): "amqp" is not https or mqtt`,
				"--global-endpoint (provisioning.global_endpoint): missing",
			}},
		},
		{
			name: "x509 flags with the symmetric key mode",
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-symmetric-key", "--scope-id", scope, "--registration-id", "r1", "--symmetric-key", symKey,
					"--x509-identity-certificate", d.chain, "--global-endpoint", "localhost:8443", "--config-file", cfg, "--homedir", home}
			},
			want: want{errContain: []string{"--x509-identity-certificate (provisioning.attestation.identity_cert): only applies to --dps-x509"}},
		},
		{
			name: "both modes",
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-x509", "--dps-symmetric-key", "--config-file", cfg}
			},
			want: want{errContain: []string{"if any flags in the group [dps-x509 dps-symmetric-key] are set none of the others can be"}},
		},
		{
			name: "no mode",
			args: func(cfg, home string) []string { return []string{"init", "--scope-id", scope, "--config-file", cfg} },
			want: want{errContain: []string{"at least one of the flags in the group [dps-x509 dps-symmetric-key] is required"}},
		},
		{
			name:     "existing configuration without --force",
			existing: true,
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-symmetric-key", "--scope-id", scope, "--registration-id", "r1", "--symmetric-key", symKey,
					"--global-endpoint", "localhost:8443", "--config-file", cfg, "--homedir", home}
			},
			want: want{errContain: []string{"already exists; pass --force to overwrite it"}},
		},
		{
			name:     "existing configuration with --force",
			existing: true,
			args: func(cfg, home string) []string {
				return []string{"init", "--dps-symmetric-key", "--scope-id", scope, "--registration-id", "r1", "--symmetric-key", symKey,
					"--global-endpoint", "localhost:8443", "--config-file", cfg, "--homedir", home, "--force"}
			},
			want: want{toml: []string{"registration_id = 'r1'"}, keyFile: []byte("a device key derived from a group"), regID: "r1", endpoint: "localhost:8443"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(d.dir)
			out := t.TempDir()
			cfg := filepath.Join(out, "aziot", "config.toml")
			home := filepath.Join(out, "edged")
			if tc.existing {
				if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(cfg, []byte("# previous\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			stdout, err := runCLI(t, tc.args(cfg, home)...)
			if len(tc.want.errContain) > 0 {
				if err == nil {
					t.Fatalf("init succeeded; output:\n%s", stdout)
				}
				for _, w := range tc.want.errContain {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error:\n%v\nwant it to contain %q", err, w)
					}
				}
				if strings.Contains(err.Error(), symKey) {
					t.Errorf("error reveals the symmetric key: %v", err)
				}
				if !tc.existing {
					if _, statErr := os.Stat(cfg); statErr == nil {
						t.Errorf("a configuration was written despite the error")
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("init: %v\noutput:\n%s", err, stdout)
			}
			for _, w := range tc.want.out {
				if !strings.Contains(stdout, w) {
					t.Errorf("output:\n%s\nwant it to contain %q", stdout, w)
				}
			}
			body, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want.toml {
				if !strings.Contains(string(body), w) {
					t.Errorf("config.toml:\n%s\nwant it to contain %q", body, w)
				}
			}
			for _, w := range tc.want.notInToml {
				if strings.Contains(string(body), w) {
					t.Errorf("config.toml:\n%s\nmust not contain %q", body, w)
				}
			}
			checkPrivateFile(t, cfg)
			loaded, err := config.Load(cfg)
			if err != nil {
				t.Fatalf("the written configuration does not load: %v", err)
			}
			if regID, err := loaded.RegistrationID(); err != nil || regID != tc.want.regID {
				t.Errorf("RegistrationID() = %q, %v; want %q", regID, err, tc.want.regID)
			}
			if ep, err := loaded.DPSEndpoint(); err != nil || ep != tc.want.endpoint {
				t.Errorf("DPSEndpoint() = %q, %v; want %q", ep, err, tc.want.endpoint)
			}
			if tc.want.keyFile != nil {
				keyPath := config.KeyFilePath(home)
				checkPrivateFile(t, keyPath)
				if got, err := os.ReadFile(keyPath); err != nil || !bytes.Equal(got, tc.want.keyFile) {
					t.Errorf("key file holds %q, %v; want %q", got, err, tc.want.keyFile)
				}
				if !strings.Contains(stdout, "Note: Symmetric key will be written to "+keyPath) {
					t.Errorf("output does not announce the key file %s:\n%s", keyPath, stdout)
				}
			}
			if loaded.Provisioning.Attestation.Method == config.MethodX509 {
				tlsCert, err := loaded.IdentityCertificate()
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff([][]byte{d.deviceRaw, d.intermediate}, tlsCert.Certificate); d != "" {
					t.Errorf("identity chain (-want +got):\n%s", d)
				}
			}
		})
	}
}
