// Package telemetry owns the hub's built-in telemetry endpoint: the
// device-to-cloud [Message] with its system and application properties,
// the MQTT property-bag codec ([ParseBag], [EncodeBag]) and telemetry topic
// parser ([ParseTelemetryTopic]), and the [Endpoint], a durable stream
// bounded by size and age that the MQTT server appends to and that
// `muster monitor` and the service API read and follow.
//
// The stream itself is the store's ([store.Streams]); several instances
// sharing one database see one stream, with the database assigning the
// sequence numbers readers resume from.
//
// System properties carry the names an Event Hubs consumer of Azure IoT
// Hub's built-in endpoint sees (and `az iot hub monitor-events` shows):
// "message-id", "content-type", "iothub-connection-device-id", …; the
// Prop* constants list them with their MQTT property-bag keys.
//
// This package imports no transport (net/http, MQTT) and no SQL driver.
package telemetry
