// Package registry owns a hub's identity registry: device identities with
// their credentials, status and capabilities, and their twins' stored
// documents. A Hub is one in-process IoT hub; it is also the provisioning
// service's default linked hub (it implements provision.Hub).
package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/store"
)

// ErrNotFound means the device does not exist in this hub.
var ErrNotFound = errors.New("registry: device not found")

// Device is a device identity in the hub's Device JSON shape.
type Device struct {
	DeviceID                   string         `json:"deviceId"`
	GenerationID               string         `json:"generationId"`
	ETag                       string         `json:"etag"`
	ConnectionState            string         `json:"connectionState"`
	Status                     string         `json:"status"`
	StatusReason               *string        `json:"statusReason"`
	ConnectionStateUpdatedTime time.Time      `json:"connectionStateUpdatedTime"`
	StatusUpdatedTime          time.Time      `json:"statusUpdatedTime"`
	LastActivityTime           time.Time      `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int            `json:"cloudToDeviceMessageCount"`
	Authentication             Authentication `json:"authentication"`
	Capabilities               Capabilities   `json:"capabilities"`
	DeviceScope                string         `json:"deviceScope"`
	ParentScopes               []string       `json:"parentScopes"`
	// ProvisionedBy records the DPS registration that created the identity.
	ProvisionedBy *Provenance `json:"provisionedBy,omitempty"`
}

// Provenance says which registration created a device.
type Provenance struct {
	RegistrationID    string `json:"registrationId"`
	EnrollmentGroupID string `json:"enrollmentGroupId,omitempty"`
}

// Authentication is a device's credential.
type Authentication struct {
	SymmetricKey   *SymmetricKey  `json:"symmetricKey,omitempty"`
	X509Thumbprint X509Thumbprint `json:"x509Thumbprint"`
	Type           string         `json:"type"`
}

// SymmetricKey holds a device's base64 keys.
type SymmetricKey struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// X509Thumbprint holds a self-signed device's certificate thumbprints.
type X509Thumbprint struct {
	PrimaryThumbprint   *string `json:"primaryThumbprint"`
	SecondaryThumbprint *string `json:"secondaryThumbprint"`
}

// Capabilities of a device.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// Twin is a device twin's stored document.
type Twin struct {
	DeviceID   string          `json:"deviceId"`
	ETag       string          `json:"etag"`
	Version    int64           `json:"version"`
	Tags       json.RawMessage `json:"tags"`
	Properties TwinProperties  `json:"properties"`
}

// TwinProperties are a twin's desired and reported properties.
type TwinProperties struct {
	Desired  json.RawMessage `json:"desired"`
	Reported json.RawMessage `json:"reported"`
}

// Hub is one in-process hub's registry.
type Hub struct {
	host string
	docs store.Docs
	now  func() time.Time
}

// New returns the registry of the hub named host.
func New(host string, docs store.Docs, now func() time.Time) *Hub {
	if now == nil {
		now = time.Now
	}
	return &Hub{host: host, docs: docs, now: now}
}

// HostName is the hub's host name.
func (h *Hub) HostName() string { return h.host }

func (h *Hub) key(deviceID string) string { return strings.ToLower(h.host) + "/" + deviceID }

// GetDevice returns a device identity.
func (h *Hub) GetDevice(ctx context.Context, deviceID string) (*Device, error) {
	rec, err := h.docs.Get(ctx, store.KindDevice, h.key(deviceID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, deviceID)
	}
	if err != nil {
		return nil, err
	}
	var d Device
	if err := json.Unmarshal(rec.Doc, &d); err != nil {
		return nil, fmt.Errorf("decode device %s: %w", deviceID, err)
	}
	d.ETag = rec.ETag
	return &d, nil
}

// GetTwin returns a device's twin.
func (h *Hub) GetTwin(ctx context.Context, deviceID string) (*Twin, error) {
	rec, err := h.docs.Get(ctx, store.KindTwin, h.key(deviceID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, deviceID)
	}
	if err != nil {
		return nil, err
	}
	var t Twin
	if err := json.Unmarshal(rec.Doc, &t); err != nil {
		return nil, fmt.Errorf("decode twin %s: %w", deviceID, err)
	}
	t.ETag = rec.ETag
	return &t, nil
}

// ListDevices lists devices in ID order, after a continuation ID.
func (h *Hub) ListDevices(ctx context.Context, after string, limit int) ([]*Device, error) {
	if after != "" {
		after = h.key(after)
	}
	recs, err := h.docs.List(ctx, store.KindDevice, store.ListOptions{Group: strings.ToLower(h.host), After: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]*Device, 0, len(recs))
	for _, r := range recs {
		var d Device
		if err := json.Unmarshal(r.Doc, &d); err != nil {
			return nil, fmt.Errorf("decode device %s: %w", r.ID, err)
		}
		d.ETag = r.ETag
		out = append(out, &d)
	}
	return out, nil
}

func generationID() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1e17))
	return fmt.Sprintf("6%017d", n)
}

func objectOrEmpty(raw json.RawMessage) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return json.RawMessage("{}")
	}
	return raw
}

// withVersion sets "$version" in a property collection.
func withVersion(raw json.RawMessage, v int64) (json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(objectOrEmpty(raw), &m); err != nil {
		return nil, err
	}
	delete(m, "$metadata")
	m["$version"] = json.RawMessage(fmt.Sprint(v))
	return json.Marshal(m)
}

// ProvisionDevice creates or updates a device identity for the provisioning
// service (provision.Hub).
func (h *Hub) ProvisionDevice(ctx context.Context, spec provision.DeviceSpec) error {
	now := h.now().UTC()
	existing, err := h.GetDevice(ctx, spec.DeviceID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	d := existing
	if d == nil {
		d = &Device{DeviceID: spec.DeviceID, GenerationID: generationID(), ConnectionState: "Disconnected",
			Status: "enabled", StatusUpdatedTime: now, ParentScopes: []string{}}
	}
	d.Authentication = Authentication{Type: spec.Auth.Type}
	switch spec.Auth.Type {
	case provision.AuthSAS:
		d.Authentication.SymmetricKey = &SymmetricKey{PrimaryKey: spec.Auth.PrimaryKey, SecondaryKey: spec.Auth.SecondaryKey}
	case provision.AuthSelfSigned:
		p, s := spec.Auth.PrimaryThumbprint, spec.Auth.SecondaryThumbprint
		d.Authentication.X509Thumbprint.PrimaryThumbprint = &p
		if s != "" {
			d.Authentication.X509Thumbprint.SecondaryThumbprint = &s
		}
	}
	d.Capabilities.IoTEdge = spec.IoTEdge
	if spec.IoTEdge {
		d.DeviceScope = "ms-azure-iot-edge://" + d.DeviceID + "-" + d.GenerationID
	}
	d.ProvisionedBy = &Provenance{RegistrationID: spec.RegistrationID, EnrollmentGroupID: spec.EnrollmentGroupID}
	d.ETag = ""
	ddoc, err := json.Marshal(d)
	if err != nil {
		return err
	}
	writes := []store.Write{{Record: store.Record{Kind: store.KindDevice, ID: h.key(d.DeviceID), Group: strings.ToLower(h.host), Doc: ddoc}}}
	if existing == nil || spec.ReplaceTwin {
		t := &Twin{DeviceID: d.DeviceID, Version: 1, Properties: TwinProperties{Reported: json.RawMessage(`{"$version":1}`)}}
		var tags, desired json.RawMessage
		if spec.Twin != nil {
			tags, desired = spec.Twin.Tags, spec.Twin.Desired
		}
		if existing != nil {
			if old, err := h.GetTwin(ctx, d.DeviceID); err == nil {
				t.Version = old.Version + 1
				t.Properties.Reported = old.Properties.Reported
			}
		}
		t.Tags = objectOrEmpty(tags)
		if t.Properties.Desired, err = withVersion(desired, t.Version); err != nil {
			return fmt.Errorf("initial desired properties: %w", err)
		}
		tdoc, err := json.Marshal(t)
		if err != nil {
			return err
		}
		writes = append(writes, store.Write{Record: store.Record{Kind: store.KindTwin, ID: h.key(d.DeviceID), Group: strings.ToLower(h.host), Doc: tdoc}})
	}
	if _, err := h.docs.Apply(ctx, writes); err != nil {
		return fmt.Errorf("store device %s: %w", d.DeviceID, err)
	}
	return nil
}

// DeviceTwin returns the tags and desired properties for migration.
func (h *Hub) DeviceTwin(ctx context.Context, deviceID string) (*provision.TwinState, error) {
	t, err := h.GetTwin(ctx, deviceID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	desired := map[string]json.RawMessage{}
	if err := json.Unmarshal(objectOrEmpty(t.Properties.Desired), &desired); err != nil {
		return nil, err
	}
	delete(desired, "$version")
	delete(desired, "$metadata")
	draw, _ := json.Marshal(desired)
	return &provision.TwinState{Tags: t.Tags, Desired: draw}, nil
}

// DeleteDevice removes a device and its twin.
func (h *Hub) DeleteDevice(ctx context.Context, deviceID string) error {
	for _, k := range []store.Kind{store.KindTwin, store.KindDevice} {
		if err := h.docs.Delete(ctx, k, h.key(deviceID), ""); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete device %s: %w", deviceID, err)
		}
	}
	return nil
}

var _ provision.Hub = (*Hub)(nil)
