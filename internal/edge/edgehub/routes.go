package edgehub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/muster-iot/muster/internal/query"
	"github.com/muster-iot/muster/internal/telemetry"
)

// MaxDesiredSize is the largest $edgeHub desired-properties document
// ParseDesired accepts.
const MaxDesiredSize = 1 << 20

// The lastDesiredStatus codes of the $edgeHub reported properties.
const (
	CodeOK           = 200
	CodeBadConfig    = 400
	CodeBadSchema    = 412
	CodeEmptyConfig  = 417
	defaultPriority  = 9
	maxRoutePriority = 9
)

// ErrInvalidDesired matches every *DesiredError.
var ErrInvalidDesired = errors.New("invalid $edgeHub desired properties")

// DesiredError says why $edgeHub desired properties were rejected: the
// code to report and the route or field at fault.
type DesiredError struct {
	Code    int
	Version int64
	Field   string
	Msg     string
}

func (e *DesiredError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("invalid $edgeHub desired properties (%d): %s", e.Code, e.Msg)
	}
	return fmt.Sprintf("invalid $edgeHub desired properties (%d): %s: %s", e.Code, e.Field, e.Msg)
}

// Is reports whether target is ErrInvalidDesired.
func (e *DesiredError) Is(target error) bool { return target == ErrInvalidDesired }

// Desired is a parsed $edgeHub desired-properties document.
type Desired struct {
	// Version is the twin's $version.
	Version int64
	// SchemaVersion is "1.0" to "1.3".
	SchemaVersion string
	// Routes are sorted by name.
	Routes []Route
	// TimeToLiveSecs is storeAndForwardConfiguration.timeToLiveSecs
	// (recorded; messages are not stored, see the package documentation).
	TimeToLiveSecs int64
}

// SourceKind is what a route's FROM selects.
type SourceKind int

// The route sources (hub-edge-protocol §8).
const (
	// SourceAll is /* and /messages/*: every device and module message.
	SourceAll SourceKind = iota + 1
	// SourceAllModules is /messages/modules/*.
	SourceAllModules
	// SourceModule is /messages/modules/{m}/*: every message of module m.
	SourceModule
	// SourceModuleOutputs is /messages/modules/{m}/outputs/*.
	SourceModuleOutputs
	// SourceModuleOutput is /messages/modules/{m}/outputs/{output}.
	SourceModuleOutput
	// SourceTwinChanges is /twinChangeNotifications; it is accepted but
	// never matches (twin change notifications are not generated).
	SourceTwinChanges
)

// Sink is where a route sends a message.
type Sink struct {
	// Upstream is true for $upstream (the IoT hub).
	Upstream bool
	// Module and Input name a BrokeredEndpoint("/modules/{m}/inputs/{i}").
	Module, Input string
}

func (s Sink) String() string {
	if s.Upstream {
		return "$upstream"
	}
	return fmt.Sprintf("BrokeredEndpoint(\"/modules/%s/inputs/%s\")", s.Module, s.Input)
}

// Route is one parsed route.
type Route struct {
	Name string
	// Text is the route as written.
	Text     string
	Source   SourceKind
	Module   string // SourceModule*, the module
	Output   string // SourceModuleOutput, the output
	Where    query.Expr
	HasWhere bool
	Sink     Sink
	// Priority (0 highest) and TimeToLiveSecs of a 1.1+ route object.
	Priority       int
	TimeToLiveSecs int64
}

var (
	routeNamePattern = regexp.MustCompile(`^[^.$# ]+$`)
	brokeredPattern  = regexp.MustCompile(`(?i)^BrokeredEndpoint\(\s*"([^"]*)"\s*\)$`)
)

// ParseDesired reads $edgeHub desired properties (with or without $version
// and $metadata). A document without content is CodeEmptyConfig; an
// unsupported schemaVersion is CodeBadSchema; anything else wrong is
// CodeBadConfig naming the route or field.
func ParseDesired(raw []byte) (*Desired, error) {
	if len(raw) > MaxDesiredSize {
		return nil, &DesiredError{Code: CodeBadConfig, Msg: fmt.Sprintf("document is %d bytes, more than the %d allowed", len(raw), MaxDesiredSize)}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return nil, &DesiredError{Code: CodeBadConfig, Msg: "document is not a JSON object"}
	}
	d := &Desired{}
	if v, ok := top["$version"]; ok {
		n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil {
			return nil, &DesiredError{Code: CodeBadConfig, Field: "$version", Msg: "must be an integer"}
		}
		d.Version = n
	}
	fail := func(code int, field, format string, args ...any) (*Desired, error) {
		return nil, &DesiredError{Code: code, Version: d.Version, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	content := 0
	for k := range top {
		if k != "$version" && k != "$metadata" {
			content++
		}
	}
	if content == 0 {
		return fail(CodeEmptyConfig, "", "no deployment: the desired properties are empty")
	}
	if err := json.Unmarshal(top["schemaVersion"], &d.SchemaVersion); err != nil || d.SchemaVersion == "" {
		return fail(CodeBadConfig, "schemaVersion", "required, a string")
	}
	switch d.SchemaVersion {
	case "1.0", "1.1", "1.2", "1.3":
	default:
		return fail(CodeBadSchema, "schemaVersion", "%q is not supported (1.0 to 1.3)", d.SchemaVersion)
	}
	var routes map[string]json.RawMessage
	if raw, ok := top["routes"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &routes); err != nil {
			return fail(CodeBadConfig, "routes", "must be an object of named routes")
		}
	}
	names := make([]string, 0, len(routes))
	for name := range routes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		field := "routes." + name
		if !routeNamePattern.MatchString(name) {
			return fail(CodeBadConfig, field, "a route name must not contain '.', '$', '#' or a space")
		}
		r := Route{Name: name, Priority: defaultPriority}
		rawRoute := bytes.TrimSpace(routes[name])
		switch {
		case len(rawRoute) > 0 && rawRoute[0] == '"':
			if err := json.Unmarshal(rawRoute, &r.Text); err != nil {
				return fail(CodeBadConfig, field, "not a valid string")
			}
		case len(rawRoute) > 0 && rawRoute[0] == '{' && d.SchemaVersion != "1.0":
			var obj struct {
				Route          *string `json:"route"`
				Priority       *int    `json:"priority"`
				TimeToLiveSecs *int64  `json:"timeToLiveSecs"`
			}
			if err := json.Unmarshal(rawRoute, &obj); err != nil {
				return fail(CodeBadConfig, field, "must be a route string or {route, priority, timeToLiveSecs}: %v", err)
			}
			if obj.Route == nil {
				return fail(CodeBadConfig, field+".route", "required")
			}
			r.Text = *obj.Route
			if obj.Priority != nil {
				if *obj.Priority < 0 || *obj.Priority > maxRoutePriority {
					return fail(CodeBadConfig, field+".priority", "%d is not from 0 to %d", *obj.Priority, maxRoutePriority)
				}
				r.Priority = *obj.Priority
			}
			if obj.TimeToLiveSecs != nil {
				if *obj.TimeToLiveSecs < 0 || *obj.TimeToLiveSecs > 4294967295 {
					return fail(CodeBadConfig, field+".timeToLiveSecs", "%d is not from 0 to 4294967295", *obj.TimeToLiveSecs)
				}
				r.TimeToLiveSecs = *obj.TimeToLiveSecs
			}
		default:
			if d.SchemaVersion == "1.0" {
				return fail(CodeBadConfig, field, "must be a route string (schemaVersion 1.0)")
			}
			return fail(CodeBadConfig, field, "must be a route string or an object {route, priority, timeToLiveSecs}")
		}
		if err := parseRoute(&r); err != nil {
			return fail(CodeBadConfig, field, "%q: %v", r.Text, err)
		}
		d.Routes = append(d.Routes, r)
	}
	if raw, ok := top["storeAndForwardConfiguration"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		var sf struct {
			TimeToLiveSecs *int64 `json:"timeToLiveSecs"`
		}
		if err := json.Unmarshal(raw, &sf); err != nil {
			return fail(CodeBadConfig, "storeAndForwardConfiguration", "%v", err)
		}
		if sf.TimeToLiveSecs != nil {
			if *sf.TimeToLiveSecs < 0 {
				return fail(CodeBadConfig, "storeAndForwardConfiguration.timeToLiveSecs", "must not be negative")
			}
			d.TimeToLiveSecs = *sf.TimeToLiveSecs
		}
	}
	return d, nil
}

// ParseRoute parses one route string: FROM <source> [WHERE <condition>]
// INTO <sink>, keywords case-insensitive.
func ParseRoute(text string) (Route, error) {
	r := Route{Text: text, Priority: defaultPriority}
	err := parseRoute(&r)
	return r, err
}

func parseRoute(r *Route) error {
	s := strings.TrimSpace(r.Text)
	rest, ok := cutKeyword(s, "FROM")
	if !ok {
		return errors.New("must start with FROM")
	}
	into := lastKeyword(rest, "INTO")
	if into < 0 {
		return errors.New("has no INTO <sink>")
	}
	head, sinkText := strings.TrimSpace(rest[:into]), strings.TrimSpace(rest[into+len("INTO"):])
	sourceText, cond := head, ""
	if i := firstKeyword(head, "WHERE"); i >= 0 {
		sourceText, cond = strings.TrimSpace(head[:i]), strings.TrimSpace(head[i+len("WHERE"):])
		if cond == "" {
			return errors.New("WHERE has no condition")
		}
	}
	if err := r.parseSource(sourceText); err != nil {
		return err
	}
	if cond != "" {
		e, err := query.ParseCondition(cond)
		if err != nil {
			return fmt.Errorf("WHERE: %w", err)
		}
		r.Where, r.HasWhere = e, true
	}
	return r.parseSink(sinkText)
}

// cutKeyword cuts a leading keyword followed by white space.
func cutKeyword(s, kw string) (string, bool) {
	if len(s) <= len(kw) || !strings.EqualFold(s[:len(kw)], kw) || !unicode.IsSpace(rune(s[len(kw)])) {
		return "", false
	}
	return s[len(kw):], true
}

// keywordAt reports whether kw stands alone (white space around it) at i.
func keywordAt(s, kw string, i int) bool {
	if i+len(kw) > len(s) || !strings.EqualFold(s[i:i+len(kw)], kw) {
		return false
	}
	before := i == 0 || unicode.IsSpace(rune(s[i-1]))
	after := i+len(kw) == len(s) || unicode.IsSpace(rune(s[i+len(kw)]))
	return before && after
}

// firstKeyword finds the first stand-alone kw outside quotes.
func firstKeyword(s, kw string) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case keywordAt(s, kw, i):
			return i
		}
	}
	return -1
}

// lastKeyword finds the last stand-alone kw outside quotes.
func lastKeyword(s, kw string) int {
	last := -1
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case keywordAt(s, kw, i):
			last = i
		}
	}
	return last
}

func (r *Route) parseSource(s string) error {
	switch s {
	case "/*", "/messages/*":
		r.Source = SourceAll
		return nil
	case "/messages/modules/*":
		r.Source = SourceAllModules
		return nil
	case "/twinChangeNotifications":
		r.Source = SourceTwinChanges
		return nil
	}
	rest, ok := strings.CutPrefix(s, "/messages/modules/")
	if !ok {
		return fmt.Errorf("source %q is not /*, /messages/*, /messages/modules/*, /messages/modules/{module}/*, /messages/modules/{module}/outputs/* or /messages/modules/{module}/outputs/{output}", s)
	}
	module, tail, ok := strings.Cut(rest, "/")
	if !ok || module == "" || !telemetry.ValidID(module) {
		return fmt.Errorf("source %q does not name a module", s)
	}
	r.Module = module
	switch {
	case tail == "*":
		r.Source = SourceModule
	case tail == "outputs/*":
		r.Source = SourceModuleOutputs
	case strings.HasPrefix(tail, "outputs/"):
		out := strings.TrimPrefix(tail, "outputs/")
		if out == "" || strings.ContainsAny(out, "/*#+ ") {
			return fmt.Errorf("source %q: %q is not an output name", s, out)
		}
		r.Source, r.Output = SourceModuleOutput, out
	default:
		return fmt.Errorf("source %q: after the module comes /* or /outputs/…", s)
	}
	return nil
}

func (r *Route) parseSink(s string) error {
	if s == "$upstream" {
		r.Sink = Sink{Upstream: true}
		return nil
	}
	m := brokeredPattern.FindStringSubmatch(s)
	if m == nil {
		return fmt.Errorf("sink %q is not $upstream or BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")", s)
	}
	parts := strings.Split(strings.TrimPrefix(m[1], "/"), "/")
	if !strings.HasPrefix(m[1], "/") || len(parts) != 4 || parts[0] != "modules" || parts[2] != "inputs" ||
		!telemetry.ValidID(parts[1]) || parts[3] == "" || strings.ContainsAny(parts[3], "/*#+ ") {
		return fmt.Errorf("sink %q: the endpoint must be \"/modules/{module}/inputs/{input}\"", s)
	}
	r.Sink = Sink{Module: parts[1], Input: parts[3]}
	return nil
}

// Message is a message a route is evaluated against.
type Message struct {
	// DeviceID and ModuleID are the sender's identity.
	DeviceID, ModuleID string
	// System and App are the message's properties (telemetry.ParseBag).
	System, App map[string]string
	// Body is the payload.
	Body []byte
}

// Output is the message's output name ($.on), "" for plain telemetry.
func (m *Message) Output() string { return m.System[telemetry.PropOutputName] }

// matchesSource applies the route's FROM.
func (r *Route) matchesSource(m *Message) bool {
	switch r.Source {
	case SourceAll:
		return true
	case SourceAllModules:
		return m.ModuleID != ""
	case SourceModule:
		return m.ModuleID == r.Module
	case SourceModuleOutputs:
		return m.ModuleID == r.Module && m.Output() != ""
	case SourceModuleOutput:
		return m.ModuleID == r.Module && m.Output() == r.Output
	}
	return false
}

// Matches reports whether the route takes the message: its source
// selects it and its WHERE condition, if any, is true. A condition that
// cannot be evaluated does not match.
func (r *Route) Matches(m *Message) bool {
	if !r.matchesSource(m) {
		return false
	}
	if !r.HasWhere {
		return true
	}
	ok, err := r.Where.Eval(conditionDoc(m))
	return err == nil && ok
}

// conditionDoc is the document a WHERE condition reads: application
// properties by name, system properties as $messageId, $correlationId,
// $userId, $to, $contentType, $contentEncoding, $outputName,
// $connectionDeviceId and $connectionModuleId, and $body for a JSON body
// sent with content type application/json and a UTF-8 encoding (as IoT
// Hub routing does).
func conditionDoc(m *Message) map[string]any {
	doc := make(map[string]any, len(m.App)+10)
	for k, v := range m.App {
		doc[k] = v
	}
	for prop, name := range map[string]string{
		telemetry.PropMessageID: "$messageId", telemetry.PropCorrelationID: "$correlationId", telemetry.PropUserID: "$userId",
		telemetry.PropTo: "$to", telemetry.PropContentType: "$contentType", telemetry.PropContentEncoding: "$contentEncoding",
		telemetry.PropOutputName: "$outputName",
	} {
		if v, ok := m.System[prop]; ok {
			doc[name] = v
		}
	}
	doc["$connectionDeviceId"] = m.DeviceID
	if m.ModuleID != "" {
		doc["$connectionModuleId"] = m.ModuleID
	}
	ct := strings.ToLower(m.System[telemetry.PropContentType])
	ce := strings.ToLower(strings.ReplaceAll(m.System[telemetry.PropContentEncoding], "-", ""))
	if strings.HasPrefix(ct, "application/json") && (ce == "utf8" || ce == "utf16" || ce == "utf32") {
		var body any
		dec := json.NewDecoder(bytes.NewReader(m.Body))
		dec.UseNumber()
		if dec.Decode(&body) == nil {
			doc["$body"] = jsonNumbers(body)
		}
	}
	return doc
}

// jsonNumbers turns json.Number values into float64, the evaluator's
// number type.
func jsonNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		f, err := t.Float64()
		if err != nil {
			return t.String()
		}
		return f
	case map[string]any:
		for k, x := range t {
			t[k] = jsonNumbers(x)
		}
	case []any:
		for i, x := range t {
			t[i] = jsonNumbers(x)
		}
	}
	return v
}

// Sinks returns the distinct sinks of the routes that take the message,
// $upstream first, then brokered endpoints in route order.
func Sinks(routes []Route, m *Message) []Sink {
	var out []Sink
	seen := map[Sink]bool{}
	for i := range routes {
		r := &routes[i]
		if seen[r.Sink] || !r.Matches(m) {
			continue
		}
		seen[r.Sink] = true
		out = append(out, r.Sink)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Upstream && !out[j].Upstream })
	return out
}
