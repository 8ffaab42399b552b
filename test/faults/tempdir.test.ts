import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtemp, mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

// Temp dirs are owned from the moment they exist (the pid is in the name
// mkdtemp creates), and the sweep removes what a killed qcrash left: a dir
// of a dead owner at once, a dir that names no owner after a minute.
const root = await mkdtemp(join(tmpdir(), 'faults-tempdir-'));
const tmp = join(root, 'tmp');
await mkdir(tmp);
process.env.QCRASH_TMPDIR = tmp;
process.env.QCRASH_CACHE = join(root, 'cache');
t.teardown(() => rm(root, { recursive: true, force: true }));
const { TempDir, sweepStaleTempDirs, ownerlessGraceMs } = await import('../../harness/util/tempdir.ts');

const deadPid = spawnSync(process.execPath, ['-e', '0']).pid;

t.test('a temp dir names its owner from the moment it exists', async (t) => {
  await using dir = await TempDir.create('vm');
  t.match(basename(dir.path), new RegExp(`^qcrash-vm-p${process.pid}-[A-Za-z0-9]{6}$`));
  t.same(await readdir(dir.path), [], 'no owner file to write after mkdtemp: nothing to lose to a signal');
  t.same(await sweepStaleTempDirs(), [], "the sweep leaves a live owner's dir");
});

t.test("the sweep removes an ownerless qcrash dir older than a minute, and a dead owner's at once", async (t) => {
  const old = join(tmp, 'qcrash-vm-AbC123');
  const fresh = join(tmp, 'qcrash-vm-XyZ789');
  const dead = join(tmp, `qcrash-vm-p${deadPid}-QwE456`);
  const oldOwned = join(tmp, 'qcrash-snapshot-RtY000');
  for (const d of [old, fresh, dead, oldOwned]) await mkdir(d);
  await writeFile(join(oldOwned, 'owner.pid'), `${deadPid}\n`);
  const past = (Date.now() - 65_000) / 1000;
  await utimes(old, past, past);
  const removed = await sweepStaleTempDirs();
  t.same(removed.sort(), [dead, old, oldOwned].sort());
  t.same(await readdir(tmp), [basename(fresh)], 'an ownerless dir younger than a minute may still be getting its owner');
  t.ok(ownerlessGraceMs <= 60_000);
});
