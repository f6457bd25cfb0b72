package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
)

// DefaultMaxBodyBytes is the default request body limit: 96 KiB, the DPS
// message size limit.
const DefaultMaxBodyBytes = 96 << 10

// Options configure an API.
type Options struct {
	// Logger receives request failures (never secrets); nil discards.
	Logger *slog.Logger
	// IDScope is this service's ID scope. The Registrar decides whether a
	// request's scope is this one; the API only tags its log lines with it.
	IDScope string
	// Registrar serves the device registration API (required).
	Registrar Registrar
	// Registrations serves registration records and the attempt log (required).
	Registrations Registrations
	// Enrollments serves enrollments, groups and CA certificates (required).
	Enrollments Enrollments
	// Policies are the shared access policies service tokens are checked
	// against; only policies of realm "dps" authorise this API (required).
	Policies Policies
	// ServiceHostNames are the host names a service token's sr may name
	// (compared case-insensitively; at least one).
	ServiceHostNames []string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxBodyBytes caps request bodies (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
}

// API is the provisioning service's HTTPS adapter: the device registration
// API, the service API and the operator extensions behind one router.
type API struct {
	log           *slog.Logger
	registrar     Registrar
	registrations Registrations
	enrollments   Enrollments
	policies      Policies
	hosts         []string
	now           func() time.Time
	maxBody       int64
	router        *router
}

// New returns an API with all its routes registered.
func New(opts Options) (*API, error) {
	var missing []string
	if opts.Registrar == nil {
		missing = append(missing, "Registrar")
	}
	if opts.Registrations == nil {
		missing = append(missing, "Registrations")
	}
	if opts.Enrollments == nil {
		missing = append(missing, "Enrollments")
	}
	if opts.Policies == nil {
		missing = append(missing, "Policies")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("api: options %s are required", strings.Join(missing, ", "))
	}
	var hosts []string
	for i, h := range opts.ServiceHostNames {
		h = strings.TrimSpace(h)
		if h == "" || strings.ContainsAny(h, "/ ") {
			return nil, fmt.Errorf("api: ServiceHostNames[%d] %q is not a host name", i, opts.ServiceHostNames[i])
		}
		hosts = append(hosts, strings.ToLower(h))
	}
	if len(hosts) == 0 {
		return nil, errors.New("api: ServiceHostNames needs at least one host name for service tokens")
	}
	if opts.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("api: MaxBodyBytes %d is negative", opts.MaxBodyBytes)
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.IDScope != "" {
		log = log.With("idScope", opts.IDScope)
	}
	a := &API{
		log:           log,
		registrar:     opts.Registrar,
		registrations: opts.Registrations,
		enrollments:   opts.Enrollments,
		policies:      opts.Policies,
		hosts:         hosts,
		now:           opts.Now,
		maxBody:       opts.MaxBodyBytes,
		router:        newRouter(reservedFirstSegments()),
	}
	a.router.notFound = a.routeNotFound
	a.router.notAllowed = a.methodNotAllowed
	if err := a.registerRoutes(); err != nil {
		return nil, err
	}
	return a, nil
}

// reservedFirstSegments are first path segments that never name an ID scope:
// the service API's, and those the hub API mounts on the same listener.
// Handle reserves the literal first segment of every route it adds as well.
func reservedFirstSegments() []string {
	return []string{
		"enrollments", "enrollmentgroups", "registrations", "certificates", "attempts",
		"devices", "twins", "configurations", "modules", "messages", "jobs", "query",
		"$iothub", "healthz", "metrics", "console", "api",
	}
}

// Handler returns the HTTP handler serving every route.
func (a *API) Handler() http.Handler { return a }

// ServeHTTP stamps the request ID on the response and routes the request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(headerRequestID, newTrackingID())
	a.router.ServeHTTP(w, r)
}

// Handle adds a route to the router, for APIs served on the same listener
// (the hub API). pattern is "/literal/{param}/…", optionally ending in a
// "{rest...}" wildcard; literal segments match case-insensitively and the
// handler reads percent-decoded parameters with r.PathValue. method "" means
// any method. The pattern's literal first segment becomes reserved, so device
// routes ("/{idScope}/registrations/…") never match it. The handler gets
// x-ms-request-id on its response but no authorisation. Handle panics on an
// invalid or conflicting pattern (a programming error, as with
// http.ServeMux); call it before serving.
func (a *API) Handle(method, pattern string, h http.Handler) {
	if err := a.router.handle(method, pattern, h); err != nil {
		panic("api: " + err.Error())
	}
}

// endpoint is one of this package's own routes.
type endpoint struct {
	method, pattern string
	res             resource
	// right, when set, requires a service token of a "dps" policy with it.
	right string
	// apiVersion requires the api-version query parameter.
	apiVersion bool
	serve      func(w http.ResponseWriter, r *http.Request) error
}

// handler wraps the endpoint: it runs the shared checks, serves the request,
// renders any error and turns a panic into a logged 500.
func (e *endpoint) handler(a *API) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.fail(w, r, e.res, fmt.Errorf("panic serving %s %s: %v\n%s", e.method, e.pattern, v, debug.Stack()))
			}
		}()
		if err := a.prepare(w, r, e); err != nil {
			a.fail(w, r, e.res, err)
			return
		}
		if err := e.serve(w, r); err != nil {
			a.fail(w, r, e.res, err)
		}
	})
}

// prepare runs the checks every endpoint shares: service authorisation,
// api-version, and the body size limit.
func (a *API) prepare(w http.ResponseWriter, r *http.Request, e *endpoint) error {
	if e.right != "" {
		if err := a.authorize(r, e.right); err != nil {
			return err
		}
	}
	if e.apiVersion && strings.TrimSpace(r.URL.Query().Get("api-version")) == "" {
		return badRequest("the api-version query parameter is required")
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, a.maxBody)
	}
	return nil
}

func (a *API) registerRoutes() error {
	for _, e := range a.endpoints() {
		if err := a.router.handle(e.method, e.pattern, e.handler(a)); err != nil {
			return fmt.Errorf("api: register routes: %w", err)
		}
	}
	return nil
}

// endpoints lists every route this package serves.
func (a *API) endpoints() []*endpoint {
	var (
		enrollment   = resource{noun: "enrollment", notFound: codeNotFound}
		group        = resource{noun: "enrollment group", notFound: codeNotFoundOther}
		registration = resource{noun: "registration", notFound: codeNotFound}
		certificate  = resource{noun: "CA certificate", notFound: codeNotFoundOther}
		attempts     = resource{noun: "attempt log", notFound: codeNotFoundOther}
	)
	return []*endpoint{
		// Device registration API (spec §2): the Registrar authenticates.
		{method: http.MethodPut, pattern: "/{idScope}/registrations/{registrationId}/register", res: registration, apiVersion: true, serve: a.register},
		{method: http.MethodGet, pattern: "/{idScope}/registrations/{registrationId}/operations/{operationId}", res: registration, apiVersion: true, serve: a.operationStatus},
		{method: http.MethodPost, pattern: "/{idScope}/registrations/{registrationId}", res: registration, apiVersion: true, serve: a.registrationStatus},

		// Service API (spec §6.1).
		{method: http.MethodPut, pattern: "/enrollments/{id}", res: enrollment, right: RightEnrollmentWrite, apiVersion: true, serve: a.putEnrollment},
		{method: http.MethodGet, pattern: "/enrollments/{id}", res: enrollment, right: RightEnrollmentRead, apiVersion: true, serve: a.getEnrollment},
		{method: http.MethodDelete, pattern: "/enrollments/{id}", res: enrollment, right: RightEnrollmentWrite, apiVersion: true, serve: a.deleteEnrollment},
		{method: http.MethodPost, pattern: "/enrollments/{id}/attestationmechanism", res: enrollment, right: RightEnrollmentRead, apiVersion: true, serve: a.enrollmentAttestation},
		{method: http.MethodPost, pattern: "/enrollments/query", res: enrollment, right: RightEnrollmentRead, apiVersion: true, serve: a.queryEnrollments},
		{method: http.MethodPost, pattern: "/enrollments", res: enrollment, right: RightEnrollmentWrite, apiVersion: true, serve: a.bulkEnrollments},

		{method: http.MethodPut, pattern: "/enrollmentGroups/{id}", res: group, right: RightEnrollmentWrite, apiVersion: true, serve: a.putGroup},
		{method: http.MethodGet, pattern: "/enrollmentGroups/{id}", res: group, right: RightEnrollmentRead, apiVersion: true, serve: a.getGroup},
		{method: http.MethodDelete, pattern: "/enrollmentGroups/{id}", res: group, right: RightEnrollmentWrite, apiVersion: true, serve: a.deleteGroup},
		{method: http.MethodPost, pattern: "/enrollmentGroups/{id}/attestationmechanism", res: group, right: RightEnrollmentRead, apiVersion: true, serve: a.groupAttestation},
		{method: http.MethodPost, pattern: "/enrollmentGroups/query", res: group, right: RightEnrollmentRead, apiVersion: true, serve: a.queryGroups},
		{method: http.MethodPost, pattern: "/enrollmentGroups", res: group, right: RightEnrollmentWrite, apiVersion: true, serve: a.bulkGroups},

		{method: http.MethodGet, pattern: "/registrations/{id}", res: registration, right: RightRegistrationStatusRead, apiVersion: true, serve: a.getRegistration},
		{method: http.MethodDelete, pattern: "/registrations/{id}", res: registration, right: RightRegistrationStatusWrite, apiVersion: true, serve: a.deleteRegistration},
		{method: http.MethodPost, pattern: "/registrations/{groupId}/query", res: group, right: RightRegistrationStatusRead, apiVersion: true, serve: a.queryRegistrations},

		// Muster extensions: CA certificates, the attempt log, health.
		{method: http.MethodGet, pattern: "/certificates", res: certificate, right: RightEnrollmentRead, serve: a.listCAs},
		{method: http.MethodPut, pattern: "/certificates/{name}", res: certificate, right: RightServiceConfig, serve: a.putCA},
		{method: http.MethodGet, pattern: "/certificates/{name}", res: certificate, right: RightEnrollmentRead, serve: a.getCA},
		{method: http.MethodDelete, pattern: "/certificates/{name}", res: certificate, right: RightServiceConfig, serve: a.deleteCA},
		{method: http.MethodPost, pattern: "/certificates/{name}/generateVerificationCode", res: certificate, right: RightServiceConfig, serve: a.generateVerificationCode},
		{method: http.MethodPost, pattern: "/certificates/{name}/verify", res: certificate, right: RightServiceConfig, serve: a.verifyCA},
		{method: http.MethodGet, pattern: "/registrations/{id}/attempts", res: attempts, right: RightRegistrationStatusRead, serve: a.registrationAttempts},
		{method: http.MethodGet, pattern: "/attempts", res: attempts, right: RightRegistrationStatusRead, serve: a.recentAttempts},
		{method: http.MethodGet, pattern: "/healthz", serve: a.healthz},
	}
}

// routeNotFound answers a path no route matches.
func (a *API) routeNotFound(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		a.fail(w, r, resource{}, &httpError{status: http.StatusBadRequest, code: codeBadRequest,
			message: "the request path is not validly percent-encoded", err: err})
		return
	}
	a.fail(w, r, resource{}, &httpError{status: http.StatusNotFound, code: codeNotFoundOther,
		message: fmt.Sprintf("no resource at %s", r.URL.Path)})
}

// methodNotAllowed answers a method no route of the path accepts.
func (a *API) methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed []string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	a.fail(w, r, resource{}, &httpError{status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed,
		message: fmt.Sprintf("method %s is not allowed here; allowed: %s", r.Method, strings.Join(allowed, ", "))})
}
