//go:build !unix && !windows

package process

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	goruntime "runtime"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

// DefaultInheritEnv returns the names of the agent's environment variables
// a module inherits unless Options.InheritEnv says otherwise.
func DefaultInheritEnv() []string { return []string{"PATH"} }

func prepare(*exec.Cmd) {}

// proc is unused on platforms without process control.
type proc struct{}

func attach(*exec.Cmd) (*proc, error) {
	return nil, fmt.Errorf("process runtime on %s: %w", goruntime.GOOS, runtime.ErrUnsupported)
}
func (p *proc) terminate() error { return runtime.ErrUnsupported }
func (p *proc) kill() error      { return runtime.ErrUnsupported }
func (p *proc) exitedMain()      {}
func (p *proc) release()         {}

func exitCode(ps *os.ProcessState) int { return ps.ExitCode() }
func uriPath(p string) string          { return p }
func checkExecutable(fs.FileInfo) error {
	return fmt.Errorf("process runtime on %s: %w", goruntime.GOOS, runtime.ErrUnsupported)
}
