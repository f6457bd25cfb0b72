package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/registry"
)

// The hub policy rights (Azure IoT Hub's vocabulary). The hub service API
// checks RegistryRead and RegistryWrite; the others authorise the hub's
// device and messaging endpoints.
const (
	RightRegistryRead   = "RegistryRead"
	RightRegistryWrite  = "RegistryWrite"
	RightServiceConnect = "ServiceConnect"
	RightDeviceConnect  = "DeviceConnect"
)

// HubRegistry is a hub's identity registry as the hub service API uses it;
// *registry.Hub implements it. Its errors are those of package registry
// (ErrNotFound, ErrExists, ErrPrecondition, *InvalidError).
type HubRegistry interface {
	// HostName is the hub's host name: service tokens must name it (sr).
	HostName() string
	GetDevice(ctx context.Context, deviceID string) (*registry.Device, error)
	ListDevices(ctx context.Context, after string, limit int) ([]*registry.Device, error)
	PutDevice(ctx context.Context, d *registry.Device, ifMatch string) (*registry.Device, error)
	RemoveDevice(ctx context.Context, deviceID, ifMatch string) error
	GetTwin(ctx context.Context, deviceID string) (*registry.Twin, error)
	PatchTwin(ctx context.Context, deviceID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error)
	ReplaceTwin(ctx context.Context, deviceID string, u registry.TwinUpdate, ifMatch string) (*registry.Twin, error)
}

// Hub error names (the IoT Hub ErrorCode enum) this API answers with.
const (
	hubArgumentInvalid     = "ArgumentInvalid"
	hubUnauthorized        = "IotHubUnauthorizedAccess"
	hubDeviceNotFound      = "DeviceNotFound"
	hubDeviceAlreadyExists = "DeviceAlreadyExists"
	hubPreconditionFailed  = "PreconditionFailed"
	hubMessageTooLarge     = "MessageTooLarge"
	hubServerError         = "ServerError"
)

const (
	// headerHubErrorCode carries the error name (the C# SDK cross-checks it).
	headerHubErrorCode = "iothub-errorcode"
	// hubExceptionTimeLayout is the TimeStamp format of ExceptionMessage.
	hubExceptionTimeLayout = "01/02/2006 15:04:05"
	// maxListDevices is the most devices GET /devices returns.
	maxListDevices = 1000
)

// What hub routes address, for error messages.
const (
	hubDeviceNoun = "device"
	hubTwinNoun   = "twin"
)

// hubService serves the hub service API of one hub.
type hubService struct {
	a     *API
	reg   HubRegistry
	hosts []string
}

// hubEndpoint is one hub service API route.
type hubEndpoint struct {
	method, pattern string
	// right is the hub policy right the route needs.
	right string
	// noun is what the route addresses ("device", "twin"), for messages.
	noun  string
	serve func(w http.ResponseWriter, r *http.Request) error
	// authorize, when set, replaces the hub policy check (right is then
	// its to use); an error is rendered like a refused policy token.
	authorize func(r *http.Request, e hubEndpoint) error
}

// MountHub adds the hub service API of reg (spec: hub-edge-protocol §4.2
// and §4.4) to the router: device identity create, update, get, list and
// delete, and twin get, merge-patch and replace. Requests are authorised by
// service SAS tokens of policies of realm "hub" whose sr names
// reg.HostName(): reads need RegistryRead, writes RegistryWrite. Every route
// requires an api-version (any value). Errors are answered in IoT Hub's
// shape ({"Message":"ErrorCode:<Name>;…","ExceptionMessage":"Tracking ID:…"}
// with an iothub-errorcode header). Call it once, before serving.
func (a *API) MountHub(reg HubRegistry) error {
	if reg == nil {
		return errors.New("api: MountHub needs a hub registry")
	}
	host := strings.ToLower(strings.TrimSpace(reg.HostName()))
	if host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("api: hub host name %q is not a host name", reg.HostName())
	}
	hs := &hubService{a: a, reg: reg, hosts: []string{host}}
	for _, e := range hs.endpoints() {
		if err := a.router.handle(e.method, e.pattern, hs.handler(e)); err != nil {
			return fmt.Errorf("api: mount hub API: %w", err)
		}
	}
	return nil
}

func (hs *hubService) endpoints() []hubEndpoint {
	return []hubEndpoint{
		{method: http.MethodPut, pattern: "/devices/{id}", right: RightRegistryWrite, noun: hubDeviceNoun, serve: hs.putDevice},
		{method: http.MethodGet, pattern: "/devices/{id}", right: RightRegistryRead, noun: hubDeviceNoun, serve: hs.getDevice},
		{method: http.MethodDelete, pattern: "/devices/{id}", right: RightRegistryWrite, noun: hubDeviceNoun, serve: hs.deleteDevice},
		{method: http.MethodGet, pattern: "/devices", right: RightRegistryRead, noun: hubDeviceNoun, serve: hs.listDevices},
		{method: http.MethodGet, pattern: "/twins/{id}", right: RightRegistryRead, noun: hubTwinNoun, serve: hs.getTwin},
		{method: http.MethodPatch, pattern: "/twins/{id}", right: RightRegistryWrite, noun: hubTwinNoun, serve: hs.patchTwin},
		{method: http.MethodPut, pattern: "/twins/{id}", right: RightRegistryWrite, noun: hubTwinNoun, serve: hs.replaceTwin},
	}
}

// handler wraps a route: authorisation, api-version, the body limit, error
// rendering, and a logged 500 for a panic.
func (hs *hubService) handler(e hubEndpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				hs.fail(w, r, e, fmt.Errorf("panic serving %s %s: %v\n%s", e.method, e.pattern, v, debug.Stack()))
			}
		}()
		authorize := func(r *http.Request, e hubEndpoint) error { return hs.a.authorizeRealm(r, RealmHub, hs.hosts, e.right) }
		if e.authorize != nil {
			authorize = e.authorize
		}
		if err := authorize(r, e); err != nil {
			hs.fail(w, r, e, err)
			return
		}
		if strings.TrimSpace(r.URL.Query().Get("api-version")) == "" {
			hs.fail(w, r, e, badRequest("the api-version query parameter is required"))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, hs.a.maxBody)
		}
		if err := e.serve(w, r); err != nil {
			hs.fail(w, r, e, err)
		}
	})
}

// hubErrorBody is IoT Hub's error body; both the Node and C# SDKs parse
// the error name out of Message ("ErrorCode:<Name>;<text>").
type hubErrorBody struct {
	Message          string `json:"Message"`
	ExceptionMessage string `json:"ExceptionMessage"`
}

// classifyHub maps an error to the status, IoT Hub error name and message
// the caller is told.
func classifyHub(e hubEndpoint, id string, err error) (status int, name, message string) {
	var (
		he *httpError
		me *http.MaxBytesError
		ie *registry.InvalidError
		se *hubStatusError
	)
	switch {
	case errors.As(err, &se):
		return se.status, se.name, se.message
	case errors.As(err, &me):
		return http.StatusRequestEntityTooLarge, hubMessageTooLarge,
			fmt.Sprintf("request body is larger than the %d-byte limit", me.Limit)
	case errors.As(err, &he):
		switch he.status {
		case http.StatusBadRequest:
			return he.status, hubArgumentInvalid, he.message
		case http.StatusUnauthorized:
			return he.status, hubUnauthorized, he.message
		}
		return he.status, hubServerError, he.message
	case errors.As(err, &ie):
		return http.StatusBadRequest, hubArgumentInvalid, ie.Error()
	case errors.Is(err, registry.ErrNotFound):
		return http.StatusNotFound, hubDeviceNotFound, fmt.Sprintf("Device %s does not exist", id)
	case errors.Is(err, registry.ErrModuleNotFound):
		return http.StatusNotFound, hubModuleNotFound, fmt.Sprintf("The module does not exist on device %s", id)
	case errors.Is(err, registry.ErrExists):
		return http.StatusConflict, hubDeviceAlreadyExists, fmt.Sprintf("A device with ID %s already exists", id)
	case errors.Is(err, registry.ErrPrecondition):
		return http.StatusPreconditionFailed, hubPreconditionFailed,
			fmt.Sprintf("If-Match does not match the current etag of the %s of %s", e.noun, id)
	}
	return http.StatusInternalServerError, hubServerError, "internal error; quote the tracking ID to the operator"
}

// fail renders err as an IoT Hub error and logs it: server errors with
// their cause at error level, refused tokens at info, the rest at debug.
func (hs *hubService) fail(w http.ResponseWriter, r *http.Request, e hubEndpoint, err error) {
	status, name, message := classifyHub(e, r.PathValue("id"), err)
	id := trackingID(w)
	level := slog.LevelDebug
	switch {
	case status >= 500:
		level = slog.LevelError
	case status == http.StatusUnauthorized:
		level = slog.LevelInfo
	}
	hs.a.log.Log(r.Context(), level, "hub request refused", "trackingId", id, "method", r.Method,
		"path", r.URL.Path, "status", status, "errorCode", name, "err", err)
	body := hubErrorBody{
		Message:          "ErrorCode:" + name + ";" + message,
		ExceptionMessage: "Tracking ID:" + id + "-TimeStamp:" + hs.a.now().UTC().Format(hubExceptionTimeLayout),
	}
	payload, merr := json.Marshal(body)
	h := w.Header()
	h.Set(headerHubErrorCode, name)
	if merr != nil { // cannot happen for two strings; answer without a body rather than loop
		hs.a.log.Error("encode hub error body", "trackingId", id, "err", merr)
		w.WriteHeader(status)
		return
	}
	h.Set("Content-Type", contentTypeJSON)
	h.Set("Content-Length", strconv.Itoa(len(payload)))
	w.WriteHeader(status)
	_, _ = w.Write(payload)
}

// ifMatch returns the If-Match header without the quotes some clients put
// around it (Node sends "\"*\"" and "\"<etag>\""); "" when absent.
func ifMatch(r *http.Request) string {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	v = strings.TrimPrefix(v, "W/")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	return strings.TrimSpace(v)
}

// writeTagged answers 200 with a JSON body and the entity's quoted ETag.
func (hs *hubService) writeTagged(w http.ResponseWriter, r *http.Request, etag string, v any) {
	if etag != "" {
		w.Header().Set("ETag", strconv.Quote(etag))
	}
	hs.a.writeJSON(w, r, http.StatusOK, v)
}

// deviceInput is the part of a Device document a PUT may set; read-only
// fields (generationId, etag, connection state, timestamps, counters) are
// ignored, so a device read back from any IoT hub SDK can be sent again.
type deviceInput struct {
	DeviceID       string                   `json:"deviceId"`
	Status         string                   `json:"status"`
	StatusReason   *string                  `json:"statusReason"`
	Authentication *registry.Authentication `json:"authentication"`
	Capabilities   *registry.Capabilities   `json:"capabilities"`
	DeviceScope    string                   `json:"deviceScope"`
	ParentScopes   []string                 `json:"parentScopes"`
}

// decodeDeviceInput decodes a PUT /devices/{id} body for the device id in
// the path.
func decodeDeviceInput(data []byte, id string) (*registry.Device, error) {
	var in deviceInput
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, badRequest("request body is empty; it must be a Device")
	}
	if err := unmarshalStrict(data, &in); err != nil {
		return nil, err
	}
	switch {
	case in.DeviceID == "":
		in.DeviceID = id
	case in.DeviceID != id:
		return nil, badRequest("deviceId %q in the body does not match %q in the request path", in.DeviceID, id)
	}
	d := &registry.Device{DeviceID: in.DeviceID, Status: in.Status, StatusReason: in.StatusReason,
		DeviceScope: in.DeviceScope, ParentScopes: in.ParentScopes}
	if in.Authentication != nil {
		d.Authentication = *in.Authentication
	}
	if in.Capabilities != nil {
		d.Capabilities = *in.Capabilities
	}
	return d, nil
}

// putDevice is PUT /devices/{id}: create without If-Match, update with one.
func (hs *hubService) putDevice(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	d, err := decodeDeviceInput(data, r.PathValue("id"))
	if err != nil {
		return err
	}
	out, err := hs.reg.PutDevice(r.Context(), d, ifMatch(r))
	if err != nil {
		return err
	}
	hs.writeTagged(w, r, out.ETag, out)
	return nil
}

// getDevice is GET /devices/{id}.
func (hs *hubService) getDevice(w http.ResponseWriter, r *http.Request) error {
	d, err := hs.reg.GetDevice(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	hs.writeTagged(w, r, d.ETag, d)
	return nil
}

// listDevices is GET /devices[?top=N]: up to N (default and at most 1000)
// devices in ID order, as a JSON array.
func (hs *hubService) listDevices(w http.ResponseWriter, r *http.Request) error {
	top := maxListDevices
	if v := strings.TrimSpace(r.URL.Query().Get("top")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListDevices {
			return badRequest("top %.32q is not a number from 1 to %d", v, maxListDevices)
		}
		top = n
	}
	ds, err := hs.reg.ListDevices(r.Context(), "", top)
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []*registry.Device{}
	}
	hs.a.writeJSON(w, r, http.StatusOK, ds)
	return nil
}

// deleteDevice is DELETE /devices/{id}; it deletes the twin as well.
func (hs *hubService) deleteDevice(w http.ResponseWriter, r *http.Request) error {
	if err := hs.reg.RemoveDevice(r.Context(), r.PathValue("id"), ifMatch(r)); err != nil {
		return err
	}
	writeNoContent(w)
	return nil
}

// twinView is a device twin as the service API shows it: the stored twin
// joined with its device identity.
type twinView struct {
	DeviceID                  string                  `json:"deviceId"`
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
	Capabilities              registry.Capabilities   `json:"capabilities"`
	DeviceScope               string                  `json:"deviceScope"`
	ParentScopes              []string                `json:"parentScopes"`
	// Configurations are the statuses of the configurations targeting the twin.
	Configurations map[string]registry.ConfigurationStatus `json:"configurations,omitempty"`
}

func newTwinView(d *registry.Device, t *registry.Twin) *twinView {
	v := &twinView{
		DeviceID: t.DeviceID, ETag: t.ETag, DeviceETag: d.ETag, Status: d.Status, StatusReason: d.StatusReason,
		StatusUpdateTime: d.StatusUpdatedTime, ConnectionState: d.ConnectionState, LastActivityTime: d.LastActivityTime,
		CloudToDeviceMessageCount: d.CloudToDeviceMessageCount, AuthenticationType: d.Authentication.Type,
		X509Thumbprint: d.Authentication.X509Thumbprint, Version: t.Version, Tags: t.Tags, Properties: t.Properties,
		Capabilities: d.Capabilities, DeviceScope: d.DeviceScope, ParentScopes: d.ParentScopes,
		Configurations: t.Configurations,
	}
	for _, m := range []*json.RawMessage{&v.Tags, &v.Properties.Desired, &v.Properties.Reported} {
		if len(*m) == 0 {
			*m = json.RawMessage(`{}`)
		}
	}
	if v.ParentScopes == nil {
		v.ParentScopes = []string{}
	}
	return v
}

// writeTwin answers with the twin of a device.
func (hs *hubService) writeTwin(w http.ResponseWriter, r *http.Request, t *registry.Twin) error {
	d, err := hs.reg.GetDevice(r.Context(), t.DeviceID)
	if err != nil {
		return err
	}
	hs.writeTagged(w, r, t.ETag, newTwinView(d, t))
	return nil
}

// getTwin is GET /twins/{id}.
func (hs *hubService) getTwin(w http.ResponseWriter, r *http.Request) error {
	t, err := hs.reg.GetTwin(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return hs.writeTwin(w, r, t)
}

// twinInput is the part of a twin document a PATCH or PUT may carry.
type twinInput struct {
	DeviceID   string          `json:"deviceId"`
	Tags       json.RawMessage `json:"tags"`
	Properties *struct {
		Desired  json.RawMessage `json:"desired"`
		Reported json.RawMessage `json:"reported"`
	} `json:"properties"`
}

// decodeTwinInput decodes a twin PATCH or PUT body for the device id in
// the path. A PATCH may not carry reported properties (devices own them);
// a PUT ignores them, so a twin read back can be sent again.
func decodeTwinInput(data []byte, id string, patch bool) (registry.TwinUpdate, error) {
	var in twinInput
	if len(strings.TrimSpace(string(data))) == 0 {
		return registry.TwinUpdate{}, badRequest("request body is empty; it must be a Twin")
	}
	if err := unmarshalStrict(data, &in); err != nil {
		return registry.TwinUpdate{}, err
	}
	if in.DeviceID != "" && in.DeviceID != id {
		return registry.TwinUpdate{}, badRequest("deviceId %q in the body does not match %q in the request path", in.DeviceID, id)
	}
	u := registry.TwinUpdate{Tags: in.Tags}
	if in.Properties != nil {
		u.Desired = in.Properties.Desired
		rep := strings.TrimSpace(string(in.Properties.Reported))
		if patch && rep != "" && rep != "null" {
			return registry.TwinUpdate{}, badRequest("properties.reported cannot be written through the service API; only the device updates its reported properties")
		}
	}
	return u, nil
}

// patchTwin is PATCH /twins/{id}: a merge patch of tags and desired properties.
func (hs *hubService) patchTwin(w http.ResponseWriter, r *http.Request) error {
	return hs.updateTwin(w, r, true)
}

// replaceTwin is PUT /twins/{id}: tags and desired properties replaced.
func (hs *hubService) replaceTwin(w http.ResponseWriter, r *http.Request) error {
	return hs.updateTwin(w, r, false)
}

func (hs *hubService) updateTwin(w http.ResponseWriter, r *http.Request, patch bool) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	u, err := decodeTwinInput(data, id, patch)
	if err != nil {
		return err
	}
	update := hs.reg.ReplaceTwin
	if patch {
		update = hs.reg.PatchTwin
	}
	t, err := update(r.Context(), id, u, ifMatch(r))
	if err != nil {
		return err
	}
	return hs.writeTwin(w, r, t)
}
