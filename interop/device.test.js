// Device registration driven by azure-iot-provisioning-device 1.9.1 over the
// Http (1.9.1) and Mqtt (1.8.1) transports, for every attestation the Node
// e2e suite uses: symmetric-key group (derived key, from the primary and the
// secondary group key), X.509 group anchored at a root and at an
// intermediate (device sends leaf + intermediate), X.509 individual
// (self-signed) and symmetric-key individual with initialTwin and deviceId.
// Afterwards the service view: registration states and per-group queries.
'use strict';

const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');

const m = require('./lib/muster');

const cfg = m.loadConfig();
let svc;

const symGroup = { id: 'dev-grp-sym', primary: m.randomKey(), secondary: m.randomKey() };
const rootGroupId = 'dev-grp-x509-root';
const intGroupId = 'dev-grp-x509-int';
const desired = { testProp: `interop-${Date.now()}` };

// Registration IDs per transport; X.509 ones are the certificate CNs the
// harness generated.
const ids = (kind) => {
  const t = kind.toLowerCase();
  return {
    symGroup: `sym-grp-${t}`,
    symGroupSecondary: `sym-grp-sec-${t}`,
    x509Root: `x509-rootgrp-${t}`,
    x509Int: `x509-intgrp-${t}`,
    x509Self: `x509-self-${t}`,
    symIndividual: `sym-ind-${t}`,
  };
};

const individuals = () => m.TRANSPORTS.flatMap((kind) => {
  const id = ids(kind);
  return [
    {
      registrationId: id.symIndividual,
      deviceId: `${id.symIndividual}-device`,
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: m.randomKey(), secondaryKey: m.randomKey() } },
      initialTwin: { tags: { transport: kind }, properties: { desired } },
    },
    {
      registrationId: id.x509Self,
      deviceId: `${id.x509Self}-device`,
      attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: m.readDevice(cfg, id.x509Self).cert } } } },
    },
  ];
});

const enrollments = new Map(); // registrationId -> enrollment as sent

before(async () => {
  svc = m.newServiceClient(cfg);
  const groups = [
    {
      enrollmentGroupId: symGroup.id,
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: symGroup.primary, secondaryKey: symGroup.secondary } },
    },
    {
      // Like the Node e2e "without cert chain" case: base64 of the PEM text.
      enrollmentGroupId: rootGroupId,
      attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: Buffer.from(m.readCA(cfg, 'rootgrp-root')).toString('base64') } } } },
    },
    {
      // A non-self-signed signing certificate must act as the trust anchor.
      enrollmentGroupId: intGroupId,
      attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: m.readCA(cfg, 'intgrp-int') } } } },
    },
  ];
  for (const g of groups) {
    await m.bounded(svc.client.createOrUpdateEnrollmentGroup(g), `create group ${g.enrollmentGroupId}`);
  }
  for (const e of individuals()) {
    await m.bounded(svc.client.createOrUpdateIndividualEnrollment(e), `create enrollment ${e.registrationId}`);
    enrollments.set(e.registrationId, e);
  }
});

after(async () => {
  if (!svc) {
    return;
  }
  for (const id of enrollments.keys()) {
    await m.bounded(svc.client.deleteIndividualEnrollment(id), `cleanup ${id}`).catch(() => {});
  }
  for (const id of [symGroup.id, rootGroupId, intGroupId]) {
    await m.bounded(svc.client.deleteEnrollmentGroup(id), `cleanup ${id}`).catch(() => {});
  }
  svc.close();
});

// results keeps each successful registration for the service-side checks.
const results = new Map();

function assertAssigned(result, registrationId, deviceId) {
  assert.ok(result && typeof result === 'object', `register resolved with ${JSON.stringify(result)}`);
  assert.equal(result.assignedHub, cfg.hubHostName, 'assignedHub');
  assert.equal(result.deviceId, deviceId, 'deviceId');
  assert.equal(result.registrationId, registrationId, 'registrationId');
  assert.equal(result.status, 'assigned', 'registrationState.status');
  results.set(registrationId, result);
}

async function registerX509(kind, registrationId) {
  const { cert, key } = m.readDevice(cfg, registrationId);
  return m.register(cfg, kind, m.x509Security(registrationId, cert, key), registrationId);
}

for (const kind of m.TRANSPORTS) {
  const id = ids(kind);
  describe(`device registration over ${kind}`, () => {
    it('symmetric-key group device with the key derived from the primary group key', async () => {
      const key = m.deriveGroupKey(symGroup.primary, id.symGroup);
      const result = await m.register(cfg, kind, m.symmetricSecurity(id.symGroup, key), id.symGroup);
      assertAssigned(result, id.symGroup, id.symGroup);
    });

    it('symmetric-key group device with the key derived from the secondary group key', async () => {
      const key = m.deriveGroupKey(symGroup.secondary, id.symGroupSecondary);
      const result = await m.register(cfg, kind, m.symmetricSecurity(id.symGroupSecondary, key), id.symGroupSecondary);
      assertAssigned(result, id.symGroupSecondary, id.symGroupSecondary);
    });

    it('X.509 group device, group anchored at the root, device sends leaf + intermediate', async () => {
      assertAssigned(await registerX509(kind, id.x509Root), id.x509Root, id.x509Root);
    });

    it('X.509 group device, group anchored at the intermediate, device sends leaf + intermediate', async () => {
      assertAssigned(await registerX509(kind, id.x509Int), id.x509Int, id.x509Int);
    });

    it('X.509 individual enrollment with a self-signed certificate', async () => {
      const result = await registerX509(kind, id.x509Self);
      assertAssigned(result, id.x509Self, enrollments.get(id.x509Self).deviceId);
    });

    it('symmetric-key individual enrollment with initialTwin and deviceId', async () => {
      const e = enrollments.get(id.symIndividual);
      const result = await m.register(cfg, kind, m.symmetricSecurity(id.symIndividual, e.attestation.symmetricKey.primaryKey), id.symIndividual);
      assertAssigned(result, id.symIndividual, e.deviceId);
    });
  });
}

describe('service view after the registrations', () => {
  const allIds = m.TRANSPORTS.map(ids);

  it('getDeviceRegistrationState reports each group device assigned', async () => {
    for (const id of allIds) {
      for (const regId of [id.symGroup, id.symGroupSecondary, id.x509Root, id.x509Int]) {
        const device = results.get(regId);
        assert.ok(device, `${regId} did not register; nothing to look up`);
        const { responseBody: state } = await m.bounded(svc.client.getDeviceRegistrationState(regId), `registration state ${regId}`);
        assert.equal(state.registrationId, regId);
        assert.equal(state.status, 'assigned', `${regId} status`);
        assert.equal(state.assignedHub, device.assignedHub, `${regId} assignedHub`);
        assert.equal(state.deviceId, device.deviceId, `${regId} deviceId`);
        assert.equal(typeof state.etag, 'string', `${regId} etag`);
      }
    }
  });

  const groupQueries = [
    { group: symGroup.id, members: (id) => [id.symGroup, id.symGroupSecondary] },
    { group: rootGroupId, members: (id) => [id.x509Root] },
    { group: intGroupId, members: (id) => [id.x509Int] },
  ];
  for (const gq of groupQueries) {
    it(`queryDeviceRegistrationStates(${gq.group}) lists exactly the group's devices, one per page`, async () => {
      const q = svc.client.createEnrollmentGroupDeviceRegistrationStateQuery({ query: '*' }, gq.group, 1);
      const { items, pageSizes } = await m.collectQuery(q, `registration query ${gq.group}`);
      for (const n of pageSizes) {
        assert.ok(n <= 1, `page of ${n} items exceeds x-ms-max-item-count 1 (pages: ${pageSizes})`);
      }
      const want = allIds.flatMap(gq.members).sort();
      assert.deepEqual(items.map((s) => s.registrationId).sort(), want);
      for (const s of items) {
        assert.equal(s.status, 'assigned', `${s.registrationId} status`);
      }
    });
  }

  it('getIndividualEnrollment carries the registrationState of a registered device', async () => {
    for (const id of allIds) {
      const e = enrollments.get(id.symIndividual);
      const { responseBody: got } = await m.bounded(svc.client.getIndividualEnrollment(id.symIndividual), `get ${id.symIndividual}`);
      assert.ok(got.registrationState, `${id.symIndividual}: no registrationState in the enrollment`);
      assert.equal(got.registrationState.status, 'assigned');
      assert.equal(got.registrationState.deviceId, e.deviceId);
      assert.deepEqual(got.initialTwin.properties.desired, desired);
    }
  });

  it('deleteDeviceRegistrationState by id and etag removes the record', async () => {
    const regId = allIds[0].x509Root;
    const { responseBody: state } = await m.bounded(svc.client.getDeviceRegistrationState(regId), `registration state ${regId}`);
    await m.bounded(svc.client.deleteDeviceRegistrationState(regId, state.etag), `delete registration state ${regId}`);
    await assert.rejects(m.bounded(svc.client.getDeviceRegistrationState(regId), `get deleted ${regId}`), (err) => {
      assert.equal(err.response && err.response.statusCode, 404, `got ${m.describeError(err)}, want HTTP 404`);
      return true;
    });
  });
});
