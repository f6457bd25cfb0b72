package platform

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWindowsState(t *testing.T) {
	cases := []struct {
		code uint32
		want State
	}{
		{winStopped, StateStopped},
		{winStartPending, StateStartPending},
		{winStopPending, StateStopPending},
		{winRunning, StateRunning},
		{winContinuePending, StateStartPending},
		{winPausePending, StatePaused},
		{winPaused, StatePaused},
		{0, StateUnknown},
		{8, StateUnknown},
	}
	for _, tc := range cases {
		if got := windowsState(tc.code); got != tc.want {
			t.Errorf("windowsState(%d) = %q, want %q", tc.code, got, tc.want)
		}
	}
}

func TestServiceRecovery(t *testing.T) {
	got := serviceRecovery()
	want := recoveryPolicy{
		restartDelays:      []time.Duration{time.Second, 2 * time.Second, 4 * time.Second},
		resetPeriod:        time.Minute,
		onNonCrashFailures: true,
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(recoveryPolicy{})); diff != "" {
		t.Errorf("serviceRecovery() (-want +got):\n%s", diff)
	}
	// The reset period is handed to the service manager in whole seconds.
	if got.resetPeriod%time.Second != 0 {
		t.Errorf("reset period %v is not whole seconds", got.resetPeriod)
	}
}

func TestExitCode(t *testing.T) {
	cases := []struct {
		err  error
		want uint32
	}{
		{nil, 0},
		{errors.New("run failed"), exitRunFailed},
		{errStopTimeout, exitStopTimeout},
	}
	for _, tc := range cases {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// scmRecorder collects what serveControl reports.
type scmRecorder struct {
	mu       sync.Mutex
	statuses []controlStatus
}

func (r *scmRecorder) report(s controlStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses = append(r.statuses, s)
}

func (r *scmRecorder) got() []controlStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]controlStatus(nil), r.statuses...)
}

func TestServeControl(t *testing.T) {
	// The timeout is not a multiple of the progress period, so no tick
	// races the deadline.
	timing := controlTiming{stopTimeout: 31 * time.Second, progress: 2 * time.Second}
	startPending := controlStatus{state: winStartPending, waitHint: 4 * time.Second}
	running := controlStatus{state: winRunning, acceptStop: true}
	stopPending := func(cp uint32) controlStatus {
		return controlStatus{state: winStopPending, checkPoint: cp, waitHint: 4 * time.Second}
	}
	errBoom := errors.New("boom")
	cases := []struct {
		name string
		// run is the service body; release unblocks a run that ignores
		// its context.
		run func(ctx context.Context, release <-chan struct{}) error
		// cmds are sent once the service runs, each after the previous
		// one was handled.
		cmds         []controlCmd
		wantStatuses []controlStatus
		wantErr      error
		wantExit     uint32
		wantLog      []string
	}{
		{
			name:         "stop cancels the context",
			run:          func(ctx context.Context, _ <-chan struct{}) error { <-ctx.Done(); return ctx.Err() },
			cmds:         []controlCmd{cmdStop},
			wantStatuses: []controlStatus{startPending, running, stopPending(1)},
			wantLog:      []string{"service running", "service stopping", "service stopped"},
		},
		{
			name:         "shutdown cancels the context",
			run:          func(ctx context.Context, _ <-chan struct{}) error { <-ctx.Done(); return nil },
			cmds:         []controlCmd{cmdShutdown},
			wantStatuses: []controlStatus{startPending, running, stopPending(1)},
			wantLog:      []string{"service running", "service stopping", "service stopped"},
		},
		{
			name:         "interrogate reports the current status; other requests are ignored",
			run:          func(ctx context.Context, _ <-chan struct{}) error { <-ctx.Done(); return ctx.Err() },
			cmds:         []controlCmd{cmdInterrogate, cmdOther, cmdStop},
			wantStatuses: []controlStatus{startPending, running, running, stopPending(1)},
			wantLog:      []string{"service running", "service control request ignored", "service stopping", "service stopped"},
		},
		{
			name: "a slow stop reports progress",
			run: func(ctx context.Context, _ <-chan struct{}) error {
				<-ctx.Done()
				time.Sleep(5 * time.Second)
				return ctx.Err()
			},
			cmds:         []controlCmd{cmdStop},
			wantStatuses: []controlStatus{startPending, running, stopPending(1), stopPending(2), stopPending(3)},
			wantLog:      []string{"service running", "service stopping", "service stopped"},
		},
		{
			name: "a repeated stop is not reported again",
			run: func(ctx context.Context, _ <-chan struct{}) error {
				<-ctx.Done()
				time.Sleep(time.Second)
				return nil
			},
			cmds:         []controlCmd{cmdStop, cmdShutdown},
			wantStatuses: []controlStatus{startPending, running, stopPending(1)},
			wantLog:      []string{"service running", "service stopping", "service stopped"},
		},
		{
			name:         "run fails on its own",
			run:          func(context.Context, <-chan struct{}) error { return errBoom },
			wantStatuses: []controlStatus{startPending, running, stopPending(1)},
			wantErr:      errBoom,
			wantExit:     exitRunFailed,
			wantLog:      []string{"service running", "service failed"},
		},
		{
			name: "run ignores the stop",
			run: func(_ context.Context, release <-chan struct{}) error {
				<-release
				return nil
			},
			cmds: []controlCmd{cmdStop},
			wantStatuses: func() []controlStatus {
				s := []controlStatus{startPending, running}
				for cp := uint32(1); cp <= 16; cp++ { // progress every 2 s until 31 s
					s = append(s, stopPending(cp))
				}
				return s
			}(),
			wantErr:  errStopTimeout,
			wantExit: exitStopTimeout,
			wantLog:  []string{"service running", "service stopping", "service stop timed out"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rec scmRecorder
				var logBuf bytes.Buffer
				log := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
				cmds := make(chan controlCmd)
				release := make(chan struct{})
				result := make(chan error, 1)
				go func() {
					result <- serveControl("iotedge", func(ctx context.Context) error { return tc.run(ctx, release) }, log, cmds, rec.report, timing)
				}()
				synctest.Wait()
				for _, c := range tc.cmds {
					cmds <- c
					synctest.Wait()
				}
				err := <-result
				close(release)
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("serveControl = %v, want %v", err, tc.wantErr)
				}
				if got := exitCode(err); got != tc.wantExit {
					t.Errorf("exit code = %d, want %d", got, tc.wantExit)
				}
				if diff := cmp.Diff(tc.wantStatuses, rec.got(), cmp.AllowUnexported(controlStatus{})); diff != "" {
					t.Errorf("reported statuses (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tc.wantLog, logMessages(t, logBuf.String())); diff != "" {
					t.Errorf("log messages (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestServiceTiming(t *testing.T) {
	want := controlTiming{stopTimeout: 30 * time.Second, progress: 2 * time.Second}
	if diff := cmp.Diff(want, serviceTiming(), cmp.AllowUnexported(controlTiming{})); diff != "" {
		t.Errorf("serviceTiming() (-want +got):\n%s", diff)
	}
}
