package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The hub bench reads what it knows of the server and of Mosquitto from
// /proc (Linux): resident memory, CPU time, the open-file limit, and which
// process listens on a port. The parsers below take the file contents, so
// they are tested without /proc; hubproc_linux.go reads the files.

// errProcFormat means a /proc file did not look as documented in proc(5).
var errProcFormat = errors.New("unexpected /proc file format")

// errProcUnsupported means this platform has no /proc to read.
var errProcUnsupported = errors.New("reading another process's memory and CPU needs Linux's /proc")

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 for user space on every architecture.
const userHZ = 100

// parseVmRSS returns the VmRSS of a /proc/<pid>/status text, in bytes.
func parseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%w: VmRSS line %q, want \"VmRSS: <n> kB\"", errProcFormat, sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("%w: VmRSS value %q", errProcFormat, f[0])
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%w: no VmRSS line (a kernel thread or a zombie?)", errProcFormat)
}

// parseStatCPU returns utime + stime of a /proc/<pid>/stat text.
func parseStatCPU(stat []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses itself: fields are counted after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat has no ')' after the command name", errProcFormat)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: stat has %d fields after the command name, want at least 13", errProcFormat, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: stat CPU time %q", errProcFormat, s)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// parseOpenFileLimit returns the soft "Max open files" limit of a
// /proc/<pid>/limits text; unlimited is reported as the largest uint64.
func parseOpenFileLimit(limits []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(limits))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			return 0, fmt.Errorf("%w: limits line %q", errProcFormat, sc.Text())
		}
		if f[0] == "unlimited" {
			return ^uint64(0), nil
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: open-file limit %q", errProcFormat, f[0])
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: no \"Max open files\" line", errProcFormat)
}

// tcpListenState is the st column of a listening socket in /proc/net/tcp.
const tcpListenState = "0A"

// parseListenInodes returns the socket inodes listening on port in a
// /proc/net/tcp or /proc/net/tcp6 text.
func parseListenInodes(table []byte, port int) ([]uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(table))
	var inodes []uint64
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 {
			return nil, fmt.Errorf("%w: socket table line %q", errProcFormat, sc.Text())
		}
		if f[3] != tcpListenState {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			return nil, fmt.Errorf("%w: local address %q", errProcFormat, f[1])
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("%w: local port %q", errProcFormat, hexPort)
		}
		if int(p) != port {
			continue
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: inode %q", errProcFormat, f[9])
		}
		if inode != 0 {
			inodes = append(inodes, inode)
		}
	}
	return inodes, nil
}

// parsePortRange parses /proc/sys/net/ipv4/ip_local_port_range.
func parsePortRange(b []byte) (lo, hi int, err error) {
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("%w: port range %q", errProcFormat, b)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("%w: port range %q", errProcFormat, b)
	}
	return lo, hi, nil
}
