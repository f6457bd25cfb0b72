package hubservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/muster-iot/muster/internal/deploy"
)

// Path segments of the configuration routes.
const (
	segConfigurations = "configurations"
	segApplyContent   = "applyConfigurationContent"
	segTestQueries    = "testQueries"
)

// MaxListConfigurations is the largest top ListConfigurations accepts.
const MaxListConfigurations = 1000

// GetConfiguration returns a configuration (an automatic device
// configuration or an edge deployment) with its metrics.
func (c *Client) GetConfiguration(ctx context.Context, id string) (*deploy.Configuration, error) {
	if err := checkID("configuration ID", id); err != nil {
		return nil, fmt.Errorf("get configuration: %w", err)
	}
	var out deploy.Configuration
	if _, err := c.call(ctx, request{method: http.MethodGet, segs: []string{segConfigurations, id}}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListConfigurations returns up to top configurations (0: all) in ID
// order, with their metrics.
func (c *Client) ListConfigurations(ctx context.Context, top int) ([]*deploy.Configuration, error) {
	if top < 0 || top > MaxListConfigurations {
		return nil, fmt.Errorf("list configurations: top %d is not from 0 to %d", top, MaxListConfigurations)
	}
	q := url.Values{}
	if top > 0 {
		q.Set("top", strconv.Itoa(top))
	}
	var out []*deploy.Configuration
	if _, err := c.call(ctx, request{method: http.MethodGet, segs: []string{segConfigurations}, query: q}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateConfiguration creates a configuration; it fails with ErrConflict
// when the ID exists.
func (c *Client) CreateConfiguration(ctx context.Context, cfg *deploy.Configuration) (*deploy.Configuration, error) {
	return c.putConfiguration(ctx, cfg, "")
}

// UpdateConfiguration replaces a configuration's labels, target
// condition, priority and metric queries if its etag is still etag ("*":
// any); the content cannot change. It fails with ErrPrecondition when the
// etag moved on.
func (c *Client) UpdateConfiguration(ctx context.Context, cfg *deploy.Configuration, etag string) (*deploy.Configuration, error) {
	if strings.TrimSpace(etag) == "" {
		return nil, errors.New("update configuration: the etag is empty; pass the configuration's etag or \"*\"")
	}
	return c.putConfiguration(ctx, cfg, etag)
}

func (c *Client) putConfiguration(ctx context.Context, cfg *deploy.Configuration, etag string) (*deploy.Configuration, error) {
	if cfg == nil {
		return nil, errors.New("put configuration: the configuration is nil")
	}
	if err := checkID("configuration ID", cfg.ID); err != nil {
		return nil, fmt.Errorf("put configuration: %w", err)
	}
	var out deploy.Configuration
	if _, err := c.call(ctx, request{method: http.MethodPut, segs: []string{segConfigurations, cfg.ID}, body: cfg, ifMatch: etag}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteConfiguration deletes a configuration (twins keep what it wrote);
// etag "" means whatever its etag.
func (c *Client) DeleteConfiguration(ctx context.Context, id, etag string) error {
	if err := checkID("configuration ID", id); err != nil {
		return fmt.Errorf("delete configuration: %w", err)
	}
	if strings.TrimSpace(etag) == "" {
		etag = "*"
	}
	_, err := c.do(ctx, request{method: http.MethodDelete, segs: []string{segConfigurations, id}, ifMatch: etag})
	return err
}

// QueryTest is the hub's verdict on a target condition and custom metric
// queries: why each does not parse, "" and no entry when it does.
type QueryTest struct {
	TargetConditionError    string            `json:"targetConditionError"`
	CustomMetricQueryErrors map[string]string `json:"customMetricQueryErrors"`
}

// TestQueries asks the hub whether a target condition and custom metric
// queries parse, without storing anything.
func (c *Client) TestQueries(ctx context.Context, targetCondition string, metrics map[string]string) (*QueryTest, error) {
	body := map[string]any{"targetCondition": targetCondition, "customMetricQueries": metrics}
	var out QueryTest
	if _, err := c.call(ctx, request{method: http.MethodPost, segs: []string{segConfigurations, segTestQueries}, body: body}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ApplyConfigurationContent writes content (modulesContent to an edge
// device's module twins, or deviceContent to its device twin) at once.
func (c *Client) ApplyConfigurationContent(ctx context.Context, deviceID string, content deploy.Content) error {
	if err := checkID("device ID", deviceID); err != nil {
		return fmt.Errorf("apply configuration content: %w", err)
	}
	_, err := c.do(ctx, request{method: http.MethodPost, segs: []string{segDevices, deviceID, segApplyContent}, body: content})
	return err
}
