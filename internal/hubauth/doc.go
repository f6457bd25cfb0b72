// Package hubauth owns hub connection authentication: it decides whether a
// device or module identity may connect to the hub, from what the client
// sent when connecting (MQTT CONNECT's client id, username and password,
// and the TLS client certificate chain). It accepts SAS tokens signed with
// the identity's own key or with a hub shared access policy holding
// DeviceConnect, and X.509 certificates matched by thumbprint (selfSigned)
// or verified to a trusted CA (certificateAuthority): a verified CA
// registered with the service, or the signing certificate or CA reference
// of the enrollment group that provisioned the device.
//
// Every refusal is a *Denial with a stable Reason, an operator-facing
// Detail and Hint, and the MQTT CONNACK return code the client is told;
// refusals are appended to the attempt log (store.Attempts) keyed by the
// lower-cased device ID, the same log that explains provisioning denials.
//
// It reads identities and trust anchors through the small interfaces
// Identities and Anchors, with adapters for package registry and package
// enroll. It is a domain package: it must not import net/http, an MQTT
// library or a SQL driver.
package hubauth
