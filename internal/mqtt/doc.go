// Package mqtt owns Muster's MQTT endpoint: an adapter around the embedded
// broker library github.com/wind-c/comqtt/v2 (package mqtt) with our own
// listeners (TLS connections from a net.Listener, MQTT over WebSockets on the
// caller's HTTPS mux, or any net.Conn), our own authentication and ACL hooks,
// and no library ledger, storage or message routing between clients.
//
// It serves DPS over MQTT (registration and operation-status requests on
// $dps/registrations/…, answered only to the requesting connection) for a
// DPS implementation it is given, and dispatches every other CONNECT to an
// optional hub Realm (devices/{id}/…, $iothub/…). Credentials are never
// interpreted here: the DPS realm hands the SAS token and the TLS client
// chain to DPS with each request, and the hub realm authenticates its own
// clients.
//
// Realms send through their Peer, which can report the client's PUBACK of
// a QoS 1 message (Peer.PublishAcked): the hub completes a cloud-to-device
// message only then. A hub client's persistent session (clean session 0)
// keeps its subscriptions, which are handed to the new connection's realm
// session, but not its in-flight messages: the realm sends again what was
// not acknowledged.
//
// The package imports no SQL driver; of the domain it uses only the
// transport-facing types of provision (DPS), hub and hubauth (the hub realm).
package mqtt
