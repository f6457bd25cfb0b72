package hub

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/muster-iot/muster/internal/registry"
)

// Presence recording: every identity's connectionState,
// connectionStateUpdatedTime and lastActivityTime are kept in its registry
// record (hub-edge-protocol §4.2), written off the connection path by Run:
// a CONNECT or a telemetry message never waits for such a write. Changes
// of one identity that wait for the writer are merged (the newest state
// wins, the latest activity wins), and activity is written at most once
// per ActivityWriteInterval per session, so telemetry throughput does not
// pay a store write per message.

const (
	// ActivityWriteInterval is the least time between two writes of a
	// session's lastActivityTime; its last activity is always written
	// when it disconnects.
	ActivityWriteInterval = 30 * time.Second
	// presenceWriters is how many presence writes run at once (so that
	// the store's group commit can batch them during a connect storm).
	presenceWriters = 8
	// presenceWriteTimeout bounds one presence write.
	presenceWriteTimeout = 30 * time.Second
	// presenceRetryDelay is the pause before failed writes are retried.
	presenceRetryDelay = time.Second
	// shutdownGrace bounds how long Run, once its context ends, waits for
	// the sessions to close so that their identities are recorded as
	// disconnected.
	shutdownGrace = 15 * time.Second
)

// PresenceStore records connection state and activity; *registry.Hub
// implements it.
type PresenceStore interface {
	RecordPresence(ctx context.Context, deviceID, moduleID string, p registry.Presence) error
}

// activity is a session's last activity (Unix ns) and the part of it that
// has been handed to the recorder.
type activity struct {
	seen     atomic.Int64
	recorded atomic.Int64
}

// connected notes the connection as the session's first activity, which
// the caller records.
func (a *activity) connected(now time.Time) {
	a.seen.Store(now.UnixNano())
	a.recorded.Store(now.UnixNano())
}

// unrecorded returns the last activity when it was not recorded yet (zero
// otherwise).
func (a *activity) unrecorded() time.Time {
	seen := a.seen.Load()
	if seen == 0 || seen <= a.recorded.Load() {
		return time.Time{}
	}
	return time.Unix(0, seen).UTC()
}

// touch notes that the client was active now (it sent or acknowledged a
// message) and hands the activity to the recorder when the last one it
// handed over is ActivityWriteInterval old.
func (s *Session) touch() {
	now := s.svc.now()
	ns := now.UnixNano()
	s.act.seen.Store(ns)
	last := s.act.recorded.Load()
	if ns-last < int64(ActivityWriteInterval) || !s.act.recorded.CompareAndSwap(last, ns) {
		return
	}
	s.svc.rec.add(s.id.DeviceID, s.id.ModuleID, registry.Presence{Activity: now})
}

// presenceKey names an identity.
type presenceKey struct{ device, module string }

// presenceRecorder holds the presence changes waiting to be written. The
// zero value is ready to use.
type presenceRecorder struct {
	mu      sync.Mutex
	pending map[presenceKey]registry.Presence
	// wake has room for one pending signal; made on first use.
	wake chan struct{}
}

// wakeChan returns the wake channel; r.mu is held.
func (r *presenceRecorder) wakeChanLocked() chan struct{} {
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	return r.wake
}

func (r *presenceRecorder) wakeUp() {
	r.mu.Lock()
	w := r.wakeChanLocked()
	r.mu.Unlock()
	select {
	case w <- struct{}{}:
	default:
	}
}

// add merges a change into the pending ones and wakes the writer.
func (r *presenceRecorder) add(deviceID, moduleID string, p registry.Presence) {
	r.mu.Lock()
	if r.pending == nil {
		r.pending = map[presenceKey]registry.Presence{}
	}
	k := presenceKey{deviceID, moduleID}
	r.pending[k] = mergePresence(r.pending[k], p)
	r.mu.Unlock()
	r.wakeUp()
}

// mergePresence combines an older pending change with a newer one.
func mergePresence(old, p registry.Presence) registry.Presence {
	out := old
	if p.State != "" && (old.State == "" || !p.StateTime.Before(old.StateTime)) {
		out.State, out.StateTime = p.State, p.StateTime
	}
	if p.Activity.After(old.Activity) {
		out.Activity = p.Activity
	}
	return out
}

// take returns the pending changes and clears them.
func (r *presenceRecorder) take() map[presenceKey]registry.Presence {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.pending
	r.pending = nil
	return out
}

// signal returns the channel the writer waits on.
func (r *presenceRecorder) signal() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wakeChanLocked()
}

// PrepareChanges reads where the change stream of Options.Changes ends,
// so that Run relays to this instance's sessions every change the other
// instances make after PrepareChanges returns. Call it before serving
// connections: a client that connects and subscribes before Run has read
// the stream's end could otherwise miss a change made in between. It also
// tells the other instances that this one started. Without it, Run does
// both itself; without Options.Changes it does nothing.
func (s *Service) PrepareChanges(ctx context.Context) error {
	return s.changes.prepare(ctx)
}

// Run does the hub's background work until ctx ends: it writes
// connection-state and activity changes to the registry, and every
// C2DSweepInterval it drops expired C2D messages and wakes the receivers
// of devices whose messages wait. When ctx ends it waits (at most
// shutdownGrace) for the live sessions to close, writes their
// disconnection, and returns nil. Call it once.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.runC2DSweep(ctx) })
	wg.Go(func() { s.changes.run(ctx) }) // changes.go; nothing without Options.Changes
	s.runPresence(ctx)
	wg.Wait()
	return nil
}

// runPresence writes presence changes until ctx ends and the sessions
// have closed (or shutdownGrace has passed).
func (s *Service) runPresence(ctx context.Context) {
	var (
		retry  <-chan time.Time
		grace  <-chan time.Time
		ending = ctx.Done()
	)
	for {
		select {
		case <-s.rec.signal():
		case <-retry:
			retry = nil
		case <-ending:
			ending = nil
			t := time.NewTimer(shutdownGrace)
			defer t.Stop()
			grace = t.C
		case <-grace:
			s.log.Warn("hub sessions still open at shutdown; their identities stay recorded as connected", "sessions", s.live.total())
			s.flushPresence()
			return
		}
		if !s.flushPresence() && retry == nil {
			retry = time.After(presenceRetryDelay)
		}
		if ending == nil && s.live.total() == 0 {
			s.flushPresence() // the last sessions' disconnections
			return
		}
	}
}

// flushPresence writes the pending changes, presenceWriters at a time;
// failed ones are put back (merged with newer ones). It reports whether
// all were written.
func (s *Service) flushPresence() bool {
	batch := s.rec.take()
	if len(batch) == 0 {
		return true
	}
	var (
		wg     sync.WaitGroup
		sem    = make(chan struct{}, presenceWriters)
		failed atomic.Bool
	)
	for k, p := range batch {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), presenceWriteTimeout)
			err := s.reg.RecordPresence(ctx, k.device, k.module, p)
			cancel()
			switch {
			case err == nil:
			case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrModuleNotFound):
				s.log.Debug("presence not recorded: the identity is gone", "clientId", clientKey(k.device, k.module))
			default:
				s.log.Warn("presence not recorded; retrying", "clientId", clientKey(k.device, k.module), "err", err)
				failed.Store(true)
				s.rec.putBack(k, p)
			}
		})
	}
	wg.Wait()
	return !failed.Load()
}

// putBack returns a change that could not be written, under newer ones.
func (r *presenceRecorder) putBack(k presenceKey, p registry.Presence) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[presenceKey]registry.Presence{}
	}
	r.pending[k] = mergePresence(p, r.pending[k])
}
