package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/deploy"
	"github.com/muster-iot/muster/internal/query"
	"github.com/muster-iot/muster/internal/store"
)

// MaxConfigurations is how many configurations (device configurations and
// edge deployments, layered included) one hub holds, Azure IoT Hub's limit
// on a paid hub.
const MaxConfigurations = 100

// Errors of the configuration operations. Invalid input is a
// *deploy.ValidationError naming each problem.
var (
	// ErrNotFound means the hub has no configuration with that ID.
	ErrNotFound = errors.New("rollout: configuration not found")
	// ErrExists means a create found a configuration with the same ID.
	ErrExists = errors.New("rollout: configuration already exists")
	// ErrPrecondition means an If-Match etag is not the current one.
	ErrPrecondition = errors.New("rollout: etag mismatch")
	// ErrTooMany means a create would exceed MaxConfigurations.
	ErrTooMany = errors.New("rollout: too many configurations")
)

// ConfigurationsOptions configure a Configurations.
type ConfigurationsOptions struct {
	// Hub is the hub's host name. Required.
	Hub string
	// Docs stores the configurations. Required.
	Docs store.Docs
	// Querier counts twins for the metrics. Required.
	Querier store.TwinQuerier
	// Now is the clock of createdTimeUtc and lastUpdatedTimeUtc. Default:
	// time.Now.
	Now func() time.Time
	// Logger receives metric failures. Default: discard.
	Logger *slog.Logger
}

// Configurations is one hub's store of configurations. It is safe for
// concurrent use.
type Configurations struct {
	hub     string
	docs    store.Docs
	querier store.TwinQuerier
	now     func() time.Time
	log     *slog.Logger
	// changed is called after every successful create, update or delete
	// (the engine's re-evaluation); nil until an Engine is attached.
	changed func()
}

// NewConfigurations returns the configuration store of a hub.
func NewConfigurations(o ConfigurationsOptions) (*Configurations, error) {
	hub := strings.ToLower(strings.TrimSpace(o.Hub))
	switch {
	case hub == "" || strings.ContainsAny(hub, "/ "):
		return nil, fmt.Errorf("new configurations: hub host name %q is not a host name", o.Hub)
	case o.Docs == nil:
		return nil, errors.New("new configurations: ConfigurationsOptions.Docs is required")
	case o.Querier == nil:
		return nil, errors.New("new configurations: ConfigurationsOptions.Querier is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Configurations{hub: hub, docs: o.Docs, querier: o.Querier, now: o.Now, log: o.Logger}, nil
}

// HostName is the hub's host name (lower-case).
func (s *Configurations) HostName() string { return s.hub }

func (s *Configurations) key(id string) string { return s.hub + "/" + id }

// Get returns a configuration with its metrics counted now. Errors:
// ErrNotFound.
func (s *Configurations) Get(ctx context.Context, id string) (*deploy.Configuration, error) {
	c, err := s.read(ctx, id)
	if err != nil {
		return nil, err
	}
	s.countMetrics(ctx, c)
	return c, nil
}

// read returns a stored configuration without counting its metrics.
func (s *Configurations) read(ctx context.Context, id string) (*deploy.Configuration, error) {
	rec, err := s.docs.Get(ctx, store.KindConfiguration, s.key(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("read configuration %s: %w", id, err)
	}
	return decodeRecord(rec)
}

func decodeRecord(rec store.Record) (*deploy.Configuration, error) {
	var c deploy.Configuration
	if err := json.Unmarshal(rec.Doc, &c); err != nil {
		return nil, fmt.Errorf("decode configuration record %s: %w", rec.ID, err)
	}
	c.ETag = rec.ETag
	return &c, nil
}

// List returns up to top configurations (0: all) in ID order, with their
// metrics counted now.
func (s *Configurations) List(ctx context.Context, top int) ([]*deploy.Configuration, error) {
	if top < 0 {
		return nil, fmt.Errorf("list configurations: top %d is negative", top)
	}
	all, err := s.all(ctx)
	if err != nil {
		return nil, err
	}
	if top > 0 && len(all) > top {
		all = all[:top]
	}
	for _, c := range all {
		s.countMetrics(ctx, c)
	}
	return all, nil
}

// all returns every stored configuration of the hub in ID order, without
// metrics. A hub holds at most MaxConfigurations, but records written by
// another instance racing a create are read too: the loop pages until the
// end.
func (s *Configurations) all(ctx context.Context) ([]*deploy.Configuration, error) {
	var out []*deploy.Configuration
	after := ""
	const page = 1000
	for range 1000 { // bounded: every page advances strictly
		recs, err := s.docs.List(ctx, store.KindConfiguration, store.ListOptions{Group: s.hub, After: after, Limit: page})
		if err != nil {
			return nil, fmt.Errorf("list configurations: %w", err)
		}
		for _, r := range recs {
			c, err := decodeRecord(r)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		if len(recs) < page {
			return out, nil
		}
		after = recs[len(recs)-1].ID
	}
	return nil, errors.New("list configurations: more than a million records")
}

// Put creates (ifMatch "") or updates (ifMatch "*" or the configuration's
// etag) a configuration, as PUT /configurations/{id} does, and returns it
// as stored, with its metrics. in must have passed deploy.Parse; its
// createdTimeUtc, lastUpdatedTimeUtc, etag and metric results are the
// hub's and ignored. An update keeps the creation time and may not change
// the content or the schema version. Errors: *deploy.ValidationError
// (including target conditions and metric queries that do not parse),
// ErrExists, ErrNotFound, ErrPrecondition, ErrTooMany.
func (s *Configurations) Put(ctx context.Context, in *deploy.Configuration, ifMatch string) (*deploy.Configuration, error) {
	if in == nil {
		return nil, &deploy.ValidationError{Problems: []deploy.Problem{{Path: "configuration", Reason: "is missing"}}}
	}
	c := *in
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := CheckQueries(&c); err != nil {
		return nil, err
	}
	c.SystemMetrics = deploy.Metrics{Queries: deploy.SystemQueries(&c)}
	c.Metrics = deploy.Metrics{Queries: c.Metrics.Queries}
	var (
		out *deploy.Configuration
		err error
	)
	if ifMatch == "" {
		out, err = s.create(ctx, c)
	} else {
		out, err = s.update(ctx, c, ifMatch)
	}
	if err != nil {
		return nil, err
	}
	s.notifyChanged()
	s.countMetrics(ctx, out)
	return out, nil
}

func (s *Configurations) create(ctx context.Context, c deploy.Configuration) (*deploy.Configuration, error) {
	n, err := s.docs.Count(ctx, store.KindConfiguration, s.hub)
	if err != nil {
		return nil, fmt.Errorf("create configuration %s: count configurations: %w", c.ID, err)
	}
	if n >= MaxConfigurations {
		return nil, fmt.Errorf("create configuration %s: %w: the hub has %d, the most allowed", c.ID, ErrTooMany, n)
	}
	now := s.now().UTC()
	c.CreatedTime, c.LastUpdatedTime = now, now
	rec, err := s.record(&c)
	if err != nil {
		return nil, err
	}
	out, err := s.docs.Put(ctx, rec, store.Cond{IfNoneMatch: true})
	if errors.Is(err, store.ErrExists) {
		return nil, fmt.Errorf("create configuration %s: %w", c.ID, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("create configuration %s: %w", c.ID, err)
	}
	c.ETag = out.ETag
	return &c, nil
}

// casAttempts bounds the retries of an update with If-Match "*" that lost
// a race with another writer.
const casAttempts = 16

func (s *Configurations) update(ctx context.Context, c deploy.Configuration, ifMatch string) (*deploy.Configuration, error) {
	for range casAttempts {
		cur, err := s.read(ctx, c.ID)
		if err != nil {
			return nil, fmt.Errorf("update configuration: %w", err)
		}
		if ifMatch != "*" && ifMatch != cur.ETag {
			return nil, fmt.Errorf("update configuration %s: %w: If-Match %q is not the current etag", c.ID, ErrPrecondition, ifMatch)
		}
		if err := sameContent(cur, &c); err != nil {
			return nil, err
		}
		c.CreatedTime, c.LastUpdatedTime = cur.CreatedTime, s.now().UTC()
		rec, err := s.record(&c)
		if err != nil {
			return nil, err
		}
		out, err := s.docs.Put(ctx, rec, store.Cond{IfMatch: cur.ETag})
		switch {
		case err == nil:
			c.ETag = out.ETag
			return &c, nil
		case errors.Is(err, store.ErrPrecondition) && ifMatch == "*":
			continue // changed or deleted meanwhile: look again
		case errors.Is(err, store.ErrPrecondition):
			return nil, fmt.Errorf("update configuration %s: %w: it changed concurrently", c.ID, ErrPrecondition)
		default:
			return nil, fmt.Errorf("update configuration %s: %w", c.ID, err)
		}
	}
	return nil, fmt.Errorf("update configuration %s: %w: it kept changing concurrently", c.ID, ErrPrecondition)
}

// sameContent refuses an update that changes what a configuration writes:
// Azure IoT Hub does not allow it either, because twins would be left with
// a mixture of the old and the new content.
func sameContent(cur, next *deploy.Configuration) error {
	a, err := canonicalJSON(cur.Content)
	if err != nil {
		return fmt.Errorf("encode the stored content of configuration %s: %w", cur.ID, err)
	}
	b, err := canonicalJSON(next.Content)
	if err != nil {
		return &deploy.ValidationError{Problems: []deploy.Problem{{Path: "content", Reason: "cannot be encoded: " + err.Error()}}}
	}
	var problems []deploy.Problem
	if a != b {
		problems = append(problems, deploy.Problem{Path: "content", Reason: "cannot be changed after the configuration is created; create a new configuration (with a higher priority) instead"})
	}
	if cur.SchemaVersion != next.SchemaVersion {
		problems = append(problems, deploy.Problem{Path: "schemaVersion", Reason: fmt.Sprintf("cannot be changed from %q", cur.SchemaVersion)})
	}
	if len(problems) > 0 {
		return &deploy.ValidationError{Problems: problems}
	}
	return nil
}

// canonicalJSON encodes v with object members sorted and numbers kept as
// written, so that equal JSON documents encode equally.
func canonicalJSON(v any) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	x, err := decodeJSON(raw)
	if err != nil {
		return "", err
	}
	out, err := json.Marshal(x)
	return string(out), err
}

// record encodes a configuration as stored: without its etag and metric
// results, which are the store's and the querier's.
func (s *Configurations) record(c *deploy.Configuration) (store.Record, error) {
	stored := *c
	stored.ETag = ""
	stored.SystemMetrics.Results = nil
	stored.Metrics.Results = nil
	doc, err := json.Marshal(&stored)
	if err != nil {
		return store.Record{}, fmt.Errorf("encode configuration %s: %w", c.ID, err)
	}
	return store.Record{Kind: store.KindConfiguration, ID: s.key(c.ID), Group: s.hub, Doc: doc}, nil
}

// Delete removes a configuration; ifMatch "" or "*" deletes whatever is
// stored. Twins keep what it wrote. Errors: ErrNotFound, ErrPrecondition.
func (s *Configurations) Delete(ctx context.Context, id, ifMatch string) error {
	err := s.docs.Delete(ctx, store.KindConfiguration, s.key(id), ifMatch)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("delete configuration: %w: %s", ErrNotFound, id)
	case errors.Is(err, store.ErrPrecondition):
		if _, rerr := s.read(ctx, id); errors.Is(rerr, ErrNotFound) {
			return fmt.Errorf("delete configuration: %w: %s", ErrNotFound, id)
		}
		return fmt.Errorf("delete configuration %s: %w: If-Match %q is not the current etag", id, ErrPrecondition, ifMatch)
	case err != nil:
		return fmt.Errorf("delete configuration %s: %w", id, err)
	}
	s.notifyChanged()
	return nil
}

func (s *Configurations) notifyChanged() {
	if s.changed != nil {
		s.changed()
	}
}

// CheckQueries parses a configuration's target condition and metric
// queries and returns a *deploy.ValidationError naming each one that does
// not parse, or that reads a collection other than devices and
// devices.modules.
func CheckQueries(c *deploy.Configuration) error {
	var problems []deploy.Problem
	if msg := conditionError(c.Condition()); msg != "" {
		problems = append(problems, deploy.Problem{Path: "targetCondition", Reason: msg})
	}
	names := make([]string, 0, len(c.Metrics.Queries))
	for name := range c.Metrics.Queries {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if msg := metricQueryError(c.Metrics.Queries[name]); msg != "" {
			problems = append(problems, deploy.Problem{Path: "metrics.queries[" + strconv.Quote(name) + "]", Reason: msg})
		}
	}
	if len(problems) > 0 {
		return &deploy.ValidationError{Problems: problems}
	}
	return nil
}

// conditionError is why a bare target condition does not parse, "" when it
// does.
func conditionError(cond string) string {
	if _, err := query.ParseCondition(cond); err != nil {
		return fmt.Sprintf("%q: %v", cond, err)
	}
	return ""
}

// metricQueryError is why a metric query cannot be counted, "" when it
// can.
func metricQueryError(text string) string {
	q, err := query.Parse(text)
	if err != nil {
		return fmt.Sprintf("%q: %v", text, err)
	}
	if q.From != query.Devices && q.From != query.Modules {
		return fmt.Sprintf("%q: FROM %s cannot be counted; use FROM devices or FROM devices.modules", text, q.From)
	}
	return ""
}

// QueryTest is the answer of POST /configurations/testQueries: the reason
// the target condition and each custom metric query do not parse ("" and
// no entry when they do).
type QueryTest struct {
	TargetConditionError    string            `json:"targetConditionError"`
	CustomMetricQueryErrors map[string]string `json:"customMetricQueryErrors"`
}

// TestQueries checks a target condition (a bare condition or "FROM
// devices.modules WHERE …") and custom metric queries without storing
// anything.
func TestQueries(targetCondition string, metrics map[string]string) QueryTest {
	out := QueryTest{CustomMetricQueryErrors: map[string]string{}}
	if strings.TrimSpace(targetCondition) != "" {
		if _, _, err := query.ParseTargetCondition(targetCondition); err != nil {
			out.TargetConditionError = fmt.Sprintf("%q: %v", targetCondition, err)
		}
	}
	for name, q := range metrics {
		if msg := metricQueryError(q); msg != "" {
			out.CustomMetricQueryErrors[name] = msg
		}
	}
	return out
}
