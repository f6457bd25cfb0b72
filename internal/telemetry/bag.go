package telemetry

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits of a property bag (Muster's own; MQTT caps a whole topic at 65535
// bytes).
const (
	// MaxBagBytes caps the text of a property bag, and the total length of
	// a message's property names and values.
	MaxBagBytes = 32 << 10
	// MaxProperties caps the number of properties (system and application
	// together) of a bag or a message.
	MaxProperties = 256
)

// System property names. The comment gives each one's key in an MQTT
// property bag (hub-edge-protocol §2.4); properties without a key are
// stamped by the hub and never read from or written to a topic.
const (
	PropMessageID          = "message-id"                  // $.mid
	PropCorrelationID      = "correlation-id"              // $.cid
	PropUserID             = "user-id"                     // $.uid
	PropTo                 = "to"                          // $.to
	PropExpiryTime         = "absolute-expiry-time"        // $.exp
	PropContentType        = "content-type"                // $.ct
	PropContentEncoding    = "content-encoding"            // $.ce
	PropOutputName         = "iothub-outputname"           // $.on
	PropInterfaceID        = "iothub-interface-id"         // $.ifid
	PropComponentName      = "dt-subject"                  // $.sub
	PropCreationTime       = "iothub-creation-time-utc"    // $.ctime
	PropConnectionDeviceID = "iothub-connection-device-id" // $.cdid
	PropConnectionModuleID = "iothub-connection-module-id" // $.cmid
	PropAck                = "iothub-ack"                  // iothub-ack (C2D feedback request)
	PropEnqueuedTime       = "iothub-enqueuedtime"         // hub only
	PropMessageSource      = "iothub-message-source"       // hub only
)

// systemPrefix starts the bag key of every system property but iothub-ack.
const systemPrefix = "$."

// bagKeys pairs system property names with their bag keys, in the order
// EncodeBag writes them.
func bagKeys() [13][2]string {
	return [...][2]string{
		{PropMessageID, "$.mid"},
		{PropCorrelationID, "$.cid"},
		{PropUserID, "$.uid"},
		{PropTo, "$.to"},
		{PropExpiryTime, "$.exp"},
		{PropContentType, "$.ct"},
		{PropContentEncoding, "$.ce"},
		{PropOutputName, "$.on"},
		{PropInterfaceID, "$.ifid"},
		{PropComponentName, "$.sub"},
		{PropCreationTime, "$.ctime"},
		{PropConnectionDeviceID, "$.cdid"},
		{PropConnectionModuleID, "$.cmid"},
	}
}

// systemName returns the property name of a "$." bag key, if it has one.
func systemName(key string) (string, bool) {
	for _, p := range bagKeys() {
		if p[1] == key {
			return p[0], true
		}
	}
	return "", false
}

// ParseBag parses the property bag of a telemetry topic into system and
// application properties (hub-edge-protocol §2.4).
//
// Pairs are separated by '&'; a pair's name and value by its first '='
// (a pair without '=' has an empty value; a pair without a name is
// ignored). Names and values are percent-decoded when they are valid
// percent-encoding and kept as sent otherwise (the C SDK sends raw values);
// '+' is not a space. A name starting with "$." (sent as "%24." by the
// SDKs) is a system property: the known keys ($.mid, $.ct, …) map to the
// Prop* names, an unknown one keeps its "$." name so nothing is lost.
// "iothub-ack" is a system property too; every other name is an
// application property. The first occurrence of a name wins.
//
// The maps are never nil. Errors wrap ErrTooLarge (more than MaxBagBytes
// or MaxProperties) or ErrInvalidBag (a name or value that is not valid
// UTF-8 or contains a NUL byte once decoded) and name the property.
func ParseBag(s string) (sys, app map[string]string, err error) {
	if len(s) > MaxBagBytes {
		return nil, nil, fmt.Errorf("%w: property bag is %d bytes, more than %d", ErrTooLarge, len(s), MaxBagBytes)
	}
	sys, app = map[string]string{}, map[string]string{}
	n := 0
	for rest := s; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		n++
		if n > MaxProperties {
			return nil, nil, fmt.Errorf("%w: property bag has more than %d properties", ErrTooLarge, MaxProperties)
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, value := unescape(rawName), unescape(rawValue)
		if name == "" {
			continue
		}
		if err := checkProperty(name, value); err != nil {
			return nil, nil, fmt.Errorf("property %d: %w", n, err)
		}
		dst := app
		switch {
		case strings.HasPrefix(name, systemPrefix):
			if known, ok := systemName(name); ok {
				name = known
			}
			dst = sys
		case name == PropAck:
			dst = sys
		}
		if _, dup := dst[name]; !dup {
			dst[name] = value
		}
	}
	return sys, app, nil
}

// EncodeBag renders properties as a property bag for a topic the hub sends
// (C2D messages, module inputs), so that every SDK parses it back
// (hub-edge-protocol §2.4 and §2.7): every name and value is
// percent-encoded (all but A-Z a-z 0-9 - . _ ~), so no '/' survives;
// system properties are written first with their "%24." keys in a fixed
// order, then unknown "$." system names sorted, then iothub-ack, then the
// application properties sorted by name.
//
// What has no bag form is left out: system properties without a key
// (PropEnqueuedTime, …), a "$." name whose key has a Prop* name (give the
// Prop* name instead), empty names, and application properties whose names
// ParseBag would read back as system properties ("$."…, "iothub-ack").
func EncodeBag(sys, app map[string]string) string {
	var b strings.Builder
	write := func(key, value string) {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(key)
		b.WriteByte('=')
		b.WriteString(escape(value))
	}
	for _, p := range bagKeys() {
		if v, ok := sys[p[0]]; ok {
			write("%24."+p[1][len(systemPrefix):], v)
		}
	}
	for _, name := range sortedKeys(sys) {
		if !strings.HasPrefix(name, systemPrefix) {
			continue
		}
		if _, known := systemName(name); known {
			continue
		}
		write("%24."+escape(name[len(systemPrefix):]), sys[name])
	}
	if v, ok := sys[PropAck]; ok {
		write(PropAck, v)
	}
	for _, name := range sortedKeys(app) {
		if name == "" || name == PropAck || strings.HasPrefix(name, systemPrefix) {
			continue
		}
		write(escape(name), app[name])
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkProperty rejects a decoded name or value that cannot be kept.
func checkProperty(name, value string) error {
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: name %.64q is not valid UTF-8", ErrInvalidBag, name)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("%w: name %.64q contains a NUL byte", ErrInvalidBag, name)
	}
	if !utf8.ValidString(value) {
		return fmt.Errorf("%w: value of %.64q is not valid UTF-8", ErrInvalidBag, name)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("%w: value of %.64q contains a NUL byte", ErrInvalidBag, name)
	}
	return nil
}

// unescape percent-decodes s, returning it unchanged when it is not valid
// percent-encoding. '+' stays '+'.
func unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	d, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return d
}

// escape percent-encodes every byte of s but the RFC 3986 unreserved
// characters, with upper-case hex digits.
func escape(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
