// Package bloom owns a scalable Bloom filter: a set of strings that answers
// "certainly absent" or "maybe present", grows as keys are added, and lets
// many goroutines query it while one adds, without locks on the query path.
//
// It never forgets a key and never answers "absent" for a key whose Add has
// returned; a "maybe" for a key never added happens with a small bounded
// probability (about 1% in all, whatever the number of keys). Keys cannot be
// removed. The store uses it to answer lookups of records that do not exist
// without reading the database.
package bloom

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
)

// MinCapacity is the smallest first-stage capacity New accepts.
const MinCapacity = 1024

// Filter is a scalable Bloom filter (Almeida et al., 2007): a chain of
// stages, each a classic Bloom filter sized for a number of keys. When the
// last stage holds its capacity, a new one twice as large and with a lower
// false-positive rate is chained, so the combined rate stays bounded.
//
// MayContain may run concurrently with everything; Add calls are serialised
// internally. The zero value is not usable; call New.
type Filter struct {
	seed1, seed2 maphash.Seed

	mu     sync.Mutex               // serialises Add
	stages atomic.Pointer[[]*stage] // replaced, never mutated, when a stage is chained
	keys   atomic.Int64             // keys added (not counting ones already maybe present)
	bytes  atomic.Int64             // memory held by the bit arrays
}

// stage is one Bloom filter of the chain.
type stage struct {
	words    []atomic.Uint64
	mask     uint64 // number of bits - 1 (a power of two - 1)
	k        uint64 // probes per key
	capacity int64  // keys it takes before the next stage is chained
	n        int64  // keys added to it; guarded by Filter.mu
}

// New returns an empty filter whose first stage takes capacity keys
// (at least MinCapacity).
func New(capacity int) *Filter {
	f := &Filter{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed()}
	first := newStage(max(int64(capacity), MinCapacity), 0)
	f.bytes.Store(int64(len(first.words)) * 8)
	f.stages.Store(&[]*stage{first})
	return f
}

// Bits per key of stage i: 10 for the first stage (about 0.8% false
// positives), then 2 more per stage, each halving its rate or better, so
// that the chain's combined rate stays under about 1.5%.
func bitsPerKey(i int) float64 { return math.Min(10+2*float64(i), 24) }

func newStage(capacity int64, i int) *stage {
	b := bitsPerKey(i)
	bits := uint64(1) << 6
	for float64(bits) < float64(capacity)*b {
		bits <<= 1
	}
	return &stage{
		words:    make([]atomic.Uint64, bits/64),
		mask:     bits - 1,
		k:        uint64(math.Max(1, math.Round(b*math.Ln2))),
		capacity: capacity,
	}
}

// hashes returns the two hashes of key that derive its probe positions
// (Kirsch and Mitzenmacher); the second is odd, so that the probes of one
// key cycle through distinct bits of a power-of-two-sized stage.
func (f *Filter) hashes(key string) (uint64, uint64) {
	return maphash.String(f.seed1, key), maphash.String(f.seed2, key) | 1
}

func (s *stage) has(h1, h2 uint64) bool {
	for i := uint64(0); i < s.k; i++ {
		bit := (h1 + i*h2) & s.mask
		if s.words[bit>>6].Load()&(1<<(bit&63)) == 0 {
			return false
		}
	}
	return true
}

func (s *stage) set(h1, h2 uint64) {
	for i := uint64(0); i < s.k; i++ {
		bit := (h1 + i*h2) & s.mask
		s.words[bit>>6].Or(1 << (bit & 63))
	}
}

// MayContain reports whether key may have been added. False means it
// certainly was not: no Add(key) has returned before this call began.
func (f *Filter) MayContain(key string) bool {
	h1, h2 := f.hashes(key)
	for _, s := range *f.stages.Load() {
		if s.has(h1, h2) {
			return true
		}
	}
	return false
}

// Add adds key. Once it returns, MayContain(key) is true in every
// goroutine that synchronises with the caller afterwards (and in any call
// that begins after it returns). A key that may already be present is not
// added again, so that rewriting existing keys does not use up capacity.
// It reports whether the key was added.
func (f *Filter) Add(key string) bool {
	h1, h2 := f.hashes(key)
	f.mu.Lock()
	defer f.mu.Unlock()
	stages := *f.stages.Load()
	for _, s := range stages {
		if s.has(h1, h2) {
			return false
		}
	}
	last := stages[len(stages)-1]
	if last.n >= last.capacity {
		last = newStage(last.capacity*2, len(stages))
		next := make([]*stage, len(stages), len(stages)+1)
		copy(next, stages)
		next = append(next, last)
		f.bytes.Add(int64(len(last.words)) * 8)
		f.stages.Store(&next)
	}
	last.set(h1, h2)
	last.n++
	f.keys.Add(1)
	return true
}

// Stats describe a filter's size.
type Stats struct {
	// Keys is the number of keys added (a key that may already have been
	// present when it was added is not counted).
	Keys int64
	// Stages is the number of chained stages.
	Stages int
	// Bytes is the memory held by the bit arrays.
	Bytes int64
}

// Stats returns the filter's current size.
func (f *Filter) Stats() Stats {
	return Stats{Keys: f.keys.Load(), Stages: len(*f.stages.Load()), Bytes: f.bytes.Load()}
}
