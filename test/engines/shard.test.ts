import t from 'tap';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { findScenarioFiles } from '../../harness/scenario/parse.ts';
import { loadScenario } from '../../harness/run/resolve-scenario.ts';
import { expandCases } from '../../harness/scenario/expand.ts';
import {
  assignShards,
  caseListHash,
  estimatedCostMs,
  parseShardSpec,
  planShard,
  recordedDurations,
  unitCosts,
  unitsFromCases,
  type ShardUnit,
} from '../../harness/run/shard.ts';
import { ConfigError } from '../../harness/util/errors.ts';
import type { RunSummary } from '../../harness/results/run.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

// The real default suite, expanded as `qcrash run` expands it.
const files = await findScenarioFiles([`${root}scenarios`]);
const scenarios = await Promise.all(files.map((f) => loadScenario(f.file, { suite: f.suite })));
const cases = expandCases(scenarios, 7);
const units = unitsFromCases(cases);
// Durations of a real run of the default suite (see test/fixtures/report/).
const earlier = JSON.parse(await readFile(new URL('../fixtures/report/summary.json', import.meta.url), 'utf8')) as RunSummary;

function everyShard(us: readonly ShardUnit[], total: number, recorded?: Map<string, number>) {
  return Array.from({ length: total }, (_, i) => planShard(us, { index: i + 1, total }, recorded));
}

t.test('--shard I/N parses 1-based indexes and rejects the rest with what to do', async (t) => {
  t.same(parseShardSpec('2/3'), { index: 2, total: 3 });
  t.same(parseShardSpec(' 1 / 1 '), { index: 1, total: 1 });
  for (const bad of ['0/3', '4/3', '3', 'a/b', '1/0', '-1/3', '']) {
    t.throws(() => parseShardSpec(bad), ConfigError, bad);
  }
  t.throws(() => parseShardSpec('0/3'), /counts from 1/);
  t.throws(() => parseShardSpec('x'), /JOB_COMPLETION_INDEX\+1/);
});

t.test('every unit lands in exactly one shard, for every shard count', async (t) => {
  t.ok(units.length >= 30, `the default suite has ${units.length} cases`);
  for (const total of [1, 2, 3, 5, 8, units.length, units.length + 3]) {
    const plans = everyShard(units, total);
    const seen = plans.flatMap((p) => p.unitIds);
    t.equal(seen.length, units.length, `${total} shards: no unit twice`);
    t.same(new Set(seen), new Set(units.map((u) => u.id)), `${total} shards: no unit missing`);
    t.same(plans.flatMap((p) => p.caseIds).sort(), cases.map((c) => c.id).sort(), `${total} shards: every case once`);
  }
});

t.test('a write-log unit keeps its recording and states together', async (t) => {
  const withLog: ShardUnit[] = [
    ...units,
    {
      id: 'durability/log/r1',
      kind: 'write-log',
      caseIds: ['durability/log/flush-1/r1', 'durability/log/flush-2/r1', 'durability/log/flush-2-drop-3a9f/r1'],
    },
  ];
  const plans = everyShard(withLog, 4);
  const holders = plans.filter((p) => p.caseIds.some((c) => c.startsWith('durability/log/')));
  t.equal(holders.length, 1, 'one shard holds the whole recording');
  t.same(holders[0]!.caseIds.filter((c) => c.startsWith('durability/log/')).length, 3);
  t.ok(unitCosts(withLog).get('durability/log/r1')! > estimatedCostMs.kernel, 'a recording is dearer than a gdb point');
});

t.test('balance: greedy LPT bounds hold with estimated and with recorded costs', async (t) => {
  for (const recorded of [undefined, recordedDurations(earlier)]) {
    for (const total of [2, 3, 4, 7]) {
      const { loads, costs } = assignShards(units, total, recorded);
      const sum = [...costs.values()].reduce((a, b) => a + b, 0);
      const dearest = Math.max(...costs.values());
      const max = Math.max(...loads);
      const min = Math.min(...loads);
      const label = `${total} shards, ${recorded ? 'recorded' : 'estimated'} costs`;
      t.ok(Math.abs(loads.reduce((a, b) => a + b, 0) - sum) < 1e-6, `${label}: loads add up to the total cost`);
      t.ok(
        max - min <= dearest + 1e-6,
        `${label}: max ${max.toFixed(0)} - min ${min.toFixed(0)} <= dearest unit ${dearest.toFixed(0)}`,
      );
      // Graham: LPT is within 4/3 - 1/(3N) of the optimum, and the optimum is at least the mean and the dearest unit.
      const lower = Math.max(sum / total, dearest);
      t.ok(
        max <= (4 / 3 - 1 / (3 * total)) * lower + 1e-6,
        `${label}: makespan ${max.toFixed(0)} within Graham's bound of ${lower.toFixed(0)}`,
      );
    }
  }
});

t.test('recorded durations move units; unmeasured ones are rescaled to the same scale', async (t) => {
  const recorded = recordedDurations(earlier);
  const costs = unitCosts(units, recorded);
  const measured = units.filter((u) => recorded.has(u.id));
  t.ok(measured.length > 0, `${measured.length} units have a recorded duration`);
  for (const u of measured) t.equal(costs.get(u.id), recorded.get(u.id), `${u.id} costs what it took`);
  // The recorded run was slower than the estimates; a never-measured marker case must be rescaled, not left at its raw estimate.
  const unmeasuredAfter = units.find((u) => !recorded.has(u.id) && u.kind === 'after')!;
  t.not(costs.get(unmeasuredAfter.id), estimatedCostMs.after, 'estimate rescaled');
  const estimatedAfter = costs.get(unmeasuredAfter.id)!;
  const estimatedKernel = costs.get(units.find((u) => !recorded.has(u.id) && u.kind === 'kernel')!.id)!;
  t.ok(
    Math.abs(estimatedKernel / estimatedAfter - estimatedCostMs.kernel / estimatedCostMs.after) < 1e-9,
    'kinds keep their ratio',
  );
  // A single very slow recorded case changes the partition.
  const outlier = units.find((u) => !recorded.has(u.id))!;
  // As dear as all the rest of the suite together, whatever the suite holds today.
  const dear = [...costs.values()].reduce((a, b) => a + b, 0);
  const slow = new Map(recorded);
  slow.set(outlier.id, dear);
  t.not(
    planShard(units, { index: 1, total: 3 }, slow).partitionHash,
    planShard(units, { index: 1, total: 3 }, recorded).partitionHash,
  );
  const { shardOf, loads } = assignShards(units, 3, slow);
  const alone = shardOf.get(outlier.id)!;
  t.equal(
    [...shardOf.values()].filter((s) => s === alone).length,
    1,
    'a unit dearer than a third of the run gets a shard of its own',
  );
  t.ok(loads[alone - 1]! >= dear);
});

t.test('one outlier does not rescale the estimates of every unmeasured unit', async (t) => {
  const us: ShardUnit[] = Array.from({ length: 12 }, (_, i) => ({
    id: `s/after-${String(i).padStart(2, '0')}/r1`,
    kind: 'after',
    caseIds: [`s/after-${String(i).padStart(2, '0')}/r1`],
  }));
  const recorded = new Map(us.slice(0, 9).map((u) => [u.id, 2 * estimatedCostMs.after] as const));
  recorded.set(us[9]!.id, 10 * 60_000);
  const costs = unitCosts(us, recorded);
  t.equal(costs.get(us[10]!.id), 2 * estimatedCostMs.after, 'unmeasured: the median ratio (2x), not the mean');
  t.equal(costs.get(us[9]!.id), 10 * 60_000, 'the outlier itself costs what it took');
});

t.test('the plan does not depend on input order, locale or process', async (t) => {
  const forward = everyShard(units, 3);
  const reversed = everyShard([...units].reverse(), 3);
  for (let i = 0; i < 3; i++) {
    t.same(new Set(reversed[i]!.unitIds), new Set(forward[i]!.unitIds), `shard ${i + 1}: same units`);
    t.equal(reversed[i]!.caseListHash, forward[i]!.caseListHash);
    t.equal(reversed[i]!.partitionHash, forward[i]!.partitionHash);
  }
  t.same(
    forward[1]!.unitIds,
    units.map((u) => u.id).filter((id) => forward[1]!.unitIds.includes(id)),
    'a shard keeps the expansion order',
  );
  // Another process, another locale and time zone: the same plan, byte for byte.
  const script = `
    import { findScenarioFiles } from './harness/scenario/parse.ts';
    import { loadScenario } from './harness/run/resolve-scenario.ts';
    import { expandCases } from './harness/scenario/expand.ts';
    import { planShard, unitsFromCases } from './harness/run/shard.ts';
    const files = await findScenarioFiles(['scenarios']);
    const sc = await Promise.all(files.map((f) => loadScenario(f.file, { suite: f.suite })));
    const p = planShard(unitsFromCases(expandCases(sc.reverse(), 7)), { index: 2, total: 3 });
    console.log(JSON.stringify({ unitIds: [...p.unitIds].sort(), caseListHash: p.caseListHash, partitionHash: p.partitionHash }));`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: root,
    env: { ...process.env, LC_ALL: 'tr_TR.UTF-8', LANG: 'tr_TR.UTF-8', TZ: 'Pacific/Chatham' },
    encoding: 'utf8',
  });
  const other = JSON.parse(out) as { unitIds: string[]; caseListHash: string; partitionHash: string };
  t.same(other.unitIds, [...forward[1]!.unitIds].sort());
  t.equal(other.caseListHash, forward[1]!.caseListHash);
  t.equal(other.partitionHash, forward[1]!.partitionHash);
});

t.test('the case-list hash changes when the case list changes, and only then', async (t) => {
  const base = planShard(units, { index: 1, total: 3 }).caseListHash;
  t.match(base, /^[0-9a-f]{64}$/);
  t.equal(caseListHash(cases.map((c) => c.id).reverse()), base, 'order does not matter');
  t.equal(planShard(units, { index: 3, total: 3 }).caseListHash, base, 'every shard records the same hash');
  t.not(caseListHash(cases.slice(1).map((c) => c.id)), base, 'a case dropped');
  t.not(caseListHash([...cases.map((c) => c.id), 'durability/after-sync/r2']), base, 'a repetition added');
  t.equal(caseListHash(expandCases(scenarios, 8).map((c) => c.id)), base, 'the seed changes case seeds, not case ids');
  const renamed = cases.map((c, i) => (i === 0 ? `${c.id}x` : c.id));
  t.not(caseListHash(renamed), base, 'a case renamed');
});

t.test('bad units are refused before anything runs', async (t) => {
  t.throws(() => assignShards([...units, units[0]!], 2), /two shard units have the id/);
  t.throws(
    () =>
      assignShards(
        [
          { id: 'a', kind: 'none', caseIds: ['x'] },
          { id: 'b', kind: 'none', caseIds: ['x'] },
        ],
        2,
      ),
    /belongs to two shard units/,
  );
  t.throws(() => assignShards(units, 0), ConfigError);
  t.throws(() => planShard(units, { index: 4, total: 3 }), ConfigError);
});
