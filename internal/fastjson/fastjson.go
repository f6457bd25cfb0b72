// Package fastjson writes the registration hot path's JSON documents (the
// device identity, twin, registration record, attempt and operation status)
// without encoding/json's reflection, byte for byte as json.Marshal writes
// them. It only handles the values whose encoding is trivially the same:
// strings with nothing to escape, UTC times with a four-digit year, and raw
// JSON that is already compact and has nothing to escape. A Writer that met
// anything else reports it, and the caller encodes the whole value with
// encoding/json instead, so the output (and any error) is always exactly
// json.Marshal's.
package fastjson

import (
	"encoding/json"
	"time"
)

// Appender is a value with a fast encoding. AppendJSON appends what
// json.Marshal would write for the value and reports true, or reports false
// when the value needs encoding/json.
type Appender interface {
	AppendJSON(dst []byte) ([]byte, bool)
}

// Scratch is a buffer for AppendJSON, large enough for the registration hot
// path's documents. A caller that declares one as a local variable and
// passes it to a concrete type's AppendJSON keeps it on the stack; it then
// copies the result to an exactly sized slice:
//
//	var s fastjson.Scratch
//	if b, ok := d.AppendJSON(s[:0]); ok {
//		return bytes.Clone(b), nil
//	}
//	return json.Marshal(d)
type Scratch [1024]byte

// The functions below append one JSON value to b as encoding/json writes
// it. When they meet a value they cannot write exactly so, they set *ok to
// false (and never back to true); b is then to be discarded.

// plain reports whether encoding/json writes s as is between quotes: only
// printable ASCII, without the characters it escapes (" \ < > &).
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// String appends s as a JSON string.
func String(b []byte, s string, ok *bool) []byte {
	if !plain(s) {
		*ok = false
		return b
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// OmitEmpty appends an omitempty string field: key (the separator, name
// and colon, e.g. `,"deviceId":`) and s, or nothing when s is empty.
func OmitEmpty(b []byte, key, s string, ok *bool) []byte {
	if s == "" {
		return b
	}
	return String(append(b, key...), s, ok)
}

// StringPtr appends *p, or null when p is nil.
func StringPtr(b []byte, p *string, ok *bool) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	return String(b, *p, ok)
}

// Strings appends a []string: null when nil, else an array.
func Strings(b []byte, ss []string, ok *bool) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = String(b, s, ok)
	}
	return append(b, ']')
}

// Time appends t as time.Time.MarshalJSON writes it (RFC 3339 with
// nanoseconds). Only times with a zero UTC offset and a year in 0000-9999
// are taken; others (another offset, or a year MarshalJSON refuses) are not.
func Time(b []byte, t time.Time, ok *bool) []byte {
	n := len(b)
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	// AppendFormat with RFC3339Nano is MarshalJSON's formatting; the year
	// must be four digits wide, and a trailing Z rules out an offset.
	if len(b) < n+6 || b[n+5] != '-' || b[len(b)-1] != 'Z' {
		*ok = false
		return b[:n]
	}
	return append(b, '"')
}

// Raw appends a json.RawMessage: null when nil, else the message itself
// when json.Marshal would copy it unchanged (see Verbatim).
func Raw(b []byte, m json.RawMessage, ok *bool) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	if !Verbatim(m) {
		*ok = false
		return b
	}
	return append(b, m...)
}

// Verbatim reports whether json.Marshal copies m, the output of a
// json.Marshaler (a json.RawMessage is one), unchanged: m is valid JSON
// without whitespace it would compact away and without characters it would
// escape.
func Verbatim(m []byte) bool {
	for _, c := range m {
		// Whitespace json.Marshal would compact away, the characters it
		// escapes, and 0xE2, the first byte of U+2028 and U+2029.
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '<' || c == '>' || c == '&' || c == 0xE2 {
			return false
		}
	}
	return json.Valid(m)
}
