package provisioning

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/edge/config"
)

// testIdentity is the identity the Decide tests configure.
var testIdentity = Identity{
	IDScope:        "0ne00000001",
	RegistrationID: "edge-1",
	Endpoint:       "https://dps.example.com:8443/",
	Credential:     FingerprintSymmetricKey + strings.Repeat("ab", 32),
}

// cacheOf returns a valid cache obtained with id.
func cacheOf(id Identity) *Cache {
	return &Cache{
		Version: CacheVersion, AssignedHub: "hub.example.com", DeviceID: id.RegistrationID,
		RegistrationID: id.RegistrationID, IDScope: id.IDScope, Endpoint: id.Endpoint, Credential: id.Credential,
		ProvisionedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Substatus: "initialAssignment",
	}
}

func TestDecide(t *testing.T) {
	// cache states
	const (
		none     = "no cache"
		matching = "matching cache"
		scope    = "cache of another id scope"
		regID    = "cache of another registration ID"
		endpoint = "cache of another endpoint"
		cred     = "cache of another credential"
	)
	caches := map[string]*Cache{none: nil, matching: cacheOf(testIdentity)}
	other := func(name string, edit func(*Identity)) {
		id := testIdentity
		edit(&id)
		caches[name] = cacheOf(id)
	}
	other(scope, func(id *Identity) { id.IDScope = "0ne00000002" })
	other(regID, func(id *Identity) { id.RegistrationID = "edge-2" })
	other(endpoint, func(id *Identity) { id.Endpoint = "https://other.example.com/" })
	other(cred, func(id *Identity) { id.Credential = FingerprintSymmetricKey + strings.Repeat("cd", 32) })
	stale := []string{none, scope, regID, endpoint, cred}

	// want[mode][reason] is the decision with a matching cache; every
	// other cache state registers for every mode and reason.
	want := map[string]map[Reason]bool{
		config.ReprovisionDynamic:         {Startup: false, HubRejected: true, HubUnreachable: false, Manual: true},
		config.ReprovisionAlwaysOnStartup: {Startup: true, HubRejected: true, HubUnreachable: false, Manual: true},
		config.ReprovisionOnErrorOnly:     {Startup: false, HubRejected: true, HubUnreachable: true, Manual: true},
		"Bogus":                           {Startup: false, HubRejected: true, HubUnreachable: false, Manual: true}, // as Dynamic
	}
	for mode, byReason := range want {
		for reason, register := range byReason {
			t.Run(fmt.Sprintf("%s/%s/%s", mode, reason, matching), func(t *testing.T) {
				got, why := Decide(mode, reason, caches[matching], testIdentity)
				if got != register || why == "" {
					t.Errorf("Decide = %v, %q; want %v with a reason", got, why, register)
				}
			})
			for _, state := range stale {
				t.Run(fmt.Sprintf("%s/%s/%s", mode, reason, state), func(t *testing.T) {
					got, why := Decide(mode, reason, caches[state], testIdentity)
					if !got || why == "" {
						t.Errorf("Decide = %v, %q; want a registration with a reason", got, why)
					}
				})
			}
		}
	}
}

func TestDecideWhy(t *testing.T) {
	tests := []struct {
		name   string
		mode   string
		reason Reason
		cache  *Cache
		want   string
	}{
		{"manual", config.ReprovisionOnErrorOnly, Manual, cacheOf(testIdentity), "manual reprovision requested"},
		{"no cache", config.ReprovisionDynamic, Startup, nil, "no cached assignment"},
		{"scope changed", config.ReprovisionDynamic, Startup, func() *Cache {
			c := cacheOf(testIdentity)
			c.IDScope = "0ne000000FF"
			return c
		}(), `the cached assignment is for another identity: id_scope is "0ne00000001" in the configuration but "0ne000000FF" in the cache`},
		{"always on startup", config.ReprovisionAlwaysOnStartup, Startup, cacheOf(testIdentity), "auto_reprovisioning_mode is AlwaysOnStartup"},
		{"dynamic keeps cache", config.ReprovisionDynamic, Startup, cacheOf(testIdentity), "the cached assignment matches the configuration"},
		{"on error only unreachable", config.ReprovisionOnErrorOnly, HubUnreachable, cacheOf(testIdentity), "the hub is unreachable and auto_reprovisioning_mode is OnErrorOnly"},
		{"unknown reason", config.ReprovisionDynamic, Reason(0), nil, "unknown reason 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, why := Decide(tc.mode, tc.reason, tc.cache, testIdentity)
			if why != tc.want {
				t.Errorf("why = %q, want %q", why, tc.want)
			}
		})
	}
}

func TestDecideUnknownReasonNeverRegisters(t *testing.T) {
	for _, r := range []Reason{0, 5, -1} {
		t.Run(r.String(), func(t *testing.T) {
			if got, _ := Decide(config.ReprovisionDynamic, r, nil, testIdentity); got {
				t.Errorf("Decide(%v) registers", r)
			}
		})
	}
}
