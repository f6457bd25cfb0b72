package query

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCondition(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"equality", "tags.environment='prod'", "(tags.environment = 'prod')"},
		{"match all", " * ", "*"},
		{"in list", "tags.site IN ['a','b']", "(tags.site IN ['a', 'b'])"},
		{"nin list of every literal", `a nin [1, -2.5, true, null, "x"]`, "(a NIN [1, -2.5, true, null, 'x'])"},
		{"not in", "a NOT IN [1]", "(a NIN [1])"},
		{"empty list", "a IN []", "(a IN [])"},
		{"angle inequality", "a <> 1", "(a != 1)"},
		{"bang inequality", "a != 1", "(a != 1)"},
		{"orderings", "a < 1 AND a > 1 AND a <= 1 AND a >= 1", "((a < 1) AND (a > 1) AND (a <= 1) AND (a >= 1))"},
		{"precedence of NOT AND OR", "not a and b or c", "(((NOT a) AND b) OR c)"},
		{"NOT binds looser than comparison", "NOT a = 1", "(NOT (a = 1))"},
		{"AND flattens", "a AND (b AND c) AND d", "(a AND b AND c AND d)"},
		{"OR inside AND stays", "a AND (b OR c)", "(a AND (b OR c))"},
		{"arithmetic precedence", "1 + 2 * 3 - 4 % 5 / 6 = x", "(((1 + (2 * 3)) - ((4 % 5) / 6)) = x)"},
		{"unary minus on path", "-a < 0", "((-a) < 0)"},
		{"negative literal", "a = - 5", "(a = -5)"},
		{"double negation folds", "a = --5", "(a = 5)"},
		{"keywords any case", "a In [1] oR NoT b", "((a IN [1]) OR (NOT b))"},
		{"double-bracket segment", "configurations.[[cfg-1]].status = 'Applied'", "(configurations.[[cfg-1]].status = 'Applied')"},
		{"dollar names", "properties.desired.$version = properties.reported.lastDesiredVersion",
			"(properties.desired.$version = properties.reported.lastDesiredVersion)"},
		{"devices qualifier", "devices.deviceId = 'x'", "(deviceId = 'x')"},
		{"modules qualifier", "devices.modules.moduleId = '$edgeAgent'", "(moduleId = '$edgeAgent')"},
		{"quoted devices is a property", "[[devices]].x = 1", "([[devices]].x = 1)"},
		{"keyword after a dot", "tags.select = 1", "(tags.select = 1)"},
		{"quoted keyword root", "[[select]] = 1", "([[select]] = 1)"},
		{"case-sensitive names", "Tags.X = tags.x", "(Tags.X = tags.x)"},
		{"unicode names", "tags.ü = 'ä'", "(tags.ü = 'ä')"},
		{"empty quoted name", "tags.[[]] = 1", "(tags.[[]] = 1)"},
		{"functions canonical", "is_defined(tags.x) AND startswith(a, 'b') AND EndsWith(a, 'c')",
			"(IS_DEFINED(tags.x) AND STARTS_WITH(a, 'b') AND ENDS_WITH(a, 'c'))"},
		{"doubled single quote", "a = 'it''s'", `(a = 'it\'s')`},
		{"escaped quotes", `a = "say \"hi\"" OR a = 'it\'s'`, `((a = 'say "hi"') OR (a = 'it\'s'))`},
		{"escapes", `a = '\\ \/ \b\f\n\r\t'`, `(a = '\\ / \u0008\u000c\u000a\u000d\u0009')`},
		{"unicode escapes", `a = '\u00e9\uD83D\uDE00'`, "(a = 'é😀')"},
		{"numbers", "a IN [1e3, 1.5E-3, 1e21, 0.1, 007]", "(a IN [1000, 0.0015, 1e+21, 0.1, 7])"},
		{"literals any case", "a IN [TRUE, False, NULL]", "(a IN [true, false, null])"},
		{"bare boolean path", "capabilities.iotEdge", "capabilities.iotEdge"},
		{"literal condition", "true", "true"},
		{"multi-line", "tags.a = 1\n\tAND\r\n tags.b = 2", "((tags.a = 1) AND (tags.b = 2))"},
		{"comparison chain", "a = b = true", "((a = b) = true)"},
		{"in then compare", "a IN [1] = true", "((a IN [1]) = true)"},
		{"concat many", "CONCAT(a, b, 'c', d) = 'x'", "(CONCAT(a, b, 'c', d) = 'x')"},
		{"redundant parentheses", strings.Repeat("(", 200) + "a" + strings.Repeat(")", 200), "a"},
		{"high but allowed", strings.Repeat("NOT ", 63) + "a", strings.Repeat("(NOT ", 63) + "a" + strings.Repeat(")", 63)},
		{"folded minus signs", "a = " + strings.Repeat("-", 100) + "5", "(a = 5)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseCondition(tc.in)
			if err != nil {
				t.Fatalf("ParseCondition(%q): %v", tc.in, err)
			}
			if got := e.String(); got != tc.want {
				t.Errorf("ParseCondition(%q) = %s, want %s", tc.in, got, tc.want)
			}
			again, err := ParseCondition(e.String())
			if err != nil {
				t.Fatalf("reparse %q: %v", e.String(), err)
			}
			if again.String() != e.String() {
				t.Errorf("reparse gives %s, want %s", again.String(), e.String())
			}
		})
	}
}

func TestParseConditionErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"value missing after operator", "tags.environment = AND x", "line 1 col 20: expected a value after '=', got 'AND'"},
		{"empty", "", "line 1 col 1: expected a condition, got end of input"},
		{"blank", "  \n ", "line 2 col 2: expected a condition, got end of input"},
		{"unterminated string", "tags.x = 'abc", "line 1 col 10: unterminated string: no closing '"},
		{"unterminated double-quoted string", `tags.x = "abc`, `line 1 col 10: unterminated string: no closing "`},
		{"bad escape", `tags.x = 'a\qb'`, `line 1 col 12: invalid escape sequence '\q' in string`},
		{"short unicode escape", `tags.x = '\u12'`, `line 1 col 11: invalid \u escape: expected 4 hex digits`},
		{"non-hex unicode escape", `tags.x = '\u12g4'`, `line 1 col 11: invalid \u escape: expected 4 hex digits, got "12g4"`},
		{"lone high surrogate", `tags.x = '\uD800x'`, `line 1 col 11: invalid escape \uD800: high surrogate without a following \u low surrogate`},
		{"high surrogate then non-low", `tags.x = '\uD800\u0041'`, `line 1 col 11: invalid escape \uD800\u0041: high surrogate not followed by a low surrogate`},
		{"lone low surrogate", `tags.x = '\uDC00'`, `line 1 col 11: invalid escape \uDC00: unpaired low surrogate`},
		{"escaped NUL", `tags.x = '\u0000'`, "line 1 col 11: string contains U+0000"},
		{"raw NUL", "tags.x = 'a\x00'", "line 1 col 12: string contains U+0000"},
		{"invalid UTF-8 in string", "tags.x = '\xff'", "line 1 col 11: invalid UTF-8 byte 0xff in string"},
		{"invalid UTF-8", "tags.x = 1 \xfe", "line 1 col 12: invalid UTF-8 byte 0xfe"},
		{"control character", "tags.x = 1 \x01", "line 1 col 12: unexpected control character U+0001"},
		{"unknown character", "tags.x ! 1", "line 1 col 8: unexpected character '!'"},
		{"number without fraction digits", "tags.x = 1.", "line 1 col 10: malformed number '1.': expected digits after '.'"},
		{"number without exponent digits", "tags.x = 1e+", "line 1 col 10: malformed number '1e+': expected digits in the exponent"},
		{"number glued to letters", "tags.x = 12abc", "line 1 col 10: malformed number '12abc'"},
		{"number out of range", "tags.x = 1e999", "line 1 col 10: number '1e999' is out of range"},
		{"trailing token", "tags.x = 1 )", "line 1 col 12: expected end of input, got ')'"},
		{"unclosed parenthesis", "(tags.x = 1", "line 1 col 12: expected ')' to close the '(' at line 1 col 1, got end of input"},
		{"missing property after dot", "tags. = 1", "line 1 col 7: expected a property name after '.', got '='"},
		{"NUL in quoted name", "tags.[[a\x00]] = 1", "line 1 col 6: [[quoted name]] contains U+0000"},
		{"invalid UTF-8 in quoted name", "tags.[[a\xff]] = 1", "line 1 col 6: invalid UTF-8 in [[quoted name]]"},
		{"unterminated quoted name", "tags.[[abc = 1", "line 1 col 6: unterminated [[quoted name]]: no closing ']]'"},
		{"IN without list", "tags.x IN 'a'", "line 1 col 11: expected '[' after IN, got ''a''"},
		{"NIN without list", "tags.x nin 1", "line 1 col 12: expected '[' after NIN, got '1'"},
		{"IN list with a path", "tags.x IN [tags.y]", "line 1 col 12: IN list elements must be literals (string, number, true, false or null), got 'tags'"},
		{"IN list missing comma", "tags.x IN ['a' 'b']", "line 1 col 16: expected ',' or ']' in the IN list, got ''b''"},
		{"IN list unterminated", "tags.x IN ['a',", "line 1 col 16: expected a literal or ']' in the IN list, got end of input"},
		{"array outside IN", "tags.x = [1]", "line 1 col 10: array literals are only allowed after IN or NIN"},
		{"unknown function", "foo(tags.x)", "line 1 col 1: unknown function 'foo'"},
		{"too many arguments", "LOWER(a, b) = 'x'", "line 1 col 1: LOWER takes 1 argument, got 2"},
		{"too few arguments", "CONCAT(a) = 'x'", "line 1 col 1: CONCAT takes at least 2 arguments, got 1"},
		{"three arguments", "SUBSTRING(a) = 'x'", "line 1 col 1: SUBSTRING takes 3 arguments, got 1"},
		{"unclosed call", "LOWER(a = 'x'", "line 1 col 14: expected ',' or ')' to close the '(' of LOWER at line 1 col 6, got end of input"},
		{"COUNT in a condition", "COUNT() > 1", "line 1 col 1: COUNT() is only allowed as a SELECT projection"},
		{"number as condition", "tags.x + 1", "line 1 col 1: '(tags.x + 1)' is a number, not a condition"},
		{"string as condition", "'abc'", "line 1 col 1: ''abc'' is a string, not a condition"},
		{"null as condition", "null", "line 1 col 1: 'null' is a null, not a condition"},
		{"number as AND operand", "tags.a AND 5", "line 1 col 12: '5' is a number, not a condition"},
		{"string as NOT operand", "NOT 'x'", "line 1 col 5: ''x'' is a string, not a condition"},
		{"collection name as path", "devices = 1", "line 1 col 1: 'devices' names the collection, not a property (quote a property named devices as [[devices]])"},
		{"dangling AND", "tags.x = 1 AND ", "line 1 col 16: expected a value after 'AND', got end of input"},
		{"keyword as value", "tags.x = SELECT", "line 1 col 10: expected a value after '=', got 'SELECT'"},
		{"star inside a condition", "* AND a", "line 1 col 1: expected a value, got '*'"},
		{"parentheses too deep", strings.Repeat("(", 257) + "a" + strings.Repeat(")", 257), "line 1 col 257: parentheses, operators and calls nest deeper than 256 levels"},
		{"NOT too high", strings.Repeat("NOT ", 64) + "a", "line 1 col 257: expression nests deeper than 64 levels"},
		{"NOT too deep", strings.Repeat("NOT ", 257) + "a", "line 1 col 1025: parentheses, operators and calls nest deeper than 256 levels"},
		{"calls too high", strings.Repeat("LOWER(", 64) + "a" + strings.Repeat(")", 64) + " = 'x'", "line 1 col 379: expression nests deeper than 64 levels"},
		{"chain too high", strings.Repeat("a+", 65) + "a = 1", "line 1 col 1: expression nests deeper than 64 levels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseCondition(tc.in)
			if err == nil {
				t.Fatalf("ParseCondition(%q) = %s, want error %q", tc.in, e, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("ParseCondition(%q) error:\n got %s\nwant %s", tc.in, err, tc.want)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("error %T is not a *SyntaxError", err)
			}
		})
	}
}

func TestParseTooLong(t *testing.T) {
	long := "tags.x = '" + strings.Repeat("a", MaxLength) + "'"
	if _, err := ParseCondition(long); !errors.Is(err, ErrTooLong) {
		t.Errorf("ParseCondition(%d bytes) error = %v, want ErrTooLong", len(long), err)
	}
	if _, err := Parse("SELECT * FROM devices WHERE " + long); !errors.Is(err, ErrTooLong) {
		t.Errorf("Parse(long) error = %v, want ErrTooLong", err)
	}
	if _, _, err := ParseTargetCondition(long); !errors.Is(err, ErrTooLong) {
		t.Errorf("ParseTargetCondition(long) error = %v, want ErrTooLong", err)
	}
	exact := "a = '" + strings.Repeat("a", MaxLength-6) + "'"
	if _, err := ParseCondition(exact); err != nil {
		t.Errorf("ParseCondition(%d bytes) = %v, want success", len(exact), err)
	}
}

func TestParseQuery(t *testing.T) {
	tests := []struct {
		name, in, want string
		columns        []string
	}{
		{"star", "select * from devices", "SELECT * FROM devices", nil},
		{"top and where", "SELECT TOP 10 * FROM devices WHERE tags.x = 1", "SELECT TOP 10 * FROM devices WHERE (tags.x = 1)", nil},
		{"modules", "SELECT * FROM Devices.Modules WHERE moduleId = '$edgeAgent'", "SELECT * FROM devices.modules WHERE (moduleId = '$edgeAgent')", nil},
		{"jobs", "SELECT * FROM devices.jobs", "SELECT * FROM devices.jobs", nil},
		{"projections", "SELECT deviceId, tags.x AS y, tags.n + 1, LOWER(status), 'q' FROM devices",
			"SELECT deviceId, tags.x AS y, (tags.n + 1), LOWER(status), 'q' FROM devices",
			[]string{"deviceId", "y", "$1", "$2", "$3"}},
		{"quoted alias", "SELECT deviceId AS [[device id]] FROM devices", "SELECT deviceId AS [[device id]] FROM devices", []string{"device id"}},
		{"qualified projection", "SELECT devices.deviceId, devices.modules.moduleId FROM devices.modules",
			"SELECT deviceId, moduleId FROM devices.modules", []string{"deviceId", "moduleId"}},
		{"count", "SELECT COUNT() AS n FROM devices WHERE tags.x = 1", "SELECT COUNT() AS n FROM devices WHERE (tags.x = 1)", []string{"n"}},
		{"unnamed count", "SELECT count() FROM devices", "SELECT COUNT() FROM devices", []string{"$1"}},
		{"group by", "SELECT properties.reported.x AS status, COUNT() AS n FROM devices GROUP BY properties.reported.x",
			"SELECT properties.reported.x AS status, COUNT() AS n FROM devices GROUP BY properties.reported.x", []string{"status", "n"}},
		{"group by without count", "select tags.site from devices group by tags.site", "SELECT tags.site FROM devices GROUP BY tags.site", []string{"site"}},
		{"group by qualified", "SELECT devices.tags.site, COUNT() FROM devices GROUP BY tags.site",
			"SELECT tags.site, COUNT() FROM devices GROUP BY tags.site", []string{"site", "$1"}},
		{"metric query", "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[d1]].status = 'Applied'",
			"SELECT deviceId FROM devices.modules WHERE ((moduleId = '$edgeAgent') AND (configurations.d1.status = 'Applied'))", []string{"deviceId"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got := q.String(); got != tc.want {
				t.Errorf("Parse(%q) = %s, want %s", tc.in, got, tc.want)
			}
			if diff := cmp.Diff(tc.columns, q.Columns()); diff != "" {
				t.Errorf("Columns (-want +got):\n%s", diff)
			}
			again, err := Parse(q.String())
			if err != nil {
				t.Fatalf("reparse %q: %v", q.String(), err)
			}
			if again.String() != q.String() {
				t.Errorf("reparse gives %s, want %s", again, q)
			}
		})
	}
}

func TestParseQueryErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not a select", "SELEC * FROM devices", "line 1 col 1: expected SELECT, got 'SELEC'"},
		{"empty select list", "SELECT FROM devices", "line 1 col 8: expected a value after 'SELECT', got 'FROM'"},
		{"missing FROM", "SELECT * devices", "line 1 col 10: expected ',' or FROM after the SELECT list, got 'devices'"},
		{"truncated", "SELECT *", "line 1 col 9: expected FROM, got end of input"},
		{"unknown collection", "SELECT * FROM twins", "line 1 col 15: unknown collection 'twins'; expected devices, devices.modules or devices.jobs"},
		{"unknown sub-collection", "SELECT * FROM devices.foo", "line 1 col 15: unknown collection 'devices.foo'; expected devices, devices.modules or devices.jobs"},
		{"collection not a name", "SELECT * FROM 1", "line 1 col 15: expected devices, devices.modules or devices.jobs after FROM, got '1'"},
		{"fractional TOP", "SELECT TOP 1.5 * FROM devices", "line 1 col 12: TOP needs an integer from 0 to 2147483647, got '1.5'"},
		{"negative TOP", "SELECT TOP -1 * FROM devices", "line 1 col 12: TOP needs an integer from 0 to 2147483647, got '-'"},
		{"huge TOP", "SELECT TOP 99999999999 * FROM devices", "line 1 col 12: TOP needs an integer from 0 to 2147483647, got '99999999999'"},
		{"empty WHERE", "SELECT * FROM devices WHERE", "line 1 col 28: expected a condition after WHERE, got end of input"},
		{"GROUP without BY", "SELECT COUNT() FROM devices GROUP tags.x", "line 1 col 35: expected BY after GROUP, got 'tags'"},
		{"GROUP BY a number", "SELECT COUNT() FROM devices GROUP BY 1", "line 1 col 38: GROUP BY needs a property path, got '1'"},
		{"GROUP BY a call", "SELECT COUNT() FROM devices GROUP BY LOWER(x)", "line 1 col 38: GROUP BY needs a property path, got a function call"},
		{"star with GROUP BY", "SELECT * FROM devices GROUP BY tags.x", "line 1 col 32: SELECT * cannot be used with GROUP BY"},
		{"projection not grouped", "SELECT tags.y, COUNT() FROM devices GROUP BY tags.x", "line 1 col 8: projection 'tags.y' must be COUNT() or the GROUP BY path"},
		{"count mixed without group", "SELECT deviceId, COUNT() FROM devices", "line 1 col 8: projection 'deviceId' cannot be combined with COUNT() without GROUP BY"},
		{"duplicate names", "SELECT tags.a, properties.a FROM devices", "line 1 col 16: duplicate result name 'a'; use AS to rename"},
		{"COUNT with an argument", "SELECT COUNT(x) FROM devices", "line 1 col 14: COUNT takes no arguments, got 'x'"},
		{"alias missing", "SELECT deviceId AS FROM devices", "line 1 col 20: expected a name after AS, got 'FROM'"},
		{"qualifier mismatch", "SELECT devices.modules.moduleId FROM devices", "line 1 col 8: path qualifier 'devices.modules' does not match FROM devices"},
		{"trailing clause", "SELECT * FROM devices WHERE tags.x = 1 ORDER BY x", "line 1 col 40: expected end of input, got 'ORDER'"},
		{"bad condition", "SELECT * FROM devices WHERE tags.x + 1", "line 1 col 29: '(tags.x + 1)' is a number, not a condition"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %s, want error %q", tc.in, q, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("Parse(%q) error:\n got %s\nwant %s", tc.in, err, tc.want)
			}
		})
	}
}

func TestParseTargetCondition(t *testing.T) {
	tests := []struct {
		name, in string
		from     Collection
		want     string
		err      string
	}{
		{"bare", "tags.environment = 'prod'", Devices, "(tags.environment = 'prod')", ""},
		{"all", "*", Devices, "*", ""},
		{"modules", "FROM devices.modules WHERE tags.x = 'y'", Modules, "(tags.x = 'y')", ""},
		{"modules any case", "from Devices.Modules where properties.reported.a = 1", Modules, "(properties.reported.a = 1)", ""},
		{"missing WHERE", "FROM devices.modules tags.x = 1", "", "", "line 1 col 22: expected WHERE after FROM devices.modules, got 'tags'"},
		{"bad collection", "FROM things WHERE a", "", "", "line 1 col 6: unknown collection 'things'; expected devices, devices.modules or devices.jobs"},
		{"qualifier mismatch", "FROM devices WHERE devices.modules.moduleId = 'x'", "", "", "line 1 col 20: path qualifier 'devices.modules' does not match FROM devices"},
		{"trailing", "FROM devices WHERE a b", "", "", "line 1 col 22: expected end of input, got 'b'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			from, e, err := ParseTargetCondition(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("ParseTargetCondition(%q) error = %v, want %s", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTargetCondition(%q): %v", tc.in, err)
			}
			if from != tc.from || e.String() != tc.want {
				t.Errorf("ParseTargetCondition(%q) = %s, %s; want %s, %s", tc.in, from, e, tc.from, tc.want)
			}
		})
	}
}

func TestExprIsAll(t *testing.T) {
	all, err := ParseCondition("*")
	if err != nil {
		t.Fatal(err)
	}
	some, err := ParseCondition("a = 1")
	if err != nil {
		t.Fatal(err)
	}
	if !all.IsAll() || some.IsAll() || !(Expr{}).IsAll() {
		t.Errorf("IsAll: * = %v, a = 1 = %v, zero = %v; want true, false, true", all.IsAll(), some.IsAll(), Expr{}.IsAll())
	}
	if all.Node() != nil || some.Node() == nil {
		t.Errorf("Node: * = %v, a = 1 = %v", all.Node(), some.Node())
	}
	if p := some.Node().Pos(); p != (Pos{Line: 1, Col: 1}) {
		t.Errorf("Pos = %v, want line 1 col 1", p)
	}
}
