package enroll

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"

	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/sas"
)

var (
	// deviceIDPattern is the hub's device ID rule.
	deviceIDPattern = regexp.MustCompile(`^[A-Za-z0-9\-:.+%_#*?!(),=@;$']{1,128}$`)
	// hostNamePattern is a hub host name (optionally with a port).
	hostNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_\-.]+(:[0-9]{1,5})?$`)
)

// ValidRegistrationID reports whether id is a valid registration ID (or
// enrollment group ID, which follows the same rule): 1 to 128 characters,
// alphanumerics and - . _ :, the last one alphanumeric or '-' (DPS rules).
// It is a byte loop, not a regexp, since every registration and poll
// checks it; a fuzz test keeps it agreed with the rule's pattern.
func ValidRegistrationID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
		case (c == '.' || c == '_' || c == ':') && i < len(id)-1:
		default:
			return false
		}
	}
	return true
}

// ValidDeviceID reports whether id is a valid hub device ID.
func ValidDeviceID(id string) bool { return deviceIDPattern.MatchString(id) }

// Key returns the store key of a registration ID or group ID: IDs are
// case-insensitive.
func Key(id string) string { return strings.ToLower(id) }

// WireETag renders a store etag as DPS enrollments carry it: a quoted string.
func WireETag(etag string) string { return `"` + etag + `"` }

// RegistrationETag renders a store etag as registration states carry it:
// base64 of the quoted string.
func RegistrationETag(etag string) string {
	return base64.StdEncoding.EncodeToString([]byte(WireETag(etag)))
}

// StoreETag turns an If-Match value (or an etag read back from JSON) into a
// store etag: it strips a W/ prefix and surrounding quotes, and decodes the
// base64 form registration states use. "*" stays "*".
func StoreETag(v string) string {
	v = strings.TrimSpace(v)
	if v == "" || v == "*" {
		return v
	}
	v = strings.TrimPrefix(v, "W/")
	if un := strings.Trim(v, `"`); un != v {
		return un
	}
	if raw, err := base64.StdEncoding.DecodeString(v); err == nil && len(raw) > 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		return string(raw[1 : len(raw)-1])
	}
	return v
}

// Limits on keys (DPS: 16 to 64 bytes).
const (
	minKeyBytes = 16
	maxKeyBytes = 64
)

func validateKey(field, key string) error {
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return Invalid(field, "not valid base64: %v", err)
	}
	if len(raw) < minKeyBytes || len(raw) > maxKeyBytes {
		return Invalid(field, "key is %d bytes; it must be %d to %d bytes", len(raw), minKeyBytes, maxKeyBytes)
	}
	return nil
}

func isJSONObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null")) || (raw[0] == '{' && json.Valid(raw))
}

// normalizeCommon validates and fills defaults shared by enrollments and
// groups. linked is the set of linked hub host names (lower-case).
func normalizeCommon(c *Common, individual bool, linked map[string]bool) error {
	if c.ProvisioningStatus == "" {
		c.ProvisioningStatus = StatusEnabled
	}
	switch c.ProvisioningStatus {
	case StatusEnabled, StatusDisabled:
	default:
		return Invalid("provisioningStatus", "%q is not enabled or disabled", c.ProvisioningStatus)
	}
	if c.ReprovisionPolicy == nil {
		c.ReprovisionPolicy = &ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true}
	}
	if c.Capabilities == nil {
		c.Capabilities = &Capabilities{}
	}
	if c.AllocationPolicy == "" {
		c.AllocationPolicy = AllocationHashed
	}
	switch strings.ToLower(c.AllocationPolicy) {
	case "hashed":
		c.AllocationPolicy = AllocationHashed
	case "geolatency":
		c.AllocationPolicy = AllocationGeoLatency
	case "static":
		c.AllocationPolicy = AllocationStatic
	case "custom":
		c.AllocationPolicy = AllocationCustom
	default:
		return Invalid("allocationPolicy", "%q is not hashed, geoLatency, static or custom", c.AllocationPolicy)
	}
	for i, h := range c.IoTHubs {
		if !hostNamePattern.MatchString(h) {
			return Invalid("iotHubs", "entry %d %q is not a host name", i, h)
		}
		if linked != nil && !linked[strings.ToLower(h)] {
			return Invalid("iotHubs", "hub %q is not linked to this provisioning service", h)
		}
	}
	if c.IoTHubHostName != "" {
		if !hostNamePattern.MatchString(c.IoTHubHostName) {
			return Invalid("iotHubHostName", "%q is not a host name", c.IoTHubHostName)
		}
		if linked != nil && !linked[strings.ToLower(c.IoTHubHostName)] {
			return Invalid("iotHubHostName", "hub %q is not linked to this provisioning service", c.IoTHubHostName)
		}
	}
	switch c.AllocationPolicy {
	case AllocationStatic:
		if c.IoTHubHostName == "" && len(c.IoTHubs) != 1 {
			return Invalid("iotHubs", "static allocation needs exactly one hub (iotHubs has %d and iotHubHostName is empty)", len(c.IoTHubs))
		}
	case AllocationCustom:
		d := c.CustomAllocationDefinition
		if d == nil || d.WebhookURL == "" {
			return Invalid("customAllocationDefinition.webhookUrl", "custom allocation needs a webhook URL")
		}
		u, err := url.Parse(d.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return Invalid("customAllocationDefinition.webhookUrl", "%q is not an http(s) URL", d.WebhookURL)
		}
		if d.APIVersion == "" {
			d.APIVersion = "2021-10-01"
		}
	}
	if c.InitialTwin != nil {
		if !isJSONObject(c.InitialTwin.Tags) {
			return Invalid("initialTwin.tags", "must be a JSON object")
		}
		if c.InitialTwin.Properties != nil && !isJSONObject(c.InitialTwin.Properties.Desired) {
			return Invalid("initialTwin.properties.desired", "must be a JSON object")
		}
	}
	return normalizeAttestation(c, individual)
}

func normalizeAttestation(c *Common, individual bool) error {
	a := c.Attestation
	if a == nil || a.Type == "" {
		return Invalid("attestation.type", "required (symmetricKey, x509 or tpm)")
	}
	switch strings.ToLower(a.Type) {
	case "symmetrickey":
		a.Type = AttestationSymmetricKey
		a.X509, a.TPM = nil, nil
		if a.SymmetricKey == nil {
			a.SymmetricKey = &SymmetricKeyAttestation{}
		}
		k := a.SymmetricKey
		for _, f := range []struct {
			name string
			val  *string
		}{{"attestation.symmetricKey.primaryKey", &k.PrimaryKey}, {"attestation.symmetricKey.secondaryKey", &k.SecondaryKey}} {
			if *f.val == "" {
				gen, err := sas.GenerateKey()
				if err != nil {
					return err
				}
				*f.val = gen
				continue
			}
			if err := validateKey(f.name, *f.val); err != nil {
				return err
			}
		}
	case "x509":
		a.Type = AttestationX509
		a.SymmetricKey, a.TPM = nil, nil
		x := a.X509
		if x == nil {
			return Invalid("attestation.x509", "required for x509 attestation")
		}
		n := 0
		for _, set := range []struct {
			field string
			certs *X509Certificates
		}{{"attestation.x509.clientCertificates", x.ClientCertificates}, {"attestation.x509.signingCertificates", x.SigningCertificates}} {
			if set.certs == nil {
				continue
			}
			if set.certs.Primary == nil && set.certs.Secondary == nil {
				continue
			}
			if set.certs.Primary == nil || set.certs.Primary.Certificate == "" {
				if set.certs.Primary == nil || set.certs.Primary.Info == nil {
					return Invalid(set.field+".primary", "a primary certificate is required")
				}
			}
			for name, w := range map[string]*X509CertificateWithInfo{"primary": set.certs.Primary, "secondary": set.certs.Secondary} {
				if w == nil || w.Certificate == "" {
					continue
				}
				cert, err := pki.ParseCertificate([]byte(w.Certificate))
				if err != nil {
					return Invalid(set.field+"."+name+".certificate", "%v", err)
				}
				w.Info = CertificateInfo(cert)
			}
			n++
		}
		if x.ClientCertificates != nil && x.SigningCertificates != nil && x.ClientCertificates.Primary != nil && x.SigningCertificates.Primary != nil {
			return Invalid("attestation.x509", "give clientCertificates or signingCertificates, not both")
		}
		if x.CAReferences != nil && (x.CAReferences.Primary != "" || x.CAReferences.Secondary != "") {
			if x.CAReferences.Primary == "" {
				return Invalid("attestation.x509.caReferences.primary", "a primary CA reference is required")
			}
			n++
		}
		if n == 0 {
			return Invalid("attestation.x509", "needs clientCertificates, signingCertificates or caReferences")
		}
		if !individual && x.ClientCertificates != nil && x.ClientCertificates.Primary != nil {
			return Invalid("attestation.x509.clientCertificates", "enrollment groups use signingCertificates or caReferences, not device certificates")
		}
	case "tpm":
		a.Type = AttestationTPM
		a.SymmetricKey, a.X509 = nil, nil
		if !individual {
			return Invalid("attestation.type", "TPM attestation is for individual enrollments only")
		}
		if a.TPM == nil || a.TPM.EndorsementKey == "" {
			return Invalid("attestation.tpm.endorsementKey", "required for tpm attestation")
		}
		if _, err := base64.StdEncoding.DecodeString(a.TPM.EndorsementKey); err != nil {
			return Invalid("attestation.tpm.endorsementKey", "not valid base64: %v", err)
		}
	default:
		return Invalid("attestation.type", "%q is not symmetricKey, x509 or tpm", a.Type)
	}
	return nil
}

// CertificateInfo describes a certificate as DPS shows it.
func CertificateInfo(c *x509.Certificate) *X509CertificateInfo {
	return &X509CertificateInfo{
		SubjectName:      pki.DistinguishedName(c.Subject),
		SHA1Thumbprint:   pki.SHA1Thumbprint(c),
		SHA256Thumbprint: pki.SHA256Thumbprint(c),
		IssuerName:       pki.DistinguishedName(c.Issuer),
		NotBeforeUTC:     c.NotBefore.UTC(),
		NotAfterUTC:      c.NotAfter.UTC(),
		SerialNumber:     strings.ToUpper(c.SerialNumber.Text(16)),
		Version:          c.Version,
	}
}

// mergeSecrets keeps stored attestation material that a client left out on
// update (reads are redacted, so a read-modify-write must not wipe keys).
func mergeSecrets(next, prev *AttestationMechanism) {
	if next == nil || prev == nil || !strings.EqualFold(next.Type, prev.Type) {
		return
	}
	switch prev.Type {
	case AttestationSymmetricKey:
		if prev.SymmetricKey == nil {
			return
		}
		if next.SymmetricKey == nil {
			next.SymmetricKey = &SymmetricKeyAttestation{}
		}
		if next.SymmetricKey.PrimaryKey == "" {
			next.SymmetricKey.PrimaryKey = prev.SymmetricKey.PrimaryKey
		}
		if next.SymmetricKey.SecondaryKey == "" {
			next.SymmetricKey.SecondaryKey = prev.SymmetricKey.SecondaryKey
		}
	case AttestationX509:
		if prev.X509 == nil {
			return
		}
		if next.X509 == nil {
			cp := *prev.X509
			next.X509 = &cp
			return
		}
		keepCerts(&next.X509.ClientCertificates, prev.X509.ClientCertificates)
		keepCerts(&next.X509.SigningCertificates, prev.X509.SigningCertificates)
	case AttestationTPM:
		if next.TPM == nil {
			next.TPM = prev.TPM
		}
	}
}

func keepCerts(next **X509Certificates, prev *X509Certificates) {
	if prev == nil {
		return
	}
	if *next == nil {
		return
	}
	n := *next
	if n.Primary != nil && n.Primary.Certificate == "" && prev.Primary != nil {
		n.Primary.Certificate = prev.Primary.Certificate
	}
	if n.Secondary != nil && n.Secondary.Certificate == "" && prev.Secondary != nil {
		n.Secondary.Certificate = prev.Secondary.Certificate
	}
}

// redact removes secret key material for reads.
func redact(a *AttestationMechanism) *AttestationMechanism {
	if a == nil {
		return nil
	}
	cp := *a
	if a.SymmetricKey != nil {
		cp.SymmetricKey = &SymmetricKeyAttestation{}
	}
	return &cp
}
