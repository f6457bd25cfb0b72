package docker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

// cassette is a recorded conversation with the Docker Engine API: the
// requests the client must send, in order, and the daemon's answers.
type cassette struct {
	Interactions []interaction `json:"interactions"`
}

type interaction struct {
	Request struct {
		Method  string              `json:"method"`
		Path    string              `json:"path"`
		Query   map[string][]string `json:"query"`
		Headers map[string]string   `json:"headers"`
		Body    json.RawMessage     `json:"body"`
	} `json:"request"`
	Response struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		// One of: a JSON body, raw text, newline-delimited JSON lines
		// (a progress stream) or multiplexed-stream frames.
		Body   json.RawMessage   `json:"body"`
		Text   string            `json:"text"`
		Lines  []json.RawMessage `json:"lines"`
		Frames []struct {
			Stream byte   `json:"stream"`
			Data   string `json:"data"`
		} `json:"frames"`
	} `json:"response"`
}

// replayer serves a cassette and checks every request against it.
type replayer struct {
	t     *testing.T
	name  string
	mu    sync.Mutex
	items []interaction
	next  int
}

func (p *replayer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next >= len(p.items) {
		p.t.Errorf("%s: unexpected request %s %s (all %d interactions used)", p.name, r.Method, r.URL, len(p.items))
		http.Error(w, `{"message":"unexpected request"}`, http.StatusInternalServerError)
		return
	}
	it := p.items[p.next]
	p.next++
	want := it.Request
	var problems []string
	if r.Method != want.Method || r.URL.Path != want.Path {
		problems = append(problems, "request "+r.Method+" "+r.URL.Path+", want "+want.Method+" "+want.Path)
	}
	if diff := cmp.Diff(want.Query, map[string][]string(r.URL.Query()), cmpopts.EquateEmpty()); diff != "" {
		problems = append(problems, "query (-want +got):\n"+diff)
	}
	for k, v := range want.Headers {
		if got := r.Header.Get(k); got != v {
			problems = append(problems, "header "+k+" = "+got+", want "+v)
		}
	}
	body, _ := io.ReadAll(r.Body)
	switch {
	case len(want.Body) == 0 && len(body) != 0:
		problems = append(problems, "unexpected body "+string(body))
	case len(want.Body) != 0:
		var wantV, gotV any
		if err := json.Unmarshal(want.Body, &wantV); err != nil {
			p.t.Fatalf("%s: cassette body: %v", p.name, err)
		}
		if err := json.Unmarshal(body, &gotV); err != nil {
			problems = append(problems, "body is not JSON: "+string(body))
		} else if diff := cmp.Diff(wantV, gotV); diff != "" {
			problems = append(problems, "body (-want +got):\n"+diff)
		}
	}
	if len(problems) > 0 {
		p.t.Errorf("%s: interaction %d:\n%s", p.name, p.next-1, strings.Join(problems, "\n"))
		http.Error(w, `{"message":"request does not match the recording"}`, http.StatusInternalServerError)
		return
	}
	resp := it.Response
	for k, v := range resp.Headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(resp.Status)
	switch {
	case len(resp.Body) > 0:
		w.Write(resp.Body)
	case resp.Text != "":
		io.WriteString(w, resp.Text)
	case resp.Lines != nil:
		for _, l := range resp.Lines {
			var compact bytes.Buffer
			json.Compact(&compact, l)
			compact.WriteString("\r\n")
			w.Write(compact.Bytes())
		}
	case resp.Frames != nil:
		for _, f := range resp.Frames {
			var hdr [8]byte
			hdr[0] = f.Stream
			binary.BigEndian.PutUint32(hdr[4:], uint32(len(f.Data)))
			w.Write(hdr[:])
			io.WriteString(w, f.Data)
		}
	}
}

// replay starts a recorded Docker Engine on a Unix socket and returns a
// runtime connected to it. The test fails if not every interaction is used.
func replay(t *testing.T, file string) *Runtime {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var c cassette
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	// Unix socket paths are short; keep the directory near the root.
	dir, err := os.MkdirTemp("", "dkr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	p := &replayer{t: t, name: file, items: c.Interactions}
	srv := httptest.NewUnstartedServer(p)
	srv.Listener = l
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.next != len(p.items) {
			t.Errorf("%s: %d of %d interactions were not requested", file, len(p.items)-p.next, len(p.items))
		}
	})
	r, err := New(Options{Host: "unix://" + sock})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCreateWithPull(t *testing.T) {
	r := replay(t, "create_with_pull.json")
	spec := runtime.ModuleSpec{
		Name:          "SimulatedTemperatureSensor",
		Version:       "1.0",
		Image:         "myacr.azurecr.io/simulated-temperature-sensor:1.5",
		CreateOptions: `{"Env":["LOG_LEVEL=info","SendInterval=1"],"HostConfig":{"Memory":268435456,"PortBindings":{"8080/tcp":[{"HostPort":"8080"}]}},"Labels":{"app":"sensor"}}`,
		Env: map[string]string{
			"SendInterval":     "5",
			"IOTEDGE_MODULEID": "SimulatedTemperatureSensor",
			"IOTEDGE_DEVICEID": "edge-01",
		},
		ImagePullPolicy: runtime.PullOnCreate,
		RegistryAuth:    &runtime.RegistryAuth{Address: "myacr.azurecr.io", Username: "myuser", Password: "mypassword"},
	}
	if err := r.Create(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
}

func TestCreateProceedsWhenPullFails(t *testing.T) {
	r := replay(t, "create_pull_fails.json")
	spec := runtime.ModuleSpec{
		Name: "edgeHub", Image: "mcr.microsoft.com/azureiotedge-hub:1.5", CreateOptions: "{}",
		Env: map[string]string{"IOTEDGE_MODULEID": "$edgeHub"},
	}
	if err := r.Create(context.Background(), spec); err != nil {
		t.Fatalf("Create with a cached image after a failed pull = %v", err)
	}
}

func TestCreateFailsWithoutImage(t *testing.T) {
	r := replay(t, "create_pull_and_image_fail.json")
	err := r.Create(context.Background(), runtime.ModuleSpec{Name: "edgeHub", Image: "mcr.microsoft.com/azureiotedge-hub:1.5", CreateOptions: "{}"})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("Create = %v, want a 404 APIError", err)
	}
	for _, want := range []string{"pull failed", "manifest unknown", "No such image"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestCreateErrors(t *testing.T) {
	r := replay(t, "create_never_pull.json")
	spec := runtime.ModuleSpec{
		Name: "filter", Version: "2", CreateOptions: "{}", ImagePullPolicy: runtime.PullNever,
		Image: "localhost:5000/filter@sha256:1111111111111111111111111111111111111111111111111111111111111111",
	}
	ctx := context.Background()
	tests := []struct {
		name    string
		wantErr error
		wantMsg string
	}{
		{"missing image, never pull", nil, "imagePullPolicy is never"},
		{"name in use", runtime.ErrExists, "already in use"},
		{"rejected options", runtime.ErrInvalidSpec, "invalid reference format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Create(ctx, spec)
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Create = %v, want %v containing %q", err, tc.wantErr, tc.wantMsg)
			}
		})
	}
}

func TestCreateBodyRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name, opts, field string
	}{
		{"not an object", `[1]`, "settings.createOptions"},
		{"not JSON", `{"Env":`, "settings.createOptions"},
		{"env not a list", `{"Env":"A=b"}`, "settings.createOptions.Env"},
		{"env item not a string", `{"Env":["A=b",3]}`, "settings.createOptions.Env[1]"},
		{"labels not an object", `{"Labels":["x"]}`, "settings.createOptions.Labels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := createBody(runtime.ModuleSpec{Name: "m", Image: "i", CreateOptions: tc.opts})
			var se *runtime.SpecError
			if !errors.As(err, &se) || se.Field != tc.field || se.Module != "m" {
				t.Fatalf("createBody = %v, want a SpecError on %s", err, tc.field)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	r := replay(t, "lifecycle.json")
	ctx := context.Background()
	steps := []struct {
		name    string
		call    func() error
		wantErr error
		wantMsg string
	}{
		{"start", func() error { return r.Start(ctx, "tempSensor") }, nil, ""},
		{"start running (304)", func() error { return r.Start(ctx, "tempSensor") }, nil, ""},
		{"stop with grace rounded up", func() error { return r.Stop(ctx, "tempSensor", 2500*time.Millisecond) }, nil, ""},
		{"stop stopped (304)", func() error { return r.Stop(ctx, "tempSensor", 0) }, nil, ""},
		{"remove", func() error { return r.Remove(ctx, "tempSensor") }, nil, ""},
		{"remove missing", func() error { return r.Remove(ctx, "tempSensor") }, runtime.ErrNotFound, "No such container"},
		{"start failure", func() error { return r.Start(ctx, "tempSensor") }, nil, "permission denied"},
	}
	for _, s := range steps {
		err := s.call()
		switch {
		case s.wantErr == nil && s.wantMsg == "":
			if err != nil {
				t.Errorf("%s: %v", s.name, err)
			}
		case err == nil || (s.wantErr != nil && !errors.Is(err, s.wantErr)) || !strings.Contains(err.Error(), s.wantMsg):
			t.Errorf("%s: error %v, want %v containing %q", s.name, err, s.wantErr, s.wantMsg)
		}
	}
}

func TestListAndInspect(t *testing.T) {
	r := replay(t, "inspect_list.json")
	ctx := context.Background()
	got, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	hub := runtime.ModuleState{
		Name: "edgeHub",
		ID:   "3f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e",
		Spec: runtime.ModuleSpec{
			Name:            "edgeHub",
			Image:           "mcr.microsoft.com/azureiotedge-hub:1.5",
			CreateOptions:   `{"HostConfig":{"PortBindings":{"8883/tcp":[{"HostPort":"8883"}]}}}`,
			Env:             map[string]string{"IOTEDGE_MODULEID": "$edgeHub"},
			ImagePullPolicy: "on-create",
		},
		ImageHash: "sha256:dd0d4897a65fae460909e497386606b5cd7a2ad7ae0605f5bb766644e352fac3",
		State:     runtime.StateRunning,
		StartedAt: ts("2026-01-10T08:14:58.938211505Z"),
	}
	want := []runtime.ModuleState{
		{
			Name: "SimulatedTemperatureSensor",
			ID:   "7c1e4b2f9a0d3c5e8f6a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60",
			Spec: runtime.ModuleSpec{
				Name:            "SimulatedTemperatureSensor",
				Version:         "1.0",
				Image:           "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5",
				CreateOptions:   "{}",
				Env:             map[string]string{"SendInterval": "5"},
				ImagePullPolicy: "on-create",
			},
			ImageHash:  "sha256:85fdb1e9675c837c18b75f103be6f156587d1058eced1fc508cdb84a722e4f82",
			State:      runtime.StateExited,
			ExitCode:   139,
			StartedAt:  ts("2026-01-10T08:15:03.512930114Z"),
			FinishedAt: ts("2026-01-10T09:02:44.000871253Z"),
		},
		hub,
		{
			Name:        "hog",
			ID:          "aa11bb22cc33dd44ee55ff6677889900aa11bb22cc33dd44ee55ff6677889900",
			Spec:        runtime.ModuleSpec{Name: "hog", Image: "hog:latest"},
			ImageHash:   "sha256:0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000",
			State:       runtime.StateExited,
			ExitCode:    137,
			StartedAt:   ts("2026-01-10T08:20:00Z"),
			FinishedAt:  ts("2026-01-10T08:21:00Z"),
			Description: "killed: out of memory",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	st, err := r.Inspect(ctx, "edgeHub")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(hub, st); diff != "" {
		t.Errorf("Inspect (-want +got):\n%s", diff)
	}
	if _, err := r.Inspect(ctx, "nothere"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Inspect(nothere) = %v, want ErrNotFound", err)
	}
}

func TestLogs(t *testing.T) {
	r := replay(t, "logs.json")
	ctx := context.Background()
	read := func(opts runtime.LogOptions) (string, error) {
		rc, err := r.Logs(ctx, "SimulatedTemperatureSensor", opts)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	got, err := read(runtime.LogOptions{
		Tail: 3, Timestamps: true,
		Since: time.Date(2026, 1, 10, 8, 0, 0, 0, time.UTC),
		Until: time.Date(2026, 1, 10, 9, 0, 0, 500_000_000, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "2026-01-10T08:15:04.001Z [2026-01-10 08:15:04 +00:00][INF] Sending message: 1, Body: [{\"machine\":{\"temperature\":21.3}}]\n" +
		"2026-01-10T08:15:05.002Z Unhandled exception. System.Net.Sockets.SocketException (111): Connection refused\n" +
		"2026-01-10T08:15:06.003Z [2026-01-10 08:15:06 +00:00][INF] Retrying\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("multiplexed logs (-want +got):\n%s", diff)
	}
	got, err = read(runtime.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("raw tty line 1\r\nraw tty line 2\r\n", got); diff != "" {
		t.Errorf("tty logs (-want +got):\n%s", diff)
	}
	got, err = read(runtime.LogOptions{})
	var se *StreamError
	if !errors.As(err, &se) || !strings.Contains(se.Message, "Error grabbing logs") || got != "before the error\n" {
		t.Errorf("logs with a systemerr frame = %q, %v", got, err)
	}
	if _, err := r.Logs(ctx, "ghost", runtime.LogOptions{}); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Logs(ghost) = %v, want ErrNotFound", err)
	}
}

func TestNewHosts(t *testing.T) {
	tests := []struct {
		host    string
		wantErr error
		wantMsg string
	}{
		{"", nil, ""},
		{"unix:///run/docker.sock", nil, ""},
		{"tcp://127.0.0.1:2375", nil, ""},
		{"npipe:////./pipe/docker_engine", runtime.ErrUnsupported, "named pipes"},
		{"unix://", nil, "no socket path"},
		{"tcp://", nil, "no address"},
		{"http://localhost", nil, "not unix or tcp"},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			_, err := New(Options{Host: tc.host})
			if tc.wantMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("New(%q) = %v, want %v containing %q", tc.host, err, tc.wantErr, tc.wantMsg)
			}
		})
	}
}

func TestSplitImage(t *testing.T) {
	tests := []struct{ image, repo, tag string }{
		{"mcr.microsoft.com/azureiotedge-agent:1.5", "mcr.microsoft.com/azureiotedge-agent", "1.5"},
		{"ubuntu", "ubuntu", "latest"},
		{"localhost:5000/app", "localhost:5000/app", "latest"},
		{"localhost:5000/app:v2", "localhost:5000/app", "v2"},
		{"repo/app@sha256:abcd", "repo/app", "sha256:abcd"},
	}
	for _, tc := range tests {
		t.Run(tc.image, func(t *testing.T) {
			repo, tag := splitImage(tc.image)
			if repo != tc.repo || tag != tc.tag {
				t.Errorf("splitImage(%q) = %q, %q; want %q, %q", tc.image, repo, tag, tc.repo, tc.tag)
			}
		})
	}
}
