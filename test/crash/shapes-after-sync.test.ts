import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scenariosDir } from '../../harness/util/paths.ts';
import { loadScenario } from '../../harness/run/resolve-scenario.ts';
import { expandCases } from '../../harness/scenario/expand.ts';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { runCase } from '../../harness/run/case-runner.ts';
import { MachinePool } from '../../harness/vm/machine/pool.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import type { DurabilityExpectations } from '../../harness/crash/expectations.ts';

// The durability oracle is not blind in the main suite: the shipped
// shapes-4k/after-sync case, run for real on the stock kernel (e2fsck
// recovery only, to keep it short), expects every regular file and
// directory it migrated to be extent-mapped after the sync, and the image
// holds them so. With chattr -R, whose one exit status covered the whole
// tree (1, for the symlinks), it expected none.
const scenario = await loadScenario(join(scenariosDir, 'shapes-4k.yaml'));
const spec = expandCases([{ ...scenario, recovery: ['e2fsck'] }], 1).find((c) => c.pointLabel === 'after-sync');
const kernel = await stockKernel();
const initrd = (await buildInitramfs(kernel)).path;
const base = await buildImage(await loadRecipe('shapes-4k'));
const tmp = await TempDir.create('shapes-after-sync');
t.teardown(() => tmp.remove());

t.test('shapes-4k/after-sync expects every migrated regular file and directory extent-mapped', async (t) => {
  const result = await runCase(
    spec!,
    { machines: new MachinePool({ slots: 1 }), kernel, initrd, images: new Map([['shapes-4k', base]]), keep: 'none' },
    tmp.path,
  );
  t.equal(result.status, 'pass', result.error ?? result.failing.map((f) => f.message).join('; '));
  const exp = JSON.parse(await readFile(join(tmp.path, 'expectations.json'), 'utf8')) as DurabilityExpectations;
  const filesAndDirs = [
    '/shapes',
    ...base.manifest.entries.filter((e) => e.type === 'file' || e.type === 'dir').map((e) => e.path),
  ];
  t.same(
    filesAndDirs.filter((p) => !exp.mustBeExtents.includes(p)),
    [],
    `all ${filesAndDirs.length} of the recipe's regular files and directories (and /shapes) are expected extent-mapped`,
  );
  t.ok(
    exp.migrations.length >= filesAndDirs.length && exp.migrations.every((m) => m.ret === 0),
    `the ioctl returned 0 for each of the ${exp.migrations.length} paths`,
  );
  t.same(
    exp.mustBeExtents.length,
    exp.migrations.length,
    'every path the ioctl migrated is expected extent-mapped after the sync',
  );
  t.notOk(
    result.findings.some((f) => f.code === 'not-durable' || f.class === 'data'),
    'and the recovered image has them all so, with their bytes',
  );
  const migrate = result.steps?.find((s) => s.name === 'migrate');
  t.match(
    migrate,
    { exitCode: 0, report: { kind: 'migrate', skipped: [{ type: 'symlink' }, { type: 'symlink' }], errors: [] } },
    'case.json keeps the per-file results; the two symlinks are skipped',
  );
});
