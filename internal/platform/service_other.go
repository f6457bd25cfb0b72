//go:build !linux && !windows

package platform

import (
	"context"
	"fmt"
)

// errUnsupported explains why service management fails on this system.
func errUnsupported(verb, name string) error {
	return fmt.Errorf("%s service %s: %w: service management supports systemd on Linux and the Windows service control manager; run \"iotedge service run\" in the foreground or under your own supervisor", verb, name, ErrNoServiceManager)
}

// InstallService fails with ErrNoServiceManager: this system has no
// supported service manager.
func InstallService(ctx context.Context, cfg ServiceConfig) error {
	return errUnsupported("install", cfg.Name)
}

// UninstallService fails with ErrNoServiceManager: this system has no
// supported service manager.
func UninstallService(ctx context.Context, cfg ServiceConfig) error {
	return errUnsupported("uninstall", cfg.Name)
}

// StartService fails with ErrNoServiceManager: this system has no
// supported service manager.
func StartService(ctx context.Context, name string) error { return errUnsupported("start", name) }

// StopService fails with ErrNoServiceManager: this system has no supported
// service manager.
func StopService(ctx context.Context, name string) error { return errUnsupported("stop", name) }

// ServiceStatus fails with ErrNoServiceManager: this system has no
// supported service manager.
func ServiceStatus(ctx context.Context, name string) (State, error) {
	return StateUnknown, errUnsupported("query", name)
}
