package query

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// syntaxSeeds are malformed inputs for the fuzz corpora.
func syntaxSeeds() []string {
	return []string{
		"", "*", "tags.x = ", "'unterminated", `"\u12"`, `'\uD800'`, "[[open", "a IN [", "a IN [1,",
		"1e999", "1.", "12abc", "((((a", "NOT NOT NOT", "LOWER(", "COUNT()", "a = [1]", "\xff", "a.[[]].b = 'x'",
		"a = 'it''s' AND b = \"q\\\"\"", "devices.modules.moduleId = 'x'", "-a % -b / 0 = 1",
		"tags.[[\x00\"]] = ''", // NUL in a quoted name: PostgreSQL cannot bind it, so the lexer refuses it
	}
}

// checkParseError fails unless err is one of the parser's error kinds.
func checkParseError(t *testing.T, in string, err error) {
	t.Helper()
	var se *SyntaxError
	if !errors.As(err, &se) && !errors.Is(err, ErrTooLong) {
		t.Fatalf("parse %q: error %T (%v) is neither a *SyntaxError nor ErrTooLong", in, err, err)
	}
}

// checkTranslateError fails unless err is an expected translation refusal.
func checkTranslateError(t *testing.T, in string, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooComplex) {
		t.Fatalf("translate %q: %v", in, err)
	}
}

// FuzzParseCondition checks that ParseCondition never panics, that its
// canonical rendering parses back to itself, and that SQLite and the Go
// evaluator select the same fixture twins for every condition it accepts.
func FuzzParseCondition(f *testing.F) {
	for _, s := range agreementConditions() {
		if !strings.HasPrefix(s, "FROM") {
			f.Add(s)
		}
	}
	for _, s := range append(syntaxSeeds(), overflowConditions()...) {
		f.Add(s)
	}
	b := openSQLite(f)
	fx := deviceTwins()
	docs := decodeFixtures(f, fx)
	f.Fuzz(func(t *testing.T, in string) {
		e, err := ParseCondition(in)
		if err != nil {
			checkParseError(t, in, err)
			return
		}
		canon := e.String()
		again, err := ParseCondition(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, in, err)
		}
		if again.String() != canon {
			t.Fatalf("canonical form of %q is unstable: %q then %q", in, canon, again.String())
		}
		want := []string{}
		for i, d := range docs {
			ok, err := e.Eval(d)
			if err != nil {
				t.Fatalf("Eval(%q, %s): %v", in, fx[i].id, err)
			}
			if ok {
				want = append(want, fx[i].id)
			}
		}
		for _, s := range []Schema{b.schemas[Devices], b.rooted} {
			got, err := b.ids(t, e, s)
			if err != nil {
				checkTranslateError(t, in, err)
				return
			}
			if got == nil {
				got = []string{}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("condition %q: SQLite and Eval disagree (-Eval +SQL):\n%s", in, diff)
			}
		}
	})
}

// FuzzParse checks that Parse never panics, that the canonical rendering
// is stable, and that every accepted query either fails to translate with
// a translation error or runs in SQLite with the same results as Run.
func FuzzParse(f *testing.F) {
	for _, s := range agreementQueries() {
		f.Add(s)
	}
	for _, s := range syntaxSeeds() {
		f.Add("SELECT * FROM devices WHERE " + s)
	}
	f.Add("SELECT TOP 3 tags.n, COUNT() AS c FROM devices GROUP BY tags.n")
	f.Add("SELECT[[]]FROM deviCes") // found by fuzzing: a projection named by an empty property name
	f.Add("SELECT LOWER(tags.environment) AS e, tags.n * 2 FROM devices.jobs WHERE tags.n > 1")
	b := openSQLite(f)
	docs := map[Collection][]map[string]any{
		Devices: decodeFixtures(f, deviceTwins()),
		Modules: decodeFixtures(f, moduleTwins()),
	}
	f.Fuzz(func(t *testing.T, in string) {
		q, err := Parse(in)
		if err != nil {
			checkParseError(t, in, err)
			return
		}
		canon := q.String()
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, in, err)
		}
		if again.String() != canon {
			t.Fatalf("canonical form of %q is unstable: %q then %q", in, canon, again.String())
		}
		from := q.From
		if from == Jobs {
			from = Devices // no job fixtures: run job queries over the twins
		}
		raw, err := q.Run(docs[from])
		if err != nil {
			t.Fatalf("Run(%q): %v", in, err)
		}
		got, err := b.items(t, q, b.schemas[from], 0, 0)
		if err != nil {
			checkTranslateError(t, in, err)
			return
		}
		want := []any{}
		for _, r := range raw {
			want = append(want, decodeItem(t, r))
		}
		if q.GroupBy != nil {
			// Groups of objects and arrays order by backend-specific
			// JSON text; compare group sets, and only sizes under TOP.
			if q.Top >= 0 {
				if len(got) != len(want) {
					t.Fatalf("query %q: SQLite returned %d groups, Run %d", in, len(got), len(want))
				}
				return
			}
			sortByJSON(t, want)
			sortByJSON(t, got)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("query %q: SQLite and Run disagree (-Run +SQL):\n%s", in, diff)
		}
	})
}

func sortByJSON(t *testing.T, items []any) {
	t.Helper()
	key := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("encode item: %v", err)
		}
		return string(b)
	}
	slices.SortFunc(items, func(a, b any) int { return strings.Compare(key(a), key(b)) })
}
