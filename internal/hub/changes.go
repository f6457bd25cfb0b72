package hub

// This file relays changes between the instances of one hub that share a
// store (several `muster serve` on one PostgreSQL database). A session
// lives on one instance, but the write that concerns it (a desired-property
// patch, a C2D message, a disable or a delete) may arrive on another. The
// instance that made the write appends a small entry to a shared durable
// stream (ChangeStream) after the write commits; every instance follows
// the stream and does, for its own sessions, what the writing instance did
// for its own: wake the desired-property watchers, wake the C2D receivers,
// end the sessions of a revoked device.
//
// The entries are hints, not data: a woken watcher reads the stored twin
// and sends only what is newer than what it sent, a woken C2D receiver
// reads the stored queue. A lost or duplicated hint therefore costs at most
// a delay (until the device's next reconnect or the C2D sweep) or a
// redundant read, never a wrong message. (Direct methods use the same
// stream but are requests, not hints, with their acks and results:
// methods_relay.go. A revocation names a device, whose sessions and its
// modules' end, or one module.) Followers are woken by the
// store's StreamNotifier when it has one (PostgreSQL relays appends of
// other instances with LISTEN/NOTIFY) and poll every ChangePollInterval in
// any case, which bounds the delay when a notification is lost or the
// engine has none.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

// ChangeStream is the stream the instances of a hub exchange change hints
// on.
const ChangeStream = "$hub.changes"

// Timing of the change relay.
const (
	// ChangePollInterval bounds how long a follower waits before it reads
	// the stream again without a wake-up.
	ChangePollInterval = time.Second
	// ChangeRetention is how long hints are kept; they are only useful to
	// followers that are running, so a short tail suffices.
	ChangeRetention = 10 * time.Minute
	// ChangeRetentionBytes bounds the stream's size as well: relayed
	// direct methods carry payloads (up to 128 KiB each way), and a burst
	// of them must not grow the stream for ChangeRetention.
	ChangeRetentionBytes = 256 << 20
	// changeTrimInterval is how often a follower trims the stream.
	changeTrimInterval = time.Minute
	// changePublishTimeout bounds the appends of one hint (and one
	// append of a relayed call, ack or result).
	changePublishTimeout = 10 * time.Second
	// changePublishAttempts is how often a hint is tried, waiting
	// changePublishRetryDelay, then twice as long, between tries.
	changePublishAttempts   = 3
	changePublishRetryDelay = 100 * time.Millisecond
)

// Kinds of change hints.
const (
	changeDesired = "desired" // Key/Sub's desired properties may have changed
	changeRevoked = "revoked" // Key was disabled or deleted: end its sessions
	changeC2D     = "c2d"     // Key's C2D queue may hold messages
)

// changeDoc is the document of one hint (or of one relayed direct-method
// call, ack or result: methods_relay.go).
type changeDoc struct {
	Kind string `json:"kind"`
	// Origin is the relay that appended the hint; it skips its own.
	Origin string `json:"origin"`
	Why    string `json:"why,omitempty"`
	methodFields
}

// changeRelay appends and follows hints; a nil *changeRelay does nothing
// (a hub alone on its store).
type changeRelay struct {
	streams store.Streams
	notify  store.StreamNotifier // nil: poll only
	origin  string
	svc     *Service
	// methods are the relayed direct-method calls (methods_relay.go).
	methods methodRelay
	// recheck coalesces session rechecks, and peers are the other
	// instances heard from (changes_recheck.go).
	recheck recheckState
	peers   peerSet
	// start is where run follows from, once prepared (PrepareChanges).
	start    atomic.Int64
	prepared atomic.Bool
}

// newChangeRelay returns the relay of svc over streams, or nil when
// streams is nil.
func newChangeRelay(svc *Service, streams store.Streams) *changeRelay {
	if streams == nil {
		return nil
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	r := &changeRelay{streams: streams, origin: hex.EncodeToString(b), svc: svc, methods: newMethodRelay()}
	if n, ok := streams.(store.StreamNotifier); ok {
		r.notify = n
	}
	return r
}

// publish appends one hint. It runs after the write it announces has
// committed, and tries changePublishAttempts times (within
// changePublishTimeout): a hint appended twice costs a redundant read. A
// failure is logged, as the write itself stands: other instances then
// learn of it only at the device's next connection (or the next C2D
// sweep).
func (r *changeRelay) publish(kind, deviceID, moduleID, why string) {
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), changePublishTimeout)
	defer cancel()
	delay := changePublishRetryDelay
	for attempt := 1; ; attempt++ {
		err := r.append(ctx, deviceID, moduleID, changeDoc{Kind: kind, Why: why}, nil)
		if err == nil {
			return
		}
		if attempt == changePublishAttempts || errors.Is(err, store.ErrTooLarge) || ctx.Err() != nil {
			r.svc.log.Warn("change hint not shared with the other instances; their sessions learn of it when they reconnect",
				"kind", kind, "deviceId", deviceID, "moduleId", moduleID, "attempts", attempt, "err", err)
			return
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		delay *= 2
	}
}

// append appends one entry of this relay (d.Origin is set here) with an
// optional body.
func (r *changeRelay) append(ctx context.Context, deviceID, moduleID string, d changeDoc, body []byte) error {
	d.Origin = r.origin
	doc, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode the %s entry: %w", d.Kind, err)
	}
	e := store.StreamEntry{Key: deviceID, Sub: moduleID, Time: r.svc.now().UTC(), Doc: doc, Body: body}
	if _, err := r.streams.AppendMessages(ctx, ChangeStream, []store.StreamEntry{e}); err != nil {
		return fmt.Errorf("append the %s entry to %s: %w", d.Kind, ChangeStream, err)
	}
	return nil
}

// run follows the stream from where prepare found its end (else from its
// current end) until ctx ends, applying the hints of other relays to this
// instance's sessions, and trims it. Without prepare, once it knows the
// end, it announces that this instance started, so that the others
// recheck their sessions (changes_recheck.go); it says the instance is
// alive until ctx ends, then that it stopped.
func (r *changeRelay) run(ctx context.Context) {
	if r == nil {
		return
	}
	cursor, ok := r.start.Load(), r.prepared.Load() // prepare announced the start
	if !ok {
		if cursor, ok = r.tail(ctx); ok {
			r.announce()
		}
	}
	if ok {
		var wg sync.WaitGroup
		wg.Go(func() { r.heartbeat(ctx) }) // changes_recheck.go
		r.follow(ctx, cursor)
		wg.Wait()
		r.publish(changeStopped, restartKey, "", "an instance of the hub stopped")
	}
	r.methods.served.Wait() // the calls this instance was serving end with ctx
}

// follow applies the hints after seq cursor until ctx ends, and trims
// the stream.
func (r *changeRelay) follow(ctx context.Context, cursor int64) {
	poll := time.NewTimer(ChangePollInterval)
	defer poll.Stop()
	trim := time.NewTicker(changeTrimInterval)
	defer trim.Stop()
	for {
		var woke <-chan struct{}
		if r.notify != nil {
			woke = r.notify.StreamChanged(ChangeStream) // before reading: no append is missed
		}
		entries, err := r.streams.ReadMessages(ctx, ChangeStream, cursor, store.StreamFilter{}, store.MaxStreamReadLimit)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.svc.log.Warn("change hints not read; retrying", "after", cursor, "err", err)
		default:
			for _, e := range entries {
				cursor = e.Seq
				r.apply(ctx, e)
			}
			if len(entries) == store.MaxStreamReadLimit {
				continue // more are waiting
			}
			r.checkPeers(ctx, r.svc.now())
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(ChangePollInterval)
		select {
		case <-ctx.Done():
			return
		case <-woke:
		case <-poll.C:
		case <-trim.C:
			r.trim(ctx)
		}
	}
}

// prepare reads where the stream ends, for run to follow from there, and
// announces that this instance started: before it takes any write whose
// hint a crash could lose, so that the others know it and recheck if it
// falls silent.
func (r *changeRelay) prepare(ctx context.Context) error {
	if r == nil {
		return nil
	}
	st, err := r.streams.StreamInfo(ctx, ChangeStream)
	if err != nil {
		return fmt.Errorf("read the end of %s: %w", ChangeStream, err)
	}
	r.start.Store(st.LastSeq)
	r.prepared.Store(true)
	r.announce()
	return nil
}

// tail returns the stream's last seq, retrying until it is read or ctx
// ends (ok false).
func (r *changeRelay) tail(ctx context.Context) (int64, bool) {
	for {
		st, err := r.streams.StreamInfo(ctx, ChangeStream)
		if err == nil {
			return st.LastSeq, true
		}
		if ctx.Err() != nil {
			return 0, false
		}
		r.svc.log.Warn("change hints: the stream's end not read; retrying", "err", err)
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(ChangePollInterval):
		}
	}
}

// announce appends the hint that this instance started.
func (r *changeRelay) announce() {
	r.publish(changeRestarted, restartKey, "", "an instance of the hub started")
}

// trim drops hints older than ChangeRetention.
func (r *changeRelay) trim(ctx context.Context) {
	if _, err := r.streams.TrimStream(ctx, ChangeStream, store.Retention{Before: r.svc.now().Add(-ChangeRetention), MaxBytes: ChangeRetentionBytes}); err != nil && ctx.Err() == nil {
		r.svc.log.Warn("change hints not trimmed", "err", err)
	}
}

// apply does, for this instance's sessions, what the hint's origin did
// for its own.
func (r *changeRelay) apply(ctx context.Context, e store.StreamEntry) {
	var d changeDoc
	if err := json.Unmarshal(e.Doc, &d); err != nil {
		r.svc.log.Warn("change hint skipped: undecodable", "seq", e.Seq, "err", err)
		return
	}
	if d.Origin == r.origin {
		return
	}
	r.peers.seen(d.Origin, d.Kind, r.svc.now())
	switch d.Kind {
	case changeDesired:
		r.svc.wakeLocalWatchers(clientKey(e.Key, e.Sub))
	case changeRevoked:
		why := d.Why
		if why == "" {
			why = "the identity was revoked on another instance"
		}
		var match func(*Session) bool // a device: its sessions and its modules'
		if e.Sub != "" {
			match = func(sess *Session) bool { return sess.id.ModuleID == e.Sub }
		}
		r.svc.disconnect(r.svc.live.revoke(e.Key, match), why)
	case changeMethod:
		r.serveCall(ctx, e, d)
	case changeMethodAck, changeMethodResult:
		if d.To == r.origin {
			r.methods.deliver(d, e.Body)
		}
	case changeC2D:
		r.svc.c2dMayWait(e.Key)
	case changeRestarted:
		r.recheckSoon(ctx)
	case changeAlive, changeStopped: // peers.seen
	default:
		r.svc.log.Debug("change hint of an unknown kind skipped", "seq", e.Seq, "kind", d.Kind)
	}
}
