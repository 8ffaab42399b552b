import t from 'tap';
import { join } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import pLimit from 'p-limit';
import { ConfigError } from '../../harness/util/errors.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { parseScenario } from '../../harness/run/resolve-scenario.ts';
import { expandCases, expandLogUnits } from '../../harness/scenario/expand.ts';
import type { CaseSpec } from '../../harness/scenario/model.ts';
import type { CaseResult } from '../../harness/results/case.ts';
import type { RunStore } from '../../harness/results/store.ts';
import { ReporterHub } from '../../harness/report/reporter.ts';
import type { CaseEnv } from '../../harness/run/case-runner.ts';
import type { PreparedUnit } from '../../harness/run/log-unit.ts';
import { recordUnits, type RecordedUnits } from '../../harness/run/unit-recording.ts';
import { CaseRecorder, planChecks, ResultsWriteError } from '../../harness/run/suite-session.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher } from '../helpers/fake-machine.ts';
import { fakeKernel } from '../helpers/fake-suite.ts';

// The runner's recording step and the plan that follows it, on their own
// with scripted machines: a unit whose workload cannot be recorded is an
// error case, a unit a resumed run finished is not recorded again, and the
// states and cases left to check leave out what an earlier session did.
const tmp = await TempDir.create('recording-test');
t.teardown(() => tmp.remove());
const base = await buildImage(await loadRecipe('small-4k'));
const scenario = await parseScenario(
  join(tmp.path, 'dur.yaml'),
  'recipe: small-4k\nrecovery: [e2fsck]\nsteps:\n  - mount\n  - sync\nkill:\n  - after: sync\ncrash-states: { from: log, budget: 10 }\n',
);
const [unit] = expandLogUnits([scenario], 1);
const [killCase] = expandCases([scenario], 1);

function context(machines: FakeLauncher, opts: { resuming?: boolean; earlierDone?: Set<string> } = {}) {
  const env: CaseEnv = {
    machines,
    kernel: fakeKernel('fake'),
    initrd: '/nonexistent',
    images: new Map([['small-4k', base]]),
    keep: 'none',
  };
  const notes: string[] = [];
  const ctx = {
    env,
    caseDir: (id: string) => join(tmp.path, 'cases', id),
    limit: pLimit(1),
    resuming: opts.resuming ?? false,
    earlierDone: opts.earlierDone ?? new Set<string>(),
    note: async (s: string) => void notes.push(s),
  };
  return { ctx, notes };
}

t.test('a unit whose workload cannot be recorded is one error case in its place', async (t) => {
  const machines = new FakeLauncher((spec) => ({
    script: (cmd) => (cmd === 'mount' && spec.disk.writeLog ? { exitCode: 32, output: 'mount: wrong fs type' } : undefined),
  }));
  const { ctx, notes } = context(machines);
  const r = await recordUnits([unit!], ctx);
  t.same(r.prepared, []);
  t.same([...r.finished], []);
  t.equal(r.errors.length, 1);
  t.equal(r.errors[0]!.unit, unit);
  t.match(r.errors[0]!.result, {
    id: 'dur/log/r1',
    status: 'error',
    pointLabel: 'log-recording',
    error: /the workload could not be recorded: mount failed in the guest \(exit 32\)/,
  });
  t.same(notes, [], 'nothing recorded, nothing noted');
});

t.test('on --resume a unit every planned state of which has a result is finished: no machine, no recording', async (t) => {
  const machines = new FakeLauncher();
  const { ctx } = context(machines, { resuming: true, earlierDone: new Set(['dur/log/flush-1/r1', 'dur/log/end/r1']) });
  const dir = ctx.caseDir(unit!.id);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'states.json'), JSON.stringify({ unit: unit!.id, states: [{ name: 'flush-1' }, { name: 'end' }] }));
  const r = await recordUnits([unit!], ctx);
  t.same([...r.finished], ['dur/log/r1']);
  t.same(r.prepared, []);
  t.same(r.errors, []);
  t.equal(machines.machines.length, 0, 'no machine was started');
});

const result = (id: string, status: CaseResult['status']): CaseResult => ({
  id,
  scenario: 'dur',
  suite: 'default',
  pointLabel: 'x',
  repetition: 1,
  seed: 1,
  status,
  findings: [],
  failing: [],
  allow: scenario.allow,
  durationMs: 1,
  dir: id,
});
const stateSpec = (state: string): CaseSpec => ({
  ...killCase!,
  id: `dur/log/${state}/r1`,
  crashPoint: { kind: 'log', stateKind: 'prefix', state },
  pointLabel: 'log-prefix',
});
const prepared = { unit: unit!, specs: [stateSpec('flush-1'), stateSpec('flush-2'), stateSpec('end')] } as PreparedUnit;
const recorded = (over: Partial<RecordedUnits> = {}): RecordedUnits => ({
  prepared: [prepared],
  errors: [],
  finished: new Set(),
  ...over,
});

t.test('the plan leaves out what an earlier session finished, and reruns its errors', async (t) => {
  const earlier = [
    result('dur/after-sync/r1', 'pass'),
    result('dur/log/flush-1/r1', 'fail'),
    result('dur/log/flush-2/r1', 'error'),
    result('gone/after-sync/r1', 'pass'),
  ];
  const done = new Set(earlier.filter((c) => c.status !== 'error').map((c) => c.id));
  const plan = planChecks([killCase!], recorded(), earlier, done);
  t.same(
    plan.previous.map((c) => c.id),
    ['dur/after-sync/r1', 'dur/log/flush-1/r1'],
    'results of cases this run still has',
  );
  t.same(plan.cases, []);
  t.same(
    plan.states.map((s) => s.id),
    ['dur/log/flush-2/r1', 'dur/log/end/r1'],
    'an errored state is checked again',
  );
  const finished = planChecks([], recorded({ prepared: [], finished: new Set(['dur/log/r1']) }), earlier, done);
  t.same(
    finished.previous.map((c) => c.id),
    ['dur/log/flush-1/r1'],
    "a finished unit keeps its states' results",
  );
});

t.test('the plan keeps the states --filter names; none kept and no kill case is an error', async (t) => {
  const plan = planChecks([], recorded(), [], new Set(), ['dur/log/flush-2']);
  t.same(
    plan.states.map((s) => s.id),
    ['dur/log/flush-2/r1'],
  );
  t.throws(() => planChecks([], recorded(), [], new Set(), ['dur/log/flush-9']), {
    constructor: ConfigError,
    message: /nothing to run: --filter dur\/log\/flush-9 matched no crash state of the recorded log\(s\) dur\/log\/r1/,
  });
  t.doesNotThrow(
    () =>
      planChecks([], recorded({ errors: [{ unit: unit!, result: result('dur/log/r1', 'error') }] }), [], new Set(), [
        'dur/log/flush-9',
      ]),
    'a recording error is something to report',
  );
});

t.test('the recorder writes each result, then hands it on; after a failed write it stops and says how to finish', async (t) => {
  const ended: string[] = [];
  const hub = new ReporterHub([{ name: 'seen', onCaseEnd: (r) => void ended.push(r.id) }]);
  let full = false;
  const store = {
    dir: '/results/run',
    writeCase: async () => {
      if (full) throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
    },
  } as unknown as RunStore;
  const recorder = new CaseRecorder(store, hub);
  await recorder.record(result('a', 'pass'));
  t.notOk(recorder.stopped);
  t.doesNotThrow(() => recorder.throwIfStopped(3));
  full = true;
  await recorder.record(result('b', 'fail'));
  full = false;
  await recorder.record(result('c', 'pass'));
  t.ok(recorder.stopped);
  t.same(ended, ['a'], 'what could not be written reaches no reporter, nor anything after it');
  t.same(
    recorder.results.map((r) => r.id),
    ['a'],
  );
  t.throws(() => recorder.throwIfStopped(3), {
    constructor: ResultsWriteError,
    message:
      /cannot write results in \/results\/run \(ENOSPC: the disk is full\); 1 of 3 case\(s\) completed and written \(1 passed, 0 failed\)\. Free space, then finish the run with: qcrash run --resume \/results\/run/,
  });
});
