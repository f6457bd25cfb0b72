package dpsclient

import (
	"bufio"
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
	// own is the per-registration connection of an X.509 device, closed at
	// the end so that every X.509 registration does a fresh handshake; nil
	// for symmetric-key devices, whose requests share the client's
	// keep-alive pool, and when a proxy applies (then hc is a
	// per-registration transport through it).
	own *oneConn
	// ownTransport is the per-registration transport through a proxy.
	ownTransport *http.Transport
}

func (c *Client) openHTTPS(dev *prepared) (*httpsExchange, error) {
	ex := &httpsExchange{c: c, dev: dev, hc: c.sasHTTP}
	if dev.cert == nil {
		return ex, nil
	}
	proxy, err := http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: "https", Host: c.urlHost}})
	if err != nil {
		return nil, fmt.Errorf("proxy for %s: %w", c.urlHost, err)
	}
	if proxy != nil {
		ex.ownTransport = c.newHTTPTransport(dev.cert, 1)
		ex.hc = &http.Client{Transport: ex.ownTransport, CheckRedirect: noRedirects}
		return ex, nil
	}
	tlsCfg := c.tlsConfig(dev.cert)
	tlsCfg.NextProtos = []string{"http/1.1"}
	ex.own = &oneConn{addr: c.hostPort, dialer: &tls.Dialer{NetDialer: &net.Dialer{Timeout: c.opts.RequestTimeout, KeepAlive: -1}, Config: tlsCfg}}
	return ex, nil
}

func (ex *httpsExchange) close() error {
	if ex.ownTransport != nil {
		ex.ownTransport.CloseIdleConnections()
	}
	if ex.own != nil {
		return ex.own.close()
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
	var resp *http.Response
	if ex.own != nil {
		resp, err = ex.own.roundTrip(ctx, req)
	} else {
		resp, err = ex.hc.Do(req)
	}
	if err != nil {
		return reply{}, fmt.Errorf("%s %s for registration %q: %w", method, req.URL.Redacted(), ex.dev.regID, err)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	resp.Body.Close()
	if ex.own != nil {
		ex.own.done(resp, err == nil && len(data) <= maxResponseBody)
	}
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

// oneConn is the single HTTP/1.1 connection of one X.509 registration: the
// register request and the polls go over it in turn, as the device SDKs
// do, and it is closed at the end. It writes requests and reads responses
// with net/http's own wire code (Request.Write, ReadResponse) without the
// pooling Transport, whose per-connection goroutines and hand-offs cost a
// one-shot connection more than its requests do. A response that closes
// the connection, or one not read to its end, makes the next request dial
// again.
type oneConn struct {
	addr   string
	dialer *tls.Dialer
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	// cancelled is set when the request's context ended while the
	// response was read: its deadline may already be in the past.
	cancelled bool
}

// roundTrip sends req and reads the response header; the caller reads the
// body and then calls done. The context's deadline and cancellation bound
// the dial, the write and the read of the whole response.
func (o *oneConn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	if o.conn == nil {
		c, err := o.dialer.DialContext(ctx, "tcp", o.addr)
		if err != nil {
			return nil, err
		}
		o.conn = c
		o.br = bufio.NewReader(c)
		o.bw = bufio.NewWriter(c)
	}
	conn := o.conn
	dl, _ := ctx.Deadline()
	if err := conn.SetDeadline(dl); err != nil {
		o.close()
		return nil, err
	}
	// Cancellation interrupts a blocked read or write; the connection is
	// then closed by done or close.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	resp, err := o.exchange(req)
	if err != nil {
		stop()
		o.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	resp.Body = &stopOnClose{ReadCloser: resp.Body, stop: stop, o: o}
	return resp, nil
}

func (o *oneConn) exchange(req *http.Request) (*http.Response, error) {
	if err := req.Write(o.bw); err != nil {
		return nil, err
	}
	if err := o.bw.Flush(); err != nil {
		return nil, err
	}
	return http.ReadResponse(o.br, req)
}

// done keeps the connection for the next request only if the response
// was read to its end and does not close the connection.
func (o *oneConn) done(resp *http.Response, readAll bool) {
	if !readAll || resp.Close || o.cancelled || o.br.Buffered() > 0 {
		o.close()
	}
}

func (o *oneConn) close() error {
	if o.conn == nil {
		return nil
	}
	err := o.conn.Close()
	o.conn, o.br, o.bw, o.cancelled = nil, nil, nil, false
	return err
}

// stopOnClose stops the cancellation hook of a response when its body is
// closed, and marks the connection for closing if the hook already ran.
type stopOnClose struct {
	io.ReadCloser
	stop func() bool
	o    *oneConn
}

func (b *stopOnClose) Close() error {
	if !b.stop() {
		b.o.cancelled = true
	}
	return b.ReadCloser.Close()
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
