package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Service states as the Windows service control manager reports them
// (SERVICE_STATUS.dwCurrentState); svc.State carries the same values.
const (
	winStopped         uint32 = 1
	winStartPending    uint32 = 2
	winStopPending     uint32 = 3
	winRunning         uint32 = 4
	winContinuePending uint32 = 5
	winPausePending    uint32 = 6
	winPaused          uint32 = 7
)

// windowsState maps a service control manager state to a State.
func windowsState(code uint32) State {
	switch code {
	case winStopped:
		return StateStopped
	case winStartPending, winContinuePending:
		return StateStartPending
	case winStopPending:
		return StateStopPending
	case winRunning:
		return StateRunning
	case winPausePending, winPaused:
		return StatePaused
	}
	return StateUnknown
}

// recoveryPolicy is what the service control manager does when the
// service fails: restart after each delay in turn (the last one repeats),
// forget earlier failures after resetPeriod without one, and count a stop
// with a non-zero exit code as a failure, not only a crash.
type recoveryPolicy struct {
	restartDelays      []time.Duration
	resetPeriod        time.Duration
	onNonCrashFailures bool
}

// serviceRecovery is the recovery policy InstallService sets on Windows:
// restart after 1, 2 and then every 4 seconds, as tailscaled's installer
// does, so the runtime never stays down; the failure count resets after a
// minute without failure.
func serviceRecovery() recoveryPolicy {
	return recoveryPolicy{
		restartDelays:      []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second},
		resetPeriod:        60 * time.Second,
		onNonCrashFailures: true,
	}
}

// controlCmd is a request from the service control manager.
type controlCmd int

// The control requests serveControl tells apart.
const (
	cmdOther controlCmd = iota
	cmdInterrogate
	cmdStop
	cmdShutdown
)

func (c controlCmd) String() string {
	switch c {
	case cmdInterrogate:
		return "interrogate"
	case cmdStop:
		return "stop"
	case cmdShutdown:
		return "shutdown"
	}
	return "other"
}

// controlStatus is a status report to the service control manager.
type controlStatus struct {
	state      uint32 // one of the win* states
	acceptStop bool   // whether stop and shutdown requests are accepted
	checkPoint uint32 // progress of a pending state
	waitHint   time.Duration
}

// controlTiming bounds the service's stop.
type controlTiming struct {
	// stopTimeout is how long serveControl waits for run to return after
	// a stop request before giving up on it.
	stopTimeout time.Duration
	// progress is how often a pending stop reports progress; the wait
	// hint is twice that.
	progress time.Duration
}

// serviceTiming is the stop timing of the Windows service: the runtime
// gets 30 seconds to stop its modules, as the systemd unit's
// TimeoutStopSec gives it.
func serviceTiming() controlTiming {
	return controlTiming{stopTimeout: 30 * time.Second, progress: 2 * time.Second}
}

// errStopTimeout reports that run did not return in time after a stop
// request.
var errStopTimeout = errors.New("did not stop in time")

// Service-specific exit codes the Windows service stops with.
const (
	exitRunFailed   uint32 = 1
	exitStopTimeout uint32 = 2
)

// exitCode is the service-specific exit code for serveControl's result.
func exitCode(err error) uint32 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errStopTimeout):
		return exitStopTimeout
	}
	return exitRunFailed
}

// serveControl is the body of a Windows service: it reports StartPending,
// starts run, reports Running (accepting stop and shutdown), answers
// interrogations with the current status, and on stop or shutdown reports
// StopPending with progress while it cancels run's context and waits for
// run to return, at most timing.stopTimeout. It returns nil when run
// stopped cleanly, run's error, or an error wrapping errStopTimeout. The
// caller reports Stopped with exitCode of the result.
func serveControl(name string, run func(context.Context) error, log *slog.Logger, cmds <-chan controlCmd, report func(controlStatus), timing controlTiming) error {
	report(controlStatus{state: winStartPending, waitHint: 2 * timing.progress})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	current := controlStatus{state: winRunning, acceptStop: true}
	report(current)
	log.Info("service running", "service", name)

	progress := time.NewTicker(timing.progress)
	progress.Stop()
	defer progress.Stop()
	deadline := time.NewTimer(timing.stopTimeout)
	deadline.Stop()
	defer deadline.Stop()
	var progressC <-chan time.Time
	var deadlineC <-chan time.Time
	for {
		select {
		case c := <-cmds:
			switch c {
			case cmdInterrogate:
				report(current)
			case cmdStop, cmdShutdown:
				if current.state == winStopPending {
					continue
				}
				log.Info("service stopping", "service", name, "request", c.String())
				current = controlStatus{state: winStopPending, checkPoint: 1, waitHint: 2 * timing.progress}
				report(current)
				cancel()
				progress.Reset(timing.progress)
				deadline.Reset(timing.stopTimeout)
				progressC, deadlineC = progress.C, deadline.C
			default:
				log.Debug("service control request ignored", "service", name, "request", c.String())
			}
		case <-progressC:
			current.checkPoint++
			report(current)
		case <-deadlineC:
			err := fmt.Errorf("run service %s: %w: still running %s after the stop request", name, errStopTimeout, timing.stopTimeout)
			log.Error("service stop timed out", "service", name, "timeout", timing.stopTimeout)
			return err
		case err := <-done:
			if current.state != winStopPending {
				current = controlStatus{state: winStopPending, checkPoint: 1, waitHint: 2 * timing.progress}
				report(current)
			}
			return finish(ctx, name, err, log)
		}
	}
}
