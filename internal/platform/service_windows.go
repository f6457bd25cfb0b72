package platform

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// eventLogKey is the registry key under which event sources of the
// Application log are registered.
const eventLogKey = `SYSTEM\CurrentControlSet\Services\EventLog\Application`

// pollInterval is how often StartService, StopService and
// UninstallService query the service while they wait for a state, and
// stateTimeout how long they wait at most when ctx has no earlier
// deadline.
const (
	pollInterval = 250 * time.Millisecond
	stateTimeout = 90 * time.Second
)

// InstallService registers cfg.Name with the service control manager as
// an automatically started service running cfg.ExePath with cfg.Args as
// LocalSystem, with recovery actions that restart it 1, 2 and then every
// 4 seconds after a failure (a crash or a stop with a non-zero exit code),
// and registers cfg.EventSource in the Application event log. It does not
// start the service. It fails with ErrAlreadyInstalled when a service of
// that name exists, and needs Administrator rights.
func InstallService(ctx context.Context, cfg ServiceConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("install service %s: %w", cfg.Name, err)
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("install service %s: connect to the service control manager: %w", cfg.Name, adminHint(err))
	}
	defer m.Disconnect()
	if s, err := m.OpenService(cfg.Name); err == nil {
		s.Close()
		return fmt.Errorf("install service %s: %w", cfg.Name, ErrAlreadyInstalled)
	} else if !errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return fmt.Errorf("install service %s: look for an installed service: %w", cfg.Name, adminHint(err))
	}
	display := cfg.DisplayName
	if display == "" {
		display = cfg.Name
	}
	s, err := m.CreateService(cfg.Name, cfg.ExePath, mgr.Config{
		ServiceType:  windows.SERVICE_WIN32_OWN_PROCESS,
		StartType:    mgr.StartAutomatic,
		ErrorControl: mgr.ErrorNormal,
		DisplayName:  display,
		Description:  cfg.Description,
	}, cfg.Args...)
	switch {
	case errors.Is(err, windows.ERROR_SERVICE_EXISTS):
		return fmt.Errorf("install service %s: %w", cfg.Name, ErrAlreadyInstalled)
	case errors.Is(err, windows.ERROR_SERVICE_MARKED_FOR_DELETE):
		return fmt.Errorf("install service %s: the previous installation is still being removed; close the Services console and other programs that hold it, then retry: %w", cfg.Name, err)
	case err != nil:
		return fmt.Errorf("install service %s: create: %w", cfg.Name, adminHint(err))
	}
	defer s.Close()
	err = setRecovery(s, serviceRecovery())
	if err == nil && cfg.EventSource != "" {
		err = installEventSource(cfg.EventSource)
	}
	if err != nil {
		if derr := s.Delete(); derr != nil {
			err = errors.Join(err, fmt.Errorf("delete the half-installed service: %w", derr))
		}
		return fmt.Errorf("install service %s: %w", cfg.Name, err)
	}
	return nil
}

// setRecovery applies a recovery policy to s.
func setRecovery(s *mgr.Service, p recoveryPolicy) error {
	actions := make([]mgr.RecoveryAction, 0, len(p.restartDelays))
	for _, d := range p.restartDelays {
		actions = append(actions, mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: d})
	}
	if err := s.SetRecoveryActions(actions, uint32(p.resetPeriod/time.Second)); err != nil {
		return fmt.Errorf("set recovery actions: %w", err)
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(p.onNonCrashFailures); err != nil {
		return fmt.Errorf("set recovery on non-crash failures: %w", err)
	}
	return nil
}

// installEventSource registers src in the Application event log with
// EventCreate.exe as its message file, unless it is registered already.
func installEventSource(src string) error {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, eventLogKey+`\`+src, registry.QUERY_VALUE)
	if err == nil {
		k.Close()
		return nil
	}
	if err := eventlog.InstallAsEventCreate(src, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		return fmt.Errorf("register event source %s: %w", src, adminHint(err))
	}
	return nil
}

// UninstallService stops the service cfg.Name when it runs, deletes it
// and removes cfg.EventSource from the Application event log. It fails
// with ErrNotInstalled when there is no such service, and needs
// Administrator rights. Windows removes the service once the last handle
// to it (the Services console, say) is closed.
func UninstallService(ctx context.Context, cfg ServiceConfig) error {
	if err := validateName(cfg.Name); err != nil {
		return fmt.Errorf("uninstall service: name: %w", err)
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("uninstall service %s: connect to the service control manager: %w", cfg.Name, adminHint(err))
	}
	defer m.Disconnect()
	s, err := m.OpenService(cfg.Name)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return fmt.Errorf("uninstall service %s: %w", cfg.Name, ErrNotInstalled)
	} else if err != nil {
		return fmt.Errorf("uninstall service %s: open: %w", cfg.Name, adminHint(err))
	}
	defer s.Close()
	if err := stop(ctx, s); err != nil {
		return fmt.Errorf("uninstall service %s: %w", cfg.Name, err)
	}
	if err := s.Delete(); err != nil && !errors.Is(err, windows.ERROR_SERVICE_MARKED_FOR_DELETE) {
		return fmt.Errorf("uninstall service %s: delete: %w", cfg.Name, err)
	}
	if cfg.EventSource != "" {
		if err := eventlog.Remove(cfg.EventSource); err != nil && !errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
			return fmt.Errorf("uninstall service %s: remove event source %s: %w", cfg.Name, cfg.EventSource, err)
		}
	}
	return nil
}

// StartService starts the service name and waits until it runs, fails to
// start, or ctx ends (90 seconds at most).
func StartService(ctx context.Context, name string) error {
	s, closeAll, err := openService(name, windows.SERVICE_START|windows.SERVICE_QUERY_STATUS)
	if err != nil {
		return fmt.Errorf("start service %s: %w", name, err)
	}
	defer closeAll()
	if err := s.Start(); err != nil && !errors.Is(err, windows.ERROR_SERVICE_ALREADY_RUNNING) {
		return fmt.Errorf("start service %s: %w", name, adminHint(err))
	}
	if err := waitState(ctx, s, svc.Running); err != nil {
		return fmt.Errorf("start service %s: %w", name, err)
	}
	return nil
}

// StopService stops the service name and waits until it stopped or ctx
// ends (90 seconds at most).
func StopService(ctx context.Context, name string) error {
	s, closeAll, err := openService(name, windows.SERVICE_STOP|windows.SERVICE_QUERY_STATUS)
	if err != nil {
		return fmt.Errorf("stop service %s: %w", name, err)
	}
	defer closeAll()
	if err := stop(ctx, s); err != nil {
		return fmt.Errorf("stop service %s: %w", name, err)
	}
	return nil
}

// ServiceStatus returns the state of the service name; StateNotInstalled
// when there is no such service. It needs no Administrator rights.
func ServiceStatus(ctx context.Context, name string) (State, error) {
	s, closeAll, err := openService(name, windows.SERVICE_QUERY_STATUS)
	if errors.Is(err, ErrNotInstalled) {
		return StateNotInstalled, nil
	} else if err != nil {
		return StateUnknown, fmt.Errorf("query service %s: %w", name, err)
	}
	defer closeAll()
	st, err := s.Query()
	if err != nil {
		return StateUnknown, fmt.Errorf("query service %s: %w", name, err)
	}
	return windowsState(uint32(st.State)), nil
}

// openService opens the service name with only the access rights it
// needs, so that querying works without Administrator rights.
func openService(name string, access uint32) (*mgr.Service, func(), error) {
	if err := validateName(name); err != nil {
		return nil, nil, fmt.Errorf("name: %w", err)
	}
	namePtr, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, nil, fmt.Errorf("name: %w", err)
	}
	h, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to the service control manager: %w", adminHint(err))
	}
	sh, err := windows.OpenService(h, namePtr, access)
	if err != nil {
		windows.CloseServiceHandle(h)
		if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
			return nil, nil, ErrNotInstalled
		}
		return nil, nil, fmt.Errorf("open: %w", adminHint(err))
	}
	s := &mgr.Service{Name: name, Handle: sh}
	return s, func() {
		s.Close()
		windows.CloseServiceHandle(h)
	}, nil
}

// stop asks s to stop unless it is stopped and waits until it is.
func stop(ctx context.Context, s *mgr.Service) error {
	st, err := s.Query()
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	if st.State == svc.Stopped {
		return nil
	}
	if _, err := s.Control(svc.Stop); err != nil && !errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return fmt.Errorf("send stop: %w", adminHint(err))
	}
	return waitState(ctx, s, svc.Stopped)
}

// waitState polls s until it reaches want, stops while it should start,
// or ctx (bounded by stateTimeout) ends.
func waitState(ctx context.Context, s *mgr.Service, want svc.State) error {
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		st, err := s.Query()
		if err != nil {
			return fmt.Errorf("query: %w", err)
		}
		if st.State == want {
			return nil
		}
		if want == svc.Running && st.State == svc.Stopped {
			return fmt.Errorf("the service stopped while starting (exit code %d, service exit code %d); see the event log (Get-IoTEdgeLog)", st.Win32ExitCode, st.ServiceSpecificExitCode)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for state %s (now %s): %w", windowsState(uint32(want)), windowsState(uint32(st.State)), ctx.Err())
		case <-tick.C:
		}
	}
}

// adminHint adds the usual remedy to an access-denied error.
func adminHint(err error) error {
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		return fmt.Errorf("%w (run as Administrator)", err)
	}
	return err
}
