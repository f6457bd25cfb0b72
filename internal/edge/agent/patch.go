package agent

import (
	"encoding/json"
	"reflect"
)

// mergePatch returns the JSON merge patch (RFC 7396) that turns old into
// next, both decoded JSON objects: members that changed are set, members
// that disappeared are null, and objects are compared member by member.
// It returns nil when nothing changed. Twin metadata ($version,
// $metadata) in old is ignored.
func mergePatch(old, next map[string]any) map[string]any {
	patch := map[string]any{}
	for k, nv := range next {
		ov, ok := old[k]
		if !ok {
			patch[k] = nv
			continue
		}
		no, nIsObj := nv.(map[string]any)
		oo, oIsObj := ov.(map[string]any)
		if nIsObj && oIsObj {
			if sub := mergePatch(oo, no); sub != nil {
				patch[k] = sub
			}
			continue
		}
		if !reflect.DeepEqual(ov, nv) {
			patch[k] = nv
		}
	}
	for k := range old {
		if k == "$version" || k == "$metadata" {
			continue
		}
		if _, ok := next[k]; !ok {
			patch[k] = nil
		}
	}
	if len(patch) == 0 {
		return nil
	}
	return patch
}

// decodeObject decodes a JSON object, or returns an empty one.
func decodeObject(b []byte) map[string]any {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return map[string]any{}
	}
	return m
}

// toObject round-trips v through JSON into a decoded object.
func toObject(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return decodeObject(b), nil
}
