package sqlite_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/sqlite"
	"github.com/muster-iot/muster/internal/store/storetest"
)

// testAttemptLimit keeps the conformance suite's bound test small.
const testAttemptLimit = 300

func openAt(t testing.TB, path string, opts sqlite.Options) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path, opts)
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

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openAt(t, filepath.Join(t.TempDir(), "muster.db"), sqlite.Options{AttemptLimit: testAttemptLimit})
	})
}

func TestConformanceSmallBatches(t *testing.T) {
	// MaxBatch 1 runs every request in its own transaction; synchronous=NORMAL.
	storetest.Run(t, func(t *testing.T) store.Store {
		return openAt(t, filepath.Join(t.TempDir(), "muster.db"), sqlite.Options{AttemptLimit: testAttemptLimit, MaxBatch: 1, Synchronous: "normal"})
	})
}

func TestReopen(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T, dir string) store.Store {
		return openAt(t, filepath.Join(dir, "muster.db"), sqlite.Options{})
	})
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		opts sqlite.Options
		want string
	}{
		{"empty path", "", sqlite.Options{}, `path "" must be a file path`},
		{"memory", ":memory:", sqlite.Options{}, `path ":memory:" must be a file path`},
		{"uri", "file:x.db", sqlite.Options{}, `path "file:x.db" must be a file path`},
		{"negative attempt limit", filepath.Join(dir, "a.db"), sqlite.Options{AttemptLimit: -1}, "AttemptLimit -1 is negative"},
		{"negative batch", filepath.Join(dir, "b.db"), sqlite.Options{MaxBatch: -2}, "MaxBatch -2 is negative"},
		{"synchronous", filepath.Join(dir, "c.db"), sqlite.Options{Synchronous: "OFF"}, `Synchronous "OFF" is neither FULL nor NORMAL`},
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "d.db"), sqlite.Options{}, "create sqlite database"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := sqlite.Open(t.Context(), tc.path, tc.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open error = %q; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestOpenDefaults(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "x.db"), sqlite.Options{})
	if got := s.AttemptLimit(); got != sqlite.DefaultAttemptLimit {
		t.Errorf("AttemptLimit = %d; want %d", got, sqlite.DefaultAttemptLimit)
	}
}

func TestFileModePrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not POSIX permissions on Windows")
	}
	path := filepath.Join(t.TempDir(), "secret.db")
	s := openAt(t, path, sqlite.Options{})
	if _, err := s.Put(t.Context(), store.Record{Kind: store.KindSetting, ID: "k", Doc: json.RawMessage(`{}`)}, store.Cond{}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v; want no group or other access", filepath.Base(p), perm)
		}
	}
}

func TestPathNeedingEscapes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a b?c#d%e&f=g")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	path := filepath.Join(dir, "my db?.sqlite")
	s := openAt(t, path, sqlite.Options{})
	if _, err := s.Put(t.Context(), store.Record{Kind: store.KindSetting, ID: "k", Doc: json.RawMessage(`{}`)}, store.Cond{}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the given path: %v", err)
	}
}

func TestAttemptLimitLoweredOnReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	s, err := sqlite.Open(t.Context(), path, sqlite.Options{AttemptLimit: 20})
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
	s = openAt(t, path, sqlite.Options{AttemptLimit: 5})
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
}

// TestPersistent runs the database backends' suite: refusals, deep
// documents, Close under concurrent writers.
func TestPersistent(t *testing.T) {
	storetest.RunPersistent(t, func(t *testing.T, dir string) store.Store {
		return openAt(t, filepath.Join(dir, "muster.db"), sqlite.Options{})
	})
}

func TestStats(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "x.db"), sqlite.Options{})
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
	// Sequential requests: one transaction each; the failed delete counts
	// as a request but writes no row.
	want := sqlite.Stats{Batches: 4, Requests: 4, Rows: 4}
	if diff := cmp.Diff(want, s.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// FuzzRecordRoundTrip stores arbitrary IDs and documents: whatever is valid
// UTF-8 JSON (and a valid ID) must be accepted and read back byte for byte;
// anything else must be refused without changing the store.
func FuzzRecordRoundTrip(f *testing.F) {
	s, err := sqlite.Open(f.Context(), filepath.Join(f.TempDir(), "fuzz.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		f.Fatalf("Open: %v", err)
	}
	f.Cleanup(func() { s.Close() })
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
	f.Fuzz(func(t *testing.T, id string, doc []byte) {
		ctx := t.Context()
		idOK := id != "" && utf8.ValidString(id) && !strings.Contains(id, "\x00")
		docOK := len(doc) > 0 && utf8.Valid(doc) && json.Valid(doc) && jsonDepth(doc) <= 1000
		before, beforeErr := s.Get(ctx, "fuzz", id)
		rec, err := s.Put(ctx, store.Record{Kind: "fuzz", ID: id, Group: id, Doc: doc}, store.Cond{})
		if !idOK || !docOK {
			if err == nil {
				t.Fatalf("Put(%q, %q) accepted invalid input", id, doc)
			}
			after, afterErr := s.Get(ctx, "fuzz", id)
			if (beforeErr == nil) != (afterErr == nil) || after.ETag != before.ETag {
				t.Fatalf("refused Put changed the store: before %v %v, after %v %v", before.ETag, beforeErr, after.ETag, afterErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("Put(%q, %q): %v", id, doc, err)
		}
		got, err := s.Get(ctx, "fuzz", id)
		if err != nil {
			t.Fatalf("Get(%q): %v", id, err)
		}
		if got.ID != id || got.Group != id || got.ETag != rec.ETag || !bytes.Equal(got.Doc, doc) {
			t.Fatalf("round trip of %q, %q gave %q, %q, %q", id, doc, got.ID, got.Group, got.Doc)
		}
		list, err := s.List(ctx, "fuzz", store.ListOptions{Group: id})
		if err != nil {
			t.Fatalf("List(%q): %v", id, err)
		}
		if len(list) != 1 || list[0].ID != id || !bytes.Equal(list[0].Doc, doc) {
			t.Fatalf("List by group %q = %+v", id, list)
		}
	})
}

// jsonDepth returns the deepest nesting of arrays and objects in a valid
// JSON text, from the decoder's tokens.
func jsonDepth(b []byte) int {
	d := json.NewDecoder(bytes.NewReader(b))
	depth, deepest := 0, 0
	for range len(b) + 1 {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
			deepest = max(deepest, depth)
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
	return deepest
}

// benchDoc is a registration-state-sized document (~600 bytes).
func benchDoc(id string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"registrationId":%q,"createdDateTimeUtc":"2026-11-05T10:00:00.0000000Z","assignedHub":"hub-1.example.net","deviceId":%q,"status":"assigned","substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2026-11-05T10:00:00.0000000Z","etag":"\"0000-0000\"","payload":{"site":"north","line":7,"features":["a","b","c"]},"symmetricKey":{"enrollmentGroupId":"group-1"},"tags":{"building":"43","floor":"2","room":"2.17","owner":"ops@example.net"},"padding":"%s"}`, id, id, strings.Repeat("x", 160)))
}

func benchStore(b *testing.B, sync string) *sqlite.Store {
	return openAt(b, filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{Synchronous: sync})
}

func reportRows(b *testing.B, s *sqlite.Store, start sqlite.Stats, rowsPerOp int) {
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(rowsPerOp*b.N)/b.Elapsed().Seconds(), "rows/s")
	if batches := st.Batches - start.Batches; batches > 0 {
		b.ReportMetric(float64(st.Requests-start.Requests)/float64(batches), "req/commit")
	}
}

// BenchmarkApplyParallel measures group commit: many goroutines each
// applying a registration and a device record (2 rows) at once.
func BenchmarkApplyParallel(b *testing.B) {
	for _, sync := range []string{"FULL", "NORMAL"} {
		b.Run("sync="+sync, func(b *testing.B) {
			s := benchStore(b, sync)
			var seq atomic.Int64
			b.SetParallelism(32)
			start := s.Stats()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
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
			reportRows(b, s, start, 2)
		})
	}
}

// BenchmarkPutSerial measures one writer waiting for each commit: one row
// per transaction, so one fsync per row with synchronous=FULL.
func BenchmarkPutSerial(b *testing.B) {
	for _, sync := range []string{"FULL", "NORMAL"} {
		b.Run("sync="+sync, func(b *testing.B) {
			s := benchStore(b, sync)
			start := s.Stats()
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprintf("dev-%09d", i)
				if _, err := s.Put(b.Context(), store.Record{Kind: store.KindRegistration, ID: id, Doc: benchDoc(id)}, store.Cond{}); err != nil {
					b.Fatal(err)
				}
			}
			reportRows(b, s, start, 1)
		})
	}
}
