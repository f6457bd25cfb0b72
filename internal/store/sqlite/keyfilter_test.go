package sqlite

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

// openFiltered opens the store at path and waits until its key filter is
// built.
func openFiltered(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	select {
	case <-s.keys.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the key filter scan did not end")
	}
	if !s.keys.ready.Load() {
		t.Fatal("the key filter scan ended without the filter being ready")
	}
	return s
}

func mustGet(t *testing.T, s *Store, kind store.Kind, id string) store.Record {
	t.Helper()
	rec, err := s.Get(t.Context(), kind, id)
	if err != nil {
		t.Fatalf("Get %s/%s: %v", kind, id, err)
	}
	return rec
}

func mustMiss(t *testing.T, s *Store, kind store.Kind, id string) {
	t.Helper()
	if _, err := s.Get(t.Context(), kind, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get %s/%s = %v, want ErrNotFound", kind, id, err)
	}
}

// TestKeyFilterBuiltFromScan writes records, reopens the store (so the
// filter comes from the scan of the table) and checks that every record is
// found and that missing ones are answered by the filter.
func TestKeyFilterBuiltFromScan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	const n = 3000
	func() {
		s, err := Open(t.Context(), path, Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		for i := 0; i < n; i += 100 {
			var ws []store.Write
			for j := i; j < i+100; j++ {
				id := fmt.Sprintf("dev-%05d", j)
				ws = append(ws, put(store.KindDevice, id, store.Cond{}), put(store.KindTwin, id, store.Cond{}))
			}
			if _, err := s.Apply(t.Context(), ws); err != nil {
				t.Fatalf("Apply: %v", err)
			}
		}
	}()

	s := openFiltered(t, path)
	if st := s.keys.f.Stats(); st.Keys < 2*n*97/100 {
		t.Fatalf("filter holds %d keys after the scan of %d records", st.Keys, 2*n)
	}
	for i := range n {
		id := fmt.Sprintf("dev-%05d", i)
		if rec := mustGet(t, s, store.KindTwin, id); rec.ID != id {
			t.Fatalf("Get twin %s returned %q", id, rec.ID)
		}
		mustGet(t, s, store.KindDevice, id)
		// The same ID under another kind is another key.
		mustMiss(t, s, store.KindRegistration, id)
	}
	before := s.Stats().FilteredGets
	for i := range 1000 {
		mustMiss(t, s, store.KindDevice, fmt.Sprintf("absent-%05d", i))
	}
	// About 1% of absent keys are false positives, read from the database.
	if got := s.Stats().FilteredGets - before; got < 950 {
		t.Fatalf("%d of 1000 missing records answered by the filter, want at least 950", got)
	}
}

// TestKeyFilterSeesWrites checks that a record is found as soon as its
// write is acknowledged, on every write path (single puts, merged batches
// of concurrent writers, conditional writes), and that deleting a record
// (its key stays in the filter) still reads as not found.
func TestKeyFilterSeesWrites(t *testing.T) {
	s := openFiltered(t, filepath.Join(t.TempDir(), "k.db"))
	ctx := t.Context()

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 32 {
		wg.Go(func() {
			for i := range 40 {
				id := fmt.Sprintf("w%02d-%03d", w, i)
				ws := []store.Write{put(store.KindRegistration, id, store.Cond{}), put(store.KindDevice, id, store.Cond{IfNoneMatch: true})}
				if _, err := s.Apply(ctx, ws); err != nil {
					errs <- err
					return
				}
				for _, k := range []store.Kind{store.KindRegistration, store.KindDevice} {
					if _, err := s.Get(ctx, k, id); err != nil {
						errs <- fmt.Errorf("Get %s/%s right after its write: %w", k, id, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Requests < 32*40 || st.Batches >= st.Requests {
		t.Logf("stats %+v: the writes may not have been merged", st)
	}

	rec, err := s.Put(ctx, store.Record{Kind: store.KindEnrollment, ID: "e1", Doc: json.RawMessage(`{"v":1}`)}, store.Cond{IfNoneMatch: true})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	mustGet(t, s, store.KindEnrollment, "e1")
	if err := s.Delete(ctx, store.KindEnrollment, "e1", rec.ETag); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	mustMiss(t, s, store.KindEnrollment, "e1")
	if _, err := s.Put(ctx, store.Record{Kind: store.KindEnrollment, ID: "e1", Doc: json.RawMessage(`{"v":2}`)}, store.Cond{}); err != nil {
		t.Fatalf("Put again: %v", err)
	}
	if got := mustGet(t, s, store.KindEnrollment, "e1"); string(got.Doc) != `{"v":2}` {
		t.Fatalf("Get after re-creation = %s", got.Doc)
	}
}

// TestKeyFilterSeesMergedWrites runs one batch whose puts the writer merges
// into multi-row statements (as in TestBatchMerged) and checks that every
// record is found afterwards.
func TestKeyFilterSeesMergedWrites(t *testing.T) {
	s := openFiltered(t, filepath.Join(t.TempDir(), "k.db"))
	ctx := t.Context()
	var batch []*request
	for i := range 2*mergeRows + 3 {
		id := fmt.Sprintf("dev-%03d", i)
		batch = append(batch, docRequest(ctx, put(store.KindDevice, id, store.Cond{}), put(store.KindRegistration, id, store.Cond{})))
	}
	s.commitBatch(batch, nil)
	for i, r := range batch {
		<-r.done
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
	}
	for i := range 2*mergeRows + 3 {
		id := fmt.Sprintf("dev-%03d", i)
		mustGet(t, s, store.KindDevice, id)
		mustGet(t, s, store.KindRegistration, id)
	}
}

func TestKeyFilterDisabled(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "k.db"), Options{DisableKeyFilter: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if s.keys != nil {
		t.Fatal("key filter present with DisableKeyFilter")
	}
	mustMiss(t, s, store.KindDevice, "nobody")
	if _, err := s.Put(t.Context(), store.Record{Kind: store.KindDevice, ID: "d", Doc: json.RawMessage(`{}`)}, store.Cond{}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	mustGet(t, s, store.KindDevice, "d")
	if got := s.Stats().FilteredGets; got != 0 {
		t.Fatalf("FilteredGets = %d with the filter disabled", got)
	}
}

// TestOwnerLock checks that a second Store cannot open a database that is
// open, with an error that says so, and can once it is closed.
func TestOwnerLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	_, err = Open(t.Context(), path, Options{})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open = %v, want ErrInUse", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
