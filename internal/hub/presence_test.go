package hub

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
)

// isDisconnected reports whether the hub disconnected the client.
func (c *fakeClient) isDisconnected() bool {
	select {
	case <-c.disconnected:
		return true
	default:
		return false
	}
}

func TestRevokedDeviceIsDisconnected(t *testing.T) {
	tests := []struct {
		name    string
		revoke  func(t *testing.T, e *env, id string)
		refusal hubauth.Reason
	}{
		{"disabled", func(t *testing.T, e *env, id string) {
			d, err := e.svc.GetDevice(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			d.Status = "Disabled" // the registry accepts any case
			if _, err := e.svc.PutDevice(context.Background(), d, "*"); err != nil {
				t.Fatal(err)
			}
		}, hubauth.ReasonDeviceDisabled},
		{"deleted", func(t *testing.T, e *env, id string) {
			if err := e.svc.RemoveDevice(context.Background(), id, ""); err != nil {
				t.Fatal(err)
			}
		}, hubauth.ReasonDeviceNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			s1, c1 := e.connect(t, "dev1")
			s1b, c1b := e.connectExisting(t, "dev1")
			s2, c2 := e.connect(t, "dev2")
			for _, s := range []*Session{s1, s1b, s2} {
				if !s.Allow(DesiredFilter, false) || !s.Allow(MethodsFilter, false) {
					t.Fatal("subscriptions refused before the revocation")
				}
			}
			if got := e.svc.Connected("dev1"); got != 2 {
				t.Fatalf("Connected(dev1) = %d before the revocation, want 2", got)
			}

			d, err := e.svc.GetDevice(context.Background(), "dev1")
			if err != nil {
				t.Fatal(err)
			}
			key := d.Authentication.SymmetricKey.PrimaryKey

			tt.revoke(t, e, "dev1")

			got := map[string]bool{
				"dev1 closed": s1.isClosed(), "dev1 disconnected": c1.isDisconnected(),
				"dev1 second closed": s1b.isClosed(), "dev1 second disconnected": c1b.isDisconnected(),
				"dev2 closed": s2.isClosed(), "dev2 disconnected": c2.isDisconnected(),
			}
			want := map[string]bool{
				"dev1 closed": true, "dev1 disconnected": true,
				"dev1 second closed": true, "dev1 second disconnected": true,
				"dev2 closed": false, "dev2 disconnected": false,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("after the revocation (-want +got):\n%s", diff)
			}
			counts := map[string]int{
				"connected dev1": e.svc.Connected("dev1"), "watching dev1": e.svc.watching("dev1"),
				"connected dev2": e.svc.Connected("dev2"), "watching dev2": e.svc.watching("dev2"),
			}
			if diff := cmp.Diff(map[string]int{"connected dev1": 0, "watching dev1": 0, "connected dev2": 1, "watching dev2": 1}, counts); diff != "" {
				t.Errorf("sessions after the revocation (-want +got):\n%s", diff)
			}
			if s1.Allow(DesiredFilter, false) {
				t.Error("a dropped session accepted a subscription")
			}
			var denial *hubauth.Denial
			if _, err := e.svc.Connect(context.Background(), request(t, "dev1", key), newFakeClient()); !errors.As(err, &denial) || denial.Reason != tt.refusal {
				t.Errorf("reconnecting the revoked device: %v, want a %s denial", err, tt.refusal)
			}
		})
	}
}

func TestEnabledUpdateKeepsSessions(t *testing.T) {
	e := newEnv(t)
	s, c := e.connect(t, "dev1")
	d, err := e.svc.GetDevice(context.Background(), "dev1")
	if err != nil {
		t.Fatal(err)
	}
	d.Status = registry.StatusEnabled
	if _, err := e.svc.PutDevice(context.Background(), d, "*"); err != nil {
		t.Fatal(err)
	}
	if s.isClosed() || c.isDisconnected() {
		t.Fatal("updating an enabled device ended its session")
	}
	// A failed removal (wrong etag) leaves the session too.
	if err := e.svc.RemoveDevice(context.Background(), "dev1", `"stale"`); !errors.Is(err, registry.ErrPrecondition) {
		t.Fatalf("RemoveDevice with a stale etag: %v, want ErrPrecondition", err)
	}
	if s.isClosed() || c.isDisconnected() {
		t.Fatal("a failed removal ended the session")
	}
}

// identityAuth accepts every request as the identity last set.
type identityAuth struct {
	mu sync.Mutex
	id hubauth.Identity
}

func (a *identityAuth) Authenticate(context.Context, hubauth.Request) (*hubauth.Identity, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := a.id
	return &id, nil
}

func TestRevokedDeviceDropsItsModules(t *testing.T) {
	e := newEnv(t)
	e.device(t, "dev1")
	auth := &identityAuth{}
	svc, err := New(Options{Registry: e.reg, Auth: auth, Telemetry: e.events, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	connectAs := func(moduleID string) (*Session, *fakeClient) {
		auth.mu.Lock()
		auth.id = hubauth.Identity{DeviceID: "dev1", ModuleID: moduleID, AuthType: hubauth.AuthSAS}
		auth.mu.Unlock()
		c := newFakeClient()
		s, err := svc.Connect(context.Background(), hubauth.Request{}, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(nil) })
		return s, c
	}

	t.Run("module only", func(t *testing.T) {
		dev, devC := connectAs("")
		var mods []*Session
		var modCs []*fakeClient
		for range 2 {
			s, c := connectAs("m1")
			mods, modCs = append(mods, s), append(modCs, c)
		}
		other, otherC := connectAs("m2")
		if n := svc.DisconnectModule("dev1", "m1", "the module was deleted"); n != 2 {
			t.Fatalf("DisconnectModule ended %d sessions, want 2", n)
		}
		for i := range mods {
			if !mods[i].isClosed() || !modCs[i].isDisconnected() {
				t.Errorf("module m1 session %d survived", i)
			}
		}
		if dev.isClosed() || devC.isDisconnected() || other.isClosed() || otherC.isDisconnected() {
			t.Error("revoking module m1 ended the device's or module m2's session")
		}
		if n := svc.DisconnectModule("dev1", "", "no module"); n != 0 {
			t.Errorf("DisconnectModule without a module ID ended %d sessions, want 0", n)
		}
	})

	t.Run("device disabled", func(t *testing.T) {
		dev, devC := connectAs("")
		mod, modC := connectAs("m1")
		d, err := svc.GetDevice(context.Background(), "dev1")
		if err != nil {
			t.Fatal(err)
		}
		d.Status = registry.StatusDisabled
		if _, err := svc.PutDevice(context.Background(), d, "*"); err != nil {
			t.Fatal(err)
		}
		if !dev.isClosed() || !devC.isDisconnected() || !mod.isClosed() || !modC.isDisconnected() {
			t.Error("disabling the device left a session of it or of its module")
		}
		if n := svc.Connected("dev1"); n != 0 {
			t.Errorf("Connected(dev1) = %d after disabling it, want 0", n)
		}
	})
}

// hookAuth runs hook during the first Authenticate call, as if an
// identity were revoked while the client was being authenticated, then
// asks next.
type hookAuth struct {
	next  Authenticator
	hook  func()
	once  sync.Once
	mu    sync.Mutex
	calls int
}

func (a *hookAuth) Authenticate(ctx context.Context, req hubauth.Request) (*hubauth.Identity, error) {
	a.mu.Lock()
	a.calls++
	a.mu.Unlock()
	id, err := a.next.Authenticate(ctx, req)
	a.once.Do(a.hook)
	return id, err
}

func TestRevocationDuringConnect(t *testing.T) {
	tests := []struct {
		name string
		// revoke runs after the first authentication accepted dev1.
		revoke    func(t *testing.T, e *env, svc *Service)
		wantCalls int
		wantErr   bool
	}{
		{"another device revoked: authenticated again and accepted", func(t *testing.T, e *env, svc *Service) {
			svc.DisconnectDevice("dev2", "the device was deleted")
		}, 2, false},
		{"this device disabled: authenticated again and refused", func(t *testing.T, e *env, svc *Service) {
			d, err := svc.GetDevice(context.Background(), "dev1")
			if err != nil {
				t.Error(err)
				return
			}
			d.Status = registry.StatusDisabled
			if _, err := svc.PutDevice(context.Background(), d, "*"); err != nil {
				t.Error(err)
			}
		}, 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			key := e.device(t, "dev1")
			auth := &hookAuth{next: e.svc.auth}
			svc, err := New(Options{Registry: e.reg, Auth: auth, Telemetry: e.events, Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			auth.hook = func() { tt.revoke(t, e, svc) }
			c := newFakeClient()
			s, err := svc.Connect(context.Background(), request(t, "dev1", key), c)
			if s != nil {
				t.Cleanup(func() { s.Close(nil) })
			}
			var d *hubauth.Denial
			if tt.wantErr != (err != nil) || (tt.wantErr && (!errors.As(err, &d) || d.Reason != hubauth.ReasonDeviceDisabled)) {
				t.Fatalf("Connect: %v, want a device_disabled denial: %v", err, tt.wantErr)
			}
			if auth.calls != tt.wantCalls {
				t.Errorf("%d authentications, want %d", auth.calls, tt.wantCalls)
			}
			wantLive := 1
			if tt.wantErr {
				wantLive = 0
			}
			if got := svc.Connected("dev1"); got != wantLive {
				t.Errorf("Connected(dev1) = %d, want %d", got, wantLive)
			}
			if c.isDisconnected() {
				t.Error("the client was disconnected; Connect's caller ends a refused connection")
			}
		})
	}
}
