// Package dpsclient is Muster's provisioning device client: the Go
// equivalent of the Azure IoT provisioning device SDKs. It owns the device
// side of the DPS registration protocol — building and signing the
// register request, polling the operation until it reaches a final state,
// and turning the answers into a registration result or a typed error —
// over HTTPS and MQTT 3.1.1, with symmetric-key (SAS) and X.509 attestation.
// It speaks the wire protocol exactly as Azure DPS expects it, so it works
// against Azure DPS as well as against Muster.
//
// Users: the iotedge daemon (provisioning at start-up), `muster bench
// register` (a load generator registering many distinct devices through one
// [Client]) and end-to-end tests.
//
// Connection model:
//
//   - HTTPS with symmetric keys shares one keep-alive HTTP/1.1 transport per
//     [Client] for all devices, so a load generator reuses its connections.
//   - HTTPS with X.509 uses a transport per [Client.Register] call, presenting
//     that device's certificate chain, and closes its connections when the
//     call returns. Every X.509 registration therefore performs a fresh
//     mutual-TLS handshake (no session resumption), as a real fleet of
//     devices would, which is also what the X.509 benchmark must measure.
//   - MQTT opens one connection per registration (client ID = registration
//     ID, clean session) and disconnects when the registration ends.
//
// This package must not import the server side (internal/api,
// internal/mqtt, stores); it depends only on the wire types of
// internal/provision and on internal/sas.
package dpsclient
