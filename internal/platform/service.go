package platform

import (
	"errors"
	"fmt"
	"path/filepath"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors callers branch on.
var (
	// ErrNoServiceManager reports that the system has no service manager
	// this package can drive: systemctl is missing, systemd is not the init
	// system (containers, CI), or the operating system is neither Linux
	// nor Windows.
	ErrNoServiceManager = errors.New("no service manager")
	// ErrNotInstalled reports that the named service is not installed.
	ErrNotInstalled = errors.New("service not installed")
	// ErrAlreadyInstalled reports that a service of that name is already
	// installed.
	ErrAlreadyInstalled = errors.New("service already installed")
)

// State is a service's state as the service manager reports it, in words
// fit for `iotedge system status`.
type State string

// The states a service can be in. Systemd's activating, deactivating and
// reloading states map to StartPending, StopPending and Running; the
// Windows pending states map to the nearest of these.
const (
	StateRunning      State = "Running"
	StateStopped      State = "Stopped"
	StateStartPending State = "Starting"
	StateStopPending  State = "Stopping"
	StatePaused       State = "Paused"
	StateFailed       State = "Failed"
	StateNotInstalled State = "Not installed"
	StateUnknown      State = "Unknown"
)

// ServiceConfig describes the service InstallService registers.
type ServiceConfig struct {
	// Name is the service's name: the systemd unit <Name>.service on Linux,
	// the service name on Windows (Get-Service <Name>). Letters, digits,
	// '.', '_' and '-' only.
	Name string
	// DisplayName is the Windows display name; Linux ignores it.
	DisplayName string
	// Description is the unit's Description= on Linux and the service
	// description on Windows.
	Description string
	// ExePath is the absolute path of the executable the service runs.
	ExePath string
	// Args are the arguments the service passes to ExePath.
	Args []string
	// EventSource is the Windows event log source (in the Application log)
	// that InstallService registers and UninstallService removes; empty
	// means none. Linux ignores it: the journal captures the service's
	// output.
	EventSource string
}

// maxNameLen bounds service and event source names; Windows allows 256
// characters, systemd unit names 255 bytes with the suffix.
const maxNameLen = 80

// Validate reports every problem with the configuration at once, each
// naming its field.
func (c ServiceConfig) Validate() error {
	var errs []error
	if err := validateName(c.Name); err != nil {
		errs = append(errs, fmt.Errorf("service config: Name: %w", err))
	}
	if c.EventSource != "" {
		if err := validateName(c.EventSource); err != nil {
			errs = append(errs, fmt.Errorf("service config: EventSource: %w", err))
		}
	}
	for _, f := range []struct{ name, value string }{{"DisplayName", c.DisplayName}, {"Description", c.Description}} {
		if r, i, ok := firstControl(f.value); ok {
			errs = append(errs, fmt.Errorf("service config: %s: control character %q at byte %d", f.name, r, i))
		}
	}
	switch {
	case c.ExePath == "":
		errs = append(errs, errors.New("service config: ExePath: empty"))
	case !filepath.IsAbs(c.ExePath):
		errs = append(errs, fmt.Errorf("service config: ExePath: %q is not an absolute path", c.ExePath))
	}
	if r, i, ok := firstControl(c.ExePath); ok {
		errs = append(errs, fmt.Errorf("service config: ExePath: control character %q at byte %d", r, i))
	}
	for n, a := range c.Args {
		if r, i, ok := firstControl(a); ok {
			errs = append(errs, fmt.Errorf("service config: Args[%d]: control character %q at byte %d", n, r, i))
		}
		if !utf8.ValidString(a) {
			errs = append(errs, fmt.Errorf("service config: Args[%d]: not valid UTF-8", n))
		}
	}
	return errors.Join(errs...)
}

// firstControl finds the first control character in s (C0, DEL or C1),
// which no unit file line, service description or command line may hold.
func firstControl(s string) (rune, int, bool) {
	for i, r := range s {
		if unicode.IsControl(r) {
			return r, i, true
		}
	}
	return 0, 0, false
}

// validateName checks a service or event source name.
func validateName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%d bytes, longer than %d", len(name), maxNameLen)
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("%q has %q at byte %d; use letters, digits, '.', '_' and '-'", name, r, i)
		}
	}
	return nil
}
