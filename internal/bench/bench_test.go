package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseModes(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"symmetric", []string{ModeSymmetric}, false},
		{"X509", []string{ModeX509}, false},
		{" both ", []string{ModeSymmetric, ModeX509}, false},
		{"tpm", nil, true},
		{"", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseModes(tc.in)
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
				t.Fatalf("ParseModes(%q) error %v, want error %v (ErrInvalidConfig)", tc.in, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("modes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	valid := Config{Modes: []string{ModeSymmetric, ModeX509}, Concurrency: 64, Warmup: time.Second, Duration: 10 * time.Second}
	tests := []struct {
		name string
		mod  func(*Config)
		want []string // substrings of the error; nil for valid
	}{
		{"valid", func(*Config) {}, nil},
		{"valid with explicit devices and zero warm-up", func(c *Config) { c.Devices, c.Warmup = 5, 0 }, nil},
		{"no mode", func(c *Config) { c.Modes = nil }, []string{"no mode"}},
		{"unknown mode", func(c *Config) { c.Modes = []string{"tpm"} }, []string{`mode "tpm"`}},
		{"mode twice", func(c *Config) { c.Modes = []string{ModeX509, ModeX509} }, []string{`mode "x509" listed twice`}},
		{"negative devices", func(c *Config) { c.Devices = -1 }, []string{"devices -1"}},
		{"too many devices", func(c *Config) { c.Devices = MaxDevices + 1 }, []string{"devices 1000001"}},
		{"zero concurrency", func(c *Config) { c.Concurrency = 0 }, []string{"concurrency 0"}},
		{"concurrency above the keep-alive pool", func(c *Config) { c.Concurrency = MaxConcurrency + 1 }, []string{"concurrency 257"}},
		{"negative warm-up", func(c *Config) { c.Warmup = -time.Second }, []string{"warm-up -1s"}},
		{"zero duration", func(c *Config) { c.Duration = 0 }, []string{"duration 0s"}},
		{"negative ceiling duration", func(c *Config) { c.CeilingDuration = -time.Second }, []string{"ceiling duration -1s"}},
		{"timeout too long", func(c *Config) { c.Timeout = time.Hour }, []string{"timeout 1h0m0s"}},
		{"valid rounds", func(c *Config) { c.Rounds = 4 }, nil},
		{"negative rounds", func(c *Config) { c.Rounds = -1 }, []string{"rounds -1"}},
		{"too many rounds", func(c *Config) { c.Rounds = MaxRounds + 1 }, []string{"rounds 101"}},
		{"rounds shorter than their minimum", func(c *Config) { c.Rounds, c.CeilingDuration = 40, 2*time.Second }, []string{"rounds 40: windows of 50ms"}},
		{"short rounds without ceilings", func(c *Config) { c.Rounds, c.SkipCeilings = 100, true }, nil},
		{"every problem at once", func(c *Config) { c.Concurrency, c.Duration = 0, 0 }, []string{"concurrency 0", "duration 0s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid
			tc.mod(&c)
			err := c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if _, err := Run(context.Background(), Server{}, c); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Run accepted the invalid configuration: %v", err)
			}
		})
	}
}

func TestRunNeedsAServer(t *testing.T) {
	cfg := Config{Modes: []string{ModeSymmetric}, Concurrency: 1, Duration: time.Second}
	_, err := Run(context.Background(), Server{DeviceEndpoint: "127.0.0.1:1", IDScope: "0ne"}, cfg)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "service client") {
		t.Fatalf("Run without a service client = %v, want ErrInvalidConfig naming it", err)
	}
}

func TestCeilingReport(t *testing.T) {
	mode := &ModeReport{Window: WindowReport{RatePerSecond: 300}}
	tests := []struct {
		name        string
		rate        float64
		target      float64
		wantRatio   float64
		wantMeeting bool
	}{
		{"above the target", 1000, 0.2, 0.3, true},
		{"exactly the target", 1500, 0.2, 0.2, true},
		{"below the target", 600, 0.6, 0.5, false},
		{"nothing measured", 0, 0.6, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ceilingReport("c", "ops/s", tc.target, mode, &Result{Window: Window{Rate: tc.rate}})
			if c.Ratio != tc.wantRatio || c.MeetsTarget != tc.wantMeeting || c.Target != tc.target {
				t.Errorf("ratio %v meets %v target %v; want %v, %v, %v", c.Ratio, c.MeetsTarget, c.Target, tc.wantRatio, tc.wantMeeting, tc.target)
			}
		})
	}
}

func TestWindowReport(t *testing.T) {
	w := Window{
		Elapsed: 1500 * time.Millisecond, Succeeded: 30, Failed: 2, Rate: 20,
		Latency: Summary{Count: 30, Min: 1500 * time.Microsecond, Mean: 2 * time.Millisecond, P50: 2 * time.Millisecond, P90: 3 * time.Millisecond, P99: 4250 * time.Microsecond, Max: 5 * time.Millisecond},
	}
	want := WindowReport{Seconds: 1.5, Succeeded: 30, Failed: 2, RatePerSecond: 20,
		LatencyMs: LatencyMs{Count: 30, Min: 1.5, Mean: 2, P50: 2, P90: 3, P99: 4.25, Max: 5}}
	if diff := cmp.Diff(want, windowReport(w)); diff != "" {
		t.Errorf("windowReport (-want +got):\n%s", diff)
	}
}
