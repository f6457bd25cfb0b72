package hub

// This file carries direct methods between the instances of one hub that
// share a store (changes.go). A method call arrives on the instance that
// serves the service API request (the caller); the target's connection
// may be held by another (the server). Unlike the other entries of the
// change stream, a call is not a hint that durable state changed: it is
// the request itself, and its answer must come back.
//
//  1. The caller, finding no local connection of the target subscribed
//     to methods, appends a call entry (method name, timeouts, a random
//     call ID, the payload as body) to ChangeStream.
//  2. Every instance follows the stream. One that has (or, within the
//     call's connect timeout, gets) a connection of the target subscribed
//     to methods appends an ack addressed to the caller, sends the
//     request to the device and, once it answers or the response timeout
//     passes, appends the result (status and payload, or why there is
//     none). An instance that has a connection of the target that is not
//     subscribed to methods answers that it is not online; the caller
//     takes that answer only if no instance acks in time, as the
//     connection may be a stale one of a device that reconnected to
//     another instance.
//  3. The caller waits for the ack for the connect timeout plus
//     methodAckWait (404 device not online if none comes: no instance has
//     the target connected), then for the result for the response timeout
//     plus methodAckWait (504 if none comes: the serving instance died).
//
// Entries travel through the store, so LISTEN/NOTIFY makes the round trip
// quick and the follower's poll bounds it when a notification is lost.
// The caller trusts the target's presence record only to answer at once
// when it says Disconnected and the call does not wait for a connection.
// A call entry read later than its caller waits for an ack is dropped, so
// a lagging instance does not run a method whose caller has given up; the
// instances' clocks must therefore agree to well within methodAckWait.
// If the target has connections on two instances at once (a reconnect
// racing the old connection's end), both may run the call; the caller
// takes the first result.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

// Kinds of the direct-method entries of the change stream.
const (
	changeMethod       = "method"       // a call of Key/Sub from Origin
	changeMethodAck    = "methodAck"    // Origin sent To's call to the target
	changeMethodResult = "methodResult" // the outcome of To's call
)

// methodAckWait is how long, beyond its connect timeout, a caller waits
// for another instance to take its call, and beyond its response timeout
// for the result once taken: it covers the relay's round trip when
// notifications are lost (two polls of ChangePollInterval) and the
// appends.
const methodAckWait = 3 * ChangePollInterval

// Outcomes of a relayed call that has no answer of the device.
const (
	outcomeNotOnline = "notOnline" // ErrDeviceNotOnline
	outcomeTimeout   = "timeout"   // ErrMethodTimeout
	outcomeFailed    = "failed"    // any other failure of the serving instance
)

// methodFields are the direct-method fields of a changeDoc.
type methodFields struct {
	// Call identifies a relayed call; To is the relay of its caller, to
	// which acks and results are addressed.
	Call string `json:"call,omitempty"`
	To   string `json:"to,omitempty"`
	// Method and the timeouts (ms) describe a call; its payload is the
	// entry's body.
	Method            string `json:"method,omitempty"`
	ResponseTimeoutMs int64  `json:"responseTimeoutMs,omitempty"`
	ConnectTimeoutMs  int64  `json:"connectTimeoutMs,omitempty"`
	// Status is the device's answer in a result without Outcome (its
	// payload is the entry's body); Outcome says why there is none, with
	// the details in changeDoc.Why.
	Status  int    `json:"status,omitempty"`
	Outcome string `json:"outcome,omitempty"`
}

// relayedReply is an ack or a result for a call of this instance.
type relayedReply struct {
	doc  changeDoc
	body []byte
}

// methodRelay is a relay's direct-method bookkeeping.
type methodRelay struct {
	// ackWait is methodAckWait (shorter in tests).
	ackWait time.Duration
	mu      sync.Mutex
	// waiting are the calls of this instance awaiting an ack or result,
	// by call ID.
	waiting map[string]chan relayedReply
	// served counts the calls of other instances this one is serving
	// (and the session rechecks: changes_recheck.go).
	served sync.WaitGroup
}

func newMethodRelay() methodRelay {
	return methodRelay{ackWait: methodAckWait, waiting: map[string]chan relayedReply{}}
}

// deliver hands an ack or a result to the call waiting for it; one nobody
// waits for (late, or already answered) is dropped.
func (m *methodRelay) deliver(d changeDoc, body []byte) {
	m.mu.Lock()
	ch := m.waiting[d.Call]
	m.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- relayedReply{doc: d, body: body}:
	default: // the call takes one ack and one result; more are duplicates
	}
}

// expect registers a call and returns the channel its replies arrive on
// and a function that forgets it.
func (m *methodRelay) expect(call string) (<-chan relayedReply, func()) {
	ch := make(chan relayedReply, 4)
	m.mu.Lock()
	m.waiting[call] = ch
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.waiting, call)
		m.mu.Unlock()
	}
}

// invoke relays a call to the instance that holds the target's
// connection and returns its answer. payload is checked already. Errors
// wrap ErrDeviceNotOnline when no instance takes the call (or the target
// disconnects before answering) and ErrMethodTimeout when the answer does
// not come in time.
func (r *changeRelay) invoke(ctx context.Context, c MethodCall, payload []byte) (MethodResult, error) {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	call := hex.EncodeToString(b)
	replies, forget := r.methods.expect(call)
	defer forget()
	d := changeDoc{methodFields: methodFields{Call: call, Method: c.Name,
		ResponseTimeoutMs: c.ResponseTimeout.Milliseconds(), ConnectTimeoutMs: c.ConnectTimeout.Milliseconds()}}
	d.Kind = changeMethod
	actx, cancel := context.WithTimeout(ctx, changePublishTimeout)
	err := r.append(actx, c.DeviceID, c.ModuleID, d, payload)
	cancel()
	if err != nil {
		return MethodResult{}, fmt.Errorf("relay the call to the other instances: %w", err)
	}
	key := clientKey(c.DeviceID, c.ModuleID)
	wait := time.NewTimer(c.ConnectTimeout + r.methods.ackWait)
	defer wait.Stop()
	var (
		taken bool
		acked = map[string]bool{} // origins that took the call
		// unsubscribed is a "not online" of an instance holding an
		// unsubscribed connection (perhaps a stale one, the device having
		// reconnected elsewhere): it stands only if no instance takes the
		// call.
		unsubscribed *relayedReply
	)
	for {
		var changed <-chan struct{}
		if !taken && c.ConnectTimeout > 0 {
			// The target may connect to this instance while we wait.
			sess, ch := r.svc.methodTarget(key)
			if sess != nil {
				return r.svc.callSession(ctx, sess, c.Name, payload, c.ResponseTimeout)
			}
			changed = ch
		}
		select {
		case rep := <-replies:
			switch {
			case rep.doc.Kind == changeMethodAck:
				acked[rep.doc.Origin] = true
				if !taken {
					taken = true
					wait.Reset(c.ResponseTimeout + r.methods.ackWait)
				}
				continue
			case rep.doc.Outcome == outcomeNotOnline && !acked[rep.doc.Origin]:
				unsubscribed = &rep
				continue
			}
			return relayedResult(rep)
		case <-changed:
		case <-wait.C:
			if taken {
				return MethodResult{}, fmt.Errorf("%w: the instance holding its connection sent no answer within %v", ErrMethodTimeout, c.ResponseTimeout+r.methods.ackWait)
			}
			if unsubscribed != nil {
				return relayedResult(*unsubscribed)
			}
			return MethodResult{}, fmt.Errorf("%w: no instance of the hub has a connection of it subscribed to %s (waited %v)", ErrDeviceNotOnline, MethodsFilter, c.ConnectTimeout+r.methods.ackWait)
		case <-ctx.Done():
			return MethodResult{}, ctx.Err()
		}
	}
}

// relayedResult turns a relayed result into InvokeMethod's return values.
func relayedResult(rep relayedReply) (MethodResult, error) {
	d := rep.doc
	switch d.Outcome {
	case "":
		return MethodResult{Status: d.Status, Payload: resultPayload(rep.body)}, nil
	case outcomeNotOnline:
		return MethodResult{}, fmt.Errorf("%w: %s (on instance %s)", ErrDeviceNotOnline, d.Why, d.Origin)
	case outcomeTimeout:
		return MethodResult{}, fmt.Errorf("%w: %s (on instance %s)", ErrMethodTimeout, d.Why, d.Origin)
	default:
		return MethodResult{}, fmt.Errorf("the call failed on instance %s: %s", d.Origin, d.Why)
	}
}

// serveCall serves a call of another instance in the background when
// this instance has, or gets within the call's connect timeout, a
// connection of its target subscribed to methods; it ends with ctx.
func (r *changeRelay) serveCall(ctx context.Context, e store.StreamEntry, d changeDoc) {
	connect := time.Duration(d.ConnectTimeoutMs) * time.Millisecond
	response := time.Duration(d.ResponseTimeoutMs) * time.Millisecond
	if age := r.svc.now().Sub(e.Time); age > connect+r.methods.ackWait {
		r.svc.log.Warn("relayed direct method dropped: read after its caller stopped waiting (is this instance lagging, or its clock off?)",
			"method", d.Method, "clientId", clientKey(e.Key, e.Sub), "age", age)
		return
	}
	key := clientKey(e.Key, e.Sub)
	if connect == 0 {
		if sess, _ := r.svc.methodTarget(key); sess == nil {
			if r.svc.live.has(e.Key, e.Sub) { // in the background: the follower must not wait for the append
				r.methods.served.Go(func() {
					r.reply(ctx, e, d, changeDoc{Kind: changeMethodResult, Why: "its connection is not subscribed to " + MethodsFilter, methodFields: methodFields{Outcome: outcomeNotOnline}}, nil)
				})
			}
			return
		}
	}
	r.methods.served.Go(func() {
		sess, err := r.svc.awaitMethodTarget(ctx, key, connect)
		if err != nil {
			return // not connected here: another instance serves it, or none
		}
		if !r.reply(ctx, e, d, changeDoc{Kind: changeMethodAck}, nil) {
			return // the caller would not know: better not run it
		}
		res, err := r.svc.callSession(ctx, sess, d.Method, e.Body, response)
		out := changeDoc{Kind: changeMethodResult}
		switch {
		case err == nil:
			out.Status = res.Status
		case errors.Is(err, ErrDeviceNotOnline):
			out.Outcome, out.Why = outcomeNotOnline, err.Error()
		case errors.Is(err, ErrMethodTimeout):
			out.Outcome, out.Why = outcomeTimeout, err.Error()
		default:
			out.Outcome, out.Why = outcomeFailed, err.Error()
		}
		r.reply(ctx, e, d, out, res.Payload)
	})
}

// reply appends out, an ack or a result for the call d of entry e, and
// reports whether it was appended.
func (r *changeRelay) reply(ctx context.Context, e store.StreamEntry, d, out changeDoc, payload json.RawMessage) bool {
	out.Call, out.To = d.Call, d.Origin
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), changePublishTimeout)
	defer cancel()
	err := r.append(actx, e.Key, e.Sub, out, payload)
	if errors.Is(err, store.ErrTooLarge) && out.Outcome == "" {
		out.Status, out.Outcome, out.Why = 0, outcomeFailed, fmt.Sprintf("the device's answer (%d bytes) is too large to relay", len(payload))
		err = r.append(actx, e.Key, e.Sub, out, nil)
	}
	if err != nil {
		r.svc.log.Warn("relayed direct method: reply not appended; the caller will time out",
			"method", d.Method, "clientId", clientKey(e.Key, e.Sub), "kind", out.Kind, "err", err)
		return false
	}
	return true
}
