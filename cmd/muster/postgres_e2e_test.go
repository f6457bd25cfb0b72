package main

import (
	"testing"

	"github.com/muster-iot/muster/internal/client/dpsclient"
	"github.com/muster-iot/muster/internal/config"
	"github.com/muster-iot/muster/internal/enroll"
	"github.com/muster-iot/muster/internal/sas"
	"github.com/muster-iot/muster/internal/store/postgres/pgtest"
)

// TestPostgresRegistrationAndRestart runs the real server on PostgreSQL
// (a fresh schema of TEST_PG_DSN; skipped without it): a symmetric-key
// group device registers over HTTPS and MQTT, then the server restarts on
// the same database with a new, empty data directory and still knows its
// identity, the group and the registration.
func TestPostgresRegistrationAndRestart(t *testing.T) {
	dsn := pgtest.Schema(t)
	onPostgres := func(c *config.Server) { c.Store = dsn }
	ts := startServer(t, t.TempDir(), onPostgres)
	ctx := ctxT(t)

	group, err := ts.svc.PutGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "pg-group", Common: enroll.Common{
		Attestation: &enroll.AttestationMechanism{Type: enroll.AttestationSymmetricKey}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	const regID = "pg-device-001"
	key, err := sas.DeriveKey(group.Attestation.SymmetricKey.PrimaryKey, regID)
	if err != nil {
		t.Fatal(err)
	}
	device := dpsclient.Device{RegistrationID: regID, Credential: dpsclient.Credential{SymmetricKey: key}}
	first := mustRegister(t, ts.client(t, "https"), device)
	if first.DeviceID != regID || first.SymmetricKey == nil || first.SymmetricKey.EnrollmentGroupID != "pg-group" {
		t.Fatalf("registration result = %+v", first)
	}
	if at := ts.attemptReason(t, regID); at.Outcome != "assigned" {
		t.Fatalf("newest attempt = %+v; want assigned", at)
	}
	ep1 := ts.ep
	ts.stop()

	// The identity, the server CA and every record live in the database: a
	// new data directory is enough to run the same service.
	ts2 := startServer(t, t.TempDir(), onPostgres)
	if ts2.ep.IDScope != ep1.IDScope || ts2.ep.DPSServiceConnectionString != ep1.DPSServiceConnectionString || ts2.ep.HubConnectionString != ep1.HubConnectionString {
		t.Fatalf("identity changed across restart: %+v vs %+v", ts2.ep, ep1)
	}
	regs, err := ts2.svc.QueryGroupRegistrations(ctx, "pg-group", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || regs[0].RegistrationID != regID || regs[0].Status != "assigned" || regs[0].DeviceID != first.DeviceID {
		t.Fatalf("group registration records after restart = %+v", regs)
	}
	again := mustRegister(t, ts2.client(t, "mqtt"), device)
	if again.DeviceID != first.DeviceID || again.AssignedHub != first.AssignedHub {
		t.Fatalf("registration after restart = %+v; first was %+v", again, first)
	}
}
