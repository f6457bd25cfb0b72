package memstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/query"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
)

func put(t *testing.T, st *memstore.Store, kind store.Kind, id, grp, doc string) {
	t.Helper()
	if _, err := st.Put(context.Background(), store.Record{Kind: kind, ID: id, Group: grp, Doc: json.RawMessage(doc)}, store.Cond{}); err != nil {
		t.Fatalf("put %s %s: %v", kind, id, err)
	}
}

// TestQueryTwinsDocuments covers the document assembly from raw records:
// defaults for missing sections, the device join, the hub filter and the
// ID order.
func TestQueryTwinsDocuments(t *testing.T) {
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	const hub = "hub.example"
	put(t, st, store.KindDevice, hub+"/b", hub, `{"deviceId":"b","status":"enabled","authentication":{"type":"sas"},"parentScopes":null}`)
	put(t, st, store.KindTwin, hub+"/b", hub, `{"deviceId":"b","version":4,"tags":null,"properties":{"reported":{"x":1}}}`)
	put(t, st, store.KindDevice, hub+"/a", hub, `{"deviceId":"a","status":"disabled","parentScopes":["p"],"capabilities":{"iotEdge":true}}`)
	put(t, st, store.KindTwin, hub+"/a", hub, `{"deviceId":"a","version":1}`)
	put(t, st, store.KindTwin, hub+"/orphan", hub, `{"deviceId":"orphan","version":1}`)
	put(t, st, store.KindDevice, "other/a", "other", `{"deviceId":"a"}`)
	put(t, st, store.KindTwin, "other/a", "other", `{"deviceId":"a","version":1}`)

	for _, tc := range []struct {
		name, query string
		want        []any
	}{
		{"defaults", "SELECT deviceId, tags, properties, parentScopes, modelId, status, capabilities FROM devices", []any{
			map[string]any{"deviceId": "a", "tags": map[string]any{}, "properties": map[string]any{"desired": map[string]any{}, "reported": map[string]any{}},
				"parentScopes": []any{"p"}, "modelId": "", "status": "disabled", "capabilities": map[string]any{"iotEdge": true}},
			map[string]any{"deviceId": "b", "tags": nil, "properties": map[string]any{"desired": map[string]any{}, "reported": map[string]any{"x": 1.0}},
				"parentScopes": []any{}, "modelId": "", "status": "enabled", "capabilities": nil},
		}},
		{"missing source property is null", "SELECT deviceId FROM devices WHERE IS_NULL(connectionState) AND IS_DEFINED(statusReason)",
			[]any{map[string]any{"deviceId": "a"}, map[string]any{"deviceId": "b"}}},
		{"authentication type", "SELECT deviceId FROM devices WHERE authenticationType = 'sas'", []any{map[string]any{"deviceId": "b"}}},
		{"count excludes orphans and other hubs", "SELECT COUNT() AS n FROM devices", []any{map[string]any{"n": 2.0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := query.Parse(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			items, err := st.QueryTwins(t.Context(), q, "HUB.example", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]any, 0, len(items))
			for _, it := range items {
				var v any
				if err := json.Unmarshal(it, &v); err != nil {
					t.Fatalf("item %s: %v", it, err)
				}
				got = append(got, v)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
		})
	}
}

// TestQueryModuleTwinsDocuments covers module twin documents from raw
// records: the module and device joins, the device generation check, the
// hub filter, defaults and configurations.
func TestQueryModuleTwinsDocuments(t *testing.T) {
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	const hub = "hub.example"
	put(t, st, store.KindDevice, hub+"/d", hub, `{"deviceId":"d","generationId":"g2","status":"disabled","statusUpdatedTime":"2026-01-01T00:00:00Z"}`)
	put(t, st, store.KindModule, hub+"/d/m1", hub+"/d", `{"moduleId":"m1","deviceGenerationId":"g2","connectionState":"Connected","authentication":{"type":"selfSigned"}}`)
	put(t, st, store.KindModuleTwin, hub+"/d/m1", hub+"/d", `{"deviceId":"d","moduleId":"m1","version":3,"configurations":{"c":{"status":"Applied"}}}`)
	put(t, st, store.KindModule, hub+"/d/$edgeHub", hub+"/d", `{"moduleId":"$edgeHub","deviceGenerationId":"g2"}`)
	put(t, st, store.KindModuleTwin, hub+"/d/$edgeHub", hub+"/d", `{"deviceId":"d","moduleId":"$edgeHub","version":1,"tags":{"a":1},"configurations":null}`)
	// a module of an earlier device d, a twin without a module, another hub's module
	put(t, st, store.KindModule, hub+"/d/stale", hub+"/d", `{"moduleId":"stale","deviceGenerationId":"g1"}`)
	put(t, st, store.KindModuleTwin, hub+"/d/stale", hub+"/d", `{"deviceId":"d","moduleId":"stale","version":1}`)
	put(t, st, store.KindModuleTwin, hub+"/d/orphan", hub+"/d", `{"deviceId":"d","moduleId":"orphan","version":1}`)
	put(t, st, store.KindDevice, "other/d", "other", `{"deviceId":"d","generationId":"g2"}`)
	put(t, st, store.KindModule, "other/d/m1", "other/d", `{"moduleId":"m1","deviceGenerationId":"g2"}`)
	put(t, st, store.KindModuleTwin, "other/d/m1", "other/d", `{"deviceId":"d","moduleId":"m1","version":1}`)

	q, err := query.Parse("SELECT moduleId, status, statusUpdateTime, connectionState, authenticationType, tags, properties, configurations FROM devices.modules")
	if err != nil {
		t.Fatal(err)
	}
	items, err := st.QueryTwins(t.Context(), q, "HUB.example", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]any, 0, len(items))
	for _, it := range items {
		var v any
		if err := json.Unmarshal(it, &v); err != nil {
			t.Fatalf("item %s: %v", it, err)
		}
		got = append(got, v)
	}
	empty := map[string]any{"desired": map[string]any{}, "reported": map[string]any{}}
	want := []any{
		map[string]any{"moduleId": "$edgeHub", "status": "disabled", "statusUpdateTime": "2026-01-01T00:00:00Z", "connectionState": nil,
			"authenticationType": nil, "tags": map[string]any{"a": 1.0}, "properties": empty},
		map[string]any{"moduleId": "m1", "status": "disabled", "statusUpdateTime": "2026-01-01T00:00:00Z", "connectionState": "Connected",
			"authenticationType": "selfSigned", "tags": map[string]any{}, "properties": empty,
			"configurations": map[string]any{"c": map[string]any{"status": "Applied"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("items (-want +got):\n%s", diff)
	}
}

func TestQueryTwinsFailures(t *testing.T) {
	q, err := query.Parse("SELECT * FROM devices")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, st *memstore.Store) context.Context
		target error
		text   string
	}{
		{"canceled", func(t *testing.T, _ *memstore.Store) context.Context {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx
		}, context.Canceled, ""},
		{"closed", func(t *testing.T, st *memstore.Store) context.Context {
			st.Close()
			return t.Context()
		}, store.ErrClosed, ""},
		{"corrupt device document", func(t *testing.T, st *memstore.Store) context.Context {
			put(t, st, store.KindDevice, "h/x", "h", `[1]`)
			put(t, st, store.KindTwin, "h/x", "h", `{"deviceId":"x"}`)
			return t.Context()
		}, nil, "decode device document h/x"},
		{"null twin document", func(t *testing.T, st *memstore.Store) context.Context {
			put(t, st, store.KindDevice, "h/x", "h", `{}`)
			put(t, st, store.KindTwin, "h/x", "h", `null`)
			return t.Context()
		}, nil, "decode twin document h/x: document is null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := memstore.New(0)
			t.Cleanup(func() { st.Close() })
			ctx := tc.setup(t, st)
			_, err := st.QueryTwins(ctx, q, "h", 0, 0)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("error %v, want %v", err, tc.target)
			}
			if tc.text != "" && !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q, want it to mention %q", err, tc.text)
			}
		})
	}
}
