package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/muster-iot/muster/internal/fastjson"
)

// MaxDocDepth is the deepest nesting of arrays and objects a document may
// have: SQLite's JSON functions accept no more, and every SQL backend
// keeps the same limit so that they accept the same documents.
const MaxDocDepth = 1000

// CheckText rejects key text that cannot be stored portably: invalid UTF-8
// or NUL bytes (PostgreSQL refuses both in TEXT). field names the key in
// the error.
func CheckText(field, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%s %q is not valid UTF-8", field, v)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return fmt.Errorf("%s %q contains a NUL byte", field, v)
	}
	return nil
}

// ValidateWrite checks one write before a SQL backend queues it: kind and
// ID present and portable, conditions that make sense, and a document that
// is valid UTF-8 JSON no deeper than MaxDocDepth. The error names the
// field; backends wrap it in a *WriteError.
func ValidateWrite(w Write) error {
	rec := w.Record
	if rec.Kind == "" {
		return errors.New("kind is empty")
	}
	if rec.ID == "" {
		return errors.New("id is empty")
	}
	if err := CheckText("kind", string(rec.Kind)); err != nil {
		return err
	}
	if err := CheckText("id", rec.ID); err != nil {
		return err
	}
	if w.Delete {
		if w.Cond.IfNoneMatch {
			return errors.New("if-none-match cannot guard a delete")
		}
		return nil
	}
	if w.Cond.IfNoneMatch && w.Cond.IfMatch != "" {
		return errors.New("if-match and if-none-match are both set")
	}
	if err := CheckText("group", rec.Group); err != nil {
		return err
	}
	if len(rec.Doc) == 0 {
		return errors.New("doc is empty")
	}
	if validDoc(rec.Doc) {
		return nil
	}
	// Refused: the separate checks name the cause.
	if !utf8.Valid(rec.Doc) {
		return errors.New("doc is not valid UTF-8")
	}
	if !json.Valid(rec.Doc) {
		return errors.New("doc is not valid JSON")
	}
	if JSONDepth(rec.Doc) > MaxDocDepth {
		return fmt.Errorf("doc nests arrays and objects deeper than %d levels", MaxDocDepth)
	}
	return errors.New("doc is not valid JSON")
}

// ValidateWrites runs ValidateWrite on each write of a batch; the first
// refusal is a *WriteError naming the write's index, kind and ID.
func ValidateWrites(writes []Write) error {
	for i, w := range writes {
		if err := ValidateWrite(w); err != nil {
			return &WriteError{Index: i, Kind: w.Record.Kind, ID: w.Record.ID, Err: err}
		}
	}
	return nil
}

// EncodeAttempt checks an attempt for a SQL backend's AppendAttempt (an
// ID, text that can be stored portably, a year within 0000-9999) and
// returns it with its Time in UTC, and its JSON document. Errors start
// with "append attempt".
func EncodeAttempt(a Attempt) (Attempt, []byte, error) {
	if a.ID == "" {
		return a, nil, errors.New("append attempt: id is empty")
	}
	if err := CheckText("id", a.ID); err != nil {
		return a, nil, fmt.Errorf("append attempt: %w", err)
	}
	if err := CheckText("registrationId", a.RegistrationID); err != nil {
		return a, nil, fmt.Errorf("append attempt %s: %w", a.ID, err)
	}
	a.Time = a.Time.UTC()
	if y := a.Time.Year(); y < 0 || y > 9999 {
		return a, nil, fmt.Errorf("append attempt %s: time %s is outside years 0000-9999", a.ID, a.Time)
	}
	var s fastjson.Scratch
	if doc, ok := a.AppendJSON(s[:0]); ok {
		return a, bytes.Clone(doc), nil
	}
	doc, err := json.Marshal(a)
	if err != nil {
		return a, nil, fmt.Errorf("append attempt %s: encode: %w", a.ID, err)
	}
	return a, doc, nil
}

// JSONDepth returns the deepest nesting of arrays and objects in a valid
// JSON text.
func JSONDepth(b []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			deepest = max(deepest, depth)
		case ']', '}':
			depth--
		}
	}
	return deepest
}
