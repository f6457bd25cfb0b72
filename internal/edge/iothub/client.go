package iothub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/muster-iot/muster/internal/sas"
)

// Defaults of Options fields left zero.
const (
	// DefaultTokenTTL is the lifetime of the SAS tokens a Client signs
	// (the Node SDK's); the Client reconnects with a new token when
	// RenewFraction of it has passed.
	DefaultTokenTTL = time.Hour
	// DefaultKeepAlive is the MQTT keep-alive.
	DefaultKeepAlive = 60 * time.Second
	// DefaultRequestTimeout bounds a connect, a subscribe, a publish and a
	// twin request.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultMinBackoff and DefaultMaxBackoff bound the pause between
	// connection attempts, which doubles after each failure.
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = time.Minute
	// stableAfter is how long a connection must last for the back-off to
	// start again from its minimum.
	stableAfter = time.Minute
	// RenewFraction of a token's lifetime passes before it is renewed.
	RenewFraction = 0.8
	// quiesceMillis is how long a disconnect waits for in-flight work.
	quiesceMillis = 250
	// subackFailure is the SUBACK code of a refused subscription.
	subackFailure = 0x80
)

// Sentinel errors.
var (
	// ErrNotConnected means the Client has no live connection now; the
	// caller retries after the next connect (Options.OnConnect).
	ErrNotConnected = errors.New("iothub: not connected to the hub")
	// ErrConnectionLost means the connection ended before an answer came.
	ErrConnectionLost = errors.New("iothub: connection to the hub lost")
	// ErrRejected matches every *RejectedError.
	ErrRejected = errors.New("iothub: the hub refused the credential")
)

// RejectedError is a CONNACK that refuses the identity or its credential
// (2 identifier rejected, 4 bad user name or password, 5 not authorized):
// the identity is gone, disabled, or its key or certificate changed.
type RejectedError struct {
	// Identity names the device or module.
	Identity string
	// Code is the CONNACK return code.
	Code byte
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("the hub refused %s: CONNACK %d (%s)", e.Identity, e.Code, packets.ConnackReturnCodes[e.Code])
}

// Is reports whether target is ErrRejected.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// StatusError is a twin request the hub answered with an error status.
type StatusError struct {
	Op     string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("%s: the hub answered %d", e.Op, e.Status)
	}
	return fmt.Sprintf("%s: the hub answered %d: %s", e.Op, e.Status, e.Body)
}

// Identity is who a Client connects as.
type Identity struct {
	// Hub is the hub's host name, as the username and the token name it.
	Hub string
	// DeviceID is the device.
	DeviceID string
	// ModuleID is the module, empty for the device itself.
	ModuleID string
	// Key is the identity's symmetric key (raw bytes) for SAS tokens; nil
	// when Certificate is set.
	Key []byte
	// Certificate is the device's X.509 client certificate and key.
	Certificate *tls.Certificate
}

// String names the identity as logs show it: device or device/module.
func (id Identity) String() string { return ClientID(id.DeviceID, id.ModuleID) }

// Subscription is a topic filter a Client subscribes to on every connect.
type Subscription struct {
	Filter string
	QoS    byte
}

// Options configure a Client.
type Options struct {
	// Identity is who to connect as. Required.
	Identity Identity
	// Addr is the hub's MQTT address, host:port. Required.
	Addr string
	// RootCAs verify the hub (system roots when nil).
	RootCAs *x509.CertPool
	// ServerName is the TLS server name; empty means Addr's host.
	ServerName string
	// ClientType is the DeviceClientType of the username.
	ClientType string
	// Subscriptions are subscribed on every connect, after the twin
	// response filter, which is always subscribed.
	Subscriptions []Subscription
	// OnMessage receives every message that is not the answer to one of
	// this Client's own twin requests, in the order they arrive. It runs on
	// the connection's receive path and must not block.
	OnMessage func(topic string, payload []byte)
	// OnConnect is called in its own goroutine after every successful
	// connect and subscribe; its context ends with the connection.
	OnConnect func(ctx context.Context)
	// TokenTTL, KeepAlive, RequestTimeout, MinBackoff and MaxBackoff
	// default to the constants above.
	TokenTTL       time.Duration
	KeepAlive      time.Duration
	RequestTimeout time.Duration
	MinBackoff     time.Duration
	MaxBackoff     time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Logger receives connection events (discarded when nil).
	Logger *slog.Logger
}

// State is what a Client knows of its connection.
type State struct {
	// Connected is true while a connection is up.
	Connected bool
	// Since is when the connection came up or went down.
	Since time.Time
	// LastError is why the last connection attempt or connection ended,
	// "" when none has.
	LastError string
	// Attempts counts the failed attempts since the last connection.
	Attempts int
}

// reply is one twin response.
type reply struct {
	resp TwinResponse
	body []byte
}

// Client is an MQTT session with the hub. Create it with New and run it
// with Run; its request methods work while it is connected.
type Client struct {
	opts     Options
	log      *slog.Logger
	identity string

	mu      sync.Mutex
	cli     paho.Client
	lost    chan struct{} // closed when the current connection ends
	waiters map[string]chan reply
	nextRID uint64
	state   State
}

// New checks opts and returns a Client; it connects only in Run.
func New(opts Options) (*Client, error) {
	id := opts.Identity
	switch {
	case id.Hub == "" || id.DeviceID == "":
		return nil, errors.New("new hub client: Identity.Hub and Identity.DeviceID are required")
	case len(id.Key) == 0 && id.Certificate == nil:
		return nil, fmt.Errorf("new hub client for %s: neither a key nor a certificate", id)
	case opts.Addr == "":
		return nil, fmt.Errorf("new hub client for %s: Addr is required", id)
	}
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("new hub client for %s: Addr %q: %w", id, opts.Addr, err)
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ServerName == "" {
		opts.ServerName, _, _ = net.SplitHostPort(opts.Addr)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{opts: opts, log: log, identity: id.String(), waiters: map[string]chan reply{}}, nil
}

// Identity returns who the Client connects as.
func (c *Client) Identity() Identity { return c.opts.Identity }

// State returns the connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Run connects and keeps the Client connected until ctx ends (returning
// ctx.Err()) or the hub refuses the credential (returning a
// *RejectedError, after which the caller decides: reprovision, fetch a new
// key). Any other failure is retried after a back-off that doubles from
// MinBackoff to MaxBackoff (with jitter) and starts again once a
// connection has lasted a minute. A connection is renewed with a fresh
// token before its token expires.
func (c *Client) Run(ctx context.Context) error {
	delay := c.opts.MinBackoff
	for {
		began := c.opts.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrRejected) {
			c.fail(err)
			return err
		}
		if err == nil { // renewal: reconnect at once
			delay = c.opts.MinBackoff
			continue
		}
		c.fail(err)
		if c.opts.Now().Sub(began) >= stableAfter {
			delay = c.opts.MinBackoff
		}
		wait := delay/2 + rand.N(delay/2+1)
		c.log.Info("hub connection failed; retrying", "identity", c.identity, "addr", c.opts.Addr, "err", err, "retryIn", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, c.opts.MaxBackoff)
	}
}

// fail records a failed attempt or a lost connection.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Connected {
		c.state.Connected, c.state.Since = false, c.opts.Now()
	}
	c.state.LastError = err.Error()
	c.state.Attempts++
}

// password returns the CONNECT password: a SAS token valid for TokenTTL,
// or "" for a certificate identity.
func (c *Client) password(now time.Time) string {
	id := c.opts.Identity
	if id.Certificate != nil {
		return ""
	}
	return sas.Sign(Resource(id.Hub, id.DeviceID, id.ModuleID), id.Key, "", now.Add(c.opts.TokenTTL))
}

// tlsConfig is the TLS configuration of a connection.
func (c *Client) tlsConfig() *tls.Config {
	cfg := &tls.Config{RootCAs: c.opts.RootCAs, ServerName: c.opts.ServerName, MinVersion: tls.VersionTLS12}
	if cert := c.opts.Identity.Certificate; cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// session runs one connection: it returns nil when the token is due for
// renewal, and an error when the connection could not be made or ended.
func (c *Client) session(ctx context.Context) error {
	id := c.opts.Identity
	now := c.opts.Now()
	tlsCfg := c.tlsConfig()
	lost := make(chan struct{})
	var lostOnce sync.Once
	var lostErr error
	dialCtx, cancelDial := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancelDial()

	o := paho.NewClientOptions()
	o.AddBroker("ssl://" + c.opts.Addr)
	o.SetClientID(ClientID(id.DeviceID, id.ModuleID))
	o.SetUsername(Username(id.Hub, id.DeviceID, id.ModuleID, c.opts.ClientType))
	if pw := c.password(now); pw != "" {
		o.SetPassword(pw)
	}
	o.SetProtocolVersion(4)
	// The SDKs connect with clean session 0; subscriptions are renewed on
	// every connect anyway.
	o.SetCleanSession(false)
	o.SetKeepAlive(c.opts.KeepAlive)
	o.SetPingTimeout(c.opts.RequestTimeout)
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetOrderMatters(true) // handlers never block: messages keep their order
	o.SetConnectTimeout(c.opts.RequestTimeout)
	o.SetWriteTimeout(c.opts.RequestTimeout)
	o.SetTLSConfig(tlsCfg)
	o.SetCustomOpenConnectionFn(func(*url.URL, paho.ClientOptions) (net.Conn, error) {
		d := &tls.Dialer{NetDialer: &net.Dialer{}, Config: tlsCfg}
		return d.DialContext(dialCtx, "tcp", c.opts.Addr)
	})
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.onMessage(m.Topic(), m.Payload()) })
	o.SetConnectionLostHandler(func(_ paho.Client, err error) {
		lostOnce.Do(func() { lostErr = err; close(lost) })
	})
	cli := paho.NewClient(o)
	tok := cli.Connect()
	if err := wait(dialCtx, tok); err != nil {
		go func() { <-tok.Done(); cli.Disconnect(0) }()
		if ct, ok := tok.(*paho.ConnectToken); ok {
			switch code := ct.ReturnCode(); code {
			case packets.ErrRefusedIDRejected, packets.ErrRefusedBadUsernameOrPassword, packets.ErrRefusedNotAuthorised:
				return &RejectedError{Identity: c.identity, Code: code}
			}
		}
		return fmt.Errorf("connect %s to %s: %w", c.identity, c.opts.Addr, err)
	}
	defer cli.Disconnect(quiesceMillis)
	subs := append([]Subscription{{Filter: TwinResponseFilter}}, c.opts.Subscriptions...)
	if err := c.subscribe(ctx, cli, subs); err != nil {
		return err
	}

	c.mu.Lock()
	c.cli, c.lost = cli, lost
	c.state = State{Connected: true, Since: c.opts.Now()}
	c.mu.Unlock()
	c.log.Info("connected to the hub", "identity", c.identity, "addr", c.opts.Addr)
	connCtx, cancelConn := context.WithCancel(ctx)
	var hooks sync.WaitGroup
	if c.opts.OnConnect != nil {
		hooks.Go(func() { c.opts.OnConnect(connCtx) })
	}
	defer func() {
		cancelConn()
		c.mu.Lock()
		c.cli, c.lost = nil, nil
		for rid, ch := range c.waiters {
			close(ch)
			delete(c.waiters, rid)
		}
		c.mu.Unlock()
		hooks.Wait()
	}()

	renew := time.Duration(float64(c.opts.TokenTTL) * RenewFraction)
	var renewC <-chan time.Time
	if id.Certificate == nil {
		t := time.NewTimer(renew)
		defer t.Stop()
		renewC = t.C
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-lost:
		return fmt.Errorf("connection of %s to %s lost: %w", c.identity, c.opts.Addr, lostErr)
	case <-renewC:
		c.log.Info("renewing the SAS token: reconnecting", "identity", c.identity)
		return nil
	}
}

// subscribe subscribes to subs in one SUBSCRIBE and fails when the hub
// refuses one of them.
func (c *Client) subscribe(ctx context.Context, cli paho.Client, subs []Subscription) error {
	filters := make(map[string]byte, len(subs))
	for _, s := range subs {
		filters[s.Filter] = s.QoS
	}
	sctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	tok := cli.SubscribeMultiple(filters, nil)
	if err := wait(sctx, tok); err != nil {
		return fmt.Errorf("subscribe %s: %w", c.identity, err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		for f, code := range st.Result() {
			if code == subackFailure {
				return fmt.Errorf("subscribe %s: the hub refused the subscription to %s", c.identity, f)
			}
		}
	}
	return nil
}

// onMessage hands a twin response to its waiter, everything else to
// OnMessage.
func (c *Client) onMessage(topic string, payload []byte) {
	if r, err := ParseTwinResponse(topic); err == nil {
		c.mu.Lock()
		ch, ok := c.waiters[r.RID]
		delete(c.waiters, r.RID)
		c.mu.Unlock()
		if ok {
			ch <- reply{resp: r, body: append([]byte(nil), payload...)}
			return
		}
	}
	if c.opts.OnMessage != nil {
		c.opts.OnMessage(topic, payload)
	}
}

// wait waits for a paho token, bounded by ctx.
func wait(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// current returns the live connection, or ErrNotConnected.
func (c *Client) current() (paho.Client, chan struct{}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cli == nil {
		return nil, nil, ErrNotConnected
	}
	return c.cli, c.lost, nil
}

// Publish publishes payload on topic at qos (0 or 1) and, at QoS 1, waits
// for the hub's PUBACK.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte, qos byte) error {
	cli, _, err := c.current()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	if err := wait(ctx, cli.Publish(topic, qos, false, payload)); err != nil {
		return fmt.Errorf("publish %s as %s: %w", topic, c.identity, err)
	}
	return nil
}

// SendEvent sends a telemetry message (QoS 1) with a property bag that is
// already encoded (telemetry.EncodeBag), and returns once the hub accepted
// it.
func (c *Client) SendEvent(ctx context.Context, bag string, payload []byte) error {
	id := c.opts.Identity
	return c.Publish(ctx, EventsTopic(id.DeviceID, id.ModuleID, bag), payload, 1)
}

// request publishes a twin request and waits for its response.
func (c *Client) request(ctx context.Context, op string, topic func(rid string) string, body []byte) (reply, error) {
	cli, lost, err := c.current()
	if err != nil {
		return reply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	ch := make(chan reply, 1)
	c.mu.Lock()
	c.nextRID++
	rid := strconv.FormatUint(c.nextRID, 10)
	c.waiters[rid] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, rid)
		c.mu.Unlock()
	}()
	if err := wait(ctx, cli.Publish(topic(rid), 0, false, body)); err != nil {
		return reply{}, fmt.Errorf("%s as %s: %w", op, c.identity, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return reply{}, fmt.Errorf("%s as %s: %w", op, c.identity, ErrConnectionLost)
		}
		return r, nil
	case <-lost:
		return reply{}, fmt.Errorf("%s as %s: %w", op, c.identity, ErrConnectionLost)
	case <-ctx.Done():
		return reply{}, fmt.Errorf("%s as %s: no answer: %w", op, c.identity, ctx.Err())
	}
}

// Twin is the device-side view of a twin: desired and reported
// properties, each with its $version.
type Twin struct {
	Desired  json.RawMessage `json:"desired"`
	Reported json.RawMessage `json:"reported"`
}

// GetTwin reads the identity's twin.
func (c *Client) GetTwin(ctx context.Context) (*Twin, error) {
	r, err := c.request(ctx, "twin GET", func(rid string) string { return twinGetPrefix + rid }, nil)
	if err != nil {
		return nil, err
	}
	if r.resp.Status != 200 {
		return nil, &StatusError{Op: "twin GET as " + c.identity, Status: r.resp.Status, Body: shorten(r.body)}
	}
	var t Twin
	if err := json.Unmarshal(r.body, &t); err != nil {
		return nil, fmt.Errorf("twin GET as %s: decode the answer: %w", c.identity, err)
	}
	if len(t.Desired) == 0 {
		t.Desired = json.RawMessage(`{}`)
	}
	if len(t.Reported) == 0 {
		t.Reported = json.RawMessage(`{}`)
	}
	return &t, nil
}

// PatchReported merges patch (a JSON merge patch) into the reported
// properties and returns their new $version.
func (c *Client) PatchReported(ctx context.Context, patch []byte) (int64, error) {
	r, err := c.request(ctx, "reported PATCH", func(rid string) string { return twinPatchPrefix + rid }, patch)
	if err != nil {
		return 0, err
	}
	if r.resp.Status != 200 && r.resp.Status != 204 {
		return 0, &StatusError{Op: "reported PATCH as " + c.identity, Status: r.resp.Status, Body: shorten(r.body)}
	}
	return r.resp.Version, nil
}

// shorten quotes at most 512 bytes of an answer in an error.
func shorten(b []byte) string {
	const limit = 512
	if len(b) > limit {
		return string(b[:limit]) + "…"
	}
	return string(b)
}
