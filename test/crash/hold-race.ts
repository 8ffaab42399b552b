import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { createCaseDisk, flattenToRaw } from '../../harness/image/disk.ts';
import { readEntryState } from '../../harness/image/debugfs.ts';
import { agentReadySnapshot, launchRestoring } from '../../harness/vm/machine/snapshot-cache.ts';
import { detectAccel } from '../../harness/vm/machine/accel.ts';
import { toolVersions } from '../../harness/run/versions.ts';
import { runWorkload, type WorkloadOutcome } from '../../harness/crash/workload.ts';
import { gdbHoldDriverFactory } from '../../harness/crash/points/hold.ts';
import { kernelSymbols } from '../../harness/crash/kernel-symbols.ts';
import { MachinePool } from '../../harness/vm/machine/pool.ts';
import type { TempDir } from '../../harness/util/tempdir.ts';
import type { HoldPoint, Step } from '../../harness/scenario/model.ts';

/**
 * The EXT4_STATE_EXT_MIGRATE race of validate/mmap-race.yaml, run held or
 * free. A store through a shared mapping into a hole (nodelalloc: the block
 * is allocated at the fault) clears the state between ext4_ext_migrate()'s
 * walk and ext4_ext_swap_inode_data()'s check, and the swap must give up.
 * Shared by the real-VM test (hold-vm.test.ts) and the free-running
 * measurement script (hold-measure.ts).
 */
export const file = '/big/sparse';

/**
 * Right after ext4_ext_migrate's walk: the return from its last call of
 * finish_range (`retval = finish_range(handle, tmp_inode, &lb)`,
 * migrate.c:544), before the inlined ext4_ext_swap_inode_data() starts with
 * ext4_journal_ensure_credits() and then checks the state under
 * i_data_sem. ext4_ext_swap_inode_data has no symbol (inlined), and
 * finish_range and __ext4_journal_ensure_credits run once per range during
 * the walk, so no symbol's entry sits here; the driver finds the return
 * site in the guest's code. In Debian's 6.1.0-57-cloud-amd64 it is
 * ext4_ext_migrate+0x566 (objdump of scripts/extract-vmlinux's output: the
 * only direct call of finish_range, 0xffffffff8143f4b0, is at
 * 0xffffffff81440021).
 */
export const afterWalk = { symbol: 'ext4_ext_migrate', afterCall: 'finish_range', offset: 0 };

export interface RaceRun {
  outcome: WorkloadOutcome;
  /** qcrash-io migrate's line for the file: what FS_IOC_SETFLAGS returned. */
  ret: number;
  errno: number;
  mapping: string;
  /** The swap gave up: -EAGAIN, or 0 with the file still block-mapped (the stock 6.1 bug). */
  raceHit: boolean;
  ms: number;
}

/**
 * validate/mmap-race's steps; `held` adds what a hold needs of them. The
 * held task owns i_rwsem and a running journal handle, so the writer must
 * have listed its holes (SEEK_HOLE takes i_rwsem) before chattr starts,
 * and no periodic commit may start during the hold (a commit waits for the
 * held handle, and every new handle, the writer's page faults too, waits
 * for the commit): a pause after the writer starts and commit=60. Either
 * otherwise ends a hold at its limit with the writer stuck, which the
 * hold's record says.
 */
export function raceSteps(opts: { cpus: number; paceUs: number; held?: boolean }): Step[] {
  const pin = (cpu: number) => (opts.cpus > 1 ? { cpu } : {});
  return [
    { kind: 'mount', name: 'mount', options: ['nodelalloc', opts.held ? 'commit=60' : 'commit=5'] },
    {
      kind: 'writer',
      name: 'holes-start',
      mode: 'mmap-holes',
      path: file,
      size: 0,
      paceUs: opts.paceUs,
      action: 'start',
      ...pin(1),
    },
    ...(opts.held ? [{ kind: 'sleep' as const, name: 'writer-settles', ms: 300 }] : []),
    { kind: 'drop-caches', name: 'drop-caches' },
    { kind: 'migrate', name: 'migrate', paths: [file], recursive: false, ...pin(0) },
    {
      kind: 'writer',
      name: 'holes-stop',
      mode: 'mmap-holes',
      path: file,
      size: 0,
      paceUs: opts.paceUs,
      action: 'stop',
      mayFail: true,
    },
    { kind: 'umount', name: 'umount' },
  ];
}

/** The stock kernel, or with QCRASH_TEST_STOCK_RELEASE another installed cloud kernel (e.g. 6.1.0-57-cloud-amd64 beside a newer one). */
async function raceKernel() {
  const stock = await stockKernel();
  const release = process.env.QCRASH_TEST_STOCK_RELEASE;
  if (!release || release === stock.release) return stock;
  return {
    ...stock,
    id: `stock-${release}`,
    release,
    bzImage: `/boot/vmlinuz-${release}`,
    modulesDir: `/lib/modules/${release}`,
    provenance: { ...stock.provenance, release },
  };
}

export async function raceSetup(opts: { snapshotCpus?: number } = {}) {
  const kernel = await raceKernel();
  const initrd = (await buildInitramfs(kernel)).path;
  const base = await buildImage(await loadRecipe('sparse-dind-1k'));
  const machines = new MachinePool({ slots: 1 });
  const holdDriver = gdbHoldDriverFactory(() => kernelSymbols(machines, kernel, initrd));
  // An agent-ready state saved with that many vCPUs: the held runs restore it instead of booting.
  const snapshot = opts.snapshotCpus
    ? {
        cpus: opts.snapshotCpus,
        file: await agentReadySnapshot(
          machines,
          kernel,
          initrd,
          base,
          (await detectAccel()).accel,
          (await toolVersions(kernel.release)).qemu,
          { cpus: opts.snapshotCpus },
        ),
      }
    : undefined;
  return { kernel, initrd, base, holdDriver, machines, snapshot };
}

export async function runRace(
  env: Awaited<ReturnType<typeof raceSetup>>,
  tmp: TempDir,
  name: string,
  o: { cpus: number; paceUs: number; hold?: HoldPoint; seed?: number },
): Promise<RaceRun> {
  const t0 = performance.now();
  const disk = await createCaseDisk(env.base.path, tmp.join(`${name}.img`));
  let outcome: WorkloadOutcome;
  {
    const restoreFrom = env.snapshot?.cpus === o.cpus ? { restoreFrom: env.snapshot.file } : {};
    await using vm = await launchRestoring(env.machines, {
      role: 'test',
      kernel: env.kernel,
      initrd: env.initrd,
      disk,
      gdb: o.hold !== undefined,
      cpus: o.cpus,
      ...restoreFrom,
    });
    if (o.hold) {
      await using driver = await env.holdDriver(vm);
      outcome = await runWorkload(vm, raceSteps({ ...o, held: true }), { kind: 'none' }, o.seed ?? 1, {
        hold: { point: o.hold, driver },
      });
    } else {
      outcome = await runWorkload(vm, raceSteps(o), { kind: 'none' }, o.seed ?? 1);
    }
  }
  const raw = await flattenToRaw(disk, tmp.join(`${name}.raw`));
  const [state] = await readEntryState(raw, [file]);
  const out = outcome.records.find((r) => r.name === 'migrate')?.output ?? '';
  const m = /^migrate file (-?\d+) (\d+) /m.exec(out);
  const ret = m ? Number(m[1]) : NaN;
  const errno = m ? Number(m[2]) : NaN;
  const mapping = state?.stat?.mapping ?? '?';
  return {
    outcome,
    ret,
    errno,
    mapping,
    raceHit: (ret === -1 && errno === 11) || (ret === 0 && mapping === 'blocks'),
    ms: performance.now() - t0,
  };
}
