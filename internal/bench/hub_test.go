package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/muster-iot/muster/internal/client/hubservice"
)

// TestParseHubPhases accepts lists and "all" and names a bad phase.
func TestParseHubPhases(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"all", []string{HubPhaseMemory, HubPhaseConnect, HubPhaseTelemetry}, ""},
		{" ALL ", []string{HubPhaseMemory, HubPhaseConnect, HubPhaseTelemetry}, ""},
		{"telemetry,connect", []string{HubPhaseTelemetry, HubPhaseConnect}, ""},
		{"Memory", []string{HubPhaseMemory}, ""},
		{"connect,latency", nil, `phase "latency"`},
		{"connect,connect", nil, `phase "connect" listed twice`},
		{"", nil, `phase ""`},
	}
	for _, tc := range tests {
		got, err := ParseHubPhases(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("ParseHubPhases(%q): error %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseHubPhases(%q): %v", tc.in, err)
		} else if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseHubPhases(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

// TestHubConfigValidate checks the defaults and that every bad setting is
// named, all at once.
func TestHubConfigValidate(t *testing.T) {
	if err := DefaultHubConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*HubConfig)
		want []string
	}{
		{"no phase", func(c *HubConfig) { c.Phases = nil }, []string{"no phase"}},
		{"unknown phase", func(c *HubConfig) { c.Phases = []string{"connect", "soak"} }, []string{`phase "soak"`}},
		{"zero devices", func(c *HubConfig) { c.Devices = 0 }, []string{"devices 0"}},
		{"too many idle", func(c *HubConfig) { c.IdleConnections = c.Devices + 1 }, []string{"idle connections 10001: more than the 10000 devices"}},
		{"idle only matters with the memory phase", func(c *HubConfig) {
			c.Phases, c.IdleConnections = []string{HubPhaseConnect}, c.Devices+1
		}, nil},
		{"few devices for the connect concurrency", func(c *HubConfig) { c.Devices, c.IdleConnections = 20, 20 }, []string{"at least twice its concurrency (16)"}},
		{"more publishers than devices", func(c *HubConfig) {
			c.Phases, c.Devices, c.Publishers = []string{HubPhaseTelemetry}, 4, 8
		}, []string{"publishers 8: more than the 4 devices"}},
		{"several at once", func(c *HubConfig) {
			c.InFlight, c.PayloadBytes, c.Duration, c.Timeout, c.KeyExchange, c.Settle = 0, -1, 0, 0, "rsa", -1
		}, []string{"in-flight 0", "payload bytes -1", "duration 0s", "timeout 0s", `key exchange "rsa"`, "settle -1ns"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultHubConfig()
			tc.mod(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v, want ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestHubVerdicts compares the figures with the targets: ratios need the
// peer, memory does not; a phase that stopped early decides nothing.
func TestHubVerdicts(t *testing.T) {
	phase := func(rate float64) *PhaseReport { return &PhaseReport{Window: WindowReport{RatePerSecond: rate}} }
	meets := func(v bool) *bool { return &v }
	rep := &HubReport{
		Muster:    BrokerReport{Connect: phase(900), Telemetry: phase(30000), Idle: &IdleReport{Connected: 10, BytesPerConnection: 40000}},
		Mosquitto: &BrokerReport{Connect: phase(1000), Telemetry: phase(80000), Idle: &IdleReport{Connected: 10, BytesPerConnection: 9000}},
	}
	want := []HubVerdict{
		{Figure: "TLS MQTT connects", Unit: "connects/s", Muster: 900, Mosquitto: 1000, Ratio: 0.9, Target: ">= 0.8 x mosquitto", MeetsTarget: meets(true)},
		{Figure: "QoS 1 telemetry", Unit: "messages/s", Muster: 30000, Mosquitto: 80000, Ratio: 0.375, Target: ">= 0.5 x mosquitto", MeetsTarget: meets(false)},
		{Figure: "memory per idle connection", Unit: "bytes", Muster: 40000, Mosquitto: 9000, Target: "<= 32768 bytes", MeetsTarget: meets(false)},
	}
	if diff := cmp.Diff(want, hubVerdicts(rep)); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}

	// Without the peer only the memory verdict is decided.
	rep.Mosquitto = nil
	rep.Muster.Idle.BytesPerConnection = 20000
	got := hubVerdicts(rep)
	if got[0].MeetsTarget != nil || got[1].MeetsTarget != nil || got[0].Ratio != 0 {
		t.Errorf("ratios without the peer: %+v %+v, want undecided", got[0], got[1])
	}
	if got[2].MeetsTarget == nil || !*got[2].MeetsTarget {
		t.Errorf("memory verdict %+v, want met", got[2])
	}

	// A stopped phase and a skipped memory phase decide nothing.
	rep.Mosquitto = &BrokerReport{Connect: phase(1000)}
	rep.Muster.Connect.Error = "publisher 0 stopped"
	rep.Muster.Idle = &IdleReport{Skipped: "no PID"}
	got = hubVerdicts(rep)
	if got[0].MeetsTarget != nil || got[2].MeetsTarget != nil {
		t.Errorf("stopped/skipped phases: %+v %+v, want undecided", got[0], got[2])
	}
}

// TestHubErrorKind names the hub bench's failures.
func TestHubErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&ConnackError{Code: 4}, "connack_4"},
		{fmt.Errorf("create device d: %w", &hubservice.Error{Status: 409}), "status_409"},
		{fmt.Errorf("id 3: %w", errNoAck), KindNoAck},
		{fmt.Errorf("%w: x", errNoPong), KindNoPong},
		{fmt.Errorf("%w: bad", errMQTTProtocol), KindMQTTProtocol},
		{fmt.Errorf("%w: read: %w", errMQTTClosed, syscall.ECONNRESET), KindReset},
		{fmt.Errorf("%w: read: %w", errMQTTClosed, io.EOF), KindReset},
		{errMQTTClosed, KindMQTTClosed},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), KindTimeout},
		{errors.New("something"), KindOther},
	}
	for _, tc := range tests {
		if got := hubErrorKind(tc.err); got != tc.want {
			t.Errorf("hubErrorKind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestTelemetryPayload checks the message body: the size asked for,
// printable.
func TestTelemetryPayload(t *testing.T) {
	for _, n := range []int{0, 1, 256, 4096} {
		b := telemetryPayload(n)
		if len(b) != n {
			t.Fatalf("payload of %d bytes has %d", n, len(b))
		}
		for _, c := range b {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("payload byte %#x is not printable", c)
			}
		}
	}
}

// TestHubTargetSpreadsConnections: with several endpoints (instances of
// one hub), the probe tries each and the connections of a phase take them
// in turn.
func TestHubTargetSpreadsConnections(t *testing.T) {
	brokers := []*fakeBroker{startFakeBroker(t, 0, ackSame, true), startFakeBroker(t, 0, ackSame, true)}
	tgt := &hubTarget{rep: &BrokerReport{Name: "muster"}, endpoints: []mqttEndpoint{brokers[0].ep, brokers[1].ep}, identities: 1,
		cred: func(int) mqttCredential { return mqttCredential{ClientID: "d", Username: "u", Password: "p"} }}
	ctx := ctxTimeout(t, time.Minute)
	if _, err := probe(ctx, tgt, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for i, b := range brokers {
		if n := b.connects.Load(); n != 1 {
			t.Fatalf("probe: %d connects to endpoint %d; want 1 to each", n, i)
		}
	}
	r := &hubRunner{cfg: HubConfig{Concurrency: 1, Duration: 50 * time.Millisecond, Timeout: 10 * time.Second}, out: io.Discard}
	pr, err := r.connectPhase(ctx, tgt)
	if err != nil {
		t.Fatal(err)
	}
	// One connect at a time, in turn: the counts differ by at most one
	// (the last one started may have been cut off by the window's end
	// before its CONNECT).
	a, b := brokers[0].connects.Load()-1, brokers[1].connects.Load()-1
	if n := int64(pr.Started); a+b > n || a+b < n-1 || a-b > 1 || b-a > 1 || b == 0 {
		t.Fatalf("connects %d and %d for %d started; want them alternating", a, b, pr.Started)
	}
}
