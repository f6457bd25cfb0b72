// Package provisioning owns the iotedge daemon's provisioning layer: getting
// the device's hub assignment (hub host name and device ID) from the device
// provisioning service with the configured credential, caching it in the
// runtime's home directory, and deciding, each time the daemon asks, whether
// the cached assignment may be used or the device must register again.
//
// The decision is the pure function [Decide]; it implements the three
// auto_reprovisioning_mode values of config.toml (Dynamic, AlwaysOnStartup,
// OnErrorOnly) for the four occasions the daemon asks on ([Reason]): its
// start, a hub that rejects the device (identity gone or credential
// refused), a hub that has stayed unreachable, and `iotedge system
// reprovision`. The cache ([Cache], <homedir>/cache/provisioning_state.json)
// records which identity it was obtained for (ID scope, registration ID,
// endpoint and a SHA-256 fingerprint of the credential — never the
// credential itself), so a changed configuration is noticed and the device
// does not keep using an assignment made for another identity, while an
// unchanged one does not re-register on every boot.
//
// [Provisioner] ties the decision to the DPS client
// (internal/client/dpsclient) and the cache. The package reads the
// configuration through internal/edge/config; it imports no MQTT library or
// SQL driver and never logs or stores a key.
package provisioning
