package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
	"github.com/muster-iot/muster/internal/store/postgres"
	"github.com/muster-iot/muster/internal/store/postgres/pgtest"
	"github.com/muster-iot/muster/internal/store/sqlite"
)

// queueBackends runs a test against the in-memory store, SQLite and
// (when TEST_PG_DSN is set) PostgreSQL.
func queueBackends(t *testing.T, test func(t *testing.T, h *Hub, st store.Docs)) {
	t.Run("memstore", func(t *testing.T) {
		st := memstore.New(0)
		t.Cleanup(func() { st.Close() })
		test(t, New(testHub, st, nil), st)
	})
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "muster.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		test(t, New(testHub, st, nil), st)
	})
	t.Run("postgres", func(t *testing.T) {
		st, err := postgres.Open(t.Context(), pgtest.Schema(t), postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		test(t, New(testHub, st, nil), st)
	})
}

var queueNow = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func cloudMsg(device, token, body string, ttl time.Duration) *CloudMessage {
	return &CloudMessage{LockToken: token, DeviceID: device, EnqueuedTime: queueNow, ExpiryTime: queueNow.Add(ttl),
		SystemProperties: map[string]string{"message-id": "m-" + token}, Properties: map[string]string{"k": "v"}, Body: []byte(body)}
}

func bodies(t *testing.T, h *Hub, device string, now time.Time) []string {
	t.Helper()
	ms, err := h.PendingCloudMessages(context.Background(), device, now)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, m := range ms {
		out = append(out, string(m.Body))
	}
	return out
}

func TestCloudQueue(t *testing.T) {
	queueBackends(t, func(t *testing.T, h *Hub, _ store.Docs) {
		ctx := context.Background()
		d, err := h.PutDevice(ctx, &Device{DeviceID: "dev1"}, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{"003", "001", "002"} {
			if err := h.EnqueueCloudMessage(ctx, cloudMsg("dev1", tok, "b"+tok, time.Hour), 3, queueNow); err != nil {
				t.Fatal(err)
			}
		}
		if diff := cmp.Diff([]string{"b001", "b002", "b003"}, bodies(t, h, "dev1", queueNow)); diff != "" {
			t.Fatalf("queue in lock-token order (-want +got):\n%s", diff)
		}
		ms, err := h.PendingCloudMessages(ctx, "dev1", queueNow)
		if err != nil {
			t.Fatal(err)
		}
		want := cloudMsg("dev1", "001", "b001", time.Hour)
		want.DeviceGenerationID = d.GenerationID
		if diff := cmp.Diff(want, ms[0]); diff != "" {
			t.Fatalf("stored message (-want +got):\n%s", diff)
		}
		if err := h.EnqueueCloudMessage(ctx, cloudMsg("dev1", "004", "x", time.Hour), 3, queueNow); !errors.Is(err, ErrCloudQueueFull) {
			t.Fatalf("fourth message with depth 3: %v, want ErrCloudQueueFull", err)
		}
		if err := h.EnqueueCloudMessage(ctx, cloudMsg("dev1", "001", "x", time.Hour), 9, queueNow); !errors.Is(err, ErrExists) {
			t.Fatalf("taken lock token: %v, want ErrExists", err)
		}
		if err := h.CompleteCloudMessage(ctx, "dev1", "002"); err != nil {
			t.Fatal(err)
		}
		if err := h.CompleteCloudMessage(ctx, "dev1", "002"); err != nil {
			t.Fatalf("completing twice: %v", err)
		}
		if n, err := h.CloudMessageCount(ctx, "dev1"); n != 2 || err != nil {
			t.Fatalf("CloudMessageCount: %d, %v; want 2", n, err)
		}
		if err := h.EnqueueCloudMessage(ctx, cloudMsg("dev1", "004", "b004", time.Hour), 3, queueNow); err != nil {
			t.Fatalf("after a completion: %v", err)
		}
		if diff := cmp.Diff([]string{"b001", "b003", "b004"}, bodies(t, h, "dev1", queueNow)); diff != "" {
			t.Fatalf("queue (-want +got):\n%s", diff)
		}
		if n, err := h.PurgeCloudMessages(ctx, "dev1"); n != 3 || err != nil {
			t.Fatalf("PurgeCloudMessages: %d, %v; want 3", n, err)
		}
		if queued, err := h.AnyCloudMessages(ctx); queued || err != nil {
			t.Fatalf("AnyCloudMessages after the purge: %v, %v", queued, err)
		}
	})
}

func TestCloudQueueErrors(t *testing.T) {
	queueBackends(t, func(t *testing.T, h *Hub, _ store.Docs) {
		ctx := context.Background()
		if err := h.EnqueueCloudMessage(ctx, cloudMsg("ghost", "1", "x", time.Hour), 50, queueNow); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown device: %v, want ErrNotFound", err)
		}
		if _, err := h.PutDevice(ctx, &Device{DeviceID: "dev1"}, ""); err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{"", "a/b", "a\x00", string(make([]byte, maxLockTokenLen+1))} {
			if err := h.EnqueueCloudMessage(ctx, cloudMsg("dev1", tok, "x", time.Hour), 50, queueNow); !errors.Is(err, ErrInvalid) {
				t.Errorf("lock token %q: %v, want ErrInvalid", tok, err)
			}
		}
		if err := h.CompleteCloudMessage(ctx, "dev1", "a/b"); !errors.Is(err, ErrInvalid) {
			t.Errorf("complete with lock token a/b: %v, want ErrInvalid", err)
		}
	})
}

func TestCloudQueueExpiryAndGenerations(t *testing.T) {
	queueBackends(t, func(t *testing.T, h *Hub, _ store.Docs) {
		ctx := context.Background()
		for _, id := range []string{"dev1", "dev2", "gone"} {
			if _, err := h.PutDevice(ctx, &Device{DeviceID: id}, ""); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range []*CloudMessage{
			cloudMsg("dev1", "1", "short", time.Minute), cloudMsg("dev1", "2", "long", time.Hour),
			cloudMsg("dev2", "1", "dev2", time.Hour), cloudMsg("gone", "1", "gone", time.Hour),
		} {
			if err := h.EnqueueCloudMessage(ctx, m, 2, queueNow); err != nil {
				t.Fatal(err)
			}
		}
		// A full queue with an expired message makes room.
		later := queueNow.Add(2 * time.Minute)
		if err := h.EnqueueCloudMessage(ctx, cloudMsg("dev1", "3", "third", time.Hour), 2, later); err != nil {
			t.Fatalf("enqueue into a full queue with an expired message: %v", err)
		}
		if diff := cmp.Diff([]string{"long", "third"}, bodies(t, h, "dev1", later)); diff != "" {
			t.Fatalf("queue (-want +got):\n%s", diff)
		}
		// dev2 is deleted and created again: its old message is stale.
		if err := h.RemoveDevice(ctx, "dev2", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := h.PutDevice(ctx, &Device{DeviceID: "dev2"}, ""); err != nil {
			t.Fatal(err)
		}
		if err := h.RemoveDevice(ctx, "gone", ""); err != nil {
			t.Fatal(err)
		}
		res, err := h.SweepCloudMessages(ctx, later)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(CloudSweep{Dropped: 2, Waiting: []string{"dev1"}}, res); diff != "" {
			t.Fatalf("sweep (-want +got):\n%s", diff)
		}
		res, err = h.SweepCloudMessages(ctx, queueNow.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(CloudSweep{Dropped: 2}, res); diff != "" {
			t.Fatalf("sweep after every message expired (-want +got):\n%s", diff)
		}
		if queued, err := h.AnyCloudMessages(ctx); queued || err != nil {
			t.Fatalf("AnyCloudMessages: %v, %v; want none left", queued, err)
		}
	})
}

func TestCloudSweepStaysInItsHub(t *testing.T) {
	queueBackends(t, func(t *testing.T, h *Hub, st store.Docs) {
		ctx := context.Background()
		other := New("other.example.test", st, nil)
		for _, hub := range []*Hub{h, other} {
			d, err := hub.PutDevice(ctx, &Device{DeviceID: "dev1"}, "")
			if err != nil {
				t.Fatal(err)
			}
			// More than a page, in one transaction (as EnqueueCloudMessage
			// would store them one by one).
			var writes []store.Write
			for i := range sweepPage + 1 {
				m := cloudMsg("dev1", fmt.Sprintf("%04d", i), "x", time.Hour)
				m.DeviceGenerationID = d.GenerationID
				doc, err := json.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				writes = append(writes, store.Write{Record: store.Record{Kind: KindCloudMessage, ID: hub.cloudKey("dev1", m.LockToken), Group: hub.key("dev1"), Doc: doc}})
			}
			if _, err := st.Apply(ctx, writes); err != nil {
				t.Fatal(err)
			}
		}
		res, err := h.SweepCloudMessages(ctx, queueNow.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if res.Dropped != sweepPage+1 {
			t.Fatalf("dropped %d, want %d", res.Dropped, sweepPage+1)
		}
		if n, err := other.CloudMessageCount(ctx, "dev1"); n != sweepPage+1 || err != nil {
			t.Fatalf("the other hub's queue: %d, %v; want untouched", n, err)
		}
	})
}
