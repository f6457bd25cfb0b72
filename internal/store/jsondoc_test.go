package store

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// slowValidDoc is what validDoc must agree with: the separate checks.
func slowValidDoc(b []byte) bool {
	return utf8.Valid(b) && json.Valid(b) && JSONDepth(b) <= MaxDocDepth
}

var docSeeds = []string{
	``, ` `, `{}`, `[]`, `""`, `0`, `-0`, `1.5e+10`, `-12.34E-5`, `true`, `false`, `null`,
	` {"a": [1, 2, {"b": null}], "c": "\u00e9\n\"\\\/\b\f\r\t"} `,
	`{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a"}`, `{"a":}`, `{1:2}`, `[1 2]`, `{"a":1 "b":2}`,
	`01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `tru`, `nul`, `truex`, `[true false]`,
	`"\x"`, `"\u12"`, `"\u12G4"`, "\"\x01\"", "\"\xff\"", "\"\xed\xa0\x80\"", "\"\xef\xbf\xbd\"",
	"\"日本語\"", `"unterminated`, `[`, `{`, `]`, `}`, `[[]]]`, `{"a":{"b":{}}}}`, `1 2`, `{} {}`,
	"\xff", "[\"a\"]\xff", "\t\n\r [ ] \t",
}

func TestValidDocAgrees(t *testing.T) {
	for _, s := range docSeeds {
		if got, want := validDoc([]byte(s)), slowValidDoc([]byte(s)); got != want {
			t.Errorf("validDoc(%q) = %v, the separate checks say %v", s, got, want)
		}
	}
	for _, n := range []int{MaxDocDepth - 1, MaxDocDepth, MaxDocDepth + 1} {
		for _, open := range []string{"[", `{"k":`} {
			close := "]"
			if open != "[" {
				close = "}"
			}
			s := []byte(strings.Repeat(open, n) + "1" + strings.Repeat(close, n))
			if got, want := validDoc(s), n <= MaxDocDepth; got != want || slowValidDoc(s) != want {
				t.Errorf("depth %d of %q: validDoc %v, separate checks %v, want %v", n, open, got, slowValidDoc(s), want)
			}
		}
	}
}

func FuzzValidDoc(f *testing.F) {
	for _, s := range docSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validDoc(b), slowValidDoc(b); got != want {
			t.Fatalf("validDoc(%q) = %v, the separate checks say %v", b, got, want)
		}
	})
}

func BenchmarkValidateDoc(b *testing.B) {
	doc := []byte(`{"deviceId":"bench-sk-5f8cc5b7-0","generationId":"613147427563002850","etag":"","connectionState":"Disconnected","status":"enabled","statusReason":null,"connectionStateUpdatedTime":"0001-01-01T00:00:00Z","statusUpdatedTime":"2026-12-06T23:38:44.82460611Z","lastActivityTime":"0001-01-01T00:00:00Z","cloudToDeviceMessageCount":0,"authentication":{"symmetricKey":{"primaryKey":"VMREaUvqye4LDovvEBDGbii/E4NjYiLdAJrLNPEV13I=","secondaryKey":"zPC22mX13C4+Q+b5q5xpqlxZgw27FndhG7Dbpm9sTz0="},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"},"capabilities":{"iotEdge":false},"deviceScope":"","parentScopes":[],"provisionedBy":{"registrationId":"bench-sk-5f8cc5b7-0","enrollmentGroupId":"bench-sk-5f8cc5b7"}}`)
	b.Run("one-pass", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if !validDoc(doc) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("separate", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if !slowValidDoc(doc) {
				b.Fatal("invalid")
			}
		}
	})
}
