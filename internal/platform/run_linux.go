package platform

import (
	"context"
	"log/slog"
)

// RunService runs run as the service name until it returns or the process
// receives an interrupt or SIGTERM, which cancels run's context. Under
// systemd (Type=notify) it sends Ready once run has started and Stopping
// when the stop begins. A run that returns after the stop signal, with nil
// or with the context's cancellation, stopped cleanly and RunService
// returns nil; any other error is returned wrapped, so the process exits
// non-zero and Restart=on-failure restarts it.
func RunService(name string, run func(ctx context.Context) error, log *slog.Logger) error {
	return runUntilSignal(name, run, log, lifecycle{
		ready:    func() error { return Notify(Ready) },
		stopping: func() error { return Notify(Stopping) },
	})
}
