import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Parser } from 'tap-parser';
import { XMLParser } from 'fast-xml-parser';
import { tapDocument } from '../../harness/report/tap.ts';
import { junitDocument } from '../../harness/report/junit.ts';
import { textReport } from '../../harness/report/text.ts';
import { compareRuns, formatComparison } from '../../harness/compare/compare.ts';
import { ReporterHub } from '../../harness/report/reporter.ts';
import { RunStore, loadSummary, mergeRuns } from '../../harness/results/store.ts';
import { exitCodeFor } from '../../harness/results/verdict.ts';
import type { RunSummary } from '../../harness/results/run.ts';

// summary.json of a real run of the default suite (trimmed to ten cases). It
// holds a real failing case (a superblock-time problem code from the kernel
// recovery, which qcrash has since learned to ignore) and a real error (a
// QMP socket race, since fixed): the reporters are pure functions of results.
const summary = JSON.parse(await readFile(new URL('../fixtures/report/summary.json', import.meta.url), 'utf8')) as RunSummary;
const dir = await mkdtemp(join(tmpdir(), 'report-test-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

t.test('TAP 14 is accepted by tap-parser with the right counts', async (t) => {
  const tap = tapDocument(summary);
  const result = await new Promise<{ ok: boolean; count: number; pass: number; fail: number }>((resolve) => {
    const p = new Parser((r) => resolve(r as unknown as { ok: boolean; count: number; pass: number; fail: number }));
    p.end(tap);
  });
  t.equal(result.count, summary.counts.total);
  t.equal(result.pass, summary.counts.pass);
  t.equal(result.fail, summary.counts.total - summary.counts.pass, 'fail, error and not-reached are all not ok');
  t.notOk(result.ok);
  t.match(tap, /^TAP version 14\n1\.\.\d+\n/);
  t.match(tap, /not ok \d+ - .*\n {2}---\n(.*\n)* {2}\.\.\.\n/, 'findings as a YAML diagnostics block');
});

t.test("Perl's prove parses the TAP from a file", async (t) => {
  const f = join(dir, 'results.tap');
  await writeFile(f, tapDocument(summary));
  let out = '';
  let code = 0;
  try {
    out = execFileSync('prove', ['--exec', 'cat', f], { encoding: 'utf8' });
  } catch (e) {
    const err = e as { status: number; stdout: string };
    code = err.status;
    out = err.stdout;
  }
  t.equal(code, 1, 'prove exits 1: there are failing tests');
  t.match(out, new RegExp(`Failed ${summary.counts.total - summary.counts.pass}/${summary.counts.total} subtests`));
  t.match(out, /Result: FAIL/);
});

t.test('JUnit XML parses and its counts match summary.json', async (t) => {
  const xml = junitDocument(summary);
  const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (n) => n === 'testsuite' || n === 'testcase' }).parse(xml) as {
    testsuites: { tests: string; failures: string; errors: string; testsuite: Array<{ name: string; tests: string; testcase: unknown[] }> };
  };
  t.equal(Number(doc.testsuites.tests), summary.counts.total);
  t.equal(Number(doc.testsuites.failures), summary.counts.fail);
  t.equal(Number(doc.testsuites.errors), summary.counts.error + summary.counts.notReached);
  const names = new Set(summary.cases.map((c) => c.scenario));
  t.same(doc.testsuites.testsuite.map((s) => s.name).sort(), [...names].sort(), 'one suite per scenario');
  t.equal(doc.testsuites.testsuite.reduce((a, s) => a + s.testcase.length, 0), summary.counts.total);
});

t.test('the text report fits a mail and names the failing findings', async (t) => {
  const text = textReport(summary);
  const failing = summary.cases.find((c) => c.status === 'fail')!;
  t.match(text, failing.id);
  t.match(text, failing.failing[0]!.name);
  t.match(text, /Result: FAIL/);
  t.ok(text.split('\n').length < 60, 'short');
});

t.test('compare shows findings present only in the newer run as new', async (t) => {
  const clean: RunSummary = { ...summary, runId: 'A', cases: summary.cases.map((c) => ({ ...c, status: 'pass', failing: [], findings: c.findings.filter((f) => f.class === 'leak') })) };
  const c = compareRuns(clean, { ...summary, runId: 'B' });
  const failing = summary.cases.find((x) => x.status === 'fail')!;
  t.ok(c.added.length > 0);
  t.ok(c.added.every((s) => s.startsWith(`${failing.scenario} | ${failing.pointLabel}`)), 'signature starts with scenario and crash point');
  t.ok(c.added.some((s) => s.endsWith(failing.failing[0]!.code)));
  t.same(c.gone, []);
  t.match(formatComparison(c), /NEW findings: [1-9]/);
  t.same(compareRuns(clean, clean).added, [], 'a run compared with itself has nothing new');
});

t.test('a failing reporter is disabled without stopping the others', async (t) => {
  const seen: string[] = [];
  const hub = new ReporterHub([
    { name: 'broken', onCaseEnd: () => { throw new Error('boom'); } },
    { name: 'ok', onCaseEnd: (r) => void seen.push(r.id) },
  ]);
  const write = process.stderr.write;
  let err = '';
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    for (const c of summary.cases.slice(0, 3)) await hub.onCaseEnd(c);
  } finally {
    process.stderr.write = write;
  }
  t.equal(seen.length, 3);
  t.equal(err.match(/reporter broken failed/g)?.length, 1, 'reported once');
});

t.test('the store resumes, rebuilds the summary from case files, and merges by run id', async (t) => {
  const { cases, counts: _c, finishedAt: _f, ...meta } = summary;
  const a = await RunStore.create(join(dir, 'a'), meta);
  for (const c of cases.slice(0, 2)) await a.writeCase(c);
  // Interrupted: no summary.json. Reopen and ask what is done.
  const reopened = await RunStore.open(join(dir, 'a'));
  t.same([...(await reopened.completedCaseIds())].sort(), cases.slice(0, 2).map((c) => c.id).sort());
  const rebuilt = await loadSummary(join(dir, 'a'));
  t.equal(rebuilt.counts.total, 2, 'summary rebuilt from case.json files');
  const b = await RunStore.create(join(dir, 'b'), meta);
  for (const c of cases.slice(2)) await b.writeCase(c);
  const merged = await mergeRuns([join(dir, 'a'), join(dir, 'b')]);
  t.equal(merged.summary.counts.total, cases.length);
  t.same(merged.conflicts, []);
  t.equal(exitCodeFor(merged.summary), 1, 'a failed case makes exit 1');
});
