package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/muster-iot/muster/internal/hub"
	"github.com/muster-iot/muster/internal/hubauth"
)

// HubService is the hub's device-facing core as the MQTT hub realm uses
// it; *hub.Service implements it.
type HubService interface {
	Connect(ctx context.Context, req hubauth.Request, client hub.Client) (*hub.Session, error)
}

// HubRealm is the Realm of hub devices and modules (devices/{id}/…,
// $iothub/…): it hands each CONNECT to the hub service, which
// authenticates it (a refusal is answered with CONNACK 0x05 and recorded
// in the attempt log by hubauth), and carries the session's messages.
// A publish to a topic the identity may not use disconnects the client
// whatever its QoS (hub-edge-protocol §2.3); a refused subscription gets
// SUBACK 0x80.
type HubRealm struct {
	svc HubService
	log *slog.Logger
}

// NewHubRealm returns the hub realm over svc; log may be nil (discard).
func NewHubRealm(svc HubService, log *slog.Logger) (*HubRealm, error) {
	if svc == nil {
		return nil, errors.New("new hub realm: no hub service")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &HubRealm{svc: svc, log: log}, nil
}

// Connect authenticates the CONNECT through the hub service. The client
// ID is validated there (it must be the identity the username names).
func (r *HubRealm) Connect(ctx context.Context, info ConnectInfo, peer Peer) (Session, error) {
	req := hubauth.Request{
		ClientID:   info.ClientID,
		Username:   info.Username,
		Password:   info.Password,
		Chain:      info.PeerCertificates,
		RemoteAddr: info.RemoteAddr,
		Protocol:   hubauth.ProtocolMQTT,
	}
	sess, err := r.svc.Connect(ctx, req, hubClient{peer})
	if err != nil {
		return nil, fmt.Errorf("hub realm: %w", err)
	}
	return &hubRealmSession{sess: sess, peer: peer, log: r.log}, nil
}

// hubClient is a Peer as the hub sends to it.
type hubClient struct{ p Peer }

func (c hubClient) Send(topic string, payload []byte, qos byte) error {
	return c.p.Publish(topic, payload, qos)
}

// SendAcked makes C2D delivery complete on the device's PUBACK.
func (c hubClient) SendAcked(topic string, payload []byte, qos byte, acked func()) (bool, error) {
	return c.p.PublishAcked(topic, payload, qos, acked)
}

func (c hubClient) Disconnect() { c.p.Disconnect() }

var (
	_ hub.AckingClient = hubClient{}
	_ PipelinedSession = (*hubRealmSession)(nil)
)

// hubRealmSession carries one hub session.
type hubRealmSession struct {
	sess *hub.Session
	peer Peer
	log  *slog.Logger
}

// Allow asks the hub session; a refused publish also ends the connection
// (the broker alone would only drop a refused QoS 0 publish).
func (s *hubRealmSession) Allow(topic string, write bool) bool {
	ok := s.sess.Allow(topic, write)
	if !ok && write {
		id := s.sess.Identity()
		s.log.Info("hub client published to a topic it may not use; disconnecting it",
			"clientId", id.ClientID(), "topic", topic)
		s.peer.Disconnect()
	}
	return ok
}

func (s *hubRealmSession) Publish(ctx context.Context, msg Message) error {
	return s.sess.Publish(ctx, msg.Topic, msg.Payload, msg.Retain)
}

// PublishAsync lets telemetry wait for its commit off the read loop: the
// hub stores a session's queued messages together, in order, and the
// broker acknowledges each one after its commit.
func (s *hubRealmSession) PublishAsync(ctx context.Context, msg Message, done func(err error, more bool)) {
	s.sess.PublishAsync(ctx, msg.Topic, msg.Payload, msg.Retain, done)
}

func (s *hubRealmSession) Close(err error) { s.sess.Close(err) }
