package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testRouter returns a router with a representative route set; each
// handler is identified by its pattern.
func testRouter(t testing.TB) *router {
	t.Helper()
	rt := newRouter([]string{"devices"})
	for _, r := range []struct{ method, pattern string }{
		{"PUT", "/{idScope}/registrations/{registrationId}/register"},
		{"GET", "/{idScope}/registrations/{registrationId}/operations/{operationId}"},
		{"POST", "/{idScope}/registrations/{registrationId}"},
		{"PUT", "/enrollments/{id}"},
		{"GET", "/enrollments/{id}"},
		{"POST", "/enrollments/query"},
		{"POST", "/enrollments"},
		{"GET", "/registrations/{id}"},
		{"POST", "/registrations/{groupId}/query"},
		{"GET", "/static/{path...}"},
		{"", "/any/{x}"},
		{"GET", "/any/{x}"},
		{"GET", "/"},
	} {
		if err := rt.handle(r.method, r.pattern, http.NotFoundHandler()); err != nil {
			t.Fatalf("handle %s %s: %v", r.method, r.pattern, err)
		}
	}
	return rt
}

func TestRouterMatch(t *testing.T) {
	rt := testRouter(t)
	type result struct {
		Method  string
		Pattern string
		Params  map[string]string
		Allowed []string
	}
	tests := []struct {
		name   string
		method string
		path   string
		want   result
	}{
		{"device register", "PUT", "/0ne00000001/registrations/dev1/register",
			result{Method: "PUT", Pattern: "/{idScope}/registrations/{registrationId}/register", Params: map[string]string{"idScope": "0ne00000001", "registrationId": "dev1"}}},
		{"percent-decoded parameters, encoded slash stays in the segment", "GET", "/0ne%30/registrations/a%2Fb/operations/op%2E1",
			result{Method: "GET", Pattern: "/{idScope}/registrations/{registrationId}/operations/{operationId}", Params: map[string]string{"idScope": "0ne0", "registrationId": "a/b", "operationId": "op.1"}}},
		{"case-insensitive literals keep parameter case", "PUT", "/0NE/REGISTRATIONS/Dev1/Register/",
			result{Method: "PUT", Pattern: "/{idScope}/registrations/{registrationId}/register", Params: map[string]string{"idScope": "0NE", "registrationId": "Dev1"}}},
		{"literal beats parameter", "POST", "/enrollments/query",
			result{Method: "POST", Pattern: "/enrollments/query"}},
		{"parameter named like a literal under another method", "GET", "/enrollments/query",
			result{Method: "GET", Pattern: "/enrollments/{id}", Params: map[string]string{"id": "query"}}},
		{"trailing slash", "POST", "/enrollments/",
			result{Method: "POST", Pattern: "/enrollments"}},
		{"service registrations are not device routes", "POST", "/registrations/grp/query",
			result{Method: "POST", Pattern: "/registrations/{groupId}/query", Params: map[string]string{"groupId": "grp"}}},
		{"reserved first segment blocks a device route", "POST", "/registrations/registrations/x",
			result{}},
		{"up-front reserved segment blocks a device route", "PUT", "/devices/registrations/x/register",
			result{}},
		{"encoded reserved segment still blocks", "PUT", "/%65nrollments/registrations/x/register",
			result{}},
		{"wildcard takes the rest", "GET", "/static/a/b%2Fc/",
			result{Method: "GET", Pattern: "/static/{path...}", Params: map[string]string{"path": "a/b/c"}}},
		{"wildcard may be empty", "GET", "/static",
			result{Method: "GET", Pattern: "/static/{path...}", Params: map[string]string{"path": ""}}},
		{"method route beats any-method route", "GET", "/any/1",
			result{Method: "GET", Pattern: "/any/{x}", Params: map[string]string{"x": "1"}}},
		{"any-method route", "DELETE", "/any/1",
			result{Method: "", Pattern: "/any/{x}", Params: map[string]string{"x": "1"}}},
		{"root", "GET", "/",
			result{Method: "GET", Pattern: "/"}},
		{"method not allowed lists methods", "DELETE", "/enrollments/x",
			result{Allowed: []string{"GET", "PUT"}}},
		{"empty parameter does not match", "GET", "/enrollments//",
			result{}},
		{"too many segments", "GET", "/enrollments/a/b/c",
			result{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := rt.match(tc.method, tc.path)
			if err != nil {
				t.Fatalf("match: %v", err)
			}
			var got result
			if m.route != nil {
				got.Method, got.Pattern = m.route.method, m.route.pattern
				for _, p := range m.params {
					if got.Params == nil {
						got.Params = map[string]string{}
					}
					got.Params[p.name] = p.value
				}
			}
			got.Allowed = m.allowed
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRouterBadEscape(t *testing.T) {
	rt := testRouter(t)
	if _, err := rt.match("GET", "/enrollments/%zz"); err == nil || !strings.Contains(err.Error(), "segment 2") {
		t.Errorf("error %v, want one naming segment 2", err)
	}
}

func TestRouterHandleErrors(t *testing.T) {
	tests := []struct {
		name, method, pattern, wantErr string
	}{
		{"conflict", "PUT", "/enrollments/{other}", "conflicts with PUT /enrollments/{id}"},
		{"no leading slash", "GET", "x", "does not start with /"},
		{"empty segment", "GET", "/a//b", "empty segment"},
		{"wildcard not last", "GET", "/a/{w...}/b", "not the last segment"},
		{"duplicate parameter", "GET", "/a/{x}/{x}", "appears twice"},
		{"mixed segment", "GET", "/a/b{x}", "mixes text and braces"},
		{"empty name", "GET", "/a/{}", "bad parameter name"},
		{"lower-case method", "get", "/z", "upper-case token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := testRouter(t)
			err := rt.handle(tc.method, tc.pattern, http.NotFoundHandler())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestHandleExtendsRouterAndReserves(t *testing.T) {
	h := newHarness(t)
	h.api.Handle(http.MethodGet, "/twins/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write([]byte(`{"deviceId":"` + r.PathValue("id") + `"}`))
	}))
	h.api.Handle(http.MethodGet, "/newhub/{id}", http.NotFoundHandler())
	res := h.do(nil, http.MethodGet, "/Twins/d%201", "", nil)
	if res.status != http.StatusOK || string(res.body) != `{"deviceId":"d 1"}` {
		t.Errorf("added route: %d %s", res.status, res.body)
	}
	// "newhub" is now reserved: it can no longer be taken for an ID scope.
	h.reg.set(assigning("x"), nil, nil)
	res = h.do(nil, http.MethodPut, "/newhub/registrations/x/register?api-version=1", "", nil)
	if res.status != http.StatusNotFound {
		t.Errorf("PUT under a reserved segment: %d, want 404", res.status)
	}
	h.reg.mu.Lock()
	if n := len(h.reg.register); n != 0 {
		t.Errorf("registrar called %d times for a reserved first segment", n)
	}
	h.reg.mu.Unlock()
	defer func() {
		if v := recover(); v == nil || !strings.Contains(v.(string), "conflicts") {
			t.Errorf("conflicting Handle: recovered %v, want a conflict panic", v)
		}
	}()
	h.api.Handle(http.MethodGet, "/twins/{other}", http.NotFoundHandler())
}
