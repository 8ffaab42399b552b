import t from 'tap';
import { join } from 'node:path';
import { access } from 'node:fs/promises';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { parseScenario } from '../../harness/scenario/parse.ts';
import { expandCases } from '../../harness/scenario/expand.ts';
import { runCase, type CaseEnv } from '../../harness/run/case-runner.ts';
import type { KernelInfo } from '../../harness/kernel/kernel.ts';
import { VmLaunchError } from '../../harness/vm/machine/errors.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher, type FakeMachineOptions } from '../helpers/fake-machine.ts';
import { freeBlockInUse } from '../helpers/damage.ts';

// The case runner's verdicts with a scripted machine: the crash image is a
// real copy of a real base image, and the recoveries and oracles are the
// real e2fsck and debugfs; only the VM is scripted.
const base = await buildImage(await loadRecipe('small-4k'));
const tmp = await TempDir.create('case-runner-test');
t.teardown(() => tmp.remove());
const kernel: KernelInfo = { id: 'fake', kind: 'path', release: 'fake', bzImage: '/nonexistent', builtinDrivers: true, acpi: true };

async function caseOf(yaml: string, make: (spec: never, n: number) => FakeMachineOptions | Error = () => ({}), extra: Partial<CaseEnv> = {}) {
  const scenario = await parseScenario('unit.yaml', `recipe: small-4k\n${yaml}`);
  const [spec] = expandCases([scenario], 1);
  const machines = new FakeLauncher(make as never);
  const env: CaseEnv = { machines, kernel, initrd: '/nonexistent', images: new Map([['small-4k', base]]), keep: 'all', ...extra };
  const dir = join(tmp.path, spec!.id.replace(/\//g, '_'));
  return { result: await runCase(spec!, env, dir), machines, dir };
}

const steps = 'steps:\n  - mount\n  - sync\n';

t.test('a crash image the oracles find clean passes, with its phases recorded', async (t) => {
  const { result, dir } = await caseOf(`recovery: [e2fsck]\n${steps}kill:\n  - after: sync\n`);
  t.equal(result.status, 'pass', result.error ?? '');
  t.same(result.failing, []);
  t.match(result.fired, { kind: 'after', step: 'sync' });
  t.same(result.steps?.map((s) => s.exitCode), [0, 0]);
  t.ok(result.phases && result.phases.recoveryMs! >= 0 && result.phases.oraclesMs! > 0, `phases ${JSON.stringify(result.phases)}`);
  await access(join(dir, 'crash.img'));
  await access(join(dir, 'e2fsck-e2fsck-2-check.txt'));
});

t.test('damage at the crash is a failing corruption finding, unless the scenario allows it', async (t) => {
  const damaging = () => ({ onKill: (m: { spec: { disk: { path: string } } }) => void freeBlockInUse(m.spec.disk.path) });
  const failed = await caseOf(`recovery: [e2fsck]\n${steps}kill:\n  - after: sync\n`, damaging);
  t.equal(failed.result.status, 'fail');
  t.match(failed.result.failing, [{ class: 'corruption', code: '0x050005', recovery: 'e2fsck' }]);
  const allowed = await caseOf(`recovery: [e2fsck]\n${steps}kill:\n  - after: sync\nallow: { classes: [leak, corruption] }\n`, damaging);
  t.equal(allowed.result.status, 'pass');
  t.match(allowed.result.findings, [{ code: '0x050005' }], 'the allowed finding is still recorded');
});

t.test('the fault-injection seam damages the image before the oracles', async (t) => {
  const { result } = await caseOf(`recovery: [e2fsck]\n${steps}kill:\n  - after: sync\n`, () => ({}), { beforeOracle: async (img) => void freeBlockInUse(img) });
  t.equal(result.status, 'fail');
});

t.test('a point the workload never reaches is not-reached, never a pass', async (t) => {
  // A commit point with no driver answering: the fake machine offers a gdb socket but the case has no driver factory,
  // so use a driver that never fires.
  const { result } = await caseOf(`recovery: [e2fsck]\n${steps}kill:\n  - commit: { step: sync, k: 9 }\n`, () => ({}), {
    kernelDriver: async () => ({ arm: async () => {}, wait: async (done: Promise<unknown>) => (await done.catch(() => {}), undefined), disarm: async () => {}, [Symbol.asyncDispose]: async () => {} }),
  });
  t.equal(result.status, 'not-reached');
  t.match(result.error, /never fired: step "sync" finished without the commit point firing/);
});

t.test('a machine that does not start makes an error case that keeps the error kind', async (t) => {
  const { result } = await caseOf(`recovery: [e2fsck]\n${steps}kill:\n  - after: sync\n`, () => new VmLaunchError('VM did not start: no such disk', ['qemu'], 1, '', 'qemu: no such disk'));
  t.equal(result.status, 'error');
  t.equal(result.errorKind, 'VmLaunchError');
  t.match(result.error, /VM did not start/);
});

t.test('kernel recovery: a mount the kernel refuses is a finding, and the console is scanned', async (t) => {
  const { result, machines } = await caseOf(`recovery: [kernel]\n${steps}kill:\n  - after: sync\n`, (spec: { role: string }) =>
    spec.role === 'recovery'
      ? {
          script: (cmd: string) => (cmd === 'mount' ? { exitCode: 32, output: 'mount: /mnt: mount(2) system call failed: Structure needs cleaning.' } : {}),
          console: '[    1.000000] EXT4-fs error (device vda): ext4_lookup:1855: inode #2: comm mount: deleted inode referenced: 13\n',
        }
      : {});
  t.same(machines.machines.map((m) => m.spec.role), ['workload', 'recovery']);
  t.equal(result.status, 'fail');
  t.match(result.failing, [
    { code: 'mount-failed', recovery: 'kernel', message: /Structure needs cleaning/ },
    { code: 'ext4-error', title: 'EXT4-fs error in ext4_lookup: deleted inode referenced: N' },
  ]);
  t.same(machines.machines.map((m) => m.shutdowns > 0), [true, true], 'both machines were shut down');
});
