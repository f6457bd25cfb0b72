//go:build !windows

// File modes are POSIX; on Windows Write sets DACLs instead.

package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// Write moves an inline key into a 0600 key file of raw bytes, writes the
// configuration 0600 with a file URI instead of the key, and leaves its
// argument untouched; the result loads back to the same key.
func TestWriteMovesInlineKey(t *testing.T) {
	dir := t.TempDir()
	raw := []byte("0123456789abcdef0123456789abcdef")
	in := &Config{
		Homedir: filepath.Join(dir, "home"),
		Provisioning: Provisioning{Source: SourceDPS, GlobalEndpoint: "localhost:8443", IDScope: "0ne0045B3C6",
			Attestation: &Attestation{Method: MethodSymmetricKey, RegistrationID: "edge-01",
				SymmetricKey: &Secret{Value: base64.StdEncoding.EncodeToString(raw)}}},
	}
	before := in.clone()
	cfgPath := filepath.Join(dir, "etc", "aziot", "config.toml")
	w, err := Write(in, cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, in); d != "" {
		t.Errorf("Write modified its argument (-before +after):\n%s", d)
	}
	wantKeyPath := filepath.Join(dir, "home", "secrets", "device-id")
	if w.KeyPath != wantKeyPath || w.ConfigPath != cfgPath {
		t.Errorf("Written = %+v, want key %s and config %s", w, wantKeyPath, cfgPath)
	}
	if got, err := os.ReadFile(wantKeyPath); err != nil || !bytes.Equal(got, raw) {
		t.Errorf("key file holds %q, %v; want the raw key %q", got, err, raw)
	}
	for path, want := range map[string]fs.FileMode{wantKeyPath: 0o600, filepath.Dir(wantKeyPath): 0o700, cfgPath: 0o600} {
		if got := mode(t, path); got != want {
			t.Errorf("mode of %s = %o, want %o", path, got, want)
		}
	}
	body, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	if strings.Contains(text, in.Provisioning.Attestation.SymmetricKey.Value) {
		t.Errorf("the written configuration still holds the inline key:\n%s", text)
	}
	for _, want := range []string{
		"symmetric_key = {uri = '" + PathToFileURI(wantKeyPath) + "'}",
		"global_endpoint = 'https://localhost:8443/'",
		"transport = 'https'",
		"auto_reprovisioning_mode = 'Dynamic'",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("written configuration lacks %q:\n%s", want, text)
		}
	}
	loaded, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(w.Config, loaded); d != "" {
		t.Errorf("loaded configuration differs from the written one (-written +loaded):\n%s", d)
	}
	if got, err := loaded.SymmetricKey(); err != nil || !bytes.Equal(got, raw) {
		t.Errorf("SymmetricKey() after Load = %q, %v; want %q", got, err, raw)
	}

	// Writing again replaces the files in place, leaving no temporary file.
	if _, err := Write(in, cfgPath); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(cfgPath), filepath.Dir(wantKeyPath)} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("%s holds %v, want only the written file", d, names)
		}
	}
}

func TestWriteRefusesInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	c := &Config{Homedir: dir, Provisioning: Provisioning{Source: SourceDPS, IDScope: "nope"}}
	_, err := Write(c, cfgPath)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Write() = %v, want ErrInvalid", err)
	}
	for _, want := range []string{"provisioning.id_scope", "provisioning.global_endpoint", "provisioning.attestation"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	if _, err := os.Stat(cfgPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an invalid configuration was written: %v", err)
	}
}
