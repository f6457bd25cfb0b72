package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every *ValidationError.
var ErrInvalid = errors.New("invalid iotedge configuration")

// Problem is one problem of a configuration.
type Problem struct {
	// Key is the dotted TOML key at fault, for example
	// "provisioning.attestation.registration_id"; empty when the problem is
	// about the document as a whole.
	Key string
	// Message says what is wrong. It never contains a secret value.
	Message string
}

// String renders the problem as "key: message".
func (p Problem) String() string {
	if p.Key == "" {
		return p.Message
	}
	return p.Key + ": " + p.Message
}

// ValidationError lists every problem found in a configuration, in document
// order for decoding problems and in key order for the checks after it.
type ValidationError struct {
	Problems []Problem
}

// Error renders one problem as "key: message", several as a count followed
// by one indented line per problem.
func (e *ValidationError) Error() string {
	switch len(e.Problems) {
	case 0:
		return ErrInvalid.Error()
	case 1:
		return e.Problems[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Is reports whether target is ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// problems collects Problems; its zero value is ready to use.
type problems []Problem

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

// merge appends the problems of err (a *ValidationError or any error).
func (p *problems) merge(err error) {
	if err == nil {
		return
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		*p = append(*p, ve.Problems...)
		return
	}
	*p = append(*p, Problem{Message: err.Error()})
}

// mergeUnrelated appends the problems of err (a *ValidationError) except
// those about a key that already has a problem, or a key above or below
// one: a value of the wrong shape is also "missing" for Validate, and the
// first message is the precise one.
func (p *problems) mergeUnrelated(err error) {
	var ve *ValidationError
	if !errors.As(err, &ve) {
		p.merge(err)
		return
	}
	related := func(a, b string) bool {
		return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(b, a+".")
	}
	known := len(*p)
next:
	for _, np := range ve.Problems {
		for _, op := range (*p)[:known] {
			if op.Key != "" && np.Key != "" && related(op.Key, np.Key) {
				continue next
			}
		}
		*p = append(*p, np)
	}
}

// err returns nil without problems, else a *ValidationError.
func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Problems: append([]Problem(nil), p...)}
}
