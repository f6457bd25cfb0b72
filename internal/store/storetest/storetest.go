// Package storetest owns the conformance suite of the store contract
// ([store.Store]): every backend (SQLite, PostgreSQL, in-memory) runs [Run]
// and, when it persists, [RunReopen] from its own tests. The suite defines
// the observable semantics the domain packages rely on: etag conditions,
// atomic batches, ordering and paging, the bounded attempt log, closing and
// durability.
//
// It imports only the store contract, the standard library and go-cmp; it
// must never import a backend.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/muster-iot/muster/internal/store"
)

// Contract constants the suite checks.
const (
	// DefaultListLimit is the page size of List when ListOptions.Limit is 0.
	DefaultListLimit = 1000
	// DefaultAttemptsLimit is how many attempts Attempts returns for limit 0.
	DefaultAttemptsLimit = 100
	// maxBoundTest is the largest attempt limit the bound test appends past;
	// open stores with a smaller AttemptLimit to run it.
	maxBoundTest = 200000
)

// AttemptLimiter is the optional interface through which a store reports
// how many attempts its log keeps.
type AttemptLimiter interface {
	AttemptLimit() int
}

// Run runs the conformance suite. open must return a new, empty store for
// each call and register its cleanup with t.Cleanup; the cleanup must
// tolerate a store the suite has already closed. Each subtest gets its own
// store.
//
// Besides the store package's documentation, the suite pins down:
//   - List orders IDs by their bytes (PostgreSQL needs COLLATE "C");
//   - Get returns exactly what Put returned (etag, group, timestamps to the
//     nanosecond the backend keeps, and the document's JSON value);
//   - Created equals Updated on creation, Updated grows on every write;
//   - an invalid write (empty kind or ID, ID with a NUL byte, empty or
//     malformed JSON document) is refused and stores nothing;
//   - a write whose context has already ended is not applied;
//   - after Close every method fails with store.ErrClosed.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetMissing", testGetMissing},
		{"PutCreate", testPutCreate},
		{"PutReplace", testPutReplace},
		{"PutIgnoresStoreFields", testPutIgnoresStoreFields},
		{"Conditions", testConditions},
		{"ETagsUnique", testETagsUnique},
		{"Delete", testDelete},
		{"List", testList},
		{"ListPaging", testListPaging},
		{"ListDefaultLimit", testListDefaultLimit},
		{"Count", testCount},
		{"KindsIsolated", testKindsIsolated},
		{"ApplyAllOrNothing", testApplyAllOrNothing},
		{"ApplyMixed", testApplyMixed},
		{"ApplySameRecordTwice", testApplySameRecordTwice},
		{"ApplyEmpty", testApplyEmpty},
		{"ApplyWithAttempt", testApplyWithAttempt},
		{"InvalidWrites", testInvalidWrites},
		{"CancelledContext", testCancelledContext},
		{"ConcurrentApply", testConcurrentApply},
		{"ConcurrentCAS", testConcurrentCAS},
		{"Attempts", testAttempts},
		{"AttemptsDefaultLimit", testAttemptsDefaultLimit},
		{"AttemptsBounded", testAttemptsBounded},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// ---- helpers ----

// jsonValue decodes a document for semantic comparison (numbers kept as
// their text); a document that does not decode compares as its raw text.
func jsonValue(m json.RawMessage) any {
	d := json.NewDecoder(bytes.NewReader(m))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "invalid JSON: " + string(m)
	}
	return v
}

// cmpOpts compares records with their documents as JSON values and nil
// slices equal to empty ones; times compare with time.Time.Equal.
func cmpOpts() cmp.Option {
	nonEmpty := func(a, b json.RawMessage) bool { return len(a) > 0 || len(b) > 0 }
	return cmp.Options{cmp.FilterValues(nonEmpty, cmp.Transformer("JSON", jsonValue)), cmpopts.EquateEmpty()}
}

func doc(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %v: %v", v, err)
	}
	return b
}

func put(t *testing.T, s store.Store, rec store.Record, cond store.Cond) store.Record {
	t.Helper()
	got, err := s.Put(t.Context(), rec, cond)
	if err != nil {
		t.Fatalf("Put %s/%s: %v", rec.Kind, rec.ID, err)
	}
	return got
}

func get(t *testing.T, s store.Store, kind store.Kind, id string) store.Record {
	t.Helper()
	got, err := s.Get(t.Context(), kind, id)
	if err != nil {
		t.Fatalf("Get %s/%s: %v", kind, id, err)
	}
	return got
}

func wantMissing(t *testing.T, s store.Store, kind store.Kind, id string) {
	t.Helper()
	if rec, err := s.Get(t.Context(), kind, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get %s/%s = %+v, %v; want ErrNotFound", kind, id, rec, err)
	}
}

// wantStored checks that the store holds exactly want.
func wantStored(t *testing.T, s store.Store, want store.Record) {
	t.Helper()
	got := get(t, s, want.Kind, want.ID)
	if diff := cmp.Diff(want, got, cmpOpts()); diff != "" {
		t.Fatalf("Get %s/%s mismatch (-want +got):\n%s", want.Kind, want.ID, diff)
	}
}

// checkAssigned checks the fields a store assigns on a write.
func checkAssigned(t *testing.T, rec store.Record) {
	t.Helper()
	if rec.ETag == "" {
		t.Errorf("%s/%s: ETag is empty", rec.Kind, rec.ID)
	}
	for name, ts := range map[string]time.Time{"Created": rec.Created, "Updated": rec.Updated} {
		if ts.IsZero() {
			t.Errorf("%s/%s: %s is zero", rec.Kind, rec.ID, name)
		}
		if ts.Location() != time.UTC {
			t.Errorf("%s/%s: %s = %v is not in UTC", rec.Kind, rec.ID, name, ts)
		}
	}
	if rec.Updated.Before(rec.Created) {
		t.Errorf("%s/%s: Updated %v is before Created %v", rec.Kind, rec.ID, rec.Updated, rec.Created)
	}
}

func wantWriteError(t *testing.T, err error, index int, kind store.Kind, id string, sentinel error) {
	t.Helper()
	var we *store.WriteError
	if !errors.As(err, &we) {
		t.Fatalf("error %v (%T) is not a *store.WriteError", err, err)
	}
	if we.Index != index || we.Kind != kind || we.ID != id {
		t.Errorf("WriteError names write %d %s/%s; want %d %s/%s", we.Index, we.Kind, we.ID, index, kind, id)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Errorf("error %v is not %v", err, sentinel)
	}
}

func ids(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// ---- documents ----

func testGetMissing(t *testing.T, s store.Store) {
	for _, kind := range []store.Kind{store.KindEnrollment, store.KindDevice, store.KindSetting} {
		wantMissing(t, s, kind, "nobody")
	}
	// A record of another kind does not make the ID exist.
	put(t, s, store.Record{Kind: store.KindDevice, ID: "dev1", Doc: doc(t, map[string]int{"a": 1})}, store.Cond{})
	wantMissing(t, s, store.KindTwin, "dev1")
}

func testPutCreate(t *testing.T, s store.Store) {
	docs := []struct {
		name string
		doc  string
	}{
		{"object", `{"registrationId":"dev-1","tags":{"site":"north"},"n":42,"ok":true,"none":null}`},
		{"nested arrays and unicode", `{"a":[1,2,[3,{"b":"ü €𝄞"}]],"s":"line\nbreak \"quoted\""}`},
		{"big integer", `{"version":9007199254740993,"neg":-12,"frac":0.5}`},
		{"whitespace", "{ \"a\" :\t[ 1 , 2 ]\n}"},
		{"array", `[1,"two",{"three":3}]`},
		{"string", `"just a string"`},
		{"number", `12345`},
		{"empty object", `{}`},
	}
	for i, tc := range docs {
		t.Run(tc.name, func(t *testing.T) {
			in := store.Record{Kind: store.KindEnrollment, ID: fmt.Sprintf("create-%d", i), Group: "g", Doc: json.RawMessage(tc.doc)}
			got := put(t, s, in, store.Cond{})
			checkAssigned(t, got)
			if !got.Created.Equal(got.Updated) {
				t.Errorf("on creation Created %v != Updated %v", got.Created, got.Updated)
			}
			want := in
			want.ETag, want.Created, want.Updated = got.ETag, got.Created, got.Updated
			if diff := cmp.Diff(want, got, cmpOpts()); diff != "" {
				t.Errorf("Put returned (-want +got):\n%s", diff)
			}
			wantStored(t, s, got)
		})
	}
}

func testPutReplace(t *testing.T, s store.Store) {
	first := put(t, s, store.Record{Kind: store.KindDevice, ID: "dev", Group: "hub-a", Doc: doc(t, map[string]int{"v": 1})}, store.Cond{})
	second := put(t, s, store.Record{Kind: store.KindDevice, ID: "dev", Group: "hub-b", Doc: doc(t, map[string]int{"v": 2})}, store.Cond{})
	checkAssigned(t, second)
	if !second.Created.Equal(first.Created) {
		t.Errorf("replace changed Created from %v to %v", first.Created, second.Created)
	}
	if second.ETag == first.ETag {
		t.Errorf("replace kept etag %q", first.ETag)
	}
	if !second.Updated.After(first.Updated) {
		t.Errorf("replace Updated %v is not after %v", second.Updated, first.Updated)
	}
	wantStored(t, s, second)
	for _, tc := range []struct {
		group string
		want  int
	}{{"hub-a", 0}, {"hub-b", 1}} {
		n, err := s.Count(t.Context(), store.KindDevice, tc.group)
		if err != nil {
			t.Fatalf("Count group %q: %v", tc.group, err)
		}
		if n != tc.want {
			t.Errorf("Count group %q = %d after regrouping; want %d", tc.group, n, tc.want)
		}
	}
}

func testPutIgnoresStoreFields(t *testing.T, s store.Store) {
	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	got := put(t, s, store.Record{Kind: store.KindSetting, ID: "x", ETag: "caller-etag", Created: past, Updated: past, Doc: json.RawMessage(`{}`)}, store.Cond{})
	if got.ETag == "caller-etag" {
		t.Errorf("Put kept the caller's etag")
	}
	if got.Created.Equal(past) || got.Updated.Equal(past) {
		t.Errorf("Put kept the caller's timestamps: %v, %v", got.Created, got.Updated)
	}
	wantStored(t, s, got)
}

func testConditions(t *testing.T, s store.Store) {
	const stale = "stale"
	tests := []struct {
		name    string
		exists  bool
		cond    func(current, old string) store.Cond
		wantErr error
	}{
		{"no condition creates", false, func(string, string) store.Cond { return store.Cond{} }, nil},
		{"no condition replaces", true, func(string, string) store.Cond { return store.Cond{} }, nil},
		{"if-none-match creates", false, func(string, string) store.Cond { return store.Cond{IfNoneMatch: true} }, nil},
		{"if-none-match on existing", true, func(string, string) store.Cond { return store.Cond{IfNoneMatch: true} }, store.ErrExists},
		{"if-match star replaces", true, func(string, string) store.Cond { return store.Cond{IfMatch: "*"} }, nil},
		{"if-match star on missing", false, func(string, string) store.Cond { return store.Cond{IfMatch: "*"} }, store.ErrPrecondition},
		{"if-match current etag", true, func(cur, _ string) store.Cond { return store.Cond{IfMatch: cur} }, nil},
		{"if-match previous etag", true, func(_, old string) store.Cond { return store.Cond{IfMatch: old} }, store.ErrPrecondition},
		{"if-match made-up etag", true, func(string, string) store.Cond { return store.Cond{IfMatch: stale} }, store.ErrPrecondition},
		{"if-match etag on missing", false, func(string, string) store.Cond { return store.Cond{IfMatch: stale} }, store.ErrPrecondition},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("cond-%d", i)
			var before store.Record
			var current, old string
			if tc.exists {
				v1 := put(t, s, store.Record{Kind: store.KindEnrollment, ID: id, Doc: doc(t, map[string]int{"v": 1})}, store.Cond{})
				before = put(t, s, store.Record{Kind: store.KindEnrollment, ID: id, Doc: doc(t, map[string]int{"v": 2})}, store.Cond{})
				current, old = before.ETag, v1.ETag
			}
			in := store.Record{Kind: store.KindEnrollment, ID: id, Group: "new", Doc: doc(t, map[string]int{"v": 3})}
			got, err := s.Put(t.Context(), in, tc.cond(current, old))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Put = %v; want %v", err, tc.wantErr)
				}
				if tc.exists {
					wantStored(t, s, before)
				} else {
					wantMissing(t, s, store.KindEnrollment, id)
				}
				return
			}
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			checkAssigned(t, got)
			if tc.exists && (got.ETag == current || !got.Created.Equal(before.Created)) {
				t.Errorf("replace returned etag %q created %v; had etag %q created %v", got.ETag, got.Created, current, before.Created)
			}
			wantStored(t, s, got)
		})
	}
}

func testETagsUnique(t *testing.T, s store.Store) {
	seen := map[string]string{}
	last := map[string]string{}
	for i := range 60 {
		id := fmt.Sprintf("e%d", i%6)
		got := put(t, s, store.Record{Kind: store.KindTwin, ID: id, Doc: doc(t, map[string]int{"i": i})}, store.Cond{})
		if prev, dup := seen[got.ETag]; dup {
			t.Fatalf("write %d of %s got etag %q already given to %s", i, id, got.ETag, prev)
		}
		seen[got.ETag] = fmt.Sprintf("write of %s", id)
		last[id] = got.ETag
	}
	for id, etag := range last {
		if got := get(t, s, store.KindTwin, id); got.ETag != etag {
			t.Errorf("Get %s etag = %q; want last written %q", id, got.ETag, etag)
		}
	}
}

func testDelete(t *testing.T, s store.Store) {
	tests := []struct {
		name    string
		exists  bool
		ifMatch func(current, old string) string
		wantErr error
	}{
		{"existing without if-match", true, func(string, string) string { return "" }, nil},
		{"missing without if-match", false, func(string, string) string { return "" }, store.ErrNotFound},
		{"existing with star", true, func(string, string) string { return "*" }, nil},
		{"missing with star", false, func(string, string) string { return "*" }, store.ErrNotFound},
		{"existing with current etag", true, func(cur, _ string) string { return cur }, nil},
		{"existing with previous etag", true, func(_, old string) string { return old }, store.ErrPrecondition},
		{"missing with etag", false, func(string, string) string { return "some-etag" }, store.ErrPrecondition},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("del-%d", i)
			var before store.Record
			var current, old string
			if tc.exists {
				v1 := put(t, s, store.Record{Kind: store.KindRegistration, ID: id, Doc: doc(t, map[string]int{"v": 1})}, store.Cond{})
				before = put(t, s, store.Record{Kind: store.KindRegistration, ID: id, Doc: doc(t, map[string]int{"v": 2})}, store.Cond{})
				current, old = before.ETag, v1.ETag
			}
			err := s.Delete(t.Context(), store.KindRegistration, id, tc.ifMatch(current, old))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Delete = %v; want %v", err, tc.wantErr)
				}
				if tc.exists {
					wantStored(t, s, before)
				}
				return
			}
			if err != nil {
				t.Fatalf("Delete: %v", err)
			}
			wantMissing(t, s, store.KindRegistration, id)
			if err := s.Delete(t.Context(), store.KindRegistration, id, ""); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("second Delete = %v; want ErrNotFound", err)
			}
			// The ID is free again.
			again := put(t, s, store.Record{Kind: store.KindRegistration, ID: id, Doc: doc(t, map[string]int{"v": 3})}, store.Cond{IfNoneMatch: true})
			if again.ETag == current {
				t.Errorf("recreated record reuses etag %q", current)
			}
		})
	}
}

// listFixture stores records whose IDs exercise byte order, in two groups
// and none, plus records of another kind that must not show up.
func listFixture(t *testing.T, s store.Store) []store.Record {
	t.Helper()
	entries := []struct{ id, group string }{
		{"b", "g1"}, {"B", "g2"}, {"a", "g1"}, {"a0", ""}, {"a-", "g2"},
		{"aa", "g1"}, {"Z", ""}, {"z", "g1"}, {"é", "g2"}, {"0", "g1"}, {"~", ""},
	}
	var all []store.Record
	for i, e := range entries {
		all = append(all, put(t, s, store.Record{Kind: store.KindDevice, ID: e.id, Group: e.group, Doc: doc(t, map[string]int{"i": i})}, store.Cond{}))
		put(t, s, store.Record{Kind: store.KindTwin, ID: e.id + "-twin", Group: e.group, Doc: doc(t, map[string]int{"i": i})}, store.Cond{})
	}
	slices.SortFunc(all, func(a, b store.Record) int { return strings.Compare(a.ID, b.ID) })
	return all
}

func filter(recs []store.Record, keep func(store.Record) bool) []store.Record {
	out := []store.Record{}
	for _, r := range recs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func testList(t *testing.T, s store.Store) {
	all := listFixture(t, s)
	inGroup := func(g string) func(store.Record) bool { return func(r store.Record) bool { return r.Group == g } }
	tests := []struct {
		name string
		opts store.ListOptions
		want []store.Record
	}{
		{"all", store.ListOptions{}, all},
		{"group", store.ListOptions{Group: "g1"}, filter(all, inGroup("g1"))},
		{"other group", store.ListOptions{Group: "g2"}, filter(all, inGroup("g2"))},
		{"unknown group", store.ListOptions{Group: "nope"}, nil},
		{"after", store.ListOptions{After: "a-"}, filter(all, func(r store.Record) bool { return r.ID > "a-" })},
		{"after an absent id", store.ListOptions{After: "a1"}, filter(all, func(r store.Record) bool { return r.ID > "a1" })},
		{"after with group", store.ListOptions{Group: "g1", After: "a"}, filter(all, func(r store.Record) bool { return r.Group == "g1" && r.ID > "a" })},
		{"limit", store.ListOptions{Limit: 3}, all[:3]},
		{"limit with group and after", store.ListOptions{Group: "g1", After: "0", Limit: 2}, filter(all, func(r store.Record) bool { return r.Group == "g1" && r.ID > "0" })[:2]},
		{"after the last", store.ListOptions{After: all[len(all)-1].ID}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.List(t.Context(), store.KindDevice, tc.opts)
			if err != nil {
				t.Fatalf("List(%+v): %v", tc.opts, err)
			}
			if diff := cmp.Diff(ids(tc.want), ids(got)); diff != "" {
				t.Fatalf("List(%+v) IDs (-want +got):\n%s", tc.opts, diff)
			}
			if diff := cmp.Diff(tc.want, got, cmpOpts()); diff != "" {
				t.Errorf("List(%+v) records (-want +got):\n%s", tc.opts, diff)
			}
		})
	}
}

func testListPaging(t *testing.T, s store.Store) {
	all := listFixture(t, s)
	for _, limit := range []int{1, 2, 5, len(all), len(all) + 1} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			var got []store.Record
			after := ""
			for page := 0; page <= len(all)+1; page++ {
				recs, err := s.List(t.Context(), store.KindDevice, store.ListOptions{After: after, Limit: limit})
				if err != nil {
					t.Fatalf("List page %d: %v", page, err)
				}
				if len(recs) > limit {
					t.Fatalf("page %d has %d records; limit %d", page, len(recs), limit)
				}
				if len(recs) == 0 {
					break
				}
				got = append(got, recs...)
				after = recs[len(recs)-1].ID
			}
			if diff := cmp.Diff(ids(all), ids(got)); diff != "" {
				t.Errorf("paged IDs (-want +got):\n%s", diff)
			}
		})
	}
}

func testListDefaultLimit(t *testing.T, s store.Store) {
	const n = DefaultListLimit + 5
	var want []string
	for start := 0; start < n; start += 100 {
		var writes []store.Write
		for i := start; i < min(start+100, n); i++ {
			id := fmt.Sprintf("dev-%05d", i)
			want = append(want, id)
			writes = append(writes, store.Write{Record: store.Record{Kind: store.KindDevice, ID: id, Doc: json.RawMessage(`{}`)}})
		}
		if _, err := s.Apply(t.Context(), writes); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	got, err := s.List(t.Context(), store.KindDevice, store.ListOptions{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := cmp.Diff(want[:DefaultListLimit], ids(got)); diff != "" {
		t.Fatalf("List with limit 0 (-want +got):\n%s", diff)
	}
	rest, err := s.List(t.Context(), store.KindDevice, store.ListOptions{After: got[len(got)-1].ID})
	if err != nil {
		t.Fatalf("List rest: %v", err)
	}
	if diff := cmp.Diff(want[DefaultListLimit:], ids(rest)); diff != "" {
		t.Errorf("List continuation (-want +got):\n%s", diff)
	}
}

func testCount(t *testing.T, s store.Store) {
	all := listFixture(t, s)
	tests := []struct {
		name  string
		kind  store.Kind
		group string
		want  int
	}{
		{"kind", store.KindDevice, "", len(all)},
		{"group", store.KindDevice, "g1", len(filter(all, func(r store.Record) bool { return r.Group == "g1" }))},
		{"unknown group", store.KindDevice, "nope", 0},
		{"other kind", store.KindTwin, "", len(all)},
		{"empty kind", store.KindCACertificate, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Count(t.Context(), tc.kind, tc.group)
			if err != nil {
				t.Fatalf("Count: %v", err)
			}
			if got != tc.want {
				t.Errorf("Count(%s, %q) = %d; want %d", tc.kind, tc.group, got, tc.want)
			}
		})
	}
	if err := s.Delete(t.Context(), store.KindDevice, all[0].ID, ""); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got, err := s.Count(t.Context(), store.KindDevice, ""); err != nil || got != len(all)-1 {
		t.Errorf("Count after delete = %d, %v; want %d", got, err, len(all)-1)
	}
}

func testKindsIsolated(t *testing.T, s store.Store) {
	kinds := []store.Kind{store.KindEnrollment, store.KindEnrollmentGroup, store.KindRegistration, store.KindDevice}
	recs := map[store.Kind]store.Record{}
	for _, k := range kinds {
		recs[k] = put(t, s, store.Record{Kind: k, ID: "same", Group: string(k), Doc: doc(t, map[string]string{"kind": string(k)})}, store.Cond{IfNoneMatch: true})
	}
	for _, k := range kinds {
		wantStored(t, s, recs[k])
		got, err := s.List(t.Context(), k, store.ListOptions{})
		if err != nil {
			t.Fatalf("List %s: %v", k, err)
		}
		if diff := cmp.Diff([]store.Record{recs[k]}, got, cmpOpts()); diff != "" {
			t.Errorf("List %s (-want +got):\n%s", k, diff)
		}
	}
	// A condition on one kind does not see the others.
	if _, err := s.Put(t.Context(), store.Record{Kind: store.KindDevice, ID: "same", Doc: json.RawMessage(`{}`)}, store.Cond{IfMatch: recs[store.KindEnrollment].ETag}); !errors.Is(err, store.ErrPrecondition) {
		t.Errorf("Put with another kind's etag = %v; want ErrPrecondition", err)
	}
	if err := s.Delete(t.Context(), store.KindEnrollment, "same", ""); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMissing(t, s, store.KindEnrollment, "same")
	for _, k := range kinds[1:] {
		wantStored(t, s, recs[k])
	}
}

// ---- Apply ----

func testApplyAllOrNothing(t *testing.T, s store.Store) {
	existing := put(t, s, store.Record{Kind: store.KindEnrollment, ID: "x", Doc: doc(t, map[string]int{"v": 1})}, store.Cond{})
	tests := []struct {
		name     string
		failing  store.Write
		sentinel error
	}{
		{"if-match mismatch", store.Write{Record: store.Record{Kind: store.KindEnrollment, ID: "x", Doc: json.RawMessage(`{"v":2}`)}, Cond: store.Cond{IfMatch: "wrong"}}, store.ErrPrecondition},
		{"if-none-match on existing", store.Write{Record: store.Record{Kind: store.KindEnrollment, ID: "x", Doc: json.RawMessage(`{"v":2}`)}, Cond: store.Cond{IfNoneMatch: true}}, store.ErrExists},
		{"if-match star on missing", store.Write{Record: store.Record{Kind: store.KindEnrollment, ID: "missing", Doc: json.RawMessage(`{}`)}, Cond: store.Cond{IfMatch: "*"}}, store.ErrPrecondition},
		{"delete missing", store.Write{Record: store.Record{Kind: store.KindEnrollment, ID: "missing"}, Delete: true}, store.ErrNotFound},
		{"delete with wrong etag", store.Write{Record: store.Record{Kind: store.KindEnrollment, ID: "x"}, Cond: store.Cond{IfMatch: "wrong"}, Delete: true}, store.ErrPrecondition},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			first := fmt.Sprintf("first-%d", i)
			writes := []store.Write{
				{Record: store.Record{Kind: store.KindEnrollment, ID: first, Doc: json.RawMessage(`{"new":true}`)}},
				tc.failing,
				{Record: store.Record{Kind: store.KindDevice, ID: first, Doc: json.RawMessage(`{"never":true}`)}},
			}
			recs, err := s.Apply(t.Context(), writes)
			if err == nil {
				t.Fatalf("Apply = %v, nil; want an error", recs)
			}
			wantWriteError(t, err, 1, tc.failing.Record.Kind, tc.failing.Record.ID, tc.sentinel)
			wantMissing(t, s, store.KindEnrollment, first)
			wantMissing(t, s, store.KindDevice, first)
			wantStored(t, s, existing)
		})
	}
}

func testApplyMixed(t *testing.T, s store.Store) {
	a := put(t, s, store.Record{Kind: store.KindDevice, ID: "a", Group: "h", Doc: json.RawMessage(`{"v":"a"}`)}, store.Cond{})
	b := put(t, s, store.Record{Kind: store.KindTwin, ID: "b", Group: "h", Doc: json.RawMessage(`{"v":"b"}`)}, store.Cond{})
	writes := []store.Write{
		{Record: store.Record{Kind: store.KindDevice, ID: "c", Group: "h", Doc: json.RawMessage(`{"v":"c"}`)}, Cond: store.Cond{IfNoneMatch: true}},
		{Record: store.Record{Kind: store.KindDevice, ID: "a"}, Cond: store.Cond{IfMatch: a.ETag}, Delete: true},
		{Record: store.Record{Kind: store.KindTwin, ID: "b", Group: "h2", Doc: json.RawMessage(`{"v":"b2"}`)}, Cond: store.Cond{IfMatch: b.ETag}},
	}
	recs, err := s.Apply(t.Context(), writes)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(recs) != len(writes) {
		t.Fatalf("Apply returned %d records for %d writes", len(recs), len(writes))
	}
	checkAssigned(t, recs[0])
	checkAssigned(t, recs[2])
	if diff := cmp.Diff(writes[1].Record, recs[1], cmpOpts()); diff != "" {
		t.Errorf("deleted record not returned as given (-want +got):\n%s", diff)
	}
	if recs[2].ETag == b.ETag || !recs[2].Created.Equal(b.Created) {
		t.Errorf("replaced b: etag %q created %v; before etag %q created %v", recs[2].ETag, recs[2].Created, b.ETag, b.Created)
	}
	for _, i := range []int{0, 2} {
		want := writes[i].Record
		want.ETag, want.Created, want.Updated = recs[i].ETag, recs[i].Created, recs[i].Updated
		if diff := cmp.Diff(want, recs[i], cmpOpts()); diff != "" {
			t.Errorf("write %d returned (-want +got):\n%s", i, diff)
		}
		wantStored(t, s, recs[i])
	}
	if recs[0].ETag == recs[2].ETag {
		t.Errorf("two writes of one Apply share etag %q", recs[0].ETag)
	}
	wantMissing(t, s, store.KindDevice, "a")
}

func testApplySameRecordTwice(t *testing.T, s store.Store) {
	recs, err := s.Apply(t.Context(), []store.Write{
		{Record: store.Record{Kind: store.KindTwin, ID: "d", Doc: json.RawMessage(`{"v":1}`)}, Cond: store.Cond{IfNoneMatch: true}},
		{Record: store.Record{Kind: store.KindTwin, ID: "d", Doc: json.RawMessage(`{"v":2}`)}, Cond: store.Cond{IfMatch: "*"}},
	})
	if err != nil {
		t.Fatalf("Apply put, put: %v", err)
	}
	if recs[0].ETag == recs[1].ETag {
		t.Errorf("both writes got etag %q", recs[0].ETag)
	}
	// One Apply may stamp all its writes with one instant.
	if !recs[1].Created.Equal(recs[0].Created) || recs[1].Updated.Before(recs[0].Updated) {
		t.Errorf("second write: created %v updated %v; first created %v updated %v", recs[1].Created, recs[1].Updated, recs[0].Created, recs[0].Updated)
	}
	wantStored(t, s, recs[1])

	if _, err := s.Apply(t.Context(), []store.Write{
		{Record: store.Record{Kind: store.KindTwin, ID: "e", Doc: json.RawMessage(`{}`)}},
		{Record: store.Record{Kind: store.KindTwin, ID: "e"}, Delete: true},
	}); err != nil {
		t.Fatalf("Apply put, delete: %v", err)
	}
	wantMissing(t, s, store.KindTwin, "e")
}

func testApplyEmpty(t *testing.T, s store.Store) {
	for _, writes := range [][]store.Write{nil, {}} {
		recs, err := s.Apply(t.Context(), writes)
		if err != nil || len(recs) != 0 {
			t.Errorf("Apply(%v) = %v, %v; want no records, nil", writes, recs, err)
		}
	}
}

func testInvalidWrites(t *testing.T, s store.Store) {
	valid := store.Write{Record: store.Record{Kind: store.KindDevice, ID: "valid", Doc: json.RawMessage(`{}`)}}
	tests := []struct {
		name string
		w    store.Write
	}{
		{"empty id", store.Write{Record: store.Record{Kind: store.KindDevice, Doc: json.RawMessage(`{}`)}}},
		{"empty kind", store.Write{Record: store.Record{ID: "x", Doc: json.RawMessage(`{}`)}}},
		{"nul in id", store.Write{Record: store.Record{Kind: store.KindDevice, ID: "a\x00b", Doc: json.RawMessage(`{}`)}}},
		{"empty doc", store.Write{Record: store.Record{Kind: store.KindDevice, ID: "x"}}},
		{"malformed doc", store.Write{Record: store.Record{Kind: store.KindDevice, ID: "x", Doc: json.RawMessage(`{"a":`)}}},
		{"two documents", store.Write{Record: store.Record{Kind: store.KindDevice, ID: "x", Doc: json.RawMessage(`{} {}`)}}},
		{"delete with empty id", store.Write{Record: store.Record{Kind: store.KindDevice}, Delete: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.w.Delete {
				if _, err := s.Put(t.Context(), tc.w.Record, tc.w.Cond); err == nil {
					t.Errorf("Put accepted an invalid write")
				}
			}
			_, err := s.Apply(t.Context(), []store.Write{valid, tc.w})
			if err == nil {
				t.Fatalf("Apply accepted an invalid write")
			}
			wantWriteError(t, err, 1, tc.w.Record.Kind, tc.w.Record.ID, nil)
			for _, k := range []store.Kind{store.KindDevice, ""} {
				if n, err := s.Count(t.Context(), k, ""); err != nil || n != 0 {
					t.Errorf("Count(%q) = %d, %v after refused writes; want 0", k, n, err)
				}
			}
		})
	}
}

func testCancelledContext(t *testing.T, s store.Store) {
	kept := put(t, s, store.Record{Kind: store.KindDevice, ID: "kept", Doc: json.RawMessage(`{}`)}, store.Cond{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name  string
		write func() error
		check func(t *testing.T)
	}{
		{"put", func() error {
			_, err := s.Put(ctx, store.Record{Kind: store.KindDevice, ID: "new", Doc: json.RawMessage(`{}`)}, store.Cond{})
			return err
		}, func(t *testing.T) { wantMissing(t, s, store.KindDevice, "new") }},
		{"delete", func() error { return s.Delete(ctx, store.KindDevice, "kept", "") },
			func(t *testing.T) { wantStored(t, s, kept) }},
		{"apply", func() error {
			_, err := s.Apply(ctx, []store.Write{{Record: store.Record{Kind: store.KindDevice, ID: "kept", Doc: json.RawMessage(`{"v":2}`)}}})
			return err
		}, func(t *testing.T) { wantStored(t, s, kept) }},
		{"append attempt", func() error {
			return s.AppendAttempt(ctx, store.Attempt{ID: "a1", Time: time.Now(), RegistrationID: "dev"})
		}, func(t *testing.T) {
			if got, err := s.Attempts(t.Context(), "", 0); err != nil || len(got) != 0 {
				t.Errorf("Attempts = %v, %v; want none", got, err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.write(); !errors.Is(err, context.Canceled) {
				t.Fatalf("write with a cancelled context = %v; want context.Canceled", err)
			}
			tc.check(t)
		})
	}
}

// ---- concurrency ----

func testConcurrentApply(t *testing.T, s store.Store) {
	const goroutines, rounds = 64, 20
	type result struct {
		recs []store.Record
		err  error
	}
	results := make([][]result, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		results[g] = make([]result, rounds)
		wg.Go(func() {
			for i := range rounds {
				recs, err := s.Apply(t.Context(), []store.Write{
					{Record: store.Record{Kind: store.KindRegistration, ID: fmt.Sprintf("g%02d-%02d", g, i), Group: fmt.Sprintf("g%02d", g), Doc: json.RawMessage(fmt.Sprintf(`{"g":%d,"i":%d}`, g, i))}, Cond: store.Cond{IfNoneMatch: true}},
					{Record: store.Record{Kind: store.KindDevice, ID: fmt.Sprintf("g%02d-%02d", g, i), Doc: json.RawMessage(`{}`)}, Cond: store.Cond{IfNoneMatch: true}},
				})
				results[g][i] = result{recs, err}
			}
		})
	}
	wg.Wait()

	want := map[string]store.Record{}
	for g := range goroutines {
		for i, r := range results[g] {
			if r.err != nil {
				t.Fatalf("goroutine %d Apply %d: %v", g, i, r.err)
			}
			for _, rec := range r.recs {
				key := string(rec.Kind) + "/" + rec.ID
				if prev, dup := want[key]; dup {
					t.Fatalf("%s returned twice: %+v and %+v", key, prev, rec)
				}
				want[key] = rec
			}
		}
	}
	etags := map[string]string{}
	for _, kind := range []store.Kind{store.KindRegistration, store.KindDevice} {
		n, err := s.Count(t.Context(), kind, "")
		if err != nil || n != goroutines*rounds {
			t.Fatalf("Count %s = %d, %v; want %d", kind, n, err, goroutines*rounds)
		}
		after := ""
		for page := 0; page < goroutines*rounds; page++ {
			recs, err := s.List(t.Context(), kind, store.ListOptions{After: after, Limit: 500})
			if err != nil {
				t.Fatalf("List %s: %v", kind, err)
			}
			if len(recs) == 0 {
				break
			}
			for _, rec := range recs {
				key := string(kind) + "/" + rec.ID
				if diff := cmp.Diff(want[key], rec, cmpOpts()); diff != "" {
					t.Fatalf("stored %s differs from what Apply returned (-want +got):\n%s", key, diff)
				}
				if prev, dup := etags[rec.ETag]; dup {
					t.Fatalf("%s and %s share etag %q", prev, key, rec.ETag)
				}
				etags[rec.ETag] = key
			}
			after = recs[len(recs)-1].ID
		}
	}
	if len(etags) != 2*goroutines*rounds {
		t.Errorf("listed %d records; want %d", len(etags), 2*goroutines*rounds)
	}
}

func testConcurrentCAS(t *testing.T, s store.Store) {
	const goroutines, rounds = 8, 25
	type counter struct {
		N int `json:"n"`
	}
	put(t, s, store.Record{Kind: store.KindSetting, ID: "counter", Doc: doc(t, counter{})}, store.Cond{})
	successes := make([]int, goroutines)
	conflicts := make([]int, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range rounds {
				rec, err := s.Get(t.Context(), store.KindSetting, "counter")
				if err != nil {
					errs[g] = fmt.Errorf("get: %w", err)
					return
				}
				var c counter
				if err := json.Unmarshal(rec.Doc, &c); err != nil {
					errs[g] = fmt.Errorf("decode %s: %w", rec.Doc, err)
					return
				}
				c.N++
				next, err := json.Marshal(c)
				if err != nil {
					errs[g] = err
					return
				}
				_, err = s.Put(t.Context(), store.Record{Kind: store.KindSetting, ID: "counter", Doc: next}, store.Cond{IfMatch: rec.ETag})
				switch {
				case err == nil:
					successes[g]++
				case errors.Is(err, store.ErrPrecondition):
					conflicts[g]++
				default:
					errs[g] = fmt.Errorf("put: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	total, lost := 0, 0
	for g := range goroutines {
		if errs[g] != nil {
			t.Fatalf("goroutine %d: %v", g, errs[g])
		}
		total += successes[g]
		lost += conflicts[g]
	}
	if total+lost != goroutines*rounds {
		t.Errorf("%d successes + %d conflicts; want %d attempts", total, lost, goroutines*rounds)
	}
	if total == 0 {
		t.Fatalf("no compare-and-set succeeded")
	}
	var final counter
	if err := json.Unmarshal(get(t, s, store.KindSetting, "counter").Doc, &final); err != nil {
		t.Fatalf("decode final counter: %v", err)
	}
	if final.N != total {
		t.Errorf("counter = %d; want %d (one per successful compare-and-set)", final.N, total)
	}
}

// ---- attempts ----

// attempt returns the i-th test attempt; a higher i is newer.
// testApplyWithAttempt checks that the writes and the attempt of
// ApplyWithAttempt land together, and that a failing write keeps the
// attempt out as well.
func testApplyWithAttempt(t *testing.T, s store.Store) {
	writes := []store.Write{
		{Record: store.Record{Kind: store.KindRegistration, ID: "dev", Doc: json.RawMessage(`{"status":"assigned"}`)}},
		{Record: store.Record{Kind: store.KindDevice, ID: "dev", Doc: json.RawMessage(`{"deviceId":"dev"}`)}, Cond: store.Cond{IfNoneMatch: true}},
	}
	ok := attempt(1, "dev")
	recs, err := s.ApplyWithAttempt(t.Context(), writes, ok)
	if err != nil {
		t.Fatalf("ApplyWithAttempt: %v", err)
	}
	if len(recs) != 2 || recs[0].ID != "dev" || recs[0].ETag == "" || recs[1].Kind != store.KindDevice {
		t.Errorf("ApplyWithAttempt records %+v; want the registration and the device as stored", recs)
	}
	if got, err := s.Get(t.Context(), store.KindDevice, "dev"); err != nil || got.ETag != recs[1].ETag {
		t.Errorf("Get device = %+v, %v; want the record ApplyWithAttempt returned", got, err)
	}
	got, err := s.Attempts(t.Context(), "dev", 0)
	if err != nil || len(got) != 1 || got[0].ID != ok.ID || got[0].Outcome != ok.Outcome {
		t.Fatalf("Attempts = %+v, %v; want the one attempt", got, err)
	}

	// The device exists now, so its if-none-match write fails: the
	// registration update and the second attempt must not land either.
	writes[0].Record.Doc = json.RawMessage(`{"status":"again"}`)
	if _, err := s.ApplyWithAttempt(t.Context(), writes, attempt(2, "dev")); err == nil {
		t.Fatal("ApplyWithAttempt with a failing write succeeded")
	} else {
		wantWriteError(t, err, 1, store.KindDevice, "dev", store.ErrExists)
	}
	if reg, err := s.Get(t.Context(), store.KindRegistration, "dev"); err != nil || jsonValue(reg.Doc).(map[string]any)["status"] != "assigned" {
		t.Errorf("registration after the failed batch = %s, %v; want it unchanged", reg.Doc, err)
	}
	if got, err := s.Attempts(t.Context(), "dev", 0); err != nil || len(got) != 1 {
		t.Errorf("Attempts after the failed batch = %+v, %v; want only the first", got, err)
	}

	// No writes: the attempt alone.
	if recs, err := s.ApplyWithAttempt(t.Context(), nil, attempt(3, "other")); err != nil || len(recs) != 0 {
		t.Errorf("ApplyWithAttempt without writes = %v, %v; want no records and no error", recs, err)
	}
	if got, err := s.Attempts(t.Context(), "other", 0); err != nil || len(got) != 1 {
		t.Errorf("Attempts of the attempt-only batch = %+v, %v; want it", got, err)
	}
}

func attempt(i int, regID string) store.Attempt {
	base := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)
	return store.Attempt{
		ID:             fmt.Sprintf("att-%08d", i),
		Time:           base.Add(time.Duration(i) * time.Millisecond),
		RegistrationID: regID,
		Protocol:       "https",
		Attestation:    "symmetricKey",
		Outcome:        "denied",
		Reason:         "sasSignatureMismatch",
		Hint:           fmt.Sprintf("attempt %d", i),
		EnrollmentKind: "group",
		EnrollmentID:   "grp-1",
		RemoteAddr:     "127.0.0.1:5000",
	}
}

func appendAll(t *testing.T, s store.Store, as []store.Attempt) {
	t.Helper()
	for _, a := range as {
		if err := s.AppendAttempt(t.Context(), a); err != nil {
			t.Fatalf("AppendAttempt %s: %v", a.ID, err)
		}
	}
}

func newestFirst(as []store.Attempt) []store.Attempt {
	out := slices.Clone(as)
	slices.SortStableFunc(out, func(a, b store.Attempt) int { return b.Time.Compare(a.Time) })
	return out
}

func testAttempts(t *testing.T, s store.Store) {
	regs := []string{"dev-a", "dev-b", "dev-c"}
	var all []store.Attempt
	byReg := map[string][]store.Attempt{}
	// Appended out of time order: the log orders by Time, not arrival.
	for _, i := range []int{5, 0, 7, 3, 1, 8, 2, 6, 4} {
		a := attempt(i, regs[i%3])
		if i == 4 {
			a.Time = a.Time.In(time.FixedZone("UTC+2", 2*60*60))
			a.Reason, a.Hint, a.EnrollmentKind, a.EnrollmentID = "", "", "", ""
		}
		all = append(all, a)
		byReg[a.RegistrationID] = append(byReg[a.RegistrationID], a)
	}
	appendAll(t, s, all)
	tests := []struct {
		name  string
		reg   string
		limit int
		want  []store.Attempt
	}{
		{"one registration", "dev-a", 0, newestFirst(byReg["dev-a"])},
		{"other registration", "dev-b", 0, newestFirst(byReg["dev-b"])},
		{"limit", "dev-a", 2, newestFirst(byReg["dev-a"])[:2]},
		{"unknown registration", "dev-x", 0, nil},
		{"newest overall", "", 0, newestFirst(all)},
		{"newest overall, limit", "", 4, newestFirst(all)[:4]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Attempts(t.Context(), tc.reg, tc.limit)
			if err != nil {
				t.Fatalf("Attempts(%q, %d): %v", tc.reg, tc.limit, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Attempts(%q, %d) (-want +got):\n%s", tc.reg, tc.limit, diff)
			}
		})
	}
}

func testAttemptsDefaultLimit(t *testing.T, s store.Store) {
	const n = DefaultAttemptsLimit + 5
	if l, ok := s.(AttemptLimiter); ok && l.AttemptLimit() < n {
		t.Skipf("store keeps %d attempts; this test needs %d", l.AttemptLimit(), n)
	}
	var all []store.Attempt
	for i := range n {
		all = append(all, attempt(i, "dev-d"))
	}
	appendAll(t, s, all)
	for _, reg := range []string{"dev-d", ""} {
		got, err := s.Attempts(t.Context(), reg, 0)
		if err != nil {
			t.Fatalf("Attempts(%q, 0): %v", reg, err)
		}
		if diff := cmp.Diff(newestFirst(all)[:DefaultAttemptsLimit], got); diff != "" {
			t.Errorf("Attempts(%q, 0) (-want +got):\n%s", reg, diff)
		}
	}
}

func testAttemptsBounded(t *testing.T, s store.Store) {
	l, ok := s.(AttemptLimiter)
	if !ok {
		t.Skip("store does not report its attempt limit (no AttemptLimit method)")
	}
	bound := l.AttemptLimit()
	if bound <= 0 || bound > maxBoundTest {
		t.Skipf("attempt limit %d is outside 1..%d; open the store with a smaller limit to test the bound", bound, maxBoundTest)
	}
	n := bound + 10
	all := make([]store.Attempt, n)
	for i := range n {
		all[i] = attempt(i, fmt.Sprintf("bound-%d", i%3))
	}
	// Appended by concurrent workers, so arrival order differs from time
	// order; the oldest by Time are the ones dropped.
	const workers = 8
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := s.AppendAttempt(t.Context(), all[i]); err != nil {
					errs[w] = fmt.Errorf("append %s: %w", all[i].ID, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got, err := s.Attempts(t.Context(), "", n)
	if err != nil {
		t.Fatalf("Attempts: %v", err)
	}
	want := newestFirst(all)[:bound]
	if len(got) != bound {
		t.Fatalf("log holds %d attempts after %d appends; want the bound %d", len(got), n, bound)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kept attempts (-want +got):\n%s", diff)
	}
	// One more append drops exactly the oldest kept one.
	extra := attempt(n, "bound-extra")
	appendAll(t, s, []store.Attempt{extra})
	got, err = s.Attempts(t.Context(), "", n)
	if err != nil {
		t.Fatalf("Attempts: %v", err)
	}
	want = append([]store.Attempt{extra}, want[:bound-1]...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after one more append (-want +got):\n%s", diff)
	}
}

// ---- closing ----

func testClosed(t *testing.T, s store.Store) {
	rec := put(t, s, store.Record{Kind: store.KindDevice, ID: "d", Doc: json.RawMessage(`{}`)}, store.Cond{})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	ops := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, store.KindDevice, "d"); return err }},
		{"Put", func() error {
			_, err := s.Put(ctx, store.Record{Kind: store.KindDevice, ID: "e", Doc: json.RawMessage(`{}`)}, store.Cond{})
			return err
		}},
		{"Delete", func() error { return s.Delete(ctx, store.KindDevice, "d", rec.ETag) }},
		{"List", func() error { _, err := s.List(ctx, store.KindDevice, store.ListOptions{}); return err }},
		{"Count", func() error { _, err := s.Count(ctx, store.KindDevice, ""); return err }},
		{"Apply", func() error {
			_, err := s.Apply(ctx, []store.Write{{Record: store.Record{Kind: store.KindDevice, ID: "d"}, Delete: true}})
			return err
		}},
		{"Apply empty", func() error { _, err := s.Apply(ctx, nil); return err }},
		{"AppendAttempt", func() error { return s.AppendAttempt(ctx, attempt(1, "dev")) }},
		{"ApplyWithAttempt", func() error {
			_, err := s.ApplyWithAttempt(ctx, []store.Write{{Record: store.Record{Kind: store.KindDevice, ID: "f", Doc: json.RawMessage(`{}`)}}}, attempt(2, "dev"))
			return err
		}},
		{"Attempts", func() error { _, err := s.Attempts(ctx, "", 0); return err }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			if err := op.call(); !errors.Is(err, store.ErrClosed) {
				t.Errorf("%s after Close = %v; want ErrClosed", op.name, err)
			}
		})
	}
	if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close = %v; want nil or ErrClosed", err)
	}
}
