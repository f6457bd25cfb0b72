//go:build !windows

package platform

import (
	"context"
	"log/slog"
	"testing"
)

func TestEventLogHandlerDiscardsWithoutEventLog(t *testing.T) {
	h, err := EventLogHandler("iotedged", slog.LevelDebug)
	if err != nil {
		t.Fatal(err)
	}
	if h.Enabled(context.Background(), slog.LevelError) {
		t.Error("EventLogHandler is enabled on a system without an event log")
	}
	slog.New(h).Error("dropped")
	if err := h.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := EventLogHandler("bad source", nil); err == nil {
		t.Error("EventLogHandler accepted a source with a space")
	}
}
