package platform

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// notifyListener is a stand-in for systemd's notification socket.
type notifyListener struct {
	conn *net.UnixConn
	addr string
}

// listenNotify binds a unixgram socket and points NOTIFY_SOCKET at it.
// With abstract set it binds an abstract socket (NOTIFY_SOCKET=@name).
func listenNotify(t *testing.T, abstract bool) *notifyListener {
	t.Helper()
	var addr string
	if abstract {
		addr = "@muster-notify-test-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	} else {
		// A short directory: socket paths are limited to 108 bytes.
		dir, err := os.MkdirTemp("", "sdn")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		addr = filepath.Join(dir, "notify.sock")
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", addr)
	return &notifyListener{conn: conn, addr: addr}
}

// receive reads exactly n datagrams; sends on a local datagram socket are
// queued before Notify returns, so no reader waits long.
func (l *notifyListener) receive(t *testing.T, n int) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 4096)
	for range n {
		if err := l.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		k, err := l.conn.Read(buf)
		if err != nil {
			t.Fatalf("read notification %d of %d: %v", len(got)+1, n, err)
		}
		got = append(got, string(buf[:k]))
	}
	return got
}

// empty checks that nothing more was sent.
func (l *notifyListener) empty(t *testing.T) {
	t.Helper()
	if err := l.conn.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if k, err := l.conn.Read(buf); err == nil {
		t.Errorf("unexpected notification %q", buf[:k])
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read: %v", err)
	}
}

func TestNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		name := "path socket"
		if abstract {
			name = "abstract socket"
		}
		t.Run(name, func(t *testing.T) {
			l := listenNotify(t, abstract)
			for _, s := range []string{Ready, Watchdog, "STATUS=x\nRELOADING=1", Stopping} {
				if err := Notify(s); err != nil {
					t.Fatalf("Notify(%q): %v", s, err)
				}
			}
			if err := NotifyStatus("2 modules\nrunning"); err != nil {
				t.Fatal(err)
			}
			want := []string{"READY=1", "WATCHDOG=1", "STATUS=x\nRELOADING=1", "STOPPING=1", "STATUS=2 modules running"}
			if diff := cmp.Diff(want, l.receive(t, len(want))); diff != "" {
				t.Errorf("notifications (-want +got):\n%s", diff)
			}
			l.empty(t)
		})
	}
}

func TestNotifyRejectsMalformedStateWithoutSending(t *testing.T) {
	l := listenNotify(t, false)
	for _, s := range []string{"", "READY", "ready=1", "READY=1\x00"} {
		if err := Notify(s); err == nil || !strings.HasPrefix(err.Error(), "notify state: ") {
			t.Errorf("Notify(%q) = %v, want a notify state error", s, err)
		}
	}
	l.empty(t)
}

func TestNotifyWithoutSocketIsNoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify(Ready); err != nil {
		t.Errorf("Notify without NOTIFY_SOCKET = %v, want nil", err)
	}
	if err := Notify("bad"); err == nil {
		t.Error("Notify of a malformed state without NOTIFY_SOCKET = nil, want an error")
	}
}

func TestNotifyDeadSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	addr := filepath.Join(dir, "gone.sock")
	t.Setenv("NOTIFY_SOCKET", addr)
	err = Notify(Ready)
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("Notify to a missing socket = %v, want ENOENT", err)
	}
	if want := `notify systemd at NOTIFY_SOCKET "` + addr + `"`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the socket (%s)", err, want)
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "2000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	d, err := WatchdogInterval()
	if err != nil || d != 2*time.Second {
		t.Errorf("WatchdogInterval() = %v, %v; want 2s", d, err)
	}
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if d, err := WatchdogInterval(); err != nil || d != 0 {
		t.Errorf("WatchdogInterval() for another process = %v, %v; want 0", d, err)
	}
}
