package dpsclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wind-c/comqtt/v2/mqtt"
	"github.com/wind-c/comqtt/v2/mqtt/packets"
)

// This file is the test harness: a scripted fake DPS reachable over HTTPS
// (httptest) and over MQTT (an embedded comqtt broker whose hook answers
// $dps requests on the requesting client's connection).

// step is one scripted answer of the fake DPS.
type step struct {
	status     int
	retryAfter string // Retry-After header / retry-after topic parameter; "" for none
	body       string
}

// dpsRequest is one request the fake DPS received.
type dpsRequest struct {
	Kind        string // "register", "poll" or "unknown"
	Method      string // HTTPS
	EscapedPath string // HTTPS
	RawQuery    string // HTTPS
	Topic       string // MQTT
	RID         string // MQTT
	OperationID string
	Header      http.Header
	Body        string
	PeerCerts   [][]byte
}

// mqttConnect is one CONNECT the fake broker accepted.
type mqttConnect struct {
	ClientID        string
	Username        string
	Password        string
	PasswordFlag    bool
	Clean           bool
	Keepalive       uint16
	ProtocolVersion byte
	PeerCerts       [][]byte
}

type mqttSub struct {
	Filter string
	QoS    byte
}

// fakeDPS answers register and poll requests from a script: the n-th
// request gets steps[n]; the last step repeats once the script is used up.
type fakeDPS struct {
	mu       sync.Mutex
	steps    []step
	respond  func(req dpsRequest) step // replaces steps when set
	reqs     []dpsRequest
	conns    int // HTTPS connections accepted
	connects []mqttConnect
	subs     []mqttSub

	// MQTT behaviour switches.
	strayRID        bool // send a response with another $rid before each answer
	silent          bool // never answer
	refuseSubscribe bool
	refuseConnect   bool

	// HTTPS behaviour switches.
	closeOn string        // answer requests of this kind with Connection: close
	hold    chan struct{} // when set, requests wait until it is closed before the answer
}

func (f *fakeDPS) next(req dpsRequest) step {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.reqs)
	f.reqs = append(f.reqs, req)
	if f.respond != nil {
		return f.respond(req)
	}
	if len(f.steps) == 0 {
		return step{status: 500, body: `{"errorCode":500000,"message":"fake DPS has no script"}`}
	}
	return f.steps[min(n, len(f.steps)-1)]
}

func (f *fakeDPS) requests() []dpsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]dpsRequest(nil), f.reqs...)
}

func (f *fakeDPS) kinds() []string {
	var k []string
	for _, r := range f.requests() {
		k = append(k, r.Kind)
	}
	return k
}

func peerDER(cs []*x509.Certificate) [][]byte {
	var out [][]byte
	for _, c := range cs {
		out = append(out, c.Raw)
	}
	return out
}

// startHTTPS serves the fake over HTTPS on 127.0.0.1:0 and returns the
// endpoint and the pool trusting its certificate.
func (f *fakeDPS) startHTTPS(t *testing.T) (string, *x509.CertPool) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serveHTTP))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv.Listener.Addr().String(), pool
}

func (f *fakeDPS) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	req := dpsRequest{Kind: "unknown", Method: r.Method, EscapedPath: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: string(body)}
	if r.TLS != nil {
		req.PeerCerts = peerDER(r.TLS.PeerCertificates)
	}
	seg := strings.Split(strings.TrimPrefix(req.EscapedPath, "/"), "/")
	switch {
	case r.Method == http.MethodPut && len(seg) == 4 && seg[1] == "registrations" && seg[3] == "register":
		req.Kind = "register"
	case r.Method == http.MethodGet && len(seg) == 5 && seg[1] == "registrations" && seg[3] == "operations":
		req.Kind = "poll"
		req.OperationID, _ = url.PathUnescape(seg[4])
	}
	st := f.next(req)
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-r.Context().Done():
			return
		}
	}
	if f.closeOn != "" && f.closeOn == req.Kind {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if st.retryAfter != "" {
		w.Header().Set("Retry-After", st.retryAfter)
	}
	w.WriteHeader(st.status)
	_, _ = io.WriteString(w, st.body)
}

// startMQTT serves the fake over MQTT/TLS on 127.0.0.1:0 with an embedded
// comqtt broker and returns the endpoint.
func (f *fakeDPS) startMQTT(t *testing.T, p *testPKI) string {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{
		Capabilities: &mqtt.Capabilities{
			MaximumSessionExpiryInterval: math.MaxUint32,
			MaximumMessageExpiryInterval: 60,
			ReceiveMaximum:               1024,
			MaximumQos:                   2,
			RetainAvailable:              1,
			TopicAliasMaximum:            math.MaxUint16,
			WildcardSubAvailable:         1,
			SubIDAvailable:               1,
			SharedSubAvailable:           1,
			MinimumProtocolVersion:       3,
			MaximumClientWritesPending:   1024,
		},
		Logger:                 slog.New(slog.DiscardHandler),
		SysTopicResendInterval: 3600,
	})
	if err := srv.AddHook(&dpsHook{f: f}, nil); err != nil {
		t.Fatalf("add hook: %v", err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatalf("serve broker: %v", err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{*p.server.tlsCert()},
		ClientAuth:   tls.RequestClientCert,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var (
		wg      sync.WaitGroup
		connsMu sync.Mutex
		conns   []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = srv.EstablishConnection("dps", c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		connsMu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
		_ = srv.Close()
	})
	return ln.Addr().String()
}

// dpsHook makes the comqtt broker behave like the DPS MQTT endpoint.
type dpsHook struct {
	mqtt.HookBase
	f *fakeDPS
}

func (h *dpsHook) ID() string { return "fake-dps" }

func (h *dpsHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSubscribe, mqtt.OnPublished}, []byte{b})
}

func (h *dpsHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	c := mqttConnect{
		ClientID:        pk.Connect.ClientIdentifier,
		Username:        string(pk.Connect.Username),
		Password:        string(pk.Connect.Password),
		PasswordFlag:    pk.Connect.PasswordFlag,
		Clean:           pk.Connect.Clean,
		Keepalive:       pk.Connect.Keepalive,
		ProtocolVersion: pk.ProtocolVersion,
	}
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
		c.PeerCerts = peerDER(tc.ConnectionState().PeerCertificates)
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	h.f.connects = append(h.f.connects, c)
	return !h.f.refuseConnect
}

func (h *dpsHook) OnACLCheck(_ *mqtt.Client, _ string, write bool) bool {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return write || !h.f.refuseSubscribe
}

func (h *dpsHook) OnSubscribe(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	for _, s := range pk.Filters {
		h.f.subs = append(h.f.subs, mqttSub{Filter: s.Filter, QoS: s.Qos})
	}
	return pk
}

// OnPublished runs after the broker acknowledged a device publish; it
// answers $dps requests on the publishing client's own connection.
func (h *dpsHook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	kind := ""
	var query string
	switch {
	case strings.HasPrefix(pk.TopicName, "$dps/registrations/PUT/iotdps-register/?"):
		kind, query = "register", strings.TrimPrefix(pk.TopicName, "$dps/registrations/PUT/iotdps-register/?")
	case strings.HasPrefix(pk.TopicName, "$dps/registrations/GET/iotdps-get-operationstatus/?"):
		kind, query = "poll", strings.TrimPrefix(pk.TopicName, "$dps/registrations/GET/iotdps-get-operationstatus/?")
	default:
		return
	}
	q, _ := url.ParseQuery(query)
	req := dpsRequest{Kind: kind, Topic: pk.TopicName, RID: q.Get("$rid"), OperationID: q.Get("operationId"), Body: string(pk.Payload)}
	st := h.f.next(req)
	h.f.mu.Lock()
	silent, stray := h.f.silent, h.f.strayRID
	h.f.mu.Unlock()
	if silent {
		return
	}
	if stray {
		h.send(cl, 200, "stray-"+req.RID, "", `{"operationId":"stray","status":"assigned","registrationState":{"registrationId":"x","status":"assigned","assignedHub":"wrong.example","deviceId":"x"}}`)
	}
	h.send(cl, st.status, req.RID, st.retryAfter, st.body)
}

func (h *dpsHook) send(cl *mqtt.Client, status int, rid, retryAfter, body string) {
	topic := "$dps/registrations/res/" + strconv.Itoa(status) + "/?$rid=" + rid
	if retryAfter != "" {
		topic += "&retry-after=" + retryAfter
	}
	id, err := cl.NextPacketID()
	if err != nil {
		return
	}
	_ = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		Payload:     []byte(body),
		PacketID:    uint16(id),
	})
}

// recorder replaces Client.sleep: it records the waits and returns at once.
type recorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *recorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.waits = append(r.waits, d)
	r.mu.Unlock()
	return ctx.Err()
}

func (r *recorder) got() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

// connCount is the number of HTTPS connections the fake accepted.
func (f *fakeDPS) connCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}
