package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/pki"
)

// target names what a connectivity check connects to, for its messages.
type target struct {
	// what is "the DPS endpoint" or "the hub".
	what string
	// addr is host:port.
	addr string
	// host is the host name or IP address (the TLS server name).
	host string
	// port is addr's port.
	port string
	// source names where the host comes from, e.g. "provisioning.global_endpoint".
	source string
	// bundle is the trust bundle file, empty for the system roots.
	bundle string
}

// newTarget splits addr into host and port.
func newTarget(what, addr, source, bundle string) (target, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return target{}, fmt.Errorf("split %s address %q: %w", what, addr, err)
	}
	return target{what: what, addr: addr, host: host, port: port, source: source, bundle: bundle}, nil
}

// handshake opens a TCP connection to t and performs a TLS handshake
// verified with roots (nil: the system roots) for t.host, within timeout.
func handshake(ctx context.Context, t target, roots *x509.CertPool, timeout time.Duration) (tls.ConnectionState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := tls.Dialer{
		NetDialer: &net.Dialer{},
		Config:    &tls.Config{RootCAs: roots, ServerName: t.host, MinVersion: tls.VersionTLS12},
	}
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState(), nil
}

// describeTLSError turns a failed connection or handshake into a message
// naming the precise cause and a fix. now is the local time, for
// certificate validity errors.
func describeTLSError(err error, t target, timeout time.Duration, now time.Time) (message, fix string) {
	var (
		dnsErr   *net.DNSError
		unknown  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
		recErr   tls.RecordHeaderError
		opErr    *net.OpError
		netErr   net.Error
		checkKey = "provisioning.global_endpoint"
	)
	if t.source != "" {
		checkKey = t.source
	}
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Sprintf("the connection to %s %s was interrupted", t.what, t.addr), "Run the check again."
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("could not resolve the host name %q of %s: %v", t.host, t.what, dnsErr),
			fmt.Sprintf("Check the host name in %s and this host's DNS configuration.", checkKey)
	case errors.As(err, &unknown):
		msg := fmt.Sprintf("%s %s presented a certificate that the trust bundle does not verify: %v", t.what, t.addr, err)
		if c := unknown.Cert; c != nil {
			msg = fmt.Sprintf("%s %s presented a certificate (%s, issued by %s) that the trust bundle does not verify",
				t.what, t.addr, pki.DistinguishedName(c.Subject), pki.DistinguishedName(c.Issuer))
		}
		if t.bundle != "" {
			return msg, fmt.Sprintf("Add the CA certificate that issued the server's certificate to the trust bundle %s (trust_bundle_cert). For Muster it is the caCertFile named in the server's endpoints.json.", t.bundle)
		}
		return msg + " (no trust_bundle_cert is set, so only the system's CAs are trusted)",
			"Set trust_bundle_cert in config.toml to the CA certificate of the server (for Muster: the caCertFile named in the server's endpoints.json), for example with `iotedge init --trust-bundle FILE`, then run `iotedge config apply`."
	case errors.As(err, &hostErr):
		names := "no host names"
		if c := hostErr.Certificate; c != nil {
			var all []string
			all = append(all, c.DNSNames...)
			for _, ip := range c.IPAddresses {
				all = append(all, ip.String())
			}
			if len(all) > 0 {
				names = strings.Join(all, ", ")
			}
		}
		return fmt.Sprintf("the certificate of %s %s is not valid for %q: it names %s", t.what, t.addr, t.host, names),
			fmt.Sprintf("Use in %s a host name the certificate names, or give the server a certificate for %q (for Muster: muster serve --hostname %s).", checkKey, t.host, t.host)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		msg := fmt.Sprintf("a certificate presented by %s %s is not valid at the local time %s", t.what, t.addr, now.UTC().Format(time.RFC3339))
		if c := invalid.Cert; c != nil {
			msg = fmt.Sprintf("the certificate %s presented by %s %s is valid from %s to %s, not at the local time %s",
				pki.DistinguishedName(c.Subject), t.what, t.addr, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		return msg, "If the local clock is wrong (see the host-local-time check), correct it; otherwise the server's certificate must be renewed."
	case errors.As(err, &recErr):
		return fmt.Sprintf("%s %s does not speak TLS (it answered %q)", t.what, t.addr, string(recErr.RecordHeader[:])),
			fmt.Sprintf("Check the port in %s: it must be the server's TLS port.", checkKey)
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Sprintf("%s %s did not complete a TLS handshake within %v", t.what, t.addr, timeout),
			fmt.Sprintf("Check that the server runs and that this host can reach %s: outbound TCP port %s must be open (firewall rules, proxy).", t.addr, t.port)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Sprintf("could not connect to %s %s: %v", t.what, t.addr, opErr.Err),
			fmt.Sprintf("Check that the server runs and listens on port %s of %s, and that outbound TCP port %s is open (firewall rules, proxy).", t.port, t.host, t.port)
	default:
		return fmt.Sprintf("could not perform a TLS handshake with %s %s: %v", t.what, t.addr, err),
			fmt.Sprintf("Check that %s is the TLS address of the server and that the server accepts TLS 1.2 or later.", t.addr)
	}
}

// referenceTime asks an HTTPS server for its time. It sends one HEAD
// request to https://<t.addr>/ and reads the Date header of whatever
// response comes back (the status does not matter). The server's identity
// is verified with roots for t.host, but at a time inside the leaf
// certificate's validity period instead of the local clock's, since a wrong
// local clock is what the caller looks for. It returns the local time
// halfway between sending the request and receiving the response headers,
// and the server's time: the Date header, which is truncated to the
// second, plus half a second.
func referenceTime(ctx context.Context, t target, roots *x509.CertPool, timeout time.Duration, now func() time.Time) (local, server time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			ServerName: t.host,
			MinVersion: tls.VersionTLS12,
			// The chain is verified in VerifyConnection, without the local
			// clock; nothing is sent before it succeeds.
			InsecureSkipVerify: true,
			VerifyConnection:   func(cs tls.ConnectionState) error { return verifyIgnoringClock(cs, roots, t.host) },
		},
		DialContext:       (&net.Dialer{}).DialContext,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, "https://"+t.addr+"/", nil)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("build the request to %s: %w", t.addr, err)
	}
	sent := now()
	resp, err := client.Do(req)
	received := now()
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	resp.Body.Close()
	date := resp.Header.Get("Date")
	if date == "" {
		return time.Time{}, time.Time{}, fmt.Errorf("the response of %s has no Date header", t.addr)
	}
	server, err = http.ParseTime(date)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("the Date header %q of %s is not an HTTP date: %w", date, t.addr, err)
	}
	return sent.Add(received.Sub(sent) / 2), server.Add(500 * time.Millisecond), nil
}

// verifyIgnoringClock verifies the server's chain with roots (nil: the
// system roots) for host, at the middle of the leaf's validity period.
func verifyIgnoringClock(cs tls.ConnectionState, roots *x509.CertPool, host string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       host,
		CurrentTime:   leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2),
	})
	return err
}
