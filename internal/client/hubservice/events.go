package hubservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Limits of the telemetry read (GET /messages/events).
const (
	// MaxPollWait is the longest one read waits for a new message.
	MaxPollWait = 60 * time.Second
	// MaxEventsLimit is the most messages one read returns.
	MaxEventsLimit = 1000
)

// headerCursor carries the after of the next read.
const headerCursor = "x-muster-cursor"

// Message is one message of the hub's built-in telemetry endpoint.
type Message struct {
	// Seq is the message's position in the stream.
	Seq int64 `json:"seq"`
	// DeviceID and ModuleID name the sender (ModuleID is empty for a device).
	DeviceID string `json:"deviceId"`
	ModuleID string `json:"moduleId,omitempty"`
	// EnqueuedTime is when the hub accepted the message.
	EnqueuedTime time.Time `json:"enqueuedTime"`
	// SystemProperties are the message's system properties and the hub's
	// annotations (iothub-connection-device-id, iothub-enqueuedtime, …).
	SystemProperties map[string]string `json:"systemProperties"`
	// Properties are the application properties.
	Properties map[string]string `json:"properties"`
	// Body is the payload.
	Body []byte `json:"body"`
}

// EventsQuery selects the messages of one read.
type EventsQuery struct {
	// After returns only messages with a higher seq (0: from the oldest
	// kept). It is ignored when Latest is set.
	After int64
	// Latest starts at the end of the stream: only messages appended
	// after the read began are returned.
	Latest bool
	// DeviceID, when not empty, keeps only that device's messages;
	// ModuleID, which needs DeviceID, only that module's.
	DeviceID, ModuleID string
	// Limit caps the messages returned (0: the hub's default, 100).
	Limit int
	// Wait is how long the hub waits for a message when none is newer
	// (whole seconds, at most MaxPollWait; 0: answer at once).
	Wait time.Duration
}

// ReadEvents reads the built-in telemetry endpoint once: the messages q
// selects, oldest first, and the cursor to pass as After next time (the
// last message's seq, or where the read started when none came).
func (c *Client) ReadEvents(ctx context.Context, q EventsQuery) ([]Message, int64, error) {
	switch {
	case q.After < 0:
		return nil, 0, fmt.Errorf("read events: after %d is negative", q.After)
	case q.Limit < 0 || q.Limit > MaxEventsLimit:
		return nil, 0, fmt.Errorf("read events: limit %d is not from 0 to %d", q.Limit, MaxEventsLimit)
	case q.Wait < 0 || q.Wait > MaxPollWait:
		return nil, 0, fmt.Errorf("read events: wait %s is not from 0 to %s", q.Wait, MaxPollWait)
	case q.ModuleID != "" && q.DeviceID == "":
		return nil, 0, errors.New("read events: a module ID needs a device ID")
	}
	v := url.Values{}
	if q.Latest {
		v.Set("after", "latest")
	} else {
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	if q.DeviceID != "" {
		v.Set("deviceId", q.DeviceID)
	}
	if q.ModuleID != "" {
		v.Set("moduleId", q.ModuleID)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Wait > 0 {
		v.Set("wait", strconv.Itoa(int((q.Wait+time.Second-1)/time.Second)))
	}
	var msgs []Message
	resp, err := c.call(ctx, request{method: http.MethodGet, segs: []string{segMessages, segEvents}, query: v}, &msgs)
	if err != nil {
		return nil, 0, err
	}
	cursor := q.After
	if h := resp.header.Get(headerCursor); h != "" {
		n, err := strconv.ParseInt(h, 10, 64)
		if err != nil || n < 0 {
			return nil, 0, fmt.Errorf("read events: header %s %.32q is not a seq", headerCursor, h)
		}
		cursor = n
	} else if q.Latest {
		return nil, 0, fmt.Errorf("read events: the hub sent no %s header, so where the stream ends is unknown", headerCursor)
	}
	for _, m := range msgs {
		if !q.Latest && m.Seq <= q.After {
			return nil, 0, fmt.Errorf("read events: the hub returned message %d, which is not after %d", m.Seq, q.After)
		}
		cursor = max(cursor, m.Seq)
	}
	return msgs, cursor, nil
}

// Follow calls fn for every message q selects and then for each new one as
// it arrives, in order, long-polling up to q.Wait (MaxPollWait when 0) per
// read, until ctx ends (it returns ctx.Err()), fn returns an error (it
// returns that error) or a read fails.
func (c *Client) Follow(ctx context.Context, q EventsQuery, fn func(Message) error) error {
	if q.Wait == 0 {
		q.Wait = MaxPollWait
	}
	for {
		msgs, cursor, err := c.ReadEvents(ctx, q)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		for _, m := range msgs {
			if err := fn(m); err != nil {
				return err
			}
		}
		q.After, q.Latest = cursor, false
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}
