package storetest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/muster-iot/muster/internal/store"
)

// RunReopen checks durability across restarts: it writes through one store,
// closes it, opens the same directory again and reads everything back, then
// writes through the reopened store (using etags from the first) and checks
// a third opening. open must return a store kept in dir (creating it when
// dir is empty) and register its cleanup with t.Cleanup; the cleanup must
// tolerate a store the suite has already closed.
func RunReopen(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	dir := t.TempDir()
	ctx := t.Context()

	first := open(t, dir)
	want := map[string]store.Record{}
	keep := func(rec store.Record) { want[string(rec.Kind)+"/"+rec.ID] = rec }
	for i := range 5 {
		keep(put(t, first, store.Record{Kind: store.KindEnrollment, ID: fmt.Sprintf("enr-%d", i), Group: "g", Doc: doc(t, map[string]any{"i": i, "name": "é"})}, store.Cond{IfNoneMatch: true}))
	}
	// Replaced and deleted records.
	keep(put(t, first, store.Record{Kind: store.KindEnrollment, ID: "enr-0", Group: "h", Doc: json.RawMessage(`{"replaced":true}`)}, store.Cond{IfMatch: want["enrollment/enr-0"].ETag}))
	if err := first.Delete(ctx, store.KindEnrollment, "enr-4", want["enrollment/enr-4"].ETag); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	delete(want, "enrollment/enr-4")
	recs, err := first.Apply(ctx, []store.Write{
		{Record: store.Record{Kind: store.KindDevice, ID: "dev-1", Group: "hub", Doc: json.RawMessage(`{"deviceId":"dev-1"}`)}},
		{Record: store.Record{Kind: store.KindTwin, ID: "dev-1", Group: "hub", Doc: json.RawMessage(`{"properties":{"desired":{"$version":1}}}`)}},
		{Record: store.Record{Kind: store.KindEnrollment, ID: "enr-3"}, Delete: true},
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	keep(recs[0])
	keep(recs[1])
	delete(want, "enrollment/enr-3")
	var attempts []store.Attempt
	for i := range 7 {
		attempts = append(attempts, attempt(i, fmt.Sprintf("dev-%d", i%2)))
	}
	appendAll(t, first, attempts)
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	check := func(t *testing.T, s store.Store) {
		t.Helper()
		for _, rec := range want {
			wantStored(t, s, rec)
		}
		for _, id := range []string{"enr-3", "enr-4"} {
			wantMissing(t, s, store.KindEnrollment, id)
		}
		for _, kind := range []store.Kind{store.KindEnrollment, store.KindDevice, store.KindTwin} {
			var wantIDs []string
			for _, rec := range want {
				if rec.Kind == kind {
					wantIDs = append(wantIDs, rec.ID)
				}
			}
			got, err := s.List(t.Context(), kind, store.ListOptions{})
			if err != nil {
				t.Fatalf("List %s: %v", kind, err)
			}
			if diff := cmp.Diff(wantIDs, ids(got), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("List %s IDs (-want +got):\n%s", kind, diff)
			}
		}
		got, err := s.Attempts(t.Context(), "", 0)
		if err != nil {
			t.Fatalf("Attempts: %v", err)
		}
		if diff := cmp.Diff(newestFirst(attempts), got); diff != "" {
			t.Errorf("Attempts (-want +got):\n%s", diff)
		}
	}

	second := open(t, dir)
	t.Run("reopened", func(t *testing.T) { check(t, second) })
	// Etags survive: a conditional write with an etag from before the restart works.
	keep(put(t, second, store.Record{Kind: store.KindEnrollment, ID: "enr-1", Group: "g", Doc: json.RawMessage(`{"after":"restart"}`)}, store.Cond{IfMatch: want["enrollment/enr-1"].ETag}))
	if err := second.Close(); err != nil {
		t.Fatalf("Close reopened store: %v", err)
	}

	third := open(t, dir)
	t.Run("reopened twice", func(t *testing.T) { check(t, third) })
	if err := third.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
