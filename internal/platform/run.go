package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// stopSignals returns the signals that stop a service run outside a
// service manager's control channel: Ctrl-C, and SIGTERM from systemd or
// kill.
func stopSignals() []os.Signal { return []os.Signal{os.Interrupt, syscall.SIGTERM} }

// lifecycle hooks runUntilSignal calls around run; the Linux build
// notifies systemd from them.
type lifecycle struct {
	ready    func() error
	stopping func() error
}

// runUntilSignal runs run with a context that an interrupt or SIGTERM
// cancels. It calls hooks.ready once run has been started and
// hooks.stopping when the stop begins: on the signal, or when run returns
// first. A run that returns after the signal, with nil or with the
// context's cancellation, stopped cleanly and yields nil.
func runUntilSignal(name string, run func(context.Context) error, log *slog.Logger, hooks lifecycle) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, stopSignals()...)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	hook(log, name, "ready", hooks.ready)
	log.Info("service running", "service", name)

	var err error
	select {
	case sig := <-sigs:
		log.Info("service stopping", "service", name, "signal", sig.String())
		hook(log, name, "stopping", hooks.stopping)
		cancel()
		err = <-done
	case err = <-done:
		hook(log, name, "stopping", hooks.stopping)
	}
	return finish(ctx, name, err, log)
}

// finish turns run's result into RunService's: a cancellation the stop
// caused is a clean stop.
func finish(ctx context.Context, name string, err error, log *slog.Logger) error {
	if err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		log.Error("service failed", "service", name, "err", err)
		return fmt.Errorf("run service %s: %w", name, err)
	}
	log.Info("service stopped", "service", name)
	return nil
}

// hook calls f when it is set and logs its failure: a service manager
// that cannot be told about a state change is no reason to stop.
func hook(log *slog.Logger, name, what string, f func() error) {
	if f == nil {
		return
	}
	if err := f(); err != nil {
		log.Warn("notify the service manager", "service", name, "state", what, "err", err)
	}
}
