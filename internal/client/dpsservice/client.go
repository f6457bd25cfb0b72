// Package dpsservice owns the Go client of the provisioning service API: the
// Azure DPS service (enrollment management) REST API, api-version
// 2021-10-01, plus Muster's operator extensions (CA certificates for proof of
// possession and the registration attempt log). It authenticates every
// request with a fresh service SAS token minted from a DPS connection string,
// verifies the server's TLS certificate against the configured roots, and
// turns the service's ProvisioningServiceErrorDetails bodies into *Error.
//
// It is an adapter: it may import net/http, but no MQTT library or SQL
// driver, and it never logs or prints keys.
package dpsservice

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/muster-iot/muster/internal/client/svcconn"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/sas"
)

// APIVersion is the service api-version the client sends.
const APIVersion = "2021-10-01"

// TokenTTL is the lifetime of the SAS token minted for each request.
const TokenTTL = time.Hour

// MaxResponseBytes caps the size of one response body the client reads.
const MaxResponseBytes = 32 << 20

// userAgent identifies the client to the service.
const userAgent = "muster-dpsservice/1"

// Request and response header names.
const (
	headerContinuation = "x-ms-continuation"
	headerMaxItemCount = "x-ms-max-item-count"
	headerIfMatch      = "If-Match"
)

// Options configure a Client.
type Options struct {
	// ConnectionString is the DPS service connection string:
	// HostName=<host>;SharedAccessKeyName=<policy>;SharedAccessKey=<base64>.
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
	// TLS configuration entirely).
	HTTPClient *http.Client
	// Now returns the current time for token expiry; nil means time.Now.
	Now func() time.Time
}

// Client calls the provisioning service API. It is safe for concurrent use.
type Client struct {
	hostName string
	keyName  string
	key      []byte
	server   string
	hc       *http.Client
	now      func() time.Time
}

// New returns a client for the service named by opts.ConnectionString.
func New(opts Options) (*Client, error) {
	cs, err := sas.ParseConnectionString(opts.ConnectionString)
	if err != nil {
		return nil, fmt.Errorf("parse connection string: %w", err)
	}
	if cs.SharedAccessKeyName == "" {
		return nil, errors.New("parse connection string: SharedAccessKeyName is missing (the service API needs a DPS policy connection string, not a device's)")
	}
	key, err := sas.DecodeKey(cs.SharedAccessKey)
	if err != nil {
		return nil, fmt.Errorf("parse connection string: SharedAccessKey: %w", err)
	}
	server, err := svcconn.DialAddress(opts.Server, cs.HostName, "server address")
	if err != nil {
		return nil, err
	}
	c := &Client{
		hostName: cs.HostName,
		keyName:  cs.SharedAccessKeyName,
		key:      key,
		server:   server,
		hc:       opts.HTTPClient,
		now:      opts.Now,
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.hc == nil {
		c.hc = svcconn.NewHTTPClient(cs.HostName, opts.RootCAs, svcconn.HTTPOptions{DialTimeout: 30 * time.Second, ResponseHeaderTimeout: 2 * time.Minute})
	}
	return c, nil
}

// HostName is the service host name from the connection string.
func (c *Client) HostName() string { return c.hostName }

// Server is the "host:port" the client dials.
func (c *Client) Server() string { return c.server }

// request is one call to the service.
type request struct {
	method  string
	segs    []string // path segments, unescaped
	query   url.Values
	header  http.Header
	body    any // JSON-encoded when not nil
	ifMatch string
}

// response is what a successful call returned.
type response struct {
	status int
	header http.Header
	body   []byte
}

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

// token returns a fresh service SAS token.
func (c *Client) token() string {
	return sas.Sign(c.hostName, c.key, c.keyName, c.now().Add(TokenTTL))
}

// do sends r and returns the 2xx response; other statuses become *Error.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("encode request body: %w", err)
		}
		body = bytes.NewReader(b)
	}
	u := c.url(r.segs, r.query)
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build request %s %s: %w", r.method, u.EscapedPath(), err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", c.token())
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if r.ifMatch != "" {
		req.Header.Set(headerIfMatch, r.ifMatch)
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
		return nil, parseError(resp.StatusCode, resp.Header, b)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// call sends r and decodes a JSON answer into out (when out is not nil).
func (c *Client) call(ctx context.Context, r request, out any) (*response, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	if out == nil {
		return resp, nil
	}
	if err := decodeBody(resp.body, out); err != nil {
		return nil, fmt.Errorf("decode response to %s /%s: %w", r.method, strings.Join(r.segs, "/"), err)
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

// queryAll posts a query and follows x-ms-continuation until the service
// omits it, appending each page's items to a slice of T.
func queryAll[T any](ctx context.Context, c *Client, segs []string, body any, pageSize int) ([]T, error) {
	if pageSize < 0 {
		return nil, fmt.Errorf("query /%s: page size %d is negative", strings.Join(segs, "/"), pageSize)
	}
	var (
		out  []T
		cont string
		seen = map[string]bool{}
	)
	for page := 1; ; page++ {
		h := http.Header{}
		if pageSize > 0 {
			h.Set(headerMaxItemCount, strconv.Itoa(pageSize))
		}
		if cont != "" {
			h.Set(headerContinuation, cont)
		}
		var items []T
		resp, err := c.call(ctx, request{method: http.MethodPost, segs: segs, header: h, body: body}, &items)
		if err != nil {
			return nil, fmt.Errorf("query page %d: %w", page, err)
		}
		out = append(out, items...)
		next, more := resp.header[http.CanonicalHeaderKey(headerContinuation)]
		if !more || len(next) == 0 || next[0] == "" {
			return out, nil
		}
		cont = next[0]
		if seen[cont] {
			return nil, fmt.Errorf("query page %d: the service repeated continuation token %q", page, cont)
		}
		seen[cont] = true
	}
}
