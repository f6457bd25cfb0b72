// Package fastjsontest checks a fastjson.Appender against encoding/json:
// it builds variants of a value, field by field, with samples of every
// field type that do and do not take the fast path, and compares the bytes
// (and errors) of its AppendJSON, with the json.Marshal fallback the hot
// path's callers use, and of json.Marshal.
package fastjsontest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/fastjson"
)

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

// samples returns values of type t: the first is a plain non-zero value
// (one the fast path takes), the rest include values it must refuse.
func samples(t reflect.Type) ([]reflect.Value, error) {
	var vs []any
	switch {
	case t == timeType:
		vs = []any{
			time.Date(2026, 12, 7, 4, 47, 13, 123456789, time.UTC),
			time.Time{},
			time.Date(2026, 12, 7, 4, 47, 13, 0, time.UTC),
			time.Date(2026, 12, 7, 4, 47, 13, 100, time.FixedZone("X", 2*3600)),
			time.Date(2026, 12, 7, 4, 47, 13, 0, time.FixedZone("Z0", 0)),
			time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
			time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 24*3600+60)),
		}
	case t == rawType:
		vs = []any{
			json.RawMessage(`{"a":1,"b":[true,null,"x"]}`),
			json.RawMessage(nil),
			json.RawMessage{},
			json.RawMessage(`{}`),
			json.RawMessage(`null`),
			json.RawMessage(`{"a": 1}`),
			json.RawMessage(" {}\n"),
			json.RawMessage(`{"a":"<b>&"}`),
			json.RawMessage("\"\u2028\""),
			json.RawMessage("\"\u00e9\xff\""),
			json.RawMessage(`{"a":`),
			json.RawMessage(`not json`),
			json.RawMessage(`"\u003c"`),
		}
	default:
		switch t.Kind() {
		case reflect.String:
			vs = []any{"plain-ID_1.x:y", "", `quo"te`, `back\slash`, "<b>&amp;", "caf\u00e9", "line\u2028sep", "ctl\x01\n\t", "bad\xffutf8", "{}"}
		case reflect.Bool:
			vs = []any{true, false}
		case reflect.Int, reflect.Int64:
			vs = []any{42, 0, -7, 1 << 40}
		case reflect.Slice:
			if t.Elem().Kind() == reflect.String {
				vs = []any{[]string{"a", "b"}, []string(nil), []string{}, []string{"<x>"}}
			}
		case reflect.Map:
			if t.Key().Kind() == reflect.String {
				zero := reflect.New(t.Elem()).Elem()
				full := reflect.MakeMap(t)
				full.SetMapIndex(reflect.ValueOf("cfg"), zero)
				return []reflect.Value{full, reflect.Zero(t), reflect.MakeMap(t)}, nil
			}
		case reflect.Pointer:
			if t.Elem().Kind() == reflect.Struct && t.Elem() != timeType {
				p := reflect.New(t.Elem())
				if err := fill(p.Elem()); err != nil {
					return nil, err
				}
				return []reflect.Value{p, reflect.Zero(t), reflect.New(t.Elem())}, nil
			}
			inner, err := samples(t.Elem())
			if err != nil {
				return nil, err
			}
			out := []reflect.Value{}
			for _, v := range inner {
				p := reflect.New(t.Elem())
				p.Elem().Set(v)
				out = append(out, p)
			}
			return append(out, reflect.Zero(t)), nil
		case reflect.Struct:
			full := reflect.New(t).Elem()
			if err := fill(full); err != nil {
				return nil, err
			}
			return []reflect.Value{full, reflect.Zero(t)}, nil
		}
	}
	if vs == nil {
		return nil, fmt.Errorf("fastjsontest: no samples for type %s: teach samples about it", t)
	}
	out := make([]reflect.Value, len(vs))
	for i, v := range vs {
		out[i] = reflect.ValueOf(v).Convert(t)
	}
	return out, nil
}

// fill sets every exported field of the struct v to its first sample.
func fill(v reflect.Value) error {
	for i := 0; i < v.NumField(); i++ {
		if !v.Type().Field(i).IsExported() {
			continue
		}
		s, err := samples(v.Field(i).Type())
		if err != nil {
			return err
		}
		v.Field(i).Set(s[0])
	}
	return nil
}

// leaves calls f with every settable exported field reachable from the
// struct v, through structs and non-nil pointers to structs.
func leaves(v reflect.Value, path string, f func(path string, field reflect.Value)) {
	for i := 0; i < v.NumField(); i++ {
		sf := v.Type().Field(i)
		if !sf.IsExported() {
			continue
		}
		fv, p := v.Field(i), path+"."+sf.Name
		f(p, fv)
		switch {
		case fv.Kind() == reflect.Struct && fv.Type() != timeType:
			leaves(fv, p, f)
		case fv.Kind() == reflect.Pointer && !fv.IsNil() && fv.Elem().Kind() == reflect.Struct && fv.Elem().Type() != timeType:
			leaves(fv.Elem(), p, f)
		}
	}
}

// Check compares the fast encoding (marshal) with json.Marshal on variants of *base
// (a pointer to a struct whose pointer type is a fastjson.Appender): the
// base with every field filled, the zero value, and, from both, every
// field set in turn to each of its samples. It also checks that the filled
// base, with the named top-level fields left zero (those the fast path
// always refuses when set), takes the fast path. base is left unchanged.
func Check[T any](t *testing.T, base *T, slowFields ...string) {
	t.Helper()
	if _, ok := any(base).(fastjson.Appender); !ok {
		t.Fatalf("%T is not a fastjson.Appender", base)
	}
	full := new(T)
	*full = *base
	if err := fill(reflect.ValueOf(full).Elem()); err != nil {
		t.Fatal(err)
	}
	fast := new(T)
	*fast = deepCopy(full)
	for _, name := range slowFields {
		f := reflect.ValueOf(fast).Elem().FieldByName(name)
		if !f.IsValid() {
			t.Fatalf("%T has no field %s", fast, name)
		}
		f.Set(reflect.Zero(f.Type()))
	}
	if b, ok := any(fast).(fastjson.Appender).AppendJSON(nil); !ok {
		t.Errorf("%T with plain values does not take the fast path (wrote %s)", fast, b)
	}
	n := 0
	for _, start := range []*T{full, new(T), base} {
		compare(t, "start", start)
		var paths []string
		leaves(reflect.ValueOf(start).Elem(), "", func(p string, _ reflect.Value) { paths = append(paths, p) })
		for _, p := range paths {
			// Each variant works on a fresh copy; find the field again.
			probe := new(T)
			*probe = deepCopy(start)
			var typ reflect.Type
			leaves(reflect.ValueOf(probe).Elem(), "", func(q string, fv reflect.Value) {
				if q == p {
					typ = fv.Type()
				}
			})
			vals, err := samples(typ)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			for i, sv := range vals {
				v := new(T)
				*v = deepCopy(start)
				leaves(reflect.ValueOf(v).Elem(), "", func(q string, fv reflect.Value) {
					if q == p {
						fv.Set(sv)
					}
				})
				compare(t, fmt.Sprintf("%s sample %d", p, i), v)
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no variants checked")
	}
}

// deepCopy copies v through JSON-independent reflection: pointers to
// structs are copied so that setting a field of the copy leaves v alone.
func deepCopy[T any](v *T) T {
	out := reflect.New(reflect.TypeFor[T]()).Elem()
	copyValue(out, reflect.ValueOf(v).Elem())
	return out.Interface().(T)
}

func copyValue(dst, src reflect.Value) {
	switch {
	case src.Kind() == reflect.Struct && src.Type() != timeType:
		for i := 0; i < src.NumField(); i++ {
			if src.Type().Field(i).IsExported() {
				copyValue(dst.Field(i), src.Field(i))
			}
		}
	case src.Kind() == reflect.Pointer && !src.IsNil():
		p := reflect.New(src.Type().Elem())
		copyValue(p.Elem(), src.Elem())
		dst.Set(p)
	default:
		dst.Set(src)
	}
}

func compare[T any](t *testing.T, name string, v *T) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	got, gotErr := marshal(v)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || string(got) != string(want) {
		t.Errorf("%s:\nfastjson: %s (err %v)\njson:     %s (err %v)", name, got, gotErr, want, wantErr)
	}
}

// marshal is what the hot path's callers do: v's fast encoding, or
// json.Marshal's when v refuses.
func marshal(v any) ([]byte, error) {
	var s fastjson.Scratch
	if b, ok := v.(fastjson.Appender).AppendJSON(s[:0]); ok {
		return b, nil
	}
	return json.Marshal(v)
}
