//go:build !windows

package platform

import (
	"fmt"
	"log/slog"
)

// EventLogHandler returns a handler that discards every record: only
// Windows has an event log (on Linux the journal captures the service's
// standard error). It still checks source, so a bad name fails everywhere.
func EventLogHandler(source string, level slog.Leveler) (*EventHandler, error) {
	if err := validateName(source); err != nil {
		return nil, fmt.Errorf("open event log: source: %w", err)
	}
	return newEventHandler(nil, nil, level), nil
}
