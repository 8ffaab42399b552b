import t from 'tap';
import { copyFile } from 'node:fs/promises';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { createCaseDisk, flattenToRaw } from '../../harness/image/disk.ts';
import { readEntryState } from '../../harness/image/debugfs.ts';
import { runE2fsck } from '../../harness/image/e2fsck.ts';
import { Vm } from '../../harness/vm/machine/vm.ts';
import { runWorkload } from '../../harness/crash/workload.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import type { Step } from '../../harness/scenario/model.ts';
import { qemuPids } from '../helpers/env.ts';

// Real QEMU (KVM when it works here, TCG otherwise), the stock Debian kernel,
// the guest agent, and a base image from the small recipe.
const kernel = await stockKernel();
const initrd = (await buildInitramfs(kernel)).path;
const base = await buildImage(await loadRecipe('small-4k'));
const file = '/shapes/dind-first';
const original = base.manifest.entries.find((e) => e.path === file)!;
const tmp = await TempDir.create('pipeline-test');
t.teardown(() => tmp.remove());

const steps: Step[] = [
  { kind: 'mount', name: 'mount', options: ['commit=5'] },
  { kind: 'migrate', name: 'migrate', paths: [file], recursive: false },
  { kind: 'sync', name: 'sync' },
];

/** Boot on an overlay, run the steps with the crash point, return the crash image after e2fsck's journal replay. */
async function crashAndReplay(name: string, point: Parameters<typeof runWorkload>[2]) {
  const disk = await createCaseDisk(base.path, tmp.join(`${name}.img`));
  let transcript = '';
  let pid: number | undefined;
  let outcome;
  {
    await using vm = await Vm.launch({ kernel, initrd, disk });
    pid = vm.pid;
    outcome = await runWorkload(vm, steps, point, 1);
    transcript = vm.qmp.transcriptJsonl();
  }
  const raw = await flattenToRaw(disk, tmp.join(`${name}.raw`));
  await runE2fsck(raw, 'journal-only');
  const [state] = await readEntryState(raw, [file]);
  return { outcome, transcript, pid, state: state!, raw };
}

t.test('the VM boots to the agent and goes away on dispose', async (t) => {
  const disk = await createCaseDisk(base.path, tmp.join('boot.img'));
  let dir = '';
  {
    await using vm = await Vm.launch({ kernel, initrd, disk });
    dir = vm.dir.path;
    t.equal(vm.hello?.release, kernel.release, 'the agent reports the booted kernel');
    t.ok((vm.hello?.bootMs ?? 0) > 0);
    t.ok(qemuPids(dir).length > 0, 'QEMU runs while the VM is alive');
    t.match(await vm.consoleText(), /qcrash-init: kernel \S+, agent on \/dev\/vport/, 'the console log captured the guest init');
  }
  t.same(qemuPids(dir), [], 'no QEMU left after dispose');
});

t.test('chattr +e migrates the file: extent-mapped, bytes unchanged', async (t) => {
  const disk = await createCaseDisk(base.path, tmp.join('migrate.img'));
  {
    await using vm = await Vm.launch({ kernel, initrd, disk });
    const out = await runWorkload(vm, steps, { kind: 'none' }, 1);
    t.equal(out.ending, 'clean');
    t.same(
      out.records.map((r) => r.exitCode),
      [0, 0, 0],
      'mount, chattr and sync succeeded',
    );
  }
  const raw = await flattenToRaw(disk, tmp.join('migrate.raw'));
  const [s] = await readEntryState(raw, [file]);
  t.equal(original.mapping, 'blocks', 'block-mapped before');
  t.equal(s!.stat?.mapping, 'extents', 'extent-mapped after');
  t.equal(s!.sha256, original.sha256, 'same bytes');
  t.equal(s!.size, original.size);
  const fsck = await runE2fsck(raw, 'check');
  t.equal(fsck.exit.code, 0, 'e2fsck -fn is clean after a clean shutdown');
});

t.test('a kill before the migrate step leaves the file block-mapped', async (t) => {
  const r = await crashAndReplay('before', { kind: 'before', step: 'migrate' });
  t.equal(r.outcome.ending, 'killed');
  t.equal(r.state.stat?.mapping, 'blocks');
  t.equal(r.state.sha256, original.sha256);
  t.match(r.transcript, /"execute":"stop"/, 'QMP transcript has stop');
  t.match(r.transcript, /"execute":"quit"/, 'and quit');
  t.match(r.transcript, /"event":"SHUTDOWN"/, 'and the SHUTDOWN event');
  t.throws(() => process.kill(r.pid!, 0), 'the QEMU process is gone');
});

t.test('a kill after migrate-then-sync leaves it extent-mapped once the journal is replayed', async (t) => {
  const r = await crashAndReplay('after-sync', { kind: 'after', step: 'sync' });
  t.equal(r.outcome.records.find((x) => x.name === 'sync')?.exitCode, 0);
  t.equal(r.state.stat?.mapping, 'extents');
  t.equal(r.state.sha256, original.sha256);
});
