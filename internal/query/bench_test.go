package query

import "testing"

// BenchmarkParseTranslate measures parsing a typical metric query and
// translating it for both dialects.
func BenchmarkParseTranslate(b *testing.B) {
	const src = "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[deploy-1]].status = 'Applied' " +
		"AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code = 200"
	s := Schema{From: "twins t", Doc: "t.doc", Key: []string{"t.id"}}
	for b.Loop() {
		q, err := Parse(src)
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range []Dialect{SQLite, Postgres} {
			if _, _, err := q.SQL(d, s); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkParseCondition measures parsing a deployment target condition.
func BenchmarkParseCondition(b *testing.B) {
	const src = "tags.environment = 'prod' AND tags.site IN ['a', 'b', 'c'] AND NOT IS_DEFINED(tags.excluded)"
	for b.Loop() {
		if _, err := ParseCondition(src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEval measures evaluating a target condition against one twin,
// as done when a single twin changes.
func BenchmarkEval(b *testing.B) {
	e, err := ParseCondition("capabilities.iotEdge = true AND (tags.environment = 'prod' AND tags.site IN ['a', 'b', 'c'] AND NOT IS_DEFINED(tags.excluded))")
	if err != nil {
		b.Fatal(err)
	}
	doc := decodeFixtures(b, deviceTwins())[0]
	for b.Loop() {
		ok, err := e.Eval(doc)
		if err != nil || !ok {
			b.Fatalf("Eval = %v, %v", ok, err)
		}
	}
}
