import t from 'tap';
import { join } from 'node:path';
import { validateKernels, validateReport } from '../../harness/validate/validate.ts';
import { mutantsSummary } from '../../harness/validate/mutants-summary.ts';
import type { MachineSpec } from '../../harness/vm/machine/machine.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher } from '../helpers/fake-machine.ts';
import { freeBlockInUse } from '../helpers/damage.ts';
import { fakeKernel, writeStepsScenario } from '../helpers/fake-suite.ts';

// validate --mutants runs the baseline once: every later patch is judged
// against that run (scripted machines; mutant-2 damages after sync).
const tmp = await TempDir.create('shared-baseline-test');
t.teardown(() => tmp.remove());
const scenario = await writeStepsScenario(join(tmp.path, 'steps.yaml'));
const machines = new FakeLauncher((spec: MachineSpec) => ({
  onKill: (m) => {
    if (spec.kernel.id === 'mutant-2' && m.commands.at(-1) === 'sync') freeBlockInUse(m.spec.disk.path);
  },
}));
const baseline = fakeKernel('base');
const common = { baseline, scenarios: [scenario], seed: 1, jobs: 1, confirmRuns: 1, machines, snapshots: false };

t.test("the second patch is judged against the first one's baseline run, which is not run again", async (t) => {
  const first = await validateKernels({ ...common, patched: fakeKernel('mutant-1'), out: join(tmp.path, 'm1') });
  const baselineBoots = () => machines.machines.filter((m) => m.spec.kernel.id === 'base').length;
  t.equal(baselineBoots(), 3);
  const second = await validateKernels({
    ...common,
    patched: fakeKernel('mutant-2'),
    out: join(tmp.path, 'm2'),
    baselineRun: first.baseline,
  });
  t.equal(baselineBoots(), 3, 'no baseline case ran again');
  t.equal(second.baseline.dir, first.baseline.dir);
  t.equal(second.baseline.shared, true);
  t.equal(second.introduced.length, 1, 'judged against the shared run: the new finding is found');
  t.match(validateReport(second), `judged against: the baseline run ${first.baseline.dir} (made once, shared by every patch)`);
  t.match(validateReport(first), `judged against: the baseline run ${first.baseline.dir}\n`);
});

t.test('a baseline run of another kernel is not reused', async (t) => {
  const first = await validateKernels({ ...common, patched: fakeKernel('mutant-1'), out: join(tmp.path, 'o1') });
  const other = await validateKernels({
    ...common,
    baseline: fakeKernel('base-6.12'),
    patched: fakeKernel('mutant-3'),
    out: join(tmp.path, 'o2'),
    baselineRun: first.baseline,
  });
  t.not(other.baseline.dir, first.baseline.dir);
  t.notOk(other.baseline.shared);
});

t.test("the closing summary says which patch was flagged and which MISSED, under the shared baseline's result", async (t) => {
  const harmless = await validateKernels({ ...common, patched: fakeKernel('mutant-1'), out: join(tmp.path, 's1') });
  const plants = await validateKernels({
    ...common,
    patched: fakeKernel('mutant-2'),
    out: join(tmp.path, 's2'),
    baselineRun: harmless.baseline,
  });
  const text = mutantsSummary([
    { patch: '/x/01-harmless.patch', result: harmless },
    { patch: '/x/02-plants.patch', result: plants },
  ]);
  const lines = text.trim().split('\n');
  t.equal(lines[0], 'Planted bugs: 1 of 2 flagged, each patch alone against one baseline run');
  t.match(lines[1], /^ {2}baseline: base, 3 passed, 0 failed, 0 not run\/reached \(/);
  t.match(lines[2], /^ {2}MISSED {3}01-harmless\.patch: 0 confirmed finding\(s\), 0 flaky {2}\(/);
  t.match(lines[3], /^ {2}flagged {2}02-plants\.patch: 1 confirmed finding\(s\), 0 flaky {2}\(/);
  t.equal(lines.length, 4, 'no warning about a baseline that passed');
});
