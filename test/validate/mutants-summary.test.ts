import t from 'tap';
import { join } from 'node:path';
import { validateKernels } from '../../harness/validate/validate.ts';
import { mutantsSummary, type MutantOutcome } from '../../harness/validate/mutants-summary.ts';
import type { MachineSpec } from '../../harness/vm/machine/machine.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher } from '../helpers/fake-machine.ts';
import { freeBlockInUse } from '../helpers/damage.ts';
import { fakeKernel, writeStepsScenario } from '../helpers/fake-suite.ts';

// The closing lines of validate --mutants, on two validations against one
// shared baseline (scripted machines): 'plants' damages the image after
// sync, 'harmless' does nothing, so one is flagged and one MISSED.
const tmp = await TempDir.create('mutants-summary-test');
t.teardown(() => tmp.remove());
const scenario = await writeStepsScenario(join(tmp.path, 'steps.yaml'));
const machines = new FakeLauncher((spec: MachineSpec) => ({
  onKill: (m) => {
    if (spec.kernel.id === 'plants' && m.commands.at(-1) === 'sync') freeBlockInUse(m.spec.disk.path);
  },
}));
const common = {
  baseline: fakeKernel('base'),
  scenarios: [scenario],
  seed: 1,
  jobs: 1,
  confirmRuns: 1,
  machines,
  snapshots: false,
};

t.test('each planted bug is flagged or MISSED, under the shared baseline', async (t) => {
  const harmless = await validateKernels({ ...common, patched: fakeKernel('harmless'), out: join(tmp.path, 'h') });
  const plants = await validateKernels({
    ...common,
    patched: fakeKernel('plants'),
    out: join(tmp.path, 'p'),
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

t.test('a baseline that failed or left cases unjudged is said to weaken the verdicts', async (t) => {
  const counts = { total: 4, pass: 2, fail: 1, error: 0, notReached: 1, notRun: 0 };
  const outcome: MutantOutcome = {
    patch: 'm.patch',
    result: {
      introduced: [],
      flaky: [],
      notJudged: { baseline: ['a'], patched: ['a', 'b'] },
      dir: '/r/m',
      baseline: { kernel: { id: 'k' }, summary: { counts }, dir: '/r/base' },
    },
  };
  const text = mutantsSummary([outcome]);
  t.match(text, '  baseline: k, 2 passed, 1 failed, 1 not run/reached (/r/base)\n');
  t.match(text, 'cannot count as introduced: fix the baseline first');
  t.match(text, '  MISSED   m.patch: 0 confirmed finding(s), 0 flaky, 2 case(s) not judged on the patched kernel  (/r/m)');
  t.equal(mutantsSummary([]), '', 'nothing validated (a shard): no summary');
});
