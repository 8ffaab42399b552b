import t from 'tap';
import { readFile } from 'node:fs/promises';
import { checksum, encodeRunLength, escapeBinary, expandRunLength, frame, PacketReader, unescapeBinary } from '../../harness/vm/gdb-packet.ts';
import { isStopReply, parseStopReply, parseThreadId, formatThreadId } from '../../harness/vm/gdb-stop.ts';
import { RegisterLayout } from '../../harness/vm/gdb-registers.ts';
import { GdbProtocolError } from '../../harness/vm/gdb-errors.ts';

const fixture = (name: string) => readFile(new URL(`../fixtures/gdb/${name}`, import.meta.url), 'latin1');

t.test('frames carry the modulo-256 checksum as two lower-case hex digits', async (t) => {
  // Frames exactly as QEMU 7.2 sent them (test/fixtures/gdb/qemu-7.2-session.txt).
  t.equal(frame('OK'), '$OK#9a');
  t.equal(frame('E22'), '$E22#a9');
  t.equal(frame('T05thread:p01.01;'), '$T05thread:p01.01;#06');
  t.equal(frame(''), '$#00');
  t.equal(checksum('\xff\x02'), '01', 'wraps at 256');
});

t.test('escaping: # $ } * become } and the byte xor 0x20, and come back', async (t) => {
  const raw = 'a#b$c}d*e\x00\xff';
  const esc = escapeBinary(raw);
  t.equal(esc, 'a}\x03b}\x04c}]d}\x0ae\x00\xff');
  t.notMatch(esc, /[#$*]/, 'no frame characters left');
  t.equal(unescapeBinary(esc), raw);
  t.throws(() => unescapeBinary('abc}'), GdbProtocolError, 'an escape at the very end is malformed');
});

t.test('run-length encoding: X*N repeats X code(N)-29 more times', async (t) => {
  t.equal(expandRunLength('0* '), '0000', "' ' (32) = 3 more");
  t.equal(expandRunLength('a*"b'), 'aaaaaab', 'a double quote (34) = 5 more');
  t.equal(expandRunLength('no stars'), 'no stars');
  t.throws(() => expandRunLength('*!'), GdbProtocolError, 'nothing to repeat');
  t.throws(() => expandRunLength('0*'), GdbProtocolError, 'missing count');
  t.throws(() => expandRunLength('0*\x10'), GdbProtocolError, 'count below 3');
  // Round trip over the kind of data a `g` reply has: long zero runs, and
  // runs of 7 and 8 whose natural count characters would be '#' and '$'.
  for (const s of ['0'.repeat(1216), 'ab' + 'f'.repeat(7) + 'c' + 'e'.repeat(8) + '1'.repeat(200), 'x']) {
    const enc = encodeRunLength(s);
    t.notMatch(enc, /[#$]/);
    t.equal(expandRunLength(enc), s);
  }
  t.ok(encodeRunLength('0'.repeat(1216)).length < 60, 'zeros compress');
});

t.test('the reader splits acks, naks, interrupts and frames across arbitrary chunks', async (t) => {
  const wire = '+$T02thread:01;#04garbage+-\x03$OK#9a$bad#00%Stop:T05#xx';
  for (const size of [1, 2, 3, 7, wire.length]) {
    const r = new PacketReader();
    const events = [];
    for (let i = 0; i < wire.length; i += size) events.push(...r.push(wire.slice(i, i + size)));
    t.same(
      events.map((e) => (e.type === 'packet' ? `${e.notification ? '%' : '$'}${e.payload}:${e.checksumOk}` : e.type)),
      ['ack', '$T02thread:01;:true', 'ack', 'nak', 'interrupt', '$OK:true', '$bad:false', '%Stop:T05:false'],
      `chunks of ${size}`,
    );
    t.equal(r.pending, '');
  }
  const r = new PacketReader();
  t.same(r.push('$OK#9'), [], 'incomplete checksum waits');
  t.equal(r.pending, '$OK#9');
  t.equal(r.push('a').length, 1);
});

t.test('stop replies: signal, thread in both dialects, registers, reasons, exits', async (t) => {
  const a = parseStopReply('T02thread:01;');
  t.equal(a.kind, 'stopped');
  t.equal(a.signal, 2);
  t.same(a.thread, { tid: 1 });
  const b = parseStopReply('T05thread:p01.02;swbreak:;06:1122334455667788;');
  t.equal(b.signal, 5);
  t.same(b.thread, { pid: 1, tid: 2 });
  t.equal(b.registers.get(6), '1122334455667788');
  t.ok(b.reasons.has('swbreak'));
  t.equal(parseStopReply('S05').signal, 5);
  const w = parseStopReply('W00;process:1');
  t.equal(w.kind, 'exited');
  t.same(w.thread, { pid: 1, tid: -1 });
  t.equal(parseStopReply('X09').kind, 'terminated');
  for (const notStop of ['OK', 'E22', '', 'l<target/>', 'm01', '0123', 'QCp01.01', 'PacketSize=1000']) t.notOk(isStopReply(notStop), notStop);
  t.throws(() => parseStopReply('OK'), GdbProtocolError);
});

t.test('thread ids parse and format in plain and multiprocess form', async (t) => {
  t.same(parseThreadId('p01.01'), { pid: 1, tid: 1 });
  t.same(parseThreadId('p1.-1'), { pid: 1, tid: -1 });
  t.same(parseThreadId('0a'), { tid: 10 });
  t.equal(formatThreadId({ pid: 1, tid: 2 }, true), 'p01.02');
  t.equal(formatThreadId({ tid: 2 }, false), '02');
  t.throws(() => parseThreadId('zz'), GdbProtocolError);
});

t.test('register layout: a real QEMU 7.2 `g` reply decodes with rip at register 16', async (t) => {
  // Captured at a breakpoint on do_sys_openat2 (0xffffffff8134a350), stock 6.1 kernel, TCG.
  const g = (await fixture('qemu-7.2-g-at-do_sys_openat2.hex')).trim();
  t.equal(g.length, 1216, '608 bytes of registers');
  const regs = RegisterLayout.x86_64().decodeG(g);
  t.equal(regs.get('rip'), 0xffffffff8134a350n);
  t.ok(regs.get('rsp')! >= 0xffff800000000000n, 'rsp is a kernel stack address');
  t.equal(regs.get('cs'), 0x10n, 'kernel code segment');
  t.equal(regs.get('ss'), 0x18n);
  t.notOk(regs.has('xmm0'), 'wide registers are skipped');
  const layout = RegisterLayout.x86_64();
  t.equal(layout.get('rip').regnum, 16, '`p10` reads rip');
  t.equal(layout.get('rsp').regnum, 7);
  t.equal(layout.registers.reduce((n, r) => n + r.bitsize / 8, 0), 608, 'the layout covers the whole `g` reply');
});

t.test("register layout from QEMU's own target description matches the built-in one", async (t) => {
  const docs = new Map([
    ['target.xml', await fixture('qemu-7.2-target.xml')],
    ['i386-64bit.xml', await fixture('qemu-7.2-i386-64bit.xml')],
  ]);
  t.same(RegisterLayout.includes(docs.get('target.xml')!), ['i386-64bit.xml']);
  const fromXml = RegisterLayout.fromTargetXml(docs);
  const builtin = RegisterLayout.x86_64();
  const core = (l: RegisterLayout) => l.registers.filter((r) => r.regnum < builtin.registers.length).map((r) => `${r.regnum}:${r.name}:${r.bitsize}`);
  t.same(core(fromXml), core(builtin));
  t.throws(() => RegisterLayout.fromTargetXml(new Map([['target.xml', '<xi:include href="missing.xml"/>']])), GdbProtocolError);
});
