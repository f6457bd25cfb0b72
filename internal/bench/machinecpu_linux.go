package bench

import (
	"os"
)

// machineCPU reads this machine's CPU time counters (all CPUs, in clock
// ticks) from /proc/stat: busy is every state except idle and iowait.
func machineCPU() (cpuTicks, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}, false
	}
	return parseProcStat(b)
}
