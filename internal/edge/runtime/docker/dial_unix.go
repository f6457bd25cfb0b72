//go:build !windows

package docker

import (
	"context"
	"net"
	"time"
)

// unixDialer returns a dialer that connects every request to the Engine's
// Unix socket at path, whatever host the URL names.
func unixDialer(path string) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", path)
	}, nil
}
