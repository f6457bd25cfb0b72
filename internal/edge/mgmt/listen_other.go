//go:build !windows

package mgmt

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
)

// maxSocketPath is the longest socket path the kernel takes (sun_path less
// its terminating NUL; 103 on the BSDs and macOS, the tighter bound).
const maxSocketPath = 103

// listen binds the management socket at path, readable and writable by
// its owner only. A socket file left by a daemon that died is replaced;
// one a live daemon answers on is not.
func listen(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("management socket %s: the path is %d bytes, longer than the %d a Unix socket allows; use a shorter homedir", path, len(path), maxSocketPath)
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	// Connecting needs write permission on the socket file: the umask
	// (022 usually) already keeps others out until the chmod below.
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("management socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("management socket: restrict %s: %w", path, err)
	}
	return ln, nil
}

// clearStale removes a socket file nobody answers on.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("management socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("management socket: %s exists and is not a socket; remove it", path)
	}
	if probe(path) {
		return fmt.Errorf("management socket %s: another iotedge daemon is running (stop it first)", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("management socket: remove the stale %s: %w", path, err)
	}
	return nil
}

// removeSocket removes the socket file after the server stopped.
func removeSocket(path string) { _ = os.Remove(path) }

// errNoSocket never matches on this platform: a missing socket is ENOENT.
var errNoSocket = errors.New("no socket")
