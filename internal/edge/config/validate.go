package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/sas"
)

var (
	// idScopePattern is a DPS ID scope: "0ne" and 8 hexadecimal digits,
	// case-insensitive.
	idScopePattern = regexp.MustCompile(`^(?i)0ne[0-9a-f]{8}$`)
	// hostnamePattern is a DNS host name.
	hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*$`)
	// networkPattern is a Docker network name.
	networkPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$`)
)

// Validate returns every problem of the configuration at once, each naming
// its key, as a *ValidationError (nil when there is none). It reads no file;
// CheckFiles does. Call SetDefaults first: Validate treats keys that have
// defaults as required.
func (c *Config) Validate() error {
	var p problems
	if c.Hostname != "" && (len(c.Hostname) > 253 || !hostnamePattern.MatchString(c.Hostname)) {
		p.add("hostname", "%q is not a DNS host name", c.Hostname)
	}
	switch {
	case c.Homedir == "":
		p.add("homedir", "missing")
	case !filepath.IsAbs(c.Homedir):
		p.add("homedir", "%q is not an absolute path", c.Homedir)
	}
	if c.TrustBundleCert != "" {
		if _, err := resolveFileRef(c.TrustBundleCert, true); err != nil {
			p.add("trust_bundle_cert", "%v", err)
		}
	}
	switch c.AutoReprovisioningMode {
	case ReprovisionDynamic, ReprovisionAlwaysOnStartup, ReprovisionOnErrorOnly:
	default:
		p.add("auto_reprovisioning_mode", "%q is not %s, %s or %s", c.AutoReprovisioningMode,
			ReprovisionDynamic, ReprovisionAlwaysOnStartup, ReprovisionOnErrorOnly)
	}
	c.validateProvisioning(&p)
	if c.Agent != nil {
		c.Agent.validate(&p)
	}
	if c.MobyRuntime != nil {
		c.MobyRuntime.validate(&p)
	}
	if c.IoTHub != nil {
		c.IoTHub.validate(&p)
	}
	if c.EdgeHub != nil {
		c.EdgeHub.validate(&p)
	}
	sort.SliceStable(p, func(i, j int) bool { return p[i].Key < p[j].Key })
	return p.err()
}

func (c *Config) validateProvisioning(p *problems) {
	pr := &c.Provisioning
	switch pr.Transport {
	case TransportHTTPS, TransportMQTT:
	default:
		p.add("provisioning.transport", "%q is not %s or %s (Muster extension)", pr.Transport, TransportHTTPS, TransportMQTT)
	}
	switch pr.Source {
	case SourceDPS:
		validateDPS(pr, p)
	case SourceManual:
		validateManual(pr, p)
	case "":
		p.add("provisioning.source", "missing; set %q or %q", SourceDPS, SourceManual)
	case "none", "external":
		p.add("provisioning.source", "%q is %v; use %q or %q", pr.Source, ErrUnsupported, SourceDPS, SourceManual)
	default:
		p.add("provisioning.source", "%q is not %q or %q", pr.Source, SourceDPS, SourceManual)
	}
}

func validateDPS(pr *Provisioning, p *problems) {
	if pr.GlobalEndpoint == "" {
		p.add("provisioning.global_endpoint", "missing; give the provisioning service's device endpoint, e.g. https://localhost:8443")
	} else if _, err := NormalizeEndpoint(pr.GlobalEndpoint, pr.Transport); err != nil {
		p.add("provisioning.global_endpoint", "%v", err)
	}
	switch {
	case pr.IDScope == "":
		p.add("provisioning.id_scope", "missing")
	case !idScopePattern.MatchString(pr.IDScope):
		p.add("provisioning.id_scope", "%q is not an ID scope (0ne followed by 8 hexadecimal digits, e.g. 0ne0045B3C6)", pr.IDScope)
	}
	if pr.ConnectionString != "" {
		p.add("provisioning.connection_string", "only applies to source = %q", SourceManual)
	}
	if pr.Payload != nil {
		if _, err := resolveFileRef(pr.Payload.URI, false); err != nil {
			p.add("provisioning.payload.uri", "%v", err)
		}
	}
	a := pr.Attestation
	if a == nil {
		p.add(keyAttestation, "missing; add [provisioning.attestation] with method = %q or %q", MethodSymmetricKey, MethodX509)
		return
	}
	if a.RegistrationID != "" && !enroll.ValidRegistrationID(a.RegistrationID) {
		p.add(keyAttestation+".registration_id", "%q is not a registration ID (1 to 128 characters: alphanumerics and - . _ :, the last one alphanumeric or -)", a.RegistrationID)
	}
	switch a.Method {
	case MethodSymmetricKey:
		if a.RegistrationID == "" {
			p.add(keyAttestation+".registration_id", "missing (required with method = %q)", MethodSymmetricKey)
		}
		validateSecret(a.SymmetricKey, p)
		for key, v := range map[string]string{"identity_cert": a.IdentityCert, "identity_pk": a.IdentityPK} {
			if v != "" {
				p.add(keyAttestation+"."+key, "only applies to method = %q", MethodX509)
			}
		}
	case MethodX509:
		for key, v := range map[string]string{"identity_cert": a.IdentityCert, "identity_pk": a.IdentityPK} {
			if v == "" {
				p.add(keyAttestation+"."+key, "missing (required with method = %q)", MethodX509)
			} else if _, err := resolveFileRef(v, true); err != nil {
				p.add(keyAttestation+"."+key, "%v", err)
			}
		}
		if a.SymmetricKey != nil {
			p.add(keyAttestation+".symmetric_key", "only applies to method = %q", MethodSymmetricKey)
		}
	case "tpm":
		p.add(keyAttestation+".method", "%q is %v; use %q or %q", a.Method, ErrUnsupported, MethodSymmetricKey, MethodX509)
	case "":
		p.add(keyAttestation+".method", "missing; set %q or %q", MethodSymmetricKey, MethodX509)
	default:
		p.add(keyAttestation+".method", "%q is not %q or %q", a.Method, MethodSymmetricKey, MethodX509)
	}
}

func validateSecret(s *Secret, p *problems) {
	const key = keyAttestation + ".symmetric_key"
	switch {
	case s == nil:
		p.add(key, "missing (required with method = %q)", MethodSymmetricKey)
	case s.Value != "" && s.URI != "":
		p.add(key, "has both value and uri; give one")
	case s.Value != "":
		if _, err := sas.DecodeKey(s.Value); err != nil {
			// DecodeKey's message names the offset, never the key.
			p.add(key+".value", "%v", err)
		}
	case s.URI != "":
		if _, err := resolveFileRef(s.URI, false); err != nil {
			p.add(key+".uri", "%v", err)
		}
	default:
		p.add(key, `is empty; give { value = "<base64 key>" } or { uri = "file:///path/to/key" }`)
	}
}

func validateManual(pr *Provisioning, p *problems) {
	for key, set := range map[string]bool{
		"global_endpoint": pr.GlobalEndpoint != "",
		"id_scope":        pr.IDScope != "",
		"payload":         pr.Payload != nil,
		"attestation":     pr.Attestation != nil,
	} {
		if set {
			p.add("provisioning."+key, "only applies to source = %q", SourceDPS)
		}
	}
	if pr.ConnectionString == "" {
		p.add("provisioning.connection_string", "missing (required with source = %q)", SourceManual)
		return
	}
	cs, err := sas.ParseConnectionString(pr.ConnectionString)
	if err != nil {
		// ConnectionStringError names the key at fault, never its value.
		p.add("provisioning.connection_string", "%v", err)
		return
	}
	switch {
	case cs.DeviceID == "":
		p.add("provisioning.connection_string", "has no DeviceId; give the edge device's connection string")
	case cs.ModuleID != "":
		p.add("provisioning.connection_string", "is a module connection string (ModuleId=%s); give the edge device's connection string", cs.ModuleID)
	case cs.SharedAccessKeyName != "":
		p.add("provisioning.connection_string", "is a policy connection string (SharedAccessKeyName=%s); give the edge device's connection string", cs.SharedAccessKeyName)
	case cs.GatewayHostName != "":
		p.add("provisioning.connection_string", "GatewayHostName (nested edge) is %v", ErrUnsupported)
	}
}

func (a *Agent) validate(p *problems) {
	if !enroll.ValidDeviceID(a.Name) {
		p.add("agent.name", "%q is not a module name", a.Name)
	}
	switch a.Type {
	case AgentProcess:
		if a.ImagePullPolicy != "" {
			p.add("agent.imagePullPolicy", "only applies to type = %q", AgentDocker)
		}
		if a.Config.Image != "" {
			p.add("agent.config.image", "only applies to type = %q", AgentDocker)
		}
		if a.Config.CreateOptions != nil {
			p.add("agent.config.createOptions", "only applies to type = %q", AgentDocker)
		}
		if a.Config.Auth != nil {
			p.add("agent.config.auth", "only applies to type = %q", AgentDocker)
		}
	case AgentDocker:
		switch {
		case a.Config.Image == "":
			p.add("agent.config.image", "missing (required with type = %q)", AgentDocker)
		case strings.ContainsAny(a.Config.Image, " \t\r\n"):
			p.add("agent.config.image", "%q is not an image reference", a.Config.Image)
		}
		switch a.ImagePullPolicy {
		case "", "on-create", "never":
		default:
			p.add("agent.imagePullPolicy", "%q is not on-create or never", a.ImagePullPolicy)
		}
		if au := a.Config.Auth; au != nil {
			for key, v := range map[string]string{"serveraddress": au.ServerAddress, "username": au.Username, "password": au.Password} {
				if v == "" {
					p.add("agent.config.auth."+key, "missing")
				}
			}
		}
	default:
		p.add("agent.type", "%q is not %s or %s", a.Type, AgentProcess, AgentDocker)
	}
	for k, v := range a.Env {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			p.add("agent.env", "%q is not an environment variable name", k)
		case strings.ContainsRune(v, 0):
			p.add("agent.env."+k, "contains a NUL character")
		}
	}
}

func (m *MobyRuntime) validate(p *problems) {
	if u, err := url.Parse(m.URI); err != nil || u.Scheme == "" {
		p.add("moby_runtime.uri", "%q is not a URI (e.g. %s)", m.URI, defaultMobyURI)
	} else {
		switch u.Scheme {
		case "unix", "npipe", "tcp", "http", "https":
		default:
			p.add("moby_runtime.uri", "scheme %q is not unix, npipe, tcp, http or https", u.Scheme)
		}
	}
	if !networkPattern.MatchString(m.Network) {
		p.add("moby_runtime.network", "%q is not a network name", m.Network)
	}
}

func (h *IoTHub) validate(p *problems) {
	for _, f := range []struct {
		key  string
		port int
	}{{"iothub.mqtt_port", h.MQTTPort}, {"iothub.https_port", h.HTTPSPort}} {
		if f.port < 0 || f.port > 65535 {
			p.add(f.key, "%d is not a TCP port (1 to 65535; leave it out for the default)", f.port)
		}
	}
}

func (h *EdgeHub) validate(p *problems) {
	if h.ListenAddress == "" {
		return
	}
	host, port, err := net.SplitHostPort(h.ListenAddress)
	if err != nil {
		p.add("edge_hub.listen_address", "%q is not host:port (e.g. %s)", h.ListenAddress, DefaultEdgeHubAddress)
		return
	}
	if host != "" && net.ParseIP(host) == nil && (len(host) > 253 || !hostnamePattern.MatchString(host)) {
		p.add("edge_hub.listen_address", "%q: %q is not a host name or IP address", h.ListenAddress, host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add("edge_hub.listen_address", "%q: %q is not a TCP port (0 to 65535; 0 picks a free one)", h.ListenAddress, port)
	}
}

// NormalizeEndpoint returns the canonical form of a DPS device endpoint for
// transport: scheme://host[:port]/ with scheme https for transport "https"
// and mqtts for transport "mqtt" (Muster extension). It accepts a URL or a
// bare host[:port], as Muster's endpoints.json gives dpsDeviceEndpoint.
func NormalizeEndpoint(endpoint, transport string) (string, error) {
	want := "https"
	if transport == TransportMQTT {
		want = "mqtts"
	}
	s := strings.TrimSpace(endpoint)
	if s == "" {
		return "", errors.New("endpoint is empty")
	}
	if !strings.Contains(s, "://") {
		s = want + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL or host:port: %w", endpoint, errors.Unwrap(err))
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != want {
		if transport == TransportMQTT {
			return "", fmt.Errorf("%q has scheme %q; transport = %q needs mqtts://host[:port] (Muster's MQTT address, default port %s)", endpoint, u.Scheme, TransportMQTT, DefaultMQTTPort)
		}
		return "", fmt.Errorf("%q has scheme %q; want https://host[:port]", endpoint, u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("%q must be only a scheme, a host and a port", endpoint)
	}
	host := u.Hostname()
	if host == "" {
		return "", fmt.Errorf("%q has no host", endpoint)
	}
	if net.ParseIP(host) == nil && (len(host) > 253 || !hostnamePattern.MatchString(host)) {
		return "", fmt.Errorf("%q: %q is not a host name or IP address", endpoint, host)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q has an invalid port %q", endpoint, port)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("%q has an empty port", endpoint)
	}
	return (&url.URL{Scheme: scheme, Host: strings.TrimSuffix(u.Host, ":"), Path: "/"}).String(), nil
}
