package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/rollout"
)

// HubConfigurations is a hub's store of automatic configurations as the
// hub service API uses it; *rollout.Configurations implements it. Errors:
// *deploy.ValidationError, rollout.ErrNotFound, ErrExists,
// ErrPrecondition, ErrTooMany.
type HubConfigurations interface {
	// HostName is the hub's host name: service tokens must name it (sr).
	HostName() string
	Get(ctx context.Context, id string) (*deploy.Configuration, error)
	List(ctx context.Context, top int) ([]*deploy.Configuration, error)
	Put(ctx context.Context, c *deploy.Configuration, ifMatch string) (*deploy.Configuration, error)
	Delete(ctx context.Context, id, ifMatch string) error
}

// ContentApplier writes configuration content to one device at once;
// *rollout.Engine implements it. Errors: *deploy.ValidationError,
// registry.ErrNotFound, rollout.ErrAutomaticDeployment.
type ContentApplier interface {
	ApplyContent(ctx context.Context, deviceID string, content deploy.Content) error
}

// Hub error names of the configuration routes.
const (
	hubConfigurationNotFound      = "ConfigurationNotFound"
	hubConfigurationAlreadyExists = "ConfigurationAlreadyExists"
	hubQuotaExceeded              = "IotHubQuotaExceeded" // 403002
	hubConfigurationNoun          = "configuration"
	// maxListConfigurations is the largest top of GET /configurations.
	maxListConfigurations = 1000
)

// MountHubConfigurations adds the configuration routes of the hub service
// API (hub-edge-protocol §4.6), authorised like MountHub's (reads
// RegistryRead, writes RegistryWrite):
//
//   - PUT /configurations/{id}: create without If-Match (409
//     ConfigurationAlreadyExists if it exists, 403 IotHubQuotaExceeded
//     beyond rollout.MaxConfigurations), update with one (412 on a stale
//     etag; the content cannot change); 200 with the Configuration, its
//     metrics and its quoted ETag. A body without schemaVersion gets "1.0";
//     an id in the body must be the path's.
//   - GET /configurations/{id}: 200 Configuration with metrics counted
//     now; 404 ConfigurationNotFound.
//   - GET /configurations[?top=N]: 200 JSON array in ID order.
//   - DELETE /configurations/{id} (If-Match optional): 204; twins keep
//     what it wrote.
//   - POST /configurations/testQueries: body {"targetCondition",
//     "customMetricQueries": {name: query}}; 200 {"targetConditionError",
//     "customMetricQueryErrors": {name: error}}.
//   - POST /devices/{id}/applyConfigurationContent: body {"modulesContent"}
//     or {"deviceContent"}, written to the device's twins at once; 204.
//
// Invalid input is 400 ArgumentInvalid naming every problem. Call it
// once, before serving.
func (a *API) MountHubConfigurations(c HubConfigurations, apply ContentApplier) error {
	if c == nil || apply == nil {
		return errors.New("api: MountHubConfigurations needs the configurations and a content applier")
	}
	host := strings.ToLower(strings.TrimSpace(c.HostName()))
	if host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("api: hub host name %q is not a host name", c.HostName())
	}
	hc := &hubConfigurations{hs: &hubService{a: a, hosts: []string{host}}, c: c, apply: apply}
	for _, e := range []hubEndpoint{
		{method: http.MethodPut, pattern: "/configurations/{id}", right: RightRegistryWrite, noun: hubConfigurationNoun, serve: hc.put},
		{method: http.MethodGet, pattern: "/configurations/{id}", right: RightRegistryRead, noun: hubConfigurationNoun, serve: hc.get},
		{method: http.MethodDelete, pattern: "/configurations/{id}", right: RightRegistryWrite, noun: hubConfigurationNoun, serve: hc.delete},
		{method: http.MethodGet, pattern: "/configurations", right: RightRegistryRead, noun: hubConfigurationNoun, serve: hc.list},
		{method: http.MethodPost, pattern: "/configurations/testQueries", right: RightRegistryRead, noun: hubConfigurationNoun, serve: hc.testQueries},
		{method: http.MethodPost, pattern: "/devices/{id}/applyConfigurationContent", right: RightRegistryWrite, noun: hubDeviceNoun, serve: hc.applyContent},
	} {
		if err := a.router.handle(e.method, e.pattern, hc.hs.handler(e)); err != nil {
			return fmt.Errorf("api: mount hub configurations: %w", err)
		}
	}
	return nil
}

// hubConfigurations serves the configuration routes.
type hubConfigurations struct {
	hs    *hubService
	c     HubConfigurations
	apply ContentApplier
}

// configurationError gives the configuration errors their IoT Hub status
// and name; the rest are classified like the device routes'.
func configurationError(id string, err error) error {
	var ve *deploy.ValidationError
	switch {
	case errors.As(err, &ve):
		return &hubStatusError{status: http.StatusBadRequest, name: hubArgumentInvalid, message: ve.Error(), err: err}
	case errors.Is(err, rollout.ErrNotFound):
		return &hubStatusError{status: http.StatusNotFound, name: hubConfigurationNotFound, err: err,
			message: fmt.Sprintf("Configuration %s does not exist", id)}
	case errors.Is(err, rollout.ErrExists):
		return &hubStatusError{status: http.StatusConflict, name: hubConfigurationAlreadyExists, err: err,
			message: fmt.Sprintf("A configuration with ID %s already exists; update it with If-Match", id)}
	case errors.Is(err, rollout.ErrPrecondition):
		return &hubStatusError{status: http.StatusPreconditionFailed, name: hubPreconditionFailed, err: err,
			message: fmt.Sprintf("If-Match does not match the current etag of configuration %s", id)}
	case errors.Is(err, rollout.ErrTooMany):
		return &hubStatusError{status: http.StatusForbidden, name: hubQuotaExceeded, err: err,
			message: fmt.Sprintf("The hub already has the most configurations allowed (%d); delete one first", rollout.MaxConfigurations)}
	case errors.Is(err, rollout.ErrAutomaticDeployment):
		return &hubStatusError{status: http.StatusBadRequest, name: hubArgumentInvalid, message: err.Error(), err: err}
	}
	return err
}

// decodeConfiguration decodes a PUT /configurations/{id} body for the id
// in the path; validation is the store's.
func decodeConfiguration(data []byte, id string) (*deploy.Configuration, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, badRequest("request body is empty; it must be a Configuration")
	}
	var c deploy.Configuration
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, badRequest("request body has data after its JSON value (at offset %d)", dec.InputOffset())
	}
	switch {
	case c.ID == "":
		c.ID = id
	case c.ID != id:
		return nil, badRequest("id %q in the body does not match %q in the request path", c.ID, id)
	}
	if c.SchemaVersion == "" {
		c.SchemaVersion = deploy.SchemaVersion
	}
	return &c, nil
}

// view makes a configuration's maps render as objects, never null.
func view(c *deploy.Configuration) *deploy.Configuration {
	for _, m := range []*map[string]string{&c.Labels, &c.SystemMetrics.Queries, &c.Metrics.Queries} {
		if *m == nil {
			*m = map[string]string{}
		}
	}
	for _, m := range []*map[string]int64{&c.SystemMetrics.Results, &c.Metrics.Results} {
		if *m == nil {
			*m = map[string]int64{}
		}
	}
	return c
}

// put is PUT /configurations/{id}: create without If-Match, update with one.
func (hc *hubConfigurations) put(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	data, err := readBody(r)
	if err != nil {
		return err
	}
	c, err := decodeConfiguration(data, id)
	if err != nil {
		return err
	}
	out, err := hc.c.Put(r.Context(), c, ifMatch(r))
	if err != nil {
		return configurationError(id, err)
	}
	hc.hs.writeTagged(w, r, out.ETag, view(out))
	return nil
}

// get is GET /configurations/{id}.
func (hc *hubConfigurations) get(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	c, err := hc.c.Get(r.Context(), id)
	if err != nil {
		return configurationError(id, err)
	}
	hc.hs.writeTagged(w, r, c.ETag, view(c))
	return nil
}

// list is GET /configurations[?top=N].
func (hc *hubConfigurations) list(w http.ResponseWriter, r *http.Request) error {
	top := 0
	if v := strings.TrimSpace(r.URL.Query().Get("top")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListConfigurations {
			return badRequest("top %.32q is not a number from 1 to %d", v, maxListConfigurations)
		}
		top = n
	}
	cs, err := hc.c.List(r.Context(), top)
	if err != nil {
		return err
	}
	out := make([]*deploy.Configuration, len(cs))
	for i, c := range cs {
		out[i] = view(c)
	}
	hc.hs.a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// delete is DELETE /configurations/{id}.
func (hc *hubConfigurations) delete(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := hc.c.Delete(r.Context(), id, ifMatch(r)); err != nil {
		return configurationError(id, err)
	}
	writeNoContent(w)
	return nil
}

// queryTestInput is the body of POST /configurations/testQueries.
type queryTestInput struct {
	TargetCondition     string            `json:"targetCondition"`
	CustomMetricQueries map[string]string `json:"customMetricQueries"`
}

// testQueries is POST /configurations/testQueries.
func (hc *hubConfigurations) testQueries(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	var in queryTestInput
	if len(bytes.TrimSpace(data)) == 0 {
		return badRequest(`request body is empty; it must be {"targetCondition": "…", "customMetricQueries": {…}}`)
	}
	if err := unmarshalStrict(data, &in); err != nil {
		return err
	}
	hc.hs.a.writeJSON(w, r, http.StatusOK, rollout.TestQueries(in.TargetCondition, in.CustomMetricQueries))
	return nil
}

// decodeContent decodes a POST /devices/{id}/applyConfigurationContent
// body: a configuration content ({"modulesContent"}, {"deviceContent"}),
// also accepted wrapped as {"content": {…}}.
func decodeContent(data []byte) (deploy.Content, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return deploy.Content{}, badRequest(`request body is empty; it must be {"modulesContent": {…}} or {"deviceContent": {…}}`)
	}
	var in struct {
		deploy.Content
		Wrapped *deploy.Content `json:"content"`
	}
	if err := unmarshalStrict(data, &in); err != nil {
		return deploy.Content{}, err
	}
	if in.Wrapped != nil {
		if len(in.ModulesContent)+len(in.ModuleContent)+len(in.DeviceContent) > 0 {
			return deploy.Content{}, badRequest(`request body has both "content" and content at the top level; send one`)
		}
		return *in.Wrapped, nil
	}
	return in.Content, nil
}

// applyContent is POST /devices/{id}/applyConfigurationContent.
func (hc *hubConfigurations) applyContent(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	data, err := readBody(r)
	if err != nil {
		return err
	}
	content, err := decodeContent(data)
	if err != nil {
		return err
	}
	if err := hc.apply.ApplyContent(r.Context(), id, content); err != nil {
		return configurationError(id, err)
	}
	writeNoContent(w)
	return nil
}
