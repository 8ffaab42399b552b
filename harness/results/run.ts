import type { CaseResult } from './case.ts';
import type { RecoveryMode } from '../scenario/model.ts';

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
  kernel: { id: string; release: string; kind: string; provenance?: Record<string, unknown> };
  versions: ToolVersions;
  seed: number;
  accel: 'kvm' | 'tcg';
  /** `image`: the user's filesystem image the scenario ran on (absent for a recipe's image), `imageDigest` its content digest. */
  scenarios: Array<{ name: string; file: string; hash: string; suite: string; image?: string; imageDigest?: string }>;
  /** Absent in runs made before qcrash recorded it (they cannot be resumed). */
  config?: RunConfig;
  /** The qcrash that made the run: a hash of its sources (the package version never changes). */
  qcrash?: { version: string; build: string };
  counts: { total: number; pass: number; fail: number; error: number; notReached: number };
  cases: CaseResult[];
}

/** What a run is, written before its first case (run.json). */
export type RunMeta = Omit<RunSummary, 'cases' | 'counts' | 'finishedAt'>;

export function countStatuses(cases: readonly CaseResult[]): RunSummary['counts'] {
  const c = { total: cases.length, pass: 0, fail: 0, error: 0, notReached: 0 };
  for (const r of cases) {
    if (r.status === 'pass') c.pass++;
    else if (r.status === 'fail') c.fail++;
    else if (r.status === 'error') c.error++;
    else c.notReached++;
  }
  return c;
}
