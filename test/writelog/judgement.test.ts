import t from 'tap';
import type { CaseResult, CaseStatus } from '../../harness/results/case.ts';
import type { RunSummary } from '../../harness/results/run.ts';
import type { Finding } from '../../harness/findings/finding.ts';
import { defaultAllowance } from '../../harness/findings/finding.ts';
import { confirm, judge, rerunFilter } from '../../harness/validate/validate.ts';
import { compareRuns, comparisonExitCode } from '../../harness/compare/compare.ts';
import { matchingSignatures } from '../../harness/bisect/bisect.ts';
import { unitFilter } from '../../harness/run/case-selection.ts';
import { logUnitIdOf, logStateCaseId } from '../../harness/scenario/model.ts';
import { summaryOf } from '../helpers/run-summary.ts';

// validate, bisect-step and compare judge write-log states as they judge
// kill cases: by finding signature, which names the state's kind, never its
// name. Two kernels (or two runs) record two different logs, so their states
// are named differently: the same bug must still be the same signature, a
// state that only exists in one run's log must not count as a missing case,
// and a confirmation rerun records the whole unit again.

const corruption = (code: string): Finding => ({
  class: 'corruption',
  source: 'e2fsck',
  code,
  name: code,
  message: `problem ${code}`,
  recovery: 'e2fsck',
});

function logCase(
  scenario: string,
  state: string,
  kind: 'prefix' | 'power-loss',
  status: CaseStatus = 'pass',
  failing: Finding[] = [],
): CaseResult {
  return {
    id: logStateCaseId(scenario, state, 1),
    scenario,
    suite: 'default',
    pointLabel: `log-${kind}`,
    repetition: 1,
    seed: 7,
    status,
    findings: failing,
    failing,
    allow: defaultAllowance,
    durationMs: 100,
    dir: '',
    fired: {
      kind: 'log',
      state,
      stateKind: kind,
      variant: kind === 'prefix' ? 'flush' : 'drop',
      epoch: 3,
      position: 12,
      entries: 40,
      base: 10,
      dropped: [],
      acksBefore: [],
      unit: `${scenario}/log/r1`,
    },
  };
}

function killCase(id: string, status: CaseStatus = 'pass', failing: Finding[] = []): CaseResult {
  const [scenario, pointLabel] = id.split('/');
  return {
    id,
    scenario: scenario!,
    suite: 'default',
    pointLabel: pointLabel!,
    repetition: 1,
    seed: 1,
    status,
    findings: failing,
    failing,
    allow: defaultAllowance,
    durationMs: 100,
    dir: '',
  };
}

function run(runId: string, cases: CaseResult[]): RunSummary {
  return summaryOf(cases, { runId, kernel: { id: runId, release: runId, kind: 'built' } });
}

t.test('ids: a state case belongs to its unit; the point label is the state kind', async (t) => {
  t.equal(
    logStateCaseId('validate/log-durability', 'flush-3-drop-3a9f01c2', 2),
    'validate/log-durability/log/flush-3-drop-3a9f01c2/r2',
  );
  t.equal(logUnitIdOf('validate/log-durability/log/flush-3-drop-3a9f01c2/r2'), 'validate/log-durability/log/r2');
  t.equal(logUnitIdOf('validate/log-durability/log/r2'), undefined, 'a unit id is not a state id');
  t.equal(logUnitIdOf('durability/after-fsync/r1'), undefined, 'a kill case has no unit');
  t.same(
    rerunFilter(['s/log/flush-6/r1', 's/log/flush-6-drop-ab/r1', 'k/after-sync/r1']),
    ['s/log/r1', 'k/after-sync/r1'],
    'states rerun as their whole unit, once; kill cases by id',
  );
});

t.test('--filter: a unit runs whole, in part, or not at all', async (t) => {
  const u = { id: 'validate/log-durability/log/r1', repetition: 1, scenario: { name: 'validate/log-durability' } };
  t.equal(unitFilter(u, 'validate/log-durability/log/r1'), 'all', 'the unit id (what a confirmation rerun passes)');
  t.equal(unitFilter(u, 'log-durability'), 'all', 'part of the scenario name');
  t.equal(unitFilter(u, '/log/'), 'all', 'every write-log unit');
  t.equal(unitFilter(u, 'validate/log-durability/log/flush-3/r1'), 'some', 'a state id: only states whose ids contain it');
  t.equal(unitFilter(u, 'validate/log-durability/log/flush-3'), 'some');
  t.equal(unitFilter(u, 'validate/log-durability/log/flush-3/r2'), 'no', 'another repetition');
  t.equal(unitFilter(u, 'durability/after-fsync'), 'no', 'a kill case of another scenario');
});

// Baseline: five prefix states and a power-loss state failing 0x050005.
// Patched (another kernel, another log): seven prefix states, the same
// power-loss failure under another state name, and a new prefix failure.
const baseline = run('baseline', [
  ...['flush-1', 'flush-2', 'flush-3', 'flush-4', 'ack-sync'].map((s) => logCase('s', s, 'prefix')),
  logCase('s', 'flush-3-drop-aa000001', 'power-loss', 'fail', [corruption('0x050005')]),
  killCase('k/after-sync/r1'),
]);
const patched = run('patched', [
  ...['flush-1', 'flush-2', 'flush-3', 'flush-4', 'flush-5', 'flush-7', 'ack-sync'].map((s) => logCase('s', s, 'prefix')),
  logCase('s', 'flush-6', 'prefix', 'fail', [corruption('0x011002')]),
  logCase('s', 'flush-4-cut-bb000002', 'power-loss', 'fail', [corruption('0x050005')]),
  killCase('k/after-sync/r1'),
]);

t.test('validate: findings judged by signature, whatever the states are named', async (t) => {
  const j = judge(baseline, patched);
  t.same(
    j.fresh.map((f) => [f.signature, f.caseIds]),
    [['s | log-prefix | e2fsck | corruption | 0x011002', ['s/log/flush-6/r1']]],
    'new on the patched kernel',
  );
  t.same(
    j.unchanged,
    ['s | log-power-loss | e2fsck | corruption | 0x050005'],
    'the same power-loss failure under another state name is unchanged',
  );
  t.same(j.removed, []);
  // The confirmation reruns record the unit again: the failure comes back in a state named differently once more.
  const reruns: string[][] = [];
  const verdicts = await confirm(j.fresh, 2, async (ids, i) => {
    reruns.push(rerunFilter(ids));
    return run(`confirm-${i}`, [
      logCase('s', `flush-${8 + i}`, 'prefix', 'fail', [corruption('0x011002')]),
      logCase('s', 'flush-1', 'prefix'),
    ]);
  });
  t.same(reruns, [['s/log/r1'], ['s/log/r1']], 'each rerun filters the whole unit');
  t.same(
    verdicts.map((v) => [v.verdict, v.confirmed]),
    [['introduced', 2]],
    'seen on both reruns: introduced',
  );
  const gone = await confirm(j.fresh, 2, async (_ids, i) =>
    run(`confirm-${i}`, [logCase('s', 'flush-9', 'prefix', i === 0 ? 'fail' : 'pass', i === 0 ? [corruption('0x011002')] : [])]),
  );
  t.same(
    gone.map((v) => [v.verdict, v.confirmed]),
    [['flaky', 1]],
    'seen on one rerun of two: flaky',
  );
});

t.test('bisect-step: a finding selected by its signature, in any state of the log', async (t) => {
  t.same(
    matchingSignatures(patched, 'log-prefix | e2fsck | corruption | 0x011002').map((s) => [s.point, s.code]),
    [['log-prefix', '0x011002']],
  );
  t.same(
    matchingSignatures(baseline, 'log-prefix | e2fsck | corruption | 0x011002'),
    [],
    'the baseline (good) run has no such finding',
  );
  t.equal(matchingSignatures(patched, '0x050005').length, 1);
});

t.test("compare: a log's states count as their unit for coverage, findings count by signature", async (t) => {
  const c = compareRuns(baseline, patched);
  t.same(c.onlyInA, [], 'states named only in the older log are not missing cases');
  t.same(c.onlyInB, []);
  t.same(c.added, ['s | log-prefix | e2fsck | corruption | 0x011002']);
  t.same(c.gone, []);
  t.same(c.worse, [], 'the unit failed before and fails now: not worse');
  t.equal(comparisonExitCode(c), 1, 'a new finding fails the nightly comparison');

  const clean = run(
    'clean',
    baseline.cases.map((x) => (x.status === 'fail' ? logCase('s', 'flush-3-drop-aa000001', 'power-loss') : x)),
  );
  const worse = compareRuns(clean, patched);
  t.same(
    worse.worse,
    [{ id: 's/log/r1', from: 'pass', to: 'fail' }],
    'a unit whose states all passed now has a failing one: worse',
  );

  const noUnit = run('no-unit', [killCase('k/after-sync/r1')]);
  const lost = compareRuns(baseline, noUnit);
  t.same(lost.onlyInA, ['s/log/r1'], 'a unit the newer run lacks is missing, once');
  t.equal(comparisonExitCode(lost), 1);
  t.same(compareRuns(baseline, baseline).statusChanges, [], 'a run against itself changes nothing');
});
