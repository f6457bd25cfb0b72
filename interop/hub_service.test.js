// The hub service API driven by azure-iothub 1.16.6: Registry device CRUD
// for every authentication type (sas with generated and given keys,
// selfSigned, certificateAuthority), a selfSigned device connecting with
// azure-iot-device-mqtt and refused once disabled, twins (getTwin,
// updateTwin with etag, stale etag, Twin.update), paged queries with
// nextAsTwin and aggregates, module identities (CRUD, a module client,
// module twins, the edge system modules), and configurations (CRUD, a
// device configuration reaching its target twins, and
// applyConfigurationContentOnDevice).
'use strict';

const assert = require('node:assert/strict');
const { after, before, describe } = require('node:test');

const { Twin } = require('azure-iothub');
const { ModuleClient } = require('azure-iot-device');
const { Mqtt: DeviceMqtt } = require('azure-iot-device-mqtt');

const m = require('./lib/muster');
const h = require('./lib/hub');
const { scenario } = require('./lib/pending');

const cfg = m.loadConfig();
let svc;

// run makes IDs and tag values unique to this run of the file.
const run = Date.now().toString(36);

before(() => {
  svc = h.newHubService(cfg);
});

after(() => {
  if (svc) {
    svc.close();
  }
});

/** assertStatus asserts that promise rejects with an SDK error for an HTTP status and, optionally, an error name and an IoT Hub error code. */
async function assertStatus(promise, status, what, { name, code } = {}) {
  await assert.rejects(m.bounded(promise, what), (err) => {
    assert.ok(err instanceof Error, `${what}: rejected with ${err}`);
    assert.notEqual(err.name, 'TimeoutError', `${what}: ${err.message}`);
    assert.equal(err.response && err.response.statusCode, status, `${what}: got ${m.describeError(err)}, want HTTP ${status}`);
    if (name) {
      assert.equal(err.name, name, `${what}: got ${m.describeError(err)}`);
    }
    if (code) {
      assert.match(String(err.responseBody), new RegExp(`ErrorCode:${code}[;"]`), `${what}: error body`);
    }
    return true;
  }, what);
}

/** assertKey asserts a canonical base64 key of n bytes. */
function assertKey(value, bytes, field) {
  assert.equal(typeof value, 'string', `${field} is ${JSON.stringify(value)}`);
  const raw = Buffer.from(value, 'base64');
  assert.equal(raw.toString('base64'), value, `${field} ${value} is not canonical base64`);
  assert.equal(raw.length, bytes, `${field}: ${raw.length} bytes, want ${bytes}`);
}

/** sameThumbprint compares thumbprints as the hub does: case and separators aside. */
function sameThumbprint(a, b) {
  const norm = (s) => String(s).replace(/[:\s]/g, '').toUpperCase();
  return norm(a) === norm(b);
}

/** createDevice creates a plain SAS device and returns its Device JSON. */
async function createDevice(deviceId, extra = {}) {
  const { responseBody } = await m.bounded(svc.registry.create({ deviceId, ...extra }), `create ${deviceId}`);
  return responseBody;
}

/** removeDevices deletes devices, ignoring failures (cleanup). */
async function removeDevices(ids) {
  for (const id of ids) {
    await m.bounded(svc.registry.delete(id), `cleanup ${id}`).catch(() => {});
  }
}

const hubSelf = () => m.thumbprints(m.readDevice(cfg, 'x509-hubself').cert);

// Each shape is one device identity the Registry creates; check verifies
// the created Device's authentication.
const shapes = [
  {
    desc: 'sas with generated keys',
    make: (deviceId) => ({ deviceId, status: 'enabled' }),
    check(auth) {
      assert.equal(auth.type, 'sas');
      // The SDK sends empty keys; the hub generates 32-byte keys (§1.2).
      assertKey(auth.symmetricKey.primaryKey, 32, 'generated primaryKey');
      assertKey(auth.symmetricKey.secondaryKey, 32, 'generated secondaryKey');
      assert.notEqual(auth.symmetricKey.primaryKey, auth.symmetricKey.secondaryKey, 'generated keys are equal');
    },
  },
  {
    desc: 'sas with given keys',
    keys: { primaryKey: m.randomKey(), secondaryKey: m.randomKey() },
    make(deviceId) {
      return { deviceId, authentication: { symmetricKey: this.keys } };
    },
    check(auth) {
      assert.equal(auth.type, 'sas');
      assert.deepEqual(auth.symmetricKey, this.keys);
    },
  },
  {
    desc: 'selfSigned with SHA-1 and SHA-256 thumbprints',
    make: (deviceId) => ({ deviceId, authentication: { x509Thumbprint: { primaryThumbprint: hubSelf().sha1, secondaryThumbprint: hubSelf().sha256 } } }),
    check(auth) {
      assert.equal(auth.type, 'selfSigned');
      assert.ok(sameThumbprint(auth.x509Thumbprint.primaryThumbprint, hubSelf().sha1), `primaryThumbprint ${auth.x509Thumbprint.primaryThumbprint}`);
      assert.ok(sameThumbprint(auth.x509Thumbprint.secondaryThumbprint, hubSelf().sha256), `secondaryThumbprint ${auth.x509Thumbprint.secondaryThumbprint}`);
    },
  },
  {
    desc: 'certificateAuthority',
    make: (deviceId) => ({ deviceId, authentication: { type: 'certificateAuthority' } }),
    check(auth) {
      assert.equal(auth.type, 'certificateAuthority');
      const keys = auth.symmetricKey || {};
      assert.ok(!keys.primaryKey && !keys.secondaryKey, `a certificateAuthority device has no keys: ${JSON.stringify(keys)}`);
    },
  },
];

shapes.forEach((shape, i) => {
  describe(`Registry device CRUD: ${shape.desc}`, () => {
    const deviceId = `svc-hub-dev-${i}-${run}`;
    let created;

    after(() => removeDevices([deviceId]));

    scenario('create returns the Device with server fields', async () => {
      const { responseBody: d } = await m.bounded(svc.registry.create(shape.make(deviceId)), `create ${deviceId}`);
      assert.equal(d.deviceId, deviceId);
      assert.equal(typeof d.generationId, 'string', 'generationId');
      assert.ok(d.generationId.length > 0, 'generationId empty');
      assert.equal(typeof d.etag, 'string', 'etag');
      assert.ok(d.etag.length > 0, 'etag empty');
      assert.equal(d.status, 'enabled');
      assert.equal(d.connectionState, 'Disconnected');
      assert.equal(d.capabilities && d.capabilities.iotEdge, false, 'capabilities.iotEdge');
      shape.check(d.authentication);
      created = d;
    });

    scenario('create of an existing ID fails with DeviceAlreadyExistsError (409)', async () => {
      assert.ok(created, 'create failed');
      await assertStatus(svc.registry.create(shape.make(deviceId)), 409, `re-create ${deviceId}`, { name: 'DeviceAlreadyExistsError', code: 'DeviceAlreadyExists' });
    });

    scenario('get returns the same Device and etag', async () => {
      assert.ok(created, 'create failed');
      const { responseBody: d } = await m.bounded(svc.registry.get(deviceId), `get ${deviceId}`);
      assert.equal(d.etag, created.etag);
      assert.equal(d.generationId, created.generationId);
      shape.check(d.authentication);
    });

    scenario('update sets status disabled with a reason and a new etag', async () => {
      assert.ok(created, 'create failed');
      const { responseBody: d } = await m.bounded(svc.registry.update({ ...created, status: 'disabled', statusReason: 'interop' }), `update ${deviceId}`);
      assert.equal(d.status, 'disabled');
      assert.equal(d.statusReason, 'interop');
      assert.notEqual(d.etag, created.etag, 'etag unchanged by an update');
      assert.equal(d.generationId, created.generationId, 'an update keeps the generationId');
      shape.check(d.authentication);
    });

    scenario('list includes the device as updated', async () => {
      assert.ok(created, 'create failed');
      const { responseBody: list } = await m.bounded(svc.registry.list(), 'list');
      assert.ok(Array.isArray(list), `list returned ${JSON.stringify(list)}`);
      const d = list.find((x) => x.deviceId === deviceId);
      assert.ok(d, `${deviceId} missing from list of ${list.length}`);
      assert.equal(d.status, 'disabled');
    });

    scenario('delete, then get fails with DeviceNotFoundError (404)', async () => {
      assert.ok(created, 'create failed');
      await m.bounded(svc.registry.delete(deviceId), `delete ${deviceId}`);
      await assertStatus(svc.registry.get(deviceId), 404, `get deleted ${deviceId}`, { name: 'DeviceNotFoundError', code: 'DeviceNotFound' });
      await assertStatus(svc.registry.delete(deviceId), 404, `delete deleted ${deviceId}`, { name: 'DeviceNotFoundError' });
    });
  });
});

describe('Registry selfSigned device on the wire', () => {
  const deviceId = `svc-hub-x509-${run}`;
  let device;

  after(() => removeDevices([deviceId]));

  scenario('a device registered by thumbprint connects with its certificate and sends telemetry', async () => {
    device = await createDevice(deviceId, { authentication: { x509Thumbprint: { primaryThumbprint: hubSelf().sha256 } } });
    const client = await h.openDevice(cfg, cfg.hubHostName, deviceId, m.readDevice(cfg, 'x509-hubself'));
    try {
      const msg = new h.Message(`x509 ${run}`);
      msg.messageId = `x509-${run}`;
      await m.bounded(client.sendEvent(msg), 'sendEvent');
    } finally {
      await h.closeDevice(client);
    }
    const got = await h.waitForEvent(svc, deviceId, (e) => e.systemProperties['message-id'] === `x509-${run}`, 'x509 telemetry');
    assert.equal(Buffer.from(got.body, 'base64').toString(), `x509 ${run}`);
  });

  scenario('once disabled through Registry.update, its Client.open fails with UnauthorizedError', async () => {
    assert.ok(device, 'create failed');
    const { responseBody: current } = await m.bounded(svc.registry.get(deviceId), `get ${deviceId}`);
    await m.bounded(svc.registry.update({ ...current, status: 'disabled' }), `disable ${deviceId}`);
    await assert.rejects(h.openDevice(cfg, cfg.hubHostName, deviceId, m.readDevice(cfg, 'x509-hubself')), (err) => {
      assert.equal(err.name, 'UnauthorizedError', `got ${m.describeError(err)}`);
      return true;
    });
  });
});

describe('Registry twins', () => {
  const deviceId = `svc-hub-twin-${run}`;
  let twin; // the latest service twin JSON

  after(() => removeDevices([deviceId]));

  scenario('getTwin of a new device has versions, an etag and empty tags', async () => {
    await createDevice(deviceId);
    const { responseBody: t } = await m.bounded(svc.registry.getTwin(deviceId), `getTwin ${deviceId}`);
    assert.equal(t.deviceId, deviceId);
    assert.equal(typeof t.etag, 'string', 'etag');
    assert.equal(typeof t.version, 'number', 'version');
    assert.deepEqual(t.tags || {}, {}, 'tags');
    assert.equal(typeof t.properties.desired.$version, 'number', 'desired.$version');
    assert.equal(typeof t.properties.reported.$version, 'number', 'reported.$version');
    assert.equal(t.status, 'enabled');
    assert.equal(t.authenticationType, 'sas');
    twin = t;
  });

  scenario('updateTwin with the etag merges tags and desired properties', async () => {
    assert.ok(twin, 'getTwin failed');
    const patch = { tags: { site: 'lab', floor: 3 }, properties: { desired: { interval: 10, limits: { max: 80, min: 5 } } } };
    const { responseBody: t } = await m.bounded(svc.registry.updateTwin(deviceId, patch, twin.etag), `updateTwin ${deviceId}`);
    assert.deepEqual(t.tags, patch.tags);
    assert.equal(t.properties.desired.interval, 10);
    assert.deepEqual(t.properties.desired.limits, { max: 80, min: 5 });
    assert.notEqual(t.etag, twin.etag, 'etag unchanged by an update');
    assert.ok(t.version > twin.version, `version ${twin.version} → ${t.version}`);
    assert.ok(t.properties.desired.$version > twin.properties.desired.$version, `desired.$version ${twin.properties.desired.$version} → ${t.properties.desired.$version}`);
    // A null deletes (merge patch); untouched keys stay.
    const { responseBody: t2 } = await m.bounded(svc.registry.updateTwin(deviceId, { tags: { floor: null }, properties: { desired: { limits: { min: null } } } }, t.etag), `updateTwin ${deviceId} deletes`);
    assert.deepEqual(t2.tags, { site: 'lab' });
    assert.deepEqual(t2.properties.desired.limits, { max: 80 });
    assert.equal(t2.properties.desired.interval, 10);
    twin = t2;
  });

  scenario('desired properties carry $metadata with $lastUpdated and $lastUpdatedVersion', async () => {
    assert.ok(twin, 'earlier twin scenarios failed');
    const desired = twin.properties.desired;
    const md = desired.$metadata;
    assert.ok(md, `no $metadata in desired ${JSON.stringify(desired)}`);
    assert.ok(!Number.isNaN(Date.parse(md.$lastUpdated)), `$metadata.$lastUpdated ${md.$lastUpdated}`);
    assert.equal(md.$lastUpdatedVersion, desired.$version, '$metadata.$lastUpdatedVersion');
    // Every object node mirrors the data tree (§4.4).
    assert.ok(md.interval && md.interval.$lastUpdated, `$metadata.interval ${JSON.stringify(md.interval)}`);
    assert.ok(md.limits && md.limits.max && md.limits.max.$lastUpdated, `$metadata.limits ${JSON.stringify(md.limits)}`);
  });

  scenario('updateTwin with a stale etag fails with InvalidEtagError (412)', async () => {
    assert.ok(twin, 'earlier twin scenarios failed');
    const { responseBody: fresh } = await m.bounded(svc.registry.updateTwin(deviceId, { tags: { rev: 1 } }, '*'), `updateTwin ${deviceId} with *`);
    assert.equal(fresh.tags.rev, 1);
    await assertStatus(svc.registry.updateTwin(deviceId, { tags: { rev: 2 } }, twin.etag), 412, `stale updateTwin ${deviceId}`, { name: 'InvalidEtagError', code: 'PreconditionFailed' });
    twin = fresh;
  });

  scenario('Twin.get and Twin.update use the twin\'s own etag', async () => {
    assert.ok(twin, 'earlier twin scenarios failed');
    const { responseBody: t } = await m.bounded(svc.registry.getTwin(deviceId), `getTwin ${deviceId}`);
    assert.ok(t instanceof Twin, 'Registry.getTwin did not return a Twin');
    const etag = t.etag;
    // Twin.update and Twin.get refresh the Twin object itself.
    await m.bounded(t.update({ properties: { desired: { mode: 'eco' } } }), 'Twin.update');
    assert.equal(t.properties.desired.mode, 'eco');
    assert.notEqual(t.etag, etag, 'etag unchanged by Twin.update');
    const { responseBody: stored } = await m.bounded(svc.registry.getTwin(deviceId), `getTwin ${deviceId}`);
    assert.equal(stored.etag, t.etag, 'Twin.update left the Twin with another etag than the stored one');
    await m.bounded(svc.registry.updateTwin(deviceId, { properties: { desired: { mode: 'boost' } } }, t.etag), 'updateTwin');
    await m.bounded(t.get(), 'Twin.get');
    assert.equal(t.properties.desired.mode, 'boost');
  });
});

describe('Registry query', () => {
  const tag = `q-${run}`;
  const shades = ['red', 'red', 'blue', 'blue', 'blue'];
  const ids = shades.map((_, i) => `svc-hub-q-${i}-${run}`);
  const outsider = `svc-hub-q-out-${run}`;

  before(async () => {
    for (const [i, id] of ids.entries()) {
      await createDevice(id);
      await m.bounded(svc.registry.updateTwin(id, { tags: { x: tag, shade: shades[i] } }, '*'), `tag ${id}`);
    }
    await createDevice(outsider);
    await m.bounded(svc.registry.updateTwin(outsider, { tags: { x: `${tag}-other`, shade: 'red' } }, '*'), `tag ${outsider}`);
  });

  after(() => removeDevices([...ids, outsider]));

  scenario('createQuery(SELECT * … WHERE tags.x = …, 2).nextAsTwin pages through exactly the tagged twins', async () => {
    const q = svc.registry.createQuery(`SELECT * FROM devices WHERE tags.x = '${tag}'`, 2);
    const twins = [];
    const pageSizes = [];
    for (let page = 0; page < 20 && q.hasMoreResults; page++) {
      const { result } = await m.bounded(q.nextAsTwin(), `nextAsTwin page ${page + 1}`);
      assert.ok(Array.isArray(result), `page ${page + 1}: ${JSON.stringify(result)}`);
      twins.push(...result);
      pageSizes.push(result.length);
    }
    assert.equal(q.hasMoreResults, false, 'still hasMoreResults after 20 pages');
    for (const n of pageSizes) {
      assert.ok(n <= 2, `page of ${n} exceeds x-ms-max-item-count 2 (pages ${pageSizes})`);
    }
    assert.ok(pageSizes.length >= 3, `${twins.length} twins in ${pageSizes.length} pages of at most 2`);
    assert.deepEqual(twins.map((t) => t.deviceId).sort(), [...ids].sort());
    for (const t of twins) {
      assert.ok(t instanceof Twin, 'nextAsTwin item is not a Twin');
      assert.equal(t.tags.x, tag);
      assert.equal(typeof t.etag, 'string', `${t.deviceId} etag`);
    }
  });

  scenario('a Twin from nextAsTwin can be updated', async () => {
    const q = svc.registry.createQuery(`SELECT * FROM devices WHERE deviceId = '${ids[0]}'`);
    const { result } = await m.bounded(q.nextAsTwin(), 'nextAsTwin');
    assert.equal(result.length, 1, `${result.length} twins for one deviceId`);
    await m.bounded(result[0].update({ tags: { touched: true } }), 'Twin.update');
    const { responseBody: stored } = await m.bounded(svc.registry.getTwin(ids[0]), `getTwin ${ids[0]}`);
    assert.equal(stored.tags.touched, true);
    assert.equal(stored.tags.x, tag);
  });

  scenario('COUNT() and GROUP BY answer raw rows through Query.next', async () => {
    const count = await m.bounded(svc.registry.createQuery(`SELECT COUNT() AS n FROM devices WHERE tags.x = '${tag}'`).next(), 'COUNT query');
    assert.deepEqual(count.result, [{ n: ids.length }]);
    const grouped = await m.bounded(svc.registry.createQuery(`SELECT tags.shade AS shade, COUNT() AS n FROM devices WHERE tags.x = '${tag}' GROUP BY tags.shade`).next(), 'GROUP BY query');
    const byShade = Object.fromEntries(grouped.result.map((r) => [r.shade, r.n]));
    assert.deepEqual(byShade, { red: 2, blue: 3 });
  });

  scenario('a query with a syntax error fails with ArgumentError (400)', async () => {
    await assertStatus(svc.registry.createQuery('SELECT * FROM devices WHERE').next(), 400, 'bad query', { name: 'ArgumentError' });
  });
});

describe('Registry modules', () => {
  const deviceId = `svc-hub-mod-${run}`;
  const moduleId = 'telemetry-filter';
  const edgeId = `svc-hub-edge-${run}`;
  let mod;

  before(() => createDevice(deviceId));
  after(() => removeDevices([deviceId, edgeId]));

  scenario('addModule generates keys and returns the Module', async () => {
    const { responseBody: got } = await m.bounded(svc.registry.addModule({ deviceId, moduleId }), 'addModule');
    assert.equal(got.deviceId, deviceId);
    assert.equal(got.moduleId, moduleId);
    assert.equal(typeof got.etag, 'string', 'etag');
    assert.equal(typeof got.generationId, 'string', 'generationId');
    assert.equal(got.authentication.type, 'sas');
    assertKey(got.authentication.symmetricKey.primaryKey, 32, 'module primaryKey');
    mod = got;
  });

  scenario('addModule of an existing module fails with 409 ModuleAlreadyExistsOnDevice', async () => {
    assert.ok(mod, 'addModule failed');
    await assertStatus(svc.registry.addModule({ deviceId, moduleId }), 409, 'addModule again', { code: 'ModuleAlreadyExistsOnDevice' });
  });

  scenario('getModule and getModulesOnDevice return it', async () => {
    assert.ok(mod, 'addModule failed');
    const { responseBody: got } = await m.bounded(svc.registry.getModule(deviceId, moduleId), 'getModule');
    assert.equal(got.etag, mod.etag);
    const { responseBody: list } = await m.bounded(svc.registry.getModulesOnDevice(deviceId), 'getModulesOnDevice');
    assert.deepEqual(list.map((x) => x.moduleId), [moduleId]);
  });

  scenario('updateModule with the etag sets managedBy; a stale etag fails with 412', async () => {
    assert.ok(mod, 'addModule failed');
    const { responseBody: got } = await m.bounded(svc.registry.updateModule({ ...mod, managedBy: 'interop' }), 'updateModule');
    assert.equal(got.managedBy, 'interop');
    assert.notEqual(got.etag, mod.etag, 'etag unchanged by an update');
    await assertStatus(svc.registry.updateModule({ ...mod, managedBy: 'stale' }), 412, 'stale updateModule', { name: 'InvalidEtagError' });
    mod = got;
  });

  scenario('a ModuleClient with the module\'s connection string sends telemetry over MQTT', async () => {
    assert.ok(mod, 'addModule failed');
    const connStr = `HostName=${cfg.hubHostName};DeviceId=${deviceId};ModuleId=${moduleId};SharedAccessKey=${mod.authentication.symmetricKey.primaryKey};GatewayHostName=${cfg.mqttHostPort}`;
    const client = ModuleClient.fromConnectionString(connStr, DeviceMqtt);
    client.on('error', (err) => console.error(`module client error: ${m.describeError(err)}`));
    try {
      await m.bounded(client.setOptions({ ca: cfg.ca }), 'module setOptions');
      await m.bounded(client.open(), 'module open');
      const msg = new h.Message(`module ${run}`);
      msg.messageId = `mod-${run}`;
      await m.bounded(client.sendOutputEvent('out1', msg), 'sendOutputEvent');
    } finally {
      await m.withTimeout(client.close(), 10000, 'module close').catch(() => {});
    }
    const got = await h.waitForEvent(svc, deviceId, (e) => e.systemProperties['message-id'] === `mod-${run}`, 'module telemetry');
    assert.equal(got.moduleId, moduleId, 'moduleId of the message');
    assert.equal(got.systemProperties['iothub-connection-module-id'], moduleId);
    assert.equal(got.systemProperties['iothub-outputname'], 'out1');
  });

  scenario('getModuleTwin and updateModuleTwin with the etag', async () => {
    assert.ok(mod, 'addModule failed');
    const { responseBody: t } = await m.bounded(svc.registry.getModuleTwin(deviceId, moduleId), 'getModuleTwin');
    assert.equal(t.deviceId, deviceId);
    assert.equal(t.moduleId, moduleId);
    const { responseBody: u } = await m.bounded(svc.registry.updateModuleTwin(deviceId, moduleId, { properties: { desired: { threshold: 42 } } }, t.etag), 'updateModuleTwin');
    assert.equal(u.properties.desired.threshold, 42);
    assert.notEqual(u.etag, t.etag, 'etag unchanged by an update');
    await assertStatus(svc.registry.updateModuleTwin(deviceId, moduleId, { properties: { desired: { threshold: 1 } } }, t.etag), 412, 'stale updateModuleTwin', { name: 'InvalidEtagError' });
  });

  scenario('removeModule, then getModule fails with 404 ModuleNotFound', async () => {
    assert.ok(mod, 'addModule failed');
    await m.bounded(svc.registry.removeModule(deviceId, moduleId), 'removeModule');
    await assertStatus(svc.registry.getModule(deviceId, moduleId), 404, 'getModule removed', { code: 'ModuleNotFound' });
    const { responseBody: list } = await m.bounded(svc.registry.getModulesOnDevice(deviceId), 'getModulesOnDevice');
    assert.deepEqual(list, []);
  });

  scenario('an IoT Edge device gets the $edgeAgent and $edgeHub modules', async () => {
    const d = await createDevice(edgeId, { capabilities: { iotEdge: true } });
    assert.equal(d.capabilities.iotEdge, true);
    const { responseBody: list } = await m.bounded(svc.registry.getModulesOnDevice(edgeId), 'getModulesOnDevice');
    assert.deepEqual(list.map((x) => x.moduleId).sort(), ['$edgeAgent', '$edgeHub']);
  });
});

describe('Registry configurations', () => {
  const tag = `cfg-${run}`;
  const configId = `interop-cfg-${run}`;
  const targets = [`svc-hub-cfg-0-${run}`, `svc-hub-cfg-1-${run}`];
  const edgeId = `svc-hub-cfg-edge-${run}`;
  const content = { deviceContent: { 'properties.desired.settings': { sampling: 5, run } } };
  let created;

  before(async () => {
    for (const id of targets) {
      await createDevice(id);
      await m.bounded(svc.registry.updateTwin(id, { tags: { rollout: tag } }, '*'), `tag ${id}`);
    }
  });

  after(async () => {
    await m.bounded(svc.registry.removeConfiguration(configId), `cleanup ${configId}`).catch(() => {});
    await removeDevices([...targets, edgeId]);
  });

  scenario('addConfiguration returns the stored configuration', async () => {
    const { responseBody: c } = await m.bounded(svc.registry.addConfiguration({
      id: configId,
      content,
      targetCondition: `tags.rollout = '${tag}'`,
      priority: 10,
      labels: { team: 'interop' },
      metrics: { queries: { sampled: `SELECT deviceId FROM devices WHERE properties.reported.settings.sampling = 5` } },
    }), 'addConfiguration');
    assert.equal(c.id, configId);
    assert.equal(c.schemaVersion, '1.0');
    assert.deepEqual(c.content, content);
    assert.equal(c.priority, 10);
    assert.deepEqual(c.labels, { team: 'interop' });
    assert.equal(typeof c.etag, 'string', 'etag');
    assert.ok(!Number.isNaN(Date.parse(c.createdTimeUtc)), `createdTimeUtc ${c.createdTimeUtc}`);
    created = c;
  });

  scenario('getConfiguration and getConfigurations return it', async () => {
    assert.ok(created, 'addConfiguration failed');
    const { responseBody: c } = await m.bounded(svc.registry.getConfiguration(configId), 'getConfiguration');
    assert.equal(c.etag, created.etag);
    assert.equal(c.targetCondition, `tags.rollout = '${tag}'`);
    const { responseBody: list } = await m.bounded(svc.registry.getConfigurations(), 'getConfigurations');
    assert.ok(list.some((x) => x.id === configId), `${configId} missing from getConfigurations`);
  });

  scenario('the configuration reaches its target twins and counts them', async () => {
    assert.ok(created, 'addConfiguration failed');
    for (const id of targets) {
      await h.eventually(async () => {
        const { responseBody: t } = await m.bounded(svc.registry.getTwin(id), `getTwin ${id}`);
        const status = t.configurations && t.configurations[configId] && t.configurations[configId].status;
        return { ok: status === 'Applied' && t.properties.desired.settings && t.properties.desired.settings.run === run, seen: { configurations: t.configurations, desired: t.properties.desired } };
      }, `${configId} applied to ${id}`);
    }
    const { result } = await h.eventually(async () => {
      const { responseBody: c } = await m.bounded(svc.registry.getConfiguration(configId), 'getConfiguration');
      const r = c.systemMetrics && c.systemMetrics.results;
      return { ok: r && r.targetedCount === targets.length && r.appliedCount === targets.length, seen: c.systemMetrics, result: c };
    }, `${configId} system metrics`);
    assert.equal(typeof result.systemMetrics.queries.targetedCount, 'string', 'systemMetrics.queries.targetedCount');
  });

  scenario('updateConfiguration with the etag changes labels; a stale etag fails with 412', async () => {
    assert.ok(created, 'addConfiguration failed');
    const { responseBody: current } = await m.bounded(svc.registry.getConfiguration(configId), 'getConfiguration');
    const { responseBody: u } = await m.bounded(svc.registry.updateConfiguration({ ...current, labels: { team: 'interop', wave: '2' } }), 'updateConfiguration');
    assert.deepEqual(u.labels, { team: 'interop', wave: '2' });
    assert.notEqual(u.etag, current.etag, 'etag unchanged by an update');
    await assertStatus(svc.registry.updateConfiguration({ ...current, labels: { team: 'stale' } }), 412, 'stale updateConfiguration', { name: 'InvalidEtagError' });
  });

  scenario('removeConfiguration, then getConfiguration fails with 404', async () => {
    assert.ok(created, 'addConfiguration failed');
    await m.bounded(svc.registry.removeConfiguration(configId), 'removeConfiguration');
    await assertStatus(svc.registry.getConfiguration(configId), 404, 'getConfiguration removed');
  });

  scenario('applyConfigurationContentOnDevice writes the modules content into the edge module twins', async () => {
    await createDevice(edgeId, { capabilities: { iotEdge: true } });
    const agentDesired = {
      schemaVersion: '1.1',
      runtime: { type: 'docker', settings: { minDockerVersion: 'v1.25' } },
      systemModules: {
        edgeAgent: { type: 'docker', settings: { image: 'mcr.microsoft.com/azureiotedge-agent:1.5', createOptions: '{}' } },
        edgeHub: { type: 'docker', status: 'running', restartPolicy: 'always', settings: { image: 'mcr.microsoft.com/azureiotedge-hub:1.5', createOptions: '{}' } },
      },
      modules: {},
    };
    const hubDesired = { schemaVersion: '1.1', routes: { upstream: 'FROM /messages/* INTO $upstream' }, storeAndForwardConfiguration: { timeToLiveSecs: 7200 } };
    await m.bounded(svc.registry.applyConfigurationContentOnDevice(edgeId, {
      modulesContent: { $edgeAgent: { 'properties.desired': agentDesired }, $edgeHub: { 'properties.desired': hubDesired } },
    }), 'applyConfigurationContentOnDevice');
    const strip = (d) => Object.fromEntries(Object.entries(d).filter(([k]) => !k.startsWith('$')));
    const { responseBody: agent } = await m.bounded(svc.registry.getModuleTwin(edgeId, '$edgeAgent'), 'getModuleTwin $edgeAgent');
    assert.deepEqual(strip(agent.properties.desired), agentDesired);
    const { responseBody: edgeHub } = await m.bounded(svc.registry.getModuleTwin(edgeId, '$edgeHub'), 'getModuleTwin $edgeHub');
    assert.deepEqual(strip(edgeHub.properties.desired), hubDesired);
  });
});
