import type { StepRecord } from './expectations.ts';

/** QEMU's SHUTDOWN event (or none), kept with what fired. */
interface Ended {
  shutdownEvent?: unknown;
}

/**
 * What actually happened at a crash point, recorded with the case: one
 * variant per kind of crash state. `atMs` is host milliseconds after the
 * target step's start marker when the VM was frozen (0 for `before`).
 */
export type FiredPoint = Ended &
  (
    | { kind: 'none' }
    | { kind: 'before'; step: string; atMs: 0 }
    | { kind: 'after'; step: string; atMs: number }
    | { kind: 'delay'; step: string; atMs: number; delayMs: number }
    | { kind: 'during'; step: string; atMs: number; windowMs: number }
    | {
        kind: 'kernel';
        step: string;
        /** Where the guest stopped, symbolized ("ext4_ext_migrate", "finish_range+0x4"). */
        symbol: string;
        hits: number;
        rip: string;
        atMs?: number;
        /** The stop was made durable: the run went on until this commit completed. */
        thenCommit?: { symbol: string; commits: number };
      }
    | { kind: 'commit'; step: string; k: number; symbol: string; rip: string; atMs?: number }
    /** The workload finished its target step without the point firing. */
    | { kind: 'not-reached'; step?: string; why: string }
  );

export type FiredKind = FiredPoint['kind'];

/**
 * One crash state: an image a crash may have left, and how it came to be.
 * Oracles read the image and the logs, never a live VM, so a state means
 * the same whether a VM was killed at a point or a write log was replayed.
 */
export interface CrashState {
  /** Names the state among its source's states: '' for a kill point's single state. */
  label: string;
  /** The raw crash image. Recoveries work on copies of it. */
  image: string;
  fired: FiredPoint;
  /** False when the crash point never fired: the case is "not reached", never a pass. */
  reached: boolean;
  /** How the VM ended: killed at the point, or shut down cleanly (no-kill cases). */
  ending: 'killed' | 'clean';
  /** The workload's steps as they stood at this state (which had been acknowledged). */
  records: StepRecord[];
  /** Console logs produced with the state, by boot name, for the console oracle. */
  consoles: Array<{ boot: string; text: string }>;
  /** Host milliseconds spent producing it; queuedMs waiting for a machine slot, machineMs starting the machine after that. */
  phases: { queuedMs?: number; machineMs?: number; workloadMs?: number };
}

/**
 * Given a workload, yields crash images and what produced each: a kill point
 * yields one state per VM run; a write log will yield many from one run,
 * with no VM per state.
 */
export interface CrashStateSource {
  states(): AsyncIterable<CrashState>;
}
