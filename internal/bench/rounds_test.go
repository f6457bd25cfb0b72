package bench

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMergeResults(t *testing.T) {
	if mergeResults(nil) != nil {
		t.Error("mergeResults(nil) is not nil")
	}
	one := &Result{Started: 3}
	if mergeResults([]*Result{one}) != one {
		t.Error("mergeResults of one result is not that result")
	}
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	a := &Result{Started: 12, Succeeded: 10, Failed: 2, CPU: time.Second,
		Errors: map[string]int{"timeout": 2}, ErrorSamples: map[string]string{"timeout": "first"},
		Window: Window{Elapsed: time.Second, Succeeded: 8, Failed: 1, Rate: 8, MachineBusy: 0.9, samples: ms(1, 2, 3)}}
	b := &Result{Started: 5, Succeeded: 4, Failed: 1, CPU: 2 * time.Second,
		Errors: map[string]int{"timeout": 1, "http-500": 1}, ErrorSamples: map[string]string{"timeout": "second", "http-500": "boom"},
		Window: Window{Elapsed: 3 * time.Second, Succeeded: 4, Rate: 4.0 / 3, MachineBusy: 0.5, samples: ms(10)}}
	got := mergeResults([]*Result{a, b})
	want := &Result{Started: 17, Succeeded: 14, Failed: 3, CPU: 3 * time.Second,
		Errors: map[string]int{"timeout": 3, "http-500": 1}, ErrorSamples: map[string]string{"timeout": "first", "http-500": "boom"},
		Window: Window{Elapsed: 4 * time.Second, Succeeded: 12, Failed: 1, Rate: 3, MachineBusy: 0.6,
			Latency: Summarize(ms(1, 2, 3, 10)), samples: ms(1, 2, 3, 10)}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Window{})); diff != "" {
		t.Errorf("mergeResults (-want +got):\n%s", diff)
	}
	b.Window.MachineBusy = -1
	if got := mergeResults([]*Result{a, b}); got.Window.MachineBusy != -1 {
		t.Errorf("busy share with one window unmeasured = %v, want -1", got.Window.MachineBusy)
	}
}

// TestMeasureRounds runs measure with a registration op and a ceiling that
// only count: the rounds alternate, each window gets its share of the
// durations, every device index is used once, and the merged result adds
// the rounds up.
func TestMeasureRounds(t *testing.T) {
	const devices = 1 << 20
	r := &runner{out: io.Discard, cfg: Config{Concurrency: 2, Duration: 400 * time.Millisecond, CeilingDuration: 200 * time.Millisecond, Rounds: 4}}
	var (
		mu      sync.Mutex
		seen    = map[int]bool{}
		events  []string
		windows []time.Duration
	)
	op := func(ctx context.Context, i int) error {
		mu.Lock()
		defer mu.Unlock()
		if seen[i] {
			t.Errorf("device %d registered twice", i)
		}
		seen[i] = true
		if n := len(events); n == 0 || events[n-1] != "reg" {
			events = append(events, "reg")
		}
		time.Sleep(time.Millisecond)
		return nil
	}
	ceiling := func(ctx context.Context, load Load) (*Result, error) {
		mu.Lock()
		events = append(events, "ceiling")
		windows = append(windows, load.Duration)
		mu.Unlock()
		load.Ops = MaxOps
		return load.Run(ctx, func(context.Context, int) error { time.Sleep(time.Millisecond); return nil })
	}
	reg, ceil, rounds, err := r.measure(t.Context(), ModeSymmetric, devices, op, ceiling)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"reg", "ceiling", "reg", "ceiling", "reg", "ceiling", "reg", "ceiling"}, events); diff != "" {
		t.Errorf("order of the windows (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]time.Duration{50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}, windows); diff != "" {
		t.Errorf("ceiling windows (-want +got):\n%s", diff)
	}
	if len(rounds) != 4 {
		t.Fatalf("%d rounds, want 4", len(rounds))
	}
	if reg.Started != len(seen) || reg.Succeeded != reg.Started {
		t.Errorf("merged registrations: started %d, succeeded %d; %d distinct devices registered", reg.Started, reg.Succeeded, len(seen))
	}
	for i := range reg.Started {
		if !seen[i] {
			t.Fatalf("device %d skipped: the rounds do not continue where the previous one stopped", i)
		}
	}
	if reg.Window.Elapsed < 390*time.Millisecond || reg.Window.Elapsed > 410*time.Millisecond {
		t.Errorf("joined registration window %v, want 4 × 100ms", reg.Window.Elapsed)
	}
	for _, rd := range rounds {
		if rd.RatePerSecond <= 0 || rd.CeilingRatePerSecond <= 0 || rd.Ratio != rd.RatePerSecond/rd.CeilingRatePerSecond {
			t.Errorf("round %+v: want positive rates and their ratio", rd)
		}
	}
	if ceil == nil || ceil.Window.Succeeded == 0 || ceil.Window.Latency.Count != ceil.Window.Succeeded {
		t.Errorf("merged ceiling %+v: want its windows' successes and one latency sample each", ceil)
	}
}

// TestMeasureStopsWhenDevicesRunOut gives fewer devices than the first
// round can use: one round runs, and its ceiling.
func TestMeasureStopsWhenDevicesRunOut(t *testing.T) {
	r := &runner{out: io.Discard, cfg: Config{Concurrency: 2, Duration: 4 * time.Second, Rounds: 4, CeilingDuration: 400 * time.Millisecond}}
	op := func(context.Context, int) error { return nil }
	ceilings := 0
	ceiling := func(ctx context.Context, load Load) (*Result, error) {
		ceilings++
		load.Ops = 10
		return load.Run(ctx, func(context.Context, int) error { return nil })
	}
	reg, _, rounds, err := r.measure(t.Context(), ModeX509, 50, op, ceiling)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Started != 50 || len(rounds) != 1 || ceilings != 1 {
		t.Errorf("started %d in %d rounds with %d ceilings; want 50 in 1 with 1", reg.Started, len(rounds), ceilings)
	}
}

// TestMeasureSkipCeilings runs one window when the ceilings are skipped.
func TestMeasureSkipCeilings(t *testing.T) {
	r := &runner{out: io.Discard, cfg: Config{Concurrency: 1, Duration: 100 * time.Millisecond, Rounds: 4, SkipCeilings: true}}
	reg, ceil, rounds, err := r.measure(t.Context(), ModeSymmetric, 1<<20, func(context.Context, int) error { time.Sleep(time.Millisecond); return nil }, nil)
	if err != nil || ceil != nil || len(rounds) != 1 || reg.Window.Elapsed < 90*time.Millisecond {
		t.Errorf("measure without ceilings: %v rounds, ceiling %v, window %v, err %v; want one 100ms window", len(rounds), ceil, reg.Window.Elapsed, err)
	}
}

// TestMeasureCanceled returns what ran when the context ends.
func TestMeasureCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	r := &runner{out: io.Discard, cfg: Config{Concurrency: 1, Duration: 10 * time.Second, Rounds: 2}}
	op := func(context.Context, int) error { cancel(); return nil }
	reg, _, _, err := r.measure(ctx, ModeSymmetric, 100, op, nil)
	if !errors.Is(err, context.Canceled) || reg == nil || reg.Succeeded != 1 {
		t.Errorf("measure canceled: %+v, %v; want the one registration and context.Canceled", reg, err)
	}
}
