import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { projectRoot } from '../../harness/util/paths.ts';
import type { CaseResult } from '../../harness/results/case.ts';
import type { RunSummary } from '../../harness/results/run.ts';
import {
  buildMatrix,
  casePhases,
  crashPointRows,
  groupFindings,
  logStateRows,
  readFired,
} from '../../harness/report/html/run-model.ts';
import { runReportHtml } from '../../harness/report/html/run-report.ts';
import { jsonForScript, scriptSafe } from '../../harness/report/html/page.ts';

// The report's view model, without a browser, on summary.json captured from a
// real run of the default suite (test/fixtures/report/summary.json: commit
// points, a failing case and an error case).
const summary = JSON.parse(await readFile(join(projectRoot, 'test/fixtures/report/summary.json'), 'utf8')) as RunSummary;

t.test('crash points: commit indexes from the commit points, the step from the label', async (t) => {
  const rows = crashPointRows(summary.cases);
  const commits = rows.filter((r) => r.indexKind === 'jbd2 commit');
  t.same(
    commits.map((r) => r.index),
    [1, 2, 3, 4, 5, 6],
  );
  t.same([...new Set(commits.map((r) => r.step))], ['migrate']);
  t.equal(commits.find((r) => r.index === 1)!.verdict, 'fail');
  const after = rows.find((r) => r.caseId === 'durability/after-fsync/r1')!;
  const fsync = summary.cases.find((c) => c.id === after.caseId)!.steps!.find((s) => s.name === 'fsync')!;
  t.equal(after.atMs, fsync.durationMs, 'an "after" kill sits at the end of its step');
  t.notOk(
    rows.some((r) => r.caseId === 'shapes-4k/after-sync/r1'),
    'an error case without `fired` is not plotted',
  );
});

t.test('fired is read defensively: the union to come, junk, nothing', async (t) => {
  t.same(readFired({ kind: 'commit', hits: 3, symbol: 'kjournald2+0xa9' }), {
    kind: 'commit',
    hits: 3,
    symbol: 'kjournald2+0xa9',
    commit: 3,
  });
  t.same(readFired({ kind: 'kernel+commit', hits: 2, commit: 1, rip: '0x1' }), {
    kind: 'kernel+commit',
    hits: 2,
    commit: 1,
    rip: '0x1',
  });
  t.same(readFired({ kind: 'log', epoch: 17 }), { kind: 'log', epoch: 17 });
  t.same(readFired({ atMs: 'soon' }), { kind: 'unknown' });
  t.equal(readFired(null), undefined);
});

t.test('phases when recorded, the total otherwise', async (t) => {
  const c = summary.cases[0]!;
  t.same(casePhases(c), [{ phase: 'total', ms: c.durationMs }]);
  const withPhases = { ...c, phases: { machineMs: 250, workloadMs: 900, recoveryMs: 60, oraclesMs: 140 } } as CaseResult;
  t.same(
    casePhases(withPhases).map((p) => `${p.phase} ${p.ms}`),
    ['machine 250', 'workload 900', 'recovery 60', 'oracles 140'],
  );
});

t.test('write-log states: epoch and kind from ids named as the write-log issue names them', async (t) => {
  const base = summary.cases[0]!;
  const states = ['w/log/flush-17/r1', 'w/log/flush-17-drop-3a9f/r1', 'w/log/flush-3/r1'].map((id) => ({
    ...base,
    id,
    scenario: 'w',
  }));
  t.same(
    logStateRows([...states, base]).map((r) => `${r.epoch} ${r.stateKind}`),
    ['17 prefix', '17 power-loss', '3 prefix'],
  );
});

t.test('matrix and findings of the captured run', async (t) => {
  const m = buildMatrix(summary.cases, new Map());
  t.equal(m.rows.length, summary.cases.length, 'one row per scenario and crash point (one repetition each)');
  t.same(m.recoveries, ['e2fsck', 'kernel', '-'], 'recoveries from the findings; the error case went through none');
  const groups = groupFindings(summary.cases);
  const failing = groups.filter((g) => g.failing);
  t.same(
    failing.map((g) => g.signature).sort(),
    [
      ...new Set(
        summary.cases.flatMap((c) =>
          c.failing.map((f) => `${c.scenario} | ${c.pointLabel} | ${f.recovery ?? '-'} | ${f.class} | ${f.code}`),
        ),
      ),
    ].sort(),
  );
  // The captured run's one failing finding has a code qcrash's table lacks: the page says so rather than nothing.
  t.same(
    failing.map((g) => `${g.code}: ${g.meaning}`),
    ["0x00003d: e2fsck problem 0x00003d (not in qcrash's table)"],
  );
  const leak = groups.find((g) => g.code === '0x05000f')!;
  t.equal(leak.meaning, 'free blocks count wrong', 'a known code has its meaning');
  t.notOk(leak.failing, 'leaks are allowed');
});

t.test('a report renders without the case folders (a summary copied alone)', async (t) => {
  const html = await runReportHtml(summary, '/nonexistent-run-dir');
  for (const c of summary.cases) t.ok(html.includes(`id="case-${c.id}"`), `section for ${c.id}`);
  t.match(html, /No files in the case folder/);
  t.notMatch(html.replace(/<script>[\s\S]*?<\/script>/g, ''), /<script>/, 'scripts are closed where they end');
});

t.test('inlined text cannot close its script element', async (t) => {
  t.equal(scriptSafe('a="</script><!--"'), 'a="<\\/script><\\!--"');
  t.equal(jsonForScript({ m: '</script>' }), '{"m":"\\u003c/script>"}');
  t.same(JSON.parse(jsonForScript({ m: '</script>\u2028' })), { m: '</script>\u2028' });
});
