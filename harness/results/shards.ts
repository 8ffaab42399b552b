import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256 } from '../util/hash.ts';
import { ConfigError } from '../util/errors.ts';
import { caseSeed } from '../scenario/expand.ts';
import { logUnitIdOf } from '../scenario/model.ts';
import { defaultAllowance } from '../findings/finding.ts';
import type { CaseResult } from './case.ts';
import { countStatuses, type MergeRecord, type RunMeta, type RunSummary, type ShardRecord } from './run.ts';
import { caseRelDir, readCaseFiles, RunStore } from './store.ts';
import { notRunCases } from './plan.ts';

/**
 * Shards of one run, made on several machines, back into one run. A shard
 * has its own run id (its folder, host and start time); what makes shards
 * belong together is the run they are parts of: the same case list, seed,
 * kernel, qcrash build, scenario contents and recovery override. Those are
 * what `runKey` hashes. Everything here reads only run.json and the case
 * files, never the scenario files: the merging machine need not have them.
 */

/** Byte-order comparison: the same on every machine, unlike localeCompare. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The identity of a run's case list, independent of the order cases were expanded in. */
export function caseListHash(caseIds: readonly string[]): string {
  return sha256([...caseIds].sort(compareIds).join('\n') + '\n');
}

/** What shards of one run must agree on, field by field, so a refusal can say which one differs. */
export interface ShardIdentity {
  caseList: string;
  seed: number;
  kernel: string;
  build: string;
  /** "name sha256" per scenario, sorted: the same ids with changed steps are another run. */
  scenarios: string;
  /** The --recovery override, or "as each scenario says". */
  recovery: string;
}

type IdentityInput = Pick<RunMeta, 'seed' | 'kernel' | 'qcrash' | 'scenarios' | 'config'>;

export function shardIdentity(meta: IdentityInput, caseList: string): ShardIdentity {
  return {
    caseList,
    seed: meta.seed,
    kernel: meta.kernel.id,
    build: meta.qcrash?.build ?? 'unknown',
    scenarios: meta.scenarios.map((s) => `${s.name} ${s.hash}`).sort(compareIds).join(', '),
    recovery: meta.config?.recovery?.join(',') ?? 'as each scenario says',
  };
}

const identityLabels: Record<keyof ShardIdentity, string> = {
  caseList: 'case lists (case-list hash)',
  seed: 'seeds',
  kernel: 'kernels',
  build: 'qcrash builds',
  scenarios: 'scenario contents',
  recovery: '--recovery overrides',
};

/** The run a shard belongs to, as one hash: recorded in run.json, and the merged run's id is made from it. */
export function runKey(id: ShardIdentity): string {
  return sha256((Object.keys(identityLabels) as Array<keyof ShardIdentity>).map((k) => `${k}\t${id[k]}`).join('\n') + '\n');
}

export interface ShardRun {
  dir: string;
  meta: RunMeta;
  cases: CaseResult[];
  /** case.json files that could not be read: their cases count as missing. */
  unreadable: Array<{ file: string; error: string }>;
  /** From summary.json, when the shard got that far. */
  finishedAt?: string;
  /** The shard's planned cases without a result (states of a unit it recorded but did not finish checking among them). */
  notRun: CaseResult[];
}

/** A shard folder as merge reads it: run.json and every case.json (not summary.json, so an interrupted shard is read too). */
export async function loadShardRun(dir: string): Promise<ShardRun> {
  const store = await RunStore.open(dir);
  if (!store.meta.shard) {
    throw new ConfigError(`${dir} is a run made without --shard: merge joins the shards of one sharded run (qcrash run --shard I/N); compare whole runs with qcrash compare`);
  }
  const { cases, unreadable } = await readCaseFiles(store.dir);
  const summary = await readFile(join(store.dir, 'summary.json'), 'utf8').then((t) => JSON.parse(t) as Partial<RunSummary>, () => undefined);
  const finishedAt = typeof summary?.finishedAt === 'string' ? summary.finishedAt : undefined;
  const notRun = await notRunCases(store.dir, store.meta, cases);
  return { dir: store.dir, meta: store.meta, cases, unreadable, notRun, ...(finishedAt ? { finishedAt } : {}) };
}

export interface MergePlan {
  meta: RunMeta;
  cases: CaseResult[];
  /** The folder each case's files come from (absent for cases merge made up: missing or duplicated). */
  sources: Map<string, string>;
  /** Missing shards, missing or duplicated cases: each is also an `error` case of the merged run. */
  problems: string[];
  /** Differences that do not change what was tested but are worth saying (QEMU versions, accelerators). */
  warnings: string[];
}

/** "20261124T191200Z" from an ISO time. */
function compactTime(iso: string): string {
  return iso.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/**
 * The scenario, point and repetition of a case id ("<scenario>/<point>/r<N>",
 * where a scenario name may itself contain "/"), for a case merge has to
 * report without a result.
 */
function caseParts(id: string, meta: RunMeta): Pick<CaseResult, 'scenario' | 'suite' | 'pointLabel' | 'repetition'> {
  const scenario = [...meta.scenarios].sort((a, b) => b.name.length - a.name.length).find((s) => id.startsWith(`${s.name}/`));
  const rest = scenario ? id.slice(scenario.name.length + 1) : id;
  const m = /^(.*)\/r(\d+)$/.exec(rest);
  return {
    scenario: scenario?.name ?? id.split('/')[0]!,
    suite: scenario?.suite ?? '',
    pointLabel: m ? m[1]! : rest,
    repetition: m ? Number(m[2]) : 1,
  };
}

/** A case that merge must report: not run (it has no result), or an error (more than one, or not in the case list). */
function errorCase(id: string, meta: RunMeta, message: string, kind: 'MissingShard' | 'MissingCase' | 'DuplicatedCase' | 'UnexpectedCase'): CaseResult {
  return {
    id,
    ...caseParts(id, meta),
    seed: caseSeed(meta.seed, id),
    // A case no shard got to is not run, never a pass; two results for one case, or one for no case, are errors.
    status: kind === 'MissingShard' || kind === 'MissingCase' ? 'not-run' : 'error',
    findings: [],
    failing: [],
    allow: defaultAllowance,
    error: message,
    errorKind: kind,
    durationMs: 0,
    dir: caseRelDir(id),
  };
}

/**
 * Check that the shards are the parts of one run and join their cases:
 * shards of different runs (case list, seed, kernel, build, scenario
 * contents, recovery), of different partitions, or the same shard given
 * twice are refused (ConfigError: the input is wrong, nothing is merged).
 * A shard not given, a planned case without a result, a case reported by a
 * shard it does not belong to, are `error` cases of the merged run with the
 * reason, so the merged run is never green with a part missing.
 */
export function planMerge(shards: readonly ShardRun[]): MergePlan {
  if (!shards.length) throw new ConfigError('merge: give the shard folders to merge (qcrash merge OUT SHARD_DIR...)');
  const records = shards.map((s) => s.meta.shard!);
  const r0 = records[0]!;
  const ids = checkOneRun(shards, records);
  const byIndex = shardsByIndex(shards, r0.total);
  const partition = partitionOf(r0);
  const ordered = [...byIndex.values()].sort((a, b) => a.meta.shard!.index - b.meta.shard!.index);
  const base = ordered[0]!.meta;
  const joined = joinPlannedCases(byIndex, partition, base);
  flagStrayResults(ordered, partition, joined);
  joined.warnings.push(...environmentWarnings(ordered));
  const key = runKey(ids[0]!);
  const meta = mergedMeta(base, ordered, mergeRecord(key, ordered, partition, joined.missing));
  return { meta, cases: [...joined.cases.values()].sort((a, b) => compareIds(a.id, b.id)), sources: joined.sources, problems: joined.problems, warnings: joined.warnings };
}

/**
 * Refuse shards that are not the parts of one run, one partition: each
 * record holds together, every field of the identity agrees (the one that
 * differs is named), and every shard split the run the same way.
 * Returns each shard's identity.
 */
function checkOneRun(shards: readonly ShardRun[], records: readonly ShardRecord[]): ShardIdentity[] {
  for (const [i, s] of shards.entries()) checkRecord(s.dir, records[i]!);
  const ids = shards.map((s, i) => shardIdentity(s.meta, records[i]!.caseListHash));
  for (const k of Object.keys(identityLabels) as Array<keyof ShardIdentity>) {
    const values = new Map<string, string[]>();
    ids.forEach((id, i) => values.set(String(id[k]), [...(values.get(String(id[k])) ?? []), shards[i]!.dir]));
    if (values.size > 1) {
      throw new ConfigError(`merge: these are shards of different runs, with different ${identityLabels[k]}: ${[...values].map(([v, dirs]) => `${v} (${dirs.join(', ')})`).join(' vs ')}; merge only shards made with the same scenarios, --seed, --kernel and qcrash`);
    }
  }
  const totals = new Set(records.map((r) => r.total));
  if (totals.size > 1) throw new ConfigError(`merge: the shards split the run into different numbers of parts (${shards.map((s, i) => `${s.dir}: ${records[i]!.index}/${records[i]!.total}`).join(', ')}); run every shard with the same --shard I/N count`);
  const partitions = new Set(records.map((r) => `${r.partitionHash} ${JSON.stringify(r.assignment)}`));
  if (partitions.size > 1) {
    throw new ConfigError(`merge: the shards were partitioned differently (${shards.map((s, i) => `${s.dir}: ${records[i]!.costs} costs, partition ${records[i]!.partitionHash.slice(0, 12)}`).join('; ')}); give every shard the same --durations run, or none`);
  }
  return ids;
}

/** Each shard under its index; the same shard given twice is refused. */
function shardsByIndex(shards: readonly ShardRun[], total: number): Map<number, ShardRun> {
  const byIndex = new Map<number, ShardRun>();
  for (const s of shards) {
    const other = byIndex.get(s.meta.shard!.index);
    if (other) throw new ConfigError(`merge: shard ${s.meta.shard!.index}/${total} was given twice (${other.dir} and ${s.dir}): give each shard's folder once`);
    byIndex.set(s.meta.shard!.index, s);
  }
  return byIndex;
}

/** The partition every shard of the run recorded: which shard each planned case belongs to. */
interface Partition {
  total: number;
  caseListHash: string;
  partitionHash: string;
  /** Planned case ids of every shard (index 0 is shard 1). */
  assignment: string[][];
  /** The shard index (from 1) each planned case id belongs to. */
  owner: Map<string, number>;
  /** The planned id a result counts under. */
  planId: (id: string) => string;
}

function partitionOf(r: ShardRecord): Partition {
  const owner = new Map<string, number>();
  r.assignment.forEach((ids, i) => ids.forEach((id) => owner.set(id, i + 1)));
  // A write-log unit is planned by its id (its states are named once its log
  // is recorded): a state's result belongs where its unit was planned.
  const planId = (id: string) => (owner.has(id) ? id : (logUnitIdOf(id) ?? id));
  return { total: r.total, caseListHash: r.caseListHash, partitionHash: r.partitionHash, assignment: r.assignment, owner, planId };
}

/** The merged run's cases so far, where each came from, and what merge has to say about them. */
interface JoinedCases {
  cases: Map<string, CaseResult>;
  /** The folder each case's files come from. */
  sources: Map<string, string>;
  problems: string[];
  warnings: string[];
  /** Shard indexes that were not given. */
  missing: number[];
}

/**
 * Every planned case of every shard: its results from the shard it belongs
 * to, or an error case when that shard was not given or has no result for it.
 */
function joinPlannedCases(byIndex: ReadonlyMap<number, ShardRun>, partition: Partition, base: RunMeta): JoinedCases {
  const joined: JoinedCases = { cases: new Map(), sources: new Map(), problems: [], warnings: [], missing: [] };
  const { total, planId } = partition;
  for (let index = 1; index <= total; index++) {
    const s = byIndex.get(index);
    const planned = partition.assignment[index - 1]!;
    if (!s) {
      joined.missing.push(index);
      if (planned.length) joined.problems.push(`shard ${index}/${total} was not given: its ${planned.length} case(s) are not run`);
      else joined.warnings.push(`shard ${index}/${total} was not given; it had no case, so nothing is missing`);
      for (const id of planned) joined.cases.set(id, errorCase(id, base, `shard ${index}/${total} was not merged: its results are missing (run it, or give its folder to qcrash merge)`, 'MissingShard'));
      continue;
    }
    const got = new Map<string, CaseResult[]>();
    for (const c of s.cases) got.set(planId(c.id), [...(got.get(planId(c.id)) ?? []), c]);
    const absent = planned.filter((id) => !got.has(id));
    if (absent.length) {
      joined.problems.push(`shard ${index}/${total} (${s.dir}) has no result for ${absent.length} of its ${planned.length} case(s)${s.unreadable.length ? ` (${s.unreadable.length} case.json unreadable)` : ''}: ${absent.slice(0, 5).join(', ')}${absent.length > 5 ? ', ...' : ''}`);
    }
    for (const id of absent) {
      joined.cases.set(id, errorCase(id, s.meta, `shard ${index}/${total} (${s.dir}) has no result for this case: the shard did not finish; finish it with qcrash run --resume ${s.dir}, then merge again`, 'MissingCase'));
    }
    for (const id of planned.filter((x) => got.has(x))) {
      for (const c of got.get(id)!) {
        joined.cases.set(c.id, c);
        joined.sources.set(c.id, s.dir);
      }
    }
    const unfinished = unfinishedStates(s, `shard ${index}/${total}`, (id) => got.has(planId(id)) && !joined.cases.has(id), joined.problems);
    for (const c of unfinished) joined.cases.set(c.id, c);
  }
  return joined;
}

/**
 * States of a unit the shard recorded and did not finish checking (the unit
 * has results, but not all): not-run cases of the merged run, and a problem.
 */
function unfinishedStates(s: ShardRun, name: string, planned: (id: string) => boolean, problems: string[]): CaseResult[] {
  const unfinished = s.notRun.filter((c) => planned(c.id));
  if (unfinished.length) problems.push(`${name} (${s.dir}) did not check ${unfinished.length} write-log state(s) it planned: ${unfinished.slice(0, 5).map((c) => c.id).join(', ')}${unfinished.length > 5 ? ', ...' : ''}; finish it with qcrash run --resume ${s.dir}, then merge again`);
  return unfinished;
}

/** Results a shard should not have: a case of another shard (two results for one case) or of no shard at all. */
function flagStrayResults(ordered: readonly ShardRun[], partition: Partition, joined: JoinedCases): void {
  const { total } = partition;
  for (const s of ordered) {
    const index = s.meta.shard!.index;
    for (const c of s.cases) {
      const belongs = partition.owner.get(partition.planId(c.id));
      if (belongs === index) continue;
      joined.sources.delete(c.id);
      if (belongs === undefined) {
        joined.problems.push(`shard ${index}/${total} (${s.dir}) has a result for ${c.id}, which is not in the run's case list`);
        joined.cases.set(c.id, errorCase(c.id, s.meta, `shard ${index}/${total} reported this case, which is not in the run's case list (case-list hash ${partition.caseListHash.slice(0, 12)})`, 'UnexpectedCase'));
      } else {
        joined.problems.push(`case ${c.id} has results in shard ${index}/${total} (${s.dir}) and belongs to shard ${belongs}/${total}: duplicated`);
        joined.cases.set(c.id, errorCase(c.id, s.meta, `duplicated: shard ${index}/${total} and shard ${belongs}/${total} both have a result for this case; which one holds is unknown`, 'DuplicatedCase'));
      }
    }
  }
}

/** Differences between the shards' hosts that do not change what was tested: tool versions, accelerators. */
function environmentWarnings(ordered: readonly ShardRun[]): string[] {
  const warnings: string[] = [];
  for (const field of ['qemu', 'e2fsprogs'] as const) {
    const v = new Set(ordered.map((s) => s.meta.versions[field]));
    if (v.size > 1) warnings.push(`the shards ran with different ${field} versions: ${ordered.map((s) => `shard ${s.meta.shard!.index}: ${s.meta.versions[field]}`).join(', ')}`);
  }
  if (new Set(ordered.map((s) => s.meta.accel)).size > 1) warnings.push(`the shards ran with different accelerators: ${ordered.map((s) => `shard ${s.meta.shard!.index}: ${s.meta.accel}`).join(', ')}`);
  return warnings;
}

/** What the merged run records about the shards it was made from. */
function mergeRecord(key: string, ordered: readonly ShardRun[], partition: Partition, missing: number[]): MergeRecord {
  return {
    runKey: key,
    total: partition.total,
    caseListHash: partition.caseListHash,
    partitionHash: partition.partitionHash,
    shards: ordered.map((s) => {
      const own = s.cases.filter((c) => partition.owner.get(partition.planId(c.id)) === s.meta.shard!.index);
      const finishedAt = s.finishedAt;
      return {
        index: s.meta.shard!.index,
        runId: s.meta.runId,
        host: s.meta.host,
        dir: s.dir,
        startedAt: s.meta.startedAt,
        ...(finishedAt ? { finishedAt } : {}),
        counts: countStatuses(own),
        versions: s.meta.versions,
        accel: s.meta.accel,
      };
    }),
    missing,
  };
}

/** The merged run's run.json: the first shard's, as the whole run, started when the first shard started. */
function mergedMeta(base: RunMeta, ordered: readonly ShardRun[], record: MergeRecord): RunMeta {
  const startedAt = ordered.map((s) => s.meta.startedAt).sort()[0]!;
  return {
    ...withoutShard(base),
    runId: `${compactTime(startedAt)}-merged-${record.runKey.slice(0, 12)}`,
    startedAt,
    host: [...new Set(ordered.map((s) => s.meta.host))].join(', '),
    merged: record,
  };
}

/** A shard's meta without what makes it a shard: the merged run is the whole run. */
function withoutShard(m: RunMeta): RunMeta {
  const out: RunMeta = { ...m };
  delete out.shard;
  // One shard's plan is not the whole run's: the merged run names what no shard ran as not-run cases.
  delete out.plan;
  if (m.config) {
    out.config = { ...m.config };
    delete out.config.shard;
  }
  return out;
}

/** A shard record that does not hold together (hand-edited, or cut short) is not merged. */
function checkRecord(dir: string, r: ShardRecord): void {
  const bad = (why: string) => new ConfigError(`merge: ${dir}/run.json has a damaged shard record (${why}); run that shard again`);
  if (!Number.isInteger(r.total) || r.total < 1 || !Number.isInteger(r.index) || r.index < 1 || r.index > r.total) throw bad(`shard ${r.index}/${r.total}`);
  if (!Array.isArray(r.assignment) || r.assignment.length !== r.total) throw bad(`${Array.isArray(r.assignment) ? r.assignment.length : 'no'} case lists for ${r.total} shards`);
  const all = r.assignment.flat();
  if (new Set(all).size !== all.length) throw bad('a case is assigned to two shards');
  if (caseListHash(all) !== r.caseListHash) throw bad('its shards\' cases do not add up to its case-list hash');
}

/** The summary of a merged run. */
export function mergedSummary(plan: MergePlan, finishedAt: string): RunSummary {
  const finished = plan.meta.merged!.shards.map((s) => s.finishedAt).filter((x): x is string => !!x).sort();
  return { ...plan.meta, finishedAt: finished.at(-1) ?? finishedAt, counts: countStatuses(plan.cases), cases: plan.cases };
}
