package provision

import (
	"crypto/sha256"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/sas"
)

func TestProofsRememberAndExpire(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	key := []byte("0123456789abcdef0123456789abcdef")
	tok := sas.Sign("0ne00000001/registrations/dev-1", key, "registration", now.Add(30*time.Second))
	req := &RegisterRequest{IDScope: "0ne00000001", RegistrationID: "dev-1", SAS: tok}
	p := newProofs(4, 2*time.Minute)
	if p.proven(req, now) {
		t.Fatal("proven before any proof")
	}
	p.remember(req, now)
	if !p.proven(req, now.Add(10*time.Second)) {
		t.Fatal("a remembered proof is not proven")
	}
	// the token expires before the cache TTL: the proof ends with it
	if p.proven(req, now.Add(31*time.Second)) {
		t.Fatal("a proof outlived its token")
	}
	// another registration ID, scope or token is a different credential
	for _, other := range []*RegisterRequest{
		{IDScope: "0ne00000001", RegistrationID: "dev-2", SAS: tok},
		{IDScope: "0ne00000002", RegistrationID: "dev-1", SAS: tok},
		{IDScope: "0ne00000001", RegistrationID: "dev-1", SAS: tok + "x"},
		{IDScope: "0ne00000001", RegistrationID: "dev-1"},
	} {
		if p.proven(other, now) {
			t.Errorf("%+v is proven by another credential's proof", other)
		}
	}
	// case of the scope and registration ID does not matter
	if !p.proven(&RegisterRequest{IDScope: "0NE00000001", RegistrationID: "DEV-1", SAS: tok}, now) {
		t.Error("the same credential with other letter case is not proven")
	}
}

func TestProofsCertificateChainAndBound(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	leaf := &x509.Certificate{Raw: []byte("leaf-der"), NotAfter: now.Add(time.Minute)}
	req := &RegisterRequest{IDScope: "s", RegistrationID: "d", Chain: []*x509.Certificate{leaf, {Raw: []byte("int-der")}}}
	p := newProofs(2, 2*time.Minute)
	p.remember(req, now)
	if !p.proven(req, now) || p.proven(req, now.Add(61*time.Second)) {
		t.Fatal("a chain proof must hold until the leaf expires, not after")
	}
	otherChain := &RegisterRequest{IDScope: "s", RegistrationID: "d", Chain: []*x509.Certificate{leaf}}
	if p.proven(otherChain, now) {
		t.Fatal("a different chain is proven")
	}
	// the cache keeps at most two proofs: the oldest goes first
	a := &RegisterRequest{IDScope: "s", RegistrationID: "a", SAS: "t-a"}
	b := &RegisterRequest{IDScope: "s", RegistrationID: "b", SAS: "t-b"}
	p.remember(a, now) // unparseable tokens are kept for the TTL only
	p.remember(b, now)
	if p.proven(req, now) || !p.proven(a, now) || !p.proven(b, now) || len(p.m) != 2 {
		t.Fatalf("bound not kept: %d entries", len(p.m))
	}
}

// TestProofKeyIsTheStreamedHash pins proofKey, which assembles its input in
// a buffer, to the hash it has always been: the lower-cased scope and
// registration ID and the credential, streamed into SHA-256.
func TestProofKeyIsTheStreamedHash(t *testing.T) {
	streamed := func(req *RegisterRequest) (key [sha256.Size]byte, ok bool) {
		h := sha256.New()
		h.Write([]byte(strings.ToLower(req.IDScope)))
		h.Write([]byte{0})
		h.Write([]byte(strings.ToLower(req.RegistrationID)))
		h.Write([]byte{0})
		switch {
		case len(req.Chain) > 0:
			h.Write([]byte("x509"))
			for _, c := range req.Chain {
				h.Write([]byte{0})
				h.Write(c.Raw)
			}
		case req.SAS != "":
			h.Write([]byte("sas\x00"))
			h.Write([]byte(req.SAS))
		default:
			return key, false
		}
		copy(key[:], h.Sum(nil))
		return key, true
	}
	long := strings.Repeat("x", 700)
	chain := []*x509.Certificate{{Raw: []byte(long)}, {Raw: []byte{1, 2, 3}}}
	for _, req := range []RegisterRequest{
		{IDScope: "0ne00ABC123", RegistrationID: "Device-01", SAS: "SharedAccessSignature sr=a&sig=b&se=1"},
		{IDScope: "0ne00abc123", RegistrationID: "device-01", SAS: "SharedAccessSignature sr=a&sig=b&se=1"},
		{IDScope: "0NE", RegistrationID: "DÉVICE-Σ", SAS: "tok"},
		{IDScope: "", RegistrationID: "", SAS: long},
		{IDScope: "scope", RegistrationID: "dev", Chain: chain, SAS: "ignored"},
		{IDScope: "scope", RegistrationID: "dev"},
	} {
		got, gotOK := proofKey(&req)
		want, wantOK := streamed(&req)
		if got != want || gotOK != wantOK {
			t.Errorf("%+v: proofKey %x %v, want %x %v", req, got, gotOK, want, wantOK)
		}
	}
}
