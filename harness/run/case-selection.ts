import { resolve } from 'node:path';
import { ConfigError } from '../util/errors.ts';
import { expandCases, expandLogUnits } from '../scenario/expand.ts';
import type { CaseSpec, LogUnitSpec, Scenario } from '../scenario/model.ts';
import type { RunConfig, RunMeta, ShardRecord } from '../results/run.ts';
import { caseListHash } from '../results/shards.ts';
import type { ResolvedRun } from './run-config.ts';
import { planShard, unitsFromCases, unitsFromLogUnits } from './shard.ts';

/** A run's shard before run.json gives it its run key. */
export type PlannedShard = Omit<ShardRecord, 'runKey'>;

/** What this run checks: its kill cases and write-log units, after --filter and --shard. */
export interface CaseSelection {
  cases: CaseSpec[];
  units: LogUnitSpec[];
  shard?: PlannedShard;
}

/**
 * The cases and units of a run: the scenarios expanded with the run's seed,
 * kept by --filter (none kept is a configuration error), then by --shard.
 * On --resume the scenarios must be the ones the run started with.
 */
export function selectCases(scenarios: Scenario[], run: ResolvedRun): CaseSelection {
  const { cases, units } = filteredCases(scenarios, run.seed, run.config.filter);
  if (run.resumed) checkScenariosUnchanged(run.resumed.store.meta, scenarios, run.resumed.named);
  if (!run.config.shard) return { cases, units };
  const shard = shardOf(cases, units, run.config.shard, run);
  const mine = new Set(shard.assignment[shard.index - 1]);
  return { cases: cases.filter((c) => mine.has(c.id)), units: units.filter((u) => mine.has(u.id)), shard };
}

/** The scenarios' cases and units that --filter keeps; none is an error that costs no kernel, image or VM. */
export function filteredCases(
  scenarios: Scenario[],
  seed: number,
  filter: readonly string[] = [],
): { cases: CaseSpec[]; units: LogUnitSpec[] } {
  let cases = expandCases(scenarios, seed);
  let units = expandLogUnits(scenarios, seed);
  const all = `${cases.length} case(s)${units.length ? ` and ${units.length} write-log recording(s)` : ''}`;
  if (filter.length) {
    cases = cases.filter((c) => filter.some((f) => c.id.includes(f)));
    units = units.filter((u) => filter.some((f) => unitFilter(u, f) !== 'no'));
  }
  if (!cases.length && !units.length) {
    throw new ConfigError(
      `nothing to run: ${filter.length ? `--filter ${filter.join(', ')} matched none of the ${all}` : 'the scenarios expand to no case'} of ${scenarios.map((s) => s.name).join(', ')}`,
    );
  }
  return { cases, units };
}

/**
 * This run's part of the case list. A resumed shard keeps the part its
 * run.json recorded (the durations that balanced it need not be at hand
 * again), if the case list is still the one it was cut from.
 */
function shardOf(cases: CaseSpec[], units: LogUnitSpec[], spec: NonNullable<RunConfig['shard']>, run: ResolvedRun): PlannedShard {
  const shardUnits = [...unitsFromCases(cases), ...unitsFromLogUnits(units)];
  const whole = caseListHash(shardUnits.flatMap((u) => u.caseIds));
  const resumed = run.resumed;
  const recordedShard = resumed?.store.meta.shard;
  if (resumed && recordedShard) {
    if (recordedShard.caseListHash !== whole) {
      throw new ConfigError(
        `${resumed.named} is shard ${spec.index}/${spec.total} of another case list (hash ${recordedShard.caseListHash.slice(0, 12)}; the scenarios now give ${whole.slice(0, 12)}): finishing it would mix two runs; start a new run`,
      );
    }
    const { runKey: _key, ...rest } = recordedShard;
    return rest;
  }
  const recorded = run.recordedDurations;
  const plan = planShard(shardUnits, spec, recorded);
  return {
    index: spec.index,
    total: spec.total,
    caseListHash: plan.caseListHash,
    partitionHash: plan.partitionHash,
    assignment: plan.assignment,
    costs: recorded?.size ? 'recorded' : 'estimated',
  };
}

/** --resume finishes the run its scenarios were: a scenario file changed since is refused, not mixed in. */
function checkScenariosUnchanged(meta: RunMeta, scenarios: Scenario[], dir: string): void {
  for (const s of scenarios) {
    const was = meta.scenarios.find((x) => x.file === resolve(s.file));
    if (was && was.hash !== s.hash) {
      throw new ConfigError(
        `${s.file} changed since the run in ${dir} started: finishing it would mix two versions of the scenario; start a new run`,
      );
    }
  }
}

/**
 * How a --filter text selects a write-log unit: `all` its states when the
 * text is part of the unit's id (`durability`, `durability/log/`,
 * `durability/log/r1`), `some` when it names states of the unit
 * (`durability/log/flush-3`, a whole state case id: checked are the states
 * whose ids contain it), else `no`. A state's name depends on the log the
 * run records, so a unit is recorded whenever any of its states may match.
 */
export function unitFilter(
  u: Pick<LogUnitSpec, 'id' | 'repetition'> & { scenario: { name: string } },
  f: string,
): 'all' | 'some' | 'no' {
  if (u.id.includes(f)) return 'all';
  const prefix = `${u.scenario.name}/log/`;
  if (!f.startsWith(prefix)) return 'no';
  const rep = /\/r(\d+)$/.exec(f);
  return !rep || Number(rep[1]) === u.repetition ? 'some' : 'no';
}

/**
 * Which state case ids of a recorded unit --filter keeps: undefined when it
 * keeps them all (no filter, or one that names the unit).
 */
export function stateFilter(u: LogUnitSpec, filter: readonly string[] = []): ((id: string) => boolean) | undefined {
  if (!filter.length || filter.some((x) => unitFilter(u, x) === 'all')) return undefined;
  return (id: string) => filter.some((x) => id.includes(x));
}
