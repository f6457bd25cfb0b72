package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/storetest"
)

func openStream(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), path, opts)
	if err != nil {
		t.Fatalf("Open %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestStreamConformance(t *testing.T) {
	storetest.RunStream(t, func(t *testing.T) store.StreamStore {
		return openStream(t, filepath.Join(t.TempDir(), "muster.db"), Options{})
	})
}

func TestStreamConformanceSmallBatches(t *testing.T) {
	// MaxBatch 1 runs every request in its own transaction; synchronous=NORMAL.
	storetest.RunStream(t, func(t *testing.T) store.StreamStore {
		return openStream(t, filepath.Join(t.TempDir(), "muster.db"), Options{MaxBatch: 1, Synchronous: "NORMAL"})
	})
}

func TestStreamReopen(t *testing.T) {
	storetest.RunStreamReopen(t, func(t *testing.T, dir string) store.StreamStore {
		return openStream(t, filepath.Join(dir, "muster.db"), Options{})
	})
}

// TestStreamQueryPlans checks that no stream statement scans a table or
// sorts: each must search an index, so appends, reads and trims cost what
// they touch, not the size of the stream.
func TestStreamQueryPlans(t *testing.T) {
	s := openStream(t, filepath.Join(t.TempDir(), "plans.db"), Options{})
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	// Some rows and fresh statistics, so the planner sees a realistic table.
	var entries []store.StreamEntry
	for i := range 500 {
		entries = append(entries, store.StreamEntry{Key: fmt.Sprintf("dev-%d", i%20), Sub: fmt.Sprintf("m%d", i%3), Time: at, Doc: json.RawMessage(`{}`), Body: []byte("x")})
	}
	if _, err := s.AppendMessages(t.Context(), "events", entries); err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	if _, err := s.wconn.ExecContext(t.Context(), "ANALYZE"); err != nil {
		t.Fatalf("ANALYZE: %v", err)
	}
	ts := formatTime(at)
	tests := []struct {
		name  string
		query string
		args  []any
	}{
		{"bump", sqlStreamBump, []any{"events", 1, 10}},
		{"head", sqlStreamHead, []any{"events"}},
		{"first at offset", sqlStreamFirstAtOff, []any{"events", 1, 10001, 100}},
		{"first at time", sqlStreamFirstAtTime, []any{"events", 1, 10001, ts}},
		{"offset at", sqlStreamOffAt, []any{"events", 5}},
		{"trim", sqlStreamTrim, []any{"events", 5}},
		{"set first", sqlStreamSetFirst, []any{5, 50, "events"}},
		{"read", sqlStreamRead, []any{"events", 0, 100}},
		{"read by key", sqlStreamReadKey, []any{"events", "dev-1", 0, 100}},
		{"read by key and sub", sqlStreamReadSub, []any{"events", "dev-1", "m1", 0, 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := s.wconn.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+tc.query, tc.args...)
			if err != nil {
				t.Fatalf("explain: %v", err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatalf("scan plan: %v", err)
				}
				plan = append(plan, detail)
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("plan: %v", err)
			}
			// An upsert has no plan to show; every query must search.
			if len(plan) == 0 && tc.name != "bump" {
				t.Errorf("no plan steps")
			}
			for _, step := range plan {
				if !strings.HasPrefix(step, "SEARCH") || strings.Contains(step, "TEMP B-TREE") {
					t.Errorf("plan step %q in %q", step, plan)
				}
			}
		})
	}
}

// TestStreamTrimChunks checks that a trim larger than trimChunk runs as
// several writer requests, each one transaction.
func TestStreamTrimChunks(t *testing.T) {
	s := openStream(t, filepath.Join(t.TempDir(), "chunks.db"), Options{Synchronous: "NORMAL"})
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	const n = 2*trimChunk + 5
	for i := 0; i < n; i += store.MaxStreamAppend {
		var entries []store.StreamEntry
		for range min(store.MaxStreamAppend, n-i) {
			entries = append(entries, store.StreamEntry{Key: "dev", Time: at, Doc: json.RawMessage(`{}`)})
		}
		if _, err := s.AppendMessages(t.Context(), "events", entries); err != nil {
			t.Fatalf("AppendMessages: %v", err)
		}
	}
	before := s.Stats()
	got, err := s.TrimStream(t.Context(), "events", store.Retention{Before: at.Add(time.Second)})
	if err != nil || got != n {
		t.Fatalf("TrimStream = %d, %v; want %d", got, err, n)
	}
	after := s.Stats()
	// Chunks of 10000, 10000 and 5 entries.
	if reqs := after.Requests - before.Requests; reqs != 3 {
		t.Errorf("trim ran %d writer requests; want 3 for %d entries in chunks of %d", reqs, n, trimChunk)
	}
	if rows := after.Rows - before.Rows; rows != n {
		t.Errorf("trim counted %d rows; want %d", rows, n)
	}
}

// TestStreamAppendRolledBack checks that an append failing inside the
// writer (here: a stream head the database refuses to update) leaves no
// entries and no used seqs behind, while the other requests of the batch
// commit.
func TestStreamAppendRolledBack(t *testing.T) {
	s := openStream(t, filepath.Join(t.TempDir(), "rollback.db"), Options{})
	ctx := t.Context()
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	entry := store.StreamEntry{Key: "dev", Time: at, Doc: json.RawMessage(`{}`), Body: []byte("b")}
	if _, err := s.AppendMessages(ctx, "events", []store.StreamEntry{entry}); err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	// Make the next insert of seq 2 collide: a stray row the writer does
	// not know about.
	if _, err := s.wconn.ExecContext(ctx, `INSERT INTO stream_entries (stream, seq, key, sub, ts, off, doc, body) VALUES ('events', 2, 'x', '', $1, 0, '{}', x'')`, formatTime(at)); err != nil {
		t.Fatalf("insert stray row: %v", err)
	}
	ok := newRequest(ctx)
	ok.writes = []store.Write{{Record: store.Record{Kind: store.KindDevice, ID: "d", Doc: json.RawMessage(`{}`)}}}
	var seqs []int64
	failing := newRequest(ctx)
	failing.exec = func(ctx2 context.Context) (int, error) {
		var err error
		seqs, err = s.insertStream(ctx2, "events", []streamRow{{key: "dev", ts: formatTime(at), doc: "{}", body: []byte{}, size: 2}})
		return 1, err
	}
	woken := false
	failing.committed = func() { woken = true }
	s.commitBatch([]*request{ok, failing}, nil)
	<-ok.done
	<-failing.done
	if ok.err != nil {
		t.Errorf("the other request of the batch failed: %v", ok.err)
	}
	if failing.err == nil {
		t.Fatalf("append over a stray row succeeded: seqs %v", seqs)
	}
	if woken {
		t.Errorf("committed ran for a failed request")
	}
	st, err := s.StreamInfo(ctx, "events")
	if err != nil {
		t.Fatalf("StreamInfo: %v", err)
	}
	if want := (store.StreamStats{FirstSeq: 1, LastSeq: 1, Count: 1, Bytes: int64(entry.Size())}); st != want {
		t.Errorf("StreamInfo = %+v; want %+v (the failed append rolled back)", st, want)
	}
	if _, err := s.Get(ctx, store.KindDevice, "d"); err != nil {
		t.Errorf("Get d: %v", err)
	}
}

// BenchmarkAppendMessagesParallel measures stream appends through the
// group-commit writer: many goroutines each appending telemetry-sized
// messages (a ~300-byte metadata document and a 200-byte body).
func BenchmarkAppendMessagesParallel(b *testing.B) {
	doc := json.RawMessage(`{"systemProperties":{"message-id":"0f8fad5b-d9cb-469f-a165-70867728950e","content-type":"application/json","content-encoding":"utf-8","iothub-connection-device-id":"dev-000042"},"properties":{"alert":"high temp","site":"north","line":"7"}}`)
	body := []byte(`{"temperature":21.53,"humidity":48.2,"pressure":1013.25,"vibration":[0.01,0.02,0.015,0.011],"status":"ok","firmware":"1.4.2","uptimeSeconds":123456,"battery":87,"rssi":-67,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	for _, sync := range []string{"FULL", "NORMAL"} {
		for _, per := range []int{1, 16} {
			b.Run(fmt.Sprintf("sync=%s/batch=%d", sync, per), func(b *testing.B) {
				s := openStream(b, filepath.Join(b.TempDir(), "bench.db"), Options{Synchronous: sync})
				var n atomic.Int64
				b.SetParallelism(32)
				start := s.Stats()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					entries := make([]store.StreamEntry, per)
					for pb.Next() {
						i := n.Add(1)
						for j := range entries {
							entries[j] = store.StreamEntry{Key: fmt.Sprintf("dev-%06d", i%1000), Time: time.Now(), Doc: doc, Body: body}
						}
						if _, err := s.AppendMessages(b.Context(), "events", entries); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				st := s.Stats()
				b.ReportMetric(float64(per*b.N)/b.Elapsed().Seconds(), "rows/s")
				if batches := st.Batches - start.Batches; batches > 0 {
					b.ReportMetric(float64(st.Requests-start.Requests)/float64(batches), "req/commit")
				}
			})
		}
	}
}

// BenchmarkReadMessages measures a reader paging through the stream.
func BenchmarkReadMessages(b *testing.B) {
	s := openStream(b, filepath.Join(b.TempDir(), "read.db"), Options{Synchronous: "NORMAL"})
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	const n = 10000
	for i := 0; i < n; i += store.MaxStreamAppend {
		var entries []store.StreamEntry
		for j := range min(store.MaxStreamAppend, n-i) {
			entries = append(entries, store.StreamEntry{Key: fmt.Sprintf("dev-%d", (i+j)%100), Time: at, Doc: json.RawMessage(`{"a":1}`), Body: make([]byte, 200)})
		}
		if _, err := s.AppendMessages(b.Context(), "events", entries); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	rows := 0
	for i := range b.N {
		got, err := s.ReadMessages(b.Context(), "events", int64(i*100%(n-100)), store.StreamFilter{}, 100)
		if err != nil {
			b.Fatal(err)
		}
		rows += len(got)
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}
