package hubauth

import (
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
)

// sasFixture is a hub at a time before the test vectors expire, with SAS,
// X.509, keyless and disabled devices and a SAS module.
func sasFixture(t testing.TB, now time.Time) *fixture {
	t.Helper()
	f := newFixture(t, now)
	f.sasDevice("dev1", vectorKey, otherKey)
	f.sasDevice("dev2", otherKey, thirdKey)
	f.sasDevice("Dev1", thirdKey, otherKey) // IDs are case-sensitive: another device
	f.sasDevice("gone", vectorKey, otherKey)
	f.disable("gone")
	tp := "0123456789ABCDEF0123456789ABCDEF01234567"
	f.thumbprintDevice("x509dev", tp, "")
	f.putDevice(&registry.Device{DeviceID: "keyless", Authentication: registry.Authentication{Type: AuthNone}})
	f.module("dev1", "mod1", registry.Authentication{Type: AuthSAS, SymmetricKey: &registry.SymmetricKey{PrimaryKey: vectorKey, SecondaryKey: otherKey}})
	return f
}

func key(t testing.TB, b64 string) []byte {
	t.Helper()
	k, err := sas.DecodeKey(b64)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAuthenticateSAS(t *testing.T) {
	now := time.Unix(vectorExpiry-600, 0)
	f := sasFixture(t, now)
	skew := DefaultClockSkew
	vectorExp := time.Unix(vectorExpiry, 0).UTC().Add(skew)
	later := now.Add(time.Hour)
	laterExp := later.UTC().Add(skew)
	sign := func(resource, b64Key, keyName string) string {
		return sas.Sign(resource, key(t, b64Key), keyName, later)
	}
	dev1 := func(password string) Request {
		return Request{ClientID: "dev1", Username: nodeDeviceUsername, Password: password, RemoteAddr: "192.0.2.7:50000"}
	}

	tests := []struct {
		name string
		req  Request
		want outcome
	}{
		// The spec's test vectors.
		{"vector: device token", dev1(vectorDeviceToken),
			allowed(Identity{DeviceID: "dev1", AuthType: AuthSAS, Credential: "primary", TokenExpiry: vectorExp})},
		{"vector: module token", Request{ClientID: "dev1/mod1", Username: nodeModuleUsername, Password: vectorModuleToken},
			allowed(Identity{DeviceID: "dev1", ModuleID: "mod1", AuthType: AuthSAS, Credential: "primary", TokenExpiry: vectorExp})},
		{"vector: iothubowner service token connects a device", dev1(vectorServiceToken),
			allowed(Identity{DeviceID: "dev1", AuthType: AuthSAS, PolicyName: "iothubowner", Credential: "primary", TokenExpiry: vectorExp})},
		{"vector: iothubowner service token connects a module", Request{ClientID: "dev1/mod1", Username: nodeModuleUsername, Password: vectorServiceToken},
			allowed(Identity{DeviceID: "dev1", ModuleID: "mod1", AuthType: AuthSAS, PolicyName: "iothubowner", Credential: "primary", TokenExpiry: vectorExp})},

		// Device keys and username variants.
		{"secondary key", dev1(sign(vectorHub+"/devices/dev1", otherKey, "")),
			allowed(Identity{DeviceID: "dev1", AuthType: AuthSAS, Credential: "secondary", TokenExpiry: laterExp})},
		{"C SDK username with model-id", Request{ClientID: "dev1", Username: cDeviceUsername, Password: vectorDeviceToken},
			allowed(Identity{DeviceID: "dev1", AuthType: AuthSAS, Credential: "primary", TokenExpiry: vectorExp})},
		{"username without api-version", Request{ClientID: "dev1", Username: vectorHub + "/dev1/", Password: vectorDeviceToken},
			allowed(Identity{DeviceID: "dev1", AuthType: AuthSAS, Credential: "primary", TokenExpiry: vectorExp})},
		{"hub host in another case", Request{ClientID: "dev1", Username: "MyHub.Azure-Devices.net/dev1/?api-version=2021-04-12", Password: vectorDeviceToken},
			allowed(Identity{DeviceID: "dev1", AuthType: AuthSAS, Credential: "primary", TokenExpiry: vectorExp})},
		{"raw (unencoded) sr", dev1(sas.SignRaw(vectorHub+"/devices/dev1", key(t, vectorKey), "", later)),
			allowed(Identity{DeviceID: "dev1", AuthType: AuthSAS, Credential: "primary", TokenExpiry: laterExp})},
		{"within the clock skew after expiry", Request{ClientID: "dev1", Username: nodeDeviceUsername,
			Password: sas.Sign(vectorHub+"/devices/dev1", key(t, vectorKey), "", now.Add(-4*time.Minute))},
			allowed(Identity{DeviceID: "dev1", AuthType: AuthSAS, Credential: "primary", TokenExpiry: now.Add(-4 * time.Minute).UTC().Add(skew)})},

		// Policy tokens.
		{"policy with DeviceConnect (lower-case right), secondary key", dev1(sign(vectorHub, thirdKey, "device")),
			allowed(Identity{DeviceID: "dev1", AuthType: AuthSAS, PolicyName: "device", Credential: "secondary", TokenExpiry: laterExp})},
		{"policy token scoped to the device", dev1(sign(vectorHub+"/devices/dev1", policyKey, "device")),
			allowed(Identity{DeviceID: "dev1", AuthType: AuthSAS, PolicyName: "device", Credential: "primary", TokenExpiry: laterExp})},
		{"policy token for an X.509 device", Request{ClientID: "x509dev", Username: vectorHub + "/x509dev/?api-version=1", Password: sign(vectorHub, policyKey, "device")},
			allowed(Identity{DeviceID: "x509dev", AuthType: AuthSAS, PolicyName: "device", Credential: "primary", TokenExpiry: laterExp})},
		{"policy token for a device without credentials", Request{ClientID: "keyless", Username: vectorHub + "/keyless/", Password: sign(vectorHub, policyKey, "device")},
			allowed(Identity{DeviceID: "keyless", AuthType: AuthSAS, PolicyName: "device", Credential: "primary", TokenExpiry: laterExp})},
		{"policy without DeviceConnect", dev1(sign(vectorHub, policyKey, "service")),
			denied(ReasonPolicyLacksDeviceConnect, `policy "service" has the rights [ServiceConnect] but not DeviceConnect`)},
		{"unknown policy", dev1(sign(vectorHub, policyKey, "nosuch")),
			denied(ReasonPolicyNotFound, `policy "nosuch" (skn), which this hub does not have`)},
		{"provisioning service policy", dev1(sign(vectorHub, policyKey, "provisioningserviceowner")),
			denied(ReasonPolicyNotFound, `belongs to realm "dps", not the hub`)},
		{"policy token scoped to another device", dev1(sign(vectorHub+"/devices/dev2", policyKey, "device")),
			denied(ReasonSASResourceMismatch, `does not cover device "dev1"`)},
		{"policy token for another hub", dev1(sign("otherhub.azure-devices.net", policyKey, "device")),
			denied(ReasonSASResourceMismatch, `"otherhub.azure-devices.net"`)},
		{"policy token, wrong key", dev1(sign(vectorHub, vectorKey, "device")),
			denied(ReasonSASSignatureMismatch, `neither the primary nor the secondary key of policy "device"`)},
		{"policy token, expired", dev1(sas.Sign(vectorHub, key(t, policyKey), "device", now.Add(-time.Hour))),
			denied(ReasonSASExpired, "the SAS token expired at")},
		{"policy token for an unknown device", Request{ClientID: "nosuch", Username: vectorHub + "/nosuch/", Password: sign(vectorHub, policyKey, "device")},
			denied(ReasonDeviceNotFound, `device "nosuch" does not exist`)},
		{"policy token for a disabled device", Request{ClientID: "gone", Username: vectorHub + "/gone/", Password: sign(vectorHub, policyKey, "device")},
			denied(ReasonDeviceDisabled, `device "gone" is disabled (status reason: "stolen")`)},

		// Refusals of device tokens.
		{"expired", Request{ClientID: "dev1", Username: nodeDeviceUsername, Password: sas.Sign(vectorHub+"/devices/dev1", key(t, vectorKey), "", now.Add(-6*time.Minute))},
			denied(ReasonSASExpired, "clock skew tolerance 5m0s")},
		{"token for dev2 used by dev1", dev1(sign(vectorHub+"/devices/dev2", otherKey, "")),
			denied(ReasonSASResourceMismatch, `the token's resource (sr) is "myhub.azure-devices.net/devices/dev2"; device "dev1" needs "myhub.azure-devices.net/devices/dev1"`)},
		{"device token used by its module", Request{ClientID: "dev1/mod1", Username: nodeModuleUsername, Password: vectorDeviceToken},
			denied(ReasonSASResourceMismatch, `module "mod1" of device "dev1" needs "myhub.azure-devices.net/devices/dev1/modules/mod1"`)},
		{"signed with another device's key", dev1(sign(vectorHub+"/devices/dev1", thirdKey, "")),
			denied(ReasonSASSignatureMismatch, `neither the primary nor the secondary key of device "dev1"`)},
		{"device IDs are case-sensitive", Request{ClientID: "Dev1", Username: vectorHub + "/Dev1/", Password: sign(vectorHub+"/devices/Dev1", vectorKey, "")},
			denied(ReasonSASSignatureMismatch, `device "Dev1"`)},
		{"unknown device", Request{ClientID: "nosuch", Username: vectorHub + "/nosuch/", Password: sign(vectorHub+"/devices/nosuch", vectorKey, "")},
			denied(ReasonDeviceNotFound, `device "nosuch" does not exist in hub myhub.azure-devices.net`)},
		{"unknown module", Request{ClientID: "dev1/mod2", Username: vectorHub + "/dev1/mod2/", Password: sign(vectorHub+"/devices/dev1/modules/mod2", vectorKey, "")},
			denied(ReasonModuleNotFound, `device "dev1" has no module "mod2"`)},
		{"disabled device with its own key", Request{ClientID: "gone", Username: vectorHub + "/gone/", Password: sign(vectorHub+"/devices/gone", vectorKey, ""), Protocol: "hub-mqtt-ws"},
			denied(ReasonDeviceDisabled, `device "gone" is disabled`)},
		{"disabled device with a wrong key is an impostor, not disabled", Request{ClientID: "gone", Username: vectorHub + "/gone/", Password: sign(vectorHub+"/devices/gone", thirdKey, "")},
			denied(ReasonSASSignatureMismatch, `key of device "gone"`)},
		{"malformed token", dev1("SharedAccessSignature sr=x&sig=abc"),
			denied(ReasonSASMalformed, "field se: field is missing")},
		{"password that is no token", dev1("hunter2"),
			denied(ReasonSASMalformed, "the MQTT password is not a SAS token")},
		{"no credential", dev1(""),
			denied(ReasonNoCredential, `device "dev1" sent no password (SAS token) and no TLS client certificate`)},
		{"SAS token for an X.509 device", Request{ClientID: "x509dev", Username: vectorHub + "/x509dev/", Password: sign(vectorHub+"/devices/x509dev", vectorKey, "")},
			denied(ReasonAuthTypeMismatch, `device "x509dev" uses X.509 selfSigned authentication, but the client sent a SAS token`)},
		{"device token for a device without credentials", Request{ClientID: "keyless", Username: vectorHub + "/keyless/", Password: sign(vectorHub+"/devices/keyless", vectorKey, "")},
			denied(ReasonAuthTypeMismatch, `device "keyless" has authentication type "none"`)},

		// The CONNECT envelope.
		{"client id is another device", Request{ClientID: "dev2", Username: nodeDeviceUsername, Password: vectorDeviceToken},
			denied(ReasonClientIDMismatch, `the MQTT client id is "dev2" but the username names device "dev1", whose client id is "dev1"`)},
		{"module client id without the device", Request{ClientID: "mod1", Username: nodeModuleUsername, Password: vectorModuleToken},
			denied(ReasonClientIDMismatch, `whose client id is "dev1/mod1"`)},
		{"empty client id", Request{Username: nodeDeviceUsername, Password: vectorDeviceToken},
			denied(ReasonClientIDMismatch, `the MQTT client id is ""`)},
		{"another hub", Request{ClientID: "dev1", Username: "otherhub.azure-devices.net/dev1/?api-version=1", Password: vectorDeviceToken},
			denied(ReasonHubHostMismatch, `the username names hub "otherhub.azure-devices.net"; this hub is "myhub.azure-devices.net"`)},
		{"username without the device", Request{ClientID: "dev1", Username: vectorHub, Password: vectorDeviceToken},
			denied(ReasonUsernameMalformed, "has no '/'")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.check(t, tc.req, tc.want)
		})
	}
}

// TestAuthenticateVectorsExpire checks the vectors are refused once expired
// beyond the clock skew, and accepted without skew right up to se.
func TestAuthenticateVectorsExpire(t *testing.T) {
	tests := []struct {
		name string
		now  time.Time
		skew time.Duration
		want Reason
	}{
		{"at se", time.Unix(vectorExpiry, 0), -1, ""},
		{"one second after se, no skew", time.Unix(vectorExpiry+1, 0), -1, ReasonSASExpired},
		{"4 minutes after se, default skew", time.Unix(vectorExpiry+240, 0), 0, ""},
		{"6 minutes after se, default skew", time.Unix(vectorExpiry+360, 0), 0, ReasonSASExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := sasFixture(t, tc.now)
			a, err := New(Options{HubHostName: vectorHub, Identities: f.ids, Policies: testPolicies, Attempts: f.st,
				Now: func() time.Time { return tc.now }, ClockSkew: tc.skew})
			if err != nil {
				t.Fatal(err)
			}
			f.auth = a
			for _, req := range []Request{
				{ClientID: "dev1", Username: nodeDeviceUsername, Password: vectorDeviceToken},
				{ClientID: "dev1/mod1", Username: nodeModuleUsername, Password: vectorModuleToken},
				{ClientID: "dev1", Username: nodeDeviceUsername, Password: vectorServiceToken},
			} {
				want := denied(tc.want, "expired at 2023-11-14T22:13:20Z")
				if tc.want == "" {
					_, mod, _ := strings.Cut(req.ClientID, "/")
					id := Identity{DeviceID: "dev1", ModuleID: mod, AuthType: AuthSAS, Credential: "primary", TokenExpiry: time.Unix(vectorExpiry, 0).UTC().Add(a.skew)}
					if req.Password == vectorServiceToken {
						id.PolicyName = "iothubowner"
					}
					want = allowed(id)
				}
				f.check(t, req, want)
			}
		})
	}
}
