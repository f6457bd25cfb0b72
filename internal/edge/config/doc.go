// Package config owns the device-side configuration of Muster's iotedge
// runtime: the IoT Edge 1.2+ config.toml subset Muster supports (DPS
// provisioning with symmetric keys or X.509, manual provisioning with a
// connection string, the trust bundle, the agent and the container runtime),
// its strict decoding (unknown keys rejected; upstream keys Muster does not
// implement yet rejected by name), defaults, one Validate that reports every
// problem at once with its key, the file checks (certificate chain, private
// key and their match), the normalised writer used by `iotedge config apply`
// and `iotedge init`, and the accessors the daemon reads the configuration
// through.
//
// It is a domain package: it must not import net/http, an MQTT library or a
// SQL driver. Platform defaults (home directory, configuration path, file URI
// forms) live in the _linux.go, _windows.go and _other.go files.
package config
