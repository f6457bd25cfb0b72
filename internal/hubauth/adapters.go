package hubauth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/registry"
)

// DeviceGetter reads device identities; *registry.Hub implements it.
// A missing device is an error matching registry.ErrNotFound.
type DeviceGetter interface {
	GetDevice(ctx context.Context, deviceID string) (*registry.Device, error)
}

// ModuleGetter reads module identities; *registry.Hub implements it. A
// missing module is an error matching registry.ErrModuleNotFound, a missing
// device one matching registry.ErrNotFound.
type ModuleGetter interface {
	GetModule(ctx context.Context, deviceID, moduleID string) (*registry.Module, error)
}

// RegistryIdentities adapts a hub registry to Identities. Module identities
// are read when the registry is also a ModuleGetter (*registry.Hub is);
// otherwise every module is reported not found.
type RegistryIdentities struct {
	devices DeviceGetter
}

// NewRegistryIdentities returns Identities over a hub registry.
func NewRegistryIdentities(devices DeviceGetter) *RegistryIdentities {
	return &RegistryIdentities{devices: devices}
}

// Device returns a device identity; a missing one is an error matching
// ErrNotFound (and registry.ErrNotFound).
func (r *RegistryIdentities) Device(ctx context.Context, deviceID string) (*registry.Device, error) {
	d, err := r.devices.GetDevice(ctx, deviceID)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("get device %q: %w", deviceID, err)
	}
	return d, nil
}

// Module returns a module identity; a missing module (or device) is an
// error matching ErrNotFound.
func (r *RegistryIdentities) Module(ctx context.Context, deviceID, moduleID string) (*Module, error) {
	mg, ok := r.devices.(ModuleGetter)
	if !ok {
		return nil, fmt.Errorf("%w: module %q of device %q (the registry has no module identities)", ErrNotFound, moduleID, deviceID)
	}
	m, err := mg.GetModule(ctx, deviceID, moduleID)
	if errors.Is(err, registry.ErrModuleNotFound) || errors.Is(err, registry.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("get module %q of device %q: %w", moduleID, deviceID, err)
	}
	return &Module{DeviceID: m.DeviceID, ModuleID: m.ModuleID, Authentication: m.Authentication}, nil
}

// EnrollmentTrust is the part of the enrollment service the trust anchors
// come from; *enroll.Service implements it. GetGroup returns an error
// matching enroll.ErrNotFound for a missing group, CACertificate nil, nil
// for a missing CA.
type EnrollmentTrust interface {
	GetGroup(ctx context.Context, id string) (*enroll.EnrollmentGroup, error)
	CACertificate(ctx context.Context, name string) (*enroll.CACertificate, error)
	ListCAs(ctx context.Context) ([]*enroll.CACertificate, error)
}

// certCacheSize bounds the cache of parsed anchor certificates.
const certCacheSize = 512

// EnrollmentAnchors adapts the enrollment service to Anchors: a device's
// anchors are every CA certificate registered with the service (verified
// or not: unverified ones only explain a ca_not_verified refusal) and, when
// an X.509 enrollment group provisioned the device, the group's signing
// certificates and CA references. Parsed certificates are cached. It is
// safe for concurrent use.
type EnrollmentAnchors struct {
	src   EnrollmentTrust
	certs *pki.ParseCache
}

// NewEnrollmentAnchors returns Anchors over the enrollment service.
func NewEnrollmentAnchors(src EnrollmentTrust) *EnrollmentAnchors {
	return &EnrollmentAnchors{src: src, certs: pki.NewParseCache(certCacheSize)}
}

// TrustAnchors returns the anchors for device. Certificates that do not
// parse and references to missing CAs or groups are skipped and described
// in Trust.Notes; only failures of the enrollment service are errors.
func (e *EnrollmentAnchors) TrustAnchors(ctx context.Context, device *registry.Device) (Trust, error) {
	var tr Trust
	cas, err := e.src.ListCAs(ctx)
	if err != nil {
		return Trust{}, fmt.Errorf("list CA certificates: %w", err)
	}
	listed := map[string]bool{}
	for _, ca := range cas {
		if ca == nil {
			continue
		}
		cert, err := e.parseFirst(ca.Certificate)
		if err != nil {
			tr.Notes = append(tr.Notes, fmt.Sprintf("CA certificate %q does not parse: %v", ca.Name, err))
			continue
		}
		listed[strings.ToLower(ca.Name)] = true
		tr.Anchors = append(tr.Anchors, Anchor{Cert: cert, Source: AnchorCACertificate, Name: ca.Name, Verified: ca.IsVerified})
	}
	if device == nil || device.ProvisionedBy == nil || device.ProvisionedBy.EnrollmentGroupID == "" {
		return tr, nil
	}
	gid := device.ProvisionedBy.EnrollmentGroupID
	g, err := e.src.GetGroup(ctx, gid)
	if errors.Is(err, enroll.ErrNotFound) {
		tr.Notes = append(tr.Notes, fmt.Sprintf("device %q was provisioned by enrollment group %s, which no longer exists", device.DeviceID, gid))
		return tr, nil
	}
	if err != nil {
		return Trust{}, fmt.Errorf("get enrollment group %s: %w", gid, err)
	}
	if g.Attestation == nil || g.Attestation.X509 == nil {
		typ := "no"
		if g.Attestation != nil {
			typ = g.Attestation.Type
		}
		tr.Notes = append(tr.Notes, fmt.Sprintf("device %q was provisioned by enrollment group %s, which has %s attestation, not x509", device.DeviceID, gid, typ))
		return tr, nil
	}
	x := g.Attestation.X509
	if sc := x.SigningCertificates; sc != nil {
		for _, s := range []struct {
			slot string
			w    *enroll.X509CertificateWithInfo
		}{{"primary", sc.Primary}, {"secondary", sc.Secondary}} {
			if s.w == nil || s.w.Certificate == "" {
				continue
			}
			cert, err := e.parseFirst(s.w.Certificate)
			if err != nil {
				tr.Notes = append(tr.Notes, fmt.Sprintf("the %s signing certificate of enrollment group %s does not parse: %v", s.slot, gid, err))
				continue
			}
			tr.Anchors = append(tr.Anchors, Anchor{Cert: cert, Source: AnchorSigningCertificate, GroupID: g.EnrollmentGroupID, Slot: s.slot, Verified: true})
		}
	}
	if refs := x.CAReferences; refs != nil {
		for _, s := range []struct{ slot, name string }{{"primary", refs.Primary}, {"secondary", refs.Secondary}} {
			if s.name == "" || listed[strings.ToLower(s.name)] {
				continue // a listed CA is an anchor already, with the same verification state
			}
			ca, err := e.src.CACertificate(ctx, s.name)
			if err != nil {
				return Trust{}, fmt.Errorf("get CA certificate %q referenced by enrollment group %s: %w", s.name, gid, err)
			}
			if ca == nil {
				tr.Notes = append(tr.Notes, fmt.Sprintf("enrollment group %s references CA certificate %q, which does not exist", gid, s.name))
				continue
			}
			cert, err := e.parseFirst(ca.Certificate)
			if err != nil {
				tr.Notes = append(tr.Notes, fmt.Sprintf("CA certificate %q referenced by enrollment group %s does not parse: %v", s.name, gid, err))
				continue
			}
			tr.Anchors = append(tr.Anchors, Anchor{Cert: cert, Source: AnchorCAReference, Name: ca.Name, GroupID: g.EnrollmentGroupID, Slot: s.slot, Verified: ca.IsVerified})
		}
	}
	return tr, nil
}

// parseFirst returns the first certificate of an enrolled or registered
// certificate text, through the shared parse cache.
func (e *EnrollmentAnchors) parseFirst(s string) (*x509.Certificate, error) {
	certs, err := e.certs.Parse(s)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}
