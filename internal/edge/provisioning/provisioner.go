package provisioning

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/client/dpsclient"
	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/provision"
)

// ErrNotDPS is returned by New and IdentityOf for a configuration that does
// not provision through DPS (provisioning.source is not "dps").
var ErrNotDPS = errors.New("the configuration does not provision through DPS")

// Options configures a Provisioner.
type Options struct {
	// Config is the loaded configuration (config.Load); its provisioning
	// source must be "dps". Required.
	Config *config.Config
	// Homedir is the runtime's state directory holding the cache; empty
	// means Config.Homedir.
	Homedir string
	// Client creates the DPS client for a registration; nil means
	// dpsclient.New. Tests inject their own.
	Client func(dpsclient.Options) (*dpsclient.Client, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the decisions and registrations; nil discards. Keys
	// are never logged.
	Logger *slog.Logger
}

// Assignment is the hub assignment the device is to use.
type Assignment struct {
	// Hub is the host name of the assigned hub.
	Hub string
	// DeviceID is the device ID in that hub.
	DeviceID string
	// RegistrationID is the DPS registration ID the assignment is for.
	RegistrationID string
	// Substatus is the registration substatus (see provision.Substatus*).
	Substatus string
	// Payload is the payload DPS returned, if any.
	Payload json.RawMessage
	// ProvisionedAt is when the registration completed.
	ProvisionedAt time.Time
	// Registered is true when this call registered with DPS, false when
	// the cached assignment is used.
	Registered bool
	// Why is the reason of the decision, as Decide gave it.
	Why string
	// Changed is true when a registration assigned another hub or device ID
	// than the previous cached assignment: state tied to the old hub (module
	// identities, twins) must not be reused. False when there was no cache.
	Changed bool
	// DPSError is set when the registration failed at startup and the
	// cached assignment of the same identity is used instead (offline
	// start); the daemon should retry later.
	DPSError error
	// CacheError is set when the registration succeeded but the new
	// assignment could not be saved; the next start will register again.
	CacheError error
}

// Provisioner gets and caches the device's hub assignment. It is safe for
// concurrent use; calls are serialised.
type Provisioner struct {
	cfg       *config.Config
	homedir   string
	newClient func(dpsclient.Options) (*dpsclient.Client, error)
	now       func() time.Time
	log       *slog.Logger
	mu        sync.Mutex
}

// New returns a Provisioner for a DPS configuration.
func New(opts Options) (*Provisioner, error) {
	c := opts.Config
	if c == nil {
		return nil, errors.New("new provisioner: Config is nil")
	}
	if c.Provisioning.Source != config.SourceDPS {
		return nil, fmt.Errorf("new provisioner: %w (provisioning.source is %q)", ErrNotDPS, c.Provisioning.Source)
	}
	if c.Provisioning.Attestation == nil {
		return nil, errors.New("new provisioner: provisioning.attestation is missing")
	}
	p := &Provisioner{cfg: c, homedir: opts.Homedir, newClient: opts.Client, now: opts.Now, log: opts.Logger}
	if p.homedir == "" {
		p.homedir = c.Homedir
	}
	if p.homedir == "" {
		return nil, errors.New("new provisioner: no home directory (Options.Homedir and homedir are empty)")
	}
	if p.newClient == nil {
		p.newClient = dpsclient.New
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

// Reprovision registers with DPS whatever the cache holds: `iotedge system
// reprovision`. It is Ensure(ctx, Manual).
func (p *Provisioner) Reprovision(ctx context.Context) (*Assignment, error) {
	return p.Ensure(ctx, Manual)
}

// Ensure returns the assignment the device is to use on the given
// occasion: the cached one, or a new one from DPS, as Decide rules for the
// configured auto_reprovisioning_mode. A new assignment replaces the cache.
//
// When a registration fails at Startup and the cache holds an assignment
// of the same identity, that assignment is returned with DPSError set, so
// a device whose DPS is unreachable still starts (AlwaysOnStartup). In
// every other case a failed registration is an error (wrapping the
// dpsclient error: *dpsclient.StatusError, *dpsclient.FailedError, …) and
// the cache is left as it was.
//
// Ensure does not pace itself: a hub that keeps rejecting the device after
// a registration would make every HubRejected call register again, so the
// caller backs off between calls with the same reason.
func (p *Provisioner) Ensure(ctx context.Context, reason Reason) (*Assignment, error) {
	switch reason {
	case Startup, HubRejected, HubUnreachable, Manual:
	default:
		return nil, fmt.Errorf("ensure provisioning: unknown reason %d", int(reason))
	}
	p.mu.Lock()
	defer p.mu.Unlock()

	id, cred, err := loadIdentity(p.cfg)
	if err != nil {
		return nil, fmt.Errorf("ensure provisioning: %w", err)
	}
	cache, err := LoadCache(p.homedir)
	if err != nil {
		if !errors.Is(err, ErrNoCache) {
			p.log.Warn("provisioning cache unusable; treating the device as not provisioned", "error", err)
		}
		cache = nil
	}
	mode := p.cfg.AutoReprovisioningMode
	register, why := Decide(mode, reason, cache, id)
	p.log.Info("provisioning decision", "reason", reason.String(), "mode", mode, "register", register, "why", why, "registrationId", id.RegistrationID)
	if !register {
		return fromCache(cache, why), nil
	}

	res, err := p.register(ctx, id, cred)
	if err != nil {
		if reason == Startup && cache != nil && cache.Mismatch(id) == "" && ctx.Err() == nil {
			p.log.Warn("registration failed at startup; using the cached assignment", "error", err, "hub", cache.AssignedHub, "deviceId", cache.DeviceID)
			a := fromCache(cache, why+"; registration failed, using the cached assignment")
			a.DPSError = err
			return a, nil
		}
		return nil, fmt.Errorf("register %q with DPS: %w", id.RegistrationID, err)
	}
	next := &Cache{
		Version:        CacheVersion,
		AssignedHub:    res.AssignedHub,
		DeviceID:       res.DeviceID,
		RegistrationID: id.RegistrationID,
		IDScope:        id.IDScope,
		Endpoint:       id.Endpoint,
		Credential:     id.Credential,
		ProvisionedAt:  p.now().UTC(),
		Substatus:      res.Substatus,
		Payload:        res.Payload,
	}
	a := fromCache(next, why)
	a.Registered = true
	if cache != nil {
		a.Changed = !strings.EqualFold(cache.AssignedHub, next.AssignedHub) || cache.DeviceID != next.DeviceID
	}
	p.log.Info("provisioned", "hub", next.AssignedHub, "deviceId", next.DeviceID, "substatus", next.Substatus, "changed", a.Changed)
	if err := SaveCache(p.homedir, next); err != nil {
		p.log.Error("could not save the provisioning cache; the next start registers again", "error", err)
		a.CacheError = err
	}
	return a, nil
}

// register performs one DPS registration.
func (p *Provisioner) register(ctx context.Context, id Identity, cred dpsclient.Credential) (*provision.DeviceRegistrationResult, error) {
	roots, err := p.cfg.TrustBundle()
	if err != nil {
		return nil, err
	}
	payload, err := p.cfg.Payload()
	if err != nil {
		return nil, err
	}
	client, err := p.newClient(dpsclient.Options{
		Endpoint:  id.Endpoint,
		IDScope:   id.IDScope,
		Transport: p.cfg.Provisioning.Transport,
		RootCAs:   roots,
		Logger:    p.log,
		Now:       p.now,
	})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	return client.Register(ctx, dpsclient.Device{RegistrationID: id.RegistrationID, Credential: cred, Payload: payload})
}

// fromCache describes a cached assignment.
func fromCache(c *Cache, why string) *Assignment {
	return &Assignment{
		Hub:            c.AssignedHub,
		DeviceID:       c.DeviceID,
		RegistrationID: c.RegistrationID,
		Substatus:      c.Substatus,
		Payload:        c.Payload,
		ProvisionedAt:  c.ProvisionedAt,
		Why:            why,
	}
}

// IdentityOf returns the identity a DPS configuration describes, reading
// its credential (key or certificate and private key) to fingerprint it.
func IdentityOf(c *config.Config) (Identity, error) {
	id, _, err := loadIdentity(c)
	return id, err
}

// loadIdentity returns the identity of a DPS configuration and the
// credential to register with.
func loadIdentity(c *config.Config) (Identity, dpsclient.Credential, error) {
	var cred dpsclient.Credential
	pr := &c.Provisioning
	if pr.Source != config.SourceDPS || pr.Attestation == nil {
		return Identity{}, cred, fmt.Errorf("read the device identity: %w (provisioning.source is %q)", ErrNotDPS, pr.Source)
	}
	regID, err := c.RegistrationID()
	if err != nil {
		return Identity{}, cred, fmt.Errorf("read the registration ID: %w", err)
	}
	ep, err := config.NormalizeEndpoint(pr.GlobalEndpoint, pr.Transport)
	if err != nil {
		return Identity{}, cred, fmt.Errorf("read provisioning.global_endpoint: %w", err)
	}
	id := Identity{IDScope: pr.IDScope, RegistrationID: regID, Endpoint: ep}
	switch m := pr.Attestation.Method; m {
	case config.MethodSymmetricKey:
		key, err := c.SymmetricKey()
		if err != nil {
			return Identity{}, cred, fmt.Errorf("read the symmetric key: %w", err)
		}
		id.Credential = fingerprint(FingerprintSymmetricKey, key)
		cred.SymmetricKey = base64.StdEncoding.EncodeToString(key)
	case config.MethodX509:
		cert, err := c.IdentityCertificate()
		if err != nil {
			return Identity{}, cred, fmt.Errorf("read the identity certificate: %w", err)
		}
		id.Credential = fingerprint(FingerprintX509, cert.Leaf.Raw)
		cred.Certificate = &cert
	default:
		return Identity{}, cred, fmt.Errorf("read the device identity: provisioning.attestation.method %q is %w", m, config.ErrUnsupported)
	}
	return id, cred, nil
}
