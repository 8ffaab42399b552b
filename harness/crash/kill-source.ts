import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KillPoint, Step } from '../scenario/model.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { BaseImage } from '../image/build.ts';
import { createCaseDisk, flattenToRaw } from '../image/disk.ts';
import type { Machine, MachineLauncher } from '../vm/machine/machine.ts';
import { launchRestoring } from '../vm/machine/snapshot-cache.ts';
import type { CrashState, CrashStateSource } from './crash-state.ts';
import { runWorkload, type WorkloadOutcome } from './workload.ts';
import type { KernelPointDriver } from './points/index.ts';

export interface KillRunEnv {
  machines: MachineLauncher;
  kernel: KernelInfo;
  initrd: string;
  base: BaseImage;
  /** A saved agent-ready state to restore instead of booting (one that does not load is saved anew and the case boots). */
  restoreFrom?: string;
  /** Makes the gdbstub driver for kernel and commit points. */
  kernelDriver?: (machine: Machine) => Promise<KernelPointDriver & AsyncDisposable>;
  stepTimeoutMs?: number;
}

/**
 * The crash states of a kill point: one VM run, one state. The case's disk
 * is a sparse raw copy of the base written where the crash image belongs
 * (`<caseDir>/crash.img`): once QEMU is gone it is the crash image. A base
 * that asks for overlays (a user's image) gets a qcow2 overlay instead,
 * flattened into crash.img once QEMU is gone: the same one copy of the
 * data, made after the run rather than before it. The console, QMP, agent
 * and gdb transcripts go to the case folder.
 */
export class KillPointSource implements CrashStateSource {
  constructor(
    private readonly steps: readonly Step[],
    private readonly point: KillPoint,
    private readonly seed: number,
    private readonly env: KillRunEnv,
    private readonly caseDir: string,
  ) {}

  async *states(): AsyncIterable<CrashState> {
    const image = join(this.caseDir, 'crash.img');
    const overlay = this.env.base.caseDisk === 'qcow2';
    const disk = await createCaseDisk(
      this.env.base.path,
      overlay ? join(this.caseDir, 'disk.qcow2') : image,
      overlay ? 'qcow2' : 'raw',
    );
    const needsGdb = this.point.kind === 'kernel' || this.point.kind === 'commit';
    const t0 = performance.now();
    let machineMs: number;
    let queuedMs: number;
    let outcome: WorkloadOutcome;
    try {
      {
        await using machine = await launchRestoring(this.env.machines, {
          role: 'workload',
          kernel: this.env.kernel,
          initrd: this.env.initrd,
          disk,
          gdb: needsGdb,
          ...(this.env.restoreFrom ? { restoreFrom: this.env.restoreFrom } : {}),
        });
        queuedMs = machine.queuedMs ?? 0;
        machineMs = performance.now() - t0 - queuedMs;
        try {
          const opts = this.env.stepTimeoutMs ? { stepTimeoutMs: this.env.stepTimeoutMs } : {};
          if (needsGdb && this.env.kernelDriver) {
            const driver = await this.env.kernelDriver(machine);
            try {
              outcome = await runWorkload(machine, this.steps, this.point, this.seed, { ...opts, kernelDriver: driver });
            } finally {
              await driver[Symbol.asyncDispose]();
              await writeFile(join(this.caseDir, 'workload-gdb.log'), (driver.transcript ?? []).join('\n') + '\n');
            }
          } else {
            outcome = await runWorkload(machine, this.steps, this.point, this.seed, opts);
          }
        } finally {
          await machine.saveArtefacts(join(this.caseDir, 'workload-'));
        }
      }
      if (overlay) await flattenToRaw(disk, image);
    } finally {
      // The overlay's own writes are in crash.img now (or the case errored): it is no artefact.
      if (overlay) await rm(disk.path, { force: true });
    }
    const console = await readFile(join(this.caseDir, 'workload-console.log'), 'utf8').catch(() => '');
    yield {
      label: '',
      image,
      fired: outcome.fired,
      reached: outcome.reached,
      ending: outcome.ending,
      records: outcome.records,
      consoles: [{ boot: 'workload boot', text: console }],
      phases: { queuedMs, machineMs, workloadMs: performance.now() - t0 - queuedMs - machineMs },
    };
  }
}
