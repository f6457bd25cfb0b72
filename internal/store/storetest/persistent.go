package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

// RunPersistent checks what a database backend refuses and how it closes:
// attempts it cannot keep (no ID, NUL bytes, invalid UTF-8, years after
// 9999, duplicates) and negative limits are refused without a trace; a
// document nested deeper than 1000 levels is refused with a
// *store.WriteError; a Close under concurrent writers returns, and every
// write it acknowledged is there when the store is opened again. open is
// as for RunReopen: a store kept in dir (created when new), closed by a
// cleanup that tolerates a store the suite has already closed.
func RunPersistent(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	t.Run("AttemptRejects", func(t *testing.T) { testAttemptRejects(t, open(t, t.TempDir())) })
	t.Run("DeepDocument", func(t *testing.T) { testDeepDocument(t, open(t, t.TempDir())) })
	t.Run("CloseWhileWriting", func(t *testing.T) { testCloseWhileWriting(t, open) })
}

func testAttemptRejects(t *testing.T, s store.Store) {
	now := time.Now()
	tests := []struct {
		name string
		a    store.Attempt
		want error
	}{
		{"empty id", store.Attempt{Time: now, RegistrationID: "dev"}, nil},
		{"nul in id", store.Attempt{ID: "a\x00", Time: now}, nil},
		{"invalid utf-8 registration", store.Attempt{ID: "a1", Time: now, RegistrationID: "\xff"}, nil},
		{"year after 9999", store.Attempt{ID: "a2", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, nil},
		{"duplicate id", store.Attempt{ID: "dup", Time: now}, store.ErrExists},
	}
	if err := s.AppendAttempt(t.Context(), store.Attempt{ID: "dup", Time: now}); err != nil {
		t.Fatalf("AppendAttempt: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.AppendAttempt(t.Context(), tc.a)
			if err == nil {
				t.Fatalf("AppendAttempt accepted %+v", tc.a)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("AppendAttempt = %v; want %v", err, tc.want)
			}
		})
	}
	// A refused attempt takes the writes of its batch with it.
	dev := store.Write{Record: store.Record{Kind: store.KindDevice, ID: "with-dup", Doc: json.RawMessage(`{}`)}}
	if _, err := s.ApplyWithAttempt(t.Context(), []store.Write{dev}, store.Attempt{ID: "dup", Time: now}); !errors.Is(err, store.ErrExists) {
		t.Errorf("ApplyWithAttempt with a duplicate attempt ID = %v; want ErrExists", err)
	}
	if _, err := s.Get(t.Context(), store.KindDevice, "with-dup"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after the refused batch = %v; want ErrNotFound (the write must not land)", err)
	}
	if _, err := s.ApplyWithAttempt(t.Context(), []store.Write{dev}, store.Attempt{Time: now}); err == nil {
		t.Error("ApplyWithAttempt accepted an attempt without an ID")
	}
	got, err := s.Attempts(t.Context(), "", 0)
	if err != nil || len(got) != 1 {
		t.Errorf("Attempts = %v, %v; want only the first attempt", got, err)
	}
	if _, err := s.Attempts(t.Context(), "", -1); err == nil {
		t.Errorf("Attempts with limit -1 succeeded")
	}
	if _, err := s.List(t.Context(), store.KindDevice, store.ListOptions{Limit: -1}); err == nil {
		t.Errorf("List with limit -1 succeeded")
	}
}

func testDeepDocument(t *testing.T, s store.Store) {
	for _, tc := range []struct {
		depth int
		ok    bool
	}{{1000, true}, {1001, false}} {
		t.Run(fmt.Sprint(tc.depth), func(t *testing.T) {
			doc := strings.Repeat("[", tc.depth) + strings.Repeat("]", tc.depth)
			_, err := s.Put(t.Context(), store.Record{Kind: store.KindTwin, ID: fmt.Sprint(tc.depth), Doc: json.RawMessage(doc)}, store.Cond{})
			if (err == nil) != tc.ok {
				t.Fatalf("Put of depth %d = %v; want ok=%v", tc.depth, err, tc.ok)
			}
			var we *store.WriteError
			if err != nil && !errors.As(err, &we) {
				t.Errorf("error %v is not a *store.WriteError", err)
			}
		})
	}
}

// testCloseWhileWriting closes the store under concurrent writers: every
// write is either acknowledged (and then durable) or refused with
// ErrClosed, and Close returns.
func testCloseWhileWriting(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	const goroutines, perGoroutine, closeAfter = 16, 100, 100
	dir := t.TempDir()
	s := open(t, dir)
	acked := make([][]store.Record, goroutines)
	errs := make([]error, goroutines)
	progress := make(chan struct{}, goroutines*perGoroutine)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				rec, err := s.Put(t.Context(), store.Record{Kind: store.KindDevice, ID: fmt.Sprintf("g%02d-%03d", g, i), Doc: json.RawMessage(`{}`)}, store.Cond{IfNoneMatch: true})
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					errs[g] = err
					return
				}
				acked[g] = append(acked[g], rec)
				progress <- struct{}{}
			}
		})
	}
	for range closeAfter {
		<-progress
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("writes failed with other errors than ErrClosed: %v", err)
	}
	s = open(t, dir)
	total := 0
	for g := range goroutines {
		for _, rec := range acked[g] {
			got, err := s.Get(t.Context(), rec.Kind, rec.ID)
			if err != nil {
				t.Fatalf("acknowledged %s lost: %v", rec.ID, err)
			}
			if got.ETag != rec.ETag {
				t.Errorf("%s etag %q; acknowledged %q", rec.ID, got.ETag, rec.ETag)
			}
			total++
		}
	}
	if n, err := s.Count(t.Context(), store.KindDevice, ""); err != nil || n != total {
		t.Errorf("Count = %d, %v; want the %d acknowledged writes", n, err, total)
	}
}
