package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/store"
)

func openInternal(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "x.db"), Options{AttemptLimit: 3})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func docRequest(ctx context.Context, writes ...store.Write) *request {
	r := newRequest(ctx)
	r.writes = writes
	return r
}

func attemptRequest(ctx context.Context, id string, at time.Time) *request {
	r := newRequest(ctx)
	r.attempt = &attemptRow{id: id, ts: formatTime(at), registrationID: "dev", doc: `{"id":"` + id + `","time":"` + at.Format(time.RFC3339Nano) + `","registrationId":"dev"}`}
	return r
}

func put(kind store.Kind, id string, cond store.Cond) store.Write {
	return store.Write{Record: store.Record{Kind: kind, ID: id, Doc: json.RawMessage(`{"id":"` + id + `"}`)}, Cond: cond}
}

// TestBatchIsolation runs one batch directly (the writer goroutine is idle:
// nothing else is submitted) and checks that each request succeeds or fails
// on its own: a failing request is rolled back to its savepoint without
// touching the others, and a request whose context ended is not executed.
func TestBatchIsolation(t *testing.T) {
	s := openInternal(t)
	ctx := t.Context()
	x, err := s.Put(ctx, store.Record{Kind: store.KindDevice, ID: "x", Doc: json.RawMessage(`{"v":1}`)}, store.Cond{})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	tests := []struct {
		name    string
		req     *request
		wantErr error // nil: success
		index   int   // WriteError index when wantErr is set on a document request
	}{
		{"create a", docRequest(ctx, put(store.KindDevice, "a", store.Cond{})), nil, 0},
		{"stale if-match on x", docRequest(ctx, put(store.KindDevice, "x", store.Cond{IfMatch: "stale"})), store.ErrPrecondition, 0},
		{"attempt 1", attemptRequest(ctx, "at1", base), nil, 0},
		{"a exists in this batch", docRequest(ctx, put(store.KindDevice, "a", store.Cond{IfNoneMatch: true})), store.ErrExists, 0},
		{"cancelled", docRequest(cancelled, put(store.KindDevice, "never", store.Cond{})), context.Canceled, 0},
		{"second write fails", docRequest(ctx, put(store.KindDevice, "b", store.Cond{}), store.Write{Record: store.Record{Kind: store.KindDevice, ID: "missing"}, Delete: true}), store.ErrNotFound, 1},
		{"duplicate attempt", attemptRequest(ctx, "at1", base), store.ErrExists, 0},
		{"replace x", docRequest(ctx, put(store.KindDevice, "x", store.Cond{IfMatch: x.ETag})), nil, 0},
		{"attempts 2-4", attemptRequest(ctx, "at2", base.Add(time.Second)), nil, 0},
		{"attempt 3", attemptRequest(ctx, "at3", base.Add(2*time.Second)), nil, 0},
		{"attempt 4", attemptRequest(ctx, "at4", base.Add(3*time.Second)), nil, 0},
	}
	batch := make([]*request, len(tests))
	for i, tc := range tests {
		batch[i] = tc.req
	}
	before := s.Stats()
	s.commitBatch(batch, nil)

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			select {
			case <-tc.req.done:
			default:
				t.Fatalf("request not answered")
			}
			if tc.wantErr == nil {
				if tc.req.err != nil {
					t.Fatalf("err = %v; want success", tc.req.err)
				}
				return
			}
			if !errors.Is(tc.req.err, tc.wantErr) {
				t.Fatalf("err = %v; want %v", tc.req.err, tc.wantErr)
			}
			var we *store.WriteError
			if errors.As(tc.req.err, &we) && we.Index != tc.index {
				t.Errorf("WriteError index = %d; want %d", we.Index, tc.index)
			}
		})
	}

	for _, id := range []string{"a", "x"} {
		if _, err := s.Get(ctx, store.KindDevice, id); err != nil {
			t.Errorf("Get %s: %v", id, err)
		}
	}
	for _, id := range []string{"never", "b"} {
		if _, err := s.Get(ctx, store.KindDevice, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get %s = %v; want ErrNotFound (its request failed)", id, err)
		}
	}
	got, err := s.Get(ctx, store.KindDevice, "x")
	if err != nil || got.ETag != tests[7].req.recs[0].ETag {
		t.Errorf("x = %+v, %v; want the replaced version", got, err)
	}
	// Limit 3: four attempts were appended in the batch, the oldest is trimmed.
	atts, err := s.Attempts(ctx, "", 10)
	if err != nil {
		t.Fatalf("Attempts: %v", err)
	}
	var ids []string
	for _, a := range atts {
		ids = append(ids, a.ID)
	}
	if diff := cmp.Diff([]string{"at4", "at3", "at2"}, ids); diff != "" {
		t.Errorf("attempts (-want +got):\n%s", diff)
	}
	// One commit for the whole batch; the cancelled request was not executed.
	after := s.Stats()
	want := Stats{Batches: 1, Requests: uint64(len(tests) - 1), Rows: 6}
	got2 := Stats{Batches: after.Batches - before.Batches, Requests: after.Requests - before.Requests, Rows: after.Rows - before.Rows}
	if diff := cmp.Diff(want, got2); diff != "" {
		t.Errorf("stats of the batch (-want +got):\n%s", diff)
	}
}

// TestAbandonedRequestNotApplied checks the hand-over between a caller whose
// context ends and the writer: a request abandoned while queued is never
// executed, and a taken one is answered with its real outcome.
func TestAbandonedRequestNotApplied(t *testing.T) {
	s := openInternal(t)
	ctx, cancel := context.WithCancel(t.Context())
	r := docRequest(ctx, put(store.KindDevice, "abandoned", store.Cond{}))
	if !r.state.CompareAndSwap(stateQueued, stateAbandoned) {
		t.Fatalf("fresh request not queued")
	}
	cancel()
	s.commitBatch([]*request{r}, nil)
	<-r.done
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("abandoned request answered %v; want context.Canceled", r.err)
	}
	if _, err := s.Get(t.Context(), store.KindDevice, "abandoned"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("abandoned request applied: Get = %v", err)
	}

	taken := docRequest(t.Context(), put(store.KindDevice, "taken", store.Cond{}))
	s.commitBatch([]*request{taken}, nil)
	<-taken.done
	if taken.err != nil || taken.state.Load() != stateTaken {
		t.Errorf("taken request: err %v state %d", taken.err, taken.state.Load())
	}
	if taken.state.CompareAndSwap(stateQueued, stateAbandoned) {
		t.Errorf("a taken request could still be abandoned")
	}
}

func TestJSONDepth(t *testing.T) {
	tests := []struct {
		doc  string
		want int
	}{
		{`1`, 0},
		{`{}`, 1},
		{`[[],{"a":[1]}]`, 3},
		{`{"a":"[[[[\"{{{"}`, 1},
		{`["\\",[["\\\""]]]`, 3},
	}
	for _, tc := range tests {
		t.Run(tc.doc, func(t *testing.T) {
			if got := store.JSONDepth([]byte(tc.doc)); got != tc.want {
				t.Errorf("JSONDepth(%s) = %d; want %d", tc.doc, got, tc.want)
			}
		})
	}
}

func TestTickStrictlyIncreasing(t *testing.T) {
	s := &Store{lastTick: time.Now().UTC().Add(time.Hour)} // a clock that went back
	prev := s.lastTick
	for range 1000 {
		got := s.tick()
		if !got.After(prev) || got.Location() != time.UTC {
			t.Fatalf("tick %v after %v", got, prev)
		}
		prev = got
	}
}

// TestBatchMerged runs a batch the first pass merges (merge.go): plain
// upserts and attempts, more documents than one merged statement takes, a
// key written by two requests (which splits the run), and an update of an
// existing record (which keeps its Created). Every request succeeds in one
// commit, with the records the table holds. A duplicate attempt ID inside
// a run then fails only its own request.
func TestBatchMerged(t *testing.T) {
	s := openInternal(t)
	ctx := t.Context()
	old, err := s.Put(ctx, store.Record{Kind: store.KindTwin, ID: "old", Doc: json.RawMessage(`{"v":1}`)}, store.Cond{})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var batch []*request
	for i := range 2*mergeRows + 3 {
		id := fmt.Sprintf("dev-%03d", i)
		r := docRequest(ctx, put(store.KindDevice, id, store.Cond{}), put(store.KindRegistration, id, store.Cond{}))
		r.attempt = attemptRequest(ctx, fmt.Sprintf("at-%03d", i), base.Add(time.Duration(i)*time.Second)).attempt
		batch = append(batch, r)
	}
	again := docRequest(ctx, put(store.KindDevice, "dev-001", store.Cond{}), put(store.KindTwin, "old", store.Cond{}))
	batch = append(batch, again)

	before := s.Stats()
	s.commitBatch(batch, nil)
	after := s.Stats()
	if after.Batches-before.Batches != 1 {
		t.Errorf("%d commits; want 1", after.Batches-before.Batches)
	}
	if got, want := after.Rows-before.Rows, uint64(3*(2*mergeRows+3)+2); got != want {
		t.Errorf("rows written = %d; want %d", got, want)
	}
	for i, r := range batch {
		<-r.done
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if len(r.recs) != len(r.writes) {
			t.Fatalf("request %d: %d records for %d writes", i, len(r.recs), len(r.writes))
		}
		for j, rec := range r.recs {
			w := r.writes[j].Record
			if rec.Kind != w.Kind || rec.ID != w.ID || string(rec.Doc) != string(w.Doc) || rec.ETag == "" {
				t.Errorf("request %d write %d: record %+v for %s %s", i, j, rec, w.Kind, w.ID)
			}
		}
	}
	// The last writer of dev-001 wins, and its record is what is stored.
	got, err := s.Get(ctx, store.KindDevice, "dev-001")
	if err != nil || got.ETag != again.recs[0].ETag {
		t.Errorf("dev-001 = %+v, %v; want etag %s", got, err, again.recs[0].ETag)
	}
	// An update keeps Created, and reports it.
	twin := again.recs[1]
	if !twin.Created.Equal(old.Created) || !twin.Updated.After(old.Updated) {
		t.Errorf("updated twin created %v updated %v; want created %v, updated after %v", twin.Created, twin.Updated, old.Created, old.Updated)
	}
	if got, err := s.Get(ctx, store.KindTwin, "old"); err != nil || !got.Created.Equal(old.Created) || got.ETag != twin.ETag {
		t.Errorf("stored twin %+v, %v", got, err)
	}
	// A new record's Created is its first write.
	if rec := batch[5].recs[0]; !rec.Created.Equal(rec.Updated) {
		t.Errorf("new record created %v updated %v; want equal", rec.Created, rec.Updated)
	}

	// A request that writes one existing key twice runs on its own: both
	// of its records keep the stored Created, and the second one is stored.
	twice := docRequest(ctx, put(store.KindTwin, "old", store.Cond{}), put(store.KindTwin, "old", store.Cond{}))
	s.commitBatch([]*request{docRequest(ctx, put(store.KindDevice, "before", store.Cond{})), twice}, nil)
	<-twice.done
	if twice.err != nil {
		t.Fatalf("request writing a key twice: %v", twice.err)
	}
	for i, rec := range twice.recs {
		if !rec.Created.Equal(old.Created) {
			t.Errorf("write %d of the same key: created %v; want %v", i, rec.Created, old.Created)
		}
	}
	if got, err := s.Get(ctx, store.KindTwin, "old"); err != nil || got.ETag != twice.recs[1].ETag {
		t.Errorf("stored %+v, %v; want the second write (etag %s)", got, err, twice.recs[1].ETag)
	}

	// A duplicate attempt ID inside a run: the merged pass fails, and the
	// one-at-a-time pass refuses only the duplicate.
	ok1 := docRequest(ctx, put(store.KindDevice, "ok-1", store.Cond{}))
	ok1.attempt = attemptRequest(ctx, "dup-new", base).attempt
	dup := docRequest(ctx, put(store.KindDevice, "dup-doc", store.Cond{}))
	dup.attempt = attemptRequest(ctx, "dup-new", base).attempt
	ok2 := docRequest(ctx, put(store.KindDevice, "ok-2", store.Cond{}))
	s.commitBatch([]*request{ok1, dup, ok2}, nil)
	for _, r := range []*request{ok1, ok2} {
		<-r.done
		if r.err != nil {
			t.Errorf("request beside the duplicate: %v", r.err)
		}
	}
	<-dup.done
	if !errors.Is(dup.err, store.ErrExists) {
		t.Errorf("duplicate attempt: %v; want ErrExists", dup.err)
	}
	if _, err := s.Get(ctx, store.KindDevice, "dup-doc"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused request's document was written: %v", err)
	}
	for _, id := range []string{"ok-1", "ok-2"} {
		if _, err := s.Get(ctx, store.KindDevice, id); err != nil {
			t.Errorf("Get %s: %v", id, err)
		}
	}
}

// TestGetCancelled: a read whose context has ended is refused before it
// starts (once started, a primary-key read is not interrupted).
func TestGetCancelled(t *testing.T) {
	s := openInternal(t)
	if _, err := s.Put(t.Context(), store.Record{Kind: store.KindDevice, ID: "d", Doc: json.RawMessage(`{}`)}, store.Cond{}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	if _, err := s.Get(ctx, store.KindDevice, "d"); err != nil {
		t.Fatalf("Get: %v", err)
	}
	cancel()
	if _, err := s.Get(ctx, store.KindDevice, "d"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context = %v; want context.Canceled", err)
	}
}

// TestCommitDelayExecutesArrivals: requests that arrive while the writer
// waits out its commit delay join the open transaction (the first ones are
// already executed by then), and when one of them fails the whole grown
// batch runs again isolated, so only that request fails and they still
// share one commit.
func TestCommitDelayExecutesArrivals(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "x.db"), Options{AttemptLimit: 100, CommitDelay: 5 * time.Second})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	stale, err := s.Put(ctx, store.Record{Kind: store.KindDevice, ID: "x", Doc: json.RawMessage(`{"v":1}`)}, store.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	// The writer waits only after a batch of more than one request: hold it
	// in a request of its own while two more queue up, so that those two
	// share the next commit.
	started, release := make(chan struct{}), make(chan struct{})
	hold := newRequest(ctx)
	hold.exec = func(context.Context) (int, error) {
		close(started)
		<-release
		return 0, nil
	}
	errs := make(chan error, 3)
	go func() {
		_, err := s.submit(ctx, hold)
		errs <- err
	}()
	<-started
	for j := range 2 {
		go func() {
			_, err := s.submit(ctx, docRequest(ctx, put(store.KindDevice, fmt.Sprintf("warm-%d", j), store.Cond{})))
			errs <- err
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); len(s.queue) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the two requests did not queue behind the held one")
		}
	}
	close(release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	before := s.Stats()
	type outcome struct {
		name string
		err  error
	}
	out := make(chan outcome, 4)
	// send submits r and returns once the writer has taken it, so the
	// requests join the batch in this order.
	send := func(name string, w store.Write) {
		r := docRequest(ctx, w)
		go func() {
			_, err := s.submit(ctx, r)
			out <- outcome{name, err}
		}()
		for deadline := time.Now().Add(10 * time.Second); r.state.Load() != stateTaken; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the writer did not take %s", name)
			}
		}
	}
	send("first", put(store.KindDevice, "first", store.Cond{}))
	current, err := s.Get(ctx, store.KindDevice, "x")
	if err != nil {
		t.Fatal(err)
	}
	send("update", store.Write{Record: store.Record{Kind: store.KindDevice, ID: "x", Doc: json.RawMessage(`{"v":2}`)}, Cond: store.Cond{IfMatch: current.ETag}})
	send("later", put(store.KindDevice, "later", store.Cond{}))
	// The failing request comes last (a failure ends the collection): the
	// update before it, in the same transaction, made its etag stale.
	send("stale", put(store.KindDevice, "x", store.Cond{IfMatch: stale.ETag}))
	got := map[string]error{}
	for range 4 {
		o := <-out
		got[o.name] = o.err
	}
	if got["first"] != nil || got["update"] != nil || got["later"] != nil || !errors.Is(got["stale"], store.ErrPrecondition) {
		t.Fatalf("outcomes %v; want stale to fail with ErrPrecondition and the others to succeed", got)
	}
	for _, id := range []string{"first", "later"} {
		if _, err := s.Get(ctx, store.KindDevice, id); err != nil {
			t.Fatalf("Get %s: %v", id, err)
		}
	}
	if st := s.Stats(); st.Batches-before.Batches != 1 || st.Requests-before.Requests != 4 {
		t.Fatalf("%d batches for %d requests, want all four in one", st.Batches-before.Batches, st.Requests-before.Requests)
	}
}
