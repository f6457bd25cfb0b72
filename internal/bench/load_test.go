package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// errOdd and errTens are the errors of the scripted operations.
var (
	errOdd  = errors.New("odd failure")
	errTens = errors.New("tens failure")
)

func kindOf(err error) string {
	switch {
	case errors.Is(err, errOdd):
		return "odd"
	case errors.Is(err, errTens):
		return "tens"
	}
	return "other"
}

// TestLoadRunCounts runs every operation of a load whose window outlasts
// them: each index runs once, and every outcome is counted in the totals
// and in the window.
func TestLoadRunCounts(t *testing.T) {
	tests := []struct {
		name        string
		ops, conc   int
		fail        func(i int) error
		wantOK      int
		wantErrors  map[string]int
		wantSamples map[string]string
	}{
		{"all succeed, one worker", 25, 1, func(int) error { return nil }, 25, map[string]int{}, map[string]string{}},
		{"all succeed, more workers than operations", 5, 16, func(int) error { return nil }, 5, map[string]int{}, map[string]string{}},
		{
			"failures by kind", 100, 4,
			func(i int) error {
				switch {
				case i%10 == 0:
					return fmt.Errorf("op %d: %w", 0, errTens)
				case i%10 == 3:
					return fmt.Errorf("op %d: %w", 3, errOdd)
				}
				return nil
			},
			80, map[string]int{"tens": 10, "odd": 10},
			map[string]string{"tens": "op 0: tens failure", "odd": "op 3: odd failure"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu   sync.Mutex
				seen = map[int]int{}
			)
			l := Load{Concurrency: tc.conc, Ops: tc.ops, Duration: time.Hour, Classify: kindOf}
			res, err := l.Run(context.Background(), func(_ context.Context, i int) error {
				mu.Lock()
				seen[i]++
				mu.Unlock()
				return tc.fail(i)
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			for i := range tc.ops {
				if seen[i] != 1 {
					t.Errorf("operation %d ran %d times, want once", i, seen[i])
				}
			}
			if len(seen) != tc.ops {
				t.Errorf("%d distinct operations ran, want %d", len(seen), tc.ops)
			}
			type counts struct {
				Started, Succeeded, Failed, WinOK, WinFailed, Latencies int
				Errors                                                  map[string]int
				Samples                                                 map[string]string
			}
			got := counts{res.Started, res.Succeeded, res.Failed, res.Window.Succeeded, res.Window.Failed, res.Window.Latency.Count, res.Errors, res.ErrorSamples}
			failed := tc.ops - tc.wantOK
			want := counts{tc.ops, tc.wantOK, failed, tc.wantOK, failed, tc.wantOK, tc.wantErrors, tc.wantSamples}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
			if res.Window.Elapsed <= 0 || res.Window.Elapsed >= time.Hour {
				t.Errorf("window elapsed %v: want the time until the last operation finished", res.Window.Elapsed)
			}
			if res.Window.Rate <= 0 {
				t.Errorf("window rate %v, want > 0", res.Window.Rate)
			}
		})
	}
}

// TestLoadRunWindow checks that the window ends the load: operations stop
// being started at its end, the ones in flight finish and count in the
// totals, and the window's length is the configured duration.
func TestLoadRunWindow(t *testing.T) {
	l := Load{Concurrency: 3, Ops: MaxOps, Warmup: 10 * time.Millisecond, Duration: 30 * time.Millisecond}
	var (
		mu      sync.Mutex
		started int
	)
	res, err := l.Run(context.Background(), func(ctx context.Context, i int) error {
		mu.Lock()
		started++
		mu.Unlock()
		if i < 3 {
			time.Sleep(100 * time.Millisecond) // the first operations outlast the window
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Started != started || res.Succeeded != started || res.Failed != 0 {
		t.Errorf("started %d, succeeded %d, failed %d; want %d, %d, 0", res.Started, res.Succeeded, res.Failed, started, started)
	}
	if res.Started >= MaxOps {
		t.Errorf("started %d operations: the window did not stop the load", res.Started)
	}
	if res.Window.Elapsed != l.Duration {
		t.Errorf("window elapsed %v, want the duration %v", res.Window.Elapsed, l.Duration)
	}
	if res.Window.Succeeded > res.Succeeded || res.Window.Latency.Count != res.Window.Succeeded {
		t.Errorf("window %+v is inconsistent with %d successes", res.Window, res.Succeeded)
	}
}

// TestLoadRunMachineBusy: on Linux the window reports the machine's CPU
// use, and operations that keep a CPU busy show up in it.
func TestLoadRunMachineBusy(t *testing.T) {
	if _, ok := machineCPU(); !ok {
		t.Skip("this platform does not report machine-wide CPU time")
	}
	l := Load{Concurrency: 2, Ops: MaxOps, Warmup: 10 * time.Millisecond, Duration: 300 * time.Millisecond}
	res, err := l.Run(context.Background(), func(context.Context, int) error {
		for end := time.Now().Add(time.Millisecond); time.Now().Before(end); {
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if b := res.Window.MachineBusy; b <= 0 || b > 1 {
		t.Fatalf("machine busy %v in a window of spinning operations, want in (0, 1]", b)
	}
}

// TestLoadRunOpsEndDuringWarmup: when the operations run out before the
// window opens, the window is empty.
func TestLoadRunOpsEndDuringWarmup(t *testing.T) {
	l := Load{Concurrency: 2, Ops: 4, Warmup: time.Hour, Duration: time.Hour}
	res, err := l.Run(context.Background(), func(context.Context, int) error { return nil })
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if diff := cmp.Diff(Window{MachineBusy: -1}, res.Window, cmp.AllowUnexported(Window{})); diff != "" {
		t.Errorf("window (-want +got):\n%s", diff)
	}
	if res.Succeeded != 4 {
		t.Errorf("succeeded %d, want 4", res.Succeeded)
	}
}

// TestLoadRunCanceled: cancelling the context stops the load and returns
// the partial result with the context's error.
func TestLoadRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := Load{Concurrency: 2, Ops: MaxOps, Duration: time.Hour, Classify: ErrorKind}
	res, err := l.Run(ctx, func(ctx context.Context, i int) error {
		if i < 10 {
			return nil // the operations before the cancellation succeed, whichever worker runs them when
		}
		if i == 10 {
			cancel()
		}
		return ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error %v, want context.Canceled", err)
	}
	if res == nil {
		t.Fatal("no partial result")
	}
	if res.Started >= MaxOps || res.Succeeded < 10 || res.Succeeded+res.Failed != res.Started {
		t.Errorf("partial result %+v: want at least the 10 operations before the cancellation, and no more than started", res)
	}
	if res.Failed > 0 && res.Errors[KindCanceled] != res.Failed {
		t.Errorf("errors %v, want every failure classified %s", res.Errors, KindCanceled)
	}
}

// TestLoadRunProgress: the progress callback sees consistent snapshots.
func TestLoadRunProgress(t *testing.T) {
	var (
		mu    sync.Mutex
		snaps []Progress
	)
	called := make(chan struct{})
	var once sync.Once
	l := Load{
		Concurrency: 1, Ops: 3, Duration: time.Hour, ProgressInterval: time.Millisecond,
		Progress: func(p Progress) {
			mu.Lock()
			snaps = append(snaps, p)
			mu.Unlock()
			once.Do(func() { close(called) })
		},
	}
	_, err := l.Run(context.Background(), func(_ context.Context, i int) error {
		if i == 1 { // hold the load until a snapshot was taken
			select {
			case <-called:
			case <-time.After(10 * time.Second):
				return errors.New("no progress snapshot within 10s")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(snaps) == 0 {
		t.Fatal("no progress snapshot")
	}
	for _, p := range snaps {
		if p.Phase != PhaseMeasure || p.Succeeded < 1 || p.Succeeded > 3 || p.Failed != 0 || p.Elapsed <= 0 || p.Rate < 0 {
			t.Errorf("snapshot %+v: want phase %s, 1..3 successes, no failure", p, PhaseMeasure)
		}
	}
}

func TestLoadValidate(t *testing.T) {
	ok := Load{Concurrency: 1, Ops: 1, Duration: time.Second}
	tests := []struct {
		name string
		mod  func(*Load)
		want string // "" for valid
	}{
		{"valid", func(*Load) {}, ""},
		{"zero concurrency", func(l *Load) { l.Concurrency = 0 }, "concurrency 0"},
		{"too many workers", func(l *Load) { l.Concurrency = MaxWorkers + 1 }, "concurrency 4097"},
		{"no operations", func(l *Load) { l.Ops = 0 }, "operation count 0"},
		{"too many operations", func(l *Load) { l.Ops = MaxOps + 1 }, "operation count"},
		{"negative warm-up", func(l *Load) { l.Warmup = -time.Second }, "warm-up -1s"},
		{"zero duration", func(l *Load) { l.Duration = 0 }, "duration 0s"},
		{"too long", func(l *Load) { l.Duration = 2 * time.Hour }, "duration 2h0m0s"},
		{"negative progress interval", func(l *Load) { l.ProgressInterval = -1 }, "progress interval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := ok
			tc.mod(&l)
			err := l.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !errors.Is(err, ErrInvalidLoad) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want ErrInvalidLoad naming %q", err, tc.want)
			}
			if tc.want != "" {
				if _, err := l.Run(context.Background(), func(context.Context, int) error { return nil }); err == nil {
					t.Error("Run accepted the invalid load")
				}
			}
		})
	}
}
