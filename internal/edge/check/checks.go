package check

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/edge/config"
	"github.com/muster-iot/muster/internal/edge/provisioning"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/sas"
)

// Sections of the text output.
const (
	SectionConfiguration = "Configuration checks"
	SectionConnectivity  = "Connectivity checks"
)

// Check IDs, upstream's where upstream has the check.
const (
	IDConfig        = "config-well-formed"
	IDIdentity      = "identity-credential"
	IDExpiry        = "identity-certificate-expiry"
	IDClock         = "host-local-time"
	IDProvisioning  = "provisioning-cached"
	IDDPS           = "host-connect-dps-endpoint"
	IDHub           = "host-connect-iothub-mqtt"
	attestationKeys = "provisioning.attestation"
)

// Thresholds of the checks.
const (
	// ExpiryWarning is how close to its end a certificate's validity
	// makes the expiry check warn.
	ExpiryWarning = 30 * 24 * time.Hour
	// ClockWarning and ClockError are the clock skews at which the clock
	// check warns and fails. Muster refuses SAS tokens beyond five minutes
	// of skew.
	ClockWarning = time.Minute
	ClockError   = 5 * time.Minute
)

// time2038 is the last second a signed 32-bit time_t represents.
var time2038 = time.Date(2038, time.January, 19, 3, 14, 7, 0, time.UTC)

// rootHint is the end of the fixes that need more privileges.
const rootHint = "Run iotedge check as root (sudo iotedge check), or as Administrator on Windows: the runtime's files are readable by their owner only."

// Default returns the checks of `iotedge check`, in run order.
func Default() []Check {
	return []Check{
		{ID: IDConfig, Description: "configuration file is well-formed", Section: SectionConfiguration, Run: checkConfig},
		{ID: IDIdentity, Description: "identity credential is readable and valid", Section: SectionConfiguration, Needs: []string{IDConfig}, Run: checkIdentity},
		{ID: IDExpiry, Description: "production readiness: identity certificates expiry", Section: SectionConfiguration, Needs: []string{IDIdentity}, Run: checkExpiry},
		{ID: IDClock, Description: "host time is close to reference time", Section: SectionConfiguration, Needs: []string{IDConfig}, Run: checkClock},
		{ID: IDProvisioning, Description: "provisioning result is cached and matches the configuration", Section: SectionConfiguration, Needs: []string{IDIdentity}, Run: checkProvisioning},
		{ID: IDDPS, Description: "host can connect to and perform TLS handshake with DPS endpoint", Section: SectionConnectivity, Needs: []string{IDConfig}, Run: checkDPS},
		{ID: IDHub, Description: "host can connect to and perform TLS handshake with iothub MQTT port", Section: SectionConnectivity, Needs: []string{IDConfig}, Run: checkHub},
	}
}

func pass(format string, args ...any) Result {
	return Result{Status: Pass, Message: fmt.Sprintf(format, args...)}
}

func warn(message, fix string) Result { return Result{Status: Warn, Message: message, Fix: fix} }

func fail(message, fix string) Result { return Result{Status: Fail, Message: message, Fix: fix} }

// fileFix is the fix for an unreadable file, by cause.
func fileFix(err error, otherwise string) string {
	if errors.Is(err, fs.ErrPermission) {
		return rootHint
	}
	return otherwise
}

// readSmallFile reads a regular file of at most limit bytes.
func readSmallFile(path string, limit int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s has %d bytes, more than the %d-byte limit", path, fi.Size(), limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s has more than the %d-byte limit", path, limit)
	}
	return b, nil
}

// checkConfig parses the configuration and checks the files it names,
// except the identity files (checkIdentity's).
func checkConfig(_ context.Context, env *Env) Result {
	path := env.ConfigPath
	apply := fmt.Sprintf("then run `iotedge config apply -c %s`.", path)
	b, err := readSmallFile(path, config.MaxConfigSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fail(fmt.Sprintf("the configuration file %s does not exist", path),
			"Create it with `iotedge init` (or write it and install it with `iotedge config apply -c FILE`); pass -c to check another file.")
	case err != nil:
		return fail(fmt.Sprintf("could not read the configuration file %s: %v", path, err), fileFix(err, "Make "+path+" a regular file readable by this user."))
	}
	c, err := config.Parse(b)
	if err != nil {
		return fail(fmt.Sprintf("%s is not a valid configuration: %v", path, err), "Correct the keys named above, "+apply)
	}
	var ve *config.ValidationError
	if err := c.CheckFiles(); errors.As(err, &ve) {
		var msgs []string
		for _, p := range ve.Problems {
			if p.Key != attestationKeys && !strings.HasPrefix(p.Key, attestationKeys+".") {
				msgs = append(msgs, p.String())
			}
		}
		if len(msgs) > 0 {
			return fail(fmt.Sprintf("%s names files that cannot be used:\n%s", path, strings.Join(msgs, "\n")),
				"Fix the files named above (trust_bundle_cert: PEM CA certificates; provisioning.payload.uri: a JSON file), "+apply)
		}
	} else if err != nil {
		return fail(fmt.Sprintf("could not check the files %s names: %v", path, err), fileFix(err, "Fix the files named above, "+apply))
	}
	env.Config = c
	pr := &c.Provisioning
	if pr.Source == config.SourceDPS && pr.Attestation != nil {
		return pass("%s: provisioning through DPS (%s, %s over %s), auto_reprovisioning_mode %s", path, pr.IDScope, pr.Attestation.Method, pr.Transport, c.AutoReprovisioningMode)
	}
	return pass("%s: provisioning source %s", path, pr.Source)
}

// checkIdentity checks the credential the device authenticates with.
func checkIdentity(_ context.Context, env *Env) Result {
	c := env.Config
	pr := &c.Provisioning
	if pr.Source == config.SourceManual {
		cs, err := sas.ParseConnectionString(pr.ConnectionString)
		if err != nil {
			return fail("provisioning.connection_string: "+err.Error(), "Give the edge device's connection string, as the hub shows it, then run `iotedge config apply`.")
		}
		return pass("device %q of hub %s authenticates with the connection string's key", cs.DeviceID, cs.HostName)
	}
	if pr.Attestation == nil {
		return fail("provisioning.attestation is missing", "Add the [provisioning.attestation] section, then run `iotedge config apply`.")
	}
	switch pr.Attestation.Method {
	case config.MethodSymmetricKey:
		return checkSymmetricKey(env)
	case config.MethodX509:
		return checkX509(env)
	default:
		return fail(fmt.Sprintf("provisioning.attestation.method %q is not supported", pr.Attestation.Method), "Use method = \"symmetric_key\" or \"x509\".")
	}
}

func checkSymmetricKey(env *Env) Result {
	c := env.Config
	a := c.Provisioning.Attestation
	key, err := c.SymmetricKey()
	if err != nil {
		fix := "Give the device's base64 key as symmetric_key = { value = \"…\" } (the enrollment's primary or secondary key; for an enrollment group the key derived with `muster key derive --group-key KEY --registration-id ID`), then run `iotedge config apply`, which moves it to a key file."
		switch {
		case errors.Is(err, fs.ErrPermission):
			fix = rootHint
		case errors.Is(err, fs.ErrNotExist):
			fix = "Create the key file with the device's raw key bytes, or give the base64 key inline as symmetric_key = { value = \"…\" } and run `iotedge config apply`, which writes the key file."
		}
		return fail(err.Error(), fix)
	}
	source := "inline value"
	if a.SymmetricKey != nil && a.SymmetricKey.URI != "" {
		source = a.SymmetricKey.URI
	}
	return pass("registration ID %q attests with a %d-byte symmetric key (%s)", a.RegistrationID, len(key), source)
}

func checkX509(env *Env) Result {
	c := env.Config
	a := c.Provisioning.Attestation
	certPath, keyPath, err := c.IdentityFiles()
	if err != nil {
		return fail(err.Error(), "Set identity_cert and identity_pk to file URIs of the PEM certificate chain and its private key, then run `iotedge config apply`.")
	}
	certPEM, err := readSmallFile(certPath, pki.MaxInputSize)
	if err != nil {
		return fail(fmt.Sprintf("%s.identity_cert: %v", attestationKeys, err), fileFix(err, "Install the device's identity certificate chain (PEM, device certificate first) at "+certPath+", or point identity_cert at it."))
	}
	chain, err := pki.ParseCertificates(certPEM)
	if err != nil {
		return fail(fmt.Sprintf("%s.identity_cert: %s: %v", attestationKeys, certPath, err), "The file must hold the PEM certificate chain of the device, device certificate first, followed by its issuers.")
	}
	leaf := chain[0]
	name := pki.DistinguishedName(leaf.Subject)
	if leaf.BasicConstraintsValid && leaf.IsCA {
		return fail(fmt.Sprintf("%s.identity_cert: the first certificate of %s (%s) is a CA certificate", attestationKeys, certPath, name),
			"Put the device's own certificate first in the file, followed by its issuers.")
	}
	keyPEM, err := readSmallFile(keyPath, pki.MaxInputSize)
	if err != nil {
		return fail(fmt.Sprintf("%s.identity_pk: %v", attestationKeys, err), fileFix(err, "Install the identity certificate's private key (PEM) at "+keyPath+", or point identity_pk at it."))
	}
	key, err := pki.ParsePrivateKey(keyPEM)
	if err != nil {
		return fail(fmt.Sprintf("%s.identity_pk: %s: %v", attestationKeys, keyPath, err), "The file must hold the unencrypted PEM private key of the identity certificate.")
	}
	if !pki.KeyMatches(leaf, key) {
		return fail(fmt.Sprintf("%s.identity_pk: the private key in %s does not belong to the certificate %s in %s", attestationKeys, keyPath, name, certPath),
			"identity_pk must name the private key the identity certificate was issued for; if the certificate was reissued with a new key, install that key too.")
	}
	cn := leaf.Subject.CommonName
	switch {
	case a.RegistrationID == "" && !enroll.ValidRegistrationID(cn):
		return fail(fmt.Sprintf("%s.registration_id is not set and the CN %q of %s is not a valid registration ID", attestationKeys, cn, certPath),
			"Issue the device a certificate whose CN is its registration ID (alphanumerics and - . _ :, at most 128 characters), for example with `muster certs device ID`.")
	case a.RegistrationID != "" && !strings.EqualFold(a.RegistrationID, cn):
		return fail(fmt.Sprintf("%s.registration_id is %q but the identity certificate's CN is %q; DPS refuses X.509 devices whose CN is not their registration ID (cn_registration_id_mismatch)", attestationKeys, a.RegistrationID, cn),
			"Remove registration_id (the CN is then used) or issue a certificate whose CN is the registration ID, then run `iotedge config apply`.")
	}
	if !allowsClientAuth(leaf) {
		return fail(fmt.Sprintf("the identity certificate %s in %s does not allow client authentication (extended key usage)", name, certPath),
			"Issue the identity certificate with the clientAuth extended key usage (or none), as `muster certs device` does.")
	}
	env.IdentityChain, env.IdentityCertPath = chain, certPath
	return pass("X.509 identity %s issued by %s (SHA-256 %s); the private key in %s matches", name, pki.DistinguishedName(leaf.Issuer), pki.SHA256Thumbprint(leaf), keyPath)
}

// allowsClientAuth reports whether a leaf may authenticate a TLS client:
// no extended key usage, clientAuth or any.
func allowsClientAuth(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// checkExpiry checks the validity periods of the identity chain.
func checkExpiry(_ context.Context, env *Env) Result {
	chain := env.IdentityChain
	if len(chain) == 0 {
		return Result{Status: Ignore, Message: "the device does not authenticate with an X.509 certificate"}
	}
	now := env.Now()
	renew := "Renew the identity certificate (same CN) and install it and its key at identity_cert and identity_pk, then restart the runtime; for an individual enrollment with thumbprints, update the enrollment too."
	link := func(i int) string {
		if i == 0 {
			return fmt.Sprintf("the identity certificate %s", pki.DistinguishedName(chain[0].Subject))
		}
		return fmt.Sprintf("issuer certificate %d (%s) of %s", i, pki.DistinguishedName(chain[i].Subject), env.IdentityCertPath)
	}
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	soonest := 0
	for i, c := range chain {
		if now.Before(c.NotBefore) {
			return fail(fmt.Sprintf("%s is not valid before %s; the local time is %s", link(i), stamp(c.NotBefore), stamp(now)),
				"If the local clock is wrong (see the host-local-time check), correct it; otherwise wait until the certificate becomes valid or reissue it.")
		}
		if now.After(c.NotAfter) {
			return fail(fmt.Sprintf("%s expired on %s; the local time is %s", link(i), stamp(c.NotAfter), stamp(now)), renew)
		}
		if c.NotAfter.Before(chain[soonest].NotAfter) {
			soonest = i
		}
	}
	end := chain[soonest].NotAfter
	left := end.Sub(now)
	if left < ExpiryWarning {
		return warn(fmt.Sprintf("%s expires on %s, in %s", link(soonest), stamp(end), days(left)), renew)
	}
	if env.ThirtyTwoBit {
		for i, c := range chain {
			if c.NotAfter.After(time2038) {
				return warn(fmt.Sprintf("%s expires on %s, after %s, which software using a 32-bit time_t on this 32-bit device cannot represent", link(i), stamp(c.NotAfter), stamp(time2038)),
					"Issue the device's certificates (and their CAs) with an expiry before 2038-01-19, or make sure every program on the device uses a 64-bit time_t.")
			}
		}
	}
	return pass("%s expires on %s, in %s", link(soonest), stamp(end), days(left))
}

// days renders a positive duration in whole days (hours when under one).
func days(d time.Duration) string {
	if d < 24*time.Hour {
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	n := int(d / (24 * time.Hour))
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

// dpsTarget returns the DPS endpoint of the configuration.
func dpsTarget(c *config.Config) (target, error) {
	addr, err := c.DPSEndpoint()
	if err != nil {
		return target{}, err
	}
	return newTarget("the DPS endpoint", addr, "provisioning.global_endpoint", bundlePath(c))
}

// bundlePath names the trust bundle for messages ("" when unset).
func bundlePath(c *config.Config) string { return c.TrustBundleCert }

// checkClock compares the local clock with the Date header of the DPS
// endpoint (see referenceTime for exactly what is compared).
func checkClock(ctx context.Context, env *Env) Result {
	c := env.Config
	pr := &c.Provisioning
	switch {
	case pr.Source != config.SourceDPS:
		return Result{Status: Ignore, Message: "no HTTPS reference: the device does not provision through DPS"}
	case pr.Transport != config.TransportHTTPS:
		return Result{Status: Ignore, Message: fmt.Sprintf("no HTTPS reference: the DPS endpoint %s speaks MQTT", pr.GlobalEndpoint)}
	}
	t, err := dpsTarget(c)
	if err != nil {
		return fail(err.Error(), "Correct provisioning.global_endpoint, then run `iotedge config apply`.")
	}
	roots, err := c.TrustBundle()
	if err != nil {
		return fail(err.Error(), "Fix trust_bundle_cert, then run `iotedge config apply`.")
	}
	local, server, err := referenceTime(ctx, t, roots, env.Timeout, env.Now)
	if err != nil {
		msg, fix := describeTLSError(err, t, env.Timeout, env.Now())
		return warn("could not read the reference time: "+msg, fix)
	}
	skew := local.Sub(server)
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	dir := "ahead of"
	if skew < 0 {
		dir = "behind"
	}
	msg := fmt.Sprintf("the local clock is %v %s the time of the DPS endpoint %s (local %s, the server's Date header %s)",
		abs.Round(time.Second), dir, t.addr, local.UTC().Format(time.RFC3339), server.Add(-500*time.Millisecond).UTC().Format(time.RFC3339))
	fix := "Synchronise the clock with a time server (on systemd hosts `timedatectl set-ntp true`, on Windows `w32tm /resync`). Beyond 5 minutes of skew DPS and the hub refuse SAS tokens, and certificates may look expired or not yet valid."
	switch {
	case abs > ClockError:
		return fail(msg, fix)
	case abs > ClockWarning:
		return warn(msg, fix)
	}
	return pass("%s", msg)
}

// checkProvisioning checks that the cached provisioning result exists and
// was obtained with the identity the configuration describes.
func checkProvisioning(_ context.Context, env *Env) Result {
	c := env.Config
	if c.Provisioning.Source != config.SourceDPS {
		return Result{Status: Ignore, Message: "manual provisioning: the hub and device ID come from the connection string"}
	}
	path := provisioning.CachePath(c.Homedir)
	reprovision := "Start the iotedge daemon, or run `iotedge system reprovision`."
	cache, err := provisioning.LoadCache(c.Homedir)
	switch {
	case errors.Is(err, provisioning.ErrNoCache):
		return warn(fmt.Sprintf("the device has not provisioned yet: there is no %s", path), reprovision)
	case errors.Is(err, provisioning.ErrCorruptCache):
		return warn(fmt.Sprintf("the provisioning cache is unusable (%v); the daemon registers again at its next start", err), reprovision)
	case err != nil:
		return fail(fmt.Sprintf("could not read the provisioning cache: %v", err), fileFix(err, "Make "+path+" a regular file readable by the runtime."))
	}
	env.Cache = cache
	id, err := provisioning.IdentityOf(c)
	if err != nil {
		return fail(fmt.Sprintf("could not read the device identity: %v", err), "See the identity-credential check.")
	}
	assigned := fmt.Sprintf("hub %s, device %q, provisioned at %s", cache.AssignedHub, cache.DeviceID, cache.ProvisionedAt.UTC().Format(time.RFC3339))
	if diff := cache.Mismatch(id); diff != "" {
		return warn(fmt.Sprintf("the cached assignment (%s) was made for another identity: %s; the daemon registers again at its next start", assigned, diff),
			"Restart the iotedge daemon, or run `iotedge system reprovision`, to register with the current configuration.")
	}
	if cache.Substatus != "" {
		assigned += ", substatus " + cache.Substatus
	}
	return pass("assigned to %s", assigned)
}

// checkDPS performs a TLS handshake with the DPS endpoint.
func checkDPS(ctx context.Context, env *Env) Result {
	c := env.Config
	if c.Provisioning.Source != config.SourceDPS {
		return Result{Status: Ignore, Message: "the device does not provision through DPS"}
	}
	t, err := dpsTarget(c)
	if err != nil {
		return fail(err.Error(), "Correct provisioning.global_endpoint, then run `iotedge config apply`.")
	}
	return connect(ctx, env, t)
}

// checkHub performs a TLS handshake with the hub's MQTT port.
func checkHub(ctx context.Context, env *Env) Result {
	c := env.Config
	host, source := env.HubHostname, "--iothub-hostname"
	switch {
	case host != "":
	case c.Provisioning.Source == config.SourceManual:
		cs, err := sas.ParseConnectionString(c.Provisioning.ConnectionString)
		if err != nil {
			return fail("provisioning.connection_string: "+err.Error(), "Give the edge device's connection string, then run `iotedge config apply`.")
		}
		host, source = cs.HostName, "the HostName of provisioning.connection_string"
	case env.Cache != nil:
		host, source = env.Cache.AssignedHub, "the assigned hub of "+provisioning.CachePath(c.Homedir)
	default:
		return Result{Status: Skip, Message: "the device is not provisioned yet, so there is no hub to connect to",
			Fix: "Start the iotedge daemon or run `iotedge system reprovision`; pass --iothub-hostname to check a hub anyway."}
	}
	addr := host
	if _, _, err := net.SplitHostPort(host); err != nil {
		port := env.HubPort
		if port == "" {
			mqttPort, _ := c.HubPorts()
			port = strconv.Itoa(mqttPort)
		}
		addr = net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	t, err := newTarget("the hub", addr, source, bundlePath(c))
	if err != nil {
		return fail(err.Error(), "Give the hub as a host name, optionally with :port.")
	}
	return connect(ctx, env, t)
}

// connect performs a verified TLS handshake with t.
func connect(ctx context.Context, env *Env, t target) Result {
	roots, err := env.Config.TrustBundle()
	if err != nil {
		return fail(err.Error(), "Fix trust_bundle_cert, then run `iotedge config apply`.")
	}
	state, err := handshake(ctx, t, roots, env.Timeout)
	if err != nil {
		return fail(describeTLSError(err, t, env.Timeout, env.Now()))
	}
	peer := "no certificate"
	if len(state.PeerCertificates) > 0 {
		peer = pki.DistinguishedName(state.PeerCertificates[0].Subject)
	}
	return pass("TLS handshake with %s %s succeeded (server certificate %s)", t.what, t.addr, peer)
}
