package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// errNoPong means a connection did not answer PINGREQ in time.
var errNoPong = errors.New("no PINGRESP in time")

// idleConn is one idle connection and what its reader saw.
type idleConn struct {
	c      *mqttConn
	pongs  chan struct{} // a PINGRESP arrived (at most one kept)
	closed chan struct{} // closed when the reader stopped
	err    error         // why it stopped; set before closed closes
}

// readLoop reads until the connection ends, noting each PINGRESP.
func (ic *idleConn) readLoop() {
	defer close(ic.closed)
	buf := make([]byte, 16)
	for {
		pk, err := readMQTTPacket(ic.c.r, buf)
		if err != nil {
			ic.err = fmt.Errorf("%w: %w", errMQTTClosed, err)
			return
		}
		if pk.typ == mqttPingresp {
			select {
			case ic.pongs <- struct{}{}:
			default:
			}
		}
	}
}

// idleSet holds idle connections: each has a reader, and a pinger sends
// PINGREQ to all of them every half keep-alive so that no broker drops
// them while the set is being built or measured.
type idleSet struct {
	keepAlive time.Duration
	timeout   time.Duration // bounds each write

	mu    sync.Mutex
	conns []*idleConn

	readers sync.WaitGroup
	stop    chan struct{}
	pinger  sync.WaitGroup
}

func newIdleSet(keepAlive, timeout time.Duration, capacity int) *idleSet {
	s := &idleSet{keepAlive: keepAlive, timeout: timeout, conns: make([]*idleConn, 0, capacity), stop: make(chan struct{})}
	s.pinger.Go(s.pingLoop)
	return s
}

func (s *idleSet) add(c *mqttConn) {
	ic := &idleConn{c: c, pongs: make(chan struct{}, 1), closed: make(chan struct{})}
	s.mu.Lock()
	s.conns = append(s.conns, ic)
	s.mu.Unlock()
	s.readers.Go(ic.readLoop)
}

func (s *idleSet) snapshot() []*idleConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*idleConn(nil), s.conns...)
}

func (s *idleSet) pingLoop() {
	t := time.NewTicker(s.keepAlive / 2)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			for _, ic := range s.snapshot() {
				_ = ic.c.write([]byte{mqttPingreq << 4, 0}, time.Now().Add(s.timeout))
			}
		}
	}
}

// check sends PINGREQ on every connection and waits, until ctx ends, for
// each PINGRESP. It returns how many answered and the errors of the
// others by kind.
func (s *idleSet) check(ctx context.Context) (alive int, failed map[string]int, samples map[string]string) {
	conns := s.snapshot()
	failed, samples = map[string]int{}, map[string]string{}
	fail := func(err error) {
		k := hubErrorKind(err)
		failed[k]++
		if _, ok := samples[k]; !ok {
			samples[k] = err.Error()
		}
	}
	sent := make([]bool, len(conns))
	for i, ic := range conns {
		select { // a PINGRESP of the pinger's must not count
		case <-ic.pongs:
		default:
		}
		sent[i] = ic.c.write([]byte{mqttPingreq << 4, 0}, time.Now().Add(s.timeout)) == nil
	}
	for i, ic := range conns {
		if !sent[i] {
			fail(fmt.Errorf("send PINGREQ: %w", errMQTTClosed))
			continue
		}
		select { // an answer already there wins over an ended wait
		case <-ic.pongs:
			alive++
			continue
		default:
		}
		select {
		case <-ic.pongs:
			alive++
		case <-ic.closed:
			fail(ic.err)
		case <-ctx.Done():
			fail(fmt.Errorf("%w: %w", errNoPong, ctx.Err()))
		}
	}
	return alive, failed, samples
}

// close sends DISCONNECT on every connection, resets it, and waits for
// the readers and the pinger.
func (s *idleSet) close() {
	close(s.stop)
	s.pinger.Wait()
	for _, ic := range s.snapshot() {
		_ = ic.c.write([]byte{mqttDisconnect << 4, 0}, time.Now().Add(s.timeout))
		ic.c.abort()
	}
	s.readers.Wait()
}
