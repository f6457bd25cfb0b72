package provision

import (
	"crypto/x509"
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
