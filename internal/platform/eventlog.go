package platform

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"
)

// eventWriter writes events to a Windows event log; *eventlog.Log is one.
type eventWriter interface {
	Info(eid uint32, msg string) error
	Warning(eid uint32, msg string) error
	Error(eid uint32, msg string) error
}

// Event IDs of the events EventHandler writes, one per event type.
// Sources registered with EventCreate.exe as message file accept 1-1000.
const (
	eventIDInfo    uint32 = 1
	eventIDWarning uint32 = 2
	eventIDError   uint32 = 3
)

// maxEventLen bounds an event's text in bytes; ReportEvent accepts at
// most 31,839 characters per string.
const maxEventLen = 31 * 1024

// truncatedMark ends an event text cut at maxEventLen.
const truncatedMark = " …(truncated)"

// EventHandler is a slog.Handler that writes records to the Windows event
// log: errors as Error events, warnings as Warning events, everything
// else at or above its level as Information events. An event's text is
// the message followed by the attributes in slog's text form; the event
// log records the time. On systems without an event log it discards
// everything and Enabled reports false.
type EventHandler struct {
	sink  *eventSink
	text  slog.Handler // renders a record's attributes into sink.buf
	level slog.Leveler
}

// eventSink is what an EventHandler and the handlers derived from it
// share.
type eventSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   eventWriter // nil once closed
	c   io.Closer   // closes w, or nil
}

// newEventHandler returns an EventHandler writing to w at level and above
// (slog.LevelInfo when level is nil); c, when not nil, is closed by Close.
func newEventHandler(w eventWriter, c io.Closer, level slog.Leveler) *EventHandler {
	if level == nil {
		level = slog.LevelInfo
	}
	s := &eventSink{w: w, c: c}
	text := slog.NewTextHandler(&s.buf, &slog.HandlerOptions{
		Level: slog.LevelDebug - 4, // Enabled decides
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 {
				switch a.Key {
				case slog.TimeKey, slog.LevelKey, slog.MessageKey:
					return slog.Attr{}
				}
			}
			return a
		},
	})
	return &EventHandler{sink: s, text: text, level: level}
}

// Enabled implements slog.Handler.
func (h *EventHandler) Enabled(_ context.Context, l slog.Level) bool {
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	return h.sink.w != nil && l >= h.level.Level()
}

// Handle implements slog.Handler: it writes r as one event.
func (h *EventHandler) Handle(ctx context.Context, r slog.Record) error {
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	if h.sink.w == nil {
		return nil
	}
	h.sink.buf.Reset()
	if err := h.text.Handle(ctx, r); err != nil {
		return fmt.Errorf("format event: %w", err)
	}
	msg := eventText(r.Message, strings.TrimSuffix(h.sink.buf.String(), "\n"))
	var err error
	switch {
	case r.Level >= slog.LevelError:
		err = h.sink.w.Error(eventIDError, msg)
	case r.Level >= slog.LevelWarn:
		err = h.sink.w.Warning(eventIDWarning, msg)
	default:
		err = h.sink.w.Info(eventIDInfo, msg)
	}
	if err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (h *EventHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &EventHandler{sink: h.sink, text: h.text.WithAttrs(attrs), level: h.level}
}

// WithGroup implements slog.Handler.
func (h *EventHandler) WithGroup(name string) slog.Handler {
	return &EventHandler{sink: h.sink, text: h.text.WithGroup(name), level: h.level}
}

// Close releases the event log; afterwards the handler and every handler
// derived from it discard records. Closing twice is harmless.
func (h *EventHandler) Close() error {
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	c := h.sink.c
	h.sink.w, h.sink.c = nil, nil
	if c == nil {
		return nil
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("close event log: %w", err)
	}
	return nil
}

// eventText joins a message and its rendered attributes into an event's
// text: NUL bytes (which an event string cannot hold) written as \x00,
// invalid UTF-8 replaced, and the whole cut at maxEventLen bytes on a
// character boundary.
func eventText(msg, attrs string) string {
	s := msg
	if attrs != "" {
		s += " " + attrs
	}
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", `\x00`), "\uFFFD")
	if len(s) <= maxEventLen {
		return s
	}
	cut := maxEventLen - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}
