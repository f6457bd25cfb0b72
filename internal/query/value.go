package query

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Kind is the type of a Value.
type Kind uint8

// The kinds of values. KindUndefined is a missing property or the result of
// an operation on unsuitable operands.
const (
	KindUndefined Kind = iota
	KindNull
	KindBool
	KindNumber
	KindString
	KindArray
	KindObject
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindUndefined:
		return "undefined"
	case KindNull:
		return "null"
	case KindBool:
		return "boolean"
	case KindNumber:
		return "number"
	case KindString:
		return "string"
	case KindArray:
		return "array"
	case KindObject:
		return "object"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is the result of evaluating an expression.
type Value struct {
	Kind Kind
	Bool bool    // KindBool
	Num  float64 // KindNumber, always finite
	Str  string  // KindString
	// Raw is the decoded JSON ([]any or map[string]any) of KindArray and
	// KindObject.
	Raw any
}

// The constructors of primitive values.

// Null returns the null value.
func Null() Value { return Value{Kind: KindNull} }

// Bool returns a boolean value.
func Bool(b bool) Value { return Value{Kind: KindBool, Bool: b} }

// Number returns a number value; a NaN or infinite f gives undefined.
func Number(f float64) Value {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Value{}
	}
	return Value{Kind: KindNumber, Num: f}
}

// String returns a string value.
func String(s string) Value { return Value{Kind: KindString, Str: s} }

func (v Value) primitive() bool {
	return v.Kind >= KindNull && v.Kind <= KindString
}

// JSON renders a defined value as JSON text; undefined gives nil.
func (v Value) JSON() ([]byte, error) {
	switch v.Kind {
	case KindUndefined:
		return nil, nil
	case KindNull:
		return []byte("null"), nil
	case KindBool:
		return []byte(strconv.FormatBool(v.Bool)), nil
	case KindNumber:
		return json.Marshal(v.Num)
	case KindString:
		return marshalNoEscape(v.Str)
	default:
		return marshalNoEscape(v.Raw)
	}
}

func marshalNoEscape(x any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		return nil, fmt.Errorf("encode value: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// fromGo converts a decoded JSON value into a Value. Besides what
// encoding/json produces (including json.Number) it accepts Go's integer and
// float types.
func fromGo(x any) (Value, error) {
	switch x := x.(type) {
	case nil:
		return Null(), nil
	case bool:
		return Bool(x), nil
	case string:
		return String(x), nil
	case float64:
		return finite(x)
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return Value{}, fmt.Errorf("parse number %q: %w", string(x), err)
		}
		return finite(f)
	case map[string]any:
		return Value{Kind: KindObject, Raw: x}, nil
	case []any:
		return Value{Kind: KindArray, Raw: x}, nil
	case float32:
		return finite(float64(x))
	case int:
		return Number(float64(x)), nil
	case int8:
		return Number(float64(x)), nil
	case int16:
		return Number(float64(x)), nil
	case int32:
		return Number(float64(x)), nil
	case int64:
		return Number(float64(x)), nil
	case uint:
		return Number(float64(x)), nil
	case uint8:
		return Number(float64(x)), nil
	case uint16:
		return Number(float64(x)), nil
	case uint32:
		return Number(float64(x)), nil
	case uint64:
		return Number(float64(x)), nil
	}
	return Value{}, fmt.Errorf("unsupported Go type %T", x)
}

func finite(f float64) (Value, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Value{}, fmt.Errorf("number %v is not finite", f)
	}
	return Value{Kind: KindNumber, Num: f}, nil
}
