package hub

// Module identities as the hub core serves them: a module connection
// (client id {deviceId}/{moduleId}) uses the device's $iothub/twin/...
// topics on its module twin, and desired changes made through the Service
// reach the module's sessions the way device twin changes reach devices
// (watchers are keyed by clientKey). Module telemetry, inputs and methods
// are handled with the device's (topics.go, methods.go).

import (
	"context"
	"encoding/json"

	"github.com/muster-iot/muster/internal/registry"
)

// ModuleRegistry is the module part of Registry; *registry.Hub implements
// it. Missing modules are errors wrapping registry.ErrModuleNotFound,
// missing devices registry.ErrNotFound.
type ModuleRegistry interface {
	GetModule(ctx context.Context, deviceID, moduleID string) (*registry.Module, error)
	GetModuleTwin(ctx context.Context, deviceID, moduleID string) (*registry.Twin, error)
	ListModuleTwins(ctx context.Context, deviceID string) ([]*registry.Twin, error)
	PatchModuleTwin(ctx context.Context, deviceID, moduleID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error)
	ReplaceModuleTwin(ctx context.Context, deviceID, moduleID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error)
	PatchModuleReported(ctx context.Context, deviceID, moduleID string, patch json.RawMessage) (*registry.Twin, error)
}

// GetModule returns a module identity.
func (s *Service) GetModule(ctx context.Context, deviceID, moduleID string) (*registry.Module, error) {
	return s.reg.GetModule(ctx, deviceID, moduleID)
}

// GetModuleTwin returns a module's twin.
func (s *Service) GetModuleTwin(ctx context.Context, deviceID, moduleID string) (*registry.Twin, error) {
	return s.reg.GetModuleTwin(ctx, deviceID, moduleID)
}

// ListModuleTwins returns the twins of a device's modules.
func (s *Service) ListModuleTwins(ctx context.Context, deviceID string) ([]*registry.Twin, error) {
	return s.reg.ListModuleTwins(ctx, deviceID)
}

// PatchModuleTwin merge-patches a module twin's tags and desired
// properties and notifies the module's sessions watching desired
// properties.
func (s *Service) PatchModuleTwin(ctx context.Context, deviceID, moduleID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error) {
	t, err := s.reg.PatchModuleTwin(ctx, deviceID, moduleID, u, ifMatch)
	if err == nil {
		s.ModuleDesiredMayHaveChanged(deviceID, moduleID)
	}
	return t, err
}

// ReplaceModuleTwin replaces a module twin's tags and desired properties
// and notifies the module's sessions watching desired properties.
func (s *Service) ReplaceModuleTwin(ctx context.Context, deviceID, moduleID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error) {
	t, err := s.reg.ReplaceModuleTwin(ctx, deviceID, moduleID, u, ifMatch)
	if err == nil {
		s.ModuleDesiredMayHaveChanged(deviceID, moduleID)
	}
	return t, err
}

// PatchModuleReported merge-patches a module twin's reported properties.
// Nothing is notified: clients are told of desired changes only.
func (s *Service) PatchModuleReported(ctx context.Context, deviceID, moduleID string, patch json.RawMessage) (*registry.Twin, error) {
	return s.reg.PatchModuleReported(ctx, deviceID, moduleID, patch)
}

// ModuleDesiredMayHaveChanged wakes the sessions of a module watching its
// desired properties; each sends the change from the last desired
// properties it sent, if the stored version is newer. Writers that change
// module twins through the registry directly (not through the Service)
// call it after their write commits.
func (s *Service) ModuleDesiredMayHaveChanged(deviceID, moduleID string) {
	s.wakeWatchers(deviceID, moduleID)
}

// storedTwin reads the twin of the session's identity.
func (s *Session) storedTwin(ctx context.Context) (*registry.Twin, error) {
	if s.id.ModuleID == "" {
		return s.svc.reg.GetTwin(ctx, s.id.DeviceID)
	}
	return s.svc.reg.GetModuleTwin(ctx, s.id.DeviceID, s.id.ModuleID)
}

// patchReported merge-patches the reported properties of the session's
// identity's twin.
func (s *Session) patchReported(ctx context.Context, patch json.RawMessage) (*registry.Twin, error) {
	if s.id.ModuleID == "" {
		return s.svc.reg.PatchReported(ctx, s.id.DeviceID, patch)
	}
	return s.svc.reg.PatchModuleReported(ctx, s.id.DeviceID, s.id.ModuleID, patch)
}
