package bench

import (
	"math"
	"slices"
	"time"
)

// Summary describes a latency distribution.
type Summary struct {
	Count int
	Min   time.Duration
	Mean  time.Duration
	P50   time.Duration
	P90   time.Duration
	P99   time.Duration
	Max   time.Duration
}

// Summarize sorts samples in place and returns their summary; the zero
// Summary for no samples. Percentiles use the nearest-rank method.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	slices.Sort(samples)
	var sum float64
	for _, s := range samples {
		sum += float64(s)
	}
	return Summary{
		Count: len(samples),
		Min:   samples[0],
		Mean:  time.Duration(math.Round(sum / float64(len(samples)))),
		P50:   Percentile(samples, 50),
		P90:   Percentile(samples, 90),
		P99:   Percentile(samples, 99),
		Max:   samples[len(samples)-1],
	}
}

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of sorted, an
// ascending slice, by the nearest-rank method: the smallest sample such
// that at least p percent of the samples are less than or equal to it.
// p ≤ 0 gives the minimum, p ≥ 100 the maximum; an empty slice gives 0.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case p <= 0 || math.IsNaN(p):
		return sorted[0]
	case p >= 100:
		return sorted[n-1]
	}
	// A small tolerance keeps p·n that is an integer in exact arithmetic
	// (e.g. 0.29·100) from rounding up past its rank.
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	return sorted[min(max(rank, 1), n)-1]
}
