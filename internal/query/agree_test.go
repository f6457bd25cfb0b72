package query

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// agreementConditions are run through both CondSQL and Eval; the matching
// documents must be the same. Each is a target condition: a bare condition
// over device twins, or FROM devices.modules WHERE ... for module twins.
func agreementConditions() []string {
	return []string{
		"*",
		// Equality, inequality and three-valued NOT.
		"tags.environment = 'prod'",
		"tags.environment != 'prod'",
		"tags.environment <> 'prod'",
		"NOT (tags.environment = 'prod')",
		"tags.environment = 'prod' AND tags.site IN ['a', 'b']",
		"tags.environment = 'prod' OR tags.site = 'a'",
		"NOT (tags.n > 5 AND tags.site = 'a')",
		"NOT (tags.n > 5 OR tags.site = 'a')",
		"tags.site NIN ['a', 'b']",
		"tags.site NOT IN ['a', 'c']",
		// Numbers against strings, nulls and each other.
		"tags.n > 5",
		"tags.n >= 5",
		"tags.n < 7.5",
		"tags.n <= 7.5",
		"tags.n = 5",
		"tags.n = 0",
		"tags.s = '5'",
		"tags.n = '5'",
		"tags.n != 5",
		"NOT (tags.n != 5)",
		"tags.n IN [5, '7', true, null]",
		"tags.n IN [5, 10]",
		"tags.n NIN [5, 10]",
		"tags.n IN []",
		"tags.n NIN []",
		"tags.s IN ['5', 'abc'] OR tags.n IN [null]",
		"tags.environment = null",
		"tags.environment != null",
		"null = null",
		// Type tests.
		"IS_NULL(tags.environment)",
		"IS_DEFINED(tags.environment)",
		"NOT IS_DEFINED(tags.environment)",
		"IS_STRING(tags.n)",
		"IS_NUMBER(tags.n)",
		"IS_BOOL(tags.n) OR IS_BOOL(tags.flag)",
		"IS_OBJECT(tags.obj) OR IS_OBJECT(tags.location)",
		"IS_ARRAY(tags.arr)",
		"IS_PRIMITIVE(tags.n)",
		"IS_PRIMITIVE(tags.location)",
		"IS_DEFINED(tags.x.y.z) OR IS_DEFINED(tags.environment.x)",
		"IS_STRING(LOWER(tags.environment))",
		"IS_NUMBER(tags.n + 1)",
		// Booleans.
		"tags.flag",
		"NOT tags.flag",
		"tags.flag = true",
		"tags.flag != false",
		"tags.flag < true",
		"(tags.n > 5) = true",
		"(tags.n > 5) != (tags.site = 'a')",
		"tags.n IN [7, 7.5] AND NOT tags.flag",
		// Twin paths from deployments and metrics.
		"capabilities.iotEdge = true AND (tags.environment = 'prod')",
		"configurations.[[cfg-1]].status = 'Applied'",
		"configurations.[[cfg.2]].status = 'Applied'",
		"properties.desired.$version = properties.reported.lastDesiredVersion",
		"properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code != 200",
		"properties.reported.fw > '1.0.1'",
		"tags.location.region = 'US'",
		"devices.tags.location.region = 'EU'",
		"deviceId = 'dev03'",
		"deviceId IN ['dev01', 'dev15']",
		"deviceId > 'dev10'",
		"status = 'disabled'",
		"connectionState = 'Connected' AND status = 'enabled'",
		// Path against path.
		"tags.environment = tags.s",
		"tags.n >= tags.m",
		"tags = tags",
		"tags.arr = tags.arr",
		"tags.arr.a = 1",
		// Arithmetic.
		"tags.n + 1 > 6",
		"tags.n * 2 = 10",
		"tags.n / 2 > 3",
		"tags.n / 0 = 1",
		"NOT (tags.n / 0 = 1)",
		"tags.n % 3 = 1",
		"-tags.n < -6",
		"tags.m - tags.n < 0",
		"tags.tenth + tags.fifth = 0.30000000000000004",
		"tags.tenth + tags.fifth = 0.3",
		"tags.big = 9007199254740992",
		"(tags.n + 'x') = 1",
		// String functions.
		"LOWER(tags.environment) = 'prod'",
		"UPPER(tags.name) = 'ÀBC'",
		"LENGTH(tags.environment) = 5",
		"LENGTH(tags.name) = 3",
		"STARTS_WITH(tags.environment, 'pro')",
		"STARTSWITH(tags.environment, '')",
		"ENDS_WITH(tags.environment, 'od')",
		"ENDS_WITH(LOWER(tags.environment), 'od')",
		"ENDS_WITH(tags.environment, CONCAT('o', 'd'))",
		"ENDS_WITH(tags.s, '')",
		"CONTAINS(tags.environment, 'ro')",
		"CONCAT(tags.environment, '-', tags.site) = 'prod-a'",
		"tags.environment > 'prod'",
		"tags.environment < 'Prod'",
		// Numeric functions and AS_NUMBER.
		"ABS(tags.m) = 3.5",
		"FLOOR(tags.m) = -4",
		"CEILING(tags.n) = 8",
		"AS_NUMBER(tags.num) = 12.5",
		"AS_NUMBER(tags.ws) = 7",
		"IS_DEFINED(AS_NUMBER(tags.hex)) OR IS_DEFINED(AS_NUMBER(tags.lead)) OR IS_DEFINED(AS_NUMBER(tags.plus))",
		"AS_NUMBER(tags.negz) = 0",
		"AS_NUMBER(tags.n) > 6",
		"AS_NUMBER(CONCAT(tags.n, '0')) = 70",
		// Odd property names and string literals.
		`tags.[[we"ird]] = 'q'`,
		"tags.[[a.b]] = 1",
		"tags.$v = 'dollar'",
		"tags.ü = 'umlaut'",
		"tags.[[a<b]] = 'lt'",
		"tags.[[sp ace]] = 'x'",
		`tags.[[back\slash]] = 'bs'`,
		"tags.[[]] = 'empty-name'",
		"tags.[[tab\there]] = 't'",
		"tags.quote = 'it''s'",
		`tags.quote = "it's"`,
		`tags.environment = 'prod\u00e9'`,
		// Constants.
		"true",
		"false",
		"1 = '1'",
		"NOT (1 = '1')",
		"'a' < 'b'",
		// Module twins.
		"FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[cfg-1]].status = 'Applied'",
		"FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[cfg-1]].status = 'Applied' AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code = 200",
		"FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[cfg-1]].status = 'Applied' AND properties.desired.$version = properties.reported.lastDesiredVersion AND properties.reported.lastDesiredStatus.code != 200",
		"FROM devices.modules WHERE devices.modules.moduleId = 'sensor' OR tags.kind = 'temp'",
		"FROM devices.modules WHERE deviceId IN ['dev01', 'dev06'] AND NOT IS_DEFINED(tags.kind)",
		"FROM devices.modules WHERE connectionState = 'Disconnected' OR STARTS_WITH(moduleId, '$edgeH')",
		"FROM devices.modules WHERE configurations.[[cfg.2]].status = 'Applied' OR properties.desired.SendInterval >= 5",
	}
}

// overflowConditions overflow a double on some fixture. The Go evaluator
// and SQLite agree that the overflowing value is undefined; PostgreSQL
// rejects the statement instead (a documented limit), which the PostgreSQL
// run checks.
func overflowConditions() []string {
	return []string{
		"tags.n * 1e300 * 1e300 > 0",
		"IS_DEFINED(AS_NUMBER(tags.huge))",
	}
}

// agreementQueries are run through both SQL and Run; the result items must
// be the same.
func agreementQueries() []string {
	return []string{
		"SELECT * FROM devices",
		"SELECT * FROM devices WHERE tags.environment = 'prod'",
		"SELECT TOP 2 * FROM devices WHERE tags.environment = 'prod'",
		"SELECT TOP 0 * FROM devices",
		"SELECT deviceId, tags.site, tags.n + 1 AS next, tags.location FROM devices WHERE IS_DEFINED(tags.n)",
		"SELECT deviceId, tags.n > 5 AS big, LOWER(tags.environment), CONCAT(deviceId, '!') FROM devices",
		"SELECT 'x' AS k, 1.5 AS n, null AS z, true AS b, tags.nothing AS u FROM devices WHERE deviceId = 'dev01'",
		"SELECT tags.tenth + tags.fifth AS sum, tags.big, tags.n / 3 AS third FROM devices WHERE deviceId = 'dev10'",
		"SELECT deviceId, properties.desired.$version, configurations.[[cfg-1]].status AS cfg FROM devices WHERE IS_DEFINED(configurations)",
		"SELECT COUNT() AS n FROM devices WHERE tags.environment = 'prod'",
		"SELECT COUNT() FROM devices",
		"SELECT COUNT() AS n FROM devices WHERE tags.nothing = 1",
		"SELECT properties.reported.fw AS fw, COUNT() AS n FROM devices GROUP BY properties.reported.fw",
		"SELECT tags.n, COUNT() AS c FROM devices GROUP BY tags.n",
		"SELECT TOP 3 tags.environment, COUNT() AS c FROM devices GROUP BY tags.environment",
		"SELECT COUNT() AS n, tags.site FROM devices WHERE tags.environment = 'prod' GROUP BY tags.site",
		"SELECT tags.location, COUNT() AS c FROM devices GROUP BY tags.location",
		"SELECT tags.flag FROM devices GROUP BY tags.flag",
		"SELECT deviceId, COUNT() AS n FROM devices WHERE tags.site = 'a' OR tags.n > 6 GROUP BY deviceId",
		"SELECT TOP 4 tags.s AS s, COUNT() AS n FROM devices GROUP BY tags.s",
		"SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[cfg-1]].status = 'Applied'",
		"SELECT * FROM devices.modules WHERE devices.modules.moduleId = '$edgeAgent'",
		"SELECT deviceId, moduleId, properties.reported.lastDesiredStatus.code AS code FROM devices.modules",
		"SELECT moduleId, COUNT() AS n FROM devices.modules GROUP BY moduleId",
		"SELECT TOP 2 deviceId, moduleId FROM devices.modules WHERE IS_DEFINED(configurations)",
		"SELECT COUNT() AS n FROM devices.modules WHERE properties.reported.lastDesiredStatus.code = 200",
		"SELECT properties.reported.lastDesiredStatus.code AS code, COUNT() AS n FROM devices.modules GROUP BY properties.reported.lastDesiredStatus.code",
	}
}

// pages are the (offset, limit) windows the paging check uses.
func pages() [][2]int { return [][2]int{{0, 2}, {1, 2}, {3, 0}, {20, 5}} }

func TestAgreementSQLite(t *testing.T) { runAgreement(t, openSQLite(t)) }

func TestAgreementPostgres(t *testing.T) { runAgreement(t, openPostgres(t)) }

func runAgreement(t *testing.T, b *backend) {
	docs := map[Collection][]map[string]any{
		Devices: decodeFixtures(t, deviceTwins()),
		Modules: decodeFixtures(t, moduleTwins()),
	}
	ids := map[Collection][]string{}
	for _, f := range deviceTwins() {
		ids[Devices] = append(ids[Devices], f.id)
	}
	for _, f := range moduleTwins() {
		ids[Modules] = append(ids[Modules], f.id)
	}

	t.Run("conditions", func(t *testing.T) {
		for _, src := range agreementConditions() {
			t.Run(src, func(t *testing.T) {
				from, e, err := ParseTargetCondition(src)
				if err != nil {
					t.Fatalf("ParseTargetCondition: %v", err)
				}
				want := []string{}
				for i, d := range docs[from] {
					ok, err := e.Eval(d)
					if err != nil {
						t.Fatalf("Eval(%s): %v", ids[from][i], err)
					}
					if ok {
						want = append(want, ids[from][i])
					}
				}
				schemas := []Schema{b.schemas[from]}
				if from == Devices {
					schemas = append(schemas, b.rooted)
				}
				for i, s := range schemas {
					got, err := b.ids(t, e, s)
					if err != nil {
						t.Fatalf("schema %d: run CondSQL: %v", i, err)
					}
					if got == nil {
						got = []string{}
					}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("schema %d: SQL matches differ from Eval (-Eval +SQL):\n%s", i, diff)
					}
				}
			})
		}
	})

	t.Run("overflow", func(t *testing.T) {
		for _, src := range overflowConditions() {
			t.Run(src, func(t *testing.T) {
				e, err := ParseCondition(src)
				if err != nil {
					t.Fatalf("ParseCondition: %v", err)
				}
				want := []string{}
				for i, d := range docs[Devices] {
					if ok, err := e.Eval(d); err != nil {
						t.Fatalf("Eval(%s): %v", ids[Devices][i], err)
					} else if ok {
						want = append(want, ids[Devices][i])
					}
				}
				got, err := b.ids(t, e, b.schemas[Devices])
				if b.dialect == Postgres {
					if err == nil || !strings.Contains(err.Error(), "out of range") {
						t.Fatalf("PostgreSQL: got %v, %v; want an out-of-range error", got, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("run CondSQL: %v", err)
				}
				if got == nil {
					got = []string{}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("SQL matches differ from Eval (-Eval +SQL):\n%s", diff)
				}
			})
		}
	})

	t.Run("queries", func(t *testing.T) {
		for _, src := range agreementQueries() {
			t.Run(src, func(t *testing.T) {
				q, err := Parse(src)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				raw, err := q.Run(docs[q.From])
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				want := []any{}
				for _, r := range raw {
					want = append(want, decodeItem(t, r))
				}
				schemas := []Schema{b.schemas[q.From]}
				if q.From == Devices {
					schemas = append(schemas, b.rooted)
				}
				for i, s := range schemas {
					got, err := b.items(t, q, s, 0, 0)
					if err != nil {
						t.Fatalf("schema %d: run SQL: %v", i, err)
					}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("schema %d: SQL results differ from Run (-Run +SQL):\n%s", i, diff)
					}
				}
				for _, pg := range pages() {
					offset, limit := pg[0], pg[1]
					page := want[min(offset, len(want)):]
					if limit > 0 && len(page) > limit {
						page = page[:limit]
					}
					got, err := b.items(t, q, b.schemas[q.From], offset, limit)
					if err != nil {
						t.Fatalf("page %d+%d: run SQL: %v", offset, limit, err)
					}
					if diff := cmp.Diff(page, got); diff != "" {
						t.Errorf("page %d+%d differs (-Run +SQL):\n%s", offset, limit, diff)
					}
				}
			})
		}
	})
}

// TestRunResults pins a few Run results, so that agreement between Run and
// SQL is agreement on the right answer.
func TestRunResults(t *testing.T) {
	docs := decodeFixtures(t, deviceTwins())
	tests := []struct {
		query string
		want  string
	}{
		{"SELECT COUNT() AS n FROM devices WHERE tags.environment = 'prod'", `[{"n":4}]`},
		{"SELECT COUNT() FROM devices WHERE tags.nothing = 1", `[{"$1":0}]`},
		{"SELECT TOP 2 deviceId FROM devices WHERE tags.site = 'a'", `[{"deviceId":"dev01"},{"deviceId":"dev07"}]`},
		{"SELECT tags.s AS s, COUNT() AS n FROM devices GROUP BY tags.s",
			`[{"n":11},{"s":"","n":1},{"s":"10","n":1},{"s":"5","n":1},{"s":"abc","n":1}]`},
		{"SELECT tags.n, COUNT() AS c FROM devices WHERE tags.n IN [5, 0, null] GROUP BY tags.n",
			`[{"n":null,"c":1},{"n":0,"c":2},{"n":5,"c":2}]`},
		{"SELECT deviceId, tags.n * 2 AS twice, tags.nothing FROM devices WHERE deviceId = 'dev03'", `[{"deviceId":"dev03","twice":10}]`},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			q, err := Parse(tc.query)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			raw, err := q.Run(docs)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			got := []any{}
			for _, r := range raw {
				got = append(got, decodeItem(t, r))
			}
			var want []any
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Run (-want +got):\n%s", diff)
			}
		})
	}
}
