import { join } from 'node:path';
import type { SeriesResult, SeriesStep } from './model.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import { esc, renderPage } from '../report/html/page.ts';
import { caseAnchor, countsTable, verdictBadge } from '../report/html/run-report.ts';
import { loadRuns, reportLink, sigList, verdictTable } from './validate-page.ts';

/**
 * validate.html for `validate --series`: the patches in order with what
 * each introduced, removed or left and whether it gets a Tested-by; every
 * failing signature along the series (baseline, then each patch) with the
 * patch that first introduced it and the one that hid it; then each patch's
 * verdicts with their confirmation reruns. The result and Tested-by lines are
 * the text report's (validate.txt), so page and mail never disagree.
 */

function stepVerdict(s: SeriesStep): string {
  return s.introduced.length
    ? verdictBadge('fail', { text: `introduced ${s.introduced.length}` })
    : verdictBadge('pass', { text: 'Tested-by' });
}

/** validate.html's content for a series; `text` is seriesReport(result). */
export async function seriesHtml(r: SeriesResult, text: string): Promise<string> {
  const total = r.steps.length;
  const baseLink = await reportLink(r.dir, r.baseline.dir);
  const stepLinks = await Promise.all(r.steps.map((s) => reportLink(r.dir, s.dir)));
  const lines = text.split('\n');
  const resultLine = lines.find((l) => l.startsWith('Result:')) ?? '';
  const hiddenLine = lines.find((l) => / hidden by a later patch: /.test(l));
  const hiddenCount = r.findings.filter((f) => f.hidden && f.hidden.absentIn === f.hidden.reruns).length;
  // Each Tested-by line follows the line naming its patch.
  const testedBy = lines.flatMap((l, i) => (l.startsWith('Tested-by:') ? [{ patch: lines[i - 1] ?? '', line: l }] : []));
  const bad = r.steps.filter((s) => s.introduced.length);

  const patchRows = r.steps
    .map(
      (s, i) =>
        `<tr data-patch="${s.patch.index}" data-introduced="${s.introduced.length}"><td class="num">${s.patch.index}/${total}</td><td>${esc(s.patch.subject)}<br><span class="muted mono">${esc(s.kernel.id)}</span></td><td><a href="${esc(stepLinks[i])}">${esc(s.summary.runId)}</a></td><td class="num">${s.summary.counts.pass} / ${s.summary.counts.fail} / ${s.summary.counts.error + s.summary.counts.notReached}</td><td class="num">${s.introduced.length}</td><td class="num">${s.flaky.length}</td><td class="num">${s.removed.length}</td><td class="num">${s.unchanged.length}</td><td>${stepVerdict(s)}</td></tr>`,
    )
    .join('');
  const patches = `<section id="patches"><h2>Patches, each built on the ones before it</h2>
<p>Baseline ${esc(r.baseline.kernel.release)} (<span class="mono">${esc(r.baseline.kernel.id)}</span>): <a href="${esc(baseLink)}">${esc(r.baseline.summary.runId)}</a>. Each patch's kernel is judged against the kernel before it, with the same cases and seed (<code>${esc(r.baseline.summary.seed)}</code>).</p>
${countsTable(r.baseline.summary.counts, 'baseline-counts')}
<div class="scroll"><table id="series-patches"><thead><tr><th class="num">#</th><th>patch</th><th>run</th><th class="num">pass / fail / not run</th><th class="num">introduced</th><th class="num">flaky</th><th class="num">removed</th><th class="num">left</th><th>verdict</th></tr></thead><tbody>${patchRows}</tbody></table></div>
${r.skipped.length ? `<p id="skipped" class="muted">Skipped (no diff): ${r.skipped.map((s) => `${esc(s.subject)} (${esc(s.why)})`).join('; ')}</p>` : ''}</section>`;

  const head = `<th>signature</th><th>baseline</th>${r.steps.map((s) => `<th class="num" title="${esc(s.patch.subject)}">${s.patch.index}</th>`).join('')}<th>first introduced by</th><th>hidden by</th>`;
  const findingRows = r.findings
    .map((f) => {
      const h = f.hidden;
      const hid = h
        ? h.absentIn === h.reruns
          ? verdictBadge('fail', { text: `patch ${h.by} (absent from ${h.absentIn}/${h.reruns} reruns)` })
          : verdictBadge('error', { text: `not hidden: seen on ${h.reruns - h.absentIn}/${h.reruns} reruns of patch ${h.by}` })
        : '';
      return `<tr data-signature="${esc(f.signature)}" data-introduced-by="${f.introducedBy ?? ''}" data-hidden-by="${h && h.absentIn === h.reruns ? h.by : ''}"><td class="mono">${esc(f.signature)}</td>${f.seen
        .map(
          (x, i) =>
            `<td data-seen="${x}">${x ? verdictBadge('fail', { text: 'seen', href: `${i === 0 ? baseLink : stepLinks[i - 1]}` }) : '<span class="muted">-</span>'}</td>`,
        )
        .join(
          '',
        )}<td>${f.introducedBy ? esc(`patch ${f.introducedBy}/${total}`) : '<span class="muted">none confirmed</span>'}</td><td>${hid}</td></tr>`;
    })
    .join('');
  const findings = `<section id="findings"><h2>Findings along the series</h2><p class="muted">Each failing signature on the baseline and after each patch; a signature new after a patch and seen again on every rerun is introduced by it. One that a later patch makes go away is rechecked on that patch's kernel: hidden when no rerun shows it.</p>${
    r.findings.length
      ? `<div class="scroll"><table id="series-findings"><thead><tr>${head}</tr></thead><tbody>${findingRows}</tbody></table></div>`
      : '<p id="series-findings" class="muted">No failing finding on any kernel.</p>'
  }</section>`;

  const stepSections: string[] = [];
  for (const [i, s] of r.steps.entries()) {
    const confirms = await loadRuns(s.confirmDirs);
    const confirmLinks = await Promise.all(confirms.map((c) => reportLink(r.dir, c.dir)));
    const caseHref = (id: string) => `${stepLinks[i]}#${caseAnchor(id)}`;
    const id = `patch-${s.patch.index}`;
    stepSections.push(`<section id="${id}"><h3>Patch ${s.patch.index}/${total}: ${esc(s.patch.subject)} ${stepVerdict(s)}</h3>
<h4>Introduced (${s.introduced.length})</h4>${verdictTable(s.introduced, confirms, confirmLinks, `${id}-introduced`, caseHref)}
<h4>Flaky (${s.flaky.length})</h4>${verdictTable(s.flaky, confirms, confirmLinks, `${id}-flaky`, caseHref)}
<h4>Removed by this patch (${s.removed.length})</h4>${sigList(s.removed, `${id}-removed`)}
<h4>Left as they were (${s.unchanged.length})</h4>${sigList(s.unchanged, `${id}-left`)}
${s.notJudged.length ? `<h4>Not judged (${s.notJudged.length})</h4>${sigList(s.notJudged, `${id}-not-judged`)}` : ''}</section>`);
  }

  const body = `<header class="page"><h1>qcrash validate --series</h1>
<p>${verdictBadge(bad.length ? 'fail' : 'pass', { text: bad.length ? `REGRESSION: introduced by ${bad.map((s) => `patch ${s.patch.index}/${total}`).join(', ')}${hiddenCount ? `, ${hiddenCount} finding(s) hidden by a later patch` : ''}` : 'no regression', cls: 'banner', attrs: 'id="validate-verdict"' })}</p>
<nav class="toc" aria-label="sections"><a href="#patches">Patches</a><a href="#findings">Findings</a><a href="#steps">Each patch</a><a href="#result">Result</a><a href="#text">Text report</a></nav></header>
${patches}
${findings}
<section id="steps"><h2>Each patch against the one before it</h2>${stepSections.join('\n')}</section>
<section id="result"><h2>Result</h2><p id="validate-result">${esc(resultLine)}</p>${hiddenLine ? `<p id="validate-hidden">${esc(hiddenLine)}</p>` : ''}
${testedBy.length ? `<div id="tested-by">${testedBy.map((t) => `<p class="tested-by mono"><span class="muted">${esc(t.patch)}</span><br>${esc(t.line)}</p>`).join('')}</div>` : '<p class="muted">No Tested-by: every patch introduced a finding.</p>'}</section>
<section id="text"><h2>Text report</h2><details><summary>validate.txt</summary><pre>${esc(text)}</pre></details></section>`;
  return renderPage({
    title: `qcrash validate --series: ${r.steps[0]?.patch.subject ?? ''}${total > 1 ? ` (+${total - 1})` : ''}`,
    body,
    data: {},
    scripts: [],
  });
}

/** Write `<result dir>/validate.html` atomically (and the runs' report.html where missing). */
export async function writeSeriesPage(r: SeriesResult, text: string): Promise<string> {
  const file = join(r.dir, 'validate.html');
  await writeFileAtomic(file, await seriesHtml(r, text));
  return file;
}
