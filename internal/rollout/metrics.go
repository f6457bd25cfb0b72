package rollout

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/query"
)

// countAlias names the count of a rewritten metric query.
const countAlias = "n"

// countMetrics fills the system and custom metric results of c by counting
// twins now. A metric that cannot be counted (a store error, a collection
// the store cannot query) is left out of the results and logged: reading
// the configuration must not fail because of one metric.
func (s *Configurations) countMetrics(ctx context.Context, c *deploy.Configuration) {
	c.SystemMetrics.Queries = deploy.SystemQueries(c)
	if c.SystemMetrics.Queries == nil {
		c.SystemMetrics.Queries = map[string]string{}
	}
	if c.Metrics.Queries == nil {
		c.Metrics.Queries = map[string]string{}
	}
	c.SystemMetrics.Results = s.countAll(ctx, c.ID, c.SystemMetrics.Queries)
	c.Metrics.Results = s.countAll(ctx, c.ID, c.Metrics.Queries)
}

func (s *Configurations) countAll(ctx context.Context, id string, queries map[string]string) map[string]int64 {
	out := make(map[string]int64, len(queries))
	for name, text := range queries {
		n, err := s.Count(ctx, text)
		if err != nil {
			s.log.Warn("configuration metric not counted", "configurationId", id, "metric", name, "err", err)
			continue
		}
		out[name] = n
	}
	return out
}

// Count returns how many results a metric query has (Azure: a metric is
// the number of rows its query returns). A plain query is counted inside
// the store as SELECT COUNT() with the same FROM and WHERE (TOP n caps the
// count); a query that already aggregates counts its result rows.
func (s *Configurations) Count(ctx context.Context, text string) (int64, error) {
	q, err := query.Parse(text)
	if err != nil {
		return 0, fmt.Errorf("count %q: %w", text, err)
	}
	if aggregates(q) {
		items, err := s.querier.QueryTwins(ctx, q, s.hub, 0, 0)
		if err != nil {
			return 0, fmt.Errorf("count %q: %w", text, err)
		}
		return int64(len(items)), nil
	}
	cq := &query.Query{Top: -1, Projections: []query.Projection{{Count: true, Alias: countAlias, Name: countAlias}}, From: q.From, Where: q.Where}
	items, err := s.querier.QueryTwins(ctx, cq, s.hub, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("count %q: %w", text, err)
	}
	if len(items) != 1 {
		return 0, fmt.Errorf("count %q: the count query returned %d rows, not 1", text, len(items))
	}
	var row map[string]int64
	if err := json.Unmarshal(items[0], &row); err != nil {
		return 0, fmt.Errorf("count %q: decode the count %s: %w", text, items[0], err)
	}
	n := row[countAlias]
	if q.Top >= 0 && n > int64(q.Top) {
		n = int64(q.Top)
	}
	return n, nil
}

// aggregates reports whether q counts or groups itself.
func aggregates(q *query.Query) bool {
	if q.GroupBy != nil {
		return true
	}
	for _, p := range q.Projections {
		if p.Count {
			return true
		}
	}
	return false
}
