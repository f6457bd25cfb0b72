package hub

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
)

// ErrIdentityRevoked is the reason a session ends when its identity is
// disabled or deleted while it is connected.
var ErrIdentityRevoked = errors.New("hub: the identity was disabled or deleted")

// connectAttempts bounds how often Connect authenticates again because the
// identity was revoked while it was being authenticated.
const connectAttempts = 3

// presence tracks the live sessions of this process by device ID (a
// module's session is filed under its device). Revoking an identity closes
// its sessions here; revocations count up in revocations, so that Connect
// can tell that one happened while it authenticated a client and decide
// again. The zero value is ready to use.
//
// Presence is in-process: a client connected to another instance of the
// hub is dropped by that instance, when the change relay tells it of the
// revocation (changes.go), or refused at its next CONNECT, since every
// instance authenticates against the shared registry.
type presence struct {
	mu          sync.Mutex
	sessions    map[string]map[*Session]struct{}
	revocations uint64
}

// revoked returns the number of revocations so far.
func (p *presence) revoked() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.revocations
}

// add files a session, unless a revocation happened after seen (the
// session may then belong to an identity revoked while it was being
// authenticated); it reports whether it filed the session.
func (p *presence) add(sess *Session, seen uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.revocations != seen {
		return false
	}
	if p.sessions == nil {
		p.sessions = map[string]map[*Session]struct{}{}
	}
	m := p.sessions[sess.id.DeviceID]
	if m == nil {
		m = map[*Session]struct{}{}
		p.sessions[sess.id.DeviceID] = m
	}
	m[sess] = struct{}{}
	// Recorded under p.mu, so that the connection states of one identity
	// reach the recorder in the order its sessions come and go.
	now := sess.svc.now()
	sess.act.connected(now)
	if p.countLocked(sess.id) == 1 {
		sess.svc.rec.add(sess.id.DeviceID, sess.id.ModuleID, registry.Presence{State: registry.StateConnected, StateTime: now, Activity: now})
	} else {
		sess.svc.rec.add(sess.id.DeviceID, sess.id.ModuleID, registry.Presence{Activity: now})
	}
	return true
}

// remove unfiles a session; a session not filed is ignored. When it was
// its identity's last session here, the identity is recorded as
// disconnected (with its last activity).
func (p *presence) remove(sess *Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.sessions[sess.id.DeviceID]
	if _, ok := m[sess]; !ok {
		return
	}
	delete(m, sess)
	if len(m) == 0 {
		delete(p.sessions, sess.id.DeviceID)
	}
	last := sess.act.unrecorded()
	if p.countLocked(sess.id) == 0 {
		sess.svc.rec.add(sess.id.DeviceID, sess.id.ModuleID, registry.Presence{State: registry.StateDisconnected, StateTime: sess.svc.now(), Activity: last})
	} else if !last.IsZero() {
		sess.svc.rec.add(sess.id.DeviceID, sess.id.ModuleID, registry.Presence{Activity: last})
	}
	if len(p.sessions) == 0 {
		sess.svc.rec.wakeUp() // Run may be waiting for the last session to end
	}
}

// countLocked returns the number of live sessions of one identity (a
// device or one of its modules); p.mu is held.
func (p *presence) countLocked(id hubauth.Identity) int {
	n := 0
	for sess := range p.sessions[id.DeviceID] {
		if sess.id.ModuleID == id.ModuleID {
			n++
		}
	}
	return n
}

// total returns the number of live sessions.
func (p *presence) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// revoke counts a revocation and returns the sessions of deviceID for
// which match is true (all of them when match is nil), leaving them filed
// until they close.
func (p *presence) revoke(deviceID string, match func(*Session) bool) []*Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revocations++
	var out []*Session
	for sess := range p.sessions[deviceID] {
		if match == nil || match(sess) {
			out = append(out, sess)
		}
	}
	return out
}

// has reports whether a device (moduleID "") or module identity has a
// live session.
func (p *presence) has(deviceID, moduleID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for sess := range p.sessions[deviceID] {
		if sess.id.ModuleID == moduleID {
			return true
		}
	}
	return false
}

// count returns the number of live sessions of a device and its modules.
func (p *presence) count(deviceID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions[deviceID])
}

// DisconnectDevice ends, at once, every live session of a device and of
// its modules on this instance: each session is closed with an error
// wrapping ErrIdentityRevoked and its client disconnected. why says what
// happened to the identity (for the logs). It returns the number of
// sessions ended. PutDevice and RemoveDevice call it when they disable or
// delete a device; a later CONNECT is refused by the authenticator.
//
// It acts in-process only; PutDevice and RemoveDevice also tell the other
// instances of the hub through the change relay (Options.Changes).
func (s *Service) DisconnectDevice(deviceID, why string) int {
	return s.disconnect(s.live.revoke(deviceID, nil), why)
}

// DisconnectModule ends, at once, every live session of one module
// identity, as DisconnectDevice does for a device: for a module identity
// deleted through the registry (the hub service API calls it after the
// delete commits). It returns the number of sessions ended on this
// instance; with Options.Changes, the sessions of the module on the other
// instances are ended too, through the change relay.
func (s *Service) DisconnectModule(deviceID, moduleID, why string) int {
	if moduleID == "" {
		return 0
	}
	n := s.disconnect(s.live.revoke(deviceID, func(sess *Session) bool { return sess.id.ModuleID == moduleID }), why)
	s.changes.publish(changeRevoked, deviceID, moduleID, why)
	return n
}

// disconnect ends the given sessions.
func (s *Service) disconnect(sessions []*Session, why string) int {
	for _, sess := range sessions {
		sess.log.Info("hub client disconnected: its identity was revoked", "why", why)
		sess.client.Disconnect()
		sess.Close(fmt.Errorf("%w: %s", ErrIdentityRevoked, why))
	}
	return len(sessions)
}

// Connected returns the number of live sessions of a device and its
// modules on this instance.
func (s *Service) Connected(deviceID string) int { return s.live.count(deviceID) }

// disabled reports whether a stored device's status is disabled.
func disabled(d *registry.Device) bool {
	return d != nil && strings.EqualFold(d.Status, registry.StatusDisabled)
}
