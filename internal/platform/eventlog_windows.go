package platform

import (
	"fmt"
	"log/slog"

	"golang.org/x/sys/windows/svc/eventlog"
)

// EventLogHandler opens the Windows event log for source (registered in
// the Application log by InstallService; iotedge uses "iotedged", the
// source Get-IoTEdgeLog reads) and returns a handler writing records at
// level and above (Info when nil) to it. Close the handler when the
// process stops logging.
func EventLogHandler(source string, level slog.Leveler) (*EventHandler, error) {
	if err := validateName(source); err != nil {
		return nil, fmt.Errorf("open event log: source: %w", err)
	}
	l, err := eventlog.Open(source)
	if err != nil {
		return nil, fmt.Errorf("open event log for source %s: %w", source, err)
	}
	return newEventHandler(l, l, level), nil
}
