import t from 'tap';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { checkImage } from '../../harness/run/check-image.ts';
import { RunStore } from '../../harness/results/store.ts';
import { isAllowed, defaultAllowance } from '../../harness/findings/finding.ts';
import type { CaseResult } from '../../harness/results/case.ts';
import { qcrashBin } from '../helpers/env.ts';

// Two "nightly" runs of one case, the second on an image damaged with
// debugfs: `qcrash compare` must show the damage's finding as new and exit 1.
const dir = await mkdtemp(join(tmpdir(), 'compare-damage-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const base = await buildImage(await loadRecipe('small-4k'));
const manifestFile = join(dirname(base.path), 'manifest.json');

async function runDirWith(name: string, image: string): Promise<string> {
  const r = await checkImage(image, { manifestFile });
  const failing = r.findings.filter((f) => !isAllowed(f, defaultAllowance));
  const c: CaseResult = {
    id: 'nightly/after-sync/r1',
    scenario: 'nightly',
    suite: 'default',
    pointLabel: 'after-sync',
    repetition: 1,
    seed: 1,
    status: failing.length ? 'fail' : 'pass',
    findings: r.findings,
    failing,
    allow: defaultAllowance,
    durationMs: 1,
    dir: '',
  };
  const store = await RunStore.create(join(dir, name), {
    schema: 'qcrash-run/1',
    runId: name,
    startedAt: new Date().toISOString(),
    host: 'test',
    seed: 1,
    accel: 'tcg',
    kernel: { id: 'stock', release: 'x', kind: 'stock' },
    versions: { qemu: 'x', e2fsprogs: 'x', kernel: 'x', node: process.version },
    scenarios: [{ name: 'nightly', file: 'nightly.yaml', hash: 'x', suite: 'default' }],
  });
  await store.writeCase(c);
  await store.writeSummary(store.summary([c], true));
  return store.dir;
}

t.test('compare shows the finding a damaged image adds as new', async (t) => {
  const clean = await runDirWith('night-1', base.path);
  const img = join(dir, 'damaged.img');
  await copyFile(base.path, img);
  const blk = /\((?:0|0-\d+)\):(\d+)/.exec(
    execFileSync('debugfs', ['-R', 'stat /shapes/ind-13', img], { encoding: 'utf8' }),
  )![1]!;
  execFileSync('debugfs', ['-w', '-R', `freeb ${blk}`, img], { stdio: 'ignore' });
  const damaged = await runDirWith('night-2', img);
  const out = await new Promise<{ code: number; stdout: string }>((resolve) =>
    execFile(process.execPath, [qcrashBin, 'compare', clean, damaged], (err, stdout) =>
      resolve({ code: err ? Number(err.code) : 0, stdout }),
    ),
  );
  t.equal(out.code, 1, 'exit 1: a new failing finding');
  t.match(out.stdout, /NEW findings: 1\n {2}nightly \| after-sync \| e2fsck \| corruption \| 0x050005/);
  t.match(out.stdout, /GONE findings: 0/);
  t.match(out.stdout, /nightly\/after-sync\/r1: pass -> fail/);
});
