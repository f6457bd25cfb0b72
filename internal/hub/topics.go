package hub

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Topic names and filters of the device protocol (hub-edge-protocol §2.3).
const (
	// TwinResponseFilter is the filter clients subscribe to for twin responses.
	TwinResponseFilter = "$iothub/twin/res/#"
	// DesiredFilter is the filter clients subscribe to for desired-property
	// change notifications.
	DesiredFilter = "$iothub/twin/PATCH/properties/desired/#"
	// MethodsFilter is the filter clients subscribe to for direct methods.
	MethodsFilter = "$iothub/methods/POST/#"

	twinGetPrefix      = "$iothub/twin/GET/"
	twinReportedPrefix = "$iothub/twin/PATCH/properties/reported/"
	twinResponsePrefix = "$iothub/twin/res/"
	desiredTopicPrefix = "$iothub/twin/PATCH/properties/desired/"
)

// MaxRequestIDLen is the longest $rid a twin request may carry.
const MaxRequestIDLen = 128

// ErrNotTwinRequest means a topic is not a twin request topic.
var ErrNotTwinRequest = errors.New("hub: not a twin request topic")

// TwinOp is the operation of a twin request.
type TwinOp int

// The twin operations a device requests.
const (
	// TwinGet is $iothub/twin/GET/?$rid={rid}.
	TwinGet TwinOp = iota + 1
	// TwinPatchReported is $iothub/twin/PATCH/properties/reported/?$rid={rid}[&$version={v}].
	TwinPatchReported
)

func (op TwinOp) String() string {
	switch op {
	case TwinGet:
		return "twin GET"
	case TwinPatchReported:
		return "twin reported PATCH"
	}
	return "twin operation " + strconv.Itoa(int(op))
}

// TwinRequest is a parsed twin request topic.
type TwinRequest struct {
	Op TwinOp
	// RID is the request ID exactly as the client wrote it; responses echo
	// it byte for byte.
	RID string
}

// ParseTwinTopic parses a twin request topic: $iothub/twin/GET/?{query}
// or $iothub/twin/PATCH/properties/reported/?{query}, where the query
// holds $rid (required) and optionally $version and other keys, which are
// ignored. The $rid must be 1 to MaxRequestIDLen printable ASCII
// characters other than '/', '+', '#' and '&', because it is echoed in a
// response topic. Errors wrap ErrNotTwinRequest and say what is wrong.
func ParseTwinTopic(topic string) (TwinRequest, error) {
	var req TwinRequest
	var rest string
	switch {
	case strings.HasPrefix(topic, twinGetPrefix):
		req.Op, rest = TwinGet, topic[len(twinGetPrefix):]
	case strings.HasPrefix(topic, twinReportedPrefix):
		req.Op, rest = TwinPatchReported, topic[len(twinReportedPrefix):]
	default:
		return TwinRequest{}, fmt.Errorf("%w: %.80q is neither %s nor %s", ErrNotTwinRequest, topic, twinGetPrefix, twinReportedPrefix)
	}
	query, ok := strings.CutPrefix(rest, "?")
	if !ok {
		return TwinRequest{}, fmt.Errorf("%w: %s topic %.80q has no ?$rid= query after the last '/'", ErrNotTwinRequest, req.Op, topic)
	}
	found := false
	for kv := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if k != "$rid" {
			continue
		}
		if found {
			return TwinRequest{}, fmt.Errorf("%w: %s topic %.80q has more than one $rid", ErrNotTwinRequest, req.Op, topic)
		}
		if err := checkRID(v); err != nil {
			return TwinRequest{}, fmt.Errorf("%w: %s topic: %w", ErrNotTwinRequest, req.Op, err)
		}
		req.RID, found = v, true
	}
	if !found {
		return TwinRequest{}, fmt.Errorf("%w: %s topic %.80q has no $rid", ErrNotTwinRequest, req.Op, topic)
	}
	return req, nil
}

// checkRID reports why a request ID cannot be echoed in a topic.
func checkRID(rid string) error {
	if rid == "" {
		return errors.New("$rid is empty")
	}
	if len(rid) > MaxRequestIDLen {
		return fmt.Errorf("$rid is %d bytes, more than %d", len(rid), MaxRequestIDLen)
	}
	for i := 0; i < len(rid); i++ {
		c := rid[i]
		if c <= ' ' || c > '~' || c == '/' || c == '+' || c == '#' || c == '&' {
			return fmt.Errorf("$rid %.40q contains %q (allowed: printable ASCII except '/', '+', '#' and '&')", rid, c)
		}
	}
	return nil
}

// TwinResponseTopic is the topic of a twin response:
// $iothub/twin/res/{status}/?$rid={rid}, with &$version={version} when
// version is positive. The '/' before '?' is kept (the C SDK needs it).
func TwinResponseTopic(status int, rid string, version int64) string {
	t := twinResponsePrefix + strconv.Itoa(status) + "/?$rid=" + rid
	if version > 0 {
		t += "&$version=" + strconv.FormatInt(version, 10)
	}
	return t
}

// DesiredTopic is the topic of a desired-property change notification:
// $iothub/twin/PATCH/properties/desired/?$version={version}.
func DesiredTopic(version int64) string {
	return desiredTopicPrefix + "?$version=" + strconv.FormatInt(version, 10)
}

// subscribable returns the filters a client may subscribe to, or to
// narrower filters below them: its twin responses, desired notifications
// and direct methods, and its cloud-to-device messages (a device) or its
// module topics, which hold its inputs (a module).
func subscribable(deviceID, moduleID string) []string {
	own := "devices/" + deviceID + "/messages/devicebound/#"
	if moduleID != "" {
		own = "devices/" + deviceID + "/modules/" + moduleID + "/#"
	}
	return []string{TwinResponseFilter, DesiredFilter, MethodsFilter, own}
}

// within reports whether the subscription filter selects only topics that
// allowed (a filter ending in "/#") selects: filter is allowed's parent
// level itself, or starts with allowed's literal levels. A literal level
// that is "+" or "#" (a device ID may be "+") would be a wildcard in the
// filter, so it never counts as literal.
func within(filter, allowed string) bool {
	prefix := strings.TrimSuffix(allowed, "#")
	parent := strings.TrimSuffix(prefix, "/")
	if filter != parent && !strings.HasPrefix(filter, prefix) {
		return false
	}
	for level := range strings.SplitSeq(parent, "/") {
		if level == "+" || level == "#" {
			return false
		}
	}
	return true
}
