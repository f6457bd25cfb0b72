package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/wind-c/comqtt/v2/mqtt/packets"

	"github.com/muster-iot/muster/internal/provision"
)

// waitLimit bounds every wait for the server or a client in these tests.
const waitLimit = 15 * time.Second

// fixedNow is the clock of the test servers.
var fixedNow = time.Date(2026, 11, 3, 10, 20, 30, 0, time.UTC)

// testPKI is a root CA, a server certificate for 127.0.0.1 and a device
// chain leaf ← intermediate ← root, generated per test.
type testPKI struct {
	roots  *x509.CertPool
	server tls.Certificate
	device tls.Certificate
	chain  []*x509.Certificate // device leaf, intermediate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	root, rootKey := issue(t, "Test Root", nil, nil, true, nil)
	serverCert, serverKey := issue(t, "127.0.0.1", root, rootKey, false, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.DNSNames = []string{"localhost"}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	inter, interKey := issue(t, "Test Intermediate", root, rootKey, true, nil)
	leaf, leafKey := issue(t, "x509-device", inter, interKey, false, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	p := &testPKI{roots: x509.NewCertPool(), chain: []*x509.Certificate{leaf, inter}}
	p.roots.AddCert(root)
	p.server = tls.Certificate{Certificate: [][]byte{serverCert.Raw, root.Raw}, PrivateKey: serverKey, Leaf: serverCert}
	p.device = tls.Certificate{Certificate: [][]byte{leaf.Raw, inter.Raw}, PrivateKey: leafKey, Leaf: leaf}
	return p
}

func issue(t testing.TB, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool, mod func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  ca,
	}
	if ca {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if mod != nil {
		mod(tmpl)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
}

func (p *testPKI) clientTLS(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: p.roots, MinVersion: tls.VersionTLS12}
	if withCert {
		c.Certificates = []tls.Certificate{p.device}
	}
	return c
}

// fakeDPS records requests and answers through replaceable functions.
type fakeDPS struct {
	mu        sync.Mutex
	registers []provision.RegisterRequest
	polls     []provision.OperationRequest
	register  func(provision.RegisterRequest) (*provision.OperationStatus, error)
	poll      func(provision.OperationRequest) (*provision.OperationStatus, error)
}

func (f *fakeDPS) Register(ctx context.Context, req provision.RegisterRequest) (*provision.OperationStatus, error) {
	f.mu.Lock()
	f.registers = append(f.registers, req)
	fn := f.register
	f.mu.Unlock()
	if fn != nil {
		return fn(req)
	}
	return assigning(req.RegistrationID), nil
}

func (f *fakeDPS) OperationStatus(ctx context.Context, req provision.OperationRequest) (*provision.OperationStatus, error) {
	f.mu.Lock()
	f.polls = append(f.polls, req)
	fn := f.poll
	f.mu.Unlock()
	if fn != nil {
		return fn(req)
	}
	return nil, &provision.Error{Status: 404, Code: 404201, Message: "Operation not found"}
}

func (f *fakeDPS) registerRequests() []provision.RegisterRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]provision.RegisterRequest(nil), f.registers...)
}

func (f *fakeDPS) pollRequests() []provision.OperationRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]provision.OperationRequest(nil), f.polls...)
}

func assigning(regID string) *provision.OperationStatus {
	return &provision.OperationStatus{OperationID: "op-" + regID, Status: provision.StatusAssigning,
		RegistrationState: &provision.DeviceRegistrationResult{RegistrationID: regID, Status: provision.StatusAssigning}}
}

// newTestServer returns a Server on a fake DPS whose logs go to t.
func newTestServer(t testing.TB, dps DPS, hub Realm) *Server {
	t.Helper()
	s, err := New(Options{Logger: testLogger(t), DPS: dps, Now: func() time.Time { return fixedNow }, HubRealm: hub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n := s.panics.Load(); n != 0 {
			t.Errorf("server recovered %d panics", n)
		}
	})
	return s
}

// serveTLS runs s.Serve on a loopback TLS listener and returns its address
// and Serve's result.
func serveTLS(t testing.TB, s *Server, cfg *tls.Config) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(tls.NewListener(ln, cfg)) }()
	return ln.Addr().String(), done
}

// testLogger logs to t until the test ends (the broker library's event
// loop may still log "halted" after Close returns).
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// dpsUsername is a Node-style DPS username.
func dpsUsername(scope, regID string) string {
	return scope + "/registrations/" + regID + "/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1"
}

// pahoClient is a connected paho MQTT 3.1.1 client that collects the
// messages of its subscriptions.
type pahoClient struct {
	paho.Client
	msgs chan paho.Message
	lost chan error
}

type clientConfig struct {
	broker   string // ssl://host:port or wss://host:port/path
	tls      *tls.Config
	clientID string
	username string
	password string
}

// connectPaho connects and returns the client and the CONNACK return code
// (the client is nil when the connection was refused).
func connectPaho(t testing.TB, cc clientConfig) (*pahoClient, byte) {
	t.Helper()
	pc := &pahoClient{msgs: make(chan paho.Message, 64), lost: make(chan error, 1)}
	opts := paho.NewClientOptions().AddBroker(cc.broker).SetTLSConfig(cc.tls).
		SetClientID(cc.clientID).SetUsername(cc.username).SetPassword(cc.password).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(waitLimit).SetKeepAlive(time.Minute).SetWriteTimeout(waitLimit).
		SetConnectionLostHandler(func(_ paho.Client, err error) { pc.lost <- err })
	pc.Client = paho.NewClient(opts)
	tok := pc.Connect()
	if !tok.WaitTimeout(waitLimit) {
		t.Fatalf("CONNECT %q: no CONNACK within %v", cc.username, waitLimit)
	}
	ct := tok.(*paho.ConnectToken)
	if tok.Error() != nil {
		if ct.ReturnCode() == 0 {
			t.Fatalf("CONNECT %q: %v", cc.username, tok.Error())
		}
		return nil, ct.ReturnCode()
	}
	t.Cleanup(func() { pc.Disconnect(50) })
	return pc, ct.ReturnCode()
}

// subscribe subscribes to filters (filter → requested QoS) and returns the
// SUBACK return codes.
func (pc *pahoClient) subscribe(t testing.TB, filters map[string]byte) map[string]byte {
	t.Helper()
	tok := pc.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) { pc.msgs <- m })
	if !tok.WaitTimeout(waitLimit) {
		t.Fatalf("SUBSCRIBE: no SUBACK within %v", waitLimit)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	return tok.(*paho.SubscribeToken).Result()
}

func (pc *pahoClient) publish(t testing.TB, topic string, qos byte, payload []byte) {
	t.Helper()
	tok := pc.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(waitLimit) {
		t.Fatalf("PUBLISH %s: not acknowledged within %v", topic, waitLimit)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("PUBLISH %s: %v", topic, err)
	}
}

// next returns the next message the client received.
func (pc *pahoClient) next(t testing.TB) paho.Message {
	t.Helper()
	select {
	case m := <-pc.msgs:
		return m
	case <-time.After(waitLimit):
		t.Fatalf("no message within %v", waitLimit)
		return nil
	}
}

// rawClient speaks MQTT byte by byte, for what paho cannot do (MQTT 5,
// withheld PUBACKs, malformed packets).
type rawClient struct {
	t   testing.TB
	c   net.Conn
	r   *bufio.Reader
	ver byte
}

func newRawClient(t testing.TB, c net.Conn, ver byte) *rawClient {
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, r: bufio.NewReader(c), ver: ver}
}

// encodePacket renders a packet as an MQTT client would send it.
func encodePacket(t testing.TB, pk packets.Packet) []byte {
	t.Helper()
	buf := new(bytes.Buffer)
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(buf)
	case packets.Publish:
		err = pk.PublishEncode(buf)
	case packets.Puback:
		err = pk.PubackEncode(buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(buf)
	default:
		err = fmt.Errorf("packet type %d not supported by the test encoder", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func connectPacket(ver byte, clientID, username, password string) packets.Packet {
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: ver,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            true,
			Keepalive:        60,
			ClientIdentifier: clientID,
			UsernameFlag:     true,
			Username:         []byte(username),
		},
	}
	if password != "" {
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(password)
	}
	return pk
}

func subscribePacket(id uint16, filter string, qos byte) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id,
		Filters: packets.Subscriptions{{Filter: filter, Qos: qos}}}
}

func publishPacket(id uint16, topic string, qos byte, payload string) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, PacketID: id,
		TopicName: topic, Payload: []byte(payload)}
}

func (rc *rawClient) send(pk packets.Packet) {
	rc.t.Helper()
	pk.ProtocolVersion = rc.ver
	_ = rc.c.SetWriteDeadline(time.Now().Add(waitLimit))
	if _, err := rc.c.Write(encodePacket(rc.t, pk)); err != nil {
		rc.t.Fatalf("write packet type %d: %v", pk.FixedHeader.Type, err)
	}
}

// recv reads the next packet; io.EOF (or another error) once the server
// closed the connection.
func (rc *rawClient) recv() (packets.Packet, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(waitLimit))
	var pk packets.Packet
	b, err := rc.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(rc.r)
	if err != nil {
		return pk, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rc.r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion, pk.FixedHeader.Remaining = rc.ver, n
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Pingresp:
	default:
		err = fmt.Errorf("unexpected packet type %d", pk.FixedHeader.Type)
	}
	return pk, err
}

// expect reads the next packet and fails unless it has the given type.
func (rc *rawClient) expect(typ byte) packets.Packet {
	rc.t.Helper()
	pk, err := rc.recv()
	if err != nil {
		rc.t.Fatalf("read packet (want type %d): %v", typ, err)
	}
	if pk.FixedHeader.Type != typ {
		rc.t.Fatalf("got packet type %d, want %d", pk.FixedHeader.Type, typ)
	}
	return pk
}

// expectClosed reads until the server closes the connection; only the
// listed packet types may arrive before that.
func (rc *rawClient) expectClosed(allowed ...byte) {
	rc.t.Helper()
	for range 16 {
		pk, err := rc.recv()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				rc.t.Fatalf("connection still open after %v", waitLimit)
			}
			return
		}
		ok := false
		for _, a := range allowed {
			ok = ok || pk.FixedHeader.Type == a
		}
		if !ok {
			rc.t.Fatalf("got packet type %d before the connection closed", pk.FixedHeader.Type)
		}
	}
	rc.t.Fatal("connection still open after 16 packets")
}

// ping is a barrier: when PINGRESP arrives, the server has processed every
// packet sent before the PINGREQ. Packets that arrive first are returned.
func (rc *rawClient) ping() []packets.Packet {
	rc.t.Helper()
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	var got []packets.Packet
	for range 16 {
		pk, err := rc.recv()
		if err != nil {
			rc.t.Fatalf("waiting for PINGRESP: %v", err)
		}
		if pk.FixedHeader.Type == packets.Pingresp {
			return got
		}
		got = append(got, pk)
	}
	rc.t.Fatal("no PINGRESP after 16 packets")
	return nil
}

// servePipe serves one end of a net.Pipe with ServeConn and returns a raw
// client on the other end and ServeConn's result.
func servePipe(t testing.TB, s *Server, ver byte, certs []*x509.Certificate, remote string) (*rawClient, <-chan error) {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(server, certs, remote) }()
	return newRawClient(t, client, ver), done
}

func waitDone(t testing.TB, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitLimit):
		t.Fatalf("not done within %v", waitLimit)
		return nil
	}
}
