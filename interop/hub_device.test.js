// The hub's device side driven by azure-iot-device 1.18.4 over
// azure-iot-device-mqtt 1.16.4, with devices that got their hub and identity
// from a real provisioning run (azure-iot-provisioning-device): a
// symmetric-key group device provisioned over MQTT and an X.509 group
// device provisioned over HTTPS that connects with its certificate chain.
// For each: open, telemetry with application properties (read back through
// Muster's GET /messages/events), getTwin with the enrollment's initial
// twin, a reported-properties update, the properties.desired event after
// azure-iothub Registry.updateTwin with the etag, a direct method through
// azure-iothub Client.invokeDeviceMethod, C2D through Muster's REST send,
// and DeviceNotOnline once the device has closed.
'use strict';

const assert = require('node:assert/strict');
const { after, before, describe } = require('node:test');

const m = require('./lib/muster');
const h = require('./lib/hub');
const { scenario } = require('./lib/pending');

const cfg = m.loadConfig();
let dps;
let svc;

const run = Date.now().toString(36);
const symGroup = { id: 'hub-grp-sym', primary: m.randomKey(), secondary: m.randomKey() };
const x509GroupId = 'hub-grp-x509';
const initialTwin = (kind) => ({
  tags: { fleet: 'interop-hub', kind },
  properties: { desired: { interval: 30, mode: 'normal' } },
});

// The devices under test. regId is also the device ID the hub gets (no
// deviceId override in a group); X.509 ones are certificate CNs the harness
// generated (doc.go).
const devices = [
  {
    label: 'symmetric-key group device',
    kind: 'sym',
    regId: 'hub-sym-dev',
    dpsTransport: 'Mqtt',
    credential() {
      return { key: m.deriveGroupKey(symGroup.primary, this.regId) };
    },
    security(cred) {
      return m.symmetricSecurity(this.regId, cred.key);
    },
  },
  {
    label: 'X.509 group device',
    kind: 'x509',
    regId: 'x509-hubgrp-http',
    dpsTransport: 'Http',
    credential() {
      return m.readDevice(cfg, this.regId);
    },
    security(cred) {
      return m.x509Security(this.regId, cred.cert, cred.key);
    },
  },
];

before(async () => {
  dps = m.newServiceClient(cfg);
  svc = h.newHubService(cfg);
  const groups = [
    {
      enrollmentGroupId: symGroup.id,
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: symGroup.primary, secondaryKey: symGroup.secondary } },
      initialTwin: initialTwin(devices[0].kind),
    },
    {
      enrollmentGroupId: x509GroupId,
      attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: m.readCA(cfg, 'hubgrp-root') } } } },
      initialTwin: initialTwin(devices[1].kind),
    },
  ];
  for (const g of groups) {
    await m.bounded(dps.client.createOrUpdateEnrollmentGroup(g), `create group ${g.enrollmentGroupId}`);
  }
});

after(async () => {
  if (dps) {
    for (const id of [symGroup.id, x509GroupId]) {
      await m.bounded(dps.client.deleteEnrollmentGroup(id), `cleanup ${id}`).catch(() => {});
    }
    dps.close();
  }
  if (svc) {
    svc.close();
  }
});

/** updateReported wraps the callback-only twin.properties.reported.update. */
function updateReported(twin, patch, what) {
  return m.withTimeout(new Promise((resolve, reject) => {
    twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve()));
  }), m.CALL_TIMEOUT_MS, what);
}

for (const dev of devices) {
  describe(`hub device: ${dev.label}`, () => {
    const cred = dev.credential();
    let assigned; // the provisioning result
    let client; // azure-iot-device Client over MQTT
    let twin; // the device-side Twin

    // need fails a scenario whose prerequisite scenario failed, naming it.
    const need = (value, what) => {
      assert.ok(value, `no ${what}: an earlier scenario of this device failed`);
      return value;
    };

    after(async () => {
      await h.closeDevice(client);
    });

    scenario(`provisioning over ${dev.dpsTransport} assigns the device to the hub`, async () => {
      const result = await m.register(cfg, dev.dpsTransport, dev.security(cred), dev.regId);
      assert.equal(result.status, 'assigned', 'registration status');
      assert.equal(result.assignedHub, cfg.hubHostName, 'assignedHub');
      assert.equal(result.deviceId, dev.regId, 'deviceId');
      assigned = result;
    });

    scenario('Client.open over MQTT with the provisioned credential', async () => {
      const a = need(assigned, 'registration');
      client = await h.openDevice(cfg, a.assignedHub, a.deviceId, cred);
    });

    scenario('sendEvent with application properties reaches the built-in endpoint', async () => {
      const c = need(client, 'open client');
      const body = JSON.stringify({ temperature: 21.5, run });
      const msg = new h.Message(body);
      msg.messageId = `${dev.regId}-${run}`;
      msg.correlationId = `corr-${run}`;
      msg.contentType = 'application/json';
      msg.contentEncoding = 'utf-8';
      // Characters the property bag must percent-encode (§2.4).
      const props = { 'alert level': 'high/low&x=y', unit: '°C', run };
      for (const [k, v] of Object.entries(props)) {
        msg.properties.add(k, v);
      }
      await m.bounded(c.sendEvent(msg), 'sendEvent');
      const got = await h.waitForEvent(svc, assigned.deviceId, (e) => e.systemProperties['message-id'] === msg.messageId, `message ${msg.messageId}`);
      assert.equal(got.deviceId, assigned.deviceId, 'deviceId');
      assert.deepEqual(got.properties, props, 'application properties');
      assert.equal(Buffer.from(got.body, 'base64').toString('utf8'), body, 'body');
      const sys = got.systemProperties;
      assert.equal(sys['correlation-id'], msg.correlationId, 'correlation-id');
      assert.equal(sys['content-type'], 'application/json', 'content-type');
      assert.equal(sys['content-encoding'], 'utf-8', 'content-encoding');
      assert.equal(sys['iothub-connection-device-id'], assigned.deviceId, 'iothub-connection-device-id');
      assert.ok(!Number.isNaN(Date.parse(got.enqueuedTime)), `enqueuedTime ${got.enqueuedTime}`);
    });

    scenario('Registry.get shows the device Connected, with its last activity, while it is connected', async () => {
      need(client, 'open client');
      // The hub records presence off the connection path, so it converges.
      await h.eventually(async () => {
        const { responseBody: d } = await m.bounded(svc.registry.get(assigned.deviceId), 'Registry.get');
        const year = (t) => new Date(t).getUTCFullYear();
        // Year 1 means never; the open and the telemetry are activity.
        const { connectionState, connectionStateUpdatedTime, lastActivityTime } = d; // not the keys
        return {
          ok: connectionState === 'Connected' && year(lastActivityTime) > 2000 && year(connectionStateUpdatedTime) > 2000,
          seen: { connectionState, connectionStateUpdatedTime, lastActivityTime },
        };
      }, `${assigned.deviceId} Connected with its last activity`);
    });

    scenario('getTwin returns the desired properties of the enrollment\'s initial twin', async () => {
      const c = need(client, 'open client');
      twin = await m.bounded(c.getTwin(), 'getTwin');
      const desired = twin.properties.desired;
      assert.equal(desired.interval, 30, `desired ${JSON.stringify(desired)}`);
      assert.equal(desired.mode, 'normal', `desired ${JSON.stringify(desired)}`);
      assert.equal(typeof desired.$version, 'number', 'desired.$version');
      assert.equal(typeof twin.properties.reported.$version, 'number', 'reported.$version');
      const { responseBody: st } = await m.bounded(svc.registry.getTwin(assigned.deviceId), 'Registry.getTwin');
      assert.deepEqual(st.tags, initialTwin(dev.kind).tags, 'service twin tags');
      // Listen for desired patches now, as an application does right after
      // getTwin: the SDK subscribes to them in the background, and the
      // reported round trip of the next scenario follows that SUBSCRIBE on
      // the same connection, so the subscription is in place before the
      // service changes the desired properties.
      twin.on('properties.desired', () => {});
      twin.on('error', (err) => console.error(`${dev.regId} twin error: ${m.describeError(err)}`));
    });

    scenario('twin.properties.reported.update reaches the service twin', async () => {
      const t = need(twin, 'device twin');
      const prior = (await m.bounded(svc.registry.getTwin(assigned.deviceId), 'Registry.getTwin')).responseBody;
      await updateReported(t, { firmware: { version: '1.2.3', run }, battery: 87 }, 'reported update');
      const { responseBody: st } = await m.bounded(svc.registry.getTwin(assigned.deviceId), 'Registry.getTwin');
      const reported = st.properties.reported;
      assert.deepEqual(reported.firmware, { version: '1.2.3', run }, `reported ${JSON.stringify(reported)}`);
      assert.equal(reported.battery, 87);
      assert.ok(reported.$version > prior.properties.reported.$version, `reported.$version ${prior.properties.reported.$version} → ${reported.$version}`);
      // A null deletes the key (JSON merge patch).
      await updateReported(t, { battery: null }, 'reported delete');
      const { responseBody: st2 } = await m.bounded(svc.registry.getTwin(assigned.deviceId), 'Registry.getTwin');
      assert.ok(!('battery' in st2.properties.reported), `battery still reported: ${JSON.stringify(st2.properties.reported)}`);
    });

    scenario('Registry.updateTwin with the etag raises properties.desired on the device', async () => {
      const t = need(twin, 'device twin');
      const { responseBody: st } = await m.bounded(svc.registry.getTwin(assigned.deviceId), 'Registry.getTwin');
      const interval = 60 + Math.floor(Math.random() * 1000);
      const { result: { responseBody: updated }, args: [delta] } = await h.expectEvent(t, 'properties.desired',
        (d) => d.interval === interval, `properties.desired with interval ${interval}`,
        () => m.bounded(svc.registry.updateTwin(assigned.deviceId, { properties: { desired: { interval, mode: null } } }, st.etag), 'Registry.updateTwin'));
      assert.notEqual(updated.etag, st.etag, 'twin etag unchanged by an update');
      assert.equal(updated.properties.desired.interval, interval);
      assert.equal(delta.$version, updated.properties.desired.$version, 'patch $version vs the service twin');
      assert.ok('mode' in delta && delta.mode === null, `the patch should carry mode: null, got ${JSON.stringify(delta)}`);
      // The SDK merges the patch into the device twin's desired section.
      assert.equal(t.properties.desired.interval, interval);
      assert.ok(!('mode' in t.properties.desired), `mode not deleted on the device: ${JSON.stringify(t.properties.desired)}`);
    });

    scenario('onDeviceMethod answers azure-iothub Client.invokeDeviceMethod', async () => {
      const c = need(client, 'open client');
      c.onDeviceMethod('setInterval', (req, res) => {
        res.send(201, { accepted: req.payload, method: req.methodName }, () => {});
      });
      c.onDeviceMethod('fail', (req, res) => {
        res.send(500, { reason: 'refused by the device' }, () => {});
      });
      // The SDK subscribes to methods in the background; the connect timeout
      // lets the hub wait for that subscription instead of the test racing it.
      const params = (methodName, payload) => ({ methodName, payload, connectTimeoutInSeconds: 10, responseTimeoutInSeconds: 10 });
      const payload = { seconds: 15, tags: ['a', 'b'] };
      const ok = await m.bounded(svc.client.invokeDeviceMethod(assigned.deviceId, params('setInterval', payload)), 'invoke setInterval');
      assert.deepEqual(ok.result, { status: 201, payload: { accepted: payload, method: 'setInterval' } });
      // A device-side error status is still HTTP 200 with {status, payload} (§4.7).
      const failed = await m.bounded(svc.client.invokeDeviceMethod(assigned.deviceId, params('fail', null)), 'invoke fail');
      assert.deepEqual(failed.result, { status: 500, payload: { reason: 'refused by the device' } });
    });

    scenario('a C2D message sent through the service API arrives on the message event', async () => {
      const c = need(client, 'open client');
      const messageId = `c2d-${dev.regId}-${run}`;
      // The REST send carries properties as headers (ASCII tokens as names);
      // the values still need percent-encoding in the MQTT topic (§2.4).
      const props = { command: 'blink', 'x.path': 'a/b&c=d e%' };
      const { result: sent, args: [msg] } = await h.expectEvent(c, 'message', (msg) => msg.messageId === messageId, `C2D ${messageId}`,
        () => h.sendC2D(svc, assigned.deviceId, `blink ${run}`, props, { messageId, correlationId: `corr-${run}` }));
      assert.equal(sent, messageId, 'messageId answered by the hub');
      assert.equal(msg.data.toString('utf8'), `blink ${run}`, 'body');
      assert.equal(msg.correlationId, `corr-${run}`, 'correlationId');
      const got = Object.fromEntries(msg.properties.propertyList.map((p) => [p.key, p.value]));
      assert.deepEqual(got, props, 'application properties');
      await m.bounded(c.complete(msg), 'complete');
    });

    scenario('after Client.close, invokeDeviceMethod fails with DeviceNotOnline (404)', async () => {
      const c = need(client, 'open client');
      client = undefined;
      await m.bounded(c.close(), 'close');
      await assert.rejects(m.bounded(svc.client.invokeDeviceMethod(assigned.deviceId, { methodName: 'setInterval', responseTimeoutInSeconds: 5 }), 'invoke offline'), (err) => {
        assert.equal(err.response && err.response.statusCode, 404, `got ${m.describeError(err)}, want HTTP 404`);
        assert.match(String(err.responseBody), /DeviceNotOnline/, 'error code');
        return true;
      });
    });
  });
}

describe('hub C2D over AMQP', () => {
  scenario('azure-iothub Client.send delivers a C2D message to the device', async () => {
    const { regId } = devices[0];
    const key = devices[0].credential().key;
    const client = await h.openDevice(cfg, cfg.hubHostName, regId, { key });
    try {
      const msg = new h.Message(`amqp ${run}`);
      msg.messageId = `amqp-${run}`;
      await h.expectEvent(client, 'message', (got) => got.messageId === msg.messageId, 'C2D over AMQP',
        () => m.withTimeout(svc.client.send(regId, msg), m.CALL_TIMEOUT_MS, 'Client.send', () => svc.client.close()));
    } finally {
      await h.closeDevice(client);
    }
  });
});
