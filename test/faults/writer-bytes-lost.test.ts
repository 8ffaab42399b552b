import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { debugfsBatch } from '../../harness/image/debugfs.ts';
import { parseScenario } from '../../harness/run/resolve-scenario.ts';
import { expandCases } from '../../harness/scenario/expand.ts';
import { runCase, type CaseEnv } from '../../harness/run/case-runner.ts';
import { MachinePool } from '../../harness/vm/machine/pool.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import type { DurabilityExpectations } from '../../harness/crash/expectations.ts';
import { qemuPids } from '../helpers/env.ts';

// The oracle must not look away from what a writer wrote: real VMs on the
// stock kernel run a writer beside a migration and shut down cleanly, then
// (CaseEnv.beforeOracle) debugfs drops one block the writer wrote from the
// crash image, as a migration that lost it would. The content oracle must
// name the file and the offset. A control run without the damage passes.
const kernel = await stockKernel();
const initrd = (await buildInitramfs(kernel)).path;
const machines = new MachinePool({ slots: 1 });
const images = new Map([
  ['small-4k', await buildImage(await loadRecipe('small-4k'))],
  ['sparse-dind-1k', await buildImage(await loadRecipe('sparse-dind-1k'))],
]);
const tmp = await TempDir.create('faults-writer');
t.teardown(() => tmp.remove());

async function runScenario(name: string, yaml: string, punch?: string) {
  const scenario = await parseScenario(`${name}.yaml`, yaml);
  const [spec] = expandCases([scenario], 1);
  const beforeOracle: CaseEnv['beforeOracle'] = punch
    ? async (img) => void (await debugfsBatch(img, [punch], { write: true }))
    : undefined;
  const env: CaseEnv = { machines, kernel, initrd, images, keep: 'none', ...(beforeOracle ? { beforeOracle } : {}) };
  const dir = tmp.join(name);
  const result = await runCase(spec!, env, dir);
  const expectations = JSON.parse(await readFile(join(dir, 'expectations.json'), 'utf8')) as DurabilityExpectations;
  return { result, expectations };
}

const odirect = `recipe: small-4k
steps:
  - mount: [commit=1]
  - writer: { mode: odirect, path: /odirect, size: 65536, action: start, name: odirect-start }
  - migrate: { paths: [/shapes], recursive: true }
  - writer: { mode: odirect, path: /odirect, action: stop, name: odirect-stop }
  - sync
kill:
  - none
recovery: [e2fsck]
`;

t.test('an O_DIRECT writer stopped and synced: its last round must read back in every sector', async (t) => {
  const control = await runScenario('odirect-control', odirect);
  t.equal(
    control.result.status,
    'pass',
    `the undamaged case passes${control.result.failing.map((f) => `; ${f.message}`).join('')}`,
  );
  const op = control.expectations.files.find((f) => f.path === '/odirect');
  t.match(
    op,
    { origin: 'new', durable: 1, ops: [{ kind: 'writer', mode: 'odirect', size: 65536 }] },
    'the writer is content-checked, not volatile',
  );
  t.ok((op?.ops[0] as { rounds?: number } | undefined)?.rounds, 'with the rounds its stop reported');
  t.equal(control.expectations.mustBeExtents.length, 6, '/shapes and its 5 regular files are expected extent-mapped');

  const damaged = await runScenario('odirect-dropped', odirect, 'punch /odirect 5 5');
  t.equal(damaged.result.status, 'fail', 'with logical block 5 punched out of the file, the case fails');
  t.match(
    damaged.result.failing,
    [
      {
        class: 'data',
        source: 'content',
        code: 'content-changed',
        path: '/odirect',
        offset: 20480,
        recovery: 'e2fsck',
        message:
          /^\/odirect: offset 20480 \(sector 40, page 5, block 5\) holds zeros, expected round \d+ of writer step "odirect-start"; 8 sectors are wrong in all$/,
      },
    ],
    'a data finding names the file, the offset, what it holds and which round it should',
  );
});

t.test('mmap-holes racing the migration: a stored page the umount made durable and the image lost is named', async (t) => {
  // mmap-race's steps, no crash; block 3000 of /big/sparse (1 KiB blocks) starts its first hole page, the
  // writer's first store. zap_block zeroes it in place: debugfs 1.47.0's punch on an indirect-mapped file
  // unmaps the rest of the indirect block too (ind_punch() passes count - offset down; fixed upstream by
  // Darrick Wong's libext2fs patch), which the oracle reports as just as many lost pages.
  const yaml = `recipe: sparse-dind-1k
steps:
  - mount: [nodelalloc, commit=5]
  - writer: { mode: mmap-holes, path: /big/sparse, pace_us: 200, action: start, name: holes-start }
  - drop-caches
  - migrate: /big/sparse
  - writer: { mode: mmap-holes, path: /big/sparse, action: stop, name: holes-stop }
  - umount
kill:
  - none
recovery: [e2fsck]
allow: { classes: [leak], codes: [ioctl-lied] }
`;
  const { result, expectations } = await runScenario('holes-dropped', yaml, 'zap_block -f /big/sparse 3000');
  const holes = expectations.files.find((f) => f.path === '/big/sparse');
  t.match(
    holes,
    { origin: 'recipe', durable: 1, ops: [{ kind: 'mmap-holes', holes: 1298, first: 3072000 }] },
    'the stop reported the stores and the host agrees on the 1298 hole pages',
  );
  const stored = (holes?.ops[0] as { stored?: number } | undefined)?.stored ?? 0;
  t.ok(stored > 0, `${stored} stores were made before the stop`);
  t.equal(result.status, 'fail', 'with the block of the first stored page zeroed, the case fails');
  t.match(
    result.failing,
    [
      {
        class: 'data',
        code: 'content-changed',
        path: '/big/sparse',
        offset: 3072000,
        message:
          /^\/big\/sparse: offset 3072000 \(sector 6000, page 750, block 3000\) holds zeros, expected the store of mmap-holes step "holes-start"$/,
      },
    ],
    'a data finding names the file, the offset and the store that was lost',
  );
});

t.test('no QEMU left behind', async (t) => {
  t.same(qemuPids(tmp.path), []);
});
