import { availableParallelism, freemem } from 'node:os';
import type { Machine, MachineLauncher, MachineSpec } from './machine.ts';
import { Vm } from './vm.ts';

/**
 * Host memory one VM takes: the guest's 256 MiB plus QEMU and TCG's
 * translation buffers: a running qcrash VM showed about 310 MiB RSS here,
 * rounded up for headroom.
 */
export const vmMemoryMiB = 512;

/**
 * VMs at once: `requested` when the user says, else one per core but no
 * more than free memory holds; at least one. Every entry point (CLI, runner,
 * pool, bench) takes its job count from here.
 */
export function jobsOrDefault(requested?: number): number {
  return Math.max(1, requested ?? Math.min(availableParallelism(), memorySlots()));
}

/** How many VMs free memory holds now. */
export function memorySlots(): number {
  return Math.max(1, Math.floor(freemem() / (vmMemoryMiB * 1024 * 1024)));
}

/**
 * Which waiting launch gets the next free slot: lower first, then in
 * order of asking. A recovery machine finishes a case whose crash image
 * already exists; a workload machine starts a new one. With more cases in
 * flight than slots (the runner overlaps one case's host-side checks with
 * the next case's VM), recoveries going first keep the cases in flight few
 * and finish them in order.
 */
const rolePriority: Record<MachineSpec['role'], number> = {
  recovery: 0,
  snapshot: 1,
  symbols: 1,
  workload: 2,
  bench: 2,
  test: 2,
};

/**
 * The machine layer's front door: every VM of a run (workloads, kernel
 * recoveries, the symbol lookup boot, snapshot boots) is launched or
 * restored here, at most `slots` at once, so the jobs and memory budget
 * holds whoever asks. A slot is held from launch until the machine's
 * shutdown (or dispose) and released exactly once, also when the launch
 * fails. Waiting launches get a slot by role (rolePriority), then in order.
 * `launch` in the options replaces QEMU (tests pass a fake).
 */
export class MachinePool implements MachineLauncher {
  readonly slots: number;
  private active = 0;
  private queue: Array<{ priority: number; seq: number; start: () => void }> = [];
  private seq = 0;
  /** Most machines alive at once so far (bench and tests read it). */
  peak = 0;
  launched = 0;
  private readonly launchFn: (spec: MachineSpec) => Promise<Machine>;

  constructor(opts: { slots?: number; launch?: (spec: MachineSpec) => Promise<Machine> } = {}) {
    this.slots = jobsOrDefault(opts.slots);
    this.launchFn = opts.launch ?? ((spec) => Vm.launch(spec));
  }

  async launch(spec: MachineSpec): Promise<Machine> {
    let queuedMs = 0;
    if (!this.tryAcquire()) {
      const asked = performance.now();
      await this.waitForSlot(rolePriority[spec.role] ?? 2);
      queuedMs = performance.now() - asked;
    }
    let machine: Machine;
    try {
      machine = await this.launchFn(spec);
    } catch (e) {
      this.release();
      throw e;
    }
    this.launched++;
    return new PooledMachine(machine, () => this.release(), queuedMs);
  }

  /** Take a free slot now, if there is one and nobody is waiting for it. */
  private tryAcquire(): boolean {
    if (this.active >= this.slots || this.queue.length) return false;
    this.active++;
    this.peak = Math.max(this.peak, this.active);
    return true;
  }

  private waitForSlot(priority: number): Promise<void> {
    return new Promise((resolve) => {
      this.queue.push({
        priority,
        seq: this.seq++,
        start: () => {
          this.active++;
          this.peak = Math.max(this.peak, this.active);
          resolve();
        },
      });
      this.queue.sort((a, b) => a.priority - b.priority || a.seq - b.seq);
    });
  }

  private release(): void {
    this.active--;
    this.queue.shift()?.start();
  }

  /** Machines alive now. */
  get busy(): number {
    return this.active;
  }
}

/** A machine that gives its pool slot back when it is shut down, whichever way. */
class PooledMachine implements Machine {
  private released = false;
  constructor(
    readonly inner: Machine,
    private readonly onRelease: () => void,
    readonly queuedMs: number,
  ) {}

  get spec() {
    return this.inner.spec;
  }
  get agent() {
    return this.inner.agent;
  }
  get hello() {
    return this.inner.hello;
  }
  get gdbSocket() {
    return this.inner.gdbSocket;
  }
  kill() {
    return this.inner.kill();
  }
  powerOff() {
    return this.inner.powerOff();
  }
  saveState(file: string) {
    return this.inner.saveState(file);
  }
  consoleText() {
    return this.inner.consoleText();
  }
  saveArtefacts(prefix: string) {
    return this.inner.saveArtefacts(prefix);
  }

  async shutdown(): Promise<void> {
    try {
      await this.inner.shutdown();
    } finally {
      if (!this.released) {
        this.released = true;
        this.onRelease();
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}
