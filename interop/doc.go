// Package interop owns the wire-compatibility test that drives the official
// Azure IoT Node SDK packages (pinned in package.json and package-lock.json)
// against a real `muster serve` subprocess.
//
// The package has no production code. TestNodeSDK builds cmd/muster,
// generates the test PKI with internal/pki, starts the server on loopback
// ports chosen by the kernel, and runs `node --test` on the *.test.js files
// here with:
//
//	MUSTER_ENDPOINTS     path of the server's endpoints.json
//	MUSTER_CERTS         directory of the generated PEM files
//	NODE_EXTRA_CA_CERTS  the server CA certificate
//
// It logs node's spec output, prints "interop: N passed, M failed" and
// "interop: N/M scenarios passed, P pending", and fails when node fails.
// Without interop/node_modules it skips (run `npm ci` in interop/), unless
// MUSTER_REQUIRE_INTEROP=1, when it fails instead.
//
// Scenarios for server features Muster does not have yet are listed in
// lib/pending.js: they run as node "todo" tests (or are skipped when they
// could not end quickly), are not counted, and are logged with their
// outcome; the log names pending scenarios that pass, whose entries can
// then be deleted.
//
// File convention in MUSTER_CERTS (registration ID = certificate CN):
//
//	svc-ca.pem                          root CA used by the service CRUD tests
//	<chain>-root.pem, <chain>-int.pem   root and intermediate of a chain, for
//	                                    chain = rootgrp, intgrp, unknown, hubgrp
//	x509-<chain>-<t>.cert.pem           device leaf + the chain's intermediate
//	x509-<chain>-<t>.key.pem            its private key (t = http, mqtt)
//	x509-self-<t>.cert.pem, .key.pem    self-signed device (individual enrollment)
//	x509-hubself.cert.pem, .key.pem     self-signed device registered in the hub
//	                                    by thumbprint (hub service tests)
//
// The rootgrp chain backs an enrollment group anchored at its root, intgrp a
// group anchored at its intermediate; no enrollment references unknown. The
// hubgrp chain backs the group of the hub device tests only.
//
// The JS tests reach the server through the SDK's dependency-injection
// hooks (see dps-protocol.md §4): an azure-iot-http-base Http whose options
// carry the CA and an https.Agent whose defaultPort is the HTTPS port
// (device Http transport and service client), and an azure-iot-mqtt-base
// MqttBase with the CA plus "localhost:<port>" as the host (Mqtt transport).
// The hub tests (lib/hub.js) hand azure-iothub's Registry and Client an
// injected RestApiClient built the same way, and give azure-iot-device's
// MQTT transport the MQTT listener as gatewayHostName ("localhost:<port>":
// the socket goes there while the username and SAS resource keep the hub
// host name).
//
// This package must not be imported; it imports only internal/pki.
package interop
