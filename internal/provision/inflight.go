package provision

import (
	"context"
	"sync"

	"github.com/muster-iot/muster/internal/enroll"
)

// inflight tracks the registrations whose register request was answered
// (202, assigning) before their commit finished, when
// Options.AnswerBeforeCommit is on. A poll of such an operation waits for
// its commit, so "assigned" is still only reported once the identity and
// record are durable; a new register request or status lookup of the same
// registration ID waits too, so it reads the record the commit wrote.
type inflight struct {
	mu    sync.Mutex
	byOp  map[string]*pending // by operation ID
	byReg map[string]*pending // by enroll.Key of the registration ID
	n     int                 // pending commits
	idle  chan struct{}       // closed when n drops to 0
}

// pending is one registration whose commit is under way.
type pending struct {
	regID, regKey, opID string
	done                chan struct{}
	// res is the final answer, set before done is closed; nil when the
	// commit failed.
	res *DeviceRegistrationResult
}

func newInflight() *inflight {
	return &inflight{byOp: map[string]*pending{}, byReg: map[string]*pending{}}
}

// start records a commit that is about to run in the background.
func (f *inflight) start(regID, opID string) *pending {
	p := &pending{regID: regID, regKey: enroll.Key(regID), opID: opID, done: make(chan struct{})}
	f.mu.Lock()
	f.byOp[opID] = p
	f.byReg[p.regKey] = p
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
	return p
}

// finish publishes p's outcome (nil when the commit failed) and wakes its
// waiters.
func (f *inflight) finish(p *pending, res *DeviceRegistrationResult) {
	p.res = res
	f.mu.Lock()
	delete(f.byOp, p.opID)
	if f.byReg[p.regKey] == p {
		delete(f.byReg, p.regKey)
	}
	close(p.done)
	if f.n--; f.n == 0 {
		close(f.idle)
	}
	f.mu.Unlock()
}

// operation returns the pending commit of an operation, or nil.
func (f *inflight) operation(opID string) *pending {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byOp[opID]
}

// settle waits until no commit of the registration is pending.
func (f *inflight) settle(ctx context.Context, regKey string) error {
	for {
		f.mu.Lock()
		p := f.byReg[regKey]
		f.mu.Unlock()
		if p == nil {
			return nil
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// drain waits until no commit is pending, or for ctx to end.
func (f *inflight) drain(ctx context.Context) error {
	for {
		f.mu.Lock()
		n, idle := f.n, f.idle
		f.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
