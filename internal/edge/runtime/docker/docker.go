// Package docker owns the Docker module runtime of the edge agent: a client
// of the Docker Engine API (version 1.41 and later, JSON over HTTP on the
// Unix socket /var/run/docker.sock or a tcp:// endpoint) that creates
// containers from a module's createOptions (passed through to Docker),
// starts, stops, removes, inspects and lists them, and reads their logs,
// demultiplexing Docker's framed stdout/stderr stream.
//
// Containers are labelled as Azure IoT Edge labels them
// (net.azure-devices.edge.owner=Microsoft.Azure.Devices.Edge.Agent), and the
// module's desired image, createOptions, env and version are kept in labels
// so that a restarted agent can compare what runs with what is desired. The
// Windows named pipe (npipe://) is not supported: on Windows use a tcp://
// endpoint.
//
// This package is an adapter: it is the only part of the edge runtime that
// imports net/http.
package docker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

// DefaultHost is the Docker Engine endpoint used when Options.Host is empty.
const DefaultHost = "unix:///var/run/docker.sock"

// DefaultAPIVersion is the Engine API version the client speaks.
const DefaultAPIVersion = "1.41"

// The container labels the runtime sets and reads.
const (
	// LabelOwner marks containers owned by the edge agent; List selects
	// containers whose LabelOwner is OwnerAgent.
	LabelOwner = "net.azure-devices.edge.owner"
	// OwnerAgent is the LabelOwner value of agent-owned containers.
	OwnerAgent = "Microsoft.Azure.Devices.Edge.Agent"
	// LabelCreateOptions holds the module's createOptions as desired.
	LabelCreateOptions = "net.azure-devices.edge.create-options"
	// LabelEnv holds the module's desired environment as a JSON object.
	LabelEnv = "net.azure-devices.edge.env"
	// LabelOriginalImage holds the module's image as desired.
	LabelOriginalImage = "net.azure-devices.edge.original-image"
	// LabelVersion holds the module's desired version.
	LabelVersion = "net.azure-devices.edge.version"
	// LabelImagePullPolicy holds the module's image pull policy.
	LabelImagePullPolicy = "net.azure-devices.edge.image-pull-policy"
)

// maxErrorBody caps how much of an error response is read.
const maxErrorBody = 64 << 10

// Options configures a Docker runtime.
type Options struct {
	// Host is the Engine endpoint: "unix:///path/to/docker.sock" or
	// "tcp://host:port" (plain HTTP). DefaultHost when empty.
	Host string
	// APIVersion is the Engine API version, without the "v"
	// (DefaultAPIVersion when empty).
	APIVersion string
	// Logger receives operational messages (discarded when nil).
	// Credentials and module environments are never logged.
	Logger *slog.Logger
}

// Runtime runs modules as Docker containers. It implements
// runtime.Runtime.
type Runtime struct {
	http *http.Client
	base string
	log  *slog.Logger
}

// APIError is an error response of the Docker Engine API.
type APIError struct {
	// Op names the operation, e.g. "create container tempSensor".
	Op string
	// Status is the HTTP status code.
	Status int
	// Message is the daemon's message.
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: docker engine answered %d: %s", e.Op, e.Status, e.Message)
}

// New returns a Docker runtime for opts. It does not contact the daemon.
func New(opts Options) (*Runtime, error) {
	host := opts.Host
	if host == "" {
		host = DefaultHost
	}
	version := strings.TrimPrefix(opts.APIVersion, "v")
	if version == "" {
		version = DefaultAPIVersion
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("new docker runtime: host %q: %w", host, err)
	}
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	var base string
	switch u.Scheme {
	case "unix":
		path := u.Path
		if path == "" {
			return nil, fmt.Errorf("new docker runtime: host %q has no socket path", host)
		}
		if dial, err = unixDialer(path); err != nil {
			return nil, fmt.Errorf("new docker runtime: %w", err)
		}
		base = "http://docker"
	case "tcp":
		if u.Host == "" {
			return nil, fmt.Errorf("new docker runtime: host %q has no address", host)
		}
		d := &net.Dialer{Timeout: 10 * time.Second}
		dial = d.DialContext
		base = "http://" + u.Host
	case "npipe":
		return nil, fmt.Errorf("new docker runtime: host %q: named pipes: %w; expose the engine on tcp://", host, runtime.ErrUnsupported)
	default:
		return nil, fmt.Errorf("new docker runtime: host %q: scheme %q is not unix or tcp", host, u.Scheme)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		DialContext:           dial,
		DisableCompression:    true,
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 0, // stop and pull legitimately take long; ctx bounds calls
	}
	return &Runtime{http: &http.Client{Transport: tr}, base: base + "/v" + version, log: log}, nil
}

// request sends one API request. body, when not nil, is sent as JSON.
func (r *Runtime) request(ctx context.Context, method, path string, query url.Values, body any, header http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request body: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	u := r.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("call docker engine: %w", err)
	}
	return resp, nil
}

// apiError reads an error response.
func apiError(op string, resp *http.Response) *APIError {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var m struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		msg = m.Message
	}
	return &APIError{Op: op, Status: resp.StatusCode, Message: msg}
}

// drain discards and closes a response body so the connection is reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
}

// Create implements runtime.Runtime: it pulls the image (unless
// ImagePullPolicy is never) and creates the container from createOptions,
// with the module's environment merged into Env and the agent's labels
// added to Labels.
func (r *Runtime) Create(ctx context.Context, spec runtime.ModuleSpec) error {
	op := "create container " + spec.Name
	body, err := createBody(spec)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var pullErr error
	if spec.ImagePullPolicy != runtime.PullNever {
		if pullErr = r.pull(ctx, spec.Image, spec.RegistryAuth); pullErr != nil {
			r.log.Warn("image pull failed; trying a local copy", "module", spec.Name, "image", spec.Image, "err", pullErr)
		}
	}
	resp, err := r.request(ctx, http.MethodPost, "/containers/create", url.Values{"name": {spec.Name}}, body, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusOK:
		var out struct {
			ID       string   `json:"Id"`
			Warnings []string `json:"Warnings"`
		}
		err := json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&out)
		drain(resp)
		if err != nil {
			return fmt.Errorf("%s: decode response: %w", op, err)
		}
		for _, w := range out.Warnings {
			r.log.Warn("docker create warning", "module", spec.Name, "warning", w)
		}
		return nil
	case http.StatusConflict:
		return fmt.Errorf("%s: %w: %w", op, runtime.ErrExists, apiError(op, resp))
	case http.StatusNotFound:
		e := apiError(op, resp)
		if spec.ImagePullPolicy == runtime.PullNever {
			return fmt.Errorf("%s: image %s is not present and imagePullPolicy is never: %w", op, spec.Image, e)
		}
		if pullErr != nil {
			return fmt.Errorf("%s: image %s is not present and the pull failed (%v): %w", op, spec.Image, pullErr, e)
		}
		return e
	case http.StatusBadRequest:
		e := apiError(op, resp)
		return fmt.Errorf("%s: %w", op, &runtime.SpecError{Module: spec.Name, Field: "settings.createOptions", Msg: "rejected by docker: " + e.Message})
	default:
		return apiError(op, resp)
	}
}

// createBody builds the container-create request: createOptions with the
// image, merged environment and labels set.
func createBody(spec runtime.ModuleSpec) (map[string]any, error) {
	body := map[string]any{}
	if s := strings.TrimSpace(spec.CreateOptions); s != "" {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil || body == nil {
			msg := "not a JSON object"
			if err != nil {
				msg += ": " + err.Error()
			}
			return nil, &runtime.SpecError{Module: spec.Name, Field: "settings.createOptions", Msg: msg}
		}
	}
	var envList []string
	if raw, ok := body["Env"]; ok && raw != nil {
		items, ok := raw.([]any)
		if !ok {
			return nil, &runtime.SpecError{Module: spec.Name, Field: "settings.createOptions.Env", Msg: "must be an array of \"NAME=value\" strings"}
		}
		for i, it := range items {
			s, ok := it.(string)
			if !ok {
				return nil, &runtime.SpecError{Module: spec.Name, Field: fmt.Sprintf("settings.createOptions.Env[%d]", i), Msg: "must be a string"}
			}
			envList = append(envList, s)
		}
	}
	body["Env"] = runtime.EnvList(envList, spec.Env)
	labels := map[string]any{}
	if raw, ok := body["Labels"]; ok && raw != nil {
		l, ok := raw.(map[string]any)
		if !ok {
			return nil, &runtime.SpecError{Module: spec.Name, Field: "settings.createOptions.Labels", Msg: "must be an object of strings"}
		}
		labels = l
	}
	envJSON, err := json.Marshal(nonNil(spec.Env))
	if err != nil {
		return nil, fmt.Errorf("encode env label: %w", err)
	}
	labels[LabelOwner] = OwnerAgent
	labels[LabelOriginalImage] = spec.Image
	labels[LabelCreateOptions] = spec.CreateOptions
	labels[LabelEnv] = string(envJSON)
	labels[LabelVersion] = spec.Version
	labels[LabelImagePullPolicy] = spec.ImagePullPolicy
	body["Labels"] = labels
	body["Image"] = spec.Image
	return body, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// splitImage splits an image reference into the fromImage and tag
// parameters of an image pull: "repo@sha256:…" pins a digest, a ":tag"
// after the last "/" is the tag, and the tag defaults to "latest".
func splitImage(image string) (repo, tag string) {
	if i := strings.Index(image, "@"); i >= 0 {
		return image[:i], image[i+1:]
	}
	slash := strings.LastIndex(image, "/")
	if i := strings.LastIndex(image, ":"); i > slash {
		return image[:i], image[i+1:]
	}
	return image, "latest"
}

// registryAuthHeader encodes credentials for X-Registry-Auth.
func registryAuthHeader(a *runtime.RegistryAuth) (string, error) {
	b, err := json.Marshal(struct {
		Username      string `json:"username"`
		Password      string `json:"password"`
		ServerAddress string `json:"serveraddress"`
	}{a.Username, a.Password, a.Address})
	if err != nil {
		return "", fmt.Errorf("encode registry credentials: %w", err)
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

// pull pulls an image and reports the first error in the progress stream.
func (r *Runtime) pull(ctx context.Context, image string, auth *runtime.RegistryAuth) error {
	op := "pull image " + image
	repo, tag := splitImage(image)
	var header http.Header
	if auth != nil {
		h, err := registryAuthHeader(auth)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		header = http.Header{"X-Registry-Auth": {h}}
	}
	resp, err := r.request(ctx, http.MethodPost, "/images/create", url.Values{"fromImage": {repo}, "tag": {tag}}, nil, header)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return apiError(op, resp)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var msg struct {
			Status      string `json:"status"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: read progress: %w", op, err)
		}
		if msg.Error != "" || msg.ErrorDetail.Message != "" {
			m := msg.ErrorDetail.Message
			if m == "" {
				m = msg.Error
			}
			return &APIError{Op: op, Status: resp.StatusCode, Message: m}
		}
	}
}

// simple sends a body-less POST or DELETE whose success is a 2xx or 304.
func (r *Runtime) simple(ctx context.Context, op, method, path string, query url.Values) error {
	resp, err := r.request(ctx, method, path, query, nil, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode == http.StatusNotModified:
		drain(resp)
		return nil
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %w: %w", op, runtime.ErrNotFound, apiError(op, resp))
	default:
		return apiError(op, resp)
	}
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, name string) error {
	return r.simple(ctx, "start container "+name, http.MethodPost, "/containers/"+url.PathEscape(name)+"/start", nil)
}

// Stop implements runtime.Runtime: Docker sends the container's stop
// signal and kills it after grace (rounded up to whole seconds).
func (r *Runtime) Stop(ctx context.Context, name string, grace time.Duration) error {
	secs := int(math.Ceil(grace.Seconds()))
	return r.simple(ctx, "stop container "+name, http.MethodPost, "/containers/"+url.PathEscape(name)+"/stop",
		url.Values{"t": {strconv.Itoa(max(secs, 0))}})
}

// Remove implements runtime.Runtime (force-removes a running container).
func (r *Runtime) Remove(ctx context.Context, name string) error {
	return r.simple(ctx, "remove container "+name, http.MethodDelete, "/containers/"+url.PathEscape(name),
		url.Values{"force": {"1"}})
}

// containerJSON is the part of GET /containers/{id}/json the runtime reads.
type containerJSON struct {
	ID    string `json:"Id"`
	Name  string `json:"Name"`
	Image string `json:"Image"`
	State struct {
		Status     string `json:"Status"`
		Running    bool   `json:"Running"`
		OOMKilled  bool   `json:"OOMKilled"`
		Dead       bool   `json:"Dead"`
		Pid        int    `json:"Pid"`
		ExitCode   int    `json:"ExitCode"`
		Error      string `json:"Error"`
		StartedAt  string `json:"StartedAt"`
		FinishedAt string `json:"FinishedAt"`
	} `json:"State"`
	Config struct {
		Image  string            `json:"Image"`
		Tty    bool              `json:"Tty"`
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
}

// dockerTime parses a Docker timestamp; Docker's zero time is zero.
func dockerTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// moduleState converts an inspected container.
func (c *containerJSON) moduleState() runtime.ModuleState {
	labels := c.Config.Labels
	spec := runtime.ModuleSpec{
		Name:            strings.TrimPrefix(c.Name, "/"),
		Version:         labels[LabelVersion],
		Image:           labels[LabelOriginalImage],
		CreateOptions:   labels[LabelCreateOptions],
		ImagePullPolicy: labels[LabelImagePullPolicy],
	}
	if spec.Image == "" {
		spec.Image = c.Config.Image
	}
	if raw := labels[LabelEnv]; raw != "" {
		var env map[string]string
		if json.Unmarshal([]byte(raw), &env) == nil {
			spec.Env = env
		}
	}
	s := runtime.ModuleState{
		Name:       spec.Name,
		ID:         c.ID,
		Spec:       spec,
		ImageHash:  c.Image,
		ExitCode:   c.State.ExitCode,
		StartedAt:  dockerTime(c.State.StartedAt),
		FinishedAt: dockerTime(c.State.FinishedAt),
	}
	switch c.State.Status {
	case "created":
		s.State = runtime.StateCreated
	case "running", "restarting", "paused":
		s.State = runtime.StateRunning
	case "exited":
		s.State = runtime.StateExited
	case "dead":
		s.State = runtime.StateDead
	default:
		s.State = runtime.StateUnknown
	}
	switch {
	case c.State.Error != "":
		s.Description = c.State.Error
	case c.State.OOMKilled:
		s.Description = "killed: out of memory"
	case c.State.Status == "paused" || c.State.Status == "restarting":
		s.Description = c.State.Status
	}
	return s
}

// inspect fetches one container.
func (r *Runtime) inspect(ctx context.Context, name string) (*containerJSON, error) {
	op := "inspect container " + name
	resp, err := r.request(ctx, http.MethodGet, "/containers/"+url.PathEscape(name)+"/json", nil, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("%s: %w: %w", op, runtime.ErrNotFound, apiError(op, resp))
	default:
		return nil, apiError(op, resp)
	}
	defer resp.Body.Close()
	var c containerJSON
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: decode response: %w", op, err)
	}
	return &c, nil
}

// Inspect implements runtime.Runtime.
func (r *Runtime) Inspect(ctx context.Context, name string) (runtime.ModuleState, error) {
	c, err := r.inspect(ctx, name)
	if err != nil {
		return runtime.ModuleState{}, err
	}
	return c.moduleState(), nil
}

// List implements runtime.Runtime: every container labelled as owned by
// the edge agent, inspected for its full state.
func (r *Runtime) List(ctx context.Context) ([]runtime.ModuleState, error) {
	const op = "list containers"
	filters, err := json.Marshal(map[string][]string{"label": {LabelOwner + "=" + OwnerAgent}})
	if err != nil {
		return nil, fmt.Errorf("%s: encode filters: %w", op, err)
	}
	resp, err := r.request(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(filters)}}, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(op, resp)
	}
	var list []struct {
		ID    string   `json:"Id"`
		Names []string `json:"Names"`
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: decode response: %w", op, err)
	}
	out := make([]runtime.ModuleState, 0, len(list))
	for _, item := range list {
		c, err := r.inspect(ctx, item.ID)
		if errors.Is(err, runtime.ErrNotFound) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		out = append(out, c.moduleState())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// logReader is the stream Logs returns.
type logReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (l *logReader) Close() error {
	l.cancel()
	return l.PipeReader.Close()
}

// unixNano formats t for Docker's since/until parameters.
func unixNano(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

// Logs implements runtime.Runtime: stdout and stderr of the container,
// demultiplexed (or raw for a TTY container) into one stream.
func (r *Runtime) Logs(ctx context.Context, name string, opts runtime.LogOptions) (io.ReadCloser, error) {
	op := "logs of container " + name
	c, err := r.inspect(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}}
	if opts.Follow {
		q.Set("follow", "1")
	}
	if opts.Timestamps {
		q.Set("timestamps", "1")
	}
	if opts.Tail > 0 {
		q.Set("tail", strconv.Itoa(opts.Tail))
	} else {
		q.Set("tail", "all")
	}
	if !opts.Since.IsZero() {
		q.Set("since", unixNano(opts.Since))
	}
	if !opts.Until.IsZero() {
		q.Set("until", unixNano(opts.Until))
	}
	ctx, cancel := context.WithCancel(ctx)
	resp, err := r.request(ctx, http.MethodGet, "/containers/"+url.PathEscape(name)+"/logs", q, nil, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		if resp.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("%s: %w: %w", op, runtime.ErrNotFound, apiError(op, resp))
		}
		return nil, apiError(op, resp)
	}
	multiplexed := !c.Config.Tty
	switch resp.Header.Get("Content-Type") {
	case "application/vnd.docker.multiplexed-stream":
		multiplexed = true
	case "application/vnd.docker.raw-stream":
		multiplexed = false
	}
	pr, pw := io.Pipe()
	go func() {
		defer resp.Body.Close()
		var err error
		if multiplexed {
			_, err = Demux(pw, pw, resp.Body)
		} else {
			_, err = io.Copy(pw, resp.Body)
		}
		if err != nil && ctx.Err() != nil {
			err = nil // closed by the reader
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", op, err)
		}
		pw.CloseWithError(err)
	}()
	return &logReader{PipeReader: pr, cancel: cancel}, nil
}

// Compile-time interface check.
var _ runtime.Runtime = (*Runtime)(nil)
