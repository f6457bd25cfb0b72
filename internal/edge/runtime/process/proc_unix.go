//go:build unix

package process

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
)

// DefaultInheritEnv returns the names of the agent's environment variables
// a module inherits unless Options.InheritEnv says otherwise.
func DefaultInheritEnv() []string {
	return []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"}
}

// prepare makes the module the leader of a new process group, so stop
// signals reach everything it spawned.
func prepare(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// proc is a started module process and its process group.
type proc struct {
	pgid   int
	exited atomic.Bool
}

// attach wraps a started command.
func attach(cmd *exec.Cmd) (*proc, error) {
	return &proc{pgid: cmd.Process.Pid}, nil
}

// signal sends sig to the module's process group while the module's main
// process has not been reaped (its pid, the group id, cannot be reused
// before then).
func (p *proc) signal(sig syscall.Signal) error {
	if p.exited.Load() {
		return nil
	}
	err := syscall.Kill(-p.pgid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// terminate asks the module to stop: SIGTERM to its process group.
func (p *proc) terminate() error { return p.signal(syscall.SIGTERM) }

// kill ends the module at once: SIGKILL to its process group.
func (p *proc) kill() error { return p.signal(syscall.SIGKILL) }

// exitedMain is called once the main process has been reaped: whatever is
// left of its process group is killed (as Docker does when a container's
// first process exits), so no orphan keeps the output pipes open.
func (p *proc) exitedMain() {
	// The group outlives its leader only while members remain, so the
	// group id is still unambiguous here.
	_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
	p.exited.Store(true)
}

// release frees platform resources after the module has ended.
func (p *proc) release() {}

// exitCode maps a process's end to a Docker-style exit code: the exit
// status, or 128+signal for a process ended by a signal.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// uriPath returns the file path of a process URI's path component.
func uriPath(p string) string { return p }

// checkExecutable reports whether a file has an execute bit.
func checkExecutable(st fs.FileInfo) error {
	if st.Mode().Perm()&0o111 == 0 {
		return errors.New("not executable (no execute permission bit)")
	}
	return nil
}
