package provision_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/provision"
	"github.com/muster-iot/muster/internal/registry"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store"
	"github.com/muster-iot/muster/internal/store/memstore"
)

const scope = "0ne0000ABCD"

type fixture struct {
	st    *memstore.Store
	enr   *enroll.Service
	svc   *provision.Service
	hub1  *registry.Hub
	hub2  *registry.Hub
	alloc *fakeAllocator
}

type fakeAllocator struct {
	resp *provision.AllocationResponse
	err  error
	got  *provision.AllocationRequest
}

func (f *fakeAllocator) Allocate(ctx context.Context, url, v string, req *provision.AllocationRequest) (*provision.AllocationResponse, error) {
	f.got = req
	return f.resp, f.err
}

func newFixture(t *testing.T, w1, w2 int) *fixture {
	t.Helper()
	st := memstore.New(10000)
	f := &fixture{st: st, hub1: registry.New("hub1.example", st, nil), hub2: registry.New("hub2.example", st, nil), alloc: &fakeAllocator{}}
	f.enr = enroll.NewService(st, enroll.ServiceOptions{LinkedHubs: func() []string { return []string{"hub1.example", "hub2.example"} }})
	svc, err := provision.New(provision.Options{IDScope: scope, Docs: st, Attempts: st, Enrollments: f.enr, Allocator: f.alloc,
		Hubs: []provision.LinkedHub{{Hub: f.hub1, Weight: w1, ApplyAllocationPolicy: true}, {Hub: f.hub2, Weight: w2, ApplyAllocationPolicy: true}}})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

func tokenFor(t *testing.T, regID, key string) string {
	t.Helper()
	raw, err := sas.DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return sas.Sign(scope+"/registrations/"+regID, raw, "registration", time.Now().Add(time.Hour))
}

// register runs the PUT and the poll, as a device does.
func (f *fixture) register(t *testing.T, regID, key string, payload string) *provision.DeviceRegistrationResult {
	t.Helper()
	ctx := context.Background()
	req := provision.RegisterRequest{IDScope: scope, RegistrationID: regID, SAS: tokenFor(t, regID, key), Protocol: "https"}
	if payload != "" {
		req.Payload = json.RawMessage(payload)
	}
	op, err := f.svc.Register(ctx, req)
	if err != nil {
		t.Fatalf("register %s: %v", regID, err)
	}
	if op.Status != provision.StatusAssigning || op.HTTPStatus() != 202 || op.OperationID == "" {
		t.Fatalf("register answer %+v", op)
	}
	st, err := f.svc.OperationStatus(ctx, provision.OperationRequest{RegisterRequest: req, OperationID: op.OperationID})
	if err != nil {
		t.Fatalf("poll %s: %v", regID, err)
	}
	if st.HTTPStatus() != 200 {
		t.Fatalf("poll not final: %+v", st)
	}
	return st.RegistrationState
}

func (f *fixture) individual(t *testing.T, id string, mod func(*enroll.Common)) string {
	t.Helper()
	e := &enroll.IndividualEnrollment{RegistrationID: id, Common: enroll.Common{Attestation: &enroll.AttestationMechanism{Type: "symmetricKey"}}}
	if mod != nil {
		mod(&e.Common)
	}
	out, err := f.enr.PutEnrollment(context.Background(), e, "")
	if err != nil {
		t.Fatal(err)
	}
	return out.Attestation.SymmetricKey.PrimaryKey
}

func (f *fixture) update(t *testing.T, id string, mod func(*enroll.Common)) {
	t.Helper()
	e, err := f.enr.GetEnrollment(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	mod(&e.Common)
	if _, err := f.enr.PutEnrollment(context.Background(), e, e.ETag); err != nil {
		t.Fatal(err)
	}
}

func TestHashedAllocationHonoursWeights(t *testing.T) {
	f := newFixture(t, 1, 3)
	ctx := context.Background()
	g, err := f.enr.PutGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "fleet", Common: enroll.Common{Attestation: &enroll.AttestationMechanism{Type: "symmetricKey"}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	const n = 400
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("dev-%03d", i)
		key, _ := sas.DeriveKey(g.Attestation.SymmetricKey.PrimaryKey, id)
		res := f.register(t, id, key, "")
		counts[res.AssignedHub]++
		if i < 3 { // deterministic: the same device lands on the same hub again
			if again := f.register(t, id, key, ""); again.AssignedHub != res.AssignedHub {
				t.Fatalf("%s moved from %s to %s", id, res.AssignedHub, again.AssignedHub)
			}
		}
	}
	share := float64(counts["hub2.example"]) / n
	if share < 0.65 || share > 0.85 {
		t.Fatalf("hub2 (weight 3 of 4) got %.2f of devices: %v", share, counts)
	}
	n2, err := f.st.Count(ctx, "registration", "fleet")
	if err != nil || n2 != n {
		t.Fatalf("group has %d registration records, want %d (%v)", n2, n, err)
	}
}

func TestInitialTwinAndEdgeCapability(t *testing.T) {
	f := newFixture(t, 1, 1)
	key := f.individual(t, "edge-1", func(c *enroll.Common) {
		c.AllocationPolicy, c.IoTHubs = "static", []string{"hub2.example"}
		c.Capabilities = &enroll.Capabilities{IoTEdge: true}
		c.InitialTwin = &enroll.InitialTwin{Tags: json.RawMessage(`{"site":"plant-7"}`), Properties: &enroll.InitialTwinProperties{Desired: json.RawMessage(`{"interval":30}`)}}
	})
	res := f.register(t, "edge-1", key, "")
	if res.AssignedHub != "hub2.example" || res.DeviceID != "edge-1" || res.Substatus != provision.SubstatusInitialAssignment {
		t.Fatalf("result %+v", res)
	}
	ctx := context.Background()
	d, err := f.hub2.GetDevice(ctx, "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Capabilities.IoTEdge || !strings.HasPrefix(d.DeviceScope, "ms-azure-iot-edge://edge-1-") || d.Authentication.Type != "sas" || d.Authentication.SymmetricKey.PrimaryKey != key {
		t.Fatalf("device %+v", d)
	}
	tw, err := f.hub2.GetTwin(ctx, "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	if string(tw.Tags) != `{"site":"plant-7"}` || !strings.Contains(string(tw.Properties.Desired), `"interval":30`) {
		t.Fatalf("twin %s %s", tw.Tags, tw.Properties.Desired)
	}
	if _, err := f.hub1.GetDevice(ctx, "edge-1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("device also on hub1: %v", err)
	}
}

func TestReprovisionPolicies(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T, policy enroll.ReprovisionPolicy) (*fixture, string) {
		f := newFixture(t, 1, 1)
		key := f.individual(t, "mover", func(c *enroll.Common) {
			c.AllocationPolicy, c.IoTHubs, c.ReprovisionPolicy = "static", []string{"hub1.example"}, &policy
			c.InitialTwin = &enroll.InitialTwin{Tags: json.RawMessage(`{"v":"initial"}`)}
		})
		if res := f.register(t, "mover", key, ""); res.AssignedHub != "hub1.example" {
			t.Fatalf("first assignment %+v", res)
		}
		// the twin changes in the hub after provisioning
		if err := f.hub1.ProvisionDevice(ctx, provision.DeviceSpec{DeviceID: "mover", Auth: provision.DeviceAuth{Type: "sas", PrimaryKey: key},
			Twin: &provision.TwinState{Tags: json.RawMessage(`{"v":"changed"}`)}, ReplaceTwin: true}); err != nil {
			t.Fatal(err)
		}
		f.update(t, "mover", func(c *enroll.Common) { c.IoTHubs = []string{"hub2.example"} })
		return f, key
	}
	t.Run("never reprovision keeps the hub", func(t *testing.T) {
		f, key := setup(t, enroll.ReprovisionPolicy{UpdateHubAssignment: false, MigrateDeviceData: false})
		res := f.register(t, "mover", key, "")
		if res.AssignedHub != "hub1.example" || res.Substatus != provision.SubstatusInitialAssignment {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("migrate moves the twin", func(t *testing.T) {
		f, key := setup(t, enroll.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true})
		res := f.register(t, "mover", key, "")
		if res.AssignedHub != "hub2.example" || res.Substatus != provision.SubstatusDeviceDataMigrated {
			t.Fatalf("result %+v", res)
		}
		tw, err := f.hub2.GetTwin(ctx, "mover")
		if err != nil || string(tw.Tags) != `{"v":"changed"}` {
			t.Fatalf("migrated twin %+v %v", tw, err)
		}
		if _, err := f.hub1.GetDevice(ctx, "mover"); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("old hub keeps the identity: %v", err)
		}
		// and back to the first hub
		f.update(t, "mover", func(c *enroll.Common) { c.IoTHubs = []string{"hub1.example"} })
		if res := f.register(t, "mover", key, ""); res.AssignedHub != "hub1.example" || res.Substatus != provision.SubstatusReprovisionedToInitialAssignment {
			t.Fatalf("return %+v", res)
		}
	})
	t.Run("reset applies the initial twin", func(t *testing.T) {
		f, key := setup(t, enroll.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: false})
		res := f.register(t, "mover", key, "")
		if res.AssignedHub != "hub2.example" || res.Substatus != provision.SubstatusDeviceDataReset {
			t.Fatalf("result %+v", res)
		}
		tw, err := f.hub2.GetTwin(ctx, "mover")
		if err != nil || string(tw.Tags) != `{"v":"initial"}` {
			t.Fatalf("reset twin %+v %v", tw, err)
		}
	})
}

func TestCustomAllocation(t *testing.T) {
	f := newFixture(t, 1, 1)
	key := f.individual(t, "custom-1", func(c *enroll.Common) {
		c.AllocationPolicy = "custom"
		c.CustomAllocationDefinition = &enroll.CustomAllocationDefinition{WebhookURL: "https://hooks.example/alloc?code=k", APIVersion: "2021-10-01"}
	})
	f.alloc.resp = &provision.AllocationResponse{IoTHubHostName: "hub2.example", InitialTwin: json.RawMessage(`{"tags":{"from":"webhook"}}`), Payload: json.RawMessage(`{"config":"x"}`)}
	res := f.register(t, "custom-1", key, `{"model":"m1"}`)
	if res.AssignedHub != "hub2.example" || string(res.Payload) != `{"config":"x"}` {
		t.Fatalf("result %+v", res)
	}
	got := f.alloc.got
	if got.DeviceRuntimeContext.RegistrationID != "custom-1" || string(got.DeviceRuntimeContext.Payload) != `{"model":"m1"}` || len(got.LinkedHubs) != 2 || got.DeviceRuntimeContext.SymmetricKey == nil {
		t.Fatalf("webhook request %+v", got)
	}
	if strings.Contains(string(got.IndividualEnrollment), "primaryKey") {
		t.Fatalf("webhook saw the enrollment's keys: %s", got.IndividualEnrollment)
	}
	tw, _ := f.hub2.GetTwin(context.Background(), "custom-1")
	if string(tw.Tags) != `{"from":"webhook"}` {
		t.Fatalf("twin tags %s", tw.Tags)
	}
	// the webhook picks a hub that is not linked: failed, not assigned
	f.alloc.resp = &provision.AllocationResponse{IoTHubHostName: "rogue.example"}
	res = f.register(t, "custom-1", key, "")
	if res.Status != provision.StatusFailed || res.ErrorCode != 400209 {
		t.Fatalf("rogue hub: %+v", res)
	}
	at, _ := f.svc.Attempts(context.Background(), "custom-1", 1)
	if len(at) != 1 || at[0].Reason != "webhook_failed" || !strings.Contains(at[0].Hint, "rogue.example") {
		t.Fatalf("attempt %+v", at)
	}
}

func TestPollAuthenticatesAndChecksOperation(t *testing.T) {
	f := newFixture(t, 1, 1)
	ctx := context.Background()
	key := f.individual(t, "poller", nil)
	other := f.individual(t, "other", nil)
	req := provision.RegisterRequest{IDScope: scope, RegistrationID: "poller", SAS: tokenFor(t, "poller", key), Protocol: "mqtt"}
	op, err := f.svc.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var pe *provision.Error
	if _, err := f.svc.OperationStatus(ctx, provision.OperationRequest{RegisterRequest: req, OperationID: "5.nope"}); !errors.As(err, &pe) || pe.Status != 404 {
		t.Fatalf("unknown operation: %v", err)
	}
	bad := req
	bad.SAS = tokenFor(t, "poller", other)
	if _, err := f.svc.OperationStatus(ctx, provision.OperationRequest{RegisterRequest: bad, OperationID: op.OperationID}); !errors.As(err, &pe) || pe.Code != 401002 {
		t.Fatalf("poll with the wrong key: %v", err)
	}
	// the registration status lookup
	r, err := f.svc.RegistrationStatus(ctx, req)
	if err != nil || r.Status != provision.StatusAssigned || r.ETag == "" || r.CreatedDateTimeUTC == nil {
		t.Fatalf("lookup %+v %v", r, err)
	}
	// body registration ID must match the path
	mismatch := req
	mismatch.BodyRegistrationID = "someone-else"
	if _, err := f.svc.Register(ctx, mismatch); !errors.As(err, &pe) || pe.Status != 400 {
		t.Fatalf("mismatch: %v", err)
	}
	at, _ := f.svc.Attempts(ctx, "POLLER", 10)
	if len(at) < 2 || at[len(at)-1].Outcome != "assigned" {
		t.Fatalf("attempts %+v", at)
	}
}

// A poll with the credential the device just registered with is answered
// without attesting again; any other credential is attested in full.
func TestPollWithTheRegisteringCredentialSkipsAttestation(t *testing.T) {
	f := newFixture(t, 1, 1)
	ctx := context.Background()
	key := f.individual(t, "quick", nil)
	req := provision.RegisterRequest{IDScope: scope, RegistrationID: "quick", SAS: tokenFor(t, "quick", key), Protocol: "https"}
	op, err := f.svc.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.enr.DeleteEnrollment(ctx, "quick", ""); err != nil {
		t.Fatal(err)
	}
	st, err := f.svc.OperationStatus(ctx, provision.OperationRequest{RegisterRequest: req, OperationID: op.OperationID})
	if err != nil || st.Status != provision.StatusAssigned {
		t.Fatalf("poll with the registering token: %+v %v", st, err)
	}
	fresh := req
	raw, _ := sas.DecodeKey(key)
	fresh.SAS = sas.Sign(scope+"/registrations/quick", raw, "registration", time.Now().Add(2*time.Hour))
	var pe *provision.Error
	if _, err := f.svc.OperationStatus(ctx, provision.OperationRequest{RegisterRequest: fresh, OperationID: op.OperationID}); !errors.As(err, &pe) || pe.Code != 401002 {
		t.Fatalf("poll with another token after the enrollment was deleted: %v", err)
	}
}

// A finished operation's poll is answered from memory with its final body,
// even after the record changed, but only to its own (authenticated)
// registration; the store answers when memory has nothing.
func TestFinishedOperationAnsweredFromMemory(t *testing.T) {
	f := newFixture(t, 1, 1)
	ctx := context.Background()
	key := f.individual(t, "remembered", nil)
	other := f.individual(t, "stranger", nil)
	req := provision.RegisterRequest{IDScope: scope, RegistrationID: "remembered", SAS: tokenFor(t, "remembered", key), Protocol: "https"}
	op, err := f.svc.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.Delete(ctx, store.KindRegistration, "remembered", ""); err != nil {
		t.Fatal(err)
	}
	st, err := f.svc.OperationStatus(ctx, provision.OperationRequest{RegisterRequest: req, OperationID: op.OperationID})
	if err != nil || st.Status != provision.StatusAssigned || st.RegistrationState.DeviceID != "remembered" || st.OperationID != op.OperationID {
		t.Fatalf("poll answered from memory: %+v %v", st, err)
	}
	var pe *provision.Error
	// Another device naming this operation gets 404, not its body.
	sreq := provision.RegisterRequest{IDScope: scope, RegistrationID: "stranger", SAS: tokenFor(t, "stranger", other), Protocol: "https"}
	if _, err := f.svc.OperationStatus(ctx, provision.OperationRequest{RegisterRequest: sreq, OperationID: op.OperationID}); !errors.As(err, &pe) || pe.Status != 404 {
		t.Fatalf("another device's poll of this operation: %v", err)
	}
	// A wrong credential is refused before anything is answered.
	bad := req
	bad.SAS = tokenFor(t, "remembered", other)
	if _, err := f.svc.OperationStatus(ctx, provision.OperationRequest{RegisterRequest: bad, OperationID: op.OperationID}); !errors.As(err, &pe) || pe.Code != 401002 {
		t.Fatalf("poll with the wrong key: %v", err)
	}
}
