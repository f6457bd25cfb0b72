package main

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/muster-iot/muster/internal/bench"
	"github.com/muster-iot/muster/internal/instance"
	"github.com/muster-iot/muster/internal/store/postgres/pgtest"
)

// BenchmarkRegisterPostgres registers b.N symmetric-key group devices
// against one and against two in-process `muster serve` on one fresh
// PostgreSQL schema of TEST_PG_DSN (skipped without), devices spread
// round-robin over the instances. Its CPU profile shows where the time of a
// registration on PostgreSQL goes; the load generator's goroutines carry
// the pprof label muster.bench=load-generator:
//
//	go test ./cmd/muster -run '^$' -bench 'RegisterPostgres/instances=2' -benchtime 20000x -cpuprofile cpu.out
//	go tool pprof -tagignore 'muster.bench=load-generator' -top -cum cpu.out
//
// Servers and load generator share one Go runtime here, so the rates are
// lower than those of separate processes (`muster bench register --target`).
func BenchmarkRegisterPostgres(b *testing.B) {
	for _, n := range []int{1, 2} {
		b.Run("instances="+strconv.Itoa(n), func(b *testing.B) {
			dsn := pgtest.Schema(b)
			dir := b.TempDir()
			var eps []instance.Endpoints
			for i := range n {
				eps = append(eps, startBenchServerOn(b, filepath.Join(dir, strconv.Itoa(i)), dsn))
			}
			srv := benchDPS(b, eps[0])
			for _, ep := range eps[1:] {
				srv.MoreDeviceEndpoints = append(srv.MoreDeviceEndpoints, ep.DPSDeviceEndpoint)
			}
			cfg := bench.Config{Modes: []string{bench.ModeSymmetric}, Devices: b.N, Concurrency: bench.DefaultConcurrency, Duration: bench.MaxWindow, SkipCeilings: true}
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
