package mqtt

import (
	"context"
	"sync"
	"sync/atomic"

	cmqtt "github.com/wind-c/comqtt/v2/mqtt"
	"github.com/wind-c/comqtt/v2/mqtt/packets"
)

const (
	// maxPendingPublishes bounds the publishes of one connection that
	// wait for their PipelinedSession (telemetry waiting for its commit);
	// at the bound the connection's read loop waits for the oldest one.
	maxPendingPublishes = 256
	// maxPendingBytes bounds the payload bytes of those publishes; one
	// publish is always admitted, whatever its size.
	maxPendingBytes = 1 << 20
	// pubackSize is the size of a successful PUBACK without properties
	// (MQTT 3.1.1, and MQTT 5 with the reason code left out).
	pubackSize = 4
)

// pendingPub is a publish of a connection handed to its PipelinedSession.
type pendingPub struct {
	id    uint16
	qos   byte
	size  int
	topic string
	// Set under pubQueue.mu by complete.
	done bool
	err  error
}

// pubQueue holds a connection's pipelined publishes in arrival order
// until their PUBACKs are written. The zero value is ready to use.
type pubQueue struct {
	mu    sync.Mutex
	items []*pendingPub
	bytes int
	// flushing is set while one goroutine writes the PUBACKs that are due;
	// others only mark their publish done and leave the writing to it.
	flushing bool
	// failed is set once a publish failed: no PUBACK goes out any more and
	// no publish is admitted.
	failed bool
	// room has space for one signal that items left the queue; only the
	// read loop waits on it. Made on first use.
	room chan struct{}
}

// publishPipelined hands a hub client's PUBLISH to its PipelinedSession
// and sends its PUBACK (QoS 1) when done reports success and every
// earlier publish of the connection has been acknowledged. It waits while
// the connection has too much pending (back-pressure), and drops the
// publish without an acknowledgement when the connection has failed or
// the server is closing.
func (s *Server) publishPipelined(cl *cmqtt.Client, c *conn, ps PipelinedSession, pk packets.Packet) {
	p := &pendingPub{id: pk.PacketID, qos: pk.FixedHeader.Qos, size: len(pk.Payload), topic: pk.TopicName}
	if !c.pubs.admit(s.ctx, p) {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
	msg := Message{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain}
	ps.PublishAsync(ctx, msg, func(err error, more bool) {
		cancel()
		s.completePublish(cl, c, p, err, more)
	})
}

// admit queues p, waiting while the queue is full. It reports false, and
// queues nothing, when the queue has failed or ctx ended.
func (q *pubQueue) admit(ctx context.Context, p *pendingPub) bool {
	for {
		q.mu.Lock()
		if q.failed {
			q.mu.Unlock()
			return false
		}
		if len(q.items) == 0 || (len(q.items) < maxPendingPublishes && q.bytes+p.size <= maxPendingBytes) {
			q.items = append(q.items, p)
			q.bytes += p.size
			q.mu.Unlock()
			return true
		}
		if q.room == nil {
			q.room = make(chan struct{}, 1)
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return false
		}
	}
}

// completePublish records the outcome of p and, unless more outcomes
// follow at once (more), writes the PUBACKs that are due: those of the
// completed publishes at the head of the queue, in order, in one write.
// The first failed publish ends the connection instead; nothing after it
// is acknowledged.
func (s *Server) completePublish(cl *cmqtt.Client, c *conn, p *pendingPub, err error, more bool) {
	q := &c.pubs
	q.mu.Lock()
	p.done, p.err = true, err
	if q.flushing || more {
		q.mu.Unlock()
		return
	}
	q.flushing = true
	var acks []byte
	for {
		acks = acks[:0]
		var failure *pendingPub
		n := 0
		for ; n < len(q.items) && q.items[n].done; n++ {
			it := q.items[n]
			q.bytes -= it.size
			if it.err != nil && !q.failed {
				q.failed, failure = true, it
			}
			if !q.failed && it.qos > 0 {
				acks = append(acks, packets.Puback<<4, 2, byte(it.id>>8), byte(it.id))
			}
		}
		if n == 0 {
			q.flushing = false
			q.mu.Unlock()
			return
		}
		rest := copy(q.items, q.items[n:])
		clear(q.items[rest:])
		q.items = q.items[:rest]
		if q.room != nil {
			select {
			case q.room <- struct{}{}:
			default:
			}
		}
		q.mu.Unlock()

		if len(acks) > 0 {
			s.writePubacks(cl, acks)
		}
		if failure != nil {
			s.log.Info("hub realm refused a publish; disconnecting the client",
				"clientId", c.clientID, "topic", clip(failure.topic), "err", failure.err)
			s.disconnect(cl, packets.ErrImplementationSpecificError)
		}
		q.mu.Lock()
	}
}

// writePubacks writes encoded PUBACKs in one write, under the client's
// write lock (as cmqtt.Client.WritePacket does). A failed write is the
// end of the connection, which the read loop notices.
func (s *Server) writePubacks(cl *cmqtt.Client, b []byte) {
	if cl.Closed() {
		return
	}
	cl.Lock()
	n, err := cl.Net.Conn.Write(b)
	cl.Unlock()
	atomic.AddInt64(&s.broker.Info.BytesSent, int64(n))
	if err != nil {
		s.log.Debug("write PUBACKs", "clientId", cl.ID, "err", err)
		return
	}
	atomic.AddInt64(&s.broker.Info.PacketsSent, int64(len(b)/pubackSize))
}

// clip shortens a client-controlled string for logs.
func clip(s string) string {
	const maxShown = 160
	if len(s) <= maxShown {
		return s
	}
	return s[:maxShown] + "…"
}
