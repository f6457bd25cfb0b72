package mqtt

import (
	"context"
	"crypto/x509"
)

// Realm is a family of MQTT clients with its own authentication, topic
// rules and message handling. The DPS realm is built in; the hub's device
// realm (devices/{id}/…, $iothub/…) plugs in through Options.HubRealm and
// receives every CONNECT whose username is not a DPS username.
//
// The broker never routes messages between clients: every PUBLISH a realm
// client sends goes to its Session, and the realm sends to a client only
// through that client's Peer.
type Realm interface {
	// Connect authenticates a CONNECT. It returns the Session that serves
	// the connection until it ends; an error refuses the connection with
	// CONNACK 0x05 (not authorized; 0x86 to MQTT 5 clients). The error is
	// logged, never shown to the client. The realm must validate
	// ConnectInfo.ClientID: the broker keys sessions by it, and a second
	// connection with the same client ID takes the first one over.
	Connect(ctx context.Context, info ConnectInfo, peer Peer) (Session, error)
}

// Session is a realm's state for one accepted connection. The broker calls
// Allow and Publish on the connection's read loop, so a slow Publish slows
// only that client (which is the intended back-pressure); a session that
// is also a PipelinedSession gets PublishAsync calls instead of Publish.
type Session interface {
	// Allow reports whether the client may publish to topic (write true) or
	// subscribe to the filter topic (write false). A refused subscription
	// is answered with SUBACK 0x80; a refused QoS 1 publish disconnects an
	// MQTT 3.1.1 client and a refused QoS 0 publish is dropped.
	Allow(topic string, write bool) bool
	// Publish handles a PUBLISH that Allow accepted, before the broker
	// acknowledges it (a QoS 1 PUBACK means the realm accepted the message).
	// A non-nil error drops the message without PUBACK and disconnects the
	// client.
	Publish(ctx context.Context, msg Message) error
	// Close is called exactly once when the connection ends; err is nil for
	// a clean DISCONNECT from the client.
	Close(err error)
}

// PipelinedSession is a Session that takes publishes without holding the
// connection's read loop until they are handled, so that a client can
// have many QoS 1 publishes unacknowledged (telemetry waiting for its
// commit). The broker then calls PublishAsync instead of Publish and
// sends each QoS 1 PUBACK itself once done reported nil for that message
// and the PUBACKs of every earlier publish of the connection have gone
// out (MQTT acknowledges in order). An error from done drops the message
// without PUBACK, sends no further PUBACK on the connection and
// disconnects the client. At most a fixed number of publishes (and bytes)
// of one connection wait for done; beyond that the read loop waits, which
// is the back-pressure for a slow realm.
type PipelinedSession interface {
	Session
	// PublishAsync handles a PUBLISH that Allow accepted like Publish, but
	// may finish later: it calls done exactly once with what Publish would
	// have returned, possibly before PublishAsync returns. ctx stays valid
	// until done is called. done does not block for long (it writes the
	// PUBACKs that are due). more true promises that done calls for later
	// publishes of the connection follow at once, the last one with more
	// false, so the PUBACKs due are written together after it.
	PublishAsync(ctx context.Context, msg Message, done func(err error, more bool))
}

// Peer is the connected client as a realm sees it.
type Peer interface {
	// Publish sends a message to this client only, at the lowest of qos,
	// the QoS granted to the client's best matching subscription, and 1.
	// It returns ErrNotSubscribed when no subscription of the client
	// matches topic and ErrClientGone once the connection has ended. It
	// may be called only after Realm.Connect has returned.
	Publish(topic string, payload []byte, qos byte) error
	// PublishAcked publishes like Publish and, when the message goes at
	// QoS 1 and acked is not nil, calls acked once when the client's PUBACK
	// for it arrives on this connection; tracked reports whether it will.
	// acked runs on the connection's read loop and must not block. It is
	// never called when the connection ends first (an unacknowledged
	// message is the realm's to send again on a later connection: the
	// broker does not resend a hub client's in-flight messages).
	PublishAcked(topic string, payload []byte, qos byte, acked func()) (tracked bool, err error)
	// Disconnect closes the connection.
	Disconnect()
}

// ConnectInfo is a CONNECT as a realm sees it.
type ConnectInfo struct {
	ClientID string
	Username string
	// Password is the CONNECT password (a SAS token for Azure IoT clients),
	// empty when absent. Never log it.
	Password string
	// PeerCertificates is the TLS client certificate chain as presented,
	// leaf first, unverified; nil without a client certificate.
	PeerCertificates []*x509.Certificate
	RemoteAddr       string
	// ProtocolVersion is 3 (MQTT 3.1), 4 (3.1.1) or 5.
	ProtocolVersion byte
	CleanSession    bool
	// Keepalive is the keep-alive interval in seconds (0: none).
	Keepalive uint16
	// Will is the client's will message, or nil. The broker never publishes
	// wills itself; a realm that honours them does so when Session.Close
	// gets a non-nil error.
	Will *Message
}

// Message is an application message.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}
