// Package api is Muster's HTTPS adapter for the provisioning service. It owns
// the wire side of the Azure-compatible REST APIs and the plumbing they share:
//
//   - the DPS device registration API (PUT .../register, GET .../operations/{id},
//     POST /{idScope}/registrations/{id}), which hands every request to a
//     Registrar without interpreting credentials;
//   - the DPS service API for enrollments, enrollment groups and registration
//     records, authorised by service SAS tokens against shared access policies
//     and their rights, plus Muster's operator extensions (CA certificates for
//     proof of possession, the registration attempt log, /healthz);
//   - optionally (MountHub), the IoT Hub service API of one hub for device
//     identities and twins, authorised by policies of realm "hub" and
//     answering errors in IoT Hub's {"Message":"ErrorCode:…"} shape;
//   - a small case-insensitive router that decodes percent-encoded path
//     parameters, tolerates a trailing slash and answers 404/405 in JSON;
//   - error rendering: every answer but 204 carries a JSON body with
//     "Content-Type: application/json; charset=utf-8" and an x-ms-request-id
//     that equals the trackingId of error bodies and of the log line that
//     explains a 5xx.
//
// The domain services (enroll, provision, registry) are reached only through
// the small interfaces declared in deps.go and hub.go. This package must not
// import an MQTT library or a SQL driver, and it never logs secrets (SAS
// tokens, keys).
package api
