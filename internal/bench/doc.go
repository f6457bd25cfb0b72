// Package bench owns Muster's load generators and the measurement of this
// machine's bare ceilings they are judged against: `muster bench register`
// (provisioning) and `muster bench hub` (the hub's MQTT connects, QoS 1
// telemetry and idle memory, against Mosquitto run in the same run).
//
// It drives many distinct devices through the real device client
// (internal/client/dpsclient) against a running server — symmetric-key
// group devices over HTTPS keep-alive and X.509 group devices with a fresh
// mutual-TLS handshake each — in a closed loop with a fixed concurrency, a
// warm-up and a measured window, and reports registrations per second, the
// latency distribution of complete registrations (register request plus
// polls, ending in a final "assigned" answer) and errors by kind. In the
// same run it measures, in-process on loopback with the same concurrency
// and the same kind of client, the bare ceilings: an HTTPS keep-alive
// server that only verifies a DPS SAS token, and a TLS server that only
// completes mutual-TLS handshakes. The ratios of the two are the figures of
// merit (see docs/performance.md). `--target` spreads the devices
// round-robin over several instances of one service sharing a database.
//
// The hub bench (hub*.go) creates devices through the hub service API,
// then connects them over TLS MQTT with SAS tokens, publishes QoS 1
// telemetry with a bounded number of messages in flight per connection,
// and holds idle connections while reading the server's resident memory;
// it starts Debian's Mosquitto with the same TLS settings as the peer.
//
// It is a tool, not a domain package: it may import net/http and the Go
// clients, but it must not import the server's packages (internal/api,
// internal/provision's service, stores); it talks to the server under test
// only over the network, as devices and operators do.
package bench
