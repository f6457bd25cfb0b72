package sas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// testKeyB64 is the key of the test vectors in the hub/edge protocol spec §1.3
// (the ASCII bytes "0123456789abcdef0123456789abcdef").
const testKeyB64 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

func testKey(t testing.TB) []byte {
	t.Helper()
	k, err := DecodeKey(testKeyB64)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// hmacB64 signs text with key as an SDK does.
func hmacB64(key []byte, text string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(text))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestParse(t *testing.T) {
	const sig = "hEm/PbuMRj5eUD7JRpH0mT8JQIJPRExjdXl662d8SVE="
	encSig := url.QueryEscape(sig)
	exp := time.Unix(1700000000, 0).UTC()
	tests := []struct {
		name  string
		token string
		want  Token
	}{
		{
			name:  "node order with prefix",
			token: "SharedAccessSignature sr=0ne00000001/registrations/my-device&sig=" + encSig + "&skn=registration&se=1700000000",
			want:  Token{Resource: "0ne00000001/registrations/my-device", Signature: sig, Expiry: exp, ExpiryRaw: "1700000000", KeyName: "registration"},
		},
		{
			name:  "without prefix",
			token: "sr=0ne00000001%2Fregistrations%2Fmy-device&sig=" + encSig + "&se=1700000000&skn=registration",
			want:  Token{Resource: "0ne00000001%2Fregistrations%2Fmy-device", Signature: sig, Expiry: exp, ExpiryRaw: "1700000000", KeyName: "registration"},
		},
		{
			name:  "prefix in other case and surrounding spaces",
			token: "  sharedaccesssignature   se=1700000000&sr=a%2fb&sig=" + encSig + " ",
			want:  Token{Resource: "a%2fb", Signature: sig, Expiry: exp, ExpiryRaw: "1700000000"},
		},
		{
			name:  "python without skn, reversed order",
			token: "SharedAccessSignature se=1700000000&sig=" + encSig + "&sr=x",
			want:  Token{Resource: "x", Signature: sig, Expiry: exp, ExpiryRaw: "1700000000"},
		},
		{
			name:  "unknown fields and empty segments ignored, names case-insensitive",
			token: "SharedAccessSignature SR=x&&Sig=" + encSig + "&foo=bar&baz&SE=1700000000&",
			want:  Token{Resource: "x", Signature: sig, Expiry: exp, ExpiryRaw: "1700000000"},
		},
		{
			name:  "signature not URL-encoded",
			token: "SharedAccessSignature sr=x&sig=" + sig + "&se=1700000000",
			want:  Token{Resource: "x", Signature: sig, Expiry: exp, ExpiryRaw: "1700000000"},
		},
		{
			name:  "signature with lower-case hex escapes",
			token: "SharedAccessSignature sr=x&sig=" + strings.NewReplacer("%2F", "%2f", "%3D", "%3d").Replace(encSig) + "&se=1700000000",
			want:  Token{Resource: "x", Signature: sig, Expiry: exp, ExpiryRaw: "1700000000"},
		},
		{
			name:  "value containing '=' split on the first one",
			token: "SharedAccessSignature sr=a=b&sig=" + encSig + "&se=1700000000&skn=k%3Dv",
			want:  Token{Resource: "a=b", Signature: sig, Expiry: exp, ExpiryRaw: "1700000000", KeyName: "k=v"},
		},
		{
			name:  "leading zeros in se kept raw",
			token: "SharedAccessSignature sr=x&sig=" + encSig + "&se=01700000000",
			want:  Token{Resource: "x", Signature: sig, Expiry: exp, ExpiryRaw: "01700000000"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.token)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, *got, cmpopts.IgnoreUnexported(Token{})); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	const sig = "hEm%2FPbuMRj5eUD7JRpH0mT8JQIJPRExjdXl662d8SVE%3D"
	tests := []struct {
		name      string
		token     string
		wantField string
		wantMsg   string
	}{
		{"empty", "", "token", "empty"},
		{"prefix only", "SharedAccessSignature ", "token", "empty"},
		{"too long", "SharedAccessSignature sr=" + strings.Repeat("a", MaxTokenLen) + "&sig=" + sig + "&se=1", "token", "limit"},
		{"missing sr", "SharedAccessSignature sig=" + sig + "&se=1700000000", "sr", "missing"},
		{"missing sig", "SharedAccessSignature sr=x&se=1700000000", "sig", "missing"},
		{"missing se", "SharedAccessSignature sr=x&sig=" + sig, "se", "missing"},
		{"duplicate sr", "SharedAccessSignature sr=x&sr=y&sig=" + sig + "&se=1", "sr", "more than once"},
		{"duplicate sig differing case", "SharedAccessSignature sr=x&sig=" + sig + "&SIG=" + sig + "&se=1", "sig", "more than once"},
		{"duplicate se", "SharedAccessSignature sr=x&sig=" + sig + "&se=1&se=2", "se", "more than once"},
		{"duplicate skn", "SharedAccessSignature sr=x&sig=" + sig + "&se=1&skn=a&skn=a", "skn", "more than once"},
		{"sr without '='", "SharedAccessSignature sr&sig=" + sig + "&se=1", "sr", "no '='"},
		{"empty sr", "SharedAccessSignature sr=&sig=" + sig + "&se=1", "sr", "empty"},
		{"bad escape in sr", "SharedAccessSignature sr=a%zz&sig=" + sig + "&se=1", "sr", "URL encoding"},
		{"empty se", "SharedAccessSignature sr=x&sig=" + sig + "&se=", "se", "empty"},
		{"non-integer se", "SharedAccessSignature sr=x&sig=" + sig + "&se=17e9", "se", "not a decimal"},
		{"negative se", "SharedAccessSignature sr=x&sig=" + sig + "&se=-1", "se", "not a decimal"},
		{"fractional se", "SharedAccessSignature sr=x&sig=" + sig + "&se=1700000000.5", "se", "not a decimal"},
		{"overflowing se", "SharedAccessSignature sr=x&sig=" + sig + "&se=99999999999999999999", "se", "out of range"},
		{"empty sig", "SharedAccessSignature sr=x&sig=&se=1", "sig", "empty"},
		{"sig not base64", "SharedAccessSignature sr=x&sig=not*base64&se=1", "sig", "base64"},
		{"sig bad escape", "SharedAccessSignature sr=x&sig=%G1&se=1", "sig", "URL encoding"},
		{"sig wrong length", "SharedAccessSignature sr=x&sig=" + url.QueryEscape(base64.StdEncoding.EncodeToString(make([]byte, 20))) + "&se=1", "sig", "20 bytes"},
		{"skn bad escape", "SharedAccessSignature sr=x&sig=" + sig + "&se=1&skn=%", "skn", "URL encoding"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Parse(tc.token)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", tok)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("errors.Is(%v, ErrMalformed) = false", err)
			}
			var me *MalformedError
			if !errors.As(err, &me) {
				t.Fatalf("error %T is not *MalformedError", err)
			}
			if me.Field != tc.wantField {
				t.Errorf("Field = %q, want %q (%v)", me.Field, tc.wantField, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tc.wantMsg)
			}
			if tc.wantField != "token" && !strings.Contains(err.Error(), "field "+tc.wantField) {
				t.Errorf("error %q does not name field %s", err, tc.wantField)
			}
		})
	}
}

// TestKnownAnswers checks tokens against values computed independently
// (the Node SDK vectors of the hub/edge spec and openssl dgst -hmac).
func TestKnownAnswers(t *testing.T) {
	key := testKey(t)
	exp := time.Unix(1700000000, 0)
	t.Run("Sign device token", func(t *testing.T) {
		got := Sign("myhub.azure-devices.net/devices/dev1", key, "", exp)
		want := "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1&sig=wosmA3uJK9T0mdB5CIYn%2BsAVA2ODflnucuvNO5S6mbM%3D&se=1700000000"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Sign mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("Sign module token", func(t *testing.T) {
		got := Sign("myhub.azure-devices.net/devices/dev1/modules/mod1", key, "", exp)
		want := "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1%2Fmodules%2Fmod1&sig=ZId0CjYzILqd7GGIpC99uIpjPK4fJTkYbrDAh8qYiy8%3D&se=1700000000"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Sign mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("SignRaw service token", func(t *testing.T) {
		got := SignRaw("myhub.azure-devices.net", key, "iothubowner", exp)
		want := "SharedAccessSignature sr=myhub.azure-devices.net&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&skn=iothubowner&se=1700000000"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("SignRaw mismatch (-want +got):\n%s", diff)
		}
	})
	tokens := []struct {
		name, token string
	}{
		// printf '0ne00000001/registrations/my-device\n1700000000' | openssl dgst -sha256 -mac HMAC ...
		{"node raw", "SharedAccessSignature sr=0ne00000001/registrations/my-device&sig=hEm%2FPbuMRj5eUD7JRpH0mT8JQIJPRExjdXl662d8SVE%3D&skn=registration&se=1700000000"},
		// printf '0ne00000001%%2fregistrations%%2fmy-device\n1700000000' | openssl ...
		{"c lower hex", "SharedAccessSignature sr=0ne00000001%2fregistrations%2fmy-device&sig=Jjy3m%2f3Nj6B26H512ivncFlckCj7Tq%2fbI46p7sT8enA%3d&se=1700000000&skn=registration"},
		// printf '0ne00000001%%2Fregistrations%%2FMy-Device\n1700000000' | openssl ...
		{"csharp upper hex mixed case", "SharedAccessSignature sr=0ne00000001%2Fregistrations%2FMy-Device&sig=qHuIJN%2FwqMMswqqhn10ExomYzfyEgqlxLZ2hPVhqob8%3D&se=1700000000&skn=registration"},
	}
	for _, tc := range tokens {
		t.Run("verify "+tc.name, func(t *testing.T) {
			tok, err := Parse(tc.token)
			if err != nil {
				t.Fatal(err)
			}
			if !tok.VerifyKey(key) {
				t.Error("VerifyKey(correct key) = false")
			}
			other := append([]byte(nil), key...)
			other[0] ^= 1
			if tok.VerifyKey(other) {
				t.Error("VerifyKey(other key) = true")
			}
		})
	}
}

// buildToken assembles a token from fields in the given order, signing
// signedSR (which may differ from the sr sent, as some clients do).
func buildToken(key []byte, sentSR, signedSR, se, skn string, sigEnc func(string) string, order []string) string {
	sig := sigEnc(hmacB64(key, signedSR+"\n"+se))
	vals := map[string]string{"sr": sentSR, "sig": sig, "se": se, "skn": skn}
	var parts []string
	for _, f := range order {
		if f == "skn" && skn == "" {
			continue
		}
		parts = append(parts, f+"="+vals[f])
	}
	return Prefix + strings.Join(parts, "&")
}

func TestSDKVariants(t *testing.T) {
	key := testKey(t)
	const (
		resource = "0ne00AB12CD/registrations/Sensor-42.a_b:c"
		se       = "1700003600"
	)
	lowerHexEsc := func(s string) string { return escape(s, rfc3986Unreserved, lowerHex) }
	upperHexEsc := func(s string) string { return escape(s, rfc3986Unreserved, upperHex) }
	// WebUtility.UrlEncode keeps ! * ( ) unescaped, upper-case hex.
	csharpEsc := func(s string) string { return escape(s, jsUnreserved, upperHex) }
	// identity service: path-segment percent set; the resource has nothing to escape but ':' stays.
	identityAudience := strings.ToLower(resource)
	raw := func(s string) string { return s }
	tests := []struct {
		name             string
		sentSR, signedSR string
		skn              string
		sigEnc           func(string) string
		order            []string
	}{
		{"node raw sr", resource, resource, "registration", Encode, []string{"sr", "sig", "skn", "se"}},
		{"c lower hex", lowerHexEsc(resource), lowerHexEsc(resource), "registration", lowerHexEsc, []string{"sr", "sig", "se", "skn"}},
		{"csharp UrlEncode", csharpEsc(resource), csharpEsc(resource), "registration", csharpEsc, []string{"sr", "sig", "se", "skn"}},
		{"python quote without skn", upperHexEsc(resource), upperHexEsc(resource), "", upperHexEsc, []string{"sr", "sig", "se"}},
		{"python docs quote_plus", url.QueryEscape(resource), url.QueryEscape(resource), "registration", url.QueryEscape, []string{"sr", "sig", "se", "skn"}},
		{"identity service lower-cased", identityAudience, identityAudience, "registration", url.QueryEscape, []string{"sr", "sig", "se", "skn"}},
		{"any order", upperHexEsc(resource), upperHexEsc(resource), "registration", upperHexEsc, []string{"se", "skn", "sig", "sr"}},
		{"signature not url-encoded", resource, resource, "registration", raw, []string{"sr", "sig", "se", "skn"}},
		// Clients whose signed text differs from the sr they send.
		{"sent encoded, signed decoded", upperHexEsc(resource), resource, "registration", upperHexEsc, []string{"sr", "sig", "se", "skn"}},
		{"sent raw, signed encoded upper", resource, upperHexEsc(resource), "registration", upperHexEsc, []string{"sr", "sig", "se", "skn"}},
		{"sent raw, signed encoded lower", resource, lowerHexEsc(resource), "registration", upperHexEsc, []string{"sr", "sig", "se", "skn"}},
		{"sent lower hex, signed upper hex", lowerHexEsc(resource), upperHexEsc(resource), "registration", upperHexEsc, []string{"sr", "sig", "se", "skn"}},
		{"sent mixed case, signed lower-case", upperHexEsc(resource), strings.ToLower(upperHexEsc(resource)), "registration", upperHexEsc, []string{"sr", "sig", "se", "skn"}},
		{"sent encoded, signed decoded lower-case", upperHexEsc(resource), strings.ToLower(resource), "registration", upperHexEsc, []string{"sr", "sig", "se", "skn"}},
		{"docs: lower-case encoding of lower-case resource", resource, lowerHexEsc(strings.ToLower(resource)), "registration", upperHexEsc, []string{"sr", "sig", "se", "skn"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := buildToken(key, tc.sentSR, tc.signedSR, se, tc.skn, tc.sigEnc, tc.order)
			tok, err := Parse(s)
			if err != nil {
				t.Fatalf("Parse(%q): %v", s, err)
			}
			dec, err := tok.DecodedResource()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.EqualFold(dec, resource) {
				t.Errorf("DecodedResource = %q, want %q case-insensitively", dec, resource)
			}
			if tok.Resource != tc.sentSR {
				t.Errorf("Resource = %q, want the literal %q", tok.Resource, tc.sentSR)
			}
			if tok.KeyName != tc.skn {
				t.Errorf("KeyName = %q, want %q", tok.KeyName, tc.skn)
			}
			if !tok.VerifyKey(key) {
				t.Error("VerifyKey(correct key) = false")
			}
			wrong := Derive(key, "x")
			if tok.VerifyKey(wrong) {
				t.Error("VerifyKey(wrong key) = true")
			}
			// Tamper with the signature: flip one bit of the decoded bytes.
			sig, _ := base64.StdEncoding.DecodeString(tok.Signature)
			sig[len(sig)/2] ^= 0x10
			tampered := buildTokenWithSig(tc.sentSR, se, base64.StdEncoding.EncodeToString(sig))
			tt, err := Parse(tampered)
			if err != nil {
				t.Fatal(err)
			}
			if tt.VerifyKey(key) {
				t.Error("VerifyKey on a tampered signature = true")
			}
			// Tamper with the expiry: the signature covers se.
			te, err := Parse(buildTokenWithSig(tc.sentSR, "1700003601", tok.Signature))
			if err != nil {
				t.Fatal(err)
			}
			if te.VerifyKey(key) {
				t.Error("VerifyKey with a changed se = true")
			}
		})
	}
}

func buildTokenWithSig(sr, se, sigB64 string) string {
	return Prefix + "sr=" + sr + "&sig=" + url.QueryEscape(sigB64) + "&se=" + se
}

func TestSignRoundTrip(t *testing.T) {
	key := testKey(t)
	exp := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	resources := []string{
		"0ne00000001/registrations/my-device",
		"myhub.example.com/devices/dev+1/modules/$edgeAgent",
		"host/devices/a b(c)!*'~",
		"host/devices/ünïcode",
		"mydps.example.com",
	}
	for _, res := range resources {
		for _, kn := range []string{"", "registration", "provisioningserviceowner"} {
			for name, sign := range map[string]func(string, []byte, string, time.Time) string{"Sign": Sign, "SignRaw": SignRaw} {
				t.Run(name+" "+res+" "+kn, func(t *testing.T) {
					s := sign(res, key, kn, exp)
					if !strings.HasPrefix(s, Prefix) {
						t.Fatalf("token %q lacks the prefix", s)
					}
					tok, err := Parse(s)
					if err != nil {
						t.Fatalf("Parse(%q): %v", s, err)
					}
					dec, err := tok.DecodedResource()
					if err != nil {
						t.Fatal(err)
					}
					want := Token{Resource: tok.Resource, Signature: tok.Signature, Expiry: exp, ExpiryRaw: "1935817689", KeyName: kn}
					if diff := cmp.Diff(want, *tok, cmpopts.IgnoreUnexported(Token{})); diff != "" {
						t.Errorf("token mismatch (-want +got):\n%s", diff)
					}
					if name == "SignRaw" && tok.Resource != res {
						t.Errorf("SignRaw sr = %q, want raw %q", tok.Resource, res)
					}
					if dec != res {
						t.Errorf("DecodedResource = %q, want %q", dec, res)
					}
					if !tok.VerifyKey(key) {
						t.Error("VerifyKey = false")
					}
					// The literal sr is what was signed.
					if got := hmacB64(key, tok.Resource+"\n"+tok.ExpiryRaw); got != tok.Signature {
						t.Errorf("signature %q is not over the literal sr (%q)", tok.Signature, got)
					}
				})
			}
		}
	}
}

func TestCheckExpiry(t *testing.T) {
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tok, err := Parse(Sign("r", []byte("k"), "", exp))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		now     time.Time
		skew    time.Duration
		expired bool
	}{
		{"well before", exp.Add(-time.Hour), 0, false},
		{"exactly at expiry", exp, 0, false},
		{"a second after, no skew", exp.Add(time.Second), 0, true},
		{"within skew", exp.Add(4 * time.Minute), 5 * time.Minute, false},
		{"at the end of the skew", exp.Add(5 * time.Minute), 5 * time.Minute, false},
		{"beyond skew", exp.Add(5*time.Minute + time.Second), 5 * time.Minute, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tok.CheckExpiry(tc.now, tc.skew)
			if !tc.expired {
				if err != nil {
					t.Fatalf("CheckExpiry: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrExpired) {
				t.Fatalf("CheckExpiry = %v, want ErrExpired", err)
			}
			var ee *ExpiredError
			if !errors.As(err, &ee) {
				t.Fatalf("error %T is not *ExpiredError", err)
			}
			if diff := cmp.Diff(ExpiredError{At: exp, Now: tc.now}, *ee); diff != "" {
				t.Errorf("ExpiredError mismatch (-want +got):\n%s", diff)
			}
			for _, want := range []string{"2030-01-01T00:00:00Z", tc.now.Format(time.RFC3339)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
		})
	}
}

func TestVerifyKeyEdgeCases(t *testing.T) {
	key := testKey(t)
	s := Sign("0ne00000001/registrations/d", key, "registration", time.Unix(1700000000, 0))
	tok, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tok  *Token
		key  []byte
		want bool
	}{
		{"parsed token, right key", tok, key, true},
		{"nil key", tok, nil, false},
		{"empty key", tok, []byte{}, false},
		{"prefix of the key", tok, key[:len(key)-1], false},
		{"hand-built token without signature bytes", &Token{Resource: tok.Resource, Signature: tok.Signature, ExpiryRaw: tok.ExpiryRaw}, key, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 2; i++ { // the cached candidates give the same answer twice
				if got := tc.tok.VerifyKey(tc.key); got != tc.want {
					t.Fatalf("VerifyKey (call %d) = %v, want %v", i+1, got, tc.want)
				}
			}
		})
	}
}

func TestEncode(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc-_.~XYZ019", "abc-_.~XYZ019"},
		{"a/b c+d=e", "a%2Fb%20c%2Bd%3De"},
		{"!'()*", "%21%27%28%29%2A"},
		{"é", "%C3%A9"},
		{"", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := Encode(tc.in); got != tc.want {
				t.Errorf("Encode(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if dec, err := url.PathUnescape(Encode(tc.in)); err != nil || dec != tc.in {
				t.Errorf("PathUnescape(Encode(%q)) = %q, %v", tc.in, dec, err)
			}
		})
	}
}

func TestVerifyKeys(t *testing.T) {
	k1, k2, k3 := []byte("key-one"), []byte("key-two"), []byte("key-three")
	const resource = "0ne00000001/registrations/Dev-1"
	se := "1700000000"
	literal := Sign(resource, k2, "registration", time.Unix(1700000000, 0))
	// Signed over the decoded resource while sending it encoded: only an
	// alternative candidate verifies.
	alternative := buildToken(k3, Encode(resource), resource, se, "registration", Encode, []string{"sr", "sig", "se", "skn"})
	tests := []struct {
		name  string
		token string
		keys  [][]byte
		want  int
	}{
		{"literal, second key", literal, [][]byte{k1, k2, k3}, 1},
		{"literal, empty keys skipped", literal, [][]byte{nil, {}, k2}, 2},
		{"literal, duplicate keys give the first", literal, [][]byte{k1, k2, k2}, 1},
		{"alternative candidate", alternative, [][]byte{k1, k2, k3}, 2},
		{"no key", literal, nil, -1},
		{"no matching key", literal, [][]byte{k1, k3}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Parse(tc.token)
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.VerifyKeys(tc.keys); got != tc.want {
				t.Errorf("VerifyKeys = %d, want %d", got, tc.want)
			}
			for i, k := range tc.keys {
				if want := i == tc.want || (tc.want >= 0 && string(k) == string(tc.keys[tc.want]) && len(k) > 0); tok.VerifyKey(k) != want {
					t.Errorf("VerifyKey(keys[%d]) = %v, want %v", i, !want, want)
				}
			}
		})
	}
}
