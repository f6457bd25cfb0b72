package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/muster-iot/muster/internal/bench"
	"github.com/muster-iot/muster/internal/client/dpsservice"
	"github.com/muster-iot/muster/internal/client/hubservice"
	"github.com/muster-iot/muster/internal/config"
	"github.com/muster-iot/muster/internal/instance"
)

// benchRoot is the muster command tree with the bench command, whether or
// not main.go already adds it.
func benchRoot(stdout, stderr io.Writer) *cobra.Command {
	root := newRoot(stdout, stderr, func(string) (string, bool) { return "", false })
	for _, c := range root.Commands() {
		if c.Name() == "bench" {
			return root
		}
	}
	root.AddCommand(newBenchCmd())
	return root
}

// startBenchServer runs `muster serve` in-process on loopback ports chosen
// by the kernel and returns its endpoints; it stops with the test.
func startBenchServer(t testing.TB, dir string) instance.Endpoints {
	t.Helper()
	return startBenchServerOn(t, dir, "")
}

// startBenchServerOn is startBenchServer on the store st ("": the
// default SQLite file in dir, else a --store value such as a
// postgres:// DSN).
func startBenchServerOn(t testing.TB, dir, st string) instance.Endpoints {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir, cfg.HTTPSAddr, cfg.MQTTAddr, cfg.LogLevel, cfg.Store = dir, "127.0.0.1:0", "127.0.0.1:0", "error", st
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan instance.Endpoints, 1)
	go func() {
		done <- serve(ctx, cfg, io.Discard, io.Discard, func(ep instance.Endpoints) { ready <- ep })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("server did not stop within 30s")
		}
	})
	select {
	case ep := <-ready:
		return ep
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start within 60s")
	}
	return instance.Endpoints{}
}

// benchRoots returns the pool of the in-process server's CA.
func benchRoots(t testing.TB, ep instance.Endpoints) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(ep.CACertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return roots
}

// benchDPS is the DPS of the in-process server ep as `bench register`
// sees it.
func benchDPS(t testing.TB, ep instance.Endpoints) bench.Server {
	t.Helper()
	roots := benchRoots(t, ep)
	svc, err := dpsservice.New(dpsservice.Options{ConnectionString: ep.DPSServiceConnectionString, Server: ep.HTTPSAddr, RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	return bench.Server{Service: svc, DeviceEndpoint: ep.DPSDeviceEndpoint, IDScope: ep.IDScope, RootCAs: roots}
}

// benchHub is the hub of the in-process server ep as `bench hub` sees it.
func benchHub(t testing.TB, ep instance.Endpoints) bench.HubServer {
	t.Helper()
	roots := benchRoots(t, ep)
	hub, err := hubservice.New(hubservice.Options{ConnectionString: ep.HubConnectionString, Server: ep.HTTPSAddr, RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	return bench.HubServer{Service: hub, HostName: ep.HubHostName, MQTTEndpoint: ep.MQTTAddr, RootCAs: roots}
}

// TestBenchRegisterEndToEnd runs a short bench of both modes against a
// real server: every device ends assigned, nothing fails, both ceilings
// are measured, and the bench cleans up its enrollment groups.
func TestBenchRegisterEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ep := startBenchServer(t, dir)
	var stdout, stderr bytes.Buffer
	root := benchRoot(&stdout, &stderr)
	root.SetArgs([]string{"--data-dir", dir, "--output", "json", "bench", "register",
		"--devices", "50", "--concurrency", "4", "--duration", "5s", "--warmup", "0s", "--ceiling-duration", "2s"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("bench register: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decode the JSON report: %v\n%s", err, stdout.String())
	}
	if len(rep.Modes) != 2 {
		t.Fatalf("report has %d modes, want 2:\n%s", len(rep.Modes), stdout.String())
	}
	for i, want := range []string{bench.ModeSymmetric, bench.ModeX509} {
		m := rep.Modes[i]
		t.Run(want, func(t *testing.T) {
			type counts struct {
				Mode                                string
				Devices, Started, Assigned, Errors  int
				WindowSucceeded, WindowFailed, Lats int
				ErrorsByKind                        map[string]int
			}
			got := counts{m.Mode, m.Devices, m.Started, m.Assigned, m.Errors, m.Window.Succeeded, m.Window.Failed, m.Window.LatencyMs.Count, m.ErrorsByKind}
			wantCounts := counts{want, 50, 50, 50, 0, 50, 0, 50, map[string]int{}}
			if diff := cmp.Diff(wantCounts, got); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
			if m.Window.RatePerSecond <= 0 || m.Window.LatencyMs.P50 <= 0 || m.Window.LatencyMs.P99 < m.Window.LatencyMs.P50 {
				t.Errorf("window = %+v, want a positive rate and 0 < p50 <= p99", m.Window)
			}
			ce := m.Ceiling
			if ce == nil {
				t.Fatal("no ceiling measured")
			}
			if ce.Window.RatePerSecond <= 0 || ce.Succeeded == 0 || ce.Errors != 0 {
				t.Errorf("ceiling %q = %+v, want a positive rate and no errors", ce.Name, ce)
			}
			if ce.Ratio <= 0 {
				t.Errorf("ratio %v, want > 0", ce.Ratio)
			}
		})
	}

	// The registrations are durable records, and the groups are gone.
	svc := benchDPS(t, ep).Service
	for _, m := range rep.Modes {
		for _, n := range []string{"-0", "-49"} {
			reg, err := svc.GetRegistration(ctx, m.EnrollmentGroupID+n)
			if err != nil {
				t.Errorf("registration %s%s: %v", m.EnrollmentGroupID, n, err)
			} else if reg.Status != "assigned" || reg.DeviceID != m.EnrollmentGroupID+n {
				t.Errorf("registration %s%s = %+v, want assigned with that device ID", m.EnrollmentGroupID, n, reg)
			}
		}
		if _, err := svc.GetGroup(ctx, m.EnrollmentGroupID); !errors.Is(err, dpsservice.ErrNotFound) {
			t.Errorf("enrollment group %s after the bench: %v, want not found", m.EnrollmentGroupID, err)
		}
	}
	if !strings.Contains(stderr.String(), "symmetric: enrollment group") || !strings.Contains(stderr.String(), "x509: enrollment group") {
		t.Errorf("stderr lacks the progress notes:\n%s", stderr.String())
	}

	// The table output names the ceilings and the verdicts.
	stdout.Reset()
	root = benchRoot(&stdout, &stderr)
	root.SetArgs([]string{"--data-dir", dir, "bench", "register", "--mode", "symmetric", "--devices", "5", "--concurrency", "2",
		"--warmup", "0s", "--ceiling-duration", "200ms", "--rounds", "2", "--quiet"})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("bench register (table): %v", err)
	}
	for _, want := range []string{"MODE", "symmetric", bench.CeilingHMAC, ">= 0.2", "in 2 rounds alternating with the ceiling"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table output lacks %q:\n%s", want, stdout.String())
		}
	}
}

// TestBenchRegisterFlagErrors checks that bad settings are refused, naming
// the setting, before any connection is attempted.
func TestBenchRegisterFlagErrors(t *testing.T) {
	tests := []benchFlagCase{
		{"unknown mode", []string{"--mode", "tpm"}, `mode "tpm"`},
		{"zero concurrency", []string{"--concurrency", "0"}, "concurrency 0"},
		{"too much concurrency", []string{"--concurrency", "100000"}, "concurrency 100000"},
		{"zero devices", []string{"--devices", "0"}, "--devices 0"},
		{"negative devices", []string{"--devices", "-3"}, "devices -3"},
		{"zero duration", []string{"--duration", "0s"}, "duration 0s"},
		{"negative warm-up", []string{"--warmup", "-1s"}, "warm-up -1s"},
		{"negative timeout", []string{"--timeout", "-1s"}, "timeout -1s"},
		{"zero rounds", []string{"--rounds", "0"}, "--rounds 0"},
		{"rounds too short", []string{"--rounds", "50", "--duration", "1s"}, "rounds 50: windows of 20ms"},
		{"positional argument", []string{"extra"}, `unknown command "extra"`},
	}
	runBenchFlagErrors(t, "register", tests)
}

// benchFlagCase is one refused flag combination of a bench subcommand.
type benchFlagCase struct {
	name string
	args []string
	want string // in the error
}

// runBenchFlagErrors runs `bench sub` with each case's flags and expects
// an error naming the setting, before any connection is attempted.
func runBenchFlagErrors(t *testing.T, sub string, tests []benchFlagCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := newBenchCmd()
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			cmd.SetArgs(append([]string{sub}, tc.args...))
			err := cmd.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestBenchRegisterNeedsAServer checks the error when nothing says where
// the server is.
func TestBenchRegisterNeedsAServer(t *testing.T) {
	var out bytes.Buffer
	root := benchRoot(&out, &out)
	root.SetArgs([]string{"--data-dir", t.TempDir(), "bench", "register", "--quiet"})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no DPS connection string") {
		t.Fatalf("error %v, want one saying there is no DPS connection string", err)
	}
}

// BenchmarkRegister registers b.N distinct devices per mode against an
// in-process server with the bench's defaults (64 in flight) and reports
// registrations per second. It exists to profile the server: with
// -cpuprofile, the load generator's samples carry the label
// muster.bench=load-generator, so
//
//	go test ./cmd/muster -run '^$' -bench 'Register/symmetric' -benchtime 20000x -cpuprofile cpu.out
//	go tool pprof -tagignore 'muster.bench=load-generator' -top cpu.out
//
// shows where the server's time goes. Server and load generator share one
// Go runtime here, so the rate is lower than `muster bench register`'s.
func BenchmarkRegister(b *testing.B) {
	for _, mode := range []string{bench.ModeSymmetric, bench.ModeX509} {
		b.Run(mode, func(b *testing.B) {
			dir := b.TempDir()
			ep := startBenchServer(b, dir)
			srv := benchDPS(b, ep)
			cfg := bench.Config{Modes: []string{mode}, Devices: b.N, Concurrency: bench.DefaultConcurrency, Duration: bench.MaxWindow, SkipCeilings: true}
			b.ResetTimer()
			rep, err := bench.Run(context.Background(), srv, cfg)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			m := rep.Modes[0]
			if m.Errors != 0 {
				b.Fatalf("%d registrations failed: %v", m.Errors, m.ErrorSamples)
			}
			b.ReportMetric(m.Window.RatePerSecond, "reg/s")
			b.ReportMetric(m.Window.LatencyMs.P50, "p50-ms")
			b.ReportMetric(m.Window.LatencyMs.P99, "p99-ms")
		})
	}
}
