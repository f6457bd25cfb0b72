// Package edgehub owns Muster's edge hub: the local gateway the modules of
// an edge device connect to instead of the IoT hub (hub-edge-protocol §8).
//
// What it does:
//
//   - It serves MQTT 3.1.1 over TLS on a local address (by default the
//     loopback interface only). Its server certificate is issued by a
//     device-local edge CA (CA), whose certificate modules trust through
//     EdgeModuleCACertificateFile.
//   - It admits the device's modules only: client ID {device}/{module},
//     the Azure username, and a SAS token signed with the module's key
//     (the identity the edge agent created in the hub). Leaf devices,
//     X.509 module clients and other devices are refused.
//   - It routes what a module sends with the routes of the $edgeHub
//     desired properties (FROM … [WHERE …] INTO …): to $upstream, where the
//     message is sent to the IoT hub as the module's own telemetry (its
//     output name kept in $.on), and to BrokeredEndpoint("/modules/{m}/inputs/{i}"),
//     where it is delivered to that module's input topic with the sender
//     in $.cdid and $.cmid. A message no route takes is dropped, as the
//     IoT Edge hub does.
//   - It proxies the module's twin (GET, reported PATCH, desired
//     notifications) and direct methods to and from the IoT hub over one
//     upstream MQTT connection per connected module, authenticated with
//     that module's key.
//   - It connects as $edgeHub to read its desired properties (routes) and
//     reports lastDesiredVersion, lastDesiredStatus and its clients'
//     connection states.
//
// What it does not do (yet): store and forward — a message routed to
// $upstream is acknowledged to the module only once the IoT hub accepted
// it, and while the hub is unreachable the module's publish is refused
// (its connection is closed without PUBACK, so the SDK sends it again
// later); route priorities and time-to-live are parsed and reported but
// have no effect; brokered messages to a module that is not connected are
// dropped; AMQP, MQTT over WebSockets and the HTTPS module-method API;
// leaf (downstream) devices, nested edge and offline twin caching;
// /twinChangeNotifications routes (accepted, never match); and the
// workload API (modules get a connection string with their key instead).
//
// It is an adapter package built on internal/mqtt (the broker) and
// internal/edge/iothub (the upstream sessions).
package edgehub
