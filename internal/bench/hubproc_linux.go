//go:build linux

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// readRSS returns the resident memory of process pid, in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("read the resident memory of process %d: %w", pid, err)
	}
	rss, err := parseVmRSS(b)
	if err != nil {
		return 0, fmt.Errorf("read the resident memory of process %d: %w", pid, err)
	}
	return rss, nil
}

// readCPU returns the CPU time (user and system) process pid has used.
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("read the CPU time of process %d: %w", pid, err)
	}
	d, err := parseStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("read the CPU time of process %d: %w", pid, err)
	}
	return d, nil
}

// readOpenFileLimit returns the soft open-file limit of process pid.
func readOpenFileLimit(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "limits"))
	if err != nil {
		return 0, fmt.Errorf("read the open-file limit of process %d: %w", pid, err)
	}
	n, err := parseOpenFileLimit(b)
	if err != nil {
		return 0, fmt.Errorf("read the open-file limit of process %d: %w", pid, err)
	}
	return n, nil
}

// localPortRange returns the kernel's ephemeral port range.
func localPortRange() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, fmt.Errorf("read the ephemeral port range: %w", err)
	}
	return parsePortRange(b)
}

// maxProcScan bounds the processes findListener looks at.
const maxProcScan = 1 << 16

// findListener returns the process that listens on TCP port (any
// address): it finds the socket's inode in /proc/net/tcp{,6}, then the
// process holding a descriptor of that socket. It sees only processes
// whose descriptors this user may read.
func findListener(port int) (int, error) {
	want := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue // no IPv6, for example
		}
		inodes, err := parseListenInodes(b, port)
		if err != nil {
			return 0, fmt.Errorf("find the process listening on port %d: %s: %w", port, table, err)
		}
		for _, in := range inodes {
			want["socket:["+strconv.FormatUint(in, 10)+"]"] = true
		}
	}
	if len(want) == 0 {
		return 0, fmt.Errorf("find the process listening on port %d: no listening socket on that port", port)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("find the process listening on port %d: %w", port, err)
	}
	for i, p := range procs {
		if i >= maxProcScan {
			break
		}
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && want[link] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("find the process listening on port %d: the socket is there, but no process whose descriptors this user may read holds it (pass the server's process ID)", port)
}

// raiseOpenFileLimit raises this process's soft open-file limit to its
// hard limit and returns the soft limit now in force.
func raiseOpenFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, fmt.Errorf("raise the open-file limit to %d: %w", l.Max, err)
		}
	}
	return l.Cur, nil
}
