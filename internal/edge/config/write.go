package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pelletier/go-toml/v2"

	"github.com/muster-iot/muster/internal/sas"
)

// header starts every configuration file Write produces.
const header = `# Muster iotedge configuration (IoT Edge config.toml format).
# Written by "iotedge config apply" / "iotedge init": edit it, then run
# "iotedge config apply" to validate and install it again.

`

// KeyFilePath returns where Write moves an inline symmetric key:
// <homedir>/secrets/device-id.
func KeyFilePath(homedir string) string {
	return filepath.Join(homedir, "secrets", "device-id")
}

// Written says what Write wrote.
type Written struct {
	// ConfigPath is the configuration file.
	ConfigPath string
	// KeyPath is the symmetric key file, when an inline key was moved there.
	KeyPath string
	// Config is the configuration as written.
	Config *Config
}

// Write applies the defaults to a copy of c, validates it and writes it in
// normalised form to configPath, replacing the file atomically, readable by
// its owner only (mode 0600; on Windows by SYSTEM and Administrators only).
// An inline symmetric key is first moved to KeyFilePath(homedir) as raw key
// bytes (same protection, directory 0700) and the configuration refers to
// it by file URI. c itself is not modified.
func Write(c *Config, configPath string) (*Written, error) {
	n := c.clone()
	n.SetDefaults()
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	n.normalize()
	w := &Written{ConfigPath: configPath, Config: n}
	if a := n.Provisioning.Attestation; n.Provisioning.Source == SourceDPS && a != nil && a.SymmetricKey != nil && a.SymmetricKey.Value != "" {
		key, err := sas.DecodeKey(a.SymmetricKey.Value)
		if err != nil {
			return nil, fmt.Errorf("write symmetric key: %w", err)
		}
		w.KeyPath = KeyFilePath(n.Homedir)
		if err := makePrivateDir(filepath.Dir(w.KeyPath)); err != nil {
			return nil, fmt.Errorf("write symmetric key: create %s: %w", filepath.Dir(w.KeyPath), err)
		}
		if err := writePrivateFile(w.KeyPath, key); err != nil {
			return nil, fmt.Errorf("write symmetric key: %w", err)
		}
		a.SymmetricKey = &Secret{URI: PathToFileURI(w.KeyPath)}
	}
	body, err := Encode(n)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(configPath), 0o755); err != nil {
		return nil, fmt.Errorf("write config: create %s: %w", filepath.Dir(configPath), err)
	}
	if err := writePrivateFile(configPath, body); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	return w, nil
}

// Encode renders c as TOML, as Write would write it (without moving an
// inline key).
func Encode(c *Config) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(header)
	enc := toml.NewEncoder(&b)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return b.Bytes(), nil
}

// writePrivateFile replaces path atomically with data, readable by its
// owner only: a temporary file in the same directory is protected, written,
// synced and renamed over path.
func writePrivateFile(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := restrictFile(f); err != nil {
		return fmt.Errorf("restrict %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}
