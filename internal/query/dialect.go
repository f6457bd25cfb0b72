package query

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Dialect selects the SQL flavour of a translation. Everything that differs
// between the databases lives in this file, behind the dialect interface.
type Dialect uint8

// The supported dialects.
const (
	// SQLite is SQLite 3.45 or newer (modernc.org/sqlite) with documents
	// stored as JSON text and the math functions enabled.
	SQLite Dialect = iota + 1
	// Postgres is PostgreSQL 12 or newer with documents as jsonb.
	Postgres
)

// String names the dialect.
func (d Dialect) String() string {
	switch d {
	case SQLite:
		return "sqlite"
	case Postgres:
		return "postgres"
	}
	return "dialect(" + strconv.Itoa(int(d)) + ")"
}

func (d Dialect) impl() (dialect, error) {
	switch d {
	case SQLite:
		return sqliteDialect{}, nil
	case Postgres:
		return postgresDialect{}, nil
	}
	return nil, fmt.Errorf("translate query: unknown dialect %d", uint8(d))
}

// dialect renders the database-specific pieces of a translation. Values of
// type vBool, vNum and vStr are native SQL values (NULL when undefined);
// a dynPath is read with the path's type guard before its value.
type dialect interface {
	// maxParams is the most placeholders one statement may use.
	maxParams() int
	// bind renders a bound parameter of type t.
	bind(v any, t vt) frag
	// null is a NULL of type t.
	null(t vt) frag
	// typeIs is a boolean guard: true when the value at p has kind k,
	// false or NULL otherwise.
	typeIs(p dynPath, k Kind) frag
	// at reads the value at p as type t; only meaningful under typeIs.
	at(p dynPath, t vt) frag
	// boolAt is at(p, vBool).
	boolAt(p dynPath) frag
	// defined is a definite boolean: whether p exists.
	defined(p dynPath) frag
	// jsonAt is the JSON value at p (SQLite: JSON text; PostgreSQL: jsonb).
	jsonAt(p dynPath) frag
	// jsonText is the JSON text of the value at p, NULL when undefined.
	jsonText(p dynPath) frag
	// toJSON renders a native value as JSON text, keeping NULL.
	toJSON(f frag, t vt) frag
	// docText renders the document expression as JSON text.
	docText(doc string) frag
	// collate makes a text value compare by UTF-8 bytes.
	collate(f frag) frag
	arith(op Op, a, b frag) frag
	neg(a frag) frag
	// function renders a function over already type-checked arguments.
	function(fn string, args []frag) frag
	// reusesArgs reports whether function(fn) repeats an argument in its
	// SQL (the caller then binds non-trivial arguments once).
	reusesArgs(fn string) bool
	// limit renders LIMIT/OFFSET; n < 0 means no limit.
	limit(n, offset int) string
	// orderKey renders a Schema.Key expression for ORDER BY.
	orderKey(k string) string
	// groupStatic renders a string GROUP BY value like jsonAt does.
	groupStatic(f frag) frag
	// groupNull is an undefined GROUP BY value.
	groupNull() frag
	// groupText, groupBy and groupOrder render the result column, the
	// GROUP BY list and the ORDER BY list over the grouped value g.
	groupText(g string) frag
	groupBy(g string) []frag
	groupOrder(g string) []frag
}

// ---- SQLite ----

type sqliteDialect struct{}

// sqliteFinite guards arithmetic: SQLite yields ±Inf on overflow where the
// Go evaluator yields undefined, and 9e999 is how SQLite spells infinity.
func sqliteFinite(f frag) frag { return sq("NULLIF(NULLIF(", f, ", 9e999), -9e999)") }

// sqliteJSONPath renders segs as an SQLite JSON path, $."a"."b", each label
// a JSON string (SQLite decodes its escapes when matching).
func sqliteJSONPath(segs []string) string {
	b := []byte{'$'}
	for _, s := range segs {
		b = append(b, '.', '"')
		for _, r := range s {
			switch {
			case r == '"' || r == '\\':
				b = append(b, '\\', byte(r))
			case r < 0x20:
				b = append(b, fmt.Sprintf(`\u%04x`, r)...)
			default:
				b = utf8.AppendRune(b, r)
			}
		}
		b = append(b, '"')
	}
	return string(b)
}

// sqlitePath binds the precomputed JSON path of p.
func sqlitePath(p dynPath) param { return param{v: p.jsonPath} }

func (sqliteDialect) maxParams() int { return 32766 }

func (sqliteDialect) bind(v any, _ vt) frag { return sq(param{v: v}) }

func (sqliteDialect) null(vt) frag { return sq("NULL") }

func (sqliteDialect) typeIs(p dynPath, k Kind) frag {
	var test string
	switch k {
	case KindNull:
		test = "= 'null'"
	case KindBool:
		test = "IN ('true', 'false')"
	case KindNumber:
		test = "IN ('integer', 'real')"
	case KindString:
		test = "= 'text'"
	case KindArray:
		test = "= 'array'"
	case KindObject:
		test = "= 'object'"
	default:
		return sq("NULL")
	}
	return sq("(json_type(", p.root, ", ", sqlitePath(p), ") ", test, ")")
}

func (sqliteDialect) at(p dynPath, t vt) frag {
	x := sq("json_extract(", p.root, ", ", sqlitePath(p), ")")
	if t == vNum {
		return sq("CAST(", x, " AS REAL)")
	}
	return x // text for strings, 1/0 for booleans
}

func (d sqliteDialect) boolAt(p dynPath) frag { return d.at(p, vBool) }

func (sqliteDialect) defined(p dynPath) frag {
	return sq("(json_type(", p.root, ", ", sqlitePath(p), ") IS NOT NULL)")
}

func (sqliteDialect) jsonAt(p dynPath) frag {
	return sq("(", p.root, " -> ", sqlitePath(p), ")")
}

func (d sqliteDialect) jsonText(p dynPath) frag { return d.jsonAt(p) }

func (sqliteDialect) toJSON(f frag, t vt) frag {
	if t == vBool {
		return sq("CASE ", f, " WHEN 1 THEN 'true' WHEN 0 THEN 'false' END")
	}
	// json_quote(NULL) is 'null'; a string or number never quotes to it.
	return sq("NULLIF(json_quote(", f, "), 'null')")
}

func (sqliteDialect) docText(doc string) frag { return sq("(", doc, ")") }

func (sqliteDialect) collate(f frag) frag { return sq("(", f, " COLLATE BINARY)") }

func (sqliteDialect) arith(op Op, a, b frag) frag {
	switch op {
	case OpDiv:
		return sqliteFinite(sq("(", a, " / NULLIF(", b, ", 0))"))
	case OpMod:
		return sq("mod(", a, ", NULLIF(", b, ", 0))")
	}
	return sqliteFinite(sq("(", a, " ", string(op), " ", b, ")"))
}

func (sqliteDialect) neg(a frag) frag { return sq("(- ", a, ")") }

func (sqliteDialect) function(fn string, a []frag) frag {
	switch fn {
	case "LOWER":
		return sq("lower(", a[0], ")")
	case "UPPER":
		return sq("upper(", a[0], ")")
	case "LENGTH":
		return sq("CAST(length(", a[0], ") AS REAL)")
	case "STARTS_WITH":
		return sq("(instr(", a[0], ", ", a[1], ") = 1)")
	case "CONTAINS":
		return sq("(instr(", a[0], ", ", a[1], ") > 0)")
	case "ENDS_WITH":
		return sq("CASE WHEN length(", a[1], ") > length(", a[0], ") THEN FALSE ELSE (substr(", a[0], ", length(", a[0], ") - length(", a[1], ") + 1) COLLATE BINARY = ", a[1], ") END")
	case "CONCAT":
		return sq("(", joinFrags(a, " || "), ")")
	case "ABS":
		return sq("abs(", a[0], ")")
	case "FLOOR":
		return sq("floor(", a[0], ")")
	case "CEILING":
		return sq("ceiling(", a[0], ")")
	case "AS_NUMBER":
		// A string converts when it is JSON text of a number (RFC 8259,
		// surrounding whitespace allowed), as json.Unmarshal accepts it.
		return sq("CASE WHEN json_valid(", a[0], ") THEN CASE WHEN json_type(", a[0], ") IN ('integer', 'real') THEN ",
			sqliteFinite(sq("CAST(json_extract(", a[0], ", '$') AS REAL)")), " END END")
	}
	panic("query: no SQLite translation for " + fn)
}

func (sqliteDialect) reusesArgs(fn string) bool { return fn == "ENDS_WITH" || fn == "AS_NUMBER" }

func (sqliteDialect) limit(n, offset int) string {
	var parts []string
	if n >= 0 {
		parts = append(parts, "LIMIT "+strconv.Itoa(n))
	} else if offset > 0 {
		parts = append(parts, "LIMIT -1")
	}
	if offset > 0 {
		parts = append(parts, "OFFSET "+strconv.Itoa(offset))
	}
	return strings.Join(parts, " ")
}

func (sqliteDialect) orderKey(k string) string { return "(" + k + ") COLLATE BINARY" }

func (d sqliteDialect) groupStatic(f frag) frag { return d.toJSON(f, vStr) }

func (sqliteDialect) groupNull() frag { return sq("NULL") }

func (sqliteDialect) groupText(g string) frag { return sq("MIN(", g, ")") }

func sqliteRank(g string) frag {
	return sq("CASE json_type(", g, ") WHEN 'null' THEN 1 WHEN 'true' THEN 2 WHEN 'false' THEN 2",
		" WHEN 'integer' THEN 3 WHEN 'real' THEN 3 WHEN 'text' THEN 4 WHEN 'array' THEN 5 WHEN 'object' THEN 6 ELSE 0 END")
}

// groupBy groups by type rank and SQL value: numbers compare numerically
// (1 and 1.0 are one group), booleans as 1/0 within their own rank.
func (sqliteDialect) groupBy(g string) []frag {
	return []frag{sqliteRank(g), sq("json_extract(", g, ", '$')")}
}

func (d sqliteDialect) groupOrder(g string) []frag { return d.groupBy(g) }

// ---- PostgreSQL ----

type postgresDialect struct{}

func pgType(t vt) string {
	switch t {
	case vBool:
		return "BOOLEAN"
	case vNum:
		return "DOUBLE PRECISION"
	}
	return "TEXT"
}

func (postgresDialect) maxParams() int { return 65535 }

func (postgresDialect) bind(v any, t vt) frag {
	return sq("CAST(", param{v: v}, " AS ", pgType(t), ")")
}

func (postgresDialect) null(t vt) frag { return sq("CAST(NULL AS ", pgType(t), ")") }

func (postgresDialect) jsonAt(p dynPath) frag {
	parts := []any{"(", p.root}
	for _, s := range p.segs {
		parts = append(parts, " -> CAST(", param{v: s}, " AS TEXT)")
	}
	parts = append(parts, ")")
	return sq(parts...)
}

func (d postgresDialect) typeIs(p dynPath, k Kind) frag {
	var name string
	switch k {
	case KindNull:
		name = "null"
	case KindBool:
		name = "boolean"
	case KindNumber:
		name = "number"
	case KindString:
		name = "string"
	case KindArray:
		name = "array"
	case KindObject:
		name = "object"
	default:
		return sq("CAST(NULL AS BOOLEAN)")
	}
	return sq("(jsonb_typeof(", d.jsonAt(p), ") = '", name, "')")
}

func (d postgresDialect) at(p dynPath, t vt) frag {
	switch t {
	case vNum:
		return sq("CAST(", d.jsonAt(p), " AS DOUBLE PRECISION)")
	case vBool:
		return sq("CAST(", d.jsonAt(p), " AS BOOLEAN)")
	}
	return sq("(", d.jsonAt(p), " #>> '{}')")
}

func (d postgresDialect) boolAt(p dynPath) frag { return d.at(p, vBool) }

func (d postgresDialect) defined(p dynPath) frag { return sq("(", d.jsonAt(p), " IS NOT NULL)") }

func (d postgresDialect) jsonText(p dynPath) frag { return sq("CAST(", d.jsonAt(p), " AS TEXT)") }

func (postgresDialect) toJSON(f frag, t vt) frag {
	if t == vStr {
		return sq("CAST(to_jsonb(", f, ") AS TEXT)")
	}
	// float8 and boolean text output is valid JSON (with the default
	// extra_float_digits the shortest exact form of a double).
	return sq("CAST(", f, " AS TEXT)")
}

func (postgresDialect) docText(doc string) frag { return sq("CAST(", doc, " AS TEXT)") }

func (postgresDialect) collate(f frag) frag { return sq("(", f, " COLLATE \"C\")") }

func (postgresDialect) arith(op Op, a, b frag) frag {
	switch op {
	case OpDiv:
		return sq("(", a, " / NULLIF(", b, ", 0))")
	case OpMod:
		// float8 has no %; the text form keeps integers exact.
		return sq("CAST(mod(CAST(CAST(", a, " AS TEXT) AS NUMERIC), CAST(CAST(NULLIF(", b, ", 0) AS TEXT) AS NUMERIC)) AS DOUBLE PRECISION)")
	}
	return sq("(", a, " ", string(op), " ", b, ")")
}

func (postgresDialect) neg(a frag) frag { return sq("(- ", a, ")") }

// pgJSONNumber matches JSON text of a number with optional JSON whitespace,
// written without backslashes so standard_conforming_strings does not
// matter.
const pgJSONNumber = "'^[ ' || chr(9) || chr(10) || chr(13) || ']*-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][-+]?[0-9]+)?[ ' || chr(9) || chr(10) || chr(13) || ']*$'"

func (postgresDialect) function(fn string, a []frag) frag {
	switch fn {
	case "LOWER":
		return sq("lower((", a[0], ") COLLATE \"C\")")
	case "UPPER":
		return sq("upper((", a[0], ") COLLATE \"C\")")
	case "LENGTH":
		return sq("CAST(length(", a[0], ") AS DOUBLE PRECISION)")
	case "STARTS_WITH":
		return sq("starts_with(", a[0], ", ", a[1], ")")
	case "CONTAINS":
		return sq("(strpos(", a[0], ", ", a[1], ") > 0)")
	case "ENDS_WITH":
		return sq("starts_with(reverse(", a[0], "), reverse(", a[1], "))")
	case "CONCAT":
		return sq("(", joinFrags(a, " || "), ")")
	case "ABS":
		return sq("abs(", a[0], ")")
	case "FLOOR":
		return sq("floor(", a[0], ")")
	case "CEILING":
		return sq("ceiling(", a[0], ")")
	case "AS_NUMBER":
		return sq("CASE WHEN ", a[0], " ~ (", pgJSONNumber, ") THEN CAST(", a[0], " AS DOUBLE PRECISION) END")
	}
	panic("query: no PostgreSQL translation for " + fn)
}

func (postgresDialect) reusesArgs(fn string) bool { return fn == "AS_NUMBER" }

func (postgresDialect) limit(n, offset int) string {
	var parts []string
	if n >= 0 {
		parts = append(parts, "LIMIT "+strconv.Itoa(n))
	}
	if offset > 0 {
		parts = append(parts, "OFFSET "+strconv.Itoa(offset))
	}
	return strings.Join(parts, " ")
}

func (postgresDialect) orderKey(k string) string { return "(" + k + ") COLLATE \"C\"" }

func (postgresDialect) groupStatic(f frag) frag { return sq("to_jsonb(", f, ")") }

func (postgresDialect) groupNull() frag { return sq("CAST(NULL AS jsonb)") }

func (postgresDialect) groupText(g string) frag { return sq("CAST(", g, " AS TEXT)") }

// groupBy groups by the jsonb value, whose equality is semantic (1 = 1.0).
func (postgresDialect) groupBy(g string) []frag { return []frag{sq(g)} }

func (postgresDialect) groupOrder(g string) []frag {
	typ := "jsonb_typeof(" + g + ")"
	return []frag{
		sq("CASE ", typ, " WHEN 'null' THEN 1 WHEN 'boolean' THEN 2 WHEN 'number' THEN 3 WHEN 'string' THEN 4 WHEN 'array' THEN 5 WHEN 'object' THEN 6 ELSE 0 END"),
		sq("CASE WHEN ", typ, " = 'boolean' THEN CAST(", g, " AS BOOLEAN) END"),
		sq("CASE WHEN ", typ, " = 'number' THEN CAST(", g, " AS DOUBLE PRECISION) END"),
		sq("CASE WHEN ", typ, " = 'string' THEN (", g, " #>> '{}') COLLATE \"C\" END"),
		sq("CAST(", g, " AS TEXT) COLLATE \"C\""),
	}
}
