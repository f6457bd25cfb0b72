package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/muster-iot/muster/internal/query"
)

// TwinQuerier is implemented by backends that can run an IoT Hub query
// (`SELECT … FROM devices …`) over the device twins of one hub themselves,
// inside the database rather than by loading every twin. It is optional:
// callers type-assert a Store to it.
//
// The documents queried are the service-side twins ([TwinDocument]): the
// twin record of kind KindTwin joined with the device record of kind
// KindDevice that has the same ID, both of group lower(hub). Twins without a
// device are left out. Rows are ordered by record ID (byte order), which is
// the order TOP and paging follow.
type TwinQuerier interface {
	// QueryTwins runs q over the twins of hub and returns the result items
	// q.Run would return, without the first offset items and at most limit
	// of them (0: no limit beyond TOP). Only FROM devices is supported; any
	// other collection gives an error wrapping query.ErrUnsupported.
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
// twin document: deviceId, version, tags (missing: {}) and properties
// (desired and reported, each missing: {}). etag and deviceEtag are the
// records' etags, modelId is "". A property missing from its source
// document is null.
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
	return map[string]any{
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
	}, nil
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
