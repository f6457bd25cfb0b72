package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/muster-iot/muster/internal/edge/config"
)

func TestConfigApply(t *testing.T) {
	const key = "c2VjcmV0LWtleS1mb3ItdGVzdHM=" // base64 of "secret-key-for-tests"
	goodDoc := func(home string) string {
		return "homedir = '" + filepath.ToSlash(home) + "'\n" + `
[provisioning]
source = "dps"
global_endpoint = "localhost:8443"
id_scope = "0ne0045B3C6"

[provisioning.attestation]
method = "symmetric_key"
registration_id = "edge-01"
symmetric_key = { value = "` + key + `" }
`
	}
	badDoc := `auto_reprovisioning_mode = "Never"
colour = "blue"

[provisioning]
source = "dps"
transport = "amqp"
id_scope = "scope"

[provisioning.attestation]
method = "tpm"
`
	cases := []struct {
		name      string
		doc       func(home string) string
		inPlace   bool
		wantOut   []string
		wantErr   []string
		wantProbs int
	}{
		{
			name:    "inline key moved, written to the runtime's file",
			doc:     goodDoc,
			wantOut: []string{"Note: Symmetric key will be written to ", "IoT Edge has been configured successfully!"},
		},
		{
			name:    "rewritten in place",
			doc:     goodDoc,
			inPlace: true,
			wantOut: []string{"IoT Edge has been configured successfully!"},
		},
		{
			name:      "every problem at once",
			doc:       func(string) string { return badDoc },
			wantProbs: 6,
			wantErr: []string{
				"6 problems:",
				"colour: unknown key (line 2)",
				`auto_reprovisioning_mode: "Never" is not Dynamic, AlwaysOnStartup or OnErrorOnly`,
				`provisioning.transport: "amqp" is not https or mqtt`,
				`provisioning.id_scope: "scope" is not an ID scope`,
				"provisioning.global_endpoint: missing",
				`provisioning.attestation.method: "tpm" is not supported yet by Muster's iotedge`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			home := filepath.Join(dir, "edged")
			in := filepath.Join(dir, "edit.toml")
			out := filepath.Join(dir, "aziot", "config.toml")
			if tc.inPlace {
				out = in
			}
			if err := os.WriteFile(in, []byte(tc.doc(home)), 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, err := runCLI(t, "config", "apply", "-c", in, "-o", out)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("config apply succeeded; output:\n%s", stdout)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error:\n%v\nwant it to contain %q", err, w)
					}
				}
				var ve *config.ValidationError
				if !errors.As(err, &ve) || len(ve.Problems) != tc.wantProbs {
					t.Errorf("want a *config.ValidationError with %d problems, got %v", tc.wantProbs, err)
				}
				if _, err := os.Stat(out); err == nil {
					t.Errorf("an invalid configuration was installed at %s", out)
				}
				return
			}
			if err != nil {
				t.Fatalf("config apply: %v\noutput:\n%s", err, stdout)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(stdout, w) {
					t.Errorf("output:\n%s\nwant it to contain %q", stdout, w)
				}
			}
			checkPrivateFile(t, out)
			body, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(body), key) {
				t.Errorf("the installed configuration still holds the inline key:\n%s", body)
			}
			keyPath := config.KeyFilePath(home)
			checkPrivateFile(t, keyPath)
			if raw, err := os.ReadFile(keyPath); err != nil || !bytes.Equal(raw, []byte("secret-key-for-tests")) {
				t.Errorf("key file holds %q, %v", raw, err)
			}
			loaded, err := config.Load(out)
			if err != nil {
				t.Fatalf("the installed configuration does not load: %v", err)
			}
			if k, err := loaded.SymmetricKey(); err != nil || string(k) != "secret-key-for-tests" {
				t.Errorf("SymmetricKey() = %q, %v", k, err)
			}
			// Applying the installed file again is a no-op on its content.
			if _, err := runCLI(t, "config", "apply", "-c", out, "-o", out); err != nil {
				t.Fatal(err)
			}
			again, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, again) {
				t.Errorf("re-applying changed the file:\n%s\n---\n%s", body, again)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.toml")
		_, err := runCLI(t, "config", "apply", "-c", missing, "-o", missing)
		if err == nil || !strings.Contains(err.Error(), "read "+missing) {
			t.Fatalf("error = %v, want it to name %s", err, missing)
		}
	})
}
