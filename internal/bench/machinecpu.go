package bench

import (
	"bytes"
	"strconv"
)

// cpuTicks are a machine's cumulative CPU time counters, all CPUs together.
type cpuTicks struct {
	busy, total uint64
}

// busyFraction is the share of the machine's CPU time that was busy between
// two samples, or -1 when nothing was counted in between.
func busyFraction(a, b cpuTicks) float64 {
	if b.total <= a.total || b.busy < a.busy {
		return -1
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total)
}

// parseProcStat reads the aggregate "cpu" line of Linux's /proc/stat:
// user nice system idle iowait irq softirq steal [guest guest_nice]. Guest
// time is already counted in user and nice, so it is left out; idle and
// iowait are the idle time.
func parseProcStat(b []byte) (cpuTicks, bool) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	fields := bytes.Fields(line)
	if len(fields) < 5 || string(fields[0]) != "cpu" {
		return cpuTicks{}, false
	}
	var t cpuTicks
	for i, f := range fields[1:] {
		if i >= 8 { // guest, guest_nice
			break
		}
		v, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil || t.total+v < t.total { // not a number, or a sum past 2^64
			return cpuTicks{}, false
		}
		t.total += v
		if i != 3 && i != 4 { // idle, iowait
			t.busy += v
		}
	}
	return t, true
}
