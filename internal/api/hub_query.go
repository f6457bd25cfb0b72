package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/muster-iot/muster/internal/query"
	"github.com/muster-iot/muster/internal/store"
)

// Query route limits (hub-edge-protocol §4.5).
const (
	// DefaultQueryPageSize is the page size without x-ms-max-item-count.
	DefaultQueryPageSize = 100
	// MaxQueryPageSize is the largest x-ms-max-item-count accepted.
	MaxQueryPageSize = 1000
	// maxContinuationLen bounds the continuation token read (base64 of an
	// int).
	maxContinuationLen = 32
)

// Item types of a query answer: twins for SELECT *, raw JSON otherwise.
const (
	queryItemTwin = "twin"
	queryItemRaw  = "raw"
)

// queryService serves POST /devices/query of one hub.
type queryService struct {
	hub     *hubService
	host    string
	querier store.TwinQuerier
}

// MountHubQuery adds the hub query route `POST /devices/query`
// (hub-edge-protocol §4.5) for the hub named hubHostName, answered by tq
// inside the store. The body is {"query": "<SELECT …>"}; the optional
// headers x-ms-max-item-count (1 to MaxQueryPageSize, default
// DefaultQueryPageSize) and x-ms-continuation (the token of the previous
// page) page the results. The answer is a JSON array of items with
// x-ms-item-type "twin" for SELECT * and "raw" otherwise, and an
// x-ms-continuation header only when more items remain. Only FROM devices
// is supported. Authorisation is that of MountHub (RegistryRead); call it
// once, before serving.
func (a *API) MountHubQuery(hubHostName string, tq store.TwinQuerier) error {
	if tq == nil {
		return errors.New("api: MountHubQuery needs a twin querier")
	}
	host := strings.ToLower(strings.TrimSpace(hubHostName))
	if host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("api: hub host name %q is not a host name", hubHostName)
	}
	qs := &queryService{hub: &hubService{a: a, hosts: []string{host}}, host: host, querier: tq}
	e := hubEndpoint{method: http.MethodPost, pattern: "/devices/query", right: RightRegistryRead, noun: "query", serve: qs.query}
	if err := a.router.handle(e.method, e.pattern, qs.hub.handler(e)); err != nil {
		return fmt.Errorf("api: mount hub query API: %w", err)
	}
	return nil
}

// queryRequest is the body of POST /devices/query.
type queryRequest struct {
	Query *string `json:"query"`
}

// decodeQueryRequest parses and checks the body and returns the parsed
// query.
func decodeQueryRequest(data []byte) (*query.Query, error) {
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, badRequest(`request body is empty; it must be {"query": "<SELECT …>"}`)
	}
	var in queryRequest
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, badRequest("request body is not a JSON object with a query string: %v", err)
	}
	if in.Query == nil {
		return nil, badRequest(`request body has no "query" member`)
	}
	q, err := query.Parse(*in.Query)
	if err != nil {
		return nil, badRequest("query: %v", err)
	}
	if q.From != query.Devices && q.From != query.Modules {
		return nil, badRequest("query: FROM %s is not supported yet; only FROM devices and FROM devices.modules", q.From)
	}
	return q, nil
}

// parsePageSize reads x-ms-max-item-count.
func parsePageSize(v string) (int, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultQueryPageSize, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxQueryPageSize {
		return 0, badRequest("%s %q is not a whole number from 1 to %d", headerMaxItemCount, v, MaxQueryPageSize)
	}
	return n, nil
}

// continuationToken is the opaque x-ms-continuation of the page that
// starts at offset.
func continuationToken(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(offset)))
}

// parseContinuation reads x-ms-continuation: the offset of the page to
// answer, 0 without the header.
func parseContinuation(v string) (int, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	bad := badRequest("%s is not a continuation token this hub issued", headerContinuation)
	if len(v) > maxContinuationLen {
		return 0, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
	if err != nil {
		return 0, bad
	}
	n, err := strconv.Atoi(string(raw))
	if err != nil || n < 1 || strconv.Itoa(n) != string(raw) {
		return 0, bad
	}
	return n, nil
}

// query is POST /devices/query.
func (qs *queryService) query(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	q, err := decodeQueryRequest(data)
	if err != nil {
		return err
	}
	size, err := parsePageSize(r.Header.Get(headerMaxItemCount))
	if err != nil {
		return err
	}
	offset, err := parseContinuation(r.Header.Get(headerContinuation))
	if err != nil {
		return err
	}
	// One item more than the page tells whether another page follows.
	items, err := qs.querier.QueryTwins(r.Context(), q, qs.host, offset, size+1)
	switch {
	case errors.Is(err, query.ErrUnsupported), errors.Is(err, query.ErrTooComplex):
		return badRequest("query: %v", err)
	case err != nil:
		return fmt.Errorf("run query %q: %w", q.String(), err)
	}
	h := w.Header()
	if len(items) > size {
		items = items[:size]
		h.Set(headerContinuation, continuationToken(offset+size))
	}
	if q.Star {
		h.Set(headerItemType, queryItemTwin)
	} else {
		h.Set(headerItemType, queryItemRaw)
	}
	if items == nil {
		items = []json.RawMessage{}
	}
	qs.hub.a.writeJSON(w, r, http.StatusOK, items)
	return nil
}
