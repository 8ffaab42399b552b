import type { Allowance, RecoveryMode } from '../findings/finding.ts';

/** How a crash image is recovered before the oracles look at it; defined with the findings that name it. */
export type { RecoveryMode };

/**
 * A Step is one thing the guest agent does on the test filesystem. The host
 * sends steps one at a time; the agent announces the start of each (a marker
 * the host may wait on) and acknowledges its end with an exit status.
 */
export type Step = StepCommon &
  (
    | { kind: 'mount'; name: string; options: string[] }
    | { kind: 'umount'; name: string }
    /**
     * FS_IOC_SETFLAGS +EXTENTS_FL on each path, file by file with each result (qcrash-io migrate); `recursive` walks the tree as chattr -R does, skipping symlinks.
     * `to: 'blocks'`: the reverse, EXTENTS_FL cleared (chattr -e, ext4_ind_migrate: a single-extent file within the direct blocks goes back to a block map).
     */
    | { kind: 'migrate'; name: string; paths: string[]; recursive: boolean; to?: 'blocks' }
    /** Write `size` pseudo-random bytes (seeded by the host) at `offset`; `append` ignores offset. */
    | { kind: 'write'; name: string; path: string; size: number; offset: number; append: boolean; seed: number }
    | { kind: 'fsync'; name: string; path: string }
    | { kind: 'sync'; name: string }
    | { kind: 'drop-caches'; name: string }
    /** A background `while :; do sync; done` loop, started and stopped by name. */
    | { kind: 'sync-loop'; name: string; action: 'start' | 'stop' }
    /**
     * Background writers beside a migration: O_DIRECT, mmap or buffered
     * (page cache) rewrites of `size` bytes from `offset` (a multiple of the
     * page size; a range past the end grows the file), or `mmap-holes`: one
     * store into each hole page of an existing file, `paceUs` apart (block
     * allocation racing chattr).
     */
    | {
        kind: 'writer';
        name: string;
        mode: WriterMode;
        path: string;
        size: number;
        offset?: number;
        paceUs: number;
        action: 'start' | 'stop';
      }
    | { kind: 'sleep'; name: string; ms: number }
    /**
     * A background loop writing back the disk's dirty buffers (qcrash-writeback):
     * `deviceFlush` an fsync of the device (a cache flush each round), else
     * sync_file_range (written, not flushed); `pauseMs` between rounds.
     */
    | { kind: 'flush-loop'; name: string; action: 'start' | 'stop'; deviceFlush: boolean; pauseMs: number }
    /** Guest settings written to /proc/sys (keys from an allow-list); the scenario's `sysctl:` is one before the first step. */
    | { kind: 'sysctl'; name: string; settings: Record<string, number> }
  );

/**
 * `mayFail`: the scenario expects the step may fail in the guest (exit
 * status not 0); otherwise a failed step is a `step-failed` finding. A
 * migrate whose ioctl refuses a file does not fail its step.
 */
interface StepCommon {
  mayFail?: boolean;
  /**
   * Run the step pinned to this vCPU (0-based; needs `Scenario.cpus` above
   * it). A writer started by the step keeps the pin. Absent: not pinned.
   */
  cpu?: number;
}

export type StepKind = Step['kind'];
export const writerModes = ['odirect', 'mmap', 'buffered', 'mmap-holes'] as const;
type WriterMode = (typeof writerModes)[number];

/**
 * Where a case kills the VM. Agent points are timed against step markers;
 * kernel points (gdbstub) stop the guest inside the kernel; `none` lets the
 * workload finish and shuts down cleanly (the oracles still run: a migration
 * that corrupts data without any crash is the worst finding).
 */
export type CrashPoint =
  | { kind: 'none' }
  | { kind: 'before'; step: string }
  | { kind: 'after'; step: string }
  /** Kill `delayMs` after the step's start marker (a fixed delay). */
  | { kind: 'delay'; step: string; delayMs: number }
  /** Kill at a host-seeded random time in [0, windowMs) after the step's start marker. */
  | { kind: 'during'; step: string; windowMs: number }
  /** Stop at a kernel symbol through the gdbstub, armed only inside `step`'s window. */
  | {
      kind: 'kernel';
      step: string;
      symbol: string;
      offset: number;
      hit: number;
      /** After the stop: let this many further hits happen, or wait delayMs of guest run time. */
      thenHits: number;
      delayMs: number;
      /** After the stop, run on until this many more jbd2 commits have completed (0: kill at the stop). */
      thenCommits?: number;
    }
  /** Kill right after the k-th jbd2 commit that completes inside `step`'s window. */
  | { kind: 'commit'; step: string; k: number }
  /**
   * A crash state replayed from a recorded write log (no VM per state):
   * the cases a write-log unit yields once its log is recorded. Never
   * written in a `kill:` list; `crash-states:` asks for them.
   */
  | { kind: 'log'; stateKind: LogStateKind; state: string };

/**
 * An interleaving held at a kernel point (`hold:`): the vCPU of the task
 * that makes the `hit`-th call of `symbol`+`offset` inside `step` is
 * stopped while the other vCPUs run, until the marker is reached or
 * `limitMs` has passed; then everything runs again and the case goes on to
 * its crash point. Needs `cpus` of 2 or more. Not a crash point itself: it
 * shapes the run every kill point of the scenario then cuts.
 */
export interface HoldPoint {
  step: string;
  symbol: string;
  /**
   * Hold where `symbol` returns from its last direct call of this function
   * (e.g. ext4_ext_migrate after finish_range: the walk is done, the swap
   * not begun), found in the guest's code; `offset` is added to that.
   */
  afterCall?: string;
  offset: number;
  hit: number;
  /**
   * `stores`: hold until background writers (qcrash-io) have reported
   * `count` more stores (mmap-holes) or rounds (odirect, mmap) on the
   * console than when the hold began. Absent: hold for `limitMs`.
   */
  until?: { marker: 'stores'; count: number };
  /** The hold ends here whatever happened: a held task may own what the others wait for. */
  limitMs: number;
}

/** Kill points a scenario's `kill:` list holds (the workload drives each to its kill). */
export type KillPoint = Exclude<CrashPoint, { kind: 'log' }>;

/** prefix: everything completed up to a point; power-loss: some writes of a flush epoch lost. */
type LogStateKind = 'prefix' | 'power-loss';

/**
 * `crash-states: { from: log, ... }`: record the workload's writes once
 * (QEMU's blklogwrites) and check crash states replayed from the log on the
 * host: prefix states at every flush and step acknowledgement, power-loss
 * states inside each flush epoch (harness/crash/writelog/).
 */
export interface CrashStatesSpec {
  from: 'log';
  /** Prefix states at every flush, FUA write and step ack (`all`), or none. */
  prefixes: 'all' | 'none';
  /** Power-loss states per flush epoch (0: none), their seed and the seeded random subsets tried per epoch. */
  perEpoch: number;
  seed: number;
  subsets: number;
  /** Also torn multi-sector writes. */
  torn: boolean;
  /** Most states one recording yields (prefix states first). */
  budget: number;
  /** States also recovered by booting the kernel, chosen by seed, besides every state that failed under e2fsck recovery. */
  kernelSample: number;
  /** Most failing power-loss states minimised per recording (delta debugging over the lost writes). */
  minimize: number;
  /** Oracle calls one minimisation may make. */
  minimizeTests: number;
  /** How the recorded run ends: a clean power-off (the last state is the no-crash state) or a kill after the last step. */
  end: 'poweroff' | 'kill';
}

/** Bound on each workload step and each wait for a crash point: a wedged guest must not hang a run. */
export const stepTimeoutMs = 120_000;

/** One scenario file after parsing and resolution (run/resolve-scenario.ts): it runs on `recipe` or `image`. */
export interface Scenario {
  name: string;
  file: string;
  /** sha256 of the file's bytes, recorded in summary.json. */
  hash: string;
  description?: string;
  /** A known bug's kernel lines it was confirmed on (`confirmed-on:`). */
  confirmedOn?: string[];
  /** The recipe the base image is built from (a name, or an absolute path to a recipe file); absent when `image` is given. */
  recipe?: string;
  /** A user's own filesystem image (absolute path), used instead of a recipe's: `image:` in the file, or `--image`. */
  image?: string;
  steps: Step[];
  crashPoints: KillPoint[];
  /** Write-log crash states (`crash-states:`), when the scenario asks for them. */
  crashStates?: CrashStatesSpec;
  /** The line of each crash point's `kill:` item (for errors found later, such as an unknown kernel symbol). */
  pointLines?: Array<number | undefined>;
  repeat: number;
  recovery: RecoveryMode[];
  allow: Allowance;
  /** Suite label for grouping (e.g. "known-bugs"). */
  suite: string;
  /** vCPUs of the guest (default 1). */
  cpus?: number;
  /** An interleaving held at a kernel point in every case of the scenario. */
  hold?: HoldPoint;
  /** The line of `hold:` (for an unknown kernel symbol found later). */
  holdLine?: number;
}

/** The key a scenario's base image goes by in a run (its recipe, or its image file): cases of one key share the image and its saved VM state. */
export function baseImageKey(s: Pick<Scenario, 'recipe' | 'image'>): string {
  if (s.image) return `image:${s.image}`;
  if (!s.recipe) throw new Error('a scenario has neither a recipe nor an image');
  return s.recipe;
}

/**
 * The key a saved agent-ready state goes by in a run: the base image's, and
 * the vCPU count when it is not 1 (a state restores only into a machine
 * with as many vCPUs as the one that saved it).
 */
export function machineStateKey(s: Pick<Scenario, 'recipe' | 'image' | 'cpus'>): string {
  const cpus = s.cpus ?? 1;
  return cpus === 1 ? baseImageKey(s) : `${baseImageKey(s)}#cpus=${cpus}`;
}

/**
 * One scenario x crash point x repetition: the unit that runs in one VM; or
 * one crash state of a recorded write log (crashPoint kind `log`).
 */
export interface CaseSpec {
  /** Stable id: "<scenario id>/<point-label>/r<rep>"; the same on every machine for the same inputs. */
  id: string;
  scenario: Scenario;
  crashPoint: CrashPoint;
  pointLabel: string;
  repetition: number;
  /** Derived from the run seed and the case id, so a case is reproducible alone. */
  seed: number;
}

export function crashPointLabel(p: CrashPoint): string {
  switch (p.kind) {
    case 'none':
      return 'no-kill';
    case 'before':
    case 'after':
      return `${p.kind}-${p.step}`;
    case 'delay':
      return `delay-${p.step}-${p.delayMs}ms`;
    case 'during':
      return `during-${p.step}-${p.windowMs}ms`;
    case 'kernel': {
      let s = `kernel-${p.step}-${p.symbol}${p.offset ? `+0x${p.offset.toString(16)}` : ''}-hit${p.hit}`;
      if (p.thenHits) s += `-then${p.thenHits}`;
      if (p.delayMs) s += `-delay${p.delayMs}ms`;
      if (p.thenCommits) s += `-commit${p.thenCommits}`;
      return s;
    }
    case 'commit':
      return `commit-${p.step}-${p.k}`;
    case 'log':
      // The state kind, not its name or index: kernels under validate write different logs,
      // and a signature must survive that.
      return `log-${p.stateKind}`;
  }
}

/**
 * One recorded run of a scenario's workload and every crash state its log
 * yields: `<scenario>/log/r<rep>`; its states are the cases
 * `<scenario>/log/<state>/r<rep>`.
 */
export interface LogUnitSpec {
  id: string;
  scenario: Scenario;
  crashStates: CrashStatesSpec;
  repetition: number;
  /** The recording's seed (what its steps write); every state of the unit carries it. */
  seed: number;
}

/** The case id of a state of a write-log unit. */
export function logStateCaseId(scenario: string, state: string, repetition: number): string {
  return `${scenario}/log/${state}/r${repetition}`;
}

/** The unit a write-log state's case id belongs to (`s/log/flush-3/r1` -> `s/log/r1`), or undefined for another case. */
export function logUnitIdOf(caseId: string): string | undefined {
  const m = /^(.+)\/log\/([^/]+)\/r(\d+)$/.exec(caseId);
  return m ? `${m[1]}/log/r${m[3]}` : undefined;
}
