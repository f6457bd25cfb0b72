package bench

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestParseVmRSS reads the resident memory line of /proc/<pid>/status.
func TestParseVmRSS(t *testing.T) {
	status := "Name:\tmuster\nVmPeak:\t  900000 kB\nVmRSS:\t   54321 kB\nThreads:\t9\n"
	got, err := parseVmRSS([]byte(status))
	if err != nil || got != 54321*1024 {
		t.Fatalf("parseVmRSS = %d, %v; want %d", got, err, 54321*1024)
	}
	for _, bad := range []string{"Name:\tkthreadd\n", "VmRSS:\t12 MB\n", "VmRSS:\t-1 kB\n", "VmRSS:\tlots kB\n"} {
		if _, err := parseVmRSS([]byte(bad)); !errors.Is(err, errProcFormat) {
			t.Errorf("parseVmRSS(%q): error %v, want errProcFormat", bad, err)
		}
	}
}

// TestParseStatCPU adds utime and stime (fields 14 and 15, in USER_HZ
// ticks), counting fields after the last ')' of the command name.
func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name, stat string
		want       time.Duration
	}{
		{"plain", "12930 (cat) R 12928 12928 6199 0 -1 4194304 99 0 0 0 250 125 0 0 20 0 1 0 226940", 3750 * time.Millisecond},
		{"name with spaces and parentheses", "77 (a) b (c)) S 1 77 77 0 -1 4194560 10 0 0 0 7 3 0 0 20 0 1 0 1", 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tc.stat))
			if err != nil || got != tc.want {
				t.Fatalf("parseStatCPU = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"12930 cat R 1", "1 (x) R 1 2 3", "1 (x) R 1 1 1 0 -1 0 0 0 0 0 -5 1 0"} {
		if _, err := parseStatCPU([]byte(bad)); !errors.Is(err, errProcFormat) {
			t.Errorf("parseStatCPU(%q): error %v, want errProcFormat", bad, err)
		}
	}
}

// TestParseOpenFileLimit reads the soft limit of "Max open files".
func TestParseOpenFileLimit(t *testing.T) {
	limits := "Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max processes             95043                95043                processes \n" +
		"Max open files            1024                 524288               files     \n"
	if got, err := parseOpenFileLimit([]byte(limits)); err != nil || got != 1024 {
		t.Errorf("parseOpenFileLimit = %d, %v; want 1024", got, err)
	}
	unlimited := "Max open files            unlimited            unlimited            files     \n"
	if got, err := parseOpenFileLimit([]byte(unlimited)); err != nil || got != ^uint64(0) {
		t.Errorf("unlimited = %d, %v; want the largest uint64", got, err)
	}
	if _, err := parseOpenFileLimit([]byte("Max processes 1 1 processes\n")); !errors.Is(err, errProcFormat) {
		t.Errorf("no open-file line: error %v, want errProcFormat", err)
	}
}

// TestParseListenInodes finds the listening sockets of one port in a
// /proc/net/tcp table (ports in hex; st 0A is LISTEN).
func TestParseListenInodes(t *testing.T) {
	table := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:22B3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000034126540 100 0 0 10 0\n" +
		"   1: 0100007F:22B3 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000034126540 20 4 30 10 -1\n" +
		"   2: 00000000:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 9893 1 0000000034126540 100 0 0 10 0\n"
	got, err := parseListenInodes([]byte(table), 0x22B3)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{4242}, got); diff != "" {
		t.Errorf("inodes (-want +got):\n%s", diff)
	}
	if got, err := parseListenInodes([]byte(table), 1); err != nil || len(got) != 0 {
		t.Errorf("port 1: %v, %v; want none", got, err)
	}
	if _, err := parseListenInodes([]byte("header\n0: short line\n"), 1); !errors.Is(err, errProcFormat) {
		t.Errorf("short line: error %v, want errProcFormat", err)
	}
}

// TestParsePortRange reads ip_local_port_range.
func TestParsePortRange(t *testing.T) {
	lo, hi, err := parsePortRange([]byte("32768\t60999\n"))
	if err != nil || lo != 32768 || hi != 60999 {
		t.Errorf("parsePortRange = %d, %d, %v; want 32768, 60999", lo, hi, err)
	}
	for _, bad := range []string{"", "1", "9 8", "0 100", "1 70000", "a b"} {
		if _, _, err := parsePortRange([]byte(bad)); !errors.Is(err, errProcFormat) {
			t.Errorf("parsePortRange(%q): error %v, want errProcFormat", bad, err)
		}
	}
}
