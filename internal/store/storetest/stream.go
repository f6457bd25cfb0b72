package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/store"
)

// RunStream runs the conformance suite of [store.Streams]. open must return
// a new, empty store for each call and register its cleanup with
// t.Cleanup; the cleanup must tolerate a store the suite has already
// closed. Each subtest gets its own store.
//
// Besides the store package's documentation, the suite pins down:
//   - seqs start at 1 per stream and are consecutive across appends, also
//     with many concurrent appenders, and never reused after a trim;
//   - entries read back exactly as appended (Doc and Body byte for byte,
//     Time to the nanosecond, in UTC), and a read that finds nothing
//     returns an empty, non-nil slice;
//   - retention drops exactly the minimal prefix the size bound and the
//     age cutoff require, and StreamInfo accounts for it;
//   - an invalid or oversized append is refused whole and stores nothing;
//   - a write whose context has already ended is not applied;
//   - a [store.StreamNotifier], when the store is one, has closed the
//     stream's channel by the time AppendMessages returns;
//   - after Close every method fails with store.ErrClosed.
func RunStream(t *testing.T, open func(t *testing.T) store.StreamStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.StreamStore)
	}{
		{"AppendRead", testStreamAppendRead},
		{"EmptyAppend", testStreamEmptyAppend},
		{"StreamsIsolated", testStreamsIsolated},
		{"ReadCursor", testStreamReadCursor},
		{"Filter", testStreamFilter},
		{"Limit", testStreamLimit},
		{"ReadBudget", testStreamReadBudget},
		{"ConcurrentAppend", testStreamConcurrentAppend},
		{"RetentionBytes", testStreamRetentionBytes},
		{"RetentionAge", testStreamRetentionAge},
		{"RetentionLarge", testStreamRetentionLarge},
		{"InvalidAppends", testStreamInvalidAppends},
		{"InvalidArguments", testStreamInvalidArguments},
		{"CancelledContext", testStreamCancelledContext},
		{"Notify", testStreamNotify},
		{"Closed", testStreamClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// RunStreamReopen checks that streams survive restarts: entries, seqs,
// trims and statistics are kept, and appends after a reopen continue the
// seqs. open must return a store kept in dir (creating it when dir is
// empty) and register its cleanup with t.Cleanup; the cleanup must
// tolerate a store the suite has already closed.
func RunStreamReopen(t *testing.T, open func(t *testing.T, dir string) store.StreamStore) {
	dir := t.TempDir()
	ctx := t.Context()
	base := time.Date(2026, 11, 5, 10, 0, 0, 123456789, time.UTC)

	first := open(t, dir)
	var events, other []store.StreamEntry
	for i := range 6 {
		events = append(events, streamEntry(fmt.Sprintf("dev-%d", i%2), "", base.Add(time.Duration(i)*time.Minute), fmt.Sprintf(`{"i":%d}`, i), []byte{byte(i), 0, 0xff}))
	}
	other = append(other, streamEntry("dev-x", "mod", base, `{"other":true}`, nil))
	events = appendStream(t, first, "events", events...)
	other = appendStream(t, first, "other", other...)
	if n, err := first.TrimStream(ctx, "events", store.Retention{Before: base.Add(2 * time.Minute)}); err != nil || n != 2 {
		t.Fatalf("TrimStream = %d, %v; want 2", n, err)
	}
	events = events[2:]
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	check := func(t *testing.T, s store.StreamStore, events, other []store.StreamEntry) {
		t.Helper()
		wantRead(t, s, "events", 0, store.StreamFilter{}, 0, events)
		wantRead(t, s, "other", 0, store.StreamFilter{}, 0, other)
		wantInfo(t, s, "events", stats(events[0].Seq, events[len(events)-1].Seq, events))
		wantInfo(t, s, "other", stats(1, 1, other))
	}

	second := open(t, dir)
	t.Run("reopened", func(t *testing.T) { check(t, second, events, other) })
	more := appendStream(t, second, "events", streamEntry("dev-9", "m", base.Add(time.Hour), `{"after":"restart"}`, []byte("x")))
	if more[0].Seq != 7 {
		t.Errorf("first seq after reopen = %d; want 7", more[0].Seq)
	}
	events = append(events, more...)
	if err := second.Close(); err != nil {
		t.Fatalf("Close reopened store: %v", err)
	}

	third := open(t, dir)
	t.Run("reopened twice", func(t *testing.T) { check(t, third, events, other) })
	if err := third.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// ---- helpers ----

// streamEntry builds an entry to append.
func streamEntry(key, sub string, at time.Time, doc string, body []byte) store.StreamEntry {
	return store.StreamEntry{Key: key, Sub: sub, Time: at, Doc: json.RawMessage(doc), Body: body}
}

// sized returns an entry of exactly size bytes (a 2-byte document and a
// body of the rest).
func sized(key string, at time.Time, size int) store.StreamEntry {
	return streamEntry(key, "", at, `{}`, bytes.Repeat([]byte{'b'}, size-2))
}

// appendStream appends entries and returns them as the store keeps them:
// with their seqs and UTC times. It checks the seqs are consecutive.
func appendStream(t *testing.T, s store.Streams, stream string, entries ...store.StreamEntry) []store.StreamEntry {
	t.Helper()
	seqs, err := s.AppendMessages(t.Context(), stream, entries)
	if err != nil {
		t.Fatalf("AppendMessages(%q, %d entries): %v", stream, len(entries), err)
	}
	if len(seqs) != len(entries) {
		t.Fatalf("AppendMessages(%q) returned %d seqs for %d entries", stream, len(seqs), len(entries))
	}
	out := make([]store.StreamEntry, len(entries))
	for i, e := range entries {
		if e.Seq != 0 {
			t.Fatalf("AppendMessages changed the caller's entry %d (seq %d)", i, e.Seq)
		}
		if i > 0 && seqs[i] != seqs[i-1]+1 {
			t.Fatalf("AppendMessages seqs %v are not consecutive", seqs)
		}
		e.Seq = seqs[i]
		e.Time = e.Time.UTC()
		out[i] = e
	}
	return out
}

// streamOpts compares entries with Time by instant (time.Time.Equal),
// documents and bodies byte for byte, and nil bodies equal to empty ones.
// (Comparing bytes one by one through reflection is far too slow for
// megabyte bodies.)
func streamOpts() cmp.Option {
	// The comparer applies to json.RawMessage too (it is assignable to []byte).
	return cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })
}

func wantRead(t *testing.T, s store.Streams, stream string, after int64, f store.StreamFilter, limit int, want []store.StreamEntry) {
	t.Helper()
	got, err := s.ReadMessages(t.Context(), stream, after, f, limit)
	if err != nil {
		t.Fatalf("ReadMessages(%q, %d, %+v, %d): %v", stream, after, f, limit, err)
	}
	if got == nil {
		t.Errorf("ReadMessages(%q, %d, %+v, %d) returned a nil slice and no error", stream, after, f, limit)
	}
	if len(want) == 0 && len(got) == 0 {
		return
	}
	if diff := cmp.Diff(want, got, streamOpts()); diff != "" {
		t.Errorf("ReadMessages(%q, %d, %+v, %d) (-want +got):\n%s", stream, after, f, limit, diff)
	}
	for _, e := range got {
		if e.Time.Location() != time.UTC {
			t.Errorf("entry %d time %v is not in UTC", e.Seq, e.Time)
		}
	}
}

func stats(first, last int64, kept []store.StreamEntry) store.StreamStats {
	st := store.StreamStats{FirstSeq: first, LastSeq: last, Count: int64(len(kept))}
	for _, e := range kept {
		st.Bytes += int64(e.Size())
	}
	return st
}

func wantInfo(t *testing.T, s store.Streams, stream string, want store.StreamStats) {
	t.Helper()
	got, err := s.StreamInfo(t.Context(), stream)
	if err != nil {
		t.Fatalf("StreamInfo(%q): %v", stream, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("StreamInfo(%q) (-want +got):\n%s", stream, diff)
	}
}

func readAll(t *testing.T, s store.Streams, stream string, f store.StreamFilter) []store.StreamEntry {
	t.Helper()
	var out []store.StreamEntry
	after := int64(0)
	for range 1 << 20 {
		page, err := s.ReadMessages(t.Context(), stream, after, f, store.MaxStreamReadLimit)
		if err != nil {
			t.Fatalf("ReadMessages(%q, %d): %v", stream, after, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Seq
	}
	t.Fatalf("ReadMessages(%q) did not reach the end", stream)
	return nil
}

// ---- appending and reading ----

func testStreamAppendRead(t *testing.T, s store.StreamStore) {
	base := time.Date(2026, 11, 5, 10, 0, 0, 1, time.FixedZone("UTC+2", 2*60*60))
	a := appendStream(t, s, "events",
		streamEntry("dev-1", "", base, `{"a":1}`, []byte(`{"temp":21.5}`)),
		streamEntry("dev-2", "mod-1", base.Add(time.Nanosecond), ` { "spaces" : [ 1 , 2 ] } `, []byte{0, 1, 2, 0xff, 0xfe}),
		streamEntry("dev-1", "", base.Add(-time.Hour), `{"older":"time, later seq","é":"𝄞"}`, nil),
	)
	b := appendStream(t, s, "events",
		streamEntry("dev-3", "$edgeHub", base, `"a string document"`, []byte{}),
		streamEntry("dev-1", "", base, `null`, bytes.Repeat([]byte{0}, 1000)),
	)
	c := appendStream(t, s, "events", streamEntry("dev-2", "", base, `{"\u0000":"escaped nul"}`, []byte("last")))
	want := append(append(append([]store.StreamEntry(nil), a...), b...), c...)
	for i, e := range want {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d got seq %d; want %d (seqs start at 1 and are consecutive across appends)", i, e.Seq, i+1)
		}
	}
	wantRead(t, s, "events", 0, store.StreamFilter{}, 0, want)
	wantInfo(t, s, "events", stats(1, 6, want))
}

func testStreamEmptyAppend(t *testing.T, s store.StreamStore) {
	for _, entries := range [][]store.StreamEntry{nil, {}} {
		seqs, err := s.AppendMessages(t.Context(), "events", entries)
		if err != nil || len(seqs) != 0 {
			t.Errorf("AppendMessages(%v) = %v, %v; want no seqs, nil", entries, seqs, err)
		}
	}
	wantInfo(t, s, "events", store.StreamStats{FirstSeq: 1})
	wantInfo(t, s, "never-used", store.StreamStats{FirstSeq: 1})
	wantRead(t, s, "never-used", 0, store.StreamFilter{}, 0, nil)
}

func testStreamsIsolated(t *testing.T, s store.StreamStore) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	a := appendStream(t, s, "a", streamEntry("d", "", at, `{"s":"a"}`, nil), streamEntry("d", "", at, `{"s":"a2"}`, nil))
	b := appendStream(t, s, "b", streamEntry("d", "", at, `{"s":"b"}`, nil))
	a = append(a, appendStream(t, s, "a", streamEntry("d", "", at, `{"s":"a3"}`, nil))...)
	if b[0].Seq != 1 || a[2].Seq != 3 {
		t.Errorf("seqs a %d, %d, %d and b %d; want 1, 2, 3 and 1 (one sequence per stream)", a[0].Seq, a[1].Seq, a[2].Seq, b[0].Seq)
	}
	wantRead(t, s, "a", 0, store.StreamFilter{}, 0, a)
	wantRead(t, s, "b", 0, store.StreamFilter{}, 0, b)
	if n, err := s.TrimStream(t.Context(), "a", store.Retention{MaxBytes: 1}); err != nil || n != 3 {
		t.Fatalf("TrimStream(a) = %d, %v; want 3", n, err)
	}
	wantRead(t, s, "b", 0, store.StreamFilter{}, 0, b)
	wantInfo(t, s, "b", stats(1, 1, b))
}

func testStreamReadCursor(t *testing.T, s store.StreamStore) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	var in []store.StreamEntry
	for i := range 5 {
		in = append(in, streamEntry("d", "", at, fmt.Sprintf(`{"i":%d}`, i), nil))
	}
	all := appendStream(t, s, "events", in...)
	tests := []struct {
		after int64
		want  []store.StreamEntry
	}{
		{0, all},
		{1, all[1:]},
		{3, all[3:]},
		{4, all[4:]},
		{5, nil},
		{1 << 40, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("after %d", tc.after), func(t *testing.T) {
			wantRead(t, s, "events", tc.after, store.StreamFilter{}, 0, tc.want)
		})
	}
}

func testStreamFilter(t *testing.T, s store.StreamStore) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	keys := []struct{ key, sub string }{
		{"dev-1", ""}, {"dev-2", ""}, {"dev-1", "mod-a"}, {"dev-1", "mod-b"}, {"dev-3", "mod-a"},
		{"dev-1", ""}, {"dev-2", "mod-a"}, {"dev-1", "mod-a"}, {"Dev-1", ""}, {"dev-10", ""},
	}
	var in []store.StreamEntry
	for i, k := range keys {
		in = append(in, streamEntry(k.key, k.sub, at, fmt.Sprintf(`{"i":%d}`, i), nil))
	}
	all := appendStream(t, s, "events", in...)
	pick := func(idx ...int) []store.StreamEntry {
		var out []store.StreamEntry
		for _, i := range idx {
			out = append(out, all[i])
		}
		return out
	}
	tests := []struct {
		name   string
		filter store.StreamFilter
		after  int64
		limit  int
		want   []store.StreamEntry
	}{
		{"device", store.StreamFilter{Key: "dev-1"}, 0, 0, pick(0, 2, 3, 5, 7)},
		{"device is case-sensitive and exact", store.StreamFilter{Key: "Dev-1"}, 0, 0, pick(8)},
		{"device and module", store.StreamFilter{Key: "dev-1", Sub: "mod-a"}, 0, 0, pick(2, 7)},
		{"device after a cursor", store.StreamFilter{Key: "dev-1"}, 3, 0, pick(3, 5, 7)},
		{"device with a limit", store.StreamFilter{Key: "dev-1"}, 0, 2, pick(0, 2)},
		{"device, cursor and limit", store.StreamFilter{Key: "dev-1"}, 4, 2, pick(5, 7)},
		{"module after a cursor", store.StreamFilter{Key: "dev-1", Sub: "mod-a"}, 3, 0, pick(7)},
		{"unknown device", store.StreamFilter{Key: "dev-9"}, 0, 0, nil},
		{"unknown module", store.StreamFilter{Key: "dev-1", Sub: "mod-z"}, 0, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantRead(t, s, "events", tc.after, tc.filter, tc.limit, tc.want)
		})
	}
}

func testStreamLimit(t *testing.T, s store.StreamStore) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	n := store.MaxStreamReadLimit + 5
	in := make([]store.StreamEntry, n)
	for i := range in {
		in[i] = streamEntry(fmt.Sprintf("dev-%d", i%3), "", at, fmt.Sprintf(`{"i":%d}`, i), nil)
	}
	all := appendStream(t, s, "events", in...)
	tests := []struct {
		name  string
		after int64
		limit int
		want  []store.StreamEntry
	}{
		{"default", 0, 0, all[:store.DefaultStreamReadLimit]},
		{"one", 0, 1, all[:1]},
		{"seven after ten", 10, 7, all[10:17]},
		{"the maximum", 0, store.MaxStreamReadLimit, all[:store.MaxStreamReadLimit]},
		{"above the maximum", 0, store.MaxStreamReadLimit * 10, all[:store.MaxStreamReadLimit]},
		{"more than remain", int64(n - 3), 50, all[n-3:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantRead(t, s, "events", tc.after, store.StreamFilter{}, tc.limit, tc.want)
		})
	}
}

func testStreamReadBudget(t *testing.T, s store.StreamStore) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	per := store.MaxStreamReadBytes / 10 // ten fit, with a few bytes to spare
	spare := store.MaxStreamReadBytes - 10*per
	tests := []struct {
		name  string
		first int // size of the first entry; the others have per bytes
		fit   int // how many entries one read returns
	}{
		{"ten fit", per, 10},
		{"exactly at the budget", per + spare, 10},
		{"one byte over the budget", per + spare + 1, 9},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream := fmt.Sprintf("budget-%d", i)
			in := []store.StreamEntry{sized("dev", at, tc.first)}
			for range 11 {
				in = append(in, sized("dev", at, per))
			}
			all := appendStream(t, s, stream, in...)
			wantRead(t, s, stream, 0, store.StreamFilter{}, 100, all[:tc.fit])
			wantRead(t, s, stream, int64(tc.fit), store.StreamFilter{}, 100, all[tc.fit:])
		})
	}
}

func testStreamConcurrentAppend(t *testing.T, s store.StreamStore) {
	const goroutines, rounds = 64, 10
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	type batch struct {
		entries []store.StreamEntry
		seqs    []int64
	}
	results := make([][]batch, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				var entries []store.StreamEntry
				for j := range 1 + (g+i)%3 {
					entries = append(entries, streamEntry(fmt.Sprintf("dev-%02d", g), fmt.Sprint(i), at.Add(time.Duration(i)), fmt.Sprintf(`{"g":%d,"i":%d,"j":%d}`, g, i, j), []byte{byte(g), byte(i), byte(j)}))
				}
				seqs, err := s.AppendMessages(t.Context(), "events", entries)
				if err != nil {
					errs[g] = fmt.Errorf("append %d: %w", i, err)
					return
				}
				results[g] = append(results[g], batch{entries, seqs})
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	want := map[int64]store.StreamEntry{}
	for g := range goroutines {
		prev := int64(0)
		for i, b := range results[g] {
			if len(b.seqs) != len(b.entries) {
				t.Fatalf("goroutine %d append %d: %d seqs for %d entries", g, i, len(b.seqs), len(b.entries))
			}
			for j, seq := range b.seqs {
				if seq <= prev {
					t.Fatalf("goroutine %d append %d: seq %d after its own seq %d", g, i, seq, prev)
				}
				if j > 0 && seq != b.seqs[j-1]+1 {
					t.Fatalf("goroutine %d append %d: seqs %v are not consecutive", g, i, b.seqs)
				}
				if _, dup := want[seq]; dup {
					t.Fatalf("seq %d assigned twice", seq)
				}
				e := b.entries[j]
				e.Seq = seq
				want[seq] = e
				prev = seq
			}
		}
	}
	got := readAll(t, s, "events", store.StreamFilter{})
	if len(got) != len(want) {
		t.Fatalf("read %d entries; %d were appended", len(got), len(want))
	}
	for i, e := range got {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d; want %d (no gaps)", i, e.Seq, i+1)
		}
		if diff := cmp.Diff(want[e.Seq], e, streamOpts()); diff != "" {
			t.Fatalf("entry %d differs from what was appended (-want +got):\n%s", e.Seq, diff)
		}
	}
	wantInfo(t, s, "events", stats(1, int64(len(want)), got))
	n := 0
	for _, b := range results[7] {
		n += len(b.entries)
	}
	if perDevice := readAll(t, s, "events", store.StreamFilter{Key: "dev-07"}); len(perDevice) != n {
		t.Errorf("dev-07 has %d entries; want %d", len(perDevice), n)
	}
}

// ---- retention ----

func testStreamRetentionBytes(t *testing.T, s store.StreamStore) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name     string
		sizes    []int
		maxBytes int64
		dropped  int
	}{
		{"within the bound", []int{100, 100, 100}, 300, 0},
		{"no bound", []int{100, 100, 100}, 0, 0},
		{"equal sizes", []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100}, 350, 7},
		{"exact fit keeps the entry", []int{100, 50, 300, 20, 20}, 340, 2},
		{"one byte less drops it", []int{100, 50, 300, 20, 20}, 339, 3},
		{"newest alone too large", []int{5, 5, 20}, 10, 3},
		{"bound of one byte", []int{2, 3, 4}, 1, 3},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream := fmt.Sprintf("bytes-%d", i)
			var in []store.StreamEntry
			for _, n := range tc.sizes {
				in = append(in, sized("dev", at, n))
			}
			all := appendStream(t, s, stream, in...)
			n, err := s.TrimStream(t.Context(), stream, store.Retention{MaxBytes: tc.maxBytes})
			if err != nil || n != tc.dropped {
				t.Fatalf("TrimStream(MaxBytes %d) = %d, %v; want %d", tc.maxBytes, n, err, tc.dropped)
			}
			kept := all[tc.dropped:]
			wantRead(t, s, stream, 0, store.StreamFilter{}, 0, kept)
			last := int64(len(all))
			wantInfo(t, s, stream, stats(int64(tc.dropped)+1, last, kept))
			if n, err := s.TrimStream(t.Context(), stream, store.Retention{MaxBytes: tc.maxBytes}); err != nil || n != 0 {
				t.Errorf("second TrimStream = %d, %v; want 0 (idempotent)", n, err)
			}
			// Seqs continue after a trim, even one that emptied the stream.
			next := appendStream(t, s, stream, sized("dev", at, 10))
			if next[0].Seq != last+1 {
				t.Errorf("seq after trim = %d; want %d", next[0].Seq, last+1)
			}
			wantRead(t, s, stream, 0, store.StreamFilter{}, 0, append(append([]store.StreamEntry(nil), kept...), next...))
		})
	}
}

func testStreamRetentionAge(t *testing.T, s store.StreamStore) {
	base := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	mins := func(m ...int) []time.Time {
		var out []time.Time
		for _, x := range m {
			out = append(out, base.Add(time.Duration(x)*time.Minute))
		}
		return out
	}
	tests := []struct {
		name    string
		times   []time.Time
		keep    store.Retention
		dropped int
	}{
		{"no cutoff", mins(0, 1, 2), store.Retention{}, 0},
		{"between entries", mins(0, 1, 2, 3, 4), store.Retention{Before: base.Add(150 * time.Second)}, 3},
		{"an entry at the cutoff stays", mins(0, 1, 2, 3, 4), store.Retention{Before: base.Add(3 * time.Minute)}, 3},
		{"cutoff one nanosecond later", mins(0, 1, 2, 3, 4), store.Retention{Before: base.Add(3*time.Minute + 1)}, 4},
		{"everything old", mins(0, 1, 2), store.Retention{Before: base.Add(time.Hour)}, 3},
		{"nothing old", mins(5, 6), store.Retention{Before: base}, 0},
		{"only a prefix goes", mins(0, 1, 10, 2, 3), store.Retention{Before: base.Add(5 * time.Minute)}, 2},
		{"cutoff in another zone", mins(0, 1, 2), store.Retention{Before: base.Add(90 * time.Second).In(time.FixedZone("UTC-5", -5*60*60))}, 2},
		{"size drops more", mins(0, 1, 2, 3), store.Retention{MaxBytes: 10, Before: base.Add(90 * time.Second)}, 3},
		{"age drops more", mins(0, 1, 2, 3), store.Retention{MaxBytes: 30, Before: base.Add(150 * time.Second)}, 3},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream := fmt.Sprintf("age-%d", i)
			var in []store.StreamEntry
			for _, at := range tc.times {
				in = append(in, sized("dev", at, 10))
			}
			all := appendStream(t, s, stream, in...)
			n, err := s.TrimStream(t.Context(), stream, tc.keep)
			if err != nil || n != tc.dropped {
				t.Fatalf("TrimStream(%+v) = %d, %v; want %d", tc.keep, n, err, tc.dropped)
			}
			kept := all[tc.dropped:]
			wantRead(t, s, stream, 0, store.StreamFilter{}, 0, kept)
			wantInfo(t, s, stream, stats(int64(tc.dropped)+1, int64(len(all)), kept))
		})
	}
	if n, err := s.TrimStream(t.Context(), "never-used", store.Retention{MaxBytes: 1, Before: base}); err != nil || n != 0 {
		t.Errorf("TrimStream of an unknown stream = %d, %v; want 0, nil", n, err)
	}
}

// testStreamRetentionLarge trims more entries than a backend may delete in
// one step.
func testStreamRetentionLarge(t *testing.T, s store.StreamStore) {
	const n, size = 25000, 10
	base := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	var all []store.StreamEntry
	for i := 0; i < n; i += store.MaxStreamAppend {
		var in []store.StreamEntry
		for j := i; j < min(n, i+store.MaxStreamAppend); j++ {
			in = append(in, sized(fmt.Sprintf("dev-%d", j%7), base.Add(time.Duration(j)*time.Second), size))
		}
		all = append(all, appendStream(t, s, "events", in...)...)
	}
	// Size: keep the newest 3000 entries.
	if got, err := s.TrimStream(t.Context(), "events", store.Retention{MaxBytes: 3000 * size}); err != nil || got != n-3000 {
		t.Fatalf("TrimStream by size = %d, %v; want %d", got, err, n-3000)
	}
	wantInfo(t, s, "events", stats(n-3000+1, n, all[n-3000:]))
	// Age: keep entries from second 24000 on.
	if got, err := s.TrimStream(t.Context(), "events", store.Retention{Before: base.Add(24000 * time.Second)}); err != nil || got != 2000 {
		t.Fatalf("TrimStream by age = %d, %v; want 2000", got, err)
	}
	kept := readAll(t, s, "events", store.StreamFilter{})
	if diff := cmp.Diff(all[24000:], kept, streamOpts()); diff != "" {
		t.Errorf("kept entries (-want +got):\n%s", diff)
	}
	// Everything.
	if got, err := s.TrimStream(t.Context(), "events", store.Retention{Before: base.Add(time.Duration(n) * time.Second)}); err != nil || got != 1000 {
		t.Fatalf("TrimStream of the rest = %d, %v; want 1000", got, err)
	}
	wantInfo(t, s, "events", store.StreamStats{FirstSeq: n + 1, LastSeq: n})
}

// ---- refusals ----

func testStreamInvalidAppends(t *testing.T, s store.StreamStore) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	valid := streamEntry("dev", "", at, `{}`, []byte("ok"))
	with := func(f func(e *store.StreamEntry)) []store.StreamEntry {
		e := valid
		f(&e)
		return []store.StreamEntry{valid, e}
	}
	tooMany := make([]store.StreamEntry, store.MaxStreamAppend+1)
	for i := range tooMany {
		tooMany[i] = valid
	}
	tests := []struct {
		name    string
		stream  string
		entries []store.StreamEntry
		tooBig  bool
	}{
		{"empty stream name", "", []store.StreamEntry{valid}, false},
		{"long stream name", strings.Repeat("s", store.MaxStreamNameBytes+1), []store.StreamEntry{valid}, false},
		{"nul in stream name", "ev\x00ents", []store.StreamEntry{valid}, false},
		{"empty key", "events", with(func(e *store.StreamEntry) { e.Key = "" }), false},
		{"nul in key", "events", with(func(e *store.StreamEntry) { e.Key = "d\x00" }), false},
		{"key not UTF-8", "events", with(func(e *store.StreamEntry) { e.Key = "d\xff" }), false},
		{"long key", "events", with(func(e *store.StreamEntry) { e.Key = strings.Repeat("k", store.MaxStreamKeyBytes+1) }), false},
		{"nul in sub", "events", with(func(e *store.StreamEntry) { e.Sub = "m\x00" }), false},
		{"long sub", "events", with(func(e *store.StreamEntry) { e.Sub = strings.Repeat("m", store.MaxStreamKeyBytes+1) }), false},
		{"no time", "events", with(func(e *store.StreamEntry) { e.Time = time.Time{} }), false},
		{"year 10000", "events", with(func(e *store.StreamEntry) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), false},
		{"empty doc", "events", with(func(e *store.StreamEntry) { e.Doc = nil }), false},
		{"malformed doc", "events", with(func(e *store.StreamEntry) { e.Doc = json.RawMessage(`{"a":`) }), false},
		{"two documents", "events", with(func(e *store.StreamEntry) { e.Doc = json.RawMessage(`{} {}`) }), false},
		{"doc not UTF-8", "events", with(func(e *store.StreamEntry) { e.Doc = json.RawMessage("\"\xff\"") }), false},
		{"entry one byte too large", "events", with(func(e *store.StreamEntry) { *e = sized("dev", at, store.MaxStreamEntryBytes+1) }), true},
		{"too many entries", "events", tooMany, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seqs, err := s.AppendMessages(t.Context(), tc.stream, tc.entries)
			if err == nil {
				t.Fatalf("AppendMessages accepted it: seqs %v", seqs)
			}
			if got := errors.Is(err, store.ErrTooLarge); got != tc.tooBig {
				t.Errorf("AppendMessages = %v; errors.Is(ErrTooLarge) = %v, want %v", err, got, tc.tooBig)
			}
			if tc.stream != "" && len(tc.stream) <= store.MaxStreamNameBytes && !strings.Contains(tc.stream, "\x00") {
				wantInfo(t, s, tc.stream, store.StreamStats{FirstSeq: 1})
			}
		})
	}
	// The largest entry is accepted.
	largest := appendStream(t, s, "events", valid, sized("dev", at, store.MaxStreamEntryBytes))
	wantRead(t, s, "events", 0, store.StreamFilter{}, 0, largest)
}

func testStreamInvalidArguments(t *testing.T, s store.StreamStore) {
	ctx := t.Context()
	appendStream(t, s, "events", streamEntry("dev", "", time.Now(), `{}`, nil))
	tests := []struct {
		name string
		call func() error
	}{
		{"read: empty stream name", func() error { _, err := s.ReadMessages(ctx, "", 0, store.StreamFilter{}, 0); return err }},
		{"read: negative cursor", func() error { _, err := s.ReadMessages(ctx, "events", -1, store.StreamFilter{}, 0); return err }},
		{"read: negative limit", func() error { _, err := s.ReadMessages(ctx, "events", 0, store.StreamFilter{}, -1); return err }},
		{"read: sub without key", func() error {
			_, err := s.ReadMessages(ctx, "events", 0, store.StreamFilter{Sub: "mod"}, 0)
			return err
		}},
		{"trim: empty stream name", func() error { _, err := s.TrimStream(ctx, "", store.Retention{MaxBytes: 1}); return err }},
		{"trim: negative size", func() error { _, err := s.TrimStream(ctx, "events", store.Retention{MaxBytes: -1}); return err }},
		{"info: empty stream name", func() error { _, err := s.StreamInfo(ctx, ""); return err }},
		{"info: stream name not UTF-8", func() error { _, err := s.StreamInfo(ctx, "\xff"); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err == nil {
				t.Errorf("accepted")
			}
		})
	}
	if st, err := s.StreamInfo(ctx, "events"); err != nil || st.Count != 1 {
		t.Errorf("StreamInfo after refused calls = %+v, %v; want the one entry", st, err)
	}
}

func testStreamCancelledContext(t *testing.T, s store.StreamStore) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	kept := appendStream(t, s, "events", sized("dev", at, 100), sized("dev", at, 100))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if seqs, err := s.AppendMessages(ctx, "events", []store.StreamEntry{sized("dev", at, 10)}); !errors.Is(err, context.Canceled) {
		t.Errorf("AppendMessages with a cancelled context = %v, %v; want context.Canceled", seqs, err)
	}
	if n, err := s.TrimStream(ctx, "events", store.Retention{MaxBytes: 1}); !errors.Is(err, context.Canceled) || n != 0 {
		t.Errorf("TrimStream with a cancelled context = %d, %v; want 0, context.Canceled", n, err)
	}
	wantRead(t, s, "events", 0, store.StreamFilter{}, 0, kept)
	wantInfo(t, s, "events", stats(1, 2, kept))
}

func testStreamNotify(t *testing.T, s store.StreamStore) {
	n, ok := s.(store.StreamNotifier)
	if !ok {
		t.Skip("store does not implement store.StreamNotifier")
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	a, a2, b := n.StreamChanged("a"), n.StreamChanged("a"), n.StreamChanged("b")
	if closed(a) || closed(b) {
		t.Fatalf("channels closed before any append")
	}
	appendStream(t, s, "a", sized("dev", at, 10))
	if !closed(a) || !closed(a2) {
		t.Errorf("channels of stream a still open after its append returned")
	}
	if closed(b) {
		t.Errorf("channel of stream b closed by an append to a")
	}
	// A refused append wakes nobody.
	next := n.StreamChanged("a")
	if closed(next) {
		t.Fatalf("a channel taken after the append is already closed")
	}
	if _, err := s.AppendMessages(t.Context(), "a", []store.StreamEntry{{Key: "dev"}}); err == nil {
		t.Fatalf("invalid append accepted")
	}
	if closed(next) {
		t.Errorf("a refused append closed the channel")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !closed(next) || !closed(b) {
		t.Errorf("Close left channels open")
	}
	if !closed(n.StreamChanged("c")) {
		t.Errorf("StreamChanged after Close returned an open channel")
	}
}

func testStreamClosed(t *testing.T, s store.StreamStore) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	appendStream(t, s, "events", sized("dev", at, 10))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	ops := []struct {
		name string
		call func() error
	}{
		{"AppendMessages", func() error {
			_, err := s.AppendMessages(ctx, "events", []store.StreamEntry{sized("dev", at, 10)})
			return err
		}},
		{"AppendMessages empty", func() error { _, err := s.AppendMessages(ctx, "events", nil); return err }},
		{"ReadMessages", func() error { _, err := s.ReadMessages(ctx, "events", 0, store.StreamFilter{}, 0); return err }},
		{"TrimStream", func() error { _, err := s.TrimStream(ctx, "events", store.Retention{MaxBytes: 1}); return err }},
		{"StreamInfo", func() error { _, err := s.StreamInfo(ctx, "events"); return err }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			if err := op.call(); !errors.Is(err, store.ErrClosed) {
				t.Errorf("%s after Close = %v; want ErrClosed", op.name, err)
			}
		})
	}
}
