package dpsservice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/store"
)

// Bulk operation modes.
const (
	BulkCreate            = "create"
	BulkUpdate            = "update"
	BulkUpdateIfMatchETag = "updateIfMatchETag"
	BulkDelete            = "delete"
)

// MaxBulkItems is the service's limit of items per bulk operation.
const MaxBulkItems = 10

// QueryAll is the query that selects every item.
const QueryAll = "*"

// Path roots.
const (
	segEnrollments  = "enrollments"
	segGroups       = "enrollmentGroups"
	segRegistration = "registrations"
	segCertificates = "certificates"
	segAttempts     = "attempts"
)

// querySpec is QuerySpecification.
type querySpec struct {
	Query string `json:"query"`
}

// certificateBody carries a PEM certificate to the CA endpoints.
type certificateBody struct {
	Certificate string `json:"certificate"`
}

// checkID rejects an empty path identifier before a request is built.
func checkID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%s is empty", what)
	}
	return nil
}

// checkBulk validates a bulk mode and item count.
func checkBulk(mode string, n int) error {
	if !slices.Contains([]string{BulkCreate, BulkUpdate, BulkUpdateIfMatchETag, BulkDelete}, mode) {
		return fmt.Errorf("bulk mode %q is not one of %s, %s, %s, %s", mode, BulkCreate, BulkUpdate, BulkUpdateIfMatchETag, BulkDelete)
	}
	if n == 0 || n > MaxBulkItems {
		return fmt.Errorf("bulk operation has %d items; it takes 1 to %d", n, MaxBulkItems)
	}
	return nil
}

// callInto sends r and decodes the answer into a new T; errors are
// prefixed with what.
func callInto[T any](ctx context.Context, c *Client, r request, what string) (*T, error) {
	var out T
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return &out, nil
}

// ---- individual enrollments ----

// PutEnrollment creates or replaces an individual enrollment. A non-empty
// ifMatch must equal the stored etag. The answer includes generated keys.
func (c *Client) PutEnrollment(ctx context.Context, e *enroll.IndividualEnrollment, ifMatch string) (*enroll.IndividualEnrollment, error) {
	if e == nil {
		return nil, errors.New("put enrollment: enrollment is nil")
	}
	if err := checkID("registration ID", e.RegistrationID); err != nil {
		return nil, fmt.Errorf("put enrollment: %w", err)
	}
	return callInto[enroll.IndividualEnrollment](ctx, c, request{method: http.MethodPut, segs: []string{segEnrollments, e.RegistrationID}, body: e, ifMatch: ifMatch}, fmt.Sprintf("put enrollment %q", e.RegistrationID))
}

// GetEnrollment returns an individual enrollment (without secret keys).
func (c *Client) GetEnrollment(ctx context.Context, registrationID string) (*enroll.IndividualEnrollment, error) {
	if err := checkID("registration ID", registrationID); err != nil {
		return nil, fmt.Errorf("get enrollment: %w", err)
	}
	return callInto[enroll.IndividualEnrollment](ctx, c, request{method: http.MethodGet, segs: []string{segEnrollments, registrationID}}, fmt.Sprintf("get enrollment %q", registrationID))
}

// DeleteEnrollment deletes an individual enrollment; a non-empty ifMatch
// must equal its etag.
func (c *Client) DeleteEnrollment(ctx context.Context, registrationID, ifMatch string) error {
	if err := checkID("registration ID", registrationID); err != nil {
		return fmt.Errorf("delete enrollment: %w", err)
	}
	if _, err := c.do(ctx, request{method: http.MethodDelete, segs: []string{segEnrollments, registrationID}, ifMatch: ifMatch}); err != nil {
		return fmt.Errorf("delete enrollment %q: %w", registrationID, err)
	}
	return nil
}

// EnrollmentAttestation returns an individual enrollment's attestation
// mechanism with its secrets.
func (c *Client) EnrollmentAttestation(ctx context.Context, registrationID string) (*enroll.AttestationMechanism, error) {
	if err := checkID("registration ID", registrationID); err != nil {
		return nil, fmt.Errorf("get enrollment attestation: %w", err)
	}
	return callInto[enroll.AttestationMechanism](ctx, c, request{method: http.MethodPost, segs: []string{segEnrollments, registrationID, "attestationmechanism"}}, fmt.Sprintf("get enrollment attestation %q", registrationID))
}

// QueryEnrollments returns every individual enrollment the query selects
// (QueryAll for all), fetching pages of pageSize items (0: the service's
// default) until the service reports no more.
func (c *Client) QueryEnrollments(ctx context.Context, query string, pageSize int) ([]*enroll.IndividualEnrollment, error) {
	out, err := queryAll[*enroll.IndividualEnrollment](ctx, c, []string{segEnrollments, "query"}, querySpec{Query: query}, pageSize)
	if err != nil {
		return nil, fmt.Errorf("query enrollments: %w", err)
	}
	return out, nil
}

// BulkEnrollments applies one mode to up to MaxBulkItems individual
// enrollments. Items succeed or fail independently; see the result.
func (c *Client) BulkEnrollments(ctx context.Context, mode string, items []*enroll.IndividualEnrollment) (*enroll.BulkResult, error) {
	if err := checkBulk(mode, len(items)); err != nil {
		return nil, fmt.Errorf("bulk enrollments: %w", err)
	}
	body := struct {
		Mode        string                         `json:"mode"`
		Enrollments []*enroll.IndividualEnrollment `json:"enrollments"`
	}{mode, items}
	return callInto[enroll.BulkResult](ctx, c, request{method: http.MethodPost, segs: []string{segEnrollments}, body: body}, fmt.Sprintf("bulk enrollments (%s)", mode))
}

// ---- enrollment groups ----

// PutGroup creates or replaces an enrollment group. A non-empty ifMatch must
// equal the stored etag. The answer includes generated keys.
func (c *Client) PutGroup(ctx context.Context, g *enroll.EnrollmentGroup, ifMatch string) (*enroll.EnrollmentGroup, error) {
	if g == nil {
		return nil, errors.New("put enrollment group: group is nil")
	}
	if err := checkID("enrollment group ID", g.EnrollmentGroupID); err != nil {
		return nil, fmt.Errorf("put enrollment group: %w", err)
	}
	return callInto[enroll.EnrollmentGroup](ctx, c, request{method: http.MethodPut, segs: []string{segGroups, g.EnrollmentGroupID}, body: g, ifMatch: ifMatch}, fmt.Sprintf("put enrollment group %q", g.EnrollmentGroupID))
}

// GetGroup returns an enrollment group (without secret keys).
func (c *Client) GetGroup(ctx context.Context, groupID string) (*enroll.EnrollmentGroup, error) {
	if err := checkID("enrollment group ID", groupID); err != nil {
		return nil, fmt.Errorf("get enrollment group: %w", err)
	}
	return callInto[enroll.EnrollmentGroup](ctx, c, request{method: http.MethodGet, segs: []string{segGroups, groupID}}, fmt.Sprintf("get enrollment group %q", groupID))
}

// DeleteGroup deletes an enrollment group; a non-empty ifMatch must equal
// its etag.
func (c *Client) DeleteGroup(ctx context.Context, groupID, ifMatch string) error {
	if err := checkID("enrollment group ID", groupID); err != nil {
		return fmt.Errorf("delete enrollment group: %w", err)
	}
	if _, err := c.do(ctx, request{method: http.MethodDelete, segs: []string{segGroups, groupID}, ifMatch: ifMatch}); err != nil {
		return fmt.Errorf("delete enrollment group %q: %w", groupID, err)
	}
	return nil
}

// GroupAttestation returns an enrollment group's attestation mechanism with
// its secrets.
func (c *Client) GroupAttestation(ctx context.Context, groupID string) (*enroll.AttestationMechanism, error) {
	if err := checkID("enrollment group ID", groupID); err != nil {
		return nil, fmt.Errorf("get enrollment group attestation: %w", err)
	}
	return callInto[enroll.AttestationMechanism](ctx, c, request{method: http.MethodPost, segs: []string{segGroups, groupID, "attestationmechanism"}}, fmt.Sprintf("get enrollment group attestation %q", groupID))
}

// QueryGroups returns every enrollment group the query selects, following
// continuations as QueryEnrollments does.
func (c *Client) QueryGroups(ctx context.Context, query string, pageSize int) ([]*enroll.EnrollmentGroup, error) {
	out, err := queryAll[*enroll.EnrollmentGroup](ctx, c, []string{segGroups, "query"}, querySpec{Query: query}, pageSize)
	if err != nil {
		return nil, fmt.Errorf("query enrollment groups: %w", err)
	}
	return out, nil
}

// BulkGroups applies one mode to up to MaxBulkItems enrollment groups.
func (c *Client) BulkGroups(ctx context.Context, mode string, items []*enroll.EnrollmentGroup) (*enroll.BulkResult, error) {
	if err := checkBulk(mode, len(items)); err != nil {
		return nil, fmt.Errorf("bulk enrollment groups: %w", err)
	}
	body := struct {
		Mode             string                    `json:"mode"`
		EnrollmentGroups []*enroll.EnrollmentGroup `json:"enrollmentGroups"`
	}{mode, items}
	return callInto[enroll.BulkResult](ctx, c, request{method: http.MethodPost, segs: []string{segGroups}, body: body}, fmt.Sprintf("bulk enrollment groups (%s)", mode))
}

// ---- registration records ----

// GetRegistration returns the registration record of a registration ID.
func (c *Client) GetRegistration(ctx context.Context, registrationID string) (*enroll.RegistrationStateView, error) {
	if err := checkID("registration ID", registrationID); err != nil {
		return nil, fmt.Errorf("get registration: %w", err)
	}
	return callInto[enroll.RegistrationStateView](ctx, c, request{method: http.MethodGet, segs: []string{segRegistration, registrationID}}, fmt.Sprintf("get registration %q", registrationID))
}

// DeleteRegistration deletes a registration record (the device then
// registers as new); a non-empty ifMatch must equal its etag.
func (c *Client) DeleteRegistration(ctx context.Context, registrationID, ifMatch string) error {
	if err := checkID("registration ID", registrationID); err != nil {
		return fmt.Errorf("delete registration: %w", err)
	}
	if _, err := c.do(ctx, request{method: http.MethodDelete, segs: []string{segRegistration, registrationID}, ifMatch: ifMatch}); err != nil {
		return fmt.Errorf("delete registration %q: %w", registrationID, err)
	}
	return nil
}

// QueryGroupRegistrations returns every registration record of an
// enrollment group, following continuations.
func (c *Client) QueryGroupRegistrations(ctx context.Context, groupID string, pageSize int) ([]*enroll.RegistrationStateView, error) {
	if err := checkID("enrollment group ID", groupID); err != nil {
		return nil, fmt.Errorf("query group registrations: %w", err)
	}
	out, err := queryAll[*enroll.RegistrationStateView](ctx, c, []string{segRegistration, groupID, "query"}, querySpec{Query: QueryAll}, pageSize)
	if err != nil {
		return nil, fmt.Errorf("query registrations of group %q: %w", groupID, err)
	}
	return out, nil
}

// Attempts returns the newest registration attempts of a registration ID,
// newest first, at most limit (0: the service's default). An empty ID
// returns the newest attempts of every device.
func (c *Client) Attempts(ctx context.Context, registrationID string, limit int) ([]store.Attempt, error) {
	if limit < 0 {
		return nil, fmt.Errorf("get attempts: limit %d is negative", limit)
	}
	segs := []string{segAttempts}
	what := "every device"
	if registrationID != "" {
		segs = []string{segRegistration, registrationID, segAttempts}
		what = strconv.Quote(registrationID)
	}
	var q url.Values
	if limit > 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	var out []store.Attempt
	if _, err := c.call(ctx, request{method: http.MethodGet, segs: segs, query: q}, &out); err != nil {
		return nil, fmt.Errorf("get attempts of %s: %w", what, err)
	}
	return out, nil
}

// ---- CA certificates (proof of possession) ----

// PutCA uploads (or replaces) a CA certificate in PEM. A new upload is
// unverified; a non-empty ifMatch must equal the stored etag.
func (c *Client) PutCA(ctx context.Context, name, pem, ifMatch string) (*enroll.CACertificate, error) {
	if err := checkID("CA name", name); err != nil {
		return nil, fmt.Errorf("upload CA certificate: %w", err)
	}
	return callInto[enroll.CACertificate](ctx, c, request{method: http.MethodPut, segs: []string{segCertificates, name}, body: certificateBody{pem}, ifMatch: ifMatch}, fmt.Sprintf("upload CA certificate %q", name))
}

// GetCA returns a registered CA certificate.
func (c *Client) GetCA(ctx context.Context, name string) (*enroll.CACertificate, error) {
	if err := checkID("CA name", name); err != nil {
		return nil, fmt.Errorf("get CA certificate: %w", err)
	}
	return callInto[enroll.CACertificate](ctx, c, request{method: http.MethodGet, segs: []string{segCertificates, name}}, fmt.Sprintf("get CA certificate %q", name))
}

// ListCAs lists the registered CA certificates. The service answers a JSON
// array; an ARM-style {"value": [...]} object is accepted too.
func (c *Client) ListCAs(ctx context.Context) ([]*enroll.CACertificate, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, segs: []string{segCertificates}})
	if err != nil {
		return nil, fmt.Errorf("list CA certificates: %w", err)
	}
	var out []*enroll.CACertificate
	if b := bytes.TrimSpace(resp.body); len(b) > 0 && b[0] == '{' {
		var wrapped struct {
			Value []*enroll.CACertificate `json:"value"`
		}
		err = decodeBody(b, &wrapped)
		out = wrapped.Value
	} else {
		err = decodeBody(b, &out)
	}
	if err != nil {
		return nil, fmt.Errorf("list CA certificates: decode response: %w", err)
	}
	return out, nil
}

// DeleteCA removes a CA certificate; a non-empty ifMatch must equal its etag.
func (c *Client) DeleteCA(ctx context.Context, name, ifMatch string) error {
	if err := checkID("CA name", name); err != nil {
		return fmt.Errorf("delete CA certificate: %w", err)
	}
	if _, err := c.do(ctx, request{method: http.MethodDelete, segs: []string{segCertificates, name}, ifMatch: ifMatch}); err != nil {
		return fmt.Errorf("delete CA certificate %q: %w", name, err)
	}
	return nil
}

// GenerateVerificationCode issues a proof-of-possession code for a CA; the
// answer's VerificationCode is the CN the proof certificate must carry.
func (c *Client) GenerateVerificationCode(ctx context.Context, name, ifMatch string) (*enroll.CACertificate, error) {
	if err := checkID("CA name", name); err != nil {
		return nil, fmt.Errorf("generate verification code: %w", err)
	}
	return callInto[enroll.CACertificate](ctx, c, request{method: http.MethodPost, segs: []string{segCertificates, name, "generateVerificationCode"}, ifMatch: ifMatch}, fmt.Sprintf("generate verification code for CA %q", name))
}

// VerifyCA completes proof of possession with a PEM certificate whose CN is
// the verification code, signed by the CA's key.
func (c *Client) VerifyCA(ctx context.Context, name, pem, ifMatch string) (*enroll.CACertificate, error) {
	if err := checkID("CA name", name); err != nil {
		return nil, fmt.Errorf("verify CA certificate: %w", err)
	}
	return callInto[enroll.CACertificate](ctx, c, request{method: http.MethodPost, segs: []string{segCertificates, name, "verify"}, body: certificateBody{pem}, ifMatch: ifMatch}, fmt.Sprintf("verify CA certificate %q", name))
}
