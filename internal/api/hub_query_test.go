package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/query"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
)

// newQueryHarness is the hub harness with the query route mounted over the
// registry's in-memory store (q, when not nil, replaces the store as the
// querier), and devices dev-0 … dev-(n-1), even ones tagged env=test.
func newQueryHarness(t *testing.T, n int, q store.TwinQuerier) *hubHarness {
	t.Helper()
	h := newHarness(t)
	for name, rights := range hubPolicyRights {
		h.policies[name] = Policy{Name: name, Realm: RealmHub, PrimaryKey: testKey(name + "-primary"), SecondaryKey: testKey(name + "-secondary"), Rights: rights}
	}
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	reg := registry.New(hubHost, st, func() time.Time { return h.now })
	if err := h.api.MountHub(reg); err != nil {
		t.Fatalf("MountHub: %v", err)
	}
	if q == nil {
		q = st
	}
	if err := h.api.MountHubQuery(hubHost, q); err != nil {
		t.Fatalf("MountHubQuery: %v", err)
	}
	for i := range n {
		id := fmt.Sprintf("dev-%d", i)
		if _, err := reg.PutDevice(context.Background(), &registry.Device{DeviceID: id}, ""); err != nil {
			t.Fatal(err)
		}
		env := "prod"
		if i%2 == 0 {
			env = "test"
		}
		if _, err := reg.PatchTwin(context.Background(), id, registry.TwinUpdate{Tags: json.RawMessage(`{"env":"` + env + `"}`)}, "*"); err != nil {
			t.Fatal(err)
		}
	}
	return &hubHarness{harness: h, reg: reg}
}

func queryBody(q string) string {
	b, _ := json.Marshal(map[string]string{"query": q})
	return string(b)
}

func TestHubQueryRoute(t *testing.T) {
	h := newQueryHarness(t, 5, nil)
	for _, tc := range []struct {
		name     string
		body     string
		hdr      map[string]string
		want     []any
		itemType string
		cont     string
	}{
		{name: "star", body: queryBody("SELECT * FROM devices WHERE tags.env = 'prod'"), itemType: "twin",
			want: []any{"dev-1", "dev-3"}},
		{name: "projection", body: queryBody("SELECT deviceId FROM devices WHERE tags.env = 'test'"), itemType: "raw",
			want: []any{map[string]any{"deviceId": "dev-0"}, map[string]any{"deviceId": "dev-2"}, map[string]any{"deviceId": "dev-4"}}},
		{name: "group by", body: queryBody("SELECT tags.env AS env, COUNT() AS n FROM devices GROUP BY tags.env"), itemType: "raw",
			want: []any{map[string]any{"env": "prod", "n": 2.0}, map[string]any{"env": "test", "n": 3.0}}},
		{name: "first page", body: queryBody("SELECT deviceId FROM devices"), hdr: map[string]string{"x-ms-max-item-count": "2"},
			itemType: "raw", cont: continuationToken(2), want: []any{map[string]any{"deviceId": "dev-0"}, map[string]any{"deviceId": "dev-1"}}},
		{name: "middle page", body: queryBody("SELECT deviceId FROM devices"),
			hdr:      map[string]string{"x-ms-max-item-count": "2", "x-ms-continuation": continuationToken(2)},
			itemType: "raw", cont: continuationToken(4), want: []any{map[string]any{"deviceId": "dev-2"}, map[string]any{"deviceId": "dev-3"}}},
		{name: "last page", body: queryBody("SELECT deviceId FROM devices"),
			hdr:      map[string]string{"x-ms-max-item-count": "2", "x-ms-continuation": continuationToken(4)},
			itemType: "raw", want: []any{map[string]any{"deviceId": "dev-4"}}},
		{name: "exact last page", body: queryBody("SELECT TOP 4 deviceId FROM devices"),
			hdr:      map[string]string{"x-ms-max-item-count": "2", "x-ms-continuation": continuationToken(2)},
			itemType: "raw", want: []any{map[string]any{"deviceId": "dev-2"}, map[string]any{"deviceId": "dev-3"}}},
		{name: "empty", body: queryBody("SELECT * FROM devices WHERE tags.env = 'none'"), itemType: "twin", want: []any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := h.hub(http.MethodPost, "/devices/query"+hubVersion, tc.body, tc.hdr)
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			if got := res.header.Get("x-ms-item-type"); got != tc.itemType {
				t.Errorf("x-ms-item-type %q, want %q", got, tc.itemType)
			}
			if got := res.header.Get("x-ms-continuation"); got != tc.cont {
				t.Errorf("x-ms-continuation %q, want %q", got, tc.cont)
			}
			var got []any
			res.decode(t, &got)
			if tc.itemType == "twin" {
				for i, it := range got {
					m, ok := it.(map[string]any)
					if !ok {
						t.Fatalf("item %d is %T, want a twin object", i, it)
					}
					for _, k := range []string{"etag", "deviceEtag", "status", "properties", "tags", "version"} {
						if _, ok := m[k]; !ok {
							t.Errorf("twin %v has no %q", m["deviceId"], k)
						}
					}
					got[i] = m["deviceId"]
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHubQueryPagesToTheEnd follows the continuation token as an SDK does
// and checks every device comes exactly once.
func TestHubQueryPagesToTheEnd(t *testing.T) {
	h := newQueryHarness(t, 7, nil)
	var got []string
	cont := ""
	for page := 0; page < 10; page++ {
		hdr := map[string]string{"x-ms-max-item-count": "3"}
		if cont != "" {
			hdr["x-ms-continuation"] = cont
		}
		res := h.hub(http.MethodPost, "/devices/query"+hubVersion, queryBody("SELECT * FROM devices"), hdr)
		if res.status != http.StatusOK {
			t.Fatalf("page %d: status %d: %s", page, res.status, res.body)
		}
		var items []struct {
			DeviceID string `json:"deviceId"`
		}
		res.decode(t, &items)
		for _, it := range items {
			got = append(got, it.DeviceID)
		}
		if cont = res.header.Get("x-ms-continuation"); cont == "" {
			break
		}
	}
	want := []string{"dev-0", "dev-1", "dev-2", "dev-3", "dev-4", "dev-5", "dev-6"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("devices over all pages (-want +got):\n%s", diff)
	}
}

// failingQuerier answers every query with err.
type failingQuerier struct{ err error }

func (f failingQuerier) QueryTwins(context.Context, *query.Query, string, int, int) ([]json.RawMessage, error) {
	return nil, f.err
}

func TestHubQueryErrors(t *testing.T) {
	h := newQueryHarness(t, 1, nil)
	ok := queryBody("SELECT * FROM devices")
	for _, tc := range []struct {
		name    string
		body    string
		hdr     map[string]string
		status  int
		code    string
		message string
	}{
		{"syntax error", queryBody("SELECT * FROM devices WHERE"), nil, 400, hubArgumentInvalid, "query: line 1 col 28"},
		{"unknown collection", queryBody("SELECT * FROM things"), nil, 400, hubArgumentInvalid, "query: line 1 col 15"},
		{"jobs", queryBody("SELECT * FROM devices.jobs"), nil, 400, hubArgumentInvalid, "FROM devices.jobs is not supported yet"},
		{"empty body", "", nil, 400, hubArgumentInvalid, "request body is empty"},
		{"no query member", `{"q":"SELECT * FROM devices"}`, nil, 400, hubArgumentInvalid, `request body has no "query" member`},
		{"query not a string", `{"query":1}`, nil, 400, hubArgumentInvalid, "request body is not a JSON object with a query string"},
		{"page size zero", ok, map[string]string{"x-ms-max-item-count": "0"}, 400, hubArgumentInvalid, "x-ms-max-item-count \"0\" is not a whole number from 1 to 1000"},
		{"page size too large", ok, map[string]string{"x-ms-max-item-count": "1001"}, 400, hubArgumentInvalid, "from 1 to 1000"},
		{"page size not a number", ok, map[string]string{"x-ms-max-item-count": "ten"}, 400, hubArgumentInvalid, "from 1 to 1000"},
		{"continuation garbage", ok, map[string]string{"x-ms-continuation": "!!"}, 400, hubArgumentInvalid, "x-ms-continuation is not a continuation token"},
		{"continuation zero", ok, map[string]string{"x-ms-continuation": continuationToken(0)}, 400, hubArgumentInvalid, "not a continuation token"},
		{"continuation negative", ok, map[string]string{"x-ms-continuation": continuationToken(-3)}, 400, hubArgumentInvalid, "not a continuation token"},
		{"continuation too long", ok, map[string]string{"x-ms-continuation": strings.Repeat("MQ", 40)}, 400, hubArgumentInvalid, "not a continuation token"},
		{"no token", ok, map[string]string{"Authorization": "-"}, 401, hubUnauthorized, ""},
		{"no RegistryRead", ok, map[string]string{"Authorization": h.hubToken("service")}, 401, hubUnauthorized, ""},
		{"registryRead suffices", ok, map[string]string{"Authorization": h.hubToken("registryRead")}, 200, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := h.hub(http.MethodPost, "/devices/query"+hubVersion, tc.body, tc.hdr)
			if res.status != tc.status || res.code != tc.code {
				t.Fatalf("status %d code %q, want %d %q: %s", res.status, res.code, tc.status, tc.code, res.body)
			}
			if !strings.Contains(res.message, tc.message) {
				t.Errorf("message %q, want it to contain %q", res.message, tc.message)
			}
		})
	}
	t.Run("api-version required", func(t *testing.T) {
		res := h.hub(http.MethodPost, "/devices/query", ok, nil)
		if res.status != http.StatusBadRequest || !strings.Contains(res.message, "api-version") {
			t.Errorf("status %d message %q", res.status, res.message)
		}
	})
}

func TestHubQueryStoreErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"unsupported", fmt.Errorf("query twins: line 1 col 30: %w", query.ErrUnsupported), 400, hubArgumentInvalid},
		{"too complex", fmt.Errorf("query twins: %w", query.ErrTooComplex), 400, hubArgumentInvalid},
		{"store failure", errors.New("disk on fire"), 500, hubServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newQueryHarness(t, 0, failingQuerier{tc.err})
			res := h.hub(http.MethodPost, "/devices/query"+hubVersion, queryBody("SELECT * FROM devices"), nil)
			if res.status != tc.status || res.code != tc.code {
				t.Fatalf("status %d code %q, want %d %q: %s", res.status, res.code, tc.status, tc.code, res.body)
			}
			if tc.status == 500 && strings.Contains(res.message, "disk on fire") {
				t.Errorf("internal cause leaked to the caller: %q", res.message)
			}
		})
	}
}

func TestMountHubQueryArguments(t *testing.T) {
	h := newHarness(t)
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	for _, tc := range []struct {
		name string
		host string
		q    store.TwinQuerier
		want string
	}{
		{"nil querier", "hub.example", nil, "needs a twin querier"},
		{"empty host", " ", st, "is not a host name"},
		{"host with a slash", "hub/x", st, "is not a host name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := h.api.MountHubQuery(tc.host, tc.q)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestContinuationRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 99, 1000, 1 << 40} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			got, err := parseContinuation(continuationToken(n))
			if err != nil || got != n {
				t.Errorf("parseContinuation(continuationToken(%d)) = %d, %v", n, got, err)
			}
		})
	}
}

func FuzzParseContinuation(f *testing.F) {
	for _, s := range []string{"", "Mg", "MTAw", "MA", "LTE", "!!", "MQ==", " Mg ", "MDE", strings.Repeat("A", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseContinuation(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("parseContinuation(%q) = %d", s, n)
		}
		if n > 0 {
			back, err := parseContinuation(continuationToken(n))
			if err != nil || back != n {
				t.Fatalf("token of %d does not round-trip: %d, %v", n, back, err)
			}
		}
	})
}

func FuzzDecodeQueryRequest(f *testing.F) {
	for _, s := range []string{
		`{"query":"SELECT * FROM devices"}`,
		`{"query":"SELECT deviceId, COUNT() FROM devices GROUP BY deviceId"}`,
		`{"query":"SELECT * FROM devices.modules"}`,
		`{"query":null}`, `{}`, `[]`, `"x"`, ``, `{"query":"SELECT TOP 1 * FROM devices WHERE tags.a IN [1,'b']"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := decodeQueryRequest(data)
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) || he.status != http.StatusBadRequest {
				t.Fatalf("error %v is not a 400", err)
			}
			return
		}
		if q.From != query.Devices && q.From != query.Modules {
			t.Fatalf("accepted FROM %s", q.From)
		}
	})
}
