package iothub_test

import (
	"context"
	"errors"
	"testing"

	"github.com/muster-iot/muster/internal/edge/iothub"
	"github.com/muster-iot/muster/internal/edge/iothub/iothubtest"
	"github.com/muster-iot/muster/internal/hubclient"
)

func TestModules(t *testing.T) {
	h := iothubtest.New(t)
	key := h.AddIdentity("edge-1", "")
	h.AddIdentity("edge-1", "$edgeAgent")
	m, err := iothub.NewModules(iothub.ModulesOptions{Device: iothub.Identity{Hub: iothubtest.Host, DeviceID: "edge-1", Key: key}, Addr: h.HTTPSAddr, RootCAs: h.Roots})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()

	agent, err := m.Get(ctx, "$edgeAgent")
	if err != nil {
		t.Fatal(err)
	}
	if k, err := agent.PrimaryKey(); err != nil || string(k) != string(h.Key("edge-1", "$edgeAgent")) || agent.GenerationID == "" {
		t.Errorf("$edgeAgent %+v: key %v", agent, err)
	}
	if _, err := m.Get(ctx, "sensor"); !errors.Is(err, iothub.ErrModuleNotFound) {
		t.Errorf("Get of a missing module = %v, want ErrModuleNotFound", err)
	}
	created, err := m.Create(ctx, "sensor", iothub.ManagedByIotEdge)
	if err != nil {
		t.Fatal(err)
	}
	if created.ManagedBy != iothub.ManagedByIotEdge || created.ModuleID != "sensor" || created.Authentication.SymmetricKey == nil {
		t.Errorf("created %+v", created)
	}
	if _, err := m.Create(ctx, "sensor", iothub.ManagedByIotEdge); !errors.Is(err, iothub.ErrModuleExists) {
		t.Errorf("second Create = %v, want ErrModuleExists", err)
	}
	all, err := m.List(ctx)
	if err != nil || len(all) != 2 {
		t.Errorf("List = %+v, %v", all, err)
	}
	if err := m.Delete(ctx, "sensor"); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, "sensor"); !errors.Is(err, iothub.ErrModuleNotFound) {
		t.Errorf("second Delete = %v", err)
	}

	// A device whose key the hub does not accept is told so.
	stranger, err := iothub.NewModules(iothub.ModulesOptions{Device: iothub.Identity{Hub: iothubtest.Host, DeviceID: "edge-1", Key: []byte("wrong")}, Addr: h.HTTPSAddr, RootCAs: h.Roots})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	_, err = stranger.Get(ctx, "$edgeAgent")
	var he *hubclient.Error
	if !errors.Is(err, iothub.ErrDeviceRefused) || !errors.As(err, &he) || he.Status != 401 || he.Code != "IotHubUnauthorizedAccess" {
		t.Errorf("Get with a wrong key = %v", err)
	}
}

func TestNewModulesRefusesAModuleCredential(t *testing.T) {
	_, err := iothub.NewModules(iothub.ModulesOptions{Device: iothub.Identity{Hub: "h", DeviceID: "d", ModuleID: "m", Key: []byte("k")}, Addr: "h:443"})
	if err == nil {
		t.Error("NewModules accepted a module's credential")
	}
}
