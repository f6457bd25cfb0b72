package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/telemetry"
)

// Limits of GET /messages/events.
const (
	// DefaultEventsLimit is how many messages one read returns when the
	// request gives no limit.
	DefaultEventsLimit = 100
	// MaxEventsLimit is the most messages one read returns.
	MaxEventsLimit = store.MaxStreamReadLimit
	// MaxEventsWait is the longest a read waits for a new message.
	MaxEventsWait = 60 * time.Second
)

// HeaderEventsCursor is the response header of GET /messages/events that
// carries the seq to pass as the next request's after: the seq of the last
// message returned, or the resolved after when none was.
const HeaderEventsCursor = "x-muster-cursor"

// eventsAfterLatest is the value of after that starts at the end of the
// stream (only messages appended later are returned).
const eventsAfterLatest = "latest"

// TelemetryEndpoint is the hub's built-in telemetry endpoint as GET
// /messages/events reads it; *telemetry.Endpoint implements it.
type TelemetryEndpoint interface {
	Read(ctx context.Context, after int64, f telemetry.Filter, limit int) ([]telemetry.Message, error)
	Follow(ctx context.Context, after int64, f telemetry.Filter, fn func(telemetry.Message) error) error
	Stats(ctx context.Context) (store.StreamStats, error)
}

// EventMessage is one message of the built-in telemetry endpoint as GET
// /messages/events returns it.
type EventMessage struct {
	// Seq is the message's position in the stream; pass it as after to
	// read the messages that follow.
	Seq int64 `json:"seq"`
	// DeviceID and ModuleID name the sender (ModuleID is empty for a device).
	DeviceID string `json:"deviceId"`
	ModuleID string `json:"moduleId,omitempty"`
	// EnqueuedTime is when the hub accepted the message.
	EnqueuedTime time.Time `json:"enqueuedTime"`
	// SystemProperties are the message's annotations (telemetry.Message.Annotations).
	SystemProperties map[string]string `json:"systemProperties"`
	// Properties are the application properties.
	Properties map[string]string `json:"properties"`
	// Body is the payload (base64 in JSON).
	Body []byte `json:"body"`
}

// telemetryService serves the telemetry read route of one hub.
type telemetryService struct {
	hub    *hubService
	events TelemetryEndpoint
}

// errEventArrived stops the long-poll's Follow at the first new message.
var errEventArrived = errors.New("api: a telemetry message arrived")

// MountTelemetry adds GET /messages/events, a Muster extension of the hub
// service API that reads the built-in telemetry endpoint (events):
//
//	GET /messages/events?api-version=…&after=<seq|latest>&deviceId=&moduleId=&limit=&wait=<seconds>
//
// It answers a JSON array of EventMessage, oldest first: up to limit
// (default DefaultEventsLimit, at most MaxEventsLimit) messages with a seq
// above after (default 0: from the oldest kept; "latest": from the end of
// the stream) from deviceId (and moduleId) when given. When none is newer
// it waits up to wait seconds (default 0, at most MaxEventsWait) for one.
// The HeaderEventsCursor header carries the after of the next read.
// Requests are authorised like the hub service API (a "hub" policy token
// for hubHostName) and need the ServiceConnect right. Call it once, before
// serving.
func (a *API) MountTelemetry(hubHostName string, events TelemetryEndpoint) error {
	if events == nil {
		return errors.New("api: MountTelemetry needs a telemetry endpoint")
	}
	host := strings.ToLower(strings.TrimSpace(hubHostName))
	if host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("api: hub host name %q is not a host name", hubHostName)
	}
	ts := &telemetryService{hub: &hubService{a: a, hosts: []string{host}}, events: events}
	e := hubEndpoint{method: http.MethodGet, pattern: "/messages/events", right: RightServiceConnect, noun: "telemetry", serve: ts.readEvents}
	if err := a.router.handle(e.method, e.pattern, ts.hub.handler(e)); err != nil {
		return fmt.Errorf("api: mount telemetry API: %w", err)
	}
	return nil
}

// eventsQuery is a parsed GET /messages/events query.
type eventsQuery struct {
	after  int64
	latest bool
	filter telemetry.Filter
	limit  int
	wait   time.Duration
}

// parseEventsQuery reads and checks the query parameters.
func parseEventsQuery(r *http.Request) (eventsQuery, error) {
	q := r.URL.Query()
	out := eventsQuery{limit: DefaultEventsLimit}
	switch v := strings.TrimSpace(q.Get("after")); {
	case v == "":
	case strings.EqualFold(v, eventsAfterLatest):
		out.latest = true
	default:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return out, badRequest("after %.32q is neither a seq (a number from 0) nor %q", v, eventsAfterLatest)
		}
		out.after = n
	}
	if v := strings.TrimSpace(q.Get("limit")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxEventsLimit {
			return out, badRequest("limit %.32q is not a number from 1 to %d", v, MaxEventsLimit)
		}
		out.limit = n
	}
	if v := strings.TrimSpace(q.Get("wait")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > int(MaxEventsWait/time.Second) {
			return out, badRequest("wait %.32q is not a number of seconds from 0 to %d", v, int(MaxEventsWait/time.Second))
		}
		out.wait = time.Duration(n) * time.Second
	}
	out.filter = telemetry.Filter{DeviceID: q.Get("deviceId"), ModuleID: q.Get("moduleId")}
	if out.filter.DeviceID != "" && !telemetry.ValidID(out.filter.DeviceID) {
		return out, badRequest("deviceId %.64q is not a valid device ID", out.filter.DeviceID)
	}
	if out.filter.ModuleID != "" {
		if out.filter.DeviceID == "" {
			return out, badRequest("moduleId needs deviceId")
		}
		if !telemetry.ValidID(out.filter.ModuleID) {
			return out, badRequest("moduleId %.64q is not a valid module ID", out.filter.ModuleID)
		}
	}
	return out, nil
}

// readEvents is GET /messages/events.
func (ts *telemetryService) readEvents(w http.ResponseWriter, r *http.Request) error {
	q, err := parseEventsQuery(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if q.latest {
		st, err := ts.events.Stats(ctx)
		if err != nil {
			return err
		}
		q.after = st.LastSeq
	}
	msgs, err := ts.events.Read(ctx, q.after, q.filter, q.limit)
	if err != nil {
		return err
	}
	if len(msgs) == 0 && q.wait > 0 {
		if msgs, err = ts.wait(ctx, q); err != nil {
			return err
		}
	}
	out := make([]EventMessage, len(msgs))
	cursor := q.after
	for i, m := range msgs {
		out[i] = EventMessage{Seq: m.Seq, DeviceID: m.DeviceID, ModuleID: m.ModuleID, EnqueuedTime: m.EnqueuedTime,
			SystemProperties: m.Annotations(), Properties: m.Properties, Body: m.Body}
		if out[i].Properties == nil {
			out[i].Properties = map[string]string{}
		}
		if out[i].Body == nil {
			out[i].Body = []byte{}
		}
		cursor = m.Seq
	}
	w.Header().Set(HeaderEventsCursor, strconv.FormatInt(cursor, 10))
	ts.hub.a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// wait blocks until a message after q.after matching q.filter arrives (it
// then reads up to q.limit of them), q.wait passes or the request ends
// (both give no messages).
func (ts *telemetryService) wait(ctx context.Context, q eventsQuery) ([]telemetry.Message, error) {
	wctx, cancel := context.WithTimeout(ctx, q.wait)
	defer cancel()
	err := ts.events.Follow(wctx, q.after, q.filter, func(telemetry.Message) error { return errEventArrived })
	switch {
	case errors.Is(err, errEventArrived):
		return ts.events.Read(ctx, q.after, q.filter, q.limit)
	case wctx.Err() != nil:
		return nil, nil // waited q.wait for nothing, or the caller left
	case err != nil:
		return nil, err
	}
	return nil, nil
}
