package iothub

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/client/svcconn"
	"github.com/muster-iot/muster/internal/hubclient"
	"github.com/muster-iot/muster/internal/sas"
)

// ModulesAPIVersion is the api-version of the device-credential module
// calls (the identity service's, hub-edge-protocol §4.9).
const ModulesAPIVersion = "2017-11-08-preview"

// ManagedByIotEdge is the managedBy of the module identities an edge agent
// creates; it deletes only identities that carry it.
const ManagedByIotEdge = "IotEdge"

// Limits of the module calls.
const (
	// moduleTokenTTL is the lifetime of the device token of one call
	// (the identity service signs 30-second tokens; a little more allows
	// for a slow answer).
	moduleTokenTTL = 5 * time.Minute
	// maxModuleBody caps an answer read.
	maxModuleBody = 1 << 20
)

// Sentinel errors of Modules; an *hubclient.Error matches them too.
var (
	// ErrModuleNotFound: the device has no such module (404
	// ModuleNotFound).
	ErrModuleNotFound = errors.New("iothub: module not found")
	// ErrModuleExists: a create found the module (409).
	ErrModuleExists = errors.New("iothub: module already exists")
	// ErrDeviceRefused: the hub refused the device's credential (401 or
	// 403, or 404 DeviceNotFound): the identity is gone or changed.
	ErrDeviceRefused = errors.New("iothub: the hub refused the device's credential")
)

// ModuleAuthentication is a module's authentication.
type ModuleAuthentication struct {
	Type         string `json:"type"`
	SymmetricKey *struct {
		PrimaryKey   string `json:"primaryKey"`
		SecondaryKey string `json:"secondaryKey"`
	} `json:"symmetricKey,omitempty"`
}

// Module is a module identity as the hub returns it.
type Module struct {
	ModuleID       string               `json:"moduleId"`
	DeviceID       string               `json:"deviceId"`
	ManagedBy      string               `json:"managedBy"`
	GenerationID   string               `json:"generationId"`
	ETag           string               `json:"etag"`
	Authentication ModuleAuthentication `json:"authentication"`
}

// PrimaryKey returns the module's decoded primary key, or an error naming
// the module when it has none (a module that does not authenticate with
// SAS cannot be run by the agent).
func (m *Module) PrimaryKey() ([]byte, error) {
	if m.Authentication.SymmetricKey == nil || m.Authentication.SymmetricKey.PrimaryKey == "" {
		return nil, fmt.Errorf("module %s/%s has no symmetric key (authentication type %q)", m.DeviceID, m.ModuleID, m.Authentication.Type)
	}
	k, err := sas.DecodeKey(m.Authentication.SymmetricKey.PrimaryKey)
	if err != nil {
		return nil, fmt.Errorf("module %s/%s: primary key: %w", m.DeviceID, m.ModuleID, err)
	}
	return k, nil
}

// ModulesOptions configure Modules.
type ModulesOptions struct {
	// Device is the edge device and its credential (ModuleID empty).
	Device Identity
	// Addr is the hub's HTTPS address, host:port.
	Addr string
	// RootCAs verify the hub (system roots when nil).
	RootCAs *x509.CertPool
	// Timeout bounds one call (DefaultRequestTimeout when zero).
	Timeout time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Modules manages the edge device's module identities with the device's
// own credential (hub-edge-protocol §4.9).
type Modules struct {
	opts ModulesOptions
	http *http.Client
	base string
}

// NewModules returns a module identity client.
func NewModules(opts ModulesOptions) (*Modules, error) {
	d := opts.Device
	switch {
	case d.Hub == "" || d.DeviceID == "":
		return nil, errors.New("new module client: Device.Hub and Device.DeviceID are required")
	case d.ModuleID != "":
		return nil, fmt.Errorf("new module client: the credential must be the device's, not module %s's", d.ModuleID)
	case len(d.Key) == 0 && d.Certificate == nil:
		return nil, fmt.Errorf("new module client for %s: neither a key nor a certificate", d.DeviceID)
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("new module client for %s: Addr %q: %w", d.DeviceID, opts.Addr, err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultRequestTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	hc := svcconn.NewHTTPClient(host, opts.RootCAs, svcconn.HTTPOptions{MaxIdleConns: 2, Timeout: opts.Timeout})
	if d.Certificate != nil {
		tr := hc.Transport.(*http.Transport)
		tr.TLSClientConfig.Certificates = []tls.Certificate{*d.Certificate}
	}
	return &Modules{opts: opts, http: hc, base: "https://" + opts.Addr}, nil
}

// Close releases idle connections.
func (m *Modules) Close() { m.http.CloseIdleConnections() }

// Get returns one module identity, with its keys.
func (m *Modules) Get(ctx context.Context, moduleID string) (*Module, error) {
	var out Module
	if err := m.do(ctx, http.MethodGet, m.modulePath(moduleID), nil, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns the device's module identities.
func (m *Modules) List(ctx context.Context) ([]Module, error) {
	var out []Module
	if err := m.do(ctx, http.MethodGet, "/devices/"+url.PathEscape(m.opts.Device.DeviceID)+"/modules", nil, "", &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Create creates a module identity with generated SAS keys and returns it.
func (m *Modules) Create(ctx context.Context, moduleID, managedBy string) (*Module, error) {
	body, err := json.Marshal(map[string]any{
		"moduleId": moduleID, "deviceId": m.opts.Device.DeviceID, "managedBy": managedBy,
		"authentication": map[string]string{"type": "sas"},
	})
	if err != nil {
		return nil, err
	}
	var out Module
	if err := m.do(ctx, http.MethodPut, m.modulePath(moduleID), body, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Delete deletes a module identity whatever its etag.
func (m *Modules) Delete(ctx context.Context, moduleID string) error {
	return m.do(ctx, http.MethodDelete, m.modulePath(moduleID), nil, "*", nil)
}

func (m *Modules) modulePath(moduleID string) string {
	return "/devices/" + url.PathEscape(m.opts.Device.DeviceID) + "/modules/" + url.PathEscape(moduleID)
}

// do performs one call and decodes a 2xx answer into out (when not nil).
func (m *Modules) do(ctx context.Context, method, path string, body []byte, ifMatch string, out any) error {
	u := m.base + path + "?api-version=" + ModulesAPIVersion
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	d := m.opts.Device
	req.Host = d.Hub
	if len(d.Key) > 0 {
		req.Header.Set("Authorization", sas.Sign(Resource(d.Hub, d.DeviceID, ""), d.Key, "", m.opts.Now().Add(moduleTokenTTL)))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s on hub %s: %w", method, path, d.Hub, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxModuleBody))
	if err != nil {
		return fmt.Errorf("%s %s on hub %s: read the answer: %w", method, path, d.Hub, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := hubclient.ParseError(resp.StatusCode, resp.Header, b)
		e.Hub, e.Method, e.Path = d.Hub, method, path
		return &ModuleError{Err: e}
	}
	if out == nil || len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s on hub %s: decode the answer: %w", method, path, d.Hub, err)
	}
	return nil
}

// ModuleError is a refused module call; it matches this package's
// sentinels and those of hubclient.
type ModuleError struct {
	Err *hubclient.Error
}

func (e *ModuleError) Error() string { return e.Err.Error() }

// Unwrap returns the hub's answer.
func (e *ModuleError) Unwrap() error { return e.Err }

// Is matches ErrModuleNotFound, ErrModuleExists and ErrDeviceRefused.
func (e *ModuleError) Is(target error) bool {
	switch target {
	case ErrModuleNotFound:
		return e.Err.Status == http.StatusNotFound && strings.EqualFold(e.Err.Code, "ModuleNotFound")
	case ErrModuleExists:
		return e.Err.Status == http.StatusConflict
	case ErrDeviceRefused:
		return e.Err.Status == http.StatusUnauthorized || e.Err.Status == http.StatusForbidden || errors.Is(e.Err, hubclient.ErrNotFound)
	}
	return false
}
