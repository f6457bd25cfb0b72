package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzParse feeds arbitrary documents to the decoder and validator. An
// accepted document must encode and parse back to the same configuration,
// and encoding must be stable.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.toml")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("[provisioning]\nsource = 'dps'\n[provisioning.attestation]\nidentity_cert = { method = 1 }\nsymmetric_key = { value = 1, uri = [] }\n"))
	f.Add([]byte("[agent.config]\ncreateOptions = { a = nan, b = 1979-05-27T07:32:00, c = [[1], ['x']] }\n"))
	f.Add([]byte("[[provisioning]]\nsource = 'dps'\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		enc, err := Encode(c)
		if err != nil {
			t.Fatalf("encode an accepted configuration: %v", err)
		}
		again, err := Parse(enc)
		if err != nil {
			t.Fatalf("re-parse the encoded configuration: %v\n%s", err, enc)
		}
		if d := cmp.Diff(c, again, cmpopts.EquateNaNs(), cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("round trip (-first +second):\n%s\nencoded:\n%s", d, enc)
		}
		enc2, err := Encode(again)
		if err != nil {
			t.Fatal(err)
		}
		if string(enc) != string(enc2) {
			t.Fatalf("encoding is not stable:\n%s\n---\n%s", enc, enc2)
		}
	})
}
