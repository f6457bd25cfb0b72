// Package config owns the configuration of `muster serve`: its TOML file
// (unknown keys rejected), environment overrides from an explicit table,
// defaults, and one Validate that reports every problem at once. Precedence:
// defaults < file < environment < flags (flags are applied by cmd/muster).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Server is the configuration of `muster serve`.
type Server struct {
	DataDir   string   `toml:"data_dir"`
	HTTPSAddr string   `toml:"https_addr"`
	MQTTAddr  string   `toml:"mqtt_addr"`
	Hostnames []string `toml:"hostnames"`
	// Store is the store DSN; empty means SQLite in the data dir.
	Store string `toml:"store"`
	// LogLevel is debug, info, warn or error; LogFormat text or json.
	LogLevel  string `toml:"log_level"`
	LogFormat string `toml:"log_format"`
	// HubWeight is the in-process hub's allocation weight.
	HubWeight int `toml:"hub_weight"`
	// HubApplyAllocationPolicy false takes the in-process hub out of hashed
	// allocation (enrollments that name it still reach it).
	HubApplyAllocationPolicy bool `toml:"hub_apply_allocation_policy"`
	// WebhookTimeout bounds custom allocation webhook calls.
	WebhookTimeout Duration `toml:"webhook_timeout"`
	// WebhookCAFile optionally adds a CA to trust for webhook HTTPS.
	WebhookCAFile string `toml:"webhook_ca_file"`
}

// Duration is a time.Duration written as "10s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText renders the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Defaults returns the default configuration.
func Defaults() Server {
	return Server{
		DataDir:                  "./muster-data",
		HTTPSAddr:                ":8443",
		MQTTAddr:                 ":8883",
		Hostnames:                []string{"localhost"},
		LogLevel:                 "info",
		LogFormat:                "text",
		HubWeight:                1,
		HubApplyAllocationPolicy: true,
		WebhookTimeout:           Duration{10 * time.Second},
	}
}

// LoadFile decodes a TOML file over c, rejecting unknown keys.
func (c *Server) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	return c.Decode(b)
}

// Decode decodes TOML over c, rejecting unknown keys.
func (c *Server) Decode(b []byte) error {
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			return fmt.Errorf("config: %s", sm.String())
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Errorf("config: line %d column %d: %s", row, col, de.Error())
		}
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// EnvVars is the table of environment overrides.
var envVars = []struct {
	name string
	set  func(c *Server, v string) error
}{
	{"MUSTER_DATA_DIR", func(c *Server, v string) error { c.DataDir = v; return nil }},
	{"MUSTER_HTTPS_ADDR", func(c *Server, v string) error { c.HTTPSAddr = v; return nil }},
	{"MUSTER_MQTT_ADDR", func(c *Server, v string) error { c.MQTTAddr = v; return nil }},
	{"MUSTER_HOSTNAME", func(c *Server, v string) error { c.Hostnames = splitList(v); return nil }},
	{"MUSTER_STORE", func(c *Server, v string) error { c.Store = v; return nil }},
	{"MUSTER_LOG_LEVEL", func(c *Server, v string) error { c.LogLevel = v; return nil }},
	{"MUSTER_LOG_FORMAT", func(c *Server, v string) error { c.LogFormat = v; return nil }},
	{"MUSTER_HUB_WEIGHT", func(c *Server, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("MUSTER_HUB_WEIGHT: %q is not a number", v)
		}
		c.HubWeight = n
		return nil
	}},
	{"MUSTER_HUB_APPLY_ALLOCATION_POLICY", func(c *Server, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		c.HubApplyAllocationPolicy = b
		return nil
	}},
	{"MUSTER_WEBHOOK_TIMEOUT", func(c *Server, v string) error {
		return c.WebhookTimeout.UnmarshalText([]byte(v))
	}},
	{"MUSTER_WEBHOOK_CA_FILE", func(c *Server, v string) error { c.WebhookCAFile = v; return nil }},
}

// EnvNames lists the environment variables ApplyEnv reads.
func EnvNames() []string {
	out := make([]string, len(envVars))
	for i, e := range envVars {
		out[i] = e.name
	}
	return out
}

// ApplyEnv applies environment overrides, read through lookup (os.LookupEnv).
func (c *Server) ApplyEnv(lookup func(string) (string, bool)) error {
	var errs []error
	for _, e := range envVars {
		if v, ok := lookup(e.name); ok && v != "" {
			if err := e.set(c, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", e.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

var hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*$`)

// Validate returns every problem of the configuration, each naming its key.
func (c *Server) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("data_dir", "must not be empty")
	}
	for key, addr := range map[string]string{"https_addr": c.HTTPSAddr, "mqtt_addr": c.MQTTAddr} {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad(key, "%q is not host:port (%v)", addr, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(key, "%q has an invalid port", addr)
		}
	}
	if len(c.Hostnames) == 0 {
		bad("hostnames", "at least one host name is required")
	}
	for i, h := range c.Hostnames {
		if net.ParseIP(h) == nil && !hostnamePattern.MatchString(h) {
			bad("hostnames", "entry %d %q is not a host name or IP address", i, h)
		}
	}
	if len(c.Hostnames) > 0 && net.ParseIP(c.Hostnames[0]) != nil {
		bad("hostnames", "the first entry %q names the hub and the service; it must be a DNS name, not an IP address", c.Hostnames[0])
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log_format", "%q is not text or json", c.LogFormat)
	}
	if c.Store != "" && !strings.HasPrefix(c.Store, "sqlite:") && !strings.HasPrefix(c.Store, "postgres://") && !strings.HasPrefix(c.Store, "postgresql://") {
		bad("store", "%q is not sqlite:<path> or postgres://… (PostgreSQL support is not built yet)", c.Store)
	}
	if strings.HasPrefix(c.Store, "postgres") {
		bad("store", "PostgreSQL is not supported by this build yet; leave store empty for the embedded SQLite store")
	}
	if c.HubWeight < 1 || c.HubWeight > 1000 {
		bad("hub_weight", "%d is not between 1 and 1000", c.HubWeight)
	}
	if c.WebhookTimeout.Duration <= 0 || c.WebhookTimeout.Duration > 5*time.Minute {
		bad("webhook_timeout", "%s is not between 0 and 5m", c.WebhookTimeout.Duration)
	}
	return errors.Join(errs...)
}
