package twin

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Twin is a device or module twin in the IoT Hub service JSON shape
// (GET /twins/{id}, GET /twins/{id}/modules/{mid}).
//
// The identity fields (status, connection state, authentication, scopes)
// mirror the device or module identity; the registry fills them. The
// device-only fields (Capabilities, DeviceScope, ParentScopes) are encoded
// when set, which New does for device twins only.
type Twin struct {
	DeviceID string
	// ModuleID is empty for a device twin.
	ModuleID string
	// ETag is the twin's etag; every write sets it to ETag(Version).
	ETag string
	// DeviceETag is the etag of the device identity.
	DeviceETag                string
	Status                    string
	StatusReason              *string
	StatusUpdateTime          time.Time
	ConnectionState           string
	LastActivityTime          time.Time
	CloudToDeviceMessageCount int64
	AuthenticationType        string
	X509Thumbprint            *X509Thumbprint
	ModelID                   string
	// Version is incremented by every write of the twin.
	Version    int64
	Tags       Object
	Properties Properties
	// Capabilities, DeviceScope and ParentScopes appear on device twins only.
	Capabilities *Capabilities
	DeviceScope  *string
	// ParentScopes is encoded when non-nil (an empty slice gives []).
	ParentScopes []string
	// Configurations maps configuration IDs to their status for this twin;
	// it is encoded only when not empty.
	Configurations map[string]ConfigurationStatus
}

// Properties are a twin's desired and reported properties.
type Properties struct {
	Desired  Collection `json:"desired"`
	Reported Collection `json:"reported"`
}

// Collection is a desired or reported properties section: the members, the
// $metadata tree and the $version.
type Collection struct {
	// Values are the members, without $metadata and $version.
	Values Object
	// Metadata is the $metadata tree; nil when the section has none.
	Metadata *Metadata
	// Version is the section's $version.
	Version int64
}

// X509Thumbprint holds a twin's certificate thumbprints (null when unset).
type X509Thumbprint struct {
	PrimaryThumbprint   *string `json:"primaryThumbprint"`
	SecondaryThumbprint *string `json:"secondaryThumbprint"`
}

// Capabilities are a device's capabilities.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// ConfigurationStatus is a configuration's status on a twin.
type ConfigurationStatus struct {
	// Status is "Applied" or "Targeted".
	Status string `json:"status"`
}

// wire is the service JSON of a Twin, in Azure's member order.
type wire struct {
	DeviceID                  string                         `json:"deviceId"`
	ModuleID                  string                         `json:"moduleId,omitempty"`
	ETag                      string                         `json:"etag"`
	DeviceETag                string                         `json:"deviceEtag,omitempty"`
	Status                    string                         `json:"status,omitempty"`
	StatusReason              *string                        `json:"statusReason"`
	StatusUpdateTime          time.Time                      `json:"statusUpdateTime"`
	ConnectionState           string                         `json:"connectionState,omitempty"`
	LastActivityTime          time.Time                      `json:"lastActivityTime"`
	CloudToDeviceMessageCount int64                          `json:"cloudToDeviceMessageCount"`
	AuthenticationType        string                         `json:"authenticationType,omitempty"`
	X509Thumbprint            *X509Thumbprint                `json:"x509Thumbprint,omitempty"`
	ModelID                   string                         `json:"modelId"`
	Version                   int64                          `json:"version"`
	Tags                      Object                         `json:"tags"`
	Properties                Properties                     `json:"properties"`
	Capabilities              *Capabilities                  `json:"capabilities,omitempty"`
	DeviceScope               *string                        `json:"deviceScope,omitempty"`
	ParentScopes              *[]string                      `json:"parentScopes,omitempty"`
	Configurations            map[string]ConfigurationStatus `json:"configurations,omitempty"`
}

// MarshalJSON encodes the service view of the twin.
func (t Twin) MarshalJSON() ([]byte, error) {
	w := wire{
		DeviceID: t.DeviceID, ModuleID: t.ModuleID, ETag: t.ETag, DeviceETag: t.DeviceETag,
		Status: t.Status, StatusReason: t.StatusReason, StatusUpdateTime: t.StatusUpdateTime,
		ConnectionState: t.ConnectionState, LastActivityTime: t.LastActivityTime,
		CloudToDeviceMessageCount: t.CloudToDeviceMessageCount, AuthenticationType: t.AuthenticationType,
		X509Thumbprint: t.X509Thumbprint, ModelID: t.ModelID, Version: t.Version, Tags: t.Tags,
		Properties: t.Properties, Capabilities: t.Capabilities, DeviceScope: t.DeviceScope,
		Configurations: t.Configurations,
	}
	if t.ParentScopes != nil {
		w.ParentScopes = &t.ParentScopes
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes the service view of a twin.
func (t *Twin) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("decode twin: %w", err)
	}
	*t = Twin{
		DeviceID: w.DeviceID, ModuleID: w.ModuleID, ETag: w.ETag, DeviceETag: w.DeviceETag,
		Status: w.Status, StatusReason: w.StatusReason, StatusUpdateTime: w.StatusUpdateTime,
		ConnectionState: w.ConnectionState, LastActivityTime: w.LastActivityTime,
		CloudToDeviceMessageCount: w.CloudToDeviceMessageCount, AuthenticationType: w.AuthenticationType,
		X509Thumbprint: w.X509Thumbprint, ModelID: w.ModelID, Version: w.Version, Tags: w.Tags,
		Properties: w.Properties, Capabilities: w.Capabilities, DeviceScope: w.DeviceScope,
		Configurations: w.Configurations,
	}
	if w.ParentScopes != nil {
		t.ParentScopes = *w.ParentScopes
		if t.ParentScopes == nil {
			t.ParentScopes = []string{}
		}
	}
	return nil
}

// MarshalJSON encodes the section: its members sorted by name, then
// "$metadata" (when present) and "$version".
func (c Collection) MarshalJSON() ([]byte, error) {
	for k := range c.Values {
		if strings.HasPrefix(k, "$") {
			return nil, fmt.Errorf("encode properties: member %q is reserved", k)
		}
	}
	b, err := Object(c.Values).MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode properties: %w", err)
	}
	if c.Metadata != nil {
		mb, err := c.Metadata.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b = appendMember(b, keyMetadata, mb)
	}
	return appendMember(b, keyVersion, []byte(strconv.FormatInt(c.Version, 10))), nil
}

// UnmarshalJSON decodes a section; "$metadata" and "$version" are taken out
// of the members, any other '$' key is an error.
func (c *Collection) UnmarshalJSON(b []byte) error {
	x, err := decodeValue(b)
	if err != nil {
		return fmt.Errorf("decode properties: %w", err)
	}
	if x == nil {
		*c = Collection{}
		return nil
	}
	m, ok := x.(map[string]any)
	if !ok {
		return fmt.Errorf("decode properties: got %s, want an object", jsonKind(x))
	}
	out := Collection{Values: Object{}}
	for k, v := range m {
		switch {
		case k == keyVersion:
			num, ok := v.(json.Number)
			if !ok {
				return fmt.Errorf("decode properties.$version: got %s, want a number", jsonKind(v))
			}
			if out.Version, err = num.Int64(); err != nil {
				return fmt.Errorf("decode properties.$version: %w", err)
			}
		case k == keyMetadata:
			obj, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("decode $metadata: got %s, want an object", jsonKind(v))
			}
			if out.Metadata, err = metadataFromTree(obj, keyMetadata); err != nil {
				return err
			}
		case strings.HasPrefix(k, "$"):
			return fmt.Errorf("decode properties: unknown system key %q", k)
		default:
			out.Values[k] = v
		}
	}
	*c = out
	return nil
}

// ETag returns the twin etag for a twin version: the base64 of the version
// as a big-endian 64-bit integer, the form Azure uses ("AAAAAAAAAAE=" is
// version 1). Because every write increments the version, every write
// changes the etag.
func ETag(version int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(version))
	return base64.StdEncoding.EncodeToString(b[:])
}

// New returns the twin of a newly created device (moduleID empty) or module:
// empty tags, desired and reported properties at $version 1 with metadata
// stamped now, twin version 1. A device twin also gets empty capabilities,
// device scope and parent scopes for the registry to fill.
func New(deviceID, moduleID string, now time.Time) *Twin {
	now = now.UTC()
	t := &Twin{
		DeviceID: deviceID,
		ModuleID: moduleID,
		Version:  1,
		ETag:     ETag(1),
		Tags:     Object{},
		Properties: Properties{
			Desired:  Collection{Values: Object{}, Metadata: &Metadata{LastUpdated: now, LastUpdatedVersion: 1}, Version: 1},
			Reported: Collection{Values: Object{}, Metadata: &Metadata{LastUpdated: now}, Version: 1},
		},
	}
	if moduleID == "" {
		scope := ""
		t.Capabilities = &Capabilities{}
		t.DeviceScope = &scope
		t.ParentScopes = []string{}
	}
	return t
}

// Clone returns a deep copy of t.
func (t *Twin) Clone() *Twin {
	c := *t
	c.StatusReason = clonePtr(t.StatusReason)
	if t.X509Thumbprint != nil {
		x := X509Thumbprint{
			PrimaryThumbprint:   clonePtr(t.X509Thumbprint.PrimaryThumbprint),
			SecondaryThumbprint: clonePtr(t.X509Thumbprint.SecondaryThumbprint),
		}
		c.X509Thumbprint = &x
	}
	c.Tags = copyObject(t.Tags)
	c.Properties.Desired = t.Properties.Desired.clone()
	c.Properties.Reported = t.Properties.Reported.clone()
	c.Capabilities = clonePtr(t.Capabilities)
	c.DeviceScope = clonePtr(t.DeviceScope)
	if t.ParentScopes != nil {
		c.ParentScopes = append([]string{}, t.ParentScopes...)
	}
	if t.Configurations != nil {
		c.Configurations = make(map[string]ConfigurationStatus, len(t.Configurations))
		for k, v := range t.Configurations {
			c.Configurations[k] = v
		}
	}
	return &c
}

func (c Collection) clone() Collection {
	return Collection{Values: copyObject(c.Values), Metadata: c.Metadata.clone(), Version: c.Version}
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// DeviceView returns the body of the device-facing twin GET over MQTT
// ($iothub/twin/res/200/?$rid=…): {"desired":{…,"$version":N},
// "reported":{…,"$version":M}} — no tags, no $metadata.
func DeviceView(t *Twin) ([]byte, error) {
	d, err := encodeWithVersion(t.Properties.Desired.Values, t.Properties.Desired.Version)
	if err != nil {
		return nil, fmt.Errorf("encode desired properties: %w", err)
	}
	r, err := encodeWithVersion(t.Properties.Reported.Values, t.Properties.Reported.Version)
	if err != nil {
		return nil, fmt.Errorf("encode reported properties: %w", err)
	}
	var b bytes.Buffer
	b.WriteString(`{"desired":`)
	b.Write(d)
	b.WriteString(`,"reported":`)
	b.Write(r)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// SetConfigurations records the configurations that target the twin and
// their statuses ("Applied" or "Targeted"). It counts as a twin write (the
// version and etag change) only when the map differs from the current one,
// and reports whether it did.
func SetConfigurations(t *Twin, statuses map[string]string) bool {
	same := len(statuses) == len(t.Configurations)
	if same {
		for id, s := range statuses {
			if cur, ok := t.Configurations[id]; !ok || cur.Status != s {
				same = false
				break
			}
		}
	}
	if same {
		return false
	}
	var m map[string]ConfigurationStatus
	if len(statuses) > 0 {
		m = make(map[string]ConfigurationStatus, len(statuses))
		for id, s := range statuses {
			m[id] = ConfigurationStatus{Status: s}
		}
	}
	t.Configurations = m
	bump(t)
	return true
}

// bump records one write of the twin.
func bump(t *Twin) {
	t.Version++
	t.ETag = ETag(t.Version)
}
