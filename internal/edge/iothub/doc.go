// Package iothub owns the edge runtime's device-side link to its IoT hub:
//
//   - Client, an MQTT 3.1.1 session as the edge device or as one of its
//     modules (hub-edge-protocol §2): it connects over TLS with a SAS token
//     it signs from the identity's key and renews before expiry, or with
//     the device's X.509 client certificate; it reconnects with
//     exponential back-off; it tells a refusal of the credential (CONNACK
//     2, 4 or 5: the identity is gone or its key changed) apart from an
//     outage; and it offers twin GET, reported PATCH and telemetry on top
//     of raw publish and subscribe.
//   - Modules, the device-credential module identity calls of
//     hub-edge-protocol §4.9 (PUT, GET, DELETE and list of
//     /devices/{id}/modules over HTTPS, authorised by the edge device's own
//     SAS token or client certificate), which the edge agent uses to
//     create the identities of the modules it runs.
//
// It is an adapter package: it uses paho.mqtt.golang and net/http, and
// never logs a key or a token.
package iothub
