// Package iothubtest owns a small IoT hub for the tests of the edge
// runtime's hub clients (iothub, agent, edgehub): the real MQTT endpoint of
// internal/mqtt over TLS on a loopback port, authenticating device and
// module identities by SAS token, answering twin GET and reported PATCH,
// pushing desired-property patches, recording telemetry, and serving the
// device-credential module API (hub-edge-protocol §4.9) over HTTPS. It
// keeps everything in memory and is for tests only.
package iothubtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/hub"
	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/mqtt"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/telemetry"
)

// Host is the hub's host name (its certificate names it).
const Host = "localhost"

// Message is a telemetry message the hub received.
type Message struct {
	DeviceID, ModuleID string
	System, App        map[string]string
	Body               []byte
}

// identity is one device or module.
type identity struct {
	key          []byte
	managedBy    string
	generationID string
	desired      map[string]any
	desiredVer   int64
	reported     map[string]any
	reportedVer  int64
	peers        map[mqtt.Peer]bool
}

// Hub is a running fake hub.
type Hub struct {
	// MQTTAddr and HTTPSAddr are the listeners' addresses (host:port with
	// host localhost).
	MQTTAddr, HTTPSAddr string
	// Roots verify the hub's certificate.
	Roots *x509.CertPool

	t   testing.TB
	srv *mqtt.Server

	mu       sync.Mutex
	ids      map[string]*identity // "device" or "device/module"
	messages []Message
	changed  chan struct{}
	refuse   map[string]bool // identities refused although registered
	seq      int
	calls    map[string]chan MethodResult
}

// MethodResult is a direct method's answer.
type MethodResult struct {
	Status int
	Body   []byte
}

// New starts a hub; a cleanup stops it.
func New(t testing.TB) *Hub {
	t.Helper()
	root, err := pki.NewRoot("iothubtest root")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := root.NewServer(Host, pki.WithDNSNames(Host), pki.WithIPs(net.IPv4(127, 0, 0, 1)))
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key, Leaf: leaf.Cert}
	h := &Hub{t: t, Roots: x509.NewCertPool(), ids: map[string]*identity{}, changed: make(chan struct{}), refuse: map[string]bool{}, calls: map[string]chan MethodResult{}}
	h.Roots.AddCert(root.Cert)
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	h.srv, err = mqtt.New(mqtt.Options{Logger: slog.New(slog.DiscardHandler), HubRealm: h})
	if err != nil {
		t.Fatal(err)
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.MQTTAddr = net.JoinHostPort(Host, portOf(mln.Addr()))
	go func() { _ = h.srv.Serve(tls.NewListener(mln, tlsCfg)) }()

	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.HTTPSAddr = net.JoinHostPort(Host, portOf(hln.Addr()))
	hs := &http.Server{Handler: h.modulesAPI(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(tls.NewListener(hln, tlsCfg)) }()
	t.Cleanup(func() {
		h.srv.Close()
		hs.Close()
	})
	return h
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

func key(deviceID, moduleID string) string {
	if moduleID == "" {
		return deviceID
	}
	return deviceID + "/" + moduleID
}

// notify wakes the waiters of Await.
func (h *Hub) notify() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// Await polls cond under the hub's lock whenever the hub's state changes,
// until it holds or timeout passes (then the test fails with what).
func (h *Hub) Await(timeout time.Duration, what string, cond func() bool) {
	h.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		ok := cond()
		ch := h.changed
		h.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			h.t.Fatalf("%s: not within %v", what, timeout)
		}
	}
}

// Lock and Unlock guard reads of the hub's state in Await conditions.
func (h *Hub) Lock()   { h.mu.Lock() }
func (h *Hub) Unlock() { h.mu.Unlock() }

// AddIdentity registers a device (moduleID "") or module with a fresh key,
// which it returns.
func (h *Hub) AddIdentity(deviceID, moduleID string) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addLocked(deviceID, moduleID, "").key
}

func (h *Hub) addLocked(deviceID, moduleID, managedBy string) *identity {
	k, err := sas.GenerateKey()
	if err != nil {
		h.t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(k)
	h.seq++
	id := &identity{key: raw, managedBy: managedBy, generationID: strconv.Itoa(637000000000000000 + h.seq),
		desired: map[string]any{}, desiredVer: 1, reported: map[string]any{}, reportedVer: 1, peers: map[mqtt.Peer]bool{}}
	h.ids[key(deviceID, moduleID)] = id
	h.notify()
	return id
}

// RemoveIdentity deletes a device (and its modules) or a module and
// disconnects its sessions.
func (h *Hub) RemoveIdentity(deviceID, moduleID string) {
	h.mu.Lock()
	var peers []mqtt.Peer
	for k, id := range h.ids {
		if k == key(deviceID, moduleID) || (moduleID == "" && strings.HasPrefix(k, deviceID+"/")) {
			for p := range id.peers {
				peers = append(peers, p)
			}
			delete(h.ids, k)
		}
	}
	h.notify()
	h.mu.Unlock()
	for _, p := range peers {
		p.Disconnect()
	}
}

// Key returns an identity's key (nil when it does not exist).
func (h *Hub) Key(deviceID, moduleID string) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id := h.ids[key(deviceID, moduleID)]; id != nil {
		return id.key
	}
	return nil
}

// Exists reports whether an identity exists; call it with the lock held
// (inside Await) or without.
func (h *Hub) exists(deviceID, moduleID string) bool { return h.ids[key(deviceID, moduleID)] != nil }

// ExistsLocked reports whether an identity exists; the caller holds the
// lock (Await conditions do).
func (h *Hub) ExistsLocked(deviceID, moduleID string) bool { return h.exists(deviceID, moduleID) }

// Connected reports how many sessions an identity has; the caller holds
// the lock.
func (h *Hub) ConnectedLocked(deviceID, moduleID string) int {
	if id := h.ids[key(deviceID, moduleID)]; id != nil {
		return len(id.peers)
	}
	return 0
}

// SetDesired replaces an identity's desired properties, bumps their
// version and sends the connected sessions the change as a patch (the new
// document with the removed members null).
func (h *Hub) SetDesired(deviceID, moduleID string, desired map[string]any) {
	h.mu.Lock()
	id := h.ids[key(deviceID, moduleID)]
	if id == nil {
		h.mu.Unlock()
		h.t.Fatalf("SetDesired: no identity %s", key(deviceID, moduleID))
	}
	patch := map[string]any{}
	for k := range id.desired {
		patch[k] = nil
	}
	for k, v := range desired {
		patch[k] = v
	}
	id.desired = desired
	id.desiredVer++
	patch["$version"] = id.desiredVer
	topic := hub.DesiredTopic(id.desiredVer)
	var peers []mqtt.Peer
	for p := range id.peers {
		peers = append(peers, p)
	}
	h.notify()
	h.mu.Unlock()
	b, _ := json.Marshal(patch)
	for _, p := range peers {
		if err := p.Publish(topic, b, 0); err != nil {
			h.t.Logf("SetDesired: publish %s: %v", topic, err)
		}
	}
}

// ReportedLocked returns an identity's reported properties; the caller
// holds the lock.
func (h *Hub) ReportedLocked(deviceID, moduleID string) map[string]any {
	if id := h.ids[key(deviceID, moduleID)]; id != nil {
		return id.reported
	}
	return nil
}

// Reported returns a copy of an identity's reported properties.
func (h *Hub) Reported(deviceID, moduleID string) map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, _ := json.Marshal(h.ReportedLocked(deviceID, moduleID))
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// MessagesLocked returns the telemetry received so far; the caller holds
// the lock.
func (h *Hub) MessagesLocked() []Message { return h.messages }

// Messages returns a copy of the telemetry received so far.
func (h *Hub) Messages() []Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Message(nil), h.messages...)
}

// Refuse makes the hub refuse (CONNACK 5) an identity that still exists,
// as for a disabled device.
func (h *Hub) Refuse(deviceID, moduleID string, refuse bool) {
	h.mu.Lock()
	h.refuse[key(deviceID, moduleID)] = refuse
	h.mu.Unlock()
}

// Connect authenticates a CONNECT by its SAS token (mqtt.Realm).
func (h *Hub) Connect(_ context.Context, info mqtt.ConnectInfo, peer mqtt.Peer) (mqtt.Session, error) {
	u, err := hubauth.ParseUsername(info.Username)
	if err != nil {
		return nil, err
	}
	k := key(u.DeviceID, u.ModuleID)
	if info.ClientID != k {
		return nil, fmt.Errorf("client ID %q is not %q", info.ClientID, k)
	}
	tok, err := sas.Parse(info.Password)
	if err != nil {
		return nil, err
	}
	if err := tok.CheckExpiry(time.Now(), time.Minute); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	id := h.ids[k]
	if id == nil || h.refuse[k] || !tok.VerifyKey(id.key) {
		return nil, fmt.Errorf("identity %s refused", k)
	}
	id.peers[peer] = true
	h.notify()
	return &session{h: h, deviceID: u.DeviceID, moduleID: u.ModuleID, peer: peer}, nil
}

// session is one client of the fake hub.
type session struct {
	h                  *Hub
	deviceID, moduleID string
	peer               mqtt.Peer
}

func (s *session) Allow(topic string, write bool) bool {
	if !write {
		return true
	}
	if dev, mod, _, err := telemetry.ParseTelemetryTopic(topic); err == nil {
		return dev == s.deviceID && mod == s.moduleID
	}
	if _, err := hub.ParseTwinTopic(topic); err == nil {
		return true
	}
	_, _, err := hub.ParseMethodResponseTopic(topic)
	return err == nil
}

func (s *session) Publish(_ context.Context, msg mqtt.Message) error {
	h := s.h
	if _, _, bag, err := telemetry.ParseTelemetryTopic(msg.Topic); err == nil {
		sys, app, err := telemetry.ParseBag(bag)
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.messages = append(h.messages, Message{DeviceID: s.deviceID, ModuleID: s.moduleID, System: sys, App: app, Body: append([]byte(nil), msg.Payload...)})
		h.notify()
		h.mu.Unlock()
		return nil
	}
	req, err := hub.ParseTwinTopic(msg.Topic)
	if err != nil {
		status, rid, err := hub.ParseMethodResponseTopic(msg.Topic)
		if err != nil {
			return err
		}
		h.mu.Lock()
		ch := h.calls[rid]
		delete(h.calls, rid)
		h.mu.Unlock()
		if ch != nil {
			ch <- MethodResult{Status: status, Body: append([]byte(nil), msg.Payload...)}
		}
		return nil
	}
	h.mu.Lock()
	id := h.ids[key(s.deviceID, s.moduleID)]
	if id == nil {
		h.mu.Unlock()
		return errors.New("identity gone")
	}
	var topic string
	var body []byte
	switch req.Op {
	case hub.TwinGet:
		d := map[string]any{"$version": id.desiredVer}
		for k, v := range id.desired {
			d[k] = v
		}
		r := map[string]any{"$version": id.reportedVer}
		for k, v := range id.reported {
			r[k] = v
		}
		body, _ = json.Marshal(map[string]any{"desired": d, "reported": r})
		topic = hub.TwinResponseTopic(200, req.RID, 0)
	case hub.TwinPatchReported:
		var patch map[string]any
		if err := json.Unmarshal(msg.Payload, &patch); err != nil {
			topic, body = hub.TwinResponseTopic(400, req.RID, 0), []byte(`{"errorCode":400004,"message":"not a JSON object"}`)
			break
		}
		merge(id.reported, patch)
		id.reportedVer++
		topic = hub.TwinResponseTopic(204, req.RID, id.reportedVer)
		h.notify()
	}
	h.mu.Unlock()
	return s.peer.Publish(topic, body, 0)
}

// merge applies a JSON merge patch to dst.
func merge(dst, patch map[string]any) {
	for k, v := range patch {
		if v == nil {
			delete(dst, k)
			continue
		}
		if pv, ok := v.(map[string]any); ok {
			dv, ok := dst[k].(map[string]any)
			if !ok {
				dv = map[string]any{}
				dst[k] = dv
			}
			merge(dv, pv)
			continue
		}
		dst[k] = v
	}
}

func (s *session) Close(error) {
	s.h.mu.Lock()
	if id := s.h.ids[key(s.deviceID, s.moduleID)]; id != nil {
		delete(id.peers, s.peer)
	}
	s.h.notify()
	s.h.mu.Unlock()
}

// modulesAPI serves /devices/{id}/modules[/{mid}] authorised by the
// device's own SAS token.
func (h *Hub) modulesAPI() http.Handler {
	mux := http.NewServeMux()
	auth := func(w http.ResponseWriter, r *http.Request) (string, bool) {
		dev := r.PathValue("id")
		tok, err := sas.Parse(r.Header.Get("Authorization"))
		if err == nil {
			err = tok.CheckExpiry(time.Now(), time.Minute)
		}
		h.mu.Lock()
		id := h.ids[dev]
		ok := err == nil && id != nil && !h.refuse[dev] && tok.VerifyKey(id.key)
		h.mu.Unlock()
		if !ok {
			w.Header().Set("iothub-errorcode", "IotHubUnauthorizedAccess")
			http.Error(w, `{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized"}`, http.StatusUnauthorized)
		}
		return dev, ok
	}
	moduleJSON := func(dev, mod string, id *identity) map[string]any {
		return map[string]any{"moduleId": mod, "deviceId": dev, "managedBy": id.managedBy, "generationId": id.generationID, "etag": "e",
			"authentication": map[string]any{"type": "sas", "symmetricKey": map[string]string{
				"primaryKey": base64.StdEncoding.EncodeToString(id.key), "secondaryKey": base64.StdEncoding.EncodeToString(id.key)}}}
	}
	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	notFound := func(w http.ResponseWriter) {
		w.Header().Set("iothub-errorcode", "ModuleNotFound")
		http.Error(w, `{"Message":"ErrorCode:ModuleNotFound;no such module"}`, http.StatusNotFound)
	}
	mux.HandleFunc("GET /devices/{id}/modules/{mid}", func(w http.ResponseWriter, r *http.Request) {
		dev, ok := auth(w, r)
		if !ok {
			return
		}
		h.mu.Lock()
		id := h.ids[key(dev, r.PathValue("mid"))]
		var out map[string]any
		if id != nil {
			out = moduleJSON(dev, r.PathValue("mid"), id)
		}
		h.mu.Unlock()
		if out == nil {
			notFound(w)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /devices/{id}/modules", func(w http.ResponseWriter, r *http.Request) {
		dev, ok := auth(w, r)
		if !ok {
			return
		}
		h.mu.Lock()
		out := []map[string]any{}
		for k, id := range h.ids {
			if mod, found := strings.CutPrefix(k, dev+"/"); found {
				out = append(out, moduleJSON(dev, mod, id))
			}
		}
		h.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("PUT /devices/{id}/modules/{mid}", func(w http.ResponseWriter, r *http.Request) {
		dev, ok := auth(w, r)
		if !ok {
			return
		}
		var body struct {
			ManagedBy string `json:"managedBy"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mod := r.PathValue("mid")
		h.mu.Lock()
		if h.ids[key(dev, mod)] != nil {
			h.mu.Unlock()
			http.Error(w, `{"Message":"ErrorCode:ModuleAlreadyExistsOnDevice;exists"}`, http.StatusConflict)
			return
		}
		out := moduleJSON(dev, mod, h.addLocked(dev, mod, body.ManagedBy))
		h.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("DELETE /devices/{id}/modules/{mid}", func(w http.ResponseWriter, r *http.Request) {
		dev, ok := auth(w, r)
		if !ok {
			return
		}
		mod := r.PathValue("mid")
		h.mu.Lock()
		found := h.ids[key(dev, mod)] != nil
		h.mu.Unlock()
		if !found {
			notFound(w)
			return
		}
		h.RemoveIdentity(dev, mod)
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// DropSessions disconnects an identity's sessions; the identity stays, so
// clients reconnect.
func (h *Hub) DropSessions(deviceID, moduleID string) {
	h.mu.Lock()
	var peers []mqtt.Peer
	if id := h.ids[key(deviceID, moduleID)]; id != nil {
		for p := range id.peers {
			peers = append(peers, p)
		}
	}
	h.mu.Unlock()
	for _, p := range peers {
		p.Disconnect()
	}
}

// Invoke calls a direct method on an identity's connected sessions and
// waits (up to timeout) for the answer.
func (h *Hub) Invoke(deviceID, moduleID, method string, payload []byte, timeout time.Duration) (MethodResult, error) {
	h.mu.Lock()
	h.seq++
	rid := strconv.Itoa(h.seq)
	ch := make(chan MethodResult, 1)
	h.calls[rid] = ch
	var peers []mqtt.Peer
	if id := h.ids[key(deviceID, moduleID)]; id != nil {
		for p := range id.peers {
			peers = append(peers, p)
		}
	}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.calls, rid)
		h.mu.Unlock()
	}()
	sent := false
	for _, p := range peers {
		if p.Publish("$iothub/methods/POST/"+method+"/?$rid="+rid, payload, 0) == nil {
			sent = true
		}
	}
	if !sent {
		return MethodResult{}, fmt.Errorf("%s is not listening for methods", key(deviceID, moduleID))
	}
	select {
	case r := <-ch:
		return r, nil
	case <-time.After(timeout):
		return MethodResult{}, fmt.Errorf("method %s of %s: no answer within %v", method, key(deviceID, moduleID), timeout)
	}
}
