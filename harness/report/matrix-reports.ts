import { join, relative } from 'node:path';
import { writeFileAtomic } from '../util/atomic.ts';
import type { CaseResult } from '../results/case.ts';
import { findingSignature } from '../results/signature.ts';
import { matrixText, type Matrix, type MatrixRun } from './matrix.ts';
import { esc as xmlEsc, junitSuites } from './junit.ts';
import { kcidbDocument, type KcidbDocument } from './kcidb.ts';
import { esc, relHref, renderPage } from './html/page.ts';
import { verdictBadge } from './html/run-report.ts';

/**
 * The outputs of a kernel matrix run (`run --kernel a,b`), written beside
 * the kernels' run folders: each is a plug-in that renders the matrix and
 * the runs into one file, as every run's own reports are (run-files.ts).
 * A finding seen on some kernels and not others says so in each of them.
 */
interface MatrixReport {
  file: string;
  render(m: Matrix, runs: readonly MatrixRun[], dir: string): string | Promise<string>;
}

/** Failing signatures seen on some kernels and not others, by signature. */
function splitFindings(m: Matrix): Map<string, Matrix['findings'][number]> {
  return new Map(m.findings.filter((f) => f.notOn.length).map((f) => [f.signature, f]));
}

function onlyOn(f: Matrix['findings'][number]): string {
  return `only on ${f.seenOn.join(', ')} (not on ${f.notOn.join(', ')})`;
}

/** The split findings among a case's failing ones. */
function caseSplits(c: CaseResult, split: ReturnType<typeof splitFindings>): Array<Matrix['findings'][number]> {
  return [...new Set(c.failing.map((f) => findingSignature(c, f)))].flatMap((s) => split.get(s) ?? []);
}

function kernelProperties(m: Matrix, label: string): Array<[string, string]> {
  const k = m.kernels.find((x) => x.label === label)!;
  return [
    ['kernel', k.label],
    ['kernel.id', k.id],
    ['kernel.release', k.release],
    ...(k.line ? [['kernel.line', k.line] as [string, string]] : []),
  ];
}

/** JUnit: one testsuite per kernel and scenario ("stock-6.12: durability"), the kernel in its properties. */
function matrixJunit(m: Matrix, runs: readonly MatrixRun[]): string {
  const split = splitFindings(m);
  const cases = runs.flatMap((r) => r.summary.cases);
  const count = (f: (c: CaseResult) => boolean) => cases.filter(f).length;
  const errors = count((c) => c.status === 'error' || c.status === 'not-reached' || c.status === 'not-run');
  const time = cases.reduce((a, c) => a + c.durationMs, 0) / 1000;
  const suites = runs.flatMap((r) =>
    junitSuites(r.summary.cases, {
      prefix: r.label,
      properties: kernelProperties(m, r.label),
      note: (c) =>
        caseSplits(c, split)
          .map((f) => `${onlyOn(f)}: ${f.signature}`)
          .join('\n') || undefined,
    }),
  );
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="qcrash kernel matrix: ${xmlEsc(m.kernels.map((k) => k.label).join(', '))}" tests="${cases.length}" failures="${count((c) => c.status === 'fail')}" errors="${errors}" time="${time.toFixed(3)}">`,
    ...suites,
    '</testsuites>',
    '',
  ].join('\n');
}

/** KCIDB: every kernel's checkout, build and tests in one document; a test's misc names its kernel and the findings only some kernels showed. */
function matrixKcidb(m: Matrix, runs: readonly MatrixRun[]): KcidbDocument {
  const split = splitFindings(m);
  const docs = runs.map((r) => ({ r, doc: kcidbDocument(r.summary) }));
  const unique = <T extends { id: string }>(xs: T[]) => [...new Map(xs.map((x) => [x.id, x])).values()];
  const tests = docs.flatMap(({ r, doc }) =>
    doc.tests.map((t) => {
      const c = r.summary.cases.find((x) => x.id === t.misc?.['case_id']);
      const only = c ? caseSplits(c, split) : [];
      const matrix = only.map((f) => ({ signature: f.signature, seen_on: f.seenOn, not_on: f.notOn }));
      return { ...t, misc: { ...t.misc, kernel: r.label, ...(matrix.length ? { matrix } : {}) } };
    }),
  );
  return {
    version: docs[0]?.doc.version ?? { major: 5, minor: 3 },
    checkouts: unique(docs.flatMap((d) => d.doc.checkouts)),
    builds: unique(docs.flatMap((d) => d.doc.builds)),
    tests,
  };
}

function cellBadge(m: Matrix, scenario: string, label: string, href: string): string {
  const c = m.cells[scenario]?.[label];
  if (!c?.total) return '<span class="muted">—</span>';
  const attrs = `data-kernel="${esc(label)}"`;
  if (c.fail) return verdictBadge('fail', { href, text: `FAIL ${c.fail}/${c.total}`, attrs });
  if (c.notJudged) return verdictBadge('not-reached', { href, text: `${c.pass}/${c.total}, ${c.notJudged} not judged`, attrs });
  return verdictBadge('pass', { href, text: `pass ${c.pass}/${c.total}`, attrs });
}

function findingsList(m: Matrix): string {
  const split = m.findings.filter((f) => f.notOn.length);
  const shared = m.findings.filter((f) => !f.notOn.length);
  const li = (f: Matrix['findings'][number], only: boolean) =>
    `<li data-seen-on="${esc(f.seenOn.join(' '))}" data-not-on="${esc(f.notOn.join(' '))}">${only ? `<strong>${esc(onlyOn(f))}</strong>: ` : ''}<span class="mono">${esc(f.signature)}</span></li>`;
  return `<section id="matrix-findings"><h2>Findings by kernel</h2>
<h3>Seen on some kernels and not others: ${split.length}</h3>${split.length ? `<ul id="findings-split">${split.map((f) => li(f, true)).join('')}</ul>` : '<p class="muted">none</p>'}
<h3>Seen on every kernel: ${shared.length}</h3>${shared.length ? `<ul id="findings-shared">${shared.map((f) => li(f, false)).join('')}</ul>` : '<p class="muted">none</p>'}
</section>`;
}

/** matrix.html: the kernels, the kernel x scenario table (each cell links to that kernel's run report), the findings by kernel. */
function matrixHtmlBody(m: Matrix, dir: string): string {
  const link = (label: string) => {
    const k = m.kernels.find((x) => x.label === label)!;
    return relHref(join(relative(dir, k.dir) || '.', 'report.html'));
  };
  const kernels = m.kernels
    .map(
      (k) =>
        `<li><a href="${esc(link(k.label))}">${esc(k.label)}</a>: ${esc(k.release)} <span class="mono">(${esc(k.id)})</span>${k.line ? `, line ${esc(k.line)}` : ''}, run ${esc(k.runId)}</li>`,
    )
    .join('');
  const head = `<tr><th scope="col">scenario</th>${m.kernels.map((k) => `<th scope="col">${esc(k.label)}</th>`).join('')}</tr>`;
  const rows = m.scenarios
    .map(
      (s) =>
        `<tr data-scenario="${esc(s)}"><th scope="row">${esc(s)}</th>${m.kernels.map((k) => `<td>${cellBadge(m, s, k.label, link(k.label))}</td>`).join('')}</tr>`,
    )
    .join('\n');
  return `<header><h1>qcrash kernel matrix</h1><ul id="matrix-kernels">${kernels}</ul></header>
<section id="kernel-matrix-section"><h2>Kernel × scenario</h2>
<div class="scroll"><table id="kernel-matrix"><thead>${head}</thead><tbody>
${rows}
</tbody></table></div></section>
${findingsList(m)}`;
}

const reports: readonly MatrixReport[] = [
  { file: 'matrix.txt', render: (m) => matrixText(m) },
  { file: 'matrix.json', render: (m) => JSON.stringify(m, null, 2) + '\n' },
  {
    file: 'matrix.html',
    render: (m, _runs, dir) =>
      renderPage({ title: `qcrash kernel matrix: ${m.kernels.map((k) => k.label).join(', ')}`, body: matrixHtmlBody(m, dir) }),
  },
  { file: 'matrix-junit.xml', render: matrixJunit },
  { file: 'matrix-kcidb.json', render: (m, runs) => JSON.stringify(matrixKcidb(m, runs), null, 2) + '\n' },
];

/** Every matrix report into `dir` (matrix.txt, .json, .html, -junit.xml, -kcidb.json). */
export async function writeMatrixReports(dir: string, m: Matrix, runs: readonly MatrixRun[]): Promise<void> {
  for (const r of reports) await writeFileAtomic(join(dir, r.file), await r.render(m, runs, dir));
}
