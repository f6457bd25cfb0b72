// Package platform owns iotedge's operating-system service layer: running
// as a service (systemd readiness notification on Linux, the service
// control manager's handler loop on Windows), installing, removing,
// starting, stopping and querying the service through the system's service
// manager (systemctl on Linux; the service control manager with restart
// recovery actions on Windows), and the Windows event log as a slog.Handler.
//
// Platform code lives in files suffixed _linux.go and _windows.go, with
// _other.go files (build-constrained to the remaining systems) holding the
// fallbacks; no code branches on runtime.GOOS. The untagged files hold the
// parts every platform shares and the pure pieces of the Windows and
// systemd code (the service-control loop, the Windows state mapping and
// recovery policy, event formatting, systemctl output parsing), so they
// are unit-tested on any build machine. The systemd unit itself is
// iotedge.service, embedded and kept identical to deploy/iotedge.service.
//
// It is an adapter package: it may use os/exec, os/signal, sockets and
// golang.org/x/sys, and it must not import net/http, an MQTT library or a
// SQL driver. It knows nothing of the edge daemon it runs: the daemon is a
// func(context.Context) error handed to RunService.
package platform
