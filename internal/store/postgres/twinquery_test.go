package postgres_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/muster-iot/muster/internal/query"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/postgres"
	"github.com/muster-iot/muster/internal/store/postgres/pgtest"
	"github.com/muster-iot/muster/internal/store/twinquerytest"
)

// TestPostgresQueryTwins runs the twin query agreement suite of the SQLite
// backend against PostgreSQL: the same fixture (written through the
// registry) and the same queries, with the in-memory store as the
// reference.
func TestPostgresQueryTwins(t *testing.T) {
	pgtest.BaseDSN(t) // skips here, not in each subtest, without a server
	twinquerytest.Run(t, "postgres", func(t *testing.T) twinquerytest.Store {
		return open(t, pgtest.Schema(t), postgres.Options{})
	})
}

// FuzzPostgresQueryTwinsAgree feeds the fuzzer's query texts to
// PostgreSQL and the reference.
func FuzzPostgresQueryTwinsAgree(f *testing.F) {
	twinquerytest.Fuzz(f, "postgres", open(f, pgtest.Schema(f), postgres.Options{}))
}

// TestPostgresQueryTwinsLeaveOutWhatJSONBCannotHold stores a twin whose document
// jsonb cannot hold (a string with \u0000): the record itself is kept byte
// for byte, twin queries leave it out (and still work for the others).
func TestPostgresQueryTwinsLeaveOutWhatJSONBCannotHold(t *testing.T) {
	st := open(t, pgtest.Schema(t), postgres.Options{})
	ctx := t.Context()
	const hub = "hub.example"
	for _, r := range []store.Record{
		{Kind: store.KindDevice, ID: hub + "/good", Group: hub, Doc: json.RawMessage(`{"deviceId":"good","status":"enabled"}`)},
		{Kind: store.KindTwin, ID: hub + "/good", Group: hub, Doc: json.RawMessage(`{"deviceId":"good","version":1}`)},
		{Kind: store.KindDevice, ID: hub + "/nul", Group: hub, Doc: json.RawMessage(`{"deviceId":"nul","status":"enabled"}`)},
		{Kind: store.KindTwin, ID: hub + "/nul", Group: hub, Doc: json.RawMessage(`{"deviceId":"nul","version":1,"properties":{"reported":{"s":"a\u0000b"}}}`)},
	} {
		if _, err := st.Put(ctx, r, store.Cond{}); err != nil {
			t.Fatalf("Put %s/%s: %v", r.Kind, r.ID, err)
		}
	}
	got, err := st.Get(ctx, store.KindTwin, hub+"/nul")
	if err != nil || !strings.Contains(string(got.Doc), `"a\u0000b"`) {
		t.Fatalf("Get = %s, %v; want the document as written", got.Doc, err)
	}
	q, err := query.Parse("SELECT deviceId FROM devices")
	if err != nil {
		t.Fatal(err)
	}
	items, err := st.QueryTwins(ctx, q, hub, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || string(items[0]) != `{"deviceId":"good"}` {
		t.Errorf("items = %s; want only the good device", items)
	}
}
