// The pending list: interop scenarios for server features Muster does not
// have yet. Every scenario is written against the SDK as if the feature
// existed; while its title is listed here it is reported but not counted:
//
//   run: true   it runs as a node:test "todo": its outcome (ok / not ok) is
//               printed, a failure does not fail the run;
//   run: false  it is skipped, because without the feature it cannot end
//               quickly (e.g. an SDK that retries a refused connection for
//               minutes).
//
// To enable a scenario once the server has the feature, delete its entry.
// The Go harness lists pending scenarios separately and names those that
// already pass, so an entry that is no longer needed stands out.
'use strict';

const { it } = require('node:test');

/** PENDING maps a scenario title to why it is pending and whether it runs. */
const PENDING = new Map([
  ['azure-iothub Client.send delivers a C2D message to the device', {
    run: false,
    why: 'IoT Hub takes C2D sends over AMQP only and muster serve has no AMQP listener (hub-edge-protocol §10 q8); ' +
      'the SDK retries the refused AMQP connection for minutes. C2D is covered through POST /devices/{id}/messages/deviceBound',
  }],
]);

/**
 * scenario declares one test: a plain it() unless its title is pending.
 * Titles are matched exactly, so keep them unique within the suite.
 */
function scenario(title, fn) {
  const p = PENDING.get(title);
  if (!p) {
    return it(title, fn);
  }
  const note = `PENDING: ${p.why}`;
  return it(title, p.run ? { todo: note } : { skip: note }, fn);
}

module.exports = { PENDING, scenario };
