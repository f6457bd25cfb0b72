package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/muster-iot/muster/internal/query"
)

// The kinds of module identities and module twins (package registry's
// records), which module twin queries join.
const (
	KindModule     Kind = "module"
	KindModuleTwin Kind = "moduleTwin"
)

// TwinQuerier is implemented by backends that can run an IoT Hub query
// (`SELECT … FROM devices …` or `… FROM devices.modules …`) over the twins
// of one hub themselves, inside the database rather than by loading every
// twin. It is optional: callers type-assert a Store to it.
//
// FROM devices queries the service-side device twins ([TwinDocument]): the
// twin record of kind KindTwin joined with the device record of kind
// KindDevice that has the same ID, both of group lower(hub). Twins without
// a device are left out.
//
// FROM devices.modules queries the module twins ([ModuleTwinDocument]):
// the record of kind KindModuleTwin joined with the module record of kind
// KindModule that has the same ID and with the device record whose ID is
// the module twin's group (lower(hub)+"/"+deviceId) and whose group is
// lower(hub). Module twins without a module or device are left out, and so
// are those whose module record belongs to an earlier device of the same
// ID (its deviceGenerationId is not the device's generationId).
//
// Rows are ordered by record ID (byte order), which is the order TOP and
// paging follow.
type TwinQuerier interface {
	// QueryTwins runs q over the twins of hub and returns the result items
	// q.Run would return, without the first offset items and at most limit
	// of them (0: no limit beyond TOP). FROM devices and devices.modules
	// are supported; any other collection gives an error wrapping
	// query.ErrUnsupported.
	QueryTwins(ctx context.Context, q *query.Query, hub string, offset, limit int) ([]json.RawMessage, error)
}

// TwinDocument assembles the service-side twin document (hub-edge-protocol
// §4.4, "Twin JSON (service side)") that twin queries run over from the
// stored device and twin records of one device. It is the reference every
// TwinQuerier follows: SQL backends build the same document in SQL.
//
// Properties copied from the device document: status, statusReason,
// statusUpdateTime (the device's statusUpdatedTime), connectionState,
// lastActivityTime, cloudToDeviceMessageCount, authenticationType
// (authentication.type), x509Thumbprint (authentication.x509Thumbprint),
// capabilities, deviceScope, parentScopes (missing or null: []). From the
// twin document: deviceId, version, tags (missing: {}), properties
// (desired and reported, each missing: {}) and configurations (left out
// when the twin has none). etag and deviceEtag are the records' etags,
// modelId is "". A property missing from its source document is null.
func TwinDocument(device, twin Record) (map[string]any, error) {
	var d, t map[string]any
	if err := unmarshalObject(device.Doc, &d); err != nil {
		return nil, fmt.Errorf("decode device document %s: %w", device.ID, err)
	}
	if err := unmarshalObject(twin.Doc, &t); err != nil {
		return nil, fmt.Errorf("decode twin document %s: %w", twin.ID, err)
	}
	auth, _ := d["authentication"].(map[string]any)
	props, _ := t["properties"].(map[string]any)
	parentScopes, ok := d["parentScopes"]
	if !ok || parentScopes == nil {
		parentScopes = []any{}
	}
	doc := map[string]any{
		"deviceId":                  t["deviceId"],
		"etag":                      twin.ETag,
		"deviceEtag":                device.ETag,
		"status":                    d["status"],
		"statusReason":              d["statusReason"],
		"statusUpdateTime":          d["statusUpdatedTime"],
		"connectionState":           d["connectionState"],
		"lastActivityTime":          d["lastActivityTime"],
		"cloudToDeviceMessageCount": d["cloudToDeviceMessageCount"],
		"authenticationType":        auth["type"],
		"x509Thumbprint":            auth["x509Thumbprint"],
		"modelId":                   "",
		"version":                   t["version"],
		"tags":                      orEmptyObject(t, "tags"),
		"properties": map[string]any{
			"desired":  orEmptyObject(props, "desired"),
			"reported": orEmptyObject(props, "reported"),
		},
		"capabilities": d["capabilities"],
		"deviceScope":  d["deviceScope"],
		"parentScopes": parentScopes,
	}
	copyConfigurations(doc, t)
	return doc, nil
}

// ModuleTwinDocument assembles the module twin document (hub-edge-protocol
// §4.4 with moduleId, §4.5 "module twin rows") that FROM devices.modules
// queries run over, from the stored device, module and module twin
// records. It is the reference every TwinQuerier follows.
//
// From the device document: status, statusReason, statusUpdateTime (the
// device's statusUpdatedTime). From the module document: connectionState,
// lastActivityTime, cloudToDeviceMessageCount, authenticationType
// (authentication.type), x509Thumbprint (authentication.x509Thumbprint).
// From the module twin document: deviceId, moduleId, version, tags
// (missing: {}), properties (desired and reported, each missing: {}) and
// configurations (left out when the twin has none). etag is the module
// twin record's etag, deviceEtag the device record's, modelId is "". A
// property missing from its source document is null.
func ModuleTwinDocument(device, module, twin Record) (map[string]any, error) {
	var d, m, t map[string]any
	for _, src := range []struct {
		what string
		rec  Record
		out  *map[string]any
	}{{"device", device, &d}, {"module", module, &m}, {"module twin", twin, &t}} {
		if err := unmarshalObject(src.rec.Doc, src.out); err != nil {
			return nil, fmt.Errorf("decode %s document %s: %w", src.what, src.rec.ID, err)
		}
	}
	auth, _ := m["authentication"].(map[string]any)
	props, _ := t["properties"].(map[string]any)
	doc := map[string]any{
		"deviceId":                  t["deviceId"],
		"moduleId":                  t["moduleId"],
		"etag":                      twin.ETag,
		"deviceEtag":                device.ETag,
		"status":                    d["status"],
		"statusReason":              d["statusReason"],
		"statusUpdateTime":          d["statusUpdatedTime"],
		"connectionState":           m["connectionState"],
		"lastActivityTime":          m["lastActivityTime"],
		"cloudToDeviceMessageCount": m["cloudToDeviceMessageCount"],
		"authenticationType":        auth["type"],
		"x509Thumbprint":            auth["x509Thumbprint"],
		"modelId":                   "",
		"version":                   t["version"],
		"tags":                      orEmptyObject(t, "tags"),
		"properties": map[string]any{
			"desired":  orEmptyObject(props, "desired"),
			"reported": orEmptyObject(props, "reported"),
		},
	}
	copyConfigurations(doc, t)
	return doc, nil
}

// CurrentModule reports whether a module document belongs to the device
// document's generation (its deviceGenerationId is the device's
// generationId); a module left behind by an earlier device of the same ID
// is not current.
func CurrentModule(device, module Record) (bool, error) {
	var d, m struct {
		GenerationID       string `json:"generationId"`
		DeviceGenerationID string `json:"deviceGenerationId"`
	}
	if err := json.Unmarshal(device.Doc, &d); err != nil {
		return false, fmt.Errorf("decode device document %s: %w", device.ID, err)
	}
	if err := json.Unmarshal(module.Doc, &m); err != nil {
		return false, fmt.Errorf("decode module document %s: %w", module.ID, err)
	}
	return m.DeviceGenerationID == d.GenerationID, nil
}

// copyConfigurations copies the twin document's configurations into doc,
// unless the twin has none (absent or null).
func copyConfigurations(doc, twin map[string]any) {
	if c, ok := twin["configurations"]; ok && c != nil {
		doc["configurations"] = c
	}
}

// unmarshalObject decodes a JSON object, keeping numbers as json.Number so
// that integers beyond 2^53 keep their digits; null, a non-object or
// trailing data is an error.
func unmarshalObject(doc json.RawMessage, out *map[string]any) error {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("document has data after its JSON value")
	}
	if *out == nil {
		return errors.New("document is null, not a JSON object")
	}
	return nil
}

// orEmptyObject is m[k], or an empty object when m has no member k (a
// member that is null stays null).
func orEmptyObject(m map[string]any, k string) any {
	v, ok := m[k]
	if !ok {
		return map[string]any{}
	}
	return v
}
