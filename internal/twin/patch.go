package twin

import (
	"bytes"
	"encoding/json"
	"time"
)

// PatchDesired applies an RFC 7386 JSON merge patch to the desired
// properties (service PATCH /twins/{id} with properties.desired). Objects
// merge recursively, null deletes a member, any other value (arrays
// included) replaces it. Top-level "$metadata" and "$version" members are
// ignored; every other rule violation, or a result over 32 KiB, is an error
// and leaves t unchanged. On success the desired $version and the twin
// version each grow by one and the metadata of every written node is stamped
// with now and the new $version.
func PatchDesired(t *Twin, patch json.RawMessage, now time.Time) error {
	c, err := patchCollection(SectionDesired, t.Properties.Desired, patch, now)
	if err != nil {
		return err
	}
	t.Properties.Desired = c
	bump(t)
	return nil
}

// PatchReported applies a device's reported-properties merge patch
// ($iothub/twin/PATCH/properties/reported/), with the rules of PatchDesired.
// Reported metadata carries $lastUpdated only.
func PatchReported(t *Twin, patch json.RawMessage, now time.Time) error {
	c, err := patchCollection(SectionReported, t.Properties.Reported, patch, now)
	if err != nil {
		return err
	}
	t.Properties.Reported = c
	bump(t)
	return nil
}

// PatchTags applies a merge patch to the tags (8 KiB limit; no '$' keys).
// Tags have no $version or $metadata; the twin version grows by one.
func PatchTags(t *Twin, patch json.RawMessage) error {
	tags, err := patchTags(t.Tags, patch)
	if err != nil {
		return err
	}
	t.Tags = tags
	bump(t)
	return nil
}

// ReplaceDesired replaces the desired properties wholesale (PUT semantics).
// Null members of doc are dropped, top-level "$metadata" and "$version" are
// ignored, and every node's metadata is stamped with now and the new $version.
func ReplaceDesired(t *Twin, doc json.RawMessage, now time.Time) error {
	c, err := replaceCollection(SectionDesired, t.Properties.Desired, doc, now)
	if err != nil {
		return err
	}
	t.Properties.Desired = c
	bump(t)
	return nil
}

// ReplaceTags replaces the tags wholesale; null members are dropped.
func ReplaceTags(t *Twin, doc json.RawMessage) error {
	tags, err := replaceTags(doc)
	if err != nil {
		return err
	}
	t.Tags = tags
	bump(t)
	return nil
}

// Assignment sets the value at a path of a properties section, replacing
// whatever was there (objects are not merged). An empty Path means the whole
// section, whose value must then be an object. This is how configuration
// content such as "properties.desired.a.b" is written to a twin.
type Assignment struct {
	Path  []string
	Value json.RawMessage
}

// AssignDesired performs the assignments, in order, as one write of the
// desired properties: objects are created along each path (replacing
// non-object values), null members inside assigned objects are dropped, and
// the assigned nodes and their ancestors get fresh metadata. An empty list
// is not a write. Any invalid assignment or a result over 32 KiB is an error
// and leaves t unchanged.
func AssignDesired(t *Twin, assignments []Assignment, now time.Time) error {
	if len(assignments) == 0 {
		return nil
	}
	c := t.Properties.Desired
	vals := map[string]any(c.Values)
	tc := &touch{}
	for _, a := range assignments {
		x, err := decodeAssignment(SectionDesired, a)
		if err != nil {
			return err
		}
		if len(a.Path) == 0 {
			vals = x.(map[string]any)
		} else {
			vals = setPath(vals, a.Path, x)
		}
		tc.mark(a.Path)
	}
	if err := checkSize(SectionDesired, vals); err != nil {
		return err
	}
	t.Properties.Desired = commit(SectionDesired, c, vals, tc, now)
	bump(t)
	return nil
}

// ServiceUpdate is what a service client may write through PATCH or PUT
// /twins/{id} (and the module variant): the tags and the desired
// properties. A nil member was absent (or null) in the request.
type ServiceUpdate struct {
	Tags    json.RawMessage
	Desired json.RawMessage
}

// ParseServiceUpdate extracts the writable parts of a service twin body
// {"tags":{…},"properties":{"desired":{…}}}. Other members — the read-only
// identity fields and properties.reported, which SDKs echo back from a
// GET — are ignored. Member names are matched case-sensitively.
func ParseServiceUpdate(body []byte) (ServiceUpdate, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return ServiceUpdate{}, &FieldError{Path: "twin", Reason: "body must be a JSON object"}
	}
	u := ServiceUpdate{Tags: nonNull(top["tags"])}
	if props := nonNull(top["properties"]); props != nil {
		var pm map[string]json.RawMessage
		if err := json.Unmarshal(props, &pm); err != nil {
			return ServiceUpdate{}, &FieldError{Path: "properties", Reason: "must be a JSON object"}
		}
		u.Desired = nonNull(pm["desired"])
	}
	return u, nil
}

func nonNull(raw json.RawMessage) json.RawMessage {
	if raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	return raw
}

// PatchService merge-patches the tags and desired properties of a service
// PATCH as one write: both parts are validated before either is applied,
// the twin version grows by one, and the desired $version only when desired
// properties were sent.
func PatchService(t *Twin, u ServiceUpdate, now time.Time) error {
	tags, desired := t.Tags, t.Properties.Desired
	var err error
	if u.Tags != nil {
		if tags, err = patchTags(t.Tags, u.Tags); err != nil {
			return err
		}
	}
	if u.Desired != nil {
		if desired, err = patchCollection(SectionDesired, t.Properties.Desired, u.Desired, now); err != nil {
			return err
		}
	}
	t.Tags, t.Properties.Desired = tags, desired
	bump(t)
	return nil
}

// ReplaceService replaces the tags and desired properties of a service PUT
// as one write. A part the request left out is replaced by an empty object;
// reported properties are untouched.
func ReplaceService(t *Twin, u ServiceUpdate, now time.Time) error {
	rawTags, rawDesired := u.Tags, u.Desired
	if rawTags == nil {
		rawTags = json.RawMessage("{}")
	}
	if rawDesired == nil {
		rawDesired = json.RawMessage("{}")
	}
	tags, err := replaceTags(rawTags)
	if err != nil {
		return err
	}
	desired, err := replaceCollection(SectionDesired, t.Properties.Desired, rawDesired, now)
	if err != nil {
		return err
	}
	t.Tags, t.Properties.Desired = tags, desired
	bump(t)
	return nil
}

// DesiredDelta returns the body of the desired-properties notification a
// connected device receives after a write that took before to after
// ($iothub/twin/PATCH/properties/desired/?$version=N): the smallest merge
// patch from before's desired properties to after's — changed members with
// their new values, deleted members as null — plus "$version". A nil before
// gives every member of after.
func DesiredDelta(before, after *Twin) (json.RawMessage, error) {
	var b map[string]any
	if before != nil {
		b = before.Properties.Desired.Values
	}
	return encodeWithVersion(diff(b, after.Properties.Desired.Values), after.Properties.Desired.Version)
}

func patchCollection(section Section, c Collection, raw []byte, now time.Time) (Collection, error) {
	p, err := decodeObject(section, raw, true)
	if err != nil {
		return Collection{}, err
	}
	delete(p, keyMetadata)
	delete(p, keyVersion)
	vals := mergeObject(c.Values, p)
	if err := checkSize(section, vals); err != nil {
		return Collection{}, err
	}
	return commit(section, c, vals, touchPatch(p), now), nil
}

func replaceCollection(section Section, c Collection, raw []byte, now time.Time) (Collection, error) {
	p, err := decodeObject(section, raw, true)
	if err != nil {
		return Collection{}, err
	}
	delete(p, keyMetadata)
	delete(p, keyVersion)
	vals := stripNulls(p)
	if err := checkSize(section, vals); err != nil {
		return Collection{}, err
	}
	return commit(section, c, vals, touchAll(), now), nil
}

// StampDesired returns the desired properties vals at $version ver after a
// write at now, for a store that merges and validates them itself: the
// members a merge patch wrote (patch non-nil) get now and ver in their
// $metadata, or every node does (patch nil: a replacement); untouched
// nodes keep old's metadata, and nodes old lacks (old nil: all of them)
// are stamped too. The result mirrors vals exactly.
func StampDesired(old *Metadata, vals map[string]any, patch map[string]any, ver int64, now time.Time) Collection {
	tc := touchAll()
	if patch != nil {
		tc = touchPatch(patch)
	}
	return Collection{Values: vals, Metadata: rebuild(old, vals, tc, now.UTC(), ver), Version: ver}
}

// commit builds the section after a write of vals that touched tc.
func commit(section Section, c Collection, vals map[string]any, tc *touch, now time.Time) Collection {
	ver := c.Version + 1
	metaVer := int64(0)
	if section == SectionDesired {
		metaVer = ver
	}
	return Collection{Values: vals, Metadata: rebuild(c.Metadata, vals, tc, now.UTC(), metaVer), Version: ver}
}

func patchTags(cur Object, raw []byte) (Object, error) {
	p, err := decodeObject(SectionTags, raw, false)
	if err != nil {
		return nil, err
	}
	vals := mergeObject(cur, p)
	if err := checkSize(SectionTags, vals); err != nil {
		return nil, err
	}
	return vals, nil
}

func replaceTags(raw []byte) (Object, error) {
	p, err := decodeObject(SectionTags, raw, false)
	if err != nil {
		return nil, err
	}
	vals := stripNulls(p)
	if err := checkSize(SectionTags, vals); err != nil {
		return nil, err
	}
	return vals, nil
}
