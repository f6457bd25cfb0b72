package sas

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func FuzzParse(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	exp := time.Unix(1700000000, 0)
	f.Add(Sign("0ne00000001/registrations/my-device", key, "registration", exp))
	f.Add(SignRaw("0ne00000001/registrations/my-device", key, "registration", exp))
	f.Add(Sign("hub/devices/d+1/modules/$edgeAgent", key, "", exp))
	f.Add("SharedAccessSignature sr=0ne00000001%2fregistrations%2fmy-device&sig=Jjy3m%2f3Nj6B26H512ivncFlckCj7Tq%2fbI46p7sT8enA%3d&se=1700000000&skn=registration")
	f.Add("sr=a&sig=hEm/PbuMRj5eUD7JRpH0mT8JQIJPRExjdXl662d8SVE&se=1&&x")
	f.Add("SharedAccessSignature ")
	f.Add("SharedAccessSignature sr=%zz&sig=%&se=-1&skn=%")
	f.Add("sr=x&sr=y")
	f.Add("se=99999999999999999999&sr=x&sig=AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v does not match ErrMalformed", err)
			}
			return
		}
		if tok.Resource == "" || tok.ExpiryRaw == "" || len(tok.sig) != 32 {
			t.Fatalf("Parse accepted an incomplete token: %+v", tok)
		}
		if _, err := tok.DecodedResource(); err != nil {
			t.Fatalf("DecodedResource of a parsed token: %v", err)
		}
		// Verification is deterministic and an empty key never verifies.
		if a, b := tok.VerifyKey(key), tok.VerifyKey(key); a != b {
			t.Fatalf("VerifyKey gave %v then %v", a, b)
		}
		if tok.VerifyKey(nil) {
			t.Fatal("VerifyKey(nil) = true")
		}
		// Re-signing the same sr and se with a known key must verify with
		// that key and not with another one.
		resigned := Prefix + "sr=" + tok.Resource + "&sig=" + url.QueryEscape(signature(tok.Resource, tok.ExpiryRaw, key)) + "&se=" + tok.ExpiryRaw
		if len(resigned) > MaxTokenLen {
			return
		}
		rt, err := Parse(resigned)
		if err != nil {
			t.Fatalf("Parse(re-signed %q): %v", resigned, err)
		}
		if diff := cmp.Diff(Token{Resource: tok.Resource, Signature: rt.Signature, Expiry: tok.Expiry, ExpiryRaw: tok.ExpiryRaw}, *rt, cmpopts.IgnoreUnexported(Token{})); diff != "" {
			t.Fatalf("re-signed token mismatch (-want +got):\n%s", diff)
		}
		if !rt.VerifyKey(key) {
			t.Fatalf("re-signed token %q does not verify", resigned)
		}
		if rt.VerifyKey([]byte("another key")) {
			t.Fatalf("re-signed token %q verifies with another key", resigned)
		}
		if i := rt.VerifyKeys([][]byte{[]byte("another key"), nil, key}); i != 2 {
			t.Fatalf("VerifyKeys on re-signed token %q = %d, want 2", resigned, i)
		}
	})
}

func FuzzParseConnectionString(f *testing.F) {
	f.Add("HostName=mydps.example.com;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	f.Add("HostName=hub;DeviceId=d;ModuleId=m;SharedAccessKey=YWJj;GatewayHostName=g")
	f.Add(" hostname = h ;; sharedaccesskey=YWJjZA;foo")
	f.Add("HostName=a;hostname=b")
	f.Add("=;=;")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConnectionString(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidConnectionString) {
				t.Fatalf("error %v does not match ErrInvalidConnectionString", err)
			}
			return
		}
		if c.HostName == "" || c.SharedAccessKey == "" {
			t.Fatalf("accepted without HostName or SharedAccessKey: %+v", c)
		}
		again, err := ParseConnectionString(c.String())
		if err != nil {
			t.Fatalf("ParseConnectionString(%q): %v", c.String(), err)
		}
		if diff := cmp.Diff(c, again); diff != "" {
			t.Fatalf("round trip mismatch (-want +got):\n%s", diff)
		}
	})
}
