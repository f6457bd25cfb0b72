package bench

import (
	"context"
	"errors"
	"testing"
	"time"
)

// dialFake connects to a fake broker as client id.
func dialFake(t *testing.T, b *fakeBroker, id string) *mqttConn {
	t.Helper()
	c, err := dialMQTT(ctxTimeout(t, 30*time.Second), b.ep, mqttCredential{ClientID: id, Username: "u", Password: "p"}, 60)
	if err != nil {
		t.Fatalf("dial the fake broker: %v", err)
	}
	return c
}

// TestPublishPoolAllAcknowledged runs a closed-loop load over two
// pipelined publishers: every message is acknowledged, the broker saw
// each one, and no more than the window was ever in flight.
func TestPublishPoolAllAcknowledged(t *testing.T) {
	b := startFakeBroker(t, 0, ackSame, true)
	pubs := []*publisher{
		newPublisher(dialFake(t, b, "p0"), "devices/p0/messages/events/", telemetryPayload(256), 10, 30*time.Second),
		newPublisher(dialFake(t, b, "p1"), "devices/p1/messages/events/", telemetryPayload(256), 10, 30*time.Second),
	}
	pool := newPublishPool(pubs)
	if pool.size() != 20 {
		t.Fatalf("pool size %d, want 20", pool.size())
	}
	res, err := Load{Concurrency: pool.size(), Ops: 2000, Duration: time.Hour, Classify: hubErrorKind}.Run(ctxTimeout(t, 2*time.Minute), pool.publish)
	if err != nil {
		t.Fatal(err)
	}
	if res.Succeeded != 2000 || res.Failed != 0 {
		t.Fatalf("succeeded %d failed %d (%v), want 2000 and 0", res.Succeeded, res.Failed, res.ErrorSamples)
	}
	for _, p := range pubs {
		if err := p.close(); err != nil {
			t.Errorf("close publisher: %v", err)
		}
	}
	if got := b.published.Load(); got != 2000 {
		t.Errorf("the broker saw %d PUBLISHes, want 2000", got)
	}
}

// TestPublisherFailures checks that a broker that does not acknowledge,
// or acknowledges an identifier never sent, stops the publisher with an
// error of the right kind.
func TestPublisherFailures(t *testing.T) {
	tests := []struct {
		name     string
		pubackID func(uint16) (uint16, bool)
		wantKind string
	}{
		{"no PUBACK", func(uint16) (uint16, bool) { return 0, false }, KindNoAck},
		{"PUBACK for an identifier never sent", func(id uint16) (uint16, bool) { return id + 500, true }, KindMQTTProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startFakeBroker(t, 0, tc.pubackID, true)
			p := newPublisher(dialFake(t, b, "p"), "t", []byte("x"), 4, 300*time.Millisecond)
			defer p.close()
			err := p.publish(ctxTimeout(t, time.Minute), 1)
			if got := hubErrorKind(err); got != tc.wantKind {
				t.Fatalf("publish: %v (kind %q), want kind %q", err, got, tc.wantKind)
			}
			select {
			case <-p.done:
			default:
				t.Fatal("the publisher did not stop after the failure")
			}
			if err := p.publish(ctxTimeout(t, time.Minute), 2); err == nil {
				t.Fatal("a stopped publisher accepted another message")
			}
		})
	}
}

// TestDialRefused checks that a refusing CONNACK is an error with its
// code.
func TestDialRefused(t *testing.T) {
	b := startFakeBroker(t, 5, ackSame, true)
	_, err := dialMQTT(ctxTimeout(t, 30*time.Second), b.ep, mqttCredential{ClientID: "d"}, 60)
	var ce *ConnackError
	if !errors.As(err, &ce) || ce.Code != 5 {
		t.Fatalf("dial: %v, want CONNACK code 5", err)
	}
}

// TestDisconnect checks that disconnect returns once the broker closes.
func TestDisconnect(t *testing.T) {
	b := startFakeBroker(t, 0, ackSame, true)
	c := dialFake(t, b, "d")
	if err := c.disconnect(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
}

// TestIdleSetCheck holds idle connections and checks them with PINGREQ:
// all answer when the broker answers, none when it stays silent.
func TestIdleSetCheck(t *testing.T) {
	for _, pong := range []bool{true, false} {
		b := startFakeBroker(t, 0, ackSame, pong)
		set := newIdleSet(time.Minute, 30*time.Second, 5)
		for i := range 5 {
			set.add(dialFake(t, b, "idle"+string(rune('a'+i))))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		alive, failed, samples := set.check(ctx)
		cancel()
		set.close()
		switch {
		case pong && (alive != 5 || len(failed) != 0):
			t.Errorf("answering broker: alive %d, failed %v (%v); want 5 and none", alive, failed, samples)
		case !pong && (alive != 0 || failed[KindNoPong] != 5):
			t.Errorf("silent broker: alive %d, failed %v; want 0 and 5 %s", alive, failed, KindNoPong)
		}
	}
}
