package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/sas"
)

// tokenSkew is the clock skew tolerated on service token expiry.
const tokenSkew = 5 * time.Minute

// authorize checks the service SAS token of a request to the provisioning
// service API: see authorizeRealm, for realm "dps" and the service host names.
func (a *API) authorize(r *http.Request, right string) error {
	return a.authorizeRealm(r, RealmDPS, a.hosts, right)
}

// authorizeRealm checks the service SAS token of a request: it must name
// (skn) a policy of realm, be issued for one of hosts (sr, optionally with a
// path prefix of the request path), be unexpired, be signed with the
// policy's primary or secondary key, and the policy must hold right. Every
// failure is the same 401 to the caller; the wrapped cause (never the token
// or a key) goes to the log.
func (a *API) authorizeRealm(r *http.Request, realm string, hosts []string, right string) error {
	header := strings.TrimSpace(r.Header.Get("Authorization"))
	if header == "" {
		return unauthorized(errors.New("no Authorization header"))
	}
	if scheme, _, _ := strings.Cut(header, " "); !strings.EqualFold(scheme, "SharedAccessSignature") {
		return unauthorized(fmt.Errorf("authorization scheme %.32q is not SharedAccessSignature", scheme))
	}
	tok, err := sas.Parse(header)
	if err != nil {
		return unauthorized(fmt.Errorf("parse service token: %w", err))
	}
	if tok.KeyName == "" {
		return unauthorized(errors.New("service token has no skn: it must name a shared access policy"))
	}
	p, ok := a.policies.Policy(tok.KeyName)
	if !ok {
		return unauthorized(fmt.Errorf("service token names unknown policy %q", tok.KeyName))
	}
	if !strings.EqualFold(p.Realm, realm) {
		return unauthorized(fmt.Errorf("policy %q belongs to realm %q, not %q", p.Name, p.Realm, realm))
	}
	resource, err := tok.DecodedResource()
	if err != nil {
		return unauthorized(fmt.Errorf("decode sr of service token for policy %q: %w", p.Name, err))
	}
	if err := checkAudience(hosts, resource, r.URL.Path); err != nil {
		return unauthorized(fmt.Errorf("service token for policy %q: %w", p.Name, err))
	}
	if err := tok.CheckExpiry(a.now(), tokenSkew); err != nil {
		return unauthorized(fmt.Errorf("service token for policy %q: %w", p.Name, err))
	}
	if err := a.verifySignature(tok, p); err != nil {
		return unauthorized(err)
	}
	if !slices.ContainsFunc(p.Rights, func(s string) bool { return strings.EqualFold(s, right) }) {
		return unauthorized(fmt.Errorf("policy %q lacks the %s right this request needs", p.Name, right))
	}
	return nil
}

// verifySignature checks the token against the policy's primary, then
// secondary key.
func (a *API) verifySignature(tok *sas.Token, p Policy) error {
	tried := 0
	for _, k := range []struct{ which, b64 string }{{"primary", p.PrimaryKey}, {"secondary", p.SecondaryKey}} {
		if k.b64 == "" {
			continue
		}
		key, err := sas.DecodeKey(k.b64)
		if err != nil {
			a.log.Error("shared access policy has an undecodable key", "policy", p.Name, "key", k.which, "err", err)
			continue
		}
		tried++
		if tok.VerifyKey(key) {
			return nil
		}
	}
	if tried == 0 {
		return fmt.Errorf("policy %q has no usable key", p.Name)
	}
	return fmt.Errorf("service token signature matches neither key of policy %q", p.Name)
}

// checkAudience checks a token's decoded sr: one of hosts, optionally
// followed by a path that must be a segment prefix of the request path
// ("host/enrollments" covers /enrollments/x but not /enrollmentsx).
func checkAudience(hosts []string, resource, requestPath string) error {
	host, prefix, _ := strings.Cut(resource, "/")
	if !slices.ContainsFunc(hosts, func(h string) bool { return sameHost(h, host) }) {
		return fmt.Errorf("sr host %q is not one of this service's host names", host)
	}
	prefix = strings.ToLower(strings.Trim(prefix, "/"))
	if prefix == "" {
		return nil
	}
	path := strings.ToLower(strings.Trim(requestPath, "/"))
	if path != prefix && !strings.HasPrefix(path, prefix+"/") {
		return fmt.Errorf("sr path %q does not cover the request path %q", prefix, requestPath)
	}
	return nil
}

// sameHost compares host names case-insensitively; a port on either side is
// ignored when only one side has one ("localhost:8443" is "localhost").
func sameHost(configured, presented string) bool {
	if strings.EqualFold(configured, presented) {
		return true
	}
	return strings.EqualFold(stripPort(configured), stripPort(presented))
}

// stripPort removes a trailing ":port" (digits only) from a host.
func stripPort(h string) string {
	if host, port, err := net.SplitHostPort(h); err == nil && port != "" && strings.Trim(port, "0123456789") == "" {
		return host
	}
	return h
}
