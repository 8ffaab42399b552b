import type { Finding, Allowance } from '../findings/finding.ts';

/**
 * pass: ran, every finding allowed. fail: a finding outside the allowance.
 * error: the case could not run (VM did not boot, tool failed): never a pass.
 * not-reached: the crash point never fired (the workload did not get there).
 */
export type CaseStatus = 'pass' | 'fail' | 'error' | 'not-reached';

/** What actually happened at the crash point, recorded with the case. */
export interface FiredPoint {
  /** "marker", "kernel", "commit", "none". */
  kind: string;
  /** Milliseconds after the step's start marker when the kill was sent. */
  atMs?: number;
  hits?: number;
  /** Guest instruction pointer and its symbol (kernel points). */
  rip?: string;
  symbol?: string;
  /** QMP SHUTDOWN event data, when the kill came through QMP. */
  shutdownEvent?: unknown;
}

export interface CaseResult {
  id: string;
  scenario: string;
  suite: string;
  pointLabel: string;
  repetition: number;
  seed: number;
  status: CaseStatus;
  findings: Finding[];
  /** Findings that made the case fail (outside the allowance). */
  failing: Finding[];
  allow: Allowance;
  fired?: FiredPoint;
  /** Why the case is an error or not reached. */
  error?: string;
  durationMs: number;
  /** Directory with this case's artefacts, relative to the run directory. */
  dir: string;
  /** Where the agent's step results were recorded (chattr exit codes etc.). */
  steps?: Array<{ name: string; kind: string; exitCode?: number; durationMs?: number; output?: string }>;
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
  scenarios: Array<{ name: string; file: string; hash: string; suite: string }>;
  counts: { total: number; pass: number; fail: number; error: number; notReached: number };
  cases: CaseResult[];
}

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
