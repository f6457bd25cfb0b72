//go:build linux

package bench

import (
	"crypto/sha256"
	"net"
	"os"
	"testing"
	"time"
)

// TestProcReaders reads this process's own memory, CPU time and
// open-file limit from /proc.
func TestProcReaders(t *testing.T) {
	pid := os.Getpid()
	rss, err := readRSS(pid)
	if err != nil || rss <= 0 {
		t.Fatalf("readRSS = %d, %v; want a positive size", rss, err)
	}
	limit, err := readOpenFileLimit(pid)
	if err != nil || limit == 0 {
		t.Fatalf("readOpenFileLimit = %d, %v", limit, err)
	}
	raised, err := raiseOpenFileLimit()
	if err != nil || raised < limit {
		t.Fatalf("raiseOpenFileLimit = %d, %v; want at least the soft limit %d", raised, err, limit)
	}
	if lo, hi, err := localPortRange(); err != nil || lo > hi {
		t.Fatalf("localPortRange = %d, %d, %v", lo, hi, err)
	}
	before, err := readCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until /proc shows more (it counts in 10 ms ticks), bounded.
	sum := sha256.Sum256(nil)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 1<<28 && time.Now().Before(deadline); i++ {
		sum = sha256.Sum256(sum[:])
		if i%65536 == 0 {
			if now, err := readCPU(pid); err == nil && now > before {
				return
			}
		}
	}
	t.Fatalf("the CPU time in /proc/%d/stat did not grow while computing", pid)
}

// TestFindListener finds this process as the owner of a listening socket,
// and names the port when nothing listens on it.
func TestFindListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	pid, err := findListener(port)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("findListener(%d) = %d, %v; want this process %d", port, pid, err, os.Getpid())
	}
	ln.Close()
	if _, err := findListener(port); err == nil {
		t.Fatalf("findListener(%d) after close: no error", port)
	}
}
