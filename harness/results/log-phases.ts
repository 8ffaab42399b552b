import type { CaseResult, CasePhases } from './case.ts';

/**
 * Where a run's write-log states spent their time, per state on average:
 * making the state, the recoveries, each oracle, the waits for a slot; and
 * how many states a minute of case time that makes (a state's case time is
 * its check, which is what a run of many states is paced by).
 */
export interface LogPhaseSummary {
  states: number;
  /** Mean milliseconds per state, by phase (each phase's sum over the states, over the states). */
  perStateMs: { materialise: number; recovery: number; content: number; fnCheck: number; repair: number; recheck: number; oracles: number; queued: number; case: number };
  /** States per minute of case time (60000 over the mean case time). */
  statesPerMinute: number;
  /** States whose recovered image an earlier state of their unit had: its e2fsck runs were theirs (CaseResult.sameImageAs). Absent in older summaries. */
  sameImage?: number;
}

const keys: Array<[keyof LogPhaseSummary['perStateMs'], keyof CasePhases | 'case']> = [
  ['materialise', 'materialiseMs'],
  ['recovery', 'recoveryMs'],
  ['content', 'contentMs'],
  ['fnCheck', 'fnCheckMs'],
  ['repair', 'repairMs'],
  ['recheck', 'recheckMs'],
  ['oracles', 'oraclesMs'],
  ['queued', 'queuedMs'],
  ['case', 'case'],
];

/** Undefined when the run has no write-log state. */
export function logPhaseSummary(cases: readonly CaseResult[]): LogPhaseSummary | undefined {
  const states = cases.filter((c) => c.fired?.kind === 'log');
  if (!states.length) return undefined;
  const sum = Object.fromEntries(keys.map(([k]) => [k, 0])) as LogPhaseSummary['perStateMs'];
  for (const c of states) {
    for (const [k, field] of keys) {
      const v = field === 'case' ? c.durationMs : c.phases?.[field];
      if (typeof v === 'number' && Number.isFinite(v)) sum[k] += v;
    }
  }
  const perStateMs = Object.fromEntries(Object.entries(sum).map(([k, v]) => [k, +(v / states.length).toFixed(1)])) as LogPhaseSummary['perStateMs'];
  return {
    states: states.length,
    perStateMs,
    statesPerMinute: perStateMs.case > 0 ? Math.round(60_000 / perStateMs.case) : 0,
    sameImage: states.filter((c) => c.sameImageAs !== undefined).length,
  };
}

/** The text report's lines for it. */
export function logPhaseLines(p: LogPhaseSummary): string[] {
  const m = p.perStateMs;
  return [
    `Write-log states: ${p.states} checked, ${p.statesPerMinute} states per minute of case time (${m.case} ms a state)`,
    `  per state: materialise ${m.materialise} ms, recovery ${m.recovery} ms, oracles ${m.oracles} ms (content ${m.content}, e2fsck -fn ${m.fnCheck}, -fy ${m.repair}, -fn again ${m.recheck}), waiting for a slot or a same-image check ${m.queued} ms`,
    ...(p.sameImage
      ? [`  ${p.sameImage} of them had the recovered image of an earlier state of their unit: its e2fsck runs were theirs`]
      : []),
  ];
}
