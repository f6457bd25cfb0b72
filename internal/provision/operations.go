package provision

import (
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/enroll"
)

// finished remembers the final answers of recent operations, so a device's
// poll of an operation this instance just completed is answered without
// reading the registration record again. DPS keeps an operation's final
// body for its lifetime (dps-protocol §2.8: "polling a finished operation
// returns the same final body"), so a remembered answer is the right one
// even after the record changed; a poll that misses (another instance, an
// old or evicted operation) falls back to the store. The poll is still
// authenticated before it is answered. The cache is bounded: the oldest
// operations are forgotten first.
type finished struct {
	mu   sync.Mutex
	ttl  time.Duration
	m    map[string]finishedOp
	ring []string
	next int
}

type finishedOp struct {
	regKey string // enroll.Key of the registration ID that owns the operation
	res    DeviceRegistrationResult
	until  time.Time
}

func newFinished(max int, ttl time.Duration) *finished {
	return &finished{ttl: ttl, m: make(map[string]finishedOp, max), ring: make([]string, max)}
}

// remember records reg's final state as the answer to its operation.
func (f *finished) remember(reg *enroll.Registration, now time.Time) {
	if reg.OperationID == "" {
		return
	}
	op := finishedOp{regKey: enroll.Key(reg.RegistrationID), res: *deviceResult(reg), until: now.Add(f.ttl)}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, seen := f.m[reg.OperationID]; !seen {
		delete(f.m, f.ring[f.next]) // forget the oldest (a no-op while filling)
		f.ring[f.next] = reg.OperationID
		f.next = (f.next + 1) % len(f.ring)
	}
	f.m[reg.OperationID] = op
}

// answer returns the remembered final state of operationID when it belongs
// to registrationID and has not expired. The result is a copy the caller
// may keep.
func (f *finished) answer(operationID, registrationID string, now time.Time) (*DeviceRegistrationResult, bool) {
	if operationID == "" {
		return nil, false
	}
	f.mu.Lock()
	op, ok := f.m[operationID]
	f.mu.Unlock()
	if !ok || !now.Before(op.until) || op.regKey != enroll.Key(registrationID) {
		return nil, false
	}
	res := op.res
	return &res, true
}
