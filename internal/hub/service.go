package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/telemetry"
)

// Registry is the hub's identity registry; *registry.Hub implements it.
// Its errors are package registry's (ErrNotFound, ErrExists,
// ErrPrecondition, *InvalidError) and, for PatchReported, errors wrapping
// twin.ErrInvalid or twin.ErrTooLarge.
type Registry interface {
	HostName() string
	GetDevice(ctx context.Context, deviceID string) (*registry.Device, error)
	ListDevices(ctx context.Context, after string, limit int) ([]*registry.Device, error)
	PutDevice(ctx context.Context, d *registry.Device, ifMatch string) (*registry.Device, error)
	RemoveDevice(ctx context.Context, deviceID, ifMatch string) error
	GetTwin(ctx context.Context, deviceID string) (*registry.Twin, error)
	PatchTwin(ctx context.Context, deviceID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error)
	ReplaceTwin(ctx context.Context, deviceID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error)
	PatchReported(ctx context.Context, deviceID string, patch json.RawMessage) (*registry.Twin, error)
	ModuleRegistry
	CloudQueue    // c2d.go
	PresenceStore // presence_recorder.go
}

// Authenticator decides connections; *hubauth.Authenticator implements it.
// A refusal is a *hubauth.Denial.
type Authenticator interface {
	Authenticate(ctx context.Context, req hubauth.Request) (*hubauth.Identity, error)
}

// Telemetry is the built-in endpoint; *telemetry.Endpoint implements it.
// Append returns once the messages are durable.
type Telemetry interface {
	Append(ctx context.Context, msgs ...telemetry.Message) ([]int64, error)
}

// Client is a connected client as the hub sends to it; the transport
// implements it.
type Client interface {
	// Send delivers a message to this client only, at most at qos (and at
	// most at the QoS of its matching subscription). It fails when no
	// subscription of the client matches topic or the connection has ended.
	Send(topic string, payload []byte, qos byte) error
	// Disconnect ends the connection.
	Disconnect()
}

// Options configure a Service.
type Options struct {
	// Registry is the hub's identity registry. Required.
	Registry Registry
	// Auth authenticates connections. Required.
	Auth Authenticator
	// Telemetry stores device-to-cloud messages. Required.
	Telemetry Telemetry
	// Now is the clock (enqueued times, reported metadata via the
	// registry's own clock, token expiry). Default: time.Now.
	Now func() time.Time
	// Logger receives the hub's logs, never a secret. Default: discard.
	Logger *slog.Logger
	// Changes, when set, is the store the instances of this hub share:
	// desired-property changes, C2D messages and revocations made on one
	// instance reach the sessions on the others through its ChangeStream
	// (changes.go). Leave it nil for a hub alone on its store.
	Changes store.Streams
}

// Service is the hub's device-facing core. It also fronts the registry for
// the hub service API (it has the method set of api.HubRegistry) so that
// twin writes notify connected clients. It is safe for concurrent use.
type Service struct {
	reg  Registry
	auth Authenticator
	tel  Telemetry
	now  func() time.Time
	log  *slog.Logger

	mu sync.Mutex
	// watchers are the sessions subscribed to desired notifications, by
	// clientKey (device ID, or deviceId/moduleId).
	watchers map[string]map[*Session]struct{}
	// methodTargets is the latest session subscribed to direct methods,
	// by client ID; methodChanged is closed and replaced when it changes.
	methodTargets map[string]*Session
	methodChanged chan struct{}
	// c2dReceivers are the sessions subscribed to their cloud-to-device
	// messages, by device ID (c2d.go).
	c2dReceivers map[string]map[*Session]*c2dReceiver
	// live are all sessions, so that revoking an identity ends them.
	live presence
	// c2d is the C2D bookkeeping outside mu (c2d.go); rec holds the
	// presence changes Run writes (presence_recorder.go).
	c2d c2dState
	rec presenceRecorder
	// changes relays changes to the other instances (nil: none).
	changes *changeRelay
}

// New returns a Service.
func New(o Options) (*Service, error) {
	switch {
	case o.Registry == nil:
		return nil, errors.New("new hub service: Options.Registry is required")
	case o.Auth == nil:
		return nil, errors.New("new hub service: Options.Auth is required")
	case o.Telemetry == nil:
		return nil, errors.New("new hub service: Options.Telemetry is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{reg: o.Registry, auth: o.Auth, tel: o.Telemetry, now: o.Now, log: o.Logger,
		watchers: map[string]map[*Session]struct{}{}, methodTargets: map[string]*Session{}, methodChanged: make(chan struct{}),
		c2dReceivers: map[string]map[*Session]*c2dReceiver{}}
	s.changes = newChangeRelay(s, o.Changes)
	return s, nil
}

// Connect authenticates a connection and returns its session. A refusal
// is an error wrapping the *hubauth.Denial (already recorded in the
// attempt log by the authenticator); any other error is a failure of the
// service. client must not be sent to before Connect returns.
func (s *Service) Connect(ctx context.Context, req hubauth.Request, client Client) (*Session, error) {
	if client == nil {
		return nil, errors.New("connect: no client to send to")
	}
	for range connectAttempts {
		seen := s.live.revoked()
		id, err := s.auth.Authenticate(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("authenticate client %.64q: %w", req.ClientID, err)
		}
		if id == nil {
			return nil, fmt.Errorf("authenticate client %.64q: the authenticator returned no identity and no error", req.ClientID)
		}
		sess := newSession(s, *id, client)
		if s.live.add(sess, seen) {
			s.log.Debug("hub client connected", "clientId", id.ClientID(), "auth", id.AuthType, "remote", req.RemoteAddr)
			return sess, nil
		}
		// An identity was revoked while this one was authenticated: it
		// may have been this one, so decide again.
		sess.Close(fmt.Errorf("%w while the client was being authenticated", ErrIdentityRevoked))
	}
	return nil, fmt.Errorf("connect client %.64q: identities kept being disabled or deleted while it was authenticated %d times; try again", req.ClientID, connectAttempts)
}

// HostName returns the hub's host name.
func (s *Service) HostName() string { return s.reg.HostName() }

// GetDevice returns a device identity.
func (s *Service) GetDevice(ctx context.Context, deviceID string) (*registry.Device, error) {
	d, err := s.reg.GetDevice(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	return d, s.withC2DCounts(ctx, d)
}

// ListDevices lists device identities in ID order after a continuation ID.
func (s *Service) ListDevices(ctx context.Context, after string, limit int) ([]*registry.Device, error) {
	ds, err := s.reg.ListDevices(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	return ds, s.withC2DCounts(ctx, ds...)
}

// PutDevice creates or updates a device identity (see
// registry.Hub.PutDevice). When the stored device is disabled, the live
// sessions of the device and its modules on this instance are ended (see
// DisconnectDevice), and on the other instances through the change relay
// (Options.Changes).
func (s *Service) PutDevice(ctx context.Context, d *registry.Device, ifMatch string) (*registry.Device, error) {
	out, err := s.reg.PutDevice(ctx, d, ifMatch)
	if err == nil && disabled(out) {
		s.DisconnectDevice(out.DeviceID, "the device was disabled")
		s.changes.publish(changeRevoked, out.DeviceID, "", "the device was disabled")
	}
	return out, err
}

// RemoveDevice deletes a device identity and its twin, and ends the live
// sessions of the device and its modules on this instance (see
// DisconnectDevice) and, through the change relay, on the others.
func (s *Service) RemoveDevice(ctx context.Context, deviceID, ifMatch string) error {
	if err := s.reg.RemoveDevice(ctx, deviceID, ifMatch); err != nil {
		return err
	}
	s.DisconnectDevice(deviceID, "the device was deleted")
	s.changes.publish(changeRevoked, deviceID, "", "the device was deleted")
	s.dropC2DQueue(ctx, deviceID)
	return nil
}

// GetTwin returns a device's twin.
func (s *Service) GetTwin(ctx context.Context, deviceID string) (*registry.Twin, error) {
	return s.reg.GetTwin(ctx, deviceID)
}

// PatchTwin merge-patches a twin's tags and desired properties and
// notifies the device's sessions watching desired properties.
func (s *Service) PatchTwin(ctx context.Context, deviceID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error) {
	t, err := s.reg.PatchTwin(ctx, deviceID, u, ifMatch)
	if err == nil {
		s.desiredMayHaveChanged(deviceID)
	}
	return t, err
}

// ReplaceTwin replaces a twin's tags and desired properties and notifies
// the device's sessions watching desired properties.
func (s *Service) ReplaceTwin(ctx context.Context, deviceID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error) {
	t, err := s.reg.ReplaceTwin(ctx, deviceID, u, ifMatch)
	if err == nil {
		s.desiredMayHaveChanged(deviceID)
	}
	return t, err
}

// desiredMayHaveChanged wakes the watching sessions of a device; each
// compares the stored desired version with the last one it sent.
func (s *Service) desiredMayHaveChanged(deviceID string) {
	s.wakeWatchers(deviceID, "")
}

// wakeWatchers wakes the watching sessions of a client key, on this
// instance and (through the change relay) on the others.
func (s *Service) wakeWatchers(deviceID, moduleID string) {
	s.wakeLocalWatchers(clientKey(deviceID, moduleID))
	s.changes.publish(changeDesired, deviceID, moduleID, "")
}

// wakeLocalWatchers wakes the watching sessions of a client key on this
// instance.
func (s *Service) wakeLocalWatchers(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.watchers[key] {
		sess.wakeWatcher()
	}
}

func (s *Service) addWatcher(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := clientKey(sess.id.DeviceID, sess.id.ModuleID)
	m := s.watchers[key]
	if m == nil {
		m = map[*Session]struct{}{}
		s.watchers[key] = m
	}
	m[sess] = struct{}{}
}

func (s *Service) removeWatcher(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := clientKey(sess.id.DeviceID, sess.id.ModuleID)
	m := s.watchers[key]
	delete(m, sess)
	if len(m) == 0 {
		delete(s.watchers, key)
	}
}

// watching reports how many sessions watch the desired properties of a
// client key (a device ID, or deviceId/moduleId).
func (s *Service) watching(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watchers[key])
}
