//go:build windows

package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// DefaultInheritEnv returns the names of the agent's environment variables
// a module inherits unless Options.InheritEnv says otherwise.
func DefaultInheritEnv() []string {
	return []string{
		"SystemRoot", "SystemDrive", "windir", "ComSpec", "PATH", "PATHEXT",
		"TEMP", "TMP", "USERPROFILE", "ProgramData", "ProgramFiles", "APPDATA", "LOCALAPPDATA",
	}
}

// prepare starts the module in a new process group.
func prepare(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP}
}

// proc is a started module process and the job object that holds it and
// everything it spawns.
type proc struct {
	p *os.Process

	mu  sync.Mutex
	job windows.Handle
}

// attach puts a started command into a new job object that kills its
// members when closed. Processes the module spawned before it was assigned
// are not in the job; without a job only the main process can be ended.
func attach(cmd *exec.Cmd) (*proc, error) {
	p := &proc{p: cmd.Process}
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return p, fmt.Errorf("create job object: %w", err)
	}
	info := windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION{
		BasicLimitInformation: windows.JOBOBJECT_BASIC_LIMIT_INFORMATION{
			LimitFlags: windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
		},
	}
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(job)
		return p, fmt.Errorf("configure job object: %w", err)
	}
	h, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, uint32(cmd.Process.Pid))
	if err != nil {
		windows.CloseHandle(job)
		return p, fmt.Errorf("open module process %d: %w", cmd.Process.Pid, err)
	}
	defer windows.CloseHandle(h)
	if err := windows.AssignProcessToJobObject(job, h); err != nil {
		windows.CloseHandle(job)
		return p, fmt.Errorf("assign module process %d to its job object: %w", cmd.Process.Pid, err)
	}
	p.job = job
	return p, nil
}

// terminate ends the module: Windows has no portable polite stop for a
// process without a console, so this terminates the job (or the process).
func (p *proc) terminate() error { return p.kill() }

// kill terminates every process of the module's job (exit code 1), or the
// main process when there is no job.
func (p *proc) kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.job != 0 {
		return windows.TerminateJobObject(p.job, 1)
	}
	err := p.p.Kill()
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// exitedMain ends whatever is left of the module's job once its main
// process has exited.
func (p *proc) exitedMain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.job != 0 {
		_ = windows.TerminateJobObject(p.job, 1)
	}
}

// release closes the job object.
func (p *proc) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.job != 0 {
		windows.CloseHandle(p.job)
		p.job = 0
	}
}

// exitCode returns the process's exit code.
func exitCode(ps *os.ProcessState) int { return ps.ExitCode() }

// uriPath returns the file path of a process URI's path component:
// "/C:/dir/x.exe" becomes "C:/dir/x.exe".
func uriPath(p string) string {
	if len(p) >= 3 && p[0] == '/' && p[2] == ':' {
		return p[1:]
	}
	return p
}

// checkExecutable accepts any regular file: Windows decides by extension
// when the process is created.
func checkExecutable(fs.FileInfo) error { return nil }
