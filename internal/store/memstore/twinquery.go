package memstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/muster-iot/muster/internal/query"
	"github.com/muster-iot/muster/internal/store"
)

// QueryTwins implements store.TwinQuerier by evaluating q in Go
// (query.Run) over the hub's service-side twin documents
// (store.TwinDocument, or store.ModuleTwinDocument for FROM
// devices.modules) in record ID order. It is the reference the SQL
// backends are compared with.
func (s *Store) QueryTwins(ctx context.Context, q *query.Query, hub string, offset, limit int) ([]json.RawMessage, error) {
	const op = "query twins"
	if q == nil {
		return nil, fmt.Errorf("%s: the query is nil", op)
	}
	if q.From != query.Devices && q.From != query.Modules {
		return nil, fmt.Errorf("%s: FROM %s: %w (only FROM devices and devices.modules)", op, q.From, query.ErrUnsupported)
	}
	if offset < 0 || limit < 0 {
		return nil, fmt.Errorf("%s: negative offset %d or limit %d", op, offset, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	load := s.twinDocuments
	if q.From == query.Modules {
		load = s.moduleTwinDocuments
	}
	docs, err := load(strings.ToLower(hub))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	items, err := q.Run(docs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if offset >= len(items) {
		return nil, nil
	}
	items = items[offset:]
	if limit > 0 && len(items) > limit {
		items = items[:limit]
	}
	return items, nil
}

// twinDocuments assembles the twin documents of a hub's twins that have a
// device, ordered by record ID.
func (s *Store) twinDocuments(hub string) ([]map[string]any, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var twins []store.Record
	for _, r := range s.docs[store.KindTwin] {
		if r.Group == hub {
			twins = append(twins, r)
		}
	}
	slices.SortFunc(twins, func(a, b store.Record) int { return strings.Compare(a.ID, b.ID) })
	docs := make([]map[string]any, 0, len(twins))
	for _, t := range twins {
		d, ok := s.docs[store.KindDevice][t.ID]
		if !ok {
			continue
		}
		doc, err := store.TwinDocument(d, t)
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
	return docs, nil
}

// moduleTwinDocuments assembles the module twin documents of a hub's
// current modules (see store.TwinQuerier), ordered by record ID.
func (s *Store) moduleTwinDocuments(hub string) ([]map[string]any, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	type row struct{ device, module, twin store.Record }
	var rows []row
	for _, t := range s.docs[store.KindModuleTwin] {
		d, ok := s.docs[store.KindDevice][t.Group]
		if !ok || d.Group != hub {
			continue
		}
		m, ok := s.docs[store.KindModule][t.ID]
		if !ok {
			continue
		}
		current, err := store.CurrentModule(d, m)
		if err != nil {
			return nil, err
		}
		if current {
			rows = append(rows, row{d, m, t})
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.twin.ID, b.twin.ID) })
	docs := make([]map[string]any, 0, len(rows))
	for _, r := range rows {
		doc, err := store.ModuleTwinDocument(r.device, r.module, r.twin)
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
	return docs, nil
}
