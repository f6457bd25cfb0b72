package provisioning

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CacheVersion is the version of the cache file format this package writes
// and reads; a file of another version is treated as unusable.
const CacheVersion = 1

// MaxCacheSize is the largest cache file read (the DPS payload it holds is
// bounded by the service; this only stops a corrupt file from being read
// without end).
const MaxCacheSize = 1 << 20

// Credential fingerprint prefixes: the method, then the hash.
const (
	// FingerprintSymmetricKey prefixes the SHA-256 of a raw symmetric key.
	FingerprintSymmetricKey = "symmetric_key:sha256:"
	// FingerprintX509 prefixes the SHA-256 of the identity certificate
	// (DER), its usual thumbprint.
	FingerprintX509 = "x509:sha256:"
)

// Sentinel errors of LoadCache, for errors.Is.
var (
	// ErrNoCache means the cache file does not exist: the device has not
	// provisioned yet (or the cache was deleted).
	ErrNoCache = errors.New("no cached provisioning state")
	// ErrCorruptCache means the cache file exists but is not a cache this
	// package can use (not JSON, another version, a required field missing,
	// not a regular file, too large).
	ErrCorruptCache = errors.New("unusable provisioning state cache")
)

// Identity is what the configuration says the device is towards DPS: the
// values an assignment is valid for. Credential is a fingerprint, never the
// key itself.
type Identity struct {
	// IDScope is provisioning.id_scope.
	IDScope string
	// RegistrationID is the DPS registration ID (registration_id, or the
	// certificate CN for X.509 without it).
	RegistrationID string
	// Endpoint is the normalised provisioning.global_endpoint.
	Endpoint string
	// Credential is FingerprintSymmetricKey or FingerprintX509 followed by
	// the hexadecimal SHA-256 of the raw key or of the leaf certificate.
	Credential string
}

// Cache is the cached result of the last successful registration, as
// stored in CachePath(homedir). It holds no secret.
type Cache struct {
	// Version is CacheVersion.
	Version int `json:"version"`
	// AssignedHub is the host name of the hub DPS assigned.
	AssignedHub string `json:"assignedHub"`
	// DeviceID is the device ID in that hub.
	DeviceID string `json:"deviceId"`
	// RegistrationID, IDScope, Endpoint and Credential are the Identity
	// the assignment was obtained with.
	RegistrationID string `json:"registrationId"`
	IDScope        string `json:"idScope"`
	Endpoint       string `json:"endpoint"`
	Credential     string `json:"credential"`
	// ProvisionedAt is when the registration completed (device clock, UTC).
	ProvisionedAt time.Time `json:"provisionedAt"`
	// Substatus is the registration substatus (initialAssignment,
	// deviceDataMigrated, deviceDataReset,
	// reprovisionedToInitialAssignment).
	Substatus string `json:"substatus,omitempty"`
	// Payload is the payload DPS returned (from a custom allocation), if
	// any.
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Identity returns the identity the assignment was obtained with.
func (c *Cache) Identity() Identity {
	return Identity{IDScope: c.IDScope, RegistrationID: c.RegistrationID, Endpoint: c.Endpoint, Credential: c.Credential}
}

// Mismatch returns "" when the cache was obtained with id, else a
// description of the first difference (ID scope, registration ID,
// endpoint, credential). ID scopes, registration IDs and endpoints compare
// case-insensitively, as DPS treats them; credential fingerprints compare
// in constant time.
func (c *Cache) Mismatch(id Identity) string {
	switch {
	case !strings.EqualFold(c.IDScope, id.IDScope):
		return fmt.Sprintf("id_scope is %q in the configuration but %q in the cache", id.IDScope, c.IDScope)
	case !strings.EqualFold(c.RegistrationID, id.RegistrationID):
		return fmt.Sprintf("the registration ID is %q in the configuration but %q in the cache", id.RegistrationID, c.RegistrationID)
	case !strings.EqualFold(c.Endpoint, id.Endpoint):
		return fmt.Sprintf("global_endpoint is %q in the configuration but %q in the cache", id.Endpoint, c.Endpoint)
	case subtle.ConstantTimeCompare([]byte(c.Credential), []byte(id.Credential)) != 1:
		return fmt.Sprintf("the credential changed (fingerprint %s in the configuration, %s in the cache)", shortFingerprint(id.Credential), shortFingerprint(c.Credential))
	}
	return ""
}

// shortFingerprint abbreviates a fingerprint for messages: the method and
// the first 16 hexadecimal digits.
func shortFingerprint(fp string) string {
	i := strings.LastIndexByte(fp, ':')
	if i < 0 || len(fp)-i-1 <= 16 {
		return fp
	}
	return fp[:i+1] + fp[i+1:i+17] + "…"
}

// fingerprint returns prefix followed by the hexadecimal SHA-256 of b.
func fingerprint(prefix string, b []byte) string {
	sum := sha256.Sum256(b)
	return prefix + hex.EncodeToString(sum[:])
}

// CachePath returns the cache file of a runtime home directory:
// <homedir>/cache/provisioning_state.json.
func CachePath(homedir string) string {
	return filepath.Join(homedir, "cache", "provisioning_state.json")
}

// LoadCache reads the cache of a runtime home directory. A missing file is
// ErrNoCache; a file that is not a usable cache wraps ErrCorruptCache;
// other errors (permissions, I/O) are returned wrapped as they are.
func LoadCache(homedir string) (*Cache, error) {
	path := CachePath(homedir)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, ErrNoCache)
	}
	if err != nil {
		return nil, fmt.Errorf("read provisioning cache: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: %w: not a regular file (%s)", path, ErrCorruptCache, fi.Mode().Type())
	}
	if fi.Size() > MaxCacheSize {
		return nil, fmt.Errorf("read %s: %w: %d bytes, more than the %d-byte limit", path, ErrCorruptCache, fi.Size(), MaxCacheSize)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read provisioning cache: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxCacheSize+1))
	if err != nil {
		return nil, fmt.Errorf("read provisioning cache: %w", err)
	}
	if len(b) > MaxCacheSize {
		return nil, fmt.Errorf("read %s: %w: more than the %d-byte limit", path, ErrCorruptCache, MaxCacheSize)
	}
	c, err := ParseCache(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return c, nil
}

// ParseCache decodes and checks a cache file's content. Errors wrap
// ErrCorruptCache and name the field at fault.
func ParseCache(b []byte) (*Cache, error) {
	var c Cache
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: decode JSON: %v", ErrCorruptCache, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrCorruptCache)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// validate checks the fields a usable cache must have.
func (c *Cache) validate() error {
	if c.Version != CacheVersion {
		return fmt.Errorf("%w: version is %d, want %d", ErrCorruptCache, c.Version, CacheVersion)
	}
	for _, f := range []struct{ name, value string }{
		{"assignedHub", c.AssignedHub},
		{"deviceId", c.DeviceID},
		{"registrationId", c.RegistrationID},
		{"idScope", c.IDScope},
		{"endpoint", c.Endpoint},
		{"credential", c.Credential},
	} {
		if strings.TrimSpace(f.value) == "" {
			return fmt.Errorf("%w: %s is missing", ErrCorruptCache, f.name)
		}
	}
	if !strings.HasPrefix(c.Credential, FingerprintSymmetricKey) && !strings.HasPrefix(c.Credential, FingerprintX509) {
		return fmt.Errorf("%w: credential is not a %q or %q fingerprint", ErrCorruptCache, FingerprintSymmetricKey, FingerprintX509)
	}
	if c.ProvisionedAt.IsZero() {
		return fmt.Errorf("%w: provisionedAt is missing", ErrCorruptCache)
	}
	return nil
}

// SaveCache writes c as the cache of a runtime home directory, replacing
// the file atomically (temporary file, sync, rename), readable and
// writable by its owner only (0600, directory 0700; the cache holds no
// secret, but names the device and its hub).
func SaveCache(homedir string, c *Cache) (err error) {
	if err := c.validate(); err != nil {
		return fmt.Errorf("save provisioning cache: %w", err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("save provisioning cache: %w", err)
	}
	b = append(b, '\n')
	path := CachePath(homedir)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save provisioning cache: create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".provisioning_state-*.tmp")
	if err != nil {
		return fmt.Errorf("save provisioning cache: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("save provisioning cache: restrict %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("save provisioning cache: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save provisioning cache: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save provisioning cache: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save provisioning cache: replace %s: %w", path, err)
	}
	return nil
}
