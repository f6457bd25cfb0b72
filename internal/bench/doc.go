// Package bench owns `muster bench register`: the provisioning load
// generator and the measurement of this machine's bare ceilings it is
// judged against.
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
// merit (see docs/performance.md).
//
// It is a tool, not a domain package: it may import net/http and the Go
// clients, but it must not import the server's packages (internal/api,
// internal/provision's service, stores); it talks to the server under test
// only over the network, as devices and operators do.
package bench
