package provision_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
)

// gatedStore holds every ApplyWithAttempt until the gate opens, and fails
// it while fail is set: a commit the test controls.
type gatedStore struct {
	*memstore.Store
	mu      sync.Mutex
	gate    chan struct{}
	fail    error
	entered atomic.Int32
}

func (g *gatedStore) close() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedStore) open() {
	g.mu.Lock()
	close(g.gate)
	g.mu.Unlock()
}

func (g *gatedStore) ApplyWithAttempt(ctx context.Context, writes []store.Write, a store.Attempt) ([]store.Record, error) {
	g.entered.Add(1)
	g.mu.Lock()
	gate, fail := g.gate, g.fail
	g.mu.Unlock()
	<-gate
	if fail != nil {
		return nil, fail
	}
	return g.Store.ApplyWithAttempt(ctx, writes, a)
}

type asyncFixture struct {
	st  *gatedStore
	enr *enroll.Service
	svc *provision.Service
}

func newAsyncFixture(t *testing.T, pollWait time.Duration) *asyncFixture {
	t.Helper()
	st := &gatedStore{Store: memstore.New(1000), gate: make(chan struct{})}
	close(st.gate)
	var tick atomic.Int64
	base := time.Now()
	now := func() time.Time { return base.Add(time.Duration(tick.Add(1)) * time.Second) } // every reading is later
	hub := registry.New("hub1.example", st, now)
	enr := enroll.NewService(st, enroll.ServiceOptions{LinkedHubs: func() []string { return []string{"hub1.example"} }})
	svc, err := provision.New(provision.Options{IDScope: scope, Docs: st, Attempts: st, Enrollments: enr,
		Hubs: []provision.LinkedHub{{Hub: hub, Weight: 1, ApplyAllocationPolicy: true}}, Now: now,
		AnswerBeforeCommit: true, PollWait: pollWait})
	if err != nil {
		t.Fatal(err)
	}
	return &asyncFixture{st: st, enr: enr, svc: svc}
}

func (f *asyncFixture) individual(t *testing.T, id string) (provision.RegisterRequest, string) {
	t.Helper()
	e := &enroll.IndividualEnrollment{RegistrationID: id, Common: enroll.Common{Attestation: &enroll.AttestationMechanism{Type: "symmetricKey"}}}
	out, err := f.enr.PutEnrollment(context.Background(), e, "")
	if err != nil {
		t.Fatal(err)
	}
	key := out.Attestation.SymmetricKey.PrimaryKey
	return provision.RegisterRequest{IDScope: scope, RegistrationID: id, SAS: tokenFor(t, id, key), Protocol: "https"}, key
}

func (f *asyncFixture) poll(t *testing.T, req provision.RegisterRequest, op string) (*provision.OperationStatus, error) {
	t.Helper()
	return f.svc.OperationStatus(context.Background(), provision.OperationRequest{RegisterRequest: req, OperationID: op})
}

// TestAnswerBeforeCommitReportsAssignedOnlyOnceDurable: the register answer
// comes while the commit is held; polls meanwhile say assigning (never
// assigned), and the record exists once a poll says assigned.
func TestAnswerBeforeCommitReportsAssignedOnlyOnceDurable(t *testing.T) {
	f := newAsyncFixture(t, 50*time.Millisecond)
	ctx := context.Background()
	req, _ := f.individual(t, "async-dev")
	f.st.close()
	op, err := f.svc.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if op.Status != provision.StatusAssigning || op.HTTPStatus() != 202 {
		t.Fatalf("register answer %+v", op)
	}
	for range 2 {
		st, err := f.poll(t, req, op.OperationID)
		if err != nil || st.Status != provision.StatusAssigning || st.HTTPStatus() != 202 || st.OperationID != op.OperationID {
			t.Fatalf("poll while the commit is held: %+v %v", st, err)
		}
	}
	if _, err := f.st.Get(ctx, store.KindRegistration, "async-dev"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("record before the commit: %v", err)
	}
	// A poll that is waiting when the commit lands answers at once.
	type result struct {
		st  *provision.OperationStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := f.svc.OperationStatus(ctx, provision.OperationRequest{RegisterRequest: req, OperationID: op.OperationID})
		done <- result{st, err}
	}()
	f.st.open()
	var st *provision.OperationStatus
	for st == nil || st.Status == provision.StatusAssigning {
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		if st = r.st; st.Status == provision.StatusAssigning { // the waiting poll's PollWait ran out first
			go func() {
				st, err := f.poll(t, req, op.OperationID)
				done <- result{st, err}
			}()
		}
	}
	if st.Status != provision.StatusAssigned || st.RegistrationState.DeviceID != "async-dev" || st.RegistrationState.ETag == "" {
		t.Fatalf("poll after the commit: %+v", st)
	}
	rec, err := f.st.Get(ctx, store.KindRegistration, "async-dev")
	if err != nil {
		t.Fatalf("record after assigned was reported: %v", err)
	}
	if got := enroll.RegistrationETag(rec.ETag); got != st.RegistrationState.ETag {
		t.Fatalf("reported etag %q, stored %q", st.RegistrationState.ETag, got)
	}
	if err := f.svc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestAnswerBeforeCommitFailedCommit: a commit that fails is reported to
// the poll as an internal error, nothing is stored, and the device's next
// registration succeeds.
func TestAnswerBeforeCommitFailedCommit(t *testing.T) {
	f := newAsyncFixture(t, time.Minute)
	ctx := context.Background()
	req, _ := f.individual(t, "fails-once")
	f.st.fail = errors.New("disk full")
	op, err := f.svc.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var pe *provision.Error
	if _, err := f.poll(t, req, op.OperationID); !errors.As(err, &pe) || pe.Status != 500 {
		t.Fatalf("poll of a failed commit: %v", err)
	}
	if _, err := f.st.Get(ctx, store.KindRegistration, "fails-once"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("record of a failed commit: %v", err)
	}
	// The operation is gone: a later poll is told so, not told assigned.
	if _, err := f.poll(t, req, op.OperationID); !errors.As(err, &pe) || pe.Status != 404 {
		t.Fatalf("second poll of a failed commit: %v", err)
	}
	f.st.fail = nil
	op, err = f.svc.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.poll(t, req, op.OperationID)
	if err != nil || st.Status != provision.StatusAssigned {
		t.Fatalf("registration after the failure: %+v %v", st, err)
	}
}

// TestAnswerBeforeCommitSerialisesARegistration: a second register request
// of the same registration ID waits for the first one's commit, so it sees
// the record (its creation time is kept), and Drain waits for commits.
func TestAnswerBeforeCommitSerialisesARegistration(t *testing.T) {
	f := newAsyncFixture(t, time.Minute)
	ctx := context.Background()
	req, _ := f.individual(t, "twice")
	f.st.close()
	first, err := f.svc.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := f.svc.Drain(short); err == nil {
		t.Fatal("Drain returned while a commit was held")
	}
	second := make(chan error, 1)
	go func() {
		_, err := f.svc.Register(ctx, req)
		second <- err
	}()
	// Until the first commit lands, the second request must not reach the
	// store: only the first one has entered it.
	select {
	case err := <-second:
		t.Fatalf("second register answered while the first commit was held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if n := f.st.entered.Load(); n != 1 {
		t.Fatalf("%d commits entered the store while the first was held, want 1", n)
	}
	f.st.open()
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	rec, err := f.st.Get(ctx, store.KindRegistration, "twice")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := enroll.DecodeRegistration(rec)
	if err != nil {
		t.Fatal(err)
	}
	if reg.OperationID == first.OperationID || !reg.Created.Before(reg.Updated) {
		t.Fatalf("second registration did not build on the first: %+v", reg)
	}
	// The first operation's final answer stays available to its poll.
	st, err := f.poll(t, req, first.OperationID)
	if err != nil || st.Status != provision.StatusAssigned {
		t.Fatalf("poll of the first operation: %+v %v", st, err)
	}
}
