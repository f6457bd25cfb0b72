package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Provisioning sources ([provisioning] source).
const (
	// SourceDPS provisions through the device provisioning service.
	SourceDPS = "dps"
	// SourceManual connects to a hub with a device connection string.
	SourceManual = "manual"
)

// Attestation methods ([provisioning.attestation] method).
const (
	// MethodSymmetricKey attests with a registration ID and a symmetric key.
	MethodSymmetricKey = "symmetric_key"
	// MethodX509 attests with an X.509 identity certificate and its key.
	MethodX509 = "x509"
)

// Transports ([provisioning] transport, a Muster extension).
const (
	// TransportHTTPS talks to DPS over HTTPS (the default).
	TransportHTTPS = "https"
	// TransportMQTT talks to DPS and the hub over MQTT (TLS).
	TransportMQTT = "mqtt"
)

// Reprovisioning modes (auto_reprovisioning_mode).
const (
	// ReprovisionDynamic reprovisions when the hub rejects the identity or
	// the hub tells the device to (the upstream default).
	ReprovisionDynamic = "Dynamic"
	// ReprovisionAlwaysOnStartup reprovisions at every start.
	ReprovisionAlwaysOnStartup = "AlwaysOnStartup"
	// ReprovisionOnErrorOnly reprovisions only when the hub connection fails.
	ReprovisionOnErrorOnly = "OnErrorOnly"
)

// Agent types ([agent] type).
const (
	// AgentProcess runs the edge agent as a process of the runtime (Muster's
	// default).
	AgentProcess = "process"
	// AgentDocker runs the edge agent as a container.
	AgentDocker = "docker"
)

// Defaults that do not depend on the platform.
const (
	// DefaultAgentName is the agent module name.
	DefaultAgentName = "edgeAgent"
	// DefaultMobyNetwork is the container network of the modules.
	DefaultMobyNetwork = "azure-iot-edge"
	// DefaultHTTPSPort is the DPS port of an https global_endpoint without one.
	DefaultHTTPSPort = "443"
	// DefaultMQTTPort is the DPS port of an mqtts global_endpoint without one.
	DefaultMQTTPort = "8883"
)

// Size limits of the files the configuration reads.
const (
	// MaxConfigSize is the largest config.toml accepted.
	MaxConfigSize = 1 << 20
	// MaxKeyFileSize is the largest symmetric key file accepted.
	MaxKeyFileSize = 1024
	// MaxPayloadSize is the largest DPS payload file accepted.
	MaxPayloadSize = 64 << 10
)

// Config is the iotedge device configuration (config.toml). Key names and
// shapes follow IoT Edge 1.2+; the Muster extensions are Homedir (upstream
// keeps it in a separate file) and Provisioning.Transport.
type Config struct {
	// Hostname is the edge device's host name (the edge hub's server name);
	// empty means the machine's host name.
	Hostname string `toml:"hostname,omitempty"`
	// Homedir is the runtime's state directory (Muster extension; default
	// /var/lib/aziot/edged on Linux, %ProgramData%\iotedge on Windows).
	Homedir string `toml:"homedir,omitempty" comment:"Muster extension: the runtime's state directory."`
	// TrustBundleCert is a file URI (or absolute path) of the PEM
	// certificates that verify the provisioning service and the hub, for
	// example Muster's server CA. Empty means the system roots.
	TrustBundleCert string `toml:"trust_bundle_cert,omitempty"`
	// AutoReprovisioningMode is Dynamic (default), AlwaysOnStartup or
	// OnErrorOnly.
	AutoReprovisioningMode string `toml:"auto_reprovisioning_mode,omitempty"`
	// Provisioning says how the device gets its hub identity.
	Provisioning Provisioning `toml:"provisioning"`
	// Agent configures the edge agent; nil means the defaults (a process
	// agent named edgeAgent).
	Agent *Agent `toml:"agent,omitempty"`
	// MobyRuntime configures the container engine used by docker agents and
	// modules.
	MobyRuntime *MobyRuntime `toml:"moby_runtime,omitempty"`
	// IoTHub says where the assigned hub listens (Muster extension); nil
	// means the standard ports.
	IoTHub *IoTHub `toml:"iothub,omitempty" comment:"Muster extension: the ports of the assigned hub."`
	// EdgeHub configures the local edge hub the modules connect to (Muster
	// extension); nil means the defaults.
	EdgeHub *EdgeHub `toml:"edge_hub,omitempty" comment:"Muster extension: where the local edge hub listens for modules."`
}

// Defaults of the Muster extensions [iothub] and [edge_hub].
const (
	// DefaultHubMQTTPort is the hub's MQTT (TLS) port.
	DefaultHubMQTTPort = 8883
	// DefaultHubHTTPSPort is the hub's HTTPS port (module identities).
	DefaultHubHTTPSPort = 443
	// DefaultEdgeHubAddress is where the edge hub listens: the MQTT (TLS)
	// port on the loopback interface, so that only processes on the device
	// reach it.
	DefaultEdgeHubAddress = "127.0.0.1:8883"
)

// IoTHub is the [iothub] section (Muster extension): the ports of the hub
// DPS assigns. Its host name comes from the assignment; a Muster server
// serves the hub on its MQTT and HTTPS addresses (endpoints.json mqttAddr
// and httpsAddr).
type IoTHub struct {
	// MQTTPort is the hub's MQTT over TLS port (default 8883).
	MQTTPort int `toml:"mqtt_port,omitempty"`
	// HTTPSPort is the hub's HTTPS port (default 443), used to manage the
	// device's module identities.
	HTTPSPort int `toml:"https_port,omitempty"`
}

// EdgeHub is the [edge_hub] section (Muster extension).
type EdgeHub struct {
	// ListenAddress is the host:port the edge hub's MQTT over TLS listener
	// binds (default 127.0.0.1:8883). Port 0 picks a free port, which the
	// modules learn from their environment.
	ListenAddress string `toml:"listen_address,omitempty"`
}

// HubPorts returns the assigned hub's MQTT and HTTPS ports, defaults
// applied.
func (c *Config) HubPorts() (mqtt, https int) {
	mqtt, https = DefaultHubMQTTPort, DefaultHubHTTPSPort
	if h := c.IoTHub; h != nil {
		if h.MQTTPort != 0 {
			mqtt = h.MQTTPort
		}
		if h.HTTPSPort != 0 {
			https = h.HTTPSPort
		}
	}
	return mqtt, https
}

// EdgeHubAddress returns where the edge hub listens, the default applied.
func (c *Config) EdgeHubAddress() string {
	if c.EdgeHub != nil && c.EdgeHub.ListenAddress != "" {
		return c.EdgeHub.ListenAddress
	}
	return DefaultEdgeHubAddress
}

// Provisioning is the [provisioning] section.
type Provisioning struct {
	// Source is "dps" or "manual".
	Source string `toml:"source"`
	// Transport is "https" (default) or "mqtt": the protocol the runtime
	// uses towards DPS and the hub. Muster extension: upstream IoT Edge
	// always provisions over HTTPS.
	Transport string `toml:"transport,omitempty" comment:"Muster extension: https or mqtt, towards DPS and the hub."`
	// GlobalEndpoint is the DPS device endpoint (source = "dps"): an
	// https://host[:port]/ URL, or mqtts://host[:port]/ with transport =
	// "mqtt" (Muster extension).
	GlobalEndpoint string `toml:"global_endpoint,omitempty"`
	// IDScope is the DPS ID scope (source = "dps").
	IDScope string `toml:"id_scope,omitempty"`
	// ConnectionString is the device connection string (source = "manual").
	ConnectionString string `toml:"connection_string,omitempty"`
	// Payload optionally names a JSON file sent as the DPS registration
	// payload (source = "dps").
	Payload *FileRef `toml:"payload,inline,omitempty"`
	// Attestation is how the device attests to DPS (source = "dps").
	Attestation *Attestation `toml:"attestation,omitempty"`
}

// FileRef is a table holding one file URI, as in payload = { uri = "…" }.
type FileRef struct {
	// URI is a file URI (file:///abs/path, on Windows file:///C:/path).
	URI string `toml:"uri"`
}

// Attestation is the [provisioning.attestation] section.
type Attestation struct {
	// Method is "symmetric_key" or "x509".
	Method string `toml:"method"`
	// RegistrationID is the DPS registration ID; required for symmetric
	// keys, optional for X.509 (default: the certificate's subject CN).
	RegistrationID string `toml:"registration_id,omitempty"`
	// SymmetricKey is the device key (method = "symmetric_key").
	SymmetricKey *Secret `toml:"symmetric_key,inline,omitempty"`
	// IdentityCert is a file URI or absolute path of the PEM identity
	// certificate chain, leaf first (method = "x509").
	IdentityCert string `toml:"identity_cert,omitempty"`
	// IdentityPK is a file URI or absolute path of the PEM private key of
	// the identity certificate (method = "x509").
	IdentityPK string `toml:"identity_pk,omitempty"`
}

// Secret is a symmetric key given inline ({ value = "<base64>" }) or as a
// file holding the raw key bytes ({ uri = "file:///…" }). Exactly one field
// is set.
type Secret struct {
	// Value is the base64 key.
	Value string `toml:"value,omitempty"`
	// URI is a file URI of the raw (decoded) key bytes.
	URI string `toml:"uri,omitempty"`
}

// String describes the secret without revealing an inline value.
func (s Secret) String() string {
	if s.Value != "" {
		return "{value = <redacted>}"
	}
	return fmt.Sprintf("{uri = %q}", s.URI)
}

// GoString is String, so that %#v does not reveal an inline value either.
func (s Secret) GoString() string { return s.String() }

// Agent is the [agent] section.
type Agent struct {
	// Name is the agent module name (default edgeAgent).
	Name string `toml:"name,omitempty"`
	// Type is "process" (default, Muster) or "docker".
	Type string `toml:"type,omitempty"`
	// ImagePullPolicy is "on-create" or "never" (docker agents).
	ImagePullPolicy string `toml:"imagePullPolicy,omitempty"`
	// Config is [agent.config] (docker agents).
	Config AgentConfig `toml:"config,omitempty"`
	// Env is [agent.env], the agent's environment.
	Env map[string]string `toml:"env,omitempty"`
}

// AgentConfig is the [agent.config] section of a docker agent.
type AgentConfig struct {
	// Image is the agent's container image.
	Image string `toml:"image,omitempty"`
	// CreateOptions are Docker create options as a TOML table.
	CreateOptions map[string]any `toml:"createOptions,omitempty"`
	// Auth holds the registry credentials for Image.
	Auth *RegistryAuth `toml:"auth,omitempty"`
}

// RegistryAuth is [agent.config.auth].
type RegistryAuth struct {
	// ServerAddress is the registry host.
	ServerAddress string `toml:"serveraddress"`
	// Username is the registry user.
	Username string `toml:"username"`
	// Password is the registry password.
	Password string `toml:"password"`
}

// MobyRuntime is the [moby_runtime] section.
type MobyRuntime struct {
	// URI is the container engine endpoint (unix:///var/run/docker.sock on
	// Linux, npipe://./pipe/docker_engine on Windows).
	URI string `toml:"uri,omitempty"`
	// Network is the modules' container network (default azure-iot-edge).
	Network string `toml:"network,omitempty"`
}

// Parse decodes a config.toml, applies the defaults, validates it and
// returns it normalised (file URIs, canonical global_endpoint). It does not
// read the files the configuration names; see CheckFiles. Every problem is
// reported at once in a *ValidationError.
func Parse(b []byte) (*Config, error) {
	c, probs, err := decode(b)
	if err != nil {
		return nil, err
	}
	c.SetDefaults()
	probs.mergeUnrelated(c.Validate())
	if err := probs.err(); err != nil {
		return nil, err
	}
	c.normalize()
	return c, nil
}

// Load reads the config.toml at path, parses it like Parse and checks the
// files it names like CheckFiles.
func Load(path string) (*Config, error) {
	b, err := readRegular(path, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := c.CheckFiles(); err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return c, nil
}

// SetDefaults fills the keys left empty with their defaults: homedir,
// auto_reprovisioning_mode, provisioning.transport, the agent's name and
// type, and the container runtime of a docker agent.
func (c *Config) SetDefaults() {
	if c.Homedir == "" {
		c.Homedir = DefaultHomedir()
	}
	if c.AutoReprovisioningMode == "" {
		c.AutoReprovisioningMode = ReprovisionDynamic
	}
	if c.Provisioning.Transport == "" {
		c.Provisioning.Transport = TransportHTTPS
	}
	if c.Agent != nil {
		if c.Agent.Name == "" {
			c.Agent.Name = DefaultAgentName
		}
		if c.Agent.Type == "" {
			c.Agent.Type = AgentProcess
		}
		if c.Agent.Type == AgentDocker && c.MobyRuntime == nil {
			c.MobyRuntime = &MobyRuntime{}
		}
	}
	if c.MobyRuntime != nil {
		if c.MobyRuntime.URI == "" {
			c.MobyRuntime.URI = defaultMobyURI
		}
		if c.MobyRuntime.Network == "" {
			c.MobyRuntime.Network = DefaultMobyNetwork
		}
	}
}

// normalize rewrites a valid configuration in canonical form: file
// references become file URIs and global_endpoint a canonical URL. Values
// that do not parse are left alone (Validate reports them).
func (c *Config) normalize() {
	ref := func(s *string) {
		if *s == "" {
			return
		}
		if p, err := resolveFileRef(*s, true); err == nil {
			*s = PathToFileURI(p)
		}
	}
	ref(&c.TrustBundleCert)
	p := &c.Provisioning
	if p.GlobalEndpoint != "" {
		if ep, err := NormalizeEndpoint(p.GlobalEndpoint, p.Transport); err == nil {
			p.GlobalEndpoint = ep
		}
	}
	if p.Payload != nil {
		ref(&p.Payload.URI)
	}
	if a := p.Attestation; a != nil {
		ref(&a.IdentityCert)
		ref(&a.IdentityPK)
		if a.SymmetricKey != nil {
			ref(&a.SymmetricKey.URI)
		}
	}
}

// clone returns a deep copy of c (CreateOptions values are shared: they
// are never modified).
func (c *Config) clone() *Config {
	n := *c
	if c.Provisioning.Payload != nil {
		p := *c.Provisioning.Payload
		n.Provisioning.Payload = &p
	}
	if a := c.Provisioning.Attestation; a != nil {
		ac := *a
		if a.SymmetricKey != nil {
			s := *a.SymmetricKey
			ac.SymmetricKey = &s
		}
		n.Provisioning.Attestation = &ac
	}
	if c.Agent != nil {
		ag := *c.Agent
		if c.Agent.Env != nil {
			ag.Env = make(map[string]string, len(c.Agent.Env))
			for k, v := range c.Agent.Env {
				ag.Env[k] = v
			}
		}
		if c.Agent.Config.Auth != nil {
			au := *c.Agent.Config.Auth
			ag.Config.Auth = &au
		}
		if c.Agent.Config.CreateOptions != nil {
			ag.Config.CreateOptions = make(map[string]any, len(c.Agent.Config.CreateOptions))
			for k, v := range c.Agent.Config.CreateOptions {
				ag.Config.CreateOptions[k] = v
			}
		}
		n.Agent = &ag
	}
	if c.MobyRuntime != nil {
		m := *c.MobyRuntime
		n.MobyRuntime = &m
	}
	if c.IoTHub != nil {
		h := *c.IoTHub
		n.IoTHub = &h
	}
	if c.EdgeHub != nil {
		h := *c.EdgeHub
		n.EdgeHub = &h
	}
	return &n
}

// readRegular reads a regular file of at most limit bytes. Devices, FIFOs
// and directories are refused so that a configuration cannot make the
// runtime block or read without end.
func readRegular(path string, limit int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, pathErr(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("read %s: %d bytes, more than the %d-byte limit", path, fi.Size(), limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, pathErr(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, pathErr(err))
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("read %s: more than the %d-byte limit", path, limit)
	}
	return b, nil
}

// pathErr drops the path and operation of a *fs.PathError (the caller's
// message names the file already).
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
