package sas

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeKey(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []byte
		wantErr string
	}{
		{"padded", testKeyB64, []byte("0123456789abcdef0123456789abcdef"), ""},
		{"unpadded", "YWJjZA", []byte("abcd"), ""},
		{"no padding needed", "YWJj", []byte("abc"), ""},
		{"empty", "", nil, "key is empty"},
		{"url alphabet", "YW_j", nil, "offset 2"},
		{"bad padding", "YW=j", nil, "not standard base64"},
		{"embedded space", "YWJj ZA==", nil, "offset 4"},
		{"only padding", "====", nil, "not standard base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeKey(tc.in)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("DecodeKey(%q) error = %v, want ErrInvalidKey", tc.in, err)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeKey(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DecodeKey mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDeriveKey checks known answers computed with
// `echo -n <regid> | openssl dgst -sha256 -mac HMAC -macopt hexkey:<hex> -binary | base64`.
func TestDeriveKey(t *testing.T) {
	// 64 bytes: head -c 64 of "muster-test-group-key-01muster-test-group-key-02muster-test-group-key-03".
	const group64 = "bXVzdGVyLXRlc3QtZ3JvdXAta2V5LTAxbXVzdGVyLXRlc3QtZ3JvdXAta2V5LTAybXVzdGVyLXRlc3QtZ3JvdQ=="
	tests := []struct {
		name, groupKey, regID, want string
	}{
		{"hub spec vector", testKeyB64, "dev1", "dBQa2NH8KbHdr9PFmAU79U7IUPa+jXVxpnR4vsTWw64="},
		{"mixed case registration id", testKeyB64, "my-Device-01", "YKYWDZOSPDCgVBNAZm8dD4Jw/6sziNmTYSX/AT3PgHI="},
		{"64-byte group key", group64, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", "QsEAxXakrDkovrwaP4zir9XQHzTkwjqYzIszRMPtdYU="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DeriveKey(tc.groupKey, tc.regID)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("DeriveKey = %q, want %q", got, tc.want)
			}
			gk, _ := DecodeKey(tc.groupKey)
			if raw := base64.StdEncoding.EncodeToString(Derive(gk, tc.regID)); raw != tc.want {
				t.Errorf("Derive = %q, want %q", raw, tc.want)
			}
		})
	}
	t.Run("case matters", func(t *testing.T) {
		a, _ := DeriveKey(testKeyB64, "Dev1")
		b, _ := DeriveKey(testKeyB64, "dev1")
		if a == b {
			t.Error("derived keys of Dev1 and dev1 are equal")
		}
	})
	t.Run("bad group key", func(t *testing.T) {
		_, err := DeriveKey("not base64!", "dev1")
		if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "group key") {
			t.Errorf("DeriveKey error = %v, want ErrInvalidKey naming the group key", err)
		}
	})
}

func TestGenerateKey(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 8; i++ {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if len(k) != 88 {
			t.Errorf("key %q has %d characters, want 88", k, len(k))
		}
		raw, err := DecodeKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != GeneratedKeyLen {
			t.Errorf("key decodes to %d bytes, want %d", len(raw), GeneratedKeyLen)
		}
		if seen[k] {
			t.Fatalf("GenerateKey repeated %q", k)
		}
		seen[k] = true
	}
}

// BenchmarkVerifyDerived measures what a group-enrolled device's
// registration costs: parse the token, derive the device key from the
// group key and verify the signature.
func BenchmarkVerifyDerived(b *testing.B) {
	groupKey, err := GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	gk, err := DecodeKey(groupKey)
	if err != nil {
		b.Fatal(err)
	}
	const regID = "sensor-000042"
	token := Sign("0ne00000001/registrations/"+regID, Derive(gk, regID), "registration", time.Now().Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		tok, err := Parse(token)
		if err != nil {
			b.Fatal(err)
		}
		if !tok.VerifyKey(Derive(gk, regID)) {
			b.Fatal("VerifyKey = false")
		}
	}
}
