package hubservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/muster-iot/muster/internal/sas"
)

// MaxQueryPageSize is the largest page a query may ask for.
const MaxQueryPageSize = 1000

// Query item types (the x-ms-item-type header).
const (
	// QueryItemTwin: the items are device twins (SELECT *).
	QueryItemTwin = "twin"
	// QueryItemRaw: the items are projections or aggregates.
	QueryItemRaw = "raw"
)

// QueryPage is one page of query results.
type QueryPage struct {
	// Items are the result items, each a JSON value.
	Items []json.RawMessage
	// ItemType is QueryItemTwin or QueryItemRaw.
	ItemType string
	// Continuation is the token of the next page, "" on the last page.
	Continuation string
}

// Query runs an IoT Hub query (POST /devices/query) and returns one page
// of at most pageSize items (0: the hub's default). continuation is ""
// for the first page, else the Continuation of the previous page.
func (c *Client) Query(ctx context.Context, queryText string, pageSize int, continuation string) (*QueryPage, error) {
	if strings.TrimSpace(queryText) == "" {
		return nil, errors.New("query: the query text is empty")
	}
	if pageSize < 0 || pageSize > MaxQueryPageSize {
		return nil, fmt.Errorf("query: page size %d is not from 0 to %d", pageSize, MaxQueryPageSize)
	}
	body, err := json.Marshal(map[string]string{"query": queryText})
	if err != nil {
		return nil, fmt.Errorf("encode query request: %w", err)
	}
	segs := []string{segDevices, "query"}
	u := c.url(segs, url.Values{})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request POST %s: %w", u.EscapedPath(), err)
	}
	h := req.Header
	h.Set("Authorization", sas.Sign(c.hostName, c.key, c.keyName, c.now().Add(TokenTTL)))
	h.Set("Accept", "application/json")
	h.Set("User-Agent", userAgent)
	h.Set("Content-Type", "application/json; charset=utf-8")
	if pageSize > 0 {
		h.Set("x-ms-max-item-count", strconv.Itoa(pageSize))
	}
	if continuation != "" {
		h.Set("x-ms-continuation", continuation)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("POST https://%s%s: %w", c.server, u.EscapedPath(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read response to POST %s: %w", u.EscapedPath(), err)
	}
	if len(b) > MaxResponseBytes {
		return nil, fmt.Errorf("read response to POST %s: body is larger than %d bytes", u.EscapedPath(), MaxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := parseError(resp.StatusCode, resp.Header, b)
		e.Hub, e.Method, e.Path = c.hostName, http.MethodPost, "/"+strings.Join(segs, "/")
		return nil, e
	}
	page := &QueryPage{ItemType: resp.Header.Get("x-ms-item-type"), Continuation: resp.Header.Get("x-ms-continuation")}
	if err := decodeBody(b, &page.Items); err != nil {
		return nil, fmt.Errorf("decode response to POST %s: %w", u.EscapedPath(), err)
	}
	if page.Items == nil {
		return nil, fmt.Errorf("decode response to POST %s: the body is null, not a JSON array", u.EscapedPath())
	}
	return page, nil
}
