package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// maxPublishBatch bounds the bytes of PUBLISHes the writer of a publisher
// joins into one TLS write.
const maxPublishBatch = 32 << 10

// errNoAck means a PUBACK did not arrive in time.
var errNoAck = errors.New("no PUBACK in time")

// publisher keeps up to len(waits) QoS 1 PUBLISHes of one connection
// unacknowledged. Packet identifiers are the slots 1..len(waits): a slot
// is used again only after its PUBACK, so identifiers in flight are
// unique as MQTT requires. A writer goroutine joins the PUBLISHes queued
// meanwhile into one write; a reader goroutine hands each PUBACK to its
// waiting slot.
type publisher struct {
	c       *mqttConn
	topic   string
	payload []byte
	timeout time.Duration

	queue chan uint16  // identifiers to send, to the writer
	waits []chan error // by identifier-1: the PUBACK (nil) arrived

	failOnce sync.Once
	err      error         // why the publisher stopped; set before done closes
	done     chan struct{} // closed when it stops
	closing  atomic.Bool   // close has sent DISCONNECT: the end of the connection is expected
	writer   sync.WaitGroup
	reader   chan struct{} // closed when the reader returns
}

// newPublisher starts the writer and reader of c.
func newPublisher(c *mqttConn, topic string, payload []byte, inFlight int, timeout time.Duration) *publisher {
	p := &publisher{
		c: c, topic: topic, payload: payload, timeout: timeout,
		queue: make(chan uint16, inFlight), waits: make([]chan error, inFlight), done: make(chan struct{}), reader: make(chan struct{}),
	}
	for i := range p.waits {
		p.waits[i] = make(chan error, 1)
	}
	p.writer.Go(p.writeLoop)
	go p.readLoop()
	return p
}

// fail stops the publisher for err (the first cause wins).
func (p *publisher) fail(err error) {
	p.failOnce.Do(func() {
		p.err = err
		close(p.done)
	})
}

// failure returns why the publisher stopped.
func (p *publisher) failure() error {
	<-p.done
	return p.err
}

func (p *publisher) writeLoop() {
	buf := make([]byte, 0, maxPublishBatch+len(p.topic)+len(p.payload)+16)
	for {
		var id uint16
		select {
		case id = <-p.queue:
		case <-p.done:
			return
		}
		buf = appendPublishQoS1(buf[:0], p.topic, id, p.payload)
	batch:
		for len(buf) < maxPublishBatch {
			select {
			case id = <-p.queue:
				buf = appendPublishQoS1(buf, p.topic, id, p.payload)
			default:
				break batch
			}
		}
		if err := p.c.write(buf, time.Now().Add(p.timeout)); err != nil {
			p.fail(fmt.Errorf("send PUBLISH: %w", err))
			return
		}
	}
}

func (p *publisher) readLoop() {
	defer close(p.reader)
	buf := make([]byte, 64)
	for {
		pk, err := readMQTTPacket(p.c.r, buf)
		if err != nil {
			if !p.closing.Load() {
				p.fail(fmt.Errorf("%w: read: %w", errMQTTClosed, err))
			}
			return
		}
		if pk.typ != mqttPuback {
			continue // PINGRESP and the like; no subscription, so no PUBLISH
		}
		id, err := parsePuback(pk)
		if err == nil && (id == 0 || int(id) > len(p.waits)) {
			err = fmt.Errorf("%w: PUBACK for packet identifier %d, which was never sent", errMQTTProtocol, id)
		}
		if err == nil {
			select {
			case p.waits[id-1] <- nil:
			default:
				err = fmt.Errorf("%w: a second PUBACK for packet identifier %d", errMQTTProtocol, id)
			}
		}
		if err != nil {
			p.fail(err)
			return
		}
	}
}

// publish sends one message with identifier id (1..len(waits), not in
// flight) and waits for its PUBACK.
func (p *publisher) publish(ctx context.Context, id uint16) error {
	select {
	case p.queue <- id: // never blocks: at most len(waits) identifiers are out
	case <-p.done:
		return p.err
	}
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	select {
	case err := <-p.waits[id-1]:
		return err
	case <-p.done:
		return p.err
	case <-t.C:
		err := fmt.Errorf("packet identifier %d: %w within %v", id, errNoAck, p.timeout)
		p.fail(err)
		return err
	case <-ctx.Done():
		// The PUBACK may still come and would answer the slot's next
		// user: the publisher is done.
		p.fail(fmt.Errorf("packet identifier %d: %w", id, ctx.Err()))
		return ctx.Err()
	}
}

// close sends DISCONNECT, waits (bounded by the publisher's timeout) for
// the broker to close the connection, which ends the reader, then resets
// the connection and stops the writer.
func (p *publisher) close() error {
	p.closing.Store(true)
	err := p.c.write([]byte{mqttDisconnect << 4, 0}, time.Now().Add(p.timeout))
	if err != nil {
		err = fmt.Errorf("send DISCONNECT: %w", err)
	} else {
		t := time.NewTimer(p.timeout)
		select {
		case <-p.reader:
		case <-t.C:
			err = fmt.Errorf("the broker did not close the connection within %v of DISCONNECT", p.timeout)
		}
		t.Stop()
	}
	p.c.abort()
	<-p.reader
	p.fail(errMQTTClosed)
	p.writer.Wait()
	return err
}

// publishSlot is one packet identifier of one publisher.
type publishSlot struct {
	pub *publisher
	id  uint16
}

// publishPool hands out the publishers' slots: every operation of the
// load takes one, publishes on it and returns it, so each connection
// keeps its window full.
type publishPool struct {
	pubs  []*publisher
	slots chan publishSlot
}

func newPublishPool(pubs []*publisher) *publishPool {
	n := 0
	for _, p := range pubs {
		n += len(p.waits)
	}
	pool := &publishPool{pubs: pubs, slots: make(chan publishSlot, n)}
	for _, p := range pubs {
		for i := range p.waits {
			pool.slots <- publishSlot{pub: p, id: uint16(i + 1)}
		}
	}
	return pool
}

// size is the number of slots, the concurrency that keeps every window
// full.
func (pool *publishPool) size() int { return cap(pool.slots) }

// publish is the load's operation.
func (pool *publishPool) publish(ctx context.Context, _ int) error {
	var s publishSlot
	select {
	case s = <-pool.slots:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { pool.slots <- s }()
	return s.pub.publish(ctx, s.id)
}
