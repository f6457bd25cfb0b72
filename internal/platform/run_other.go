//go:build !linux && !windows

package platform

import (
	"context"
	"log/slog"
)

// RunService runs run as the service name until it returns or the process
// receives an interrupt or SIGTERM, which cancels run's context. These
// systems have no service manager integration. A run that returns after
// the stop signal, with nil or with the context's cancellation, stopped
// cleanly and RunService returns nil; any other error is returned wrapped.
func RunService(name string, run func(ctx context.Context) error, log *slog.Logger) error {
	return runUntilSignal(name, run, log, lifecycle{})
}
