package query

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnsupported is returned (wrapped, with the position) when a query uses
// something the SQL translation does not implement, such as a routing-only
// function.
var ErrUnsupported = errors.New("not supported in queries")

// ErrTooComplex is returned (wrapped) when a translation would exceed the
// database's parameter limit or MaxSQLLength.
var ErrTooComplex = errors.New("query too complex")

// MaxSQLLength bounds the SQL text a translation may produce, in bytes.
const MaxSQLLength = 1 << 20

// Schema tells the translator where the documents of one collection live.
// All its strings are trusted SQL written by the caller, never user input.
type Schema struct {
	// From is the body of the FROM clause, for example "twins t".
	From string
	// Where, when not empty, is a condition every row must also satisfy,
	// for example "t.module_id <> ''".
	Where string
	// Doc is the SQL expression of the whole document: JSON text in SQLite,
	// jsonb in PostgreSQL (for a text column there: "CAST(t.doc AS jsonb)").
	Doc string
	// Roots optionally maps top-level property names to columns that hold
	// them, so that for example deviceId = 'x' compares an indexed column.
	// Other properties are read from Doc.
	Roots map[string]Column
	// Key lists text expressions that order the rows uniquely (for example
	// "t.id"); TOP and paging follow this order. Without a key the row
	// order is unspecified.
	Key []string
}

// Column is where a top-level property is stored.
type Column struct {
	// Expr is the SQL expression of the column.
	Expr string
	// JSON reports that Expr yields the property's JSON value (JSON text in
	// SQLite, jsonb in PostgreSQL) rather than SQL text. A text column holds
	// a string property; NULL means the property is undefined.
	JSON bool
}

func (s Schema) validate(needFrom bool) error {
	if strings.TrimSpace(s.Doc) == "" {
		return errors.New("translate query: schema has no Doc expression")
	}
	if needFrom && strings.TrimSpace(s.From) == "" {
		return errors.New("translate query: schema has no From clause")
	}
	for name, c := range s.Roots {
		if strings.TrimSpace(c.Expr) == "" {
			return fmt.Errorf("translate query: schema root %q has an empty Expr", name)
		}
	}
	return nil
}

// CondSQL translates a condition into a boolean SQL expression for a WHERE
// clause, with placeholders numbered from $argOffset+1 in ascending order.
// The expression is true exactly for the documents e.Eval accepts; it is
// NULL where the condition is undefined, so NOT (expr) again matches the
// Go semantics of NOT. The match-all condition gives TRUE.
func CondSQL(e Expr, d Dialect, s Schema, argOffset int) (string, []any, error) {
	impl, err := d.impl()
	if err != nil {
		return "", nil, err
	}
	if err := s.validate(false); err != nil {
		return "", nil, err
	}
	if argOffset < 0 {
		return "", nil, fmt.Errorf("translate condition: negative argument offset %d", argOffset)
	}
	c := &compiler{d: impl, s: s}
	var f frag
	if e.root == nil {
		f = sq("TRUE")
	} else if f, err = c.cond(e.root); err != nil {
		return "", nil, err
	}
	return render(f, impl, argOffset)
}

// SQL translates q into one SELECT statement with $1..$n placeholders in
// ascending order and returns it with the arguments. Every result column is
// the JSON text of a value or NULL for undefined: one column holding the
// document for SELECT *, else one per projection; [Query.Item] turns a row
// into the result item. Non-aggregate rows are ordered by s.Key, groups by
// their value, and TOP becomes LIMIT.
func (q *Query) SQL(d Dialect, s Schema) (string, []any, error) {
	return q.SQLPage(d, s, 0, 0)
}

// SQLPage is SQL for one page of the results: it skips the first offset
// items and returns at most limit items (0: no limit beyond TOP).
func (q *Query) SQLPage(d Dialect, s Schema, offset, limit int) (string, []any, error) {
	impl, err := d.impl()
	if err != nil {
		return "", nil, err
	}
	if err := s.validate(true); err != nil {
		return "", nil, err
	}
	if offset < 0 || limit < 0 {
		return "", nil, fmt.Errorf("translate query: negative offset %d or limit %d", offset, limit)
	}
	if err := q.check(); err != nil {
		return "", nil, err
	}
	c := &compiler{d: impl, s: s}
	where, err := c.where(q.Where)
	if err != nil {
		return "", nil, err
	}
	var stmt frag
	if q.GroupBy != nil {
		stmt, err = c.groupQuery(q, where)
	} else {
		stmt, err = c.plainQuery(q, where)
	}
	if err != nil {
		return "", nil, err
	}
	n := -1
	if q.Top >= 0 {
		n = max(0, q.Top-offset)
	}
	if limit > 0 && (n < 0 || limit < n) {
		n = limit
	}
	if tail := impl.limit(n, offset); tail != "" {
		stmt = sq(stmt, " ", tail)
	}
	return render(stmt, impl, 0)
}

// where builds the WHERE clause (with its keyword), or nothing.
func (c *compiler) where(e Expr) (frag, error) {
	var conds []frag
	if strings.TrimSpace(c.s.Where) != "" {
		conds = append(conds, sq("(", c.s.Where, ")"))
	}
	if e.root != nil {
		f, err := c.cond(e.root)
		if err != nil {
			return frag{}, err
		}
		conds = append(conds, f)
	}
	if len(conds) == 0 {
		return frag{}, nil
	}
	return sq(" WHERE ", joinFrags(conds, " AND ")), nil
}

func (c *compiler) plainQuery(q *Query, where frag) (frag, error) {
	var cols []frag
	if q.Star {
		cols = append(cols, sq(c.d.docText(c.s.Doc), " AS c1"))
	} else {
		for i, pr := range q.Projections {
			var col frag
			if pr.Count {
				col = sq("CAST(COUNT(*) AS TEXT)")
			} else {
				v, err := c.val(pr.Expr.root)
				if err != nil {
					return frag{}, err
				}
				col = c.jsonText(v)
			}
			cols = append(cols, sq(col, " AS c", strconv.Itoa(i+1)))
		}
	}
	stmt := sq("SELECT ", joinFrags(cols, ", "), " FROM ", c.s.From, where)
	if !q.aggregate() && len(c.s.Key) > 0 {
		keys := make([]frag, len(c.s.Key))
		for i, k := range c.s.Key {
			keys[i] = sq(c.d.orderKey(k))
		}
		stmt = sq(stmt, " ORDER BY ", joinFrags(keys, ", "))
	}
	return stmt, nil
}

func (c *compiler) groupQuery(q *Query, where frag) (frag, error) {
	v, err := c.val(q.GroupBy)
	if err != nil {
		return frag{}, err
	}
	const g = "grp.g"
	var cols []frag
	for i, pr := range q.Projections {
		col := c.d.groupText(g)
		if pr.Count {
			col = sq("CAST(COUNT(*) AS TEXT)")
		}
		cols = append(cols, sq(col, " AS c", strconv.Itoa(i+1)))
	}
	return sq("SELECT ", joinFrags(cols, ", "),
		" FROM (SELECT ", c.groupValue(v), " AS g FROM ", c.s.From, where, ") AS grp",
		" GROUP BY ", joinFrags(c.d.groupBy(g), ", "),
		" ORDER BY ", joinFrags(c.d.groupOrder(g), ", ")), nil
}

// ---- SQL fragments ----

// frag is SQL under construction: a rope of text, bound parameters and
// nested fragments. A fragment may be referenced several times; each use of
// a parameter renders a fresh placeholder, so numbering stays ascending.
type frag struct {
	parts []any // string | param | frag
}

type param struct{ v any }

// sq concatenates strings, params and fragments into a fragment.
func sq(parts ...any) frag {
	return frag{parts: parts}
}

func joinFrags(fs []frag, sep string) frag {
	parts := make([]any, 0, 2*len(fs))
	for i, f := range fs {
		if i > 0 {
			parts = append(parts, sep)
		}
		parts = append(parts, f)
	}
	return frag{parts: parts}
}

// joinBalanced joins boolean terms with op as a balanced tree of
// parentheses, so long AND/OR lists do not nest deeply in the database's
// parser.
func joinBalanced(fs []frag, op string) frag {
	if len(fs) == 1 {
		return fs[0]
	}
	mid := len(fs) / 2
	return sq("(", joinBalanced(fs[:mid], op), " ", op, " ", joinBalanced(fs[mid:], op), ")")
}

type renderer struct {
	b        strings.Builder
	args     []any
	offset   int
	maxArgs  int
	tooLarge bool
}

func render(f frag, d dialect, offset int) (string, []any, error) {
	r := &renderer{offset: offset, maxArgs: d.maxParams()}
	r.walk(f)
	if r.tooLarge {
		return "", nil, fmt.Errorf("translate query: the SQL would exceed %d bytes or %d parameters: %w", MaxSQLLength, r.maxArgs, ErrTooComplex)
	}
	return r.b.String(), r.args, nil
}

func (r *renderer) walk(f frag) {
	for _, p := range f.parts {
		if r.tooLarge {
			return
		}
		switch p := p.(type) {
		case string:
			r.b.WriteString(p)
		case param:
			r.args = append(r.args, p.v)
			r.b.WriteString("$" + strconv.Itoa(r.offset+len(r.args)))
		case frag:
			r.walk(p)
		default:
			panic(fmt.Sprintf("query: fragment part of type %T", p))
		}
		if r.b.Len() > MaxSQLLength || r.offset+len(r.args) > r.maxArgs {
			r.tooLarge = true
		}
	}
}

// ---- translation of expressions ----

// vt is the type of a translated value.
type vt uint8

const (
	vUndef vt = iota // always undefined: SQL NULL
	vNull            // the JSON null constant
	vBool            // SQL boolean (SQLite 1/0), NULL when undefined
	vNum             // SQL double, NULL when undefined
	vStr             // SQL text, NULL when undefined
	vDyn             // a JSON value at a path, type known only per row
)

// sqlVal is a translated expression.
type sqlVal struct {
	t    vt
	f    frag    // vBool, vNum, vStr
	path dynPath // vDyn
	// leaf marks values cheap to repeat (parameters, columns, path reads).
	leaf bool
}

// dynPath is a JSON value inside a document expression.
type dynPath struct {
	root     string   // SQL expression of a JSON document
	segs     []string // property names below root
	jsonPath string   // segs as an SQLite JSON path
}

func newDynPath(root string, segs []string) dynPath {
	return dynPath{root: root, segs: segs, jsonPath: sqliteJSONPath(segs)}
}

type compiler struct {
	d    dialect
	s    Schema
	lets int
}

func unsupported(at Pos, what string) error {
	return fmt.Errorf("%s: %s is %w", at, what, ErrUnsupported)
}

func (c *compiler) nullBool() frag { return c.d.null(vBool) }

func (c *compiler) constBool(b bool) sqlVal {
	if b {
		return sqlVal{t: vBool, f: sq("TRUE"), leaf: true}
	}
	return sqlVal{t: vBool, f: sq("FALSE"), leaf: true}
}

func boolVal(f frag) sqlVal { return sqlVal{t: vBool, f: f} }

// cond translates n in a boolean context: a boolean, else NULL.
func (c *compiler) cond(n Node) (frag, error) {
	v, err := c.val(n)
	if err != nil {
		return frag{}, err
	}
	return c.asBool(v), nil
}

func (c *compiler) asBool(v sqlVal) frag {
	switch v.t {
	case vBool:
		return v.f
	case vDyn:
		return sq("CASE WHEN ", c.d.typeIs(v.path, KindBool), " THEN ", c.d.boolAt(v.path), " END")
	}
	return c.nullBool()
}

// typed returns v as a native value of type t (vBool, vNum or vStr), or
// false when v can never have that type.
func (c *compiler) typed(v sqlVal, t vt) (frag, bool) {
	switch v.t {
	case t:
		return v.f, true
	case vDyn:
		return sq("CASE WHEN ", c.d.typeIs(v.path, kindOf(t)), " THEN ", c.d.at(v.path, t), " END"), true
	}
	return frag{}, false
}

func kindOf(t vt) Kind {
	switch t {
	case vNull:
		return KindNull
	case vBool:
		return KindBool
	case vNum:
		return KindNumber
	case vStr:
		return KindString
	}
	return KindUndefined
}

func (c *compiler) val(n Node) (sqlVal, error) {
	switch n := n.(type) {
	case *Literal:
		switch n.Value.Kind {
		case KindNull:
			return sqlVal{t: vNull, leaf: true}, nil
		case KindBool:
			return sqlVal{t: vBool, f: c.d.bind(n.Value.Bool, vBool), leaf: true}, nil
		case KindNumber:
			return sqlVal{t: vNum, f: c.d.bind(n.Value.Num, vNum), leaf: true}, nil
		case KindString:
			return sqlVal{t: vStr, f: c.d.bind(n.Value.Str, vStr), leaf: true}, nil
		}
		return sqlVal{}, fmt.Errorf("translate %s: literal of kind %s", n.At, n.Value.Kind)
	case *Path:
		return c.path(n), nil
	case *Unary:
		if n.Op != OpNot && n.Op != OpNeg {
			return sqlVal{}, fmt.Errorf("translate %s: unknown unary operator %q", n.At, n.Op)
		}
		if n.Op == OpNot {
			x, err := c.cond(n.X)
			if err != nil {
				return sqlVal{}, err
			}
			return boolVal(sq("(NOT ", x, ")")), nil
		}
		x, err := c.val(n.X)
		if err != nil {
			return sqlVal{}, err
		}
		f, ok := c.typed(x, vNum)
		if !ok {
			return sqlVal{}, nil
		}
		return sqlVal{t: vNum, f: c.d.neg(f)}, nil
	case *Binary:
		l, err := c.val(n.L)
		if err != nil {
			return sqlVal{}, err
		}
		r, err := c.val(n.R)
		if err != nil {
			return sqlVal{}, err
		}
		if n.Op.isComparison() {
			return c.compare(n.Op, l, r), nil
		}
		if !n.Op.isArithmetic() {
			return sqlVal{}, fmt.Errorf("translate %s: unknown binary operator %q", n.At, n.Op)
		}
		a, okA := c.typed(l, vNum)
		b, okB := c.typed(r, vNum)
		if !okA || !okB {
			return sqlVal{}, nil
		}
		return sqlVal{t: vNum, f: c.d.arith(n.Op, a, b)}, nil
	case *Logical:
		if (n.Op != OpAnd && n.Op != OpOr) || len(n.Terms) == 0 {
			return sqlVal{}, fmt.Errorf("translate %s: malformed %q node with %d terms", n.At, n.Op, len(n.Terms))
		}
		terms := make([]frag, len(n.Terms))
		for i, t := range n.Terms {
			f, err := c.cond(t)
			if err != nil {
				return sqlVal{}, err
			}
			terms[i] = f
		}
		return boolVal(joinBalanced(terms, string(n.Op))), nil
	case *In:
		return c.in(n)
	case *Call:
		if err := checkCall(n); err != nil {
			return sqlVal{}, err
		}
		return c.call(n)
	case nil:
		return sqlVal{}, errors.New("translate query: nil syntax tree node")
	}
	return sqlVal{}, fmt.Errorf("translate %s: unknown node type %T", n.Pos(), n)
}

func (c *compiler) path(p *Path) sqlVal {
	if len(p.Segments) == 0 {
		return sqlVal{}
	}
	if col, ok := c.s.Roots[p.Segments[0]]; ok {
		if !col.JSON {
			if len(p.Segments) > 1 {
				return sqlVal{} // a string has no properties
			}
			return sqlVal{t: vStr, f: sq("(", col.Expr, ")"), leaf: true}
		}
		return sqlVal{t: vDyn, path: newDynPath(col.Expr, p.Segments[1:]), leaf: true}
	}
	return sqlVal{t: vDyn, path: newDynPath(c.s.Doc, p.Segments), leaf: true}
}

func sqlOp(op Op) string {
	if op == OpNe {
		return "<>"
	}
	return string(op)
}

// compare translates a comparison: defined only between primitives of one
// type, ordering only for numbers and strings.
func (c *compiler) compare(op Op, l, r sqlVal) sqlVal {
	ordering := op != OpEq && op != OpNe
	if l.t == vUndef || r.t == vUndef {
		return sqlVal{}
	}
	if l.t != vDyn && r.t != vDyn {
		if l.t != r.t {
			return sqlVal{}
		}
		switch l.t {
		case vNull:
			if ordering {
				return sqlVal{}
			}
			return c.constBool(op == OpEq)
		case vBool:
			if ordering {
				return sqlVal{}
			}
		}
		return boolVal(c.cmpTyped(op, l.t, l.f, r.f))
	}
	if l.t == vDyn && r.t == vDyn {
		var branches []frag
		for _, t := range []vt{vNum, vStr, vBool, vNull} {
			if ordering && (t == vBool || t == vNull) {
				continue
			}
			guard := sq(c.d.typeIs(l.path, kindOf(t)), " AND ", c.d.typeIs(r.path, kindOf(t)))
			var then frag
			if t == vNull {
				then = c.constBool(op == OpEq).f
			} else {
				then = c.cmpTyped(op, t, c.d.at(l.path, t), c.d.at(r.path, t))
			}
			branches = append(branches, sq(" WHEN ", guard, " THEN ", then))
		}
		return boolVal(sq("CASE", joinFrags(branches, ""), " END"))
	}
	// One side is a path, the other has a static type.
	dyn, st := l, r
	if r.t == vDyn {
		dyn, st = r, l
	}
	if st.t == vNull {
		if ordering {
			return sqlVal{}
		}
		return boolVal(sq("CASE WHEN ", c.d.typeIs(dyn.path, KindNull), " THEN ", c.constBool(op == OpEq).f, " END"))
	}
	if ordering && st.t == vBool {
		return sqlVal{}
	}
	a, b := c.d.at(dyn.path, st.t), st.f
	if r.t == vDyn {
		a, b = b, a
	}
	return boolVal(sq("CASE WHEN ", c.d.typeIs(dyn.path, kindOf(st.t)), " THEN ", c.cmpTyped(op, st.t, a, b), " END"))
}

// cmpTyped compares two native values of type t.
func (c *compiler) cmpTyped(op Op, t vt, a, b frag) frag {
	if t == vStr {
		return sq("(", c.d.collate(a), " ", sqlOp(op), " ", b, ")")
	}
	return sq("(", a, " ", sqlOp(op), " ", b, ")")
}

// in translates x IN [list] as the OR of x = item for every item.
func (c *compiler) in(n *In) (sqlVal, error) {
	if len(n.List) == 0 {
		return c.constBool(n.Not), nil
	}
	x, err := c.val(n.X)
	if err != nil {
		return sqlVal{}, err
	}
	items := map[vt][]frag{}
	hasNull := false
	for _, v := range n.List {
		switch v.Kind {
		case KindNull:
			hasNull = true
		case KindBool:
			items[vBool] = append(items[vBool], c.d.bind(v.Bool, vBool))
		case KindNumber:
			items[vNum] = append(items[vNum], c.d.bind(v.Num, vNum))
		case KindString:
			items[vStr] = append(items[vStr], c.d.bind(v.Str, vStr))
		}
	}
	// member is the result for a value of type t known to be x's type.
	member := func(t vt, f frag) frag {
		same := items[t]
		if len(same) == 0 {
			return c.nullBool() // every comparison is between different types
		}
		lhs := f
		if t == vStr {
			lhs = c.d.collate(f)
		}
		test := sq("(", lhs, " IN (", joinFrags(same, ", "), "))")
		if len(same) == len(n.List) {
			return test
		}
		return sq("CASE WHEN ", test, " THEN TRUE END")
	}
	var res frag
	switch x.t {
	case vUndef:
		res = c.nullBool()
	case vNull:
		if hasNull {
			res = sq("TRUE")
		} else {
			res = c.nullBool()
		}
	case vBool, vNum, vStr:
		res = member(x.t, x.f)
	case vDyn:
		var branches []frag
		for _, t := range []vt{vStr, vNum, vBool} {
			if len(items[t]) > 0 {
				branches = append(branches, sq(" WHEN ", c.d.typeIs(x.path, kindOf(t)), " THEN ", member(t, c.d.at(x.path, t))))
			}
		}
		if hasNull {
			branches = append(branches, sq(" WHEN ", c.d.typeIs(x.path, KindNull), " THEN TRUE"))
		}
		res = sq("CASE", joinFrags(branches, ""), " ELSE ", c.nullBool(), " END")
	}
	if n.Not {
		res = sq("(NOT ", res, ")")
	}
	return boolVal(res), nil
}

func (c *compiler) call(n *Call) (sqlVal, error) {
	args := make([]sqlVal, len(n.Args))
	for i, a := range n.Args {
		v, err := c.val(a)
		if err != nil {
			return sqlVal{}, err
		}
		args[i] = v
	}
	switch n.Func {
	case "IS_DEFINED", "IS_NULL", "IS_STRING", "IS_NUMBER", "IS_BOOL", "IS_OBJECT", "IS_ARRAY", "IS_PRIMITIVE":
		return c.typeTest(n.Func, args[0]), nil
	case "LOWER", "UPPER", "LENGTH", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "CONCAT":
		strs := make([]frag, len(args))
		leaf := true
		for i, a := range args {
			f, ok := c.typed(a, vStr)
			if !ok {
				return sqlVal{}, nil
			}
			strs[i] = f
			leaf = leaf && a.leaf
		}
		t := vStr
		switch n.Func {
		case "LENGTH":
			t = vNum
		case "STARTS_WITH", "ENDS_WITH", "CONTAINS":
			t = vBool
		}
		if c.d.reusesArgs(n.Func) && !leaf {
			return sqlVal{t: t, f: c.let(strs, func(refs []frag) frag { return c.d.function(n.Func, refs) })}, nil
		}
		return sqlVal{t: t, f: c.d.function(n.Func, strs)}, nil
	case "ABS", "FLOOR", "CEILING":
		f, ok := c.typed(args[0], vNum)
		if !ok {
			return sqlVal{}, nil
		}
		return sqlVal{t: vNum, f: c.d.function(n.Func, []frag{f})}, nil
	case "AS_NUMBER":
		a := args[0]
		asNum := func(s frag, leaf bool) frag {
			if c.d.reusesArgs(n.Func) && !leaf {
				return c.let([]frag{s}, func(refs []frag) frag { return c.d.function(n.Func, refs) })
			}
			return c.d.function(n.Func, []frag{s})
		}
		switch a.t {
		case vNum:
			return a, nil
		case vStr:
			return sqlVal{t: vNum, f: asNum(a.f, a.leaf)}, nil
		case vDyn:
			return sqlVal{t: vNum, f: sq("CASE WHEN ", c.d.typeIs(a.path, KindNumber), " THEN ", c.d.at(a.path, vNum),
				" WHEN ", c.d.typeIs(a.path, KindString), " THEN ", asNum(c.d.at(a.path, vStr), true), " END")}, nil
		}
		return sqlVal{}, nil
	}
	return sqlVal{}, unsupported(n.At, "function "+n.Func)
}

// typeTest translates IS_DEFINED and the IS_<type> functions, which always
// yield a boolean.
func (c *compiler) typeTest(fn string, a sqlVal) sqlVal {
	var want []Kind
	switch fn {
	case "IS_DEFINED":
		want = []Kind{KindNull, KindBool, KindNumber, KindString, KindArray, KindObject}
	case "IS_NULL":
		want = []Kind{KindNull}
	case "IS_STRING":
		want = []Kind{KindString}
	case "IS_NUMBER":
		want = []Kind{KindNumber}
	case "IS_BOOL":
		want = []Kind{KindBool}
	case "IS_OBJECT":
		want = []Kind{KindObject}
	case "IS_ARRAY":
		want = []Kind{KindArray}
	case "IS_PRIMITIVE":
		want = []Kind{KindNull, KindBool, KindNumber, KindString}
	}
	if a.t == vDyn {
		if fn == "IS_DEFINED" {
			return boolVal(c.d.defined(a.path))
		}
		tests := make([]frag, len(want))
		for i, k := range want {
			tests[i] = c.d.typeIs(a.path, k)
		}
		return boolVal(sq("COALESCE(", joinBalanced(tests, "OR"), ", FALSE)"))
	}
	k := kindOf(a.t)
	for _, w := range want {
		if w == k {
			if a.t == vNull {
				return c.constBool(true)
			}
			return boolVal(sq("(", a.f, " IS NOT NULL)"))
		}
	}
	return c.constBool(false)
}

// let evaluates args once in a derived table and builds body over column
// references to them, for SQL that needs an argument more than once.
func (c *compiler) let(args []frag, body func(refs []frag) frag) frag {
	c.lets++
	alias := "l" + strconv.Itoa(c.lets)
	cols := make([]frag, len(args))
	refs := make([]frag, len(args))
	for i, a := range args {
		name := "a" + strconv.Itoa(i+1)
		cols[i] = sq(a, " AS ", name)
		refs[i] = sq(alias, ".", name)
	}
	return sq("(SELECT ", body(refs), " FROM (SELECT ", joinFrags(cols, ", "), ") AS ", alias, ")")
}

// jsonText renders a value as JSON text, NULL when undefined.
func (c *compiler) jsonText(v sqlVal) frag {
	switch v.t {
	case vNull:
		return sq("'null'")
	case vBool, vNum, vStr:
		return c.d.toJSON(v.f, v.t)
	case vDyn:
		return c.d.jsonText(v.path)
	}
	return c.d.null(vStr)
}

// groupValue renders the GROUP BY value for the inner query.
func (c *compiler) groupValue(v sqlVal) frag {
	switch v.t {
	case vStr:
		return c.d.groupStatic(v.f)
	case vDyn:
		return c.d.jsonAt(v.path)
	}
	return c.d.groupNull()
}
