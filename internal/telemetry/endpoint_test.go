package telemetry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
)

// pollOnly hides the store's StreamNotifier, as a store shared with other
// processes would be for their appends.
type pollOnly struct{ store.Streams }

func newEndpoint(t *testing.T, s store.Streams, opts Options) *Endpoint {
	t.Helper()
	e, err := NewEndpoint(s, opts)
	if err != nil {
		t.Fatalf("NewEndpoint: %v", err)
	}
	return e
}

func newStore(t *testing.T) *memstore.Store {
	s := memstore.New(10)
	t.Cleanup(func() { s.Close() })
	return s
}

func message(t *testing.T, device, module string, i int, at time.Time) Message {
	t.Helper()
	m, err := NewMessage(device, module, fmt.Sprintf("%%24.mid=m-%d&i=%d", i, i), []byte(fmt.Sprintf(`{"i":%d}`, i)), at)
	if err != nil {
		t.Fatalf("NewMessage: %v", err)
	}
	return m
}

func withSeqs(msgs []Message, seqs []int64) []Message {
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		m.Seq = seqs[i]
		out[i] = m
	}
	return out
}

func TestNewEndpointOptions(t *testing.T) {
	s := newStore(t)
	tests := []struct {
		name string
		opts Options
	}{
		{"negative max bytes", Options{MaxBytes: -1}},
		{"negative max age", Options{MaxAge: -time.Second}},
		{"negative trim interval", Options{TrimInterval: -1}},
		{"negative poll interval", Options{PollInterval: -1}},
		{"stream name with NUL", Options{Stream: "a\x00"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewEndpoint(s, tc.opts); err == nil {
				t.Errorf("NewEndpoint accepted %+v", tc.opts)
			}
		})
	}
	if _, err := NewEndpoint(nil, Options{}); err == nil {
		t.Errorf("NewEndpoint accepted no store")
	}
	if e := newEndpoint(t, s, Options{}); e.Stream() != DefaultStream {
		t.Errorf("Stream = %q; want %q", e.Stream(), DefaultStream)
	}
}

func TestEndpointAppendRead(t *testing.T) {
	e := newEndpoint(t, newStore(t), Options{})
	ctx := t.Context()
	msgs := []Message{
		message(t, "dev1", "", 0, testTime),
		message(t, "dev2", "", 1, testTime),
		message(t, "dev1", "mod1", 2, testTime),
		message(t, "dev1", "", 3, testTime.Add(time.Second)),
	}
	seqs, err := e.Append(ctx, msgs...)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if diff := cmp.Diff([]int64{1, 2, 3, 4}, seqs); diff != "" {
		t.Errorf("seqs (-want +got):\n%s", diff)
	}
	all := withSeqs(msgs, seqs)
	tests := []struct {
		name   string
		after  int64
		filter Filter
		limit  int
		want   []Message
	}{
		{"all", 0, Filter{}, 0, all},
		{"after a cursor", 2, Filter{}, 0, all[2:]},
		{"device", 0, Filter{DeviceID: "dev1"}, 0, []Message{all[0], all[2], all[3]}},
		{"module", 0, Filter{DeviceID: "dev1", ModuleID: "mod1"}, 0, all[2:3]},
		{"limit", 0, Filter{}, 2, all[:2]},
		{"nothing new", 4, Filter{}, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.Read(ctx, tc.after, tc.filter, tc.limit)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, msgOpts()); diff != "" {
				t.Errorf("Read (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := e.Read(ctx, 0, Filter{ModuleID: "mod1"}, 0); err == nil {
		t.Errorf("Read by module without device accepted")
	}
	st, err := e.Stats(ctx)
	if err != nil || st.LastSeq != 4 || st.Count != 4 {
		t.Errorf("Stats = %+v, %v; want 4 messages up to seq 4", st, err)
	}
}

func TestEndpointAppendRefusesInvalid(t *testing.T) {
	e := newEndpoint(t, newStore(t), Options{})
	ok := message(t, "dev1", "", 0, testTime)
	bad := ok
	bad.EnqueuedTime = time.Time{}
	if _, err := e.Append(t.Context(), ok, bad); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("Append of an invalid message = %v; want ErrInvalidMessage", err)
	}
	if st, err := e.Stats(t.Context()); err != nil || st.LastSeq != 0 {
		t.Errorf("Stats after a refused append = %+v, %v; want nothing appended", st, err)
	}
}

func TestEndpointTrim(t *testing.T) {
	now := testTime
	body := func(n int) []byte { return make([]byte, n) }
	tests := []struct {
		name    string
		opts    Options
		msgs    []Message
		dropped int
	}{
		{
			name: "by age",
			opts: Options{MaxAge: time.Hour},
			msgs: []Message{
				{DeviceID: "d", EnqueuedTime: now.Add(-3 * time.Hour)},
				{DeviceID: "d", EnqueuedTime: now.Add(-61 * time.Minute)},
				{DeviceID: "d", EnqueuedTime: now.Add(-59 * time.Minute)},
				{DeviceID: "d", EnqueuedTime: now},
			},
			dropped: 2,
		},
		{
			name: "by size",
			opts: Options{MaxBytes: 250},
			msgs: []Message{
				{DeviceID: "d", EnqueuedTime: now, Body: body(98)}, // 2-byte document + 98
				{DeviceID: "d", EnqueuedTime: now, Body: body(98)},
				{DeviceID: "d", EnqueuedTime: now, Body: body(98)},
			},
			dropped: 1,
		},
		{
			name:    "nothing to drop",
			opts:    Options{},
			msgs:    []Message{{DeviceID: "d", EnqueuedTime: now}},
			dropped: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Now = func() time.Time { return now }
			e := newEndpoint(t, newStore(t), tc.opts)
			seqs, err := e.Append(t.Context(), tc.msgs...)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			n, err := e.Trim(t.Context())
			if err != nil || n != tc.dropped {
				t.Fatalf("Trim = %d, %v; want %d", n, err, tc.dropped)
			}
			got, err := e.Read(t.Context(), 0, Filter{}, 0)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if diff := cmp.Diff(withSeqs(tc.msgs, seqs)[tc.dropped:], got, msgOpts()); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
		})
	}
}

// waitFor polls cond a bounded number of times.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 3000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
}

func TestRunRetention(t *testing.T) {
	s := newStore(t)
	// An hour between periodic trims: only the early trim appends request
	// can bring the stream back under its bound during the test.
	e := newEndpoint(t, s, Options{MaxBytes: 1000, TrimInterval: time.Hour, Now: func() time.Time { return testTime }})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.RunRetention(ctx) }()
	for i := range 20 {
		if _, err := e.Append(t.Context(), Message{DeviceID: "d", EnqueuedTime: testTime, Body: make([]byte, 198)}); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	waitFor(t, "the stream to shrink to its bound", func() bool {
		st, err := e.Stats(t.Context())
		return err == nil && st.Bytes <= 1000 && st.LastSeq == 20
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunRetention after cancel = %v; want nil", err)
	}

	// A closed store ends it with ErrClosed.
	s.Close()
	if err := e.RunRetention(t.Context()); !errors.Is(err, store.ErrClosed) {
		t.Errorf("RunRetention on a closed store = %v; want ErrClosed", err)
	}
}

// followed is what a Follow goroutine collected and how it ended.
type followed struct {
	msgs []Message
	err  error
}

// follow runs Follow in a goroutine until it has collected n messages.
func follow(t *testing.T, e *Endpoint, after int64, f Filter, n int) <-chan followed {
	t.Helper()
	out := make(chan followed, 1)
	errStop := errors.New("collected enough")
	go func() {
		var got []Message
		err := e.Follow(t.Context(), after, f, func(m Message) error {
			got = append(got, m)
			if len(got) == n {
				return errStop
			}
			return nil
		})
		if errors.Is(err, errStop) {
			err = nil
		}
		out <- followed{got, err}
	}()
	return out
}

func receive(t *testing.T, ch <-chan followed) []Message {
	t.Helper()
	select {
	case got := <-ch:
		if got.err != nil {
			t.Errorf("Follow = %v", got.err)
		}
		return got.msgs
	case <-time.After(30 * time.Second):
		t.Fatalf("Follow did not deliver the messages")
		return nil
	}
}

func TestFollow(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(s *memstore.Store) store.Streams
		opts Options
	}{
		{"woken by the store", func(s *memstore.Store) store.Streams { return s }, Options{PollInterval: time.Hour}},
		{"polling", func(s *memstore.Store) store.Streams { return pollOnly{s} }, Options{PollInterval: 5 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, tc.wrap(newStore(t)), tc.opts)
			ctx := t.Context()
			old := message(t, "dev1", "", 0, testTime)
			if _, err := e.Append(ctx, old); err != nil {
				t.Fatal(err)
			}
			st, err := e.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// From the end: only new messages; by device: only dev1's.
			allNew := follow(t, e, st.LastSeq, Filter{}, 5)
			dev1 := follow(t, e, 0, Filter{DeviceID: "dev1"}, 4)
			var want []Message
			for batch := range 3 {
				var msgs []Message
				for j := range batch + 1 {
					msgs = append(msgs, message(t, fmt.Sprintf("dev%d", 1+j%2), "", 10*batch+j, testTime))
				}
				seqs, err := e.Append(ctx, msgs...)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, withSeqs(msgs, seqs)...)
			}
			// 6 messages appended: dev1, dev1, dev2, dev1, dev2, dev1.
			if diff := cmp.Diff(want[:5], receive(t, allNew), msgOpts()); diff != "" {
				t.Errorf("followed from the end (-want +got):\n%s", diff)
			}
			old.Seq = 1
			wantDev1 := []Message{old, want[0], want[1], want[3]}
			if diff := cmp.Diff(wantDev1, receive(t, dev1), msgOpts()); diff != "" {
				t.Errorf("followed dev1 (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFollowEnds(t *testing.T) {
	s := newStore(t)
	e := newEndpoint(t, s, Options{PollInterval: time.Hour})
	if err := e.Follow(t.Context(), -1, Filter{}, func(Message) error { return nil }); err == nil {
		t.Errorf("Follow from a negative cursor accepted")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.Follow(ctx, 0, Filter{}, func(Message) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Follow with a cancelled context = %v; want context.Canceled", err)
	}
	// Closing the store wakes a waiting Follow, which then fails.
	done := make(chan error, 1)
	go func() { done <- e.Follow(t.Context(), 0, Filter{}, func(Message) error { return nil }) }()
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("Follow after Close = %v; want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Follow kept waiting after the store closed")
	}
}
