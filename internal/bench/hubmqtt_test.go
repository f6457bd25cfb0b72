package bench

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEncodeConnect checks a CONNECT byte for byte against MQTT 3.1.1
// §3.1: protocol name, level 4, flags (user name, password, clean
// session), keep-alive, then the client ID, user name and password.
func TestEncodeConnect(t *testing.T) {
	got, err := encodeConnect(mqttCredential{ClientID: "d1", Username: "h/d1/?api-version=1", Password: "pw"}, 240)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x10, 39, // 10 + (2+2) + (2+19) + (2+2)
		0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 240,
		0, 2, 'd', '1',
		0, 19}
	want = append(want, "h/d1/?api-version=1"...)
	want = append(want, 0, 2, 'p', 'w')
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CONNECT (-want +got):\n%s", diff)
	}

	anon, err := encodeConnect(mqttCredential{ClientID: "x"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, 1, 'x'}, anon); diff != "" {
		t.Errorf("CONNECT without credentials (-want +got):\n%s", diff)
	}

	if _, err := encodeConnect(mqttCredential{ClientID: "x", Password: strings.Repeat("p", maxMQTTString+1)}, 0); err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("an over-long password: error %v, want one naming the password", err)
	}
}

// TestRemainingLength round-trips the variable-length integer at the
// boundaries of its 1- to 4-byte forms (MQTT 3.1.1 §2.2.3).
func TestRemainingLength(t *testing.T) {
	tests := []struct {
		n    int
		wire []byte
	}{
		{0, []byte{0x00}},
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{16383, []byte{0xff, 0x7f}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{2097151, []byte{0xff, 0xff, 0x7f}},
		{2097152, []byte{0x80, 0x80, 0x80, 0x01}},
		{268435455, []byte{0xff, 0xff, 0xff, 0x7f}},
	}
	for _, tc := range tests {
		got := appendRemainingLength(nil, tc.n)
		if !bytes.Equal(got, tc.wire) {
			t.Errorf("encode %d = % x, want % x", tc.n, got, tc.wire)
		}
		n, err := readRemainingLength(bytes.NewReader(tc.wire))
		if err != nil || n != tc.n {
			t.Errorf("decode % x = %d, %v; want %d", tc.wire, n, err, tc.n)
		}
	}
	if _, err := readRemainingLength(bytes.NewReader([]byte{0x80, 0x80, 0x80, 0x80, 0x01})); !errors.Is(err, errMQTTProtocol) {
		t.Errorf("five length bytes: error %v, want errMQTTProtocol", err)
	}
	if _, err := readRemainingLength(bytes.NewReader([]byte{0x80})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated length: error %v, want io.ErrUnexpectedEOF", err)
	}
}

// TestPublishRoundTrip encodes QoS 1 PUBLISHes and reads them back as
// packets.
func TestPublishRoundTrip(t *testing.T) {
	payload := telemetryPayload(300) // a two-byte remaining length
	var wire []byte
	wire = appendPublishQoS1(wire, "devices/d1/messages/events/", 7, payload)
	wire = appendPublishQoS1(wire, "t", 65535, nil)
	r := bufio.NewReader(bytes.NewReader(wire))

	p, err := readMQTTPacket(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantBody := append(append([]byte{0, 27}, "devices/d1/messages/events/"...), 0, 7)
	wantBody = append(wantBody, payload...)
	if p.typ != mqttPublish || p.flags != 0x02 || !bytes.Equal(p.body, wantBody) {
		t.Errorf("first packet: type %d flags %#x body % x, want PUBLISH QoS 1 with the topic, id 7 and the payload", p.typ, p.flags, p.body)
	}
	p, err = readMQTTPacket(r, make([]byte, 4))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]byte{0, 1, 't', 0xff, 0xff}, p.body); diff != "" {
		t.Errorf("second packet body (-want +got):\n%s", diff)
	}
	if _, err := readMQTTPacket(r, nil); !errors.Is(err, io.EOF) {
		t.Errorf("after the last packet: %v, want io.EOF", err)
	}
}

// TestReadMQTTPacketErrors checks that malformed input is refused with
// the cause.
func TestReadMQTTPacketErrors(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
		want error
	}{
		{"truncated body", []byte{0x40, 0x02, 0x00}, io.ErrUnexpectedEOF},
		{"missing length", []byte{0x40}, io.ErrUnexpectedEOF},
		{"oversized", append([]byte{0x30}, appendRemainingLength(nil, maxMQTTBody+1)...), errMQTTProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readMQTTPacket(bufio.NewReader(bytes.NewReader(tc.wire)), nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}

// TestParseConnackAndPuback checks the answers the bench waits for.
func TestParseConnackAndPuback(t *testing.T) {
	tests := []struct {
		name string
		p    mqttPacket
		want string // "" for accepted
	}{
		{"accepted", mqttPacket{typ: mqttConnack, body: []byte{0, 0}}, ""},
		{"session present", mqttPacket{typ: mqttConnack, body: []byte{1, 0}}, ""},
		{"not authorized", mqttPacket{typ: mqttConnack, body: []byte{0, 5}}, "return code 5 (not authorized)"},
		{"bad credentials", mqttPacket{typ: mqttConnack, body: []byte{0, 4}}, "return code 4 (bad user name or password)"},
		{"unknown code", mqttPacket{typ: mqttConnack, body: []byte{0, 0x87}}, "unknown code"},
		{"another packet", mqttPacket{typ: mqttPuback, body: []byte{0, 1}}, "expected CONNACK, got packet type 4"},
		{"short body", mqttPacket{typ: mqttConnack, body: []byte{0}}, "CONNACK body is 1 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := parseConnack(tc.p)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v, want accepted", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	var ce *ConnackError
	if err := parseConnack(mqttPacket{typ: mqttConnack, body: []byte{0, 5}}); !errors.As(err, &ce) || ce.Code != 5 || hubErrorKind(err) != "connack_5" {
		t.Errorf("a refusal is %v (kind %q), want *ConnackError code 5, kind connack_5", err, hubErrorKind(err))
	}

	id, err := parsePuback(mqttPacket{typ: mqttPuback, body: []byte{0x12, 0x34}})
	if err != nil || id != 0x1234 {
		t.Errorf("PUBACK id = %#x, %v; want 0x1234", id, err)
	}
	if _, err := parsePuback(mqttPacket{typ: mqttPuback, body: []byte{1, 2, 3}}); !errors.Is(err, errMQTTProtocol) {
		t.Errorf("a 3-byte PUBACK: error %v, want errMQTTProtocol", err)
	}
}

// FuzzReadMQTTPacket feeds arbitrary broker bytes to the packet reader and
// the answer parsers: they must never panic, and every packet read must
// fit in the input and within maxMQTTBody.
func FuzzReadMQTTPacket(f *testing.F) {
	f.Add([]byte{0x20, 0x02, 0x00, 0x00})
	f.Add([]byte{0x20, 0x02, 0x00, 0x05})
	f.Add([]byte{0x40, 0x02, 0x00, 0x01, 0xd0, 0x00})
	f.Add(appendPublishQoS1(nil, "devices/d/messages/devicebound/", 9, []byte("hello")))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{0x40, 0x80, 0x00, 0x01, 0x02})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		total := 0
		for range 64 {
			p, err := readMQTTPacket(r, nil)
			if err != nil {
				return
			}
			total += 2 + len(p.body) // at least a type byte and a length byte
			if len(p.body) > maxMQTTBody || total > len(data) {
				t.Fatalf("read a packet of %d body bytes; %d bytes read so far from %d", len(p.body), total, len(data))
			}
			if p.typ > 15 || p.flags > 15 {
				t.Fatalf("type %d flags %d out of range", p.typ, p.flags)
			}
			_ = parseConnack(p)
			_, _ = parsePuback(p)
		}
	})
}
