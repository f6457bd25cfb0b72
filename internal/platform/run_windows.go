package platform

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/sys/windows/svc"
)

// RunService runs run as the Windows service name. Under the service
// control manager it reports StartPending, then Running once run started,
// answers interrogations, and on Stop or Shutdown reports StopPending
// while it cancels run's context and waits for run (30 seconds at most);
// the service stops with service-specific exit code 1 when run failed and
// 2 when it did not stop in time, which the recovery actions treat as a
// failure. Outside the service control manager (a console) an interrupt
// cancels run's context instead. A run that returns after the stop
// request, with nil or with the context's cancellation, stopped cleanly
// and RunService returns nil.
func RunService(name string, run func(ctx context.Context) error, log *slog.Logger) error {
	isService, err := svc.IsWindowsService()
	if err != nil {
		return fmt.Errorf("run service %s: detect the service control manager: %w", name, err)
	}
	if !isService {
		return runUntilSignal(name, run, log, lifecycle{})
	}
	h := &scmHandler{name: name, run: run, log: log, timing: serviceTiming()}
	if err := svc.Run(name, h); err != nil {
		return fmt.Errorf("run service %s: %w", name, err)
	}
	return h.err
}

// scmHandler adapts serveControl to svc.Handler.
type scmHandler struct {
	name   string
	run    func(context.Context) error
	log    *slog.Logger
	timing controlTiming
	err    error // serveControl's result, set when Execute returns
}

// Execute implements svc.Handler.
func (h *scmHandler) Execute(_ []string, requests <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	cmds := make(chan controlCmd)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case r := <-requests:
				select {
				case cmds <- controlCmdOf(r.Cmd):
				case <-quit:
					return
				}
			case <-quit:
				return
			}
		}
	})
	h.err = serveControl(h.name, h.run, h.log, cmds, func(s controlStatus) { status <- svcStatus(s) }, h.timing)
	close(quit)
	wg.Wait()
	code := exitCode(h.err)
	return code != 0, code
}

// controlCmdOf maps a service control request to a controlCmd.
func controlCmdOf(c svc.Cmd) controlCmd {
	switch c {
	case svc.Interrogate:
		return cmdInterrogate
	case svc.Stop:
		return cmdStop
	case svc.Shutdown:
		return cmdShutdown
	}
	return cmdOther
}

// svcStatus maps a controlStatus to the status reported to the service
// control manager.
func svcStatus(s controlStatus) svc.Status {
	st := svc.Status{State: svc.State(s.state), CheckPoint: s.checkPoint, WaitHint: uint32(s.waitHint.Milliseconds())}
	if s.acceptStop {
		st.Accepts = svc.AcceptStop | svc.AcceptShutdown
	}
	return st
}
