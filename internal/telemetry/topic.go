package telemetry

import (
	"fmt"
	"strings"
)

// MaxIDLen is the longest device or module ID (hub-edge-protocol §1.1).
const MaxIDLen = 128

const (
	topicDevices = "devices/"
	topicModules = "modules/"
	topicEvents  = "messages/events"
)

// ParseTelemetryTopic parses a device-to-cloud telemetry topic,
// devices/{id}/messages/events/{bag} or
// devices/{id}/modules/{mid}/messages/events/{bag}, and returns the IDs
// and the raw property bag (for ParseBag).
//
// Accepted variants (hub-edge-protocol §2.3, §2.7): with or without the '/'
// after "events", with or without a bag, and with one trailing '/' after
// the bag (Node's module output). A '?' opening the bag (an early Azure
// embedded C SDK put one there) is dropped. The bag is everything after
// "events/": it may itself contain '/' (the C SDK does not encode values).
//
// IDs are percent-decoded when they are valid percent-encoding (the Python
// SDK encodes them; Node and C send them raw) and must then be 1 to
// MaxIDLen characters from A-Z a-z 0-9 and - : . + % _ # * ? ! ( ) , = @ ;
// $ '. Errors wrap ErrNotTelemetry and say which part is wrong.
func ParseTelemetryTopic(topic string) (deviceID, moduleID string, bag string, err error) {
	rest, ok := strings.CutPrefix(topic, topicDevices)
	if !ok {
		return "", "", "", fmt.Errorf("%w: %.64q does not start with %q", ErrNotTelemetry, topic, topicDevices)
	}
	rawDevice, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", "", fmt.Errorf("%w: %.64q has nothing after the device ID", ErrNotTelemetry, topic)
	}
	var rawModule string
	if after, isModule := strings.CutPrefix(rest, topicModules); isModule {
		if rawModule, rest, ok = strings.Cut(after, "/"); !ok {
			return "", "", "", fmt.Errorf("%w: %.64q has nothing after the module ID", ErrNotTelemetry, topic)
		}
		if rawModule == "" {
			return "", "", "", fmt.Errorf("%w: %.64q has an empty module ID", ErrNotTelemetry, topic)
		}
	}
	switch {
	case rest == topicEvents:
	case strings.HasPrefix(rest, topicEvents+"/"):
		bag = strings.TrimSuffix(rest[len(topicEvents)+1:], "/")
		bag = strings.TrimPrefix(bag, "?")
	default:
		return "", "", "", fmt.Errorf("%w: %.64q is not .../%s/", ErrNotTelemetry, topic, topicEvents)
	}
	if deviceID, err = topicID("device", rawDevice); err != nil {
		return "", "", "", err
	}
	if rawModule != "" {
		if moduleID, err = topicID("module", rawModule); err != nil {
			return "", "", "", err
		}
	}
	return deviceID, moduleID, bag, nil
}

// topicID decodes and checks one ID segment of a topic.
func topicID(what, raw string) (string, error) {
	id := unescape(raw)
	if !ValidID(id) {
		return "", fmt.Errorf("%w: %s ID %.64q is not 1 to %d characters from A-Z a-z 0-9 - : . + %% _ # * ? ! ( ) , = @ ; $ '", ErrNotTelemetry, what, id, MaxIDLen)
	}
	return id, nil
}

// ValidID reports whether id is a valid device or module ID: 1 to
// MaxIDLen characters from A-Z a-z 0-9 and - : . + % _ # * ? ! ( ) , = @ ;
// $ ' (hub-edge-protocol §1.1).
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-:.+%_#*?!(),=@;$'", c) >= 0:
		default:
			return false
		}
	}
	return true
}
