package mqtt

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	cmqtt "github.com/wind-c/comqtt/v2/mqtt"
	"github.com/wind-c/comqtt/v2/mqtt/packets"
)

// deliver writes one PUBLISH to one client, never through the broker's
// topic tree, at the lowest of qos, the QoS granted to the client's best
// matching subscription, and 1. A QoS 1 message takes a free packet
// identifier and stays in the client's inflight table until its PUBACK
// (which the broker processes), or until the session ends or expires.
func (s *Server) deliver(cl *cmqtt.Client, topic string, payload []byte, qos byte) error {
	_, err := s.deliverAcked(cl, topic, payload, qos, nil)
	return err
}

// deliverAcked delivers like deliver and, when the message goes at QoS 1
// and acked is not nil, has the connection call acked when the client's
// PUBACK for it arrives (see conn.acks); tracked reports whether it will.
func (s *Server) deliverAcked(cl *cmqtt.Client, topic string, payload []byte, qos byte, acked func()) (tracked bool, err error) {
	if cl.Closed() {
		return false, ErrClientGone
	}
	c := connOf(cl)
	if c == nil {
		return false, errors.New("deliver: the client has no connection of this server")
	}
	granted, ok := grantedQoS(cl, topic)
	if !ok {
		return false, ErrNotSubscribed
	}
	qos = min(qos, granted, 1)
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		Payload:     payload,
		Created:     time.Now().Unix(),
	}
	if qos > 0 {
		// MQTT 5 flow control: never exceed the client's Receive Maximum.
		if rm := cl.Properties.Props.ReceiveMaximum; cl.Properties.ProtocolVersion == 5 && rm > 0 && cl.State.Inflight.Len() >= int(rm) {
			return false, ErrClientBusy
		}
		id, err := cl.NextPacketID()
		if err != nil {
			return false, fmt.Errorf("allocate packet identifier: %w", err)
		}
		pk.PacketID = uint16(id)
		// Before the write: the PUBACK may arrive before WritePacket
		// returns. A nil acked also clears what an earlier message with
		// this packet identifier left.
		c.setAck(pk.PacketID, acked)
		if cl.State.Inflight.Set(pk) {
			atomic.AddInt64(&s.broker.Info.Inflight, 1)
		}
		cl.State.Inflight.DecreaseSendQuota() // the broker's PUBACK processing gives it back
	}
	if err := cl.WritePacket(pk); err != nil {
		if qos > 0 {
			c.setAck(pk.PacketID, nil)
			if cl.State.Inflight.Delete(pk.PacketID) {
				atomic.AddInt64(&s.broker.Info.Inflight, -1)
				cl.State.Inflight.IncreaseSendQuota()
			}
		}
		if cl.Closed() {
			return false, ErrClientGone
		}
		return false, fmt.Errorf("write PUBLISH to %s: %w", topic, err)
	}
	return qos > 0 && acked != nil, nil
}

// setAck sets (or, with a nil f, clears) the acknowledgement callback of
// an outgoing QoS 1 packet identifier.
func (c *conn) setAck(id uint16, f func()) {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	if f == nil {
		delete(c.acks, id)
		return
	}
	if c.acks == nil {
		c.acks = map[uint16]func(){}
	}
	c.acks[id] = f
}

// takeAck returns and clears the callback of a packet identifier.
func (c *conn) takeAck(id uint16) func() {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	f := c.acks[id]
	delete(c.acks, id)
	return f
}

// grantedQoS returns the highest QoS among the client's subscriptions that
// match topic, and whether any does.
func grantedQoS(cl *cmqtt.Client, topic string) (byte, bool) {
	var (
		best  byte
		found bool
	)
	for _, sub := range cl.State.Subscriptions.GetAll() {
		if matchTopic(sub.Filter, topic) {
			found, best = true, max(best, sub.Qos)
		}
	}
	return best, found
}

// matchTopic reports whether the topic name matches the topic filter under
// MQTT rules: '+' matches one level, a final '#' matches the parent level
// and any number of levels below it, and a topic starting with '$' is not
// matched by a filter starting with a wildcard. Shared-subscription
// filters ($share/…) match nothing.
func matchTopic(filter, topic string) bool {
	if filter == "" || topic == "" || strings.HasPrefix(filter, "$share/") {
		return false
	}
	if topic[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return !fmore
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !fmore:
			return false
		case !tmore:
			return frest == "#"
		}
		filter, topic = frest, trest
	}
}

// asciiJSON escapes every non-ASCII character of encoding/json output as
// \uXXXX (a surrogate pair beyond the BMP). Outside strings JSON holds only
// ASCII, so the result is equivalent JSON.
func asciiJSON(b []byte) []byte {
	ascii := true
	for _, c := range b {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return b
	}
	const hexDigits = "0123456789abcdef"
	out := make([]byte, 0, len(b)+len(b)/2)
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			out = append(out, b[i])
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		i += size
		units := []rune{r}
		if r > 0xFFFF {
			r1, r2 := utf16.EncodeRune(r)
			units = []rune{r1, r2}
		}
		for _, u := range units {
			out = append(out, '\\', 'u', hexDigits[u>>12&0xF], hexDigits[u>>8&0xF], hexDigits[u>>4&0xF], hexDigits[u&0xF])
		}
	}
	return out
}
