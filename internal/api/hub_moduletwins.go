package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/registry"
)

// HubModuleTwins is a hub's module twins as the hub service API uses them;
// *hub.Service implements it (and notifies connected modules of desired
// changes), as does *registry.Hub. Errors are package registry's
// (ErrNotFound for a missing device, ErrModuleNotFound, ErrPrecondition,
// *InvalidError).
type HubModuleTwins interface {
	// HostName is the hub's host name: service tokens must name it (sr).
	HostName() string
	GetDevice(ctx context.Context, deviceID string) (*registry.Device, error)
	GetModule(ctx context.Context, deviceID, moduleID string) (*registry.Module, error)
	GetModuleTwin(ctx context.Context, deviceID, moduleID string) (*registry.Twin, error)
	PatchModuleTwin(ctx context.Context, deviceID, moduleID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error)
	ReplaceModuleTwin(ctx context.Context, deviceID, moduleID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error)
}

const hubModuleTwinNoun = "module twin"

// MountHubModuleTwins adds the module twin routes of the hub service API
// over t (hub-edge-protocol §4.4 "module get/merge/replace"), authorised
// like MountHub's twin routes (GET RegistryRead, PATCH and PUT
// RegistryWrite):
//
//   - GET /twins/{id}/modules/{mid}: 200 with the module twin;
//   - PATCH /twins/{id}/modules/{mid}: merge-patch tags and desired
//     properties (If-Match optional; 412 on a stale etag);
//   - PUT /twins/{id}/modules/{mid}: replace them; reported properties are
//     kept.
//
// A missing device is 404 DeviceNotFound, a missing module 404
// ModuleNotFound. Call it once, before serving.
func (a *API) MountHubModuleTwins(t HubModuleTwins) error {
	if t == nil {
		return errors.New("api: MountHubModuleTwins needs the module twins")
	}
	host := strings.ToLower(strings.TrimSpace(t.HostName()))
	if host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("api: hub host name %q is not a host name", t.HostName())
	}
	mt := &hubModuleTwins{hs: &hubService{a: a, hosts: []string{host}}, t: t}
	for _, e := range []hubEndpoint{
		{method: http.MethodGet, pattern: "/twins/{id}/modules/{mid}", right: RightRegistryRead, noun: hubModuleTwinNoun, serve: mt.get},
		{method: http.MethodPatch, pattern: "/twins/{id}/modules/{mid}", right: RightRegistryWrite, noun: hubModuleTwinNoun, serve: mt.patch},
		{method: http.MethodPut, pattern: "/twins/{id}/modules/{mid}", right: RightRegistryWrite, noun: hubModuleTwinNoun, serve: mt.replace},
	} {
		if err := a.router.handle(e.method, e.pattern, mt.hs.handler(e)); err != nil {
			return fmt.Errorf("api: mount hub module twins: %w", err)
		}
	}
	return nil
}

// hubModuleTwins serves the module twin routes.
type hubModuleTwins struct {
	hs *hubService
	t  HubModuleTwins
}

// moduleTwinView is a module twin as the service API shows it: the stored
// twin joined with its module identity (connection state, activity,
// credential type) and its device (status).
type moduleTwinView struct {
	DeviceID                  string                  `json:"deviceId"`
	ModuleID                  string                  `json:"moduleId"`
	ETag                      string                  `json:"etag"`
	DeviceETag                string                  `json:"deviceEtag"`
	Status                    string                  `json:"status"`
	StatusReason              *string                 `json:"statusReason"`
	StatusUpdateTime          time.Time               `json:"statusUpdateTime"`
	ConnectionState           string                  `json:"connectionState"`
	LastActivityTime          time.Time               `json:"lastActivityTime"`
	CloudToDeviceMessageCount int                     `json:"cloudToDeviceMessageCount"`
	AuthenticationType        string                  `json:"authenticationType"`
	X509Thumbprint            registry.X509Thumbprint `json:"x509Thumbprint"`
	ModelID                   string                  `json:"modelId"`
	Version                   int64                   `json:"version"`
	Tags                      json.RawMessage         `json:"tags"`
	Properties                registry.TwinProperties `json:"properties"`
	// Configurations appears once an automatic configuration targets the twin.
	Configurations map[string]registry.ConfigurationStatus `json:"configurations,omitempty"`
}

func newModuleTwinView(d *registry.Device, m *registry.Module, t *registry.Twin) *moduleTwinView {
	v := &moduleTwinView{
		DeviceID: t.DeviceID, ModuleID: t.ModuleID, ETag: t.ETag, DeviceETag: d.ETag, Status: d.Status, StatusReason: d.StatusReason,
		StatusUpdateTime: d.StatusUpdatedTime, ConnectionState: m.ConnectionState, LastActivityTime: m.LastActivityTime,
		CloudToDeviceMessageCount: m.CloudToDeviceMessageCount, AuthenticationType: m.Authentication.Type,
		X509Thumbprint: m.Authentication.X509Thumbprint, Version: t.Version, Tags: t.Tags, Properties: t.Properties,
		Configurations: t.Configurations,
	}
	for _, raw := range []*json.RawMessage{&v.Tags, &v.Properties.Desired, &v.Properties.Reported} {
		if len(*raw) == 0 {
			*raw = json.RawMessage(`{}`)
		}
	}
	return v
}

// write answers with a module twin joined with its identities.
func (mt *hubModuleTwins) write(w http.ResponseWriter, r *http.Request, t *registry.Twin) error {
	d, err := mt.t.GetDevice(r.Context(), t.DeviceID)
	if err != nil {
		return err
	}
	m, err := mt.t.GetModule(r.Context(), t.DeviceID, t.ModuleID)
	if err != nil {
		return moduleError(t.DeviceID, t.ModuleID, err)
	}
	mt.hs.writeTagged(w, r, t.ETag, newModuleTwinView(d, m, t))
	return nil
}

// get is GET /twins/{id}/modules/{mid}.
func (mt *hubModuleTwins) get(w http.ResponseWriter, r *http.Request) error {
	id, mid := r.PathValue("id"), r.PathValue("mid")
	t, err := mt.t.GetModuleTwin(r.Context(), id, mid)
	if err != nil {
		return moduleError(id, mid, err)
	}
	return mt.write(w, r, t)
}

// patch is PATCH /twins/{id}/modules/{mid}: a merge patch of tags and
// desired properties.
func (mt *hubModuleTwins) patch(w http.ResponseWriter, r *http.Request) error {
	return mt.update(w, r, true)
}

// replace is PUT /twins/{id}/modules/{mid}: tags and desired properties
// replaced.
func (mt *hubModuleTwins) replace(w http.ResponseWriter, r *http.Request) error {
	return mt.update(w, r, false)
}

func (mt *hubModuleTwins) update(w http.ResponseWriter, r *http.Request, patch bool) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	id, mid := r.PathValue("id"), r.PathValue("mid")
	u, err := decodeTwinInput(data, id, patch)
	if err != nil {
		return err
	}
	var named struct {
		ModuleID string `json:"moduleId"`
	}
	if err := json.Unmarshal(data, &named); err == nil && named.ModuleID != "" && named.ModuleID != mid {
		return badRequest("moduleId %q in the body does not match %q in the request path", named.ModuleID, mid)
	}
	update := mt.t.ReplaceModuleTwin
	if patch {
		update = mt.t.PatchModuleTwin
	}
	t, err := update(r.Context(), id, mid, u, ifMatch(r))
	if err != nil {
		return moduleError(id, mid, err)
	}
	return mt.write(w, r, t)
}
