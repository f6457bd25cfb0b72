package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Where systemd lives: the directory that exists only when systemd is the
// init system (sd_booted(3)), and where administrators' units go.
const (
	systemdRunDir = "/run/systemd/system"
	systemUnitDir = "/etc/systemd/system"
)

// InstallService writes the systemd unit <cfg.Name>.service to
// /etc/systemd/system from the reviewed unit embedded in the binary (the
// one in deploy/iotedge.service) with ExecStart running cfg.ExePath with
// cfg.Args, reloads systemd and enables the unit; it does not start it. It
// fails with ErrAlreadyInstalled when systemd knows the unit already, and
// with ErrNoServiceManager when systemctl is missing or systemd is not the
// init system.
func InstallService(ctx context.Context, cfg ServiceConfig) error {
	s, err := defaultSystemd()
	if err != nil {
		return fmt.Errorf("install service %s: %w", cfg.Name, err)
	}
	return s.install(ctx, cfg)
}

// UninstallService stops and disables the unit <cfg.Name>.service, removes
// the unit file InstallService wrote and reloads systemd. It refuses to
// remove a unit file elsewhere (a package's), and fails with
// ErrNotInstalled when there is no such unit.
func UninstallService(ctx context.Context, cfg ServiceConfig) error {
	s, err := defaultSystemd()
	if err != nil {
		return fmt.Errorf("uninstall service %s: %w", cfg.Name, err)
	}
	return s.uninstall(ctx, cfg)
}

// StartService starts the unit <name>.service and returns once systemd
// reports it started (for Type=notify, once the service sent Ready) or
// failed to.
func StartService(ctx context.Context, name string) error {
	s, err := defaultSystemd()
	if err != nil {
		return fmt.Errorf("start service %s: %w", name, err)
	}
	return s.control(ctx, "start", name)
}

// StopService stops the unit <name>.service and returns once it stopped.
func StopService(ctx context.Context, name string) error {
	s, err := defaultSystemd()
	if err != nil {
		return fmt.Errorf("stop service %s: %w", name, err)
	}
	return s.control(ctx, "stop", name)
}

// ServiceStatus returns the state of the unit <name>.service;
// StateNotInstalled when systemd has no such unit.
func ServiceStatus(ctx context.Context, name string) (State, error) {
	s, err := defaultSystemd()
	if err != nil {
		return StateUnknown, fmt.Errorf("query service %s: %w", name, err)
	}
	u, err := s.show(ctx, name)
	if err != nil {
		return StateUnknown, fmt.Errorf("query service %s: %w", name, err)
	}
	return u.state(), nil
}

// systemd drives systemd through systemctl.
type systemd struct {
	systemctl string // path of the systemctl executable
	unitDir   string // where install writes unit files
}

// defaultSystemd connects to the system's systemd.
func defaultSystemd() (*systemd, error) {
	return connectSystemd(exec.LookPath, systemdRunDir, systemUnitDir)
}

// connectSystemd finds systemctl with lookPath and checks that runDir
// exists, which it does only when systemd is the init system.
func connectSystemd(lookPath func(string) (string, error), runDir, unitDir string) (*systemd, error) {
	path, err := lookPath("systemctl")
	if err != nil {
		return nil, fmt.Errorf("%w: systemctl not found in PATH (%w); the service needs systemd, or run \"iotedge service run\" in the foreground", ErrNoServiceManager, err)
	}
	if fi, err := os.Stat(runDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: systemd is not the init system (no directory %s), as in most containers; run \"iotedge service run\" in the foreground instead", ErrNoServiceManager, runDir)
	}
	return &systemd{systemctl: path, unitDir: unitDir}, nil
}

// run runs systemctl with args and returns its standard output; a failure
// carries its standard error.
func (s *systemd) run(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, s.systemctl, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return "", fmt.Errorf("run systemctl %s: %w", strings.Join(args, " "), err)
		}
		return "", fmt.Errorf("run systemctl %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}

// show asks systemd for the unit of the service name.
func (s *systemd) show(ctx context.Context, name string) (unitStatus, error) {
	out, err := s.run(ctx, "show", "--no-pager", "--property="+showProperties, unitFileName(name))
	if err != nil {
		return unitStatus{}, err
	}
	return parseShow(out)
}

// install writes, loads and enables the unit of cfg.
func (s *systemd) install(ctx context.Context, cfg ServiceConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("install service %s: %w", cfg.Name, err)
	}
	text, err := renderUnit(unitTemplate, cfg)
	if err != nil {
		return fmt.Errorf("install service %s: %w", cfg.Name, err)
	}
	unit := unitFileName(cfg.Name)
	path := filepath.Join(s.unitDir, unit)
	u, err := s.show(ctx, cfg.Name)
	if err != nil {
		return fmt.Errorf("install service %s: %w", cfg.Name, err)
	}
	if u.installed() {
		return fmt.Errorf("install service %s: %w: systemd has unit %s from %s", cfg.Name, ErrAlreadyInstalled, unit, u.fragmentPath)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("install service %s: %w: %s exists (run systemctl daemon-reload, or remove it)", cfg.Name, ErrAlreadyInstalled, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("install service %s: check %s: %w", cfg.Name, path, err)
	}
	if err := writeFileAtomic(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("install service %s: %w", cfg.Name, err)
	}
	if _, err := s.run(ctx, "daemon-reload"); err != nil {
		return s.rollback(ctx, cfg.Name, path, err)
	}
	if _, err := s.run(ctx, "enable", unit); err != nil {
		return s.rollback(ctx, cfg.Name, path, err)
	}
	return nil
}

// rollback removes a unit file install wrote when loading or enabling it
// failed, and reports cause along with any failure to clean up.
func (s *systemd) rollback(ctx context.Context, name, path string, cause error) error {
	errs := []error{cause}
	if err := os.Remove(path); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", path, err))
	} else if _, err := s.run(ctx, "daemon-reload"); err != nil {
		errs = append(errs, err)
	}
	return fmt.Errorf("install service %s: %w", name, errors.Join(errs...))
}

// uninstall stops, disables and removes the unit of cfg.
func (s *systemd) uninstall(ctx context.Context, cfg ServiceConfig) error {
	if err := validateName(cfg.Name); err != nil {
		return fmt.Errorf("uninstall service: name: %w", err)
	}
	unit := unitFileName(cfg.Name)
	path := filepath.Join(s.unitDir, unit)
	u, err := s.show(ctx, cfg.Name)
	if err != nil {
		return fmt.Errorf("uninstall service %s: %w", cfg.Name, err)
	}
	_, statErr := os.Lstat(path)
	fileExists := statErr == nil
	if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
		return fmt.Errorf("uninstall service %s: check %s: %w", cfg.Name, path, statErr)
	}
	if !u.installed() && !fileExists {
		return fmt.Errorf("uninstall service %s: %w: systemd has no unit %s", cfg.Name, ErrNotInstalled, unit)
	}
	if u.fragmentPath != "" && u.fragmentPath != path {
		return fmt.Errorf("uninstall service %s: unit %s comes from %s, not from iotedge service install (%s); remove the package that installed it", cfg.Name, unit, u.fragmentPath, path)
	}
	if u.installed() {
		if _, err := s.run(ctx, "disable", "--now", unit); err != nil {
			return fmt.Errorf("uninstall service %s: %w", cfg.Name, err)
		}
	}
	if fileExists {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("uninstall service %s: remove %s: %w", cfg.Name, path, err)
		}
	}
	if _, err := s.run(ctx, "daemon-reload"); err != nil {
		return fmt.Errorf("uninstall service %s: %w", cfg.Name, err)
	}
	return nil
}

// control runs `systemctl verb` on the unit of the installed service
// name.
func (s *systemd) control(ctx context.Context, verb, name string) error {
	if err := validateName(name); err != nil {
		return fmt.Errorf("%s service: name: %w", verb, err)
	}
	u, err := s.show(ctx, name)
	if err != nil {
		return fmt.Errorf("%s service %s: %w", verb, name, err)
	}
	if !u.installed() {
		return fmt.Errorf("%s service %s: %w: systemd has no unit %s", verb, name, ErrNotInstalled, unitFileName(name))
	}
	if _, err := s.run(ctx, verb, unitFileName(name)); err != nil {
		return fmt.Errorf("%s service %s: %w", verb, name, err)
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file in the
// same directory renamed into place, so systemd never reads half a unit.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = func() error {
		if _, err := f.Write(data); err != nil {
			return err
		}
		if err := f.Chmod(perm); err != nil {
			return err
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
