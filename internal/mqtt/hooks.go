package mqtt

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"

	cmqtt "github.com/wind-c/comqtt/v2/mqtt"
	"github.com/wind-c/comqtt/v2/mqtt/packets"
)

// hook is the broker hook that implements realms: it prepares CONNECTs,
// authenticates them, checks topics, takes every PUBLISH away from the
// broker's router and hands it to the client's realm.
type hook struct {
	cmqtt.HookBase
	s *Server
}

func (h *hook) ID() string { return "muster-realms" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case cmqtt.OnPacketRead, cmqtt.OnConnectAuthenticate, cmqtt.OnACLCheck,
		cmqtt.OnPublish, cmqtt.OnPublished, cmqtt.OnDisconnect,
		cmqtt.OnSessionEstablish, cmqtt.OnSessionEstablished, cmqtt.OnQosComplete:
		return true
	}
	return false
}

// connOf returns the connection of a broker client.
func connOf(cl *cmqtt.Client) *conn {
	c, _ := cl.Net.Conn.(*conn)
	return c
}

// sessionOf returns the realm session of a broker client, nil before it is
// authenticated.
func sessionOf(cl *cmqtt.Client) *session {
	if c := connOf(cl); c != nil {
		return c.sess.Load()
	}
	return nil
}

// OnPacketRead rewrites the CONNECT before the broker acts on it and
// refuses QoS 2 publishes (QoS 2 is not offered; Azure IoT closes such
// connections too).
func (h *hook) OnPacketRead(cl *cmqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Connect:
		c := connOf(cl)
		if c == nil || c.connectSeen { // a second CONNECT is a protocol violation the broker handles
			return pk, nil
		}
		c.connectSeen = true
		return h.s.prepareConnect(c, pk), nil
	case packets.Publish:
		if pk.FixedHeader.Qos > 1 {
			return pk, packets.ErrRejectPacket // ends the connection
		}
	}
	return pk, nil
}

// prepareConnect records the CONNECT's identity on the connection, takes
// the will away from the broker (it never routes messages), and makes a
// DPS connection an independent clean session with a unique broker ID.
func (s *Server) prepareConnect(c *conn, pk packets.Packet) packets.Packet {
	c.clientID = pk.Connect.ClientIdentifier
	if pk.ConnectValidate() != packets.CodeSuccess {
		return pk // the broker refuses it as it is
	}
	if pk.Connect.WillFlag {
		c.will = &Message{Topic: pk.Connect.WillTopic, Payload: pk.Connect.WillPayload, QoS: pk.Connect.WillQos, Retain: pk.Connect.WillRetain}
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = false, "", nil
		pk.Connect.WillQos, pk.Connect.WillRetain, pk.Connect.WillProperties = 0, false, packets.Properties{}
	}
	if s.dps == nil {
		c.dpsErr = errors.New("DPS over MQTT is not served")
		return pk
	}
	u, err := ParseDPSUsername(string(pk.Connect.Username))
	if err != nil {
		c.dpsErr = err
		return pk
	}
	c.dpsUser = &u
	pk.Connect.ClientIdentifier = dpsClientIDPrefix + strconv.FormatUint(s.seq.Add(1), 10) + "/" + c.clientID
	pk.Connect.Clean = true
	pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 0, false
	return pk
}

// OnConnectAuthenticate admits a DPS client on its username alone (DPS
// checks the credentials with each request) and asks the hub realm about
// every other client. A refusal is answered with CONNACK 0x05 (0x86 in
// MQTT 5).
func (h *hook) OnConnectAuthenticate(cl *cmqtt.Client, pk packets.Packet) bool {
	c := connOf(cl)
	if c == nil {
		return false
	}
	return h.s.authenticate(c, cl, pk)
}

func (s *Server) authenticate(c *conn, cl *cmqtt.Client, pk packets.Packet) bool {
	c.client.Store(cl)
	sess := &session{}
	if c.dpsUser != nil {
		u := *c.dpsUser
		if c.clientID != u.RegistrationID {
			s.log.Info("DPS client ID differs from the username's registration ID; using the username's",
				"clientId", c.clientID, "registrationId", u.RegistrationID, "remote", c.remote)
		}
		sess.dps = &dpsSession{
			user:   u,
			sas:    string(pk.Connect.Password),
			chain:  c.peerCerts,
			remote: c.remote,
			sem:    make(chan struct{}, maxRequestsPerConn),
		}
		c.sess.Store(sess)
		s.log.Debug("DPS client connected", "registrationId", u.RegistrationID, "idScope", u.IDScope,
			"apiVersion", u.APIVersion, "clientVersion", u.ClientVersion, "x509", len(c.peerCerts) > 0, "remote", c.remote)
		return true
	}
	if s.hub == nil {
		s.log.Info("mqtt connection refused: not a DPS username and no hub realm is served",
			"username", string(pk.Connect.Username), "reason", c.dpsErr, "clientId", c.clientID, "remote", c.remote)
		return false
	}
	info := ConnectInfo{
		ClientID:         c.clientID,
		Username:         string(pk.Connect.Username),
		Password:         string(pk.Connect.Password),
		PeerCertificates: c.peerCerts,
		RemoteAddr:       c.remote,
		ProtocolVersion:  pk.ProtocolVersion,
		CleanSession:     pk.Connect.Clean,
		Keepalive:        pk.Connect.Keepalive,
		Will:             c.will,
	}
	ctx, cancel := context.WithTimeout(s.ctx, realmConnectTimeout)
	defer cancel()
	hs, err := s.hub.Connect(ctx, info, &peer{s: s, cl: cl})
	switch {
	case err != nil:
		s.log.Info("mqtt connection refused by the hub realm", "clientId", c.clientID, "remote", c.remote, "err", err)
		return false
	case hs == nil:
		s.log.Error("hub realm accepted a connection without a session; refusing it", "clientId", c.clientID, "remote", c.remote)
		return false
	}
	sess.hub = hs
	c.sess.Store(sess)
	return true
}

// OnSessionEstablish runs right before the broker lets a client inherit
// the persistent session of its client ID. A hub client inherits no
// in-flight messages, which the broker would resend: the hub tracks the
// delivery of what it sends itself (and sends unacknowledged
// cloud-to-device messages again from its queue), and the PUBACK of a
// resent copy would reach no realm.
func (h *hook) OnSessionEstablish(cl *cmqtt.Client, _ packets.Packet) {
	if sess := sessionOf(cl); sess == nil || sess.hub == nil {
		return
	}
	if old, ok := h.s.broker.Clients.Get(cl.ID); ok && old != cl {
		old.ClearInflights(math.MaxInt64, 0)
	}
}

// OnSessionEstablished hands the subscriptions a hub client's persistent
// session inherited (clean session 0: the client need not subscribe
// again) to its realm session, as if the client had just made them, so
// that what they start (C2D delivery, desired notifications, direct
// methods) runs for this connection too; a subscription the session
// refuses now is dropped.
func (h *hook) OnSessionEstablished(cl *cmqtt.Client, _ packets.Packet) {
	sess := sessionOf(cl)
	if sess == nil || sess.hub == nil {
		return
	}
	for filter := range cl.State.Subscriptions.GetAll() {
		if sess.hub.Allow(filter, false) {
			continue
		}
		cl.State.Subscriptions.Delete(filter)
		if removed, _ := h.s.broker.Topics.Unsubscribe(filter, cl.ID); removed {
			atomic.AddInt64(&h.s.broker.Info.Subscriptions, -1)
		}
	}
}

// OnQosComplete passes a client's PUBACK to the sender of the message
// (Peer.PublishAcked).
func (h *hook) OnQosComplete(cl *cmqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Puback {
		return
	}
	if c := connOf(cl); c != nil {
		if acked := c.takeAck(pk.PacketID); acked != nil {
			acked()
		}
	}
}

// OnACLCheck lets a DPS client subscribe to $dps/registrations/res/# only
// and publish to the two DPS request topics only; hub clients ask their
// session.
func (h *hook) OnACLCheck(cl *cmqtt.Client, topic string, write bool) bool {
	sess := sessionOf(cl)
	switch {
	case sess == nil:
		return false
	case sess.dps != nil:
		ok := topic == dpsResponseFilter
		if write {
			_, err := ParseDPSTopic(topic)
			ok = err == nil
		}
		if !ok {
			h.s.log.Debug("DPS client topic refused", "registrationId", sess.dps.user.RegistrationID,
				"topic", topic, "publish", write, "remote", sess.dps.remote)
		}
		return ok
	case sess.hub != nil:
		return sess.hub.Allow(topic, write)
	}
	return false
}

// OnPublish keeps every PUBLISH out of the broker's router (pk.Ignore: it
// is acknowledged but neither retained nor forwarded) and hands hub
// messages to their session before the PUBACK. A PipelinedSession's
// publishes are acknowledged by publishPipelined, after the session is
// done with them; the broker is told to drop them (ErrRejectPacket), so it
// sends no PUBACK of its own.
func (h *hook) OnPublish(cl *cmqtt.Client, pk packets.Packet) (packets.Packet, error) {
	sess := sessionOf(cl)
	if sess == nil {
		return pk, packets.ErrRejectPacket
	}
	pk.Ignore = true
	if sess.hub == nil {
		return pk, nil
	}
	if ps, ok := sess.hub.(PipelinedSession); ok {
		h.s.publishPipelined(cl, connOf(cl), ps, pk)
		return pk, packets.ErrRejectPacket
	}
	ctx, cancel := context.WithTimeout(h.s.ctx, requestTimeout)
	defer cancel()
	msg := Message{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain}
	if err := sess.hub.Publish(ctx, msg); err != nil {
		h.s.log.Info("hub realm refused a publish; disconnecting the client", "clientId", connOf(cl).clientID, "topic", pk.TopicName, "err", err)
		h.s.disconnect(cl, packets.ErrImplementationSpecificError)
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// OnPublished starts a DPS request once the broker has acknowledged it.
func (h *hook) OnPublished(cl *cmqtt.Client, pk packets.Packet) {
	sess := sessionOf(cl)
	if sess == nil || sess.dps == nil {
		return
	}
	req, err := ParseDPSTopic(pk.TopicName)
	if err != nil { // the ACL admitted only request topics
		h.s.log.Error("DPS publish passed the ACL but is not a request", "topic", pk.TopicName, "err", err)
		return
	}
	h.s.dispatchDPS(cl, sess.dps, req, pk.Payload)
}

// OnDisconnect closes the realm session. A connection the server ended
// (refused publish, shutdown) counts as an error even though the broker
// reports a clean end of the read loop.
func (h *hook) OnDisconnect(cl *cmqtt.Client, err error, _ bool) {
	c := connOf(cl)
	if c == nil {
		return
	}
	if err == nil {
		if cause := cl.StopCause(); cause != nil && !errors.Is(cause, packets.CodeDisconnect) {
			err = fmt.Errorf("connection closed by the server: %w", cause)
		}
	}
	c.endSession(err)
}
