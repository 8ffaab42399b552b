import { sha256 } from '../util/hash.ts';
import { ConfigError } from '../util/errors.ts';
import { logUnitIdOf, type CaseSpec, type CrashPoint, type LogUnitSpec } from '../scenario/model.ts';
import type { RunSummary } from '../results/run.ts';
import { caseListHash, compareIds } from '../results/shards.ts';

export { caseListHash };

/**
 * Splitting one run over N machines (`qcrash run --shard I/N`): every machine
 * expands the same cases, computes the same partition and runs its part; the
 * parts merge by case id. Nothing here may depend on the machine: no
 * randomness, no locale-aware sorting, no reliance on object key order, and
 * floating-point sums are taken in one fixed order.
 */

/** What a unit costs before anything has been measured; see `estimatedCostMs`. */
export type CostKind = CrashPoint['kind'] | 'write-log';

/**
 * Cases that must run on the same machine: one kill case, or a write-log
 * recording and every crash state it yields (the states are replayed from
 * the log that one VM run recorded).
 */
export interface ShardUnit {
  /** Stable id: the case id for a kill case, the recording's id for a write-log unit. */
  id: string;
  caseIds: readonly string[];
  kind: CostKind;
  /** A write-log unit's expected number of crash states (its budget): they are named only once its log is recorded. */
  states?: number;
}

/** `--shard I/N`, 1-based like Playwright's --shard and GitLab's CI_NODE_INDEX. */
export interface ShardSpec {
  index: number;
  total: number;
}

/**
 * Rough wall-clock estimates for one case of each kind, from runs on the
 * 2-core TCG machines this was built on: a marker kill restores a saved VM
 * and kills at a step boundary (1-2 s); a delay or a seeded time inside a
 * step runs further into it; gdbstub breakpoints and commit points stop the
 * guest, single-step the breakpoint and often run the whole step (5-11 s in
 * the recorded runs). A write-log recording is a full workload run plus the
 * log, and each state it yields is an e2fsck-speed check on the host.
 * Only the ratios matter: when an earlier run's durations are given, these
 * are rescaled to them.
 */
export const estimatedCostMs: Readonly<Record<CostKind, number>> = {
  none: 1500,
  before: 1500,
  after: 1500,
  delay: 2500,
  during: 2500,
  kernel: 6000,
  commit: 6000,
  'write-log': 8000,
  // One state of a recorded log (the unit's recording is costed as 'write-log').
  log: 300,
};

/** Per crash state of a write-log unit, on top of its recording. */
export const estimatedStateCostMs = 300;

/** Parse "I/N" (1 <= I <= N); anything else is a usage error that says what was expected. */
export function parseShardSpec(text: string): ShardSpec {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (!m)
    throw new ConfigError(
      `--shard ${JSON.stringify(text)}: expected I/N, e.g. --shard 2/3 (I counts from 1; Kubernetes' JOB_COMPLETION_INDEX counts from 0: pass $((JOB_COMPLETION_INDEX+1))/N)`,
    );
  const index = Number(m[1]);
  const total = Number(m[2]);
  if (total < 1) throw new ConfigError(`--shard ${text}: the number of shards must be at least 1`);
  if (index < 1 || index > total)
    throw new ConfigError(`--shard ${text}: the shard index must be between 1 and ${total} (it counts from 1)`);
  return { index, total };
}

/**
 * One unit per write-log recording, planned by the unit's id (the id its
 * recording's error case would have): its states are named only once the
 * log is recorded, and merge finds them by `logUnitIdOf`.
 */
export function unitsFromLogUnits(units: readonly LogUnitSpec[]): ShardUnit[] {
  return units.map((u) => ({ id: u.id, caseIds: [u.id], kind: 'write-log', states: u.crashStates.budget }));
}

/** One unit per kill case: kill cases share nothing and may run anywhere. */
export function unitsFromCases(cases: readonly CaseSpec[]): ShardUnit[] {
  return cases.map((c) => ({ id: c.id, caseIds: [c.id], kind: c.crashPoint.kind }));
}

/** Case durations of an earlier run, to balance shards by what cases really took. */
export function recordedDurations(summary: Pick<RunSummary, 'cases'>): Map<string, number> {
  const d = new Map<string, number>();
  for (const c of summary.cases) {
    if (!Number.isFinite(c.durationMs) || c.durationMs < 0) continue;
    d.set(c.id, c.durationMs);
    // A write-log unit costs what its states took together.
    const unit = logUnitIdOf(c.id);
    if (unit) d.set(unit, (d.get(unit) ?? 0) + c.durationMs);
  }
  return d;
}

function estimate(u: ShardUnit): number {
  const base = estimatedCostMs[u.kind];
  if (base === undefined) throw new ConfigError(`shard unit ${u.id}: unknown cost kind "${u.kind}"`);
  return u.kind === 'write-log' ? base + estimatedStateCostMs * (u.states ?? u.caseIds.length) : base;
}

/**
 * Expected cost of each unit. A unit whose every case has a recorded duration
 * costs their sum; the others cost their estimate times the median ratio of
 * measured to estimated cost over the measured units, so measured and
 * guessed costs are on one scale (a slow machine's recording does not make
 * every new case look cheap) and one outlier does not rescale everything.
 */
export function unitCosts(units: readonly ShardUnit[], recorded?: ReadonlyMap<string, number>): Map<string, number> {
  const ordered = [...units].sort((a, b) => compareIds(a.id, b.id));
  const measured = new Map<string, number>();
  const ratios: number[] = [];
  if (recorded && recorded.size > 0) {
    for (const u of ordered) {
      if (u.caseIds.length === 0 || !u.caseIds.every((id) => recorded.has(id))) continue;
      let sum = 0;
      for (const id of u.caseIds) sum += recorded.get(id)!;
      measured.set(u.id, sum);
      if (sum > 0) ratios.push(sum / estimate(u));
    }
  }
  const scale = ratios.length ? median(ratios) : 1;
  const costs = new Map<string, number>();
  for (const u of ordered) costs.set(u.id, measured.get(u.id) ?? estimate(u) * scale);
  return costs;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface ShardPlan {
  spec: ShardSpec;
  /** This shard's unit ids and case ids, in the order the units were given. */
  unitIds: string[];
  caseIds: string[];
  /** Expected cost of every shard (index 0 is shard 1), for the report and the tests. */
  loads: number[];
  /** Case ids of every shard (index 0 is shard 1), in expansion order: recorded so merge can name a missing shard's cases. */
  assignment: string[][];
  /** sha256 of the sorted case ids: shards of one run must agree on it before they merge. */
  caseListHash: string;
  /**
   * sha256 of the case list, the grouping into units, the unit costs and the
   * shard count: shards planned from different recorded durations would
   * split differently, and merge can tell.
   */
  partitionHash: string;
}

/**
 * Greedy longest-processing-time: units by cost, dearest first (ties by id),
 * each to the least loaded shard (ties to the lowest index). Every unit lands
 * in exactly one shard; the most and least loaded shards differ by at most
 * the dearest unit's cost.
 */
export function assignShards(
  units: readonly ShardUnit[],
  total: number,
  recorded?: ReadonlyMap<string, number>,
): { shardOf: Map<string, number>; loads: number[]; costs: Map<string, number> } {
  if (!Number.isInteger(total) || total < 1)
    throw new ConfigError(`the number of shards must be a positive integer (got ${total})`);
  checkUnits(units);
  const costs = unitCosts(units, recorded);
  const order = [...units].sort((a, b) => costs.get(b.id)! - costs.get(a.id)! || compareIds(a.id, b.id));
  const loads = new Array<number>(total).fill(0);
  const shardOf = new Map<string, number>();
  for (const u of order) {
    let best = 0;
    for (let s = 1; s < total; s++) if (loads[s]! < loads[best]!) best = s;
    loads[best]! += costs.get(u.id)!;
    shardOf.set(u.id, best + 1);
  }
  return { shardOf, loads, costs };
}

export function planShard(units: readonly ShardUnit[], spec: ShardSpec, recorded?: ReadonlyMap<string, number>): ShardPlan {
  if (spec.index < 1 || spec.index > spec.total)
    throw new ConfigError(`shard ${spec.index}/${spec.total}: the index must be between 1 and ${spec.total}`);
  const { shardOf, loads, costs } = assignShards(units, spec.total, recorded);
  const mine = units.filter((u) => shardOf.get(u.id) === spec.index);
  return {
    spec,
    unitIds: mine.map((u) => u.id),
    caseIds: mine.flatMap((u) => u.caseIds),
    loads,
    assignment: Array.from({ length: spec.total }, (_, i) =>
      units.filter((u) => shardOf.get(u.id) === i + 1).flatMap((u) => u.caseIds),
    ),
    caseListHash: caseListHash(units.flatMap((u) => u.caseIds)),
    partitionHash: partitionHash(units, costs, spec.total),
  };
}

function partitionHash(units: readonly ShardUnit[], costs: ReadonlyMap<string, number>, total: number): string {
  // Built by hand, in id order, rather than through JSON of an object: the
  // text hashed is the same whatever order the units came in.
  const lines = [`shards ${total}`];
  for (const u of [...units].sort((a, b) => compareIds(a.id, b.id))) {
    lines.push(`${u.id}\t${u.kind}\t${costs.get(u.id)!.toFixed(3)}\t${[...u.caseIds].sort(compareIds).join(' ')}`);
  }
  return sha256(lines.join('\n') + '\n');
}

/** Duplicate ids would put one case in two shards: refuse them up front. */
function checkUnits(units: readonly ShardUnit[]): void {
  const unitIds = new Set<string>();
  const caseOwner = new Map<string, string>();
  for (const u of units) {
    if (unitIds.has(u.id)) throw new ConfigError(`two shard units have the id ${u.id}`);
    unitIds.add(u.id);
    for (const c of u.caseIds) {
      const other = caseOwner.get(c);
      if (other !== undefined) throw new ConfigError(`case ${c} belongs to two shard units (${other} and ${u.id})`);
      caseOwner.set(c, u.id);
    }
  }
}
