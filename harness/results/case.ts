import type { Finding, Allowance } from '../findings/finding.ts';
import type { FiredPoint } from '../crash/crash-state.ts';
import type { StepReport } from '../crash/step-report.ts';

export type { FiredPoint } from '../crash/crash-state.ts';

/**
 * pass: ran, every finding allowed. fail: a finding outside the allowance.
 * error: the case could not run (VM did not boot, tool failed): never a pass.
 * not-reached: the crash point never fired (the workload did not get there).
 * not-run: planned (run.json's plan) but the run stopped before it: never a
 * pass; only summaries carry it (a case.json holds a result), except a merged
 * run's, for a shard's case that has none.
 */
export type CaseStatus = 'pass' | 'fail' | 'error' | 'not-reached' | 'not-run';

/** One step as the case recorded it: the exit status, the start of its output, and what it reported. */
export interface StepSummary {
  name: string;
  kind: string;
  exitCode?: number;
  durationMs?: number;
  output?: string;
  /** Parsed from the whole output: a migrate's per-file ioctl results, a writer's rounds or stores. */
  report?: StepReport;
}

/** Where a case's time went, host milliseconds. */
export interface CasePhases {
  /** Launching or restoring the workload machine (after its slot was free). */
  machineMs?: number;
  workloadMs?: number;
  /** Every recovery mode together (they run at once: the sum can exceed their wall time). */
  recoveryMs?: number;
  /** The oracles on every recovered image. */
  oraclesMs?: number;
  /** Waiting for a machine slot, workload and kernel recovery machines together; a write-log state also waits here for another state's check of the same recovered image. */
  queuedMs?: number;
  /** Kernel recovery: restoring (or booting) its machine, and the mount and umount in it. */
  recoveryMachineMs?: number;
  recoveryMountMs?: number;
  /** Storing the kept crash image compressed. */
  keepMs?: number;
  /** A write-log state: replaying the log to it (its base and its own writes) before its check. */
  materialiseMs?: number;
  /** Parts of oraclesMs: the content and durability oracle, e2fsck -fn, the -fy repair and the -fn after it. */
  contentMs?: number;
  fnCheckMs?: number;
  repairMs?: number;
  recheckMs?: number;
}

/** A kill case as run.json plans it: enough to report it when it never ran. */
export interface PlannedCase {
  id: string;
  scenario: string;
  suite: string;
  pointLabel: string;
  repetition: number;
  seed: number;
}

/** A case's result: the case as planned, then what running it found. */
export interface CaseResult extends PlannedCase {
  status: CaseStatus;
  findings: Finding[];
  /** Findings that made the case fail (outside the allowance). */
  failing: Finding[];
  allow: Allowance;
  fired?: FiredPoint;
  /** Why the case is an error or not reached. */
  error?: string;
  /** The kind of error (its class: VmLaunchError, AgentTimeoutError, CommandError, ...), so reports can group them. */
  errorKind?: string;
  durationMs: number;
  phases?: CasePhases;
  /** Kernel recovery's machine: restored from the saved state or booted, and whether the guest dropped its buffers for the disk before the mount. */
  recoveryMachine?: { restored: boolean; flushed: boolean };
  /** Directory with this case's artefacts, relative to the run directory. */
  dir: string;
  steps?: StepSummary[];
  /**
   * A write-log state whose recovered image is byte-identical to that of an
   * earlier state of its unit (this label): e2fsck -fn, its repair and the
   * -fn after it were that state's runs (its e2fsck logs say so), and its
   * content findings too when both were held to the same expectations.
   */
  sameImageAs?: string;
  /** A not-run write-log unit whose log was never recorded: the states it stands for (its budget). */
  plannedStates?: number;
}

/** The fields of a fired point a report shows, whatever its kind. */
export function firedSummary(f: FiredPoint): { kind: string; atMs?: number; symbol?: string; hits?: number; step?: string; clone?: string } {
  return {
    ...(f.kind === 'kernel' && f.clone ? { clone: `${f.clone.symbol} (the compiler's clone of ${f.clone.of})` } : {}),
    kind: f.kind,
    ...('step' in f && f.step ? { step: f.step } : {}),
    ...('atMs' in f && f.atMs !== undefined ? { atMs: f.atMs } : {}),
    ...('symbol' in f ? { symbol: f.symbol } : {}),
    ...('hits' in f ? { hits: f.hits } : f.kind === 'commit' ? { hits: f.k } : {}),
  };
}
