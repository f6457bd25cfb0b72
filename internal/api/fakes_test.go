package api

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/store"
)

// call records one invocation of a fake, for cmp against expectations.
type call struct {
	Op           string
	ID           string
	IfMatch      string
	Query        string
	Continuation string
	Max          int
	Mode         string
	Items        int
	Cert         string
}

// recorder keeps the calls made on a fake and an error to fail them with.
type recorder struct {
	mu    sync.Mutex
	calls []call
	err   error
}

// record notes a call; the caller holds r.mu.
func (r *recorder) record(c call) error {
	r.calls = append(r.calls, c)
	return r.err
}

func (r *recorder) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// seed runs fn with the fake locked, to set up its contents.
func (r *recorder) seed(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn()
}

func (r *recorder) took() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

// page returns items[from:from+max] of a sorted key list with an index
// continuation, "" on the last page.
func page(keys []string, continuation string, max int) ([]string, string, error) {
	from := 0
	if continuation != "" {
		n, err := strconv.Atoi(continuation)
		if err != nil || n < 0 || n > len(keys) {
			return nil, "", enroll.Invalid("x-ms-continuation", "not a continuation token this service issued")
		}
		from = n
	}
	end := min(from+max, len(keys))
	next := ""
	if end < len(keys) {
		next = strconv.Itoa(end)
	}
	return keys[from:end], next, nil
}

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// fakeRegistrar answers device requests with canned results and keeps the
// requests it saw.
type fakeRegistrar struct {
	mu       sync.Mutex
	op       *provision.OperationStatus
	result   *provision.DeviceRegistrationResult
	err      error
	register []provision.RegisterRequest
	polls    []provision.OperationRequest
	lookups  []provision.RegisterRequest
}

func (f *fakeRegistrar) set(op *provision.OperationStatus, res *provision.DeviceRegistrationResult, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.op, f.result, f.err = op, res, err
}

func (f *fakeRegistrar) Register(_ context.Context, req provision.RegisterRequest) (*provision.OperationStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.register = append(f.register, req)
	return f.op, f.err
}

func (f *fakeRegistrar) OperationStatus(_ context.Context, req provision.OperationRequest) (*provision.OperationStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls = append(f.polls, req)
	return f.op, f.err
}

func (f *fakeRegistrar) RegistrationStatus(_ context.Context, req provision.RegisterRequest) (*provision.DeviceRegistrationResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups = append(f.lookups, req)
	return f.result, f.err
}

// fakeRegistrations is an in-memory registration record store.
type fakeRegistrations struct {
	recorder
	states   map[string]*enroll.RegistrationStateView // by lower-case ID
	groupOf  map[string]string                        // registration -> group
	attempts []store.Attempt                          // newest first
}

func newFakeRegistrations() *fakeRegistrations {
	return &fakeRegistrations{states: map[string]*enroll.RegistrationStateView{}, groupOf: map[string]string{}}
}

func (f *fakeRegistrations) GetRegistration(_ context.Context, id string) (*enroll.RegistrationStateView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "GetRegistration", ID: id}); err != nil {
		return nil, err
	}
	s, ok := f.states[strings.ToLower(id)]
	if !ok {
		return nil, fmt.Errorf("get registration %s: %w", id, enroll.ErrNotFound)
	}
	return s, nil
}

func (f *fakeRegistrations) DeleteRegistration(_ context.Context, id, ifMatch string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "DeleteRegistration", ID: id, IfMatch: ifMatch}); err != nil {
		return err
	}
	s, ok := f.states[strings.ToLower(id)]
	switch {
	case !ok:
		return enroll.ErrNotFound
	case ifMatch != "" && ifMatch != "*" && ifMatch != s.ETag:
		return enroll.ErrPrecondition
	}
	delete(f.states, strings.ToLower(id))
	return nil
}

func (f *fakeRegistrations) QueryGroupRegistrations(_ context.Context, groupID, continuation string, max int) ([]*enroll.RegistrationStateView, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "QueryGroupRegistrations", ID: groupID, Continuation: continuation, Max: max}); err != nil {
		return nil, "", err
	}
	var keys []string
	for _, k := range sortedKeys(f.states) {
		if strings.EqualFold(f.groupOf[k], groupID) {
			keys = append(keys, k)
		}
	}
	keys, next, err := page(keys, continuation, max)
	if err != nil {
		return nil, "", err
	}
	var out []*enroll.RegistrationStateView
	for _, k := range keys {
		out = append(out, f.states[k])
	}
	return out, next, nil
}

func (f *fakeRegistrations) Attempts(_ context.Context, id string, limit int) ([]store.Attempt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "Attempts", ID: id, Max: limit}); err != nil {
		return nil, err
	}
	var out []store.Attempt
	for _, a := range f.attempts {
		if id == "" || a.RegistrationID == id {
			out = append(out, a)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// fakeEnrollments is an in-memory enrollment service.
type fakeEnrollments struct {
	recorder
	enrollments map[string]*enroll.IndividualEnrollment
	groups      map[string]*enroll.EnrollmentGroup
	cas         map[string]*enroll.CACertificate
}

func newFakeEnrollments() *fakeEnrollments {
	return &fakeEnrollments{
		enrollments: map[string]*enroll.IndividualEnrollment{},
		groups:      map[string]*enroll.EnrollmentGroup{},
		cas:         map[string]*enroll.CACertificate{},
	}
}

// checkETag applies If-Match to an existing record's etag.
func checkETag(exists bool, etag, ifMatch string) error {
	switch {
	case ifMatch == "":
		return nil
	case !exists:
		return enroll.ErrPrecondition
	case ifMatch != "*" && ifMatch != etag:
		return enroll.ErrPrecondition
	}
	return nil
}

func (f *fakeEnrollments) PutEnrollment(_ context.Context, e *enroll.IndividualEnrollment, ifMatch string) (*enroll.IndividualEnrollment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "PutEnrollment", ID: e.RegistrationID, IfMatch: ifMatch}); err != nil {
		return nil, err
	}
	if e.Attestation == nil {
		return nil, enroll.Invalid("attestation", "is required")
	}
	prev, ok := f.enrollments[strings.ToLower(e.RegistrationID)]
	prevETag := ""
	if ok {
		prevETag = prev.ETag
	}
	if err := checkETag(ok, prevETag, ifMatch); err != nil {
		return nil, err
	}
	if ok && ifMatch == "" {
		return nil, enroll.ErrConflict
	}
	c := *e
	c.ETag = fmt.Sprintf(`"%d"`, len(f.calls))
	f.enrollments[strings.ToLower(e.RegistrationID)] = &c
	return &c, nil
}

func (f *fakeEnrollments) GetEnrollment(_ context.Context, id string) (*enroll.IndividualEnrollment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "GetEnrollment", ID: id}); err != nil {
		return nil, err
	}
	e, ok := f.enrollments[strings.ToLower(id)]
	if !ok {
		return nil, fmt.Errorf("get enrollment %s: %w", id, enroll.ErrNotFound)
	}
	return e, nil
}

func (f *fakeEnrollments) DeleteEnrollment(_ context.Context, id, ifMatch string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "DeleteEnrollment", ID: id, IfMatch: ifMatch}); err != nil {
		return err
	}
	e, ok := f.enrollments[strings.ToLower(id)]
	if !ok {
		return enroll.ErrNotFound
	}
	if err := checkETag(true, e.ETag, ifMatch); err != nil {
		return err
	}
	delete(f.enrollments, strings.ToLower(id))
	return nil
}

func (f *fakeEnrollments) EnrollmentAttestation(_ context.Context, id string) (*enroll.AttestationMechanism, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "EnrollmentAttestation", ID: id}); err != nil {
		return nil, err
	}
	e, ok := f.enrollments[strings.ToLower(id)]
	if !ok {
		return nil, enroll.ErrNotFound
	}
	return e.Attestation, nil
}

func (f *fakeEnrollments) QueryEnrollments(_ context.Context, query, continuation string, max int) ([]*enroll.IndividualEnrollment, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "QueryEnrollments", Query: query, Continuation: continuation, Max: max}); err != nil {
		return nil, "", err
	}
	keys, next, err := page(sortedKeys(f.enrollments), continuation, max)
	if err != nil {
		return nil, "", err
	}
	var out []*enroll.IndividualEnrollment
	for _, k := range keys {
		out = append(out, f.enrollments[k])
	}
	return out, next, nil
}

func (f *fakeEnrollments) BulkEnrollments(_ context.Context, mode string, items []*enroll.IndividualEnrollment) (*enroll.BulkResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "BulkEnrollments", Mode: mode, Items: len(items)}); err != nil {
		return nil, err
	}
	res := &enroll.BulkResult{IsSuccessful: true, Errors: []enroll.BulkError{}}
	for _, it := range items {
		if _, exists := f.enrollments[strings.ToLower(it.RegistrationID)]; exists && mode == "create" {
			res.IsSuccessful = false
			res.Errors = append(res.Errors, enroll.BulkError{RegistrationID: it.RegistrationID, ErrorCode: 409001, ErrorStatus: "already exists"})
			continue
		}
		f.enrollments[strings.ToLower(it.RegistrationID)] = it
	}
	return res, nil
}

func (f *fakeEnrollments) PutGroup(_ context.Context, g *enroll.EnrollmentGroup, ifMatch string) (*enroll.EnrollmentGroup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "PutGroup", ID: g.EnrollmentGroupID, IfMatch: ifMatch}); err != nil {
		return nil, err
	}
	prev, ok := f.groups[strings.ToLower(g.EnrollmentGroupID)]
	prevETag := ""
	if ok {
		prevETag = prev.ETag
	}
	if err := checkETag(ok, prevETag, ifMatch); err != nil {
		return nil, err
	}
	c := *g
	c.ETag = fmt.Sprintf(`"%d"`, len(f.calls))
	f.groups[strings.ToLower(g.EnrollmentGroupID)] = &c
	return &c, nil
}

func (f *fakeEnrollments) GetGroup(_ context.Context, id string) (*enroll.EnrollmentGroup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "GetGroup", ID: id}); err != nil {
		return nil, err
	}
	g, ok := f.groups[strings.ToLower(id)]
	if !ok {
		return nil, enroll.ErrNotFound
	}
	return g, nil
}

func (f *fakeEnrollments) DeleteGroup(_ context.Context, id, ifMatch string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "DeleteGroup", ID: id, IfMatch: ifMatch}); err != nil {
		return err
	}
	g, ok := f.groups[strings.ToLower(id)]
	if !ok {
		return enroll.ErrNotFound
	}
	if err := checkETag(true, g.ETag, ifMatch); err != nil {
		return err
	}
	delete(f.groups, strings.ToLower(id))
	return nil
}

func (f *fakeEnrollments) GroupAttestation(_ context.Context, id string) (*enroll.AttestationMechanism, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "GroupAttestation", ID: id}); err != nil {
		return nil, err
	}
	g, ok := f.groups[strings.ToLower(id)]
	if !ok {
		return nil, enroll.ErrNotFound
	}
	return g.Attestation, nil
}

func (f *fakeEnrollments) QueryGroups(_ context.Context, query, continuation string, max int) ([]*enroll.EnrollmentGroup, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "QueryGroups", Query: query, Continuation: continuation, Max: max}); err != nil {
		return nil, "", err
	}
	keys, next, err := page(sortedKeys(f.groups), continuation, max)
	if err != nil {
		return nil, "", err
	}
	var out []*enroll.EnrollmentGroup
	for _, k := range keys {
		out = append(out, f.groups[k])
	}
	return out, next, nil
}

func (f *fakeEnrollments) BulkGroups(_ context.Context, mode string, items []*enroll.EnrollmentGroup) (*enroll.BulkResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "BulkGroups", Mode: mode, Items: len(items)}); err != nil {
		return nil, err
	}
	for _, it := range items {
		f.groups[strings.ToLower(it.EnrollmentGroupID)] = it
	}
	return &enroll.BulkResult{IsSuccessful: true, Errors: []enroll.BulkError{}}, nil
}

func (f *fakeEnrollments) PutCA(_ context.Context, name, certificate, ifMatch string) (*enroll.CACertificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "PutCA", ID: name, IfMatch: ifMatch, Cert: certificate}); err != nil {
		return nil, err
	}
	c := &enroll.CACertificate{Name: name, Certificate: certificate, ETag: `"ca1"`}
	f.cas[strings.ToLower(name)] = c
	return c, nil
}

func (f *fakeEnrollments) GetCA(_ context.Context, name string) (*enroll.CACertificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "GetCA", ID: name}); err != nil {
		return nil, err
	}
	c, ok := f.cas[strings.ToLower(name)]
	if !ok {
		return nil, enroll.ErrNotFound
	}
	return c, nil
}

func (f *fakeEnrollments) ListCAs(_ context.Context) ([]*enroll.CACertificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "ListCAs"}); err != nil {
		return nil, err
	}
	var out []*enroll.CACertificate
	for _, k := range sortedKeys(f.cas) {
		out = append(out, f.cas[k])
	}
	return out, nil
}

func (f *fakeEnrollments) DeleteCA(_ context.Context, name, ifMatch string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "DeleteCA", ID: name, IfMatch: ifMatch}); err != nil {
		return err
	}
	if _, ok := f.cas[strings.ToLower(name)]; !ok {
		return enroll.ErrNotFound
	}
	delete(f.cas, strings.ToLower(name))
	return nil
}

func (f *fakeEnrollments) GenerateVerificationCode(_ context.Context, name, ifMatch string) (*enroll.CACertificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "GenerateVerificationCode", ID: name, IfMatch: ifMatch}); err != nil {
		return nil, err
	}
	c, ok := f.cas[strings.ToLower(name)]
	if !ok {
		return nil, enroll.ErrNotFound
	}
	c.VerificationCode = "C0DE"
	return c, nil
}

func (f *fakeEnrollments) VerifyCA(_ context.Context, name, certificate, ifMatch string) (*enroll.CACertificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call{Op: "VerifyCA", ID: name, IfMatch: ifMatch, Cert: certificate}); err != nil {
		return nil, err
	}
	c, ok := f.cas[strings.ToLower(name)]
	if !ok {
		return nil, enroll.ErrNotFound
	}
	if certificate != "proof:"+c.VerificationCode {
		return nil, enroll.Invalid("certificate", "its CN is not the verification code %q", c.VerificationCode)
	}
	c.IsVerified = true
	return c, nil
}

// fakePolicies is a fixed set of policies.
type fakePolicies map[string]Policy

func (f fakePolicies) Policy(name string) (Policy, bool) {
	for n, p := range f {
		if strings.EqualFold(n, name) {
			return p, true
		}
	}
	return Policy{}, false
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// take returns and clears what was logged.
func (b *syncBuffer) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	b.buf.Reset()
	return s
}
