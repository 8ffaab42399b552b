import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HoldPoint, KillPoint, Step } from '../scenario/model.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { BaseImage } from '../image/build.ts';
import { createCaseDisk, flattenToRaw } from '../image/disk.ts';
import type { Machine, MachineLauncher } from '../vm/machine/machine.ts';
import { launchRestoring } from '../vm/machine/snapshot-cache.ts';
import type { CrashState, CrashStateSource } from './crash-state.ts';
import { runWorkload, type WorkloadOutcome } from './workload.ts';
import type { KernelPointDriver } from './points/index.ts';
import type { HoldDriver } from './points/hold.ts';

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
  /** vCPUs of the workload VM (default 1); `restoreFrom` must have been saved with as many. */
  cpus?: number;
  /** An interleaving held at a kernel point, and the gdbstub driver that holds it. */
  hold?: { point: HoldPoint; driver: (machine: Machine) => Promise<HoldDriver & AsyncDisposable> };
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

  /**
   * The workload on the launched machine, with the gdbstub drivers its kill
   * point and its hold need (one connection at a time: the hold's ends with
   * its step, a kill point's is armed at its own step). Their transcripts go
   * to the case folder.
   */
  private async runOn(machine: Machine): Promise<WorkloadOutcome> {
    const opts = this.env.stepTimeoutMs ? { stepTimeoutMs: this.env.stepTimeoutMs } : {};
    const needsKernel = this.point.kind === 'kernel' || this.point.kind === 'commit';
    const kernelDriver = needsKernel && this.env.kernelDriver ? await this.env.kernelDriver(machine) : undefined;
    const holdDriver = this.env.hold ? await this.env.hold.driver(machine) : undefined;
    try {
      return await runWorkload(machine, this.steps, this.point, this.seed, {
        ...opts,
        ...(kernelDriver ? { kernelDriver } : {}),
        ...(holdDriver ? { hold: { point: this.env.hold!.point, driver: holdDriver } } : {}),
      });
    } finally {
      await kernelDriver?.[Symbol.asyncDispose]();
      await holdDriver?.[Symbol.asyncDispose]();
      if (kernelDriver)
        await writeFile(join(this.caseDir, 'workload-gdb.log'), (kernelDriver.transcript ?? []).join('\n') + '\n');
      if (holdDriver)
        await writeFile(join(this.caseDir, 'workload-hold-gdb.log'), (holdDriver.transcript ?? []).join('\n') + '\n');
    }
  }

  async *states(): AsyncIterable<CrashState> {
    const image = join(this.caseDir, 'crash.img');
    const overlay = this.env.base.caseDisk === 'qcow2';
    const disk = await createCaseDisk(
      this.env.base.path,
      overlay ? join(this.caseDir, 'disk.qcow2') : image,
      overlay ? 'qcow2' : 'raw',
    );
    const needsGdb = this.point.kind === 'kernel' || this.point.kind === 'commit' || this.env.hold !== undefined;
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
          ...(this.env.cpus && this.env.cpus !== 1 ? { cpus: this.env.cpus } : {}),
          ...(this.env.restoreFrom ? { restoreFrom: this.env.restoreFrom } : {}),
        });
        queuedMs = machine.queuedMs ?? 0;
        machineMs = performance.now() - t0 - queuedMs;
        try {
          outcome = await this.runOn(machine);
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
