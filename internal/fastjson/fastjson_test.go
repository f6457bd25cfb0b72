package fastjson

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// doc has a field of every kind the Writer writes.
type doc struct {
	S string          `json:"s"`
	P *string         `json:"p"`
	L []string        `json:"l"`
	N int64           `json:"n"`
	B bool            `json:"b"`
	T time.Time       `json:"t"`
	R json.RawMessage `json:"r"`
}

func (d *doc) AppendJSON(b []byte) ([]byte, bool) {
	ok := true
	b = append(b, `{"s":`...)
	b = String(b, d.S, &ok)
	b = append(b, `,"p":`...)
	b = StringPtr(b, d.P, &ok)
	b = append(b, `,"l":`...)
	b = Strings(b, d.L, &ok)
	b = append(b, `,"n":`...)
	b = strconv.AppendInt(b, d.N, 10)
	b = append(b, `,"b":`...)
	b = strconv.AppendBool(b, d.B)
	b = append(b, `,"t":`...)
	b = Time(b, d.T, &ok)
	b = append(b, `,"r":`...)
	b = Raw(b, d.R, &ok)
	return append(b, '}'), ok
}

// check compares the fast path (falling back as callers do) with json.Marshal and returns whether the fast
// path was taken.
func check(t *testing.T, d *doc) bool {
	t.Helper()
	want, wantErr := json.Marshal(d)
	got, ok := d.AppendJSON(nil)
	var gotErr error
	if !ok {
		got, gotErr = json.Marshal(d)
	}
	if string(got) != string(want) || (gotErr == nil) != (wantErr == nil) {
		t.Errorf("%+v:\nfastjson %s (%v)\njson     %s (%v)", d, got, gotErr, want, wantErr)
	}
	return ok
}

func TestWriterMatchesEncodingJSON(t *testing.T) {
	s := "x"
	base := doc{S: "plain", P: &s, L: []string{"a"}, N: -3, B: true, T: time.Date(2026, 1, 2, 3, 4, 5, 60, time.UTC), R: json.RawMessage(`{"k":[1,"v"]}`)}
	if !check(t, &base) {
		t.Error("plain values should take the fast path")
	}
	slow := map[string]func(d *doc){
		"quote":         func(d *doc) { d.S = `a"b` },
		"html":          func(d *doc) { d.S = "<&>" },
		"non-ascii":     func(d *doc) { d.S = "\u00e9" },
		"control":       func(d *doc) { d.S = "\n" },
		"ptr html":      func(d *doc) { p := "<"; d.P = &p },
		"list escape":   func(d *doc) { d.L = []string{"\\"} },
		"zone":          func(d *doc) { d.T = d.T.In(time.FixedZone("", 3600)) },
		"year 10000":    func(d *doc) { d.T = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"year -1":       func(d *doc) { d.T = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
		"raw space":     func(d *doc) { d.R = json.RawMessage(`{"a": 1}`) },
		"raw html":      func(d *doc) { d.R = json.RawMessage(`"<"`) },
		"raw 2028":      func(d *doc) { d.R = json.RawMessage("\"\u2028\"") },
		"raw empty":     func(d *doc) { d.R = json.RawMessage{} },
		"raw invalid":   func(d *doc) { d.R = json.RawMessage(`{`) },
		"raw two":       func(d *doc) { d.R = json.RawMessage(`1 2`) },
		"raw trailing":  func(d *doc) { d.R = json.RawMessage(`{}x`) },
		"raw non-ascii": func(d *doc) { d.R = json.RawMessage("\"\u00e9\"") },
	}
	for name, f := range slow {
		d := base
		f(&d)
		fast := check(t, &d)
		if fast && name != "raw non-ascii" {
			t.Errorf("%s: took the fast path", name)
		}
	}
	fast := map[string]func(d *doc){
		"zero":        func(d *doc) { *d = doc{} },
		"nil ptr":     func(d *doc) { d.P = nil },
		"empty list":  func(d *doc) { d.L = []string{} },
		"zero time":   func(d *doc) { d.T = time.Time{} },
		"year 0":      func(d *doc) { d.T = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) },
		"year 9999":   func(d *doc) { d.T = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC) },
		"zero offset": func(d *doc) { d.T = d.T.In(time.FixedZone("GMT", 0)) },
		"raw null":    func(d *doc) { d.R = json.RawMessage(`null`) },
		"raw escaped": func(d *doc) { d.R = json.RawMessage(`"\u003c\"\\"`) },
	}
	for name, f := range fast {
		d := base
		f(&d)
		if !check(t, &d) {
			t.Errorf("%s: did not take the fast path", name)
		}
	}
}

func FuzzWriterMatchesEncodingJSON(f *testing.F) {
	f.Add("plain", []byte(`{"a":1}`), int64(0))
	f.Add("<\u2028\xff", []byte(" [1, 2] "), int64(-1e18))
	f.Fuzz(func(t *testing.T, s string, raw []byte, sec int64) {
		d := &doc{S: s, P: &s, L: []string{s, s}, R: raw, T: time.Unix(sec%(1<<40), sec%1e9).UTC()}
		check(t, d)
	})
}
