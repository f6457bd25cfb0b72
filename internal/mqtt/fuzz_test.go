package mqtt

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/wind-c/comqtt/v2/mqtt/packets"
)

// serveConnSeeds are byte streams a client could send, valid and not.
func serveConnSeeds(tb testing.TB) [][]byte {
	cat := func(pks ...[]byte) []byte { return bytes.Join(pks, nil) }
	enc := func(ver byte, pk packets.Packet) []byte {
		pk.ProtocolVersion = ver
		return encodePacket(tb, pk)
	}
	dps3 := enc(4, connectPacket(4, "dev1", dpsUsername(scope, "dev1"), "SharedAccessSignature sr=x&sig=y&se=1"))
	dps5 := enc(5, connectPacket(5, "dev1", dpsUsername(scope, "dev1"), ""))
	will := connectPacket(4, "dev1", dpsUsername(scope, "dev1"), "")
	will.Connect.WillFlag, will.Connect.WillTopic, will.Connect.WillPayload, will.Connect.WillQos = true, "$dps/registrations/res/200/?$rid=1", []byte("{}"), 1
	ping := enc(4, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	disconnect := enc(4, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	return [][]byte{
		// A full DPS exchange.
		cat(dps3,
			enc(4, subscribePacket(1, dpsResponseFilter, 1)),
			enc(4, publishPacket(2, "$dps/registrations/PUT/iotdps-register/?$rid=1", 1, `{"registrationId":"dev1","payload":{"a":1}}`)),
			enc(4, publishPacket(0, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=op-dev1", 0, " ")),
			enc(4, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 1}),
			ping, disconnect),
		// The malformed MQTT 5 SUBSCRIBE (empty filter, no option byte) that
		// crashes mochi-mqtt v2.7.9.
		cat(dps5, []byte{0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00}),
		// Refused and odd traffic.
		cat(dps3, enc(4, publishPacket(3, "devices/dev1/messages/events/", 1, "x"))),
		cat(dps3, enc(4, publishPacket(3, "$dps/registrations/PUT/iotdps-register/?$rid=1", 2, "x"))),
		cat(dps3, enc(4, subscribePacket(1, "#", 1)), enc(4, subscribePacket(2, "$share/g/#", 0))),
		cat(dps3, dps3),
		enc(4, will),
		enc(4, connectPacket(4, "dev1", "hub.example/dev1/?api-version=1", "sas")),
		enc(4, connectPacket(4, "", dpsUsername(scope, "dev1"), "")),
		{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f},
		{0x30, 0x00},
		{},
	}
}

// FuzzServeConn feeds arbitrary bytes as one client connection into a
// Server and checks that neither the broker nor the hooks panic (a
// recovered panic counts as a failure) and that the connection ends.
func FuzzServeConn(f *testing.F) {
	for _, seed := range serveConnSeeds(f) {
		f.Add(seed)
	}
	srv, err := New(Options{Logger: slog.New(slog.DiscardHandler), DPS: &fakeDPS{}, Now: func() time.Time { return fixedNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- srv.ServeConn(server, nil, "fuzz") }()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, client)
		}()
		_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = client.Write(data)
		client.Close()
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Fatalf("ServeConn still running %v after the client closed", waitLimit)
		}
		<-drained
		if n := srv.panics.Load(); n != 0 {
			t.Fatalf("the server recovered %d panics", n)
		}
	})
}
