import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { HistoryIndex, HistoryRun } from '../../results/history.ts';
import { updateHistory } from '../../results/history.ts';
import { runChanges, scenarioTimelines, signatureRates } from '../../results/history-stats.ts';
import { writeFileAtomic } from '../../util/atomic.ts';
import { esc, relHref, renderPage } from './page.ts';
import { verdictBadge } from './run-report.ts';
import { verdictStyle } from './verdict.ts';

/**
 * history.html: a results folder's runs side by side. Pass/fail per scenario
 * per run, the failing signatures that appeared or went away from one run to
 * the next, and each signature's rate across the runs that could show it
 * (flaky ones first).
 */

const runLabel = (i: number) => `#${i + 1}`;

async function runLink(resultsDir: string, r: HistoryRun): Promise<string> {
  for (const f of ['report.html', 'summary.json']) {
    const rel = join(r.dir, f);
    if ((await stat(join(resultsDir, rel)).catch(() => undefined))?.isFile()) return relHref(rel);
  }
  return relHref(r.dir);
}

/** The runs a page shows (the last `maxRuns`), their links and their labels in the whole history. */
interface HistoryView {
  index: HistoryIndex;
  view: HistoryIndex;
  shownFrom: number;
  links: string[];
  label: (i: number) => string;
}

async function historyView(index: HistoryIndex, resultsDir: string, maxRuns: number): Promise<HistoryView> {
  const shownFrom = Math.max(0, index.runs.length - maxRuns);
  const view: HistoryIndex = { ...index, runs: index.runs.slice(shownFrom) };
  const links = await Promise.all(view.runs.map((r) => runLink(resultsDir, r)));
  return { index, view, shownFrom, links, label: (i) => runLabel(shownFrom + i) };
}

/** One row per run: its identity, counts and verdict (an interrupted run says how to finish it). */
function runsTable({ view, links, label }: HistoryView): string {
  return `<div class="scroll"><table id="history-runs"><thead><tr><th>run</th><th>id</th><th>started</th><th>kernel</th><th>branch / revision</th><th class="num">cases</th><th class="num">passed</th><th class="num">failed</th><th class="num">errors</th><th class="num">not reached</th><th class="num">not run</th><th>verdict</th></tr></thead><tbody>${view.runs
    .map((r, i) => {
      const bad = r.counts.fail + r.counts.error + r.counts.notReached + r.counts.notRun;
      const verdict = r.interrupted
        ? verdictBadge('not-run', { text: `interrupted: ${r.interrupted.done} of ${r.interrupted.planned} cases` }) +
          `<br><code>${esc(r.interrupted.resume)}</code>`
        : verdictBadge(bad ? 'fail' : 'pass');
      return `<tr data-run="${esc(r.runId)}"><td>${label(i)}</td><td><a class="mono" href="${esc(links[i])}">${esc(r.runId)}</a></td><td>${esc(r.startedAt)}</td><td>${esc(r.kernel.release)}<br><span class="muted">${esc(r.kernel.id)}</span></td><td>${esc([r.branch, r.revision].filter(Boolean).join(' @ '))}</td><td class="num">${r.counts.total}</td><td class="num">${r.counts.pass}</td><td class="num">${r.counts.fail}</td><td class="num">${r.counts.error}</td><td class="num">${r.counts.notReached}</td><td class="num">${r.counts.notRun}</td><td>${verdict}</td></tr>`;
    })
    .join('')}</tbody></table></div>`;
}

type Timelines = ReturnType<typeof scenarioTimelines>;

/** Scenarios down, runs across: each cell the scenario's verdict in that run. */
function scenarioTable({ view, links, label }: HistoryView, timelines: Timelines): string {
  const runTitle = (r: HistoryRun) => `${r.runId}, ${r.startedAt}, kernel ${r.kernel.release}`;
  return `<div class="scroll"><table id="history-scenarios"><thead><tr><th>scenario</th>${view.runs.map((r, i) => `<th title="${esc(runTitle(r))}"><a href="${esc(links[i])}">${label(i)}</a></th>`).join('')}</tr></thead><tbody>${timelines
    .map(
      (t) =>
        `<tr data-scenario="${esc(t.scenario)}"><th scope="row">${esc(t.scenario)}</th>${t.cells.map((c) => `<td>${c ? verdictBadge(c.verdict, { text: `${c.pass}/${c.total}`, attrs: `data-verdict="${esc(c.verdict)}" data-run="${esc(c.runId)}"` }) : '<span class="muted" title="not run">·</span>'}</td>`).join('')}</tr>`,
    )
    .join('')}</tbody></table></div>`;
}

/** The scenario table's cells as the chart's data: one per scenario and run that ran it. */
function chartCells({ label }: HistoryView, timelines: Timelines) {
  return timelines.flatMap((t) =>
    t.cells.flatMap((c, i) =>
      c
        ? [
            {
              run: label(i),
              runId: c.runId,
              scenario: t.scenario,
              verdict: c.verdict,
              text: `${verdictStyle(c.verdict).symbol} ${c.pass}/${c.total}`,
            },
          ]
        : [],
    ),
  );
}

const sigList = (sigs: string[], cls: string) =>
  sigs.length
    ? `<ul class="${cls}">${sigs.map((s) => `<li class="mono">${esc(s)}</li>`).join('')}</ul>`
    : '<p class="muted">none</p>';

type RunChange = ReturnType<typeof runChanges>[number];

/** One pair of consecutive runs: signatures that appeared or went away, and cases whose verdict changed. */
function changeSection(c: RunChange, labels: ReadonlyMap<string, string>): string {
  const statusChanges = c.statusChanges.length
    ? `<h4>cases whose verdict changed (${c.statusChanges.length})</h4><ul class="status-changes">${c.statusChanges.map((s) => `<li><span class="mono">${esc(s.id)}</span>: ${verdictBadge(s.from)} → ${verdictBadge(s.to)}</li>`).join('')}</ul>`
    : '';
  return `<section class="run-change" data-from="${esc(c.from)}" data-to="${esc(c.to)}"><h3>${labels.get(c.from)} → ${labels.get(c.to)} <span class="muted mono">${esc(c.from)} → ${esc(c.to)}</span></h3>
<h4>${verdictBadge('fail', { text: `appeared (${c.appeared.length})` })}</h4>${sigList(c.appeared, 'appeared')}
<h4>${verdictBadge('pass', { text: `went away (${c.gone.length})` })}</h4>${sigList(c.gone, 'gone')}
${statusChanges}</section>`;
}

/** What changed from each run to the next, newest first. */
function changesHtml({ view, label }: HistoryView): string {
  const changes = runChanges(view).reverse();
  if (!changes.length) return '<p class="muted">One run so far: nothing to compare.</p>';
  const labels = new Map(view.runs.map((r, i) => [r.runId, label(i)]));
  return changes.map((c) => changeSection(c, labels)).join('\n');
}

/** Each failing signature's rate over the runs that ran its case, with its per-run pattern. */
function ratesTable({ view, label }: HistoryView): string {
  const rates = signatureRates(view);
  if (!rates.length) return '<p class="muted">No failing findings in these runs.</p>';
  const patternCell = (p: boolean | undefined, i: number) =>
    p === true
      ? `<span title="${label(i)}: seen" class="v-fail"><span class="sym" style="color:var(--v)">✗</span></span>`
      : p === false
        ? `<span title="${label(i)}: ran, not seen" class="v-pass"><span class="sym" style="color:var(--v)">✓</span></span>`
        : `<span title="${label(i)}: case not run" class="muted">·</span>`;
  return `<div class="scroll"><table id="history-signatures"><thead><tr><th>signature</th><th>trend</th><th class="num">seen / ran</th><th class="num">rate</th><th>per run (✗ seen, ✓ ran and not seen, · not run)</th></tr></thead><tbody>${rates
    .map(
      (r) =>
        `<tr data-signature="${esc(r.signature)}" data-trend="${esc(r.trend)}"><td class="mono">${esc(r.signature)}</td><td>${r.trend === 'flaky' ? '<strong>flaky</strong>' : esc(r.trend)}</td><td class="num">${r.seen} / ${r.ran}</td><td class="num">${Math.round(r.rate * 100)}%</td><td class="mono">${r.pattern.map(patternCell).join(' ')}</td></tr>`,
    )
    .join('')}</tbody></table></div>`;
}

/** The page's title, what it covers and its table of contents. */
function pageHeader({ index, view, shownFrom }: HistoryView, resultsDir: string): string {
  const first = view.runs[0];
  const last = view.runs.at(-1);
  return `<header class="page"><h1>qcrash history</h1>
<p>${index.runs.length} run(s) in <code>${esc(resultsDir)}</code>${first && last ? `, from ${esc(first.startedAt)} to ${esc(last.startedAt)}` : ''}${shownFrom ? `; the last ${view.runs.length} shown` : ''}. Index: <code>history.json</code> beside this file.</p>
<nav class="toc" aria-label="sections"><a href="#runs">Runs</a><a href="#scenarios">Scenarios over runs</a><a href="#changes">Changes</a><a href="#signatures">Signatures across runs</a></nav></header>`;
}

async function historyHtml(index: HistoryIndex, resultsDir: string, opts: { maxRuns?: number } = {}): Promise<string> {
  const h = await historyView(index, resultsDir, opts.maxRuns ?? 30);
  const timelines = scenarioTimelines(h.view);
  const cells = chartCells(h, timelines);
  const body = `${pageHeader(h, resultsDir)}
<section id="runs"><h2>Runs</h2>${runsTable(h)}</section>
<section id="scenarios"><h2>Scenarios over runs</h2><p class="muted">Each cell: the scenario's verdict in that run (its worst case) and passed/total cases.</p>
<figure class="chart" id="chart-history" data-points="${cells.length}"><figcaption>The same as a chart: one cell per scenario and run.</figcaption><div class="plot-host"></div></figure>
${scenarioTable(h, timelines)}</section>
<section id="changes"><h2>Changes between consecutive runs</h2><p class="muted">Failing finding signatures (scenario | crash point | recovery | class | code) new or gone from one run to the next, among cases both runs ran; newest first.</p>${changesHtml(h)}</section>
<section id="signatures"><h2>Signatures across runs</h2><p class="muted">How often each failing signature showed among the runs that ran its case: flaky ones first.</p>${ratesTable(h)}</section>`;
  return renderPage({
    title: 'qcrash history',
    body,
    data: { cells, runs: h.view.runs.map((r, i) => ({ run: h.label(i), runId: r.runId })) },
    scripts: ['common', 'history'],
    charts: true,
  });
}

/** Update `<resultsDir>/history.json` from the run folders and write `history.html` beside it. */
export async function writeHistoryReport(
  resultsDir: string,
  opts: { maxRuns?: number } = {},
): Promise<{
  html: string;
  index: string;
  added: string[];
  runs: number;
  interrupted: Array<NonNullable<HistoryRun['interrupted']> & { runId: string }>;
}> {
  const { index, file, added } = await updateHistory(resultsDir);
  const html = join(resultsDir, 'history.html');
  await writeFileAtomic(html, await historyHtml(index, resultsDir, opts));
  const interrupted = index.runs.flatMap((r) => (r.interrupted ? [{ runId: r.runId, ...r.interrupted }] : []));
  return { html, index: file, added, runs: index.runs.length, interrupted };
}
