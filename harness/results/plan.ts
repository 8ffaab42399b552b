import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultAllowance } from '../findings/finding.ts';
import { logStateCaseId } from '../scenario/model.ts';
import type { CaseResult, PlannedCase } from './case.ts';
import type { PlanProgress, PlannedUnit, RunMeta } from './run.ts';
import { caseRelDir } from './case-dir.ts';

export type { PlanProgress,   RunPlan } from './run.ts';

function notRunCase(p: PlannedCase, why: string, plannedStates?: number): CaseResult {
  return {
    id: p.id,
    scenario: p.scenario,
    suite: p.suite,
    pointLabel: p.pointLabel,
    repetition: p.repetition,
    seed: p.seed,
    status: 'not-run',
    findings: [],
    failing: [],
    allow: defaultAllowance,
    error: why,
    errorKind: 'NotRun',
    durationMs: 0,
    dir: caseRelDir(p.id),
    ...(plannedStates !== undefined ? { plannedStates } : {}),
  };
}

/** A recorded unit's state names (its states.json), or undefined when the unit has not been recorded. */
async function recordedStates(dir: string, u: PlannedUnit): Promise<Array<{ name: string; kind: string }> | undefined> {
  try {
    const plan = JSON.parse(await readFile(join(dir, caseRelDir(u.id), 'states.json'), 'utf8')) as { unit?: string; states?: Array<{ name: string; kind: string }> };
    return plan.unit === u.id && Array.isArray(plan.states) ? plan.states : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The planned cases of the run in `dir` that have no result: one not-run
 * case per kill case and per state of a recorded unit, and one per unit
 * never recorded (standing for its budget). A run made before qcrash
 * recorded its plan has none.
 */
export async function notRunCases(dir: string, meta: RunMeta, results: readonly CaseResult[]): Promise<CaseResult[]> {
  const plan = meta.plan;
  if (!plan) return [];
  const done = new Set(results.map((c) => c.id));
  const why = 'not run: the run stopped before this case';
  const out = plan.cases.filter((c) => !done.has(c.id)).map((c) => notRunCase(c, why));
  for (const u of plan.units) {
    // A unit whose recording failed has an error case under the unit's id.
    if (done.has(u.id)) continue;
    const states = await recordedStates(dir, u);
    if (!states) {
      out.push(notRunCase(u, `not run: the write log was never recorded, so its states are unknown; counted as its budget of ${u.budget} state(s)`, u.budget));
      continue;
    }
    for (const st of states) {
      const id = logStateCaseId(u.scenario, st.name, u.repetition);
      if (done.has(id) || (u.states && !u.states.some((f) => id.includes(f)))) continue;
      out.push(notRunCase({ ...u, id, pointLabel: `log-${st.kind}` }, why));
    }
  }
  return out;
}

/** How far the run got, when some of its plan never ran. */
export function planProgress(dir: string, cases: readonly CaseResult[]): PlanProgress | undefined {
  const notRun = cases.filter((c) => c.status === 'not-run');
  if (!notRun.length) return undefined;
  const unrecorded = notRun.filter((c) => c.plannedStates !== undefined).map((c) => ({ id: c.id, budget: c.plannedStates! }));
  const planned = cases.length - unrecorded.length + unrecorded.reduce((a, u) => a + u.budget, 0);
  return { done: cases.length - notRun.length, planned, unrecorded, resume: `qcrash run --resume ${dir}` };
}

/** "interrupted: 1 of 3 cases (...)": what a report says of a run that did not finish its plan. */
export function progressLine(p: PlanProgress): string {
  const units = p.unrecorded.length ? ` (${p.unrecorded.length} write log(s) not recorded, each counted as its budget: ${p.unrecorded.map((u) => `${u.id} ${u.budget}`).join(', ')})` : '';
  return `interrupted: ${p.done} of ${p.planned} cases${units}; finish it with: ${p.resume}`;
}
