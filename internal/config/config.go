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
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/muster-iot/muster/internal/sas"
)

// Server is the configuration of `muster serve`.
type Server struct {
	DataDir   string   `toml:"data_dir"`
	HTTPSAddr string   `toml:"https_addr"`
	MQTTAddr  string   `toml:"mqtt_addr"`
	Hostnames []string `toml:"hostnames"`
	// Store selects the store: empty means SQLite in the data dir
	// (<data_dir>/muster.db), sqlite:<path> an SQLite file elsewhere, and a
	// postgres:// (or postgresql://) URL a PostgreSQL database, which
	// several instances may share.
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
	// LinkedHubs are remote hubs the provisioning service may allocate
	// devices to, besides the in-process hub ([[linked_hub]] tables).
	LinkedHubs []LinkedHub `toml:"linked_hub"`
}

// LinkedHub is a remote IoT hub (another Muster or any hub with IoT Hub's
// service REST API) that the provisioning service allocates devices to.
type LinkedHub struct {
	// HostName is the hub's host name, as devices are told (assignedHub).
	// It must equal the connection string's HostName.
	HostName string `toml:"host_name"`
	// ConnectionString is a hub shared access policy's connection string
	// (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…); the policy
	// needs RegistryRead and RegistryWrite.
	ConnectionString string `toml:"connection_string"`
	// Address is the host:port to dial (default HostName:443).
	Address string `toml:"address"`
	// CAFile optionally adds a CA (PEM) to trust for the hub's certificate.
	CAFile string `toml:"ca_file"`
	// Weight is the hub's allocation weight, 1–1000 (nil: 1).
	Weight *int `toml:"weight"`
	// ApplyAllocationPolicy false takes the hub out of hashed allocation
	// (enrollments that name it still reach it); nil means true.
	ApplyAllocationPolicy *bool `toml:"apply_allocation_policy"`
}

// EffectiveWeight is the hub's weight, 1 when not set.
func (h LinkedHub) EffectiveWeight() int {
	if h.Weight == nil {
		return 1
	}
	return *h.Weight
}

// AppliesAllocationPolicy reports whether hashed allocation may pick the
// hub (true when not set).
func (h LinkedHub) AppliesAllocationPolicy() bool {
	return h.ApplyAllocationPolicy == nil || *h.ApplyAllocationPolicy
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
	c.validateStore(bad)
	if c.HubWeight < 1 || c.HubWeight > 1000 {
		bad("hub_weight", "%d is not between 1 and 1000", c.HubWeight)
	}
	if c.WebhookTimeout.Duration <= 0 || c.WebhookTimeout.Duration > 5*time.Minute {
		bad("webhook_timeout", "%s is not between 0 and 5m", c.WebhookTimeout.Duration)
	}
	c.validateLinkedHubs(bad)
	return errors.Join(errs...)
}

// validateStore reports a store setting that is neither empty,
// sqlite:<path>, nor a postgres:// URL. Its messages never quote a password.
func (c *Server) validateStore(bad func(key, format string, args ...any)) {
	switch s := c.Store; {
	case s == "":
	case strings.HasPrefix(s, "sqlite:"):
		switch path := strings.TrimPrefix(s, "sqlite:"); {
		case strings.TrimSpace(path) == "":
			bad("store", "sqlite: needs a file path, as in sqlite:/var/lib/muster/muster.db")
		case path == ":memory:" || strings.HasPrefix(path, "file:"):
			bad("store", "%q: the SQLite store needs a file path (no :memory:, no file: URI)", s)
		}
	case strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://"):
		if _, err := url.Parse(s); err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // url.Error quotes the whole URL, password included
			}
			bad("store", "the PostgreSQL URL does not parse: %v", err)
		}
	default:
		bad("store", "%q is not sqlite:<path> or a postgres:// (postgresql://) URL", redactURL(s))
	}
}

// redactURL hides the user information of a URL-like setting, which may
// hold a password.
func redactURL(s string) string {
	at := strings.LastIndex(s, "@")
	scheme := strings.Index(s, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return s
	}
	return s[:scheme+3] + "xxxxx" + s[at:]
}

// validateLinkedHubs reports the problems of the [[linked_hub]] tables,
// each under its key "linked_hub[i].<field>". Connection string errors
// never quote the key.
func (c *Server) validateLinkedHubs(bad func(key, format string, args ...any)) {
	seen := map[string]int{}
	if len(c.Hostnames) > 0 {
		seen[strings.ToLower(c.Hostnames[0])] = -1
	}
	for i, h := range c.LinkedHubs {
		key := func(field string) string { return fmt.Sprintf("linked_hub[%d].%s", i, field) }
		switch {
		case h.HostName == "":
			bad(key("host_name"), "is required")
		case net.ParseIP(h.HostName) == nil && !hostnamePattern.MatchString(h.HostName):
			bad(key("host_name"), "%q is not a host name or IP address", h.HostName)
		default:
			switch j, dup := seen[strings.ToLower(h.HostName)]; {
			case dup && j < 0:
				bad(key("host_name"), "%q is the in-process hub's name (hostnames[0]); a linked hub needs its own", h.HostName)
			case dup:
				bad(key("host_name"), "%q is already linked by linked_hub[%d]", h.HostName, j)
			default:
				seen[strings.ToLower(h.HostName)] = i
			}
		}
		if h.ConnectionString == "" {
			bad(key("connection_string"), "is required")
		} else if cs, err := sas.ParseConnectionString(h.ConnectionString); err != nil {
			bad(key("connection_string"), "%v", err)
		} else {
			if cs.SharedAccessKeyName == "" {
				bad(key("connection_string"), "SharedAccessKeyName is missing: it must be a hub shared access policy's connection string (with RegistryRead and RegistryWrite)")
			}
			if cs.DeviceID != "" {
				bad(key("connection_string"), "DeviceId is set: it must be a hub shared access policy's connection string, not a device's")
			}
			if h.HostName != "" && !strings.EqualFold(cs.HostName, h.HostName) {
				bad(key("connection_string"), "HostName %q does not match host_name %q", cs.HostName, h.HostName)
			}
		}
		if h.Address != "" {
			if host, port, err := net.SplitHostPort(h.Address); err != nil {
				bad(key("address"), "%q is not host:port (%v)", h.Address, err)
			} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
				bad(key("address"), "%q needs a host and a port from 1 to 65535", h.Address)
			}
		}
		if h.CAFile != "" && strings.TrimSpace(h.CAFile) == "" {
			bad(key("ca_file"), "must not be blank")
		}
		if w := h.EffectiveWeight(); w < 1 || w > 1000 {
			bad(key("weight"), "%d is not between 1 and 1000", w)
		}
	}
}
