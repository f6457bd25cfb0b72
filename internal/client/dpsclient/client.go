package dpsclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/sas"
)

// Transport names accepted in [Options.Transport].
const (
	TransportHTTPS = "https"
	TransportMQTT  = "mqtt"
)

// Defaults applied by [New] to zero-valued [Options] fields.
const (
	DefaultAPIVersion     = "2019-03-31"
	DefaultTokenTTL       = time.Hour
	DefaultPollInterval   = 2 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultMaxPolls       = 60
	DefaultHTTPSPort      = "443"
	DefaultMQTTPort       = "8883"
)

// Bounds applied to every wait between two requests, whether it comes from
// a server Retry-After or from [Options.PollInterval].
const (
	MinWait = 100 * time.Millisecond
	MaxWait = 60 * time.Second
)

// maxIdleConnsPerHost bounds the idle keep-alive connections the shared
// SAS transport keeps open to the DPS endpoint; it is sized for the
// concurrency of `muster bench register`.
const maxIdleConnsPerHost = 256

// keyName is the skn of device registration SAS tokens.
const keyName = "registration"

// Sentinel errors callers can branch on with errors.Is.
var (
	// ErrClosed is returned by Register after Close.
	ErrClosed = errors.New("dpsclient: client closed")
	// ErrPollLimit is returned when the registration did not reach a final
	// state within Options.MaxPolls follow-up requests.
	ErrPollLimit = errors.New("dpsclient: poll limit reached")
	// ErrProtocol marks an answer that violates the DPS protocol (malformed
	// JSON, missing operationId, an assigned result without a hub, …).
	ErrProtocol = errors.New("dpsclient: protocol violation")
	// ErrResponseTimeout is returned when an MQTT request got no response
	// within Options.RequestTimeout.
	ErrResponseTimeout = errors.New("dpsclient: no response within the request timeout")
	// ErrSubscribeRefused is returned when the MQTT server refuses the
	// subscription to the response topic (SUBACK 0x80).
	ErrSubscribeRefused = errors.New("dpsclient: subscription to $dps/registrations/res/# refused")
	// ErrForceRegistrationUnsupported is returned for ForceRegistration over
	// MQTT: the DPS MQTT protocol has no forceRegistration parameter.
	ErrForceRegistrationUnsupported = errors.New("dpsclient: forceRegistration is only supported over https")
	// ErrInvalidDevice is wrapped by errors about an unusable Device value.
	ErrInvalidDevice = errors.New("dpsclient: invalid device")
)

// Credential is how a device attests. Exactly one of SymmetricKey and
// Certificate must be set.
type Credential struct {
	// SymmetricKey is the base64 device key: an individual enrollment key,
	// or a key derived from a group key with DeviceKeyFromGroup.
	SymmetricKey string
	// Certificate is the X.509 identity: the leaf and its chain in
	// Certificate.Certificate, leaf first, and the leaf's private key.
	Certificate *tls.Certificate
}

// Device is one device to register.
type Device struct {
	// RegistrationID is the DPS registration ID. For X.509 devices it
	// defaults to the leaf certificate subject CN when empty.
	RegistrationID string
	Credential     Credential
	// Payload is an optional custom JSON payload sent with the register
	// request (it reaches custom allocation webhooks).
	Payload json.RawMessage
	// ForceRegistration asks DPS to re-run allocation even when the
	// registration is already assigned (HTTPS only).
	ForceRegistration bool
}

// Options configures a Client.
type Options struct {
	// Endpoint is the DPS device endpoint, "host" or "host:port"; the port
	// defaults to 443 for https and 8883 for mqtt. A URL such as
	// "https://global.azure-devices-provisioning.net/" is accepted too.
	Endpoint string
	// IDScope is the ID scope of the DPS instance.
	IDScope string
	// Transport is "https" (default) or "mqtt".
	Transport string
	// RootCAs verifies the server certificate; nil means the system pool.
	RootCAs *x509.CertPool
	// ServerName overrides the name used for SNI and verification; empty
	// means the endpoint host.
	ServerName string
	// APIVersion is the device API version; default "2019-03-31".
	APIVersion string
	// UserAgent is sent as User-Agent (HTTPS) and ClientVersion (MQTT);
	// default "muster-dpsclient/<module version>".
	UserAgent string
	// TokenTTL is the lifetime of SAS tokens; default 1h.
	TokenTTL time.Duration
	// PollInterval is the wait between requests when the server gives no
	// Retry-After; default 2s. All waits, including server Retry-After
	// values, are clamped to [MinWait, MaxWait].
	PollInterval time.Duration
	// RequestTimeout bounds each request (HTTPS round trip including the
	// body; MQTT connect, subscribe, publish and each response); default 30s.
	RequestTimeout time.Duration
	// MaxPolls bounds the follow-up requests (polls and retries after 429
	// or 5xx) of one registration; default 60.
	MaxPolls int
	// PollImmediately sends the first poll as soon as a register request
	// is answered "assigning" or "unassigned", without waiting for its
	// Retry-After or PollInterval. Later polls wait as usual, and a 429 or
	// 5xx answer is always retried after its Retry-After. It is meant for
	// load generators (`muster bench register`) against a server that
	// completes the registration before it answers the register request, so
	// that a registration's measured time is the server's work rather than
	// the protocol's courtesy delay; real devices should leave it false.
	PollImmediately bool
	// RawResource signs the SAS resource ({idScope}/registrations/{id})
	// as-is like the Node SDK, instead of URL-encoded like the C, C# and
	// Python SDKs. It exists to exercise servers' tolerance.
	RawResource bool
	// Logger receives debug records per request; nil discards. Tokens and
	// keys are never logged.
	Logger *slog.Logger
	// Now is the clock for SAS expiry; nil means time.Now.
	Now func() time.Time
}

// Client registers devices with a DPS. It is safe for concurrent use; one
// Client can register many distinct devices.
type Client struct {
	opts     Options
	hostPort string // endpoint host:port, port always present
	urlHost  string // host for https URLs (port omitted when 443)
	log      *slog.Logger
	// sasHTTP is shared by all symmetric-key HTTPS registrations.
	sasTransport *http.Transport
	sasHTTP      *http.Client
	// sleep waits between requests; tests replace it to record waits.
	sleep  func(ctx context.Context, d time.Duration) error
	closed atomic.Bool
}

// New validates opts, applies defaults and returns a Client.
func New(opts Options) (*Client, error) {
	if opts.Transport == "" {
		opts.Transport = TransportHTTPS
	}
	opts.Transport = strings.ToLower(opts.Transport)
	var defPort string
	switch opts.Transport {
	case TransportHTTPS:
		defPort = DefaultHTTPSPort
	case TransportMQTT:
		defPort = DefaultMQTTPort
	default:
		return nil, fmt.Errorf("new dps client: transport %q is neither %q nor %q", opts.Transport, TransportHTTPS, TransportMQTT)
	}
	if opts.IDScope == "" {
		return nil, errors.New("new dps client: IDScope is empty")
	}
	if strings.ContainsAny(opts.IDScope, "/?#") {
		return nil, fmt.Errorf("new dps client: IDScope %q contains '/', '?' or '#'", opts.IDScope)
	}
	hostPort, host, err := parseEndpoint(opts.Endpoint, defPort)
	if err != nil {
		return nil, fmt.Errorf("new dps client: %w", err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"TokenTTL", opts.TokenTTL}, {"PollInterval", opts.PollInterval}, {"RequestTimeout", opts.RequestTimeout}} {
		if d.v < 0 {
			return nil, fmt.Errorf("new dps client: %s %v is negative", d.name, d.v)
		}
	}
	if opts.MaxPolls < 0 {
		return nil, fmt.Errorf("new dps client: MaxPolls %d is negative", opts.MaxPolls)
	}
	if opts.APIVersion == "" {
		opts.APIVersion = DefaultAPIVersion
	}
	if opts.UserAgent == "" {
		opts.UserAgent = defaultUserAgent()
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.MaxPolls == 0 {
		opts.MaxPolls = DefaultMaxPolls
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ServerName == "" {
		opts.ServerName = host
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		opts:     opts,
		hostPort: hostPort,
		urlHost:  hostPort,
		log:      log,
		sleep:    sleepCtx,
	}
	if _, port, _ := net.SplitHostPort(hostPort); port == DefaultHTTPSPort {
		c.urlHost = bracketHost(host)
	}
	if opts.Transport == TransportHTTPS {
		c.sasTransport = c.newHTTPTransport(nil, maxIdleConnsPerHost)
		c.sasHTTP = &http.Client{Transport: c.sasTransport, CheckRedirect: noRedirects}
	}
	return c, nil
}

// Close releases the idle connections of the shared HTTPS transport and
// makes later Register calls fail with ErrClosed. Registrations already in
// progress run to their end.
func (c *Client) Close() error {
	c.closed.Store(true)
	if c.sasTransport != nil {
		c.sasTransport.CloseIdleConnections()
	}
	return nil
}

// Register registers d and polls until the registration reaches a final
// state. It returns the registration state when the status is "assigned";
// a *FailedError for "failed", "disabled" or any other final status; a
// *StatusError for an error status the server answered with (429 and 5xx
// are retried after their Retry-After, up to Options.MaxPolls, other
// statuses are not retried); ErrPollLimit, ErrProtocol or
// ErrResponseTimeout (wrapped) otherwise.
func (c *Client) Register(ctx context.Context, d Device) (*provision.DeviceRegistrationResult, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	dev, err := c.prepare(d)
	if err != nil {
		return nil, err
	}
	var ex exchanger
	switch c.opts.Transport {
	case TransportMQTT:
		ex, err = c.openMQTT(ctx, dev)
	default:
		ex, err = c.openHTTPS(dev)
	}
	if err != nil {
		return nil, err
	}
	res, err := c.run(ctx, ex, dev.regID)
	if cerr := ex.close(); cerr != nil {
		c.log.Debug("dps close", "registrationId", dev.regID, "error", cerr)
	}
	return res, err
}

// prepared is a validated Device.
type prepared struct {
	regID string
	key   []byte           // symmetric key; nil for X.509
	cert  *tls.Certificate // nil for symmetric key
	body  []byte           // DeviceRegistration JSON
	force bool
}

func (c *Client) prepare(d Device) (*prepared, error) {
	p := &prepared{regID: d.RegistrationID, force: d.ForceRegistration}
	hasKey, hasCert := d.Credential.SymmetricKey != "", d.Credential.Certificate != nil
	switch {
	case hasKey && hasCert:
		return nil, fmt.Errorf("%w: registration %q has both a symmetric key and a certificate; set exactly one", ErrInvalidDevice, d.RegistrationID)
	case !hasKey && !hasCert:
		return nil, fmt.Errorf("%w: registration %q has neither a symmetric key nor a certificate", ErrInvalidDevice, d.RegistrationID)
	case hasKey:
		key, err := sas.DecodeKey(d.Credential.SymmetricKey)
		if err != nil {
			return nil, fmt.Errorf("%w: decode symmetric key of registration %q: %w", ErrInvalidDevice, d.RegistrationID, err)
		}
		p.key = key
	default:
		cert := d.Credential.Certificate
		if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
			return nil, fmt.Errorf("%w: certificate of registration %q lacks the leaf certificate or the private key", ErrInvalidDevice, d.RegistrationID)
		}
		p.cert = cert
		if p.regID == "" {
			leaf := cert.Leaf
			if leaf == nil {
				var err error
				if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
					return nil, fmt.Errorf("%w: parse leaf certificate: %w", ErrInvalidDevice, err)
				}
			}
			if leaf.Subject.CommonName == "" {
				return nil, fmt.Errorf("%w: RegistrationID is empty and the leaf certificate has no subject CN", ErrInvalidDevice)
			}
			p.regID = leaf.Subject.CommonName
		}
	}
	if err := validRegistrationID(p.regID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDevice, err)
	}
	if p.force && c.opts.Transport == TransportMQTT {
		return nil, fmt.Errorf("register %q: %w", p.regID, ErrForceRegistrationUnsupported)
	}
	if len(d.Payload) > 0 && !json.Valid(d.Payload) {
		return nil, fmt.Errorf("%w: payload of registration %q is not valid JSON", ErrInvalidDevice, p.regID)
	}
	body, err := json.Marshal(struct {
		RegistrationID string          `json:"registrationId"`
		Payload        json.RawMessage `json:"payload,omitempty"`
	}{p.regID, d.Payload})
	if err != nil {
		return nil, fmt.Errorf("encode register body of %q: %w", p.regID, err)
	}
	p.body = body
	return p, nil
}

// validRegistrationID applies the DPS rules: 1–128 characters, ASCII
// alphanumerics and '-', '.', '_', ':'.
func validRegistrationID(id string) error {
	if id == "" {
		return errors.New("registration ID is empty")
	}
	if len(id) > 128 {
		return fmt.Errorf("registration ID %q is %d characters long, more than 128", id, len(id))
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.' || b == '_' || b == ':') {
			return fmt.Errorf("registration ID %q has character %q at offset %d; allowed are alphanumerics and '-', '.', '_', ':'", id, b, i)
		}
	}
	return nil
}

// reply is one protocol answer, independent of the transport.
type reply struct {
	status        int
	body          []byte
	retryAfter    time.Duration
	hasRetryAfter bool
	trackingID    string // x-ms-request-id (HTTPS)
}

// exchanger performs the requests of one registration.
type exchanger interface {
	register(ctx context.Context) (reply, error)
	poll(ctx context.Context, operationID string) (reply, error)
	close() error
}

// run is the registration state machine shared by all transports.
func (c *Client) run(ctx context.Context, ex exchanger, regID string) (*provision.DeviceRegistrationResult, error) {
	opID := ""
	for followUps := 0; ; followUps++ {
		var (
			r   reply
			err error
		)
		registerReply := opID == ""
		if registerReply {
			r, err = ex.register(ctx)
		} else {
			r, err = ex.poll(ctx, opID)
		}
		if err != nil {
			return nil, err
		}
		var (
			wait    time.Duration
			lastErr error
			state   string
		)
		if r.status >= 300 || r.status < 200 {
			se := newStatusError(r)
			if !retryable(r.status) {
				return nil, se
			}
			c.log.Warn("dps retryable status", "registrationId", regID, "status", r.status, "errorCode", se.ErrorCode, "retryAfter", r.retryAfter)
			wait, lastErr, state = c.waitFor(r), se, strconv.Itoa(r.status)
		} else {
			var op provision.OperationStatus
			if err := json.Unmarshal(r.body, &op); err != nil {
				return nil, fmt.Errorf("%w: decode %d response for registration %q: %w", ErrProtocol, r.status, regID, err)
			}
			state = strings.ToLower(op.Status)
			switch state {
			case provision.StatusAssigning, provision.StatusUnassigned:
				if op.OperationID == "" {
					return nil, fmt.Errorf("%w: %q response for registration %q has no operationId", ErrProtocol, op.Status, regID)
				}
				opID = op.OperationID
				if !registerReply || !c.opts.PollImmediately {
					wait = c.waitFor(r)
				}
			case provision.StatusAssigned:
				return assignedResult(regID, &op)
			case provision.StatusFailed:
				fe := &FailedError{Status: state, State: op.RegistrationState, Message: "registration failed without an error message"}
				if s := op.RegistrationState; s != nil {
					fe.ErrorCode = s.ErrorCode
					if s.ErrorMessage != "" {
						fe.Message = s.ErrorMessage
					}
				}
				return nil, fe
			case provision.StatusDisabled:
				return nil, &FailedError{Status: state, State: op.RegistrationState, Message: "the enrollment or enrollment group of registration " + strconv.Quote(regID) + " is disabled"}
			case "":
				return nil, fmt.Errorf("%w: %d response for registration %q has no status", ErrProtocol, r.status, regID)
			default:
				return nil, &FailedError{Status: state, State: op.RegistrationState, Message: "unexpected registration status " + strconv.Quote(op.Status)}
			}
		}
		if followUps >= c.opts.MaxPolls {
			if lastErr != nil {
				return nil, fmt.Errorf("register %q: %w (%d follow-up requests); last answer: %w", regID, ErrPollLimit, followUps, lastErr)
			}
			return nil, fmt.Errorf("register %q: %w (%d follow-up requests); last status %q", regID, ErrPollLimit, followUps, state)
		}
		if wait == 0 { // PollImmediately
			continue
		}
		c.log.Debug("dps wait", "registrationId", regID, "operationId", opID, "status", state, "wait", wait)
		if err := c.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("register %q: wait before next request: %w", regID, err)
		}
	}
}

func assignedResult(regID string, op *provision.OperationStatus) (*provision.DeviceRegistrationResult, error) {
	s := op.RegistrationState
	switch {
	case s == nil:
		return nil, fmt.Errorf("%w: assigned response for registration %q has no registrationState", ErrProtocol, regID)
	case s.AssignedHub == "":
		return nil, fmt.Errorf("%w: assigned registrationState of %q has no assignedHub", ErrProtocol, regID)
	case s.DeviceID == "":
		return nil, fmt.Errorf("%w: assigned registrationState of %q has no deviceId", ErrProtocol, regID)
	}
	return s, nil
}

// retryable reports whether an error status is transient: 429 and 5xx.
func retryable(status int) bool { return status == http.StatusTooManyRequests || status >= 500 }

// waitFor is the clamped wait after r.
func (c *Client) waitFor(r reply) time.Duration {
	d := c.opts.PollInterval
	if r.hasRetryAfter {
		d = r.retryAfter
	}
	return min(max(d, MinWait), MaxWait)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// token returns a fresh SAS token for the registration resource.
func (c *Client) token(regID string, key []byte) string {
	resource := c.opts.IDScope + "/registrations/" + regID
	exp := c.opts.Now().Add(c.opts.TokenTTL)
	if c.opts.RawResource {
		return sas.SignRaw(resource, key, keyName, exp)
	}
	return sas.Sign(resource, key, keyName, exp)
}

// tlsConfig is the client TLS configuration; cert, when set, is presented
// whenever the server asks for a client certificate, whatever CAs or
// schemes it lists (DPS requests any certificate and checks it itself).
func (c *Client) tlsConfig(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{
		RootCAs:    c.opts.RootCAs,
		ServerName: c.opts.ServerName,
		MinVersion: tls.VersionTLS12,
	}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return cfg
}

// parseEndpoint returns host:port (with defPort when absent) and the bare
// host of an endpoint given as "host", "host:port", "[v6]:port" or a URL.
func parseEndpoint(ep, defPort string) (hostPort, host string, err error) {
	ep = strings.TrimSpace(ep)
	if ep == "" {
		return "", "", errors.New("endpoint is empty")
	}
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return "", "", fmt.Errorf("parse endpoint URL %q: %w", ep, err)
		}
		switch strings.ToLower(u.Scheme) {
		case "https", "mqtts", "ssl", "tls":
		default:
			return "", "", fmt.Errorf("endpoint %q has scheme %q; want https, mqtts, ssl or tls", ep, u.Scheme)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return "", "", fmt.Errorf("endpoint %q must be only a scheme, host and port", ep)
		}
		ep = u.Host
	}
	if h, p, err := net.SplitHostPort(ep); err == nil {
		if h == "" {
			return "", "", fmt.Errorf("endpoint %q has no host", ep)
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("endpoint %q has invalid port %q", ep, p)
		}
		return net.JoinHostPort(h, p), h, nil
	}
	h := strings.TrimSuffix(strings.TrimPrefix(ep, "["), "]")
	if strings.ContainsAny(h, "/?#@[] ") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
		return "", "", fmt.Errorf("endpoint %q is not host or host:port", ep)
	}
	return net.JoinHostPort(h, defPort), h, nil
}

func bracketHost(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// defaultUserAgent is "muster-dpsclient/<version>" with the version of the
// Muster module this package was built from.
func defaultUserAgent() string {
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == "github.com/muster-iot/muster" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/muster-iot/muster" && d.Version != "" {
				v = d.Version
			}
		}
	}
	return "muster-dpsclient/" + v
}

// queryEscape escapes s for a query value with spaces as %20, the way
// JavaScript's encodeURIComponent does, so every decoder reads it back.
func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
