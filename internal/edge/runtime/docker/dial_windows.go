//go:build windows

package docker

import (
	"context"
	"fmt"
	"net"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

// unixDialer reports that the Docker runtime cannot reach the Engine over a
// Unix socket on Windows, where Docker listens on a named pipe; expose the
// Engine on tcp:// instead.
func unixDialer(path string) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	return nil, fmt.Errorf("docker engine socket unix://%s: unix sockets on Windows: %w; expose the engine on tcp://", path, runtime.ErrUnsupported)
}
