//go:build !linux

package bench

// machineCPU reports that this platform's machine-wide CPU time is not
// measured.
func machineCPU() (cpuTicks, bool) { return cpuTicks{}, false }
