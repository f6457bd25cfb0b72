package query

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Parse parses a SELECT statement.
func Parse(q string) (*Query, error) {
	toks, err := lex(q)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	query, err := p.query()
	if err != nil {
		return nil, err
	}
	return query, nil
}

// ParseCondition parses a bare condition, as in a configuration's
// targetCondition or a route's WHERE clause. "*" is the match-all condition
// (the zero Expr). A collection qualifier on a path (devices.tags.x,
// devices.modules.moduleId) is removed.
func ParseCondition(s string) (Expr, error) {
	toks, err := lex(s)
	if err != nil {
		return Expr{}, err
	}
	p := &parser{toks: toks}
	if p.isPunct("*") && p.toks[1].kind == tEOF {
		return Expr{}, nil
	}
	e, err := p.condition("")
	if err != nil {
		return Expr{}, err
	}
	if err := p.expectEOF(); err != nil {
		return Expr{}, err
	}
	return e, nil
}

// ParseTargetCondition parses a configuration target condition, which is
// either a bare condition over device twins (as ParseCondition) or, for
// module configurations, "FROM devices.modules WHERE condition". It returns
// the collection the condition applies to.
func ParseTargetCondition(s string) (Collection, Expr, error) {
	toks, err := lex(s)
	if err != nil {
		return "", Expr{}, err
	}
	p := &parser{toks: toks}
	if !p.isKeyword("FROM") {
		e, err := ParseCondition(s)
		return Devices, e, err
	}
	p.i++
	from, err := p.collection()
	if err != nil {
		return "", Expr{}, err
	}
	if !p.isKeyword("WHERE") {
		return "", Expr{}, p.errf("expected WHERE after FROM %s, got %s", from, p.tok().describe())
	}
	p.i++
	e, err := p.condition("WHERE")
	if err != nil {
		return "", Expr{}, err
	}
	if err := p.expectEOF(); err != nil {
		return "", Expr{}, err
	}
	if err := p.checkQualifiers(from); err != nil {
		return "", Expr{}, err
	}
	return from, e, nil
}

type parser struct {
	toks  []token
	i     int
	depth int
	// quals records every collection qualifier removed from a path, to be
	// checked against FROM.
	quals []qualifier
}

type qualifier struct {
	at  Pos
	col Collection
}

func (p *parser) tok() token { return p.toks[p.i] }

func (p *parser) prev() (token, bool) {
	if p.i == 0 {
		return token{}, false
	}
	return p.toks[p.i-1], true
}

func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{Pos: p.tok().pos, Msg: fmt.Sprintf(format, args...)}
}

func errAt(at Pos, format string, args ...any) error {
	return &SyntaxError{Pos: at, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) isPunct(s string) bool {
	t := p.tok()
	return t.kind == tPunct && t.val == s
}

func (p *parser) isKeyword(kw string) bool {
	t := p.tok()
	return t.kind == tIdent && strings.EqualFold(t.val, kw)
}

func (p *parser) expectEOF() error {
	if p.tok().kind != tEOF {
		return p.errf("expected end of input, got %s", p.tok().describe())
	}
	return nil
}

// enter guards the recursion depth of nested constructs.
func (p *parser) enter(at Pos) error {
	p.depth++
	if p.depth > 4*MaxDepth {
		return errAt(at, "parentheses, operators and calls nest deeper than %d levels", 4*MaxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func (p *parser) query() (*Query, error) {
	if !p.isKeyword("SELECT") {
		return nil, p.errf("expected SELECT, got %s", p.tok().describe())
	}
	p.i++
	q := &Query{Top: -1}
	if p.isKeyword("TOP") {
		p.i++
		t := p.tok()
		if t.kind != tNumber || t.num != math.Trunc(t.num) || t.num > MaxTop || strings.ContainsAny(t.src, ".eE") {
			return nil, p.errf("TOP needs an integer from 0 to %d, got %s", MaxTop, t.describe())
		}
		q.Top = int(t.num)
		p.i++
	}
	if p.isPunct("*") {
		q.Star = true
		p.i++
	} else {
		for {
			pr, err := p.projection()
			if err != nil {
				return nil, err
			}
			q.Projections = append(q.Projections, pr)
			if !p.isPunct(",") {
				break
			}
			p.i++
		}
	}
	if !p.isKeyword("FROM") {
		if p.tok().kind == tEOF {
			return nil, p.errf("expected FROM, got end of input")
		}
		return nil, p.errf("expected ',' or FROM after the SELECT list, got %s", p.tok().describe())
	}
	p.i++
	from, err := p.collection()
	if err != nil {
		return nil, err
	}
	q.From = from
	if p.isKeyword("WHERE") {
		p.i++
		if q.Where, err = p.condition("WHERE"); err != nil {
			return nil, err
		}
	}
	if p.isKeyword("GROUP") {
		p.i++
		if !p.isKeyword("BY") {
			return nil, p.errf("expected BY after GROUP, got %s", p.tok().describe())
		}
		p.i++
		t := p.tok()
		if (t.kind != tIdent || isKeyword(t.val)) && t.kind != tQuoted {
			return nil, p.errf("GROUP BY needs a property path, got %s", t.describe())
		}
		p.i++
		path, err := p.path(t)
		if err != nil {
			return nil, err
		}
		if p.isPunct("(") {
			return nil, errAt(t.pos, "GROUP BY needs a property path, got a function call")
		}
		q.GroupBy = path
	}
	if err := p.expectEOF(); err != nil {
		return nil, err
	}
	if err := p.checkQualifiers(q.From); err != nil {
		return nil, err
	}
	if err := checkProjections(q); err != nil {
		return nil, err
	}
	return q, nil
}

func (p *parser) projection() (Projection, error) {
	t := p.tok()
	pr := Projection{At: t.pos}
	if t.kind == tIdent && strings.EqualFold(t.val, "COUNT") && p.toks[p.i+1].kind == tPunct && p.toks[p.i+1].val == "(" {
		p.i += 2
		if !p.isPunct(")") {
			return pr, p.errf("COUNT takes no arguments, got %s", p.tok().describe())
		}
		p.i++
		pr.Count = true
	} else {
		n, err := p.or()
		if err != nil {
			return pr, err
		}
		if err := checkHeight(n); err != nil {
			return pr, err
		}
		pr.Expr = Expr{root: n}
	}
	if p.isKeyword("AS") {
		p.i++
		a := p.tok()
		switch {
		case a.kind == tIdent && !isKeyword(a.val):
		case a.kind == tQuoted:
		default:
			return pr, p.errf("expected a name after AS, got %s", a.describe())
		}
		pr.Alias = a.val
		p.i++
	}
	return pr, nil
}

// collection reads devices, devices.modules or devices.jobs.
func (p *parser) collection() (Collection, error) {
	t := p.tok()
	if t.kind != tIdent {
		return "", p.errf("expected devices, devices.modules or devices.jobs after FROM, got %s", t.describe())
	}
	name := t.val
	p.i++
	for p.isPunct(".") && p.toks[p.i+1].kind == tIdent {
		name += "." + p.toks[p.i+1].val
		p.i += 2
	}
	switch c := Collection(strings.ToLower(name)); c {
	case Devices, Modules, Jobs:
		return c, nil
	}
	return "", errAt(t.pos, "unknown collection '%s'; expected devices, devices.modules or devices.jobs", name)
}

// condition parses an expression that must be usable as a condition; ctx
// names the clause for error messages.
func (p *parser) condition(ctx string) (Expr, error) {
	if p.tok().kind == tEOF {
		if ctx != "" {
			return Expr{}, p.errf("expected a condition after %s, got end of input", ctx)
		}
		return Expr{}, p.errf("expected a condition, got end of input")
	}
	n, err := p.or()
	if err != nil {
		return Expr{}, err
	}
	if err := checkCondition(n); err != nil {
		return Expr{}, err
	}
	if err := checkHeight(n); err != nil {
		return Expr{}, err
	}
	return Expr{root: n}, nil
}

func (p *parser) or() (Node, error) { return p.logical(OpOr, "OR", p.and) }

func (p *parser) and() (Node, error) { return p.logical(OpAnd, "AND", p.not) }

func (p *parser) logical(op Op, kw string, sub func() (Node, error)) (Node, error) {
	first, err := sub()
	if err != nil {
		return nil, err
	}
	if !p.isKeyword(kw) {
		return first, nil
	}
	l := &Logical{At: first.Pos(), Op: op}
	l.add(first)
	for p.isKeyword(kw) {
		p.i++
		n, err := sub()
		if err != nil {
			return nil, err
		}
		l.add(n)
	}
	for _, t := range l.Terms {
		if err := checkCondition(t); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// add appends a term, splicing in the terms of a nested Logical of the same
// operator.
func (l *Logical) add(n Node) {
	if inner, ok := n.(*Logical); ok && inner.Op == l.Op {
		l.Terms = append(l.Terms, inner.Terms...)
		return
	}
	l.Terms = append(l.Terms, n)
}

func (p *parser) not() (Node, error) {
	if !p.isKeyword("NOT") {
		return p.comparison()
	}
	at := p.tok().pos
	if err := p.enter(at); err != nil {
		return nil, err
	}
	defer p.leave()
	p.i++
	x, err := p.not()
	if err != nil {
		return nil, err
	}
	if err := checkCondition(x); err != nil {
		return nil, err
	}
	return &Unary{At: at, Op: OpNot, X: x}, nil
}

func (p *parser) comparison() (Node, error) {
	l, err := p.additive()
	if err != nil {
		return nil, err
	}
	for {
		t := p.tok()
		switch {
		case t.kind == tPunct && (t.val == "=" || t.val == "!=" || t.val == "<>" || t.val == "<" || t.val == ">" || t.val == "<=" || t.val == ">="):
			p.i++
			r, err := p.additive()
			if err != nil {
				return nil, err
			}
			op := Op(t.val)
			if t.val == "<>" {
				op = OpNe
			}
			l = &Binary{At: l.Pos(), Op: op, L: l, R: r}
		case t.kind == tIdent && (strings.EqualFold(t.val, "IN") || strings.EqualFold(t.val, "NIN")):
			p.i++
			list, err := p.list(t)
			if err != nil {
				return nil, err
			}
			l = &In{At: l.Pos(), Not: strings.EqualFold(t.val, "NIN"), X: l, List: list}
		case t.kind == tIdent && strings.EqualFold(t.val, "NOT") && p.toks[p.i+1].kind == tIdent && strings.EqualFold(p.toks[p.i+1].val, "IN"):
			p.i += 2
			list, err := p.list(p.toks[p.i-1])
			if err != nil {
				return nil, err
			}
			l = &In{At: l.Pos(), Not: true, X: l, List: list}
		default:
			return l, nil
		}
	}
}

// list reads the [literal, ...] after IN or NIN.
func (p *parser) list(op token) ([]Value, error) {
	if !p.isPunct("[") {
		return nil, p.errf("expected '[' after %s, got %s", strings.ToUpper(op.val), p.tok().describe())
	}
	p.i++
	list := []Value{}
	if p.isPunct("]") {
		p.i++
		return list, nil
	}
	for {
		t := p.tok()
		var v Value
		switch {
		case t.kind == tString:
			v = String(t.val)
		case t.kind == tNumber:
			v = Number(t.num)
		case t.kind == tPunct && t.val == "-" && p.toks[p.i+1].kind == tNumber:
			p.i++
			v = Number(-p.tok().num)
		case t.kind == tIdent && strings.EqualFold(t.val, "true"):
			v = Bool(true)
		case t.kind == tIdent && strings.EqualFold(t.val, "false"):
			v = Bool(false)
		case t.kind == tIdent && strings.EqualFold(t.val, "null"):
			v = Null()
		case t.kind == tEOF:
			return nil, p.errf("expected a literal or ']' in the %s list, got end of input", strings.ToUpper(op.val))
		default:
			return nil, p.errf("%s list elements must be literals (string, number, true, false or null), got %s", strings.ToUpper(op.val), t.describe())
		}
		p.i++
		list = append(list, v)
		if p.isPunct("]") {
			p.i++
			return list, nil
		}
		if !p.isPunct(",") {
			return nil, p.errf("expected ',' or ']' in the %s list, got %s", strings.ToUpper(op.val), p.tok().describe())
		}
		p.i++
	}
}

func (p *parser) additive() (Node, error) {
	l, err := p.multiplicative()
	if err != nil {
		return nil, err
	}
	for p.isPunct("+") || p.isPunct("-") {
		op := Op(p.tok().val)
		p.i++
		r, err := p.multiplicative()
		if err != nil {
			return nil, err
		}
		l = &Binary{At: l.Pos(), Op: op, L: l, R: r}
	}
	return l, nil
}

func (p *parser) multiplicative() (Node, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.isPunct("*") || p.isPunct("/") || p.isPunct("%") {
		op := Op(p.tok().val)
		p.i++
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = &Binary{At: l.Pos(), Op: op, L: l, R: r}
	}
	return l, nil
}

func (p *parser) unary() (Node, error) {
	if !p.isPunct("-") {
		return p.primary()
	}
	at := p.tok().pos
	if err := p.enter(at); err != nil {
		return nil, err
	}
	defer p.leave()
	p.i++
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	// A negated number literal is a negative literal, so that the canonical
	// rendering of -5 reads back as the same tree.
	if lit, ok := x.(*Literal); ok && lit.Value.Kind == KindNumber {
		return &Literal{At: at, Value: Number(-lit.Value.Num)}, nil
	}
	return &Unary{At: at, Op: OpNeg, X: x}, nil
}

func (p *parser) primary() (Node, error) {
	t := p.tok()
	switch t.kind {
	case tString:
		p.i++
		return &Literal{At: t.pos, Value: String(t.val)}, nil
	case tNumber:
		p.i++
		return &Literal{At: t.pos, Value: Number(t.num)}, nil
	case tQuoted:
		p.i++
		return p.path(t)
	case tIdent:
		switch strings.ToUpper(t.val) {
		case "TRUE":
			p.i++
			return &Literal{At: t.pos, Value: Bool(true)}, nil
		case "FALSE":
			p.i++
			return &Literal{At: t.pos, Value: Bool(false)}, nil
		case "NULL":
			p.i++
			return &Literal{At: t.pos, Value: Null()}, nil
		}
		if isKeyword(t.val) {
			return nil, p.expectedValue()
		}
		p.i++
		if p.isPunct("(") {
			return p.call(t)
		}
		return p.path(t)
	case tPunct:
		switch t.val {
		case "(":
			if err := p.enter(t.pos); err != nil {
				return nil, err
			}
			defer p.leave()
			p.i++
			n, err := p.or()
			if err != nil {
				return nil, err
			}
			if !p.isPunct(")") {
				return nil, p.errf("expected ')' to close the '(' at %s, got %s", t.pos, p.tok().describe())
			}
			p.i++
			return n, nil
		case "[":
			return nil, p.errf("array literals are only allowed after IN or NIN")
		}
	}
	return nil, p.expectedValue()
}

func (p *parser) expectedValue() error {
	if prev, ok := p.prev(); ok {
		return p.errf("expected a value after %s, got %s", prev.describe(), p.tok().describe())
	}
	return p.errf("expected a value, got %s", p.tok().describe())
}

// path reads the rest of a path whose first segment is first, and removes
// a collection qualifier.
func (p *parser) path(first token) (*Path, error) {
	type seg struct {
		name   string
		quoted bool
	}
	segs := []seg{{first.val, first.kind == tQuoted}}
	for p.isPunct(".") {
		p.i++
		t := p.tok()
		if t.kind != tIdent && t.kind != tQuoted {
			return nil, p.errf("expected a property name after '.', got %s", t.describe())
		}
		segs = append(segs, seg{t.val, t.kind == tQuoted})
		p.i++
	}
	skip := 0
	if !segs[0].quoted && segs[0].name == "devices" {
		skip = 1
		col := Devices
		if len(segs) > 2 && !segs[1].quoted && (segs[1].name == "modules" || segs[1].name == "jobs") {
			skip = 2
			col = Collection("devices." + segs[1].name)
		}
		if len(segs) == skip {
			return nil, errAt(first.pos, "'%s' names the collection, not a property (quote a property named %s as [[%s]])", col, segs[0].name, segs[0].name)
		}
		p.quals = append(p.quals, qualifier{at: first.pos, col: col})
	}
	out := &Path{At: first.pos, Segments: make([]string, 0, len(segs)-skip)}
	for _, s := range segs[skip:] {
		out.Segments = append(out.Segments, s.name)
	}
	return out, nil
}

// checkQualifiers verifies that every qualifier names the FROM collection
// or devices.
func (p *parser) checkQualifiers(from Collection) error {
	for _, q := range p.quals {
		if q.col != Devices && q.col != from {
			return errAt(q.at, "path qualifier '%s' does not match FROM %s", q.col, from)
		}
	}
	return nil
}

func (p *parser) call(name token) (Node, error) {
	fn := canonicalFunc(name.val)
	if fn == "COUNT" {
		return nil, errAt(name.pos, "COUNT() is only allowed as a SELECT projection")
	}
	minArgs, maxArgs, ok := funcArity(fn)
	if !ok {
		return nil, errAt(name.pos, "unknown function '%s'", name.val)
	}
	if err := p.enter(name.pos); err != nil {
		return nil, err
	}
	defer p.leave()
	open := p.tok()
	p.i++ // (
	c := &Call{At: name.pos, Func: fn}
	if !p.isPunct(")") {
		for {
			a, err := p.or()
			if err != nil {
				return nil, err
			}
			c.Args = append(c.Args, a)
			if !p.isPunct(",") {
				break
			}
			p.i++
		}
		if !p.isPunct(")") {
			return nil, p.errf("expected ',' or ')' to close the '(' of %s at %s, got %s", fn, open.pos, p.tok().describe())
		}
	}
	p.i++
	if n := len(c.Args); n < minArgs || n > maxArgs {
		return nil, errAt(name.pos, "%s takes %s, got %d", fn, arityText(minArgs, maxArgs), n)
	}
	return c, nil
}

func arityText(lo, hi int) string {
	plural := func(n int) string {
		if n == 1 {
			return "1 argument"
		}
		return strconv.Itoa(n) + " arguments"
	}
	switch {
	case hi == math.MaxInt:
		return "at least " + plural(lo)
	case lo == hi:
		return plural(lo)
	}
	return fmt.Sprintf("%d to %d arguments", lo, hi)
}

// checkCall verifies that a call (possibly built by hand) names a known
// function with a valid number of arguments.
func checkCall(c *Call) error {
	lo, hi, ok := funcArity(c.Func)
	if !ok {
		return errAt(c.At, "unknown function '%s'", c.Func)
	}
	if n := len(c.Args); n < lo || n > hi {
		return errAt(c.At, "%s takes %s, got %d", c.Func, arityText(lo, hi), n)
	}
	return nil
}

// canonicalFunc upper-cases a function name and maps aliases.
func canonicalFunc(name string) string {
	switch n := strings.ToUpper(name); n {
	case "STARTSWITH":
		return "STARTS_WITH"
	case "ENDSWITH":
		return "ENDS_WITH"
	case "INDEXOF":
		return "INDEX_OF"
	default:
		return n
	}
}

// funcArity returns the argument count bounds of a known function.
func funcArity(fn string) (lo, hi int, ok bool) {
	switch fn {
	case "IS_DEFINED", "IS_NULL", "IS_STRING", "IS_NUMBER", "IS_BOOL", "IS_OBJECT", "IS_ARRAY", "IS_PRIMITIVE",
		"LOWER", "UPPER", "LENGTH", "ABS", "FLOOR", "CEILING", "AS_NUMBER", "SIGN", "SQUARE", "SQRT", "EXP":
		return 1, 1, true
	case "STARTS_WITH", "ENDS_WITH", "CONTAINS", "INDEX_OF", "POWER":
		return 2, 2, true
	case "SUBSTRING":
		return 3, 3, true
	case "CONCAT":
		return 2, math.MaxInt, true
	}
	return 0, 0, false
}

// stype is the static type of an expression: what it yields when it is not
// undefined.
type stype uint8

const (
	sDyn  stype = iota // any JSON value (a path)
	sNull              // null
	sBool
	sNum
	sStr
)

func (t stype) String() string {
	switch t {
	case sNull:
		return "null"
	case sBool:
		return "boolean"
	case sNum:
		return "number"
	case sStr:
		return "string"
	}
	return "value"
}

func staticType(n Node) stype {
	switch n := n.(type) {
	case *Literal:
		switch n.Value.Kind {
		case KindNull:
			return sNull
		case KindBool:
			return sBool
		case KindNumber:
			return sNum
		case KindString:
			return sStr
		}
	case *Unary:
		if n.Op == OpNot {
			return sBool
		}
		return sNum
	case *Binary:
		if n.Op.isComparison() {
			return sBool
		}
		return sNum
	case *Logical, *In:
		return sBool
	case *Call:
		switch n.Func {
		case "LOWER", "UPPER", "CONCAT", "SUBSTRING":
			return sStr
		case "LENGTH", "ABS", "FLOOR", "CEILING", "AS_NUMBER", "SIGN", "SQUARE", "SQRT", "EXP", "POWER", "INDEX_OF":
			return sNum
		}
		return sBool
	}
	return sDyn
}

// checkCondition rejects an operand of a boolean context whose static type
// is not boolean (it could never be true).
func checkCondition(n Node) error {
	switch t := staticType(n); t {
	case sBool, sDyn:
		return nil
	default:
		return errAt(n.Pos(), "%s is a %s, not a condition", describeNode(n), t)
	}
}

func describeNode(n Node) string {
	s := Expr{root: n}.String()
	if r := []rune(s); len(r) > 40 {
		s = string(r[:40]) + "…"
	}
	return "'" + s + "'"
}

// checkHeight rejects a syntax tree higher than MaxDepth, naming the first
// node found beyond it.
func checkHeight(n Node) error {
	if at, ok := tooDeep(n, 1); ok {
		return errAt(at, "expression nests deeper than %d levels", MaxDepth)
	}
	return nil
}

func tooDeep(n Node, depth int) (Pos, bool) {
	if depth > MaxDepth {
		return n.Pos(), true
	}
	var kids []Node
	switch n := n.(type) {
	case *Unary:
		kids = []Node{n.X}
	case *Binary:
		kids = []Node{n.L, n.R}
	case *Logical:
		kids = n.Terms
	case *In:
		kids = []Node{n.X}
	case *Call:
		kids = n.Args
	}
	for _, k := range kids {
		if at, ok := tooDeep(k, depth+1); ok {
			return at, true
		}
	}
	return Pos{}, false
}

// checkProjections validates the SELECT list against COUNT() and GROUP BY and
// assigns result names.
func checkProjections(q *Query) error {
	if q.GroupBy != nil && q.Star {
		return errAt(q.GroupBy.At, "SELECT * cannot be used with GROUP BY")
	}
	hasCount := false
	for _, pr := range q.Projections {
		hasCount = hasCount || pr.Count
	}
	for _, pr := range q.Projections {
		if pr.Count {
			continue
		}
		if q.GroupBy != nil {
			path, ok := pr.Expr.root.(*Path)
			if !ok || !equalSegments(path.Segments, q.GroupBy.Segments) {
				return errAt(pr.At, "projection %s must be COUNT() or the GROUP BY path", describeNode(pr.Expr.root))
			}
		} else if hasCount {
			return errAt(pr.At, "projection %s cannot be combined with COUNT() without GROUP BY", describeNode(pr.Expr.root))
		}
	}
	seen := make(map[string]bool, len(q.Projections))
	unnamed := 0
	for i := range q.Projections {
		pr := &q.Projections[i]
		switch path, isPath := pr.Expr.root.(*Path); {
		case pr.Alias != "":
			pr.Name = pr.Alias
		case isPath:
			pr.Name = path.Segments[len(path.Segments)-1]
		default:
			unnamed++
			pr.Name = "$" + strconv.Itoa(unnamed)
		}
		if seen[pr.Name] {
			return errAt(pr.At, "duplicate result name '%s'; use AS to rename", pr.Name)
		}
		seen[pr.Name] = true
	}
	return nil
}

func equalSegments(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
