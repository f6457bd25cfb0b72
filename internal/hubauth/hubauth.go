package hubauth

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/attest"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store"
)

// Reason is a stable machine-readable cause of a refused hub connection.
type Reason string

// The denial reasons. They are part of the operator API (the attempt log
// and `muster device why`): never rename one. Reasons shared with
// provisioning denials have the same text as package attest's.
const (
	// ReasonUsernameMalformed: the MQTT username is not
	// {hub}/{deviceId}[/{moduleId}]/?{query}, or names an invalid ID.
	ReasonUsernameMalformed Reason = "username_malformed"
	// ReasonClientIDMismatch: the client id is not the identity the
	// username names (deviceId, or deviceId/moduleId for a module).
	ReasonClientIDMismatch Reason = "client_id_mismatch"
	// ReasonHubHostMismatch: the username names another hub.
	ReasonHubHostMismatch Reason = "hub_host_mismatch"
	// ReasonNoCredential: neither a password nor a client certificate.
	ReasonNoCredential = Reason(attest.ReasonNoCredential)
	// ReasonSASMalformed: the password is not a SAS token.
	ReasonSASMalformed = Reason(attest.ReasonSASMalformed)
	// ReasonSASExpired: the SAS token's expiry (se) has passed.
	ReasonSASExpired = Reason(attest.ReasonSASExpired)
	// ReasonSASResourceMismatch: the token's sr does not cover the identity.
	ReasonSASResourceMismatch = Reason(attest.ReasonSASResourceMismatch)
	// ReasonSASSignatureMismatch: the token is not signed with any key of
	// the identity (or of the named policy).
	ReasonSASSignatureMismatch = Reason(attest.ReasonSASSignatureMismatch)
	// ReasonPolicyNotFound: the token's skn names no hub policy.
	ReasonPolicyNotFound Reason = "policy_not_found"
	// ReasonPolicyLacksDeviceConnect: the named policy lacks DeviceConnect.
	ReasonPolicyLacksDeviceConnect Reason = "policy_lacks_device_connect"
	// ReasonDeviceNotFound: no such device in the hub's registry.
	ReasonDeviceNotFound Reason = "device_not_found"
	// ReasonModuleNotFound: the device has no such module.
	ReasonModuleNotFound Reason = "module_not_found"
	// ReasonDeviceDisabled: the device's status is disabled (its modules
	// cannot connect either).
	ReasonDeviceDisabled Reason = "device_disabled"
	// ReasonAuthTypeMismatch: the credential presented is not the kind the
	// identity's authentication type requires (a SAS token for an X.509
	// identity, a certificate for a SAS identity, anything for "none").
	ReasonAuthTypeMismatch Reason = "auth_type_mismatch"
	// ReasonThumbprintMismatch: a selfSigned identity's certificate has
	// neither registered thumbprint.
	ReasonThumbprintMismatch Reason = "thumbprint_mismatch"
	// ReasonCNDeviceIDMismatch: a CA-signed certificate's subject CN is not
	// the device ID (module: the module ID or deviceId/moduleId).
	ReasonCNDeviceIDMismatch Reason = "cn_device_id_mismatch"
	// ReasonCertificateExpired: a certificate of the chain has expired.
	ReasonCertificateExpired = Reason(attest.ReasonCertificateExpired)
	// ReasonCertificateNotYetValid: a certificate of the chain is not valid yet.
	ReasonCertificateNotYetValid = Reason(attest.ReasonCertificateNotYetValid)
	// ReasonChainIncomplete: the chain stops below a trusted anchor with a
	// certificate whose issuer the client did not send.
	ReasonChainIncomplete = Reason(attest.ReasonChainIncomplete)
	// ReasonChainUntrusted: the chain does not verify to any trusted anchor.
	ReasonChainUntrusted = Reason(attest.ReasonChainUntrusted)
	// ReasonCANotVerified: the chain verifies only to a CA certificate whose
	// proof of possession is still outstanding.
	ReasonCANotVerified = Reason(attest.ReasonCANotVerified)
	// ReasonEKUNotClientAuth: the chain's extended key usages exclude
	// TLS client authentication.
	ReasonEKUNotClientAuth = Reason(attest.ReasonEKUNotClientAuth)
)

// MQTT 3.1.1 CONNACK return codes a transport sends for an outcome of
// Authenticate.
//
// The choice follows hub-edge-protocol §2.2: bad, expired or unauthorised
// credentials and unknown or disabled identities are all answered with
// ConnackNotAuthorized (the Node SDK maps it to UnauthorizedError; the C
// SDK reports a bad credential and keeps retrying, so a renewed token or a
// re-enabled device recovers). A client id that is not the identity named
// in the username is ConnackIdentifierRejected, and a username that does
// not parse is ConnackBadUsernameOrPassword: both are configuration errors
// that no retry fixes, and the C SDK stops retrying on them (Node maps both
// to UnauthorizedError). A failure of the service itself (an error that is
// not a *Denial) is ConnackServerUnavailable, which clients retry.
const (
	ConnackAccepted              byte = 0
	ConnackIdentifierRejected    byte = 2
	ConnackServerUnavailable     byte = 3
	ConnackBadUsernameOrPassword byte = 4
	ConnackNotAuthorized         byte = 5
)

// Authentication types as registry identities name them (Identity.AuthType).
const (
	AuthSAS                  = "sas"
	AuthSelfSigned           = "selfSigned"
	AuthCertificateAuthority = "certificateAuthority"
	AuthNone                 = registry.AuthNone
)

// RightDeviceConnect is the hub policy right that lets a policy's tokens
// connect as any device or module.
const RightDeviceConnect = "DeviceConnect"

// RealmHub is the access realm of hub policies (access.Policy.Realm).
const RealmHub = "hub"

// ProtocolMQTT is the attempt-log protocol of hub MQTT connections, used
// when Request.Protocol is empty.
const ProtocolMQTT = "hub-mqtt"

// Limits on what a client may present.
const (
	// MaxChainLength bounds the presented certificate chain.
	MaxChainLength = 16
	// DefaultClockSkew is tolerated on SAS expiry and certificate validity
	// when Options.ClockSkew is zero.
	DefaultClockSkew = 5 * time.Minute
	// maxShown caps client-controlled strings quoted in details and logs.
	maxShown = 160
)

// ErrNotFound is what Identities return (wrapped) for an identity that
// does not exist.
var ErrNotFound = errors.New("hubauth: identity not found")

// Request is one connection attempt as a transport received it. The
// transport interprets nothing: it passes what the client sent.
type Request struct {
	// ClientID, Username and Password are the MQTT CONNECT fields (an
	// absent password is "").
	ClientID string
	Username string
	Password string
	// Chain is the TLS client certificate chain as presented, leaf first;
	// empty when the client sent none. The TLS layer only requests the
	// certificate (and, by completing the handshake, proves the client
	// holds the leaf's key); every other check happens here.
	Chain []*x509.Certificate
	// RemoteAddr is the peer, for the attempt log.
	RemoteAddr string
	// Protocol names the transport in the attempt log (ProtocolMQTT when empty).
	Protocol string
}

// Identity is an authenticated connection's identity.
type Identity struct {
	DeviceID string
	// ModuleID is empty for a device connection.
	ModuleID string
	// AuthType is how the client proved itself: AuthSAS (a token signed
	// with the identity's key or a hub policy's key), AuthSelfSigned or
	// AuthCertificateAuthority.
	AuthType string
	// PolicyName names the hub policy whose key signed the token, when a
	// policy token was used.
	PolicyName string
	// Credential says which of two registered credentials matched:
	// "primary" or "secondary" (key or thumbprint); empty for CA-signed
	// certificates.
	Credential string
	// Anchor describes the trust anchor a CA-signed chain verified to.
	Anchor string
	// TokenExpiry is when the SAS token stops being accepted: its expiry
	// (se) plus the clock skew tolerance. The session must end then;
	// clients reconnect with a fresh token. Zero for X.509.
	TokenExpiry time.Time
	// CertificateExpiry is the X.509 leaf's notAfter. Zero for SAS.
	CertificateExpiry time.Time
}

// ClientID returns the MQTT client id of the identity: deviceId, or
// deviceId/moduleId for a module.
func (id *Identity) ClientID() string {
	if id.ModuleID == "" {
		return id.DeviceID
	}
	return id.DeviceID + "/" + id.ModuleID
}

// Denial is a refused connection. Detail and Hint are for the operator
// only; the client is told no more than ConnackCode.
type Denial struct {
	Reason Reason
	// Detail says what exactly failed (which field, key or certificate).
	Detail string
	// Hint says how to fix it.
	Hint string
	// ConnackCode is the MQTT CONNACK return code to answer with.
	ConnackCode byte
}

func (d *Denial) Error() string {
	s := "hub connection denied: " + string(d.Reason)
	if d.Detail != "" {
		s += ": " + d.Detail
	}
	return s
}

// ConnackCode returns the CONNACK return code for an outcome of
// Authenticate: ConnackAccepted for nil, the Denial's code for a *Denial,
// and ConnackServerUnavailable for any other error.
func ConnackCode(err error) byte {
	if err == nil {
		return ConnackAccepted
	}
	var d *Denial
	if errors.As(err, &d) {
		return d.ConnackCode
	}
	return ConnackServerUnavailable
}

// connackFor is the CONNACK code of each reason (see the Connack constants).
func connackFor(r Reason) byte {
	switch r {
	case ReasonClientIDMismatch:
		return ConnackIdentifierRejected
	case ReasonUsernameMalformed:
		return ConnackBadUsernameOrPassword
	}
	return ConnackNotAuthorized
}

func deny(r Reason, detail, hint string) *Denial {
	return &Denial{Reason: r, Detail: detail, Hint: hint, ConnackCode: connackFor(r)}
}

// Options configure an Authenticator.
type Options struct {
	// HubHostName is this hub's host name: usernames and token resources
	// must name it (case-insensitively). Required.
	HubHostName string
	// Identities reads device and module identities. Required.
	Identities Identities
	// Anchors gives CA-signed devices their trust; nil refuses every
	// certificateAuthority identity with chain_untrusted.
	Anchors Anchors
	// Policies resolves the skn of policy tokens; nil refuses every policy
	// token with policy_not_found.
	Policies Policies
	// Attempts receives every refusal. Required.
	Attempts store.Attempts
	// Now returns the current time (time.Now when nil).
	Now func() time.Time
	// ClockSkew is tolerated on SAS expiry and certificate validity: zero
	// means DefaultClockSkew, negative means none.
	ClockSkew time.Duration
	// Logger receives one line per refusal, never a secret (discarded when nil).
	Logger *slog.Logger
}

// Authenticator decides hub connections. It is safe for concurrent use.
type Authenticator struct {
	host     string
	ids      Identities
	anchors  Anchors
	policies Policies
	attempts store.Attempts
	now      func() time.Time
	skew     time.Duration
	log      *slog.Logger
}

// New returns an Authenticator.
func New(o Options) (*Authenticator, error) {
	host := strings.TrimSpace(o.HubHostName)
	if !validHost(host) {
		return nil, fmt.Errorf("hubauth: hub host name %q is not a host name (letters, digits, '-', '_' and '.')", o.HubHostName)
	}
	if o.Identities == nil {
		return nil, errors.New("hubauth: Options.Identities is required")
	}
	if o.Attempts == nil {
		return nil, errors.New("hubauth: Options.Attempts is required")
	}
	a := &Authenticator{host: host, ids: o.Identities, anchors: o.Anchors, policies: o.Policies,
		attempts: o.Attempts, now: o.Now, skew: o.ClockSkew, log: o.Logger}
	if a.now == nil {
		a.now = time.Now
	}
	switch {
	case a.skew == 0:
		a.skew = DefaultClockSkew
	case a.skew < 0:
		a.skew = 0
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	return a, nil
}

// HubHostName returns the hub host name usernames must name.
func (a *Authenticator) HubHostName() string { return a.host }

// Authenticate decides one connection attempt. It returns the identity, a
// *Denial (recorded in the attempt log and logged, without secrets), or a
// wrapped error of Identities or Anchors (a failure of the service, to be
// answered with ConnackServerUnavailable).
//
// Order of checks: the username, the client id, the hub host; then a
// policy token (a password whose SAS token names a policy with skn) is
// checked against the policy and authenticates any existing identity.
// Otherwise the identity is looked up and its authentication type decides
// the credential: "sas" needs the password, a token signed with the
// identity's own key for {hub}/devices/{id}[/modules/{mid}]; "selfSigned"
// and "certificateAuthority" need the certificate chain (a password sent
// along with a chain is then ignored). A disabled device is refused after
// its credential has been verified, so the attempt log tells a disabled
// device from an impostor.
func (a *Authenticator) Authenticate(ctx context.Context, req Request) (*Identity, error) {
	now := a.now()
	att := a.newAttempt(req, now)
	id, d, err := a.authenticate(ctx, req, now, att)
	if err != nil {
		return nil, err
	}
	if d != nil {
		a.deny(ctx, att, req.ClientID, d)
		return nil, d
	}
	return id, nil
}

// target is the identity a connection claims.
type target struct {
	deviceID, moduleID string
}

func (t target) String() string {
	if t.moduleID == "" {
		return fmt.Sprintf("device %q", t.deviceID)
	}
	return fmt.Sprintf("module %q of device %q", t.moduleID, t.deviceID)
}

func (a *Authenticator) authenticate(ctx context.Context, req Request, now time.Time, att *store.Attempt) (*Identity, *Denial, error) {
	u, err := ParseUsername(req.Username)
	if err != nil {
		return nil, deny(ReasonUsernameMalformed, err.Error(),
			"the MQTT username must be {hub}/{deviceId}/?api-version=… (a module: {hub}/{deviceId}/{moduleId}/?api-version=…)"), nil
	}
	t := target{deviceID: u.DeviceID, moduleID: u.ModuleID}
	att.RegistrationID = strings.ToLower(t.deviceID)
	want := t.deviceID
	if t.moduleID != "" {
		want += "/" + t.moduleID
	}
	if req.ClientID != want {
		return nil, deny(ReasonClientIDMismatch,
			fmt.Sprintf("the MQTT client id is %s but the username names %s, whose client id is %q", quote(req.ClientID), t, want),
			"set the client id to the device ID (a module: {deviceId}/{moduleId}), the identity the username names"), nil
	}
	if !strings.EqualFold(u.HubHost, a.host) {
		return nil, deny(ReasonHubHostMismatch,
			fmt.Sprintf("the username names hub %q; this hub is %q", u.HubHost, a.host),
			"use this hub's host name as HostName in the connection string (it stays the hub's name when connecting through a gateway)"), nil
	}

	var (
		tok      *sas.Token
		parseErr error
	)
	if req.Password != "" {
		att.Attestation = "sas"
		tok, parseErr = sas.Parse(req.Password)
		if parseErr == nil && tok.KeyName != "" {
			return a.policyToken(ctx, t, tok, now)
		}
	} else if len(req.Chain) > 0 {
		att.Attestation = "x509"
	}
	if req.Password == "" && len(req.Chain) == 0 {
		return nil, deny(ReasonNoCredential,
			fmt.Sprintf("%s sent no password (SAS token) and no TLS client certificate", t),
			"send a SAS token as the MQTT password, or present the device certificate in the TLS handshake"), nil
	}
	if parseErr != nil && len(req.Chain) == 0 {
		return nil, deny(ReasonSASMalformed, "the MQTT password is not a SAS token: "+parseErr.Error(),
			"send \"SharedAccessSignature sr={hub}%2Fdevices%2F{deviceId}&sig={signature}&se={expiry}\" as the password"), nil
	}

	dev, mod, d, err := a.lookup(ctx, t)
	if d != nil || err != nil {
		return nil, d, err
	}
	auth := dev.Authentication
	if mod != nil {
		auth = mod.Authentication
	}
	var id *Identity
	switch auth.Type {
	case AuthSAS:
		att.Attestation = "sas"
		if req.Password == "" {
			return nil, deny(ReasonAuthTypeMismatch,
				fmt.Sprintf("%s uses SAS authentication, but the client presented an X.509 certificate (%s) and no SAS token", t, dn(req.Chain[0])),
				"connect with a SAS token signed with the identity's key as the MQTT password, or change the identity's authentication type to selfSigned or certificateAuthority"), nil
		}
		if parseErr != nil {
			return nil, deny(ReasonSASMalformed, "the MQTT password is not a SAS token: "+parseErr.Error(),
				"send \"SharedAccessSignature sr={hub}%2Fdevices%2F{deviceId}&sig={signature}&se={expiry}\" as the password"), nil
		}
		id, d = a.identityToken(t, tok, auth, now)
	case AuthSelfSigned, AuthCertificateAuthority:
		att.Attestation = "x509"
		if len(req.Chain) == 0 {
			return nil, deny(ReasonAuthTypeMismatch,
				fmt.Sprintf("%s uses X.509 %s authentication, but the client sent a SAS token and no TLS client certificate", t, auth.Type),
				"present the identity's certificate in the TLS handshake (and no password), or change the identity's authentication type to sas"), nil
		}
		id, d, err = a.authX509(ctx, t, dev, auth, req.Chain, now)
	default:
		what := fmt.Sprintf("authentication type %q", auth.Type)
		if auth.Type == "" {
			what = "no authentication type"
		}
		return nil, deny(ReasonAuthTypeMismatch,
			fmt.Sprintf("%s has %s: it has no credential of its own", t, what),
			"give the identity a credential (sas, selfSigned or certificateAuthority), or connect with a token of a hub policy that has DeviceConnect"), nil
	}
	if d != nil || err != nil {
		return nil, d, err
	}
	if d := disabled(t, dev); d != nil {
		return nil, d, nil
	}
	return id, nil, nil
}

// lookup reads the device and, for a module target, the module.
func (a *Authenticator) lookup(ctx context.Context, t target) (*registry.Device, *Module, *Denial, error) {
	dev, err := a.ids.Device(ctx, t.deviceID)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil, deny(ReasonDeviceNotFound,
			fmt.Sprintf("device %q does not exist in hub %s", t.deviceID, a.host),
			"create the device identity (or provision it through DPS); device IDs are case-sensitive"), nil
	case err != nil:
		return nil, nil, nil, fmt.Errorf("look up device %q: %w", t.deviceID, err)
	case dev == nil:
		return nil, nil, nil, fmt.Errorf("look up device %q: identity source returned no device and no error", t.deviceID)
	}
	if t.moduleID == "" {
		return dev, nil, nil, nil
	}
	mod, err := a.ids.Module(ctx, t.deviceID, t.moduleID)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil, deny(ReasonModuleNotFound,
			fmt.Sprintf("device %q has no module %q", t.deviceID, t.moduleID),
			"create the module identity; module IDs are case-sensitive"), nil
	case err != nil:
		return nil, nil, nil, fmt.Errorf("look up module %q of device %q: %w", t.moduleID, t.deviceID, err)
	case mod == nil:
		return nil, nil, nil, fmt.Errorf("look up module %q of device %q: identity source returned no module and no error", t.moduleID, t.deviceID)
	}
	return dev, mod, nil, nil
}

// disabled refuses a connection of a disabled device or of its modules.
func disabled(t target, dev *registry.Device) *Denial {
	if !strings.EqualFold(dev.Status, registry.StatusDisabled) {
		return nil
	}
	detail := fmt.Sprintf("device %q is disabled", dev.DeviceID)
	if t.moduleID != "" {
		detail = fmt.Sprintf("module %q cannot connect: its device %q is disabled", t.moduleID, dev.DeviceID)
	}
	if dev.StatusReason != nil && *dev.StatusReason != "" {
		detail += fmt.Sprintf(" (status reason: %s)", quote(*dev.StatusReason))
	}
	return deny(ReasonDeviceDisabled, detail, "enable the device (status enabled) if it should connect")
}

// newAttempt starts the attempt-log record of a request. Until the username
// parses, the record is keyed by the device part of the client id.
func (a *Authenticator) newAttempt(req Request, now time.Time) *store.Attempt {
	proto := req.Protocol
	if proto == "" {
		proto = ProtocolMQTT
	}
	dev, _, _ := strings.Cut(req.ClientID, "/")
	return &store.Attempt{
		ID:             attemptID(now),
		Time:           now.UTC(),
		RegistrationID: strings.ToLower(clip(dev)),
		Protocol:       proto,
		RemoteAddr:     req.RemoteAddr,
	}
}

// deny records and logs a refusal.
func (a *Authenticator) deny(ctx context.Context, att *store.Attempt, clientID string, d *Denial) {
	att.Outcome = "denied"
	att.Reason = string(d.Reason)
	att.Hint = d.Hint
	if d.Detail != "" {
		att.Hint = strings.TrimSpace(strings.TrimSuffix(d.Detail, ".") + ". " + d.Hint)
	}
	a.log.Info("hub connection denied", "clientId", clip(clientID), "protocol", att.Protocol,
		"remoteAddr", att.RemoteAddr, "reason", string(d.Reason), "detail", d.Detail, "connack", d.ConnackCode)
	if err := a.attempts.AppendAttempt(context.WithoutCancel(ctx), *att); err != nil {
		a.log.Error("record hub connection attempt", "deviceId", att.RegistrationID, "err", err)
	}
}

// attemptID returns a time-ordered unique attempt ID.
func attemptID(t time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%016x%s", t.UnixNano(), hex.EncodeToString(b[:]))
}

// clip shortens a client-controlled string for logs and details.
func clip(s string) string {
	if len(s) <= maxShown {
		return s
	}
	return s[:maxShown] + "…"
}

// quote quotes a client-controlled string, shortened.
func quote(s string) string {
	if len(s) <= maxShown {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q…", s[:maxShown])
}

// dn is a certificate's subject as the operator reads it.
func dn(c *x509.Certificate) string {
	if c == nil {
		return "empty certificate"
	}
	return pki.DistinguishedName(c.Subject)
}
