package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/muster-iot/muster/internal/query"
	"github.com/muster-iot/muster/internal/store"
)

// twinField is one top-level property of a twin document (store.TwinDocument
// or store.ModuleTwinDocument) as a jsonb expression over the rows of its
// records, through their jsonb copies: the twin row t, the device row d
// and, for module twins, the module row m. No expression is ever NULL (a
// property missing from its source document is JSON null), so a path read
// through the column and one read through the assembled document agree.
type twinField struct {
	name string
	expr string
}

// at is the value at path (comma-separated keys) of row's document, JSON
// null when missing.
func at(row, path string) string {
	return "COALESCE(" + row + ".jdoc #> '{" + path + "}', 'null'::jsonb)"
}

// atOrEmpty is the value at path of the twin row, {} when missing (JSON
// null stays null).
func atOrEmpty(path string) string {
	return "COALESCE(t.jdoc #> '{" + path + "}', '{}'::jsonb)"
}

// twinProperties is the properties object of the twin row t: desired and
// reported, each {} when missing.
func twinProperties() string {
	return "jsonb_build_object('desired', " + atOrEmpty("properties,desired") + ", 'reported', " + atOrEmpty("properties,reported") + ")"
}

// twinConfigurations is the configurations object of the twin row t, SQL
// NULL (undefined) when the twin has none.
const twinConfigurations = "CASE WHEN jsonb_typeof(t.jdoc -> 'configurations') <> 'null' THEN t.jdoc -> 'configurations' END"

// twinFields lists the device twin document's properties in the order of
// the service API's twin JSON.
func twinFields() []twinField {
	return []twinField{
		{"deviceId", at("t", "deviceId")},
		{"etag", "to_jsonb(t.etag)"},
		{"deviceEtag", "to_jsonb(d.etag)"},
		{"status", at("d", "status")},
		{"statusReason", at("d", "statusReason")},
		{"statusUpdateTime", at("d", "statusUpdatedTime")},
		{"connectionState", at("d", "connectionState")},
		{"lastActivityTime", at("d", "lastActivityTime")},
		{"cloudToDeviceMessageCount", at("d", "cloudToDeviceMessageCount")},
		{"authenticationType", at("d", "authentication,type")},
		{"x509Thumbprint", at("d", "authentication,x509Thumbprint")},
		{"modelId", `'""'::jsonb`},
		{"version", at("t", "version")},
		{"tags", atOrEmpty("tags")},
		{"properties", twinProperties()},
		{"capabilities", at("d", "capabilities")},
		{"deviceScope", at("d", "deviceScope")},
		{"parentScopes", "CASE WHEN jsonb_typeof(d.jdoc -> 'parentScopes') IS NULL OR jsonb_typeof(d.jdoc -> 'parentScopes') = 'null' " +
			"THEN '[]'::jsonb ELSE d.jdoc -> 'parentScopes' END"},
	}
}

// moduleTwinFields lists the module twin document's properties.
func moduleTwinFields() []twinField {
	return []twinField{
		{"deviceId", at("t", "deviceId")},
		{"moduleId", at("t", "moduleId")},
		{"etag", "to_jsonb(t.etag)"},
		{"deviceEtag", "to_jsonb(d.etag)"},
		{"status", at("d", "status")},
		{"statusReason", at("d", "statusReason")},
		{"statusUpdateTime", at("d", "statusUpdatedTime")},
		{"connectionState", at("m", "connectionState")},
		{"lastActivityTime", at("m", "lastActivityTime")},
		{"cloudToDeviceMessageCount", at("m", "cloudToDeviceMessageCount")},
		{"authenticationType", at("m", "authentication,type")},
		{"x509Thumbprint", at("m", "authentication,x509Thumbprint")},
		{"modelId", `'""'::jsonb`},
		{"version", at("t", "version")},
		{"tags", atOrEmpty("tags")},
		{"properties", twinProperties()},
	}
}

// documentSchema builds the schema of twin documents with fields (each a
// root column) plus the optional configurations of the twin row t. rows
// names the joined rows, which must all have a jsonb copy: records whose
// document jsonb cannot hold (see Apply) are left out.
func documentSchema(fields []twinField, from, where string, rows ...string) query.Schema {
	roots := make(map[string]query.Column, len(fields)+1)
	doc := make([]string, 0, 2*len(fields))
	for _, f := range fields {
		roots[f.name] = query.Column{Expr: f.expr, JSON: true}
		doc = append(doc, "'"+f.name+"'", f.expr)
	}
	roots["configurations"] = query.Column{Expr: twinConfigurations, JSON: true}
	for _, r := range rows {
		where += " AND " + r + ".jdoc IS NOT NULL"
	}
	base := "jsonb_build_object(" + strings.Join(doc, ", ") + ")"
	return query.Schema{
		From:  from,
		Where: where,
		// A twin without configurations has no such property (not null).
		Doc:   "CASE WHEN (" + twinConfigurations + ") IS NULL THEN " + base + " ELSE " + base + " || jsonb_build_object('configurations', " + twinConfigurations + ") END",
		Roots: roots,
		Key:   []string{"t.id"},
	}
}

// twinSchema is where the query translator finds device twin documents:
// the twin rows of one hub joined with their device rows. hubParam is the
// SQL of the hub's group (a placeholder bound by QueryTwins).
func twinSchema(hubParam string) query.Schema {
	return documentSchema(twinFields(), "docs t JOIN docs d ON d.kind = 'device' AND d.id = t.id",
		"t.kind = 'twin' AND t.grp = "+hubParam, "t", "d")
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
			" AND COALESCE(m.jdoc ->> 'deviceGenerationId', '') = COALESCE(d.jdoc ->> 'generationId', '')", "t", "m", "d")
}

// QueryTwins implements store.TwinQuerier: q is translated to one SQL
// statement over the docs table (the hub's twin rows joined with their
// device rows, and module rows for FROM devices.modules, through their
// jsonb copies) and run on the pool; no twin is loaded into Go unless it is
// a result.
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
	hub = strings.ToLower(hub)
	if err := store.CheckText("hub", hub); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	// The hub is bound as the parameter after the translation's own
	// $1..$n. The translation does not depend on the text of Schema.Where,
	// so n is learnt from a first translation.
	_, args, err := q.SQLPage(query.Postgres, schema("NULL"), offset, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	stmt, args, err := q.SQLPage(query.Postgres, schema("$"+strconv.Itoa(len(args)+1)), offset, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	args = append(args, hub)
	rows, err := s.pool.Query(ctx, stmt, args...)
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
