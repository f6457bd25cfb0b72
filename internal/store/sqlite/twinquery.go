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
		{"properties", `json_object(` +
			`'desired', json(CASE WHEN json_type(t.doc, '$.properties.desired') IS NULL THEN '{}' ELSE t.doc -> '$.properties.desired' END), ` +
			`'reported', json(CASE WHEN json_type(t.doc, '$.properties.reported') IS NULL THEN '{}' ELSE t.doc -> '$.properties.reported' END))`},
		{"capabilities", `COALESCE(d.doc -> '$.capabilities', 'null')`},
		{"deviceScope", `COALESCE(d.doc -> '$.deviceScope', 'null')`},
		{"parentScopes", `CASE WHEN json_type(d.doc, '$.parentScopes') IS NULL OR json_type(d.doc, '$.parentScopes') = 'null' THEN '[]' ELSE d.doc -> '$.parentScopes' END`},
	}
}

// twinSchema is where the query translator finds twin documents: the twin
// rows of one hub joined with their device rows. hubParam is the SQL of the
// hub's group (a placeholder bound by QueryTwins).
func twinSchema(hubParam string) query.Schema {
	fields := twinFields()
	roots := make(map[string]query.Column, len(fields))
	doc := make([]string, 0, len(fields))
	for _, f := range fields {
		roots[f.name] = query.Column{Expr: f.expr, JSON: true}
		doc = append(doc, "'"+f.name+"', json("+f.expr+")")
	}
	return query.Schema{
		From:  "docs t JOIN docs d ON d.kind = 'device' AND d.id = t.id",
		Where: "t.kind = 'twin' AND t.grp = " + hubParam,
		Doc:   "json_object(" + strings.Join(doc, ", ") + ")",
		Roots: roots,
		Key:   []string{"t.id"},
	}
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
	if q.From != query.Devices {
		return nil, fmt.Errorf("%s: FROM %s: %w (only FROM devices)", op, q.From, query.ErrUnsupported)
	}
	// The hub is bound as the parameter after the translation's own
	// $1..$n. The translation does not depend on the text of Schema.Where,
	// so n is learnt from a first translation.
	_, args, err := q.SQLPage(query.SQLite, twinSchema("NULL"), offset, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	stmt, args, err := q.SQLPage(query.SQLite, twinSchema("$"+strconv.Itoa(len(args)+1)), offset, limit)
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
