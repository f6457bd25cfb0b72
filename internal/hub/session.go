package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/telemetry"
	"github.com/muster-iot/muster/internal/twin"
)

// ErrTopicNotAllowed means a client published to a topic that is not one
// of its own request or telemetry topics.
var ErrTopicNotAllowed = errors.New("hub: topic not allowed for this identity")

// Twin response status codes and the errorCode of their JSON bodies
// (hub-edge-protocol §2.5: Node treats a response as failed only when its
// body has an errorCode).
const (
	statusOK         = 200
	statusNoContent  = 204
	statusBadRequest = 400
	statusNotFound   = 404
	statusServer     = 500

	errorCodeArgumentInvalid = 400004
	errorCodeDeviceNotFound  = 404001
	errorCodeModuleNotFound  = 404010
	errorCodeServerError     = 500001
)

// Timeouts of work a session does off the transport's request path.
const (
	// subscribeReadTimeout bounds the twin read that sets the baseline of
	// desired notifications when a client subscribes to them.
	subscribeReadTimeout = 10 * time.Second
	// notifyTimeout bounds the twin read of one desired notification.
	notifyTimeout = 30 * time.Second
)

// Session is one authenticated connection. The transport calls Allow and
// Publish or PublishAsync on the connection's read loop and Close once
// when it ends.
type Session struct {
	svc    *Service
	id     hubauth.Identity
	client Client
	log    *slog.Logger
	// wake has room for one pending desired-change signal.
	wake chan struct{}
	// expiry ends the connection when its SAS token expires; nil for X.509.
	expiry *time.Timer

	mu     sync.Mutex
	closed bool
	// watchCancel and watchDone are set while the session watches its
	// desired properties.
	watchCancel context.CancelFunc
	watchDone   chan struct{}
	// closing is closed by Close.
	closing chan struct{}
	// pending are the direct-method calls waiting for an answer, by rid;
	// nextRID numbers them.
	pending map[string]chan methodResponse
	nextRID uint64
	// c2dWake has room for one pending C2D signal; c2dDone is set while
	// C2D messages are delivered to the session.
	c2dWake chan struct{}
	c2dDone chan struct{}
	// act is the client's last activity (presence_recorder.go).
	act activity
	// tq is the telemetry waiting to be stored (pipeline.go).
	tq telemetryQueue
}

func newSession(svc *Service, id hubauth.Identity, client Client) *Session {
	s := &Session{svc: svc, id: id, client: client, wake: make(chan struct{}, 1),
		log: svc.log.With("clientId", id.ClientID()), closing: make(chan struct{}),
		pending: map[string]chan methodResponse{}, c2dWake: make(chan struct{}, 1)}
	if !id.TokenExpiry.IsZero() {
		s.expiry = time.AfterFunc(max(id.TokenExpiry.Sub(svc.now()), 0), func() {
			s.log.Info("hub client's SAS token expired; disconnecting it", "expiry", id.TokenExpiry)
			client.Disconnect()
		})
	}
	return s
}

// Identity returns the authenticated identity of the session.
func (s *Session) Identity() hubauth.Identity { return s.id }

// Allow reports whether the client may publish to topic (publish true) or
// subscribe to the filter topic. A client publishes telemetry on its own
// telemetry topic and twin requests; it subscribes to its twin responses,
// desired notifications, direct methods, and its cloud-to-device messages
// (device) or module topics (module). Subscribing to desired
// notifications starts them: changes from the desired properties stored at
// that moment on are pushed to the client.
func (s *Session) Allow(topic string, publish bool) bool {
	if publish {
		err := s.checkPublish(topic)
		if err != nil {
			s.log.Info("hub client publish refused", "topic", clip(topic), "err", err)
		}
		return err == nil
	}
	for _, f := range subscribable(s.id.DeviceID, s.id.ModuleID) {
		if !within(topic, f) {
			continue
		}
		switch {
		case f == DesiredFilter:
			return s.startWatching()
		case f == MethodsFilter:
			return s.startMethods()
		case s.id.ModuleID == "" && f == deviceboundPrefix(s.id.DeviceID)+"#":
			return s.startC2D()
		}
		return true
	}
	s.log.Info("hub client subscription refused: not one of its own topics", "filter", clip(topic))
	return false
}

// checkPublish says why the client may not publish to topic, or nil.
func (s *Session) checkPublish(topic string) error {
	if dev, mod, _, err := telemetry.ParseTelemetryTopic(topic); err == nil {
		if dev != s.id.DeviceID || mod != s.id.ModuleID {
			return fmt.Errorf("%w: %.80q is the telemetry topic of %s, not of %s", ErrTopicNotAllowed, topic, who(dev, mod), who(s.id.DeviceID, s.id.ModuleID))
		}
		return nil
	}
	if _, _, err := ParseMethodResponseTopic(topic); err == nil {
		return nil
	}
	if _, err := ParseTwinTopic(topic); err != nil {
		return fmt.Errorf("%w: %.80q is neither a telemetry topic (devices/{id}/messages/events/), a method response ($iothub/methods/res/{status}/?$rid=) nor a twin request (%v)", ErrTopicNotAllowed, topic, err)
	}
	return nil
}

// Publish handles a message the client published to a topic Allow
// accepted and waits for the outcome (see PublishAsync, which it uses, so
// telemetry keeps its order with messages given to PublishAsync).
// Telemetry is stored durably before Publish returns nil (so the
// transport acknowledges only stored messages); twin requests are
// answered on the client's twin response topic. An error means the
// message was not accepted and the connection should end. Direct-method
// responses complete the call waiting for their rid (one nobody waits for
// is dropped). Errors: a topic not allowed, telemetry the endpoint
// refuses (bad properties, too large), a storage failure, or ctx ending
// first (the message may still be stored).
func (s *Session) Publish(ctx context.Context, topic string, payload []byte, retain bool) error {
	outcome := make(chan error, 1)
	s.PublishAsync(ctx, topic, payload, retain, func(err error, _ bool) { outcome <- err })
	select {
	case err := <-outcome:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serveTwin answers a twin request. An undeliverable response (the client
// did not subscribe to its twin responses, or left) is only logged.
func (s *Session) serveTwin(ctx context.Context, req TwinRequest, body []byte) {
	status, version, resp := s.twinResponse(ctx, req, body)
	if err := s.client.Send(TwinResponseTopic(status, req.RID, version), resp, 1); err != nil {
		s.log.Debug("twin response not delivered", "op", req.Op.String(), "rid", req.RID, "status", status, "err", err)
	}
}

// twinResponse runs a twin request and returns the response status, the
// $version to put in the topic (0: none) and the body.
func (s *Session) twinResponse(ctx context.Context, req TwinRequest, body []byte) (status int, version int64, resp []byte) {
	switch req.Op {
	case TwinGet: // the body is ignored (SDKs send nothing or a space)
		t, err := s.readTwin(ctx)
		if err != nil {
			return s.twinFailure(req, err)
		}
		view, err := twin.DeviceView(t)
		if err != nil {
			return s.twinFailure(req, fmt.Errorf("encode device view of the twin of %s: %w", who(s.id.DeviceID, s.id.ModuleID), err))
		}
		return statusOK, 0, view
	case TwinPatchReported:
		t, err := s.patchReported(ctx, body)
		if err != nil {
			return s.twinFailure(req, err)
		}
		rep, err := decodeSection(t.Properties.Reported)
		if err != nil {
			return s.twinFailure(req, fmt.Errorf("decode reported properties of the twin of %s: %w", who(s.id.DeviceID, s.id.ModuleID), err))
		}
		return statusNoContent, rep.Version, nil
	}
	return s.twinFailure(req, fmt.Errorf("unknown twin operation %v", req.Op))
}

// twinFailure maps a failed twin operation to its error response.
func (s *Session) twinFailure(req TwinRequest, err error) (int, int64, []byte) {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return s.twinError(statusNotFound, errorCodeDeviceNotFound, fmt.Sprintf("device %q has no twin: it was deleted", s.id.DeviceID), nil)
	case errors.Is(err, registry.ErrModuleNotFound):
		return s.twinError(statusNotFound, errorCodeModuleNotFound, fmt.Sprintf("module %q of device %q has no twin: it was deleted", s.id.ModuleID, s.id.DeviceID), nil)
	case errors.Is(err, twin.ErrInvalid), errors.Is(err, twin.ErrTooLarge):
		return s.twinError(statusBadRequest, errorCodeArgumentInvalid, err.Error(), nil)
	}
	return s.twinError(statusServer, errorCodeServerError, "internal error; quote the tracking ID to the operator", func(trackingID string) {
		s.log.Error("twin request failed", "op", req.Op.String(), "rid", req.RID, "trackingId", trackingID, "err", err)
	})
}

// twinErrorBody is the JSON body of a failed twin response.
type twinErrorBody struct {
	ErrorCode    int    `json:"errorCode"`
	TrackingID   string `json:"trackingId"`
	Message      string `json:"message"`
	TimestampUTC string `json:"timestampUtc"`
}

func (s *Session) twinError(status, code int, msg string, logFn func(trackingID string)) (int, int64, []byte) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	tid := hex.EncodeToString(b[:])
	if logFn != nil {
		logFn(tid)
	}
	body, err := json.Marshal(twinErrorBody{ErrorCode: code, TrackingID: tid, Message: msg,
		TimestampUTC: s.svc.now().UTC().Format("2006-01-02T15:04:05.0000000Z")})
	if err != nil { // a struct of strings and ints always encodes
		body = []byte(`{"errorCode":500001,"message":"internal error"}`)
	}
	return status, 0, body
}

// readTwin reads the twin of the session's identity (the device's or the
// module's) as package twin holds it (desired and reported properties;
// the device view needs no more).
func (s *Session) readTwin(ctx context.Context) (*twin.Twin, error) {
	rt, err := s.storedTwin(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the twin of %s: %w", who(s.id.DeviceID, s.id.ModuleID), err)
	}
	desired, err := decodeSection(rt.Properties.Desired)
	if err != nil {
		return nil, fmt.Errorf("decode desired properties of the twin of %s: %w", who(s.id.DeviceID, s.id.ModuleID), err)
	}
	reported, err := decodeSection(rt.Properties.Reported)
	if err != nil {
		return nil, fmt.Errorf("decode reported properties of the twin of %s: %w", who(s.id.DeviceID, s.id.ModuleID), err)
	}
	return &twin.Twin{DeviceID: rt.DeviceID, ModuleID: rt.ModuleID, Version: rt.Version,
		Properties: twin.Properties{Desired: desired, Reported: reported}}, nil
}

// decodeSection decodes a stored desired or reported section (absent or
// null: empty at version 0).
func decodeSection(raw json.RawMessage) (twin.Collection, error) {
	var c twin.Collection
	if len(raw) == 0 {
		return twin.Collection{Values: twin.Object{}}, nil
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return twin.Collection{}, err
	}
	if c.Values == nil {
		c.Values = twin.Object{}
	}
	return c, nil
}

// startWatching starts desired notifications, once: the desired
// properties stored now are the baseline the first notification is a
// patch of. It reports whether the subscription may proceed.
func (s *Session) startWatching() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.watchDone != nil {
		return true
	}
	// Register before reading, so a change committed during the read
	// still wakes the watcher (which then finds the version unchanged or
	// newer).
	s.svc.addWatcher(s)
	rctx, cancel := context.WithTimeout(context.Background(), subscribeReadTimeout)
	base, err := s.readTwin(rctx)
	cancel()
	if err != nil {
		s.svc.removeWatcher(s)
		s.log.Error("desired-properties subscription refused: the twin cannot be read", "err", err)
		return false
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.watchCancel, s.watchDone = stop, done
	go s.watch(ctx, base, done)
	return true
}

// wakeWatcher signals that the desired properties may have changed; a
// signal already pending covers this one.
func (s *Session) wakeWatcher() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// watch pushes desired-property changes until ctx ends. Changes that
// arrive while a notification is being sent are coalesced into the next
// one, which patches from the last desired properties sent.
func (s *Session) watch(ctx context.Context, base *twin.Twin, done chan struct{}) {
	defer close(done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		if next := s.notifyDesired(ctx, base); next != nil {
			base = next
		}
	}
}

// notifyDesired sends the change from base to the stored desired
// properties, if their version is newer, and returns the new baseline (nil
// when nothing changed or the twin could not be read).
func (s *Session) notifyDesired(ctx context.Context, base *twin.Twin) *twin.Twin {
	rctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	cur, err := s.readTwin(rctx)
	cancel()
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrModuleNotFound):
		s.log.Info("desired notification skipped: the twin is gone", "err", err)
		return nil
	case err != nil:
		s.log.Error("desired notification skipped: the twin cannot be read", "err", err)
		return nil
	case cur.Properties.Desired.Version <= base.Properties.Desired.Version:
		return nil
	}
	patch, err := twin.DesiredDelta(base, cur)
	if err != nil {
		s.log.Error("desired notification skipped: encode the patch", "version", cur.Properties.Desired.Version, "err", err)
		return nil
	}
	v := cur.Properties.Desired.Version
	if err := s.client.Send(DesiredTopic(v), patch, 1); err != nil {
		s.log.Debug("desired notification not delivered", "version", v, "err", err)
	}
	return cur
}

// startMethods makes the session its identity's direct-method target; it
// reports whether the subscription may proceed.
func (s *Session) startMethods() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.svc.addMethodTarget(s) // under s.mu, so Close cannot miss it
	return true
}

// Close ends the session: desired notifications stop (Close waits for a
// notification being sent), the telemetry already received is appended
// (Close waits for it), the token-expiry timer is stopped and the
// session is no longer among its identity's live sessions. err is
// nil for a clean disconnect by the client. Calls after the first do
// nothing.
func (s *Session) Close(err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.closing)
	stop, done, c2dDone := s.watchCancel, s.watchDone, s.c2dDone
	s.mu.Unlock()
	if s.expiry != nil {
		s.expiry.Stop()
	}
	s.svc.live.remove(s)
	s.svc.removeMethodTarget(s)
	if c2dDone != nil {
		s.svc.removeC2DReceiver(s)
		<-c2dDone
	}
	if done != nil {
		s.svc.removeWatcher(s)
		stop()
		<-done
	}
	s.tq.wait() // the telemetry already received is appended (or fails) first
	s.log.Debug("hub client disconnected", "err", err)
}

// who names a device or module in messages.
func who(deviceID, moduleID string) string {
	if moduleID == "" {
		return fmt.Sprintf("device %.64q", deviceID)
	}
	return fmt.Sprintf("module %.64q of device %.64q", moduleID, deviceID)
}

// clip shortens a client-controlled string for logs.
func clip(s string) string {
	const maxShown = 160
	if len(s) <= maxShown {
		return s
	}
	return s[:maxShown] + "…"
}
