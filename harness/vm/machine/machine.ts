import type { BootKernel } from './boot-kernel.ts';
import type { AgentPort } from '../agent/client.ts';
import type { QmpEvent } from '../qmp/protocol.ts';
import type { Accel } from './accel.ts';
import type { VmDisk as DiskSpec } from './argv.ts';

/**
 * The test disk a machine runs on: the crash image once the machine is gone.
 * With `writeLog`, every write and flush the guest sends is also recorded
 * there (QEMU's blklogwrites, see argv.ts and harness/crash/writelog/).
 */
/** What a machine is for: pools and reports tell them apart, QEMU does not. */
type MachineRole = 'workload' | 'recovery' | 'symbols' | 'snapshot' | 'bench' | 'test';

export interface MachineSpec {
  role: MachineRole;
  kernel: BootKernel;
  initrd: string;
  disk: DiskSpec;
  /** Expose the gdbstub (kernel crash points). */
  gdb?: boolean;
  /** Restore this saved agent-ready state instead of booting. */
  restoreFrom?: string;
  memoryMb?: number;
  /**
   * vCPUs (default 1). A saved state only restores into a machine with as
   * many vCPUs as the one that saved it (snapshot-cache.ts launchRestoring).
   */
  cpus?: number;
  /** Extra kernel command-line words. */
  append?: string[];
  /** Extra QEMU arguments, each element one argument. */
  extraArgs?: string[];
  /** Start with vCPUs stopped (-S); the caller resumes with QMP `cont`. */
  startStopped?: boolean;
  /** Wait for the guest agent (default true). */
  waitAgent?: boolean;
  bootTimeoutMs?: number;
  /** Default: KVM when it works here, else TCG; QCRASH_ACCEL=tcg|kvm forces one. */
  accel?: Accel;
}

export interface AgentHello {
  release: string;
  /** Guest uptime in seconds when the agent started (a restored guest reports the snapshot's). */
  uptime: number;
  /** Host milliseconds from starting the machine to the agent being ready. */
  bootMs: number;
  /**
   * Where bootMs went, in host milliseconds since the machine was started:
   * QMP answered, the agent port connected, the saved state loaded and the
   * guest resumed (restores only), the agent answered.
   */
  phases: { qmp: number; agentPort: number; restored?: number; ready: number };
}

/** How a machine ended: QEMU's SHUTDOWN event when there was one. */
export type ShutdownEvent = QmpEvent | undefined;

/**
 * A guest the harness drives: the QEMU `Vm` in runs, a scripted fake in
 * unit tests. Everything above the vm/ layer (workloads, crash points,
 * recoveries, snapshots, symbol lookup, bench) talks to this interface only,
 * so a case and its verdict can be tested without QEMU.
 */
export interface Machine extends AsyncDisposable {
  readonly spec: MachineSpec;
  readonly agent: AgentPort;
  readonly hello?: AgentHello;
  /** The gdbstub's unix socket, when the spec asked for one. */
  readonly gdbSocket?: string;
  /** Milliseconds the launch waited for a free slot in its pool before it started (0 or absent: none). */
  readonly queuedMs?: number;
  /** The crash: freeze the vCPUs so nothing more reaches the disk, then end QEMU. */
  kill(): Promise<ShutdownEvent>;
  /** The clean end: sync, unmount and power off through the agent. */
  powerOff(): Promise<ShutdownEvent>;
  /** Save the whole VM state (for agent-ready snapshots); the machine is stopped afterwards. */
  saveState(file: string): Promise<void>;
  consoleText(): Promise<string>;
  /** Console log and channel transcripts into a case folder: `${prefix}console.log`, `${prefix}qmp.jsonl`, `${prefix}agent.log`. */
  saveArtefacts(prefix: string): Promise<void>;
  /** The one teardown path; raises AbnormalShutdownError when the machine had to be killed hard. */
  shutdown(): Promise<void>;
}

/** Hands out machines: the pool in runs (within the jobs and memory budget), a fake in tests. */
export interface MachineLauncher {
  launch(spec: MachineSpec): Promise<Machine>;
}
