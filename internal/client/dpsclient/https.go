package dpsclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxResponseBody bounds a DPS response body.
const maxResponseBody = 1 << 20

// newHTTPTransport returns an HTTP/1.1 keep-alive transport to the DPS.
// cert, when set, is the client certificate presented by every connection.
func (c *Client) newHTTPTransport(cert *tls.Certificate, idlePerHost int) *http.Transport {
	tlsCfg := c.tlsConfig(cert)
	tlsCfg.NextProtos = []string{"http/1.1"}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: c.opts.RequestTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   c.opts.RequestTimeout,
		ForceAttemptHTTP2:     false,
		MaxIdleConns:          idlePerHost,
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: c.opts.RequestTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// httpsExchange performs one registration over HTTPS.
type httpsExchange struct {
	c   *Client
	dev *prepared
	hc  *http.Client
	// own is the per-registration transport of an X.509 device, closed at
	// the end so that every X.509 registration does a fresh handshake.
	own *http.Transport
}

func (c *Client) openHTTPS(dev *prepared) *httpsExchange {
	ex := &httpsExchange{c: c, dev: dev, hc: c.sasHTTP}
	if dev.cert != nil {
		ex.own = c.newHTTPTransport(dev.cert, 1)
		ex.hc = &http.Client{Transport: ex.own, CheckRedirect: noRedirects}
	}
	return ex
}

func (ex *httpsExchange) close() error {
	if ex.own != nil {
		ex.own.CloseIdleConnections()
	}
	return nil
}

// regPath is "/{idScope}/registrations/{registrationId}" escaped.
func (ex *httpsExchange) regPath() string {
	return "/" + url.PathEscape(ex.c.opts.IDScope) + "/registrations/" + url.PathEscape(ex.dev.regID)
}

func (ex *httpsExchange) register(ctx context.Context) (reply, error) {
	q := "api-version=" + queryEscape(ex.c.opts.APIVersion)
	if ex.dev.force {
		q += "&forceRegistration=true"
	}
	return ex.do(ctx, http.MethodPut, ex.regPath()+"/register", q, ex.dev.body)
}

func (ex *httpsExchange) poll(ctx context.Context, operationID string) (reply, error) {
	q := "api-version=" + queryEscape(ex.c.opts.APIVersion)
	return ex.do(ctx, http.MethodGet, ex.regPath()+"/operations/"+url.PathEscape(operationID), q, nil)
}

func (ex *httpsExchange) do(ctx context.Context, method, escPath, rawQuery string, body []byte) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, ex.c.opts.RequestTimeout)
	defer cancel()
	target := "https://" + ex.c.urlHost + escPath + "?" + rawQuery
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return reply{}, fmt.Errorf("build %s request for registration %q: %w", method, ex.dev.regID, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	req.Header.Set("User-Agent", ex.c.opts.UserAgent)
	if ex.dev.key != nil {
		req.Header.Set("Authorization", ex.c.token(ex.dev.regID, ex.dev.key))
	}
	resp, err := ex.hc.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s for registration %q: %w", method, req.URL.Redacted(), ex.dev.regID, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return reply{}, fmt.Errorf("read %s response body for registration %q: %w", method, ex.dev.regID, err)
	}
	if len(data) > maxResponseBody {
		return reply{}, fmt.Errorf("%w: %s response body for registration %q exceeds %d bytes", ErrProtocol, method, ex.dev.regID, maxResponseBody)
	}
	r := reply{status: resp.StatusCode, body: data, trackingID: resp.Header.Get("x-ms-request-id")}
	r.retryAfter, r.hasRetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	ex.c.log.Debug("dps request", "transport", TransportHTTPS, "method", method, "path", escPath,
		"registrationId", ex.dev.regID, "status", resp.StatusCode, "retryAfter", resp.Header.Get("Retry-After"), "requestId", r.trackingID)
	return r, nil
}

// maxRetryAfterSeconds caps parsed Retry-After values (waits are clamped to
// MaxWait anyway); it keeps the conversion to time.Duration from overflowing.
const maxRetryAfterSeconds = 86400

// parseRetryAfter parses a Retry-After in integer seconds. HTTP-dates and
// malformed values are reported as absent, as the Azure SDKs treat them.
func parseRetryAfter(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return maxRetryAfterSeconds * time.Second, true
		}
		return 0, false
	}
	return time.Duration(min(n, maxRetryAfterSeconds)) * time.Second, true
}
