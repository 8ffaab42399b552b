import type { CaseResult } from './case.ts';

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
  scenarios: Array<{ name: string; file: string; hash: string; suite: string }>;
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
