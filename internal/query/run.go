package query

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Run executes q in Go over docs, which must be in the order the SQL
// translation sorts by (Schema.Key), and returns the result items: the
// documents for SELECT *, else one JSON object per row or group. It is the
// in-memory counterpart of [Query.SQL] and returns the same items.
func (q *Query) Run(docs []map[string]any) ([]json.RawMessage, error) {
	if err := q.check(); err != nil {
		return nil, err
	}
	var rows []map[string]any
	for _, d := range docs {
		ok, err := q.Where.Eval(d)
		if err != nil {
			return nil, err
		}
		if ok {
			rows = append(rows, d)
		}
	}
	var items []json.RawMessage
	switch {
	case q.GroupBy != nil:
		groups, err := q.groups(rows)
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			item, err := q.item(func(pr Projection) (Value, error) {
				if pr.Count {
					return Number(float64(g.count)), nil
				}
				return g.value, nil
			})
			if err != nil {
				return nil, err
			}
			items = append(items, item)
		}
	case q.aggregate():
		item, err := q.item(func(Projection) (Value, error) { return Number(float64(len(rows))), nil })
		if err != nil {
			return nil, err
		}
		items = append(items, item)
	default:
		for _, d := range rows {
			if q.Top >= 0 && len(items) >= q.Top {
				break
			}
			var item []byte
			var err error
			if q.Star {
				item, err = marshalNoEscape(d)
			} else {
				item, err = q.item(func(pr Projection) (Value, error) { return pr.Expr.Value(d) })
			}
			if err != nil {
				return nil, err
			}
			items = append(items, item)
		}
	}
	if q.Top >= 0 && len(items) > q.Top {
		items = items[:q.Top]
	}
	return items, nil
}

// item builds one result object from the projections' values.
func (q *Query) item(value func(Projection) (Value, error)) (json.RawMessage, error) {
	cols := make([][]byte, len(q.Projections))
	for i, pr := range q.Projections {
		v, err := value(pr)
		if err != nil {
			return nil, err
		}
		if cols[i], err = v.JSON(); err != nil {
			return nil, err
		}
	}
	return q.object(cols)
}

// Item builds the result item of one row returned by the SQL of
// [Query.SQL]: cols are the row's columns scanned as nullable strings
// (*string: nil for SQL NULL), each the JSON text of a value.
func (q *Query) Item(cols []*string) (json.RawMessage, error) {
	if q.Star {
		if len(cols) != 1 || cols[0] == nil {
			return nil, errors.New("build result item: SELECT * row must have one non-null document column")
		}
		if !json.Valid([]byte(*cols[0])) {
			return nil, errors.New("build result item: document column is not valid JSON")
		}
		return json.RawMessage(*cols[0]), nil
	}
	if len(cols) != len(q.Projections) {
		return nil, fmt.Errorf("build result item: row has %d columns, the query projects %d", len(cols), len(q.Projections))
	}
	raw := make([][]byte, len(cols))
	for i, c := range cols {
		if c == nil {
			continue
		}
		if !json.Valid([]byte(*c)) {
			return nil, fmt.Errorf("build result item: column %d (%s) is not valid JSON", i+1, q.Projections[i].Name)
		}
		raw[i] = []byte(*c)
	}
	return q.object(raw)
}

// object renders {"name": value, ...} in SELECT order, leaving out nil
// (undefined) values.
func (q *Query) object(cols [][]byte) (json.RawMessage, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for i, c := range cols {
		if c == nil {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		name, err := marshalNoEscape(q.Projections[i].Name)
		if err != nil {
			return nil, err
		}
		b.Write(name)
		b.WriteByte(':')
		b.Write(c)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

type group struct {
	rank  int
	key   string // canonical text within the rank
	num   float64
	value Value
	count int
}

// groups partitions rows by the GROUP BY value and orders the groups: by
// type rank, then booleans false first, numbers ascending, strings and the
// JSON text of arrays and objects in byte order.
func (q *Query) groups(rows []map[string]any) ([]*group, error) {
	byKey := map[string]*group{}
	var out []*group
	for _, d := range rows {
		v, err := lookup(d, q.GroupBy.Segments)
		if err != nil {
			return nil, err
		}
		g := &group{rank: rank(v), value: v}
		switch v.Kind {
		case KindBool:
			g.key = strconv.FormatBool(v.Bool)
		case KindNumber:
			g.num = v.Num
			if g.num == 0 {
				g.num = 0 // -0 groups with 0
			}
			g.key = strconv.FormatFloat(g.num, 'g', -1, 64)
		case KindString:
			g.key = v.Str
		case KindArray, KindObject:
			text, err := v.JSON()
			if err != nil {
				return nil, err
			}
			g.key = string(text)
		}
		id := strconv.Itoa(g.rank) + ":" + g.key
		if have, ok := byKey[id]; ok {
			have.count++
			continue
		}
		g.count = 1
		byKey[id] = g
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *group) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		switch a.value.Kind {
		case KindBool:
			return cmp.Compare(boolRank(a.value.Bool), boolRank(b.value.Bool))
		case KindNumber:
			return cmp.Compare(a.num, b.num)
		}
		return cmp.Compare(a.key, b.key)
	})
	return out, nil
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// rank orders the kinds of GROUP BY values.
func rank(v Value) int {
	switch v.Kind {
	case KindNull:
		return 1
	case KindBool:
		return 2
	case KindNumber:
		return 3
	case KindString:
		return 4
	case KindArray:
		return 5
	case KindObject:
		return 6
	}
	return 0
}
