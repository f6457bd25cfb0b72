package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Phases of a load run, as reported in Progress.
const (
	PhaseWarmup  = "warmup"
	PhaseMeasure = "measure"
	PhaseDrain   = "drain"
)

// Bounds of a Load.
const (
	// MaxWorkers bounds Load.Concurrency.
	MaxWorkers = 4096
	// MaxOps bounds Load.Ops.
	MaxOps = 1 << 26
	// MaxWindow bounds Load.Warmup and Load.Duration.
	MaxWindow = time.Hour
)

// ErrInvalidLoad is wrapped by the errors of Load.Validate.
var ErrInvalidLoad = errors.New("invalid load")

// Op performs operation i (0 ≤ i < Load.Ops). No index runs twice in a
// run. It returns nil when the operation succeeded.
type Op func(ctx context.Context, i int) error

// Progress is a snapshot of a running load.
type Progress struct {
	// Elapsed is the time since the run started.
	Elapsed time.Duration
	// Phase is PhaseWarmup, PhaseMeasure or PhaseDrain (the measured window
	// has ended and the operations in flight are finishing).
	Phase string
	// Succeeded and Failed count the operations finished so far.
	Succeeded, Failed int
	// Rate is the successes per second since the previous snapshot.
	Rate float64
}

// Load is a closed-loop load: Concurrency workers each run one operation
// after another, with distinct indexes, until Ops operations have been
// started or the measured window ends, whichever comes first. Operations
// finishing during the first Warmup are not measured; the window is the
// following Duration. Operations still in flight when it ends are awaited
// (each Op must bound its own time) and counted in the totals only.
type Load struct {
	Concurrency int
	Ops         int
	Warmup      time.Duration
	Duration    time.Duration
	// Classify names the kind of a failed operation's error (for
	// Result.Errors); nil names every error "error".
	Classify func(error) string
	// Progress, when set, is called every ProgressInterval (default 1s)
	// from one goroutine while the load runs.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// Validate reports the first field out of its bounds.
func (l Load) Validate() error {
	switch {
	case l.Concurrency < 1 || l.Concurrency > MaxWorkers:
		return fmt.Errorf("%w: concurrency %d is outside 1..%d", ErrInvalidLoad, l.Concurrency, MaxWorkers)
	case l.Ops < 1 || l.Ops > MaxOps:
		return fmt.Errorf("%w: operation count %d is outside 1..%d", ErrInvalidLoad, l.Ops, MaxOps)
	case l.Warmup < 0 || l.Warmup > MaxWindow:
		return fmt.Errorf("%w: warm-up %v is outside 0..%v", ErrInvalidLoad, l.Warmup, MaxWindow)
	case l.Duration <= 0 || l.Duration > MaxWindow:
		return fmt.Errorf("%w: duration %v is outside (0, %v]", ErrInvalidLoad, l.Duration, MaxWindow)
	case l.ProgressInterval < 0:
		return fmt.Errorf("%w: progress interval %v is negative", ErrInvalidLoad, l.ProgressInterval)
	}
	return nil
}

// Result is the outcome of a load run.
type Result struct {
	// Started is the number of operations started; Succeeded and Failed
	// add up to it.
	Started, Succeeded, Failed int
	// Errors counts the failed operations by kind; ErrorSamples holds the
	// first error message of each kind.
	Errors       map[string]int
	ErrorSamples map[string]string
	// Window is what happened in the measured window.
	Window Window
	// CPU is the CPU time this process used during the whole run (warm-up
	// and drain included), 0 where the platform does not report it.
	CPU time.Duration
}

// Window is the measured part of a load run.
type Window struct {
	// Elapsed is the length of the window: Load.Duration, or less when the
	// operations ran out (the window then ends when the last one finished).
	Elapsed time.Duration
	// Succeeded and Failed count the operations that finished in the
	// window.
	Succeeded, Failed int
	// Rate is Succeeded per second of Elapsed.
	Rate float64
	// Latency summarises the durations of the successful operations that
	// finished in the window.
	Latency Summary
	// MachineBusy is the share of the whole machine's CPU time (every
	// process, all CPUs) that was busy during the window, from 0 to 1; -1
	// where the platform does not report it. Below about 0.95 the run was
	// not CPU-bound: the operations waited for something else.
	MachineBusy float64
	// samples are the latencies Latency summarises, sorted (mergeResults
	// joins them).
	samples []time.Duration
}

// worker is one worker's private tally, merged after the run.
type worker struct {
	lat       []time.Duration
	succeeded int // all phases
	failed    int
	winOK     int
	winFailed int
	errs      map[string]int
	samples   map[string]string
}

// Run runs op under l. It returns the result even when ctx ends early,
// together with an error wrapping ctx's.
func (l Load) Run(ctx context.Context, op Op) (*Result, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	classify := l.Classify
	if classify == nil {
		classify = func(error) string { return "error" }
	}
	var (
		next      atomic.Int64
		okCount   atomic.Int64
		failCount atomic.Int64
		wg        sync.WaitGroup
		workers   = make([]worker, l.Concurrency)
	)
	cpu0, cpuOK := processCPU()
	start := time.Now()
	winStart := start.Add(l.Warmup)
	deadline := winStart.Add(l.Duration)
	for w := range workers {
		wk := &workers[w]
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(l.Ops) {
					return
				}
				t0 := time.Now()
				if !t0.Before(deadline) {
					next.Add(-1) // not started
					return
				}
				err := op(ctx, int(i))
				t1 := time.Now()
				inWindow := !t1.Before(winStart) && t1.Before(deadline)
				if err == nil {
					okCount.Add(1)
					wk.succeeded++
					if inWindow {
						wk.winOK++
						wk.lat = append(wk.lat, t1.Sub(t0))
					}
					continue
				}
				failCount.Add(1)
				wk.failed++
				if inWindow {
					wk.winFailed++
				}
				kind := classify(err)
				if wk.errs == nil {
					wk.errs, wk.samples = map[string]int{}, map[string]string{}
				}
				wk.errs[kind]++
				if _, ok := wk.samples[kind]; !ok {
					wk.samples[kind] = err.Error()
				}
			}
		})
	}
	done := make(chan struct{})
	machineBusy := make(chan float64, 1)
	go func() { machineBusy <- windowCPU(winStart, deadline, done) }()
	var progressDone sync.WaitGroup
	if l.Progress != nil {
		interval := l.ProgressInterval
		if interval == 0 {
			interval = time.Second
		}
		progressDone.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			last, lastAt := int64(0), start
			for {
				select {
				case <-done:
					return
				case now := <-tick.C:
					ok := okCount.Load()
					phase := PhaseMeasure
					switch {
					case now.Before(winStart):
						phase = PhaseWarmup
					case !now.Before(deadline):
						phase = PhaseDrain
					}
					l.Progress(Progress{
						Elapsed: now.Sub(start), Phase: phase,
						Succeeded: int(ok), Failed: int(failCount.Load()),
						Rate: float64(ok-last) / now.Sub(lastAt).Seconds(),
					})
					last, lastAt = ok, now
				}
			}
		})
	}
	wg.Wait()
	finished := time.Now()
	cpu1, _ := processCPU()
	close(done)
	progressDone.Wait()
	busy := <-machineBusy

	res := &Result{Started: int(min(next.Load(), int64(l.Ops))), Errors: map[string]int{}, ErrorSamples: map[string]string{}}
	if cpuOK {
		res.CPU = cpu1 - cpu0
	}
	var lat []time.Duration
	for _, wk := range workers {
		res.Succeeded += wk.succeeded
		res.Failed += wk.failed
		res.Window.Succeeded += wk.winOK
		res.Window.Failed += wk.winFailed
		lat = append(lat, wk.lat...)
		for k, n := range wk.errs {
			res.Errors[k] += n
		}
		for k, s := range wk.samples {
			if _, ok := res.ErrorSamples[k]; !ok {
				res.ErrorSamples[k] = s
			}
		}
	}
	end := deadline
	if finished.Before(deadline) {
		end = finished
	}
	if end.After(winStart) {
		res.Window.Elapsed = end.Sub(winStart)
		res.Window.Rate = float64(res.Window.Succeeded) / res.Window.Elapsed.Seconds()
	}
	res.Window.Latency = Summarize(lat)
	res.Window.samples = lat
	res.Window.MachineBusy = busy
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("load interrupted: %w", err)
	}
	return res, nil
}

// windowCPU samples the machine's CPU counters when the window opens and
// when it closes (at end, or earlier when done is closed because the
// operations ran out) and returns the busy share in between, or -1.
func windowCPU(start, end time.Time, done <-chan struct{}) float64 {
	t := time.NewTimer(time.Until(start))
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
		return -1 // over before the window opened
	}
	a, ok := machineCPU()
	if !ok {
		return -1
	}
	t.Reset(time.Until(end))
	select {
	case <-t.C:
	case <-done:
	}
	b, ok := machineCPU()
	if !ok {
		return -1
	}
	return busyFraction(a, b)
}
