package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/store"
)

func TestRecordPresence(t *testing.T) {
	queueBackends(t, func(t *testing.T, h *Hub, _ store.Docs) {
		ctx := context.Background()
		t0 := queueNow
		created, err := h.PutDevice(ctx, &Device{DeviceID: "dev1"}, "")
		if err != nil {
			t.Fatal(err)
		}
		if created.ConnectionState != StateDisconnected {
			t.Fatalf("a new device is %q, want Disconnected", created.ConnectionState)
		}
		check := func(step, state string, since, active time.Time) *Device {
			t.Helper()
			d, err := h.GetDevice(ctx, "dev1")
			if err != nil {
				t.Fatal(err)
			}
			if d.ConnectionState != state || !d.ConnectionStateUpdatedTime.Equal(since) || !d.LastActivityTime.Equal(active) {
				t.Fatalf("%s: %s since %v, active %v; want %s since %v, active %v", step,
					d.ConnectionState, d.ConnectionStateUpdatedTime, d.LastActivityTime, state, since, active)
			}
			return d
		}
		steps := []struct {
			name          string
			p             Presence
			state         string
			since, active time.Time
		}{
			{"connected", Presence{State: StateConnected, StateTime: t0, Activity: t0}, StateConnected, t0, t0},
			{"activity", Presence{Activity: t0.Add(time.Minute)}, StateConnected, t0, t0.Add(time.Minute)},
			{"activity from the past", Presence{Activity: t0.Add(time.Second)}, StateConnected, t0, t0.Add(time.Minute)},
			{"a late, older state is ignored", Presence{State: StateDisconnected, StateTime: t0.Add(-time.Second)}, StateConnected, t0, t0.Add(time.Minute)},
			{"disconnected", Presence{State: StateDisconnected, StateTime: t0.Add(2 * time.Minute), Activity: t0.Add(90 * time.Second)}, StateDisconnected, t0.Add(2 * time.Minute), t0.Add(90 * time.Second)},
		}
		for _, s := range steps {
			if err := h.RecordPresence(ctx, "dev1", "", s.p); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			check(s.name, s.state, s.since, s.active)
		}
		// A change that alters nothing is not written (the etag stays).
		before := check("before a no-op", StateDisconnected, t0.Add(2*time.Minute), t0.Add(90*time.Second))
		if err := h.RecordPresence(ctx, "dev1", "", Presence{Activity: t0}); err != nil {
			t.Fatal(err)
		}
		if after := check("no-op", StateDisconnected, t0.Add(2*time.Minute), t0.Add(90*time.Second)); after.ETag != before.ETag {
			t.Fatalf("a no-op changed the etag from %s to %s", before.ETag, after.ETag)
		}
		// The service API cannot write presence, and keeps it.
		upd := *before
		upd.ConnectionState, upd.LastActivityTime = StateConnected, t0.Add(time.Hour)
		upd.Status = StatusDisabled
		if _, err := h.PutDevice(ctx, &upd, "*"); err != nil {
			t.Fatal(err)
		}
		check("after PutDevice", StateDisconnected, t0.Add(2*time.Minute), t0.Add(90*time.Second))
	})
}

func TestRecordModulePresence(t *testing.T) {
	queueBackends(t, func(t *testing.T, h *Hub, _ store.Docs) {
		ctx := context.Background()
		if _, err := h.PutDevice(ctx, &Device{DeviceID: "edge1"}, ""); err != nil {
			t.Fatal(err)
		}
		m, err := h.PutModule(ctx, &Module{DeviceID: "edge1", ModuleID: "mod1"}, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.RecordPresence(ctx, "edge1", "mod1", Presence{State: StateConnected, StateTime: queueNow, Activity: queueNow}); err != nil {
			t.Fatal(err)
		}
		got, err := h.GetModule(ctx, "edge1", "mod1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ConnectionState != StateConnected || !got.LastActivityTime.Equal(queueNow) || got.Authentication.SymmetricKey.PrimaryKey != m.Authentication.SymmetricKey.PrimaryKey {
			t.Fatalf("module after RecordPresence: %+v", got)
		}
		if d, err := h.GetDevice(ctx, "edge1"); err != nil || d.ConnectionState != StateDisconnected {
			t.Fatalf("device of the module: %+v, %v; want Disconnected", d, err)
		}
	})
}

func TestRecordPresenceErrors(t *testing.T) {
	queueBackends(t, func(t *testing.T, h *Hub, _ store.Docs) {
		ctx := context.Background()
		if err := h.RecordPresence(ctx, "ghost", "", Presence{Activity: queueNow}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown device: %v, want ErrNotFound", err)
		}
		if _, err := h.PutDevice(ctx, &Device{DeviceID: "dev1"}, ""); err != nil {
			t.Fatal(err)
		}
		if err := h.RecordPresence(ctx, "dev1", "ghost", Presence{Activity: queueNow}); !errors.Is(err, ErrModuleNotFound) {
			t.Fatalf("unknown module: %v, want ErrModuleNotFound", err)
		}
		if err := h.RecordPresence(ctx, "dev1", "", Presence{State: "connected", StateTime: queueNow}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("state in the wrong case: %v, want ErrInvalid", err)
		}
	})
}
