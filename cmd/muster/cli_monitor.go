package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/client/hubservice"
)

// monitorPollWait is how long each read of "muster monitor" waits for a
// new message.
const monitorPollWait = 30 * time.Second

// Body encodings of monitor's JSON output.
const (
	bodyText   = "text"
	bodyBase64 = "base64"
)

// errMonitorDone stops monitor after --count messages.
var errMonitorDone = errors.New("monitor: message count reached")

// monitoredMessage is one telemetry message as monitor prints it.
type monitoredMessage struct {
	Seq              int64             `json:"seq"`
	DeviceID         string            `json:"deviceId"`
	ModuleID         string            `json:"moduleId,omitempty"`
	EnqueuedTime     time.Time         `json:"enqueuedTime"`
	SystemProperties map[string]string `json:"systemProperties"`
	Properties       map[string]string `json:"properties"`
	// Body is the payload as text when it is printable UTF-8, else base64.
	Body string `json:"body"`
	// BodyEncoding is "text" or "base64".
	BodyEncoding string `json:"bodyEncoding"`
}

func newMonitoredMessage(m hubservice.Message) monitoredMessage {
	out := monitoredMessage{Seq: m.Seq, DeviceID: m.DeviceID, ModuleID: m.ModuleID, EnqueuedTime: m.EnqueuedTime.UTC(),
		SystemProperties: m.SystemProperties, Properties: m.Properties, Body: string(m.Body), BodyEncoding: bodyText}
	if !printable(m.Body) {
		out.Body, out.BodyEncoding = base64.StdEncoding.EncodeToString(m.Body), bodyBase64
	}
	if out.SystemProperties == nil {
		out.SystemProperties = map[string]string{}
	}
	if out.Properties == nil {
		out.Properties = map[string]string{}
	}
	return out
}

// printable reports whether b is UTF-8 text without control characters
// other than tab, CR and LF.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
	}
	return true
}

func (c *cli) monitorCmd() *cobra.Command {
	var (
		deviceID, moduleID string
		fromStart          bool
		timeout            time.Duration
		count              int
	)
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Print device-to-cloud telemetry as it arrives at the hub's built-in endpoint",
		Long: `Tail the hub's built-in telemetry endpoint: print each device-to-cloud message
as it arrives (sender, enqueued time, system and application properties, and
the body as text, or base64 when it is not printable text). It starts at the
end of the stream, or at its oldest kept message with --from-start, and runs
until interrupted, --timeout passes or --count messages were printed. With
--output json it prints one JSON object per message and line.

It reads GET /messages/events of the hub service API (a Muster extension)
with a hub connection string that has the ServiceConnect right.`,
		Example: `  muster monitor
  muster monitor --device sensor-1 --from-start --timeout 1m
  muster monitor -o json | jq .body`,
		Args: cobra.NoArgs,
	}
	h := addHubFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		switch {
		case timeout < 0:
			return fmt.Errorf("--timeout %s: must not be negative", timeout)
		case count < 0:
			return fmt.Errorf("--count %d: must not be negative", count)
		case moduleID != "" && deviceID == "":
			return errors.New("--module needs --device")
		}
		hub, err := c.hubService(h)
		if err != nil {
			return err
		}
		q := hubservice.EventsQuery{DeviceID: deviceID, ModuleID: moduleID, Latest: !fromStart, Wait: monitorPollWait}
		return c.monitor(cmd.Context(), hub, q, timeout, count)
	}
	f := cmd.Flags()
	f.StringVar(&deviceID, "device", "", "print only this device's messages")
	f.StringVar(&moduleID, "module", "", "print only this module's messages (needs --device)")
	f.BoolVar(&fromStart, "from-start", false, "start at the oldest message the endpoint keeps, not at its end")
	f.DurationVar(&timeout, "timeout", 0, "stop after this long (0: run until interrupted)")
	f.IntVar(&count, "count", 0, "stop after this many messages (0: no limit)")
	return cmd
}

// monitor follows the endpoint and prints each message until ctx ends,
// timeout passes (0: never) or count messages were printed (0: no limit).
func (c *cli) monitor(ctx context.Context, hub *hubservice.Client, q hubservice.EventsQuery, timeout time.Duration, count int) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	from := "its end"
	if !q.Latest {
		from = "its oldest kept message"
	}
	who := "all devices"
	switch {
	case q.ModuleID != "":
		who = "module " + q.DeviceID + "/" + q.ModuleID
	case q.DeviceID != "":
		who = "device " + q.DeviceID
	}
	c.note("Monitoring the telemetry of %s on hub %s from %s; press Ctrl-C to stop.", who, hub.HostName(), from)
	n := 0
	err := hub.Follow(ctx, q, func(m hubservice.Message) error {
		if err := c.printMessage(newMonitoredMessage(m)); err != nil {
			return err
		}
		n++
		if count > 0 && n >= count {
			return errMonitorDone
		}
		return nil
	})
	switch {
	case errors.Is(err, errMonitorDone):
	case errors.Is(err, context.DeadlineExceeded) && timeout > 0 && ctx.Err() != nil:
		c.note("Stopped after %s.", timeout)
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
	case err != nil:
		return fmt.Errorf("monitor telemetry: %w", err)
	}
	c.note("%d messages received.", n)
	return nil
}

// printMessage writes one message: a JSON line with --output json, else a
// block of text.
func (c *cli) printMessage(m monitoredMessage) error {
	var b bytes.Buffer
	if c.output == outputJSON {
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(m); err != nil {
			return fmt.Errorf("encode message %d: %w", m.Seq, err)
		}
	} else {
		from := "device " + m.DeviceID
		if m.ModuleID != "" {
			from = "module " + m.DeviceID + "/" + m.ModuleID
		}
		fmt.Fprintf(&b, "[%d] %s from %s\n", m.Seq, m.EnqueuedTime.Format(time.RFC3339Nano), from)
		fmt.Fprintf(&b, "  system properties: %s\n", propertiesText(m.SystemProperties))
		fmt.Fprintf(&b, "  properties: %s\n", propertiesText(m.Properties))
		body := m.Body
		if m.BodyEncoding == bodyBase64 {
			body += " (base64)"
		}
		fmt.Fprintf(&b, "  body: %s\n", oneLine(body))
	}
	if _, err := c.stdout.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// propertiesText lists properties as "name=value" pairs in name order.
func propertiesText(props map[string]string) string {
	if len(props) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(props))
	for _, k := range slices.Sorted(maps.Keys(props)) {
		parts = append(parts, oneLine(k)+"="+oneLine(props[k]))
	}
	return strings.Join(parts, "; ")
}
