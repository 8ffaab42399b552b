import pLimit, { type LimitFunction } from 'p-limit';
import { ConfigError, InfraError } from '../util/errors.ts';
import { logUnitIdOf, type CaseSpec } from '../scenario/model.ts';
import type { CaseResult } from '../results/case.ts';
import type { RunStore } from '../results/store.ts';
import type { ReporterHub } from '../report/reporter.ts';
import { runCase } from './case-runner.ts';
import { runLogUnit, type PreparedUnit, type RunEnv } from './log-unit.ts';
import { recordUnits, recordingSpec, type RecordedUnits } from './unit-recording.ts';
import { stateFilter, type CaseSelection } from './case-selection.ts';

/** The results folder could not take more (ENOSPC, EIO...): what completed is kept, the rest can be resumed. */
export class ResultsWriteError extends InfraError {}

/**
 * Cases run at once for `jobs` machine slots. A case holds a slot only
 * while one of its VMs runs (workload, then kernel recovery); between them
 * and after them it works on the host for 0.3-1 s (journal replay, debugfs,
 * e2fsck, storing the image). One more case per slot is enough to have a
 * case waiting for every slot that frees up.
 */
export function casesInFlight(jobs: number): number {
  return 2 * jobs;
}

/**
 * Each result written to the run folder as it comes, then handed to the
 * reporters, so an interrupted run resumes where it stopped. Once a write
 * fails nothing more is written or started.
 */
export class CaseRecorder {
  readonly results: CaseResult[] = [];
  private failure: Error | undefined;

  constructor(
    private readonly run: RunStore,
    private readonly hub: ReporterHub,
  ) {}

  /** A write failed: the run stops starting cases. */
  get stopped(): boolean {
    return this.failure !== undefined;
  }

  readonly record = async (r: CaseResult): Promise<void> => {
    if (this.failure) return;
    try {
      await this.run.writeCase(r);
    } catch (e) {
      this.failure ??= e as Error;
      return;
    }
    this.results.push(r);
    await this.hub.onCaseEnd(r);
  };

  /** The write that failed, as the run's error: what completed and how to finish the run. */
  throwIfStopped(killCases: number): void {
    const failure = this.failure;
    if (!failure) return;
    const code = (failure as NodeJS.ErrnoException).code;
    const r = this.results;
    throw new ResultsWriteError(
      `cannot write results in ${this.run.dir} (${code ?? failure.message}${code === 'ENOSPC' ? ': the disk is full' : ''}); ` +
        `${r.length} of ${killCases} case(s) completed and written (${r.filter((x) => x.status === 'pass').length} passed, ${r.filter((x) => x.status === 'fail').length} failed). ` +
        `Free space, then finish the run with: qcrash run --resume ${this.run.dir}`,
      { cause: failure },
    );
  }
}

export interface SessionInput {
  run: RunStore;
  hub: ReporterHub;
  /** Absent when the selection is empty (a shard left with no case): nothing was built. */
  env?: RunEnv;
  selection: CaseSelection;
  filter?: readonly string[];
  /** --resume: results an earlier session wrote are kept, recordings reused. */
  resuming: boolean;
}

/** What this session checks after the recordings, and what an earlier session of the run already did. */
export interface CheckPlan {
  /** Earlier results of this run's cases, states and finished units: kept, not checked again. */
  previous: CaseResult[];
  /** Their ids. */
  done: Set<string>;
  /** Kill cases to run. */
  cases: CaseSpec[];
  /** Write-log states to check, unit by unit in plan order. */
  states: CaseSpec[];
}

/**
 * Record the write-log units, then run the kill cases (up to
 * casesInFlight(jobs) at once, recordings included) and check the units'
 * states, writing every result as it is final. Returns every result of
 * the run, earlier sessions' included.
 */
export async function recordAndCheck(s: SessionInput): Promise<CaseResult[]> {
  const recorder = new CaseRecorder(s.run, s.hub);
  const earlier = await s.run.loadCases();
  const env = s.env;
  if (!env) {
    await s.hub.onRunStart(s.run.meta, 0, []);
    return recorder.results;
  }
  const limit = pLimit(casesInFlight(env.jobs));
  // A case that errored is run again on --resume; one that passed, failed or was not reached is a result.
  const earlierDone = new Set(earlier.filter((c) => c.status !== 'error').map((c) => c.id));
  // Write-log units first: their cases (one per crash state) exist once the log is
  // recorded, and every reporter gets the whole case list before the first result.
  // A resumed run reuses a unit's recording, so it plans the same states again.
  const recorded = await recordUnits(s.selection.units, {
    env,
    caseDir: (id) => s.run.caseDir(id),
    limit,
    resuming: s.resuming,
    earlierDone,
    note: (text) => s.hub.onNote(text),
  });
  const plan = planChecks(s.selection.cases, recorded, earlier, earlierDone, s.filter);
  recorder.results.push(...plan.previous);
  const specs = [...plan.cases, ...plan.states, ...recorded.errors.map((x) => recordingSpec(x.unit))];
  await s.hub.onRunStart(s.run.meta, specs.length, specs);
  for (const x of recorded.errors) await recorder.record(x.result);
  await checkKillCases(plan.cases, env, s, recorder, limit);
  await checkLogStates(recorded.prepared, env, s, recorder, plan.done);
  recorder.throwIfStopped(s.selection.cases.length);
  return recorder.results;
}

/**
 * The states --filter keeps of the recorded units (none kept, and no kill
 * case, is a configuration error), less the cases an earlier session of
 * the run finished.
 */
export function planChecks(
  cases: readonly CaseSpec[],
  recorded: RecordedUnits,
  earlier: readonly CaseResult[],
  earlierDone: ReadonlySet<string>,
  filter: readonly string[] = [],
): CheckPlan {
  const states = recorded.prepared.flatMap((p) => p.specs.filter((spec) => stateFilter(p.unit, filter)?.(spec.id) ?? true));
  if (filter.length && !cases.length && !states.length && !recorded.errors.length) {
    throw new ConfigError(
      `nothing to run: --filter ${filter.join(', ')} matched no crash state of the recorded log(s) ${recorded.prepared.map((p) => p.unit.id).join(', ')}`,
    );
  }
  const known = new Set([...cases, ...states].map((c) => c.id));
  for (const c of earlier) if (recorded.finished.has(logUnitIdOf(c.id) ?? '')) known.add(c.id);
  const previous = earlier.filter((c) => earlierDone.has(c.id) && known.has(c.id));
  const done = new Set(previous.map((c) => c.id));
  return { previous, done, cases: cases.filter((c) => !done.has(c.id)), states: states.filter((c) => !done.has(c.id)) };
}

async function checkKillCases(
  cases: readonly CaseSpec[],
  env: RunEnv,
  s: SessionInput,
  recorder: CaseRecorder,
  limit: LimitFunction,
): Promise<void> {
  await Promise.all(
    cases.map((spec) =>
      limit(async () => {
        if (recorder.stopped) return;
        await s.hub.onCaseStart(spec);
        await recorder.record(await runCase(spec, env, s.run.caseDir(spec.id)));
      }),
    ),
  );
}

async function checkLogStates(
  prepared: readonly PreparedUnit[],
  env: RunEnv,
  s: SessionInput,
  recorder: CaseRecorder,
  done: ReadonlySet<string>,
): Promise<void> {
  for (const p of prepared) {
    if (recorder.stopped) break;
    const wanted = stateFilter(p.unit, s.filter);
    await runLogUnit(p, env, (id) => s.run.caseDir(id), recorder.record, { done, ...(wanted ? { wanted } : {}) });
  }
}
