import t from 'tap';
import { findScenarioFiles } from '../../harness/scenario/parse.ts';
import { loadScenario, parseScenario } from '../../harness/run/resolve-scenario.ts';
import { expandCases, expandLogUnits } from '../../harness/scenario/expand.ts';
import { crashPointLabel } from '../../harness/scenario/model.ts';
import { scenariosDir } from '../../harness/util/paths.ts';
import { scenarioErrorOf as errorOf } from '../helpers/scenario-error.ts';

// The `crash-states:` syntax: states replayed from a recorded write log,
// beside or instead of `kill:`, with its defaults and file:line errors.

const steps = `recipe: small-4k
steps:
  - mount: [commit=30]
  - migrate: /shapes/direct-12
  - fsync: /shapes/direct-12
  - umount
`;

t.test('the example from the issue, instead of kill:', async (t) => {
  const s = await parseScenario(
    'scenarios/log-demo.yaml',
    `${steps}crash-states: { from: log, prefixes: all, power-loss: { per-epoch: 8, seed: 1 }, budget: 2000 }\nrepeat: 2\n`,
  );
  t.same(s.crashPoints, [], 'no kill points');
  t.same(s.crashStates, {
    from: 'log',
    prefixes: 'all',
    perEpoch: 8,
    seed: 1,
    subsets: 4,
    torn: false,
    budget: 2000,
    kernelSample: 4,
    minimize: 4,
    minimizeTests: 64,
    end: 'poweroff',
  });
  t.same(expandCases([s], 1), [], 'a write-log scenario expands to no kill case');
  const units = expandLogUnits([s], 1);
  t.same(
    units.map((u) => u.id),
    ['log-demo/log/r1', 'log-demo/log/r2'],
    'one recorded run per repetition',
  );
  t.not(units[0]!.seed, units[1]!.seed, 'each repetition records with its own seed');
  t.equal(expandLogUnits([s], 1)[0]!.seed, units[0]!.seed, 'the same run seed gives the same unit seed');
  t.equal(
    crashPointLabel({ kind: 'log', stateKind: 'power-loss', state: 'flush-17-drop-3a9f01c2' }),
    'log-power-loss',
    "a state's label is its kind, never its name",
  );
});

t.test('beside kill:, every option spelled out', async (t) => {
  const s = await parseScenario(
    'scenarios/both.yaml',
    `${steps}kill:\n  - after: fsync\ncrash-states:\n  from: log\n  prefixes: none\n  power-loss: { per-epoch: 3, seed: 9, subsets: 2, torn: true }\n  budget: 40\n  kernel-sample: 0\n  minimize: 1\n  minimize-tests: 20\n  end: kill\n`,
  );
  t.same(
    expandCases([s], 1).map((c) => c.id),
    ['both/after-fsync/r1'],
  );
  t.same(
    expandLogUnits([s], 1).map((u) => u.id),
    ['both/log/r1'],
  );
  t.same(s.crashStates, {
    from: 'log',
    prefixes: 'none',
    perEpoch: 3,
    seed: 9,
    subsets: 2,
    torn: true,
    budget: 40,
    kernelSample: 0,
    minimize: 1,
    minimizeTests: 20,
    end: 'kill',
  });
  const off = await parseScenario('scenarios/off.yaml', `${steps}crash-states: { from: log, power-loss: none }\n`);
  t.equal(off.crashStates?.perEpoch, 0, 'power-loss: none');
  t.equal(off.crashStates?.prefixes, 'all');
});

t.test('errors name the file and line', async (t) => {
  const neither = await errorOf(steps);
  t.match(neither.message, /bad\.yaml:1: a scenario needs "kill:".*"crash-states:"/);
  const from = await errorOf(`${steps}crash-states:\n  from: trace\n`);
  t.match(from.message, /bad\.yaml:8: .*from: log.* at "crash-states\.from"/);
  const key = await errorOf(`${steps}crash-states:\n  from: log\n  power-loss: { per-epoch: 2, per_epoch: 3 }\n`);
  t.match(
    key.message,
    /bad\.yaml:9: unknown key "per_epoch"; allowed here: per-epoch, seed, subsets, torn\. Did you mean: per-epoch\?/,
  );
  const budget = await errorOf(`${steps}crash-states:\n  from: log\n  budget: 0\n`);
  t.match(budget.message, /bad\.yaml:9: .* at "crash-states\.budget"/);
  const nothing = await errorOf(`${steps}crash-states:\n  from: log\n  prefixes: none\n  power-loss: false\n`);
  t.match(nothing.message, /bad\.yaml:8: crash-states asks for no state/);
  const scalar = await errorOf(`${steps}crash-states: log\n`);
  t.match(scalar.message, /bad\.yaml:7: crash-states is a map/);
});

t.test('the shipped write-log scenarios parse, and the validate suite stays within its budget', async (t) => {
  const files = (await findScenarioFiles([scenariosDir, `${scenariosDir}/validate`])).filter((f) =>
    /\/log-[^/]+\.yaml$/.test(f.file),
  );
  t.ok(files.length >= 10, `${files.length} write-log scenarios`);
  let validateBudget = 0;
  for (const f of files) {
    const s = await loadScenario(f.file, { suite: f.suite });
    t.ok(s.crashStates, `${s.name} asks for crash states`);
    if (f.suite === 'validate') validateBudget += s.crashStates!.budget * s.repeat;
  }
  t.ok(validateBudget <= 150, `validate's write-log scenarios check at most ${validateBudget} states per kernel`);
});
