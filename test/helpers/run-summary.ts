import { countStatuses, type RunSummary } from '../../harness/results/run.ts';
import type { CaseResult } from '../../harness/results/case.ts';

/**
 * A run summary around `cases`, for tests of what is computed from one
 * (reports, judgement): counts from the cases' statuses, placeholder run
 * facts, any of them replaced by `over`.
 */
export function summaryOf(cases: CaseResult[], over: Partial<RunSummary> = {}): RunSummary {
  return {
    schema: 'qcrash-run/1',
    runId: 'r',
    startedAt: '2026-12-02T00:00:00Z',
    host: 'h',
    kernel: { id: 'k', release: 'k', kind: 'stock' },
    versions: { qemu: 'q', e2fsprogs: 'e', kernel: 'k', node: 'n' },
    seed: 1,
    accel: 'tcg',
    scenarios: [],
    counts: countStatuses(cases),
    cases,
    ...over,
  };
}
