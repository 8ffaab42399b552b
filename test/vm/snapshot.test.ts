import t from 'tap';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { detectAccel } from '../../harness/vm/machine/accel.ts';
import { toolVersions } from '../../harness/run/versions.ts';
import { agentReadySnapshot } from '../../harness/vm/machine/snapshot-cache.ts';
import { runCase } from '../../harness/run/case-runner.ts';
import { MachinePool } from '../../harness/vm/machine/pool.ts';
import { parseScenario } from '../../harness/scenario/parse.ts';
import { expandCases } from '../../harness/scenario/expand.ts';
import { statPaths } from '../../harness/image/debugfs.ts';
import { runE2fsck } from '../../harness/image/e2fsck.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { join } from 'node:path';

// The same case booted from scratch and restored from the agent-ready
// snapshot must leave the same crash image state: same block maps, same findings.
const kernel = await stockKernel();
const initrd = (await buildInitramfs(kernel)).path;
const base = await buildImage(await loadRecipe('small-4k'));
const accel = (await detectAccel()).accel;
const machines = new MachinePool({ slots: 1 });
const snapshot = await agentReadySnapshot(machines, kernel, initrd, base, accel, (await toolVersions(kernel.release)).qemu);
const tmp = await TempDir.create('snapshot-test');
t.teardown(() => tmp.remove());

const scenario = await parseScenario('snapshot.yaml', `recipe: small-4k
recovery: [e2fsck]
steps:
  - mount: [commit=5]
  - migrate: { paths: [/shapes/direct-12, /shapes/dind-first, /shapes/fragmented] }
  - sync
kill:
  - after: sync
`);
const [spec] = expandCases([scenario], 3);
const paths = base.manifest.entries.map((e) => e.path);

async function run(name: string, snapshots?: Map<string, string>) {
  const dir = join(tmp.path, name);
  const env = { machines, kernel, initrd, images: new Map([['small-4k', base]]), keep: 'all' as const, ...(snapshots ? { snapshots } : {}) };
  const r = await runCase(spec!, env, dir);
  const img = join(dir, 'crash.img');
  await runE2fsck(img, 'journal-only');
  const maps = [...(await statPaths(img, paths)).entries()].map(([p, s]) => `${p} ${s?.mapping} ${s?.map}`);
  return { r, maps };
}

t.test('a case restored from the snapshot equals the same case booted from scratch', async (t) => {
  const booted = await run('booted');
  const restored = await run('restored', new Map([['small-4k', snapshot]]));
  t.equal(booted.r.status, 'pass', booted.r.error ?? '');
  t.equal(restored.r.status, 'pass', restored.r.error ?? '');
  t.same(restored.maps, booted.maps, 'identical block maps and mapping kinds for every file');
  t.ok(booted.maps.some((m) => m.startsWith('/shapes/dind-first extents')), 'the migrated file is extent-mapped in both');
  t.same(restored.r.findings.map((f) => f.code), booted.r.findings.map((f) => f.code), 'identical findings');
});
