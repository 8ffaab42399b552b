import t from 'tap';
import { join } from 'node:path';
import { ConfigError } from '../../harness/util/errors.ts';
import { loadScenario, parseScenario } from '../../harness/run/resolve-scenario.ts';
import { expandLogUnits } from '../../harness/scenario/expand.ts';
import { RunStore } from '../../harness/results/store.ts';
import type { RunConfig, RunMeta } from '../../harness/results/run.ts';
import { selectCases, stateFilter } from '../../harness/run/case-selection.ts';
import type { ResolvedRun } from '../../harness/run/run-config.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { writeStepsScenario } from '../helpers/fake-suite.ts';

// The runner's second step: which cases and write-log units a run checks,
// after --filter and --shard, and what a resumed shard keeps.
const tmp = await TempDir.create('case-selection-test');
t.teardown(() => tmp.remove());
const scenario = await loadScenario(await writeStepsScenario(join(tmp.path, 'steps.yaml'), { repeat: 2 }));
const config: RunConfig = { inputs: [scenario.file], kernel: 'stock', keep: 'failed', snapshots: true };
const run = (extra: Partial<RunConfig> = {}, resumed?: ResolvedRun['resumed']): ResolvedRun => ({
  config: { ...config, ...extra },
  seed: 3,
  runId: 'r',
  dir: tmp.path,
  ...(resumed ? { resumed } : {}),
});
const ids = (s: { cases: Array<{ id: string }> }) => s.cases.map((c) => c.id);

t.test('with no filter or shard every case is selected', async (t) => {
  const s = selectCases([scenario], run());
  t.equal(s.cases.length, 6, '3 kill points, 2 repetitions');
  t.same(s.units, []);
  t.equal(s.shard, undefined);
});

t.test('--filter keeps the cases whose id contains one of its texts; none kept is an error', async (t) => {
  t.same(ids(selectCases([scenario], run({ filter: ['after-sync/r2', 'after-mount/r1'] }))).sort(), [
    'steps/after-mount/r1',
    'steps/after-sync/r2',
  ]);
  t.throws(() => selectCases([scenario], run({ filter: ['nothing-like-it'] })), {
    constructor: ConfigError,
    message: /nothing to run: --filter nothing-like-it matched none of the 6 case\(s\) of steps/,
  });
});

t.test('--shard I/N: the parts are disjoint and cover the (filtered) cases', async (t) => {
  const parts = [1, 2, 3].map((index) => selectCases([scenario], run({ shard: { index, total: 3 } })));
  const all = parts.flatMap(ids);
  t.equal(all.length, 6);
  t.equal(new Set(all).size, 6, 'no case in two parts');
  t.same(new Set(parts.map((p) => p.shard?.caseListHash)).size, 1, 'every part records the same whole case list');
  t.match(parts[0]!.shard, { index: 1, total: 3, costs: 'estimated' });
  t.same(parts[0]!.shard!.assignment.flat().sort(), [...all].sort(), 'the partition names every case');
  const filtered = [1, 2].flatMap((index) =>
    ids(selectCases([scenario], run({ filter: ['after-sync'], shard: { index, total: 2 } }))),
  );
  t.same(filtered.sort(), ['steps/after-sync/r1', 'steps/after-sync/r2'], 'the filter applies before the partition');
});

t.test('a resumed shard keeps its recorded part, if the case list is still the one it was cut from', async (t) => {
  const first = selectCases([scenario], run({ shard: { index: 1, total: 2 } }));
  const shard = first.shard!;
  // A recorded partition unlike the one computed now: the resumed run keeps the recorded one.
  const recorded = { ...shard, assignment: [[...shard.assignment[0]!, ...shard.assignment[1]!], []], runKey: 'k' };
  const store = await RunStore.create(join(tmp.path, 'shard-run'), { scenarios: [], shard: recorded } as unknown as RunMeta);
  const resumed = selectCases([scenario], run({ shard: { index: 1, total: 2 } }, { store, named: 'shard-run' }));
  t.equal(resumed.cases.length, 6, 'the recorded part, not a new partition');
  const { runKey: _key, ...withoutKey } = recorded;
  t.same(resumed.shard, withoutKey, 'as run.json recorded it, less its run key');
  const other = await RunStore.create(join(tmp.path, 'other-list'), {
    scenarios: [],
    shard: { ...recorded, caseListHash: 'f'.repeat(64) },
  } as unknown as RunMeta);
  t.throws(() => selectCases([scenario], run({ shard: { index: 1, total: 2 } }, { store: other, named: 'other-list' })), {
    constructor: ConfigError,
    message: /^other-list is shard 1\/2 of another case list/,
  });
});

t.test('a resume refuses a scenario file that changed since the run started', async (t) => {
  const store = await RunStore.create(join(tmp.path, 'changed'), {
    scenarios: [{ name: 'steps', file: scenario.file, hash: 'old', suite: scenario.suite }],
  } as unknown as RunMeta);
  t.throws(() => selectCases([scenario], run({}, { store, named: 'changed' })), {
    constructor: ConfigError,
    message: /steps\.yaml changed since the run in changed started/,
  });
});

t.test('write-log units: recorded when any of their states may match; which states the filter keeps', async (t) => {
  const log = await parseScenario(
    join(tmp.path, 'dur.yaml'),
    'recipe: small-4k\nrecovery: [e2fsck]\nsteps:\n  - mount\n  - sync\ncrash-states: { from: log, budget: 10 }\n',
  );
  const [unit] = expandLogUnits([log], 3);
  t.same(
    selectCases([log], run({ filter: ['dur/log/flush-2'] })).units.map((u) => u.id),
    ['dur/log/r1'],
    'a state id records its unit',
  );
  t.throws(() => selectCases([log], run({ filter: ['dur/after'] })), { constructor: ConfigError, message: /nothing to run/ });
  t.equal(stateFilter(unit!, []), undefined, 'no filter: every state');
  t.equal(stateFilter(unit!, ['dur/log/r1']), undefined, 'the unit named: every state');
  const some = stateFilter(unit!, ['dur/log/flush-2']);
  t.ok(some?.('dur/log/flush-2/r1'));
  t.notOk(some?.('dur/log/flush-3/r1'));
});
