package query

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrTooLong is returned (wrapped) for a query or condition longer than
// MaxLength bytes.
var ErrTooLong = errors.New("query text too long")

// SyntaxError reports malformed query text and where it is.
type SyntaxError struct {
	Pos Pos
	Msg string
}

// Error renders "line L col C: message".
func (e *SyntaxError) Error() string { return e.Pos.String() + ": " + e.Msg }

type tokKind uint8

const (
	tEOF    tokKind = iota
	tIdent          // identifier or keyword
	tQuoted         // [[quoted name]]
	tString         // string literal
	tNumber         // number literal
	tPunct          // operator or punctuation
)

type token struct {
	kind tokKind
	src  string  // the source text of the token
	val  string  // identifier, quoted name, decoded string, or punctuation
	num  float64 // tNumber
	pos  Pos
}

// describe renders the token for an error message.
func (t token) describe() string {
	if t.kind == tEOF {
		return "end of input"
	}
	s := t.src
	if utf8.RuneCountInString(s) > 40 {
		r := []rune(s)
		s = string(r[:40]) + "…"
	}
	return "'" + s + "'"
}

// isKeyword reports whether s (in any case) is a reserved word.
func isKeyword(s string) bool {
	switch strings.ToUpper(s) {
	case "SELECT", "TOP", "FROM", "WHERE", "GROUP", "BY", "AS",
		"AND", "OR", "NOT", "IN", "NIN", "TRUE", "FALSE", "NULL":
		return true
	}
	return false
}

// lex splits src into tokens, ending with a tEOF token.
func lex(src string) ([]token, error) {
	if len(src) > MaxLength {
		return nil, fmt.Errorf("read query: %d bytes is longer than the %d-byte limit: %w", len(src), MaxLength, ErrTooLong)
	}
	l := lexer{src: src, line: 1, col: 1}
	var toks []token
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		toks = append(toks, t)
		if t.kind == tEOF {
			return toks, nil
		}
	}
}

type lexer struct {
	src       string
	off       int // byte offset
	line, col int
}

func (l *lexer) pos() Pos { return Pos{Line: l.line, Col: l.col} }

func (l *lexer) errAt(p Pos, format string, args ...any) error {
	return &SyntaxError{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

// peek returns the rune at byte offset off+ahead (in bytes from the current
// offset), or -1 at the end.
func (l *lexer) peekAt(ahead int) rune {
	if l.off+ahead >= len(l.src) {
		return -1
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.off+ahead:])
	return r
}

// advance consumes one rune, keeping line and column.
func (l *lexer) advance() rune {
	r, size := utf8.DecodeRuneInString(l.src[l.off:])
	l.off += size
	if r == '\n' {
		l.line++
		l.col = 1
	} else {
		l.col++
	}
	return r
}

func (l *lexer) next() (token, error) {
	for l.off < len(l.src) {
		r, size := utf8.DecodeRuneInString(l.src[l.off:])
		if r == utf8.RuneError && size == 1 {
			return token{}, l.errAt(l.pos(), "invalid UTF-8 byte 0x%02x", l.src[l.off])
		}
		if r != ' ' && r != '\t' && r != '\r' && r != '\n' {
			break
		}
		l.advance()
	}
	start, p := l.off, l.pos()
	if l.off >= len(l.src) {
		return token{kind: tEOF, pos: p}, nil
	}
	r := l.peekAt(0)
	switch {
	case r == '\'' || r == '"':
		s, err := l.string(r)
		if err != nil {
			return token{}, err
		}
		return token{kind: tString, src: l.src[start:l.off], val: s, pos: p}, nil
	case r >= '0' && r <= '9':
		return l.number(start, p)
	case isIdentRune(r, true):
		for l.off < len(l.src) && isIdentRune(l.peekAt(0), false) {
			l.advance()
		}
		s := l.src[start:l.off]
		return token{kind: tIdent, src: s, val: s, pos: p}, nil
	case r == '[' && l.peekAt(1) == '[':
		end := strings.Index(l.src[l.off+2:], "]]")
		if end < 0 {
			return token{}, l.errAt(p, "unterminated [[quoted name]]: no closing ']]'")
		}
		name := l.src[l.off+2 : l.off+2+end]
		if !utf8.ValidString(name) {
			return token{}, l.errAt(p, "invalid UTF-8 in [[quoted name]]")
		}
		if strings.IndexByte(name, 0) >= 0 {
			return token{}, l.errAt(p, "[[quoted name]] contains U+0000")
		}
		for l.off < start+2+end+2 {
			l.advance()
		}
		return token{kind: tQuoted, src: l.src[start:l.off], val: name, pos: p}, nil
	}
	l.advance()
	two := ""
	if l.off < len(l.src) {
		two = string(r) + string(l.peekAt(0))
	}
	switch two {
	case "!=", "<>", "<=", ">=":
		l.advance()
		return token{kind: tPunct, src: two, val: two, pos: p}, nil
	}
	switch r {
	case '=', '<', '>', '+', '-', '*', '/', '%', '(', ')', '[', ']', ',', '.':
		return token{kind: tPunct, src: string(r), val: string(r), pos: p}, nil
	}
	if r < 0x20 || r == 0x7f {
		return token{}, l.errAt(p, "unexpected control character U+%04X", r)
	}
	return token{}, l.errAt(p, "unexpected character '%c'", r)
}

// number reads digits [. digits] [(e|E) [+|-] digits].
func (l *lexer) number(start int, p Pos) (token, error) {
	digits := func() int {
		n := 0
		for r := l.peekAt(0); r >= '0' && r <= '9'; r = l.peekAt(0) {
			l.advance()
			n++
		}
		return n
	}
	digits()
	if l.peekAt(0) == '.' {
		l.advance()
		if digits() == 0 {
			return token{}, l.errAt(p, "malformed number '%s': expected digits after '.'", l.src[start:l.off])
		}
	}
	if r := l.peekAt(0); r == 'e' || r == 'E' {
		l.advance()
		if r := l.peekAt(0); r == '+' || r == '-' {
			l.advance()
		}
		if digits() == 0 {
			return token{}, l.errAt(p, "malformed number '%s': expected digits in the exponent", l.src[start:l.off])
		}
	}
	if r := l.peekAt(0); r >= 0 && isIdentRune(r, false) {
		for l.off < len(l.src) && isIdentRune(l.peekAt(0), false) {
			l.advance()
		}
		return token{}, l.errAt(p, "malformed number '%s'", l.src[start:l.off])
	}
	src := l.src[start:l.off]
	f, err := strconv.ParseFloat(src, 64)
	if err != nil {
		return token{}, l.errAt(p, "number '%s' is out of range", src)
	}
	return token{kind: tNumber, src: src, num: f, pos: p}, nil
}

// string reads a literal quoted with q and returns its decoded value.
func (l *lexer) string(q rune) (string, error) {
	p := l.pos()
	l.advance()
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return "", l.errAt(p, "unterminated string: no closing %c", q)
		}
		rp := l.pos()
		r, size := utf8.DecodeRuneInString(l.src[l.off:])
		if r == utf8.RuneError && size == 1 {
			return "", l.errAt(rp, "invalid UTF-8 byte 0x%02x in string", l.src[l.off])
		}
		l.advance()
		switch {
		case r == q:
			if q == '\'' && l.peekAt(0) == '\'' {
				l.advance()
				b.WriteByte('\'')
				continue
			}
			return b.String(), nil
		case r == 0:
			return "", l.errAt(rp, "string contains U+0000")
		case r == '\\':
			dec, err := l.escape(rp)
			if err != nil {
				return "", err
			}
			b.WriteRune(dec)
		default:
			b.WriteRune(r)
		}
	}
}

// escape decodes the escape sequence after a backslash at p.
func (l *lexer) escape(p Pos) (rune, error) {
	if l.off >= len(l.src) {
		return 0, l.errAt(p, "unterminated escape sequence")
	}
	r := l.advance()
	switch r {
	case '\'', '"', '\\', '/':
		return r, nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		u, err := l.hex4(p)
		if err != nil {
			return 0, err
		}
		switch {
		case u == 0:
			return 0, l.errAt(p, "string contains U+0000")
		case u >= 0xDC00 && u <= 0xDFFF:
			return 0, l.errAt(p, "invalid escape \\u%04X: unpaired low surrogate", u)
		case u >= 0xD800 && u <= 0xDBFF:
			if l.peekAt(0) != '\\' || l.peekAt(1) != 'u' {
				return 0, l.errAt(p, "invalid escape \\u%04X: high surrogate without a following \\u low surrogate", u)
			}
			l.advance()
			l.advance()
			lo, err := l.hex4(p)
			if err != nil {
				return 0, err
			}
			if lo < 0xDC00 || lo > 0xDFFF {
				return 0, l.errAt(p, "invalid escape \\u%04X\\u%04X: high surrogate not followed by a low surrogate", u, lo)
			}
			return 0x10000 + (u-0xD800)<<10 + (lo - 0xDC00), nil
		}
		return u, nil
	}
	return 0, l.errAt(p, "invalid escape sequence '\\%c' in string", r)
}

func (l *lexer) hex4(p Pos) (rune, error) {
	if l.off+4 > len(l.src) {
		return 0, l.errAt(p, "invalid \\u escape: expected 4 hex digits")
	}
	h := l.src[l.off : l.off+4]
	v, err := strconv.ParseUint(h, 16, 32)
	if err != nil || strings.ContainsAny(h, "+-_") {
		return 0, l.errAt(p, "invalid \\u escape: expected 4 hex digits, got %q", h)
	}
	for range 4 {
		l.advance()
	}
	return rune(v), nil
}
