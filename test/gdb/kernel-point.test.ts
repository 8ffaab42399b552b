import t from 'tap';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { createCaseDisk, flattenToRaw } from '../../harness/image/disk.ts';
import { readEntryState } from '../../harness/image/debugfs.ts';
import { runE2fsck } from '../../harness/image/e2fsck.ts';
import { Vm } from '../../harness/vm/machine/vm.ts';
import { runWorkload } from '../../harness/crash/workload.ts';
import { gdbDriverFactory } from '../../harness/crash/points/gdb-driver.ts';
import { kernelSymbols } from '../../harness/crash/kernel-symbols.ts';
import { MachinePool } from '../../harness/vm/machine/pool.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import type { CrashPoint, Step } from '../../harness/scenario/model.ts';

// Kernel crash points on the real stock kernel through QEMU's gdbstub.
const kernel = await stockKernel();
const initrd = (await buildInitramfs(kernel)).path;
const base = await buildImage(await loadRecipe('small-4k'));
const file = '/shapes/dind-first';
const tmp = await TempDir.create('kernel-point-test');
t.teardown(() => tmp.remove());
const makeDriver = gdbDriverFactory(() => kernelSymbols(new MachinePool({ slots: 1 }), kernel, initrd));

const steps: Step[] = [
  { kind: 'mount', name: 'mount', options: ['commit=5'] },
  { kind: 'migrate', name: 'migrate', paths: [file], recursive: false },
  { kind: 'sync', name: 'sync' },
];

async function crashAt(name: string, point: CrashPoint) {
  const disk = await createCaseDisk(base.path, tmp.join(`${name}.img`));
  let outcome;
  {
    await using vm = await Vm.launch({ kernel, initrd, disk, gdb: true });
    await using driver = await makeDriver(vm);
    outcome = await runWorkload(vm, steps, point, 1, { kernelDriver: driver });
  }
  const raw = await flattenToRaw(disk, tmp.join(`${name}.raw`));
  await runE2fsck(raw, 'journal-only');
  const [state] = await readEntryState(raw, [file]);
  return { outcome, state: state! };
}

t.test('a breakpoint at ext4_ext_migrate (hit 1) stops the VM before the file is converted', async (t) => {
  const r = await crashAt('entry', {
    kind: 'kernel',
    step: 'migrate',
    symbol: 'ext4_ext_migrate',
    offset: 0,
    hit: 1,
    thenHits: 0,
    delayMs: 0,
  });
  t.equal(r.outcome.reached, true);
  t.equal(r.outcome.fired?.kind, 'kernel');
  t.match(r.outcome.fired, { kind: 'kernel', symbol: 'ext4_ext_migrate' }, 'the guest stopped exactly at the symbol');
  t.equal(r.outcome.records.find((x) => x.name === 'migrate')?.exitCode, undefined, 'chattr had not returned');
  t.equal(r.state.stat?.mapping, 'blocks', 'block-mapped after journal replay');
});

t.test('a kill at the end of the jbd2 commit forced by sync leaves the file extent-mapped', async (t) => {
  const r = await crashAt('commit', { kind: 'commit', step: 'sync', k: 1 });
  t.equal(r.outcome.fired?.kind, 'commit');
  t.match(r.outcome.fired, { kind: 'commit', symbol: /^kjournald2\+/ }, 'stopped on the return into kjournald2');
  t.equal(r.state.stat?.mapping, 'extents');
});

t.test('a point the workload never reaches is reported as not reached', async (t) => {
  const r = await crashAt('never', {
    kind: 'kernel',
    step: 'sync',
    symbol: 'ext4_ext_migrate',
    offset: 0,
    hit: 1,
    thenHits: 0,
    delayMs: 0,
  });
  t.equal(r.outcome.reached, false);
  t.equal(r.outcome.fired?.kind, 'not-reached');
});
