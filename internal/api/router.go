package api

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// segKind is the kind of one pattern segment, ordered by specificity.
type segKind int

const (
	segWildcard segKind = iota // {name...}: the rest of the path
	segParam                   // {name}: one non-empty segment
	segLiteral                 // text, compared case-insensitively
)

// seg is one segment of a route pattern.
type seg struct {
	kind segKind
	text string // lower-cased literal, or the parameter name
}

// route is one registered method and pattern.
type route struct {
	method  string // "" matches any method
	pattern string
	segs    []seg
	h       http.Handler
}

// router matches request paths case-insensitively, segment by segment, on the
// escaped path, and hands percent-decoded parameters to handlers through
// (*http.Request).PathValue. Routes whose first segment is a parameter (the
// device API's {idScope}) never match a path whose first segment is reserved:
// the literal first segment of any route, plus names reserved up front.
type router struct {
	mu       sync.RWMutex
	routes   []*route
	reserved map[string]bool
	// notFound answers paths no route matches (err says why when the path
	// could not be decoded); notAllowed answers methods no route of a
	// matching path accepts (allowed lists those methods).
	notFound   func(w http.ResponseWriter, r *http.Request, err error)
	notAllowed func(w http.ResponseWriter, r *http.Request, allowed []string)
}

func newRouter(reserved []string) *router {
	rt := &router{reserved: map[string]bool{}}
	for _, s := range reserved {
		rt.reserved[strings.ToLower(s)] = true
	}
	return rt
}

// parsePattern splits "/a/{b}/c/{d...}" into segments.
func parsePattern(pattern string) ([]seg, error) {
	if !strings.HasPrefix(pattern, "/") {
		return nil, fmt.Errorf("pattern %q does not start with /", pattern)
	}
	body := strings.TrimSuffix(pattern[1:], "/")
	if body == "" {
		return nil, nil
	}
	parts := strings.Split(body, "/")
	segs := make([]seg, 0, len(parts))
	names := map[string]bool{}
	for i, p := range parts {
		switch {
		case p == "":
			return nil, fmt.Errorf("pattern %q has an empty segment", pattern)
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
			name := p[1 : len(p)-1]
			kind := segParam
			if rest, ok := strings.CutSuffix(name, "..."); ok {
				if i != len(parts)-1 {
					return nil, fmt.Errorf("pattern %q: wildcard {%s} is not the last segment", pattern, name)
				}
				name, kind = rest, segWildcard
			}
			if name == "" || strings.ContainsAny(name, "{}/") {
				return nil, fmt.Errorf("pattern %q: bad parameter name in segment %q", pattern, p)
			}
			if names[name] {
				return nil, fmt.Errorf("pattern %q: parameter {%s} appears twice", pattern, name)
			}
			names[name] = true
			segs = append(segs, seg{kind: kind, text: name})
		case strings.ContainsAny(p, "{}"):
			return nil, fmt.Errorf("pattern %q: segment %q mixes text and braces", pattern, p)
		default:
			segs = append(segs, seg{kind: segLiteral, text: strings.ToLower(p)})
		}
	}
	return segs, nil
}

// sameShape reports whether two patterns match exactly the same paths.
func sameShape(a, b []seg) bool {
	return slices.EqualFunc(a, b, func(x, y seg) bool {
		return x.kind == y.kind && (x.kind != segLiteral || x.text == y.text)
	})
}

// handle registers a route. A literal first segment becomes reserved.
func (rt *router) handle(method, pattern string, h http.Handler) error {
	if h == nil {
		return fmt.Errorf("route %s %s: nil handler", method, pattern)
	}
	if method != strings.ToUpper(method) || strings.ContainsAny(method, " \t/") {
		return fmt.Errorf("route %s %s: method must be an upper-case token or empty", method, pattern)
	}
	segs, err := parsePattern(pattern)
	if err != nil {
		return fmt.Errorf("route %s: %w", method, err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, r := range rt.routes {
		if r.method == method && sameShape(r.segs, segs) {
			return fmt.Errorf("route %s %s conflicts with %s %s", method, pattern, r.method, r.pattern)
		}
	}
	if len(segs) > 0 && segs[0].kind == segLiteral {
		rt.reserved[segs[0].text] = true
	}
	rt.routes = append(rt.routes, &route{method: method, pattern: pattern, segs: segs, h: h})
	return nil
}

// splitPath splits an escaped path into percent-decoded segments, dropping
// the leading slash and one trailing slash.
func splitPath(escaped string) ([]string, error) {
	p := strings.TrimPrefix(escaped, "/")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil, nil
	}
	parts := strings.Split(p, "/")
	for i, s := range parts {
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, fmt.Errorf("decode path segment %d: %w", i+1, err)
		}
		parts[i] = d
	}
	return parts, nil
}

// param is one matched path parameter.
type param struct{ name, value string }

// match returns the parameters if the route matches the decoded segments.
// firstReserved says whether the path's first segment is reserved. It
// allocates only the parameters of a matching route.
func (r *route) match(parts []string, firstReserved bool) ([]param, bool) {
	if len(r.segs) > 0 && r.segs[0].kind != segLiteral && firstReserved {
		return nil, false
	}
	wildcard := len(r.segs) > 0 && r.segs[len(r.segs)-1].kind == segWildcard
	switch {
	case wildcard && len(parts) < len(r.segs)-1: // the wildcard may be empty
		return nil, false
	case !wildcard && len(parts) != len(r.segs):
		return nil, false
	}
	n := 0
	for i, s := range r.segs {
		switch s.kind {
		case segLiteral:
			if !strings.EqualFold(parts[i], s.text) {
				return nil, false
			}
		case segParam:
			if parts[i] == "" {
				return nil, false
			}
			n++
		case segWildcard:
			n++
		}
	}
	if n == 0 {
		return nil, true
	}
	ps := make([]param, 0, n)
	for i, s := range r.segs {
		switch s.kind {
		case segParam:
			ps = append(ps, param{s.text, parts[i]})
		case segWildcard:
			ps = append(ps, param{s.text, strings.Join(parts[i:], "/")})
		}
	}
	return ps, true
}

// moreSpecific reports whether a should win over b when both match a path:
// at the first segment where they differ, a literal beats a parameter and a
// parameter beats a wildcard; a longer pattern beats its own prefix.
func moreSpecific(a, b []seg) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i].kind != b[i].kind {
			return a[i].kind > b[i].kind
		}
	}
	return len(a) > len(b)
}

// matchResult is the outcome of routing one request.
type matchResult struct {
	route   *route
	params  []param
	allowed []string // methods of routes matching the path, when route is nil
}

// match finds the route for a method and an escaped path.
func (rt *router) match(method, escapedPath string) (matchResult, error) {
	parts, err := splitPath(escapedPath)
	if err != nil {
		return matchResult{}, err
	}
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	firstReserved := len(parts) > 0 && rt.reserved[strings.ToLower(parts[0])]
	var best matchResult
	var allowed []string
	for _, r := range rt.routes {
		ps, ok := r.match(parts, firstReserved)
		if !ok {
			continue
		}
		if r.method != "" && r.method != method {
			allowed = append(allowed, r.method)
			continue
		}
		if best.route == nil || moreSpecific(r.segs, best.route.segs) ||
			(sameShape(r.segs, best.route.segs) && r.method != "") {
			best = matchResult{route: r, params: ps}
		}
	}
	if best.route == nil && len(allowed) > 0 {
		slices.Sort(allowed)
		best.allowed = slices.Compact(allowed)
	}
	return best, nil
}

// ServeHTTP dispatches a request.
func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m, err := rt.match(r.Method, r.URL.EscapedPath())
	switch {
	case err != nil || (m.route == nil && len(m.allowed) == 0):
		rt.notFound(w, r, err)
	case m.route == nil:
		rt.notAllowed(w, r, m.allowed)
	default:
		for _, p := range m.params {
			r.SetPathValue(p.name, p.value)
		}
		m.route.h.ServeHTTP(w, r)
	}
}
