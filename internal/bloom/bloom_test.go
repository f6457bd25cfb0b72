package bloom

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

func key(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }

func TestNoFalseNegativesAcrossStages(t *testing.T) {
	f := New(MinCapacity)
	const n = 100_000
	for i := range n {
		f.Add(key("device", i))
	}
	st := f.Stats()
	if st.Stages < 5 {
		t.Fatalf("stages = %d after %d keys from a first stage of %d; want the chain to have grown to at least 5", st.Stages, n, MinCapacity)
	}
	// A key that was a false positive when added is not counted.
	if st.Keys > n || st.Keys < n*97/100 {
		t.Fatalf("keys = %d, want between 97%% of %d and %d", st.Keys, n, n)
	}
	for i := range n {
		if !f.MayContain(key("device", i)) {
			t.Fatalf("MayContain(%q) = false after Add", key("device", i))
		}
	}
}

func TestFalsePositiveRateIsBounded(t *testing.T) {
	for _, n := range []int{MinCapacity, 50_000, 300_000} {
		f := New(MinCapacity)
		for i := range n {
			f.Add(key("in", i))
		}
		const probes = 200_000
		hits := 0
		for i := range probes {
			if f.MayContain(key("out", i)) {
				hits++
			}
		}
		if rate := float64(hits) / probes; rate > 0.02 {
			t.Errorf("%d keys: false-positive rate %.4f over %d absent keys, want at most 0.02", n, rate, probes)
		}
	}
}

func TestEmptyFilterContainsNothing(t *testing.T) {
	f := New(0)
	for i := range 10_000 {
		if f.MayContain(key("x", i)) {
			t.Fatalf("empty filter: MayContain(%q) = true", key("x", i))
		}
	}
	if st := f.Stats(); st.Keys != 0 || st.Stages != 1 || st.Bytes <= 0 {
		t.Fatalf("empty filter stats = %+v, want 0 keys, 1 stage, some bytes", st)
	}
}

func TestReAddDoesNotUseCapacity(t *testing.T) {
	f := New(MinCapacity)
	if !f.Add("twin\x00dev-1") {
		t.Fatal("first Add returned false")
	}
	for range 10 * MinCapacity {
		if f.Add("twin\x00dev-1") {
			t.Fatal("Add of a present key returned true")
		}
	}
	if st := f.Stats(); st.Keys != 1 || st.Stages != 1 {
		t.Fatalf("stats after rewriting one key = %+v, want 1 key in 1 stage", st)
	}
}

// TestConcurrentReaders runs readers against a growing filter (run with
// -race): every key whose Add returned before a reader looked must be
// reported, through every stage the writer chains meanwhile.
func TestConcurrentReaders(t *testing.T) {
	f := New(MinCapacity)
	const n = 40_000
	var published atomic.Int64 // keys [0, published) have been added
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 4)
	for r := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := published.Load()
				if p == 0 {
					continue
				}
				k := key("k", int((int64(i)*7919+int64(r))%p))
				if !f.MayContain(k) {
					select {
					case errs <- k:
					default:
					}
					return
				}
			}
		})
	}
	for i := range n {
		f.Add(key("k", i))
		published.Store(int64(i + 1))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for k := range errs {
		t.Errorf("a reader did not find %q after its Add returned", k)
	}
}

func BenchmarkMayContainAbsent(b *testing.B) {
	f := New(MinCapacity)
	for i := range 1_000_000 {
		f.Add(key("registration\x00device", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		f.MayContain(key("registration\x00absent", i&0xffff))
	}
}
