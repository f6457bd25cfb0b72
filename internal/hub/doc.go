// Package hub owns the hub's device-facing core: what an authenticated
// device or module connection may do and what the hub does for it. A
// connection is authenticated by package hubauth and becomes a Session,
// which
//
//   - applies the per-identity topic rules (hub-edge-protocol §2.3): a
//     client publishes and subscribes only on its own topics;
//   - stores telemetry (devices/{id}[/modules/{mid}]/messages/events/{bag})
//     in the built-in endpoint, stamped with the authenticated identity and
//     the enqueued time, before the transport acknowledges it;
//   - answers twin requests ($iothub/twin/GET and reported PATCH) on
//     $iothub/twin/res/{status}/?$rid={rid}[&$version={v}]; a module
//     connection ({deviceId}/{moduleId}) uses the same topics on its
//     module twin;
//   - pushes desired-property changes made through the Service's registry
//     operations to connected clients that subscribed to
//     $iothub/twin/PATCH/properties/desired/#, as the merge patch from the
//     last desired properties the client was sent (or had when it
//     subscribed) plus "$version";
//   - carries direct methods (Service.InvokeMethod): the request goes to the
//     identity's latest connection subscribed to $iothub/methods/POST/# and
//     its answer on $iothub/methods/res/{status}/?$rid={rid} completes the
//     call;
//   - queues cloud-to-device messages durably (Service.SendCloudMessage,
//     in the registry's store, C2DQueueDepth per device) and delivers them
//     at QoS 1 on devices/{id}/messages/devicebound/{bag} to connections
//     subscribed to them; a message leaves the queue when the device
//     acknowledges it (PUBACK, through AckingClient) or expires, and one
//     left unacknowledged is sent again on the next connection;
//   - records connection state and (write-throttled) last activity of
//     devices and modules in their registry records, off the connection
//     path (Service.Run).
//
// The Service also fronts the identity registry for the hub service API,
// so that twin writes through it reach the desired-change notifications.
// Disabling or deleting a device through it ends the live sessions of the
// device and its modules at once (Service.DisconnectDevice;
// Service.DisconnectModule for a module identity).
//
// Several instances of the hub may share one store (`muster serve` on one
// PostgreSQL database), each holding some of the connections. With
// Options.Changes they relay to each other, over a durable stream of that
// store, what concerns connections held elsewhere (changes.go): desired
// changes, C2D messages, revocations of devices and modules, and direct
// methods with their answers (methods_relay.go); an instance that starts
// makes the others recheck their sessions against the store, for changes
// whose relay a crash lost (changes_recheck.go). Without it, all of this
// is in-process: a client connected to another instance learns of a change
// by its next twin GET or reconnect.
//
// Topic strings are the Azure IoT wire protocol and belong here; the MQTT
// transport (package mqtt's hub realm) only carries them. This is a domain
// package: it imports no net/http, no MQTT library and no SQL driver.
package hub
