import t from 'tap';
import { join } from 'node:path';
import { validateExitCode, validateKernels, validateReport } from '../../harness/validate/validate.ts';
import type { MachineSpec } from '../../harness/vm/machine/machine.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher, type FakeMachine } from '../helpers/fake-machine.ts';
import { freeBlockInUse } from '../helpers/damage.ts';
import { fakeKernel, writeStepsScenario } from '../helpers/fake-suite.ts';

// validate's judgement (introduced, flaky, removed, unchanged) through the
// real runner, store and oracles, with scripted machines in place of two
// kernels: each "kernel" damages the crash image (a real debugfs change the
// real e2fsck finds) at chosen crash points. The same on real kernels:
// test/kernel/mutants.test.ts.
const tmp = await TempDir.create('validate-test');
t.teardown(() => tmp.remove());
const fake = (id: string) => fakeKernel(id);
const baseline = fake('baseline');
const patched = fake('patched');

const scenario = await writeStepsScenario(join(tmp.path, 'judge.yaml'));

// The last step the agent ran names the crash point. On the patched kernel,
// after-sync is always damaged (a bug the patch introduced), after-mount
// only on its first two kills (the patched run and the first confirmation:
// flaky); on the baseline, after-drop-caches is damaged (a bug the patch fixed).
const patchedMountKills = { n: 0 };
function damageFor(kernel: MachineSpec['kernel'], m: FakeMachine): boolean {
  const last = m.commands.at(-1);
  if (kernel.id === 'baseline') return last === 'drop-caches';
  if (last === 'sync') return true;
  if (last === 'mount') return ++patchedMountKills.n <= 2;
  return false;
}
const machines = new FakeLauncher((spec: MachineSpec) => ({
  onKill: (m) => {
    if (damageFor(spec.kernel, m)) freeBlockInUse(m.spec.disk.path);
  },
}));

t.test('new, gone, shared and intermittent findings are told apart', async (t) => {
  const r = await validateKernels({
    baseline,
    patched,
    scenarios: [scenario],
    seed: 1,
    jobs: 1,
    confirmRuns: 2,
    out: join(tmp.path, 'out'),
    machines,
    snapshots: false,
  });
  t.same(
    r.introduced.map((v) => [v.sig.point, v.sig.code, v.confirmed, v.reruns]),
    [['after-sync', '0x050005', 2, 2]],
    'after-sync: new and seen on every rerun',
  );
  t.same(
    r.flaky.map((v) => [v.sig.point, v.confirmed, v.reruns]),
    [['after-mount', 1, 2]],
    'after-mount: new but seen on one rerun of two',
  );
  t.match(
    r.removed,
    [/^judge \| after-drop-caches \| e2fsck \| corruption \| 0x050005$/],
    'after-drop-caches: only the baseline has it',
  );
  t.same(r.unchanged, []);
  t.same(r.notJudged, { baseline: [], patched: [] });
  t.same(r.introduced[0]!.caseIds, ['judge/after-sync/r1']);
  const kinds = machines.machines.map((m) => m.spec.kernel.id);
  t.equal(kinds.filter((k) => k === 'baseline').length, 3, 'three cases on the baseline');
  t.equal(kinds.filter((k) => k === 'patched').length, 3 + 2 + 2, 'three on the patched kernel, then the two new cases twice');
});

t.test('cases that could not run judge nothing: not introduced, listed apart', async (t) => {
  const broken = new FakeLauncher((spec: MachineSpec) => (spec.kernel.id === 'patched' ? new Error('no machine for you') : {}));
  const r = await validateKernels({
    baseline,
    patched,
    scenarios: [scenario],
    seed: 1,
    jobs: 1,
    confirmRuns: 1,
    out: join(tmp.path, 'out2'),
    machines: broken,
    snapshots: false,
  });
  t.same(r.introduced, []);
  t.same(r.flaky, []);
  t.equal(r.notJudged.patched.length, 3);
  t.equal(r.patched.summary.counts.error, 3);
  // Nothing introduced, but a regression could hide in what was not judged: never green.
  t.equal(validateExitCode(r), 3, 'exit 3, not 0');
  t.match(
    validateReport(r),
    /Result: INCOMPLETE: no finding introduced in the cases judged, but 3 case\(s\) could not be judged/,
  );
  t.notMatch(validateReport(r), /Tested-by:/, 'no Tested-by for a partial result');
  t.equal(
    validateExitCode({ ...r, notJudged: { baseline: r.notJudged.patched, patched: [] } }),
    0,
    'gaps on the baseline only: 0',
  );
});
