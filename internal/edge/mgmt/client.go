package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/muster-iot/muster/internal/edge/reconcile"
	"github.com/muster-iot/muster/internal/edge/runtime"
)

// maxAnswer caps a JSON answer read by the client.
const maxAnswer = 8 << 20

// Client talks to a daemon's management socket.
type Client struct {
	path string
	http *http.Client
}

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	return &Client{path: path, http: &http.Client{Transport: tr}}
}

// ParseHost turns an upstream-style management URI (unix:///path) or a
// plain path into the socket path.
func ParseHost(host string) (string, error) {
	if !strings.Contains(host, "://") {
		return host, nil
	}
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "unix" || u.Path == "" {
		return "", fmt.Errorf("--host %q is not unix:///path/to/mgmt.sock", host)
	}
	p := u.Path
	if len(p) > 2 && p[0] == '/' && p[2] == ':' { // unix:///C:/… on Windows
		p = p[1:]
	}
	return p, nil
}

// do performs one call; a 2xx JSON answer is decoded into out.
func (c *Client) do(ctx context.Context, method, path string, out any) error {
	resp, err := c.open(ctx, method, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode the daemon's answer: %w", method, path, err)
	}
	return nil
}

// open performs a call and returns a 2xx response, or the daemon's error.
func (c *Client) open(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://iotedged"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if isNotRunning(err) {
			return nil, fmt.Errorf("%w (no answer on %s); start it with \"iotedge service start\" or \"iotedge daemon\"", ErrNotRunning, c.path)
		}
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, c.path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	var eb errorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &eb) == nil && eb.Message != "" {
		msg = eb.Message
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, msg)
	case http.StatusConflict:
		return nil, fmt.Errorf("%w: %s", ErrUnavailable, msg)
	}
	return nil, fmt.Errorf("the daemon answered %d: %s", resp.StatusCode, msg)
}

// isNotRunning reports whether a dial error means nobody listens.
func isNotRunning(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return false
	}
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, errNoSocket)
}

// Status returns the daemon's state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/status", &s)
	return s, err
}

// Modules returns the rows of `iotedge list`.
func (c *Client) Modules(ctx context.Context) ([]reconcile.ListRow, error) {
	var rows []reconcile.ListRow
	err := c.do(ctx, http.MethodGet, "/modules", &rows)
	return rows, err
}

// Logs streams a module's log; the caller closes the reader.
func (c *Client) Logs(ctx context.Context, module string, o runtime.LogOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if o.Tail > 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	if !o.Since.IsZero() {
		q.Set("since", o.Since.UTC().Format(time.RFC3339Nano))
	}
	if !o.Until.IsZero() {
		q.Set("until", o.Until.UTC().Format(time.RFC3339Nano))
	}
	if o.Follow {
		q.Set("follow", "true")
	}
	if o.Timestamps {
		q.Set("timestamps", "true")
	}
	resp, err := c.open(ctx, http.MethodGet, "/modules/"+url.PathEscape(module)+"/logs?"+q.Encode())
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// RestartModule restarts one module.
func (c *Client) RestartModule(ctx context.Context, module string) error {
	return c.do(ctx, http.MethodPost, "/modules/"+url.PathEscape(module)+"/restart", nil)
}

// Reprovision registers with DPS again.
func (c *Client) Reprovision(ctx context.Context) (Reprovisioned, error) {
	var r Reprovisioned
	err := c.do(ctx, http.MethodPost, "/reprovision", &r)
	return r, err
}

// Restart asks the daemon to restart in its process.
func (c *Client) Restart(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/restart", nil)
}
