package enroll

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/store"
)

// ServiceOptions configure a Service.
type ServiceOptions struct {
	// LinkedHubs returns the host names of the hubs enrollments may name.
	LinkedHubs func() []string
	// Now returns the current time (time.Now when nil).
	Now func() time.Time
	// GroupCacheTTL bounds how long another instance's group changes take to
	// be seen (default 2s). Changes through this Service are seen at once.
	GroupCacheTTL time.Duration
}

// Service is the enrollment service: CRUD, query and bulk operations on
// individual enrollments, enrollment groups and CA certificates, with the
// validation and redaction rules of DPS. It also serves attestation lookups.
type Service struct {
	docs store.Docs
	opts ServiceOptions

	mu         sync.Mutex
	groupCache map[string]groupCacheEntry // by attestation type
	// absent remembers registration IDs (keys) without an individual
	// enrollment, and when that was seen: group devices attest on every
	// registration and poll, and would otherwise read the store each time.
	absent map[string]time.Time
	// individuals caches how many individual enrollments exist, so fleets
	// provisioned through groups alone skip the per-device lookup: when
	// there are none, no registration ID has one. gen counts this
	// Service's enrollment writes; a count taken across a write is dropped.
	individuals individualCount
}

type individualCount struct {
	at    time.Time
	valid bool
	n     int
	gen   uint64
}

// maxAbsent bounds the negative cache of individual enrollments.
const maxAbsent = 100000

type groupCacheEntry struct {
	at     time.Time
	groups []*EnrollmentGroup
}

// NewService returns an enrollment service over docs.
func NewService(docs store.Docs, opts ServiceOptions) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GroupCacheTTL == 0 {
		opts.GroupCacheTTL = 2 * time.Second
	}
	return &Service{docs: docs, opts: opts, groupCache: map[string]groupCacheEntry{}, absent: map[string]time.Time{}}
}

func (s *Service) linked() map[string]bool {
	if s.opts.LinkedHubs == nil {
		return nil
	}
	m := map[string]bool{}
	for _, h := range s.opts.LinkedHubs() {
		m[strings.ToLower(h)] = true
	}
	return m
}

// mapStoreErr turns store sentinels into the service's.
func mapStoreErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, store.ErrPrecondition):
		return fmt.Errorf("%w: %w", ErrPrecondition, err)
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

func cond(ifMatch string) store.Cond {
	return store.Cond{IfMatch: StoreETag(ifMatch)}
}

// ---- individual enrollments ----

// PutEnrollment creates or replaces an individual enrollment. With ifMatch
// the stored etag must match. The answer includes generated keys.
func (s *Service) PutEnrollment(ctx context.Context, e *IndividualEnrollment, ifMatch string) (*IndividualEnrollment, error) {
	return s.putEnrollment(ctx, e, store.Cond{IfMatch: StoreETag(ifMatch)})
}

func (s *Service) putEnrollment(ctx context.Context, e *IndividualEnrollment, c store.Cond) (*IndividualEnrollment, error) {
	if e == nil {
		return nil, Invalid("body", "an individual enrollment is required")
	}
	if !ValidRegistrationID(e.RegistrationID) {
		return nil, Invalid("registrationId", "%q must be 1-128 characters of letters, digits and - . _ :, ending with a letter, digit or -", e.RegistrationID)
	}
	if e.DeviceID != "" && !ValidDeviceID(e.DeviceID) {
		return nil, Invalid("deviceId", "%q is not a valid device ID", e.DeviceID)
	}
	if !isJSONObject(e.OptionalDeviceInformation) {
		return nil, Invalid("optionalDeviceInformation", "must be a JSON object")
	}
	prev, err := s.getEnrollmentRaw(ctx, e.RegistrationID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if prev != nil {
		mergeSecrets(e.Attestation, prev.Attestation)
	}
	if err := normalizeCommon(&e.Common, true, s.linked()); err != nil {
		return nil, err
	}
	e.ETag, e.CreatedDateTimeUTC, e.LastUpdatedDateTimeUTC, e.RegistrationState = "", nil, nil, nil
	doc, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode enrollment: %w", err)
	}
	s.present(e.RegistrationID) // a count taken while this write commits is not kept
	rec, err := s.docs.Put(ctx, store.Record{Kind: store.KindEnrollment, ID: Key(e.RegistrationID), Doc: doc}, c)
	if err != nil {
		return nil, mapStoreErr(err)
	}
	s.present(e.RegistrationID)
	out, err := decodeEnrollment(rec)
	if err != nil {
		return nil, err
	}
	s.attachState(ctx, out)
	return out, nil
}

func decodeEnrollment(rec store.Record) (*IndividualEnrollment, error) {
	var e IndividualEnrollment
	if err := json.Unmarshal(rec.Doc, &e); err != nil {
		return nil, fmt.Errorf("decode enrollment %s: %w", rec.ID, err)
	}
	e.ETag = WireETag(rec.ETag)
	c, u := rec.Created, rec.Updated
	e.CreatedDateTimeUTC, e.LastUpdatedDateTimeUTC = &c, &u
	return &e, nil
}

func (s *Service) getEnrollmentRaw(ctx context.Context, id string) (*IndividualEnrollment, error) {
	rec, err := s.docs.Get(ctx, store.KindEnrollment, Key(id))
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return decodeEnrollment(rec)
}

func (s *Service) attachState(ctx context.Context, e *IndividualEnrollment) {
	if r, err := s.Registration(ctx, e.RegistrationID); err == nil {
		e.RegistrationState = r.View()
	}
}

// GetEnrollment returns an individual enrollment with its registration
// state and without secret keys.
func (s *Service) GetEnrollment(ctx context.Context, id string) (*IndividualEnrollment, error) {
	e, err := s.getEnrollmentRaw(ctx, id)
	if err != nil {
		return nil, err
	}
	e.Attestation = redact(e.Attestation)
	s.attachState(ctx, e)
	return e, nil
}

// DeleteEnrollment deletes an individual enrollment.
func (s *Service) DeleteEnrollment(ctx context.Context, id, ifMatch string) error {
	return mapStoreErr(s.docs.Delete(ctx, store.KindEnrollment, Key(id), StoreETag(ifMatch)))
}

// EnrollmentAttestation returns the attestation mechanism with its secrets.
func (s *Service) EnrollmentAttestation(ctx context.Context, id string) (*AttestationMechanism, error) {
	e, err := s.getEnrollmentRaw(ctx, id)
	if err != nil {
		return nil, err
	}
	return e.Attestation, nil
}

// IndividualEnrollment returns the enrollment for attestation (with
// secrets), or nil, nil when there is none. That an ID has none is cached
// like the groups: enrollments written through this Service are seen at
// once, those written by another instance within GroupCacheTTL.
func (s *Service) IndividualEnrollment(ctx context.Context, registrationID string) (*IndividualEnrollment, error) {
	key, now := Key(registrationID), s.opts.Now()
	s.mu.Lock()
	seen, ok := s.absent[key]
	s.mu.Unlock()
	if ok && now.Sub(seen) < s.opts.GroupCacheTTL {
		return nil, nil
	}
	if s.noIndividuals(ctx, now) {
		return nil, nil
	}
	e, err := s.getEnrollmentRaw(ctx, registrationID)
	if errors.Is(err, ErrNotFound) {
		s.mu.Lock()
		if len(s.absent) >= maxAbsent {
			clear(s.absent)
		}
		s.absent[key] = now
		s.mu.Unlock()
		return nil, nil
	}
	return e, err
}

// present forgets that an ID had no individual enrollment, and that there
// were none at all.
func (s *Service) present(registrationID string) {
	s.mu.Lock()
	delete(s.absent, Key(registrationID))
	s.individuals.gen++
	s.individuals.valid = false
	s.mu.Unlock()
}

// noIndividuals reports whether no individual enrollment exists, from a
// count at most GroupCacheTTL old (false when the count fails).
func (s *Service) noIndividuals(ctx context.Context, now time.Time) bool {
	s.mu.Lock()
	c := s.individuals
	s.mu.Unlock()
	if c.valid && now.Sub(c.at) < s.opts.GroupCacheTTL {
		return c.n == 0
	}
	n, err := s.docs.Count(ctx, store.KindEnrollment, "")
	if err != nil {
		return false
	}
	s.mu.Lock()
	if s.individuals.gen == c.gen {
		s.individuals = individualCount{at: now, valid: true, n: n, gen: c.gen}
	}
	s.mu.Unlock()
	return n == 0
}

// ---- enrollment groups ----

// PutGroup creates or replaces an enrollment group.
func (s *Service) PutGroup(ctx context.Context, g *EnrollmentGroup, ifMatch string) (*EnrollmentGroup, error) {
	return s.putGroup(ctx, g, store.Cond{IfMatch: StoreETag(ifMatch)})
}

func (s *Service) putGroup(ctx context.Context, g *EnrollmentGroup, c store.Cond) (*EnrollmentGroup, error) {
	if g == nil {
		return nil, Invalid("body", "an enrollment group is required")
	}
	if !ValidRegistrationID(g.EnrollmentGroupID) {
		return nil, Invalid("enrollmentGroupId", "%q must be 1-128 characters of letters, digits and - . _ :, ending with a letter, digit or -", g.EnrollmentGroupID)
	}
	prev, err := s.getGroupRaw(ctx, g.EnrollmentGroupID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if prev != nil {
		mergeSecrets(g.Attestation, prev.Attestation)
	}
	if err := normalizeCommon(&g.Common, false, s.linked()); err != nil {
		return nil, err
	}
	if g.Attestation.X509 != nil && g.Attestation.X509.CAReferences != nil {
		for _, name := range []string{g.Attestation.X509.CAReferences.Primary, g.Attestation.X509.CAReferences.Secondary} {
			if name == "" {
				continue
			}
			if _, err := s.GetCA(ctx, name); err != nil {
				if errors.Is(err, ErrNotFound) {
					return nil, Invalid("attestation.x509.caReferences", "no CA certificate named %q is registered (upload it with `muster ca upload`)", name)
				}
				return nil, err
			}
		}
	}
	g.ETag, g.CreatedDateTimeUTC, g.LastUpdatedDateTimeUTC = "", nil, nil
	doc, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("encode group: %w", err)
	}
	rec, err := s.docs.Put(ctx, store.Record{Kind: store.KindEnrollmentGroup, ID: Key(g.EnrollmentGroupID), Group: g.Attestation.Type, Doc: doc}, c)
	if err != nil {
		return nil, mapStoreErr(err)
	}
	s.invalidateGroups()
	return decodeGroup(rec)
}

func decodeGroup(rec store.Record) (*EnrollmentGroup, error) {
	var g EnrollmentGroup
	if err := json.Unmarshal(rec.Doc, &g); err != nil {
		return nil, fmt.Errorf("decode group %s: %w", rec.ID, err)
	}
	g.ETag = WireETag(rec.ETag)
	c, u := rec.Created, rec.Updated
	g.CreatedDateTimeUTC, g.LastUpdatedDateTimeUTC = &c, &u
	return &g, nil
}

func (s *Service) getGroupRaw(ctx context.Context, id string) (*EnrollmentGroup, error) {
	rec, err := s.docs.Get(ctx, store.KindEnrollmentGroup, Key(id))
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return decodeGroup(rec)
}

// GetGroup returns an enrollment group without secret keys.
func (s *Service) GetGroup(ctx context.Context, id string) (*EnrollmentGroup, error) {
	g, err := s.getGroupRaw(ctx, id)
	if err != nil {
		return nil, err
	}
	g.Attestation = redact(g.Attestation)
	return g, nil
}

// DeleteGroup deletes an enrollment group. Its registration records stay.
func (s *Service) DeleteGroup(ctx context.Context, id, ifMatch string) error {
	err := s.docs.Delete(ctx, store.KindEnrollmentGroup, Key(id), StoreETag(ifMatch))
	s.invalidateGroups()
	return mapStoreErr(err)
}

// GroupAttestation returns a group's attestation mechanism with secrets.
func (s *Service) GroupAttestation(ctx context.Context, id string) (*AttestationMechanism, error) {
	g, err := s.getGroupRaw(ctx, id)
	if err != nil {
		return nil, err
	}
	return g.Attestation, nil
}

func (s *Service) invalidateGroups() {
	s.mu.Lock()
	clear(s.groupCache)
	s.mu.Unlock()
}

// Groups returns every group of one attestation type (with secrets), for
// attestation. Results are cached briefly.
func (s *Service) Groups(ctx context.Context, attestationType string) ([]*EnrollmentGroup, error) {
	now := s.opts.Now()
	s.mu.Lock()
	ent, ok := s.groupCache[attestationType]
	s.mu.Unlock()
	if ok && now.Sub(ent.at) < s.opts.GroupCacheTTL {
		return ent.groups, nil
	}
	var out []*EnrollmentGroup
	after := ""
	for {
		recs, err := s.docs.List(ctx, store.KindEnrollmentGroup, store.ListOptions{Group: attestationType, After: after, Limit: 500})
		if err != nil {
			return nil, fmt.Errorf("list groups: %w", err)
		}
		for _, r := range recs {
			g, err := decodeGroup(r)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
		if len(recs) < 500 {
			break
		}
		after = recs[len(recs)-1].ID
	}
	s.mu.Lock()
	s.groupCache[attestationType] = groupCacheEntry{at: now, groups: out}
	s.mu.Unlock()
	return out, nil
}

// ---- queries and bulk ----

var selectAll = regexp.MustCompile(`(?i)^\s*(\*|select\s+\*\s+from\s+(enrollments|enrollmentgroups|registrations|c))\s*$`)

func checkQuery(q string) error {
	if strings.TrimSpace(q) == "" || selectAll.MatchString(q) {
		return nil
	}
	return Invalid("query", "%q is not supported; use \"*\" or \"SELECT * FROM enrollments\"", q)
}

// continuation tokens are opaque: base64 of the last ID returned.
func encodeContinuation(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func decodeContinuation(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", Invalid("x-ms-continuation", "not a continuation token this service issued")
	}
	return string(raw), nil
}

func page(max int) int {
	if max <= 0 {
		return 100
	}
	if max > 1000 {
		return 1000
	}
	return max
}

func (s *Service) listPage(ctx context.Context, kind store.Kind, group, continuation string, max int) ([]store.Record, string, error) {
	after, err := decodeContinuation(continuation)
	if err != nil {
		return nil, "", err
	}
	n := page(max)
	recs, err := s.docs.List(ctx, kind, store.ListOptions{Group: group, After: after, Limit: n + 1})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(recs) > n {
		recs = recs[:n]
		next = encodeContinuation(recs[n-1].ID)
	}
	return recs, next, nil
}

// queryPage validates a query and decodes one page of records of a kind.
func queryPage[T any](ctx context.Context, s *Service, kind store.Kind, query, continuation string, max int, decode func(store.Record) (T, error)) ([]T, string, error) {
	if err := checkQuery(query); err != nil {
		return nil, "", err
	}
	recs, next, err := s.listPage(ctx, kind, "", continuation, max)
	if err != nil {
		return nil, "", err
	}
	out := make([]T, 0, len(recs))
	for _, r := range recs {
		v, err := decode(r)
		if err != nil {
			return nil, "", err
		}
		out = append(out, v)
	}
	return out, next, nil
}

// QueryEnrollments pages through individual enrollments (redacted).
func (s *Service) QueryEnrollments(ctx context.Context, query, continuation string, max int) ([]*IndividualEnrollment, string, error) {
	return queryPage(ctx, s, store.KindEnrollment, query, continuation, max, func(r store.Record) (*IndividualEnrollment, error) {
		e, err := decodeEnrollment(r)
		if err != nil {
			return nil, err
		}
		e.Attestation = redact(e.Attestation)
		return e, nil
	})
}

// QueryGroups pages through enrollment groups (redacted).
func (s *Service) QueryGroups(ctx context.Context, query, continuation string, max int) ([]*EnrollmentGroup, string, error) {
	return queryPage(ctx, s, store.KindEnrollmentGroup, query, continuation, max, func(r store.Record) (*EnrollmentGroup, error) {
		g, err := decodeGroup(r)
		if err != nil {
			return nil, err
		}
		g.Attestation = redact(g.Attestation)
		return g, nil
	})
}

// Bulk modes.
const (
	BulkCreate            = "create"
	BulkUpdate            = "update"
	BulkUpdateIfMatchETag = "updateIfMatchETag"
	BulkDelete            = "delete"
)

// MaxBulkItems is the DPS limit of items per bulk operation.
const MaxBulkItems = 10

func bulkCond(mode, etag string) (store.Cond, error) {
	switch mode {
	case BulkCreate:
		return store.Cond{IfNoneMatch: true}, nil
	case BulkUpdate, BulkDelete:
		return store.Cond{}, nil
	case BulkUpdateIfMatchETag:
		if etag == "" {
			return store.Cond{}, Invalid("etag", "updateIfMatchETag needs each item's etag")
		}
		return store.Cond{IfMatch: StoreETag(etag)}, nil
	}
	return store.Cond{}, Invalid("mode", "%q is not create, update, updateIfMatchETag or delete", mode)
}

func bulkError(err error) (int, string) {
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		return 400004, ve.Error()
	case errors.Is(err, ErrNotFound):
		return 404201, "not found"
	case errors.Is(err, ErrConflict):
		return 409001, "already exists"
	case errors.Is(err, ErrPrecondition):
		return 412002, "etag mismatch"
	}
	return 500000, "internal error"
}

func checkBulk(mode string, n int) error {
	if n == 0 {
		return Invalid("enrollments", "no items")
	}
	if n > MaxBulkItems {
		return Invalid("enrollments", "%d items; at most %d per bulk operation", n, MaxBulkItems)
	}
	_, err := bulkCond(mode, "x")
	return err
}

// bulkItem is how runBulk sees one item of a bulk operation.
type bulkItem struct {
	etag string
	put  func(store.Cond) error
	del  func() error
	fail func(code int, status string) BulkError
}

// runBulk applies one mode to each item independently.
func runBulk(mode string, items []bulkItem) (*BulkResult, error) {
	if err := checkBulk(mode, len(items)); err != nil {
		return nil, err
	}
	res := &BulkResult{IsSuccessful: true, Errors: []BulkError{}}
	for _, it := range items {
		c, err := bulkCond(mode, it.etag)
		if err == nil {
			if mode == BulkDelete {
				err = it.del()
			} else {
				err = it.put(c)
			}
		}
		if err != nil {
			res.IsSuccessful = false
			res.Errors = append(res.Errors, it.fail(bulkError(err)))
		}
	}
	return res, nil
}

// BulkEnrollments applies one mode to up to ten individual enrollments.
// Items succeed or fail independently.
func (s *Service) BulkEnrollments(ctx context.Context, mode string, items []*IndividualEnrollment) (*BulkResult, error) {
	var bi []bulkItem
	for _, it := range items {
		if it == nil {
			continue
		}
		bi = append(bi, bulkItem{
			etag: it.ETag,
			put:  func(c store.Cond) error { _, err := s.putEnrollment(ctx, it, c); return err },
			del: func() error {
				return mapStoreErr(s.docs.Delete(ctx, store.KindEnrollment, Key(it.RegistrationID), StoreETag(it.ETag)))
			},
			fail: func(code int, status string) BulkError {
				return BulkError{RegistrationID: it.RegistrationID, ErrorCode: code, ErrorStatus: status}
			},
		})
	}
	return runBulk(mode, bi)
}

// BulkGroups applies one mode to up to ten enrollment groups.
func (s *Service) BulkGroups(ctx context.Context, mode string, items []*EnrollmentGroup) (*BulkResult, error) {
	var bi []bulkItem
	for _, it := range items {
		if it == nil {
			continue
		}
		bi = append(bi, bulkItem{
			etag: it.ETag,
			put:  func(c store.Cond) error { _, err := s.putGroup(ctx, it, c); return err },
			del:  func() error { return s.DeleteGroup(ctx, it.EnrollmentGroupID, it.ETag) },
			fail: func(code int, status string) BulkError {
				return BulkError{EnrollmentGroupID: it.EnrollmentGroupID, ErrorCode: code, ErrorStatus: status}
			},
		})
	}
	return runBulk(mode, bi)
}

// ---- registration records ----

// Registration returns the stored registration record of a registration ID.
func (s *Service) Registration(ctx context.Context, registrationID string) (*Registration, error) {
	rec, err := s.docs.Get(ctx, store.KindRegistration, Key(registrationID))
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return DecodeRegistration(rec)
}

// DecodeRegistration decodes a stored registration record.
func DecodeRegistration(rec store.Record) (*Registration, error) {
	var r Registration
	if err := json.Unmarshal(rec.Doc, &r); err != nil {
		return nil, fmt.Errorf("decode registration %s: %w", rec.ID, err)
	}
	r.ETag = rec.ETag
	return &r, nil
}

// GetRegistration returns the service view of a registration record.
func (s *Service) GetRegistration(ctx context.Context, registrationID string) (*RegistrationStateView, error) {
	r, err := s.Registration(ctx, registrationID)
	if err != nil {
		return nil, err
	}
	return r.View(), nil
}

// DeleteRegistration deletes a registration record (the device may then
// register again as new).
func (s *Service) DeleteRegistration(ctx context.Context, registrationID, ifMatch string) error {
	return mapStoreErr(s.docs.Delete(ctx, store.KindRegistration, Key(registrationID), StoreETag(ifMatch)))
}

// QueryGroupRegistrations lists the registration records of one group (its
// "registration records").
func (s *Service) QueryGroupRegistrations(ctx context.Context, groupID, continuation string, max int) ([]*RegistrationStateView, string, error) {
	recs, next, err := s.listPage(ctx, store.KindRegistration, Key(groupID), continuation, max)
	if err != nil {
		return nil, "", err
	}
	out := make([]*RegistrationStateView, 0, len(recs))
	for _, rec := range recs {
		r, err := DecodeRegistration(rec)
		if err != nil {
			return nil, "", err
		}
		out = append(out, r.View())
	}
	return out, next, nil
}

// ---- CA certificates (proof of possession) ----

var caNamePattern = regexp.MustCompile(`^[A-Za-z0-9\-._]{1,64}$`)

func decodeCA(rec store.Record) (*CACertificate, error) {
	var c CACertificate
	if err := json.Unmarshal(rec.Doc, &c); err != nil {
		return nil, fmt.Errorf("decode CA certificate %s: %w", rec.ID, err)
	}
	c.ETag = WireETag(rec.ETag)
	return &c, nil
}

// PutCA uploads (or replaces) a CA certificate. A new upload is unverified.
func (s *Service) PutCA(ctx context.Context, name, certificate, ifMatch string) (*CACertificate, error) {
	if !caNamePattern.MatchString(name) {
		return nil, Invalid("name", "%q must be 1-64 letters, digits, - . or _", name)
	}
	certs, err := pki.ParseCertificates([]byte(certificate))
	if err != nil {
		return nil, Invalid("certificate", "%v", err)
	}
	if len(certs) != 1 {
		return nil, Invalid("certificate", "upload exactly one CA certificate, got %d", len(certs))
	}
	cert := certs[0]
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, Invalid("certificate", "%s is not a CA certificate (basicConstraints CA:TRUE missing)", pki.DistinguishedName(cert.Subject))
	}
	now := s.opts.Now().UTC()
	c := &CACertificate{
		Name:             name,
		Certificate:      string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		Subject:          pki.DistinguishedName(cert.Subject),
		Thumbprint:       pki.SHA1Thumbprint(cert),
		SHA256Thumbprint: pki.SHA256Thumbprint(cert),
		Expiry:           cert.NotAfter.UTC(),
		Created:          now,
		Updated:          now,
	}
	if prev, err := s.GetCA(ctx, name); err == nil {
		c.Created = prev.Created
		if prev.SHA256Thumbprint == c.SHA256Thumbprint {
			c.IsVerified, c.VerifiedAt = prev.IsVerified, prev.VerifiedAt
		}
	}
	return s.writeCA(ctx, c, cond(ifMatch))
}

func (s *Service) writeCA(ctx context.Context, c *CACertificate, cd store.Cond) (*CACertificate, error) {
	c.ETag = ""
	doc, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	rec, err := s.docs.Put(ctx, store.Record{Kind: store.KindCACertificate, ID: Key(c.Name), Doc: doc}, cd)
	if err != nil {
		return nil, mapStoreErr(err)
	}
	s.invalidateGroups()
	return decodeCA(rec)
}

// GetCA returns a registered CA certificate.
func (s *Service) GetCA(ctx context.Context, name string) (*CACertificate, error) {
	rec, err := s.docs.Get(ctx, store.KindCACertificate, Key(name))
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return decodeCA(rec)
}

// CACertificate returns a CA for attestation, or nil, nil.
func (s *Service) CACertificate(ctx context.Context, name string) (*CACertificate, error) {
	c, err := s.GetCA(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return c, err
}

// ListCAs lists registered CA certificates.
func (s *Service) ListCAs(ctx context.Context) ([]*CACertificate, error) {
	recs, err := s.docs.List(ctx, store.KindCACertificate, store.ListOptions{Limit: 1000})
	if err != nil {
		return nil, err
	}
	out := make([]*CACertificate, 0, len(recs))
	for _, r := range recs {
		c, err := decodeCA(r)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// DeleteCA removes a CA certificate.
func (s *Service) DeleteCA(ctx context.Context, name, ifMatch string) error {
	err := s.docs.Delete(ctx, store.KindCACertificate, Key(name), StoreETag(ifMatch))
	s.invalidateGroups()
	return mapStoreErr(err)
}

// GenerateVerificationCode issues a proof-of-possession code: the owner signs
// a certificate whose CN is this code with the CA's key.
func (s *Service) GenerateVerificationCode(ctx context.Context, name, ifMatch string) (*CACertificate, error) {
	c, err := s.GetCA(ctx, name)
	if err != nil {
		return nil, err
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	c.VerificationCode = strings.ToUpper(hex.EncodeToString(b[:]))
	c.Updated = s.opts.Now().UTC()
	if ifMatch == "" {
		ifMatch = c.ETag
	}
	return s.writeCA(ctx, c, cond(ifMatch))
}

// VerifyCA completes proof of possession: certificate must be signed by the
// CA and carry the current verification code as its CN.
func (s *Service) VerifyCA(ctx context.Context, name, certificate, ifMatch string) (*CACertificate, error) {
	c, err := s.GetCA(ctx, name)
	if err != nil {
		return nil, err
	}
	if c.VerificationCode == "" {
		return nil, Invalid("verificationCode", "no verification code was generated for %q; call generateVerificationCode first", name)
	}
	ca, err := pki.ParseCertificate([]byte(c.Certificate))
	if err != nil {
		return nil, fmt.Errorf("parse stored CA %s: %w", name, err)
	}
	proof, err := pki.ParseCertificate([]byte(certificate))
	if err != nil {
		return nil, Invalid("certificate", "%v", err)
	}
	if proof.Subject.CommonName != c.VerificationCode {
		return nil, Invalid("certificate", "its CN %q is not the verification code %q", proof.Subject.CommonName, c.VerificationCode)
	}
	if err := proof.CheckSignatureFrom(ca); err != nil {
		return nil, Invalid("certificate", "it is not signed by CA %q (%s): %v", name, c.Subject, err)
	}
	now := s.opts.Now()
	if now.Before(proof.NotBefore) || now.After(proof.NotAfter) {
		return nil, Invalid("certificate", "it is not valid now (valid %s to %s)", proof.NotBefore.UTC().Format(time.RFC3339), proof.NotAfter.UTC().Format(time.RFC3339))
	}
	t := now.UTC()
	c.IsVerified, c.VerifiedAt, c.VerificationCode, c.Updated = true, &t, "", t
	if ifMatch == "" {
		ifMatch = c.ETag
	}
	return s.writeCA(ctx, c, cond(ifMatch))
}
