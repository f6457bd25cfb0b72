package main

import (
	"log/slog"
	"time"

	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/rollout"
	"github.com/muster-iot/muster/internal/store"
)

// deploymentStore is what the deployment engine needs of the store: the
// documents and twin queries inside the database (for metrics).
type deploymentStore interface {
	store.Docs
	store.TwinQuerier
}

// newDeployments wires the hub's configuration store and deployment
// engine. The engine reads the registry, writes desired properties through
// desired (the hub core, so that connected devices and modules are told),
// and learns about identity and twin changes from obs, the store view the
// registry and the provisioning service write through.
func newDeployments(reg *registry.Hub, desired rollout.DesiredWriter, st deploymentStore, obs *rollout.ObservedDocs,
	now func() time.Time, log *slog.Logger) (*rollout.Configurations, *rollout.Engine, error) {
	cfgs, err := rollout.NewConfigurations(rollout.ConfigurationsOptions{Hub: reg.HostName(), Docs: st, Querier: st, Now: now, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	eng, err := rollout.NewEngine(rollout.Options{Registry: reg, Desired: desired, Configurations: cfgs, Docs: st, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	obs.Observe(eng)
	return cfgs, eng, nil
}
