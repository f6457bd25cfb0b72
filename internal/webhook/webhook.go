// Package webhook is the HTTP adapter for custom allocation: it POSTs the
// provisioning service's AllocationRequest to an enrollment's webhook and
// decodes the AllocationResponse, turning every misbehaviour (status,
// timeout, oversized or malformed answer) into a provision.WebhookError that
// says what went wrong.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/muster-iot/muster/internal/provision"
)

// MaxResponseBytes bounds a webhook answer (the DPS message limit).
const MaxResponseBytes = 96 << 10

// Client calls allocation webhooks.
type Client struct {
	HTTP      *http.Client
	UserAgent string
}

// New returns a webhook client using hc (http.DefaultClient's transport
// settings when nil; timeouts come from the caller's context).
func New(hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{HTTP: hc, UserAgent: "muster-dps"}
}

// Allocate implements provision.Allocator.
func (c *Client) Allocate(ctx context.Context, webhookURL, apiVersion string, req *provision.AllocationRequest) (*provision.AllocationResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode allocation request: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, webhookURL, bytes.NewReader(body))
	if err != nil {
		return nil, &provision.WebhookError{Msg: fmt.Sprintf("webhook URL: %v", err)}
	}
	hr.Header.Set("Content-Type", "application/json; charset=utf-8")
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", c.UserAgent)
	if apiVersion != "" {
		hr.Header.Set("api-version", apiVersion)
	}
	resp, err := c.HTTP.Do(hr)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &provision.WebhookError{Msg: "webhook did not answer before the timeout"}
		}
		return nil, &provision.WebhookError{Msg: fmt.Sprintf("webhook call failed: %v", redactURL(err, webhookURL))}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, &provision.WebhookError{Msg: fmt.Sprintf("read webhook answer: %v", err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &provision.WebhookError{Status: resp.StatusCode, Msg: fmt.Sprintf("webhook answered HTTP %d", resp.StatusCode)}
	}
	if len(raw) > MaxResponseBytes {
		return nil, &provision.WebhookError{Msg: fmt.Sprintf("webhook answer is over %d bytes", MaxResponseBytes)}
	}
	var out struct {
		provision.AllocationResponse
		AltHost string `json:"iotHubHostname"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, &provision.WebhookError{Msg: fmt.Sprintf("webhook answer is not an allocation response: %v", err)}
	}
	res := out.AllocationResponse
	if res.IoTHubHostName == "" {
		res.IoTHubHostName = out.AltHost
	}
	if res.IoTHubHostName == "" {
		return nil, &provision.WebhookError{Msg: "webhook answer names no iotHubHostName"}
	}
	return &res, nil
}

// redactURL keeps function keys (?code=…) out of error messages and logs.
func redactURL(err error, u string) string {
	s := err.Error()
	if i := strings.IndexByte(u, '?'); i >= 0 {
		s = strings.ReplaceAll(s, u, u[:i]+"?…")
	}
	return s
}

var _ provision.Allocator = (*Client)(nil)
