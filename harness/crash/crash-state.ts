import type { StepRecord } from './expectations.ts';
import type { StateVariant } from './writelog/states.ts';

/** QEMU's SHUTDOWN event (or none), kept with what fired. */
interface Ended {
  shutdownEvent?: unknown;
  /** What ran while a vCPU was held at the scenario's hold point, when it has one. */
  held?: HeldInterleaving;
}

/** How a hold ended: its marker, its time limit, or something that cut it short. */
export type HoldEnd = 'marker' | 'limit' | 'not-hit' | 'stopped' | 'vm-gone' | 'no-other-cpu';

/**
 * One interleaving held at a kernel point (harness/crash/points/hold.ts):
 * which vCPU was held where, which ran, for how long, and how far the
 * background writers got meanwhile. A report counts held interleavings
 * (`reached`) and those that reached their marker (`markerReached`).
 */
export interface HeldInterleaving {
  step: string;
  /** The point asked for ("ext4_ext_migrate+0x566") and its hit. */
  point: string;
  hit: number;
  /** The point was hit and a vCPU held. */
  reached: boolean;
  ended: HoldEnd;
  markerReached: boolean;
  /** vCPU indexes (0-based): the one held, the ones that ran. */
  heldCpu?: number;
  ranCpus?: number[];
  /** Where the held vCPU stopped, symbolized. */
  symbol?: string;
  heldMs?: number;
  /** Writer progress (stores or rounds) on the console when the hold began and ended, and the marker's target. */
  progress?: { before: number; after: number; wanted?: number };
  /** The hold in one line, for a case's report. */
  line: string;
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
        /** The function has no symbol of its own on this kernel: the point stopped in this compiler clone of it ("free_dind_blocks.constprop.0"). */
        clone?: { of: string; symbol: string };
      }
    | { kind: 'commit'; step: string; k: number; symbol: string; rip: string; atMs?: number }
    /** The workload finished its target step without the point firing. */
    | { kind: 'not-reached'; step?: string; why: string }
    | LogStateFired
  );

/** One write of a log in a report: its stable id, its entry and what it held. */
export interface WriteNote {
  id: string;
  index: number;
  /** What the write held (explain.ts), e.g. "block 3: block bitmap of group 0". */
  summary?: string;
}

/** A failing power-loss state shrunk to the writes that matter (minimize.ts, explained by explain.ts). */
export interface MinimizedState {
  /** The smallest set of lost writes that still fails the same way. */
  dropped: WriteNote[];
  /** Writes of the epoch that landed and that the failure needs (losing one of them too makes it pass). */
  needed: WriteNote[];
  /** Oracle calls made; `exhausted` when the budget stopped it before it was 1-minimal. */
  tests: number;
  exhausted: boolean;
}

/**
 * A crash state replayed from a recorded write log: the image after the
 * log's entries [0, base) plus the epoch's writes that survived.
 */
export interface LogStateFired {
  kind: 'log';
  /** The state's name in its log's plan: flush-17, flush-17-drop-3a9f01c2, ack-sync, end. */
  state: string;
  stateKind: 'prefix' | 'power-loss';
  variant: StateVariant;
  /** Flush epoch: k for a state at or inside the epoch the k-th flush closes. */
  epoch: number;
  /** Log entries [0, position) had completed when it crashed (the dropped ones among them lost). */
  position: number;
  /** Entries the whole log holds. */
  entries: number;
  /** Entries [0, base) replayed before the epoch's surviving writes. */
  base: number;
  /** Writes of the epoch that never reached the disk (power-loss states). */
  dropped: WriteNote[];
  torn?: WriteNote & { keptSectors: number };
  /** Steps the agent had acknowledged by then (their sync/fsync/umount completed). */
  acksBefore: string[];
  /** The recording this state came from (`<scenario>/log/r<rep>`): its folder holds the log. */
  unit: string;
  /** Fast commits the recording wrote (TAIL tags in the journal's fast-commit area, writelog/fast-commits.ts), when any. */
  fastCommits?: number;
  minimized?: MinimizedState;
  /** A failing state whose crash image is not kept: the case that keeps one for the same signature. */
  keptImageIn?: string;
}

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
  phases: { queuedMs?: number; machineMs?: number; workloadMs?: number; materialiseMs?: number };
  /**
   * The image is shared, not the state's own (a write-log working image
   * checked in place): nothing may write it except a program given an undo
   * file from here (`e2fsck -z`); what it changed is undone after `settle`.
   */
  inPlace?: {
    undoFile(): string | undefined;
    /** Which byte ranges still hold the base image's bytes as of now (materialize.ts CheckScope.unchangedFromBase). */
    unchangedFromBase?(): ((offset: number, length: number) => boolean) | undefined;
    /** The identity of the image's bytes as of now (materialize.ts CheckScope.identity): equal identities, equal images. */
    identity?(): string | undefined;
  };
  /** Call once the checks are done with `image` (a write-log source then restores or removes it). */
  settle?(): void;
}

/**
 * Given a workload, yields crash images and what produced each: a kill point
 * yields one state per VM run; a write log yields many from one run, with
 * no VM per state (crash/writelog/source.ts). A consumer may check states
 * in parallel: it calls each state's `settle` when done with its image, and
 * the source holds back the next ones while `jobs` are unsettled.
 */
export interface CrashStateSource {
  states(): AsyncIterable<CrashState>;
}
