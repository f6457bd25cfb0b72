package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Eval reports whether doc satisfies the condition: whether it evaluates to
// true (false and undefined do not match). The match-all condition matches
// every document. It fails only when doc holds a Go value that is not
// decoded JSON.
func (e Expr) Eval(doc map[string]any) (bool, error) {
	if e.root == nil {
		return true, nil
	}
	v, err := eval(e.root, doc)
	if err != nil {
		return false, err
	}
	return v.Kind == KindBool && v.Bool, nil
}

// Value evaluates e as an expression over doc. The match-all condition
// yields true.
func (e Expr) Value(doc map[string]any) (Value, error) {
	if e.root == nil {
		return Bool(true), nil
	}
	return eval(e.root, doc)
}

func eval(n Node, doc map[string]any) (Value, error) {
	switch n := n.(type) {
	case *Literal:
		return n.Value, nil
	case *Path:
		return lookup(doc, n.Segments)
	case *Unary:
		x, err := eval(n.X, doc)
		if err != nil {
			return Value{}, err
		}
		if n.Op != OpNot && n.Op != OpNeg {
			return Value{}, fmt.Errorf("evaluate %s: unknown unary operator %q", n.At, n.Op)
		}
		if n.Op == OpNot {
			if x.Kind != KindBool {
				return Value{}, nil
			}
			return Bool(!x.Bool), nil
		}
		if x.Kind != KindNumber {
			return Value{}, nil
		}
		return Number(-x.Num), nil
	case *Binary:
		l, err := eval(n.L, doc)
		if err != nil {
			return Value{}, err
		}
		r, err := eval(n.R, doc)
		if err != nil {
			return Value{}, err
		}
		if n.Op.isComparison() {
			return compare(n.Op, l, r), nil
		}
		if !n.Op.isArithmetic() {
			return Value{}, fmt.Errorf("evaluate %s: unknown binary operator %q", n.At, n.Op)
		}
		return arith(n.Op, l, r), nil
	case *Logical:
		if n.Op != OpAnd && n.Op != OpOr {
			return Value{}, fmt.Errorf("evaluate %s: unknown logical operator %q", n.At, n.Op)
		}
		return evalLogical(n, doc)
	case *In:
		x, err := eval(n.X, doc)
		if err != nil {
			return Value{}, err
		}
		in := Bool(false)
		for _, item := range n.List {
			c := compare(OpEq, x, item)
			if c.Kind == KindBool && c.Bool {
				in = c
				break
			}
			if c.Kind == KindUndefined {
				in = Value{}
			}
		}
		if n.Not && in.Kind == KindBool {
			return Bool(!in.Bool), nil
		}
		return in, nil
	case *Call:
		if err := checkCall(n); err != nil {
			return Value{}, err
		}
		args := make([]Value, len(n.Args))
		for i, a := range n.Args {
			v, err := eval(a, doc)
			if err != nil {
				return Value{}, err
			}
			args[i] = v
		}
		return call(n.Func, args), nil
	case nil:
		return Value{}, errors.New("evaluate query: nil syntax tree node")
	}
	return Value{}, fmt.Errorf("evaluate %s: unknown node type %T", n.Pos(), n)
}

// lookup reads the value at segs in doc; a missing property or a step into a
// non-object is undefined.
func lookup(doc map[string]any, segs []string) (Value, error) {
	var cur any = doc
	for i, s := range segs {
		m, ok := cur.(map[string]any)
		if !ok {
			return Value{}, nil
		}
		if cur, ok = m[s]; !ok {
			return Value{}, nil
		}
		if i == len(segs)-1 {
			v, err := fromGo(cur)
			if err != nil {
				return Value{}, fmt.Errorf("read %s: %w", pathText(segs), err)
			}
			return v, nil
		}
	}
	return Value{}, nil
}

func pathText(segs []string) string {
	var b strings.Builder
	writePath(&b, segs)
	return b.String()
}

func evalLogical(n *Logical, doc map[string]any) (Value, error) {
	// AND: false dominates; OR: true dominates; otherwise undefined
	// dominates the identity.
	dominant := n.Op == OpOr
	sawUndefined := false
	for _, t := range n.Terms {
		v, err := eval(t, doc)
		if err != nil {
			return Value{}, err
		}
		if v.Kind != KindBool {
			sawUndefined = true
			continue
		}
		if v.Bool == dominant {
			return Bool(dominant), nil
		}
	}
	if sawUndefined {
		return Value{}, nil
	}
	return Bool(!dominant), nil
}

// compare applies a comparison operator: defined only between primitives of
// the same type, ordering only for numbers and strings.
func compare(op Op, l, r Value) Value {
	if l.Kind != r.Kind || !l.primitive() {
		return Value{}
	}
	var c int
	switch l.Kind {
	case KindNull:
		c = 0
	case KindBool:
		if op != OpEq && op != OpNe {
			return Value{}
		}
		if l.Bool != r.Bool {
			c = 1
		}
	case KindNumber:
		switch {
		case l.Num < r.Num:
			c = -1
		case l.Num > r.Num:
			c = 1
		}
	case KindString:
		c = strings.Compare(l.Str, r.Str)
	}
	if l.Kind == KindNull && op != OpEq && op != OpNe {
		return Value{}
	}
	switch op {
	case OpEq:
		return Bool(c == 0)
	case OpNe:
		return Bool(c != 0)
	case OpLt:
		return Bool(c < 0)
	case OpGt:
		return Bool(c > 0)
	case OpLe:
		return Bool(c <= 0)
	case OpGe:
		return Bool(c >= 0)
	}
	return Value{}
}

// arith applies an arithmetic operator to two numbers. The explicit
// float64 conversions keep every operation individually rounded, as in SQL.
func arith(op Op, l, r Value) Value {
	if l.Kind != KindNumber || r.Kind != KindNumber {
		return Value{}
	}
	a, b := l.Num, r.Num
	switch op {
	case OpAdd:
		return Number(float64(a + b))
	case OpSub:
		return Number(float64(a - b))
	case OpMul:
		return Number(float64(a * b))
	case OpDiv:
		if b == 0 {
			return Value{}
		}
		return Number(float64(a / b))
	case OpMod:
		if b == 0 {
			return Value{}
		}
		return Number(math.Mod(a, b))
	}
	return Value{}
}

func call(fn string, args []Value) Value {
	switch fn {
	case "IS_DEFINED":
		return Bool(args[0].Kind != KindUndefined)
	case "IS_NULL":
		return Bool(args[0].Kind == KindNull)
	case "IS_STRING":
		return Bool(args[0].Kind == KindString)
	case "IS_NUMBER":
		return Bool(args[0].Kind == KindNumber)
	case "IS_BOOL":
		return Bool(args[0].Kind == KindBool)
	case "IS_OBJECT":
		return Bool(args[0].Kind == KindObject)
	case "IS_ARRAY":
		return Bool(args[0].Kind == KindArray)
	case "IS_PRIMITIVE":
		return Bool(args[0].primitive())
	case "AS_NUMBER":
		switch a := args[0]; a.Kind {
		case KindNumber:
			return a
		case KindString:
			var f float64
			if err := json.Unmarshal([]byte(a.Str), &f); err != nil {
				return Value{}
			}
			return Number(f)
		}
		return Value{}
	}
	if fn == "CONCAT" {
		var b strings.Builder
		for _, a := range args {
			if a.Kind != KindString {
				return Value{}
			}
			b.WriteString(a.Str)
		}
		return String(b.String())
	}
	switch fn {
	case "LOWER", "UPPER", "LENGTH", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "INDEX_OF":
		for _, a := range args {
			if a.Kind != KindString {
				return Value{}
			}
		}
		s := args[0].Str
		switch fn {
		case "LOWER":
			return String(asciiMap(s, 'A', 'Z', 'a'-'A'))
		case "UPPER":
			return String(asciiMap(s, 'a', 'z', 'A'-'a'))
		case "LENGTH":
			return Number(float64(utf8.RuneCountInString(s)))
		case "STARTS_WITH":
			return Bool(strings.HasPrefix(s, args[1].Str))
		case "ENDS_WITH":
			return Bool(strings.HasSuffix(s, args[1].Str))
		case "CONTAINS":
			return Bool(strings.Contains(s, args[1].Str))
		case "INDEX_OF":
			i := strings.Index(s, args[1].Str)
			if i < 0 {
				return Number(-1)
			}
			return Number(float64(utf8.RuneCountInString(s[:i])))
		}
	case "SUBSTRING":
		if args[0].Kind != KindString || args[1].Kind != KindNumber || args[2].Kind != KindNumber {
			return Value{}
		}
		return substring(args[0].Str, args[1].Num, args[2].Num)
	}
	for _, a := range args {
		if a.Kind != KindNumber {
			return Value{}
		}
	}
	x := args[0].Num
	switch fn {
	case "ABS":
		return Number(math.Abs(x))
	case "FLOOR":
		return Number(math.Floor(x))
	case "CEILING":
		return Number(math.Ceil(x))
	case "SIGN":
		switch {
		case x > 0:
			return Number(1)
		case x < 0:
			return Number(-1)
		}
		return Number(0)
	case "SQUARE":
		return Number(float64(x * x))
	case "SQRT":
		return Number(math.Sqrt(x))
	case "EXP":
		return Number(math.Exp(x))
	case "POWER":
		return Number(math.Pow(x, args[1].Num))
	}
	return Value{}
}

// substring returns up to length characters of s from the zero-based
// character index start; non-integral or negative bounds are undefined.
func substring(s string, start, length float64) Value {
	if start != math.Trunc(start) || length != math.Trunc(length) || start < 0 || length < 0 {
		return Value{}
	}
	r := []rune(s)
	if start >= float64(len(r)) {
		return String("")
	}
	end := math.Min(float64(len(r)), start+length)
	return String(string(r[int(start):int(end)]))
}

// asciiMap shifts the ASCII letters from lo to hi by delta.
func asciiMap(s string, lo, hi byte, delta int) string {
	b := []byte(s)
	for i, c := range b {
		if c >= lo && c <= hi {
			b[i] = byte(int(c) + delta)
		}
	}
	return string(b)
}
