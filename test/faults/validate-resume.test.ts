import t from 'tap';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateKernels } from '../../harness/validate/validate.ts';
import { caseRelDir, loadSummary } from '../../harness/results/store.ts';
import type { MachineSpec } from '../../harness/vm/machine/machine.ts';
import { FakeLauncher, type FakeMachine } from '../helpers/fake-machine.ts';
import { freeBlockInUse } from '../helpers/damage.ts';
import { fakeKernel, writeStepsScenario } from '../helpers/fake-suite.ts';
import { qcrash } from '../helpers/cli.ts';

// A validate interrupted in its patched run is finished by validate itself
// (`qcrash validate --resume OUT`): the baseline is kept, the patched run
// resumed where it stopped, and the judgement is the one an uninterrupted
// validate gives. (Ctrl-C used to say `qcrash run --resume OUT/baseline`,
// which finishes a run, never the validation.)
const dir = await mkdtemp(join(tmpdir(), 'faults-validate-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const baseline = fakeKernel('baseline');
const patched = fakeKernel('patched');
const scenario = await writeStepsScenario(join(dir, 'judge.yaml'));
const launched: string[] = [];
// The patched kernel damages the image after sync: a finding the patch introduced.
const machines = new FakeLauncher((spec: MachineSpec) => {
  launched.push(spec.kernel.id);
  return {
    onKill: (m: FakeMachine) =>
      void (spec.kernel.id === 'patched' && m.commands.at(-1) === 'sync' && freeBlockInUse(m.spec.disk.path)),
  };
});
const settings = { baseline, patched, scenarios: [scenario], seed: 1, jobs: 1, confirmRuns: 1, machines, snapshots: false };

t.test('validate --resume keeps the finished baseline and finishes the patched run', async (t) => {
  const out = join(dir, 'v');
  const whole = await validateKernels({ ...settings, out });
  t.equal(whole.introduced.length, 1);
  // As Ctrl-C in the patched run leaves it: one case written, no summary, no judgement.
  const patchedDir = join(out, 'patched');
  const ids = (await loadSummary(patchedDir)).cases.map((c) => c.id);
  for (const f of ['summary.json', 'report.txt', 'junit.xml', 'results.tap', 'results.ktap', 'report.html'])
    await rm(join(patchedDir, f), { force: true });
  for (const id of ids.slice(1)) await rm(join(patchedDir, caseRelDir(id)), { recursive: true });
  for (const f of ['validate.json', 'validate.txt', 'confirm-1']) await rm(join(out, f), { recursive: true, force: true });
  launched.length = 0;
  const resumed = await validateKernels({ ...settings, out, resume: true });
  t.notOk(launched.includes('baseline'), 'the baseline was not run again');
  t.equal(
    launched.filter((k) => k === 'patched').length,
    ids.length - 1 + resumed.introduced.reduce((a, v) => a + v.caseIds.length, 0),
    'the patched run ran only its missing cases (and the confirmation rerun)',
  );
  t.same(
    resumed.introduced.map((v) => v.signature),
    whole.introduced.map((v) => v.signature),
    'the same judgement',
  );
  t.equal(resumed.patched.summary.counts.notRun, 0);
  t.ok((await readdir(out)).includes('validate.json'));
});

t.test('qcrash validate --resume: on a folder without validate inputs, or with inputs given again, exit 2', async (t) => {
  const none = await qcrash(['validate', '--resume', join(dir, 'v', 'patched')]);
  t.equal(none.code, 2);
  t.match(none.stderr, /validate-args\.json cannot be read .*: is .* the --out of a qcrash validate --patch/);
  const mixed = await qcrash(['validate', '--resume', join(dir, 'v'), '--patch', 'x.patch']);
  t.equal(mixed.code, 2);
  t.match(mixed.stderr, /finishes the validation with the inputs it started with; --patch cannot change it/);
});
