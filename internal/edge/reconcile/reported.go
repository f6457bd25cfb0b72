package reconcile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// ReportedSchemaVersion is the schemaVersion of the reported document.
const ReportedSchemaVersion = "1.0"

// CreateOptionsChunk is the longest createOptions piece reported in one
// property; longer options are split into createOptions, createOptions01,
// … as in the desired properties.
const CreateOptionsChunk = 512

// RuntimeStatus is a module's reported runtimeStatus.
type RuntimeStatus string

// The runtime statuses (hub-edge spec §5.6). The agent runs no health
// checks, so it never reports RuntimeUnhealthy itself.
const (
	RuntimeUnknown   RuntimeStatus = "unknown"
	RuntimeBackoff   RuntimeStatus = "backoff"
	RuntimeRunning   RuntimeStatus = "running"
	RuntimeUnhealthy RuntimeStatus = "unhealthy"
	RuntimeStopped   RuntimeStatus = "stopped"
	RuntimeFailed    RuntimeStatus = "failed"
	RuntimeDead      RuntimeStatus = "dead"
)

// Reported is the $edgeAgent reported-properties document.
type Reported struct {
	SchemaVersion      string                    `json:"schemaVersion"`
	Version            AgentVersion              `json:"version"`
	LastDesiredVersion int64                     `json:"lastDesiredVersion"`
	LastDesiredStatus  LastDesiredStatus         `json:"lastDesiredStatus"`
	Runtime            ReportedRuntime           `json:"runtime"`
	SystemModules      ReportedSystemModules     `json:"systemModules"`
	Modules            map[string]ReportedModule `json:"modules"`
}

// LastDesiredStatus is the outcome of the last desired properties.
type LastDesiredStatus struct {
	Code        int    `json:"code"`
	Description string `json:"description"`
}

// ReportedRuntime is the reported runtime section.
type ReportedRuntime struct {
	Platform Platform                `json:"platform"`
	Type     string                  `json:"type,omitempty"`
	Settings ReportedRuntimeSettings `json:"settings"`
}

// ReportedRuntimeSettings are the reported runtime settings. Registry
// credentials are never reported: the map is always empty.
type ReportedRuntimeSettings struct {
	MinDockerVersion    string              `json:"minDockerVersion,omitempty"`
	LoggingOptions      string              `json:"loggingOptions,omitempty"`
	RegistryCredentials map[string]struct{} `json:"registryCredentials"`
}

// ReportedSystemModules are the reported system modules.
type ReportedSystemModules struct {
	EdgeAgent ReportedAgent   `json:"edgeAgent"`
	EdgeHub   *ReportedModule `json:"edgeHub,omitempty"`
}

// ReportedAgent is the reported edgeAgent system module.
type ReportedAgent struct {
	Type              string           `json:"type,omitempty"`
	RuntimeStatus     RuntimeStatus    `json:"runtimeStatus"`
	StatusDescription string           `json:"statusDescription"`
	ExitCode          int              `json:"exitCode"`
	LastStartTimeUtc  Timestamp        `json:"lastStartTimeUtc,omitzero"`
	LastExitTimeUtc   Timestamp        `json:"lastExitTimeUtc,omitzero"`
	ImagePullPolicy   string           `json:"imagePullPolicy,omitempty"`
	Settings          ReportedSettings `json:"settings"`
}

// ReportedModule is one reported module (edgeHub or a custom module).
type ReportedModule struct {
	Version            string              `json:"version,omitempty"`
	Type               string              `json:"type,omitempty"`
	Status             DesiredStatus       `json:"status,omitempty"`
	RestartPolicy      RestartPolicy       `json:"restartPolicy,omitempty"`
	ImagePullPolicy    string              `json:"imagePullPolicy,omitempty"`
	RuntimeStatus      RuntimeStatus       `json:"runtimeStatus"`
	StatusDescription  string              `json:"statusDescription"`
	ExitCode           int                 `json:"exitCode"`
	LastStartTimeUtc   Timestamp           `json:"lastStartTimeUtc,omitzero"`
	LastExitTimeUtc    Timestamp           `json:"lastExitTimeUtc,omitzero"`
	RestartCount       int                 `json:"restartCount"`
	LastRestartTimeUtc Timestamp           `json:"lastRestartTimeUtc,omitzero"`
	Settings           ReportedSettings    `json:"settings"`
	Env                map[string]EnvValue `json:"env"`
}

// EnvValue is one environment variable in the manifest shape.
type EnvValue struct {
	Value string `json:"value"`
}

// ReportedSettings are a module's reported settings. CreateOptions is
// split into CreateOptionsChunk-sized properties on the wire.
type ReportedSettings struct {
	Image         string
	ImageHash     string
	CreateOptions string
}

// MarshalJSON writes image, imageHash (when known) and createOptions,
// chunked at UTF-8 boundaries into createOptions, createOptions01, ….
func (s ReportedSettings) MarshalJSON() ([]byte, error) {
	m := map[string]string{"image": s.Image}
	if s.ImageHash != "" {
		m["imageHash"] = s.ImageHash
	}
	for i, c := range chunkString(s.CreateOptions, CreateOptionsChunk) {
		m[chunkKey(i)] = c
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode reported settings: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads the MarshalJSON shape, reassembling createOptions.
func (s *ReportedSettings) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("decode reported settings: %w", err)
	}
	*s = ReportedSettings{Image: m["image"], ImageHash: m["imageHash"]}
	var sb strings.Builder
	for i := 0; ; i++ {
		c, ok := m[chunkKey(i)]
		if !ok {
			break
		}
		sb.WriteString(c)
	}
	s.CreateOptions = sb.String()
	return nil
}

// chunkString splits s into pieces of at most n bytes without splitting a
// UTF-8 sequence; "" is one empty piece.
func chunkString(s string, n int) []string {
	if len(s) <= n {
		return []string{s}
	}
	var out []string
	for len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		if cut == 0 {
			cut = n
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

// timestampLayout is .NET's round-trip DateTime format without a zone,
// which is how the Azure agent reports UTC times
// ("2021-06-12T00:27:35.4200863").
const timestampLayout = "2006-01-02T15:04:05.0000000"

// Timestamp is a reported UTC time in the Azure agent's format. The zero
// Timestamp is omitted from the document.
type Timestamp struct {
	time.Time
}

// MarshalJSON writes the time in UTC as "2006-01-02T15:04:05.0000000".
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.UTC().Format(timestampLayout) + `"`), nil
}

// UnmarshalJSON reads a zone-less time as UTC, or an RFC 3339 time.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("decode timestamp: %w", err)
	}
	if v, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC); err == nil {
		t.Time = v
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("decode timestamp %q: %w", s, err)
	}
	t.Time = v.UTC()
	return nil
}

// MergePatch returns the JSON merge patch (RFC 7396) that turns the
// reported document prev into next: changed members, and null for members
// that disappeared (a removed module). Members of prev whose names start
// with "$" ($version, $metadata) are ignored. It returns nil when nothing
// changed. prev may be empty, meaning {}.
func MergePatch(prev, next []byte) ([]byte, error) {
	var p, n any
	if len(bytes.TrimSpace(prev)) > 0 {
		if err := decodeNumbers(prev, &p); err != nil {
			return nil, fmt.Errorf("merge patch: decode previous document: %w", err)
		}
	}
	if err := decodeNumbers(next, &n); err != nil {
		return nil, fmt.Errorf("merge patch: decode next document: %w", err)
	}
	if _, ok := n.(map[string]any); !ok {
		return nil, fmt.Errorf("merge patch: next document is not a JSON object")
	}
	if _, ok := p.(map[string]any); !ok {
		p = map[string]any{}
	}
	patch, changed := diffJSON(p, n)
	if !changed {
		return nil, nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(patch); err != nil {
		return nil, fmt.Errorf("merge patch: encode: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func decodeNumbers(b []byte, v *any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// diffJSON returns the merge patch from prev to next.
func diffJSON(prev, next any) (any, bool) {
	pm, pok := prev.(map[string]any)
	nm, nok := next.(map[string]any)
	if !pok || !nok {
		if reflect.DeepEqual(prev, next) {
			return nil, false
		}
		return next, true
	}
	out := map[string]any{}
	keys := make([]string, 0, len(pm))
	for k := range pm {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.HasPrefix(k, "$") {
			continue
		}
		if _, ok := nm[k]; !ok {
			out[k] = nil
		}
	}
	for k, nv := range nm {
		pv, ok := pm[k]
		if !ok {
			out[k] = nv
			continue
		}
		if d, changed := diffJSON(pv, nv); changed {
			out[k] = d
		}
	}
	return out, len(out) > 0
}
