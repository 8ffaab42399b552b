import { rm } from 'node:fs/promises';
import type { LimitFunction } from 'p-limit';
import { describeError } from '../util/errors.ts';
import type { CaseSpec, LogUnitSpec } from '../scenario/model.ts';
import type { CaseResult } from '../results/case.ts';
import type { CaseEnv } from './case-runner.ts';
import { prepareLogUnit, unitFinished, type PreparedUnit } from './log-unit.ts';

/** What recording a run's write-log units gave. */
export interface RecordedUnits {
  /** Units whose log is recorded (or reused on --resume), by unit id. */
  prepared: PreparedUnit[];
  /** One error case for each unit whose workload could not be recorded. */
  errors: Array<{ unit: LogUnitSpec; result: CaseResult }>;
  /** Units a resumed run had finished: every state has its result, nothing was recorded. */
  finished: Set<string>;
}

export interface RecordingContext {
  env: CaseEnv;
  caseDir: (id: string) => string;
  /** Shared with the run's other cases: recordings take its slots too. */
  limit: LimitFunction;
  /** --resume: reuse a unit's recording, and skip units every state of which has a result. */
  resuming: boolean;
  /** Case ids with a result from an earlier session that is not an error. */
  earlierDone: ReadonlySet<string>;
  /** Where a line about each recording goes (the reporters). */
  note: (text: string) => Promise<void>;
}

/**
 * Record every unit's workload (up to the limit at once) and plan its
 * states. Never throws for a unit: one that could not be recorded is an
 * error case in its place.
 */
export async function recordUnits(units: readonly LogUnitSpec[], ctx: RecordingContext): Promise<RecordedUnits> {
  const out: RecordedUnits = { prepared: [], errors: [], finished: new Set() };
  await Promise.all(units.map((u) => ctx.limit(() => recordUnit(u, ctx, out))));
  out.prepared.sort((a, b) => (a.unit.id < b.unit.id ? -1 : a.unit.id > b.unit.id ? 1 : 0));
  return out;
}

async function recordUnit(u: LogUnitSpec, ctx: RecordingContext, out: RecordedUnits): Promise<void> {
  const unitDir = ctx.caseDir(u.id);
  // A unit whose every state has its result needs no recording (a passing one keeps no log).
  if (ctx.resuming && (await unitFinished(u, unitDir, ctx.earlierDone))) {
    out.finished.add(u.id);
    return;
  }
  try {
    const p = await prepareLogUnit(u, ctx.env, unitDir, { reuse: ctx.resuming });
    // A recording that failed in an earlier session left an error case here: this one replaces it.
    await rm(`${unitDir}/case.json`, { force: true });
    await rm(`${unitDir}/findings.json`, { force: true });
    out.prepared.push(p);
    await ctx.note(recordingNote(p));
  } catch (e) {
    out.errors.push({ unit: u, result: recordingError(u, e, unitDir) });
  }
}

function recordingNote(p: PreparedUnit): string {
  const c = p.counts;
  return `recorded ${p.unit.id}: ${c.entries} log entries, ${c.epochs} flush epoch(s): ${c.prefix} prefix + ${c.powerLoss} power-loss state(s)${c.duplicates ? ` (${c.duplicates} identical left out)` : ''}${c.overBudget ? `, ${c.overBudget} over budget` : ''}${p.recorded ? '' : ' (recording reused)'}`;
}

/** A unit whose workload could not be recorded: one error case in its place (rerun by --resume). */
function recordingError(u: LogUnitSpec, e: unknown, dir: string): CaseResult {
  const d = describeError(e);
  return {
    id: u.id,
    scenario: u.scenario.name,
    suite: u.scenario.suite,
    pointLabel: 'log-recording',
    repetition: u.repetition,
    seed: u.seed,
    status: 'error',
    findings: [],
    failing: [],
    allow: u.scenario.allow,
    error: `the workload could not be recorded: ${d.message}`,
    errorKind: d.kind,
    durationMs: 0,
    dir,
  };
}

/** The case a unit's recording error stands as, for the reporters' case list. */
export function recordingSpec(u: LogUnitSpec): CaseSpec {
  return {
    id: u.id,
    scenario: u.scenario,
    crashPoint: { kind: 'log', stateKind: 'prefix', state: 'recording' },
    pointLabel: 'log-recording',
    repetition: u.repetition,
    seed: u.seed,
  };
}
