// Package registry owns a hub's identity registry: device identities with
// their credentials, status and capabilities, their module identities, and
// their twins' stored documents. A Hub is one in-process IoT hub; it is also the provisioning
// service's default linked hub (it implements provision.Hub).
package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/muster-iot/muster/internal/fastjson"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/twin"
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
	DeviceID string `json:"deviceId"`
	// ModuleID is set on module twins only.
	ModuleID   string          `json:"moduleId,omitempty"`
	ETag       string          `json:"etag"`
	Version    int64           `json:"version"`
	Tags       json.RawMessage `json:"tags"`
	Properties TwinProperties  `json:"properties"`
	// Configurations are the statuses of the automatic configurations that
	// target the twin, by configuration ID (set by SetConfigurations).
	Configurations map[string]ConfigurationStatus `json:"configurations,omitempty"`
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
	d, err := h.findDevice(ctx, deviceID)
	if err == nil && d == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, deviceID)
	}
	return d, err
}

// findDevice returns a device identity, or nil when there is none: the
// first registration of every device looks, and need not build an error.
func (h *Hub) findDevice(ctx context.Context, deviceID string) (*Device, error) {
	rec, err := h.docs.Get(ctx, store.KindDevice, h.key(deviceID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
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

// generationID returns "6" and 17 random decimal digits, uniform over
// 0-99999999999999999 (rejection sampling of 57 random bits, as rand.Int
// does), written without big.Int or fmt.
func generationID() string {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // never fails (crypto/rand.Read crashes the program instead)
		if n := binary.BigEndian.Uint64(b[:]) >> 7; n < 1e17 {
			var s [18]byte
			s[0] = '6'
			for i := len(s) - 1; i > 0; i-- {
				s[i] = byte('0' + n%10)
				n /= 10
			}
			return string(s[:])
		}
	}
}

func objectOrEmpty(raw json.RawMessage) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return json.RawMessage("{}")
	}
	return raw
}

// initialDesired is the desired section of a new twin: the values of raw
// (any "$version" or "$metadata" in it dropped) at $version v, every node
// stamped in $metadata with now and v, as IoT Hub writes a twin.
func initialDesired(raw json.RawMessage, v int64, now time.Time) (json.RawMessage, error) {
	m, err := decodeObject(raw)
	if err != nil {
		return nil, err
	}
	delete(m, "$metadata")
	delete(m, "$version")
	c := twin.StampDesired(nil, m, nil, v, now)
	// json.Marshal(c) is c.MarshalJSON() compacted and HTML-escaped; when
	// that would change nothing, the reflection and the copy are spared.
	if b, err := c.MarshalJSON(); err == nil && fastjson.Verbatim(b) {
		return b, nil
	}
	return json.Marshal(c)
}

// ProvisionDevice creates or updates a device identity for the provisioning
// service (provision.Hub).
func (h *Hub) ProvisionDevice(ctx context.Context, spec provision.DeviceSpec) error {
	writes, err := h.ProvisionWrites(ctx, spec)
	if err != nil {
		return err
	}
	if _, err := h.docs.Apply(ctx, writes); err != nil {
		return fmt.Errorf("store device %s: %w", spec.DeviceID, err)
	}
	return nil
}

// ProvisionWrites returns the store writes that create or update a device
// identity for the provisioning service, without applying them, so the
// provisioning service can commit them together with the registration
// record (provision.WritingHub).
func (h *Hub) ProvisionWrites(ctx context.Context, spec provision.DeviceSpec) ([]store.Write, error) {
	now := h.now().UTC()
	existing, err := h.findDevice(ctx, spec.DeviceID)
	if err != nil {
		return nil, err
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
	ddoc, err := deviceDoc(d)
	if err != nil {
		return nil, err
	}
	writes := []store.Write{{Record: store.Record{Kind: store.KindDevice, ID: h.key(d.DeviceID), Group: strings.ToLower(h.host), Doc: ddoc}}}
	edge, err := h.edgeModuleWrites(ctx, d, existing == nil)
	if err != nil {
		return nil, err
	}
	writes = append(writes, edge...)
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
		if t.Properties.Desired, err = initialDesired(desired, t.Version, h.now()); err != nil {
			return nil, fmt.Errorf("initial desired properties: %w", err)
		}
		tdoc, err := twinDoc(t)
		if err != nil {
			return nil, err
		}
		writes = append(writes, store.Write{Record: store.Record{Kind: store.KindTwin, ID: h.key(d.DeviceID), Group: strings.ToLower(h.host), Doc: tdoc}})
	}
	return writes, nil
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

// DeleteDevice removes a device, its twin and its modules.
func (h *Hub) DeleteDevice(ctx context.Context, deviceID string) error {
	mods, err := h.moduleDeletes(ctx, deviceID)
	if err != nil {
		return fmt.Errorf("delete device %s: %w", deviceID, err)
	}
	for _, w := range mods {
		if err := h.docs.Delete(ctx, w.Record.Kind, w.Record.ID, ""); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete device %s: %w", deviceID, err)
		}
	}
	for _, k := range []store.Kind{store.KindTwin, store.KindDevice} {
		if err := h.docs.Delete(ctx, k, h.key(deviceID), ""); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete device %s: %w", deviceID, err)
		}
	}
	return nil
}

var _ provision.WritingHub = (*Hub)(nil)

// Errors of the service-side registry operations (PutDevice, RemoveDevice,
// PatchTwin, ReplaceTwin). ErrNotFound (above) is shared with them.
var (
	// ErrExists means a create found a device with the same ID.
	ErrExists = errors.New("registry: device already exists")
	// ErrPrecondition means an If-Match etag is not the current one.
	ErrPrecondition = errors.New("registry: etag mismatch")
	// ErrInvalid means a device or twin update is unacceptable (see InvalidError).
	ErrInvalid = errors.New("registry: invalid request")
)

// InvalidError says which field of a device or twin update is unacceptable
// and why. It matches ErrInvalid with errors.Is.
type InvalidError struct {
	// Field is the JSON path of the offending value ("authentication.type").
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// Is reports whether target is ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Device status values.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// AuthNone is the authentication type of a device without credentials.
const AuthNone = "none"

// Limits of the service-side operations (Azure IoT Hub's).
const (
	// MaxDeviceIDLen is the longest device ID.
	MaxDeviceIDLen = 128
	// MaxTwinDepth is how deeply objects and arrays may nest below the root
	// of tags or desired properties.
	MaxTwinDepth = 10
	// MaxTagsBytes and MaxDesiredBytes cap the encoded tags and desired
	// properties of a twin.
	MaxTagsBytes    = 8 << 10
	MaxDesiredBytes = 32 << 10
	// MaxTwinKeyBytes caps the length of a twin property name.
	MaxTwinKeyBytes = 1024
	// MaxTwinStringBytes caps a string value in a twin.
	MaxTwinStringBytes = 4096
	// minKeyBytes and maxKeyBytes bound a device's symmetric keys.
	minKeyBytes = 16
	maxKeyBytes = 64
	// generatedKeyBytes is the size of keys the hub generates (Azure: 32).
	generatedKeyBytes = 32
	// casAttempts bounds retries of a read-modify-write that lost a race
	// and had no caller etag to honour.
	casAttempts = 16
)

// ValidDeviceID reports whether id is a valid device ID: 1 to 128
// characters from A-Z a-z 0-9 and - : . + % _ # * ? ! ( ) , = @ ; $ '.
func ValidDeviceID(id string) bool {
	if id == "" || len(id) > MaxDeviceIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-:.+%_#*?!(),=@;$'", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// PutDevice creates (ifMatch "") or updates (ifMatch "*" or the device's
// etag) a device identity, as the hub service API's PUT /devices/{id} does.
// Only the writable fields of in are used: status, statusReason,
// authentication, capabilities, deviceScope and parentScopes; the rest
// (generationId, connection state, counters, provenance) is the hub's. A
// "sas" device without keys gets generated ones; a missing authentication
// type is "selfSigned" when a thumbprint is given and "sas" otherwise. A
// create also creates the device's empty twin. Errors: ErrExists (create of
// an existing device), ErrNotFound (update of a missing one),
// ErrPrecondition, or an *InvalidError naming the field.
func (h *Hub) PutDevice(ctx context.Context, in *Device, ifMatch string) (*Device, error) {
	if in == nil {
		return nil, invalid("device", "the device document is missing")
	}
	if !ValidDeviceID(in.DeviceID) {
		return nil, invalid("deviceId", "%q is not 1 to %d characters from A-Z a-z 0-9 - : . + %% _ # * ? ! ( ) , = @ ; $ '", in.DeviceID, MaxDeviceIDLen)
	}
	status := strings.ToLower(in.Status)
	switch status {
	case "":
		status = StatusEnabled
	case StatusEnabled, StatusDisabled:
	default:
		return nil, invalid("status", "%q is not %q or %q", in.Status, StatusEnabled, StatusDisabled)
	}
	auth, err := normalizeAuth(in.Authentication)
	if err != nil {
		return nil, err
	}
	if ifMatch == "" {
		return h.createDevice(ctx, in, status, auth)
	}
	for range casAttempts {
		d, err := h.updateDevice(ctx, in, status, auth, ifMatch)
		if errors.Is(err, errLostRace) {
			continue
		}
		return d, err
	}
	return nil, fmt.Errorf("update device %s: %w: it kept changing concurrently", in.DeviceID, ErrPrecondition)
}

// errLostRace means a conditional write found the record changed since it
// was read, and the caller's own precondition ("*") still holds: retry.
var errLostRace = errors.New("registry: concurrent change")

// normalizeAuth validates a device credential, fills a missing type and
// generates missing symmetric keys.
func normalizeAuth(a Authentication) (Authentication, error) {
	tp := a.X509Thumbprint
	hasThumb := (tp.PrimaryThumbprint != nil && *tp.PrimaryThumbprint != "") || (tp.SecondaryThumbprint != nil && *tp.SecondaryThumbprint != "")
	hasKey := a.SymmetricKey != nil && (a.SymmetricKey.PrimaryKey != "" || a.SymmetricKey.SecondaryKey != "")
	if a.Type == "" {
		a.Type = provision.AuthSAS
		if hasThumb {
			a.Type = provision.AuthSelfSigned
		}
	}
	switch a.Type {
	case provision.AuthSAS:
		if hasThumb {
			return a, invalid("authentication.x509Thumbprint", "must be empty for authentication type %q", a.Type)
		}
		keys := SymmetricKey{}
		if a.SymmetricKey != nil {
			keys = *a.SymmetricKey
		}
		for _, k := range []struct {
			field string
			v     *string
		}{{"authentication.symmetricKey.primaryKey", &keys.PrimaryKey}, {"authentication.symmetricKey.secondaryKey", &keys.SecondaryKey}} {
			if *k.v == "" {
				gen, err := generateKey()
				if err != nil {
					return a, err
				}
				*k.v = gen
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(*k.v)
			if err != nil {
				return a, invalid(k.field, "is not standard base64")
			}
			if len(raw) < minKeyBytes || len(raw) > maxKeyBytes {
				return a, invalid(k.field, "key is %d bytes; it must be %d to %d bytes", len(raw), minKeyBytes, maxKeyBytes)
			}
		}
		a.SymmetricKey = &keys
		a.X509Thumbprint = X509Thumbprint{}
	case provision.AuthSelfSigned:
		if hasKey {
			return a, invalid("authentication.symmetricKey", "must be empty for authentication type %q", a.Type)
		}
		if tp.PrimaryThumbprint == nil || *tp.PrimaryThumbprint == "" {
			return a, invalid("authentication.x509Thumbprint.primaryThumbprint", "is required for authentication type %q", a.Type)
		}
		for _, t := range []struct {
			field string
			v     **string
		}{{"authentication.x509Thumbprint.primaryThumbprint", &tp.PrimaryThumbprint}, {"authentication.x509Thumbprint.secondaryThumbprint", &tp.SecondaryThumbprint}} {
			if *t.v == nil || **t.v == "" {
				*t.v = nil
				continue
			}
			if !validThumbprint(**t.v) {
				return a, invalid(t.field, "%q is not a SHA-1 (40) or SHA-256 (64) hex thumbprint", **t.v)
			}
			v := **t.v
			*t.v = &v
		}
		a.SymmetricKey = nil
		a.X509Thumbprint = tp
	case provision.AuthCertificateAuthority, AuthNone:
		if hasKey {
			return a, invalid("authentication.symmetricKey", "must be empty for authentication type %q", a.Type)
		}
		if hasThumb {
			return a, invalid("authentication.x509Thumbprint", "must be empty for authentication type %q", a.Type)
		}
		a.SymmetricKey = nil
		a.X509Thumbprint = X509Thumbprint{}
	default:
		return a, invalid("authentication.type", "%q is not sas, selfSigned, certificateAuthority or none", a.Type)
	}
	return a, nil
}

// validThumbprint accepts 40 or 64 hex digits, ignoring ':' and space separators.
func validThumbprint(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':' || c == ' ':
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			n++
		default:
			return false
		}
	}
	return n == 40 || n == 64
}

func generateKey() (string, error) {
	b := make([]byte, generatedKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate device key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// applyWritable copies the writable fields of in onto d.
func applyWritable(d, in *Device, status string, auth Authentication, now time.Time) {
	if d.Status != status {
		d.StatusUpdatedTime = now
	}
	d.Status = status
	d.StatusReason = in.StatusReason
	d.Authentication = auth
	d.Capabilities = in.Capabilities
	d.DeviceScope = in.DeviceScope
	if d.Capabilities.IoTEdge {
		d.DeviceScope = "ms-azure-iot-edge://" + d.DeviceID + "-" + d.GenerationID
	}
	d.ParentScopes = append([]string{}, in.ParentScopes...)
}

func (h *Hub) deviceRecord(d *Device) (store.Record, error) {
	stored := *d
	stored.ETag = ""
	doc, err := json.Marshal(&stored)
	if err != nil {
		return store.Record{}, fmt.Errorf("encode device %s: %w", d.DeviceID, err)
	}
	return store.Record{Kind: store.KindDevice, ID: h.key(d.DeviceID), Group: strings.ToLower(h.host), Doc: doc}, nil
}

func (h *Hub) createDevice(ctx context.Context, in *Device, status string, auth Authentication) (*Device, error) {
	now := h.now().UTC()
	d := &Device{DeviceID: in.DeviceID, GenerationID: generationID(), ConnectionState: "Disconnected", StatusUpdatedTime: now}
	applyWritable(d, in, status, auth, now)
	drec, err := h.deviceRecord(d)
	if err != nil {
		return nil, err
	}
	t := &Twin{DeviceID: d.DeviceID, Version: 1, Tags: json.RawMessage(`{}`),
		Properties: TwinProperties{Desired: json.RawMessage(`{"$version":1}`), Reported: json.RawMessage(`{"$version":1}`)}}
	tdoc, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode twin %s: %w", d.DeviceID, err)
	}
	edge, err := h.edgeModuleWrites(ctx, d, true)
	if err != nil {
		return nil, err
	}
	recs, err := h.docs.Apply(ctx, append([]store.Write{
		{Record: drec, Cond: store.Cond{IfNoneMatch: true}},
		{Record: store.Record{Kind: store.KindTwin, ID: h.key(d.DeviceID), Group: strings.ToLower(h.host), Doc: tdoc}},
	}, edge...))
	if errors.Is(err, store.ErrExists) {
		return nil, fmt.Errorf("create device %s: %w", d.DeviceID, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("create device %s: %w", d.DeviceID, err)
	}
	d.ETag = recs[0].ETag
	return d, nil
}

func (h *Hub) updateDevice(ctx context.Context, in *Device, status string, auth Authentication, ifMatch string) (*Device, error) {
	d, err := h.GetDevice(ctx, in.DeviceID)
	if err != nil {
		return nil, fmt.Errorf("update device: %w", err)
	}
	if ifMatch != "*" && ifMatch != d.ETag {
		return nil, fmt.Errorf("update device %s: %w: If-Match %q is not the current etag", in.DeviceID, ErrPrecondition, ifMatch)
	}
	applyWritable(d, in, status, auth, h.now().UTC())
	rec, err := h.deviceRecord(d)
	if err != nil {
		return nil, err
	}
	edge, err := h.edgeModuleWrites(ctx, d, false)
	if err != nil {
		return nil, err
	}
	outs, err := h.docs.Apply(ctx, append([]store.Write{{Record: rec, Cond: store.Cond{IfMatch: d.ETag}}}, edge...))
	var we *store.WriteError
	switch {
	case errors.As(err, &we) && we.Index > 0:
		return nil, errLostRace // a system module appeared or changed meanwhile: look again
	case errors.Is(err, store.ErrPrecondition) && ifMatch == "*":
		return nil, errLostRace
	case errors.Is(err, store.ErrPrecondition):
		return nil, fmt.Errorf("update device %s: %w: it changed concurrently", in.DeviceID, ErrPrecondition)
	case err != nil:
		return nil, fmt.Errorf("update device %s: %w", in.DeviceID, err)
	}
	d.ETag = outs[0].ETag
	return d, nil
}

// RemoveDevice deletes a device identity, its twin and its modules, as the hub service
// API's DELETE /devices/{id} does. ifMatch "" or "*" deletes whatever is
// stored; an etag must be the device's current one. Errors: ErrNotFound,
// ErrPrecondition.
func (h *Hub) RemoveDevice(ctx context.Context, deviceID, ifMatch string) error {
	for range casAttempts {
		d, err := h.GetDevice(ctx, deviceID)
		if err != nil {
			return fmt.Errorf("remove device: %w", err)
		}
		if ifMatch != "" && ifMatch != "*" && ifMatch != d.ETag {
			return fmt.Errorf("remove device %s: %w: If-Match %q is not the current etag", deviceID, ErrPrecondition, ifMatch)
		}
		writes := []store.Write{{Record: store.Record{Kind: store.KindDevice, ID: h.key(deviceID)}, Cond: store.Cond{IfMatch: d.ETag}, Delete: true}}
		if _, err := h.docs.Get(ctx, store.KindTwin, h.key(deviceID)); err == nil {
			writes = append(writes, store.Write{Record: store.Record{Kind: store.KindTwin, ID: h.key(deviceID)}, Cond: store.Cond{IfMatch: "*"}, Delete: true})
		} else if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("remove device %s: read twin: %w", deviceID, err)
		}
		mods, err := h.moduleDeletes(ctx, deviceID)
		if err != nil {
			return fmt.Errorf("remove device %s: %w", deviceID, err)
		}
		_, err = h.docs.Apply(ctx, append(writes, mods...))
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrPrecondition) || errors.Is(err, store.ErrNotFound):
			if ifMatch != "" && ifMatch != "*" {
				return fmt.Errorf("remove device %s: %w: it changed concurrently", deviceID, ErrPrecondition)
			}
			continue // changed or deleted meanwhile: look again
		default:
			return fmt.Errorf("remove device %s: %w", deviceID, err)
		}
	}
	return fmt.Errorf("remove device %s: %w: it kept changing concurrently", deviceID, ErrPrecondition)
}

// TwinUpdate is a service-side change to a twin's tags and desired
// properties. A nil (or JSON null) member is left alone.
type TwinUpdate struct {
	Tags    json.RawMessage
	Desired json.RawMessage
}

// PatchTwin merge-patches a twin's tags and desired properties (RFC 7396: an
// object merges key by key, null deletes a key, anything else replaces), as
// the hub service API's PATCH /twins/{id} does. The twin's version goes up
// by one, and desired.$version too when desired was given. ifMatch "" or
// "*" patches whatever is stored; an etag must be the twin's current one.
// Errors: ErrNotFound, ErrPrecondition, *InvalidError.
func (h *Hub) PatchTwin(ctx context.Context, deviceID string, u TwinUpdate, ifMatch string) (*Twin, error) {
	return h.updateTwin(ctx, h.deviceTwinRef(deviceID), u, ifMatch, false)
}

// ReplaceTwin replaces a twin's tags and desired properties wholesale (a
// nil member becomes empty), as PUT /twins/{id} does; reported properties
// are kept. Versions, ifMatch and errors are as for PatchTwin.
func (h *Hub) ReplaceTwin(ctx context.Context, deviceID string, u TwinUpdate, ifMatch string) (*Twin, error) {
	return h.updateTwin(ctx, h.deviceTwinRef(deviceID), u, ifMatch, true)
}

func (h *Hub) updateTwin(ctx context.Context, ref twinRef, u TwinUpdate, ifMatch string, replace bool) (*Twin, error) {
	tags, err := decodeTwinSection("tags", u.Tags)
	if err != nil {
		return nil, err
	}
	desired, err := decodeTwinSection("properties.desired", u.Desired)
	if err != nil {
		return nil, err
	}
	if desired != nil {
		// A twin read back and sent again carries these; they are the hub's.
		delete(desired, "$version")
		delete(desired, "$metadata")
	}
	for _, s := range []struct {
		field string
		m     map[string]any
	}{{"tags", tags}, {"properties.desired", desired}} {
		if err := checkTwinTree(s.field, s.m); err != nil {
			return nil, err
		}
	}
	if !replace && tags == nil && desired == nil {
		t, err := ref.read(ctx)
		if err != nil {
			return nil, fmt.Errorf("patch twin: %w", err)
		}
		if ifMatch != "" && ifMatch != "*" && ifMatch != t.ETag {
			return nil, fmt.Errorf("patch %s: %w: If-Match %q is not the current etag", ref.name, ErrPrecondition, ifMatch)
		}
		return t, nil
	}
	for range casAttempts {
		t, err := h.updateTwinOnce(ctx, ref, tags, desired, ifMatch, replace)
		if errors.Is(err, errLostRace) {
			continue
		}
		return t, err
	}
	return nil, fmt.Errorf("update %s: %w: it kept changing concurrently", ref.name, ErrPrecondition)
}

func (h *Hub) updateTwinOnce(ctx context.Context, ref twinRef, tags, desired map[string]any, ifMatch string, replace bool) (*Twin, error) {
	t, err := ref.read(ctx)
	if err != nil {
		return nil, fmt.Errorf("update twin: %w", err)
	}
	if ifMatch != "" && ifMatch != "*" && ifMatch != t.ETag {
		return nil, fmt.Errorf("update %s: %w: If-Match %q is not the current etag", ref.name, ErrPrecondition, ifMatch)
	}
	curTags, err := decodeObject(t.Tags)
	if err != nil {
		return nil, fmt.Errorf("decode stored tags of %s: %w", ref.name, err)
	}
	curDesired, err := decodeObject(t.Properties.Desired)
	if err != nil {
		return nil, fmt.Errorf("decode stored desired properties of %s: %w", ref.name, err)
	}
	desiredVersion := int64(0)
	if n, ok := curDesired["$version"].(json.Number); ok {
		desiredVersion, _ = n.Int64()
	}
	delete(curDesired, "$version")
	delete(curDesired, "$metadata")
	desiredChanged := desired != nil || replace
	switch {
	case replace:
		curTags, curDesired = orEmpty(tags), orEmpty(desired)
	default:
		if tags != nil {
			curTags = MergePatch(curTags, tags)
		}
		if desired != nil {
			curDesired = MergePatch(curDesired, desired)
		}
	}
	tagsJSON, err := json.Marshal(curTags)
	if err != nil {
		return nil, fmt.Errorf("encode tags of %s: %w", ref.name, err)
	}
	if len(tagsJSON) > MaxTagsBytes {
		return nil, invalid("tags", "the twin's tags would be %d bytes, over the %d-byte limit", len(tagsJSON), MaxTagsBytes)
	}
	desiredJSON := objectOrEmpty(t.Properties.Desired) // unchanged, $metadata and all
	if desiredChanged {
		desiredVersion++
		// The limit counts the values and $version, not $metadata.
		curDesired["$version"] = desiredVersion
		sized, err := json.Marshal(curDesired)
		if err != nil {
			return nil, fmt.Errorf("encode desired properties of %s: %w", ref.name, err)
		}
		if len(sized) > MaxDesiredBytes {
			return nil, invalid("properties.desired", "the twin's desired properties would be %d bytes, over the %d-byte limit", len(sized), MaxDesiredBytes)
		}
		delete(curDesired, "$version")
		// A stored section that does not decode as one (written before
		// $metadata was kept) restarts its metadata at this write.
		var old twin.Collection
		_ = json.Unmarshal(objectOrEmpty(t.Properties.Desired), &old)
		var wrote map[string]any // nil: every node was written
		if !replace {
			wrote = desired
		}
		if desiredJSON, err = json.Marshal(twin.StampDesired(old.Metadata, curDesired, wrote, desiredVersion, h.now())); err != nil {
			return nil, fmt.Errorf("encode desired properties of %s: %w", ref.name, err)
		}
	}
	etag := t.ETag
	t.ETag = ""
	t.Version++
	t.Tags = tagsJSON
	t.Properties.Desired = desiredJSON
	out, err := h.putTwin(ctx, ref, t, etag)
	switch {
	case errors.Is(err, store.ErrPrecondition) && (ifMatch == "" || ifMatch == "*"):
		return nil, errLostRace
	case errors.Is(err, store.ErrPrecondition):
		return nil, fmt.Errorf("update %s: %w: it changed concurrently", ref.name, ErrPrecondition)
	case err != nil:
		return nil, err
	}
	t.ETag = out.ETag
	return t, nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// decodeObject decodes a stored JSON object (null or empty: an empty one),
// keeping numbers exact.
func decodeObject(raw json.RawMessage) (map[string]any, error) {
	m := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(objectOrEmpty(raw)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeTwinSection decodes an update's tags or desired properties: nil for
// absent or null, an error naming field for anything but one JSON object.
func decodeTwinSection(field string, raw json.RawMessage) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, invalid(field, "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, invalid(field, "is not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, invalid(field, "has data after its JSON object")
	}
	return m, nil
}

// checkTwinTree enforces Azure's rules on a twin section (the rules of
// package twin): property names without '.', '$', space or control
// characters and at most MaxTwinKeyBytes; string values of at most
// MaxTwinStringBytes; objects and arrays nested at most MaxTwinDepth below
// the section's root (the value of a top-level key is at depth 1).
func checkTwinTree(path string, m map[string]any) error {
	return checkTwinObject(path, m, 0)
}

func checkTwinObject(path string, m map[string]any, depth int) error {
	for k, v := range m {
		if err := checkTwinKey(path, k); err != nil {
			return err
		}
		if err := checkTwinValue(path+"."+k, v, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func checkTwinValue(path string, v any, depth int) error {
	switch x := v.(type) {
	case map[string]any:
		if depth > MaxTwinDepth {
			return invalid(path, "objects and arrays nest more than %d levels deep", MaxTwinDepth)
		}
		return checkTwinObject(path, x, depth)
	case []any:
		if depth > MaxTwinDepth {
			return invalid(path, "objects and arrays nest more than %d levels deep", MaxTwinDepth)
		}
		for i, e := range x {
			if err := checkTwinValue(fmt.Sprintf("%s[%d]", path, i), e, depth+1); err != nil {
				return err
			}
		}
	case string:
		if len(x) > MaxTwinStringBytes {
			return invalid(path, "string value is %d bytes, over the %d-byte limit", len(x), MaxTwinStringBytes)
		}
	}
	return nil
}

func checkTwinKey(path, k string) error {
	switch {
	case k == "":
		return invalid(path, "has an empty property name")
	case len(k) > MaxTwinKeyBytes:
		return invalid(path, "property name %.32q… is longer than %d bytes", k, MaxTwinKeyBytes)
	case !utf8.ValidString(k):
		return invalid(path, "property name %q is not valid UTF-8", k)
	}
	for _, r := range k {
		if r == '.' || r == '$' || r == ' ' || unicode.IsControl(r) {
			return invalid(path, "property name %q contains %q; '.', '$', space and control characters are not allowed", k, r)
		}
	}
	return nil
}

// MergePatch applies a JSON merge patch (RFC 7396) to target and returns
// the result: keys whose patch value is null are removed, objects merge
// recursively, and any other value replaces the target's. target is
// modified; patch is not (its objects are copied without their nulls).
func MergePatch(target, patch map[string]any) map[string]any {
	if target == nil {
		target = map[string]any{}
	}
	for k, pv := range patch {
		switch p := pv.(type) {
		case nil:
			delete(target, k)
		case map[string]any:
			cur, _ := target[k].(map[string]any)
			target[k] = MergePatch(cur, p)
		default:
			target[k] = pv
		}
	}
	return target
}

// PatchReported merge-patches a twin's reported properties (RFC 7396), as a
// device's $iothub/twin/PATCH/properties/reported/ does, under package
// twin's rules (keys, depth, string and 32 KiB section limits; top-level
// "$version" and "$metadata" in the patch are ignored). The reported
// $version and the twin version each go up by one and the reported
// $metadata is stamped. Errors: ErrNotFound, or an error wrapping
// twin.ErrInvalid or twin.ErrTooLarge that names the offending path.
func (h *Hub) PatchReported(ctx context.Context, deviceID string, patch json.RawMessage) (*Twin, error) {
	return h.patchReported(ctx, h.deviceTwinRef(deviceID), patch)
}

func (h *Hub) patchReported(ctx context.Context, ref twinRef, patch json.RawMessage) (*Twin, error) {
	for range casAttempts {
		t, err := h.patchReportedOnce(ctx, ref, patch)
		if errors.Is(err, errLostRace) {
			continue
		}
		return t, err
	}
	return nil, fmt.Errorf("patch reported properties of %s: %w: it kept changing concurrently", ref.name, ErrPrecondition)
}

func (h *Hub) patchReportedOnce(ctx context.Context, ref twinRef, patch json.RawMessage) (*Twin, error) {
	t, err := ref.read(ctx)
	if err != nil {
		return nil, fmt.Errorf("patch reported properties: %w", err)
	}
	var cur twin.Collection
	if err := json.Unmarshal(objectOrEmpty(t.Properties.Reported), &cur); err != nil {
		return nil, fmt.Errorf("decode stored reported properties of %s: %w", ref.name, err)
	}
	tw := &twin.Twin{DeviceID: t.DeviceID, ModuleID: t.ModuleID, Version: t.Version, Properties: twin.Properties{Reported: cur}}
	if err := twin.PatchReported(tw, patch, h.now()); err != nil {
		return nil, fmt.Errorf("patch reported properties of %s: %w", ref.name, err)
	}
	reported, err := json.Marshal(tw.Properties.Reported)
	if err != nil {
		return nil, fmt.Errorf("encode reported properties of %s: %w", ref.name, err)
	}
	etag := t.ETag
	t.ETag = ""
	t.Version = tw.Version
	t.Properties.Reported = reported
	out, err := h.putTwin(ctx, ref, t, etag)
	switch {
	case errors.Is(err, store.ErrPrecondition):
		return nil, errLostRace
	case err != nil:
		return nil, err
	}
	t.ETag = out.ETag
	return t, nil
}
