package postgres

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/muster-iot/muster/internal/store/postgres/pgtest"
)

// ceilingConns is how many connections commit at once in
// BenchmarkCommitCeiling, the concurrency of `muster bench register`.
const ceilingConns = 64

// BenchmarkCommitCeiling measures the server's commit ceiling, the bound
// the registration rate on PostgreSQL is compared with
// (docs/performance.md): b.N single-row INSERTs, each its own transaction
// (autocommit, synchronous_commit as the server sets it), from 64
// connections at once, on a fresh schema of TEST_PG_DSN (skipped without).
//
//	TEST_PG_DSN=postgres://… go test ./internal/store/postgres -run '^$' -bench CommitCeiling -benchtime 10s
func BenchmarkCommitCeiling(b *testing.B) {
	dsn := pgtest.Schema(b)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns, cfg.MinConns = ceilingConns, ceilingConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE commit_ceiling (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, conn INTEGER NOT NULL, doc TEXT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	conns := make([]*pgxpool.Conn, ceilingConns)
	for i := range conns {
		if conns[i], err = pool.Acquire(ctx); err != nil {
			b.Fatal(err)
		}
		defer conns[i].Release()
	}
	var next atomic.Int64
	errs := make([]error, ceilingConns)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, c := range conns {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := c.Exec(ctx, `INSERT INTO commit_ceiling (conn, doc) VALUES ($1, $2)`, i, `{"registrationId":"ceiling"}`); err != nil {
					errs[i] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	var n int
	if err := conns[0].QueryRow(ctx, `SELECT count(*) FROM commit_ceiling`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n != b.N {
		b.Fatalf("%d rows committed, want %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "commits/s")
}
