package mgmt

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// listen binds the management socket at path (an AF_UNIX socket, which
// Windows 10 1803 and later support). The home directory's ACL, which
// "iotedge config apply" restricts to SYSTEM and Administrators, protects
// it. A socket file left by a daemon that died is replaced; one a live
// daemon answers on is not.
func listen(path string) (net.Listener, error) {
	if _, err := os.Lstat(path); err == nil {
		if probe(path) {
			return nil, fmt.Errorf("management socket %s: another iotedge daemon is running (stop it first)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("management socket: remove the stale %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("management socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}

// removeSocket removes the socket file after the server stopped.
func removeSocket(path string) { _ = os.Remove(path) }

// errNoSocket is what dialling a missing AF_UNIX socket gives on Windows
// (WSAECONNREFUSED or WSAENOENT map to the syscall errors; a missing file
// reports ERROR_FILE_NOT_FOUND).
var errNoSocket = syscall.ERROR_FILE_NOT_FOUND
