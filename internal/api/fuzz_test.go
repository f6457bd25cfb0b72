package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func FuzzDeviceRegistrationBody(f *testing.F) {
	for _, s := range []string{
		``, `null`, `{}`, `{"registrationId":"dev1"}`,
		`{"payload": null, "registrationId": "dev1"}`,
		`{"registrationId":"dev1","payload":{"a":[1,2,{"b":null}]}}`,
		`{"registrationId":"dev1","tpm":{"endorsementKey":"AAAA","storageRootKey":"BBBB"}}`,
		`{"tpm":"x"}`, `{"tpm":null}`, `[]`, `"s"`, `{"registrationId":7}`, `{} {}`, `{"a":`,
		`{"payload":"\ud800"}`, "{\"payload\":\"\xff\"}", `{"registrationId":"a","registrationId":"b"}`,
		`{"csr":"MIIB","clientCertificateCsr":"x"}`, `  {"payload": 1e400}  `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeDeviceRegistration(data)
		if err != nil {
			status, code, msg, _ := classify(resource{}, err)
			if status != http.StatusBadRequest || code != codeBadRequest || msg == "" {
				t.Fatalf("decode error %v classified as %d %d %q, want a 400 with a message", err, status, code, msg)
			}
			return
		}
		if got.Payload != nil {
			if !json.Valid(got.Payload) {
				t.Fatalf("payload %q is not valid JSON", got.Payload)
			}
			if bytes.Equal(got.Payload, []byte("null")) {
				t.Fatal("a null payload must be dropped")
			}
		}
		// Anything accepted is one JSON value (or nothing at all).
		if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && !json.Valid(trimmed) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
	})
}

func FuzzRoute(f *testing.F) {
	for _, s := range []string{
		"/", "", "//", "/0ne00000001/registrations/dev1/register", "/0ne/registrations/a%2Fb/operations/op",
		"/enrollments/", "/enrollments/query", "/enrollmentgroups/g/attestationmechanism", "/registrations/g/query",
		"/%zz", "/a%", "/%65nrollments/x", "/static/a/b/c", "/a//b/", "///", "/\x00/\xff", "/REGISTRATIONS/x/QUERY",
	} {
		f.Add("GET", s)
		f.Add("PUT", s)
	}
	rt := testRouter(f)
	f.Fuzz(func(t *testing.T, method, path string) {
		m, err := rt.match(method, path)
		if err != nil {
			if !strings.Contains(path, "%") {
				t.Fatalf("decode error %v for a path without escapes", err)
			}
			return
		}
		if m.route != nil && len(m.allowed) != 0 {
			t.Fatal("a match with a route also lists allowed methods")
		}
		if m.route == nil {
			return
		}
		if m.route.method != "" && m.route.method != method {
			t.Fatalf("route %s %s matched method %q", m.route.method, m.route.pattern, method)
		}
		for _, p := range m.params {
			if p.value == "" && !strings.HasSuffix(m.route.pattern, "...}") {
				t.Fatalf("empty parameter %s for %q on %s", p.name, path, m.route.pattern)
			}
		}
		if len(m.route.segs) > 0 && m.route.segs[0].kind != segLiteral {
			parts, err := splitPath(path)
			if err != nil {
				t.Fatalf("split a path match accepted: %v", err)
			}
			if len(parts) > 0 && rt.reserved[strings.ToLower(parts[0])] {
				t.Fatalf("device-style route %s matched reserved first segment %q", m.route.pattern, parts[0])
			}
		}
	})
}
