// Package provision owns the registration state machine of the provisioning
// service: attest the device (through package attest), pick the enrollment,
// allocate a linked hub (hashed, static, custom webhook, geoLatency), create
// the device identity in that hub through the Hub interface, apply the
// initial twin and reprovision policy, and keep the registration record and
// the attempt log that explains every refusal. Transports (api, mqtt) call it
// with a RegisterRequest; it never imports net/http or an MQTT library.
package provision
