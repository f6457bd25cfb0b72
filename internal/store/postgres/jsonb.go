package postgres

import (
	"errors"
	"fmt"

	"github.com/muster-iot/muster/internal/store"
)

// Limits of PostgreSQL's numeric type, which jsonb keeps numbers in, taken
// conservatively so every supported server version accepts them: numeric
// refuses (in some versions) exponents beyond ±1000 in its input, more than
// 131072 digits before the decimal point and more than 16383 after it.
const (
	jsonbMaxExponent    = 1000
	jsonbMaxIntDigits   = 100000
	jsonbMaxScaleDigits = 16000
)

// jsonbCompatible reports why PostgreSQL's jsonb cannot hold a valid JSON
// document, or nil when it can. jsonb refuses the escape \u0000 (text
// cannot hold NUL), surrogate escapes that do not form a pair, and numbers
// outside numeric's range; it also parses recursively, so documents nested
// deeper than store.MaxDocDepth (which Apply refuses anyway) count as incompatible.
// doc must be valid JSON (json.Valid); the scan relies on it.
func jsonbCompatible(doc []byte) error {
	if store.JSONDepth(doc) > store.MaxDocDepth {
		return fmt.Errorf("nested deeper than %d levels", store.MaxDocDepth)
	}
	for i := 0; i < len(doc); {
		switch c := doc[i]; {
		case c == '"':
			n, err := jsonbString(doc[i:])
			if err != nil {
				return err
			}
			i += n
		case c == '-' || ('0' <= c && c <= '9'):
			n, err := jsonbNumber(doc[i:])
			if err != nil {
				return err
			}
			i += n
		default:
			i++
		}
	}
	return nil
}

// jsonbString checks the string literal at the start of b (opening quote
// included) and returns its length.
func jsonbString(b []byte) (int, error) {
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i + 1, nil
		case '\\':
			if i+1 >= len(b) {
				return 0, errors.New("unterminated escape")
			}
			if b[i+1] != 'u' {
				i++
				continue
			}
			r, ok := hex4(tail(b, i+2))
			if !ok {
				return 0, errors.New("malformed \\u escape")
			}
			switch {
			case r == 0:
				return 0, errors.New(`a string holds \u0000`)
			case 0xDC00 <= r && r <= 0xDFFF:
				return 0, fmt.Errorf(`a string holds the unpaired surrogate \u%04x`, r)
			case 0xD800 <= r && r <= 0xDBFF:
				rest := tail(b, i+6)
				low, ok := rune(0), len(rest) >= 2 && rest[0] == '\\' && rest[1] == 'u'
				if ok {
					low, ok = hex4(rest[2:])
				}
				if !ok || low < 0xDC00 || low > 0xDFFF {
					return 0, fmt.Errorf(`a string holds the unpaired surrogate \u%04x`, r)
				}
				i += 6 // the low half
			}
			i += 5
		}
	}
	return 0, errors.New("unterminated string")
}

// tail is b[i:], or nil when b is shorter.
func tail(b []byte, i int) []byte {
	if i > len(b) {
		return nil
	}
	return b[i:]
}

// hex4 decodes four hexadecimal digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// jsonbNumber checks the number literal at the start of b and returns its
// length. It bounds the exponent, the digits before the decimal point (after
// applying the exponent) and the scale, without converting the number.
func jsonbNumber(b []byte) (int, error) {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	intStart := i
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	intDigits := i - intStart
	fracDigits := 0
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		fracDigits = i - start
	}
	exp := 0
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		neg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			neg = b[i] == '-'
			i++
		}
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
			if exp <= jsonbMaxExponent { // saturate: only the bound matters
				exp = exp*10 + int(b[i]-'0')
			}
		}
		if neg {
			exp = -exp
		}
	}
	switch {
	case exp > jsonbMaxExponent || exp < -jsonbMaxExponent:
		return 0, fmt.Errorf("a number's exponent %d is beyond ±%d", exp, jsonbMaxExponent)
	case intDigits+exp > jsonbMaxIntDigits:
		return 0, fmt.Errorf("a number has more than %d digits before the decimal point", jsonbMaxIntDigits)
	case fracDigits-exp > jsonbMaxScaleDigits:
		return 0, fmt.Errorf("a number has more than %d digits after the decimal point", jsonbMaxScaleDigits)
	}
	return i, nil
}
