package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/muster-iot/muster/internal/registry"
)

// Direct-method errors. A call to an unknown device fails with an error
// wrapping registry.ErrNotFound.
var (
	// ErrDeviceNotOnline means no connection of the target subscribed to
	// direct methods within the connect timeout, or it left before
	// answering (IoT Hub error 404103).
	ErrDeviceNotOnline = errors.New("hub: device is not online for direct methods")
	// ErrMethodTimeout means the target did not answer within the response
	// timeout (IoT Hub error 504101).
	ErrMethodTimeout = errors.New("hub: the device did not answer the direct method in time")
	// ErrInvalidMethod means a direct-method call is malformed (its name,
	// payload or timeouts).
	ErrInvalidMethod = errors.New("hub: invalid direct method call")
	// ErrNotMethodResponse means a topic is not a direct-method response.
	ErrNotMethodResponse = errors.New("hub: not a direct method response topic")
)

// Limits of direct methods.
const (
	// MaxMethodNameLen is the longest method name.
	MaxMethodNameLen = 128
	// MaxMethodPayloadBytes caps the request payload (Azure: 128 KiB).
	MaxMethodPayloadBytes = 128 << 10
)

const (
	methodRequestPrefix  = "$iothub/methods/POST/"
	methodResponsePrefix = "$iothub/methods/res/"
	// sendGrace bounds how long a send is retried while the client's
	// subscription may still be in flight: the transport asks Allow before
	// it records a subscription, so a message sent right after Allow can
	// find no matching subscription yet.
	sendGrace = 2 * time.Second
	// maxSendAttempts bounds the attempts within sendGrace.
	maxSendAttempts = 20
)

// MethodCall is a direct-method invocation by the service API.
type MethodCall struct {
	// DeviceID is the target device; ModuleID, when set, a module of it.
	DeviceID, ModuleID string
	// Name is the method name (1 to MaxMethodNameLen bytes of UTF-8 with
	// no control characters and none of '/', '?', '+', '#').
	Name string
	// Payload is the JSON sent to the device; empty sends null.
	Payload json.RawMessage
	// ResponseTimeout bounds the wait for the answer once the request is
	// sent. It must be positive.
	ResponseTimeout time.Duration
	// ConnectTimeout is how long to wait for the target to connect and
	// subscribe to direct methods when it has not; 0 does not wait.
	ConnectTimeout time.Duration
}

// MethodResult is a device's answer to a direct method.
type MethodResult struct {
	// Status is the status the device published.
	Status int `json:"status"`
	// Payload is the device's JSON answer; null when it sent nothing, and
	// a JSON string of the text when it sent something that is not JSON.
	Payload json.RawMessage `json:"payload"`
}

// MethodRequestTopic is the topic of a method request:
// $iothub/methods/POST/{name}/?$rid={rid} (nothing after the rid: the C
// SDK takes the rest of the topic as the rid).
func MethodRequestTopic(name, rid string) string {
	return methodRequestPrefix + name + "/?$rid=" + rid
}

// ParseMethodResponseTopic parses $iothub/methods/res/{status}/?$rid={rid}
// (other query keys are ignored). The status is a decimal integer and the
// rid must be echoable (see ParseTwinTopic). Errors wrap
// ErrNotMethodResponse and say what is wrong.
func ParseMethodResponseTopic(topic string) (status int, rid string, err error) {
	rest, ok := strings.CutPrefix(topic, methodResponsePrefix)
	if !ok {
		return 0, "", fmt.Errorf("%w: %.80q does not start with %s", ErrNotMethodResponse, topic, methodResponsePrefix)
	}
	st, query, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, "", fmt.Errorf("%w: %.80q has no '/' after the status", ErrNotMethodResponse, topic)
	}
	n, perr := strconv.ParseInt(st, 10, 32)
	if perr != nil {
		return 0, "", fmt.Errorf("%w: status %.16q of %.80q is not a 32-bit decimal integer", ErrNotMethodResponse, st, topic)
	}
	query, ok = strings.CutPrefix(query, "?")
	if !ok {
		return 0, "", fmt.Errorf("%w: %.80q has no ?$rid= query after the status", ErrNotMethodResponse, topic)
	}
	found := false
	for kv := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if k != "$rid" {
			continue
		}
		if found {
			return 0, "", fmt.Errorf("%w: %.80q has more than one $rid", ErrNotMethodResponse, topic)
		}
		if err := checkRID(v); err != nil {
			return 0, "", fmt.Errorf("%w: %w", ErrNotMethodResponse, err)
		}
		rid, found = v, true
	}
	if !found {
		return 0, "", fmt.Errorf("%w: %.80q has no $rid", ErrNotMethodResponse, topic)
	}
	return int(n), rid, nil
}

// checkMethodName reports why name cannot be a method name in a topic.
func checkMethodName(name string) error {
	switch {
	case name == "":
		return errors.New("method name is empty")
	case len(name) > MaxMethodNameLen:
		return fmt.Errorf("method name is %d bytes, more than %d", len(name), MaxMethodNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("method name %.40q is not valid UTF-8", name)
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f || strings.ContainsRune("/?+#", r) {
			return fmt.Errorf("method name %.40q contains %q (not allowed: control characters, '/', '?', '+', '#')", name, r)
		}
	}
	return nil
}

// methodResponse is what a session passes to the waiting call.
type methodResponse struct {
	status  int
	payload []byte
}

// InvokeMethod calls a direct method on a device or module and waits for
// its answer (hub-edge-protocol §2.6, §4.7). The target must have a
// connection subscribed to $iothub/methods/POST/#, or get one within
// c.ConnectTimeout (else ErrDeviceNotOnline); the request goes to its
// latest such connection with a fresh $rid, and the answer published on
// $iothub/methods/res/{status}/?$rid={rid} is returned whatever its
// status. No answer within c.ResponseTimeout is ErrMethodTimeout. A
// malformed call is ErrInvalidMethod; an unknown device wraps
// registry.ErrNotFound, an unknown module registry.ErrModuleNotFound.
//
// With Options.Changes, a target connected to another instance of the hub
// is reached through it (methods_relay.go); a target connected here is
// called directly.
func (s *Service) InvokeMethod(ctx context.Context, c MethodCall) (MethodResult, error) {
	payload, err := checkMethodCall(c)
	if err != nil {
		return MethodResult{}, err
	}
	target := who(c.DeviceID, c.ModuleID)
	d, err := s.reg.GetDevice(ctx, c.DeviceID)
	if err != nil {
		return MethodResult{}, fmt.Errorf("invoke method %.40q on %s: %w", c.Name, target, err)
	}
	state := d.ConnectionState
	if c.ModuleID != "" {
		m, err := s.reg.GetModule(ctx, c.DeviceID, c.ModuleID)
		if err != nil {
			return MethodResult{}, fmt.Errorf("invoke method %.40q on %s: %w", c.Name, target, err)
		}
		state = m.ConnectionState
	}
	key := clientKey(c.DeviceID, c.ModuleID)
	if sess, _ := s.methodTarget(key); sess == nil && s.changes != nil {
		// Not connected here: another instance may hold the connection
		// (methods_relay.go). Its presence record tells whether any
		// does; one that says Disconnected is trusted when the caller
		// does not wait for a connection.
		if c.ConnectTimeout == 0 && state != registry.StateConnected {
			return MethodResult{}, fmt.Errorf("invoke method %.40q on %s: %w: no instance of the hub has a connection of it", c.Name, target, ErrDeviceNotOnline)
		}
		res, err := s.changes.invoke(ctx, c, payload)
		if err != nil {
			return MethodResult{}, fmt.Errorf("invoke method %.40q on %s: %w", c.Name, target, err)
		}
		return res, nil
	}
	sess, err := s.awaitMethodTarget(ctx, key, c.ConnectTimeout)
	if err != nil {
		return MethodResult{}, fmt.Errorf("invoke method %.40q on %s: %w", c.Name, target, err)
	}
	res, err := s.callSession(ctx, sess, c.Name, payload, c.ResponseTimeout)
	if err != nil {
		return MethodResult{}, fmt.Errorf("invoke method %.40q on %s: %w", c.Name, target, err)
	}
	return res, nil
}

// checkMethodCall validates a call and returns the payload to send.
func checkMethodCall(c MethodCall) ([]byte, error) {
	if err := checkMethodName(c.Name); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidMethod, err)
	}
	payload := []byte(strings.TrimSpace(string(c.Payload)))
	switch {
	case len(payload) == 0:
		payload = []byte("null")
	case len(payload) > MaxMethodPayloadBytes:
		return nil, fmt.Errorf("%w: payload is %d bytes, more than %d", ErrInvalidMethod, len(payload), MaxMethodPayloadBytes)
	case !json.Valid(payload):
		return nil, fmt.Errorf("%w: payload is not JSON", ErrInvalidMethod)
	}
	if c.ResponseTimeout <= 0 || c.ConnectTimeout < 0 {
		return nil, fmt.Errorf("%w: response timeout %v must be positive and connect timeout %v not negative", ErrInvalidMethod, c.ResponseTimeout, c.ConnectTimeout)
	}
	return payload, nil
}

// callSession sends a method request to a session and waits up to
// timeout for its answer. Errors wrap ErrDeviceNotOnline when the
// connection ends first and ErrMethodTimeout when no answer comes.
func (s *Service) callSession(ctx context.Context, sess *Session, name string, payload []byte, timeout time.Duration) (MethodResult, error) {
	rid, answer, ok := sess.beginMethod()
	if !ok {
		return MethodResult{}, fmt.Errorf("%w: the connection ended", ErrDeviceNotOnline)
	}
	defer sess.endMethod(rid)
	if err := sess.sendSoon(MethodRequestTopic(name, rid), payload, 0); err != nil {
		if sess.isClosed() {
			return MethodResult{}, fmt.Errorf("%w: the connection ended", ErrDeviceNotOnline)
		}
		return MethodResult{}, fmt.Errorf("send the request: %w", err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-answer:
		return MethodResult{Status: r.status, Payload: resultPayload(r.payload)}, nil
	case <-sess.closing:
		return MethodResult{}, fmt.Errorf("%w: it disconnected before answering", ErrDeviceNotOnline)
	case <-timer.C:
		return MethodResult{}, fmt.Errorf("%w: no answer within %v", ErrMethodTimeout, timeout)
	case <-ctx.Done():
		return MethodResult{}, ctx.Err()
	}
}

// resultPayload makes a device's answer JSON: empty is null, text that is
// not JSON becomes a JSON string.
func resultPayload(b []byte) json.RawMessage {
	t := strings.TrimSpace(string(b))
	if t == "" {
		return json.RawMessage("null")
	}
	if json.Valid([]byte(t)) {
		return json.RawMessage(t)
	}
	q, _ := json.Marshal(string(b)) // a string always encodes
	return q
}

// clientKey names a device or module connection in the service's maps.
func clientKey(deviceID, moduleID string) string {
	if moduleID == "" {
		return deviceID
	}
	return deviceID + "/" + moduleID
}

// awaitMethodTarget returns the latest session of key subscribed to
// direct methods, waiting up to timeout for one.
func (s *Service) awaitMethodTarget(ctx context.Context, key string, timeout time.Duration) (*Session, error) {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	for {
		sess, changed := s.methodTarget(key)
		if sess != nil {
			return sess, nil
		}
		if expired == nil {
			return nil, fmt.Errorf("%w: no connection is subscribed to %s", ErrDeviceNotOnline, MethodsFilter)
		}
		select {
		case <-changed:
		case <-expired:
			return nil, fmt.Errorf("%w: no connection subscribed to %s within %v", ErrDeviceNotOnline, MethodsFilter, timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// methodTarget returns the live session of key subscribed to direct
// methods on this instance (nil if none) and a channel closed when the
// method targets change.
func (s *Service) methodTarget(key string) (*Session, <-chan struct{}) {
	s.mu.Lock()
	sess, changed := s.methodTargets[key], s.methodChanged
	s.mu.Unlock()
	if sess != nil && sess.isClosed() {
		sess = nil
	}
	return sess, changed
}

// addMethodTarget makes sess the method target of its identity.
func (s *Service) addMethodTarget(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.methodTargets == nil { // a Service not made by New
		s.methodTargets = map[string]*Session{}
	}
	s.methodTargets[sess.id.ClientID()] = sess
	if s.methodChanged != nil {
		close(s.methodChanged)
	}
	s.methodChanged = make(chan struct{})
}

// removeMethodTarget forgets sess as a method target.
func (s *Service) removeMethodTarget(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.methodTargets[sess.id.ClientID()] == sess {
		delete(s.methodTargets, sess.id.ClientID())
	}
}

// beginMethod registers a pending call and returns its rid and the
// channel its answer arrives on; ok is false once the session closed.
func (s *Session) beginMethod() (rid string, answer <-chan methodResponse, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", nil, false
	}
	s.nextRID++
	rid = strconv.FormatUint(s.nextRID, 10)
	ch := make(chan methodResponse, 1)
	s.pending[rid] = ch
	return rid, ch, true
}

// endMethod forgets a pending call.
func (s *Session) endMethod(rid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, rid)
}

// answerMethod hands a method response to its pending call; an answer
// nobody waits for (unknown or late rid) is logged and dropped.
func (s *Session) answerMethod(topic string, payload []byte) error {
	status, rid, err := ParseMethodResponseTopic(topic)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTopicNotAllowed, err)
	}
	s.mu.Lock()
	ch := s.pending[rid]
	delete(s.pending, rid)
	s.mu.Unlock()
	if ch == nil {
		s.log.Debug("method response dropped: no call waits for its rid (late or unknown)", "rid", rid, "status", status)
		return nil
	}
	ch <- methodResponse{status: status, payload: payload} // buffered, sole sender
	return nil
}

// sendSoon sends to the client, retrying briefly (at most sendGrace,
// maxSendAttempts times) while the session lives, for a subscription the
// transport has accepted but not yet recorded.
func (s *Session) sendSoon(topic string, payload []byte, qos byte) error {
	return s.retrySoon(func() error { return s.client.Send(topic, payload, qos) })
}

// retrySoon runs send until it succeeds, as sendSoon retries.
func (s *Session) retrySoon(send func() error) error {
	delay := 5 * time.Millisecond
	deadline := time.Now().Add(sendGrace)
	for attempt := 1; ; attempt++ {
		err := send()
		if err == nil || attempt >= maxSendAttempts || s.isClosed() || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-s.closing:
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// isClosed reports whether Close has been called.
func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
