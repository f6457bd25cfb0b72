//go:build !windows

package mgmt

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// staleSocket leaves a socket file nobody listens on at path, as a daemon
// that died does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("stale socket %s: %v, %v", path, fi, err)
	}
}

// TestSocketOwnerOnly checks the socket is restricted to its owner even
// under a umask that would leave it open to everyone. Not parallel: the
// umask is the process's.
func TestSocketOwnerOnly(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	s := serveBackend(t, &fakeBackend{})
	fi, err := os.Lstat(s.path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		t.Errorf("%s is %v, want a socket", s.path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %v, want -rw-------", perm)
	}
	if _, err := s.client.Status(context.Background()); err != nil {
		t.Errorf("the owner cannot use the socket: %v", err)
	}
}

func TestStaleSocketCleared(t *testing.T) {
	home := newHome(t)
	staleSocket(t, SocketPath(home))
	s := serveOn(t, home, NewHandler(&fakeBackend{status: Status{PID: 7}}, nil))
	st, err := s.client.Status(context.Background())
	if err != nil || st.PID != 7 {
		t.Fatalf("Status after replacing a stale socket: %+v, %v", st, err)
	}
}

// TestClientStaleSocket: a socket file with nobody behind it (connection
// refused) also means the daemon is not running.
func TestClientStaleSocket(t *testing.T) {
	path := SocketPath(newHome(t))
	staleSocket(t, path)
	_, err := NewClient(path).Status(context.Background())
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), path) {
		t.Errorf("Status on a stale socket: %v, want ErrNotRunning naming %s", err, path)
	}
}

// TestServeRefuses covers the socket paths Serve will not take over.
func TestServeRefuses(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T) (home string)
		wantErr []string
		// keep is a file that must survive the refusal
		keep bool
	}{
		{
			name: "not a socket",
			prepare: func(t *testing.T) string {
				home := newHome(t)
				if err := os.WriteFile(SocketPath(home), []byte("precious"), 0o600); err != nil {
					t.Fatal(err)
				}
				return home
			},
			wantErr: []string{"exists and is not a socket; remove it"},
			keep:    true,
		},
		{
			name: "a directory",
			prepare: func(t *testing.T) string {
				home := newHome(t)
				if err := os.Mkdir(SocketPath(home), 0o700); err != nil {
					t.Fatal(err)
				}
				return home
			},
			wantErr: []string{"exists and is not a socket"},
			keep:    true,
		},
		{
			name: "path too long",
			prepare: func(t *testing.T) string {
				home := filepath.Join(t.TempDir(), strings.Repeat("h", 100))
				if err := os.Mkdir(home, 0o700); err != nil {
					t.Fatal(err)
				}
				return home
			},
			wantErr: []string{"longer than the 103 a Unix socket allows", "use a shorter homedir"},
		},
		{
			name: "no home directory",
			prepare: func(t *testing.T) string {
				return filepath.Join(newHome(t), "missing")
			},
			wantErr: []string{"management socket"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := tt.prepare(t)
			path := SocketPath(home)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, wait, err := Serve(ctx, home, NewHandler(&fakeBackend{}, nil), slog.New(slog.DiscardHandler))
			if err == nil {
				cancel()
				wait()
				t.Fatal("Serve succeeded")
			}
			for _, m := range append(tt.wantErr, path) {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
			if tt.keep {
				if _, err := os.Lstat(path); err != nil {
					t.Errorf("Serve removed what was at %s: %v", path, err)
				}
			}
		})
	}
}
