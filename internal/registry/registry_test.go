package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/store/memstore"
)

const testHub = "hub.example.test"

// fixture is a hub over an in-memory store with a settable clock.
type fixture struct {
	hub *Hub
	mu  sync.Mutex
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{now: time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)}
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	f.hub = New(testHub, st, f.clock)
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func b64(n int) string { return base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", n))) }

func ptr(s string) *string { return &s }

func mustPut(t *testing.T, f *fixture, d *Device, ifMatch string) *Device {
	t.Helper()
	out, err := f.hub.PutDevice(context.Background(), d, ifMatch)
	if err != nil {
		t.Fatalf("PutDevice(%s, %q): %v", d.DeviceID, ifMatch, err)
	}
	return out
}

// canonical re-encodes JSON with sorted keys, for comparisons.
func canonical(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// desiredValues is canonical without the section's $metadata: what most
// tests compare (TestDesiredMetadata checks the metadata).
func desiredValues(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	delete(m, "$metadata")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPutDeviceCreate(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		in       *Device
		wantType string
		check    func(t *testing.T, d *Device)
	}{
		{
			name: "no authentication gets generated sas keys", in: &Device{DeviceID: "dev-1"}, wantType: provision.AuthSAS,
			check: func(t *testing.T, d *Device) {
				for _, k := range []string{d.Authentication.SymmetricKey.PrimaryKey, d.Authentication.SymmetricKey.SecondaryKey} {
					raw, err := base64.StdEncoding.DecodeString(k)
					if err != nil || len(raw) != generatedKeyBytes {
						t.Errorf("generated key %q: %d bytes, %v", k, len(raw), err)
					}
				}
				if d.Authentication.SymmetricKey.PrimaryKey == d.Authentication.SymmetricKey.SecondaryKey {
					t.Error("primary and secondary keys are equal")
				}
			},
		},
		{
			name: "given keys are kept", wantType: provision.AuthSAS,
			in: &Device{DeviceID: "dev-2", Authentication: Authentication{Type: "sas", SymmetricKey: &SymmetricKey{PrimaryKey: b64(32), SecondaryKey: b64(16)}}},
			check: func(t *testing.T, d *Device) {
				if d.Authentication.SymmetricKey.PrimaryKey != b64(32) || d.Authentication.SymmetricKey.SecondaryKey != b64(16) {
					t.Errorf("keys = %+v", d.Authentication.SymmetricKey)
				}
			},
		},
		{
			name: "thumbprint without type is selfSigned", wantType: provision.AuthSelfSigned,
			in: &Device{DeviceID: "dev-3", Authentication: Authentication{X509Thumbprint: X509Thumbprint{PrimaryThumbprint: ptr(strings.Repeat("AB", 20)), SecondaryThumbprint: ptr("")}}},
			check: func(t *testing.T, d *Device) {
				if d.Authentication.SymmetricKey != nil || *d.Authentication.X509Thumbprint.PrimaryThumbprint != strings.Repeat("AB", 20) || d.Authentication.X509Thumbprint.SecondaryThumbprint != nil {
					t.Errorf("authentication = %+v", d.Authentication)
				}
			},
		},
		{
			name: "certificate authority", wantType: provision.AuthCertificateAuthority,
			in: &Device{DeviceID: "dev-4", Status: "Disabled", Authentication: Authentication{Type: "certificateAuthority"}},
			check: func(t *testing.T, d *Device) {
				if d.Status != StatusDisabled {
					t.Errorf("status = %q, want disabled", d.Status)
				}
			},
		},
		{
			name: "edge device gets its scope", wantType: provision.AuthSAS,
			in: &Device{DeviceID: "edge-1", Capabilities: Capabilities{IoTEdge: true}, DeviceScope: "ignored"},
			check: func(t *testing.T, d *Device) {
				if want := "ms-azure-iot-edge://edge-1-" + d.GenerationID; d.DeviceScope != want {
					t.Errorf("deviceScope = %q, want %q", d.DeviceScope, want)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			d := mustPut(t, f, tc.in, "")
			if d.Authentication.Type != tc.wantType || d.ETag == "" || d.GenerationID == "" || d.ConnectionState != "Disconnected" ||
				!d.StatusUpdatedTime.Equal(f.clock()) || d.ParentScopes == nil {
				t.Errorf("created device = %+v", d)
			}
			tc.check(t, d)
			got, err := f.hub.GetDevice(ctx, d.DeviceID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(d, got); diff != "" {
				t.Errorf("stored device differs (-put +get):\n%s", diff)
			}
			tw, err := f.hub.GetTwin(ctx, d.DeviceID)
			if err != nil {
				t.Fatal(err)
			}
			if tw.Version != 1 || canonical(t, tw.Tags) != `{}` || desiredValues(t, tw.Properties.Desired) != `{"$version":1}` || canonical(t, tw.Properties.Reported) != `{"$version":1}` {
				t.Errorf("new twin = %+v", tw)
			}
			if _, err := f.hub.PutDevice(ctx, &Device{DeviceID: d.DeviceID}, ""); !errors.Is(err, ErrExists) {
				t.Errorf("second create: %v, want ErrExists", err)
			}
		})
	}
}

func TestPutDeviceUpdate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if err := f.hub.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "dev", Auth: provision.DeviceAuth{Type: "sas", PrimaryKey: b64(32), SecondaryKey: b64(32)},
		RegistrationID: "reg-dev", EnrollmentGroupID: "group"}); err != nil {
		t.Fatal(err)
	}
	orig, err := f.hub.GetDevice(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	f.advance(time.Minute)

	if _, err := f.hub.PutDevice(ctx, &Device{DeviceID: "dev"}, "not-the-etag"); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("update with a stale etag: %v, want ErrPrecondition", err)
	}
	if _, err := f.hub.PutDevice(ctx, &Device{DeviceID: "absent"}, "*"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing device: %v, want ErrNotFound", err)
	}
	reason := "maintenance"
	upd := mustPut(t, f, &Device{DeviceID: "dev", Status: "disabled", StatusReason: &reason, ParentScopes: []string{"ms-azure-iot-edge://gw-1"},
		Authentication: Authentication{Type: "selfSigned", X509Thumbprint: X509Thumbprint{PrimaryThumbprint: ptr(strings.Repeat("0a:", 31) + "0a")}}}, orig.ETag)
	want := *orig
	want.ETag = upd.ETag
	want.Status, want.StatusReason, want.StatusUpdatedTime = StatusDisabled, &reason, f.clock()
	want.ParentScopes = []string{"ms-azure-iot-edge://gw-1"}
	want.Authentication = Authentication{Type: "selfSigned", X509Thumbprint: X509Thumbprint{PrimaryThumbprint: ptr(strings.Repeat("0a:", 31) + "0a")}}
	if diff := cmp.Diff(&want, upd); diff != "" {
		t.Errorf("updated device (-want +got):\n%s", diff)
	}
	if upd.ETag == orig.ETag {
		t.Error("etag did not change on update")
	}
	// Same status again: statusUpdatedTime stays; "*" matches any etag.
	f.advance(time.Minute)
	again := mustPut(t, f, &Device{DeviceID: "dev", Status: "disabled"}, "*")
	if !again.StatusUpdatedTime.Equal(upd.StatusUpdatedTime) || again.ProvisionedBy == nil || again.ProvisionedBy.RegistrationID != "reg-dev" {
		t.Errorf("device after a same-status update = %+v", again)
	}
}

func TestPutDeviceInvalid(t *testing.T) {
	tests := []struct {
		name      string
		in        *Device
		wantField string
	}{
		{"empty id", &Device{}, "deviceId"},
		{"slash in id", &Device{DeviceID: "a/b"}, "deviceId"},
		{"long id", &Device{DeviceID: strings.Repeat("x", 129)}, "deviceId"},
		{"status", &Device{DeviceID: "d", Status: "paused"}, "status"},
		{"type", &Device{DeviceID: "d", Authentication: Authentication{Type: "tpm"}}, "authentication.type"},
		{"sas with thumbprint", &Device{DeviceID: "d", Authentication: Authentication{Type: "sas", X509Thumbprint: X509Thumbprint{PrimaryThumbprint: ptr(strings.Repeat("a", 40))}}}, "authentication.x509Thumbprint"},
		{"short key", &Device{DeviceID: "d", Authentication: Authentication{SymmetricKey: &SymmetricKey{PrimaryKey: b64(8)}}}, "authentication.symmetricKey.primaryKey"},
		{"long key", &Device{DeviceID: "d", Authentication: Authentication{SymmetricKey: &SymmetricKey{SecondaryKey: b64(65)}}}, "authentication.symmetricKey.secondaryKey"},
		{"not base64", &Device{DeviceID: "d", Authentication: Authentication{SymmetricKey: &SymmetricKey{PrimaryKey: "!!"}}}, "authentication.symmetricKey.primaryKey"},
		{"selfSigned without thumbprint", &Device{DeviceID: "d", Authentication: Authentication{Type: "selfSigned"}}, "authentication.x509Thumbprint.primaryThumbprint"},
		{"selfSigned with key", &Device{DeviceID: "d", Authentication: Authentication{Type: "selfSigned", SymmetricKey: &SymmetricKey{PrimaryKey: b64(32)}}}, "authentication.symmetricKey"},
		{"bad thumbprint", &Device{DeviceID: "d", Authentication: Authentication{Type: "selfSigned", X509Thumbprint: X509Thumbprint{PrimaryThumbprint: ptr("xyz")}}}, "authentication.x509Thumbprint.primaryThumbprint"},
		{"short secondary thumbprint", &Device{DeviceID: "d", Authentication: Authentication{X509Thumbprint: X509Thumbprint{PrimaryThumbprint: ptr(strings.Repeat("a", 64)), SecondaryThumbprint: ptr("ab")}}}, "authentication.x509Thumbprint.secondaryThumbprint"},
		{"ca with key", &Device{DeviceID: "d", Authentication: Authentication{Type: "certificateAuthority", SymmetricKey: &SymmetricKey{PrimaryKey: b64(32)}}}, "authentication.symmetricKey"},
		{"none with thumbprint", &Device{DeviceID: "d", Authentication: Authentication{Type: "none", X509Thumbprint: X509Thumbprint{PrimaryThumbprint: ptr(strings.Repeat("a", 40))}}}, "authentication.x509Thumbprint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := f.hub.PutDevice(context.Background(), tc.in, "")
			var ie *InvalidError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error = %v, want an *InvalidError", err)
			}
			if ie.Field != tc.wantField {
				t.Errorf("field = %q (%v), want %q", ie.Field, err, tc.wantField)
			}
		})
	}
}

func TestValidDeviceID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"dev-1", true},
		{"A:b.c+d%e_f#g*h?i!j(k)l,m=n@o;p$q'r", true},
		{strings.Repeat("z", 128), true},
		{"", false},
		{strings.Repeat("z", 129), false},
		{"a b", false},
		{"a/b", false},
		{"ü", false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			if got := ValidDeviceID(tc.id); got != tc.want {
				t.Errorf("ValidDeviceID(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}

func TestRemoveDevice(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		ifMatch func(d *Device) string
		wantErr error
	}{
		{"no etag", func(*Device) string { return "" }, nil},
		{"any etag", func(*Device) string { return "*" }, nil},
		{"current etag", func(d *Device) string { return d.ETag }, nil},
		{"stale etag", func(*Device) string { return "stale" }, ErrPrecondition},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			d := mustPut(t, f, &Device{DeviceID: "dev"}, "")
			err := f.hub.RemoveDevice(ctx, "dev", tc.ifMatch(d))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("RemoveDevice: %v, want %v", err, tc.wantErr)
			}
			_, derr := f.hub.GetDevice(ctx, "dev")
			_, terr := f.hub.GetTwin(ctx, "dev")
			if tc.wantErr != nil {
				if derr != nil || terr != nil {
					t.Fatalf("a refused delete removed something: device %v, twin %v", derr, terr)
				}
				return
			}
			if !errors.Is(derr, ErrNotFound) || !errors.Is(terr, ErrNotFound) {
				t.Fatalf("after delete: device %v, twin %v; want both not found", derr, terr)
			}
			if err := f.hub.RemoveDevice(ctx, "dev", ""); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second delete: %v, want ErrNotFound", err)
			}
		})
	}
}

func TestPatchTwin(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name        string
		patches     []TwinUpdate
		wantTags    string
		wantDesired string
		wantVersion int64
	}{
		{
			name:    "tags merge and null deletes",
			patches: []TwinUpdate{{Tags: json.RawMessage(`{"a":1,"b":{"c":2,"d":3}}`)}, {Tags: json.RawMessage(`{"a":null,"b":{"c":null,"e":[1,null]},"f":"x"}`)}},
			// desired untouched: its $version stays 1.
			wantTags: `{"b":{"d":3,"e":[1,null]},"f":"x"}`, wantDesired: `{"$version":1}`, wantVersion: 3,
		},
		{
			name:     "desired versions go up per desired write",
			patches:  []TwinUpdate{{Desired: json.RawMessage(`{"interval":5,"$version":99,"$metadata":{}}`)}, {Desired: json.RawMessage(`{"interval":10.50,"mode":{"x":null}}`)}, {Tags: json.RawMessage(`null`)}},
			wantTags: `{}`, wantDesired: `{"$version":3,"interval":10.5,"mode":{}}`, wantVersion: 3,
		},
		{
			name:     "an object replaces a scalar",
			patches:  []TwinUpdate{{Tags: json.RawMessage(`{"a":"s"}`)}, {Tags: json.RawMessage(`{"a":{"b":null,"c":true}}`)}},
			wantTags: `{"a":{"c":true}}`, wantDesired: `{"$version":1}`, wantVersion: 3,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			mustPut(t, f, &Device{DeviceID: "dev"}, "")
			var last *Twin
			for i, p := range tc.patches {
				tw, err := f.hub.PatchTwin(ctx, "dev", p, "*")
				if err != nil {
					t.Fatalf("patch %d: %v", i, err)
				}
				last = tw
			}
			stored, err := f.hub.GetTwin(ctx, "dev")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(last, stored); diff != "" {
				t.Errorf("returned twin differs from stored (-returned +stored):\n%s", diff)
			}
			got := [3]any{canonical(t, stored.Tags), desiredValues(t, stored.Properties.Desired), stored.Version}
			want := [3]any{canonical(t, json.RawMessage(tc.wantTags)), canonical(t, json.RawMessage(tc.wantDesired)), tc.wantVersion}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("tags, desired, version (-want +got):\n%s", diff)
			}
			if canonical(t, stored.Properties.Reported) != `{"$version":1}` {
				t.Errorf("reported = %s", stored.Properties.Reported)
			}
		})
	}
}

func TestPatchTwinEtagsAndErrors(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev"}, "")
	tw, err := f.hub.GetTwin(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.hub.PatchTwin(ctx, "dev", TwinUpdate{Tags: json.RawMessage(`{"a":1}`)}, "stale"); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("stale etag: %v, want ErrPrecondition", err)
	}
	next, err := f.hub.PatchTwin(ctx, "dev", TwinUpdate{Tags: json.RawMessage(`{"a":1}`)}, tw.ETag)
	if err != nil || next.ETag == tw.ETag {
		t.Fatalf("patch with the current etag: %v (etag %q → %q)", err, tw.ETag, next.ETag)
	}
	// An empty patch changes nothing but still honours If-Match.
	same, err := f.hub.PatchTwin(ctx, "dev", TwinUpdate{}, next.ETag)
	if err != nil || same.ETag != next.ETag || same.Version != next.Version {
		t.Fatalf("empty patch: %v, %+v", err, same)
	}
	if _, err := f.hub.PatchTwin(ctx, "dev", TwinUpdate{}, tw.ETag); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("empty patch with a stale etag: %v, want ErrPrecondition", err)
	}
	if _, err := f.hub.PatchTwin(ctx, "absent", TwinUpdate{Tags: json.RawMessage(`{"a":1}`)}, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("patch of a missing twin: %v, want ErrNotFound", err)
	}

	// The root plus MaxTwinDepth nested objects is the deepest accepted.
	okDeep := strings.Repeat(`{"n":`, MaxTwinDepth+1) + "1" + strings.Repeat("}", MaxTwinDepth+1)
	deep := strings.Repeat(`{"n":`, MaxTwinDepth+2) + "1" + strings.Repeat("}", MaxTwinDepth+2)
	deepArray := strings.Repeat(`{"n":`, MaxTwinDepth) + "[[1]]" + strings.Repeat("}", MaxTwinDepth)
	if _, err := f.hub.PatchTwin(ctx, "dev", TwinUpdate{Tags: json.RawMessage(okDeep)}, ""); err != nil {
		t.Fatalf("patch %d levels deep: %v", MaxTwinDepth, err)
	}
	invalidTests := []struct {
		name      string
		u         TwinUpdate
		wantField string
	}{
		{"tags not an object", TwinUpdate{Tags: json.RawMessage(`[1]`)}, "tags"},
		{"desired not JSON", TwinUpdate{Desired: json.RawMessage(`{"a":`)}, "properties.desired"},
		{"dot in a key", TwinUpdate{Tags: json.RawMessage(`{"a":{"b.c":1}}`)}, "tags.a"},
		{"dollar in a desired key", TwinUpdate{Desired: json.RawMessage(`{"$x":1}`)}, "properties.desired"},
		{"space in a key in an array", TwinUpdate{Tags: json.RawMessage(`{"l":[{"a b":1}]}`)}, "tags.l[0]"},
		{"control character", TwinUpdate{Tags: json.RawMessage(`{"a\u0001":1}`)}, "tags"},
		{"empty key", TwinUpdate{Tags: json.RawMessage(`{"":1}`)}, "tags"},
		{"too deep", TwinUpdate{Tags: json.RawMessage(deep)}, "tags" + strings.Repeat(".n", MaxTwinDepth+1)},
		{"arrays count as levels", TwinUpdate{Desired: json.RawMessage(deepArray)}, "properties.desired" + strings.Repeat(".n", MaxTwinDepth-1) + ".n[0]"},
		{"long string", TwinUpdate{Tags: json.RawMessage(`{"s":"` + strings.Repeat("x", MaxTwinStringBytes+1) + `"}`)}, "tags.s"},
		{"too large", TwinUpdate{Tags: json.RawMessage(`{"a":"` + strings.Repeat("x", 4000) + `","b":"` + strings.Repeat("x", 4000) + `","c":"` + strings.Repeat("x", 300) + `"}`)}, "tags"},
		{"desired too large", TwinUpdate{Desired: json.RawMessage(`{"a":["` + strings.Repeat("x", 4096) + `","` + strings.Repeat("x", 4096) + `","` + strings.Repeat("x", 4096) + `","` + strings.Repeat("x", 4096) + `"],"b":["` + strings.Repeat("x", 4096) + `","` + strings.Repeat("x", 4096) + `","` + strings.Repeat("x", 4096) + `","` + strings.Repeat("x", 4096) + `"]}`)}, "properties.desired"},
	}
	for _, tc := range invalidTests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.hub.PatchTwin(ctx, "dev", tc.u, "")
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("error = %v, want an *InvalidError", err)
			}
			if ie.Field != tc.wantField {
				t.Errorf("field = %q (%v), want %q", ie.Field, err, tc.wantField)
			}
		})
	}
}

func TestReplaceTwinKeepsReported(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if err := f.hub.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "dev", Auth: provision.DeviceAuth{Type: "sas", PrimaryKey: b64(32)},
		Twin: &provision.TwinState{Tags: json.RawMessage(`{"old":1,"keep":{"x":1}}`), Desired: json.RawMessage(`{"d":1}`)}}); err != nil {
		t.Fatal(err)
	}
	tw, err := f.hub.ReplaceTwin(ctx, "dev", TwinUpdate{Tags: json.RawMessage(`{"keep":{"y":2}}`)}, "*")
	if err != nil {
		t.Fatal(err)
	}
	got := [4]any{canonical(t, tw.Tags), desiredValues(t, tw.Properties.Desired), canonical(t, tw.Properties.Reported), tw.Version}
	want := [4]any{`{"keep":{"y":2}}`, `{"$version":2}`, `{"$version":1}`, int64(2)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tags, desired, reported, version (-want +got):\n%s", diff)
	}
	// The migration view drops the hub's bookkeeping.
	ts, err := f.hub.DeviceTwin(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if canonical(t, ts.Tags) != `{"keep":{"y":2}}` || canonical(t, ts.Desired) != `{}` {
		t.Errorf("DeviceTwin = %s / %s", ts.Tags, ts.Desired)
	}
}

// Concurrent patches without an etag all apply: a lost compare-and-swap is
// retried (a patch can only lose to another patch that succeeded, so a
// bounded number of attempts always suffices here).
func TestPatchTwinConcurrent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mustPut(t, f, &Device{DeviceID: "dev"}, "")
	const writers, each = 4, 3
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := f.hub.PatchTwin(ctx, "dev", TwinUpdate{Desired: json.RawMessage(fmt.Sprintf(`{"w%d_%d":true}`, w, i))}, "")
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	tw, err := f.hub.GetTwin(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	var desired map[string]any
	if err := json.Unmarshal(tw.Properties.Desired, &desired); err != nil {
		t.Fatal(err)
	}
	if len(desired) != writers*each+2 || desired["$version"] != float64(1+writers*each) || tw.Version != 1+writers*each {
		t.Errorf("after %d patches: version %d, desired %v", writers*each, tw.Version, desired)
	}
}

func TestMergePatch(t *testing.T) {
	// RFC 7396 appendix A examples (those with object targets and patches).
	tests := []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.target+"+"+tc.patch, func(t *testing.T) {
			var target, patch map[string]any
			if err := json.Unmarshal([]byte(tc.target), &target); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.patch), &patch); err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(MergePatch(target, patch))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(canonical(t, json.RawMessage(tc.want)), string(got)); diff != "" {
				t.Errorf("merge (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzMergePatch checks that a merge patch never panics, is idempotent, and
// leaves no null where the patch had an object member.
func FuzzMergePatch(f *testing.F) {
	f.Add(`{"a":{"b":1}}`, `{"a":{"b":null,"c":[null]}}`)
	f.Add(`{}`, `{"x":{"y":{"z":null}}}`)
	f.Add(`{"a":1}`, `{"a":{"b":2}}`)
	f.Fuzz(func(t *testing.T, target, patch string) {
		t1, err1 := decodeTwinSection("tags", json.RawMessage(target))
		p, err2 := decodeTwinSection("tags", json.RawMessage(patch))
		if err1 != nil || err2 != nil || p == nil {
			return
		}
		_ = checkTwinTree("tags", p)
		t2, _ := decodeTwinSection("tags", json.RawMessage(target))
		once, err := json.Marshal(MergePatch(t1, p))
		if err != nil {
			t.Fatalf("encode merged: %v", err)
		}
		twice, err := json.Marshal(MergePatch(MergePatch(t2, p), p))
		if err != nil {
			t.Fatalf("encode merged twice: %v", err)
		}
		if string(once) != string(twice) {
			t.Fatalf("merge patch is not idempotent: %s vs %s", once, twice)
		}
		var merged map[string]any
		if err := json.Unmarshal(once, &merged); err != nil {
			t.Fatalf("decode merged: %v", err)
		}
		var noNulls func(patch, got map[string]any)
		noNulls = func(patch, got map[string]any) {
			for k, v := range patch {
				switch pv := v.(type) {
				case nil:
					if _, ok := got[k]; ok {
						t.Fatalf("key %q patched to null is still present in %s", k, once)
					}
				case map[string]any:
					sub, ok := got[k].(map[string]any)
					if !ok {
						t.Fatalf("key %q patched with an object is %T in %s", k, got[k], once)
					}
					noNulls(pv, sub)
				}
			}
		}
		noNulls(p, merged)
	})
}

// TestDesiredMetadata: desired properties carry $metadata as IoT Hub's do
// (hub-edge-protocol §4.4): every node has $lastUpdated and
// $lastUpdatedVersion; a merge patch restamps only what it wrote, a tags
// update leaves the section alone, a replacement restamps everything, and
// a device's initial twin starts stamped.
func TestDesiredMetadata(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	t1 := f.now
	if err := f.hub.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "dev", Auth: provision.DeviceAuth{Type: "sas", PrimaryKey: b64(32)},
		Twin: &provision.TwinState{Desired: json.RawMessage(`{"interval":5,"limits":{"max":80,"min":1}}`)}}); err != nil {
		t.Fatal(err)
	}
	type node struct {
		LastUpdated        string `json:"$lastUpdated"`
		LastUpdatedVersion int64  `json:"$lastUpdatedVersion"`
		Interval           *node  `json:"interval"`
		Limits             *node  `json:"limits"`
		Max                *node  `json:"max"`
		Min                *node  `json:"min"`
		Mode               *node  `json:"mode"`
	}
	meta := func(tw *Twin) (node, int64) {
		t.Helper()
		var d struct {
			Metadata *node `json:"$metadata"`
			Version  int64 `json:"$version"`
		}
		if err := json.Unmarshal(tw.Properties.Desired, &d); err != nil || d.Metadata == nil {
			t.Fatalf("desired %s: no $metadata (%v)", tw.Properties.Desired, err)
		}
		return *d.Metadata, d.Version
	}
	stamp := func(tm time.Time) string { return tm.UTC().Format("2006-01-02T15:04:05.0000000Z") }

	tw, err := f.hub.GetTwin(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	m, v := meta(tw)
	if m.LastUpdated != stamp(t1) || m.LastUpdatedVersion != v || m.Limits == nil || m.Limits.Max == nil || m.Limits.Max.LastUpdatedVersion != v || m.Interval == nil {
		t.Fatalf("initial desired metadata %s", tw.Properties.Desired)
	}
	initial := v

	f.advance(time.Minute)
	tw, err = f.hub.PatchTwin(ctx, "dev", TwinUpdate{Desired: json.RawMessage(`{"limits":{"max":90},"mode":"fast"}`)}, "*")
	if err != nil {
		t.Fatal(err)
	}
	m, v = meta(tw)
	switch {
	case v != initial+1 || m.LastUpdatedVersion != v || m.LastUpdated != stamp(t1.Add(time.Minute)):
		t.Errorf("root after patch: %+v, $version %d", m, v)
	case m.Limits.Max.LastUpdatedVersion != v || m.Mode == nil || m.Mode.LastUpdatedVersion != v:
		t.Errorf("written members not restamped: %s", tw.Properties.Desired)
	case m.Interval.LastUpdatedVersion != initial || m.Interval.LastUpdated != stamp(t1) || m.Limits.Min.LastUpdatedVersion != initial:
		t.Errorf("untouched members restamped: %s", tw.Properties.Desired)
	}
	before := tw.Properties.Desired

	tw, err = f.hub.PatchTwin(ctx, "dev", TwinUpdate{Tags: json.RawMessage(`{"site":"a"}`)}, "*")
	if err != nil {
		t.Fatal(err)
	}
	if string(tw.Properties.Desired) != string(before) {
		t.Errorf("a tags update changed desired:\n%s\n→ %s", before, tw.Properties.Desired)
	}

	tw, err = f.hub.ReplaceTwin(ctx, "dev", TwinUpdate{Desired: json.RawMessage(`{"interval":7}`)}, "*")
	if err != nil {
		t.Fatal(err)
	}
	m, v = meta(tw)
	if m.Interval.LastUpdatedVersion != v || m.Limits != nil || m.Mode != nil {
		t.Errorf("after replace: %s", tw.Properties.Desired)
	}
}
