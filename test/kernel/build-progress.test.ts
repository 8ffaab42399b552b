import t from 'tap';
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { defaultRelinkObjects } from '../../harness/kernel/build-estimate.ts';
import {
  BuildProgress,
  compiledObject,
  dryRunCompiledObjects,
  formatDuration,
  streamProgressSink,
  type ProgressSink,
} from '../../harness/kernel/build-progress.ts';

// build-6.1-minimal-full.log.gz: the make bzImage part of build.log from a
// real first build of linux-source-6.1 with kernels/configs/minimal.config
// (qcrash's own build, 2 cores, about 8 minutes), cut where the third make
// (bzImage, after tinyconfig and olddefconfig) starts, gzipped.
// build-6.1-minimal-incremental.log: the same cut of a real incremental
// build (bisect test: only fs/ext4/migrate.c changed since the last build).
// make-n-6.1-minimal-fresh.txt.gz: `make -n -k bzImage` in an empty object
// dir with the same config, each command cut after its kbuild echo, other
// lines dropped except make's own and the quiet lines of objtool (which the
// dry run really builds), gzipped.
const fixture = async (name: string) =>
  gunzipSync(await readFile(new URL(`../fixtures/kernel/${name}`, import.meta.url)))
    .toString('utf8')
    .split('\n');
const buildLog = await fixture('build-6.1-minimal-full.log.gz');
const dryRun = await fixture('make-n-6.1-minimal-fresh.txt.gz');
const incrementalLog = (
  await readFile(new URL('../fixtures/kernel/build-6.1-minimal-incremental.log', import.meta.url), 'utf8')
).split('\n');
const compileLine = /^ {2}(CC|AS|HOSTCC|HOSTCXX|LD|AR) +/;

/** Plays the real log through a BuildProgress at an even pace over `buildMs`, like the real 8-minute build. */
function replay(estimate: number | undefined, opts: { buildMs?: number; tty?: boolean } = {}) {
  let now = 0;
  const lines: Array<{ text: string; kind: string; at: number }> = [];
  const sink: ProgressSink = (text, kind = 'log') => void lines.push({ text, kind, at: now });
  sink.tty = opts.tty ?? false;
  const p = new BuildProgress(estimate === undefined ? undefined : { objects: estimate, source: 'test' }, sink, {
    now: () => now,
  });
  const step = (opts.buildMs ?? 480_000) / buildLog.length;
  for (const l of buildLog) {
    now += step;
    p.line(l);
    if (Math.floor(now / 1000) !== Math.floor((now - step) / 1000)) p.tick();
  }
  p.finish(true);
  return { lines, compiled: p.compiled };
}

const percents = (lines: Array<{ text: string }>) =>
  lines
    .map((l) => /\((\d+)%\)/.exec(l.text)?.[1])
    .filter((x) => x !== undefined)
    .map(Number);

t.test('the real build compiled 937 objects: CC, AS and HOSTCC lines, nothing else', async (t) => {
  const objects = buildLog.map(compiledObject).filter((x) => x !== undefined);
  t.equal(objects.length, 937);
  t.equal(
    buildLog.filter((l) => /^ {2}CC /.test(l)).length +
      buildLog.filter((l) => /^ {2}AS /.test(l)).length +
      buildLog.filter((l) => /^ {2}HOSTCC /.test(l)).length,
    937,
  );
  t.ok(objects.includes('fs/ext4/migrate.o'));
  t.ok(
    objects.some((o) => o.endsWith('/tools/objtool/check.o')),
    'objtool, built by its own make, counts too',
  );
  t.equal(compiledObject('  AR      fs/ext4/built-in.a'), undefined);
  t.equal(compiledObject('  LD      vmlinux.o'), undefined);
  t.equal(compiledObject('Kernel: arch/x86/boot/bzImage is ready  (#1)'), undefined);
  t.equal(compiledObject("set -e;  echo '  CC      init/main.o';"), undefined, 'a dry-run command is not a compile');
});

t.test('make -n output: 873 compile steps listed, 22 objtool objects really built', async (t) => {
  t.equal(dryRun.flatMap(dryRunCompiledObjects).length, 873);
  t.equal(dryRun.filter((l) => compiledObject(l) !== undefined).length, 22);
  t.same(dryRunCompiledObjects("set -e;  echo '  CC      init/main.o';"), ['init/main.o']);
  t.same(dryRunCompiledObjects("set -e;  echo '  AR      init/built-in.a';"), []);
});

t.test('plain lines: one per tenth and a heartbeat, ending at 100% with the real count, never a CC line', async (t) => {
  const { lines, compiled } = replay(937);
  t.equal(compiled, 937);
  t.notOk(
    lines.some((l) => compileLine.test(l.text)),
    'no make output passes through',
  );
  t.match(lines[0]!.text, /about 937 objects to compile \(test\)/);
  const p = percents(lines);
  for (let d = 0; d <= 100; d += 10) t.ok(p.includes(d), `a line at ${d}%`);
  t.ok(
    p.every((x, i) => i === 0 || x >= p[i - 1]!),
    'never goes back',
  );
  t.equal(lines.at(-1)!.text, 'kernel build: 937/937 objects (100%), 8m00s');
  t.ok(lines.length <= 30, `${lines.length} lines for an 8-minute build`);
  const gaps = lines.slice(1).map((l, i) => l.at - lines[i]!.at);
  t.ok(Math.max(...gaps) <= 31_000 + (480_000 / buildLog.length) * 50, 'never silent much longer than the 30 s heartbeat');
  const half = lines.find((l) => /\(50%\)/.test(l.text))!;
  const eta = /ETA (\d+)m(\d+)s/.exec(half.text)!;
  const etaS = Number(eta[1]) * 60 + Number(eta[2]);
  t.ok(
    Math.abs(etaS - half.at / 1000) < 0.25 * (half.at / 1000),
    `at 50% the ETA (${etaS}s) is about the time spent (${Math.round(half.at / 1000)}s)`,
  );
});

t.test('an estimate too low stops at 99% and counts on; too high still ends at 100%; none counts without percent', async (t) => {
  const low = replay(873);
  const lp = percents(low.lines);
  t.equal(Math.max(...lp.slice(0, -1)), 99, 'at most 99% while make runs');
  t.equal(lp.at(-1), 100);
  t.ok(
    low.lines.some((l) => /\d+\/\d+\+ objects/.test(l.text)),
    'past the estimate the line says so',
  );
  const high = replay(1200);
  t.equal(high.lines.at(-1)!.text, 'kernel build: 937/937 objects (100%), 8m00s');
  const none = replay(undefined);
  t.match(none.lines[0]!.text, /no estimate/);
  t.match(none.lines[1]!.text, /kernel build: 0 objects compiled/);
  t.equal(none.lines.at(-1)!.text, 'kernel build: 937/937 objects (100%), 8m00s');
});

t.test('on a terminal: one line rewritten in place at most every 250 ms, then a final line', async (t) => {
  const { lines } = replay(937, { tty: true });
  const updates = lines.filter((l) => l.kind === 'progress');
  t.ok(updates.length > 100, `${updates.length} updates`);
  t.ok(updates.length <= 480_000 / 250 + 2, 'throttled');
  t.equal(lines.at(-1)!.kind, 'log');
  t.equal(lines.at(-1)!.text, 'kernel build: 937/937 objects (100%), 8m00s');
  t.notOk(lines.some((l) => compileLine.test(l.text)));

  let written = '';
  const out = { isTTY: true, columns: 60, write: (s: string) => ((written += s), true) } as unknown as NodeJS.WriteStream;
  const sink = streamProgressSink(out, 'qcrash: ');
  t.equal(sink.tty, true);
  sink('kernel build: 100/937 objects (10%), 50s, ETA 7m30s and a tail long enough to need cutting', 'progress');
  sink('kernel build: 200/937 objects (21%), 1m40s', 'progress');
  sink('kernel build: 937/937 objects (100%), 8m00s', 'log');
  const segments = written.split('\r\x1b[K').slice(1);
  t.equal(segments.length, 3, 'each line starts by clearing the one before');
  t.equal(
    segments[0],
    'qcrash: kernel build: 100/937 objects (10%), 50s, ETA 7m30s'.slice(0, 59),
    'cut to the terminal width (60 columns)',
  );
  t.equal(segments[1], 'qcrash: kernel build: 200/937 objects (21%), 1m40s');
  t.equal(segments[2], 'qcrash: kernel build: 937/937 objects (100%), 8m00s\n', 'the last line stays');
  let plain = '';
  const pipe = streamProgressSink({ isTTY: false, write: (s: string) => ((plain += s), true) } as unknown as NodeJS.WriteStream);
  pipe('a', 'progress');
  pipe('b', 'log');
  t.equal(plain, 'a\nb\n', 'not a terminal: every line on its own');
});

t.test('an incremental build: the changed object and the relink steps, as defaultRelinkObjects says', async (t) => {
  const objects = incrementalLog.map(compiledObject).filter((x) => x !== undefined);
  t.same(objects, [
    'fs/ext4/migrate.o',
    'init/version-timestamp.o',
    '.tmp_vmlinux.kallsyms1.o',
    '.tmp_vmlinux.kallsyms2.o',
    'arch/x86/boot/version.o',
    'arch/x86/boot/compressed/misc.o',
    'arch/x86/boot/compressed/piggy.o',
    'arch/x86/boot/header.o',
  ]);
  t.equal(objects.length, 1 + defaultRelinkObjects, 'one changed source + the relink steps');
  const lines: string[] = [];
  const p = new BuildProgress({ objects: 1 + defaultRelinkObjects, source: 'test' }, (l) => void lines.push(l), { now: () => 0 });
  for (const l of incrementalLog) p.line(l);
  p.finish(true);
  t.equal(lines.at(-1), 'kernel build: 8/8 objects (100%), 0s');
  t.notOk(lines.some((l) => compileLine.test(l)));
});

t.test('a failed build says how far it got', async (t) => {
  const lines: string[] = [];
  const p = new BuildProgress({ objects: 937, source: 'test' }, (l) => void lines.push(l), { now: () => 0 });
  for (const l of buildLog.slice(0, 300)) p.line(l);
  p.finish(false);
  t.match(lines.at(-1)!, new RegExp(`^kernel build: failed after ${p.compiled} of about 937 objects`));
});

t.test('durations', async (t) => {
  t.equal(formatDuration(0), '0s');
  t.equal(formatDuration(59_400), '59s');
  t.equal(formatDuration(61_000), '1m01s');
  t.equal(formatDuration(3_725_000), '1h02m');
});
