import t from 'tap';
import { closeSync, fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { WriteLog, LogFlag, isFlush, isFua, writeWriteLog } from '../../harness/crash/writelog/format.ts';
import { replayPrefix } from '../../harness/crash/writelog/replay.ts';
import { replayLogTool } from '../../harness/image/layout-tool.ts';
import { copyImage } from '../../harness/image/disk.ts';
import { run } from '../../harness/util/exec.ts';
import { sha256File } from '../../harness/util/hash.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { fixtureLog } from './fixture.ts';

// The bench's stand-in for fstests' replay-log (vm-images/tools/qcrash-replay-log.c),
// compiled as a run compiles it, on the recorded fixture log and on a
// written one with a discard, a mark and a blank tail: every state it
// replays must be the image qcrash's own replay (replay.ts) makes.
const tmp = await TempDir.create('replay-log-tool-test');
t.teardown(() => tmp.remove());
const tool = await replayLogTool();

/** A 32 MiB stand-in base with random blocks where the log writes (so a missed write shows). */
function standInBase(path: string, log: WriteLog): string {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, 32 << 20);
  for (const e of log.entries)
    if (e.nrSectors) writeSync(fd, randomBytes(e.nrSectors * 512), 0, e.nrSectors * 512, e.sector * 512);
  closeSync(fd);
  return path;
}

/** The tool's image with `--limit limit` and replay.ts's of entries [0, min(limit, the log's entries)), as sha256 digests. */
async function bothWays(log: WriteLog, base: string, limit: number): Promise<[string, string]> {
  const count = Math.min(limit, log.entries.length);
  const mine = tmp.join(`tool-${count}.img`);
  await copyImage(base, mine);
  const r = await run(tool, ['--log', log.path, '--replay', mine, '--limit', String(limit)]);
  if (r.exitCode !== 0) throw new Error(`qcrash-replay-log exit ${r.exitCode}: ${r.stderr}`);
  const ours = tmp.join(`ours-${count}.img`);
  await replayPrefix(log, base, ours, count);
  return [await sha256File(mine), await sha256File(ours)];
}

t.test('the recorded fixture log: every flush and FUA state, and the whole log, are the same image', async (t) => {
  await using log = await WriteLog.open(fixtureLog(tmp.join('real.log')));
  const base = standInBase(tmp.join('base.img'), log);
  const positions = [
    0,
    ...log.entries.filter((e) => isFlush(e) || isFua(e)).map((e) => e.index + 1),
    log.entries.length,
    // A limit past the log's end replays the whole log.
    log.entries.length + 5,
  ];
  t.ok(positions.length > 10, `${positions.length} states`);
  for (const p of positions) {
    const [a, b] = await bothWays(log, base, p);
    t.equal(a, b, `state at ${p}`);
  }
});

t.test('a discard replays as zeros, a mark writes nothing, a blank header slot ends the log', async (t) => {
  const data = (n: number, seed: number) => Buffer.alloc(n * 512, seed);
  const path = tmp.join('synthetic.log');
  await writeWriteLog(path, 512, [
    { sector: 100, nrSectors: 8, flags: 0, data: data(8, 1) },
    { sector: 0, nrSectors: 0, flags: LogFlag.flush },
    { sector: 102, nrSectors: 4, flags: LogFlag.discard },
    { sector: 0, nrSectors: 0, flags: LogFlag.mark },
    { sector: 200, nrSectors: 16, flags: LogFlag.fua, data: data(16, 2) },
    { sector: 101, nrSectors: 2, flags: 0, data: data(2, 3) },
  ]);
  // A reserved, never written header slot after the last entry: the end, as the log reader reads it.
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(512), 0, 512, fstatSync(fd).size);
  closeSync(fd);
  await using log = await WriteLog.open(path);
  t.equal(log.entries.length, 6);
  const base = standInBase(tmp.join('synthetic-base.img'), log);
  // 7 and 99: past the last entry, into the blank slot and past the file's end.
  for (const p of [0, 1, 2, 3, 4, 5, 6, 7, 99]) {
    const [a, b] = await bothWays(log, base, p);
    t.equal(a, b, `state at ${p}`);
  }
});

t.test('a bad log, a missing image or a bad limit: exit 1 with a message', async (t) => {
  const junk = tmp.join('junk.log');
  await writeWriteLog(junk, 512, []);
  const fd = openSync(junk, 'r+');
  writeSync(fd, Buffer.from('not a log'), 0, 9, 0);
  closeSync(fd);
  const img = tmp.join('any.img');
  closeSync(openSync(img, 'w'));
  for (const args of [
    ['--log', junk, '--replay', img, '--limit', '1'],
    ['--log', junk, '--replay', tmp.join('missing.img'), '--limit', '1'],
    ['--log', junk, '--replay', img, '--limit', 'x'],
    ['--log', junk, '--replay', img],
  ]) {
    const r = await run(tool, args);
    t.equal(r.exitCode, 1, args.join(' '));
    t.match(r.stderr, /qcrash-replay-log|usage/);
  }
});
