package bench

import (
	"math"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	// The first lines of a 2-CPU machine's /proc/stat (Linux 6.1).
	stat := []byte("cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175 0\n" +
		"cpu0 1393280 32966 540416 22272 130 0 1203 0 0 0\n" +
		"intr 1462898 0 0\n")
	got, ok := parseProcStat(stat)
	if !ok {
		t.Fatal("parseProcStat refused a well-formed /proc/stat")
	}
	want := cpuTicks{busy: 10132153 + 290696 + 3084719 + 25195, total: 10132153 + 290696 + 3084719 + 46828483 + 16683 + 25195}
	if got != want {
		t.Fatalf("parseProcStat = %+v, want %+v (guest time excluded, idle and iowait idle)", got, want)
	}
	// A line without the idle and iowait counters, another line first, a
	// counter that is not a number or counters whose sum overflows are
	// refused.
	for _, bad := range []string{"", "cpu 1 2 3\n", "cpu0 1 2 3 4 5\n", "cpu 1 2 x 4 5\n", "intr 1 2 3 4 5\n",
		"cpu 18446744073709551615 1 2 3 4\n"} {
		if _, ok := parseProcStat([]byte(bad)); ok {
			t.Errorf("parseProcStat(%q) accepted it", bad)
		}
	}
}

func TestBusyFraction(t *testing.T) {
	a := cpuTicks{busy: 100, total: 400}
	b := cpuTicks{busy: 250, total: 600}
	if got := busyFraction(a, b); math.Abs(got-0.75) > 1e-9 {
		t.Fatalf("busyFraction = %v, want 0.75", got)
	}
	if got := busyFraction(a, a); got != -1 {
		t.Fatalf("busyFraction of one sample = %v, want -1", got)
	}
}

func TestMachineCPUReadsThisMachine(t *testing.T) {
	a, ok := machineCPU()
	if !ok {
		t.Skip("this platform does not report machine-wide CPU time")
	}
	if a.total == 0 || a.busy > a.total {
		t.Fatalf("machineCPU = %+v: total must be positive and at least busy", a)
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175 0\n"))
	f.Add([]byte("cpu 1 2 3 4 5\n"))
	f.Add([]byte("cpu 18446744073709551615 1 2 3 4 5 6 7 8 9 10\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseProcStat(b)
		if ok && got.busy > got.total {
			t.Fatalf("parseProcStat(%q) = busy %d above total %d", b, got.busy, got.total)
		}
	})
}
