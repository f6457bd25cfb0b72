package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/bench"
	"github.com/muster-iot/muster/internal/client/hubservice"
)

// TestBenchHubEndToEnd runs every phase of a short hub bench against a
// real server (in this process) and, when it is installed, Mosquitto:
// nothing fails, the idle connections all stay up, every acknowledged
// telemetry message is in the built-in endpoint, and the devices are
// gone afterwards.
func TestBenchHubEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ep := startBenchServer(t, dir)
	_, mosqErr := exec.LookPath(bench.DefaultMosquitto)
	if mosqErr != nil {
		t.Logf("mosquitto is not installed at %s: the peer part is skipped, and the report must say so", bench.DefaultMosquitto)
	}
	var stdout, stderr bytes.Buffer
	root := benchRoot(&stdout, &stderr)
	root.SetArgs([]string{"--data-dir", dir, "--output", "json", "bench", "hub",
		"--devices", "24", "--idle", "20", "--concurrency", "4", "--publishers", "2", "--in-flight", "10",
		"--duration", "1s", "--warmup", "0s", "--settle", "0s"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("bench hub: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep bench.HubReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decode the JSON report: %v\n%s", err, stdout.String())
	}
	if rep.Devices.Created != 24 || rep.Devices.Deleted != 24 {
		t.Errorf("devices created %d deleted %d, want 24 and 24", rep.Devices.Created, rep.Devices.Deleted)
	}
	brokers := []*bench.BrokerReport{&rep.Muster}
	if mosqErr == nil {
		if rep.Mosquitto == nil {
			t.Fatalf("no mosquitto report although it is installed (skipped: %q)", rep.MosquittoSkipped)
		}
		brokers = append(brokers, rep.Mosquitto)
	} else if rep.Mosquitto != nil || !strings.Contains(rep.MosquittoSkipped, "not installed") {
		t.Errorf("mosquitto missing: report %+v, skipped %q; want no report and the reason", rep.Mosquitto, rep.MosquittoSkipped)
	}
	if rep.Muster.PID != os.Getpid() {
		t.Errorf("server PID %d, want this process %d (found from the listener)", rep.Muster.PID, os.Getpid())
	}
	for _, b := range brokers {
		t.Run(b.Name, func(t *testing.T) {
			if b.KeyExchange != "X25519" {
				t.Errorf("key exchange %q, want X25519", b.KeyExchange)
			}
			for what, p := range map[string]*bench.PhaseReport{"connect": b.Connect, "telemetry": b.Telemetry} {
				if p == nil {
					t.Fatalf("no %s report", what)
				}
				if p.Failed != 0 || p.Error != "" || p.Succeeded == 0 || p.Window.RatePerSecond <= 0 || p.Window.LatencyMs.P99 < p.Window.LatencyMs.P50 {
					t.Errorf("%s: %+v, want successes only, a positive rate and p50 <= p99", what, p)
				}
				if p.ServerCPUMicros <= 0 {
					t.Errorf("%s: no server CPU per operation", what)
				}
			}
			idle := b.Idle
			if idle == nil || idle.Skipped != "" || idle.Connected != 20 || idle.Alive != 20 || idle.Failed != 0 || idle.RSSAfterBytes <= 0 {
				t.Errorf("idle: %+v, want 20 connected and alive and a memory reading", idle)
			}
		})
	}
	if len(rep.Verdicts) != 3 || rep.Verdicts[2].MeetsTarget == nil {
		t.Errorf("verdicts %+v, want three with the memory one decided", rep.Verdicts)
	}

	// Every acknowledged message is durable in the built-in endpoint.
	hub := benchHub(t, ep).Service
	stored := 0
	for i := range 2 {
		stored += countEvents(ctx, t, hub, rep.Devices.Prefix+"-"+strconv.Itoa(i))
	}
	if stored != rep.Muster.Telemetry.Succeeded {
		t.Errorf("%d messages stored for the publishers, %d acknowledged; want equal", stored, rep.Muster.Telemetry.Succeeded)
	}
	if _, err := hub.GetDevice(ctx, rep.Devices.Prefix+"-0"); !errors.Is(err, hubservice.ErrNotFound) {
		t.Errorf("device %s-0 after the bench: %v, want not found", rep.Devices.Prefix, err)
	}
}

// countEvents counts a device's messages in the built-in endpoint, page by
// page (bounded).
func countEvents(ctx context.Context, t *testing.T, hub *hubservice.Client, deviceID string) int {
	t.Helper()
	n, after := 0, int64(0)
	for range 10000 {
		msgs, cursor, err := hub.ReadEvents(ctx, hubservice.EventsQuery{After: after, DeviceID: deviceID, Limit: hubservice.MaxEventsLimit})
		if err != nil {
			t.Fatalf("read the events of %s: %v", deviceID, err)
		}
		if len(msgs) == 0 {
			return n
		}
		n += len(msgs)
		after = cursor
	}
	t.Fatalf("more than 10000 pages of events for %s", deviceID)
	return n
}

// TestBenchHubFlagErrors checks that bad settings are refused, naming the
// setting, before any connection is attempted.
func TestBenchHubFlagErrors(t *testing.T) {
	tests := []benchFlagCase{
		{"unknown phase", []string{"--phases", "connect,soak"}, `phase "soak"`},
		{"zero devices", []string{"--devices", "0"}, "devices 0"},
		{"more idle than devices", []string{"--devices", "100", "--idle", "200"}, "idle connections 200"},
		{"zero in flight", []string{"--in-flight", "0"}, "in-flight 0"},
		{"bad key exchange", []string{"--key-exchange", "rsa"}, `key exchange "rsa"`},
		{"negative pid", []string{"--server-pid", "-2"}, "--server-pid -2"},
		{"spawn with a pid", []string{"--spawn", "--server-pid", "7"}, "--spawn starts its own server"},
		{"spawn with targets", []string{"--spawn", "--target", "127.0.0.1:8883"}, "--spawn starts its own server"},
		{"targets and an endpoint", []string{"--target", "127.0.0.1:8883", "--mqtt-endpoint", "127.0.0.1:8884"}, "give one or the other"},
		{"target without a port", []string{"--target", "127.0.0.1"}, "give host:port"},
		{"positional argument", []string{"extra"}, `unknown command "extra"`},
	}
	runBenchFlagErrors(t, "hub", tests)
}

// TestBenchHubNeedsAServer checks the error when nothing says where the
// hub is.
func TestBenchHubNeedsAServer(t *testing.T) {
	var out bytes.Buffer
	root := benchRoot(&out, &out)
	root.SetArgs([]string{"--data-dir", t.TempDir(), "bench", "hub", "--quiet"})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no hub connection string") {
		t.Fatalf("error %v, want one saying there is no hub connection string", err)
	}
}

// BenchmarkHub runs one phase of the hub bench (without the Mosquitto
// peer) against an in-process server, b.N times, each with a 10 s window,
// and reports its rate. It exists to profile the server: the load
// generator's samples carry the label muster.bench=load-generator, so
//
//	go test ./cmd/muster -run '^$' -bench 'Hub/telemetry' -benchtime 1x -cpuprofile cpu.out
//	go tool pprof -tagignore 'muster.bench=load-generator' -top cpu.out
//
// shows where the server's time goes. Server and load generator share one
// Go runtime here, so the rates are lower than `muster bench hub`'s.
func BenchmarkHub(b *testing.B) {
	for _, phase := range []string{bench.HubPhaseConnect, bench.HubPhaseTelemetry} {
		b.Run(phase, func(b *testing.B) {
			dir := b.TempDir()
			ep := startBenchServer(b, dir)
			srv := benchHub(b, ep)
			cfg := bench.DefaultHubConfig()
			cfg.Phases, cfg.Devices, cfg.Mosquitto = []string{phase}, 1000, ""
			var rate float64
			for b.Loop() {
				rep, err := bench.RunHub(context.Background(), srv, cfg)
				if err != nil {
					b.Fatal(err)
				}
				p := rep.Muster.Connect
				if phase == bench.HubPhaseTelemetry {
					p = rep.Muster.Telemetry
				}
				if p.Failed != 0 {
					b.Fatalf("%d operations failed: %v", p.Failed, p.ErrorSamples)
				}
				rate = p.Window.RatePerSecond
			}
			b.ReportMetric(rate, phase+"/s")
		})
	}
}

// benchIdleConnections is the idle connections of BenchmarkHubIdle: both
// ends live in this process, so it needs twice as many descriptors.
const benchIdleConnections = 4000

// BenchmarkHubIdle runs the memory phase (without the Mosquitto peer)
// against an in-process server and reports, while the idle connections
// are held, the Go heap and goroutine stacks in use per connection, both
// ends of each connection together. With MUSTER_BENCH_PROFILE_DIR set it
// also writes heap.pprof and goroutine.pprof there at that moment; the
// stacks of the server's allocations (internal/mqtt, comqtt, crypto/tls
// server side) tell them apart from the bench client's (internal/bench):
//
//	MUSTER_BENCH_PROFILE_DIR=/tmp/p go test ./cmd/muster -run '^$' -bench HubIdle -benchtime 1x
//	go tool pprof -sample_index=inuse_space -top /tmp/p/heap.pprof
func BenchmarkHubIdle(b *testing.B) {
	profileDir := os.Getenv("MUSTER_BENCH_PROFILE_DIR")
	dir := b.TempDir()
	ep := startBenchServer(b, dir)
	srv := benchHub(b, ep)
	cfg := bench.DefaultHubConfig()
	cfg.Phases, cfg.Mosquitto = []string{bench.HubPhaseMemory}, ""
	cfg.Devices, cfg.IdleConnections, cfg.Settle = benchIdleConnections, benchIdleConnections, time.Second
	var heapPerConn, stackPerConn, goroutinesPerConn float64
	for b.Loop() {
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		baseGoroutines := runtime.NumGoroutine()
		var profileErr error
		called := false
		cfg.WhileIdle = func(string) {
			called = true
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			n := float64(benchIdleConnections)
			heapPerConn = (float64(ms.HeapInuse) - float64(base.HeapInuse)) / n
			stackPerConn = (float64(ms.StackInuse) - float64(base.StackInuse)) / n
			goroutinesPerConn = float64(runtime.NumGoroutine()-baseGoroutines) / n
			if profileDir != "" {
				profileErr = writeProfiles(profileDir, "heap", "goroutine")
			}
		}
		rep, err := bench.RunHub(context.Background(), srv, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if profileErr != nil {
			b.Fatal(profileErr)
		}
		if !called {
			b.Fatal("the memory phase never called WhileIdle")
		}
		if ir := rep.Muster.Idle; ir == nil || ir.Connected != benchIdleConnections || ir.Alive != benchIdleConnections {
			b.Fatalf("idle phase: %+v, want %d connections held", ir, benchIdleConnections)
		}
	}
	b.ReportMetric(heapPerConn, "heap-B/conn")
	b.ReportMetric(stackPerConn, "stack-B/conn")
	b.ReportMetric(goroutinesPerConn, "goroutines/conn")
}

// writeProfiles writes the named runtime profiles as <name>.pprof into dir.
func writeProfiles(dir string, names ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("profile directory: %w", err)
	}
	for _, name := range names {
		p := pprof.Lookup(name)
		if p == nil {
			return fmt.Errorf("no %s profile", name)
		}
		f, err := os.Create(filepath.Join(dir, name+".pprof"))
		if err != nil {
			return err
		}
		err = p.WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write the %s profile: %w", name, err)
		}
	}
	return nil
}
