package provision

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/muster-iot/muster/internal/attest"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/pki"
	"github.com/muster-iot/muster/internal/store"
)

// Options configure a Service.
type Options struct {
	IDScope     string
	Docs        store.Docs
	Attempts    store.Attempts
	Enrollments *enroll.Service
	Hubs        []LinkedHub
	Allocator   Allocator
	Logger      *slog.Logger
	Now         func() time.Time
	// WebhookTimeout bounds a custom allocation call (default 10s).
	WebhookTimeout time.Duration
	// ClockSkew tolerated on tokens and certificates (default 5m).
	ClockSkew time.Duration
	// AnswerBeforeCommit answers a register request (202, assigning) as
	// soon as the assignment's writes are handed to the store, and lets
	// the commit finish in the background. The device's poll waits for
	// the commit (up to PollWait) and only then reports assigned, so an
	// acknowledged assignment is still durable; the device's poll
	// round trip overlaps the commit instead of following it. Only for a
	// store that this one instance owns (the embedded SQLite): a poll that
	// reached another instance before the commit would find no operation.
	// Call Drain before closing the store.
	AnswerBeforeCommit bool
	// PollWait bounds how long a poll waits for a background commit
	// before it answers assigning again (default 5s).
	PollWait time.Duration
}

// A device's poll with the credential it just registered with skips
// attestation for this long (bounded by the credential's own expiry).
const (
	proofTTL       = 2 * time.Minute
	proofCacheSize = 65536

	// The final answers of this many recent operations, each for this
	// long, are kept to answer polls without a store read.
	finishedTTL       = 2 * time.Minute
	finishedCacheSize = 65536
)

// Service is the provisioning service's device-facing core.
type Service struct {
	o         Options
	symmetric *attest.Symmetric
	x509      *attest.X509
	hubs      map[string]LinkedHub // by lower-case host name
	order     []string             // host names in configuration order
	proofs    *proofs
	finished  *finished
	inflight  *inflight
}

// New returns a provisioning service.
func New(o Options) (*Service, error) {
	if o.IDScope == "" || o.Docs == nil || o.Attempts == nil || o.Enrollments == nil {
		return nil, errors.New("provision: IDScope, Docs, Attempts and Enrollments are required")
	}
	if len(o.Hubs) == 0 {
		return nil, errors.New("provision: at least one linked hub is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WebhookTimeout == 0 {
		o.WebhookTimeout = 10 * time.Second
	}
	if o.ClockSkew == 0 {
		o.ClockSkew = 5 * time.Minute
	}
	if o.PollWait == 0 {
		o.PollWait = 5 * time.Second
	}
	s := &Service{o: o, hubs: map[string]LinkedHub{}, proofs: newProofs(proofCacheSize, proofTTL),
		finished: newFinished(finishedCacheSize, finishedTTL), inflight: newInflight()}
	for _, h := range o.Hubs {
		if h.Weight <= 0 {
			h.Weight = 1
		}
		if h.Weight > 1000 {
			return nil, fmt.Errorf("provision: hub %s weight %d is over 1000", h.Hub.HostName(), h.Weight)
		}
		key := strings.ToLower(h.Hub.HostName())
		if _, dup := s.hubs[key]; dup {
			return nil, fmt.Errorf("provision: hub %s linked twice", h.Hub.HostName())
		}
		s.hubs[key] = h
		s.order = append(s.order, h.Hub.HostName())
	}
	ao := attest.Options{Now: o.Now, ClockSkew: o.ClockSkew}
	s.symmetric = attest.NewSymmetric(o.Enrollments, ao)
	s.x509 = attest.NewX509(o.Enrollments, ao)
	return s, nil
}

// LinkedHubNames returns the linked hubs' host names.
func (s *Service) LinkedHubNames() []string { return append([]string(nil), s.order...) }

// IDScope returns the service's ID scope.
func (s *Service) IDScope() string { return s.o.IDScope }

// Drain waits until the commits of every registration already answered
// have finished (see Options.AnswerBeforeCommit), or until ctx ends. Call
// it after the listeners stopped and before the store is closed.
func (s *Service) Drain(ctx context.Context) error {
	if err := s.inflight.drain(ctx); err != nil {
		return fmt.Errorf("provision: registrations still committing: %w", err)
	}
	return nil
}

// attempt is the attempt being recorded for one request.
type attempt struct {
	store.Attempt
}

func (s *Service) newAttempt(req *RegisterRequest) *attempt {
	a := &attempt{store.Attempt{
		ID:             newID(s.o.Now()),
		Time:           s.o.Now().UTC(),
		RegistrationID: enroll.Key(req.RegistrationID),
		Protocol:       req.Protocol,
		RemoteAddr:     req.RemoteAddr,
	}}
	switch {
	case len(req.Chain) > 0:
		a.Attestation = enroll.AttestationX509
	case req.SAS != "":
		a.Attestation = enroll.AttestationSymmetricKey
	case req.HasTPM:
		a.Attestation = enroll.AttestationTPM
	}
	return a
}

func (s *Service) record(ctx context.Context, a *attempt) {
	if err := s.o.Attempts.AppendAttempt(context.WithoutCancel(ctx), a.Attempt); err != nil {
		s.o.Logger.Error("record registration attempt", "registrationId", a.RegistrationID, "err", err)
	}
}

// deny records a refusal and returns what the device is told.
func (s *Service) deny(ctx context.Context, a *attempt, d *attest.Denial, device *Error) *Error {
	a.Outcome = "denied"
	a.Reason, a.Hint = string(d.Reason), d.Hint
	if d.Detail != "" {
		a.Hint = strings.TrimSpace(d.Detail + ". " + d.Hint)
	}
	a.EnrollmentKind, a.EnrollmentID = d.EnrollmentKind, d.EnrollmentID
	s.o.Logger.Info("registration denied", "registrationId", a.RegistrationID, "protocol", a.Protocol, "reason", d.Reason, "detail", d.Detail)
	s.record(ctx, a)
	return device
}

// authenticate validates the request envelope and attests the device.
func (s *Service) authenticate(ctx context.Context, req *RegisterRequest, a *attempt) (*attest.Match, error) {
	if !strings.EqualFold(req.IDScope, s.o.IDScope) {
		return nil, s.deny(ctx, a, &attest.Denial{Reason: attest.ReasonScopeUnknown,
			Detail: fmt.Sprintf("ID scope %q is not this service's (%s)", req.IDScope, s.o.IDScope),
			Hint:   "configure the device with this service's ID scope (muster-data/endpoints.json idScope)"}, ErrUnauthorized)
	}
	if !enroll.ValidRegistrationID(req.RegistrationID) {
		return nil, s.deny(ctx, a, &attest.Denial{Reason: attest.ReasonBadRequest,
			Detail: fmt.Sprintf("registration ID %q is not valid", req.RegistrationID),
			Hint:   "registration IDs are up to 128 letters, digits and - . _ :, ending with a letter, digit or -"},
			BadRequest("the registration ID is not valid"))
	}
	if req.BodyRegistrationID != "" && !strings.EqualFold(req.BodyRegistrationID, req.RegistrationID) {
		return nil, s.deny(ctx, a, &attest.Denial{Reason: attest.ReasonBadRequest,
			Detail: fmt.Sprintf("body registrationId %q differs from %q in the request path", req.BodyRegistrationID, req.RegistrationID)},
			BadRequest("registrationId in the body does not match the request"))
	}
	var (
		m   *attest.Match
		err error
	)
	switch {
	case len(req.Chain) > 0:
		m, err = s.x509.Attest(ctx, req.RegistrationID, req.Chain)
	case req.SAS != "":
		m, err = s.symmetric.Attest(ctx, req.IDScope, req.RegistrationID, req.SAS)
	case req.HasTPM:
		return nil, s.deny(ctx, a, &attest.Denial{Reason: attest.ReasonNoCredential,
			Detail: "the device asked for TPM attestation", Hint: "TPM attestation is not supported yet; use X.509 or a symmetric key"}, ErrTPMUnsupported)
	default:
		return nil, s.deny(ctx, a, &attest.Denial{Reason: attest.ReasonNoCredential,
			Detail: "no SAS token and no TLS client certificate", Hint: "send an Authorization SAS token or present the device certificate in the TLS handshake"}, ErrUnauthorized)
	}
	if err != nil {
		var d *attest.Denial
		if errors.As(err, &d) {
			if d.Reason == attest.ReasonEnrollmentDisabled {
				return nil, err // handled by the caller: the device proved itself
			}
			return nil, s.deny(ctx, a, d, ErrUnauthorized)
		}
		s.o.Logger.Error("attestation", "registrationId", req.RegistrationID, "err", err)
		return nil, ErrInternal
	}
	a.EnrollmentKind, a.EnrollmentID = m.EnrollmentKind(), m.EnrollmentID()
	return m, nil
}

// Register runs one registration to completion and answers as the PUT does:
// an operation in status assigning, whose poll returns the final state.
func (s *Service) Register(ctx context.Context, req RegisterRequest) (*OperationStatus, error) {
	a := s.newAttempt(&req)
	m, err := s.authenticate(ctx, &req, a)
	var d *attest.Denial
	disabled := errors.As(err, &d) && d.Reason == attest.ReasonEnrollmentDisabled
	if err != nil && !disabled {
		return nil, err
	}
	// A previous registration of this ID still committing is waited for,
	// so that the reprovision policy sees the record it writes.
	if err := s.inflight.settle(ctx, enroll.Key(req.RegistrationID)); err != nil {
		return nil, err
	}
	if disabled {
		return s.disabled(ctx, &req, a, d)
	}
	s.proofs.remember(&req, s.o.Now())
	reg, deferred, err := s.assign(ctx, &req, m, a)
	if err != nil {
		return nil, err
	}
	if !deferred {
		s.finished.remember(reg, s.o.Now())
	}
	return &OperationStatus{OperationID: reg.OperationID, Status: StatusAssigning,
		RegistrationState: &DeviceRegistrationResult{RegistrationID: reg.RegistrationID, Status: StatusAssigning}}, nil
}

// disabled records a blocked registration: the device proved its credential
// but its enrollment (or group) is disabled.
func (s *Service) disabled(ctx context.Context, req *RegisterRequest, a *attempt, d *attest.Denial) (*OperationStatus, error) {
	now := s.o.Now().UTC()
	prev, _, err := s.loadRegistration(ctx, req.RegistrationID)
	if err != nil {
		return nil, err
	}
	reg := &enroll.Registration{RegistrationID: req.RegistrationID, Created: now}
	if prev != nil {
		*reg = *prev
	}
	reg.Status, reg.Substatus, reg.ErrorCode, reg.ErrorMessage = StatusDisabled, "", 0, ""
	reg.Updated, reg.OperationID = now, newOperationID()
	group := ""
	if d.EnrollmentKind == "group" {
		reg.EnrollmentGroupID, group = d.EnrollmentID, enroll.Key(d.EnrollmentID)
	}
	a.Outcome, a.Reason, a.Hint = StatusDisabled, string(d.Reason), strings.TrimSpace(d.Detail+". "+d.Hint)
	a.EnrollmentKind, a.EnrollmentID = d.EnrollmentKind, d.EnrollmentID
	if err := s.saveRegistration(ctx, reg, group, a); err != nil {
		return nil, err
	}
	s.finished.remember(reg, now)
	return &OperationStatus{OperationID: reg.OperationID, Status: StatusAssigning,
		RegistrationState: &DeviceRegistrationResult{RegistrationID: reg.RegistrationID, Status: StatusAssigning}}, nil
}

func (s *Service) loadRegistration(ctx context.Context, id string) (*enroll.Registration, string, error) {
	rec, err := s.o.Docs.Get(ctx, store.KindRegistration, enroll.Key(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("load registration %s: %w", id, err)
	}
	r, err := enroll.DecodeRegistration(rec)
	if err != nil {
		return nil, "", err
	}
	return r, rec.Group, nil
}

// registrationWrite is the store write of a registration record.
func registrationWrite(r *enroll.Registration, group string) (store.Write, error) {
	doc, err := enroll.EncodeRegistration(r)
	if err != nil {
		return store.Write{}, fmt.Errorf("encode registration %s: %w", r.RegistrationID, err)
	}
	return store.Write{Record: store.Record{Kind: store.KindRegistration, ID: enroll.Key(r.RegistrationID), Group: group, Doc: doc}}, nil
}

// saveRegistration stores a registration record and, in the same
// transaction, the attempt that decided it.
func (s *Service) saveRegistration(ctx context.Context, r *enroll.Registration, group string, a *attempt) error {
	w, err := registrationWrite(r, group)
	if err != nil {
		return err
	}
	recs, err := s.o.Docs.ApplyWithAttempt(ctx, []store.Write{w}, a.Attempt)
	if err != nil {
		return fmt.Errorf("save registration %s: %w", r.RegistrationID, err)
	}
	r.ETag = recs[0].ETag
	return nil
}

// assign allocates a hub, sets up the identity there and stores the record.
// It reports whether the final commit was left running in the background
// (Options.AnswerBeforeCommit), in which case its polls learn the outcome.
func (s *Service) assign(ctx context.Context, req *RegisterRequest, m *attest.Match, a *attempt) (*enroll.Registration, bool, error) {
	now := s.o.Now().UTC()
	deviceID := req.RegistrationID
	groupID, groupKey := "", ""
	var common *enroll.Common
	if m.Group != nil {
		common = &m.Group.Common
		groupID, groupKey = m.Group.EnrollmentGroupID, enroll.Key(m.Group.EnrollmentGroupID)
	} else {
		common = &m.Individual.Common
		if m.Individual.DeviceID != "" {
			deviceID = m.Individual.DeviceID
		}
	}
	prev, _, err := s.loadRegistration(ctx, req.RegistrationID)
	if err != nil {
		return nil, false, err
	}
	reg := &enroll.Registration{RegistrationID: req.RegistrationID, Created: now}
	if prev != nil {
		reg.Created, reg.InitialHub = prev.Created, prev.InitialHub
	}
	reg.Updated, reg.OperationID, reg.Attestation, reg.EnrollmentGroupID = now, newOperationID(), a.Attestation, groupID
	reg.DeviceID = deviceID
	policy := common.ReprovisionPolicy
	if policy == nil {
		policy = &enroll.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true}
	}
	wasAssigned := prev != nil && prev.Status == StatusAssigned && prev.AssignedHub != ""

	fail := func(code int, msg string, reason attest.Reason, hint string) (*enroll.Registration, bool, error) {
		reg.Status, reg.ErrorCode, reg.ErrorMessage, reg.AssignedHub, reg.Substatus = StatusFailed, code, msg, "", ""
		a.Outcome, a.Reason, a.Hint = StatusFailed, string(reason), hint
		if err := s.saveRegistration(ctx, reg, groupKey, a); err != nil {
			return nil, false, err
		}
		return reg, false, nil
	}

	var (
		hubName string
		twin    *TwinState
		payload json.RawMessage
	)
	keep := wasAssigned && !policy.UpdateHubAssignment && !req.Force
	if keep {
		hubName = prev.AssignedHub
	} else {
		var werr *WebhookError
		hubName, twin, payload, err = s.allocate(ctx, req, m, common, prev)
		switch {
		case errors.As(err, &werr):
			msg := "Custom allocation failed"
			if werr.Status != 0 {
				msg = fmt.Sprintf("Custom allocation failed with status code: %d", werr.Status)
			}
			return fail(400209, msg, attest.ReasonWebhookFailed, werr.Msg)
		case err != nil:
			return fail(400208, "No IoT hub could be assigned", attest.ReasonAllocationFailed, err.Error())
		}
	}
	linked, ok := s.hubs[strings.ToLower(hubName)]
	if !ok {
		return fail(400208, "No IoT hub could be assigned", attest.ReasonAllocationFailed,
			fmt.Sprintf("allocation chose %q, which is not a linked hub", hubName))
	}
	hubName = linked.Hub.HostName()
	if twin == nil {
		twin = initialTwin(common.InitialTwin)
	}
	spec := DeviceSpec{DeviceID: deviceID, Auth: deviceAuth(m), IoTEdge: common.Capabilities != nil && common.Capabilities.IoTEdge,
		Twin: twin, RegistrationID: req.RegistrationID, EnrollmentGroupID: groupID}
	reg.Substatus = SubstatusInitialAssignment
	if keep {
		reg.Substatus = prev.Substatus
	} else if wasAssigned {
		reg.Substatus = prev.Substatus
		moved := !strings.EqualFold(prev.AssignedHub, hubName)
		switch {
		case moved && strings.EqualFold(hubName, prev.InitialHub):
			reg.Substatus = SubstatusReprovisionedToInitialAssignment
		case moved && policy.MigrateDeviceData:
			reg.Substatus = SubstatusDeviceDataMigrated
		case moved:
			reg.Substatus = SubstatusDeviceDataReset
		case !policy.MigrateDeviceData:
			reg.Substatus = SubstatusDeviceDataReset
		}
		if moved && policy.MigrateDeviceData {
			if old, ok := s.hubs[strings.ToLower(prev.AssignedHub)]; ok {
				t, err := old.Hub.DeviceTwin(ctx, prev.DeviceID)
				if err != nil {
					return nil, false, fmt.Errorf("read twin of %s on %s to migrate: %w", prev.DeviceID, prev.AssignedHub, err)
				}
				if t != nil {
					spec.Twin = t
				}
			}
		}
		if !moved && !policy.MigrateDeviceData {
			spec.ReplaceTwin = true
		}
		if moved {
			spec.ReplaceTwin = true
		}
	}
	// An in-process hub's identity joins the registration record in one
	// atomic write; any other hub is called first, then the record saved.
	var identity []store.Write
	if wh, ok := linked.Hub.(WritingHub); ok {
		identity, err = wh.ProvisionWrites(ctx, spec)
	} else {
		err = linked.Hub.ProvisionDevice(ctx, spec)
	}
	if err != nil {
		s.o.Logger.Error("provision device in hub", "hub", hubName, "deviceId", deviceID, "err", err)
		return fail(400209, "The device could not be registered in its IoT hub", attest.ReasonAllocationFailed,
			fmt.Sprintf("hub %s refused the device identity %s: %v", hubName, deviceID, err))
	}
	if reg.InitialHub == "" {
		reg.InitialHub = hubName
	}
	reg.Status, reg.AssignedHub, reg.Payload = StatusAssigned, hubName, payload
	rw, err := registrationWrite(reg, groupKey)
	if err != nil {
		return nil, false, err
	}
	// The attempt joins the same transaction: an assigned registration
	// always has its attempt, and the device waits for one commit, not two.
	a.Outcome = StatusAssigned
	c := &commit{writes: append(identity, rw), attempt: a.Attempt, reg: reg}
	if wasAssigned && !strings.EqualFold(prev.AssignedHub, hubName) {
		c.movedFrom, c.movedDevice = prev.AssignedHub, prev.DeviceID
	}
	if s.o.AnswerBeforeCommit {
		p := s.inflight.start(reg.RegistrationID, reg.OperationID)
		go s.commitInBackground(context.WithoutCancel(ctx), c, p)
		return reg, true, nil
	}
	if err := s.commit(ctx, c); err != nil {
		return nil, false, err
	}
	return reg, false, nil
}

// commit is the final write of an assigned registration and what follows
// it.
type commit struct {
	writes  []store.Write
	attempt store.Attempt
	reg     *enroll.Registration
	// movedFrom names the hub the device leaves, whose identity movedDevice
	// is removed once the new assignment is durable.
	movedFrom, movedDevice string
}

// commit stores an assigned registration, then removes the device from
// the hub it moved away from.
func (s *Service) commit(ctx context.Context, c *commit) error {
	recs, err := s.o.Docs.ApplyWithAttempt(ctx, c.writes, c.attempt)
	if err != nil {
		return fmt.Errorf("save registration %s: %w", c.reg.RegistrationID, err)
	}
	c.reg.ETag = recs[len(recs)-1].ETag
	if c.movedFrom != "" {
		if old, ok := s.hubs[strings.ToLower(c.movedFrom)]; ok {
			if err := old.Hub.DeleteDevice(ctx, c.movedDevice); err != nil {
				s.o.Logger.Warn("remove moved device from its old hub", "hub", c.movedFrom, "deviceId", c.movedDevice, "err", err)
			}
		}
	}
	return nil
}

// commitInBackground runs commit for a registration already answered
// "assigning", then publishes the outcome to its polls: the final answer,
// or nothing when the commit failed (the poll is then told to retry the
// registration and the failure is logged for the operator).
func (s *Service) commitInBackground(ctx context.Context, c *commit, p *pending) {
	if err := s.commit(ctx, c); err != nil {
		s.o.Logger.Error("commit registration", "registrationId", c.reg.RegistrationID, "operationId", c.reg.OperationID, "err", err)
		s.inflight.finish(p, nil)
		return
	}
	s.finished.remember(c.reg, s.o.Now())
	s.inflight.finish(p, deviceResult(c.reg))
}

func initialTwin(it *enroll.InitialTwin) *TwinState {
	if it == nil {
		return nil
	}
	t := &TwinState{Tags: it.Tags}
	if it.Properties != nil {
		t.Desired = it.Properties.Desired
	}
	return t
}

func deviceAuth(m *attest.Match) DeviceAuth {
	if m.Leaf == nil {
		return DeviceAuth{Type: AuthSAS, PrimaryKey: m.PrimaryKey, SecondaryKey: m.SecondaryKey}
	}
	if m.Group != nil || m.AnchorSource != "clientCertificate" {
		return DeviceAuth{Type: AuthCertificateAuthority}
	}
	a := DeviceAuth{Type: AuthSelfSigned, PrimaryThumbprint: pki.SHA1Thumbprint(m.Leaf)}
	// Register both enrollment certificates so a device can roll over.
	if x := m.Individual.Attestation.X509; x != nil && x.ClientCertificates != nil {
		if p := x.ClientCertificates.Primary; p != nil && p.Info != nil {
			a.PrimaryThumbprint = p.Info.SHA1Thumbprint
		}
		if sc := x.ClientCertificates.Secondary; sc != nil && sc.Info != nil {
			a.SecondaryThumbprint = sc.Info.SHA1Thumbprint
		}
	}
	return a
}

// allocate picks the hub for a registration by the enrollment's policy.
func (s *Service) allocate(ctx context.Context, req *RegisterRequest, m *attest.Match, c *enroll.Common, prev *enroll.Registration) (string, *TwinState, json.RawMessage, error) {
	candidates := c.IoTHubs
	if len(candidates) == 0 && c.IoTHubHostName != "" {
		candidates = []string{c.IoTHubHostName}
	}
	switch c.AllocationPolicy {
	case enroll.AllocationStatic:
		if len(candidates) == 0 {
			return "", nil, nil, errors.New("static allocation but the enrollment names no hub")
		}
		return candidates[0], nil, req.Payload, nil
	case enroll.AllocationCustom:
		return s.allocateCustom(ctx, req, m, c, prev, candidates)
	default: // hashed, geoLatency (emulated as hashed), empty
		h, err := s.hashed(req.RegistrationID, candidates)
		return h, nil, nil, err
	}
}

// hashed picks a hub by weighted rendezvous hashing of the registration ID:
// deterministic per device, proportional to the weights across devices.
func (s *Service) hashed(registrationID string, candidates []string) (string, error) {
	var pool []LinkedHub
	if len(candidates) == 0 {
		for _, name := range s.order {
			if h := s.hubs[strings.ToLower(name)]; h.ApplyAllocationPolicy {
				pool = append(pool, h)
			}
		}
	} else {
		for _, name := range candidates {
			h, ok := s.hubs[strings.ToLower(name)]
			if !ok {
				return "", fmt.Errorf("enrollment names hub %q, which is not linked", name)
			}
			pool = append(pool, h)
		}
	}
	if len(pool) == 0 {
		return "", errors.New("no linked hub takes part in allocation")
	}
	best, bestScore := "", math.Inf(-1)
	key := strings.ToLower(registrationID)
	for _, h := range pool {
		sum := sha256.Sum256([]byte(strings.ToLower(h.Hub.HostName()) + "\x00" + key))
		u := (float64(binary.BigEndian.Uint64(sum[:8])>>11) + 0.5) / float64(1<<53)
		score := -float64(h.Weight) / math.Log(u)
		if score > bestScore {
			best, bestScore = h.Hub.HostName(), score
		}
	}
	return best, nil
}

func (s *Service) allocateCustom(ctx context.Context, req *RegisterRequest, m *attest.Match, c *enroll.Common, prev *enroll.Registration, candidates []string) (string, *TwinState, json.RawMessage, error) {
	if s.o.Allocator == nil || c.CustomAllocationDefinition == nil {
		return "", nil, nil, &WebhookError{Msg: "custom allocation is configured but no webhook is defined"}
	}
	linked := candidates
	if len(linked) == 0 {
		linked = s.LinkedHubNames()
	}
	ar := &AllocationRequest{LinkedHubs: linked, DeviceRuntimeContext: DeviceRuntimeContext{RegistrationID: req.RegistrationID, Payload: req.Payload}}
	if prev != nil && prev.Status == StatusAssigned {
		ar.DeviceRuntimeContext.CurrentIoTHubHostName, ar.DeviceRuntimeContext.CurrentDeviceID = prev.AssignedHub, prev.DeviceID
	}
	if m.Leaf != nil {
		x := &X509Context{ClientCertificateInfo: enroll.CertificateInfo(m.Leaf)}
		if m.Anchor != nil {
			x.SigningCertificateInfo = enroll.CertificateInfo(m.Anchor)
		}
		if m.Group != nil {
			x.EnrollmentGroupID = m.Group.EnrollmentGroupID
		}
		ar.DeviceRuntimeContext.X509 = x
	} else {
		ar.DeviceRuntimeContext.SymmetricKey = &struct{}{}
	}
	var err error
	if m.Group != nil {
		g := *m.Group
		g.Attestation = &enroll.AttestationMechanism{Type: g.Attestation.Type}
		ar.EnrollmentGroup, err = json.Marshal(&g)
	} else {
		e := *m.Individual
		e.Attestation = &enroll.AttestationMechanism{Type: e.Attestation.Type}
		ar.IndividualEnrollment, err = json.Marshal(&e)
	}
	if err != nil {
		return "", nil, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, s.o.WebhookTimeout)
	defer cancel()
	resp, err := s.o.Allocator.Allocate(wctx, c.CustomAllocationDefinition.WebhookURL, c.CustomAllocationDefinition.APIVersion, ar)
	if err != nil {
		var werr *WebhookError
		if errors.As(err, &werr) {
			return "", nil, nil, werr
		}
		return "", nil, nil, &WebhookError{Msg: err.Error()}
	}
	ok := false
	for _, h := range linked {
		if strings.EqualFold(h, resp.IoTHubHostName) {
			ok = true
		}
	}
	if !ok {
		return "", nil, nil, &WebhookError{Msg: fmt.Sprintf("webhook chose hub %q, which is not among the linked hubs %v", resp.IoTHubHostName, linked)}
	}
	var twin *TwinState
	if len(bytes.TrimSpace(resp.InitialTwin)) > 0 && !bytes.Equal(bytes.TrimSpace(resp.InitialTwin), []byte("null")) {
		var it enroll.InitialTwin
		if err := json.Unmarshal(resp.InitialTwin, &it); err != nil {
			return "", nil, nil, &WebhookError{Msg: fmt.Sprintf("webhook initialTwin is not a twin: %v", err)}
		}
		twin = initialTwin(&it)
	}
	return resp.IoTHubHostName, twin, resp.Payload, nil
}

// OperationStatus answers a poll: the device authenticates again and must
// name its latest operation.
func (s *Service) OperationStatus(ctx context.Context, req OperationRequest) (*OperationStatus, error) {
	if res, ok := s.finished.answer(req.OperationID, req.RegistrationID, s.o.Now()); ok {
		if err := s.authenticatePoll(ctx, &req.RegisterRequest); err != nil {
			return nil, err
		}
		return &OperationStatus{OperationID: req.OperationID, Status: res.Status, RegistrationState: res}, nil
	}
	if p := s.inflight.operation(req.OperationID); p != nil && p.regKey == enroll.Key(req.RegistrationID) {
		if err := s.authenticatePoll(ctx, &req.RegisterRequest); err != nil {
			return nil, err
		}
		return s.awaitCommit(ctx, p)
	}
	reg, err := s.lookup(ctx, &req.RegisterRequest)
	if err != nil {
		return nil, err
	}
	if reg == nil || req.OperationID == "" || req.OperationID != reg.OperationID {
		return nil, &Error{Status: 404, Code: 404201, Message: "Operation not found"}
	}
	res := deviceResult(reg)
	return &OperationStatus{OperationID: reg.OperationID, Status: res.Status, RegistrationState: res}, nil
}

// awaitCommit answers the poll of an operation whose commit is under way:
// its final state once committed, assigning again when the commit takes
// longer than PollWait, and an internal error when it failed (the device
// registers again; the cause is in the server log).
func (s *Service) awaitCommit(ctx context.Context, p *pending) (*OperationStatus, error) {
	t := time.NewTimer(s.o.PollWait)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		return &OperationStatus{OperationID: p.opID, Status: StatusAssigning,
			RegistrationState: &DeviceRegistrationResult{RegistrationID: p.regID, Status: StatusAssigning}}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if p.res == nil {
		return nil, ErrInternal
	}
	res := *p.res
	return &OperationStatus{OperationID: p.opID, Status: res.Status, RegistrationState: &res}, nil
}

// RegistrationStatus is the registration status lookup.
func (s *Service) RegistrationStatus(ctx context.Context, req RegisterRequest) (*DeviceRegistrationResult, error) {
	reg, err := s.lookup(ctx, &req)
	if err != nil {
		return nil, err
	}
	if reg == nil {
		return nil, ErrNotFound
	}
	return deviceResult(reg), nil
}

// lookup authenticates a poll or lookup (not logged when it succeeds) and
// loads the record.
func (s *Service) lookup(ctx context.Context, req *RegisterRequest) (*enroll.Registration, error) {
	if err := s.authenticatePoll(ctx, req); err != nil {
		return nil, err
	}
	if err := s.inflight.settle(ctx, enroll.Key(req.RegistrationID)); err != nil {
		return nil, err
	}
	reg, _, err := s.loadRegistration(ctx, req.RegistrationID)
	if err != nil {
		s.o.Logger.Error("load registration", "registrationId", req.RegistrationID, "err", err)
		return nil, ErrInternal
	}
	return reg, nil
}

// authenticatePoll authenticates a poll or lookup: a credential that just
// attested is taken as proven; any other is attested again (a refusal is
// logged as a poll attempt). A device whose enrollment is disabled may
// still read its record.
func (s *Service) authenticatePoll(ctx context.Context, req *RegisterRequest) error {
	if s.proofs.proven(req, s.o.Now()) {
		return nil
	}
	a := s.newAttempt(req)
	a.Protocol += " (poll)"
	_, err := s.authenticate(ctx, req, a)
	var d *attest.Denial
	if err != nil && !(errors.As(err, &d) && d.Reason == attest.ReasonEnrollmentDisabled) {
		return err
	}
	return nil
}

func deviceResult(r *enroll.Registration) *DeviceRegistrationResult {
	created, updated := r.Created, r.Updated
	res := &DeviceRegistrationResult{
		RegistrationID: r.RegistrationID, CreatedDateTimeUTC: &created, LastUpdatedDateTimeUTC: &updated,
		Status: r.Status, ETag: enroll.RegistrationETag(r.ETag),
	}
	switch r.Status {
	case StatusAssigned:
		res.AssignedHub, res.DeviceID, res.Substatus, res.Payload = r.AssignedHub, r.DeviceID, r.Substatus, r.Payload
	case StatusFailed:
		res.ErrorCode, res.ErrorMessage = r.ErrorCode, r.ErrorMessage
	}
	switch r.Attestation {
	case enroll.AttestationX509:
		res.X509 = &X509Result{EnrollmentGroupID: r.EnrollmentGroupID}
	case enroll.AttestationSymmetricKey:
		res.SymmetricKey = &SymmetricKeyResult{EnrollmentGroupID: r.EnrollmentGroupID}
	}
	return res
}

// Attempts returns the attempt log of a registration ID ("" for all).
func (s *Service) Attempts(ctx context.Context, registrationID string, limit int) ([]store.Attempt, error) {
	return s.o.Attempts.Attempts(ctx, enroll.Key(registrationID), limit)
}

// newOperationID returns an ID shaped like DPS's: digit, 16 hex, a UUID.
func newOperationID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	u := hex.EncodeToString(b[8:])
	return "5." + hex.EncodeToString(b[:8]) + "." + u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:32]
}

// newID returns a time-ordered unique ID for attempt records: the Unix
// nanoseconds in 16 hex digits, then 12 random hex digits.
func newID(t time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	ns := t.UnixNano()
	if ns < 0 { // %x writes a sign; never the case for a real clock
		return fmt.Sprintf("%016x%s", ns, hex.EncodeToString(b[:]))
	}
	var raw [8]byte
	binary.BigEndian.PutUint64(raw[:], uint64(ns))
	var s [28]byte
	hex.Encode(s[:16], raw[:])
	hex.Encode(s[16:], b[:])
	return string(s[:])
}
