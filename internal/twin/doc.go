// Package twin owns the device and module twin document of the hub: its JSON
// shapes (the service view of GET /twins/{id} and the device view of the
// MQTT twin GET), the JSON merge-patch rules (RFC 7386) for tags, desired and
// reported properties, the version arithmetic (properties.desired.$version,
// properties.reported.$version, the twin version and its etag), the
// $metadata tree, and Azure's twin limits.
//
// It is a pure domain package: it does no I/O and imports neither net/http,
// an MQTT library nor a SQL driver. Persistence (and etag compare-and-swap
// against the store) belongs to the caller.
//
// # Rules enforced on every write
//
// Keys (at every level, including inside objects nested in arrays) must be
// 1–1024 bytes of valid UTF-8 and must not contain '.', ' ', '$' or a
// control character (Unicode Cc: C0, DEL and C1). The only exception is the
// read-only pair "$metadata" and "$version" at the top of a desired or
// reported document: clients that send back a document they read (the C#
// SDK's TwinCollection does) are accepted, and both keys are ignored. Tags
// accept no '$' key at all.
//
// String values are at most 4096 bytes. Objects and arrays nest at most 10
// deep: the value of a top-level key is at depth 1, so Azure's own example
// {"one":{"two":…{"ten":{"property":"value"}}}} is the deepest accepted
// document. Arrays count as a level, like objects.
//
// Sizes are measured as Azure documents them: the compact JSON encoding of
// the section (UTF-8 bytes, no insignificant white space, no HTML escaping)
// without $metadata and $version. Desired and reported are limited to 32 KiB
// each and tags to 8 KiB; a write whose result would exceed the limit is
// refused with a *SizeError. Encoding/json escapes control characters inside
// strings as \u00XX and U+2028/U+2029 as \u2028/\u2029, so strings holding
// them count a few bytes more than Azure would count; nothing else differs.
//
// In a merge patch, null deletes a key, objects merge recursively and every
// other value (arrays included) replaces the old one. Nulls inside a replaced
// document (PUT) are dropped the same way, so stored object trees never hold
// null; arrays are stored verbatim.
//
// Every write of a section increments that section's $version (tags have
// none) and the twin version by one; the etag is derived from the twin
// version (see ETag). A write that fails leaves the twin untouched.
package twin
