package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/store/memstore"
	"github.com/muster-iot/muster/internal/telemetry"
)

// signalingEndpoint is a real telemetry endpoint that reports when a
// long poll starts waiting.
type signalingEndpoint struct {
	*telemetry.Endpoint
	following chan struct{}
}

func (s *signalingEndpoint) Follow(ctx context.Context, after int64, f telemetry.Filter, fn func(telemetry.Message) error) error {
	select {
	case s.following <- struct{}{}:
	default:
	}
	return s.Endpoint.Follow(ctx, after, f, fn)
}

// telemetryHarness is the hub harness with GET /messages/events mounted
// over a real endpoint on an in-memory store.
type telemetryHarness struct {
	*hubHarness
	events *signalingEndpoint
}

func newTelemetryHarness(t *testing.T) *telemetryHarness {
	t.Helper()
	h := newHubHarness(t)
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	ep, err := telemetry.NewEndpoint(st, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	events := &signalingEndpoint{Endpoint: ep, following: make(chan struct{}, 1)}
	if err := h.api.MountTelemetry(hubHost, events); err != nil {
		t.Fatalf("MountTelemetry: %v", err)
	}
	return &telemetryHarness{hubHarness: h, events: events}
}

// publish appends a message of a device (moduleID optional) with a
// property bag and returns its seq.
func (h *telemetryHarness) publish(deviceID, moduleID, bag, body string) int64 {
	h.t.Helper()
	m, err := telemetry.NewMessage(deviceID, moduleID, bag, []byte(body), h.now)
	if err != nil {
		h.t.Fatal(err)
	}
	seqs, err := h.events.Append(context.Background(), m)
	if err != nil {
		h.t.Fatal(err)
	}
	return seqs[0]
}

// read is GET /messages/events with a query; it returns the messages and
// the cursor header.
func (h *telemetryHarness) read(query string) ([]EventMessage, int64) {
	h.t.Helper()
	r := h.hub(http.MethodGet, "/messages/events"+hubVersion+query, "", nil)
	if r.status != http.StatusOK {
		h.t.Fatalf("GET /messages/events%s: %d %s", query, r.status, r.body)
	}
	var msgs []EventMessage
	r.decode(h.t, &msgs)
	cursor, err := strconv.ParseInt(r.header.Get(HeaderEventsCursor), 10, 64)
	if err != nil {
		h.t.Fatalf("cursor header %q: %v", r.header.Get(HeaderEventsCursor), err)
	}
	return msgs, cursor
}

func seqsOf(msgs []EventMessage) []int64 {
	out := []int64{}
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	return out
}

func TestTelemetryRead(t *testing.T) {
	h := newTelemetryHarness(t)
	h.publish("dev-a", "", "%24.mid=m1&%24.ct=application%2Fjson&unit=C", `{"t":21}`)
	h.publish("dev-b", "", "", "\x00\x01binary")
	h.publish("dev-a", "mod-1", "k=v", "from a module")

	msgs, cursor := h.read("")
	if cursor != 3 {
		t.Errorf("cursor %d, want 3", cursor)
	}
	want := EventMessage{Seq: 1, DeviceID: "dev-a", EnqueuedTime: h.now,
		SystemProperties: map[string]string{
			"message-id": "m1", "content-type": "application/json", "iothub-connection-device-id": "dev-a",
			"iothub-enqueuedtime": h.now.Format(time.RFC3339Nano), "iothub-message-source": "Telemetry",
		},
		Properties: map[string]string{"unit": "C"}, Body: []byte(`{"t":21}`)}
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3: %+v", len(msgs), msgs)
	}
	if diff := cmp.Diff(want, msgs[0]); diff != "" {
		t.Errorf("first message (-want +got):\n%s", diff)
	}
	if string(msgs[1].Body) != "\x00\x01binary" || msgs[2].ModuleID != "mod-1" || msgs[2].SystemProperties["iothub-connection-module-id"] != "mod-1" {
		t.Errorf("messages 2 and 3: %+v", msgs[1:])
	}

	for _, tc := range []struct {
		name, query string
		seqs        []int64
		cursor      int64
	}{
		{"after", "&after=1", []int64{2, 3}, 3},
		{"after the last", "&after=3", []int64{}, 3},
		{"limit", "&limit=1", []int64{1}, 1},
		{"device", "&deviceId=dev-a", []int64{1, 3}, 3},
		{"module", "&deviceId=dev-a&moduleId=mod-1", []int64{3}, 3},
		{"unknown device", "&deviceId=nobody", []int64{}, 0},
		{"latest", "&after=latest", []int64{}, 3},
		{"latest, any case", "&after=LATEST&deviceId=dev-b", []int64{}, 3},
		{"no wait for an old message", "&after=0&wait=30", []int64{1, 2, 3}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs, cursor := h.read(tc.query)
			if diff := cmp.Diff(tc.seqs, seqsOf(msgs)); diff != "" || cursor != tc.cursor {
				t.Errorf("seqs (-want +got):\n%s\ncursor %d, want %d", diff, cursor, tc.cursor)
			}
		})
	}
}

func TestTelemetryLongPoll(t *testing.T) {
	h := newTelemetryHarness(t)
	last := h.publish("dev-a", "", "", "old")

	type result struct {
		msgs   []EventMessage
		cursor string
		err    error
	}
	done := make(chan result, 1)
	go func() { // no t.Fatal off the test goroutine: the outcome goes to done
		req, err := http.NewRequest(http.MethodGet, h.srv.URL+"/messages/events"+hubVersion+"&deviceId=dev-a&wait=60&after="+strconv.FormatInt(last, 10), nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		req.Header.Set("Authorization", h.hubToken("service"))
		res, err := h.client.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer res.Body.Close()
		var r result
		if res.StatusCode != http.StatusOK {
			r.err = fmt.Errorf("status %d", res.StatusCode)
		} else {
			r.err = json.NewDecoder(res.Body).Decode(&r.msgs)
		}
		r.cursor = res.Header.Get(HeaderEventsCursor)
		done <- r
	}()
	select {
	case <-h.events.following:
	case <-time.After(30 * time.Second):
		t.Fatal("the long poll never started waiting")
	}
	h.publish("dev-b", "", "", "another device's") // does not end the wait
	want := h.publish("dev-a", "", "", "new")
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("long poll: %v", r.err)
		}
		if diff := cmp.Diff([]int64{want}, seqsOf(r.msgs)); diff != "" || r.cursor != strconv.FormatInt(want, 10) || string(r.msgs[0].Body) != "new" {
			t.Errorf("long poll answered seqs (-want +got):\n%s\ncursor %s", diff, r.cursor)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the long poll did not answer after a message was appended")
	}

	// A wait that passes answers no messages and the cursor it started at.
	msgs, cursor := h.read("&wait=1&after=latest")
	if len(msgs) != 0 || cursor != want {
		t.Errorf("elapsed wait: %d messages, cursor %d, want none and %d", len(msgs), cursor, want)
	}
}

func TestTelemetryRefusals(t *testing.T) {
	h := newTelemetryHarness(t)
	for _, tc := range []struct {
		name, query, policy string
		status              int
		code, message       string
	}{
		{"negative after", "&after=-1", "", http.StatusBadRequest, hubArgumentInvalid, `after "-1"`},
		{"after not a number", "&after=first", "", http.StatusBadRequest, hubArgumentInvalid, `after "first" is neither`},
		{"limit 0", "&limit=0", "", http.StatusBadRequest, hubArgumentInvalid, "limit"},
		{"limit too high", "&limit=1001", "", http.StatusBadRequest, hubArgumentInvalid, "from 1 to 1000"},
		{"wait too long", "&wait=61", "", http.StatusBadRequest, hubArgumentInvalid, "wait"},
		{"wait not a number", "&wait=1s", "", http.StatusBadRequest, hubArgumentInvalid, "wait"},
		{"module without device", "&moduleId=m", "", http.StatusBadRequest, hubArgumentInvalid, "moduleId needs deviceId"},
		{"invalid device", "&deviceId=" + url.QueryEscape("a/b"), "", http.StatusBadRequest, hubArgumentInvalid, "deviceId"},
		{"no ServiceConnect", "", "registryReadWrite", http.StatusUnauthorized, hubUnauthorized, ""},
		{"device policy", "", "device", http.StatusUnauthorized, hubUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr map[string]string
			if tc.policy != "" {
				hdr = map[string]string{"Authorization": h.hubToken(tc.policy)}
			}
			r := h.hub(http.MethodGet, "/messages/events"+hubVersion+tc.query, "", hdr)
			if r.status != tc.status || r.code != tc.code || !strings.Contains(r.message, tc.message) {
				t.Errorf("answer %d %s %q, want %d %s containing %q", r.status, r.code, r.message, tc.status, tc.code, tc.message)
			}
		})
	}
	// The service policy (ServiceConnect only) reads.
	r := h.hub(http.MethodGet, "/messages/events"+hubVersion, "", map[string]string{"Authorization": h.hubToken("service")})
	if r.status != http.StatusOK {
		t.Errorf("service policy: %d %s", r.status, r.body)
	}
	// Without api-version.
	r = h.hub(http.MethodGet, "/messages/events", "", nil)
	if r.status != http.StatusBadRequest || r.code != hubArgumentInvalid {
		t.Errorf("no api-version: %d %s", r.status, r.code)
	}
}

func TestMountTelemetryChecks(t *testing.T) {
	h := newHarness(t)
	st := memstore.New(0)
	t.Cleanup(func() { st.Close() })
	ep, err := telemetry.NewEndpoint(st, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, host string
		events     TelemetryEndpoint
		want       string
	}{
		{"no endpoint", hubHost, nil, "needs a telemetry endpoint"},
		{"no host", " ", ep, "is not a host name"},
		{"path in host", "hub/x", ep, "is not a host name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := h.api.MountTelemetry(tc.host, tc.events)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("MountTelemetry: %v, want %q", err, tc.want)
			}
		})
	}
	if err := h.api.MountTelemetry(hubHost, ep); err != nil {
		t.Fatal(err)
	}
	if err := h.api.MountTelemetry(hubHost, ep); err == nil {
		t.Error("a second MountTelemetry succeeded")
	}
}

// FuzzEventsQuery checks that any query of GET /messages/events is either
// refused as a bad request or parsed within the documented bounds.
func FuzzEventsQuery(f *testing.F) {
	for _, s := range []string{
		"", "after=0", "after=latest", "after=-1", "after=9223372036854775807", "after=9223372036854775808",
		"limit=1&wait=60", "limit=1001", "wait=-1", "deviceId=a&moduleId=b", "moduleId=b", "deviceId=%00",
		"after=1&after=2", "deviceId=" + strings.Repeat("x", 200), "wait=%20%205", "after=+3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest(http.MethodGet, "/messages/events", nil)
		r.URL.RawQuery = raw
		q, err := parseEventsQuery(r)
		if err != nil {
			status, code, msg := classifyHub(hubEndpoint{noun: "telemetry"}, "", err)
			if status != http.StatusBadRequest || code != hubArgumentInvalid || msg == "" {
				t.Fatalf("query %q refused as %d %s %q, want a 400 with a message", raw, status, code, msg)
			}
			return
		}
		if q.after < 0 || q.limit < 1 || q.limit > MaxEventsLimit || q.wait < 0 || q.wait > MaxEventsWait {
			t.Fatalf("query %q parsed out of bounds: %+v", raw, q)
		}
		if q.filter.ModuleID != "" && q.filter.DeviceID == "" {
			t.Fatalf("query %q: module filter without a device", raw)
		}
		if q.filter.DeviceID != "" && !telemetry.ValidID(q.filter.DeviceID) {
			t.Fatalf("query %q: invalid device ID %q accepted", raw, q.filter.DeviceID)
		}
	})
}
