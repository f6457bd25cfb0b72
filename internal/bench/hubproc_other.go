//go:build !linux

package bench

import "time"

// Other platforms have no /proc: the hub bench measures no server memory
// or CPU there and leaves the open-file limit as the runtime set it.

func readRSS(int) (int64, error)              { return 0, errProcUnsupported }
func readCPU(int) (time.Duration, error)      { return 0, errProcUnsupported }
func readOpenFileLimit(int) (uint64, error)   { return 0, errProcUnsupported }
func localPortRange() (lo, hi int, err error) { return 0, 0, errProcUnsupported }
func findListener(int) (int, error)           { return 0, errProcUnsupported }
func raiseOpenFileLimit() (uint64, error)     { return 0, errProcUnsupported }
