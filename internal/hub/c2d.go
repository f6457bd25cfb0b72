package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/telemetry"
)

// Cloud-to-device (C2D) limits (hub-edge-protocol §2.4).
const (
	// C2DQueueDepth is how many unacknowledged messages a device's queue
	// holds (IoT Hub's limit).
	C2DQueueDepth = 50
	// MaxC2DBodyBytes caps a C2D message body.
	MaxC2DBodyBytes = 64 << 10
	// DefaultC2DTTL is how long a message without an absolute expiry time
	// waits for its device (IoT Hub's default).
	DefaultC2DTTL = time.Hour
	// MaxC2DTTL caps how long any message waits (IoT Hub's maximum): a
	// later absolute expiry time is brought forward to it.
	MaxC2DTTL = 48 * time.Hour
	// C2DSweepInterval is how often Run drops expired messages and looks
	// for messages that wait for a connected device (queued through
	// another instance, or not sent after a failed read).
	C2DSweepInterval = time.Minute
)

const (
	// c2dStoreTimeout bounds one queue operation of a delivery loop.
	c2dStoreTimeout = 30 * time.Second
	// c2dLockStripes is how many locks serialise the enqueues of devices.
	c2dLockStripes = 64
)

// C2D errors.
var (
	// ErrQueueFull means the device already has C2DQueueDepth
	// unacknowledged messages (IoT Hub error 403004).
	ErrQueueFull = errors.New("hub: the device's cloud-to-device queue is full")
	// ErrInvalidC2D means a C2D message is malformed (its properties, its
	// size, or its expiry time).
	ErrInvalidC2D = errors.New("hub: invalid cloud-to-device message")
)

// CloudQueue is the durable store of the devices' C2D queues;
// *registry.Hub implements it (see its methods for the semantics).
type CloudQueue interface {
	EnqueueCloudMessage(ctx context.Context, m *registry.CloudMessage, depth int, now time.Time) error
	PendingCloudMessages(ctx context.Context, deviceID string, now time.Time) ([]*registry.CloudMessage, error)
	CompleteCloudMessage(ctx context.Context, deviceID, lockToken string) error
	CloudMessageCount(ctx context.Context, deviceID string) (int, error)
	AnyCloudMessages(ctx context.Context) (bool, error)
	PurgeCloudMessages(ctx context.Context, deviceID string) (int, error)
	SweepCloudMessages(ctx context.Context, now time.Time) (registry.CloudSweep, error)
}

// AckingClient is a Client that reports the client's acknowledgement of
// a message (the MQTT transport: its PUBACK). A C2D message stays queued
// until its device acknowledges it; one sent to a Client without this
// capability, or at QoS 0 because the client subscribed at QoS 0, is
// complete once sent (at most once, as the client asked).
type AckingClient interface {
	Client
	// SendAcked sends like Send and, when the message goes at QoS 1,
	// calls acked once the client acknowledges it; tracked reports whether
	// it will. acked must not block (the transport calls it on the
	// connection's read loop); it is never called for a failed send, nor
	// for an acknowledgement that arrives on another connection.
	SendAcked(topic string, payload []byte, qos byte, acked func()) (tracked bool, err error)
}

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
	// absolute-expiry-time is RFC 3339 (default: DefaultC2DTTL from now;
	// at most MaxC2DTTL from now).
	System map[string]string
	// App holds the application properties.
	App map[string]string
	// Body is the payload, at most MaxC2DBodyBytes.
	Body []byte
}

// c2dState is the Service's C2D bookkeeping outside Service.mu. The zero
// value is ready to use.
type c2dState struct {
	// locks serialise the enqueues of a device (by a hash of its ID), so
	// that the queue-depth check and the write are not interleaved.
	locks [c2dLockStripes]sync.Mutex
	// lastToken is the time part of the latest lock token (Unix ns); lock
	// tokens are strictly increasing within the process so that a queue
	// keeps the send order even when the clock does not move.
	lastToken atomic.Int64

	mu sync.Mutex
	// claims are the messages in flight to a live session, by
	// deviceId/lockToken, so that two connections of a device (one taking
	// the other over) do not both get a message.
	claims map[string]*Session
}

// c2dReceiver is the delivery state of one session subscribed to its C2D
// messages; the transport's acknowledgements reach it without blocking.
type c2dReceiver struct {
	mu sync.Mutex
	// acked are the lock tokens the client acknowledged, not yet completed.
	acked []string
	// more says messages may wait: the queue must be read again.
	more bool
}

func (r *c2dReceiver) ack(token string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acked = append(r.acked, token)
}

func (r *c2dReceiver) markMore() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.more = true
}

// take returns and clears what the delivery loop has to do.
func (r *c2dReceiver) take() (acked []string, more bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	acked, more = r.acked, r.more
	r.acked, r.more = nil, false
	return acked, more
}

// lockToken returns a new lock token: the enqueue time in Unix ns (20
// digits, so byte order is time order; never below the previous token's)
// and 8 random hex digits.
func (c *c2dState) lockToken(now time.Time) string {
	ns := now.UnixNano()
	for {
		last := c.lastToken.Load()
		next := max(ns, last+1)
		if c.lastToken.CompareAndSwap(last, next) {
			var b [4]byte
			_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
			return fmt.Sprintf("%020d-%s", next, hex.EncodeToString(b[:]))
		}
	}
}

func (c *c2dState) lock(deviceID string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(deviceID)) // a hash never fails
	return &c.locks[h.Sum32()%c2dLockStripes]
}

// claim marks a message as in flight to sess; it fails when another live
// session has it.
func (c *c2dState) claim(key string, sess *Session) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.claims == nil {
		c.claims = map[string]*Session{}
	}
	if cur := c.claims[key]; cur != nil && cur != sess {
		return false
	}
	c.claims[key] = sess
	return true
}

// unclaim forgets sess's claim of a message.
func (c *c2dState) unclaim(key string, sess *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.claims[key] == sess {
		delete(c.claims, key)
	}
}

// SendCloudMessage queues a C2D message for a device and returns its
// message ID once the message is durable. The message is delivered at
// QoS 1 on devices/{id}/messages/devicebound/{bag} to a connection of the
// device subscribed to devices/{id}/messages/devicebound/#, now or when
// one subscribes, and stays queued until the device acknowledges it
// (PUBACK): a message not acknowledged on one connection is sent again on
// the next, also after a restart of the hub. It is dropped unread when it
// expires. Errors: ErrInvalidC2D, ErrQueueFull, or one wrapping
// registry.ErrNotFound for an unknown device.
func (s *Service) SendCloudMessage(ctx context.Context, deviceID string, m CloudMessage) (string, error) {
	if len(m.Body) > MaxC2DBodyBytes {
		return "", fmt.Errorf("%w: body is %d bytes, more than %d", ErrInvalidC2D, len(m.Body), MaxC2DBodyBytes)
	}
	now := s.now()
	sys, expires, err := c2dSystemProperties(deviceID, m.System, now)
	if err != nil {
		return "", err
	}
	check := telemetry.Message{DeviceID: deviceID, EnqueuedTime: now, SystemProperties: sys, Properties: m.App}
	if err := check.Validate(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidC2D, err)
	}
	qm := &registry.CloudMessage{
		LockToken:        s.c2d.lockToken(now),
		DeviceID:         deviceID,
		EnqueuedTime:     now.UTC(),
		ExpiryTime:       expires.UTC(),
		SystemProperties: sys,
		Properties:       m.App,
		Body:             m.Body,
	}
	l := s.c2d.lock(deviceID)
	l.Lock()
	err = s.reg.EnqueueCloudMessage(ctx, qm, C2DQueueDepth, now)
	l.Unlock()
	switch {
	case errors.Is(err, registry.ErrCloudQueueFull):
		return "", fmt.Errorf("send cloud-to-device message to %s: %w: %d messages wait", who(deviceID, ""), ErrQueueFull, C2DQueueDepth)
	case err != nil:
		return "", fmt.Errorf("send cloud-to-device message to %s: %w", who(deviceID, ""), err)
	}
	s.c2dMayWait(deviceID)
	s.changes.publish(changeC2D, deviceID, "", "")
	return sys[telemetry.PropMessageID], nil
}

// c2dSystemProperties checks the sender's system properties and completes
// them (message ID, to); it returns them with the expiry time.
func c2dSystemProperties(deviceID string, given map[string]string, now time.Time) (map[string]string, time.Time, error) {
	sys := make(map[string]string, len(given)+2)
	allowed := map[string]bool{}
	for _, p := range C2DSystemProperties() {
		allowed[p] = true
	}
	for k, v := range given {
		if !allowed[k] {
			return nil, time.Time{}, fmt.Errorf("%w: system property %.64q cannot be set on a cloud-to-device message", ErrInvalidC2D, k)
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
			return nil, time.Time{}, fmt.Errorf("%w: %s %.40q is not an RFC 3339 time", ErrInvalidC2D, telemetry.PropExpiryTime, v)
		}
		if !t.After(now) {
			return nil, time.Time{}, fmt.Errorf("%w: %s %s is not in the future", ErrInvalidC2D, telemetry.PropExpiryTime, v)
		}
		expires = t
		if limit := now.Add(MaxC2DTTL); t.After(limit) {
			expires = limit
		}
	}
	return sys, expires, nil
}

// QueuedCloudMessages returns how many C2D messages wait for a device
// (acknowledged ones never; expired ones until they are dropped).
func (s *Service) QueuedCloudMessages(ctx context.Context, deviceID string) (int, error) {
	return s.reg.CloudMessageCount(ctx, deviceID)
}

// PurgeCloudMessages drops every C2D message queued for a device and
// returns how many it dropped. Errors wrap registry.ErrNotFound for an
// unknown device.
func (s *Service) PurgeCloudMessages(ctx context.Context, deviceID string) (int, error) {
	if _, err := s.reg.GetDevice(ctx, deviceID); err != nil {
		return 0, fmt.Errorf("purge the cloud-to-device queue of %s: %w", who(deviceID, ""), err)
	}
	n, err := s.reg.PurgeCloudMessages(ctx, deviceID)
	if err != nil {
		return n, fmt.Errorf("purge the cloud-to-device queue of %s: %w", who(deviceID, ""), err)
	}
	return n, nil
}

// withC2DCounts fills the cloudToDeviceMessageCount of devices read from
// the registry (the count lives with the queue, not in the device record,
// so that queueing does not change the device's etag).
func (s *Service) withC2DCounts(ctx context.Context, ds ...*registry.Device) error {
	if len(ds) == 0 {
		return nil
	}
	if len(ds) > 1 {
		if queued, err := s.reg.AnyCloudMessages(ctx); err != nil || !queued {
			return err
		}
	}
	for _, d := range ds {
		n, err := s.reg.CloudMessageCount(ctx, d.DeviceID)
		if err != nil {
			return err
		}
		d.CloudToDeviceMessageCount = n
	}
	return nil
}

// deviceboundPrefix is the C2D topic of a device up to its property bag.
func deviceboundPrefix(deviceID string) string {
	return "devices/" + deviceID + "/messages/devicebound/"
}

// c2dMayWait tells the device's receiving sessions to read its queue.
func (s *Service) c2dMayWait(deviceID string) { s.c2dWakeOthers(deviceID, nil) }

// c2dWakeOthers tells the device's receiving sessions but one (nil: none)
// to read its queue: after that one gave messages back.
func (s *Service) c2dWakeOthers(deviceID string, except *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess, r := range s.c2dReceivers[deviceID] {
		if sess != except {
			r.markMore()
			sess.wakeC2D()
		}
	}
}

func (s *Service) addC2DReceiver(sess *Session, r *c2dReceiver) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c2dReceivers == nil { // a Service not made by New
		s.c2dReceivers = map[string]map[*Session]*c2dReceiver{}
	}
	m := s.c2dReceivers[sess.id.DeviceID]
	if m == nil {
		m = map[*Session]*c2dReceiver{}
		s.c2dReceivers[sess.id.DeviceID] = m
	}
	m[sess] = r
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
// the subscription may proceed. Every subscription (also a repeated one)
// makes the session read the queue again.
func (s *Session) startC2D() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.c2dDone == nil {
		s.c2dDone = make(chan struct{})
		r := &c2dReceiver{}
		s.svc.addC2DReceiver(s, r)
		go s.deliverC2D(r, s.c2dDone)
	}
	s.svc.c2dMayWait(s.id.DeviceID)
	return true
}

// wakeC2D signals that the delivery loop has work; a pending signal
// covers this one.
func (s *Session) wakeC2D() {
	select {
	case s.c2dWake <- struct{}{}:
	default:
	}
}

// deliverC2D sends queued messages and completes acknowledged ones until
// the session closes. The messages in flight (sent, not acknowledged)
// stay queued: the next connection of the device gets them again.
func (s *Session) deliverC2D(r *c2dReceiver, done chan struct{}) {
	defer close(done)
	inflight := map[string]bool{} // lock tokens sent on this connection
	defer func() {
		// What was in flight here goes to another connection of the
		// device (one that took this one over) at once.
		for tok := range inflight {
			s.svc.c2d.unclaim(s.c2dKey(tok), s)
		}
		if len(inflight) > 0 {
			s.svc.c2dWakeOthers(s.id.DeviceID, s)
		}
	}()
	for {
		select {
		case <-s.closing:
			acked, _ := r.take() // acknowledged before the end: complete them
			s.completeC2D(acked, inflight)
			return
		case <-s.c2dWake:
		}
		acked, more := r.take()
		s.completeC2D(acked, inflight)
		if more {
			s.sendPendingC2D(r, inflight)
		}
	}
}

func (s *Session) c2dKey(lockToken string) string { return s.id.DeviceID + "/" + lockToken }

// completeC2D removes acknowledged messages from the queue. One that
// cannot be removed stays in flight here (it is not sent again on this
// connection, but on the next one).
func (s *Session) completeC2D(acked []string, inflight map[string]bool) {
	if len(acked) == 0 {
		return
	}
	s.touch()
	for _, tok := range acked {
		ctx, cancel := context.WithTimeout(context.Background(), c2dStoreTimeout)
		err := s.svc.reg.CompleteCloudMessage(ctx, s.id.DeviceID, tok)
		cancel()
		if err != nil {
			s.log.Error("acknowledged cloud-to-device message not removed from the queue; the device will get it again", "lockToken", tok, "err", err)
			continue
		}
		delete(inflight, tok)
		s.svc.c2d.unclaim(s.c2dKey(tok), s)
		s.log.Debug("cloud-to-device message completed", "lockToken", tok)
	}
}

// sendPendingC2D sends the queued messages not in flight yet, oldest
// first. It stops at the first message the client does not take; that
// one and the rest wait for the next wake (a subscription, a new message,
// or Run's sweep).
func (s *Session) sendPendingC2D(r *c2dReceiver, inflight map[string]bool) {
	ctx, cancel := context.WithTimeout(context.Background(), c2dStoreTimeout)
	msgs, err := s.svc.reg.PendingCloudMessages(ctx, s.id.DeviceID, s.svc.now())
	cancel()
	if err != nil {
		s.log.Error("cloud-to-device queue not read; its messages wait for the next sweep", "err", err)
		return
	}
	for _, m := range msgs {
		if s.isClosed() {
			return
		}
		if inflight[m.LockToken] {
			continue
		}
		key := s.c2dKey(m.LockToken)
		if !s.svc.c2d.claim(key, s) {
			continue // in flight to another connection of the device
		}
		topic := deviceboundPrefix(s.id.DeviceID) + telemetry.EncodeBag(m.SystemProperties, m.Properties)
		tok := m.LockToken
		tracked, err := s.sendC2D(topic, m.Body, func() {
			r.ack(tok)
			s.wakeC2D()
		})
		if err != nil {
			s.svc.c2d.unclaim(key, s)
			s.svc.c2dWakeOthers(s.id.DeviceID, s) // another connection may take it
			s.log.Debug("cloud-to-device message not delivered; it stays queued", "messageId", m.SystemProperties[telemetry.PropMessageID], "err", err)
			return
		}
		if tracked {
			inflight[tok] = true
			s.log.Debug("cloud-to-device message sent; waiting for its acknowledgement", "messageId", m.SystemProperties[telemetry.PropMessageID], "lockToken", tok)
			continue
		}
		// Sent at most once (QoS 0): complete at once.
		inflight[tok] = true
		s.completeC2D([]string{tok}, inflight)
	}
}

// sendC2D sends one C2D message, retrying briefly for a subscription the
// transport has accepted but not recorded yet.
func (s *Session) sendC2D(topic string, body []byte, acked func()) (tracked bool, err error) {
	ac, ok := s.client.(AckingClient)
	if !ok {
		return false, s.sendSoon(topic, body, 1)
	}
	err = s.retrySoon(func() error {
		var e error
		tracked, e = ac.SendAcked(topic, body, 1, acked)
		return e
	})
	return tracked, err
}

// c2dSweep drops expired C2D messages and those of deleted devices, and
// wakes this instance's receivers of every device whose messages wait.
func (s *Service) c2dSweep(ctx context.Context) {
	res, err := s.reg.SweepCloudMessages(ctx, s.now())
	if err != nil {
		s.log.Error("cloud-to-device sweep failed", "err", err)
	}
	if res.Dropped > 0 {
		s.log.Info("cloud-to-device messages dropped undelivered: expired, or their device was deleted", "count", res.Dropped)
	}
	for _, id := range res.Waiting {
		s.c2dMayWait(id)
	}
}

// runC2DSweep sweeps every C2DSweepInterval until ctx ends.
func (s *Service) runC2DSweep(ctx context.Context) {
	t := time.NewTicker(C2DSweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.c2dSweep(ctx)
		}
	}
}

// dropC2DQueue drops the queue of a deleted device. A failure is only
// logged: the next sweep drops the messages of deleted devices.
func (s *Service) dropC2DQueue(ctx context.Context, deviceID string) {
	n, err := s.reg.PurgeCloudMessages(ctx, deviceID)
	switch {
	case err != nil:
		s.log.Warn("cloud-to-device queue of a deleted device not dropped; the next sweep drops it", "deviceId", deviceID, "err", err)
	case n > 0:
		s.log.Info("cloud-to-device messages of a deleted device dropped", "deviceId", deviceID, "count", n)
	}
}
