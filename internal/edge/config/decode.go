package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// wireDoc is config.toml as decoded. It differs from Config where a key
// can take several shapes (a string or a table) so that a wrong shape gets
// a precise message instead of a decoder type error.
type wireDoc struct {
	Hostname               string            `toml:"hostname"`
	Homedir                string            `toml:"homedir"`
	TrustBundleCert        string            `toml:"trust_bundle_cert"`
	AutoReprovisioningMode string            `toml:"auto_reprovisioning_mode"`
	Provisioning           *wireProvisioning `toml:"provisioning"`
	Agent                  *Agent            `toml:"agent"`
	MobyRuntime            *MobyRuntime      `toml:"moby_runtime"`
	IoTHub                 *IoTHub           `toml:"iothub"`
	EdgeHub                *EdgeHub          `toml:"edge_hub"`
}

// wireProvisioning is [provisioning] as decoded.
type wireProvisioning struct {
	Source           string           `toml:"source"`
	Transport        string           `toml:"transport"`
	GlobalEndpoint   string           `toml:"global_endpoint"`
	IDScope          string           `toml:"id_scope"`
	ConnectionString string           `toml:"connection_string"`
	Payload          *FileRef         `toml:"payload"`
	Attestation      *wireAttestation `toml:"attestation"`
}

// wireAttestation is [provisioning.attestation] as decoded: the keys that
// take several shapes are decoded as any and checked by hand.
type wireAttestation struct {
	Method         string `toml:"method"`
	RegistrationID string `toml:"registration_id"`
	SymmetricKey   any    `toml:"symmetric_key"`
	IdentityCert   any    `toml:"identity_cert"`
	IdentityPK     any    `toml:"identity_pk"`
}

// decode decodes config.toml strictly. Syntax and type errors end decoding
// and come back as err (a *ValidationError); unknown keys and wrong shapes
// come back as problems next to the decoded configuration, so that
// Validate can add its own.
func decode(b []byte) (*Config, problems, error) {
	if len(b) > MaxConfigSize {
		return nil, nil, &ValidationError{Problems: []Problem{{Message: fmt.Sprintf("the configuration is %d bytes, more than the %d-byte limit", len(b), MaxConfigSize)}}}
	}
	var w wireDoc
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var probs problems
	if err := dec.Decode(&w); err != nil {
		var sm *toml.StrictMissingError
		var de *toml.DecodeError
		switch {
		case errors.As(err, &sm):
			probs = unknownKeyProblems(sm)
		case errors.As(err, &de):
			return nil, nil, &ValidationError{Problems: []Problem{decodeProblem(de)}}
		default:
			return nil, nil, &ValidationError{Problems: []Problem{{Message: "decode TOML: " + err.Error()}}}
		}
	}
	return w.config(&probs), probs, nil
}

// unknownKeyProblems turns the unknown keys of a strict decode into
// problems: one per unsupported upstream key (with its advice) and one per
// unknown key, sub-keys of a reported key left out.
func unknownKeyProblems(sm *toml.StrictMissingError) problems {
	var probs problems
	var reported []string
	covered := func(key string) bool {
		for _, r := range reported {
			if key == r || strings.HasPrefix(key, r+".") {
				return true
			}
		}
		return false
	}
	for i := range sm.Errors {
		e := &sm.Errors[i]
		key := strings.Join(e.Key(), ".")
		if covered(key) {
			continue
		}
		if top, advice, ok := unsupportedKey(key); ok {
			reported = append(reported, top)
			probs.add(top, "%s", advice)
			continue
		}
		reported = append(reported, key)
		row, _ := e.Position()
		probs.add(key, "unknown key (line %d)", row)
	}
	return probs
}

// unsupportedKey finds the upstream IoT Edge key covering key that Muster's
// runtime does not implement (yet, or any more: IoT Edge 1.1 names), with
// what to do instead.
func unsupportedKey(key string) (top, advice string, ok bool) {
	const (
		nested  = "nested edge (a parent gateway) is not supported yet by Muster's iotedge"
		remove  = "not supported yet by Muster's iotedge; remove it"
		section = "not supported yet by Muster's iotedge; remove the section"
		files   = "not supported yet by Muster's iotedge; give keys and certificates as files"
		manual  = "manual provisioning with iothub_hostname, device_id and [provisioning.authentication] is not supported yet by Muster's iotedge; use connection_string"
		v11     = "an IoT Edge 1.1 key; "
	)
	unsupported := [...]struct{ key, advice string }{
		{"parent_hostname", nested},
		{"local_gateway_hostname", nested},
		{"allow_elevated_docker_permissions", remove},
		{"prefer_module_identity_cache", remove},
		{"cloud_timeout_sec", remove},
		{"cloud_retries", remove},
		{"cert_issuance", "certificate issuance (EST, local CA) is " + files},
		{"tpm", "TPM is not supported yet by Muster's iotedge; remove the section"},
		{"aziot_keys", "PKCS#11 is " + files},
		{"preloaded_keys", "preloaded keys are " + files},
		{"preloaded_certs", "preloaded certificates are " + files},
		{"connect", "custom sockets are " + section},
		{"listen", "custom sockets are " + section},
		{"watchdog", section},
		{"edge_ca", "an edge CA (gateway certificates) is " + section},
		{"image_garbage_collection", section},
		{"provisioning.iothub_hostname", manual},
		{"provisioning.device_id", manual},
		{"provisioning.authentication", manual},
		{"provisioning.scope_id", v11 + "use id_scope"},
		{"provisioning.device_connection_string", v11 + `use connection_string with source = "manual"`},
		{"provisioning.always_reprovision_on_startup", v11 + "use the top-level auto_reprovisioning_mode"},
		{"provisioning.dynamic_reprovisioning", v11 + "use the top-level auto_reprovisioning_mode"},
	}
	for _, u := range unsupported {
		if key == u.key || strings.HasPrefix(key, u.key+".") {
			return u.key, u.advice, true
		}
	}
	return "", "", false
}

// typeErrorPattern matches go-toml's type mismatch message, to restate it
// in TOML terms.
var typeErrorPattern = regexp.MustCompile(`^cannot decode TOML (\S+) into .* of type (.+)$`)

// decodeProblem renders a syntax or type error with its key and position
// (never the document text around it, which may hold a secret).
func decodeProblem(de *toml.DecodeError) Problem {
	row, col := de.Position()
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	if m := typeErrorPattern.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("wrong type: a TOML %s where %s is expected", m[1], tomlTypeName(m[2]))
	}
	return Problem{Key: strings.Join(de.Key(), "."), Message: fmt.Sprintf("line %d column %d: %s", row, col, msg)}
}

// tomlTypeName names the TOML type that decodes into the Go type goType.
func tomlTypeName(goType string) string {
	goType = strings.TrimLeft(goType, "*")
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a float"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	default:
		return "a table"
	}
}

// config converts the decoded document, adding a problem for every value
// of the wrong shape.
func (w *wireDoc) config(probs *problems) *Config {
	c := &Config{
		Hostname:               w.Hostname,
		Homedir:                w.Homedir,
		TrustBundleCert:        w.TrustBundleCert,
		AutoReprovisioningMode: w.AutoReprovisioningMode,
		Agent:                  w.Agent,
		MobyRuntime:            w.MobyRuntime,
		IoTHub:                 w.IoTHub,
		EdgeHub:                w.EdgeHub,
	}
	p := w.Provisioning
	if p == nil {
		return c
	}
	c.Provisioning = Provisioning{
		Source:           p.Source,
		Transport:        p.Transport,
		GlobalEndpoint:   p.GlobalEndpoint,
		IDScope:          p.IDScope,
		ConnectionString: p.ConnectionString,
		Payload:          p.Payload,
	}
	a := p.Attestation
	if a == nil {
		return c
	}
	c.Provisioning.Attestation = &Attestation{
		Method:         a.Method,
		RegistrationID: a.RegistrationID,
		SymmetricKey:   secretShape(keyAttestation+".symmetric_key", a.SymmetricKey, probs),
		IdentityCert:   certShape(keyAttestation+".identity_cert", a.IdentityCert, probs),
		IdentityPK:     stringShape(keyAttestation+".identity_pk", a.IdentityPK, "a file URI or an absolute path of the private key", probs),
	}
	return c
}

// keyAttestation is the dotted key of [provisioning.attestation].
const keyAttestation = "provisioning.attestation"

// secretShape accepts { value = "…" } or { uri = "…" }.
func secretShape(key string, v any, probs *problems) *Secret {
	const want = `a table: { value = "<base64 key>" } or { uri = "file:///path/to/key" }`
	switch t := v.(type) {
	case nil:
		return nil
	case string:
		probs.add(key, "must be %s; a bare string is the IoT Edge 1.1 form", want)
		return nil
	case map[string]any:
		s := &Secret{}
		names := make([]string, 0, len(t))
		for k := range t {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			str, isString := t[k].(string)
			switch {
			case k != "value" && k != "uri":
				probs.add(key+"."+k, "unknown key (want value or uri)")
			case !isString:
				probs.add(key+"."+k, "must be a string")
			case k == "value":
				s.Value = str
			default:
				s.URI = str
			}
		}
		return s
	default:
		probs.add(key, "must be %s", want)
		return nil
	}
}

// certShape accepts a file reference; a table is the upstream dynamic
// issuance form, which is not supported yet.
func certShape(key string, v any, probs *problems) string {
	if t, ok := v.(map[string]any); ok {
		if method, ok := t["method"].(string); ok {
			probs.add(key, "dynamic issuance (method = %q) is %v; give the certificate as a file URI or an absolute path", method, ErrUnsupported)
		} else {
			probs.add(key, "must be a file URI or an absolute path of the certificate, not a table")
		}
		return ""
	}
	return stringShape(key, v, "a file URI or an absolute path of the certificate", probs)
}

func stringShape(key string, v any, want string, probs *problems) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	default:
		probs.add(key, "must be %s", want)
		return ""
	}
}
