package iothub

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Topics and filters of the device protocol (hub-edge-protocol §2.3).
const (
	// TwinResponseFilter receives twin responses.
	TwinResponseFilter = "$iothub/twin/res/#"
	// DesiredFilter receives desired-property change notifications.
	DesiredFilter = "$iothub/twin/PATCH/properties/desired/#"
	// MethodsFilter receives direct method requests.
	MethodsFilter = "$iothub/methods/POST/#"

	twinResponsePrefix = "$iothub/twin/res/"
	twinGetPrefix      = "$iothub/twin/GET/?$rid="
	twinPatchPrefix    = "$iothub/twin/PATCH/properties/reported/?$rid="
	desiredPrefix      = "$iothub/twin/PATCH/properties/desired/"
	methodPrefix       = "$iothub/methods/POST/"
	methodResPrefix    = "$iothub/methods/res/"
)

// APIVersion is the api-version the runtime announces (the Node SDK's).
const APIVersion = "2021-04-12"

// ErrBadTopic means a topic is not of the expected shape.
var ErrBadTopic = errors.New("iothub: unexpected topic")

// Username is the MQTT username of an identity:
// {hub}/{device}[/{module}]/?api-version=…&DeviceClientType=….
func Username(hub, deviceID, moduleID, clientType string) string {
	u := hub + "/" + deviceID + "/"
	if moduleID != "" {
		u += moduleID + "/"
	}
	u += "?api-version=" + APIVersion
	if clientType != "" {
		u += "&DeviceClientType=" + url.QueryEscape(clientType)
	}
	return u
}

// ClientID is the MQTT client ID of an identity: device or device/module.
func ClientID(deviceID, moduleID string) string {
	if moduleID == "" {
		return deviceID
	}
	return deviceID + "/" + moduleID
}

// Resource is the SAS resource of an identity:
// {hub}/devices/{device}[/modules/{module}].
func Resource(hub, deviceID, moduleID string) string {
	r := hub + "/devices/" + deviceID
	if moduleID != "" {
		r += "/modules/" + moduleID
	}
	return r
}

// EventsTopic is the telemetry topic of an identity with a property bag
// (already encoded, may be empty).
func EventsTopic(deviceID, moduleID, bag string) string {
	t := "devices/" + deviceID
	if moduleID != "" {
		t += "/modules/" + moduleID
	}
	return t + "/messages/events/" + bag
}

// InputTopic is the topic a module receives the messages of one of its
// inputs on (the '/' after the input name is always there, §2.3).
func InputTopic(deviceID, moduleID, input, bag string) string {
	return "devices/" + deviceID + "/modules/" + moduleID + "/inputs/" + input + "/" + bag
}

// TwinResponse is a parsed $iothub/twin/res/{status}/?$rid={rid}[&$version={v}].
type TwinResponse struct {
	Status int
	RID    string
	// Version is the $version parameter, 0 when absent.
	Version int64
}

// ParseTwinResponse parses a twin response topic. Unknown parameters are
// ignored; errors wrap ErrBadTopic.
func ParseTwinResponse(topic string) (TwinResponse, error) {
	rest, ok := strings.CutPrefix(topic, twinResponsePrefix)
	if !ok {
		return TwinResponse{}, fmt.Errorf("%w: %.80q is not a twin response", ErrBadTopic, topic)
	}
	statusText, query, ok := strings.Cut(rest, "/?")
	if !ok {
		return TwinResponse{}, fmt.Errorf("%w: twin response %.80q has no /? after the status", ErrBadTopic, topic)
	}
	status, err := strconv.Atoi(statusText)
	if err != nil || status < 100 || status > 599 {
		return TwinResponse{}, fmt.Errorf("%w: twin response %.80q: status %q is not an HTTP status", ErrBadTopic, topic, statusText)
	}
	r := TwinResponse{Status: status}
	for param := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(param, "=")
		switch k {
		case "$rid":
			r.RID = v
		case "$version":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				r.Version = n
			}
		}
	}
	if r.RID == "" {
		return TwinResponse{}, fmt.Errorf("%w: twin response %.80q has no $rid", ErrBadTopic, topic)
	}
	return r, nil
}

// ParseDesiredTopic reports whether topic is a desired-property
// notification and returns its $version (0 when absent).
func ParseDesiredTopic(topic string) (version int64, ok bool) {
	rest, ok := strings.CutPrefix(topic, desiredPrefix)
	if !ok {
		return 0, false
	}
	_, query, _ := strings.Cut(rest, "?")
	for param := range strings.SplitSeq(query, "&") {
		if v, found := strings.CutPrefix(param, "$version="); found {
			version, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return version, true
}

// MethodRequest is a parsed $iothub/methods/POST/{name}/?$rid={rid}.
type MethodRequest struct {
	Name string
	RID  string
}

// ParseMethodTopic parses a direct method request topic; errors wrap
// ErrBadTopic.
func ParseMethodTopic(topic string) (MethodRequest, error) {
	rest, ok := strings.CutPrefix(topic, methodPrefix)
	if !ok {
		return MethodRequest{}, fmt.Errorf("%w: %.80q is not a method request", ErrBadTopic, topic)
	}
	name, query, ok := strings.Cut(rest, "/?")
	if !ok || name == "" {
		return MethodRequest{}, fmt.Errorf("%w: method request %.80q has no name followed by /?", ErrBadTopic, topic)
	}
	rid, ok := strings.CutPrefix(query, "$rid=")
	if !ok || rid == "" {
		return MethodRequest{}, fmt.Errorf("%w: method request %.80q has no $rid", ErrBadTopic, topic)
	}
	return MethodRequest{Name: name, RID: rid}, nil
}

// MethodResponseTopic is the topic a method's answer is published on.
func MethodResponseTopic(status int, rid string) string {
	return methodResPrefix + strconv.Itoa(status) + "/?$rid=" + rid
}
