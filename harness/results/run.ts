import type { CaseResult, PlannedCase } from './case.ts';
import type { LogPhaseSummary } from './log-phases.ts';
import type { RecoveryMode } from '../scenario/model.ts';

/**
 * A write-log unit as run.json plans it. Its states are named only once its
 * log is recorded (the unit folder's states.json); until then it stands for
 * `budget` states. `states`: the --filter texts that select some of its
 * states (absent: all of them).
 */
export interface PlannedUnit extends PlannedCase {
  budget: number;
  states?: string[];
}

/** What a run set out to do, written in run.json before its first case. */
export interface RunPlan {
  cases: PlannedCase[];
  units: PlannedUnit[];
}

/** How much of its plan a run did: `planned` counts a unit not yet recorded as its budget. */
export interface PlanProgress {
  done: number;
  planned: number;
  /** Units whose log was never recorded, each counted as its budget of states. */
  unrecorded: Array<{ id: string; budget: number }>;
  /** The command that finishes the run. */
  resume: string;
}

export type KeepPolicy = 'failed' | 'all' | 'none';

/**
 * Everything that decides what a run tests, as given: kept in run.json so
 * that --resume finishes the same run, never a mix of two configurations.
 */
export interface RunConfig {
  /** Scenario files and folders, absolute. */
  inputs: string[];
  /** --image (absolute): the scenarios run on this filesystem image; with no input, the built-in set for it does. */
  image?: string;
  /** --kernel as given: stock, a built kernel id, or a bzImage path (absolute). */
  kernel: string;
  filter?: string[];
  recovery?: RecoveryMode[];
  keep: KeepPolicy;
  snapshots: boolean;
  /** --shard I/N: this folder runs the I-th of N parts of the case list. */
  shard?: { index: number; total: number };
  /** --durations: the earlier run whose case durations balanced the shards (its folder and id). */
  durationsFrom?: { dir: string; runId: string };
}

/**
 * What a shard of a sharded run records (run.json), so that shards made on
 * different machines can be told to belong together, or not, without the
 * scenario files: `qcrash merge` reads only these.
 */
export interface ShardRecord {
  index: number;
  total: number;
  /** sha256 of the sorted case ids of the whole run (every shard): the same in every shard of one run. */
  caseListHash: string;
  /** sha256 of the partition (units, costs, shard count): shards planned from different durations differ. */
  partitionHash: string;
  /** Case ids of every shard (index 0 is shard 1): merge names the cases of a shard it was not given. */
  assignment: string[][];
  /** Where the costs came from: crash-point kinds, or an earlier run's durations. */
  costs: 'estimated' | 'recorded';
  /** The identity of the run this shard belongs to (see harness/results/shards.ts `runKey`). */
  runKey: string;
}

/** What a run made by `qcrash merge` records about the shards it was made from. */
export interface MergeRecord {
  runKey: string;
  total: number;
  caseListHash: string;
  partitionHash: string;
  shards: Array<{ index: number; runId: string; host: string; dir: string; startedAt: string; finishedAt?: string; counts: RunSummary['counts']; versions: ToolVersions; accel: 'kvm' | 'tcg' }>;
  /** Shard indexes that were not given: their cases are errors in the merged run. */
  missing: number[];
}

export interface ToolVersions {
  qemu: string;
  e2fsprogs: string;
  kernel: string;
  node: string;
}

export interface RunSummary {
  schema: 'qcrash-run/1';
  runId: string;
  startedAt: string;
  finishedAt?: string;
  host: string;
  /** `line`: the kernel line ("6.1", "6.12") when known: compare and history keep lines apart. */
  kernel: { id: string; release: string; kind: string; line?: string; provenance?: Record<string, unknown> };
  versions: ToolVersions;
  seed: number;
  accel: 'kvm' | 'tcg';
  /** `image`: the user's filesystem image the scenario ran on (absent for a recipe's image), `imageDigest` its content digest. */
  /** `confirmedOn`: a known bug's kernel lines (the scenario's `confirmed-on:`). */
  scenarios: Array<{ name: string; file: string; hash: string; suite: string; image?: string; imageDigest?: string; confirmedOn?: string[] }>;
  /** Absent in runs made before qcrash recorded it (they cannot be resumed). */
  config?: RunConfig;
  /** The qcrash that made the run: a hash of its sources (the package version never changes). */
  qcrash?: { version: string; build: string };
  /** Set when the run is one shard of a sharded run (`--shard I/N`). */
  shard?: ShardRecord;
  /** Set when the run was merged from shards (`qcrash merge`). */
  merged?: MergeRecord;
  /** The cases and write-log units the run set out to check (absent in runs made before qcrash recorded it). */
  plan?: RunPlan;
  /** Set when some of the plan never ran (the run was interrupted): how far it got and how to finish it. */
  interrupted?: PlanProgress;
  counts: { total: number; pass: number; fail: number; error: number; notReached: number; notRun: number; held?: HeldCounts };
  /** Where the write-log states' time went, per state (results/log-phases.ts); absent without such states. */
  logPhases?: LogPhaseSummary;
  cases: CaseResult[];
}

/** What a run is, written before its first case (run.json). */
export type RunMeta = Omit<RunSummary, 'cases' | 'counts' | 'finishedAt' | 'interrupted'>;

export function countStatuses(cases: readonly CaseResult[]): RunSummary['counts'] {
  const c = { total: cases.length, pass: 0, fail: 0, error: 0, notReached: 0, notRun: 0 };
  for (const r of cases) {
    if (r.status === 'pass') c.pass++;
    else if (r.status === 'fail') c.fail++;
    else if (r.status === 'error') c.error++;
    else if (r.status === 'not-run') c.notRun++;
    else c.notReached++;
  }
  const held = heldCounts(cases);
  return held.asked ? { ...c, held } : c;
}

/**
 * Interleavings held at a kernel point (a scenario's `hold:`), over the
 * cases whose run asked for one: how many held a vCPU (`ran`), how many of
 * those ended at their marker rather than their limit, and how many were
 * never hit (the step finished first, or the VM ended).
 */
export interface HeldCounts {
  asked: number;
  ran: number;
  markerReached: number;
  limit: number;
  notHit: number;
}

export function heldCounts(cases: readonly CaseResult[]): HeldCounts {
  const c: HeldCounts = { asked: 0, ran: 0, markerReached: 0, limit: 0, notHit: 0 };
  for (const x of cases) {
    const h = x.fired?.held;
    if (!h) continue;
    c.asked++;
    if (!h.reached) c.notHit++;
    else c.ran++;
    if (h.markerReached) c.markerReached++;
    if (h.ended === 'limit') c.limit++;
  }
  return c;
}
