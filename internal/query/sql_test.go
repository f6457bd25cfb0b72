package query

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustCond(t *testing.T, s string) Expr {
	t.Helper()
	e, err := ParseCondition(s)
	if err != nil {
		t.Fatalf("ParseCondition(%q): %v", s, err)
	}
	return e
}

func mustQuery(t *testing.T, s string) *Query {
	t.Helper()
	q, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return q
}

// TestCondSQLText pins the SQL of a few conditions: column roots compare
// the column directly (usable by an index), every literal is bound.
func TestCondSQLText(t *testing.T) {
	rooted := Schema{Doc: "t.doc", Roots: map[string]Column{"deviceId": {Expr: "t.id"}}}
	tests := []struct {
		name    string
		cond    string
		dialect Dialect
		offset  int
		want    string
		args    []any
	}{
		{"column root sqlite", "deviceId = 'dev1'", SQLite, 0, "(((t.id) COLLATE BINARY) = $1)", []any{"dev1"}},
		{"column root postgres", "deviceId = 'dev1'", Postgres, 2, `(((t.id) COLLATE "C") = CAST($3 AS TEXT))`, []any{"dev1"}},
		{"match all", "*", SQLite, 0, "TRUE", nil},
		{"column root has no properties", "deviceId.x = 1", SQLite, 0, "NULL", nil},
		{"static type mismatch", "deviceId = 1", Postgres, 0, "CAST(NULL AS BOOLEAN)", nil},
		{"json path sqlite", "tags.[[a\"b]] > 1", SQLite, 0,
			"CASE WHEN (json_type(t.doc, $1) IN ('integer', 'real')) THEN (CAST(json_extract(t.doc, $2) AS REAL) > $3) END",
			[]any{`$."tags"."a\"b"`, `$."tags"."a\"b"`, 1.0}},
		{"json path postgres", "tags.x = true", Postgres, 0,
			"CASE WHEN (jsonb_typeof((t.doc -> CAST($1 AS TEXT) -> CAST($2 AS TEXT))) = 'boolean') THEN (CAST((t.doc -> CAST($3 AS TEXT) -> CAST($4 AS TEXT)) AS BOOLEAN) = CAST($5 AS BOOLEAN)) END",
			[]any{"tags", "x", "tags", "x", true}},
		{"balanced OR", "a OR b OR c", SQLite, 0,
			"(CASE WHEN (json_type(t.doc, $1) IN ('true', 'false')) THEN json_extract(t.doc, $2) END OR (CASE WHEN (json_type(t.doc, $3) IN ('true', 'false')) THEN json_extract(t.doc, $4) END OR CASE WHEN (json_type(t.doc, $5) IN ('true', 'false')) THEN json_extract(t.doc, $6) END))",
			[]any{`$."a"`, `$."a"`, `$."b"`, `$."b"`, `$."c"`, `$."c"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, args, err := CondSQL(mustCond(t, tc.cond), tc.dialect, rooted, tc.offset)
			if err != nil {
				t.Fatalf("CondSQL: %v", err)
			}
			if got != tc.want {
				t.Errorf("CondSQL SQL:\n got %s\nwant %s", got, tc.want)
			}
			if diff := cmp.Diff(tc.args, args); diff != "" {
				t.Errorf("CondSQL args (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSQLPageClauses(t *testing.T) {
	s := Schema{From: "twins t", Doc: "t.doc", Key: []string{"t.id"}}
	tests := []struct {
		name          string
		query         string
		dialect       Dialect
		offset, limit int
		wantSuffix    string
	}{
		{"no limit", "SELECT * FROM devices", SQLite, 0, 0, "ORDER BY (t.id) COLLATE BINARY"},
		{"top", "SELECT TOP 5 * FROM devices", SQLite, 0, 0, "ORDER BY (t.id) COLLATE BINARY LIMIT 5"},
		{"page within top", "SELECT TOP 5 * FROM devices", SQLite, 2, 2, "LIMIT 2 OFFSET 2"},
		{"page past top", "SELECT TOP 5 * FROM devices", Postgres, 4, 3, `ORDER BY (t.id) COLLATE "C" LIMIT 1 OFFSET 4`},
		{"offset only sqlite", "SELECT * FROM devices", SQLite, 3, 0, "LIMIT -1 OFFSET 3"},
		{"offset only postgres", "SELECT * FROM devices", Postgres, 3, 0, `COLLATE "C" OFFSET 3`},
		{"offset beyond top", "SELECT TOP 2 * FROM devices", Postgres, 5, 0, "LIMIT 0 OFFSET 5"},
		{"count has no order", "SELECT COUNT() FROM devices", SQLite, 0, 0, "AS c1 FROM twins t"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := mustQuery(t, tc.query).SQLPage(tc.dialect, s, tc.offset, tc.limit)
			if err != nil {
				t.Fatalf("SQLPage: %v", err)
			}
			if !strings.HasSuffix(got, tc.wantSuffix) {
				t.Errorf("SQLPage = %s\nwant suffix %s", got, tc.wantSuffix)
			}
		})
	}
}

func TestSQLErrors(t *testing.T) {
	s := Schema{From: "twins t", Doc: "t.doc"}
	manySegs := make([]string, 70000)
	for i := range manySegs {
		manySegs[i] = "a"
	}
	bigList := make([]Value, 40000)
	for i := range bigList {
		bigList[i] = Number(float64(i))
	}
	tests := []struct {
		name string
		run  func() error
		is   error
		msg  string
	}{
		{"routing-only function", func() error {
			_, _, err := CondSQL(mustCond(t, "tags.a = 1 AND SQRT(tags.x) > 1"), SQLite, s, 0)
			return err
		}, ErrUnsupported, "line 1 col 16: function SQRT is not supported in queries"},
		{"routing-only function in a projection", func() error {
			_, _, err := mustQuery(t, "SELECT INDEX_OF(deviceId, 'x') FROM devices").SQL(Postgres, s)
			return err
		}, ErrUnsupported, "line 1 col 8: function INDEX_OF is not supported in queries"},
		{"unknown dialect", func() error {
			_, _, err := CondSQL(mustCond(t, "a"), Dialect(0), s, 0)
			return err
		}, nil, "translate query: unknown dialect 0"},
		{"schema without Doc", func() error {
			_, _, err := CondSQL(mustCond(t, "a"), SQLite, Schema{}, 0)
			return err
		}, nil, "translate query: schema has no Doc expression"},
		{"schema without From", func() error {
			_, _, err := mustQuery(t, "SELECT * FROM devices").SQL(SQLite, Schema{Doc: "doc"})
			return err
		}, nil, "translate query: schema has no From clause"},
		{"empty root column", func() error {
			_, _, err := CondSQL(mustCond(t, "a"), SQLite, Schema{Doc: "doc", Roots: map[string]Column{"deviceId": {}}}, 0)
			return err
		}, nil, `translate query: schema root "deviceId" has an empty Expr`},
		{"negative argument offset", func() error {
			_, _, err := CondSQL(mustCond(t, "a"), SQLite, s, -1)
			return err
		}, nil, "translate condition: negative argument offset -1"},
		{"negative page", func() error {
			_, _, err := mustQuery(t, "SELECT * FROM devices").SQLPage(SQLite, s, -1, 0)
			return err
		}, nil, "translate query: negative offset -1 or limit 0"},
		{"hand-built query without projections", func() error {
			_, _, err := (&Query{Top: -1, From: Devices}).SQL(SQLite, s)
			return err
		}, nil, "check query: no projections"},
		{"hand-built projection without expression", func() error {
			q := &Query{Top: -1, From: Devices, Projections: []Projection{{Name: "a"}}}
			_, err := q.Run(nil)
			return err
		}, nil, "check query: projection 1 (a) has no expression"},
		{"too many PostgreSQL parameters", func() error {
			_, _, err := CondSQL(NewExpr(&Call{Func: "IS_DEFINED", Args: []Node{&Path{Segments: manySegs}}}), Postgres, s, 0)
			return err
		}, ErrTooComplex, "translate query: the SQL would exceed 1048576 bytes or 65535 parameters: query too complex"},
		{"too many SQLite parameters", func() error {
			_, _, err := CondSQL(NewExpr(&In{X: &Path{Segments: []string{"n"}}, List: bigList}), SQLite, s, 0)
			return err
		}, ErrTooComplex, "translate query: the SQL would exceed 1048576 bytes or 32766 parameters: query too complex"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil {
				t.Fatalf("got no error, want %q", tc.msg)
			}
			if err.Error() != tc.msg {
				t.Errorf("error:\n got %s\nwant %s", err, tc.msg)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
}

func TestItem(t *testing.T) {
	str := func(s string) *string { return &s }
	proj := mustQuery(t, "SELECT deviceId, tags.n AS n, tags.x FROM devices")
	star := mustQuery(t, "SELECT * FROM devices")
	tests := []struct {
		name string
		q    *Query
		cols []*string
		want string
		err  string
	}{
		{"projection", proj, []*string{str(`"d1"`), str("1.0"), nil}, `{"deviceId":"d1","n":1.0}`, ""},
		{"all undefined", proj, []*string{nil, nil, nil}, `{}`, ""},
		{"document", star, []*string{str(`{"deviceId": "d1"}`)}, `{"deviceId": "d1"}`, ""},
		{"wrong column count", proj, []*string{nil}, "", "build result item: row has 1 columns, the query projects 3"},
		{"invalid JSON column", proj, []*string{str("d1"), nil, nil}, "", "build result item: column 1 (deviceId) is not valid JSON"},
		{"null document", star, []*string{nil}, "", "build result item: SELECT * row must have one non-null document column"},
		{"invalid document", star, []*string{str("{")}, "", "build result item: document column is not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.q.Item(tc.cols)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("Item error = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Item: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("Item = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDialectString(t *testing.T) {
	got := []string{SQLite.String(), Postgres.String(), Dialect(9).String()}
	if diff := cmp.Diff([]string{"sqlite", "postgres", "dialect(9)"}, got); diff != "" {
		t.Errorf("Dialect names (-want +got):\n%s", diff)
	}
}
