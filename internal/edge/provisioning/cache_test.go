package provisioning

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCacheRoundTrip(t *testing.T) {
	home := t.TempDir()
	c := cacheOf(testIdentity)
	c.Payload = json.RawMessage(`{"site":"north"}`)
	if err := SaveCache(home, c); err != nil {
		t.Fatalf("SaveCache: %v", err)
	}
	got, err := LoadCache(home)
	if err != nil {
		t.Fatalf("LoadCache: %v", err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("LoadCache (-saved +loaded):\n%s", diff)
	}
	// Saving again replaces the file and leaves no temporary file behind.
	c.AssignedHub = "hub2.example.com"
	if err := SaveCache(home, c); err != nil {
		t.Fatalf("SaveCache again: %v", err)
	}
	entries, err := os.ReadDir(filepath.Dir(CachePath(home)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"provisioning_state.json"}, names); diff != "" {
		t.Errorf("cache directory (-want +got):\n%s", diff)
	}
	if got, err := LoadCache(home); err != nil || got.AssignedHub != "hub2.example.com" {
		t.Errorf("LoadCache after replace = %+v, %v", got, err)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(CachePath(home))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("cache file mode = %o, want 600", perm)
		}
		di, err := os.Stat(filepath.Dir(CachePath(home)))
		if err != nil {
			t.Fatal(err)
		}
		if perm := di.Mode().Perm(); perm != 0o700 {
			t.Errorf("cache directory mode = %o, want 700", perm)
		}
	}
}

func TestCachePath(t *testing.T) {
	want := filepath.Join("/var/lib/aziot/edged", "cache", "provisioning_state.json")
	if got := CachePath("/var/lib/aziot/edged"); got != want {
		t.Errorf("CachePath = %q, want %q", got, want)
	}
}

func TestLoadCacheMissing(t *testing.T) {
	_, err := LoadCache(t.TempDir())
	if !errors.Is(err, ErrNoCache) {
		t.Errorf("LoadCache of an empty homedir = %v, want ErrNoCache", err)
	}
}

func TestLoadCacheNotRegular(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(CachePath(home), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCache(home); !errors.Is(err, ErrCorruptCache) || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("LoadCache of a directory = %v, want ErrCorruptCache naming it", err)
	}
}

func TestParseCacheErrors(t *testing.T) {
	valid, err := json.Marshal(cacheOf(testIdentity))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(valid, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name, in, want string
	}{
		{"not json", "hello", "decode JSON"},
		{"empty", "", "decode JSON"},
		{"trailing data", string(valid) + "{}", "data after the JSON object"},
		{"version", edit(func(m map[string]any) { m["version"] = 2 }), "version is 2, want 1"},
		{"no version", edit(func(m map[string]any) { delete(m, "version") }), "version is 0, want 1"},
		{"no hub", edit(func(m map[string]any) { delete(m, "assignedHub") }), "assignedHub is missing"},
		{"no device", edit(func(m map[string]any) { m["deviceId"] = " " }), "deviceId is missing"},
		{"no registration", edit(func(m map[string]any) { delete(m, "registrationId") }), "registrationId is missing"},
		{"no scope", edit(func(m map[string]any) { delete(m, "idScope") }), "idScope is missing"},
		{"no endpoint", edit(func(m map[string]any) { delete(m, "endpoint") }), "endpoint is missing"},
		{"no credential", edit(func(m map[string]any) { delete(m, "credential") }), "credential is missing"},
		{"raw key as credential", edit(func(m map[string]any) { m["credential"] = "c2VjcmV0" }), "credential is not a"},
		{"no time", edit(func(m map[string]any) { delete(m, "provisionedAt") }), "provisionedAt is missing"},
		{"bad time", edit(func(m map[string]any) { m["provisionedAt"] = "yesterday" }), "decode JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCache([]byte(tc.in))
			if !errors.Is(err, ErrCorruptCache) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseCache = %v, want ErrCorruptCache containing %q", err, tc.want)
			}
		})
	}
}

func TestSaveCacheRefusesInvalid(t *testing.T) {
	c := cacheOf(testIdentity)
	c.DeviceID = ""
	home := t.TempDir()
	if err := SaveCache(home, c); !errors.Is(err, ErrCorruptCache) {
		t.Fatalf("SaveCache of a cache without device ID = %v, want ErrCorruptCache", err)
	}
	if _, err := os.Stat(CachePath(home)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an invalid cache was written (stat: %v)", err)
	}
}

func TestMismatch(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Identity)
		want string
	}{
		{"same", func(*Identity) {}, ""},
		{"scope case", func(id *Identity) { id.IDScope = strings.ToUpper(id.IDScope) }, ""},
		{"registration case", func(id *Identity) { id.RegistrationID = "EDGE-1" }, ""},
		{"endpoint case", func(id *Identity) { id.Endpoint = "https://DPS.example.com:8443/" }, ""},
		{"scope", func(id *Identity) { id.IDScope = "0ne00000002" }, `id_scope is "0ne00000002" in the configuration but "0ne00000001" in the cache`},
		{"registration", func(id *Identity) { id.RegistrationID = "edge-2" }, `the registration ID is "edge-2" in the configuration but "edge-1" in the cache`},
		{"endpoint", func(id *Identity) { id.Endpoint = "https://dps.example.com/" }, `global_endpoint is "https://dps.example.com/" in the configuration but "https://dps.example.com:8443/" in the cache`},
		{"credential", func(id *Identity) { id.Credential = FingerprintX509 + strings.Repeat("01", 32) },
			"the credential changed (fingerprint x509:sha256:0101010101010101… in the configuration, symmetric_key:sha256:abababababababab… in the cache)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := testIdentity
			tc.edit(&id)
			if got := cacheOf(testIdentity).Mismatch(id); got != tc.want {
				t.Errorf("Mismatch = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCacheIdentity(t *testing.T) {
	if diff := cmp.Diff(testIdentity, cacheOf(testIdentity).Identity()); diff != "" {
		t.Errorf("Identity (-want +got):\n%s", diff)
	}
}

func FuzzParseCache(f *testing.F) {
	valid, err := json.Marshal(cacheOf(testIdentity))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"version":1,"payload":{"a":[1,2,{"b":null}]}}`))
	f.Add([]byte(`[1,2,3]`))
	f.Add([]byte(`{"version":1} trailing`))
	f.Add([]byte{0xff, 0xfe, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCache(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptCache) {
				t.Fatalf("ParseCache error %v does not wrap ErrCorruptCache", err)
			}
			return
		}
		// A cache that parses survives a save and a load unchanged.
		home := t.TempDir()
		if err := SaveCache(home, c); err != nil {
			t.Fatalf("SaveCache of a parsed cache: %v", err)
		}
		again, err := LoadCache(home)
		if err != nil {
			t.Fatalf("LoadCache of a saved cache: %v", err)
		}
		if !again.ProvisionedAt.Equal(c.ProvisionedAt) {
			t.Fatalf("provisionedAt changed: %v -> %v", c.ProvisionedAt, again.ProvisionedAt)
		}
		again.ProvisionedAt = c.ProvisionedAt
		if diff := cmp.Diff(c.Identity(), again.Identity()); diff != "" {
			t.Fatalf("identity changed across save and load:\n%s", diff)
		}
	})
}
