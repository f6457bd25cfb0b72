package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// The hub bench speaks MQTT 3.1.1 itself instead of using paho: one small
// client drives both brokers (so the two are measured with exactly the same
// client work), it pipelines QoS 1 publishes with a fixed window and batched
// writes, and it holds 10,000 idle connections with one goroutine each.
// The physical-limits note found paho's own goroutine chain to be the limit
// of its MQTT measurements.

// MQTT 3.1.1 control packet types.
const (
	mqttConnect    byte = 1
	mqttConnack    byte = 2
	mqttPublish    byte = 3
	mqttPuback     byte = 4
	mqttPingreq    byte = 12
	mqttPingresp   byte = 13
	mqttDisconnect byte = 14
)

// maxMQTTBody bounds the body of a packet the bench reads: it expects only
// CONNACK, PUBACK and PINGRESP (a few bytes), and skips anything else up
// to this size.
const maxMQTTBody = 1 << 20

// Errors of the MQTT client.
var (
	// errMQTTProtocol means the broker sent bytes that are not the MQTT
	// packet expected.
	errMQTTProtocol = errors.New("MQTT protocol error")
	// errMQTTClosed means the connection ended while an answer was awaited.
	errMQTTClosed = errors.New("the MQTT connection ended")
)

// ConnackError is a CONNACK that refused the connection.
type ConnackError struct {
	Code byte
}

func (e *ConnackError) Error() string {
	return fmt.Sprintf("CONNACK refused the connection with return code %d (%s)", e.Code, connackReason(e.Code))
}

// connackReason names an MQTT 3.1.1 CONNACK return code.
func connackReason(code byte) string {
	switch code {
	case 1:
		return "unacceptable protocol version"
	case 2:
		return "identifier rejected"
	case 3:
		return "server unavailable"
	case 4:
		return "bad user name or password"
	case 5:
		return "not authorized"
	}
	return "unknown code"
}

// mqttPacket is one control packet as read: its type, the flags of its
// fixed header and its body (variable header and payload).
type mqttPacket struct {
	typ   byte
	flags byte
	body  []byte
}

// readMQTTPacket reads one packet. The body is read into buf when it fits
// (buf may be nil), so the result is valid until the next call with the
// same buf.
func readMQTTPacket(r *bufio.Reader, buf []byte) (mqttPacket, error) {
	h, err := r.ReadByte()
	if err != nil {
		return mqttPacket{}, err
	}
	n, err := readRemainingLength(r)
	if err != nil {
		return mqttPacket{}, err
	}
	if n > maxMQTTBody {
		return mqttPacket{}, fmt.Errorf("%w: packet type %d announces %d bytes, more than the %d the bench accepts", errMQTTProtocol, h>>4, n, maxMQTTBody)
	}
	if n > cap(buf) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return mqttPacket{}, fmt.Errorf("read the body of packet type %d: %w", h>>4, err)
	}
	return mqttPacket{typ: h >> 4, flags: h & 0x0f, body: buf}, nil
}

// readRemainingLength decodes the fixed header's variable-length integer
// (at most four bytes).
func readRemainingLength(r io.ByteReader) (int, error) {
	n, shift := 0, 0
	for i := range 4 {
		b, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("read remaining length byte %d: %w", i+1, err)
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			return n, nil
		}
		shift += 7
	}
	return 0, fmt.Errorf("%w: remaining length longer than four bytes", errMQTTProtocol)
}

// appendRemainingLength appends n (0 ≤ n < 2^28) as a variable-length
// integer.
func appendRemainingLength(dst []byte, n int) []byte {
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

func appendMQTTString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// mqttCredential is what one client sends in its CONNECT.
type mqttCredential struct {
	ClientID string
	Username string
	Password string
}

// maxMQTTString is the longest string an MQTT packet can carry.
const maxMQTTString = 65535

// encodeConnect returns an MQTT 3.1.1 CONNECT with a clean session, the
// credential and the keep-alive in seconds.
func encodeConnect(c mqttCredential, keepAlive uint16) ([]byte, error) {
	for _, f := range []struct{ name, v string }{{"client ID", c.ClientID}, {"user name", c.Username}, {"password", c.Password}} {
		if len(f.v) > maxMQTTString {
			return nil, fmt.Errorf("encode CONNECT: the %s is %d bytes, more than MQTT's %d", f.name, len(f.v), maxMQTTString)
		}
	}
	flags := byte(0x02) // clean session
	n := 10 + 2 + len(c.ClientID)
	if c.Username != "" {
		flags |= 0x80
		n += 2 + len(c.Username)
	}
	if c.Password != "" {
		flags |= 0x40
		n += 2 + len(c.Password)
	}
	b := make([]byte, 0, n+5)
	b = append(b, mqttConnect<<4)
	b = appendRemainingLength(b, n)
	b = appendMQTTString(b, "MQTT")
	b = append(b, 4, flags) // protocol level 4: MQTT 3.1.1
	b = binary.BigEndian.AppendUint16(b, keepAlive)
	b = appendMQTTString(b, c.ClientID)
	if c.Username != "" {
		b = appendMQTTString(b, c.Username)
	}
	if c.Password != "" {
		b = appendMQTTString(b, c.Password)
	}
	return b, nil
}

// appendPublishQoS1 appends a QoS 1 PUBLISH.
func appendPublishQoS1(dst []byte, topic string, id uint16, payload []byte) []byte {
	dst = append(dst, mqttPublish<<4|0x02)
	dst = appendRemainingLength(dst, 2+len(topic)+2+len(payload))
	dst = appendMQTTString(dst, topic)
	dst = binary.BigEndian.AppendUint16(dst, id)
	return append(dst, payload...)
}

// parseConnack checks a CONNACK's body: nil when the connection was
// accepted, a *ConnackError when refused.
func parseConnack(p mqttPacket) error {
	if p.typ != mqttConnack {
		return fmt.Errorf("%w: expected CONNACK, got packet type %d", errMQTTProtocol, p.typ)
	}
	if len(p.body) != 2 {
		return fmt.Errorf("%w: CONNACK body is %d bytes, want 2", errMQTTProtocol, len(p.body))
	}
	if p.body[1] != 0 {
		return &ConnackError{Code: p.body[1]}
	}
	return nil
}

// parsePuback returns a PUBACK's packet identifier.
func parsePuback(p mqttPacket) (uint16, error) {
	if len(p.body) != 2 {
		return 0, fmt.Errorf("%w: PUBACK body is %d bytes, want 2", errMQTTProtocol, len(p.body))
	}
	return binary.BigEndian.Uint16(p.body), nil
}

// mqttEndpoint is a broker's MQTTS listener as the bench dials it.
type mqttEndpoint struct {
	// Addr is the IP:port to dial (resolved once, so that no dial tries
	// an address family the broker does not listen on).
	Addr string
	// TLS is the client configuration: the broker's roots and server name,
	// no session cache (every connection is a full handshake).
	TLS *tls.Config
}

// mqttConn is one client connection.
type mqttConn struct {
	tcp *net.TCPConn
	tls *tls.Conn
	r   *bufio.Reader
	wmu sync.Mutex // serialises writes of different goroutines
}

// dialMQTT opens a TLS connection, sends CONNECT and waits for an
// accepting CONNACK, all bounded by ctx.
func dialMQTT(ctx context.Context, ep mqttEndpoint, cred mqttCredential, keepAlive uint16) (*mqttConn, error) {
	connect, err := encodeConnect(cred, keepAlive)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", ep.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", ep.Addr, err)
	}
	tcp := nc.(*net.TCPConn)
	if dl, ok := ctx.Deadline(); ok {
		_ = tcp.SetDeadline(dl)
	}
	tc := tls.Client(tcp, ep.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		abortTCP(tcp)
		return nil, fmt.Errorf("TLS handshake with %s: %w", ep.Addr, err)
	}
	c := &mqttConn{tcp: tcp, tls: tc, r: bufio.NewReaderSize(tc, 64)}
	if _, err := tc.Write(connect); err != nil {
		c.abort()
		return nil, fmt.Errorf("send CONNECT of %q: %w", cred.ClientID, err)
	}
	p, err := readMQTTPacket(c.r, nil)
	if err == nil {
		err = parseConnack(p)
	}
	if err != nil {
		c.abort()
		return nil, fmt.Errorf("CONNECT of %q: %w", cred.ClientID, err)
	}
	_ = tcp.SetDeadline(time.Time{})
	return c, nil
}

// abortTCP closes a TCP connection with a reset (SO_LINGER 0), so that
// no TIME_WAIT state holds a loopback port.
func abortTCP(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// abort closes the connection at once, with a reset.
func (c *mqttConn) abort() { abortTCP(c.tcp) }

// write sends b (one or more whole packets) under the write lock.
func (c *mqttConn) write(b []byte, deadline time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.tls.SetWriteDeadline(deadline)
	_, err := c.tls.Write(b)
	return err
}

// disconnect sends DISCONNECT and waits until the broker closes the
// connection (both brokers close it on DISCONNECT), then releases the
// socket with a reset. It fails when the broker does not close by the
// deadline. Reading until the end makes the broker's teardown part of
// the connection's cost and keeps connections from piling up.
func (c *mqttConn) disconnect(deadline time.Time) error {
	defer c.abort()
	if err := c.write([]byte{mqttDisconnect << 4, 0}, deadline); err != nil {
		return fmt.Errorf("send DISCONNECT: %w", err)
	}
	_ = c.tls.SetReadDeadline(deadline)
	buf := make([]byte, 64)
	for {
		_, err := readMQTTPacket(c.r, buf)
		switch {
		case err == nil:
			continue // something sent before the close; skip it
		case errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Errorf("the broker did not close the connection after DISCONNECT: %w", err)
		}
		return nil // EOF, reset or close_notify: closed
	}
}
