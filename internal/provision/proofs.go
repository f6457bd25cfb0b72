package provision

import (
	"crypto/sha256"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
//
// The key is the SHA-256 of: the lower-cased scope, 0, the lower-cased
// registration ID, 0, then "sas", 0 and the token, or "x509" and, for each
// certificate, 0 and its DER. It is assembled in one buffer of the right
// size and hashed in one go. (A stack buffer would not stay on the stack:
// with the server's profile-guided optimisation, sha256.Sum256's argument
// escapes.)
func proofKey(req *RegisterRequest) (key [sha256.Size]byte, ok bool) {
	n := len(req.IDScope) + len(req.RegistrationID) + 2
	switch {
	case len(req.Chain) > 0:
		n += len("x509")
		for _, c := range req.Chain {
			n += 1 + len(c.Raw)
		}
	case req.SAS != "":
		n += len("sas\x00") + len(req.SAS)
	default:
		return key, false
	}
	b := appendLower(make([]byte, 0, n), req.IDScope)
	b = append(b, 0)
	b = appendLower(b, req.RegistrationID)
	b = append(b, 0)
	switch {
	case len(req.Chain) > 0:
		b = append(b, "x509"...)
		for _, c := range req.Chain {
			b = append(b, 0)
			b = append(b, c.Raw...)
		}
	default:
		b = append(b, "sas\x00"...)
		b = append(b, req.SAS...)
	}
	return sha256.Sum256(b), true
}

// appendLower appends strings.ToLower(s), lower-casing ASCII in place.
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return append(b, strings.ToLower(s)...)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
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
