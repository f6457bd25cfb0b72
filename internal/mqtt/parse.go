package mqtt

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Sentinel errors of the pure DPS parsers.
var (
	// ErrNotDPSUsername means a CONNECT username is not
	// {idScope}/registrations/{registrationId}/api-version=…
	ErrNotDPSUsername = errors.New("not a DPS username")
	// ErrNotDPSRequest means a PUBLISH topic is not one of the two DPS
	// request topics, or lacks its $rid.
	ErrNotDPSRequest = errors.New("not a DPS request topic")
)

// DPSUsername is the parsed CONNECT username of a DPS device (spec §5.1).
type DPSUsername struct {
	IDScope        string
	RegistrationID string
	// APIVersion is the api-version parameter (decoded); any value is accepted.
	APIVersion string
	// ClientVersion is the ClientVersion parameter (decoded), "" when absent.
	ClientVersion string
}

const registrationsSep = "/registrations/"

// ParseDPSUsername parses {idScope}/registrations/{registrationId}/{query}
// where query carries api-version and optionally ClientVersion. Parameter
// values may be URL-encoded or raw; unknown parameters are ignored. The
// registration ID is taken verbatim (it is validated per request by DPS).
// The query must not start with '?': that shape is a hub username
// ({host}/{device}/{module}/?api-version=…), which must never be mistaken
// for a DPS one.
func ParseDPSUsername(username string) (DPSUsername, error) {
	i := strings.Index(username, registrationsSep)
	if i < 0 {
		return DPSUsername{}, fmt.Errorf("%w: no %q separator", ErrNotDPSUsername, registrationsSep)
	}
	scope := username[:i]
	switch {
	case scope == "":
		return DPSUsername{}, fmt.Errorf("%w: empty ID scope", ErrNotDPSUsername)
	case strings.ContainsRune(scope, '/'):
		return DPSUsername{}, fmt.Errorf("%w: ID scope %q contains '/'", ErrNotDPSUsername, scope)
	}
	regID, query, ok := strings.Cut(username[i+len(registrationsSep):], "/")
	switch {
	case regID == "":
		return DPSUsername{}, fmt.Errorf("%w: empty registration ID", ErrNotDPSUsername)
	case !ok:
		return DPSUsername{}, fmt.Errorf("%w: no '/' and parameters after registration ID %q", ErrNotDPSUsername, regID)
	}
	u := DPSUsername{IDScope: scope, RegistrationID: regID}
	hasAPIVersion := false
	eachParam(query, func(key, raw string) {
		switch key {
		case "api-version":
			if !hasAPIVersion {
				hasAPIVersion, u.APIVersion = true, lenientUnescape(raw, true)
			}
		case "ClientVersion":
			if u.ClientVersion == "" {
				u.ClientVersion = lenientUnescape(raw, true)
			}
		}
	})
	if !hasAPIVersion {
		return DPSUsername{}, fmt.Errorf("%w: no api-version parameter after registration ID %q", ErrNotDPSUsername, regID)
	}
	return u, nil
}

// RequestKind is the kind of a DPS request publish.
type RequestKind int

// The DPS request kinds.
const (
	// RequestRegister is $dps/registrations/PUT/iotdps-register/?$rid={rid}.
	RequestRegister RequestKind = iota + 1
	// RequestOperationStatus is
	// $dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={opId}.
	RequestOperationStatus
)

// String names the request kind for logs.
func (k RequestKind) String() string {
	switch k {
	case RequestRegister:
		return "register"
	case RequestOperationStatus:
		return "operationStatus"
	}
	return "RequestKind(" + strconv.Itoa(int(k)) + ")"
}

// DPSRequest is a parsed DPS request topic.
type DPSRequest struct {
	Kind RequestKind
	// RID is the $rid value exactly as the device sent it (still encoded);
	// the response echoes it verbatim.
	RID string
	// OperationID is the decoded operationId of a status poll, "" when the
	// topic has none (which is answered with 400).
	OperationID string
}

const (
	dpsTopicPrefix     = "$dps/registrations/"
	dpsRegisterPath    = dpsTopicPrefix + "PUT/iotdps-register"
	dpsOperationPath   = dpsTopicPrefix + "GET/iotdps-get-operationstatus"
	dpsResponseFilter  = dpsTopicPrefix + "res/#"
	dpsResponsePrefix  = dpsTopicPrefix + "res/"
	dpsRIDParam        = "$rid"
	dpsOperationParam  = "operationId"
	dpsRetryAfterParam = "retry-after"
)

// ParseDPSTopic parses a device's DPS request topic. The '/' before '?' is
// optional; parameter keys may be URL-encoded; unknown parameters are
// ignored; the first occurrence of a parameter wins.
func ParseDPSTopic(topic string) (DPSRequest, error) {
	if !strings.HasPrefix(topic, dpsTopicPrefix) {
		return DPSRequest{}, fmt.Errorf("%w: topic is not under %s", ErrNotDPSRequest, dpsTopicPrefix)
	}
	path, query, ok := strings.Cut(topic, "?")
	if !ok {
		return DPSRequest{}, fmt.Errorf("%w: topic has no '?' parameters", ErrNotDPSRequest)
	}
	var req DPSRequest
	switch strings.TrimSuffix(path, "/") {
	case dpsRegisterPath:
		req.Kind = RequestRegister
	case dpsOperationPath:
		req.Kind = RequestOperationStatus
	default:
		return DPSRequest{}, fmt.Errorf("%w: unknown request path %q", ErrNotDPSRequest, path)
	}
	hasRID, hasOp := false, false
	eachParam(query, func(key, raw string) {
		switch key {
		case dpsRIDParam:
			if !hasRID {
				hasRID, req.RID = true, raw
			}
		case dpsOperationParam:
			if !hasOp && req.Kind == RequestOperationStatus {
				hasOp, req.OperationID = true, lenientUnescape(raw, false)
			}
		}
	})
	if req.RID == "" {
		return DPSRequest{}, fmt.Errorf("%w: no %s parameter", ErrNotDPSRequest, dpsRIDParam)
	}
	return req, nil
}

// dpsResponseTopic renders $dps/registrations/res/{status}/?$rid={rid}, with
// &retry-after={seconds} after the rid when retryAfter > 0 (Python splits
// the topic on '$' and would lose parameters placed before $rid).
func dpsResponseTopic(status int, rid string, retryAfter int) string {
	var b strings.Builder
	b.Grow(len(dpsResponsePrefix) + len(rid) + 32)
	b.WriteString(dpsResponsePrefix)
	b.WriteString(strconv.Itoa(status))
	b.WriteString("/?" + dpsRIDParam + "=")
	b.WriteString(rid)
	if retryAfter > 0 {
		b.WriteString("&" + dpsRetryAfterParam + "=")
		b.WriteString(strconv.Itoa(retryAfter))
	}
	return b.String()
}

// eachParam calls fn for every key=value pair of a query string, with the
// key decoded and the value raw. Pairs are separated by '&'; a pair without
// '=' has an empty value.
func eachParam(query string, fn func(key, raw string)) {
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		fn(lenientUnescape(k, false), v)
	}
}

// lenientUnescape percent-decodes s, returning s unchanged when it is not
// valid percent-encoding (devices send raw values too). plus selects
// query-style decoding where '+' means a space.
func lenientUnescape(s string, plus bool) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	var (
		d   string
		err error
	)
	if plus {
		d, err = url.QueryUnescape(s)
	} else {
		d, err = url.PathUnescape(s)
	}
	if err != nil {
		return s
	}
	return d
}
