package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/muster-iot/muster/internal/store"
)

// gooseAt opens the database at path without the store and returns a goose
// provider over the embedded migrations.
func gooseAt(t *testing.T, path string) (*sql.DB, *goose.Provider) {
	t.Helper()
	if err := createPrivate(path); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(path, true, DefaultSynchronous))
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	return db, p
}

// tableSQL returns the CREATE statement SQLite keeps for table name.
func tableSQL(t *testing.T, db *sql.DB, name string) string {
	t.Helper()
	var s string
	if err := db.QueryRowContext(t.Context(), `SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?`, name).Scan(&s); err != nil {
		t.Fatalf("schema of %s: %v", name, err)
	}
	return s
}

// TestMigrateRowidTables writes documents and attempts under the version 2
// schema (WITHOUT ROWID tables), opens the store, which rebuilds both as
// rowid tables (00003), and checks that every row, key and index survived;
// then it migrates down and up again.
func TestMigrateRowidTables(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "muster.db")
	db, p := gooseAt(t, path)
	if _, err := p.UpTo(ctx, 2); err != nil {
		t.Fatalf("migrate to version 2: %v", err)
	}
	if s := tableSQL(t, db, "docs"); !strings.Contains(s, "WITHOUT ROWID") {
		t.Fatalf("version 2 docs table is not WITHOUT ROWID: %s", s)
	}
	t0 := time.Date(2026, 11, 2, 3, 4, 5, 6, time.UTC)
	docs := []store.Record{
		{Kind: store.KindDevice, ID: "hub/dev-2", Group: "hub", ETag: `"e1"`, Doc: json.RawMessage(`{"deviceId":"dev-2"}`), Created: t0, Updated: t0.Add(time.Second)},
		{Kind: store.KindDevice, ID: "hub/dev-1", Group: "hub", ETag: `"e2"`, Doc: json.RawMessage(`{"deviceId":"dev-1","n":[1,2,3]}`), Created: t0, Updated: t0},
		{Kind: store.KindRegistration, ID: "dev-1", Group: "grp-a", ETag: `"e3"`, Doc: json.RawMessage(`{"registrationId":"dev-1"}`), Created: t0.Add(-time.Hour), Updated: t0},
		{Kind: store.KindRegistration, ID: "dev-3", Group: "", ETag: `"e4"`, Doc: json.RawMessage(`{"registrationId":"dev-3"}`), Created: t0, Updated: t0},
	}
	for _, r := range docs {
		if _, err := db.ExecContext(ctx, `INSERT INTO docs (kind, id, grp, etag, doc, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			string(r.Kind), r.ID, r.Group, r.ETag, string(r.Doc), formatTime(r.Created), formatTime(r.Updated)); err != nil {
			t.Fatal(err)
		}
	}
	attempts := []store.Attempt{
		{ID: "0001", Time: t0, RegistrationID: "dev-1", Outcome: "denied", Reason: "sas_expired"},
		{ID: "0002", Time: t0.Add(time.Second), RegistrationID: "dev-1", Outcome: "assigned"},
		{ID: "0003", Time: t0.Add(2 * time.Second), RegistrationID: "dev-3", Outcome: "assigned"},
	}
	for _, a := range attempts {
		row, err := newAttemptRow(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO attempts (id, ts, registration_id, doc) VALUES (?, ?, ?, ?)`, row.id, row.ts, row.registrationID, row.doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T) {
		t.Helper()
		s, err := Open(ctx, path, Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		for _, want := range docs {
			got, err := s.Get(ctx, want.Kind, want.ID)
			if err != nil {
				t.Fatalf("Get %s %s: %v", want.Kind, want.ID, err)
			}
			if got.Group != want.Group || got.ETag != want.ETag || string(got.Doc) != string(want.Doc) ||
				!got.Created.Equal(want.Created) || !got.Updated.Equal(want.Updated) {
				t.Errorf("Get %s %s = %+v, want %+v", want.Kind, want.ID, got, want)
			}
		}
		devs, err := s.List(ctx, store.KindDevice, store.ListOptions{Group: "hub"})
		if err != nil || len(devs) != 2 || devs[0].ID != "hub/dev-1" || devs[1].ID != "hub/dev-2" {
			t.Errorf("List devices of hub = %v, %v; want hub/dev-1, hub/dev-2", devs, err)
		}
		got, err := s.Attempts(ctx, "dev-1", 0)
		if err != nil || len(got) != 2 || got[0].ID != "0002" || got[1].ID != "0001" || got[1].Reason != "sas_expired" {
			t.Errorf("Attempts(dev-1) = %+v, %v; want 0002, 0001", got, err)
		}
		// The primary keys still decide conflicts.
		if _, err := s.Put(ctx, store.Record{Kind: store.KindDevice, ID: "hub/dev-1", Doc: json.RawMessage(`{}`)}, store.Cond{IfNoneMatch: true}); err == nil {
			t.Error("creating an existing document succeeded")
		}
		if err := s.AppendAttempt(ctx, attempts[0]); err == nil {
			t.Error("appending an attempt with an existing ID succeeded")
		}
	}

	check(t)
	db, p = gooseAt(t, path)
	for _, table := range []string{"docs", "attempts"} {
		if s := tableSQL(t, db, table); strings.Contains(s, "WITHOUT ROWID") {
			t.Errorf("after Open, %s is still WITHOUT ROWID: %s", table, s)
		}
	}
	// Down to version 2 restores the WITHOUT ROWID tables with the rows;
	// the next Open migrates up again.
	if _, err := p.DownTo(context.WithoutCancel(ctx), 2); err != nil {
		t.Fatalf("migrate down to version 2: %v", err)
	}
	for _, table := range []string{"docs", "attempts"} {
		if s := tableSQL(t, db, table); !strings.Contains(s, "WITHOUT ROWID") {
			t.Errorf("after migrating down, %s is not WITHOUT ROWID: %s", table, s)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	check(t)
}
