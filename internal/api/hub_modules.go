package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/muster-iot/muster/internal/hubauth"
	"github.com/muster-iot/muster/internal/registry"
)

// HubModules is a hub's module identity registry as the hub service API
// uses it; *registry.Hub implements it. Its errors are those of package
// registry (ErrNotFound for a missing device, ErrModuleNotFound,
// ErrModuleExists, ErrTooManyModules, ErrPrecondition, *InvalidError).
type HubModules interface {
	// HostName is the hub's host name: service tokens must name it (sr).
	HostName() string
	GetDevice(ctx context.Context, deviceID string) (*registry.Device, error)
	GetModule(ctx context.Context, deviceID, moduleID string) (*registry.Module, error)
	ListModules(ctx context.Context, deviceID string) ([]*registry.Module, error)
	PutModule(ctx context.Context, m *registry.Module, ifMatch string) (*registry.Module, error)
	RemoveModule(ctx context.Context, deviceID, moduleID, ifMatch string) error
}

// ModuleDisconnecter ends the live sessions of a module; *hub.Service
// implements it.
type ModuleDisconnecter interface {
	DisconnectModule(deviceID, moduleID, why string) int
}

// DeviceAuthenticator authenticates a device by its own credential (a SAS
// token signed with its key, or its X.509 certificate) and records
// refusals in the attempt log; *hubauth.Authenticator implements it. A
// refusal is an error wrapping a *hubauth.Denial.
type DeviceAuthenticator interface {
	Authenticate(ctx context.Context, req hubauth.Request) (*hubauth.Identity, error)
}

// Hub error names of the module routes.
const (
	hubModuleNotFound      = "ModuleNotFound"              // 404010
	hubModuleAlreadyExists = "ModuleAlreadyExistsOnDevice" // 409301
	hubTooManyModules      = "TooManyModulesOnDevice"      // 413003
	hubModuleNoun          = "module"
)

// MountHubModules adds the module identity routes of the hub service API
// over m (hub-edge-protocol §4.3) to the router, authorised like
// MountHub's (reads RegistryRead, writes RegistryWrite):
//
//   - PUT /devices/{id}/modules/{mid}: create without If-Match (409
//     ModuleAlreadyExistsOnDevice if it exists, 413 TooManyModulesOnDevice
//     beyond the per-device quota), update with one (412 on a stale etag);
//     200 with the Module and its quoted ETag. The body is a Module; only
//     managedBy and authentication are used.
//   - GET /devices/{id}/modules/{mid}: 200 Module, 404 ModuleNotFound.
//   - GET /devices/{id}/modules: 200 with a JSON array of Module.
//   - DELETE /devices/{id}/modules/{mid} (If-Match optional): 204.
//
// A missing device is 404 DeviceNotFound on every route. When live is not
// nil, a deleted module's live sessions are ended through it.
//
// When devices is not nil, the routes also accept the credential of the
// device in the path (hub-edge-protocol §4.9: the edge runtime manages its
// modules with the device's own SAS token, sr {hub}/devices/{deviceId},
// or with its TLS client certificate), for IoT Edge devices only; see
// authorizeDevice. Call it once, before serving.
func (a *API) MountHubModules(m HubModules, live ModuleDisconnecter, devices DeviceAuthenticator) error {
	if m == nil {
		return errors.New("api: MountHubModules needs a module registry")
	}
	host := strings.ToLower(strings.TrimSpace(m.HostName()))
	if host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("api: hub host name %q is not a host name", m.HostName())
	}
	hs := &hubService{a: a, hosts: []string{host}}
	hm := &hubModules{hs: hs, m: m, live: live, devices: devices}
	for _, e := range []hubEndpoint{
		{method: http.MethodPut, pattern: "/devices/{id}/modules/{mid}", right: RightRegistryWrite, noun: hubModuleNoun, serve: hm.putModule},
		{method: http.MethodGet, pattern: "/devices/{id}/modules/{mid}", right: RightRegistryRead, noun: hubModuleNoun, serve: hm.getModule},
		{method: http.MethodDelete, pattern: "/devices/{id}/modules/{mid}", right: RightRegistryWrite, noun: hubModuleNoun, serve: hm.deleteModule},
		{method: http.MethodGet, pattern: "/devices/{id}/modules", right: RightRegistryRead, noun: hubModuleNoun, serve: hm.listModules},
	} {
		if devices != nil {
			e.authorize = hm.authorize
		}
		if err := a.router.handle(e.method, e.pattern, hs.handler(e)); err != nil {
			return fmt.Errorf("api: mount hub modules: %w", err)
		}
	}
	return nil
}

// hubModules serves the module identity routes.
type hubModules struct {
	hs      *hubService
	m       HubModules
	live    ModuleDisconnecter  // nil: no sessions to end
	devices DeviceAuthenticator // nil: hub policies only
}

// moduleError gives the module-specific registry errors their IoT Hub
// status and name; the rest are classified like the device routes'.
func moduleError(deviceID, moduleID string, err error) error {
	switch {
	case errors.Is(err, registry.ErrModuleNotFound):
		return &hubStatusError{status: http.StatusNotFound, name: hubModuleNotFound, err: err,
			message: fmt.Sprintf("Module %s on device %s does not exist", moduleID, deviceID)}
	case errors.Is(err, registry.ErrModuleExists):
		return &hubStatusError{status: http.StatusConflict, name: hubModuleAlreadyExists, err: err,
			message: fmt.Sprintf("A module with ID %s already exists on device %s", moduleID, deviceID)}
	case errors.Is(err, registry.ErrTooManyModules):
		return &hubStatusError{status: http.StatusRequestEntityTooLarge, name: hubTooManyModules, err: err,
			message: fmt.Sprintf("Device %s already has the most modules allowed (%d)", deviceID, registry.MaxModulesPerDevice)}
	}
	return err
}

// moduleInput is the part of a Module document a PUT may set; read-only
// fields (generationId, etag, connection state, timestamps, counters) are
// ignored, so a module read back from any IoT hub SDK can be sent again.
type moduleInput struct {
	ModuleID       string                   `json:"moduleId"`
	DeviceID       string                   `json:"deviceId"`
	ManagedBy      *string                  `json:"managedBy"`
	Authentication *registry.Authentication `json:"authentication"`
}

// decodeModuleInput decodes a PUT /devices/{id}/modules/{mid} body for the
// device and module IDs in the path.
func decodeModuleInput(data []byte, deviceID, moduleID string) (*registry.Module, error) {
	var in moduleInput
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, badRequest("request body is empty; it must be a Module")
	}
	if err := unmarshalStrict(data, &in); err != nil {
		return nil, err
	}
	if in.DeviceID != "" && in.DeviceID != deviceID {
		return nil, badRequest("deviceId %q in the body does not match %q in the request path", in.DeviceID, deviceID)
	}
	if in.ModuleID != "" && in.ModuleID != moduleID {
		return nil, badRequest("moduleId %q in the body does not match %q in the request path", in.ModuleID, moduleID)
	}
	m := &registry.Module{DeviceID: deviceID, ModuleID: moduleID}
	if in.ManagedBy != nil {
		m.ManagedBy = *in.ManagedBy
	}
	if in.Authentication != nil {
		m.Authentication = *in.Authentication
	}
	return m, nil
}

// putModule is PUT /devices/{id}/modules/{mid}.
func (hm *hubModules) putModule(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	id, mid := r.PathValue("id"), r.PathValue("mid")
	in, err := decodeModuleInput(data, id, mid)
	if err != nil {
		return err
	}
	out, err := hm.m.PutModule(r.Context(), in, ifMatch(r))
	if err != nil {
		return moduleError(id, mid, err)
	}
	hm.hs.writeTagged(w, r, out.ETag, out)
	return nil
}

// getModule is GET /devices/{id}/modules/{mid}.
func (hm *hubModules) getModule(w http.ResponseWriter, r *http.Request) error {
	id, mid := r.PathValue("id"), r.PathValue("mid")
	m, err := hm.m.GetModule(r.Context(), id, mid)
	if err != nil {
		return moduleError(id, mid, err)
	}
	hm.hs.writeTagged(w, r, m.ETag, m)
	return nil
}

// listModules is GET /devices/{id}/modules: the device's modules as a JSON array.
func (hm *hubModules) listModules(w http.ResponseWriter, r *http.Request) error {
	ms, err := hm.m.ListModules(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if ms == nil {
		ms = []*registry.Module{}
	}
	hm.hs.a.writeJSON(w, r, http.StatusOK, ms)
	return nil
}

// deleteModule is DELETE /devices/{id}/modules/{mid}.
func (hm *hubModules) deleteModule(w http.ResponseWriter, r *http.Request) error {
	id, mid := r.PathValue("id"), r.PathValue("mid")
	if err := hm.m.RemoveModule(r.Context(), id, mid, ifMatch(r)); err != nil {
		return moduleError(id, mid, err)
	}
	if hm.live != nil {
		hm.live.DisconnectModule(id, mid, "the module was deleted")
	}
	writeNoContent(w)
	return nil
}
