package mqtt

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wind-c/comqtt/v2/mqtt/packets"
)

// ackRealm is a device realm that records the subscriptions its sessions
// allow, and the peers of its connections in order.
type ackRealm struct {
	mu       sync.Mutex
	sessions []*ackSession
}

type ackSession struct {
	id      string
	peer    Peer
	allowed chan string
}

func (r *ackRealm) Connect(_ context.Context, info ConnectInfo, p Peer) (Session, error) {
	s := &ackSession{id: info.ClientID, peer: p, allowed: make(chan string, 16)}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions = append(r.sessions, s)
	return s, nil
}

// last returns the session of the latest connection.
func (r *ackRealm) last(t *testing.T) *ackSession {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sessions) == 0 {
		t.Fatal("no connection")
	}
	return r.sessions[len(r.sessions)-1]
}

func (s *ackSession) Allow(topic string, write bool) bool {
	if write {
		return false
	}
	ok := strings.HasPrefix(topic, "devices/"+s.id+"/")
	if ok {
		s.allowed <- topic
	}
	return ok
}

func (s *ackSession) Publish(context.Context, Message) error { return nil }

func (s *ackSession) Close(error) {}

// connectDevice connects a raw MQTT 3.1.1 client as dev1 with the given
// clean-session flag and returns it with CONNACK's session-present flag.
func connectDevice(t *testing.T, srv *Server, clean bool) (*rawClient, bool) {
	t.Helper()
	rc, _ := servePipe(t, srv, 4, nil, "")
	pk := connectPacket(4, "dev1", "hub.example/dev1/?api-version=1", "sas")
	pk.Connect.Clean = clean
	rc.send(pk)
	ack := rc.expect(packets.Connack)
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
	}
	return rc, ack.SessionPresent
}

// ackResult is what PublishAcked returned.
type ackResult struct {
	tracked bool
	err     error
}

// publishAcked runs PublishAcked on its own goroutine (the pipe blocks the
// writer until the client reads) and returns its result channel.
func publishAcked(p Peer, topic string, qos byte, acked func()) <-chan ackResult {
	res := make(chan ackResult, 1)
	go func() {
		tracked, err := p.PublishAcked(topic, []byte("c2d"), qos, acked)
		res <- ackResult{tracked, err}
	}()
	return res
}

// result waits for a PublishAcked result and checks it.
func result(t *testing.T, res <-chan ackResult, wantTracked bool) {
	t.Helper()
	select {
	case r := <-res:
		if r.err != nil || r.tracked != wantTracked {
			t.Fatalf("PublishAcked: tracked %v, %v; want tracked %v", r.tracked, r.err, wantTracked)
		}
	case <-time.After(waitLimit):
		t.Fatal("PublishAcked did not return")
	}
}

func TestPublishAckedReportsThePUBACK(t *testing.T) {
	realm := &ackRealm{}
	srv := newTestServer(t, &fakeDPS{}, realm)
	rc, _ := connectDevice(t, srv, true)
	rc.send(subscribePacket(1, "devices/dev1/messages/devicebound/#", 1))
	rc.expect(packets.Suback)
	sess := realm.last(t)

	acked := make(chan struct{}, 2)
	res := publishAcked(sess.peer, "devices/dev1/messages/devicebound/a", 1, func() { acked <- struct{}{} })
	pub := rc.expect(packets.Publish)
	result(t, res, true)
	if pub.FixedHeader.Qos != 1 || pub.PacketID == 0 {
		t.Fatalf("PUBLISH QoS %d id %d, want QoS 1 with an id", pub.FixedHeader.Qos, pub.PacketID)
	}
	// A PUBACK for another packet identifier is not this message's.
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pub.PacketID + 1})
	rc.ping()
	select {
	case <-acked:
		t.Fatal("acknowledged by a PUBACK of another packet identifier")
	default:
	}
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pub.PacketID})
	rc.ping() // the PUBACK is processed (and the callback run) before PINGRESP
	select {
	case <-acked:
	default:
		t.Fatal("not acknowledged after the PUBACK")
	}
	// A second PUBACK of the same identifier calls nothing again.
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pub.PacketID})
	rc.ping()
	select {
	case <-acked:
		t.Fatal("acknowledged twice")
	default:
	}

	// The next message may reuse the identifier: it gets its own callback
	// (none here), never the old one.
	res = publishAcked(sess.peer, "devices/dev1/messages/devicebound/b", 1, nil)
	pub2 := rc.expect(packets.Publish)
	result(t, res, false)
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pub2.PacketID})
	rc.ping()
	if len(acked) != 0 {
		t.Fatal("an untracked message's PUBACK called a callback")
	}
}

func TestPublishAckedQoS0Subscription(t *testing.T) {
	realm := &ackRealm{}
	srv := newTestServer(t, &fakeDPS{}, realm)
	rc, _ := connectDevice(t, srv, true)
	rc.send(subscribePacket(1, "devices/dev1/messages/devicebound/#", 0))
	rc.expect(packets.Suback)
	res := publishAcked(realm.last(t).peer, "devices/dev1/messages/devicebound/a", 0, func() { t.Error("a QoS 0 message was acknowledged") })
	if pub := rc.expect(packets.Publish); pub.FixedHeader.Qos != 0 {
		t.Fatalf("PUBLISH QoS %d, want 0 (the subscription's)", pub.FixedHeader.Qos)
	}
	result(t, res, false)
}

func TestPersistentHubSession(t *testing.T) {
	realm := &ackRealm{}
	srv := newTestServer(t, &fakeDPS{}, realm)
	rc, present := connectDevice(t, srv, false)
	if present {
		t.Fatal("session present on the first connection")
	}
	rc.send(subscribePacket(1, "devices/dev1/messages/devicebound/#", 1))
	rc.expect(packets.Suback)
	first := realm.last(t)
	if f := <-first.allowed; f != "devices/dev1/messages/devicebound/#" { // sent before the SUBACK
		t.Fatalf("allowed %q", f)
	}
	// A message the client never acknowledges.
	res := publishAcked(first.peer, "devices/dev1/messages/devicebound/unacked", 1, func() { t.Error("acknowledged without a PUBACK") })
	rc.expect(packets.Publish)
	result(t, res, true)
	rc.c.Close()

	rc2, present := connectDevice(t, srv, false)
	if !present {
		t.Fatal("no session present on reconnecting with clean session 0")
	}
	second := realm.last(t)
	if second == first {
		t.Fatal("the reconnection has no session of its own")
	}
	// The inherited subscription reaches the new session without a
	// SUBSCRIBE from the client.
	select {
	case f := <-second.allowed:
		if f != "devices/dev1/messages/devicebound/#" {
			t.Fatalf("inherited subscription %q", f)
		}
	case <-time.After(waitLimit):
		t.Fatal("the inherited subscription was not handed to the new session")
	}
	// The broker resent nothing of the first connection's: its in-flight
	// message is the realm's to send again.
	if got := rc2.ping(); len(got) != 0 {
		t.Fatalf("packets before PINGRESP on reconnecting: %+v", got)
	}
	acked := make(chan struct{}, 1)
	res = publishAcked(second.peer, "devices/dev1/messages/devicebound/again", 1, func() { acked <- struct{}{} })
	pub := rc2.expect(packets.Publish)
	result(t, res, true)
	rc2.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pub.PacketID})
	select {
	case <-acked:
	case <-time.After(waitLimit):
		t.Fatal("not acknowledged")
	}
}
