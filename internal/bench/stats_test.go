package bench

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// ms1to returns n samples of 1ms, 2ms, …, n ms.
func ms1to(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single sample, p50", []time.Duration{7}, 50, 7},
		{"single sample, p99", []time.Duration{7}, 99, 7},
		{"100 samples, p0 is the minimum", ms1to(100), 0, time.Millisecond},
		{"100 samples, p1", ms1to(100), 1, time.Millisecond},
		{"100 samples, p29 stays at rank 29", ms1to(100), 29, 29 * time.Millisecond},
		{"100 samples, p50", ms1to(100), 50, 50 * time.Millisecond},
		{"100 samples, p50.1 rounds up", ms1to(100), 50.1, 51 * time.Millisecond},
		{"100 samples, p90", ms1to(100), 90, 90 * time.Millisecond},
		{"100 samples, p99", ms1to(100), 99, 99 * time.Millisecond},
		{"100 samples, p99.5", ms1to(100), 99.5, 100 * time.Millisecond},
		{"100 samples, p100 is the maximum", ms1to(100), 100, 100 * time.Millisecond},
		{"10 samples, p50", ms1to(10), 50, 5 * time.Millisecond},
		{"10 samples, p51", ms1to(10), 51, 6 * time.Millisecond},
		{"10 samples, p99 is the maximum", ms1to(10), 99, 10 * time.Millisecond},
		{"1000 samples, p99", ms1to(1000), 99, 990 * time.Millisecond},
		{"1000 samples, p99.9", ms1to(1000), 99.9, 999 * time.Millisecond},
		{"negative p gives the minimum", ms1to(10), -5, time.Millisecond},
		{"p above 100 gives the maximum", ms1to(10), 250, 10 * time.Millisecond},
		{"NaN gives the minimum", ms1to(10), math.NaN(), time.Millisecond},
		{"ties", []time.Duration{1, 2, 2, 2, 9}, 50, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("Percentile(%d samples, %v) = %v, want %v", len(tc.sorted), tc.p, got, tc.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	shuffled := func(n int) []time.Duration {
		s := ms1to(n)
		// A fixed permutation: reverse, then swap neighbours.
		for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
			s[i], s[j] = s[j], s[i]
		}
		for i := 0; i+1 < len(s); i += 2 {
			s[i], s[i+1] = s[i+1], s[i]
		}
		return s
	}
	tests := []struct {
		name    string
		samples []time.Duration
		want    Summary
	}{
		{"no samples", nil, Summary{}},
		{"one sample", []time.Duration{3 * time.Millisecond}, Summary{
			Count: 1, Min: 3 * time.Millisecond, Mean: 3 * time.Millisecond, P50: 3 * time.Millisecond,
			P90: 3 * time.Millisecond, P99: 3 * time.Millisecond, Max: 3 * time.Millisecond,
		}},
		{"1..100 ms unsorted", shuffled(100), Summary{
			Count: 100, Min: time.Millisecond, Mean: 50500 * time.Microsecond, P50: 50 * time.Millisecond,
			P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond,
		}},
		{"skewed: one outlier moves p99 and max only", append(make([]time.Duration, 99), time.Second), Summary{
			Count: 100, Min: 0, Mean: 10 * time.Millisecond, P50: 0, P90: 0, P99: 0, Max: time.Second,
		}},
		{"mean rounds to the nanosecond", []time.Duration{1, 2}, Summary{Count: 2, Min: 1, Mean: 2, P50: 1, P90: 2, P99: 2, Max: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Summarize(tc.samples)); diff != "" {
				t.Errorf("Summarize (-want +got):\n%s", diff)
			}
		})
	}
}
