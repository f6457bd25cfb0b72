package query

import (
	"database/sql"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver (tests only)
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver
)

// fixture is a stored document: its row ID and its JSON text exactly as
// inserted into the database (so that 5.0 stays 5.0 in SQLite's text).
type fixture struct {
	id  string
	doc string
}

// deviceTwins returns the device twin documents of the agreement tests,
// shaped like the service-side Twin JSON and chosen to hit type mismatches,
// missing and null properties, number/string look-alikes and odd names.
func deviceTwins() []fixture {
	return []fixture{
		{"dev01", `{"deviceId":"dev01","etag":"AAAAAAAAAAE=","status":"enabled","connectionState":"Connected","lastActivityTime":"2024-01-02T03:04:05Z","version":7,
		"tags":{"environment":"prod","site":"a","n":5,"s":"5","location":{"region":"US"}},
		"properties":{"desired":{"telemetryInterval":5,"$version":4},"reported":{"fw":"1.0.1","lastDesiredVersion":4,"lastDesiredStatus":{"code":200},"$version":9}},
		"capabilities":{"iotEdge":true},"configurations":{"cfg-1":{"status":"Applied"}}}`},
		{"dev02", `{"deviceId":"dev02","status":"enabled","connectionState":"Disconnected",
		"tags":{"environment":"prod","site":"b","n":10,"s":"10"},
		"properties":{"desired":{"$version":2},"reported":{"fw":"1.0.2","lastDesiredVersion":1,"lastDesiredStatus":{"code":200},"$version":3}},
		"capabilities":{"iotEdge":true},"configurations":{"cfg-1":{"status":"Targeted"},"cfg.2":{"status":"Applied"}}}`},
		{"dev03", `{"deviceId":"dev03","status":"enabled","connectionState":"Connected",
		"tags":{"environment":"Prod","site":"c","n":5.0,"m":-3.5},
		"properties":{"desired":{"$version":1},"reported":{"fw":"1.0.1","$version":1}},
		"capabilities":{"iotEdge":false}}`},
		{"dev04", `{"deviceId":"dev04","status":"enabled","connectionState":"Disconnected","tags":{},
		"properties":{"desired":{"$version":1},"reported":{"$version":1}},"capabilities":{"iotEdge":false}}`},
		{"dev05", `{"deviceId":"dev05","status":"enabled","connectionState":"Disconnected",
		"tags":{"environment":null,"site":null,"n":null},
		"properties":{"desired":{"$version":1},"reported":{"fw":null,"$version":1}},"capabilities":{"iotEdge":false}}`},
		{"dev06", `{"deviceId":"dev06","status":"enabled","connectionState":"Connected",
		"tags":{"environment":"test","n":"abc","flag":true,"s":"abc"},
		"properties":{"desired":{"$version":3},"reported":{"fw":"2.0.0","lastDesiredVersion":3,"lastDesiredStatus":{"code":400},"$version":2}},
		"capabilities":{"iotEdge":true}}`},
		{"dev07", `{"deviceId":"dev07","status":"enabled","connectionState":"Connected",
		"tags":{"environment":"test","flag":false,"arr":[1,2],"obj":{"a":1},"site":"a"},
		"properties":{"desired":{"$version":1},"reported":{"$version":1}},"capabilities":{"iotEdge":false}}`},
		{"dev08", `{"deviceId":"dev08","status":"enabled","connectionState":"Disconnected",
		"tags":{"we\"ird":"q","a.b":1,"$v":"dollar","ü":"umlaut","a<b":"lt","sp ace":"x","back\\slash":"bs","":"empty-name","tab\there":"t"},
		"properties":{"desired":{"$version":1},"reported":{"$version":1}},"capabilities":{"iotEdge":false}}`},
		{"dev09", `{"deviceId":"dev09","status":"enabled","connectionState":"Connected",
		"tags":{"environment":"prodé","name":"ÀBc","quote":"it's","site":"B","n":-0},
		"properties":{"desired":{"$version":1},"reported":{"$version":1}},"capabilities":{"iotEdge":false}}`},
		{"dev10", `{"deviceId":"dev10","status":"enabled","connectionState":"Connected",
		"tags":{"n":1e20,"big":9007199254740993,"tenth":0.1,"fifth":0.2,"environment":"staging"},
		"properties":{"desired":{"$version":1},"reported":{"$version":1}},"capabilities":{"iotEdge":false}}`},
		{"dev11", `{"deviceId":"dev11","status":"enabled","connectionState":"Connected",
		"tags":{"num":"12.5","ws":" 7 ","hex":"0x10","huge":"1e400","negz":"-0","lead":"01","plus":"+1","n":"7"},
		"properties":{"desired":{"$version":1},"reported":{"$version":1}},"capabilities":{"iotEdge":false}}`},
		{"dev12", `{"deviceId":"dev12","status":"disabled","connectionState":"Disconnected",
		"tags":{"environment":"prod","site":"a","n":7},
		"properties":{"desired":{"$version":5},"reported":{"fw":"1.0.1","lastDesiredVersion":5,"lastDesiredStatus":{"code":417},"$version":5}}}`},
		{"dev13", `{"deviceId":"dev13","status":"enabled","connectionState":"Connected",
		"tags":{"environment":"prod","site":"c","n":7.5},
		"properties":{"desired":{"$version":6},"reported":{"fw":"1.0.2","lastDesiredVersion":6,"lastDesiredStatus":{"code":200},"$version":4}},
		"capabilities":{"iotEdge":true},"configurations":{"cfg.2":{"status":"Targeted"},"cfg-1":{"status":"Applied"}}}`},
		{"dev14", `{"deviceId":"dev14","status":"enabled","connectionState":"Disconnected",
		"tags":{"location":{"region":"EU"},"environment":"dev","n":true},
		"properties":{"desired":{"$version":1},"reported":{"$version":1}},"capabilities":{"iotEdge":false}}`},
		{"dev15", `{"deviceId":"dev15","status":"enabled","connectionState":"Disconnected",
		"tags":{"environment":"","n":0,"s":"","site":"a"},
		"properties":{"desired":{"$version":1},"reported":{"fw":"1.0.1","$version":1}},"capabilities":{"iotEdge":false}}`},
	}
}

// moduleTwins returns module twins for devices.modules queries.
func moduleTwins() []fixture {
	return []fixture{
		{"dev01/$edgeAgent", `{"deviceId":"dev01","moduleId":"$edgeAgent","status":"enabled","connectionState":"Connected",
		"properties":{"desired":{"$version":4},"reported":{"lastDesiredVersion":4,"lastDesiredStatus":{"code":200},"$version":8}},
		"configurations":{"cfg-1":{"status":"Applied"}}}`},
		{"dev01/$edgeHub", `{"deviceId":"dev01","moduleId":"$edgeHub","status":"enabled","connectionState":"Connected",
		"properties":{"desired":{"$version":2},"reported":{"$version":2}},"configurations":{"cfg-1":{"status":"Applied"}}}`},
		{"dev01/sensor", `{"deviceId":"dev01","moduleId":"sensor","status":"enabled","connectionState":"Connected","tags":{"kind":"temp"},
		"properties":{"desired":{"SendInterval":5,"$version":1},"reported":{"$version":1}}}`},
		{"dev02/$edgeAgent", `{"deviceId":"dev02","moduleId":"$edgeAgent","status":"enabled","connectionState":"Connected",
		"properties":{"desired":{"$version":3},"reported":{"lastDesiredVersion":2,"lastDesiredStatus":{"code":200},"$version":4}},
		"configurations":{"cfg-1":{"status":"Applied"}}}`},
		{"dev06/$edgeAgent", `{"deviceId":"dev06","moduleId":"$edgeAgent","status":"enabled","connectionState":"Disconnected",
		"properties":{"desired":{"$version":5},"reported":{"lastDesiredVersion":5,"lastDesiredStatus":{"code":400},"$version":6}},
		"configurations":{"cfg-1":{"status":"Applied"}}}`},
		{"dev13/$edgeAgent", `{"deviceId":"dev13","moduleId":"$edgeAgent","status":"enabled","connectionState":"Connected",
		"properties":{"desired":{"$version":7},"reported":{"lastDesiredVersion":7,"lastDesiredStatus":{"code":200},"$version":2}},
		"configurations":{"cfg.2":{"status":"Applied"}}}`},
	}
}

// decodeFixtures decodes the fixtures' documents, keeping their order.
func decodeFixtures(t testing.TB, fx []fixture) []map[string]any {
	t.Helper()
	out := make([]map[string]any, len(fx))
	for i, f := range fx {
		if err := json.Unmarshal([]byte(f.doc), &out[i]); err != nil {
			t.Fatalf("decode fixture %s: %v", f.id, err)
		}
	}
	return out
}

// backend is a database loaded with the fixtures.
type backend struct {
	db      *sql.DB
	dialect Dialect
	// schemas maps a collection to its schema; rooted is the device schema
	// with deviceId and tags served by columns.
	schemas map[Collection]Schema
	rooted  Schema
}

func openSQLite(t testing.TB) *backend {
	t.Helper()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	db.SetMaxOpenConns(1) // one connection, one in-memory database
	t.Cleanup(func() { db.Close() })
	b := &backend{
		db:      db,
		dialect: SQLite,
		schemas: map[Collection]Schema{
			Devices: {From: "twins t", Doc: "t.doc", Key: []string{"t.id"}},
			Modules: {From: "module_twins t", Doc: "t.doc", Key: []string{"t.id"}},
		},
		rooted: Schema{From: "twins t", Doc: "t.doc", Key: []string{"t.id"}, Roots: map[string]Column{
			"deviceId": {Expr: "t.id"},
			"tags":     {Expr: "t.doc -> '$.tags'", JSON: true},
		}},
	}
	b.load(t, "TEXT")
	return b
}

// openPostgres connects to TEST_PG_DSN and loads the fixtures into
// temporary tables, or skips the test when the variable is not set.
func openPostgres(t testing.TB) *backend {
	t.Helper()
	dsn := os.Getenv("TEST_PG_DSN")
	if dsn == "" {
		t.Skip("TEST_PG_DSN is not set; skipping the PostgreSQL agreement test")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	db.SetMaxOpenConns(1) // temporary tables live in one session
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("connect to TEST_PG_DSN: %v", err)
	}
	b := &backend{
		db:      db,
		dialect: Postgres,
		schemas: map[Collection]Schema{
			Devices: {From: "twins t", Doc: "t.doc", Key: []string{"t.id"}},
			Modules: {From: "module_twins t", Doc: "t.doc", Key: []string{"t.id"}},
		},
		rooted: Schema{From: "twins t", Doc: "t.doc", Key: []string{"t.id"}, Roots: map[string]Column{
			"deviceId": {Expr: "t.id"},
			"tags":     {Expr: "t.doc -> 'tags'", JSON: true},
		}},
	}
	b.load(t, "JSONB")
	return b
}

func (b *backend) load(t testing.TB, docType string) {
	t.Helper()
	temp := ""
	if b.dialect == Postgres {
		temp = "TEMPORARY "
	}
	for table, fx := range map[string][]fixture{"twins": deviceTwins(), "module_twins": moduleTwins()} {
		if _, err := b.db.Exec("CREATE " + temp + "TABLE " + table + " (id TEXT PRIMARY KEY, doc " + docType + " NOT NULL)"); err != nil {
			t.Fatalf("create table %s: %v", table, err)
		}
		for _, f := range fx {
			if _, err := b.db.Exec("INSERT INTO "+table+" (id, doc) VALUES ($1, $2)", f.id, f.doc); err != nil {
				t.Fatalf("insert %s into %s: %v", f.id, table, err)
			}
		}
	}
}

// ids runs a condition through CondSQL and returns the matching row IDs in
// ID order.
func (b *backend) ids(t testing.TB, e Expr, s Schema) ([]string, error) {
	t.Helper()
	const offset = 1 // one argument of our own first, to exercise argOffset
	cond, args, err := CondSQL(e, b.dialect, s, offset)
	if err != nil {
		return nil, err
	}
	checkPlaceholders(t, cond, offset, len(args))
	stmt := "SELECT t.id FROM " + s.From + " WHERE t.id <> $1 AND (" + cond + ")"
	rows, err := b.db.Query(stmt, append([]any{"no such id"}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// items runs a query's SQL and turns the rows into decoded result items.
func (b *backend) items(t testing.TB, q *Query, s Schema, offset, limit int) ([]any, error) {
	t.Helper()
	stmt, args, err := q.SQLPage(b.dialect, s, offset, limit)
	if err != nil {
		return nil, err
	}
	checkPlaceholders(t, stmt, 0, len(args))
	rows, err := b.db.Query(stmt, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := []any{}
	for rows.Next() {
		vals := make([]*string, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		item, err := q.Item(vals)
		if err != nil {
			return nil, err
		}
		out = append(out, decodeItem(t, item))
	}
	return out, rows.Err()
}

func decodeItem(t testing.TB, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode result item %s: %v", raw, err)
	}
	return v
}

// checkPlaceholders verifies that the SQL uses $offset+1 .. $offset+n, each
// once, in ascending order.
func checkPlaceholders(t testing.TB, stmt string, offset, n int) {
	t.Helper()
	next := offset + 1
	for i := 0; i < len(stmt); i++ {
		if stmt[i] != '$' || i+1 >= len(stmt) || stmt[i+1] < '0' || stmt[i+1] > '9' {
			continue
		}
		j := i + 1
		num := 0
		for j < len(stmt) && stmt[j] >= '0' && stmt[j] <= '9' {
			num = num*10 + int(stmt[j]-'0')
			j++
		}
		if num != next {
			t.Fatalf("placeholder $%d where $%d was expected in %s", num, next, shorten(stmt))
		}
		next++
		i = j - 1
	}
	if next != offset+n+1 {
		t.Fatalf("SQL uses %d placeholders for %d arguments: %s", next-offset-1, n, shorten(stmt))
	}
}

func shorten(s string) string {
	if len(s) > 400 {
		return s[:400] + "…"
	}
	return strings.TrimSpace(s)
}
