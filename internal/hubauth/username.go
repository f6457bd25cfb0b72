package hubauth

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/muster-iot/muster/internal/registry"
)

// MaxUsernameLen is the longest MQTT username ParseUsername accepts, in bytes.
const MaxUsernameLen = 4096

// maxHostLen bounds the hub host name of a username (a DNS name).
const maxHostLen = 255

// ErrUsernameMalformed means an MQTT username is not in the hub's format.
var ErrUsernameMalformed = errors.New("hubauth: malformed username")

// Username is a parsed hub MQTT username:
// {hubHost}/{deviceId}[/{moduleId}]/?api-version=…&DeviceClientType=…[&model-id=…].
type Username struct {
	HubHost  string
	DeviceID string
	// ModuleID is empty for a device.
	ModuleID string
	// APIVersion is the api-version query value ("" when absent; it is
	// never a reason to refuse).
	APIVersion string
	// Query holds every query parameter, percent-decoded where the value is
	// valid percent-encoding and verbatim otherwise. It is never nil.
	Query url.Values
}

// ParseUsername parses an MQTT username as the Azure IoT SDKs write it.
//
// The path is split on '/', which device and module IDs cannot contain,
// and taken literally (SDKs do not percent-encode the IDs, and '%' is a
// valid ID character): the hub host, the device ID, then either the query
// or a module ID followed by the query. The query starts at a '?' right
// after a '/'; the trailing '/' and the query may be absent. A segment
// starting with "api-version=" (older SDKs wrote the query without '?') is
// the query too. Query keys are case-sensitive except api-version; unknown
// keys are kept, never refused. IDs must be 1 to 128 characters of
// A-Z a-z 0-9 - : . + % _ # * ? ! ( ) , = @ ; $ ' — so a module ID starting
// with '?' cannot be told from the query and is not supported. Errors wrap
// ErrUsernameMalformed and name the part at fault.
func ParseUsername(s string) (Username, error) {
	fail := func(format string, args ...any) (Username, error) {
		return Username{}, fmt.Errorf("%w: %s", ErrUsernameMalformed, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return fail("the username is empty")
	}
	if len(s) > MaxUsernameLen {
		return fail("the username is %d bytes, longer than the %d-byte limit", len(s), MaxUsernameLen)
	}
	host, rest, ok := strings.Cut(s, "/")
	if !ok {
		return fail("username %s has no '/': expected {hub}/{deviceId}/?api-version=…", quote(s))
	}
	if !validHost(host) {
		return fail("hub host name %s is not a host name (letters, digits, '-', '_' and '.')", quote(host))
	}
	u := Username{HubHost: host}
	dev, rest, _ := strings.Cut(rest, "/")
	if err := checkID("device", dev); err != nil {
		return fail("%v", err)
	}
	u.DeviceID = dev

	var query string
	switch {
	case rest == "":
	case rest[0] == '?':
		query = rest[1:]
	case isLegacyQuery(rest):
		query = rest
	default:
		mod, after, _ := strings.Cut(rest, "/")
		if err := checkID("module", mod); err != nil {
			return fail("%v", err)
		}
		u.ModuleID = mod
		switch {
		case after == "":
		case after[0] == '?':
			query = after[1:]
		case isLegacyQuery(after):
			query = after
		default:
			return fail("unexpected path segment %s after module ID %q: the query must follow as /?api-version=…", quote(after), mod)
		}
	}
	u.Query = parseQuery(query)
	u.APIVersion = apiVersion(u.Query)
	return u, nil
}

// apiVersion returns the first api-version value: the exactly spelled key
// first, then other spellings in key order.
func apiVersion(q url.Values) string {
	if v := q["api-version"]; len(v) > 0 {
		return v[0]
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if v := q[k]; strings.EqualFold(k, "api-version") && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// isLegacyQuery reports whether a path segment is a query written without
// the '?' ("api-version=2016-11-14&DeviceClientType=…").
func isLegacyQuery(seg string) bool {
	const p = "api-version="
	return len(seg) >= len(p) && strings.EqualFold(seg[:len(p)], p)
}

// checkID validates a device or module ID of a username.
func checkID(what, id string) error {
	if id == "" {
		return fmt.Errorf("the %s ID is empty", what)
	}
	if !registry.ValidDeviceID(id) {
		return fmt.Errorf("%s ID %s is not 1 to %d characters from A-Z a-z 0-9 - : . + %% _ # * ? ! ( ) , = @ ; $ '", what, quote(id), registry.MaxDeviceIDLen)
	}
	return nil
}

// parseQuery splits a query string leniently: pairs without '=' have an
// empty value, and a key or value that is not valid percent-encoding is
// kept verbatim (some SDKs do not encode the product string).
func parseQuery(q string) url.Values {
	vals := url.Values{}
	for part := range strings.SplitSeq(q, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k, v = unescape(k), unescape(v)
		vals[k] = append(vals[k], v)
	}
	return vals
}

func unescape(s string) string {
	if r, err := url.QueryUnescape(s); err == nil {
		return r
	}
	return s
}

// validHost accepts host names of letters, digits, '-', '_' and '.' (the
// edge configuration importer's rule), at most 255 bytes.
func validHost(h string) bool {
	if h == "" || len(h) > maxHostLen {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
