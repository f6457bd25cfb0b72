// Package rollout owns the hub's deployment engine: the stored automatic
// configurations (device configurations and IoT Edge deployments, in the
// JSON of package deploy) with their etags and metrics, and the work that
// makes twins follow them.
//
// # Configurations
//
// Configurations are records of kind store.KindConfiguration, one per hub
// and configuration ID. Their content cannot change after creation (as in
// Azure IoT Hub: create a new configuration instead); labels, target
// condition, priority and metric queries can. System metrics
// (targetedCount, appliedCount and, for edge deployments,
// reportedSuccessfulCount and reportedFailedCount) and custom metrics are
// counted when a configuration is read, by the store's twin querier (SQL
// COUNT inside the database), so they always reflect the twins as stored.
//
// # Engine
//
// The Engine evaluates target conditions (package query's Go evaluator on
// the service-side twin document) and resolves priorities and layers
// (package deploy) per device, then writes what changed: desired
// properties of the device twin (deviceContent), of module twins
// (modulesContent of the applied base and layered edge deployments,
// moduleContent) and each twin's configurations map ({id: {"status":
// "Applied"|"Targeted"}}; on the device twin for device configurations, on
// the module twins for edge deployments and module configurations). A
// desired-property write is a merge patch computed from the stored
// properties to the resolved ones, sent with the twin's etag through a
// DesiredWriter so that connected devices and modules are notified; an
// evaluation that changes nothing writes nothing, so re-evaluating is
// always safe. Deleting a configuration, or a device leaving its target,
// removes the configuration's status from the twins but leaves their
// desired properties as they are (no roll-back).
//
// Work is asynchronous but bounded and coalesced: a device is queued at
// most once (a change while it is being evaluated queues it again
// afterwards), the queue holds at most Options.MaxQueue devices (on
// overflow a full re-evaluation is scheduled instead), and a fixed number
// of workers drain it. A configuration change, the engine's start and a
// periodic timer schedule a full re-evaluation that pages through the hub's
// devices. Device and twin changes reach the engine through ObservedDocs,
// the store.Docs that the registry and the provisioning service write
// through, so identities created by provisioning (with their enrollment's
// initial twin tags), by the service API or by an edge device's module
// management are all seen. Flush waits until the engine is idle, which
// makes tests deterministic.
//
// Per-device content (POST /devices/{id}/applyConfigurationContent) is
// written at once; modules it names whose identities do not exist yet are
// remembered (records of kind "pendingModulesContent") and written when
// the edge agent creates them. A device targeted by an automatic edge
// deployment does not accept per-device modules content.
//
// This is a domain package: it imports neither net/http, an MQTT library
// nor a SQL driver.
package rollout
