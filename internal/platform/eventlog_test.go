package platform

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// event is one event a fakeEventLog received.
type event struct {
	Type string
	ID   uint32
	Msg  string
}

// fakeEventLog records events; it stands in for *eventlog.Log.
type fakeEventLog struct {
	mu     sync.Mutex
	events []event
	closed int
	fail   error
}

func (f *fakeEventLog) add(typ string, eid uint32, msg string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.events = append(f.events, event{typ, eid, msg})
	return nil
}

func (f *fakeEventLog) Info(eid uint32, msg string) error    { return f.add("info", eid, msg) }
func (f *fakeEventLog) Warning(eid uint32, msg string) error { return f.add("warning", eid, msg) }
func (f *fakeEventLog) Error(eid uint32, msg string) error   { return f.add("error", eid, msg) }
func (f *fakeEventLog) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

func TestEventHandler(t *testing.T) {
	cases := []struct {
		name  string
		level slog.Leveler
		log   func(l *slog.Logger)
		want  []event
	}{
		{
			name: "levels map to event types",
			log: func(l *slog.Logger) {
				l.Debug("not sent")
				l.Info("service running", "service", "iotedge")
				l.Warn("notify failed", "err", errors.New("no socket"))
				l.Error("service failed", "err", "boom")
				l.Log(context.Background(), slog.LevelError+4, "worse")
			},
			want: []event{
				{"info", 1, "service running service=iotedge"},
				{"warning", 2, `notify failed err="no socket"`},
				{"error", 3, "service failed err=boom"},
				{"error", 3, "worse"},
			},
		},
		{
			name:  "debug level",
			level: slog.LevelDebug,
			log:   func(l *slog.Logger) { l.Debug("details", "n", 3) },
			want:  []event{{"info", 1, "details n=3"}},
		},
		{
			name:  "warn level",
			level: slog.LevelWarn,
			log:   func(l *slog.Logger) { l.Info("dropped"); l.Warn("kept") },
			want:  []event{{"warning", 2, "kept"}},
		},
		{
			name: "attributes and groups",
			log: func(l *slog.Logger) {
				l = l.With("module", "edgeAgent").WithGroup("req")
				l.Info("pull", "image", "mcr/x:1", "size", 42)
				l.Info("no attrs")
			},
			want: []event{
				{"info", 1, "pull module=edgeAgent req.image=mcr/x:1 req.size=42"},
				{"info", 1, "no attrs module=edgeAgent"},
			},
		},
		{
			name: "message with a newline and a NUL",
			log:  func(l *slog.Logger) { l.Info("line1\nline2\x00end") },
			want: []event{{"info", 1, "line1\nline2\\x00end"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeEventLog{}
			h := newEventHandler(f, f, tc.level)
			tc.log(slog.New(h))
			if diff := cmp.Diff(tc.want, f.events); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEventHandlerClose(t *testing.T) {
	f := &fakeEventLog{}
	h := newEventHandler(f, f, nil)
	derived := h.WithAttrs([]slog.Attr{slog.String("k", "v")})
	slog.New(derived).Info("before")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if derived.Enabled(context.Background(), slog.LevelError) {
		t.Error("a derived handler is enabled after Close")
	}
	slog.New(derived).Error("after")
	if diff := cmp.Diff([]event{{"info", 1, "before k=v"}}, f.events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if f.closed != 1 {
		t.Errorf("event log closed %d times, want 1", f.closed)
	}
}

func TestEventHandlerWriteError(t *testing.T) {
	f := &fakeEventLog{fail: errors.New("event log full")}
	h := newEventHandler(f, f, nil)
	var r slog.Record
	r.Level, r.Message = slog.LevelInfo, "x"
	err := h.Handle(context.Background(), r)
	if err == nil || err.Error() != "write event: event log full" {
		t.Errorf("Handle = %v, want the write error", err)
	}
}

func TestEventText(t *testing.T) {
	long := strings.Repeat("€", maxEventLen) // 3 bytes each
	got := eventText(long, "k=v")
	if len(got) > maxEventLen || !strings.HasSuffix(got, truncatedMark) || !utf8.ValidString(got) {
		t.Errorf("eventText of %d bytes = %d bytes, valid UTF-8 %v, suffix %q", len(long), len(got), utf8.ValidString(got), got[len(got)-20:])
	}
	if got := eventText("a\xffb", ""); got != "a\uFFFDb" {
		t.Errorf("eventText of invalid UTF-8 = %q", got)
	}
}

// FuzzEventText checks that any message and attributes become valid UTF-8
// without NUL within the event size bound.
func FuzzEventText(f *testing.F) {
	f.Add("service running", "service=iotedge")
	f.Add("\x00\xff", "")
	f.Add(strings.Repeat("é", maxEventLen/2), "k=v")
	f.Add(strings.Repeat("a", maxEventLen-1), "\x00")
	f.Fuzz(func(t *testing.T, msg, attrs string) {
		got := eventText(msg, attrs)
		if len(got) > maxEventLen {
			t.Fatalf("eventText is %d bytes, more than %d", len(got), maxEventLen)
		}
		if !utf8.ValidString(got) || strings.Contains(got, "\x00") {
			t.Fatalf("eventText(%q, %q) = %q has invalid UTF-8 or a NUL", msg, attrs, got)
		}
		if full := msg + " " + attrs; attrs != "" && utf8.ValidString(full) && !strings.Contains(full, "\x00") && len(full) <= maxEventLen && got != full {
			t.Fatalf("eventText(%q, %q) = %q, want them joined unchanged", msg, attrs, got)
		}
	})
}
