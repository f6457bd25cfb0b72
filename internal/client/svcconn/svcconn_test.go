package svcconn

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDialAddress(t *testing.T) {
	cases := []struct{ addr, host, want, err string }{
		{"", "hub.example", "hub.example:443", ""},
		{"localhost:8443", "hub.example", "localhost:8443", ""},
		{"10.0.0.1", "hub.example", "10.0.0.1:443", ""},
		{"[::1]:9443", "h", "[::1]:9443", ""},
		{":8443", "h", "", "host is empty"},
		{"h:0", "h", "", "is not a number from 1 to 65535"},
		{"h:http", "h", "", "is not a number"},
		{"h:1:2", "h", "", "parse hub address"},
	}
	for _, tc := range cases {
		got, err := DialAddress(tc.addr, tc.host, "hub address")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("DialAddress(%q) error = %v, want %q", tc.addr, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("DialAddress(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
}

func TestShorten(t *testing.T) {
	if got := Shorten("short", 10); got != "short" {
		t.Errorf("got %q", got)
	}
	got := Shorten(strings.Repeat("é", 10), 5) // 2-byte runes: cut on a boundary
	if !utf8.ValidString(got) || got != "éé…" {
		t.Errorf("got %q", got)
	}
	if got := Shorten("a\xffb", 10); !utf8.ValidString(got) {
		t.Errorf("invalid UTF-8 kept: %q", got)
	}
}

func TestNewHTTPClientServerName(t *testing.T) {
	for host, want := range map[string]string{"hub.example": "hub.example", "127.0.0.1": ""} {
		c := NewHTTPClient(host, nil, HTTPOptions{})
		if got := tlsServerName(c); got != want {
			t.Errorf("ServerName for %s = %q, want %q", host, got, want)
		}
	}
}

func tlsServerName(c *http.Client) string {
	return c.Transport.(*http.Transport).TLSClientConfig.ServerName
}
