// Package hubservice owns the Go client of the hub service API as an
// operator uses it: device identities (create, get, list, update, delete),
// device twins (get, merge-patch, replace) and Muster's extension that reads
// the built-in telemetry endpoint (GET /messages/events, long-polled). It
// authenticates every request with a fresh service SAS token minted from a
// hub connection string (an iothubowner-like policy), verifies the server's
// TLS certificate against the configured roots, and turns IoT Hub error
// bodies into *Error.
//
// It is an adapter: it may import net/http, but no MQTT library or SQL
// driver, and it never logs or prints keys.
package hubservice

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/client/svcconn"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
)

// APIVersion is the hub service api-version the client sends.
const APIVersion = "2021-04-12"

// TokenTTL is the lifetime of the SAS token minted for each request.
const TokenTTL = time.Hour

// MaxResponseBytes caps the size of one response body the client reads.
const MaxResponseBytes = 32 << 20

// userAgent identifies the client to the hub.
const userAgent = "muster-hubservice/1"

// Path segments of the hub service API.
const (
	segDevices  = "devices"
	segTwins    = "twins"
	segMessages = "messages"
	segEvents   = "events"
)

// Options configure a Client.
type Options struct {
	// ConnectionString is the hub connection string:
	// HostName=<hub>;SharedAccessKeyName=<policy>;SharedAccessKey=<base64>.
	// HostName is the SAS token's resource (sr) and, when it is a DNS name,
	// the TLS server name.
	ConnectionString string
	// Server is the "host:port" to dial; empty means HostName:443. A host
	// without a port gets port 443.
	Server string
	// RootCAs verifies the server certificate; nil means the system roots.
	// It is ignored when HTTPClient is set.
	RootCAs *x509.CertPool
	// HTTPClient, when set, sends every request (its transport then owns
	// TLS configuration entirely). Its timeouts must allow long polls.
	HTTPClient *http.Client
	// Now returns the current time for token expiry; nil means time.Now.
	Now func() time.Time
}

// Client calls the hub service API. It is safe for concurrent use.
type Client struct {
	hostName string
	keyName  string
	key      []byte
	server   string
	hc       *http.Client
	now      func() time.Time
}

// New returns a client for the hub named by opts.ConnectionString.
func New(opts Options) (*Client, error) {
	cs, err := sas.ParseConnectionString(opts.ConnectionString)
	if err != nil {
		return nil, fmt.Errorf("parse hub connection string: %w", err)
	}
	if cs.SharedAccessKeyName == "" {
		return nil, errors.New("parse hub connection string: SharedAccessKeyName is missing (the hub service API needs a hub policy connection string, not a device's)")
	}
	key, err := sas.DecodeKey(cs.SharedAccessKey)
	if err != nil {
		return nil, fmt.Errorf("parse hub connection string: SharedAccessKey: %w", err)
	}
	server, err := svcconn.DialAddress(opts.Server, cs.HostName, "server address")
	if err != nil {
		return nil, err
	}
	c := &Client{hostName: cs.HostName, keyName: cs.SharedAccessKeyName, key: key, server: server, hc: opts.HTTPClient, now: opts.Now}
	if c.now == nil {
		c.now = time.Now
	}
	if c.hc == nil {
		// Long polls answer within MaxPollWait, direct methods within
		// MaxMethodWait; the header timeout leaves room.
		c.hc = svcconn.NewHTTPClient(cs.HostName, opts.RootCAs, svcconn.HTTPOptions{DialTimeout: 30 * time.Second, ResponseHeaderTimeout: max(MaxPollWait, MaxMethodWait) + 2*time.Minute})
	}
	return c, nil
}

// HostName is the hub host name from the connection string.
func (c *Client) HostName() string { return c.hostName }

// Server is the "host:port" the client dials.
func (c *Client) Server() string { return c.server }

// CloseIdleConnections closes the client's idle connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// request is one call to the hub.
type request struct {
	method  string
	segs    []string // path segments, unescaped
	query   url.Values
	body    any // JSON-encoded when not nil
	ifMatch string
	// raw, when not nil, is sent as the body as it is (body must be
	// nil), and header adds request headers (C2D message properties).
	raw    []byte
	header http.Header
}

// response is what a successful call returned.
type response struct {
	header http.Header
	body   []byte
}

// path is the unescaped request path, for messages.
func (r request) path() string { return "/" + strings.Join(r.segs, "/") }

// url builds the request URL, escaping each path segment.
func (c *Client) url(segs []string, query url.Values) *url.URL {
	raw := make([]string, len(segs))
	for i, s := range segs {
		raw[i] = url.PathEscape(s)
	}
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("api-version", APIVersion)
	return &url.URL{
		Scheme:   "https",
		Host:     c.server,
		Path:     "/" + strings.Join(segs, "/"),
		RawPath:  "/" + strings.Join(raw, "/"),
		RawQuery: q.Encode(),
	}
}

// quoteETag puts an etag in the quotes If-Match wants; "*" stays bare.
func quoteETag(v string) string {
	v = strings.TrimSpace(v)
	if v == "*" || (len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"') {
		return v
	}
	return `"` + v + `"`
}

// do sends r and returns the 2xx response; other statuses become *Error.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("encode request body of %s %s: %w", r.method, r.path(), err)
		}
		body = bytes.NewReader(b)
	}
	if r.raw != nil {
		body = bytes.NewReader(r.raw)
	}
	u := c.url(r.segs, r.query)
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build request %s %s: %w", r.method, u.EscapedPath(), err)
	}
	req.Header.Set("Authorization", sas.Sign(c.hostName, c.key, c.keyName, c.now().Add(TokenTTL)))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if r.ifMatch != "" {
		req.Header.Set("If-Match", quoteETag(r.ifMatch))
	}
	for k, vs := range r.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // it repeats the method and the URL, which are said below
		}
		return nil, fmt.Errorf("%s https://%s%s: %w", r.method, c.server, u.EscapedPath(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read response to %s %s: %w", r.method, u.EscapedPath(), err)
	}
	if len(b) > MaxResponseBytes {
		return nil, fmt.Errorf("read response to %s %s: body is larger than %d bytes", r.method, u.EscapedPath(), MaxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := parseError(resp.StatusCode, resp.Header, b)
		e.Hub, e.Method, e.Path = c.hostName, r.method, r.path()
		return nil, e
	}
	return &response{header: resp.Header, body: b}, nil
}

// call sends r and decodes the JSON answer into out.
func (c *Client) call(ctx context.Context, r request, out any) (*response, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := decodeBody(resp.body, out); err != nil {
		return nil, fmt.Errorf("decode response to %s %s: %w", r.method, r.path(), err)
	}
	return resp, nil
}

// decodeBody decodes a JSON response body, saying where it is malformed.
func decodeBody(b []byte, out any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("the body is empty")
	}
	if err := json.Unmarshal(b, out); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("invalid JSON at offset %d: %w", se.Offset, err)
		}
		return err
	}
	return nil
}

// checkID refuses an empty ID before a request is sent.
func checkID(what, id string) error {
	if strings.TrimSpace(id) == "" {
		return fmt.Errorf("%s is empty", what)
	}
	return nil
}

// GetDevice returns a device identity (with its keys).
func (c *Client) GetDevice(ctx context.Context, deviceID string) (*registry.Device, error) {
	if err := checkID("device ID", deviceID); err != nil {
		return nil, fmt.Errorf("get device: %w", err)
	}
	var d registry.Device
	if _, err := c.call(ctx, request{method: http.MethodGet, segs: []string{segDevices, deviceID}}, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// MaxListDevices is the most devices ListDevices returns.
const MaxListDevices = 1000

// ListDevices returns up to top device identities in ID order (top 0:
// MaxListDevices).
func (c *Client) ListDevices(ctx context.Context, top int) ([]*registry.Device, error) {
	if top < 0 || top > MaxListDevices {
		return nil, fmt.Errorf("list devices: top %d is not from 0 to %d", top, MaxListDevices)
	}
	q := url.Values{}
	if top > 0 {
		q.Set("top", strconv.Itoa(top))
	}
	var ds []*registry.Device
	if _, err := c.call(ctx, request{method: http.MethodGet, segs: []string{segDevices}, query: q}, &ds); err != nil {
		return nil, err
	}
	return ds, nil
}

// CreateDevice creates a device identity; the hub generates the keys of a
// "sas" device given none. It fails with ErrConflict when the ID exists.
func (c *Client) CreateDevice(ctx context.Context, d *registry.Device) (*registry.Device, error) {
	return c.putDevice(ctx, d, "")
}

// UpdateDevice replaces the writable fields of a device identity (status,
// statusReason, authentication, capabilities, scopes) if its etag is still
// etag ("*": any). It fails with ErrPrecondition when the etag moved on
// and ErrNotFound when the device does not exist.
func (c *Client) UpdateDevice(ctx context.Context, d *registry.Device, etag string) (*registry.Device, error) {
	if strings.TrimSpace(etag) == "" {
		return nil, errors.New("update device: the etag is empty; pass the device's etag or \"*\"")
	}
	return c.putDevice(ctx, d, etag)
}

func (c *Client) putDevice(ctx context.Context, d *registry.Device, etag string) (*registry.Device, error) {
	if d == nil {
		return nil, errors.New("put device: the device is nil")
	}
	if err := checkID("deviceId", d.DeviceID); err != nil {
		return nil, fmt.Errorf("put device: %w", err)
	}
	var out registry.Device
	if _, err := c.call(ctx, request{method: http.MethodPut, segs: []string{segDevices, d.DeviceID}, body: d, ifMatch: etag}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteDevice deletes a device identity and its twin; etag "" means
// whatever its etag ("*").
func (c *Client) DeleteDevice(ctx context.Context, deviceID, etag string) error {
	if err := checkID("device ID", deviceID); err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	if strings.TrimSpace(etag) == "" {
		etag = "*"
	}
	_, err := c.do(ctx, request{method: http.MethodDelete, segs: []string{segDevices, deviceID}, ifMatch: etag})
	return err
}

// Twin is a device twin as the hub service API shows it: the twin joined
// with its device identity.
type Twin struct {
	DeviceID string `json:"deviceId"`
	// ModuleID is set on module twins, which have no capabilities and
	// scopes.
	ModuleID           string                  `json:"moduleId,omitempty"`
	ETag               string                  `json:"etag"`
	DeviceETag         string                  `json:"deviceEtag"`
	Status             string                  `json:"status"`
	StatusReason       *string                 `json:"statusReason"`
	StatusUpdateTime   time.Time               `json:"statusUpdateTime"`
	ConnectionState    string                  `json:"connectionState"`
	LastActivityTime   time.Time               `json:"lastActivityTime"`
	AuthenticationType string                  `json:"authenticationType"`
	X509Thumbprint     registry.X509Thumbprint `json:"x509Thumbprint"`
	ModelID            string                  `json:"modelId"`
	Version            int64                   `json:"version"`
	Tags               json.RawMessage         `json:"tags"`
	Properties         registry.TwinProperties `json:"properties"`
	Capabilities       registry.Capabilities   `json:"capabilities"`
	DeviceScope        string                  `json:"deviceScope"`
	ParentScopes       []string                `json:"parentScopes"`
}

// TwinUpdate is what a twin update writes: tags and desired properties,
// each a JSON object or absent (nil: unchanged by a patch, emptied by a
// replace). In a patch a null member deletes that member.
type TwinUpdate struct {
	Tags    json.RawMessage
	Desired json.RawMessage
}

// body is the twin document of a PATCH or PUT.
func (u TwinUpdate) body() (map[string]any, error) {
	out := map[string]any{}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"tags", u.Tags}, {"desired", u.Desired}} {
		if len(bytes.TrimSpace(f.raw)) == 0 {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(f.raw, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("%s must be a JSON object: %.64q", f.name, string(f.raw))
		}
		if f.name == "tags" {
			out["tags"] = f.raw
		} else {
			out["properties"] = map[string]json.RawMessage{"desired": f.raw}
		}
	}
	return out, nil
}

// GetTwin returns a device's twin.
func (c *Client) GetTwin(ctx context.Context, deviceID string) (*Twin, error) {
	if err := checkID("device ID", deviceID); err != nil {
		return nil, fmt.Errorf("get twin: %w", err)
	}
	var t Twin
	if _, err := c.call(ctx, request{method: http.MethodGet, segs: []string{segTwins, deviceID}}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// PatchTwin merges u into a device's tags and desired properties if the
// twin's etag is still etag ("" or "*": any).
func (c *Client) PatchTwin(ctx context.Context, deviceID string, u TwinUpdate, etag string) (*Twin, error) {
	return c.updateTwin(ctx, http.MethodPatch, deviceID, u, etag)
}

// ReplaceTwin replaces a device's tags and desired properties with u if
// the twin's etag is still etag ("" or "*": any).
func (c *Client) ReplaceTwin(ctx context.Context, deviceID string, u TwinUpdate, etag string) (*Twin, error) {
	return c.updateTwin(ctx, http.MethodPut, deviceID, u, etag)
}

func (c *Client) updateTwin(ctx context.Context, method, deviceID string, u TwinUpdate, etag string) (*Twin, error) {
	if err := checkID("device ID", deviceID); err != nil {
		return nil, fmt.Errorf("update twin: %w", err)
	}
	body, err := u.body()
	if err != nil {
		return nil, fmt.Errorf("update twin of %s: %w", deviceID, err)
	}
	if len(body) == 0 && method == http.MethodPatch {
		return nil, fmt.Errorf("update twin of %s: nothing to change: give tags or desired properties", deviceID)
	}
	if strings.TrimSpace(etag) == "" {
		etag = "*"
	}
	var t Twin
	if _, err := c.call(ctx, request{method: method, segs: []string{segTwins, deviceID}, body: body, ifMatch: etag}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}
