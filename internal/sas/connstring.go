package sas

import (
	"errors"
	"fmt"
	"strings"
)

// MaxConnectionStringLen is the longest connection string ParseConnectionString accepts.
const MaxConnectionStringLen = 4096

// ErrInvalidConnectionString means a connection string could not be parsed
// (see ConnectionStringError).
var ErrInvalidConnectionString = errors.New("sas: invalid connection string")

// ConnectionStringError says which key of a connection string is at fault.
// It matches ErrInvalidConnectionString with errors.Is.
type ConnectionStringError struct {
	// Key is the connection string key at fault ("" for the string as a whole).
	Key string
	// Msg describes the problem.
	Msg string
}

func (e *ConnectionStringError) Error() string {
	if e.Key == "" {
		return "invalid connection string: " + e.Msg
	}
	return "invalid connection string: " + e.Key + ": " + e.Msg
}

// Is reports whether target is ErrInvalidConnectionString.
func (e *ConnectionStringError) Is(target error) bool { return target == ErrInvalidConnectionString }

// ConnectionString is an Azure IoT connection string with a shared access
// key: a service policy's (HostName, SharedAccessKeyName, SharedAccessKey),
// a device's (HostName, DeviceId, SharedAccessKey) or a module's (plus
// ModuleId), optionally through a gateway (GatewayHostName).
type ConnectionString struct {
	HostName            string
	SharedAccessKeyName string
	SharedAccessKey     string
	DeviceID            string
	ModuleID            string
	GatewayHostName     string
}

// ParseConnectionString parses ';'-separated key=value pairs (each split on
// its first '='; keys are case-insensitive; spaces around keys and values
// are trimmed; unknown keys are ignored). HostName and SharedAccessKey are
// required, and SharedAccessKey must be base64. Errors are
// *ConnectionStringError values naming the key.
func ParseConnectionString(s string) (ConnectionString, error) {
	var c ConnectionString
	if len(s) > MaxConnectionStringLen {
		return c, &ConnectionStringError{Msg: fmt.Sprintf("%d bytes, longer than the %d-byte limit", len(s), MaxConnectionStringLen)}
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return c, &ConnectionStringError{Msg: "connection string is empty"}
	}
	fields := [...]struct {
		name string
		dst  *string
		seen bool
	}{
		{name: "HostName", dst: &c.HostName},
		{name: "SharedAccessKeyName", dst: &c.SharedAccessKeyName},
		{name: "SharedAccessKey", dst: &c.SharedAccessKey},
		{name: "DeviceId", dst: &c.DeviceID},
		{name: "ModuleId", dst: &c.ModuleID},
		{name: "GatewayHostName", dst: &c.GatewayHostName},
	}
	for part := range strings.SplitSeq(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		key, value, ok := strings.Cut(part, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok {
			return ConnectionString{}, &ConnectionStringError{Key: key, Msg: "has no '=' and no value"}
		}
		if key == "" {
			return ConnectionString{}, &ConnectionStringError{Msg: "a key=value pair has an empty key"}
		}
		for i := range fields {
			f := &fields[i]
			if !strings.EqualFold(key, f.name) {
				continue
			}
			if f.seen {
				return ConnectionString{}, &ConnectionStringError{Key: f.name, Msg: "appears more than once"}
			}
			f.seen = true
			*f.dst = value
		}
	}
	if c.HostName == "" {
		return ConnectionString{}, &ConnectionStringError{Key: "HostName", Msg: "missing or empty"}
	}
	if c.SharedAccessKey == "" {
		return ConnectionString{}, &ConnectionStringError{Key: "SharedAccessKey", Msg: "missing or empty"}
	}
	if _, err := DecodeKey(c.SharedAccessKey); err != nil {
		return ConnectionString{}, &ConnectionStringError{Key: "SharedAccessKey", Msg: err.Error()}
	}
	if c.ModuleID != "" && c.DeviceID == "" {
		return ConnectionString{}, &ConnectionStringError{Key: "ModuleId", Msg: "set without DeviceId"}
	}
	return c, nil
}

// String renders the connection string with its non-empty keys in the
// order HostName, DeviceId, ModuleId, SharedAccessKeyName, SharedAccessKey,
// GatewayHostName.
func (c ConnectionString) String() string {
	var b strings.Builder
	add := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	add("HostName", c.HostName)
	add("DeviceId", c.DeviceID)
	add("ModuleId", c.ModuleID)
	add("SharedAccessKeyName", c.SharedAccessKeyName)
	add("SharedAccessKey", c.SharedAccessKey)
	add("GatewayHostName", c.GatewayHostName)
	return b.String()
}
