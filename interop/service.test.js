// Service (enrollment management) API driven by azure-iot-provisioning-service
// 1.11.2: create / get / update / stale-etag update / attestation mechanism /
// delete for five enrollment shapes (the Node e2e _service_create_delete.js
// matrix), paged queries, and bulk create / conflict / delete.
'use strict';

const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');

const m = require('./lib/muster');

const cfg = m.loadConfig();
let svc;

before(() => {
  svc = m.newServiceClient(cfg);
});

after(() => {
  if (svc) {
    svc.close();
  }
});

// assertStatus asserts that promise rejects with the SDK error for an HTTP
// status (the service client keeps the response on err.response).
async function assertStatus(promise, status, name, what) {
  await assert.rejects(m.bounded(promise, what), (err) => {
    assert.ok(err instanceof Error, `${what}: rejected with ${err}`);
    assert.notEqual(err.name, 'TimeoutError', `${what}: ${err.message}`);
    assert.equal(err.response && err.response.statusCode, status, `${what}: got ${m.describeError(err)}, want HTTP ${status}`);
    if (name) {
      assert.equal(err.name, name, `${what}: got ${m.describeError(err)}`);
    }
    return true;
  }, what);
}

function assertTimestamp(value, field) {
  assert.equal(typeof value, 'string', `${field} is ${JSON.stringify(value)}, want an ISO 8601 string`);
  assert.ok(!Number.isNaN(Date.parse(value)), `${field} ${value} does not parse as a date`);
}

function assertBase64Key(value, field) {
  assert.equal(typeof value, 'string', `${field} is ${JSON.stringify(value)}, want a base64 key`);
  assert.ok(value.length > 0 && Buffer.from(value, 'base64').toString('base64') === value, `${field} ${value} is not canonical base64`);
}

// Each spec describes one enrollment shape: the object to PUT and the
// checks on what comes back. kind selects the SDK methods.
const ops = {
  enrollment: {
    id: (o) => o.registrationId,
    create: (c, o) => c.createOrUpdateIndividualEnrollment(o),
    get: (c, id) => c.getIndividualEnrollment(id),
    del: (c, id, etag) => c.deleteIndividualEnrollment(id, etag),
    attestation: (c, id) => c.getIndividualEnrollmentAttestationMechanism(id),
  },
  group: {
    id: (o) => o.enrollmentGroupId,
    create: (c, o) => c.createOrUpdateEnrollmentGroup(o),
    get: (c, id) => c.getEnrollmentGroup(id),
    del: (c, id, etag) => c.deleteEnrollmentGroup(id, etag),
    attestation: (c, id) => c.getEnrollmentGroupAttestationMechanism(id),
  },
};

const symPrimary = m.randomKey();
const symSecondary = m.randomKey();
const endorsementKey = m.tpmEndorsementKey();
const desired = { testProp: `interop-${Date.now()}` };

const specs = [
  {
    desc: 'IndividualEnrollment with symmetric keys',
    kind: 'enrollment',
    make: () => ({
      registrationId: 'svc-ind-sym',
      deviceId: 'svc-ind-sym-device',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: symPrimary, secondaryKey: symSecondary } },
      provisioningStatus: 'enabled',
      reprovisionPolicy: { updateHubAssignment: false, migrateDeviceData: false },
      allocationPolicy: 'hashed',
      initialTwin: { tags: { site: 'lab' }, properties: { desired } },
    }),
    checkCreated(got) {
      assert.equal(got.deviceId, 'svc-ind-sym-device');
      assert.deepEqual(got.reprovisionPolicy, { updateHubAssignment: false, migrateDeviceData: false });
      assert.deepEqual(got.initialTwin.properties.desired.testProp, desired.testProp);
      assert.deepEqual(got.initialTwin.tags, { site: 'lab' });
    },
    checkAttestation(att) {
      assert.equal(att.symmetricKey.primaryKey, symPrimary, 'attestationmechanism primaryKey differs from the key sent');
      assert.equal(att.symmetricKey.secondaryKey, symSecondary, 'attestationmechanism secondaryKey differs from the key sent');
    },
  },
  {
    desc: 'IndividualEnrollment with TPM',
    kind: 'enrollment',
    make: () => ({
      registrationId: 'svc-ind-tpm',
      attestation: { type: 'tpm', tpm: { endorsementKey } },
      capabilities: { iotEdge: true },
      reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: true },
      allocationPolicy: 'custom',
      customAllocationDefinition: { webhookUrl: 'https://web.hook', apiVersion: '2019-03-31' },
    }),
    checkCreated(got) {
      assert.equal(got.capabilities.iotEdge, true, 'capabilities.iotEdge not echoed');
      assert.deepEqual(got.customAllocationDefinition, { webhookUrl: 'https://web.hook', apiVersion: '2019-03-31' });
    },
    checkAttestation(att) {
      assert.equal(att.tpm.endorsementKey, endorsementKey, 'attestationmechanism endorsementKey differs from the key sent');
    },
  },
  {
    desc: 'EnrollmentGroup with x509 signing certificate',
    kind: 'group',
    make: () => ({
      enrollmentGroupId: 'svc-grp-x509',
      attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: m.readCA(cfg, 'svc-ca') } } } },
      allocationPolicy: 'geoLatency',
    }),
    checkCreated(got) {
      const want = m.thumbprints(m.readCA(cfg, 'svc-ca'));
      const info = got.attestation.x509.signingCertificates.primary.info;
      assert.ok(info, 'signingCertificates.primary.info missing from the PUT response');
      assert.equal(info.sha1Thumbprint.toUpperCase(), want.sha1, 'info.sha1Thumbprint');
      assert.equal(info.sha256Thumbprint.toUpperCase(), want.sha256, 'info.sha256Thumbprint');
      assert.match(info.subjectName, /CN=svc-ca/, 'info.subjectName');
      assertTimestamp(info.notBeforeUtc, 'info.notBeforeUtc');
      assertTimestamp(info.notAfterUtc, 'info.notAfterUtc');
    },
    checkAttestation(att) {
      assert.ok(att.x509.signingCertificates.primary, 'attestationmechanism lacks signingCertificates.primary');
    },
  },
  {
    desc: 'EnrollmentGroup with generated symmetric keys (static allocation)',
    kind: 'group',
    make: () => ({
      enrollmentGroupId: 'svc-grp-sym',
      attestation: { type: 'symmetricKey' },
      allocationPolicy: 'static',
      iotHubs: [cfg.hubHostName],
    }),
    checkCreated(got) {
      assert.deepEqual(got.iotHubs, [cfg.hubHostName]);
    },
    checkAttestation(att) {
      assertBase64Key(att.symmetricKey.primaryKey, 'generated symmetricKey.primaryKey');
      assertBase64Key(att.symmetricKey.secondaryKey, 'generated symmetricKey.secondaryKey');
      assert.notEqual(att.symmetricKey.primaryKey, att.symmetricKey.secondaryKey, 'generated primary and secondary keys are equal');
    },
  },
  {
    desc: 'EnrollmentGroup with symmetric keys and iotEdge',
    kind: 'group',
    make: () => ({
      enrollmentGroupId: 'svc-grp-edge',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: m.randomKey(), secondaryKey: m.randomKey() } },
      capabilities: { iotEdge: true },
    }),
    checkCreated(got) {
      assert.equal(got.capabilities.iotEdge, true, 'capabilities.iotEdge not echoed');
    },
    checkAttestation() {},
  },
];

for (const spec of specs) {
  const op = ops[spec.kind];
  describe(`service CRUD: ${spec.desc}`, () => {
    const sent = spec.make();
    const id = op.id(sent);
    let created; // the #Create response
    let current; // the latest stored version (#Update response)

    after(async () => {
      // Best-effort cleanup when a step failed before #Delete ran.
      await m.bounded(op.del(svc.client, id), `cleanup delete ${id}`).catch(() => {});
    });

    it('#Create returns the stored object with server fields', async () => {
      const res = await m.bounded(op.create(svc.client, sent), `create ${id}`);
      created = res.responseBody;
      assert.equal(op.id(created), id);
      assert.equal(typeof created.etag, 'string', 'etag missing');
      assert.ok(created.etag.length > 0, 'etag empty');
      assert.equal(created.provisioningStatus, 'enabled');
      assert.equal(created.attestation.type, sent.attestation.type);
      if (sent.allocationPolicy) {
        assert.equal(created.allocationPolicy, sent.allocationPolicy);
      }
      assertTimestamp(created.createdDateTimeUtc, 'createdDateTimeUtc');
      assertTimestamp(created.lastUpdatedDateTimeUtc, 'lastUpdatedDateTimeUtc');
      spec.checkCreated(created);
    });

    it('#Get returns the same object and etag', async () => {
      const res = await m.bounded(op.get(svc.client, id), `get ${id}`);
      assert.equal(op.id(res.responseBody), id);
      assert.equal(res.responseBody.etag, created.etag);
      assert.equal(res.responseBody.attestation.type, sent.attestation.type);
    });

    it('#Update with the returned etag sets provisioningStatus disabled', async () => {
      const res = await m.bounded(op.create(svc.client, { ...created, provisioningStatus: 'disabled' }), `update ${id}`);
      current = res.responseBody;
      assert.equal(current.provisioningStatus, 'disabled');
      assert.notEqual(current.etag, created.etag, 'etag unchanged by an update');
    });

    it('#Update with a stale etag fails with InvalidEtagError (412)', async () => {
      await assertStatus(op.create(svc.client, { ...created, provisioningStatus: 'enabled' }), 412, 'InvalidEtagError', `stale update ${id}`);
    });

    it('#getAttestationMechanism returns the attestation with secrets', async () => {
      const res = await m.bounded(op.attestation(svc.client, id), `attestationmechanism ${id}`);
      assert.equal(res.responseBody.type, sent.attestation.type);
      spec.checkAttestation(res.responseBody);
    });

    it('#Delete by id and etag, then get is 404', async () => {
      await m.bounded(op.del(svc.client, id, (current || created).etag), `delete ${id}`);
      await assertStatus(op.get(svc.client, id), 404, null, `get deleted ${id}`);
    });
  });
}

describe('service bulk operations and paged queries', () => {
  const bulkIds = ['svc-bulk-0', 'svc-bulk-1', 'svc-bulk-2', 'svc-bulk-3', 'svc-bulk-4'];
  const bulkEnrollments = bulkIds.map((registrationId) => ({
    registrationId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: m.randomKey(), secondaryKey: m.randomKey() } },
  }));
  const groupIds = ['svc-q-grp-0', 'svc-q-grp-1', 'svc-q-grp-2'];

  after(async () => {
    for (const id of bulkIds) {
      await m.bounded(svc.client.deleteIndividualEnrollment(id), `cleanup ${id}`).catch(() => {});
    }
    for (const id of groupIds) {
      await m.bounded(svc.client.deleteEnrollmentGroup(id), `cleanup ${id}`).catch(() => {});
    }
  });

  it('runBulkEnrollmentOperation create succeeds for five enrollments', async () => {
    const { responseBody: result } = await m.callback((cb) => svc.client.runBulkEnrollmentOperation({ mode: 'create', enrollments: bulkEnrollments }, cb), 'bulk create');
    assert.equal(result.isSuccessful, true, `bulk create errors: ${JSON.stringify(result.errors)}`);
    for (const id of bulkIds) {
      const got = await m.bounded(svc.client.getIndividualEnrollment(id), `get ${id}`);
      assert.equal(got.responseBody.registrationId, id);
    }
  });

  it('runBulkEnrollmentOperation create of existing ids reports one error per item (HTTP 200)', async () => {
    const { responseBody: result } = await m.callback((cb) => svc.client.runBulkEnrollmentOperation({ mode: 'create', enrollments: bulkEnrollments }, cb), 'bulk re-create');
    assert.equal(result.isSuccessful, false);
    assert.deepEqual(result.errors.map((e) => e.registrationId).sort(), [...bulkIds].sort());
    for (const e of result.errors) {
      assert.equal(typeof e.errorCode, 'number', `errorCode of ${e.registrationId}`);
      assert.equal(Math.floor(e.errorCode / 1000), 409, `errorCode ${e.errorCode} of ${e.registrationId}: want 409xxx`);
    }
  });

  it('createIndividualEnrollmentQuery pages with pageSize 2 and ends', async () => {
    const q = svc.client.createIndividualEnrollmentQuery({ query: '*' }, 2);
    const { items, pageSizes } = await m.collectQuery(q, 'individual enrollment query');
    for (const n of pageSizes) {
      assert.ok(n <= 2, `page of ${n} items exceeds x-ms-max-item-count 2 (pages: ${pageSizes})`);
    }
    const ids = items.map((e) => e.registrationId);
    assert.equal(new Set(ids).size, ids.length, `duplicate items across pages: ${ids}`);
    for (const id of bulkIds) {
      assert.ok(ids.includes(id), `${id} missing from the query result ${ids}`);
    }
    assert.ok(pageSizes.length >= 3, `${ids.length} items in ${pageSizes.length} pages of at most 2`);
  });

  it('createEnrollmentGroupQuery pages with pageSize 2 and ends', async () => {
    for (const enrollmentGroupId of groupIds) {
      await m.bounded(svc.client.createOrUpdateEnrollmentGroup({ enrollmentGroupId, attestation: { type: 'symmetricKey' } }), `create ${enrollmentGroupId}`);
    }
    const q = svc.client.createEnrollmentGroupQuery({ query: '*' }, 2);
    const { items, pageSizes } = await m.collectQuery(q, 'enrollment group query');
    for (const n of pageSizes) {
      assert.ok(n <= 2, `page of ${n} items exceeds x-ms-max-item-count 2 (pages: ${pageSizes})`);
    }
    const ids = items.map((g) => g.enrollmentGroupId);
    assert.equal(new Set(ids).size, ids.length, `duplicate items across pages: ${ids}`);
    for (const id of groupIds) {
      assert.ok(ids.includes(id), `${id} missing from the query result ${ids}`);
    }
    assert.ok(pageSizes.length >= 2, `${ids.length} items in ${pageSizes.length} pages of at most 2`);
  });

  it('runBulkEnrollmentOperation delete removes all five', async () => {
    const { responseBody: result } = await m.callback((cb) => svc.client.runBulkEnrollmentOperation({ mode: 'delete', enrollments: bulkEnrollments }, cb), 'bulk delete');
    assert.equal(result.isSuccessful, true, `bulk delete errors: ${JSON.stringify(result.errors)}`);
    for (const id of bulkIds) {
      await assertStatus(svc.client.getIndividualEnrollment(id), 404, null, `get bulk-deleted ${id}`);
    }
  });
});
