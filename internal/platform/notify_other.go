//go:build !linux

package platform

import "time"

// Notify is a no-op on systems without systemd; on Linux it sends state to
// systemd as sd_notify(3) does.
func Notify(state string) error { return nil }

// NotifyStatus is a no-op on systems without systemd; on Linux it sends
// text as the service's STATUS=.
func NotifyStatus(text string) error { return nil }

// WatchdogInterval returns zero on systems without systemd: there is no
// watchdog to keep alive.
func WatchdogInterval() (time.Duration, error) { return 0, nil }
