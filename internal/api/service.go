package api

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"

	"github.com/muster-iot/muster/internal/enroll"
)

// Query paging limits (x-ms-max-item-count).
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// maxBulkItems is the DPS limit of items in one bulk operation.
const maxBulkItems = 10

// Item types of query answers (x-ms-item-type).
const (
	itemEnrollment         = "enrollment"
	itemEnrollmentGroup    = "enrollmentGroup"
	itemDeviceRegistration = "deviceRegistration"
)

// decodeBody decodes a JSON request body into v. An empty body is an error
// when what (the expected document, for the message) is not empty, and
// leaves v untouched otherwise.
func decodeBody(r *http.Request, v any, what string) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if what != "" {
			return badRequest("request body is empty; it must be %s", what)
		}
		return nil
	}
	return unmarshalStrict(data, v)
}

// pageRequest is the paging of a query request.
type pageRequest struct {
	query        string
	continuation string
	max          int
}

// parsePage reads a query request: the optional {"query": …} body and the
// x-ms-max-item-count and x-ms-continuation headers.
func parsePage(r *http.Request, readQuery bool) (pageRequest, error) {
	p := pageRequest{max: defaultPageSize, continuation: strings.TrimSpace(r.Header.Get(headerContinuation))}
	if v := strings.TrimSpace(r.Header.Get(headerMaxItemCount)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, badRequest("%s %.32q is not a non-negative integer", headerMaxItemCount, v)
		}
		switch {
		case n == 0:
			n = defaultPageSize
		case n > maxPageSize:
			n = maxPageSize
		}
		p.max = n
	}
	if readQuery {
		var body struct {
			Query string `json:"query"`
		}
		if err := decodeBody(r, &body, ""); err != nil {
			return p, err
		}
		p.query = body.Query
	}
	return p, nil
}

// writePage answers a query: a JSON array (never null), x-ms-item-type, and
// x-ms-continuation only when another page exists (Node loops on an empty one).
func writePage[T any](a *API, w http.ResponseWriter, r *http.Request, itemType string, items []T, next string) error {
	if items == nil {
		items = []T{}
	}
	h := w.Header()
	h.Set(headerItemType, itemType)
	if next != "" {
		h.Set(headerContinuation, next)
	}
	a.writeJSON(w, r, http.StatusOK, items)
	return nil
}

// ---- individual enrollments ----

// putEnrollment is PUT /enrollments/{id}.
func (a *API) putEnrollment(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var e enroll.IndividualEnrollment
	if err := decodeBody(r, &e, "an IndividualEnrollment"); err != nil {
		return err
	}
	switch {
	case e.RegistrationID == "":
		e.RegistrationID = id
	case !strings.EqualFold(e.RegistrationID, id):
		return badRequest("registrationId %q in the body does not match %q in the request path", e.RegistrationID, id)
	}
	out, err := a.enrollments.PutEnrollment(r.Context(), &e, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// getEnrollment is GET /enrollments/{id}.
func (a *API) getEnrollment(w http.ResponseWriter, r *http.Request) error {
	out, err := a.enrollments.GetEnrollment(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// deleteEnrollment is DELETE /enrollments/{id}.
func (a *API) deleteEnrollment(w http.ResponseWriter, r *http.Request) error {
	if err := a.enrollments.DeleteEnrollment(r.Context(), r.PathValue("id"), r.Header.Get("If-Match")); err != nil {
		return err
	}
	writeNoContent(w)
	return nil
}

// enrollmentAttestation is POST /enrollments/{id}/attestationmechanism.
func (a *API) enrollmentAttestation(w http.ResponseWriter, r *http.Request) error {
	out, err := a.enrollments.EnrollmentAttestation(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// queryEnrollments is POST /enrollments/query.
func (a *API) queryEnrollments(w http.ResponseWriter, r *http.Request) error {
	p, err := parsePage(r, true)
	if err != nil {
		return err
	}
	items, next, err := a.enrollments.QueryEnrollments(r.Context(), p.query, p.continuation, p.max)
	if err != nil {
		return err
	}
	return writePage(a, w, r, itemEnrollment, items, next)
}

// bulkEnrollments is POST /enrollments (Node adds a trailing slash).
func (a *API) bulkEnrollments(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Mode        string                         `json:"mode"`
		Enrollments []*enroll.IndividualEnrollment `json:"enrollments"`
	}
	if err := decodeBody(r, &body, `a bulk operation {"mode": …, "enrollments": […]}`); err != nil {
		return err
	}
	if len(body.Enrollments) > maxBulkItems {
		return badRequest("bulk operation has %d enrollments; at most %d are allowed", len(body.Enrollments), maxBulkItems)
	}
	out, err := a.enrollments.BulkEnrollments(r.Context(), body.Mode, body.Enrollments)
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// ---- enrollment groups ----

// putGroup is PUT /enrollmentGroups/{id}.
func (a *API) putGroup(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var g enroll.EnrollmentGroup
	if err := decodeBody(r, &g, "an EnrollmentGroup"); err != nil {
		return err
	}
	switch {
	case g.EnrollmentGroupID == "":
		g.EnrollmentGroupID = id
	case !strings.EqualFold(g.EnrollmentGroupID, id):
		return badRequest("enrollmentGroupId %q in the body does not match %q in the request path", g.EnrollmentGroupID, id)
	}
	out, err := a.enrollments.PutGroup(r.Context(), &g, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// getGroup is GET /enrollmentGroups/{id}.
func (a *API) getGroup(w http.ResponseWriter, r *http.Request) error {
	out, err := a.enrollments.GetGroup(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// deleteGroup is DELETE /enrollmentGroups/{id}.
func (a *API) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	if err := a.enrollments.DeleteGroup(r.Context(), r.PathValue("id"), r.Header.Get("If-Match")); err != nil {
		return err
	}
	writeNoContent(w)
	return nil
}

// groupAttestation is POST /enrollmentGroups/{id}/attestationmechanism.
func (a *API) groupAttestation(w http.ResponseWriter, r *http.Request) error {
	out, err := a.enrollments.GroupAttestation(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// queryGroups is POST /enrollmentGroups/query.
func (a *API) queryGroups(w http.ResponseWriter, r *http.Request) error {
	p, err := parsePage(r, true)
	if err != nil {
		return err
	}
	items, next, err := a.enrollments.QueryGroups(r.Context(), p.query, p.continuation, p.max)
	if err != nil {
		return err
	}
	return writePage(a, w, r, itemEnrollmentGroup, items, next)
}

// bulkGroups is POST /enrollmentGroups.
func (a *API) bulkGroups(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Mode             string                    `json:"mode"`
		EnrollmentGroups []*enroll.EnrollmentGroup `json:"enrollmentGroups"`
	}
	if err := decodeBody(r, &body, `a bulk operation {"mode": …, "enrollmentGroups": […]}`); err != nil {
		return err
	}
	if len(body.EnrollmentGroups) > maxBulkItems {
		return badRequest("bulk operation has %d enrollment groups; at most %d are allowed", len(body.EnrollmentGroups), maxBulkItems)
	}
	out, err := a.enrollments.BulkGroups(r.Context(), body.Mode, body.EnrollmentGroups)
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// ---- registration records ----

// getRegistration is GET /registrations/{id}.
func (a *API) getRegistration(w http.ResponseWriter, r *http.Request) error {
	out, err := a.registrations.GetRegistration(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	a.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// deleteRegistration is DELETE /registrations/{id}.
func (a *API) deleteRegistration(w http.ResponseWriter, r *http.Request) error {
	if err := a.registrations.DeleteRegistration(r.Context(), r.PathValue("id"), r.Header.Get("If-Match")); err != nil {
		return err
	}
	writeNoContent(w)
	return nil
}

// queryRegistrations is POST /registrations/{groupId}/query. The swagger has
// no body and Node sends {"query":"*"}: any body is ignored.
func (a *API) queryRegistrations(w http.ResponseWriter, r *http.Request) error {
	p, err := parsePage(r, false)
	if err != nil {
		return err
	}
	items, next, err := a.registrations.QueryGroupRegistrations(r.Context(), r.PathValue("groupId"), p.continuation, p.max)
	if err != nil {
		return err
	}
	return writePage(a, w, r, itemDeviceRegistration, items, next)
}
