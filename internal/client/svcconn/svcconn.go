// Package svcconn holds the connection plumbing shared by Muster's service
// API clients (the DPS service client and the remote hub client): the
// address to dial and an HTTPS client that verifies the server as the
// connection string's host name.
package svcconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DialAddress validates the "host:port" to dial, defaulting to hostName:443
// (and to port 443 when addr has no port). what names the address in errors.
func DialAddress(addr, hostName, what string) (string, error) {
	if addr == "" {
		return net.JoinHostPort(hostName, "443"), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) && ae.Err == "missing port in address" {
			return net.JoinHostPort(addr, "443"), nil
		}
		return "", fmt.Errorf("parse %s %q: %w", what, addr, err)
	}
	if host == "" {
		return "", fmt.Errorf("parse %s %q: host is empty", what, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("parse %s %q: port %q is not a number from 1 to 65535", what, addr, port)
	}
	return addr, nil
}

// HTTPOptions tune NewHTTPClient.
type HTTPOptions struct {
	// MaxIdleConns per host (default 16).
	MaxIdleConns int
	// DialTimeout (default 10s).
	DialTimeout time.Duration
	// ResponseHeaderTimeout (0: none).
	ResponseHeaderTimeout time.Duration
	// Timeout of a whole request (0: none; callers then bound by context).
	Timeout time.Duration
}

// NewHTTPClient returns an HTTPS client that verifies the server against
// roots (system roots when nil) and, when hostName is a DNS name, expects it
// as the certificate's name even though another address is dialled.
func NewHTTPClient(hostName string, roots *x509.CertPool, o HTTPOptions) *http.Client {
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = 16
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if net.ParseIP(hostName) == nil {
		tlsCfg.ServerName = hostName
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          o.MaxIdleConns,
		MaxIdleConnsPerHost:   o.MaxIdleConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
	}
	return &http.Client{Transport: tr, Timeout: o.Timeout}
}

// Shorten returns at most max bytes of s as valid UTF-8, cut on a rune
// boundary and marked with "…" when cut, for quoting server text in errors.
func Shorten(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
