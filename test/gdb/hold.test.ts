import t from 'tap';
import { createServer, type Socket } from 'node:net';
import { encodePacket, PacketParser, parseStop, parseThreadList } from '../../harness/vm/gdb/packet.ts';
import { GdbClient } from '../../harness/vm/gdb/client.ts';
import { GdbProtocolError, GdbStateError } from '../../harness/vm/gdb/errors.ts';
import { SymbolTable } from '../../harness/vm/gdb/symbols.ts';
import { GdbHoldDriver, describeHold, writerProgress } from '../../harness/crash/points/hold.ts';
import { encodeCommand } from '../../harness/vm/agent/protocol.ts';
import type { Machine } from '../../harness/vm/machine/machine.ts';
import type { HoldPoint } from '../../harness/scenario/model.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

// Holding one vCPU while the others run: thread ids in stop replies and
// thread lists, per-thread vCont, and the hold driver's ends (marker, limit,
// not hit, no other vCPU) against a scripted two-vCPU stub. The same on a
// real QEMU and the stock kernel: test/vm/hold.test.ts.

t.test('stop replies name the vCPU that stopped; thread lists in both forms', async (t) => {
  t.equal(parseStop('T05thread:02;').thread, 2);
  t.equal(parseStop('T05swbreak:;thread:0a;').thread, 10, 'after another field too, in hex');
  t.equal(parseStop('T05thread:p1.2;').thread, 2, 'the multiprocess form');
  t.equal(parseStop('T02thread:01;').signal, 2);
  t.equal(parseStop('S05').thread, undefined, 'an S reply names none');
  t.equal(parseStop('T05core:01;').thread, undefined, 'a field that only ends in "thread" is not one');
  t.same(parseThreadList('m1,2'), [1, 2]);
  t.same(parseThreadList('mp01.01,p01.02'), [1, 2]);
  t.same(parseThreadList('l'), []);
  t.throws(() => parseThreadList('OK'), GdbProtocolError);
});

t.test('the agent protocol carries a pin and a progress request before the command', async (t) => {
  t.equal(encodeCommand(3, 'migrate', ['0', '/f'], { hold: true, cpu: 0 }), '3 hold cpu=0 migrate MA== L2Y=');
  t.equal(encodeCommand(4, 'writer', ['a'], { cpu: 1, progress: 1 }), '4 cpu=1 progress=1 writer YQ==');
  t.equal(encodeCommand(5, 'sync', [], true), '5 hold sync', 'the old boolean form still means hold');
  t.throws(() => encodeCommand(6, 'sync', [], { cpu: -1 }), RangeError);
});

t.test('writer progress on the console: the last count per mode, summed', async (t) => {
  t.equal(writerProgress('boot\n'), 0);
  t.equal(
    writerProgress(
      '[ 3.1] qcrash-io: mmap-holes stored=4\n[ 3.2] qcrash-io: mmap-holes stored=5\n[ 3.3] qcrash-io: odirect rounds=2\n',
    ),
    7,
  );
});

/** A scripted two-vCPU gdbstub: every packet seen, and what the interrupt byte did. */
async function stub(tmp: TempDir, reply: (payload: string) => string | undefined, onInterrupt: () => string | undefined) {
  const path = tmp.join(`gdb-${Math.random().toString(16).slice(2)}.sock`);
  const seen: string[] = [];
  let sock: Socket | undefined;
  const all: Socket[] = [];
  const server = createServer((s) => {
    sock = s;
    all.push(s);
    s.setEncoding('latin1');
    const parser = new PacketParser();
    s.on('data', (d: string) => {
      if (d.includes('\x03')) {
        seen.push('^C');
        const r = onInterrupt();
        if (r !== undefined) s.write(encodePacket(r));
      }
      for (const f of parser.push(d.replace(/\x03/g, ''))) {
        if (f.kind !== 'packet') continue;
        seen.push(f.payload);
        const r = reply(f.payload);
        s.write(`+${r === undefined ? '' : encodePacket(r)}`);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    seen,
    push: (payload: string) => sock?.write(encodePacket(payload)),
    close: () =>
      new Promise((r) => {
        for (const x of all) x.destroy();
        server.close(r);
      }),
  };
}

const syms = SymbolTable.parse('ffffffff81000000 T ext4_ext_migrate\nffffffff81001000 T other\n');
const bp = 0xffffffff81000566n;
/** A 'g' reply with rip = `rip`. */
const regs = (rip: bigint) => {
  const b = Buffer.alloc(17 * 8);
  b.writeBigUInt64LE(rip, 16 * 8);
  return b.toString('hex');
};
const point = (over: Partial<HoldPoint> = {}): HoldPoint => ({
  step: 'migrate',
  symbol: 'ext4_ext_migrate',
  offset: 0x566,
  hit: 1,
  until: { marker: 'stores', count: 8 },
  limitMs: 300,
  ...over,
});

/**
 * A guest of `threads` vCPUs whose thread 1 hits the breakpoint `hits`
 * times, each 20 ms after a continue; while only the other vCPUs run, the
 * writer stores `storesPerPoll` more each 10 ms (0: it waits for the held task).
 */
async function guest(tmp: TempDir, o: { threads?: number[]; storesPerTick?: number; hitAfterMs?: number | undefined } = {}) {
  let stores = 4;
  let ticker: NodeJS.Timeout | undefined;
  const threads = o.threads ?? [1, 2];
  let s!: Awaited<ReturnType<typeof stub>>;
  s = await stub(
    tmp,
    (p) => {
      if (p.startsWith('qSupported')) return 'PacketSize=1000';
      if (p === 'c') {
        if (o.hitAfterMs !== undefined) setTimeout(() => s.push('T05thread:01;'), o.hitAfterMs);
        return undefined;
      }
      if (p === 's') return 'T05thread:01;';
      if (p === 'g') return regs(bp);
      if (p === 'qfThreadInfo') return `m${threads.map((x) => x.toString(16)).join(',')}`;
      if (p === 'qsThreadInfo') return 'l';
      if (p === 'qC') return 'QC01';
      const m = /^m([0-9a-f]+),([0-9a-f]+)$/.exec(p);
      if (m) {
        // ext4_ext_migrate's code: a call of `other` at +0x10 and +0x40 (the last one counts), a stray E8 at +0x80.
        const at = BigInt(`0x${m[1]}`) - 0xffffffff81000000n;
        const code = Buffer.alloc(0x1000, 0x90);
        for (const off of [0x10, 0x40]) {
          code[off] = 0xe8;
          code.writeInt32LE(0x1000 - (off + 5), off + 1);
        }
        code[0x80] = 0xe8;
        code.writeInt32LE(0x1234, 0x81);
        return code.subarray(Number(at), Number(at) + parseInt(m[2]!, 16)).toString('hex');
      }
      if (p.startsWith('vCont;')) {
        ticker = setInterval(() => (stores += o.storesPerTick ?? 0), 10);
        ticker.unref();
        return undefined;
      }
      return 'OK';
    },
    () => {
      clearInterval(ticker);
      return 'T02thread:02;';
    },
  );
  const machine = {
    gdbSocket: s.path,
    consoleText: async () => `qcrash-io: mmap-holes stored=${stores}\n`,
  } as unknown as Machine;
  return { s, machine, stores: () => stores };
}

t.test('a hold: only the other vCPU runs until the writer reaches the marker, then all run again', async (t) => {
  const tmp = await TempDir.create('gdb-hold-test');
  t.teardown(() => tmp.remove());
  const g = await guest(tmp, { storesPerTick: 1, hitAfterMs: 20 });
  await using driver = new GdbHoldDriver(g.machine, syms, { pollMs: 5, gdbTimeoutMs: 1000 });
  await driver.arm(point());
  const h = await driver.run(new Promise(() => {}));
  t.match(h, {
    reached: true,
    ended: 'marker',
    markerReached: true,
    heldCpu: 0,
    ranCpus: [1],
    symbol: 'ext4_ext_migrate+0x566',
    progress: { before: 4, wanted: 12 },
  });
  t.ok(h.progress!.after >= 12, 'the writer got to the marker');
  const seen = g.s.seen.filter((p) => !p.startsWith('qSupported'));
  t.same(
    seen,
    ['Z0,ffffffff81000566,1', 'c', 'g', 'z0,ffffffff81000566,1', 'qfThreadInfo', 'qsThreadInfo', 'vCont;c:2', '^C', 'D'],
    'breakpoint out before the others run; only thread 2 resumed; an interrupt and a detach end the hold',
  );
  t.match(h.line, /^vCPU 0 held at ext4_ext_migrate\+0x566 for \d+ ms while vCPU 1 ran: marker reached/);
  await g.s.close();
});

t.test('a hold whose other vCPU makes no progress ends at its limit and says so', async (t) => {
  const tmp = await TempDir.create('gdb-hold-test');
  t.teardown(() => tmp.remove());
  const g = await guest(tmp, { storesPerTick: 0, hitAfterMs: 20 });
  await using driver = new GdbHoldDriver(g.machine, syms, { pollMs: 5, gdbTimeoutMs: 1000 });
  await driver.arm(point({ limitMs: 250 }));
  const t0 = performance.now();
  const h = await driver.run(new Promise(() => {}));
  const took = performance.now() - t0;
  t.match(h, { reached: true, ended: 'limit', markerReached: false, progress: { before: 4, after: 4, wanted: 12 } });
  t.ok(h.heldMs! >= 250 && took < 2000, `held for its limit and no longer (${Math.round(h.heldMs!)} ms)`);
  t.match(h.line, /marker not reached, the hold ended at its limit .*the other vCPU made no progress/);
  t.same(g.s.seen.slice(-2), ['^C', 'D'], 'every vCPU resumed all the same');
  await g.s.close();
});

t.test('the n-th hit: earlier hits are stepped over with every vCPU running', async (t) => {
  const tmp = await TempDir.create('gdb-hold-test');
  t.teardown(() => tmp.remove());
  const g = await guest(tmp, { storesPerTick: 1, hitAfterMs: 10 });
  await using driver = new GdbHoldDriver(g.machine, syms, { pollMs: 5, gdbTimeoutMs: 1000 });
  await driver.arm(point({ hit: 2 }));
  const h = await driver.run(new Promise(() => {}));
  t.match(h, { reached: true, ended: 'marker' });
  const seen = g.s.seen.filter((p) => !p.startsWith('qSupported'));
  t.same(seen.slice(0, 8), ['Z0,ffffffff81000566,1', 'c', 'g', 'z0,ffffffff81000566,1', 's', 'Z0,ffffffff81000566,1', 'c', 'g']);
  await g.s.close();
});

t.test('a point the step never hits: the breakpoint is taken out and the guest runs on', async (t) => {
  const tmp = await TempDir.create('gdb-hold-test');
  t.teardown(() => tmp.remove());
  const g = await guest(tmp, { hitAfterMs: undefined });
  await using driver = new GdbHoldDriver(g.machine, syms, { pollMs: 5, gdbTimeoutMs: 1000 });
  await driver.arm(point());
  const h = await driver.run(new Promise((r) => setTimeout(r, 30)));
  t.match(h, { reached: false, ended: 'not-hit', markerReached: false });
  t.same(g.s.seen.slice(-2), ['^C', 'D'], 'stopped, then detached: QEMU removes the breakpoint and resumes');
  t.match(h.line, /not hit, the step finished first/);
  await g.s.close();
});

t.test('one vCPU: nothing to run beside the held one, so nothing is held', async (t) => {
  const tmp = await TempDir.create('gdb-hold-test');
  t.teardown(() => tmp.remove());
  const g = await guest(tmp, { threads: [1], hitAfterMs: 10 });
  await using driver = new GdbHoldDriver(g.machine, syms, { pollMs: 5, gdbTimeoutMs: 1000 });
  await driver.arm(point());
  const h = await driver.run(new Promise(() => {}));
  t.match(h, { reached: true, ended: 'no-other-cpu', markerReached: false });
  t.notOk(
    g.s.seen.some((p) => p.startsWith('vCont')),
    'no vCont: an empty one would resume every vCPU',
  );
  t.equal(g.s.seen.at(-1), 'D');
  await g.s.close();
});

t.test('after a call: the return site of the last direct call of the callee', async (t) => {
  const tmp = await TempDir.create('gdb-hold-test');
  t.teardown(() => tmp.remove());
  const g = await guest(tmp, { storesPerTick: 1 });
  await using driver = new GdbHoldDriver(g.machine, syms, { pollMs: 5, gdbTimeoutMs: 1000 });
  await driver.arm(point({ offset: 0, afterCall: 'other' }));
  t.equal(g.s.seen.filter((p) => p.startsWith('m')).length, 4, 'the function read up to the next symbol, 1 KiB at a time');
  t.equal(
    g.s.seen.find((p) => p.startsWith('Z0')),
    'Z0,ffffffff81000045,1',
    'after the second call (+0x40, 5 bytes), not the first, nor a stray E8',
  );
  await t.rejects(
    new GdbHoldDriver(g.machine, syms).arm(point({ afterCall: 'ext4_ext_migrate' })),
    /no direct call of ext4_ext_migrate/,
  );
  await g.s.close();
});

t.test('the client refuses an empty vCont and reads the current thread', async (t) => {
  const tmp = await TempDir.create('gdb-hold-test');
  t.teardown(() => tmp.remove());
  const g = await guest(tmp, { threads: [1, 2, 3] });
  const gdb = new GdbClient();
  await gdb.connect(g.s.path, 2000);
  t.same(await gdb.threads(), [1, 2, 3]);
  t.equal(await gdb.currentThread(), 1);
  t.throws(() => gdb.continueThreads([]), GdbStateError);
  gdb.continueThreads([2, 3]);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(g.s.seen.at(-1), 'vCont;c:2;c:3', 'one action per thread, ids in hex');
  t.equal(gdb.targetState, 'running');
  t.throws(() => gdb.continueThreads([2]), GdbStateError, 'not while running');
  gdb.close();
  await g.s.close();
});

t.test('describeHold: one line per ending', async (t) => {
  const base = { step: 'migrate', point: 'f+0x1', hit: 1 };
  t.equal(
    describeHold({ ...base, reached: false, ended: 'not-hit', markerReached: false }),
    'hold at f+0x1 (hit 1): not hit, the step finished first',
  );
  t.match(
    describeHold({
      ...base,
      reached: true,
      ended: 'limit',
      markerReached: false,
      heldCpu: 0,
      ranCpus: [1],
      heldMs: 3000,
      progress: { before: 2, after: 2, wanted: 10 },
    }),
    /ended at its limit \(writer progress 2 -> 2, marker at 10: the other vCPU made no progress/,
  );
  t.match(
    describeHold({
      ...base,
      reached: true,
      ended: 'limit',
      markerReached: false,
      heldCpu: 1,
      ranCpus: [0],
      heldMs: 500,
      progress: { before: 2, after: 9 },
    }),
    /held for its whole limit/,
  );
});
