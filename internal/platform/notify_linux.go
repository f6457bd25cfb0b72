package platform

import (
	"fmt"
	"net"
	"os"
	"time"
)

// Notify sends state to systemd over the datagram socket named by
// $NOTIFY_SOCKET (a path, or an abstract socket when it starts with '@'),
// as sd_notify(3) does. It is a no-op when $NOTIFY_SOCKET is unset, that
// is when the process does not run as a Type=notify unit. state is one of
// Ready, Stopping or Watchdog, or any newline-separated VARIABLE=value
// assignments; use NotifyStatus for free text.
func Notify(state string) error {
	if err := checkState(state); err != nil {
		return err
	}
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	return sdNotify(addr, state)
}

// NotifyStatus sends text to systemd as the service's one-line status
// (STATUS=, shown by systemctl status); control characters become spaces.
// It is a no-op when $NOTIFY_SOCKET is unset.
func NotifyStatus(text string) error { return Notify(statusState(text)) }

// WatchdogInterval returns the watchdog timeout systemd set for this
// process (WatchdogSec= in the unit), or zero when the watchdog is off. A
// service that enables it sends Watchdog at least every half interval.
func WatchdogInterval() (time.Duration, error) {
	return parseWatchdog(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
}

// sdNotify writes one datagram holding state to the unixgram socket addr.
func sdNotify(addr, state string) error {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd at NOTIFY_SOCKET %q: %w", addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd at NOTIFY_SOCKET %q: %w", addr, err)
	}
	return nil
}
