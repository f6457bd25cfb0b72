package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/postgres"
	"github.com/muster-iot/muster/internal/store/postgres/pgtest"
	"github.com/muster-iot/muster/internal/store/storetest"
)

// testAttemptLimit keeps the conformance suite's bound test small.
const testAttemptLimit = 300

// open opens a store on dsn and closes it when the test ends.
func open(t testing.TB, dsn string, opts postgres.Options) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// reopener maps the suites' directories to schemas: the same directory
// opens the same schema again.
func reopener(t *testing.T, opts postgres.Options) func(t *testing.T, dir string) *postgres.Store {
	schemas := map[string]string{}
	return func(st *testing.T, dir string) *postgres.Store {
		dsn, ok := schemas[dir]
		if !ok {
			dsn = pgtest.Schema(t) // dropped when the whole test ends
			schemas[dir] = dsn
		}
		return open(st, dsn, opts)
	}
}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, pgtest.Schema(t), postgres.Options{AttemptLimit: testAttemptLimit})
	})
}

func TestPostgresConformanceSmallBatches(t *testing.T) {
	// One request per transaction, one writer: no group commit at all.
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, pgtest.Schema(t), postgres.Options{AttemptLimit: testAttemptLimit, MaxBatch: 1, Writers: 1})
	})
}

func TestPostgresReopen(t *testing.T) {
	reopen := reopener(t, postgres.Options{})
	storetest.RunReopen(t, func(t *testing.T, dir string) store.Store { return reopen(t, dir) })
}

func TestPostgresStreamConformance(t *testing.T) {
	storetest.RunStream(t, func(t *testing.T) store.StreamStore {
		return open(t, pgtest.Schema(t), postgres.Options{})
	})
}

func TestPostgresStreamConformanceSmallBatchesNoNotify(t *testing.T) {
	storetest.RunStream(t, func(t *testing.T) store.StreamStore {
		return open(t, pgtest.Schema(t), postgres.Options{MaxBatch: 1, Writers: 1, NoNotify: true})
	})
}

func TestPostgresStreamReopen(t *testing.T) {
	reopen := reopener(t, postgres.Options{})
	storetest.RunStreamReopen(t, func(t *testing.T, dir string) store.StreamStore { return reopen(t, dir) })
}

func TestPostgresOpenRejects(t *testing.T) {
	base := pgtest.BaseDSN(t)
	missingSchema, err := pgtest.WithSearchPath(base, "no_such_schema_for_muster")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dsn  string
		opts postgres.Options
		want string
	}{
		{"malformed dsn", "postgres://muster:s3cret-pw@[::1", postgres.Options{}, "cannot parse"},
		{"refused connection", "postgres://muster:s3cret-pw@127.0.0.1:1/db?sslmode=disable&connect_timeout=5", postgres.Options{}, "postgres://muster@127.0.0.1:1/db"},
		{"missing schema", missingSchema, postgres.Options{}, "no schema of the search_path exists"},
		{"negative attempt limit", base, postgres.Options{AttemptLimit: -1}, "AttemptLimit -1 is negative"},
		{"negative batch", base, postgres.Options{MaxBatch: -2}, "MaxBatch -2 is negative"},
		{"negative writers", base, postgres.Options{Writers: -3}, "Writers -3 is negative"},
		{"negative timeout", base, postgres.Options{BatchTimeout: -time.Second}, "BatchTimeout -1s is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := postgres.Open(t.Context(), tc.dsn, tc.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open error = %q; want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret-pw") {
				t.Errorf("Open error %q reveals the password", err)
			}
		})
	}
}

func TestPostgresOpenDefaults(t *testing.T) {
	s := open(t, pgtest.Schema(t), postgres.Options{})
	if got := s.AttemptLimit(); got != postgres.DefaultAttemptLimit {
		t.Errorf("AttemptLimit = %d; want %d", got, postgres.DefaultAttemptLimit)
	}
	if strings.Contains(s.Target(), "@") && strings.Contains(s.Target(), ":@") {
		t.Errorf("Target %q looks like it carries a password", s.Target())
	}
}

// TestConcurrentMigration starts several stores on one fresh schema at
// once, as instances of a fleet starting together do: all of them migrate
// (one applies the migrations, the others wait and find nothing to do) and
// then work on the same tables.
func TestPostgresConcurrentMigration(t *testing.T) {
	dsn := pgtest.Schema(t)
	const instances = 4
	stores := make([]*postgres.Store, instances)
	errs := make([]error, instances)
	var wg sync.WaitGroup
	for i := range instances {
		wg.Go(func() {
			stores[i], errs[i] = postgres.Open(t.Context(), dsn, postgres.Options{})
		})
	}
	wg.Wait()
	for i, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
		if errs[i] != nil {
			t.Fatalf("store %d: Open: %v", i, errs[i])
		}
	}
	for i, s := range stores {
		if _, err := s.Put(t.Context(), store.Record{Kind: store.KindDevice, ID: fmt.Sprint("dev-", i), Doc: json.RawMessage(`{}`)}, store.Cond{IfNoneMatch: true}); err != nil {
			t.Fatalf("store %d: Put: %v", i, err)
		}
	}
	for i, s := range stores {
		if n, err := s.Count(t.Context(), store.KindDevice, ""); err != nil || n != instances {
			t.Errorf("store %d: Count = %d, %v; want %d", i, n, err, instances)
		}
	}
}

// TestInstancesCompareAndSet runs compare-and-set loops through two stores
// on one schema: the etag check holds between them, so every successful
// write counts exactly once.
func TestPostgresInstancesCompareAndSet(t *testing.T) {
	dsn := pgtest.Schema(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	type counter struct {
		N int `json:"n"`
	}
	if _, err := a.Put(t.Context(), store.Record{Kind: store.KindSetting, ID: "counter", Doc: json.RawMessage(`{"n":0}`)}, store.Cond{}); err != nil {
		t.Fatal(err)
	}
	const goroutines, rounds = 8, 20
	var successes atomic.Int64
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		s := a
		if g%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range rounds {
				rec, err := s.Get(t.Context(), store.KindSetting, "counter")
				if err != nil {
					errs[g] = err
					return
				}
				var c counter
				if err := json.Unmarshal(rec.Doc, &c); err != nil {
					errs[g] = err
					return
				}
				c.N++
				next, _ := json.Marshal(c)
				_, err = s.Put(t.Context(), store.Record{Kind: store.KindSetting, ID: "counter", Doc: next}, store.Cond{IfMatch: rec.ETag})
				switch {
				case err == nil:
					successes.Add(1)
				case !errors.Is(err, store.ErrPrecondition):
					errs[g] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	rec, err := b.Get(t.Context(), store.KindSetting, "counter")
	if err != nil {
		t.Fatal(err)
	}
	var final counter
	if err := json.Unmarshal(rec.Doc, &final); err != nil {
		t.Fatal(err)
	}
	if final.N != int(successes.Load()) || final.N == 0 {
		t.Errorf("counter = %d after %d successful compare-and-sets", final.N, successes.Load())
	}
}

// TestInstancesCreateOnce has two stores create the same records at once:
// each record is created exactly once.
func TestPostgresInstancesCreateOnce(t *testing.T) {
	dsn := pgtest.Schema(t)
	stores := []*postgres.Store{open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})}
	const ids, perStore = 50, 4
	var created atomic.Int64
	errs := make([]error, len(stores)*perStore)
	var wg sync.WaitGroup
	for i := range errs {
		s := stores[i%len(stores)]
		wg.Go(func() {
			for id := range ids {
				_, err := s.Apply(t.Context(), []store.Write{
					{Record: store.Record{Kind: store.KindRegistration, ID: fmt.Sprint("reg-", id), Doc: json.RawMessage(`{}`)}, Cond: store.Cond{IfNoneMatch: true}},
					{Record: store.Record{Kind: store.KindDevice, ID: fmt.Sprint("reg-", id), Doc: json.RawMessage(fmt.Sprintf(`{"by":%d}`, i))}, Cond: store.Cond{IfNoneMatch: true}},
				})
				switch {
				case err == nil:
					created.Add(1)
				case !errors.Is(err, store.ErrExists):
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if created.Load() != ids {
		t.Errorf("%d creations succeeded; want exactly %d", created.Load(), ids)
	}
	for _, kind := range []store.Kind{store.KindRegistration, store.KindDevice} {
		if n, err := stores[1].Count(t.Context(), kind, ""); err != nil || n != ids {
			t.Errorf("Count %s = %d, %v; want %d", kind, n, err, ids)
		}
	}
}

// TestInstancesStreamSeqs appends through two stores on one schema at
// once: the seqs are consecutive, without gaps or duplicates.
func TestPostgresInstancesStreamSeqs(t *testing.T) {
	dsn := pgtest.Schema(t)
	stores := []*postgres.Store{open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})}
	const goroutines, rounds = 16, 10
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	seqs := make([][]int64, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		s := stores[g%2]
		wg.Go(func() {
			for i := range rounds {
				entries := make([]store.StreamEntry, 1+(g+i)%3)
				for j := range entries {
					entries[j] = store.StreamEntry{Key: fmt.Sprint("dev-", g), Time: at, Doc: json.RawMessage(`{}`), Body: []byte{byte(g), byte(i), byte(j)}}
				}
				got, err := s.AppendMessages(t.Context(), "events", entries)
				if err != nil {
					errs[g] = err
					return
				}
				seqs[g] = append(seqs[g], got...)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, list := range seqs {
		for _, seq := range list {
			if seen[seq] {
				t.Fatalf("seq %d assigned twice", seq)
			}
			seen[seq] = true
		}
	}
	for seq := int64(1); seq <= int64(len(seen)); seq++ {
		if !seen[seq] {
			t.Fatalf("seq %d missing among %d appended entries", seq, len(seen))
		}
	}
	info, err := stores[0].StreamInfo(t.Context(), "events")
	if err != nil || info.LastSeq != int64(len(seen)) || info.Count != int64(len(seen)) {
		t.Errorf("StreamInfo = %+v, %v; want %d entries", info, err, len(seen))
	}
}

// TestInstancesAttemptBound appends attempts through two stores at once:
// the log holds exactly the newest AttemptLimit of them.
func TestPostgresInstancesAttemptBound(t *testing.T) {
	dsn := pgtest.Schema(t)
	const limit = 50
	stores := []*postgres.Store{open(t, dsn, postgres.Options{AttemptLimit: limit}), open(t, dsn, postgres.Options{AttemptLimit: limit})}
	base := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)
	const n, workers = 3 * limit, 8
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		s := stores[w%2]
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := s.AppendAttempt(t.Context(), store.Attempt{ID: fmt.Sprintf("att-%04d", i), Time: base.Add(time.Duration(i) * time.Second), RegistrationID: "dev"}); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got, err := stores[0].Attempts(t.Context(), "", n)
	if err != nil {
		t.Fatal(err)
	}
	var want, gotIDs []string
	for i := n - 1; i >= n-limit; i-- {
		want = append(want, fmt.Sprintf("att-%04d", i))
	}
	for _, a := range got {
		gotIDs = append(gotIDs, a.ID)
	}
	if diff := cmp.Diff(want, gotIDs); diff != "" {
		t.Errorf("kept attempts (-want +got):\n%s", diff)
	}
}

// TestNotifyAcrossInstances checks that an append through one store wakes
// the readers of another store on the same schema, but not of a store on
// another schema.
func TestPostgresNotifyAcrossInstances(t *testing.T) {
	dsn := pgtest.Schema(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	other := open(t, pgtest.Schema(t), postgres.Options{})
	woken, otherStream, elsewhere := b.StreamChanged("events"), b.StreamChanged("other"), other.StreamChanged("events")
	if _, err := a.AppendMessages(t.Context(), "events", []store.StreamEntry{{Key: "dev", Time: time.Now(), Doc: json.RawMessage(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
	case <-time.After(30 * time.Second):
		t.Fatal("the other store's reader was not woken within 30s")
	}
	// Notifications are delivered in commit order: after a second append
	// has woken b, the first one could no longer wake the wrong readers.
	again := b.StreamChanged("events")
	if _, err := a.AppendMessages(t.Context(), "events", []store.StreamEntry{{Key: "dev", Time: time.Now(), Doc: json.RawMessage(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-again:
	case <-time.After(30 * time.Second):
		t.Fatal("the other store's reader was not woken by the second append within 30s")
	}
	for name, ch := range map[string]<-chan struct{}{"another stream": otherStream, "another schema": elsewhere} {
		select {
		case <-ch:
			t.Errorf("a reader of %s was woken", name)
		default:
		}
	}
}

// TestUpdatedNeverMovesBack: a write after one stamped by an instance
// whose clock was ahead still moves Updated forward.
func TestPostgresUpdatedNeverMovesBack(t *testing.T) {
	dsn := pgtest.Schema(t)
	s := open(t, dsn, postgres.Options{})
	rec, err := s.Put(t.Context(), store.Record{Kind: store.KindDevice, ID: "d", Doc: json.RawMessage(`{}`)}, store.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	ahead := rec.Updated.Add(time.Hour)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `UPDATE docs SET updated = $1 WHERE kind = 'device' AND id = 'd'`, ahead); err != nil {
		t.Fatal(err)
	}
	for _, cond := range []store.Cond{{}, {IfMatch: "*"}} {
		next, err := s.Put(t.Context(), store.Record{Kind: store.KindDevice, ID: "d", Doc: json.RawMessage(`{"v":2}`)}, cond)
		if err != nil {
			t.Fatal(err)
		}
		if !next.Updated.After(ahead) {
			t.Errorf("Put %+v: Updated %v is not after the previous %v", cond, next.Updated, ahead)
		}
		got, err := s.Get(t.Context(), store.KindDevice, "d")
		if err != nil || !got.Updated.Equal(next.Updated) {
			t.Errorf("Get = %v, %v; want Updated %v", got.Updated, err, next.Updated)
		}
		ahead = next.Updated
	}
}

func TestPostgresAttemptLimitLoweredOnReopen(t *testing.T) {
	dsn := pgtest.Schema(t)
	s, err := postgres.Open(t.Context(), dsn, postgres.Options{AttemptLimit: 20})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 20 {
		a := store.Attempt{ID: fmt.Sprintf("a%02d", i), Time: base.Add(time.Duration(i) * time.Second), RegistrationID: "dev"}
		if err := s.AppendAttempt(t.Context(), a); err != nil {
			t.Fatalf("AppendAttempt: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t, dsn, postgres.Options{AttemptLimit: 5})
	got, err := s.Attempts(t.Context(), "", 100)
	if err != nil {
		t.Fatalf("Attempts: %v", err)
	}
	var gotIDs []string
	for _, a := range got {
		gotIDs = append(gotIDs, a.ID)
	}
	if diff := cmp.Diff([]string{"a19", "a18", "a17", "a16", "a15"}, gotIDs); diff != "" {
		t.Errorf("attempts after lowering the limit (-want +got):\n%s", diff)
	}
	// The count is exact again: one more append drops exactly one.
	if err := s.AppendAttempt(t.Context(), store.Attempt{ID: "a20", Time: base.Add(20 * time.Second), RegistrationID: "dev"}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Attempts(t.Context(), "", 100); err != nil || len(got) != 5 || got[0].ID != "a20" || got[4].ID != "a16" {
		t.Errorf("after one more append: %v, %v", got, err)
	}
}

// TestPostgresPersistent runs the database backends' suite: refusals,
// deep documents, Close under concurrent writers.
func TestPostgresPersistent(t *testing.T) {
	pgtest.BaseDSN(t) // skips here, not in a subtest, without a server
	reopen := reopener(t, postgres.Options{})
	storetest.RunPersistent(t, func(t *testing.T, dir string) store.Store { return reopen(t, dir) })
}

func TestPostgresStats(t *testing.T) {
	s := open(t, pgtest.Schema(t), postgres.Options{})
	ctx := t.Context()
	if _, err := s.Apply(ctx, []store.Write{
		{Record: store.Record{Kind: store.KindDevice, ID: "a", Doc: json.RawMessage(`{}`)}},
		{Record: store.Record{Kind: store.KindTwin, ID: "a", Doc: json.RawMessage(`{}`)}},
	}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := s.Delete(ctx, store.KindTwin, "a", ""); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(ctx, store.KindTwin, "a", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete missing = %v", err)
	}
	if err := s.AppendAttempt(ctx, store.Attempt{ID: "x", Time: time.Now()}); err != nil {
		t.Fatalf("AppendAttempt: %v", err)
	}
	// Sequential requests: one transaction each; the failed delete, alone
	// in its transaction, is decided without running again, counts as a
	// request but writes no row.
	want := postgres.Stats{Batches: 4, Requests: 4, Rows: 4}
	if diff := cmp.Diff(want, s.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// FuzzRecordRoundTrip stores arbitrary IDs and documents: whatever is valid
// UTF-8 JSON (and a valid ID) must be accepted and read back byte for byte,
// whether or not jsonb could hold it; anything else must be refused without
// changing the store.
func FuzzPostgresRecordRoundTrip(f *testing.F) {
	seeds := []struct {
		id  string
		doc string
	}{
		{"dev-1", `{"a":1}`},
		{"Dev.1:x_y", `{"tags":{"site":"n"},"arr":[1,2.5,-3e10,true,false,null]}`},
		{"é𝄞", `"\ud800 lone surrogate escape"`},
		{"nul\x00id", `{}`},
		{"bad-utf8-\xff", `{}`},
		{"bad-doc-utf8", "\"\xff\""},
		{"deep", strings.Repeat("[", 1001) + strings.Repeat("]", 1001)},
		{"not-json", `{"a":}`},
		{"trailing", `{} x`},
		{"bignum", `1e999999`},
		{"", `{}`},
		{"ws", " \t\n{ } \n"},
		{"escapes", `{"\u0000":"\u0041\n\"\\\/"}`},
	}
	for _, sd := range seeds {
		f.Add(sd.id, []byte(sd.doc))
	}
	s := open(f, pgtest.Schema(f), postgres.Options{})
	f.Fuzz(func(t *testing.T, id string, doc []byte) {
		ctx := t.Context()
		for _, kind := range []store.Kind{"fuzz", store.KindTwin} { // twins also get a jsonb copy
			before, beforeErr := s.Get(ctx, kind, id)
			rec, err := s.Put(ctx, store.Record{Kind: kind, ID: id, Group: "g", Doc: doc}, store.Cond{})
			idOK := id != "" && !strings.Contains(id, "\x00") && utf8.ValidString(id)
			docOK := len(doc) > 0 && utf8.Valid(doc) && json.Valid(doc) && depth(doc) <= 1000
			if !idOK || !docOK {
				if err == nil {
					t.Fatalf("Put(%q, %q) accepted invalid input", id, doc)
				}
				after, afterErr := s.Get(ctx, kind, id)
				if (beforeErr == nil) != (afterErr == nil) || after.ETag != before.ETag {
					t.Fatalf("refused Put changed the store: before %v %v, after %v %v", before.ETag, beforeErr, after.ETag, afterErr)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Put(%s %q, %q): %v", kind, id, doc, err)
			}
			got, err := s.Get(ctx, kind, id)
			if err != nil {
				t.Fatalf("Get(%q): %v", id, err)
			}
			if string(got.Doc) != string(doc) || got.ETag != rec.ETag {
				t.Fatalf("round trip of %q: got %q etag %q, want %q etag %q", id, got.Doc, got.ETag, doc, rec.ETag)
			}
		}
	})
}

// depth is the deepest nesting of arrays and objects in valid JSON.
func depth(b []byte) int {
	d, deepest, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			d++
			deepest = max(deepest, d)
		case c == ']' || c == '}':
			d--
		}
	}
	return deepest
}

// benchDoc is a registration-state-sized document (~600 bytes).
func benchDoc(id string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"registrationId":%q,"createdDateTimeUtc":"2026-11-05T10:00:00.0000000Z","assignedHub":"hub-1.example.net","deviceId":%q,"status":"assigned","substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2026-11-05T10:00:00.0000000Z","etag":"\"0000-0000\"","payload":{"site":"north","line":7,"features":["a","b","c"]},"symmetricKey":{"enrollmentGroupId":"group-1"},"tags":{"building":"43","floor":"2","room":"2.17","owner":"ops@example.net"},"padding":"%s"}`, id, id, strings.Repeat("x", 160)))
}

// stats sums the counters of stores.
func stats(stores ...*postgres.Store) postgres.Stats {
	var sum postgres.Stats
	for _, s := range stores {
		st := s.Stats()
		sum.Batches += st.Batches
		sum.Requests += st.Requests
		sum.Rows += st.Rows
	}
	return sum
}

func reportRows(b *testing.B, stores []*postgres.Store, start postgres.Stats, rowsPerOp int) {
	b.StopTimer()
	st := stats(stores...)
	b.ReportMetric(float64(rowsPerOp*b.N)/b.Elapsed().Seconds(), "rows/s")
	if batches := st.Batches - start.Batches; batches > 0 {
		b.ReportMetric(float64(st.Requests-start.Requests)/float64(batches), "req/commit")
	}
}

// BenchmarkApplyParallel measures group commit: many goroutines each
// applying a registration and a device record (2 rows) at once, through
// one store and through two stores sharing the schema (two instances).
func BenchmarkPostgresApplyParallel(b *testing.B) {
	for _, instances := range []int{1, 2} {
		b.Run(fmt.Sprintf("instances=%d", instances), func(b *testing.B) {
			dsn := pgtest.Schema(b)
			stores := make([]*postgres.Store, instances)
			for i := range stores {
				stores[i] = open(b, dsn, postgres.Options{})
			}
			var seq atomic.Int64
			b.SetParallelism(32)
			start := stats(stores...)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				s := stores[int(seq.Add(1))%instances]
				for pb.Next() {
					id := fmt.Sprintf("dev-%09d", seq.Add(1))
					_, err := s.Apply(b.Context(), []store.Write{
						{Record: store.Record{Kind: store.KindRegistration, ID: id, Group: "group-1", Doc: benchDoc(id)}},
						{Record: store.Record{Kind: store.KindDevice, ID: id, Group: "hub-1", Doc: benchDoc(id)}},
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRows(b, stores, start, 2)
		})
	}
}

// BenchmarkPutSerial measures one writer waiting for each commit: one row
// per transaction, so one WAL flush per row.
func BenchmarkPostgresPutSerial(b *testing.B) {
	s := open(b, pgtest.Schema(b), postgres.Options{})
	start := stats(s)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("dev-%09d", i)
		if _, err := s.Put(b.Context(), store.Record{Kind: store.KindRegistration, ID: id, Doc: benchDoc(id)}, store.Cond{}); err != nil {
			b.Fatal(err)
		}
	}
	reportRows(b, []*postgres.Store{s}, start, 1)
}
