package process

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

// createOptions is the part of Docker's container-create JSON the process
// runtime honours (see the package documentation).
type createOptions struct {
	Cmd        []string
	Env        []string
	WorkingDir string
}

// strSlice decodes a JSON string or array of strings, like Docker's.
type strSlice []string

// UnmarshalJSON accepts a string (one element), an array of strings or
// null.
func (s *strSlice) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("must be a string or an array of strings")
	}
	*s = many
	return nil
}

// parseCreateOptions decodes and validates a module's createOptions.
func parseCreateOptions(module, raw string) (createOptions, error) {
	var out createOptions
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return out, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &fields); err != nil {
		return out, &runtime.SpecError{Module: module, Field: "settings.createOptions", Msg: "not a JSON object: " + err.Error()}
	}
	for key, val := range fields {
		field := "settings.createOptions." + key
		switch strings.ToLower(key) {
		case "cmd":
			var s strSlice
			if err := json.Unmarshal(val, &s); err != nil {
				return out, &runtime.SpecError{Module: module, Field: field, Msg: err.Error()}
			}
			out.Cmd = s
		case "env":
			var env []string
			if err := json.Unmarshal(val, &env); err != nil {
				return out, &runtime.SpecError{Module: module, Field: field, Msg: "must be an array of \"NAME=value\" strings"}
			}
			for i, kv := range env {
				name, _, ok := strings.Cut(kv, "=")
				if !ok || name == "" {
					return out, &runtime.SpecError{Module: module, Field: fmt.Sprintf("%s[%d]", field, i), Msg: fmt.Sprintf("%q is not NAME=value", kv)}
				}
			}
			out.Env = env
		case "workingdir":
			var dir string
			if err := json.Unmarshal(val, &dir); err != nil {
				return out, &runtime.SpecError{Module: module, Field: field, Msg: "must be a string"}
			}
			if dir != "" && !filepath.IsAbs(dir) {
				return out, &runtime.SpecError{Module: module, Field: field, Msg: fmt.Sprintf("%q is not an absolute path", dir)}
			}
			out.WorkingDir = dir
		case "entrypoint":
			var s strSlice
			if err := json.Unmarshal(val, &s); err == nil && len(s) == 0 {
				continue
			}
			return out, &runtime.SpecError{Module: module, Field: field, Msg: "not supported by the process runtime: settings.image is the executable, createOptions.Cmd its arguments"}
		}
	}
	return out, nil
}

// resolveImage turns a module image into the absolute path of an
// executable (see the package documentation for the accepted forms).
func resolveImage(module, image string, lookPath func(string) (string, error)) (string, error) {
	fail := func(msg string) error {
		return &runtime.SpecError{Module: module, Field: "settings.image", Msg: msg}
	}
	image = strings.TrimSpace(image)
	var path string
	switch {
	case image == "":
		return "", fail("empty")
	case strings.HasPrefix(image, "process:"):
		u, err := url.Parse(image)
		if err != nil {
			return "", fail(fmt.Sprintf("%q is not a valid process URI: %v", image, err))
		}
		if u.Host != "" || u.Opaque != "" {
			return "", fail(fmt.Sprintf("%q: a process URI must be process:///<absolute path> (no host)", image))
		}
		path = filepath.FromSlash(uriPath(u.Path))
		if !filepath.IsAbs(path) {
			return "", fail(fmt.Sprintf("%q: the path %q is not absolute", image, path))
		}
	case filepath.IsAbs(image):
		path = image
	case strings.ContainsAny(image, `/\`) || strings.Contains(image, ":"):
		return "", fail(fmt.Sprintf("%q is neither an absolute executable path, a process:/// URI nor a bare executable name; container image references need the docker runtime", image))
	default:
		p, err := lookPath(image)
		if err != nil {
			return "", fail(fmt.Sprintf("executable %q not found in PATH: %v", image, err))
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", fail(fmt.Sprintf("executable %q: %v", image, err))
		}
		return abs, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fail(fmt.Sprintf("executable %s: %v", path, err))
	}
	if !st.Mode().IsRegular() {
		return "", fail(fmt.Sprintf("executable %s is not a regular file", path))
	}
	if err := checkExecutable(st); err != nil {
		return "", fail(fmt.Sprintf("executable %s: %v", path, err))
	}
	return path, nil
}
