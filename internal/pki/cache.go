package pki

import (
	"container/list"
	"crypto/sha256"
	"crypto/x509"
	"sync"
)

// ParseCache keeps the result of ParseCertificates for recently seen inputs
// (enrollment and CA certificates are parsed on every attestation), keyed by
// the SHA-256 of the input and bounded to a number of entries, least
// recently used first out. Parse failures are cached too. It is safe for
// concurrent use.
type ParseCache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *parseEntry, most recent first
	m   map[[sha256.Size]byte]*list.Element
}

type parseEntry struct {
	key   [sha256.Size]byte
	certs []*x509.Certificate
	err   error
}

// NewParseCache returns a cache holding at most max inputs (at least 1).
func NewParseCache(max int) *ParseCache {
	if max < 1 {
		max = 1
	}
	return &ParseCache{max: max, ll: list.New(), m: make(map[[sha256.Size]byte]*list.Element)}
}

// Parse returns ParseCertificates(s): at least one certificate, or an error.
// Callers must not modify the returned slice.
func (c *ParseCache) Parse(s string) ([]*x509.Certificate, error) {
	key := sha256.Sum256([]byte(s))
	c.mu.Lock()
	if el, ok := c.m[key]; ok {
		c.ll.MoveToFront(el)
		e := el.Value.(*parseEntry)
		c.mu.Unlock()
		return e.certs, e.err
	}
	c.mu.Unlock()

	certs, err := ParseCertificates([]byte(s))
	if err == nil && len(certs) == 0 {
		err = ErrNoCertificate
	}
	if err != nil {
		certs = nil
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok { // parsed concurrently
		c.ll.MoveToFront(el)
		e := el.Value.(*parseEntry)
		return e.certs, e.err
	}
	c.m[key] = c.ll.PushFront(&parseEntry{key: key, certs: certs, err: err})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*parseEntry).key)
	}
	return certs, err
}

// Len returns the number of cached inputs.
func (c *ParseCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
