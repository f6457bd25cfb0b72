package hub

// Hints lost in a crash. A hint is appended after the write it announces
// has committed, in a write of its own: the store's atomic batches (Docs.
// Apply) cover documents only, not stream entries, so a write and its hint
// cannot commit together. An instance that dies between the two leaves a
// committed change (a desired patch, a disable, a delete, a C2D message)
// that the sessions on the other instances are not told of, and the
// poll of the change stream cannot find it: it reads hints, not state.
//
// Every instance therefore announces its start on the change stream (a
// "restarted" hint) and that it is alive every changeHeartbeatInterval
// (and that it stops, when it stops cleanly). Every other instance
// rechecks all of its sessions against the stored state when it reads a
// start, or when an instance it heard from falls silent for
// changePeerTimeout without saying it stopped (it died, and is perhaps
// not restarted): it ends the sessions of identities that are gone or
// disabled, and wakes every desired-property watcher and C2D receiver,
// which read their stored twin or queue and send only what is newer than
// what they sent. A change whose hint was lost thus reaches its sessions
// once the instance that made it is restarted or within about
// changePeerTimeout (C2D messages also at the next C2D sweep); the
// desired watchers' version check makes the recheck harmless to sessions
// that missed nothing. A failed append of a hint (the store unreachable
// for changePublishTimeout, after retries) is not recovered this way; it
// is logged, and the sessions learn of the change when they reconnect.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/registry"
)

// Hints about the instances themselves.
const (
	changeRestarted = "restarted" // the origin started
	changeAlive     = "alive"     // the origin runs (every changeHeartbeatInterval)
	changeStopped   = "stopped"   // the origin stops cleanly
)

// Liveness of the instances.
const (
	// changeHeartbeatInterval is how often an instance says it is alive.
	changeHeartbeatInterval = 30 * time.Second
	// changePeerTimeout is how long an instance may stay silent before
	// the others take it for dead and recheck their sessions.
	changePeerTimeout = 3 * changeHeartbeatInterval
)

// restartKey is the Key of restarted hints (every entry needs one).
const restartKey = "$hub"

// Pacing of a recheck, so that one restart does not send every twin read
// of a large instance to the store at once.
const (
	recheckReaders = 8   // identity reads at once
	recheckBatch   = 256 // watchers or receivers woken at once
	recheckPause   = 100 * time.Millisecond
)

// recheckState coalesces rechecks: a restart read while one runs makes it
// run again once done.
type recheckState struct {
	mu      sync.Mutex
	running bool
	again   bool
}

// recheckSoon runs recheckSessions in the background (again after the
// running one, when one runs) until ctx ends.
func (r *changeRelay) recheckSoon(ctx context.Context) {
	r.recheck.mu.Lock()
	defer r.recheck.mu.Unlock()
	if r.recheck.running {
		r.recheck.again = true
		return
	}
	r.recheck.running = true
	r.methods.served.Go(func() {
		for {
			r.svc.recheckSessions(ctx)
			r.recheck.mu.Lock()
			if !r.recheck.again || ctx.Err() != nil {
				r.recheck.running, r.recheck.again = false, false
				r.recheck.mu.Unlock()
				return
			}
			r.recheck.again = false
			r.recheck.mu.Unlock()
		}
	})
}

// recheckSessions brings this instance's sessions up to date with the
// stored state, for changes whose hints were lost: it ends the sessions
// of deleted or disabled devices and deleted modules, and wakes every
// desired-property watcher and C2D receiver.
func (s *Service) recheckSessions(ctx context.Context) {
	ids := s.live.identities()
	sem := make(chan struct{}, recheckReaders)
	var wg sync.WaitGroup
	for dev, modules := range ids {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.recheckIdentities(ctx, dev, modules)
		})
	}
	wg.Wait()

	s.mu.Lock()
	keys := make([]string, 0, len(s.watchers))
	for k := range s.watchers {
		keys = append(keys, k)
	}
	devices := make([]string, 0, len(s.c2dReceivers))
	for d := range s.c2dReceivers {
		devices = append(devices, d)
	}
	s.mu.Unlock()
	wake := func(n int, do func(i int)) {
		for i := range n {
			if i > 0 && i%recheckBatch == 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(recheckPause):
				}
			}
			do(i)
		}
	}
	wake(len(keys), func(i int) { s.wakeLocalWatchers(keys[i]) })
	wake(len(devices), func(i int) { s.c2dMayWait(devices[i]) })
	s.log.Debug("sessions rechecked after another instance restarted", "devices", len(ids), "watched", len(keys), "receiving", len(devices))
}

// recheckIdentities ends the sessions of device dev when it is gone or
// disabled, else those of its modules (among modules) that are gone.
func (s *Service) recheckIdentities(ctx context.Context, dev string, modules []string) {
	d, err := s.reg.GetDevice(ctx, dev)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		s.disconnect(s.live.revoke(dev, nil), "the device was deleted (found when rechecking after another instance restarted)")
		return
	case err != nil:
		s.log.Warn("session recheck: device not read", "deviceId", dev, "err", err)
		return
	case disabled(d):
		s.disconnect(s.live.revoke(dev, nil), "the device was disabled (found when rechecking after another instance restarted)")
		return
	}
	for _, m := range modules {
		if m == "" {
			continue
		}
		_, err := s.reg.GetModule(ctx, dev, m)
		switch {
		case errors.Is(err, registry.ErrModuleNotFound):
			s.disconnect(s.live.revoke(dev, func(sess *Session) bool { return sess.id.ModuleID == m }),
				"the module was deleted (found when rechecking after another instance restarted)")
		case err != nil:
			s.log.Warn("session recheck: module not read", "deviceId", dev, "moduleId", m, "err", err)
		}
	}
}

// identities returns the device IDs with live sessions and, for each,
// the module IDs of its sessions ("" for the device's own).
func (p *presence) identities() map[string][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]string, len(p.sessions))
	for dev, m := range p.sessions {
		seen := map[string]bool{}
		for sess := range m {
			if !seen[sess.id.ModuleID] {
				seen[sess.id.ModuleID] = true
				out[dev] = append(out[dev], sess.id.ModuleID)
			}
		}
	}
	return out
}

// heartbeat says that this instance is alive every
// changeHeartbeatInterval until ctx ends.
func (r *changeRelay) heartbeat(ctx context.Context) {
	t := time.NewTicker(changeHeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.publish(changeAlive, restartKey, "", "")
		}
	}
}

// peerSet is when each other instance was last heard from; the zero
// value is ready to use.
type peerSet struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// seen notes an entry of kind from origin at now; an instance that
// stopped cleanly is forgotten.
func (p *peerSet) seen(origin, kind string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if kind == changeStopped {
		delete(p.last, origin)
		return
	}
	if p.last == nil {
		p.last = map[string]time.Time{}
	}
	p.last[origin] = now
}

// heard reports whether origin is known.
func (p *peerSet) heard(origin string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.last[origin]
	return ok
}

// silent forgets and returns the instances not heard from since
// changePeerTimeout before now.
func (p *peerSet) silent(now time.Time) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for origin, last := range p.last {
		if now.Sub(last) > changePeerTimeout {
			delete(p.last, origin)
			out = append(out, origin)
		}
	}
	return out
}

// checkPeers rechecks this instance's sessions when another instance
// fell silent: it may have died between a write and its hint.
func (r *changeRelay) checkPeers(ctx context.Context, now time.Time) {
	if dead := r.peers.silent(now); len(dead) > 0 {
		r.svc.log.Info("hub instances fell silent without stopping; rechecking this instance's sessions for changes they may not have relayed",
			"instances", dead, "silentFor", changePeerTimeout)
		r.recheckSoon(ctx)
	}
}
