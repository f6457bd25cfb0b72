// Package check owns `iotedge check`: a small framework that runs
// diagnostic checks in order, skips the checks whose prerequisites did not
// pass, and renders the results as upstream IoT Edge does (text with √ ‼ ×
// markers and a summary, or one JSON object), and the checks themselves:
// the configuration parses and names usable files; the identity credential
// is readable, its key matches its certificate, and the certificate is
// neither expired nor about to expire; the host clock agrees with the DPS
// endpoint's; the DPS endpoint and the assigned hub's MQTT port accept a TLS
// handshake verified with the trust bundle; and the cached provisioning
// result exists and matches the configuration. Every failure says how to
// fix it.
//
// Check IDs and descriptions follow upstream's (`iotedge check-list`) where
// upstream has the same check, so that scripts reading the JSON output keep
// working. The package is an adapter at the edge of the runtime: it dials
// the network and may import net/http, but no MQTT library or SQL driver,
// and it never prints a key.
package check
