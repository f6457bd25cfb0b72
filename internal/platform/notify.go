package platform

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// sd_notify states for Notify
// (https://www.freedesktop.org/software/systemd/man/sd_notify.html).
const (
	// Ready tells systemd the service finished starting up.
	Ready = "READY=1"
	// Stopping tells systemd the service is beginning its shutdown.
	Stopping = "STOPPING=1"
	// Watchdog keeps systemd's watchdog (WatchdogSec=) from firing.
	Watchdog = "WATCHDOG=1"
)

// maxStatusLen bounds a STATUS= text; systemd shows one line of it.
const maxStatusLen = 1024

// checkState reports why state is not a well-formed sd_notify message:
// one or more newline-separated VARIABLE=value assignments whose names are
// upper-case letters, digits and underscores, with no NUL byte.
func checkState(state string) error {
	if state == "" {
		return errors.New("notify state: empty")
	}
	if i := strings.IndexByte(state, 0); i >= 0 {
		return fmt.Errorf("notify state: NUL byte at %d", i)
	}
	for n, line := range strings.Split(state, "\n") {
		key, _, ok := strings.Cut(line, "=")
		if !ok || key == "" {
			return fmt.Errorf("notify state: line %d %q is not VARIABLE=value", n+1, line)
		}
		for _, r := range key {
			if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
				return fmt.Errorf("notify state: line %d: variable %q has %q; use A-Z, 0-9 and '_'", n+1, key, r)
			}
		}
	}
	return nil
}

// statusState renders text as a single-line STATUS= state: control
// characters become spaces and the text is cut at maxStatusLen bytes on a
// character boundary.
func statusState(text string) string {
	var b strings.Builder
	b.WriteString("STATUS=")
	for _, r := range text {
		if unicode.IsControl(r) {
			r = ' '
		}
		if b.Len()-len("STATUS=")+utf8.RuneLen(r) > maxStatusLen {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// parseWatchdog interprets systemd's WATCHDOG_USEC and WATCHDOG_PID
// environment variables for the process self, as sd_watchdog_enabled does:
// zero when the watchdog is off or meant for another process.
func parseWatchdog(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	u, err := strconv.ParseUint(usec, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse WATCHDOG_USEC %q: %w", usec, err)
	}
	if u == 0 || u > uint64(time.Duration(1<<63-1)/time.Microsecond) {
		return 0, fmt.Errorf("parse WATCHDOG_USEC %q: out of range", usec)
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("parse WATCHDOG_PID %q: not a process ID", pid)
		}
		if p != self {
			return 0, nil
		}
	}
	return time.Duration(u) * time.Microsecond, nil
}
