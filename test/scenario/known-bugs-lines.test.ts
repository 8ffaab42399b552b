import t from 'tap';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { scenariosDir } from '../../harness/util/paths.ts';
import { loadScenario } from '../../harness/run/resolve-scenario.ts';
import { kernelLines } from '../../harness/kernel/lines.ts';
import { knownBugNotes, textReport } from '../../harness/report/text.ts';
import type { CaseResult } from '../../harness/results/case.ts';
import { summaryOf } from '../helpers/run-summary.ts';
import { parseScenarioText } from '../../harness/scenario/parse.ts';
import { allowanceOnLine, isAllowed } from '../../harness/findings/finding.ts';
import { loadScenarios } from '../../harness/run/prepare.ts';

// Every known bug states the kernel lines it was confirmed on, each a line qcrash knows.
const dir = join(scenariosDir, 'known-bugs');
const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml'));

t.test('every known-bugs entry has confirmed-on with known lines', async (t) => {
  t.ok(files.length >= 7);
  for (const f of files) {
    const s = await loadScenario(join(dir, f), { suite: 'known-bugs' });
    t.ok(s.confirmedOn?.length, `${f} states confirmed-on`);
    for (const l of s.confirmedOn ?? [])
      t.ok(
        kernelLines.some((k) => k.name === l),
        `${f}: ${l} is a known line`,
      );
  }
});

t.test('confirmed-on takes only line names, with file:line errors', async (t) => {
  t.throws(
    () => parseScenarioText('x.yaml', 'confirmed-on: [six]\nrecipe: small-4k\nsteps: [mount]\n'),
    /x\.yaml:1.*kernel line such as 6\.1/,
  );
});

t.test('a run shows each known bug with its lines, and says when its own line is not among them', async (t) => {
  const scenarios = [{ name: 'kb', file: 'kb.yaml', hash: '', suite: 'known-bugs', confirmedOn: ['6.1'] }];
  t.same(knownBugNotes({ scenarios, kernel: { id: 'k', release: 'r', kind: 'stock', line: '6.1' } }), [
    'kb: confirmed on 6.1 (this run: 6.1)',
  ]);
  t.same(knownBugNotes({ scenarios, kernel: { id: 'k', release: 'r', kind: 'stock', line: '6.12' } }), [
    'kb: confirmed on 6.1 (this run: 6.12, NOT confirmed on this line yet)',
  ]);
});

// A scenario's allowance of the 6.12-only known bug, and the finding it explains.
const allow = {
  classes: ['leak' as const],
  codes: ['quota-usage-inconsistent'],
  knownBugs: [{ entry: 'chattr-restart-lost', codes: ['ioctl-lied'], lines: ['6.12'] }],
};
const lied = { class: 'api' as const, source: 'workload' as const, code: 'ioctl-lied', name: 'ioctl-lied', message: 'm' };

t.test('a known bug allowed in another scenario is allowed only on the lines its entry was confirmed on', async (t) => {
  t.ok(isAllowed(lied, allowanceOnLine(allow, '6.12')), 'allowed on 6.12');
  t.notOk(isAllowed(lied, allowanceOnLine(allow, '6.1')), 'a failure on 6.1, where the entry does not reproduce');
  t.notOk(isAllowed(lied, allowanceOnLine(allow, undefined)), 'a failure on a kernel of no known line');
  t.ok(isAllowed({ ...lied, code: 'quota-usage-inconsistent' }, allowanceOnLine(allow, '6.1')), 'the scenario codes kept');
  const e2fsckBug = {
    classes: [],
    codes: [],
    knownBugs: [{ entry: 'e2fsck-fc-stale-head-1k', codes: ['missing'], recovery: ['e2fsck' as const] }],
  };
  const missing = { class: 'data' as const, source: 'content' as const, code: 'missing', name: 'missing', message: 'm' };
  t.ok(isAllowed({ ...missing, recovery: 'e2fsck' }, allowanceOnLine(e2fsckBug, '6.1')), 'an e2fsprogs bug: every line');
  t.ok(isAllowed({ ...missing, recovery: 'e2fsck' }, allowanceOnLine(e2fsckBug, undefined)), 'even a kernel of no known line');
  t.notOk(
    isAllowed({ ...missing, recovery: 'kernel' }, allowanceOnLine(e2fsckBug, '6.1')),
    "not after the kernel's recovery, which the e2fsck bug does not touch",
  );
  t.notOk(isAllowed({ ...missing, recovery: 'e2fsck' }, e2fsckBug), 'nothing allowed before the line is known');
  t.throws(
    () =>
      parseScenarioText(
        'x.yaml',
        'recipe: small-4k\nsteps: [mount]\nallow:\n  known-bugs: [{ entry: a, codes: [ioctl-lied], line: ["6.12"] }]\n',
      ),
    /x\.yaml:4/,
    'a misspelt key is named at its line',
  );
});

t.test('every shipped allowance of a known bug names an entry confirmed on each of its lines', async (t) => {
  const { scenarios } = await loadScenarios([scenariosDir]);
  const uses = scenarios.flatMap((s) => (s.allow.knownBugs ?? []).map((k) => ({ s, k })));
  t.ok(uses.length >= 7, `${uses.length} allowances of known bugs in the default suite`);
  for (const { s, k } of uses) {
    const entry = await loadScenario(join(dir, `${k.entry}.yaml`), { suite: 'known-bugs' });
    t.ok(entry.description, `${s.name}: ${k.entry} is a known-bugs entry`);
    for (const l of k.lines ?? []) t.ok(entry.confirmedOn?.includes(l), `${s.name}: ${k.entry} is confirmed on ${l}`);
  }
});

t.test("the text report counts what a known bug's allowance let pass under that entry", async (t) => {
  const quota = { ...lied, class: 'data' as const, code: 'quota-usage-inconsistent', name: 'quota-usage-inconsistent' };
  const report = (line: string) => {
    const a = allowanceOnLine(allow, line);
    const findings = [lied, quota];
    const failing = findings.filter((f) => !isAllowed(f, a));
    const c = { id: 'c', scenario: 's', status: failing.length ? 'fail' : 'pass', findings, failing, allow: a, fired: {} };
    const s = summaryOf([c as unknown as CaseResult], { kernel: { id: 'k', release: 'k', kind: 'stock', line } });
    return textReport(s)
      .split('\n')
      .filter((l) => l.startsWith('allowed:'));
  };
  t.same(report('6.12'), [
    "allowed:   1 quota-usage-inconsistent (by the scenarios' allow:)",
    'allowed:   1 ioctl-lied (explained by known-bugs/chattr-restart-lost)',
  ]);
  t.same(report('6.1'), ["allowed:   1 quota-usage-inconsistent (by the scenarios' allow:)"], 'on 6.1 it fails instead');
});
