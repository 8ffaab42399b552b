import t from 'tap';
import { readFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import {
  checksum,
  decodePayload,
  encodePacket,
  escapeBinary,
  PacketParser,
  parseStop,
  type Frame,
} from '../../harness/vm/gdb/packet.ts';
import { GdbClient } from '../../harness/vm/gdb/client.ts';
import { GdbDisconnectedError, GdbProtocolError, GdbStateError } from '../../harness/vm/gdb/errors.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

// GDB remote protocol framing and the client's reply/stop routing. The
// byte stream is a real QEMU 7.2 gdbstub session
// (test/fixtures/vm/capture-gdb-session.ts); the client's edge cases run
// against a scripted stub. The client on a real QEMU: kernel-point.test.ts.
const session = (await readFile(new URL('../fixtures/vm/gdb-session-qemu-7.2.txt', import.meta.url), 'utf8'))
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as { dir: 'send' | 'recv'; data: string });
const inbound = session
  .filter((r) => r.dir === 'recv')
  .map((r) => r.data)
  .join('');

t.test('checksums, escapes and run-length encoding', async (t) => {
  t.equal(checksum('OK'), '9a');
  t.equal(encodePacket('qSupported:swbreak+;hwbreak+'), session[0]!.data, 'the bytes sent to QEMU, byte for byte');
  t.equal(escapeBinary('a#b$c}d*e'), 'a}\x03b}\x04c}]d}\x0ae');
  t.equal(decodePayload(escapeBinary('a#b$c}d*e')), 'a#b$c}d*e', 'escaping round-trips');
  t.equal(decodePayload('0* '), '0000', '"0* " is "0" and three more');
  t.equal(decodePayload('x*"y'), 'xxxxxxy', '" is 34 - 29 = 5 more');
  t.throws(() => decodePayload('*!'), GdbProtocolError, 'a repeat with nothing to repeat');
  t.throws(() => decodePayload('ab}'), GdbProtocolError, 'an escape at the end');
});

t.test('the real session parses into the same frames however the stream is cut', async (t) => {
  const whole = new PacketParser().push(inbound);
  const packets = whole.filter((f): f is Extract<Frame, { kind: 'packet' }> => f.kind === 'packet');
  t.ok(
    packets.every((p) => p.valid),
    'every checksum from QEMU verifies',
  );
  t.same(
    packets.map((p) => p.payload.slice(0, 3)),
    ['T02', 'Pac', 'T05', '40a', '488', 'OK', 'OK', 'T02', 'OK'],
  );
  t.equal(parseStop(packets[0]!.payload).signal, 2, 'the attach stop: SIGINT');
  t.equal(parseStop(packets[2]!.payload).signal, 5, "'?' after the attach: SIGTRAP");
  t.equal(packets[3]!.payload.length % 2, 0, "the 'g' reply is whole bytes of hex");
  t.equal(
    whole.filter((f) => f.kind === 'ack').length,
    (inbound.match(/\+/g) ?? []).length -
      (
        packets
          .map((p) => p.raw)
          .join('')
          .match(/\+/g) ?? []
      ).length,
    'every ack outside a packet is seen',
  );
  for (let cut = 1; cut < inbound.length; cut += 7) {
    const p = new PacketParser();
    const frames = [...p.push(inbound.slice(0, cut)), ...p.push(inbound.slice(cut))];
    if (JSON.stringify(frames) !== JSON.stringify(whole)) {
      t.fail(`cut at ${cut} changes the frames`);
      return;
    }
  }
  t.pass('cut at every 7th byte: the same frames');
});

t.test('a bad checksum is reported, noise between frames is dropped', async (t) => {
  const frames = new PacketParser().push('garbage$OK#00$OK#9a%Stop:T05#00');
  t.match(frames, [{ kind: 'packet', valid: false }, { kind: 'packet', valid: true, payload: 'OK' }, { kind: 'notification' }]);
});

/** A scripted stub: answers packets as `reply` says; `push` sends bytes unasked. */
async function stub(tmp: TempDir, reply: (payload: string, sock: Socket) => string | undefined) {
  const path = tmp.join(`gdb-${Math.random().toString(16).slice(2)}.sock`);
  let sock!: Socket;
  const server = createServer((s) => {
    sock = s;
    s.setEncoding('latin1');
    const parser = new PacketParser();
    s.on('data', (d: string) => {
      for (const f of parser.push(d))
        if (f.kind === 'packet') {
          const r = reply(f.payload, s);
          if (r !== undefined) s.write(`+${r}`);
        }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    push: (raw: string) => sock.write(raw),
    close: () =>
      new Promise((r) => {
        sock?.destroy();
        server.close(r);
      }),
  };
}

t.test('the client: attach stop aside, requests refused while the target runs, stops on their own channel', async (t) => {
  const tmp = await TempDir.create('gdb-packet-test');
  t.teardown(() => tmp.remove());
  const s = await stub(tmp, (p) => {
    // QEMU's habit, as captured: the attach stop and the qSupported answer in one write.
    if (p.startsWith('qSupported'))
      return `${encodePacket('T02thread:01;')}${encodePacket('PacketSize=1000;qXfer:features:read+')}`;
    if (p === 'g') return encodePacket('00'.repeat(8 * 17));
    if (p === 'c') return '';
    return encodePacket('OK');
  });
  const gdb = new GdbClient();
  await gdb.connect(s.path, 2000);
  t.equal(gdb.attachStop?.signal, 2, 'the unsolicited stop is kept as the attach stop, not taken as the answer');
  t.same(await gdb.registers(), { rip: 0n, rsp: 0n });
  gdb.continue();
  t.equal(gdb.targetState, 'running');
  await t.rejects(gdb.request('g'), GdbStateError, 'a request while the guest runs is refused (QEMU would drop it)');
  const stopped = gdb.waitStop(2000);
  s.push(encodePacket('T05thread:01;'));
  t.match(await stopped, { signal: 5, kind: 'signal' }, 'the stop arrives on the stop channel');
  t.equal(gdb.targetState, 'stopped');
  t.equal(await gdb.request('z0,1,1'), 'OK', 'and requests work again');
  gdb.continue();
  const lost = gdb.waitStop(2000);
  await s.close();
  await t.rejects(lost, GdbDisconnectedError, 'a stop that can no longer come fails when the connection drops');
  t.match(gdb.transcript.toText(), /> c\n/, 'the transcript has what was sent');
});
