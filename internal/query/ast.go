package query

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on the input the parser accepts.
const (
	// MaxLength is the longest query or condition text, in bytes.
	MaxLength = 8 << 10
	// MaxDepth is the greatest height of an expression's syntax tree.
	// Redundant parentheses add no height; as a guard the parser also
	// refuses more than 4*MaxDepth nested parentheses, NOTs, minus signs and
	// function calls.
	MaxDepth = 64
	// MaxTop is the largest n accepted in TOP n.
	MaxTop = 1<<31 - 1
)

// Pos is a position in the query text: 1-based line and column, the column
// counted in characters.
type Pos struct {
	Line, Col int
}

// String renders the position as "line L col C".
func (p Pos) String() string { return fmt.Sprintf("line %d col %d", p.Line, p.Col) }

// Collection is what a query reads from.
type Collection string

// The collections of the FROM clause.
const (
	Devices Collection = "devices"
	Modules Collection = "devices.modules"
	Jobs    Collection = "devices.jobs"
)

// Op is an operator of a Unary, Binary or Logical node.
type Op string

// The operators. "<>" is parsed as OpNe.
const (
	OpEq  Op = "="
	OpNe  Op = "!="
	OpLt  Op = "<"
	OpGt  Op = ">"
	OpLe  Op = "<="
	OpGe  Op = ">="
	OpAdd Op = "+"
	OpSub Op = "-"
	OpMul Op = "*"
	OpDiv Op = "/"
	OpMod Op = "%"
	OpAnd Op = "AND"
	OpOr  Op = "OR"
	OpNot Op = "NOT"
	OpNeg Op = "NEG"
)

func (o Op) isArithmetic() bool {
	switch o {
	case OpAdd, OpSub, OpMul, OpDiv, OpMod:
		return true
	}
	return false
}

func (o Op) isComparison() bool {
	switch o {
	case OpEq, OpNe, OpLt, OpGt, OpLe, OpGe:
		return true
	}
	return false
}

// Node is one node of the syntax tree: *Literal, *Path, *Unary, *Binary,
// *Logical, *In or *Call. The At field of each is where the node starts in
// the query text (the zero Pos for nodes built by hand).
type Node interface {
	// Pos is where the node starts in the query text.
	Pos() Pos
	node()
}

// Literal is a constant primitive: a string, number, boolean or null.
type Literal struct {
	At    Pos
	Value Value
}

// Path reads a property of the document. Segments has the collection
// qualifier removed and is never empty.
type Path struct {
	At       Pos
	Segments []string
}

// Unary is NOT x (Op OpNot) or -x (Op OpNeg).
type Unary struct {
	At Pos
	Op Op
	X  Node
}

// Binary is a comparison or an arithmetic operation.
type Binary struct {
	At   Pos
	Op   Op
	L, R Node
}

// Logical is an AND or OR of two or more terms.
type Logical struct {
	At    Pos
	Op    Op
	Terms []Node
}

// In is X IN [List...], or X NIN [List...] when Not is set. The list holds
// primitive literals only.
type In struct {
	At   Pos
	Not  bool
	X    Node
	List []Value
}

// Call is a function call. Func is the canonical upper-case name.
type Call struct {
	At   Pos
	Func string
	Args []Node
}

// Pos implements Node.
func (n *Literal) Pos() Pos { return n.At }

// Pos implements Node.
func (n *Path) Pos() Pos { return n.At }

// Pos implements Node.
func (n *Unary) Pos() Pos { return n.At }

// Pos implements Node.
func (n *Binary) Pos() Pos { return n.At }

// Pos implements Node.
func (n *Logical) Pos() Pos { return n.At }

// Pos implements Node.
func (n *In) Pos() Pos { return n.At }

// Pos implements Node.
func (n *Call) Pos() Pos { return n.At }

func (*Literal) node() {}
func (*Path) node()    {}
func (*Unary) node()   {}
func (*Binary) node()  {}
func (*Logical) node() {}
func (*In) node()      {}
func (*Call) node()    {}

// Expr is a parsed condition or expression. The zero Expr is the condition
// "*", which every document satisfies.
type Expr struct {
	root Node
}

// NewExpr wraps a syntax tree (for example one built by hand) as an Expr; a
// nil node gives the match-all condition.
func NewExpr(n Node) Expr { return Expr{root: n} }

// Node returns the root of the syntax tree, nil for the match-all condition.
func (e Expr) Node() Node { return e.root }

// IsAll reports whether e is the match-all condition "*".
func (e Expr) IsAll() bool { return e.root == nil }

// String renders e in canonical form: every operation parenthesised, keywords
// and function names upper-case, strings single-quoted. Parsing the result
// gives back the same tree.
func (e Expr) String() string {
	if e.root == nil {
		return "*"
	}
	var b strings.Builder
	writeNode(&b, e.root)
	return b.String()
}

// Projection is one item of a SELECT list.
type Projection struct {
	At Pos
	// Count is set for COUNT(); Expr is then the zero Expr.
	Count bool
	Expr  Expr
	// Alias is the name given with AS, empty when none was given.
	Alias string
	// Name is the property name of the item in the results.
	Name string
}

// Query is a parsed SELECT statement.
type Query struct {
	// Top is n of TOP n, or -1 when absent.
	Top int
	// Star is set for SELECT *; Projections is then empty.
	Star        bool
	Projections []Projection
	From        Collection
	// Where is the condition, the zero Expr when there is no WHERE.
	Where Expr
	// GroupBy is the grouping path, nil when there is no GROUP BY.
	GroupBy *Path
}

// Columns returns the result property names of a projection query in SELECT
// order, nil for SELECT *.
func (q *Query) Columns() []string {
	if q.Star {
		return nil
	}
	out := make([]string, len(q.Projections))
	for i, p := range q.Projections {
		out[i] = p.Name
	}
	return out
}

// check rejects an inconsistent Query (one assembled by hand rather than
// by Parse) before it is translated or run.
func (q *Query) check() error {
	switch {
	case q.Star && len(q.Projections) > 0:
		return errors.New("check query: SELECT * with projections")
	case !q.Star && len(q.Projections) == 0:
		return errors.New("check query: no projections")
	case q.Star && q.GroupBy != nil:
		return errors.New("check query: SELECT * with GROUP BY")
	case q.GroupBy != nil && len(q.GroupBy.Segments) == 0:
		return errors.New("check query: empty GROUP BY path")
	}
	for i, pr := range q.Projections {
		if !pr.Count && pr.Expr.root == nil {
			return fmt.Errorf("check query: projection %d (%s) has no expression", i+1, pr.Name)
		}
	}
	return nil
}

// aggregate reports whether the query counts (with or without GROUP BY).
func (q *Query) aggregate() bool {
	if q.GroupBy != nil {
		return true
	}
	for _, p := range q.Projections {
		if p.Count {
			return true
		}
	}
	return false
}

// String renders q in canonical form; parsing it gives back the same query.
func (q *Query) String() string {
	var b strings.Builder
	b.WriteString("SELECT ")
	if q.Top >= 0 {
		fmt.Fprintf(&b, "TOP %d ", q.Top)
	}
	if q.Star {
		b.WriteString("*")
	}
	for i, p := range q.Projections {
		if i > 0 {
			b.WriteString(", ")
		}
		if p.Count {
			b.WriteString("COUNT()")
		} else {
			writeNode(&b, p.Expr.root)
		}
		if p.Alias != "" {
			b.WriteString(" AS ")
			writeName(&b, p.Alias)
		}
	}
	b.WriteString(" FROM ")
	b.WriteString(string(q.From))
	if !q.Where.IsAll() {
		b.WriteString(" WHERE ")
		writeNode(&b, q.Where.root)
	}
	if q.GroupBy != nil {
		b.WriteString(" GROUP BY ")
		writeNode(&b, q.GroupBy)
	}
	return b.String()
}

func writeNode(b *strings.Builder, n Node) {
	switch n := n.(type) {
	case *Literal:
		writeValue(b, n.Value)
	case *Path:
		writePath(b, n.Segments)
	case *Unary:
		if n.Op == OpNot {
			b.WriteString("(NOT ")
		} else {
			b.WriteString("(-")
		}
		writeNode(b, n.X)
		b.WriteString(")")
	case *Binary:
		b.WriteString("(")
		writeNode(b, n.L)
		b.WriteString(" " + string(n.Op) + " ")
		writeNode(b, n.R)
		b.WriteString(")")
	case *Logical:
		b.WriteString("(")
		for i, t := range n.Terms {
			if i > 0 {
				b.WriteString(" " + string(n.Op) + " ")
			}
			writeNode(b, t)
		}
		b.WriteString(")")
	case *In:
		b.WriteString("(")
		writeNode(b, n.X)
		if n.Not {
			b.WriteString(" NIN [")
		} else {
			b.WriteString(" IN [")
		}
		for i, v := range n.List {
			if i > 0 {
				b.WriteString(", ")
			}
			writeValue(b, v)
		}
		b.WriteString("])")
	case *Call:
		b.WriteString(n.Func + "(")
		for i, a := range n.Args {
			if i > 0 {
				b.WriteString(", ")
			}
			writeNode(b, a)
		}
		b.WriteString(")")
	default:
		fmt.Fprintf(b, "<%T>", n)
	}
}

// writePath renders segments, quoting the ones that are not plain
// identifiers (or that would read as a keyword or qualifier at the root).
func writePath(b *strings.Builder, segs []string) {
	for i, s := range segs {
		if i > 0 {
			b.WriteString(".")
		}
		if isPlainIdent(s) && (i > 0 || !reservedRoot(s)) {
			b.WriteString(s)
		} else {
			b.WriteString("[[" + s + "]]")
		}
	}
}

func writeName(b *strings.Builder, s string) {
	if isPlainIdent(s) && !reservedRoot(s) {
		b.WriteString(s)
	} else {
		b.WriteString("[[" + s + "]]")
	}
}

// reservedRoot reports whether an identifier cannot start a path: keywords,
// literals and the collection qualifier.
func reservedRoot(s string) bool {
	if s == "devices" {
		return true
	}
	return isKeyword(s)
}

func isPlainIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !isIdentRune(r, i == 0) {
			return false
		}
	}
	return true
}

func isIdentRune(r rune, first bool) bool {
	if r == '_' || r == '$' || unicode.IsLetter(r) {
		return true
	}
	return !first && unicode.IsDigit(r)
}

func writeValue(b *strings.Builder, v Value) {
	switch v.Kind {
	case KindNull:
		b.WriteString("null")
	case KindBool:
		b.WriteString(strconv.FormatBool(v.Bool))
	case KindNumber:
		b.WriteString(strconv.FormatFloat(v.Num, 'g', -1, 64))
	case KindString:
		writeString(b, v.Str)
	default:
		b.WriteString("<" + v.Kind.String() + ">")
	}
}

// writeString renders s as a single-quoted literal the lexer reads back.
func writeString(b *strings.Builder, s string) {
	b.WriteByte('\'')
	for _, r := range s {
		switch {
		case r == '\'' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || r == utf8.RuneError:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
}
