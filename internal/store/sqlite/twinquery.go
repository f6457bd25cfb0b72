package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/muster-iot/muster/internal/query"
	"github.com/muster-iot/muster/internal/store"
)

// twinField is one top-level property of the service-side twin document
// (store.TwinDocument) as an SQL expression over the twin row t and the
// device row d. Every expression yields JSON text and is never NULL (a
// property missing from its source document is 'null'), so a path read
// through the column and one read through the assembled document agree.
type twinField struct {
	name string
	expr string
}

// twinFields lists the twin document's properties in the order of the
// service API's twin JSON; store.TwinDocument is the reference.
func twinFields() []twinField {
	return []twinField{
		{"deviceId", `COALESCE(t.doc -> '$.deviceId', 'null')`},
		{"etag", `json_quote(t.etag)`},
		{"deviceEtag", `json_quote(d.etag)`},
		{"status", `COALESCE(d.doc -> '$.status', 'null')`},
		{"statusReason", `COALESCE(d.doc -> '$.statusReason', 'null')`},
		{"statusUpdateTime", `COALESCE(d.doc -> '$.statusUpdatedTime', 'null')`},
		{"connectionState", `COALESCE(d.doc -> '$.connectionState', 'null')`},
		{"lastActivityTime", `COALESCE(d.doc -> '$.lastActivityTime', 'null')`},
		{"cloudToDeviceMessageCount", `COALESCE(d.doc -> '$.cloudToDeviceMessageCount', 'null')`},
		{"authenticationType", `COALESCE(d.doc -> '$.authentication.type', 'null')`},
		{"x509Thumbprint", `COALESCE(d.doc -> '$.authentication.x509Thumbprint', 'null')`},
		{"modelId", `'""'`},
		{"version", `COALESCE(t.doc -> '$.version', 'null')`},
		{"tags", `COALESCE(t.doc -> '$.tags', '{}')`},
		{"properties", twinPropertiesExpr},
		{"capabilities", `COALESCE(d.doc -> '$.capabilities', 'null')`},
		{"deviceScope", `COALESCE(d.doc -> '$.deviceScope', 'null')`},
		{"parentScopes", `CASE WHEN json_type(d.doc, '$.parentScopes') IS NULL OR json_type(d.doc, '$.parentScopes') = 'null' THEN '[]' ELSE d.doc -> '$.parentScopes' END`},
	}
}

// moduleTwinFields lists the module twin document's properties
// (store.ModuleTwinDocument is the reference) as SQL expressions over the
// module twin row t, the module row m and the device row d.
func moduleTwinFields() []twinField {
	return []twinField{
		{"deviceId", `COALESCE(t.doc -> '$.deviceId', 'null')`},
		{"moduleId", `COALESCE(t.doc -> '$.moduleId', 'null')`},
		{"etag", `json_quote(t.etag)`},
		{"deviceEtag", `json_quote(d.etag)`},
		{"status", `COALESCE(d.doc -> '$.status', 'null')`},
		{"statusReason", `COALESCE(d.doc -> '$.statusReason', 'null')`},
		{"statusUpdateTime", `COALESCE(d.doc -> '$.statusUpdatedTime', 'null')`},
		{"connectionState", `COALESCE(m.doc -> '$.connectionState', 'null')`},
		{"lastActivityTime", `COALESCE(m.doc -> '$.lastActivityTime', 'null')`},
		{"cloudToDeviceMessageCount", `COALESCE(m.doc -> '$.cloudToDeviceMessageCount', 'null')`},
		{"authenticationType", `COALESCE(m.doc -> '$.authentication.type', 'null')`},
		{"x509Thumbprint", `COALESCE(m.doc -> '$.authentication.x509Thumbprint', 'null')`},
		{"modelId", `'""'`},
		{"version", `COALESCE(t.doc -> '$.version', 'null')`},
		{"tags", `COALESCE(t.doc -> '$.tags', '{}')`},
		{"properties", twinPropertiesExpr},
	}
}

// twinPropertiesExpr is the properties object of a twin row t: desired
// and reported, each {} when missing.
const twinPropertiesExpr = `json_object(` +
	`'desired', json(CASE WHEN json_type(t.doc, '$.properties.desired') IS NULL THEN '{}' ELSE t.doc -> '$.properties.desired' END), ` +
	`'reported', json(CASE WHEN json_type(t.doc, '$.properties.reported') IS NULL THEN '{}' ELSE t.doc -> '$.properties.reported' END))`

// configurationsExpr is the configurations object of a twin row t, SQL
// NULL (undefined) when the twin has none.
const configurationsExpr = `CASE WHEN json_type(t.doc, '$.configurations') <> 'null' ` +
	`THEN t.doc -> '$.configurations' END`

// documentSchema builds the schema of twin documents with fields (each a
// root column) plus the optional configurations of the twin row t.
func documentSchema(fields []twinField, from, where string) query.Schema {
	roots := make(map[string]query.Column, len(fields)+1)
	doc := make([]string, 0, len(fields))
	for _, f := range fields {
		roots[f.name] = query.Column{Expr: f.expr, JSON: true}
		doc = append(doc, "'"+f.name+"', json("+f.expr+")")
	}
	roots["configurations"] = query.Column{Expr: configurationsExpr, JSON: true}
	base := "json_object(" + strings.Join(doc, ", ") + ")"
	return query.Schema{
		From:  from,
		Where: where,
		// A twin without configurations has no such property (not null).
		Doc:   "CASE WHEN (" + configurationsExpr + ") IS NULL THEN " + base + " ELSE json_set(" + base + ", '$.configurations', json(" + configurationsExpr + ")) END",
		Roots: roots,
		Key:   []string{"t.id"},
	}
}

// twinSchema is where the query translator finds twin documents: the twin
// rows of one hub joined with their device rows. hubParam is the SQL of the
// hub's group (a placeholder bound by QueryTwins).
func twinSchema(hubParam string) query.Schema {
	return documentSchema(twinFields(), "docs t JOIN docs d ON d.kind = 'device' AND d.id = t.id", "t.kind = 'twin' AND t.grp = "+hubParam)
}

// moduleTwinSchema is where the query translator finds module twin
// documents: the module twin rows of one hub joined with their module rows
// and with the device rows of their current device generation. The join
// starts from the hub's devices (index kind, grp, id), then their module
// twins by group.
func moduleTwinSchema(hubParam string) query.Schema {
	return documentSchema(moduleTwinFields(),
		"docs d JOIN docs t ON t.kind = 'moduleTwin' AND t.grp = d.id JOIN docs m ON m.kind = 'module' AND m.id = t.id",
		"d.kind = 'device' AND d.grp = "+hubParam+
			" AND COALESCE(m.doc ->> '$.deviceGenerationId', '') = COALESCE(d.doc ->> '$.generationId', '')")
}

// QueryTwins implements store.TwinQuerier: q is translated to one SQL
// statement over the docs table (the hub's twin rows joined with their
// device rows) and run on the reader pool; no twin is loaded into Go unless
// it is a result.
func (s *Store) QueryTwins(ctx context.Context, q *query.Query, hub string, offset, limit int) ([]json.RawMessage, error) {
	op := "query twins"
	if s.isDone.Load() {
		return nil, fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if q == nil {
		return nil, fmt.Errorf("%s: the query is nil", op)
	}
	schema := twinSchema
	switch q.From {
	case query.Devices:
	case query.Modules:
		schema = moduleTwinSchema
	default:
		return nil, fmt.Errorf("%s: FROM %s: %w (only FROM devices and devices.modules)", op, q.From, query.ErrUnsupported)
	}
	// The hub is bound as the parameter after the translation's own
	// $1..$n. The translation does not depend on the text of Schema.Where,
	// so n is learnt from a first translation.
	_, args, err := q.SQLPage(query.SQLite, schema("NULL"), offset, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	stmt, args, err := q.SQLPage(query.SQLite, schema("$"+strconv.Itoa(len(args)+1)), offset, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	args = append(args, strings.ToLower(hub))
	rows, err := s.rdb.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, s.readErr(op, err)
	}
	defer rows.Close()
	cols := len(q.Projections)
	if q.Star {
		cols = 1
	}
	vals := make([]*string, cols)
	dest := make([]any, cols)
	for i := range vals {
		dest[i] = &vals[i]
	}
	var items []json.RawMessage
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, s.readErr(op, err)
		}
		item, err := q.Item(vals)
		if err != nil {
			return nil, fmt.Errorf("%s: row %d: %w", op, len(items)+1, err)
		}
		items = append(items, item)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(op, err)
	}
	return items, nil
}
