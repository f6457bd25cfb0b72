// Hub plumbing for the interop tests: points the official azure-iothub
// service SDK and the azure-iot-device / azure-iot-device-mqtt device SDK at
// the local `muster serve` through their own dependency-injection hooks, and
// wraps Muster's two REST extensions (telemetry read, C2D send) that stand in
// for Event Hubs and AMQP (hub-edge-protocol §4.8, internal/api).
//
// How each SDK reaches a non-443 port without patching it:
//   - azure-iothub (HTTPS): Registry and Client accept a RestApiClient; ours
//     wraps an azure-iothub Http base whose options carry the server CA and
//     an https.Agent whose defaultPort is the HTTPS port (the SDK puts no
//     port in its requests, so Node falls back to agent.defaultPort). Both
//     constructors replace the client's agent with a keep-alive one of their
//     own, so the options are set again right after construction.
//     HostName stays the bare hub host name: it names the SAS resource (sr).
//   - azure-iot-device-mqtt: the transport dials
//     mqtts://<gatewayHostName || host> and keeps <host> in the username and
//     the SAS resource, so gatewayHostName = "host:port" (the connection
//     string's GatewayHostName for SAS devices; the X509AuthenticationProvider
//     credentials for certificate devices, since fromConnectionString drops
//     GatewayHostName when x509=true).
'use strict';

const iothub = require('azure-iothub');
const { RestApiClient: HubRestApiClient } = require('azure-iothub/dist/common-http/rest_api_client');
const { Http: HubHttpBase } = require('azure-iothub/dist/common-http/http');
const { anHourFromNow } = require('azure-iothub/dist/common-core/authorization');
const iothubPackage = require('azure-iothub/package.json');
const { Client: DeviceClient, Message, X509AuthenticationProvider } = require('azure-iot-device');
const { Mqtt: DeviceMqtt } = require('azure-iot-device-mqtt');

const m = require('./muster');

/** Bounds of the telemetry long-poll (each read waits at most EVENTS_WAIT_S). */
const EVENTS_WAIT_S = 10;
const EVENTS_MAX_READS = 12;

/**
 * hubServiceConfig returns the config Registry.fromConnectionString and
 * Client.fromConnectionString derive from the server's hubConnectionString,
 * after checking that it names the hub host of endpoints.json.
 */
function hubServiceConfig(cfg) {
  const connStr = cfg.endpoints.hubConnectionString;
  if (typeof connStr !== 'string' || connStr === '') {
    throw new Error(`${process.env.MUSTER_ENDPOINTS}: field hubConnectionString is missing or empty`);
  }
  const cs = iothub.ConnectionString.parse(connStr);
  if (cs.HostName !== cfg.hubHostName) {
    throw new Error(`hubConnectionString HostName ${cs.HostName} differs from hubHostName ${cfg.hubHostName}`);
  }
  if (!cs.SharedAccessKeyName || !cs.SharedAccessKey) {
    throw new Error('hubConnectionString lacks SharedAccessKeyName or SharedAccessKey');
  }
  return {
    host: cs.HostName,
    keyName: cs.SharedAccessKeyName,
    sharedAccessSignature: iothub.SharedAccessSignature.create(cs.HostName, cs.SharedAccessKeyName, cs.SharedAccessKey, anHourFromNow()),
    tokenCredential: undefined,
  };
}

/**
 * newHubService builds the azure-iothub Registry and Client for the server
 * over one injected RestApiClient (see the file comment). The Client's
 * transport is the SDK's default AMQP transport: it is only used by
 * Client.send, which Muster cannot serve (no AMQP listener).
 */
function newHubService(cfg) {
  const config = hubServiceConfig(cfg);
  const agent = m.newAgent(cfg);
  const options = { ca: cfg.ca, http: { agent } };
  const base = new HubHttpBase();
  base.setOptions(options);
  const rest = new HubRestApiClient(config, `${iothubPackage.name}/${iothubPackage.version}`, base);
  const registry = new iothub.Registry(config, rest);
  const client = new iothub.Client(new iothub.Amqp(config), rest);
  // Both constructors just replaced the agent (and dropped the CA): restore.
  rest.setOptions(options);
  return {
    registry,
    client,
    rest,
    config,
    close: () => agent.destroy(),
  };
}

/** call runs one request of the RestApiClient, bounded by CALL_TIMEOUT_MS. */
function call(rest, method, path, headers, body, what) {
  return m.callback((cb) => rest.executeApiCall(method, path, headers, body, cb), what);
}

/**
 * readEvents reads the built-in telemetry endpoint (Muster's GET
 * /messages/events) for one device: messages after seq `after`, waiting up
 * to waitSeconds for one. Returns {messages, cursor}.
 */
async function readEvents(svc, deviceId, after, waitSeconds) {
  const q = new URLSearchParams({ deviceId, after: String(after), wait: String(waitSeconds) });
  const path = `/messages/events${iothub.versionQueryString()}&${q}`;
  const { responseBody, httpResponse } = await call(svc.rest, 'GET', path, {}, null, `read telemetry of ${deviceId}`);
  if (!Array.isArray(responseBody)) {
    throw new Error(`GET /messages/events for ${deviceId}: body ${JSON.stringify(responseBody)} is not a JSON array`);
  }
  const cursor = httpResponse.headers['x-muster-cursor'];
  return { messages: responseBody, cursor: cursor === undefined ? null : cursor };
}

/**
 * waitForEvent long-polls the telemetry endpoint until a message of
 * deviceId satisfies match, at most EVENTS_MAX_READS reads of up to
 * EVENTS_WAIT_S seconds each. It returns the message; it throws naming what
 * it saw otherwise.
 */
async function waitForEvent(svc, deviceId, match, what) {
  let after = '0';
  const seen = [];
  for (let i = 0; i < EVENTS_MAX_READS; i++) {
    const { messages, cursor } = await readEvents(svc, deviceId, after, EVENTS_WAIT_S);
    for (const msg of messages) {
      if (match(msg)) {
        return msg;
      }
      seen.push(msg.systemProperties && msg.systemProperties['message-id']);
    }
    if (cursor === null) {
      throw new Error(`GET /messages/events for ${deviceId}: no x-muster-cursor header`);
    }
    after = cursor;
  }
  throw new Error(`${what}: not among ${seen.length} telemetry messages of ${deviceId} (message ids ${JSON.stringify(seen)})`);
}

/**
 * sendC2D sends a cloud-to-device message through Muster's REST extension
 * POST /devices/{id}/messages/deviceBound (IoT Hub itself takes C2D over
 * AMQP only). props are application properties; sys may carry messageId,
 * correlationId. Returns the hub's message id.
 */
async function sendC2D(svc, deviceId, body, props, sys = {}) {
  const headers = { 'Content-Type': 'text/plain; charset=utf-8' };
  for (const [k, v] of Object.entries(props)) {
    headers[`iothub-app-${k}`] = v;
  }
  if (sys.messageId) {
    headers['iothub-messageid'] = sys.messageId;
  }
  if (sys.correlationId) {
    headers['iothub-correlationid'] = sys.correlationId;
  }
  const path = `/devices/${encodeURIComponent(deviceId)}/messages/deviceBound${iothub.versionQueryString()}`;
  const { responseBody } = await call(svc.rest, 'POST', path, headers, body, `send C2D to ${deviceId}`);
  if (!responseBody || typeof responseBody.messageId !== 'string') {
    throw new Error(`POST ${path}: body ${JSON.stringify(responseBody)} lacks messageId`);
  }
  return responseBody.messageId;
}

/**
 * sasConnectionString is the device connection string a provisioned
 * symmetric-key device builds from its registration result, plus
 * GatewayHostName = the MQTT listener's host:port (see the file comment).
 */
function sasConnectionString(cfg, hub, deviceId, key) {
  return `HostName=${hub};DeviceId=${deviceId};SharedAccessKey=${key};GatewayHostName=${cfg.mqttHostPort}`;
}

/**
 * openDevice creates an azure-iot-device Client over azure-iot-device-mqtt
 * for a provisioned device and opens it (bounded). cred is {key} for a
 * symmetric-key device or {cert, key} (PEM chain, leaf first) for X.509.
 */
async function openDevice(cfg, hub, deviceId, cred) {
  let client;
  if (cred.cert) {
    const auth = new X509AuthenticationProvider({
      host: hub,
      deviceId,
      gatewayHostName: cfg.mqttHostPort,
      x509: { cert: cred.cert, key: cred.key },
    });
    client = DeviceClient.fromAuthenticationProvider(auth, DeviceMqtt);
  } else {
    client = DeviceClient.fromConnectionString(sasConnectionString(cfg, hub, deviceId, cred.key), DeviceMqtt);
  }
  // An 'error' event without a listener would crash the test process;
  // report it instead (the scenario then fails on its own assertion).
  client.on('error', (err) => console.error(`${deviceId} client error: ${m.describeError(err)}`));
  try {
    await m.bounded(client.setOptions({ ca: cfg.ca }), `${deviceId} setOptions`);
    await m.bounded(client.open(), `${deviceId} open over MQTT`);
  } catch (err) {
    await closeDevice(client);
    throw err;
  }
  return client;
}

/** closeDevice closes a device client, bounded, ignoring errors. */
async function closeDevice(client) {
  if (client) {
    await m.withTimeout(client.close(), 10000, 'device close').catch(() => {});
  }
}

/**
 * expectEvent listens for `event` on emitter, runs action, then waits (up
 * to CALL_TIMEOUT_MS) for an emission whose arguments satisfy match. It
 * returns {result: action's result, args: the event's arguments}. The
 * listener is always removed, also when action fails.
 *
 * match runs when the event is emitted, not later: the SDKs emit live
 * objects (the Twin emits its own desired-properties object, which later
 * patches mutate), so only the state at emission time tells the events
 * apart.
 */
async function expectEvent(emitter, event, match, what, action) {
  let found;
  const matched = new Promise((resolve) => {
    found = resolve;
  });
  const listener = (...args) => {
    let ok = false;
    try {
      ok = match(...args);
    } catch {
      // An event of another shape is not the one awaited.
    }
    if (ok) {
      found(args);
    }
  };
  emitter.on(event, listener);
  try {
    const result = await action();
    const args = await m.withTimeout(matched, m.CALL_TIMEOUT_MS, what);
    return { result, args };
  } finally {
    emitter.removeListener(event, listener);
  }
}

/**
 * eventually polls check (an async function returning {ok, seen}) at most
 * `tries` times, 250 ms apart, for state the hub converges to
 * asynchronously (presence records, the deployment engine). It returns
 * check's last result once ok, or throws with the last `seen`.
 */
async function eventually(check, what, tries = 120) {
  let last;
  for (let i = 0; i < tries; i++) {
    last = await check();
    if (last && last.ok) {
      return last;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${what}: not reached after ${tries} polls 250 ms apart; last seen ${JSON.stringify(last && last.seen)}`);
}

module.exports = {
  Message,
  closeDevice,
  eventually,
  expectEvent,
  newHubService,
  openDevice,
  readEvents,
  sasConnectionString,
  sendC2D,
  waitForEvent,
};
