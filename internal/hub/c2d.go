package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/muster-iot/muster/internal/telemetry"
)

// Cloud-to-device (C2D) limits (hub-edge-protocol §2.4).
const (
	// C2DQueueDepth is how many undelivered messages a device's queue holds.
	C2DQueueDepth = 50
	// MaxC2DBodyBytes caps a C2D message body.
	MaxC2DBodyBytes = 64 << 10
	// DefaultC2DTTL is how long a message without an absolute expiry time
	// waits for its device (IoT Hub's default).
	DefaultC2DTTL = time.Hour
)

// C2D errors.
var (
	// ErrQueueFull means the device already has C2DQueueDepth undelivered
	// messages (IoT Hub error 403004).
	ErrQueueFull = errors.New("hub: the device's cloud-to-device queue is full")
	// ErrInvalidC2D means a C2D message is malformed (its properties, its
	// size, or its expiry time).
	ErrInvalidC2D = errors.New("hub: invalid cloud-to-device message")
)

// C2DSystemProperties are the system properties a sender may set on a C2D
// message (the hub sets telemetry.PropTo itself).
func C2DSystemProperties() []string {
	return []string{telemetry.PropMessageID, telemetry.PropCorrelationID, telemetry.PropUserID,
		telemetry.PropExpiryTime, telemetry.PropContentType, telemetry.PropContentEncoding, telemetry.PropAck}
}

// CloudMessage is a cloud-to-device message as the service sends it.
type CloudMessage struct {
	// System holds system properties by their telemetry.Prop* names, among
	// C2DSystemProperties. A missing message-id gets a random one;
	// absolute-expiry-time is RFC 3339 (default: DefaultC2DTTL from now).
	System map[string]string
	// App holds the application properties.
	App map[string]string
	// Body is the payload, at most MaxC2DBodyBytes.
	Body []byte
}

// queuedMessage is a C2D message waiting for its device.
type queuedMessage struct {
	topic   string
	body    []byte
	id      string
	expires time.Time
}

// SendCloudMessage queues a C2D message for a device and returns its
// message ID. The message is delivered at QoS 1 on
// devices/{id}/messages/devicebound/{bag} to a connection of the device
// subscribed to devices/{id}/messages/devicebound/#, now or when one
// subscribes, and leaves the queue once the transport has taken it; it is
// dropped unread when it expires. The queue is in memory: it does not
// survive a restart and is not shared between instances. Errors:
// ErrInvalidC2D, ErrQueueFull, or one wrapping registry.ErrNotFound for an
// unknown device.
func (s *Service) SendCloudMessage(ctx context.Context, deviceID string, m CloudMessage) (string, error) {
	if len(m.Body) > MaxC2DBodyBytes {
		return "", fmt.Errorf("%w: body is %d bytes, more than %d", ErrInvalidC2D, len(m.Body), MaxC2DBodyBytes)
	}
	now := s.now()
	sys := make(map[string]string, len(m.System)+2)
	allowed := map[string]bool{}
	for _, p := range C2DSystemProperties() {
		allowed[p] = true
	}
	for k, v := range m.System {
		if !allowed[k] {
			return "", fmt.Errorf("%w: system property %.64q cannot be set on a cloud-to-device message", ErrInvalidC2D, k)
		}
		sys[k] = v
	}
	if sys[telemetry.PropMessageID] == "" {
		var b [16]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		sys[telemetry.PropMessageID] = hex.EncodeToString(b[:])
	}
	sys[telemetry.PropTo] = "/devices/" + deviceID + "/messages/deviceBound"
	expires := now.Add(DefaultC2DTTL)
	if v, ok := sys[telemetry.PropExpiryTime]; ok {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return "", fmt.Errorf("%w: %s %.40q is not an RFC 3339 time", ErrInvalidC2D, telemetry.PropExpiryTime, v)
		}
		if !t.After(now) {
			return "", fmt.Errorf("%w: %s %s is not in the future", ErrInvalidC2D, telemetry.PropExpiryTime, v)
		}
		expires = t
	}
	check := telemetry.Message{DeviceID: deviceID, EnqueuedTime: now, SystemProperties: sys, Properties: m.App}
	if err := check.Validate(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidC2D, err)
	}
	if _, err := s.reg.GetDevice(ctx, deviceID); err != nil {
		return "", fmt.Errorf("send cloud-to-device message to %s: %w", who(deviceID, ""), err)
	}
	q := queuedMessage{
		topic:   deviceboundPrefix(deviceID) + telemetry.EncodeBag(sys, m.App),
		body:    append([]byte(nil), m.Body...),
		id:      sys[telemetry.PropMessageID],
		expires: expires,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropExpiredLocked(deviceID, now)
	if len(s.c2d[deviceID]) >= C2DQueueDepth {
		return "", fmt.Errorf("send cloud-to-device message to %s: %w: %d messages wait", who(deviceID, ""), ErrQueueFull, C2DQueueDepth)
	}
	s.c2d[deviceID] = append(s.c2d[deviceID], q)
	for sess := range s.c2dReceivers[deviceID] {
		sess.wakeC2D()
	}
	return q.id, nil
}

// QueuedCloudMessages returns how many C2D messages wait for a device.
func (s *Service) QueuedCloudMessages(deviceID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropExpiredLocked(deviceID, s.now())
	return len(s.c2d[deviceID])
}

// deviceboundPrefix is the C2D topic of a device up to its property bag.
func deviceboundPrefix(deviceID string) string {
	return "devices/" + deviceID + "/messages/devicebound/"
}

// dropExpiredLocked drops a device's expired messages; s.mu is held.
func (s *Service) dropExpiredLocked(deviceID string, now time.Time) {
	q := s.c2d[deviceID]
	kept := q[:0]
	for _, m := range q {
		if now.Before(m.expires) {
			kept = append(kept, m)
			continue
		}
		s.log.Info("cloud-to-device message expired undelivered", "deviceId", deviceID, "messageId", m.id)
	}
	clear(q[len(kept):])
	if len(kept) == 0 {
		delete(s.c2d, deviceID)
		return
	}
	s.c2d[deviceID] = kept
}

// takeC2D removes and returns the oldest live message of a device.
func (s *Service) takeC2D(deviceID string) (queuedMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropExpiredLocked(deviceID, s.now())
	q := s.c2d[deviceID]
	if len(q) == 0 {
		return queuedMessage{}, false
	}
	m := q[0]
	q[0] = queuedMessage{}
	if len(q) == 1 {
		delete(s.c2d, deviceID)
	} else {
		s.c2d[deviceID] = q[1:]
	}
	return m, true
}

// requeueC2D puts back a message that could not be delivered, first.
func (s *Service) requeueC2D(deviceID string, m queuedMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c2d == nil { // a Service not made by New
		s.c2d = map[string][]queuedMessage{}
	}
	s.c2d[deviceID] = append([]queuedMessage{m}, s.c2d[deviceID]...)
}

func (s *Service) addC2DReceiver(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c2dReceivers == nil { // a Service not made by New
		s.c2dReceivers = map[string]map[*Session]struct{}{}
	}
	m := s.c2dReceivers[sess.id.DeviceID]
	if m == nil {
		m = map[*Session]struct{}{}
		s.c2dReceivers[sess.id.DeviceID] = m
	}
	m[sess] = struct{}{}
}

func (s *Service) removeC2DReceiver(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.c2dReceivers[sess.id.DeviceID]
	delete(m, sess)
	if len(m) == 0 {
		delete(s.c2dReceivers, sess.id.DeviceID)
	}
}

// startC2D starts C2D delivery to the session, once; it reports whether
// the subscription may proceed.
func (s *Session) startC2D() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.c2dDone == nil {
		s.c2dDone = make(chan struct{})
		s.svc.addC2DReceiver(s)
		go s.deliverC2D(s.c2dDone)
	}
	s.wakeC2D() // deliver what waits, also after a re-subscription
	return true
}

// wakeC2D signals that messages may wait; a pending signal covers this one.
func (s *Session) wakeC2D() {
	select {
	case s.c2dWake <- struct{}{}:
	default:
	}
}

// deliverC2D sends queued messages until the session closes. A message
// the client does not take (no subscription yet, connection gone) goes
// back to the front of the queue and waits for the next wake.
func (s *Session) deliverC2D(done chan struct{}) {
	defer close(done)
	for {
		select {
		case <-s.closing:
			return
		case <-s.c2dWake:
		}
		for {
			m, ok := s.svc.takeC2D(s.id.DeviceID)
			if !ok {
				break
			}
			if err := s.sendSoon(m.topic, m.body, 1); err != nil {
				s.svc.requeueC2D(s.id.DeviceID, m)
				s.log.Debug("cloud-to-device message not delivered; it stays queued", "messageId", m.id, "err", err)
				break
			}
			s.log.Debug("cloud-to-device message delivered", "messageId", m.id)
		}
	}
}
