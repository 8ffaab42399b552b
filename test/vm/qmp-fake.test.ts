import t from 'tap';
import { QmpClient } from '../../harness/vm/qmp/client.ts';
import {
  QmpCommandError,
  QmpDisconnectedError,
  QmpError,
  QmpProtocolError,
  QmpStateError,
  QmpTimeoutError,
} from '../../harness/vm/qmp/errors.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeQmpServer, type FakeQmpOptions } from './fake-qmp-server.ts';

// Protocol edge cases against a scripted server: QEMU itself never replies
// out of order or sends garbage on demand. Real QEMU: qmp-real.test.ts.
const tmp = await TempDir.create('qmp-fake-test');
t.teardown(() => tmp.remove());
let n = 0;

async function pair(t: { teardown(fn: () => unknown): void }, opts: FakeQmpOptions = {}) {
  const server = await FakeQmpServer.listen(tmp.join(`qmp-${n++}.sock`), opts);
  const qmp = new QmpClient();
  t.teardown(async () => {
    qmp.close();
    await server.close();
  });
  return { server, qmp };
}

t.test('connect reads the greeting and negotiates capabilities', async (t) => {
  const { server, qmp } = await pair(t);
  t.equal(qmp.state, 'idle');
  await qmp.connect(server.path, 2000);
  t.equal(qmp.state, 'running');
  t.equal(qmp.greeting?.QMP.version.qemu.major, 7);
  t.match(server.received, [{ execute: 'qmp_capabilities' }]);
  const entries = qmp
    .transcriptJsonl()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.match(entries, [
    { dir: 'recv', msg: { QMP: {} } },
    { dir: 'send', msg: { execute: 'qmp_capabilities' } },
    { dir: 'recv', msg: { return: {} } },
  ]);
  for (const e of entries)
    t.ok(typeof e.t === 'number' && typeof e.mono === 'number', 'every entry has wall and monotonic times');
  await t.rejects(qmp.connect(server.path, 100), QmpStateError, 'a client connects once');
});

t.test('replies that come back out of order reach their own callers', async (t) => {
  const held: Array<{ id?: unknown; execute: string }> = [];
  const { server, qmp } = await pair(t, {
    onCommand: (msg, conn) => {
      held.push(msg);
      if (held.length < 3) return;
      // Answer the last first, then the first, then the middle one.
      for (const i of [2, 0, 1]) conn.send({ return: { answer: held[i]!.execute }, id: held[i]!.id });
    },
  });
  await qmp.connect(server.path, 2000);
  const results = await Promise.all([qmp.execute('a'), qmp.execute('b'), qmp.execute('c')]);
  t.same(results, [{ answer: 'a' }, { answer: 'b' }, { answer: 'c' }]);
});

t.test('an error reply is a QmpCommandError keeping command, arguments and reply', async (t) => {
  const { server, qmp } = await pair(t, {
    onCommand: (msg, conn) => conn.send({ error: { class: 'DeviceNotFound', desc: "Device 'nope' not found" }, id: msg.id }),
  });
  await qmp.connect(server.path, 2000);
  const err = await qmp.execute('device_del', { id: 'nope' }).catch((e: unknown) => e);
  t.type(err, QmpCommandError);
  t.type(err, QmpError, 'under the QmpError root');
  const ce = err as QmpCommandError;
  t.equal(ce.command, 'device_del');
  t.same(ce.args, { id: 'nope' });
  t.same(ce.reply, { class: 'DeviceNotFound', desc: "Device 'nope' not found" });
  t.equal(qmp.state, 'running', 'an error reply does not end the connection');
});

t.test('a dropped socket fails every pending call, later calls and event waiters', async (t) => {
  let seen = 0;
  const { server, qmp } = await pair(t, {
    onCommand: (_msg, conn) => {
      if (++seen === 2) conn.drop();
    },
  });
  await qmp.connect(server.path, 2000);
  const waiting = qmp.waitEvent('SHUTDOWN', 5000);
  const calls = [qmp.execute('first'), qmp.execute('second')];
  for (const c of calls) await t.rejects(c, QmpDisconnectedError);
  const e = (await calls[0]!.catch((x: unknown) => x)) as QmpDisconnectedError;
  t.match(e.message, /reply to first/, 'the error names the call that was pending');
  await t.rejects(waiting, QmpDisconnectedError, 'an event waiter fails too');
  t.equal(qmp.state, 'closed');
  await t.rejects(qmp.execute('third'), QmpDisconnectedError, 'nothing is sent after the drop');
  t.equal(server.received.length, 3, 'qmp_capabilities, first, second: third never went out');
});

t.test('a garbage line ends the connection with a protocol error as the cause', async (t) => {
  const { server, qmp } = await pair(t, {
    onCommand: (_msg, conn) => conn.sendRaw('this is not json\n'),
  });
  await qmp.connect(server.path, 2000);
  const err = (await qmp.execute('query-status').catch((e: unknown) => e)) as QmpDisconnectedError;
  t.type(err, QmpDisconnectedError);
  t.type(err.cause, QmpProtocolError);
  t.equal((err.cause as QmpProtocolError).received, 'this is not json');
  t.type(qmp.disconnectCause, QmpProtocolError);
  t.equal(qmp.state, 'closed');
  t.match(qmp.transcriptJsonl(), /"raw":"this is not json"/, 'the garbage is in the transcript verbatim');
});

t.test('a reply without an id is a protocol error', async (t) => {
  const { server, qmp } = await pair(t, {
    onCommand: (_msg, conn) => conn.send({ error: { class: 'GenericError', desc: 'JSON parse error' } }),
  });
  await qmp.connect(server.path, 2000);
  const err = (await qmp.execute('x').catch((e: unknown) => e)) as QmpDisconnectedError;
  t.type(err.cause, QmpProtocolError);
  t.match(String(err.cause), /without an id/);
});

t.test('messages split across chunks and several messages in one chunk', async (t) => {
  const { server, qmp } = await pair(t, {
    onCommand: (msg, conn) => {
      const a = JSON.stringify({ event: 'STOP', timestamp: { seconds: 1, microseconds: 2 } });
      const b = JSON.stringify({ return: { ok: true }, id: msg.id });
      conn.sendRaw(a.slice(0, 5));
      setTimeout(() => conn.sendRaw(a.slice(5) + '\n' + b.slice(0, 7)), 20);
      setTimeout(() => conn.sendRaw(b.slice(7) + '\r\n'), 40);
    },
  });
  await qmp.connect(server.path, 2000);
  t.same(await qmp.execute('stop'), { ok: true });
  t.equal(qmp.eventLog[0]?.event, 'STOP');
});

t.test('events: waiters, positions in the log, and the stream', async (t) => {
  const { server, qmp } = await pair(t, {
    onCommand: (msg, conn) => {
      if (msg.execute === 'stop') {
        conn.send({ return: {}, id: msg.id });
        conn.send({ event: 'STOP' });
      } else if (msg.execute === 'cont') {
        conn.send({ return: {}, id: msg.id });
        setTimeout(() => conn.send({ event: 'RESUME' }), 30);
      } else if (msg.execute === 'quit') {
        conn.send({ return: {}, id: msg.id });
        conn.send({ event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
        conn.drop();
      }
    },
  });
  await qmp.connect(server.path, 2000);
  const stream = qmp.eventStream();
  await qmp.execute('stop');
  const stopAt = qmp.events.length;
  t.equal((await qmp.waitEvent('STOP', 1000)).event, 'STOP', 'an event that already arrived counts from position 0');
  await t.rejects(qmp.waitEvent('STOP', 100, stopAt), QmpTimeoutError, 'but not when waiting from a later position');
  const resumed = qmp.waitEvent('RESUME', 1000, qmp.events.length);
  await qmp.execute('cont');
  t.equal((await resumed).event, 'RESUME', 'a waiter sees an event that comes later');
  t.equal(await qmp.quit(2000), true, 'quit: QEMU closes the socket');
  const names: string[] = [];
  for await (const e of stream) names.push(e.event);
  t.same(names, ['STOP', 'RESUME', 'SHUTDOWN'], 'the stream yields every event in order and ends on close');
  t.match(qmp.eventLog.at(-1), { event: 'SHUTDOWN', data: { reason: 'host-qmp-quit' } });
});

t.test('a call that gets no reply times out; a late reply is ignored and the connection goes on', async (t) => {
  let first: unknown;
  const { server, qmp } = await pair(t, {
    onCommand: (msg, conn) => {
      if (msg.execute === 'slow') first = msg.id;
      else {
        conn.send({ return: 'late', id: first });
        conn.send({ return: 'fast', id: msg.id });
      }
    },
  });
  await qmp.connect(server.path, 2000);
  const err = (await qmp.execute('slow', undefined, 100).catch((e: unknown) => e)) as QmpTimeoutError;
  t.type(err, QmpTimeoutError);
  t.equal(err.timeoutMs, 100);
  t.equal(await qmp.execute('fast'), 'fast');
  t.equal(qmp.state, 'running');
  t.match(qmp.transcriptJsonl(), /"return":"late"/, 'the late reply is in the transcript');
});

t.test('a server that never greets: connect times out and the client is closed', async (t) => {
  const { server, qmp } = await pair(t, { greeting: null });
  await t.rejects(qmp.connect(server.path, 200), QmpTimeoutError);
  t.equal(qmp.state, 'closed');
});

t.test('a server whose first line is not a greeting is a protocol error', async (t) => {
  const { server, qmp } = await pair(t, { greeting: { event: 'STOP' } });
  const err = (await qmp.connect(server.path, 2000).catch((e: unknown) => e)) as QmpDisconnectedError;
  t.type(err, QmpDisconnectedError);
  t.type(err.cause, QmpProtocolError);
});

t.test('the run-state guard refuses commands before connect', async (t) => {
  const qmp = new QmpClient();
  await t.rejects(qmp.execute('query-status'), QmpStateError);
  qmp.close();
  await t.rejects(qmp.execute('query-status'), QmpDisconnectedError);
});
