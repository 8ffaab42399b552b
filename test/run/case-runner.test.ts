import t from 'tap';
import { join } from 'node:path';
import { access, copyFile, mkdir, readFile, stat } from 'node:fs/promises';
import { readdirSync, statSync } from 'node:fs';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { parseScenario } from '../../harness/run/resolve-scenario.ts';
import { expandCases } from '../../harness/scenario/expand.ts';
import { runCase, type CaseEnv } from '../../harness/run/case-runner.ts';
import type { KernelInfo } from '../../harness/kernel/kernel.ts';
import { VmLaunchError } from '../../harness/vm/machine/errors.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher, type FakeMachineOptions } from '../helpers/fake-machine.ts';
import { freeBlockInUse } from '../helpers/damage.ts';
import { CrashImageStore, exportCrashImage } from '../../harness/results/crash-images.ts';
import { sha256File } from '../../harness/util/hash.ts';
import { fakeKernel } from '../helpers/fake-suite.ts';

// The case runner's verdicts with a scripted machine: the crash image is a
// real copy of a real base image, and the recoveries and oracles are the
// real e2fsck and debugfs; only the VM is scripted.
const base = await buildImage(await loadRecipe('small-4k'));
const tmp = await TempDir.create('case-runner-test');
t.teardown(() => tmp.remove());
const kernel: KernelInfo = fakeKernel('fake', 'fake');

async function caseOf(
  yaml: string,
  make: (spec: never, n: number) => FakeMachineOptions | Error = () => ({}),
  extra: Partial<CaseEnv> = {},
) {
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
  t.same(
    result.steps?.map((s) => s.exitCode),
    [0, 0],
  );
  t.ok(
    result.phases && result.phases.recoveryMs! >= 0 && result.phases.oraclesMs! > 0,
    `phases ${JSON.stringify(result.phases)}`,
  );
  await access(join(dir, 'crash.img'));
  await access(join(dir, 'e2fsck-e2fsck-2-check.txt'));
});

t.test('damage at the crash is a failing corruption finding, unless the scenario allows it', async (t) => {
  const damaging = () => ({ onKill: (m: { spec: { disk: { path: string } } }) => void freeBlockInUse(m.spec.disk.path) });
  const failed = await caseOf(`recovery: [e2fsck]\n${steps}kill:\n  - after: sync\n`, damaging);
  t.equal(failed.result.status, 'fail');
  t.match(failed.result.failing, [{ class: 'corruption', code: '0x050005', recovery: 'e2fsck' }]);
  const allowed = await caseOf(
    `recovery: [e2fsck]\n${steps}kill:\n  - after: sync\nallow: { classes: [leak, corruption] }\n`,
    damaging,
  );
  t.equal(allowed.result.status, 'pass');
  t.match(allowed.result.findings, [{ code: '0x050005' }], 'the allowed finding is still recorded');
});

t.test('the fault-injection seam damages the image before the oracles', async (t) => {
  const { result } = await caseOf(`recovery: [e2fsck]\n${steps}kill:\n  - after: sync\n`, () => ({}), {
    beforeOracle: async (img) => void freeBlockInUse(img),
  });
  t.equal(result.status, 'fail');
});

t.test('a point the workload never reaches is not-reached, never a pass', async (t) => {
  // A commit point with no driver answering: the fake machine offers a gdb socket but the case has no driver factory,
  // so use a driver that never fires.
  const { result } = await caseOf(`recovery: [e2fsck]\n${steps}kill:\n  - commit: { step: sync, k: 9 }\n`, () => ({}), {
    kernelDriver: async () => ({
      arm: async () => {},
      wait: async (done: Promise<unknown>) => (await done.catch(() => {}), undefined),
      disarm: async () => {},
      [Symbol.asyncDispose]: async () => {},
    }),
  });
  t.equal(result.status, 'not-reached');
  t.match(result.error, /never fired: step "sync" finished without the commit point firing/);
});

t.test('a machine that does not start makes an error case that keeps the error kind', async (t) => {
  const { result } = await caseOf(
    `recovery: [e2fsck]\n${steps}kill:\n  - after: sync\n`,
    () => new VmLaunchError('VM did not start: no such disk', ['qemu'], 1, '', 'qemu: no such disk'),
  );
  t.equal(result.status, 'error');
  t.equal(result.errorKind, 'VmLaunchError');
  t.match(result.error, /VM did not start/);
});

t.test('kernel recovery: a mount the kernel refuses is a finding, and the console is scanned', async (t) => {
  const { result, machines } = await caseOf(`recovery: [kernel]\n${steps}kill:\n  - after: sync\n`, (spec: { role: string }) =>
    spec.role === 'recovery'
      ? {
          script: (cmd: string) =>
            cmd === 'mount'
              ? { exitCode: 32, output: 'mount: /mnt: mount(2) system call failed: Structure needs cleaning.' }
              : {},
          console:
            '[    1.000000] EXT4-fs error (device vda): ext4_lookup:1855: inode #2: comm mount: deleted inode referenced: 13\n',
        }
      : {},
  );
  t.same(
    machines.machines.map((m) => m.spec.role),
    ['workload', 'recovery'],
  );
  t.equal(result.status, 'fail');
  t.match(result.failing, [
    { code: 'mount-failed', recovery: 'kernel', message: /Structure needs cleaning/ },
    { code: 'ext4-error', title: 'EXT4-fs error in ext4_lookup: deleted inode referenced: N' },
  ]);
  t.same(
    machines.machines.map((m) => m.shutdowns > 0),
    [true, true],
    'both machines were shut down',
  );
});

t.test("kernel recovery restores the saved state, drops the guest's buffers for the disk, then mounts", async (t) => {
  const { result, machines } = await caseOf(`recovery: [kernel]\n${steps}kill:\n  - after: sync\n`, () => ({}), {
    snapshots: new Map([['small-4k', '/nonexistent/agent-ready.state']]),
  });
  t.equal(result.status, 'pass', result.error ?? '');
  const [workload, recovery] = machines.machines;
  t.equal(workload!.spec.restoreFrom, '/nonexistent/agent-ready.state');
  t.equal(recovery!.spec.role, 'recovery');
  t.equal(recovery!.spec.restoreFrom, '/nonexistent/agent-ready.state', 'the recovery machine restores the same saved state');
  t.same(recovery!.commands, ['flushbufs', 'mount', 'umount'], 'buffers dropped before the mount');
  t.same(result.recoveryMachine, { restored: true, flushed: true });
  t.ok(
    result.phases?.recoveryMachineMs !== undefined && result.phases?.recoveryMountMs !== undefined,
    `phases ${JSON.stringify(result.phases)}`,
  );
});

t.test('a booted recovery machine mounts without the flush', async (t) => {
  const { result, machines } = await caseOf(`recovery: [kernel]\n${steps}kill:\n  - after: sync\n`);
  t.equal(result.status, 'pass', result.error ?? '');
  t.same(machines.machines[1]!.commands, ['mount', 'umount']);
  t.same(result.recoveryMachine, { restored: false, flushed: false });
});

t.test('a restored guest that cannot drop its buffers is an error, never a mount of stale pages', async (t) => {
  const { result, machines } = await caseOf(
    `recovery: [kernel]\n${steps}kill:\n  - after: sync\n`,
    (spec: { role: string }) =>
      spec.role === 'recovery'
        ? {
            script: (cmd: string) =>
              cmd === 'flushbufs' ? { exitCode: 1, output: 'blockdev: BLKFLSBUF: Operation not permitted' } : {},
          }
        : {},
    { snapshots: new Map([['small-4k', '/nonexistent/agent-ready.state']]) },
  );
  t.equal(result.status, 'error');
  t.match(result.error, /could not drop its buffers.*Operation not permitted/);
  t.notOk(machines.machines[1]!.commands.includes('mount'), 'no mount');
});

t.test("both recoveries run at once and report in the scenario's order", async (t) => {
  let kernelMountAt = 0;
  const { result } = await caseOf(
    `recovery: [e2fsck, kernel]\n${steps}kill:\n  - after: sync\n`,
    (spec: { role: string }) =>
      spec.role === 'recovery'
        ? {
            script: (cmd: string) => {
              if (cmd === 'mount') kernelMountAt = performance.now();
              return cmd === 'mount' ? { ms: 400 } : {};
            },
          }
        : {},
    { beforeOracle: async (img) => void freeBlockInUse(img) },
  );
  t.equal(result.status, 'fail');
  t.ok(kernelMountAt > 0);
  t.same(
    [...new Set(result.failing.map((f) => f.recovery))],
    ['e2fsck', 'kernel'],
    'e2fsck findings first, as the scenario lists them',
  );
});

// That they run at once, shown by time: listed after the kernel recovery,
// whose mount takes 400 ms here, the e2fsck recovery has written its last
// log before that mount ends (run one after the other, it would start only
// then). A sum of the phases above the case's time once showed it, but the
// e2fsck side (host programs only) is now shorter than what the phases
// leave out.
t.test('the e2fsck recovery does not wait for a kernel recovery listed before it', async (t) => {
  let mountEndsAt = 0;
  const { result, dir } = await caseOf(
    `recovery: [kernel, e2fsck]\n${steps}kill:\n  - after: sync\n`,
    (spec: { role: string }) =>
      spec.role === 'recovery'
        ? {
            script: (cmd: string) => {
              if (cmd !== 'mount') return {};
              mountEndsAt = Date.now() + 400;
              return { ms: 400 };
            },
          }
        : {},
  );
  t.equal(result.status, 'pass', result.error ?? '');
  const logs = readdirSync(dir).filter((f) => f.startsWith('e2fsck-e2fsck-'));
  t.ok(logs.length >= 2, `the e2fsck recovery's logs: ${logs.join(', ')}`);
  const done = Math.max(...logs.map((f) => statSync(join(dir, f)).mtimeMs));
  t.ok(
    mountEndsAt > 0 && done < mountEndsAt,
    `the e2fsck recovery's last log was written ${Math.round(mountEndsAt - done)} ms before the kernel's mount ended`,
  );
});

t.test(
  "kept crash images: compressed over the run's base copy, exported back byte for byte; passing cases keep none by default",
  async (t) => {
    const runDir = tmp.join('kept-run');
    const store = new CrashImageStore(runDir);
    let original = '';
    const aside = tmp.join('crash-aside.img');
    const damaged = await caseOf(`recovery: [e2fsck]\n${steps}kill:\n  - after: sync\n`, () => ({}), {
      crashImages: store,
      keep: 'failed',
      beforeOracle: async (img) => {
        freeBlockInUse(img);
        await copyFile(img, aside);
        original = await sha256File(aside);
      },
    });
    t.equal(damaged.result.status, 'fail');
    await t.rejects(access(join(damaged.dir, 'crash.img')), 'the raw image is gone');
    const kept = join(damaged.dir, 'crash.qcow2');
    const keptBytes = (await stat(kept)).blocks * 512;
    t.ok(keptBytes < 1 << 20, `crash.qcow2 takes ${keptBytes} bytes`);
    t.ok(damaged.result.phases?.keepMs !== undefined);
    const out = await exportCrashImage(damaged.dir, tmp.join('exported.img'));
    t.equal(await sha256File(out), original, 'export gives the crash image back');
    t.equal(await exportCrashImage(damaged.dir), join(damaged.dir, 'crash.img'), 'by default into the case folder, as crash.img');
    t.equal(await sha256File(join(damaged.dir, 'crash.img')), original);

    const passed = await caseOf(`recovery: [e2fsck]\n${steps}kill:\n  - after: mount\n`, () => ({}), {
      crashImages: store,
      keep: 'failed',
    });
    t.equal(passed.result.status, 'pass');
    await t.rejects(access(join(passed.dir, 'crash.img')));
    await t.rejects(access(join(passed.dir, 'crash.qcow2')));
    await t.rejects(exportCrashImage(passed.dir), /holds no crash image/);
  },
);

t.test(
  'a held scenario runs on its vCPUs with the gdbstub, restores its own saved state, pins its steps and records the hold',
  async (t) => {
    const { agentReadySnapshot } = await import('../../harness/vm/machine/snapshot-cache.ts');
    const { describeHold } = await import('../../harness/crash/points/hold.ts');
    // States saved through the snapshot cache (into a cache of the test's own), as prepareRun saves them: one per vCPU count.
    const cache = process.env.QCRASH_CACHE;
    process.env.QCRASH_CACHE = tmp.join('cache');
    await mkdir(tmp.join('cache', 'snapshots'), { recursive: true });
    const saver = new FakeLauncher();
    const [one, two] = [
      await agentReadySnapshot(saver, kernel, '/nonexistent', base, 'tcg', 'fake'),
      await agentReadySnapshot(saver, kernel, '/nonexistent', base, 'tcg', 'fake', { cpus: 2 }),
    ];
    if (cache === undefined) delete process.env.QCRASH_CACHE;
    else process.env.QCRASH_CACHE = cache;
    t.not(one, two, 'a 2-vCPU state is saved apart from the 1-vCPU one');
    t.same(
      saver.machines.map((m) => m.spec.cpus),
      [undefined, 2],
    );
    const armed: unknown[] = [];
    const held = {
      step: 'sync',
      point: 'ext4_sync_fs',
      hit: 1,
      reached: true,
      ended: 'marker' as const,
      markerReached: true,
      heldCpu: 1,
      ranCpus: [0],
      heldMs: 40,
      progress: { before: 0, after: 8, wanted: 8 },
    };
    const holdDriver = async () => ({
      arm: async (p: unknown) => void armed.push(p),
      run: async (done: Promise<unknown>) => (await done, { ...held, line: describeHold(held) }),
      transcript: ['$vCont;c:1#00'],
      [Symbol.asyncDispose]: async () => {},
    });
    const yaml = `recovery: [kernel]\ncpus: 2\nsteps:\n  - mount\n  - sync: { cpu: 1 }\nhold: { step: sync, symbol: ext4_sync_fs, until: { stores: 8 } }\nkill:\n  - after: sync\n`;
    const { result, machines, dir } = await caseOf(yaml, () => ({}), {
      snapshots: new Map([
        ['small-4k', one],
        ['small-4k#cpus=2', two],
      ]),
      holdDriver,
    });
    t.equal(result.status, 'pass', result.error ?? '');
    const [workload, recovery] = machines.machines;
    t.match(
      workload!.spec,
      { cpus: 2, gdb: true, restoreFrom: two },
      'the workload machine has 2 vCPUs, a gdbstub, and restores the 2-vCPU state',
    );
    t.equal(recovery!.spec.cpus, undefined, 'the kernel recovery runs on 1 vCPU');
    t.equal(recovery!.spec.restoreFrom, one, 'and restores the 1-vCPU state');
    t.match(
      workload!.agent.seen.find((c) => c.command === 'sync'),
      { cpu: 1, hold: true },
      'the held step is pinned and announced',
    );
    t.match(armed, [{ step: 'sync', symbol: 'ext4_sync_fs', hit: 1, until: { marker: 'stores', count: 8 } }]);
    t.match(result.fired, {
      kind: 'after',
      step: 'sync',
      held: { reached: true, markerReached: true, line: /vCPU 1 held at .* while vCPU 0 ran: marker reached/ },
    });
    t.match(await readFile(join(dir, 'workload-hold-gdb.log'), 'utf8'), /vCont;c:1/, "the hold's gdb transcript is kept");
    const noDriver = await caseOf(yaml);
    t.equal(noDriver.result.status, 'error');
    t.match(noDriver.result.error, /holds an interleaving, and this run has no gdbstub driver/);
  },
);
