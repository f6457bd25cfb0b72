package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/telemetry"
)

// monitorTime is the enqueued time of the messages the monitor tests publish.
var monitorTime = time.Date(2031, 5, 6, 7, 8, 9, 500, time.UTC)

// publish appends a telemetry message to the stack's endpoint.
func (s *hubStack) publish(t *testing.T, deviceID, moduleID, bag, body string) {
	t.Helper()
	m, err := telemetry.NewMessage(deviceID, moduleID, bag, []byte(body), monitorTime)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.events.Append(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

func TestMonitorCommand(t *testing.T) {
	s := newHubStack(t)
	s.publish(t, "dev-a", "", "%24.mid=m1&%24.ct=application%2Fjson&temp%20unit=C", `{"temp":21.5}`)
	s.publish(t, "dev-b", "", "", "\x00\x01\x02")
	s.publish(t, "dev-a", "mod-1", "", "line one\nline two")

	out := s.run(t, "monitor", "--from-start", "--count", "3")
	want := `[1] 2031-05-06T07:08:09.0000005Z from device dev-a
  system properties: content-type=application/json; iothub-connection-device-id=dev-a; iothub-enqueuedtime=2031-05-06T07:08:09.0000005Z; iothub-message-source=Telemetry; message-id=m1
  properties: temp unit=C
  body: {"temp":21.5}
[2] 2031-05-06T07:08:09.0000005Z from device dev-b
  system properties: iothub-connection-device-id=dev-b; iothub-enqueuedtime=2031-05-06T07:08:09.0000005Z; iothub-message-source=Telemetry
  properties: -
  body: AAEC (base64)
[3] 2031-05-06T07:08:09.0000005Z from module dev-a/mod-1
  system properties: iothub-connection-device-id=dev-a; iothub-connection-module-id=mod-1; iothub-enqueuedtime=2031-05-06T07:08:09.0000005Z; iothub-message-source=Telemetry
  properties: -
  body: line one line two
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("monitor (-want +got):\n%s", diff)
	}

	out = s.run(t, "monitor", "--from-start", "--device", "dev-b", "--count", "1", "-o", "json")
	if strings.Count(out, "\n") != 1 {
		t.Errorf("JSON output is not one line per message: %q", out)
	}
	got := decodeJSON[monitoredMessage](t, out)
	wantMsg := monitoredMessage{Seq: 2, DeviceID: "dev-b", EnqueuedTime: monitorTime, Body: "AAEC", BodyEncoding: bodyBase64,
		SystemProperties: map[string]string{"iothub-connection-device-id": "dev-b", "iothub-enqueuedtime": "2031-05-06T07:08:09.0000005Z", "iothub-message-source": "Telemetry"},
		Properties:       map[string]string{}}
	if diff := cmp.Diff(wantMsg, got); diff != "" {
		t.Errorf("JSON message (-want +got):\n%s", diff)
	}
	out = s.run(t, "monitor", "--from-start", "--device", "dev-a", "--module", "mod-1", "--count", "1", "-o", "json")
	if m := decodeJSON[monitoredMessage](t, out); m.Seq != 3 || m.ModuleID != "mod-1" || m.Body != "line one\nline two" || m.BodyEncoding != bodyText {
		t.Errorf("module message %+v", m)
	}

	// From the end of the stream nothing old is printed; --timeout ends it.
	stdout, stderr, err := runCLI(t, nil, "--data-dir", s.dir, "monitor", "--timeout", "1s")
	if err != nil || stdout != "" || !strings.Contains(stderr, "Stopped after 1s.") || !strings.Contains(stderr, "0 messages received.") ||
		!strings.Contains(stderr, "Monitoring the telemetry of all devices on hub "+stackHost+" from its end") {
		t.Errorf("monitor from the end: out %q err %q %v", stdout, stderr, err)
	}

	// A message published while monitor waits is printed.
	done := make(chan string, 1)
	go func() {
		out, _, _ := runCLI(t, nil, "--data-dir", s.dir, "monitor", "--device", "dev-c", "--from-start", "--count", "1", "--timeout", "1m", "-o", "json")
		done <- out
	}()
	s.publish(t, "dev-c", "", "", "live")
	select {
	case out := <-done:
		if m := decodeJSON[monitoredMessage](t, out); m.DeviceID != "dev-c" || m.Body != "live" {
			t.Errorf("live message %+v", m)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("monitor did not end")
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"module without device", []string{"monitor", "--module", "m"}, "--module needs --device"},
		{"negative timeout", []string{"monitor", "--timeout", "-1s"}, "--timeout -1s"},
		{"negative count", []string{"monitor", "--count", "-1"}, "--count -1"},
		{"invalid device", []string{"monitor", "--device", "a/b", "--timeout", "1s"}, "ArgumentInvalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.runErr(t, tc.args...); !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	// A policy without ServiceConnect is refused.
	env := map[string]string{envHubConnectionString: s.inst.ConnectionString("registryReadWrite")}
	if _, _, err := runCLI(t, env, "--data-dir", s.dir, "monitor", "--timeout", "10s"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("monitor without ServiceConnect: %v", err)
	}
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{"", true}, {"plain", true}, {"tab\tand\r\nlines", true}, {"ünïcödé ✓", true},
		{"\x00", false}, {"bell\a", false}, {"\xff\xfe", false}, {"esc\x1b[0m", false},
	} {
		if got := printable([]byte(tc.body)); got != tc.want {
			t.Errorf("printable(%q) = %v, want %v", tc.body, got, tc.want)
		}
	}
}

// TestHubCLIEndToEnd drives a real server with the CLI only: it creates a
// device, shows it, tags its twin, watches its telemetry arrive over MQTT
// with monitor, and explains a refused connection with device why.
func TestHubCLIEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	run := func(args ...string) string {
		t.Helper()
		out, stderr, err := runCLI(t, nil, append([]string{"--data-dir", dir}, args...)...)
		if err != nil {
			t.Fatalf("muster %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return out
	}

	created := decodeJSON[registry.Device](t, run("device", "create", "--device-id", "cli-dev", "-o", "json"))
	key := created.Authentication.SymmetricKey.PrimaryKey
	if key == "" {
		t.Fatalf("created device has no key: %+v", created)
	}
	out := run("device", "show", "cli-dev")
	checkRow(t, out, "Device ID", "cli-dev")
	checkRow(t, out, "Authentication", "sas")

	out = run("twin", "update", "cli-dev", "--tags", `{"site":"lab"}`)
	checkRow(t, out, "Tags", `{"site":"lab"}`)
	checkRow(t, run("twin", "show", "cli-dev"), "Tags", `{"site":"lab"}`)

	type result struct {
		out, stderr string
		err         error
	}
	done := make(chan result, 1)
	go func() {
		out, stderr, err := runCLI(t, nil, "--data-dir", dir, "monitor", "--device", "cli-dev", "--from-start", "--count", "1", "--timeout", "30s", "-o", "json")
		done <- result{out, stderr, err}
	}()
	dev, rc := connectHub(t, ts, ts.ep.HubHostName, "cli-dev", key)
	if rc != 0 {
		t.Fatalf("CONNACK %d for cli-dev", rc)
	}
	dev.publish(t, "devices/cli-dev/messages/events/%24.ct=application%2Fjson&alert=true", 1, `{"temp":30}`)
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("monitor did not end")
	}
	if r.err != nil {
		t.Fatalf("monitor: %v\n%s", r.err, r.stderr)
	}
	var m monitoredMessage
	if err := json.Unmarshal([]byte(r.out), &m); err != nil {
		t.Fatalf("monitor printed %q (stderr %q): %v", r.out, r.stderr, err)
	}
	if m.DeviceID != "cli-dev" || m.Body != `{"temp":30}` || m.Properties["alert"] != "true" ||
		m.SystemProperties["content-type"] != "application/json" || m.EnqueuedTime.IsZero() {
		t.Errorf("monitored message %+v", m)
	}

	// A connection with the wrong key is refused and explained.
	wrong := strings.Repeat("A", 43) + "="
	if c, rc := connectHub(t, ts, ts.ep.HubHostName, "cli-dev", wrong); c != nil || rc == 0 {
		t.Fatalf("CONNACK %d with a wrong key", rc)
	}
	out = run("device", "why", "cli-dev")
	if !strings.Contains(out, "hub-mqtt") || !strings.Contains(out, "denied") || !strings.Contains(out, "sas_signature_mismatch") {
		t.Errorf("why shows no refused hub connection:\n%s", out)
	}
}
