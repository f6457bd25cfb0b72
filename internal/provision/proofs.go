package provision

import (
	"crypto/sha256"
	"strings"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/sas"
)

// proofs remembers, briefly, credentials that just passed attestation, so a
// device's poll of its own operation with the very same credential (the same
// SAS token, or the same certificate chain on its TLS connection) does not
// repeat the attestation it passed a moment ago. A remembered proof never
// outlives the token's expiry or the leaf certificate's, and the cache is
// bounded: the oldest proofs are forgotten first.
type proofs struct {
	mu   sync.Mutex
	ttl  time.Duration
	m    map[[sha256.Size]byte]time.Time
	ring [][sha256.Size]byte
	next int
}

func newProofs(max int, ttl time.Duration) *proofs {
	return &proofs{ttl: ttl, m: make(map[[sha256.Size]byte]time.Time, max), ring: make([][sha256.Size]byte, max)}
}

// proofKey identifies a request's credential for its scope and registration
// ID; ok is false when the request carries none.
func proofKey(req *RegisterRequest) (key [sha256.Size]byte, ok bool) {
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

// remember records that req's credential attested at now.
func (p *proofs) remember(req *RegisterRequest, now time.Time) {
	key, ok := proofKey(req)
	if !ok {
		return
	}
	until := now.Add(p.ttl)
	if len(req.Chain) > 0 {
		if na := req.Chain[0].NotAfter; na.Before(until) {
			until = na
		}
	} else if tok, err := sas.Parse(req.SAS); err == nil && tok.Expiry.Before(until) {
		until = tok.Expiry
	}
	if !until.After(now) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, seen := p.m[key]; !seen {
		delete(p.m, p.ring[p.next]) // forget the oldest (a no-op while filling)
		p.ring[p.next] = key
		p.next = (p.next + 1) % len(p.ring)
	}
	p.m[key] = until
}

// proven reports whether req's credential attested recently and is still valid.
func (p *proofs) proven(req *RegisterRequest, now time.Time) bool {
	key, ok := proofKey(req)
	if !ok {
		return false
	}
	p.mu.Lock()
	until, seen := p.m[key]
	p.mu.Unlock()
	return seen && now.Before(until)
}
