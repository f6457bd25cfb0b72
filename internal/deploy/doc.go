// Package deploy owns the hub's automatic configurations: automatic device
// management (ADM) configurations with deviceContent or moduleContent, and
// IoT Edge deployments with modulesContent, both base (standard) and
// layered. It defines the Configuration JSON of the service API
// (/configurations/{id}), validates it, generates the system metric queries,
// and resolves which configurations apply to one device or module twin and
// what they write there (the priority and layering rules of Azure IoT Edge).
//
// It is a pure domain package: it does no I/O and imports neither net/http,
// an MQTT library nor a SQL driver. Target conditions are evaluated by the
// caller (the query language lives elsewhere) through a matcher function.
//
// # Classification
//
// A configuration's content holds exactly one non-empty kind. A
// modulesContent whose $edgeAgent has a whole "properties.desired" is a base
// deployment; any other modulesContent is a layered deployment (Azure has no
// "layered" field: az iot edge deployment create --layered only changes the
// CLI's own validation). A base sets a whole "properties.desired" on
// $edgeAgent, $edgeHub and every other module it names; a layered deployment
// writes $edgeAgent and $edgeHub only through dotted
// "properties.desired.<path>" keys, and other modules through either form.
//
// # Resolution
//
// Edge deployments are considered only for devices with
// capabilities.iotEdge. Among the matching base deployments the one with the
// highest priority applies (ties: the later createdTimeUtc, then the greater
// ID); the others are Targeted. Matching layered deployments whose priority
// is higher than the applied base's apply on top of it in ascending priority
// (ties: older first, so the newer one wins); layered deployments with no
// base, or with a priority not above the base's (Azure requires it to be
// higher), are Targeted and write nothing. A layer's whole
// "properties.desired" replaces that module's desired properties, and a
// "properties.desired.<path>" key replaces the value at that path.
//
// For ADM, the matching configuration with the highest priority (same ties)
// applies and the others are Targeted; lower-priority configurations are not
// merged in, even where they write other paths.
package deploy
