package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/postgres/pgtest"
)

func openInternal(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), pgtest.Schema(t), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func docRequest(ctx context.Context, writes ...store.Write) *request {
	o := &docsOp{writes: writes, etags: make([]string, len(writes)), jdocs: make([]any, len(writes))}
	for i := range writes {
		o.etags[i] = randomHex(16)
	}
	return newRequest(ctx, o)
}

func attemptRequest(ctx context.Context, id string, at time.Time) *request {
	return newRequest(ctx, &attemptOp{id: id, ts: formatTime(at), registrationID: "dev",
		doc: `{"id":"` + id + `","time":"` + at.Format(time.RFC3339Nano) + `","registrationId":"dev"}`})
}

func appendRequest(ctx context.Context, stream string, keys ...string) *request {
	o := &appendOp{stream: stream}
	for _, k := range keys {
		o.keys, o.subs, o.tss, o.docs = append(o.keys, k), append(o.subs, ""), append(o.tss, formatTime(time.Now())), append(o.docs, `{}`)
		o.offs, o.bodies = append(o.offs, o.total), append(o.bodies, []byte("b"))
		o.total += 3
	}
	return newRequest(ctx, o)
}

func put(kind store.Kind, id string, cond store.Cond) store.Write {
	return store.Write{Record: store.Record{Kind: kind, ID: id, Doc: json.RawMessage(`{"id":"` + id + `"}`)}, Cond: cond}
}

// TestBatchIsolation runs one batch directly (the writers are idle: nothing
// else is submitted) and checks that each request succeeds or fails on its
// own: the optimistic transaction is rolled back and the requests run again
// in savepoints, where a failing request is rolled back without touching
// the others, and a request whose context ended is not executed.
func TestPostgresBatchIsolation(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("several chunks %v", chunked), func(t *testing.T) {
			s := openInternal(t, Options{AttemptLimit: 3})
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
				{"append", appendRequest(ctx, "events", "k1", "k2"), nil, 0},
				{"a exists in this batch", docRequest(ctx, put(store.KindDevice, "a", store.Cond{IfNoneMatch: true})), store.ErrExists, 0},
				{"cancelled", docRequest(cancelled, put(store.KindDevice, "never", store.Cond{})), context.Canceled, 0},
				{"second write fails", docRequest(ctx, put(store.KindDevice, "b", store.Cond{}), store.Write{Record: store.Record{Kind: store.KindDevice, ID: "missing"}, Delete: true}), store.ErrNotFound, 1},
				{"duplicate attempt", attemptRequest(ctx, "at1", base), store.ErrExists, 0},
				{"replace x", docRequest(ctx, put(store.KindDevice, "x", store.Cond{IfMatch: x.ETag})), nil, 0},
				{"attempt 2", attemptRequest(ctx, "at2", base.Add(time.Second)), nil, 0},
				{"attempt 3", attemptRequest(ctx, "at3", base.Add(2*time.Second)), nil, 0},
				{"append again", appendRequest(ctx, "events", "k3"), nil, 0},
				{"attempt 4", attemptRequest(ctx, "at4", base.Add(3*time.Second)), nil, 0},
			}
			var batch []*request
			for _, tc := range tests {
				batch = append(batch, tc.req)
			}
			if chunked {
				// More requests than one slow chunk holds: the last
				// requests run in the second chunk's transaction.
				for i := range slowChunk {
					batch = append(batch, docRequest(ctx, put(store.KindTwin, fmt.Sprint("fill-", i), store.Cond{})))
				}
			}
			before := s.Stats()
			s.commitBatch(batch)

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
			if err != nil || got.ETag != tests[8].req.recs[0].ETag {
				t.Errorf("x = %+v, %v; want the replaced version", got, err)
			}
			if seqs := tests[11].req.op.(*appendOp).seqs; !cmp.Equal(seqs, []int64{3}) {
				t.Errorf("second append got seqs %v; want [3]", seqs)
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
			// The cancelled request was not executed; the others committed
			// in one transaction per slow chunk.
			after := s.Stats()
			requests := len(batch) - 1
			want := Stats{Batches: uint64((requests + slowChunk - 1) / slowChunk), Requests: uint64(requests), Rows: uint64(9 + len(batch) - len(tests)), SlowBatches: 1}
			got2 := Stats{Batches: after.Batches - before.Batches, Requests: after.Requests - before.Requests, Rows: after.Rows - before.Rows,
				SlowBatches: after.SlowBatches - before.SlowBatches, Retries: after.Retries - before.Retries}
			if diff := cmp.Diff(want, got2); diff != "" {
				t.Errorf("stats of the batch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBatchFastPath checks that a batch whose requests all succeed commits
// in one optimistic transaction.
func TestPostgresBatchFastPath(t *testing.T) {
	s := openInternal(t, Options{})
	ctx := t.Context()
	batch := []*request{
		docRequest(ctx, put(store.KindDevice, "a", store.Cond{IfNoneMatch: true}), put(store.KindTwin, "a", store.Cond{})),
		attemptRequest(ctx, "at1", time.Now()),
		appendRequest(ctx, "events", "k1"),
		appendRequest(ctx, "other", "k1", "k2"),
		docRequest(ctx, store.Write{Record: store.Record{Kind: store.KindTwin, ID: "a"}, Delete: true}),
	}
	before := s.Stats()
	s.commitBatch(batch)
	for i, r := range batch {
		<-r.done
		if r.err != nil {
			t.Errorf("request %d: %v", i, r.err)
		}
	}
	after := s.Stats()
	if got := after.Batches - before.Batches; got != 1 || after.SlowBatches != before.SlowBatches {
		t.Errorf("%d transactions, %d slow; want 1 optimistic transaction", got, after.SlowBatches-before.SlowBatches)
	}
	if _, err := s.Get(ctx, store.KindTwin, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("twin a after its delete in the same batch: %v", err)
	}
}

// TestAbandonedRequestNotApplied checks the hand-over between a caller whose
// context ends and the writer: a request abandoned while queued is never
// executed, and a taken one is answered with its real outcome.
func TestPostgresAbandonedRequestNotApplied(t *testing.T) {
	s := openInternal(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	r := docRequest(ctx, put(store.KindDevice, "abandoned", store.Cond{}))
	if !r.state.CompareAndSwap(stateQueued, stateAbandoned) {
		t.Fatalf("fresh request not queued")
	}
	cancel()
	s.commitBatch([]*request{r})
	<-r.done
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("abandoned request answered %v; want context.Canceled", r.err)
	}
	if _, err := s.Get(t.Context(), store.KindDevice, "abandoned"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("abandoned request applied: Get = %v", err)
	}

	taken := docRequest(t.Context(), put(store.KindDevice, "taken", store.Cond{}))
	s.commitBatch([]*request{taken})
	<-taken.done
	if taken.err != nil || taken.state.Load() != stateTaken {
		t.Errorf("taken request: err %v state %d", taken.err, taken.state.Load())
	}
	if taken.state.CompareAndSwap(stateQueued, stateAbandoned) {
		t.Errorf("a taken request could still be abandoned")
	}
}

// TestRetryAfterLostConnection: a transaction whose connection the server
// terminates before the COMMIT runs again on a fresh connection.
func TestPostgresRetryAfterLostConnection(t *testing.T) {
	s := openInternal(t, Options{})
	ctx := t.Context()
	tries := 0
	err := s.withRetry(ctx, func(conn *pgx.Conn) error {
		tries++
		if tries == 1 {
			_, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
			return err
		}
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, sqlInsert, "device", "retried", "", "etag", `{}`, nil, time.Now())
			return err
		})
	})
	if err != nil || tries != 2 {
		t.Fatalf("withRetry = %v after %d tries; want success on the second", err, tries)
	}
	if _, err := s.Get(ctx, store.KindDevice, "retried"); err != nil {
		t.Errorf("Get: %v", err)
	}
	// The store goes on working: the dead connection left the pool.
	if _, err := s.Put(ctx, store.Record{Kind: store.KindDevice, ID: "after", Doc: json.RawMessage(`{}`)}, store.Cond{}); err != nil {
		t.Errorf("Put after the lost connection: %v", err)
	}
}

func TestPostgresJSONBCompatible(t *testing.T) {
	tests := []struct {
		doc  string
		want string // "" when compatible
	}{
		{`{"a":1,"b":[true,null,"x"],"c":{"d":-0.5e-3}}`, ""},
		{`"\u0041\n\"\\\/\t"`, ""},
		{`"\ud83d\ude00 paired surrogates"`, ""},
		{`"é𝄞 raw"`, ""},
		{`{"\u0000":1}`, `\u0000`},
		{`"a\u0000b"`, `\u0000`},
		{`"\\u0000 is an escaped backslash"`, ""},
		{`"\ud800"`, "unpaired surrogate"},
		{`"\ud800\u0041"`, "unpaired surrogate"},
		{`"\udc00"`, "unpaired surrogate"},
		{`1e999999`, "exponent"},
		{`[1e1000, 1e-1000]`, ""},
		{`1e1001`, "exponent"},
		{`1E+1001`, "exponent"},
		{`0.5e-1001`, "exponent"},
		{"1" + strings.Repeat("0", 100001), "before the decimal point"},
		{"0." + strings.Repeat("1", 16001), "after the decimal point"},
		{strings.Repeat("[", 1001) + strings.Repeat("]", 1001), "nested deeper"},
	}
	for _, tc := range tests {
		name := tc.doc
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			if !json.Valid([]byte(tc.doc)) {
				t.Fatalf("fixture is not valid JSON")
			}
			err := jsonbCompatible([]byte(tc.doc))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("jsonbCompatible = %v; want compatible", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("jsonbCompatible = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

// FuzzJSONBCompatible checks jsonbCompatible on arbitrary valid JSON: it
// never panics, and when TEST_PG_DSN is set, PostgreSQL accepts every
// document it calls compatible as jsonb (the check may refuse more than
// PostgreSQL does, never less).
func FuzzPostgresJSONBCompatible(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,2.5,-3e10,true,false,null],"b":{"c":"d"}}`,
		`"\u0000"`, `"\ud800"`, `"\ud800\udc00"`, `"\udc00\ud800"`, `1e999`, `1e-999`, `-0.0E+0`,
		`{"k\u00e9y":"\u20ac\\u0000"}`, `[[[[[]]]]]`, `"\""`, `123456789012345678901234567890`,
	} {
		f.Add([]byte(s))
	}
	var conn *pgx.Conn
	if dsn := os.Getenv(pgtest.EnvDSN); dsn != "" {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			f.Fatalf("connect to %s: %v", pgtest.EnvDSN, err)
		}
		f.Cleanup(func() { c.Close(context.Background()) })
		conn = c
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if !utf8.Valid(doc) || !json.Valid(doc) {
			return // the store refuses these before jsonb matters
		}
		err := jsonbCompatible(doc)
		if err != nil || conn == nil {
			return
		}
		var out string
		if qerr := conn.QueryRow(t.Context(), `SELECT CAST(CAST($1 AS TEXT) AS JSONB)::TEXT`, string(doc)).Scan(&out); qerr != nil {
			t.Fatalf("jsonbCompatible accepted %q, PostgreSQL refused it: %v", doc, qerr)
		}
	})
}
