import t from 'tap';
import { runCase } from '../../harness/run/case-runner.ts';
import { parseScenario } from '../../harness/run/resolve-scenario.ts';
import { expandCases } from '../../harness/scenario/expand.ts';
import { statPaths } from '../../harness/image/debugfs.ts';
import { runE2fsck } from '../../harness/image/e2fsck.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { join } from 'node:path';
import { stockSmall4kWithSnapshot } from '../helpers/stock-small4k.ts';

// The same case booted from scratch and restored from the agent-ready
// snapshot must leave the same crash image state: same block maps, same findings.
const { kernel, initrd, base, machines, snapshot } = await stockSmall4kWithSnapshot();
const tmp = await TempDir.create('snapshot-test');
t.teardown(() => tmp.remove());

const scenario = await parseScenario(
  'snapshot.yaml',
  `recipe: small-4k
recovery: [e2fsck]
steps:
  - mount: [commit=5]
  - migrate: { paths: [/shapes/direct-12, /shapes/dind-first, /shapes/fragmented] }
  - sync
kill:
  - after: sync
`,
);
const [spec] = expandCases([scenario], 3);
const paths = base.manifest.entries.map((e) => e.path);

async function run(name: string, snapshots?: Map<string, string>) {
  const dir = join(tmp.path, name);
  const env = {
    machines,
    kernel,
    initrd,
    images: new Map([['small-4k', base]]),
    keep: 'all' as const,
    ...(snapshots ? { snapshots } : {}),
  };
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
  t.ok(
    booted.maps.some((m) => m.startsWith('/shapes/dind-first extents')),
    'the migrated file is extent-mapped in both',
  );
  t.same(
    restored.r.findings.map((f) => f.code),
    booted.r.findings.map((f) => f.code),
    'identical findings',
  );
});
