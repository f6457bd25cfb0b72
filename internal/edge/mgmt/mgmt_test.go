package mgmt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/edge/reconcile"
	"github.com/muster-iot/muster/internal/edge/runtime"
)

// guard bounds every wait on the server so a broken test fails instead of
// hanging; it is a failure guard, never a timing assertion.
const guard = 30 * time.Second

// call is one request the fake backend received.
type call struct {
	method string
	module string
	opts   runtime.LogOptions
	// deadline is whether the backend's ctx carried a deadline.
	deadline bool
}

// fakeBackend records calls and answers canned values; err, when set, is
// what every method that can fail returns.
type fakeBackend struct {
	status Status
	rows   []reconcile.ListRow
	logs   string
	reprov Reprovisioned
	err    error
	// logsFn, when set, answers Logs instead of logs/err.
	logsFn func(ctx context.Context, module string, o runtime.LogOptions) (io.ReadCloser, error)

	mu    sync.Mutex
	calls []call
}

func (f *fakeBackend) record(ctx context.Context, c call) {
	_, c.deadline = ctx.Deadline()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

func (f *fakeBackend) got() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeBackend) Status(ctx context.Context) Status {
	f.record(ctx, call{method: "Status"})
	return f.status
}

func (f *fakeBackend) Modules(ctx context.Context) ([]reconcile.ListRow, error) {
	f.record(ctx, call{method: "Modules"})
	if f.err != nil {
		return nil, f.err
	}
	return f.rows, nil
}

func (f *fakeBackend) Logs(ctx context.Context, module string, o runtime.LogOptions) (io.ReadCloser, error) {
	f.record(ctx, call{method: "Logs", module: module, opts: o})
	if f.logsFn != nil {
		return f.logsFn(ctx, module, o)
	}
	if f.err != nil {
		return nil, f.err
	}
	return io.NopCloser(strings.NewReader(f.logs)), nil
}

func (f *fakeBackend) RestartModule(ctx context.Context, module string) error {
	f.record(ctx, call{method: "RestartModule", module: module})
	return f.err
}

func (f *fakeBackend) Reprovision(ctx context.Context) (Reprovisioned, error) {
	f.record(ctx, call{method: "Reprovision"})
	if f.err != nil {
		return Reprovisioned{}, f.err
	}
	return f.reprov, nil
}

func (f *fakeBackend) Restart(ctx context.Context) error {
	f.record(ctx, call{method: "Restart"})
	return f.err
}

// server is one running Serve.
type server struct {
	home   string
	path   string
	cancel context.CancelFunc
	wait   func() error
	client *Client

	once    sync.Once
	waitErr error
}

// stop cancels the server's ctx and waits for it, failing the test if wait
// never returns. It is safe to call more than once.
func (s *server) stop(t *testing.T) error {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		done := make(chan error, 1)
		go func() { done <- s.wait() }()
		select {
		case s.waitErr = <-done:
		case <-time.After(guard):
			s.waitErr = errors.New("wait did not return after the ctx was cancelled")
			t.Error(s.waitErr)
		}
	})
	return s.waitErr
}

// newHome returns a fresh home directory whose socket path fits a Unix
// socket address.
func newHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	if p := SocketPath(home); len(p) > 100 {
		t.Fatalf("temporary socket path %s is too long for this test", p)
	}
	return home
}

// serveOn starts the real server over h in home.
func serveOn(t *testing.T, home string, h http.Handler) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr, wait, err := Serve(ctx, home, h, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatalf("Serve: %v", err)
	}
	if want := SocketPath(home); addr != want {
		t.Errorf("Serve returned address %q, want %q", addr, want)
	}
	s := &server{home: home, path: addr, cancel: cancel, wait: wait, client: NewClient(addr)}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// serveBackend starts the real server and handler over b.
func serveBackend(t *testing.T, b Backend) *server {
	t.Helper()
	return serveOn(t, newHome(t), NewHandler(b, nil))
}

func readAll(t *testing.T, rc io.ReadCloser) string {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read the log stream: %v", err)
	}
	return string(b)
}

func TestStatusRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	want := Status{
		Version:    "1.2.3",
		PID:        4242,
		StartedAt:  at,
		ConfigFile: "/etc/aziot/config.toml",
		Homedir:    "/var/lib/aziot/edged",
		Provisioning: Provisioning{
			Source: "dps", State: "assigned", Hub: "hub.example", DeviceID: "dev1",
			RegistrationID: "reg1", ProvisionedAt: at.Add(time.Minute),
		},
		Device:         Connection{Identity: "dev1", Connected: true, Since: at},
		Agent:          Connection{Identity: "dev1/$edgeAgent", LastError: "no route"},
		AppliedVersion: 7,
		AgentError:     "image pull failed",
		EdgeHubAddress: "127.0.0.1:8883",
		Modules: []reconcile.ListRow{
			{Name: "edgeAgent", Status: "running", Description: "Up 3 minutes", Config: "agent:1"},
		},
	}
	b := &fakeBackend{status: want}
	s := serveBackend(t, b)

	got, err := s.client.Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Status = %+v\nwant   %+v", got, want)
	}
	if calls := b.got(); len(calls) != 1 || calls[0].method != "Status" {
		t.Errorf("backend calls = %+v, want one Status", calls)
	}
}

func TestModulesRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		rows []reconcile.ListRow
	}{
		{"none", nil},
		{"some", []reconcile.ListRow{
			{Name: "edgeAgent", Status: "running", Description: "Up 2 hours", Config: "mcr/agent:1.5"},
			{Name: "temp sensor", Status: "failed", Description: "Failed (1) 3 seconds ago", Config: "sensor:1"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBackend{rows: tt.rows}
			s := serveBackend(t, b)
			got, err := s.client.Modules(context.Background())
			if err != nil {
				t.Fatalf("Modules: %v", err)
			}
			if !reflect.DeepEqual(got, tt.rows) {
				t.Errorf("Modules = %+v, want %+v", got, tt.rows)
			}
			if calls := b.got(); len(calls) != 1 || calls[0].method != "Modules" {
				t.Errorf("backend calls = %+v, want one Modules", calls)
			}
		})
	}
}

// TestLogsOptions checks that what the client asks for is what the backend
// gets, module names included.
func TestLogsOptions(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	until := since.Add(90 * time.Minute)
	cet := time.FixedZone("CET", 3600)
	tests := []struct {
		name   string
		module string
		opts   runtime.LogOptions
		want   runtime.LogOptions
	}{
		{name: "defaults", module: "edgeAgent"},
		{name: "tail", module: "m", opts: runtime.LogOptions{Tail: 25}, want: runtime.LogOptions{Tail: 25}},
		{name: "since and until", module: "m",
			opts: runtime.LogOptions{Since: since, Until: until},
			want: runtime.LogOptions{Since: since, Until: until}},
		{name: "since in another zone", module: "m",
			opts: runtime.LogOptions{Since: since.In(cet)},
			want: runtime.LogOptions{Since: since}},
		{name: "follow and timestamps", module: "m",
			opts: runtime.LogOptions{Follow: true, Timestamps: true},
			want: runtime.LogOptions{Follow: true, Timestamps: true}},
		{name: "everything", module: "SimulatedTemperatureSensor",
			opts: runtime.LogOptions{Tail: 1, Since: since, Until: until, Follow: true, Timestamps: true},
			want: runtime.LogOptions{Tail: 1, Since: since, Until: until, Follow: true, Timestamps: true}},
		{name: "escaped name", module: "a b/c%d", want: runtime.LogOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBackend{logs: "line 1\nline 2\n"}
			s := serveBackend(t, b)
			rc, err := s.client.Logs(context.Background(), tt.module, tt.opts)
			if err != nil {
				t.Fatalf("Logs: %v", err)
			}
			if got := readAll(t, rc); got != b.logs {
				t.Errorf("log text = %q, want %q", got, b.logs)
			}
			calls := b.got()
			if len(calls) != 1 || calls[0].method != "Logs" {
				t.Fatalf("backend calls = %+v, want one Logs", calls)
			}
			c := calls[0]
			if c.module != tt.module {
				t.Errorf("backend got module %q, want %q", c.module, tt.module)
			}
			if !sameLogOptions(c.opts, tt.want) {
				t.Errorf("backend got options %+v, want %+v", c.opts, tt.want)
			}
		})
	}
}

func sameLogOptions(a, b runtime.LogOptions) bool {
	return a.Tail == b.Tail && a.Since.Equal(b.Since) && a.Until.Equal(b.Until) &&
		a.Follow == b.Follow && a.Timestamps == b.Timestamps
}

// TestLogsQueryParsing drives the server's query parsing with raw queries,
// including ones the client never sends.
func TestLogsQueryParsing(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		query   string
		want    runtime.LogOptions
		wantErr string // in the error, which must not reach the backend
	}{
		{query: "", want: runtime.LogOptions{}},
		{query: "tail=all", want: runtime.LogOptions{}},
		{query: "tail=0", want: runtime.LogOptions{}},
		{query: "tail=10", want: runtime.LogOptions{Tail: 10}},
		{query: "since=2026-01-02T03:04:05Z", want: runtime.LogOptions{Since: since}},
		{query: "since=2026-01-02T04:04:05%2B01:00", want: runtime.LogOptions{Since: since}},
		{query: "until=2026-01-02T03:04:05Z", want: runtime.LogOptions{Until: since}},
		{query: "follow=true&timestamps=true", want: runtime.LogOptions{Follow: true, Timestamps: true}},
		{query: "follow=1&timestamps=yes", want: runtime.LogOptions{}},
		{query: "tail=ten", wantErr: `tail "ten" is not a number of lines`},
		{query: "tail=-1", wantErr: `tail "-1" is not a number of lines`},
		{query: "tail=1.5", wantErr: `tail "1.5" is not a number of lines`},
		{query: "since=yesterday", wantErr: `since "yesterday" is not an RFC 3339 time`},
		{query: "since=2026-01-02", wantErr: `since "2026-01-02" is not an RFC 3339 time`},
		{query: "until=1735689600", wantErr: `until "1735689600" is not an RFC 3339 time`},
	}
	b := &fakeBackend{logs: "x\n"}
	s := serveBackend(t, b)
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			before := len(b.got())
			resp, err := s.client.open(context.Background(), http.MethodGet, "/modules/m/logs?"+tt.query)
			if tt.wantErr != "" {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("no error, want one containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "400") {
					t.Errorf("error %q, want a 400 containing %q", err, tt.wantErr)
				}
				if errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
					t.Errorf("error %q maps to a backend sentinel", err)
				}
				if n := len(b.got()); n != before {
					t.Errorf("a bad query reached the backend")
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			readAll(t, resp.Body)
			calls := b.got()
			if len(calls) != before+1 {
				t.Fatalf("backend got %d calls, want 1", len(calls)-before)
			}
			if got := calls[len(calls)-1].opts; !sameLogOptions(got, tt.want) {
				t.Errorf("backend got options %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRestartModuleReprovisionRestart(t *testing.T) {
	want := Reprovisioned{Hub: "hub2.example", DeviceID: "dev1", Registered: true, Changed: true, Why: "hub changed"}
	b := &fakeBackend{reprov: want}
	s := serveBackend(t, b)
	ctx := context.Background()

	if err := s.client.RestartModule(ctx, "temp sensor"); err != nil {
		t.Fatalf("RestartModule: %v", err)
	}
	got, err := s.client.Reprovision(ctx)
	if err != nil {
		t.Fatalf("Reprovision: %v", err)
	}
	if got != want {
		t.Errorf("Reprovision = %+v, want %+v", got, want)
	}
	if err := s.client.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}

	calls := b.got()
	wantCalls := []call{
		{method: "RestartModule", module: "temp sensor"},
		// a reprovisioning is bounded by the server (maxReprovisionTime)
		{method: "Reprovision", deadline: true},
		{method: "Restart"},
	}
	if !reflect.DeepEqual(calls, wantCalls) {
		t.Errorf("backend calls = %+v\nwant %+v", calls, wantCalls)
	}
}

// TestBackendErrors checks how every failing backend call reaches the
// client: the sentinel it maps to and the backend's message.
func TestBackendErrors(t *testing.T) {
	errs := []struct {
		name     string
		err      error
		sentinel error // nil: a plain 500
		inMsg    []string
	}{
		{"mgmt not found", fmt.Errorf("module %q: %w", "ghost", ErrNotFound), ErrNotFound,
			[]string{`module "ghost": not found`}},
		{"runtime not found", fmt.Errorf("inspect ghost: %w", runtime.ErrNotFound), ErrNotFound,
			[]string{"inspect ghost: module not found"}},
		{"unavailable", fmt.Errorf("manual provisioning cannot reprovision: %w", ErrUnavailable), ErrUnavailable,
			[]string{"manual provisioning cannot reprovision"}},
		{"internal", errors.New("docker daemon gone"), nil,
			[]string{"the daemon answered 500", "docker daemon gone"}},
	}
	ops := []struct {
		name string
		do   func(context.Context, *Client) error
	}{
		{"Modules", func(ctx context.Context, c *Client) error { _, err := c.Modules(ctx); return err }},
		{"Logs", func(ctx context.Context, c *Client) error {
			rc, err := c.Logs(ctx, "ghost", runtime.LogOptions{Tail: 5})
			if err == nil {
				rc.Close()
			}
			return err
		}},
		{"RestartModule", func(ctx context.Context, c *Client) error { return c.RestartModule(ctx, "ghost") }},
		{"Reprovision", func(ctx context.Context, c *Client) error { _, err := c.Reprovision(ctx); return err }},
		{"Restart", func(ctx context.Context, c *Client) error { return c.Restart(ctx) }},
	}
	for _, e := range errs {
		t.Run(e.name, func(t *testing.T) {
			b := &fakeBackend{err: e.err}
			s := serveBackend(t, b)
			for _, op := range ops {
				err := op.do(context.Background(), s.client)
				if err == nil {
					t.Errorf("%s: no error, want %v", op.name, e.err)
					continue
				}
				for _, sent := range []error{ErrNotFound, ErrUnavailable, ErrNotRunning} {
					if is, want := errors.Is(err, sent), sent == e.sentinel; is != want {
						t.Errorf("%s: errors.Is(%q, %q) = %v, want %v", op.name, err, sent, is, want)
					}
				}
				for _, m := range e.inMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("%s: error %q does not contain %q", op.name, err, m)
					}
				}
			}
			if n := len(b.got()); n != len(ops) {
				t.Errorf("backend got %d calls, want %d", n, len(ops))
			}
		})
	}
}

// TestUnexpectedAnswers covers answers the handler does not produce
// itself: unknown routes, wrong methods, non-JSON bodies.
func TestUnexpectedAnswers(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/", NewHandler(&fakeBackend{}, nil))
	mux.HandleFunc("GET /garbage", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{not json")
	})
	mux.HandleFunc("GET /plain-error", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway of some kind", http.StatusBadGateway)
	})
	s := serveOn(t, newHome(t), mux)
	ctx := context.Background()

	tests := []struct {
		method, path string
		sentinel     error
		inMsg        []string
	}{
		{http.MethodGet, "/nowhere", ErrNotFound, []string{"404 page not found"}},
		{http.MethodDelete, "/status", nil, []string{"405"}},
		{http.MethodGet, "/restart", nil, []string{"405"}},
		{http.MethodGet, "/plain-error", nil, []string{"502", "bad gateway of some kind"}},
		{http.MethodGet, "/garbage", nil, []string{"GET /garbage: decode the daemon's answer"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			var out map[string]any
			err := s.client.do(ctx, tt.method, tt.path, &out)
			if err == nil {
				t.Fatalf("no error")
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("error %q is not %q", err, tt.sentinel)
			}
			for _, m := range tt.inMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
		})
	}
}

// pipeLogs is a follower's log stream: lines sent on lines reach the
// reader; the stream ends when the request's ctx ends, and released is
// closed then.
type pipeLogs struct {
	lines    chan string
	released chan struct{}
}

func newPipeLogs() (*pipeLogs, func(ctx context.Context, _ string, _ runtime.LogOptions) (io.ReadCloser, error)) {
	p := &pipeLogs{lines: make(chan string, 1), released: make(chan struct{})}
	var once sync.Once
	return p, func(ctx context.Context, _ string, _ runtime.LogOptions) (io.ReadCloser, error) {
		r, w := io.Pipe()
		go func() {
			defer once.Do(func() { close(p.released) })
			for {
				select {
				case l := <-p.lines:
					if _, err := io.WriteString(w, l); err != nil {
						return
					}
				case <-ctx.Done():
					w.CloseWithError(ctx.Err())
					return
				}
			}
		}()
		return r, nil
	}
}

// readLine reads one line of a follow stream, failing after the guard.
func readLine(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := br.ReadString('\n')
		ch <- res{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read a followed line: %v", r.err)
		}
		return r.s
	case <-time.After(guard):
		t.Fatalf("a followed line never arrived (not flushed?)")
		return ""
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(guard):
		t.Fatalf("%s", what)
	}
}

// TestLogsFollow checks that a follower sees every line as it is written
// and that hanging up releases the backend's stream.
func TestLogsFollow(t *testing.T) {
	p, logsFn := newPipeLogs()
	b := &fakeBackend{logsFn: logsFn}
	s := serveBackend(t, b)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The server answers before the module's first line: Logs returns
	// while the module is still quiet (the guard fails the test if not).
	type answer struct {
		rc  io.ReadCloser
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		rc, err := s.client.Logs(ctx, "m", runtime.LogOptions{Follow: true})
		answered <- answer{rc, err}
	}()
	var rc io.ReadCloser
	select {
	case a := <-answered:
		if a.err != nil {
			t.Fatalf("Logs: %v", a.err)
		}
		rc = a.rc
	case <-time.After(guard):
		t.Fatal("Logs -f of a quiet module was not answered before its first line")
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	for _, line := range []string{"first\n", "second\n", "third\n"} {
		p.lines <- line
		if got := readLine(t, br); got != line {
			t.Fatalf("followed line %q, want %q", got, line)
		}
	}
	if calls := b.got(); len(calls) != 1 || !calls[0].opts.Follow {
		t.Errorf("backend calls = %+v, want one Logs with Follow", calls)
	}

	cancel()
	rc.Close()
	waitClosed(t, p.released, "the backend's log stream was not released when the follower hung up")
}

func TestShutdown(t *testing.T) {
	b := &fakeBackend{}
	s := serveBackend(t, b)
	if _, err := s.client.Status(context.Background()); err != nil {
		t.Fatalf("Status before shutdown: %v", err)
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if _, err := os.Lstat(s.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after shutdown: %v, want it removed", err)
	}
	_, err := s.client.Status(context.Background())
	if !errors.Is(err, ErrNotRunning) {
		t.Errorf("Status after shutdown: %v, want ErrNotRunning", err)
	}
	// the home directory is free for the next daemon
	s2 := serveOn(t, s.home, NewHandler(b, nil))
	if _, err := s2.client.Status(context.Background()); err != nil {
		t.Errorf("Status on a restarted server: %v", err)
	}
}

// TestShutdownWithFollower checks that a follower does not keep the
// server from stopping: the server gives it its grace period, then cuts
// it, which ends the backend's stream.
func TestShutdownWithFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the server's shutdown grace period")
	}
	p, logsFn := newPipeLogs()
	s := serveBackend(t, &fakeBackend{logsFn: logsFn})
	rc, err := s.client.Logs(context.Background(), "m", runtime.LogOptions{Follow: true})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	p.lines <- "hello\n"
	if got := readLine(t, br); got != "hello\n" {
		t.Fatalf("followed line %q", got)
	}

	if err := s.stop(t); err != nil {
		t.Fatalf("wait: %v", err)
	}
	waitClosed(t, p.released, "the backend's log stream was not released at shutdown")
	// the follower sees its stream end
	readDone := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, br); readDone <- err }()
	select {
	case <-readDone:
	case <-time.After(guard):
		t.Fatal("the follower's stream did not end at shutdown")
	}
}

func TestSecondServeRefused(t *testing.T) {
	b := &fakeBackend{status: Status{PID: 1}}
	s := serveBackend(t, b)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, wait, err := Serve(ctx, s.home, NewHandler(&fakeBackend{}, nil), slog.New(slog.DiscardHandler))
	if err == nil {
		wait()
		t.Fatal("a second Serve on a home directory in use succeeded")
	}
	for _, m := range []string{"another iotedge daemon is running", s.path} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not contain %q", err, m)
		}
	}
	// the running server is untouched
	st, err := s.client.Status(context.Background())
	if err != nil || st.PID != 1 {
		t.Errorf("first server after the refused start: %+v, %v", st, err)
	}
}

func TestClientNotRunning(t *testing.T) {
	path := SocketPath(newHome(t)) // nothing there
	c := NewClient(path)
	ctx := context.Background()
	ops := map[string]func() error{
		"Status":        func() error { _, err := c.Status(ctx); return err },
		"Modules":       func() error { _, err := c.Modules(ctx); return err },
		"Logs":          func() error { _, err := c.Logs(ctx, "m", runtime.LogOptions{}); return err },
		"RestartModule": func() error { return c.RestartModule(ctx, "m") },
		"Reprovision":   func() error { _, err := c.Reprovision(ctx); return err },
		"Restart":       func() error { return c.Restart(ctx) },
	}
	for name, op := range ops {
		err := op()
		if !errors.Is(err, ErrNotRunning) {
			t.Errorf("%s: %v, want ErrNotRunning", name, err)
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name the socket %s", name, err, path)
		}
	}
}

func TestIsNotRunning(t *testing.T) {
	dial := func(err error) error {
		return &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", err)}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no socket file", dial(syscall.ENOENT), true},
		{"nobody listens", dial(syscall.ECONNREFUSED), true},
		{"wrapped by the http client", fmt.Errorf("Get: %w", dial(syscall.ECONNREFUSED)), true},
		{"platform no-socket error", dial(errNoSocket), true},
		{"permission denied", dial(syscall.EACCES), false},
		{"refused on read", &net.OpError{Op: "read", Net: "unix", Err: syscall.ECONNREFUSED}, false},
		{"not a net error", syscall.ENOENT, false},
		{"deadline", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isNotRunning(tt.err); got != tt.want {
				t.Errorf("isNotRunning(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestParseHost(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "/var/lib/aziot/edged/mgmt.sock", want: "/var/lib/aziot/edged/mgmt.sock"},
		{in: "unix:///var/run/iotedge/mgmt.sock", want: "/var/run/iotedge/mgmt.sock"},
		{in: "unix:///C:/ProgramData/iotedge/mgmt.sock", want: "C:/ProgramData/iotedge/mgmt.sock"},
		{in: "http://localhost:15580", wantErr: true},
		{in: "unix://", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseHost(tt.in)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.in) {
					t.Errorf("ParseHost(%q) = %q, %v; want an error naming it", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseHost(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}
