import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Parser } from 'tap-parser';
import { XMLParser } from 'fast-xml-parser';
import { tap14Document } from '../../harness/report/tap.ts';
import { tap13Document, Tap13Reporter } from '../../harness/report/tap13.ts';
import { caseDiagnostics } from '../../harness/report/case-diagnostics.ts';
import { junitDocument } from '../../harness/report/junit.ts';
import { textReport } from '../../harness/report/text.ts';
import { compareRuns, formatComparison } from '../../harness/compare/compare.ts';
import { ReporterHub } from '../../harness/report/reporter.ts';
import { RunStore, loadSummary, mergeRuns } from '../../harness/results/store.ts';
import { exitCodeFor, worstExitCode } from '../../harness/results/verdict.ts';
import type { RunSummary } from '../../harness/results/run.ts';
import { prove } from '../helpers/prove.ts';

// summary.json of a real run of the default suite (trimmed to ten cases). It
// holds a real failing case (a superblock-time problem code from the kernel
// recovery, which qcrash has since learned to ignore) and a real error (a
// QMP socket race, since fixed): the reporters are pure functions of results.
const summary = JSON.parse(await readFile(new URL('../fixtures/report/summary.json', import.meta.url), 'utf8')) as RunSummary;
const dir = await mkdtemp(join(tmpdir(), 'report-test-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

async function tapParserResult(tap: string) {
  return new Promise<{ ok: boolean; count: number; pass: number; fail: number }>((resolve) => {
    const p = new Parser((r) => resolve(r));
    p.end(tap);
  });
}

/** What Perl's TAP::Parser (prove's parser) read from a TAP file, YAML blocks included (test/helpers/tap-yaml.pl). */
function perlTap(file: string): {
  version: number;
  tests: Array<{ number: number; ok: boolean; description: string; yaml?: unknown }>;
  parse_errors: string[];
  passed: number[];
  failed: number[];
} {
  return JSON.parse(
    execFileSync('perl', [new URL('../helpers/tap-yaml.pl', import.meta.url).pathname, file], { encoding: 'utf8' }),
  );
}

/** Perl's YAMLish reader gives every scalar as a string. */
const asStrings = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(asStrings)
    : v && typeof v === 'object'
      ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, asStrings(x)]))
      : v === null
        ? null
        : typeof v === 'number' || typeof v === 'boolean'
          ? v.toString()
          : v;

t.test('TAP 13 (--format tap, results.tap) is accepted by tap-parser with the right counts', async (t) => {
  const tap = tap13Document(summary);
  const result = await tapParserResult(tap);
  t.equal(result.count, summary.counts.total);
  t.equal(result.pass, summary.counts.pass);
  t.equal(result.fail, summary.counts.total - summary.counts.pass, 'fail, error and not-reached are all not ok');
  t.notOk(result.ok);
  t.match(tap, /^TAP version 13\n1\.\.\d+\n/);
  t.match(tap, /not ok \d+ - .*\n {2}---\n(.*\n)* {2}\.\.\.\n/, 'findings as a YAML diagnostics block');
});

t.test("Perl's prove reads the TAP 13 file: counts, failing cases named, YAML blocks parsed", async (t) => {
  const f = join(dir, 'results.tap');
  await writeFile(f, tap13Document(summary));
  const { code, out } = prove(f);
  t.equal(code, 1, 'prove exits 1: there are failing tests');
  t.notMatch(out, /Parse errors/);
  t.match(out, new RegExp(`Failed ${summary.counts.total - summary.counts.pass}/${summary.counts.total} subtests`));
  for (const c of summary.cases.filter((x) => x.status !== 'pass'))
    t.match(out, `not ok ${summary.cases.indexOf(c) + 1} - ${c.id}\n`, `names ${c.status} case ${c.id}`);
  t.match(out, /Result: FAIL/);

  const perl = perlTap(f);
  t.equal(perl.version, 13);
  t.same(perl.parse_errors, []);
  t.equal(perl.tests.length, summary.counts.total);
  t.same(
    perl.failed,
    summary.cases.flatMap((c, i) => (c.status === 'pass' ? [] : [i + 1])),
    'TAP::Parser counts exactly the non-passing cases as failed',
  );
  summary.cases.forEach((c, i) => {
    const got = perl.tests[i]!;
    t.equal(got.description, `- ${c.id}`);
    if (c.status !== 'pass' || c.findings.length)
      t.same(got.yaml, asStrings(caseDiagnostics(c)), `YAML of ${c.id} reads back as written`);
    else t.equal(got.yaml, undefined);
  });
});

t.test('TAP 13 survives strings that YAMLish cannot read unquoted: multi-line errors, colons, quotes, "#"', async (t) => {
  // A real error case with the error text of a real QMP failure (a JSON reply spanning lines) and a "#" in its id.
  const err = summary.cases.find((c) => c.status === 'error')!;
  const odd = {
    ...err,
    id: `${err.id}#2`,
    error: 'QMP error: {"class": "GenericError",\n  "desc": "it\'s - gone: #1"}\n\tat qmp.ts',
  };
  const f = join(dir, 'odd.tap');
  await writeFile(f, tap13Document({ ...summary, cases: [odd], counts: { ...summary.counts, total: 1 } }));
  const perl = perlTap(f);
  t.same(perl.parse_errors, []);
  t.equal(perl.tests[0]!.description, `- ${err.id}\\#2`, 'the "#" is escaped, not a directive');
  t.same(perl.tests[0]!.yaml, asStrings(caseDiagnostics(odd)));
});

t.test('the streaming TAP 13 reporter writes the plan first and cases as they finish; prove reads it', async (t) => {
  let text = '';
  const out = { write: (s: string) => ((text += s), true) } as unknown as NodeJS.WritableStream;
  const r = new Tap13Reporter(out);
  const { cases, counts: _c, finishedAt: _f, ...meta } = summary;
  r.onRunStart(meta, cases.length);
  t.equal(text, `TAP version 13\n1..${cases.length}\n`, 'plan before any case');
  const finished = [...cases].reverse();
  for (const c of finished) r.onCaseEnd(c);
  const f = join(dir, 'stream.tap');
  await writeFile(f, text);
  const perl = perlTap(f);
  t.same(perl.parse_errors, []);
  t.same(
    perl.tests.map((x) => x.description),
    finished.map((c) => `- ${c.id}`),
    'numbered in completion order',
  );
  t.match(prove(f).out, /Result: FAIL/);
});

t.test("TAP 14 (--format tap14) stays as it was: tap-parser reads it, Debian's prove refuses it", async (t) => {
  const tap = tap14Document(summary);
  t.match(tap, /^TAP version 14\n1\.\.\d+\n/);
  const result = await tapParserResult(tap);
  t.equal(result.count, summary.counts.total);
  t.equal(result.pass, summary.counts.pass);
  const f = join(dir, 'results14.tap');
  await writeFile(f, tap);
  const { out } = prove(f);
  t.match(out, /TAP specified version 14 but we don't know about versions later than 13/, 'why --format tap is TAP 13');
});

t.test('JUnit XML parses and its counts match summary.json', async (t) => {
  const xml = junitDocument(summary);
  const doc = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '',
    isArray: (n) => n === 'testsuite' || n === 'testcase',
  }).parse(xml) as {
    testsuites: {
      tests: string;
      failures: string;
      errors: string;
      testsuite: Array<{ name: string; tests: string; testcase: unknown[] }>;
    };
  };
  t.equal(Number(doc.testsuites.tests), summary.counts.total);
  t.equal(Number(doc.testsuites.failures), summary.counts.fail);
  t.equal(Number(doc.testsuites.errors), summary.counts.error + summary.counts.notReached);
  const names = new Set(summary.cases.map((c) => c.scenario));
  t.same(doc.testsuites.testsuite.map((s) => s.name).sort(), [...names].sort(), 'one suite per scenario');
  t.equal(
    doc.testsuites.testsuite.reduce((a, s) => a + s.testcase.length, 0),
    summary.counts.total,
  );
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
  const clean: RunSummary = {
    ...summary,
    runId: 'A',
    cases: summary.cases.map((c) => ({
      ...c,
      status: 'pass',
      failing: [],
      findings: c.findings.filter((f) => f.class === 'leak'),
    })),
  };
  const c = compareRuns(clean, { ...summary, runId: 'B' });
  const failing = summary.cases.find((x) => x.status === 'fail')!;
  t.ok(c.added.length > 0);
  t.ok(
    c.added.every((s) => s.startsWith(`${failing.scenario} | ${failing.pointLabel}`)),
    'signature starts with scenario and crash point',
  );
  t.ok(c.added.some((s) => s.endsWith(failing.failing[0]!.code)));
  t.same(c.gone, []);
  t.match(formatComparison(c), /NEW findings: [1-9]/);
  t.same(compareRuns(clean, clean).added, [], 'a run compared with itself has nothing new');
});

t.test('a failing reporter is disabled without stopping the others', async (t) => {
  const seen: string[] = [];
  const hub = new ReporterHub([
    {
      name: 'broken',
      onCaseEnd: () => {
        throw new Error('boom');
      },
    },
    { name: 'ok', onCaseEnd: (r) => void seen.push(r.id) },
  ]);
  const write = process.stderr.write.bind(process.stderr);
  let err = '';
  process.stderr.write = (s: string) => ((err += s), true);
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
  t.same(
    [...(await reopened.completedCaseIds())].sort(),
    cases
      .slice(0, 2)
      .map((c) => c.id)
      .sort(),
  );
  const rebuilt = await loadSummary(join(dir, 'a'));
  t.equal(rebuilt.counts.total, 2, 'summary rebuilt from case.json files');
  const b = await RunStore.create(join(dir, 'b'), meta);
  for (const c of cases.slice(2)) await b.writeCase(c);
  const merged = await mergeRuns([join(dir, 'a'), join(dir, 'b')]);
  t.equal(merged.summary.counts.total, cases.length);
  t.same(merged.conflicts, []);
  t.equal(exitCodeFor(merged.summary), 1, 'a failed case makes exit 1');
});

t.test('several results, one exit code: a finding beats a gap, a gap beats a pass', async (t) => {
  t.equal(worstExitCode([0, 3, 1]), 1);
  t.equal(worstExitCode([3, 0]), 3);
  t.equal(worstExitCode([0, 0]), 0);
});
