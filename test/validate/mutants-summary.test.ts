import t from 'tap';
import { mutantsSummary, type MutantOutcome } from '../../harness/validate/mutants-summary.ts';

// The closing lines of validate --mutants on a baseline that did not pass.
// On real validations (a flagged patch and a MISSED one against one shared
// baseline) they are checked in shared-baseline.test.ts.
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
