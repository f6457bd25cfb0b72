// Package pgtest owns the PostgreSQL fixtures of tests: a private, empty
// schema per test on the server named by the TEST_PG_DSN environment
// variable, dropped when the test ends, so that test packages running in
// parallel never share tables. Tests that need PostgreSQL skip (naming
// TEST_PG_DSN) when the variable is not set.
//
// It is imported by tests only.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable holding the DSN of the test server
// (for example postgres://postgres@127.0.0.1:5432/test?sslmode=disable).
const EnvDSN = "TEST_PG_DSN"

// schemaPrefix starts the name of every schema this package creates; the
// creation time follows, so that schemas left behind by killed test runs
// can be recognised and dropped.
const schemaPrefix = "muster_test_"

// staleAfter is the age after which a leftover test schema is dropped.
const staleAfter = 6 * time.Hour

// BaseDSN returns the DSN in TEST_PG_DSN, or skips the test.
func BaseDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		t.Skipf("%s is not set; skipping the PostgreSQL test (set it to a server's DSN, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", EnvDSN)
	}
	return dsn
}

// Schema creates an empty schema, drops it with everything in it when the
// test ends (after the test's later cleanups, which close its stores), and
// returns a DSN whose search_path is that schema. It skips the test when
// TEST_PG_DSN is not set.
func Schema(t testing.TB) string {
	t.Helper()
	base := BaseDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvDSN, err)
	}
	defer conn.Close(ctx)
	dropStale(ctx, t, conn)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := schemaPrefix + strconv.FormatInt(time.Now().Unix(), 10) + "_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("connect to drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	dsn, err := WithSearchPath(base, schema)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// WithSearchPath returns dsn (a URL or a keyword/value string) with its
// search_path set to schema.
func WithSearchPath(dsn, schema string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("%s is not a valid URL: %v", EnvDSN, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return dsn + " search_path=" + schema, nil
}

// dropStale drops test schemas older than staleAfter: runs killed before
// their cleanup leave them behind.
func dropStale(ctx context.Context, t testing.TB, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, schemaPrefix)
	if err != nil {
		t.Fatalf("list test schemas: %v", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("list test schemas: %v", err)
	}
	for _, name := range names {
		created, _, ok := strings.Cut(strings.TrimPrefix(name, schemaPrefix), "_")
		secs, err := strconv.ParseInt(created, 10, 64)
		if !ok || err != nil || time.Since(time.Unix(secs, 0)) < staleAfter {
			continue
		}
		// Another package's run may drop it at the same moment: ignore errors.
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err == nil {
			t.Logf("dropped stale test schema %s", name)
		}
	}
}
