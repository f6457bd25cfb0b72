package query

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func twinDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	const src = `{
		"deviceId": "dev1", "status": "enabled", "connectionState": "Connected",
		"tags": {"environment": "prod", "site": "a", "n": 5, "s": "5", "nil": null, "flag": true,
		         "location": {"region": "US"}, "arr": [1, 2], "name": "héllo"},
		"properties": {
			"desired": {"$version": 4, "telemetryInterval": 5},
			"reported": {"lastDesiredVersion": 4, "lastDesiredStatus": {"code": 200}, "fw": "1.0.1"}
		},
		"capabilities": {"iotEdge": true},
		"configurations": {"cfg-1": {"status": "Applied"}}
	}`
	if err := json.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestEval(t *testing.T) {
	doc := twinDoc(t)
	tests := []struct {
		cond string
		want bool
	}{
		{"*", true},
		{"tags.environment='prod' AND tags.site IN ['a','b']", true},
		{"tags.environment = 'Prod'", false},
		{"tags.environment != 'dev'", true},
		{"tags.missing != 'dev'", false},
		{"NOT (tags.missing = 'dev')", false},
		{"NOT IS_DEFINED(tags.missing)", true},
		{"tags.n = 5 AND tags.s = '5'", true},
		{"tags.n = '5' OR tags.s = 5", false},
		{"NOT (tags.n = '5')", false},
		{"tags.nil = null AND IS_NULL(tags.nil) AND NOT IS_NULL(tags.missing)", true},
		{"tags.flag", true},
		{"NOT tags.flag", false},
		{"tags.environment", false},
		{"capabilities.iotEdge = true AND (tags.environment = 'prod')", true},
		{"configurations.[[cfg-1]].status = 'Applied'", true},
		{"devices.configurations.[[cfg-1]].status = 'Targeted'", false},
		{"properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code = 200", true},
		{"properties.reported.lastDesiredStatus.code != 200", false},
		{"tags.location.region IN ['US', 'EU']", true},
		{"tags.location = tags.location", false},
		{"tags.arr = tags.arr", false},
		{"tags.n NIN [1, 2, 3]", true},
		{"tags.n NIN ['5', 6]", false},
		{"tags.missing NIN []", true},
		{"tags.n / 0 = 0 OR NOT (tags.n / 0 = 0)", false},
		{"(tags.n + 1) * 2 = 12", true},
		{"STARTS_WITH(deviceId, 'dev') AND ENDS_WITH(deviceId, '1') AND CONTAINS(deviceId, 'ev')", true},
		{"LENGTH(tags.name) = 5", true},
		{"true AND (false OR tags.missing = 1)", false},
		{"true OR tags.missing = 1", true},
	}
	for _, tc := range tests {
		t.Run(tc.cond, func(t *testing.T) {
			e, err := ParseCondition(tc.cond)
			if err != nil {
				t.Fatalf("ParseCondition: %v", err)
			}
			got, err := e.Eval(doc)
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if got != tc.want {
				t.Errorf("Eval = %v, want %v", got, tc.want)
			}
		})
	}
}

// exprOf parses an expression through a projection, since ParseCondition
// only accepts conditions.
func exprOf(t *testing.T, src string) Expr {
	t.Helper()
	q, err := Parse("SELECT " + src + " AS v FROM devices")
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return q.Projections[0].Expr
}

func TestValue(t *testing.T) {
	doc := twinDoc(t)
	undef := Value{}
	tests := []struct {
		expr string
		want Value
	}{
		{"tags.n", Number(5)},
		{"tags.s", String("5")},
		{"tags.nil", Null()},
		{"tags.flag", Bool(true)},
		{"tags.missing", undef},
		{"tags.location.region.deeper", undef},
		{"tags.arr", Value{Kind: KindArray, Raw: []any{1.0, 2.0}}},
		{"tags.location", Value{Kind: KindObject, Raw: map[string]any{"region": "US"}}},
		// Comparisons.
		{"tags.n > 4", Bool(true)},
		{"tags.missing > 4", undef},
		{"NOT (tags.missing > 4)", undef},
		{"null = null", Bool(true)},
		{"null != null", Bool(false)},
		{"null < null", undef},
		{"true = true", Bool(true)},
		{"true < false", undef},
		{"'a' < 'b'", Bool(true)},
		{"'B' < 'a'", Bool(true)},
		{"'é' > 'z'", Bool(true)},
		{"1 = '1'", undef},
		{"tags.n IN ['5']", undef},
		{"tags.n IN ['5', 5]", Bool(true)},
		{"tags.n IN []", Bool(false)},
		{"tags.n NIN ['5', 6]", undef},
		{"tags.missing AND false", Bool(false)},
		{"tags.missing OR true", Bool(true)},
		{"tags.missing AND true", undef},
		// Arithmetic.
		{"tags.n + 1", Number(6)},
		{"tags.n - 7", Number(-2)},
		{"-tags.n", Number(-5)},
		{"-tags.s", undef},
		{"tags.n / 2", Number(2.5)},
		{"tags.n / 0", undef},
		{"tags.n % 0", undef},
		{"7 % 3", Number(1)},
		{"-7 % 3", Number(-1)},
		{"7.5 % 2", Number(1.5)},
		{"tags.s + 1", undef},
		{"1e308 * 10", undef},
		{"0.1 + 0.2", Number(0.30000000000000004)},
		// Functions.
		{"LOWER('ÀBC')", String("Àbc")},
		{"UPPER('abé')", String("ABé")},
		{"LOWER(1)", undef},
		{"LENGTH(tags.name)", Number(5)},
		{"CONCAT('a', 'b', 'c')", String("abc")},
		{"CONCAT('a', 1)", undef},
		{"STARTS_WITH('abc', '')", Bool(true)},
		{"ENDS_WITH('abc', 'abcd')", Bool(false)},
		{"CONTAINS('abc', 'bc')", Bool(true)},
		{"CONTAINS('abc', 1)", undef},
		{"SUBSTRING('héllo', 1, 3)", String("éll")},
		{"SUBSTRING('abc', 1, 100)", String("bc")},
		{"SUBSTRING('abc', 5, 1)", String("")},
		{"SUBSTRING('abc', -1, 1)", undef},
		{"SUBSTRING('abc', 0.5, 1)", undef},
		{"INDEX_OF('héllo', 'l')", Number(2)},
		{"INDEX_OF('abc', 'z')", Number(-1)},
		{"ABS(-2)", Number(2)},
		{"FLOOR(-1.5)", Number(-2)},
		{"CEILING(1.2)", Number(2)},
		{"SIGN(-3)", Number(-1)},
		{"SIGN(0)", Number(0)},
		{"SQUARE(3)", Number(9)},
		{"SQRT(16)", Number(4)},
		{"SQRT(-1)", undef},
		{"EXP(0)", Number(1)},
		{"POWER(2, 10)", Number(1024)},
		{"POWER(10, 400)", undef},
		{"ABS('x')", undef},
		{"AS_NUMBER('12.5')", Number(12.5)},
		{"AS_NUMBER(' 7 ')", Number(7)},
		{"AS_NUMBER('0x10')", undef},
		{"AS_NUMBER('1e400')", undef},
		{"AS_NUMBER('')", undef},
		{"AS_NUMBER(true)", undef},
		{"AS_NUMBER(3)", Number(3)},
		{"IS_DEFINED(tags.missing)", Bool(false)},
		{"IS_DEFINED(tags.nil)", Bool(true)},
		{"IS_PRIMITIVE(tags.nil)", Bool(true)},
		{"IS_PRIMITIVE(tags.arr)", Bool(false)},
		{"IS_OBJECT(tags.location)", Bool(true)},
		{"IS_ARRAY(tags.arr)", Bool(true)},
		{"IS_STRING(tags.s)", Bool(true)},
		{"IS_NUMBER(tags.s)", Bool(false)},
		{"IS_BOOL(tags.flag)", Bool(true)},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			got, err := exprOf(t, tc.expr).Value(doc)
			if err != nil {
				t.Fatalf("Value: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Value (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvalGoValues(t *testing.T) {
	tests := []struct {
		name string
		doc  map[string]any
		cond string
		want bool
		err  string
	}{
		{"json.Number", map[string]any{"n": json.Number("5")}, "n = 5", true, ""},
		{"int", map[string]any{"n": 5}, "n = 5", true, ""},
		{"int64 and uint8", map[string]any{"a": int64(-2), "b": uint8(2)}, "a + b = 0", true, ""},
		{"float32", map[string]any{"n": float32(0.5)}, "n = 0.5", true, ""},
		{"bad json.Number", map[string]any{"n": json.Number("x")}, "n = 5", false, `read n: parse number "x": strconv.ParseFloat: parsing "x": invalid syntax`},
		{"NaN", map[string]any{"n": math.NaN()}, "n = 5", false, "read n: number NaN is not finite"},
		{"struct", map[string]any{"tags": map[string]any{"bad": struct{}{}}}, "tags.bad = 1", false, "read tags.bad: unsupported Go type struct {}"},
		{"unsupported value not read", map[string]any{"bad": struct{}{}, "n": 1}, "n = 1", true, ""},
		{"nil doc", nil, "IS_DEFINED(n)", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseCondition(tc.cond)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Eval(tc.doc)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("Eval error = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Eval = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestHandBuiltTrees checks that malformed trees given to NewExpr fail
// cleanly in both the evaluator and the translator.
func TestHandBuiltTrees(t *testing.T) {
	p := &Path{Segments: []string{"a"}}
	tests := []struct {
		name string
		node Node
		err  string
	}{
		{"unknown function", &Call{Func: "NOPE", Args: []Node{p}}, "line 0 col 0: unknown function 'NOPE'"},
		{"bad arity", &Call{Func: "LOWER"}, "line 0 col 0: LOWER takes 1 argument, got 0"},
		{"unknown binary operator", &Binary{Op: "^", L: p, R: p}, `unknown binary operator "^"`},
		{"unknown unary operator", &Unary{Op: "~", X: p}, `unknown unary operator "~"`},
		{"unknown logical operator", &Logical{Op: "XOR", Terms: []Node{p, p}}, `"XOR"`},
		{"nil child", &Unary{Op: OpNot}, "nil syntax tree node"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := NewExpr(tc.node)
			if _, err := e.Eval(map[string]any{"a": 1.0}); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Eval error = %v, want one containing %q", err, tc.err)
			}
			if _, _, err := CondSQL(e, SQLite, Schema{Doc: "doc"}, 0); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("CondSQL error = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestValueJSON(t *testing.T) {
	tests := []struct {
		name string
		v    Value
		want string
	}{
		{"undefined", Value{}, ""},
		{"null", Null(), "null"},
		{"bool", Bool(false), "false"},
		{"integral number", Number(3), "3"},
		{"fraction", Number(0.1), "0.1"},
		{"large", Number(1e21), "1e+21"},
		{"string with HTML", String("<a&b>"), `"<a&b>"`},
		{"object", Value{Kind: KindObject, Raw: map[string]any{"b": 1, "a": []any{"x"}}}, `{"a":["x"],"b":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.v.JSON()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("JSON = %s, want %s", got, tc.want)
			}
		})
	}
	if v := Number(math.Inf(1)); v.Kind != KindUndefined {
		t.Errorf("Number(+Inf) = %v, want undefined", v)
	}
	if s := KindObject.String() + Kind(42).String(); s != "objectkind(42)" {
		t.Errorf("Kind names = %s", s)
	}
}
