// Registrations that must fail, over Http and Mqtt, each bounded so nothing
// hangs: a wrong derived key (the SDK reports UnauthorizedError), an X.509
// device whose chain ends at a CA no enrollment references, and a device of
// a disabled enrollment group.
'use strict';

const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');

const m = require('./lib/muster');

const cfg = m.loadConfig();
let svc;

const group = { id: 'neg-grp-sym', primary: m.randomKey(), secondary: m.randomKey() };
const disabledGroup = { id: 'neg-grp-disabled', primary: m.randomKey(), secondary: m.randomKey() };

before(async () => {
  svc = m.newServiceClient(cfg);
  for (const [g, status] of [[group, 'enabled'], [disabledGroup, 'disabled']]) {
    await m.bounded(svc.client.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: g.id,
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: g.primary, secondaryKey: g.secondary } },
      provisioningStatus: status,
    }), `create group ${g.id}`);
  }
});

after(async () => {
  if (!svc) {
    return;
  }
  for (const g of [group, disabledGroup]) {
    await m.bounded(svc.client.deleteEnrollmentGroup(g.id), `cleanup ${g.id}`).catch(() => {});
  }
  svc.close();
});

// assertRejected checks that a registration failed with an SDK error (not our
// own timeout, not a crash inside the SDK) and, when name is given, that the
// SDK classified it as that error.
async function assertRejected(promise, name, what, t) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof Error, `${what}: rejected with non-error ${err}`);
    assert.notEqual(err.name, 'TimeoutError', `${what}: ${err.message}`);
    assert.ok(!(err instanceof TypeError), `${what}: SDK crashed on the server's answer: ${err.stack}`);
    if (name) {
      assert.equal(err.name, name, `${what}: got ${m.describeError(err)}`);
    }
    t.diagnostic(`${what}: ${m.describeError(err)}`);
    return true;
  });
}

// The HTTP transport maps 401 to UnauthorizedError. Over MQTT the server may
// refuse CONNECT or answer 401 on the response topic (spec §5.1); both are
// errors, only the latter is an UnauthorizedError, so only HTTP pins the name.
const unauthorizedName = { Http: 'UnauthorizedError', Mqtt: null };

for (const kind of m.TRANSPORTS) {
  const t = kind.toLowerCase();
  describe(`rejected registrations over ${kind}`, () => {
    it('symmetric-key group device with a wrong derived key is unauthorized', async (tc) => {
      const regId = `neg-wrongkey-${t}`;
      const wrongKey = m.deriveGroupKey(m.randomKey(), regId);
      await assertRejected(m.register(cfg, kind, m.symmetricSecurity(regId, wrongKey), regId), unauthorizedName[kind], `${regId} over ${kind}`, tc);
    });

    it('X.509 device whose chain ends at an unenrolled CA is unauthorized', async (tc) => {
      const regId = `x509-unknown-${t}`;
      const { cert, key } = m.readDevice(cfg, regId);
      await assertRejected(m.register(cfg, kind, m.x509Security(regId, cert, key), regId), unauthorizedName[kind], `${regId} over ${kind}`, tc);
    });

    it('device of a disabled enrollment group does not get assigned', async (tc) => {
      const regId = `neg-disabled-${t}`;
      const key = m.deriveGroupKey(disabledGroup.primary, regId);
      await assertRejected(m.register(cfg, kind, m.symmetricSecurity(regId, key), regId), null, `${regId} over ${kind}`, tc);
    });
  });
}
