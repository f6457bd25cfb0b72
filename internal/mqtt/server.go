package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	cmqtt "github.com/wind-c/comqtt/v2/mqtt"
	"github.com/wind-c/comqtt/v2/mqtt/packets"
)

// DefaultMaxPacketSize is the largest MQTT packet accepted when
// Options.MaxPacketSize is 0.
const DefaultMaxPacketSize = 256 << 10

const (
	// handshakeTimeout bounds the TLS handshake of an accepted connection.
	handshakeTimeout = 10 * time.Second
	// connectTimeout bounds the wait for the CONNECT packet; afterwards the
	// client's keep-alive governs the connection.
	connectTimeout = 30 * time.Second
	// realmConnectTimeout bounds Realm.Connect.
	realmConnectTimeout = 30 * time.Second
	// requestTimeout bounds one DPS request and one realm Publish.
	requestTimeout = 2 * time.Minute
	// maxRequestsPerConn is how many DPS requests of one connection run at
	// once; further requests wait (the connection's read loop stops), which
	// is the back-pressure for a flooding client.
	maxRequestsPerConn = 8
	// sessionExpirySeconds caps how long the broker keeps the state of a
	// disconnected persistent (clean session 0) client.
	sessionExpirySeconds = 24 * 60 * 60
	// closeWriteTimeout bounds the writes still pending when Close runs.
	closeWriteTimeout = time.Second
	// maxAcceptBackoff caps the pause after a failed Accept.
	maxAcceptBackoff = time.Second
	// clientReadBufferSize is the broker's read buffer per connection. A
	// TLS connection holds a whole decrypted record itself, so a small
	// buffer costs only calls, not system calls, for larger packets.
	clientReadBufferSize = 512
	// dpsClientIDPrefix starts the broker-side client ID of DPS
	// connections. A DPS CONNECT is not authenticated (DPS checks
	// credentials per request), so DPS connections get unique broker IDs
	// and can never take over another session. '#' cannot occur in a hub
	// device or module ID.
	dpsClientIDPrefix = "dps#"
)

// Sentinel errors.
var (
	// ErrServerClosed is returned by Serve, ServeConn and Peer methods once
	// Close has been called.
	ErrServerClosed = errors.New("mqtt: server closed")
	// ErrNotSubscribed means a message was not sent because no subscription
	// of the client matches its topic.
	ErrNotSubscribed = errors.New("mqtt: client has no subscription matching the topic")
	// ErrClientGone means the client's connection has ended.
	ErrClientGone = errors.New("mqtt: client connection has ended")
	// ErrClientBusy means an MQTT 5 client's Receive Maximum of unacknowledged
	// QoS 1 messages is reached.
	ErrClientBusy = errors.New("mqtt: client's receive maximum is reached")
)

// Options configure a Server.
type Options struct {
	// Logger receives the adapter's logs; the broker library's own logs go
	// to it demoted (its errors as warnings, the rest as debug). Default:
	// discard.
	Logger *slog.Logger
	// DPS serves DPS-over-MQTT requests. When nil, DPS usernames are
	// treated like any other (handed to HubRealm, or refused).
	DPS DPS
	// Now is the clock for response timestamps. Default: time.Now.
	Now func() time.Time
	// MaxPacketSize is the largest MQTT packet accepted, in bytes.
	// Default: DefaultMaxPacketSize.
	MaxPacketSize int
	// HubRealm serves every CONNECT whose username is not a DPS username.
	// When nil such CONNECTs are refused with CONNACK 0x05.
	HubRealm Realm
}

// Server is Muster's MQTT endpoint. Create it with New, feed it connections
// with Serve, ServeConn or WebSocketHandler, and stop it with Close.
type Server struct {
	log    *slog.Logger
	dps    DPS
	hub    Realm
	now    func() time.Time
	broker *cmqtt.Server

	// ctx is cancelled by Close; it bounds handshakes, requests and
	// WebSocket connections.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	// wg counts connection goroutines, ServeConn and WebSocket calls, and
	// DPS request goroutines; Add happens only under mu while !closed.
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	// seq numbers DPS connections for their unique broker client IDs.
	seq atomic.Uint64
	// panics counts recovered panics (tests assert it stays 0).
	panics atomic.Int64
}

// New returns a Server ready to accept connections.
func New(opts Options) (*Server, error) {
	if opts.MaxPacketSize < 0 {
		return nil, fmt.Errorf("new mqtt server: MaxPacketSize %d is negative", opts.MaxPacketSize)
	}
	if opts.MaxPacketSize == 0 {
		opts.MaxPacketSize = DefaultMaxPacketSize
	}
	if opts.MaxPacketSize > 268435455+5 { // MQTT's largest encodable packet
		return nil, fmt.Errorf("new mqtt server: MaxPacketSize %d exceeds the MQTT maximum of 268435460", opts.MaxPacketSize)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		log:       opts.Logger,
		dps:       opts.DPS,
		hub:       opts.HubRealm,
		now:       opts.Now,
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
	}
	s.broker = cmqtt.New(&cmqtt.Options{
		Capabilities: &cmqtt.Capabilities{
			MaximumSessionExpiryInterval: sessionExpirySeconds,
			MaximumMessageExpiryInterval: sessionExpirySeconds,
			ReceiveMaximum:               1024,
			MaximumQos:                   1, // QoS 2 is not offered (Azure IoT neither)
			RetainAvailable:              1, // accepted but never stored: realm publishes are not routed
			MaximumPacketSize:            uint32(opts.MaxPacketSize),
			TopicAliasMaximum:            0, // not advertised, so not accepted
			WildcardSubAvailable:         1,
			SubIDAvailable:               0,
			SharedSubAvailable:           0,
			MinimumProtocolVersion:       3,
			// The outbound queue only serves broker-routed messages, which
			// never happen here; keep its per-client buffer small.
			MaximumClientWritesPending: 16,
		},
		// The broker reads through this buffer; it never writes through its
		// write buffer (packets go to the connection directly), so that one
		// is as small as bufio allows. Both are per connection.
		ClientNetReadBufferSize:  clientReadBufferSize,
		ClientNetWriteBufferSize: 16,
		Logger:                   slog.New(libHandler{opts.Logger.Handler()}),
		// $SYS topics are published once at start; no client may read them.
		SysTopicResendInterval: 1 << 30,
	})
	if err := s.broker.AddHook(&hook{s: s}, nil); err != nil {
		cancel()
		return nil, fmt.Errorf("new mqtt server: add hook: %w", err)
	}
	if err := s.broker.Serve(); err != nil { // starts the expiry loop; no library listeners
		cancel()
		return nil, fmt.Errorf("new mqtt server: start broker: %w", err)
	}
	return s, nil
}

// Serve accepts connections from ln until Close is called, which makes it
// return ErrServerClosed. Connections that are *tls.Conn (a tls.Listener's)
// complete their handshake first, bounded by a timeout, and their peer
// certificates reach the realms. Temporary Accept failures are retried
// with back-off; if ln is closed by someone else, Serve returns that error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept mqtt connection: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), maxAcceptBackoff)
			s.log.Warn("accept mqtt connection failed; retrying", "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		if !s.enter() {
			nc.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.wg.Done()
			s.handshakeAccepted(nc)
		}()
	}
}

// handshakeAccepted completes the TLS handshake of an accepted connection
// and then serves it on a goroutine of its own. The handshake grows the
// stack of the goroutine that runs it to 16 KiB, and a goroutine's stack
// does not shrink back below twice what it holds: the goroutine that waits
// for an idle device's next packet (about 2.3 KiB deep) starts fresh, so
// that it keeps a 4 KiB stack (the CONNECT phase runs on another
// goroutine too, in the broker's attachClient).
func (s *Server) handshakeAccepted(nc net.Conn) {
	defer s.recoverConn(nc)
	remote := "unknown"
	if a := nc.RemoteAddr(); a != nil {
		remote = a.String()
	}
	var certs []*x509.Certificate
	if tc, ok := nc.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.log.Debug("mqtt TLS handshake failed", "remote", remote, "err", err)
			nc.Close()
			return
		}
		if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
			certs = pc
		}
	}
	if !s.enter() {
		nc.Close()
		return
	}
	go func() {
		defer s.wg.Done()
		defer s.recoverConn(nc)
		if err := s.serve(nc, certs, remote, "tls"); err != nil && !errors.Is(err, ErrServerClosed) {
			s.log.Debug("mqtt connection ended", "remote", remote, "err", err)
		}
	}()
}

// ServeConn serves one MQTT connection that arrived another way and returns
// when it ends: nil when the client disconnected or closed the connection,
// ErrServerClosed after Close, the broker's reason otherwise (for example a
// refused CONNECT). peerCerts is the client's certificate chain as
// presented, leaf first (nil without one); remoteAddr names the peer in
// logs and DPS attempts ("" for conn.RemoteAddr()).
func (s *Server) ServeConn(conn net.Conn, peerCerts []*x509.Certificate, remoteAddr string) error {
	if remoteAddr == "" {
		remoteAddr = "unknown"
		if a := conn.RemoteAddr(); a != nil {
			remoteAddr = a.String()
		}
	}
	if !s.enter() {
		conn.Close()
		return ErrServerClosed
	}
	defer s.wg.Done()
	return s.serve(conn, peerCerts, remoteAddr, "conn")
}

// WebSocketHandler serves MQTT over WebSockets (subprotocol "mqtt", binary
// frames) on the caller's HTTPS mux; mount it at /$iothub/websocket and /.
// The TLS client certificates come from r.TLS.PeerCertificates. Requests
// that do not offer the mqtt subprotocol get 400 without an upgrade.
func (s *Server) WebSocketHandler() http.Handler {
	return http.HandlerFunc(s.serveWebSocket)
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !offersSubprotocol(r.Header, "mqtt") {
		http.Error(w, `MQTT over WebSockets requires the "mqtt" WebSocket subprotocol`, http.StatusBadRequest)
		return
	}
	if !s.enter() {
		http.Error(w, "the MQTT server is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"mqtt"}})
	if err != nil { // Accept has answered the request
		s.log.Debug("mqtt WebSocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	nc := websocket.NetConn(s.ctx, ws, websocket.MessageBinary)
	var certs []*x509.Certificate
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		certs = r.TLS.PeerCertificates
	}
	if err := s.serve(nc, certs, r.RemoteAddr, "ws"); err != nil && !errors.Is(err, ErrServerClosed) {
		s.log.Debug("mqtt WebSocket connection ended", "remote", r.RemoteAddr, "err", err)
	}
}

// offersSubprotocol reports whether the WebSocket handshake offers proto
// (case-insensitively: the C SDK sends "MQTT").
func offersSubprotocol(h http.Header, proto string) bool {
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), proto) {
				return true
			}
		}
	}
	return false
}

// Close stops accepting, disconnects every client (MQTT 5 clients get
// DISCONNECT 0x8B), cancels running DPS requests, waits for the connection
// and request goroutines, and stops the broker. It is safe to call more
// than once; Serve returns ErrServerClosed.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		lns := make([]net.Listener, 0, len(s.listeners))
		for ln := range s.listeners {
			lns = append(lns, ln)
		}
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()

		s.cancel()
		var errs []error
		for _, ln := range lns {
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("close mqtt listener %s: %w", ln.Addr(), err))
			}
		}
		// A stalled client must not hold Close up: every write still
		// pending (a DISCONNECT below, a response) gives up at one instant.
		giveUp := time.Now().Add(closeWriteTimeout)
		for _, c := range conns {
			_ = c.SetWriteDeadline(giveUp)
		}
		for _, cl := range s.broker.Clients.GetAll() {
			if !cl.Closed() {
				s.disconnect(cl, packets.ErrServerShuttingDown)
			}
		}
		for _, c := range conns {
			c.Conn.Close()
		}
		s.wg.Wait()
		if err := s.broker.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close mqtt broker: %w", err))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// enter registers one goroutine with the WaitGroup unless the server is
// closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// serve runs the broker on one connection until it ends.
func (s *Server) serve(nc net.Conn, certs []*x509.Certificate, remote, listener string) error {
	c := &conn{Conn: nc, remote: remote, peerCerts: certs}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return ErrServerClosed
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()

	// Until the CONNECT is read; the broker then applies the keep-alive.
	_ = nc.SetDeadline(time.Now().Add(connectTimeout))
	err := s.establish(c, listener)
	nc.Close()
	c.endSession(err)
	switch {
	case s.isClosed():
		return ErrServerClosed
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrClosedPipe):
		return nil
	}
	return fmt.Errorf("serve mqtt connection from %s: %w", remote, err)
}

// establish hands the connection to the broker. A panic anywhere in the
// broker or the hooks on this goroutine ends only this connection.
func (s *Server) establish(c *conn, listener string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.panics.Add(1)
			s.log.Error("panic serving mqtt connection", "remote", c.remote, "panic", v, "stack", string(debug.Stack()))
			s.forget(c)
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return s.broker.EstablishConnection(listener, c)
}

// forget removes what the broker knows of a connection whose goroutine
// panicked (its normal cleanup did not run).
func (s *Server) forget(c *conn) {
	cl := c.client.Load()
	if cl == nil {
		return
	}
	cl.Stop(packets.ErrServerShuttingDown)
	if cur, ok := s.broker.Clients.Get(cl.ID); ok && cur == cl {
		s.broker.UnsubscribeClient(cl)
		cl.ClearInflights(1<<62, 0)
		s.broker.Clients.Delete(cl.ID)
	}
}

// recoverConn is the last line of defence of a connection goroutine.
func (s *Server) recoverConn(nc net.Conn) {
	if v := recover(); v != nil {
		s.panics.Add(1)
		s.log.Error("panic in mqtt connection goroutine", "panic", v, "stack", string(debug.Stack()))
		nc.Close()
	}
}

// disconnect ends a client's connection: MQTT 5 clients get a DISCONNECT
// with the reason code (MQTT 3.1.1 has no server DISCONNECT).
func (s *Server) disconnect(cl *cmqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion == 5 {
		_ = s.broker.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}

// conn is a client connection as the broker sees it, carrying what the
// hooks need to know about it.
type conn struct {
	net.Conn
	remote    string
	peerCerts []*x509.Certificate

	// Written on the connection's read goroutine while the CONNECT is read,
	// read on the same goroutine when it is authenticated.
	connectSeen bool
	clientID    string // as the client sent it
	dpsUser     *DPSUsername
	dpsErr      error // why the username is not a DPS username
	will        *Message

	client atomic.Pointer[cmqtt.Client]
	sess   atomic.Pointer[session]

	// acks are the callbacks of outgoing QoS 1 messages whose sender wants
	// to know of the client's PUBACK, by packet identifier (deliverAcked,
	// hook.OnQosComplete).
	ackMu sync.Mutex
	acks  map[uint16]func()

	// pubs are the incoming publishes a PipelinedSession has not finished
	// with, or whose PUBACK waits for an earlier one (pipeline.go).
	pubs pubQueue
}

// RemoteAddr names the peer as the caller told it (ServeConn's remoteAddr).
func (c *conn) RemoteAddr() net.Addr { return addr(c.remote) }

// endSession closes the realm session of the connection, once.
func (c *conn) endSession(err error) {
	if sess := c.sess.Load(); sess != nil {
		sess.close(err)
	}
}

type addr string

func (a addr) Network() string { return "tcp" }
func (a addr) String() string  { return string(a) }

// session is an authenticated connection: exactly one of dps and hub is set.
type session struct {
	dps       *dpsSession
	hub       Session
	closeOnce sync.Once
}

func (s *session) close(err error) {
	s.closeOnce.Do(func() {
		if s.hub != nil {
			s.hub.Close(err)
		}
	})
}

// peer is the Peer of one client.
type peer struct {
	s  *Server
	cl *cmqtt.Client
}

func (p *peer) Publish(topic string, payload []byte, qos byte) error {
	if p.s.isClosed() {
		return ErrServerClosed
	}
	return p.s.deliver(p.cl, topic, payload, qos)
}

func (p *peer) PublishAcked(topic string, payload []byte, qos byte, acked func()) (bool, error) {
	if p.s.isClosed() {
		return false, ErrServerClosed
	}
	return p.s.deliverAcked(p.cl, topic, payload, qos, acked)
}

func (p *peer) Disconnect() { p.s.disconnect(p.cl, packets.ErrAdministrativeAction) }

// libHandler demotes the broker library's logs: its errors become warnings
// and everything else debug, so a misbehaving client cannot flood the log
// at info level.
type libHandler struct{ h slog.Handler }

func libLevel(l slog.Level) slog.Level {
	if l >= slog.LevelError {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

func (l libHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, libLevel(level))
}

func (l libHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = libLevel(r.Level)
	return l.h.Handle(ctx, r)
}

func (l libHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return libHandler{l.h.WithAttrs(attrs)}
}

func (l libHandler) WithGroup(name string) slog.Handler { return libHandler{l.h.WithGroup(name)} }
