package edgehub

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
	"strings"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/edge/iothub"
	"github.com/muster-iot/muster/internal/hub"
	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/mqtt"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/telemetry"
)

// ModuleID is the edge hub's own module identity.
const ModuleID = "$edgeHub"

// Timing of the edge hub.
const (
	// upstreamWait bounds how long a module's request waits for its
	// upstream connection to come up.
	upstreamWait = 15 * time.Second
	// tokenSkew is the clock skew allowed on module tokens.
	tokenSkew = 5 * time.Minute
	// refreshEvery limits how often a refused token makes the edge hub
	// read a module's identity from the hub again.
	refreshEvery = 30 * time.Second
	// retryMin and retryMax bound the pause after the $edgeHub session or
	// a module's upstream session failed for good (identity refused).
	retryMin = 5 * time.Second
	retryMax = 5 * time.Minute
)

// Identities gives the edge hub the module identities (and keys) of its
// device; the edge agent's identity store implements it.
type Identities interface {
	// Module returns a module identity, from a cache when it has one.
	Module(ctx context.Context, moduleID string) (*iothub.Module, error)
	// Refresh reads a module identity from the hub again.
	Refresh(ctx context.Context, moduleID string) (*iothub.Module, error)
}

// Options configure an edge hub.
type Options struct {
	// Hub is the IoT hub's host name; DeviceID the edge device.
	Hub, DeviceID string
	// HubMQTTAddr is the IoT hub's MQTT address (host:port).
	HubMQTTAddr string
	// RootCAs verify the IoT hub.
	RootCAs *x509.CertPool
	// Identities provides module keys. Required.
	Identities Identities
	// ListenAddr is the local host:port to serve modules on. Required.
	ListenAddr string
	// CA issues the server certificate. Required.
	CA *CA
	// ServerNames are the DNS names and IP addresses the server
	// certificate names (what modules use as GatewayHostName).
	ServerNames []string
	// Version is reported in the $edgeHub reported properties.
	Version string
	// ClientType is the DeviceClientType of the upstream connections.
	ClientType string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Ready, when not nil, is called with the listener's address once the
	// edge hub accepts connections.
	Ready func(addr string)
}

// Run serves the edge hub until ctx ends (returning nil) or it cannot
// listen.
func Run(ctx context.Context, log *slog.Logger, opts Options) error {
	if opts.Identities == nil || opts.CA == nil || opts.ListenAddr == "" || opts.Hub == "" || opts.DeviceID == "" || opts.HubMQTTAddr == "" {
		return errors.New("edge hub: Hub, DeviceID, HubMQTTAddr, Identities, ListenAddr and CA are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Hub{opts: opts, log: log, clients: map[string]*localClient{}, status: map[string]*clientStatus{},
		report: make(chan struct{}, 1), lastRefresh: map[string]time.Time{}}
	h.desired.Store(&desiredState{status: LastDesiredStatus{Code: 406, Description: "the $edgeHub desired properties have not been read yet"}})
	ln, err := net.Listen("tcp", opts.ListenAddr)
	if err != nil {
		return fmt.Errorf("edge hub: listen on %s: %w", opts.ListenAddr, err)
	}
	srv, err := mqtt.New(mqtt.Options{Logger: log.With("component", "edgehub-mqtt"), HubRealm: h, Now: opts.Now})
	if err != nil {
		ln.Close()
		return fmt.Errorf("edge hub: %w", err)
	}
	certs := opts.CA.NewServerCertificates(opts.ServerNames, opts.Now)
	tlsCfg := &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(tls.NewListener(ln, tlsCfg)) })
	wg.Go(func() { h.runSelf(ctx) })
	wg.Go(func() { h.runReporter(ctx) })
	log.Info("edge hub listening", "addr", ln.Addr().String(), "hub", opts.Hub, "deviceId", opts.DeviceID)
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if err != nil && ctx.Err() == nil {
			runErr = fmt.Errorf("edge hub: serve %s: %w", ln.Addr(), err)
		}
	}
	cancel()
	srv.Close()
	wg.Wait()
	log.Info("edge hub stopped")
	return runErr
}

// LastDesiredStatus is the reported outcome of the desired properties.
type LastDesiredStatus struct {
	Code        int    `json:"code"`
	Description string `json:"description"`
}

// desiredState is the routing in force and how the last desired
// properties went.
type desiredState struct {
	routes  []Route
	version int64
	status  LastDesiredStatus
}

// clientStatus is one module's reported connection state.
type clientStatus struct {
	Status               string `json:"status"`
	LastConnectedTimeUtc string `json:"lastConnectedTimeUtc,omitempty"`
	LastDisconnectedTime string `json:"lastDisconnectedTimeUtc,omitempty"`
}

// Hub is a running edge hub; it is the broker's realm.
type Hub struct {
	opts    Options
	log     *slog.Logger
	desired locked[desiredState]
	self    locked[iothub.Client]
	report  chan struct{}

	mu          sync.Mutex
	clients     map[string]*localClient
	status      map[string]*clientStatus
	lastRefresh map[string]time.Time
}

// locked is a mutex-guarded pointer.
type locked[T any] struct {
	mu sync.Mutex
	p  *T
}

func (a *locked[T]) Load() *T {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.p
}

func (a *locked[T]) Store(p *T) {
	a.mu.Lock()
	a.p = p
	a.mu.Unlock()
}

func (h *Hub) poke() {
	select {
	case h.report <- struct{}{}:
	default:
	}
}

// stamp formats a reported time.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter returns d ± 25 %.
func jitter(d time.Duration) time.Duration { return d*3/4 + rand.N(d/2+1) }

// runSelf keeps the $edgeHub session up: it reads the desired properties
// on every connect and notification and applies their routes.
func (h *Hub) runSelf(ctx context.Context) {
	delay := retryMin
	refresh := false
	for ctx.Err() == nil {
		err := h.selfSession(ctx, refresh)
		if ctx.Err() != nil {
			return
		}
		refresh = errors.Is(err, iothub.ErrRejected)
		h.log.Warn("the $edgeHub session ended; retrying", "err", err, "retryIn", delay)
		if !sleep(ctx, jitter(delay)) {
			return
		}
		delay = min(delay*2, retryMax)
	}
}

// selfSession runs one $edgeHub session until it is refused or ctx ends.
func (h *Hub) selfSession(ctx context.Context, refresh bool) error {
	get := h.opts.Identities.Module
	if refresh {
		get = h.opts.Identities.Refresh
	}
	m, err := get(ctx, ModuleID)
	if err != nil {
		return fmt.Errorf("read the %s identity: %w", ModuleID, err)
	}
	key, err := m.PrimaryKey()
	if err != nil {
		return err
	}
	resync := make(chan struct{}, 1)
	trigger := func() {
		select {
		case resync <- struct{}{}:
		default:
		}
	}
	cli, err := iothub.New(iothub.Options{
		Identity:      iothub.Identity{Hub: h.opts.Hub, DeviceID: h.opts.DeviceID, ModuleID: ModuleID, Key: key},
		Addr:          h.opts.HubMQTTAddr,
		RootCAs:       h.opts.RootCAs,
		ClientType:    h.opts.ClientType,
		Subscriptions: []iothub.Subscription{{Filter: iothub.DesiredFilter}},
		OnMessage: func(topic string, _ []byte) {
			if _, ok := iothub.ParseDesiredTopic(topic); ok {
				trigger()
			}
		},
		OnConnect: func(context.Context) { trigger(); h.poke() },
		Now:       h.opts.Now,
		Logger:    h.log,
	})
	if err != nil {
		return err
	}
	h.self.Store(cli)
	defer h.self.Store(nil)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			select {
			case <-sctx.Done():
				return
			case <-resync:
				h.syncDesired(sctx, cli)
			}
		}
	})
	return cli.Run(sctx)
}

// syncDesired reads the $edgeHub twin and applies its routes. Invalid
// desired properties keep the routes in force and are reported.
func (h *Hub) syncDesired(ctx context.Context, cli *iothub.Client) {
	twin, err := cli.GetTwin(ctx)
	if err != nil {
		h.log.Warn("read the $edgeHub twin", "err", err)
		return
	}
	d, err := ParseDesired(twin.Desired)
	cur := h.desired.Load()
	next := &desiredState{routes: cur.routes}
	var de *DesiredError
	switch {
	case err == nil:
		next.routes, next.version, next.status = d.Routes, d.Version, LastDesiredStatus{Code: CodeOK}
		h.log.Info("routes applied", "version", d.Version, "routes", len(d.Routes))
	case errors.As(err, &de):
		next.version, next.status = de.Version, LastDesiredStatus{Code: de.Code, Description: de.Error()}
		if de.Code != CodeEmptyConfig {
			h.log.Warn("the $edgeHub desired properties are invalid; keeping the routes in force", "err", err)
		}
	default:
		next.status = LastDesiredStatus{Code: CodeBadConfig, Description: err.Error()}
	}
	h.desired.Store(next)
	h.poke()
}

// runReporter writes the $edgeHub reported properties whenever they
// change and the $edgeHub session is up.
func (h *Hub) runReporter(ctx context.Context) {
	var last []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.report:
		}
		cli := h.self.Load()
		if cli == nil {
			continue
		}
		doc := h.reported()
		b, err := json.Marshal(doc)
		if err != nil || string(b) == string(last) {
			continue
		}
		if _, err := cli.PatchReported(ctx, b); err != nil {
			if ctx.Err() == nil {
				h.log.Info("report the edge hub's state", "err", err)
			}
			continue // the next connect pokes again
		}
		last = b
	}
}

// reported builds the $edgeHub reported properties.
func (h *Hub) reported() map[string]any {
	d := h.desired.Load()
	h.mu.Lock()
	clients := make(map[string]any, len(h.status))
	for id, st := range h.status {
		c := *st
		clients[id] = c
	}
	h.mu.Unlock()
	return map[string]any{
		"schemaVersion":      "1.0",
		"version":            map[string]string{"version": h.opts.Version},
		"lastDesiredVersion": d.version,
		"lastDesiredStatus":  d.status,
		"clients":            clients,
	}
}

// Connect authenticates a module's CONNECT (mqtt.Realm).
func (h *Hub) Connect(ctx context.Context, info mqtt.ConnectInfo, peer mqtt.Peer) (mqtt.Session, error) {
	u, err := hubauth.ParseUsername(info.Username)
	if err != nil {
		return nil, err
	}
	switch {
	case u.DeviceID != h.opts.DeviceID:
		return nil, fmt.Errorf("device %q is not this edge device (%q): leaf devices are not supported", u.DeviceID, h.opts.DeviceID)
	case u.ModuleID == "":
		return nil, fmt.Errorf("device %q connected as a device; only its modules connect to the edge hub", u.DeviceID)
	case strings.HasPrefix(u.ModuleID, "$"):
		return nil, fmt.Errorf("module %q is a system module, which connects to the IoT hub directly", u.ModuleID)
	case info.ClientID != iothub.ClientID(u.DeviceID, u.ModuleID):
		return nil, fmt.Errorf("client ID %q is not %q", info.ClientID, iothub.ClientID(u.DeviceID, u.ModuleID))
	case !strings.EqualFold(u.HubHost, h.opts.Hub):
		return nil, fmt.Errorf("module %s names hub %q, not %q", u.ModuleID, u.HubHost, h.opts.Hub)
	case info.Password == "":
		return nil, fmt.Errorf("module %s has no SAS token (X.509 module authentication is not supported)", u.ModuleID)
	}
	m, err := h.verify(ctx, u.ModuleID, info.Password)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", u.ModuleID, err)
	}
	key, err := m.PrimaryKey()
	if err != nil {
		return nil, err
	}
	c := &localClient{h: h, moduleID: u.ModuleID, peer: peer, ready: make(chan struct{})}
	up, err := iothub.New(iothub.Options{
		Identity:   iothub.Identity{Hub: h.opts.Hub, DeviceID: h.opts.DeviceID, ModuleID: u.ModuleID, Key: key},
		Addr:       h.opts.HubMQTTAddr,
		RootCAs:    h.opts.RootCAs,
		ClientType: h.opts.ClientType,
		Subscriptions: []iothub.Subscription{
			{Filter: iothub.DesiredFilter}, {Filter: iothub.MethodsFilter},
		},
		OnMessage: c.fromUpstream,
		OnConnect: func(context.Context) { c.readyOnce.Do(func() { close(c.ready) }) },
		Now:       h.opts.Now,
		Logger:    h.log,
	})
	if err != nil {
		return nil, err
	}
	c.up = up
	var upCtx context.Context
	upCtx, c.cancel = context.WithCancel(context.Background())
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		if err := up.Run(upCtx); err != nil && upCtx.Err() == nil {
			h.log.Warn("upstream session of a module refused; disconnecting it", "module", u.ModuleID, "err", err)
			// Not inline: the disconnection closes the session, which
			// waits for this goroutine.
			go peer.Disconnect()
		}
	}()
	now := h.opts.Now()
	h.mu.Lock()
	old := h.clients[u.ModuleID]
	h.clients[u.ModuleID] = c
	st := h.status[iothub.ClientID(h.opts.DeviceID, u.ModuleID)]
	if st == nil {
		st = &clientStatus{}
		h.status[iothub.ClientID(h.opts.DeviceID, u.ModuleID)] = st
	}
	st.Status, st.LastConnectedTimeUtc = "Connected", stamp(now)
	h.mu.Unlock()
	if old != nil {
		old.stopUpstream()
	}
	h.poke()
	h.log.Info("module connected", "module", u.ModuleID, "remote", info.RemoteAddr)
	return c, nil
}

// verify checks a module's SAS token against its identity's keys, reading
// the identity again (at most every refreshEvery) when the cached keys do
// not verify it, in case they changed.
func (h *Hub) verify(ctx context.Context, moduleID, password string) (*iothub.Module, error) {
	tok, err := sas.Parse(password)
	if err != nil {
		return nil, err
	}
	if err := tok.CheckExpiry(h.opts.Now(), tokenSkew); err != nil {
		return nil, err
	}
	res, err := tok.DecodedResource()
	if err != nil {
		return nil, err
	}
	want := iothub.Resource(h.opts.Hub, h.opts.DeviceID, moduleID)
	if !sameResource(res, want) {
		return nil, fmt.Errorf("the token is for %q, not %q", res, want)
	}
	m, err := h.opts.Identities.Module(ctx, moduleID)
	if err == nil && verifies(tok, m) {
		return m, nil
	}
	h.mu.Lock()
	last := h.lastRefresh[moduleID]
	allowed := h.opts.Now().Sub(last) >= refreshEvery
	if allowed {
		h.lastRefresh[moduleID] = h.opts.Now()
	}
	h.mu.Unlock()
	if !allowed {
		if err != nil {
			return nil, err
		}
		return nil, errors.New("the token is not signed with the module's key")
	}
	m, err = h.opts.Identities.Refresh(ctx, moduleID)
	if err != nil {
		return nil, err
	}
	if !verifies(tok, m) {
		return nil, errors.New("the token is not signed with the module's key")
	}
	return m, nil
}

// sameResource compares token resources: the host case-insensitively, the
// IDs exactly.
func sameResource(got, want string) bool {
	gh, grest, _ := strings.Cut(got, "/")
	wh, wrest, _ := strings.Cut(want, "/")
	return strings.EqualFold(gh, wh) && strings.TrimSuffix(grest, "/") == wrest
}

// verifies reports whether tok is signed with one of m's keys.
func verifies(tok *sas.Token, m *iothub.Module) bool {
	sk := m.Authentication.SymmetricKey
	if sk == nil {
		return false
	}
	var keys [][]byte
	for _, k := range []string{sk.PrimaryKey, sk.SecondaryKey} {
		if b, err := sas.DecodeKey(k); err == nil {
			keys = append(keys, b)
		}
	}
	return tok.VerifyKeys(keys) >= 0
}

// localClient is one connected module.
type localClient struct {
	h         *Hub
	moduleID  string
	peer      mqtt.Peer
	up        *iothub.Client
	ready     chan struct{}
	readyOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
}

// stopUpstream ends the module's upstream session.
func (c *localClient) stopUpstream() {
	c.cancel()
	<-c.done
}

// fromUpstream forwards what the IoT hub sends the module (twin
// responses, desired notifications, method requests) to its local
// connection; a topic it has not subscribed to locally is dropped.
func (c *localClient) fromUpstream(topic string, payload []byte) {
	if err := c.peer.Publish(topic, payload, 0); err != nil && !errors.Is(err, mqtt.ErrNotSubscribed) {
		c.h.log.Debug("deliver to module", "module", c.moduleID, "topic", topic, "err", err)
	}
}

// ownTopic is the prefix of the module's own topics.
func (c *localClient) ownTopic() string {
	return "devices/" + c.h.opts.DeviceID + "/modules/" + c.moduleID + "/"
}

// Allow applies the module's topic rules (mqtt.Session).
func (c *localClient) Allow(topic string, write bool) bool {
	if write {
		if dev, mod, _, err := telemetry.ParseTelemetryTopic(topic); err == nil {
			return dev == c.h.opts.DeviceID && mod == c.moduleID
		}
		if _, err := hub.ParseTwinTopic(topic); err == nil {
			return true
		}
		_, _, err := hub.ParseMethodResponseTopic(topic)
		return err == nil
	}
	switch topic {
	case iothub.TwinResponseFilter, iothub.DesiredFilter, iothub.MethodsFilter, c.ownTopic() + "#":
		return true
	}
	return strings.HasPrefix(topic, c.ownTopic()+"inputs/") && !strings.Contains(strings.TrimPrefix(topic, c.ownTopic()), "+")
}

// awaitUpstream waits, bounded, for the module's upstream connection.
func (c *localClient) awaitUpstream(ctx context.Context) error {
	t := time.NewTimer(upstreamWait)
	defer t.Stop()
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("module %s: %w", c.moduleID, iothub.ErrNotConnected)
	}
}

// Publish handles what the module sends (mqtt.Session): telemetry is
// routed, twin requests and method answers go upstream.
func (c *localClient) Publish(ctx context.Context, msg mqtt.Message) error {
	if _, _, bag, err := telemetry.ParseTelemetryTopic(msg.Topic); err == nil {
		return c.route(ctx, bag, msg.Payload)
	}
	if req, err := hub.ParseTwinTopic(msg.Topic); err == nil {
		err := c.awaitUpstream(ctx)
		if err == nil {
			err = c.up.Publish(ctx, msg.Topic, msg.Payload, 0)
		}
		if err != nil {
			// Answer the module at once instead of letting it time out.
			body := fmt.Sprintf(`{"errorCode":503000,"message":%q}`, "the edge hub cannot reach the IoT hub: "+err.Error())
			if perr := c.peer.Publish(hub.TwinResponseTopic(503, req.RID, 0), []byte(body), 0); perr != nil {
				c.h.log.Debug("answer a twin request locally", "module", c.moduleID, "err", perr)
			}
		}
		return nil
	}
	if err := c.awaitUpstream(ctx); err != nil {
		c.h.log.Info("method answer dropped: no upstream connection", "module", c.moduleID, "err", err)
		return nil
	}
	if err := c.up.Publish(ctx, msg.Topic, msg.Payload, 0); err != nil {
		c.h.log.Info("method answer dropped", "module", c.moduleID, "err", err)
	}
	return nil
}

// route sends a module's message to the sinks its routes select. The
// message is accepted (PUBACK) only when the IoT hub accepted it for a
// $upstream route; brokered deliveries are best effort.
func (c *localClient) route(ctx context.Context, bag string, payload []byte) error {
	sys, app, err := telemetry.ParseBag(bag)
	if err != nil {
		return err
	}
	m := &Message{DeviceID: c.h.opts.DeviceID, ModuleID: c.moduleID, System: sys, App: app, Body: payload}
	sinks := Sinks(c.h.desired.Load().routes, m)
	if len(sinks) == 0 {
		c.h.log.Debug("no route takes the message; dropped", "module", c.moduleID, "output", m.Output())
		return nil
	}
	for _, s := range sinks {
		if s.Upstream {
			if err := c.awaitUpstream(ctx); err != nil {
				return fmt.Errorf("route to $upstream: %w", err)
			}
			if err := c.up.SendEvent(ctx, bag, payload); err != nil {
				return fmt.Errorf("route to $upstream: %w", err)
			}
			continue
		}
		c.h.deliverInput(c.moduleID, s, sys, app, payload)
	}
	return nil
}

// deliverInput hands a message to a module's input, naming the sender.
func (h *Hub) deliverInput(from string, s Sink, sys, app map[string]string, payload []byte) {
	h.mu.Lock()
	to := h.clients[s.Module]
	h.mu.Unlock()
	if to == nil {
		h.log.Info("brokered message dropped: the target module is not connected", "from", from, "to", s.Module, "input", s.Input)
		return
	}
	out := make(map[string]string, len(sys)+2)
	for k, v := range sys {
		out[k] = v
	}
	delete(out, telemetry.PropOutputName)
	out[telemetry.PropConnectionDeviceID], out[telemetry.PropConnectionModuleID] = h.opts.DeviceID, from
	topic := iothub.InputTopic(h.opts.DeviceID, s.Module, s.Input, telemetry.EncodeBag(out, app))
	if err := to.peer.Publish(topic, payload, 1); err != nil {
		h.log.Info("brokered message dropped", "from", from, "to", s.Module, "input", s.Input, "err", err)
	}
}

// Close records the module's disconnection (mqtt.Session).
func (c *localClient) Close(err error) {
	c.stopUpstream()
	h := c.h
	h.mu.Lock()
	if h.clients[c.moduleID] == c {
		delete(h.clients, c.moduleID)
		if st := h.status[iothub.ClientID(h.opts.DeviceID, c.moduleID)]; st != nil {
			st.Status, st.LastDisconnectedTime = "Disconnected", stamp(h.opts.Now())
		}
	}
	h.mu.Unlock()
	h.poke()
	h.log.Info("module disconnected", "module", c.moduleID, "err", err)
}

// Clients returns the IDs of the connected modules.
func (h *Hub) Clients() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.clients))
	for id := range h.clients {
		out = append(out, id)
	}
	return out
}
