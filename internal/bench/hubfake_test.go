package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBroker is a minimal MQTT 3.1.1 broker over TLS on loopback whose
// misbehaviour a test chooses; it exercises the bench's client without a
// real broker.
type fakeBroker struct {
	ln       net.Listener
	ep       mqttEndpoint
	connack  byte // CONNACK return code
	pubackID func(id uint16) (uint16, bool)
	pong     bool

	published atomic.Int64
	connects  atomic.Int64 // CONNECTs received
	wg        sync.WaitGroup
}

// startFakeBroker serves until the test ends. pubackID maps a PUBLISH's
// identifier to the PUBACK sent (false: none).
func startFakeBroker(t *testing.T, connack byte, pubackID func(uint16) (uint16, bool), pong bool) *fakeBroker {
	t.Helper()
	id, err := newCeilingIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{id.cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{ln: ln, connack: connack, pubackID: pubackID, pong: pong,
		ep: mqttEndpoint{Addr: ln.Addr().String(), TLS: &tls.Config{RootCAs: id.roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Go(func() { b.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.wg.Wait()
	})
	return b
}

func (b *fakeBroker) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	p, err := readMQTTPacket(r, nil)
	if err != nil || p.typ != mqttConnect {
		return
	}
	b.connects.Add(1)
	if _, err := c.Write([]byte{mqttConnack << 4, 2, 0, b.connack}); err != nil || b.connack != 0 {
		return
	}
	for {
		p, err := readMQTTPacket(r, nil)
		if err != nil {
			return
		}
		switch p.typ {
		case mqttPublish:
			b.published.Add(1)
			tlen := int(binary.BigEndian.Uint16(p.body))
			id := binary.BigEndian.Uint16(p.body[2+tlen:])
			if ack, ok := b.pubackID(id); ok {
				if _, err := c.Write(binary.BigEndian.AppendUint16([]byte{mqttPuback << 4, 2}, ack)); err != nil {
					return
				}
			}
		case mqttPingreq:
			if b.pong {
				if _, err := c.Write([]byte{mqttPingresp << 4, 0}); err != nil {
					return
				}
			}
		case mqttDisconnect:
			return
		}
	}
}

func ackSame(id uint16) (uint16, bool) { return id, true }

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
