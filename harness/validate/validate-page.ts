import { readdir, stat } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import type { ValidateResult, SignatureVerdict } from './model.ts';
import type { RunSummary } from '../results/run.ts';
import { findingSignature } from '../results/signature.ts';
import { loadSummary } from '../results/store.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import { esc, relHref, renderPage } from '../report/html/page.ts';
import { caseAnchor, countsTable, kernelFacts, verdictBadge, writeRunReport } from '../report/html/run-report.ts';
import { verdictOrder } from '../report/html/verdict.ts';

/**
 * validate.html: the baseline and the patched kernel side by side, what the
 * patch changed by finding signature (introduced, flaky, removed,
 * unchanged) with each confirmation rerun, the patch subjects, and the
 * Tested-by line only when nothing regressed. The Tested-by and result
 * lines are taken from the text report (validate.txt) so the page and the
 * mail never disagree.
 */

export interface ConfirmationRun {
  name: string;
  dir: string;
  summary: RunSummary;
  /** Failing signatures of the rerun (and "status" pseudo-signatures are not judged). */
  signatures: Set<string>;
}

/** The confirm-N run folders validate leaves in its output folder, in rerun order. */
export async function loadConfirmationRuns(dir: string): Promise<ConfirmationRun[]> {
  const names = (await readdir(dir).catch(() => [] as string[]))
    .filter((n) => /^confirm-\d+$/.test(n))
    .sort((a, b) => Number(a.slice(8)) - Number(b.slice(8)));
  return loadRuns(names.map((name) => join(dir, name)));
}

/** Run folders with their failing signatures, in the order given; a folder without a summary is left out. */
export async function loadRuns(dirs: string[]): Promise<ConfirmationRun[]> {
  const out: ConfirmationRun[] = [];
  for (const dir of dirs) {
    const summary = await loadSummary(dir).catch(() => undefined);
    if (!summary) continue;
    out.push({
      name: basename(dir),
      dir,
      summary,
      signatures: new Set(summary.cases.flatMap((c) => (c.failing ?? []).map((f) => findingSignature(c, f)))),
    });
  }
  return out;
}

function patchSubjects(r: ValidateResult): string[] {
  const p = r.patched.kernel.provenance as { patches?: Array<{ subject?: string; file?: string }> } | undefined;
  return (p?.patches ?? []).map((x) => x.subject ?? x.file ?? '?');
}

export async function reportLink(fromDir: string, runDir: string): Promise<string> {
  const file = join(runDir, 'report.html');
  // A run made without the HTML reporter gets its report now, so every link here opens.
  if (!(await stat(file).catch(() => undefined))) await writeRunReport(runDir);
  return relHref(relative(fromDir, file));
}

function sideSection(title: string, side: ValidateResult['baseline'], link: string, id: string): string {
  const facts = kernelFacts({
    id: side.kernel.id,
    release: side.kernel.release,
    kind: side.kernel.kind,
    ...(side.kernel.provenance ? { provenance: side.kernel.provenance } : {}),
  });
  return `<section id="${id}"><h2>${esc(title)}</h2><dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}<dt>run</dt><dd><a class="run-report" href="${esc(link)}">${esc(side.summary.runId)}</a></dd></dl>${countsTable(side.summary.counts, `${id}-counts`)}</section>`;
}

export function verdictTable(
  vs: SignatureVerdict[],
  confirms: ConfirmationRun[],
  links: string[],
  id: string,
  caseHref: (caseId: string) => string,
): string {
  if (!vs.length) return `<p id="${esc(id)}" class="muted">None.</p>`;
  return `<div class="scroll"><table id="${esc(id)}"><thead><tr><th>signature</th><th>cases</th><th class="num">confirmed</th>${confirms.map((c, i) => `<th><a href="${esc(links[i])}">${esc(c.name)}</a></th>`).join('')}</tr></thead><tbody>${vs
    .map(
      (v) =>
        `<tr data-signature="${esc(v.signature)}"><td class="mono">${esc(v.signature)}</td><td>${v.caseIds.map((c) => `<a href="${esc(caseHref(c))}">${esc(c)}</a>`).join('<br>')}</td><td class="num">${v.confirmed} / ${v.reruns}</td>${confirms
          .map(
            (c) =>
              `<td>${c.signatures.has(v.signature) ? verdictBadge('fail', { text: 'seen again' }) : verdictBadge('pass', { text: 'not seen' })}</td>`,
          )
          .join('')}</tr>`,
    )
    .join('')}</tbody></table></div>`;
}

export function sigList(sigs: string[], id: string): string {
  return sigs.length
    ? `<ul id="${esc(id)}">${sigs.map((s) => `<li class="mono">${esc(s)}</li>`).join('')}</ul>`
    : `<p id="${esc(id)}" class="muted">None.</p>`;
}

/** validate.html's content; `text` is validateReport(result), the mail-ready text. */
export async function validateHtml(r: ValidateResult, text: string): Promise<string> {
  const baseLink = await reportLink(r.dir, r.baseline.dir);
  const patchedLink = await reportLink(r.dir, r.patched.dir);
  const confirms = await loadConfirmationRuns(r.dir);
  const confirmLinks = await Promise.all(confirms.map((c) => reportLink(r.dir, c.dir)));
  const caseHref = (id: string) => `${patchedLink}#${caseAnchor(id)}`;
  const regressed = r.introduced.length > 0;
  const testedBy = text.split('\n').filter((l) => l.startsWith('Tested-by:'));
  const resultLine = text.split('\n').find((l) => l.startsWith('Result:')) ?? '';
  const subjects = patchSubjects(r);

  const base = new Map(r.baseline.summary.cases.map((c) => [c.id, c.status]));
  const ids = [...new Set([...r.baseline.summary.cases.map((c) => c.id), ...r.patched.summary.cases.map((c) => c.id)])];
  const patched = new Map(r.patched.summary.cases.map((c) => [c.id, c.status]));
  const rank = (s?: string) => (s ? verdictOrder.indexOf(s as (typeof verdictOrder)[number]) : 9);
  ids.sort(
    (a, b) =>
      Number(base.get(b) !== patched.get(b)) - Number(base.get(a) !== patched.get(a)) ||
      rank(patched.get(a)) - rank(patched.get(b)) ||
      a.localeCompare(b),
  );
  const casesTable = `<div class="scroll"><table id="validate-cases"><thead><tr><th>case</th><th>baseline</th><th>patched</th></tr></thead><tbody>${ids
    .map((id) => {
      const b = base.get(id);
      const p = patched.get(id);
      return `<tr data-case="${esc(id)}" data-changed="${b !== p}"><td class="mono">${esc(id)}</td><td>${b ? verdictBadge(b, { href: `${baseLink}#${caseAnchor(id)}` }) : '<span class="muted">not run</span>'}</td><td>${p ? verdictBadge(p, { href: `${patchedLink}#${caseAnchor(id)}` }) : '<span class="muted">not run</span>'}</td></tr>`;
    })
    .join('')}</tbody></table></div>`;

  const body = `<header class="page"><h1>qcrash validate</h1>
<p>${verdictBadge(regressed ? 'fail' : r.problems?.length ? 'error' : 'pass', { text: regressed ? `REGRESSION: ${r.introduced.length} finding signature(s) introduced by the patch` : r.problems?.length ? `INCOMPLETE: ${r.problems.join('; ')}` : 'no regression', cls: 'banner', attrs: 'id="validate-verdict"' })}</p>
<nav class="toc" aria-label="sections"><a href="#patches">Patches</a><a href="#kernels">Kernels</a><a href="#verdicts">What changed</a><a href="#cases">Cases</a><a href="#text">Text report</a></nav></header>
<section id="patches"><h2>Patches</h2>${subjects.length ? `<ol id="patch-subjects">${subjects.map((s) => `<li>${esc(s)}</li>`).join('')}</ol>` : '<p class="muted">The patched kernel records no patches.</p>'}
<p>Same cases and seed (<code>${esc(r.patched.summary.seed)}</code>) on both kernels; scenarios: ${r.patched.summary.scenarios.map((s) => `<code>${esc(s.name)}</code>`).join(', ')}. QEMU ${esc(r.patched.summary.versions.qemu)} (${esc(r.patched.summary.accel)}), e2fsprogs ${esc(r.patched.summary.versions.e2fsprogs)}.</p></section>
<div id="kernels" class="side-by-side">${sideSection('Baseline', r.baseline, baseLink, 'baseline')}${sideSection('Patched', r.patched, patchedLink, 'patched')}</div>
<section id="verdicts"><h2>What changed, by finding signature</h2>
<p class="muted">A signature new on the patched kernel is rerun on it: seen on every rerun it is introduced, on some of them flaky.</p>
<h3>${verdictBadge('fail', { text: `Introduced (${r.introduced.length})` })}</h3>${verdictTable(r.introduced, confirms, confirmLinks, 'introduced', caseHref)}
<h3>${verdictBadge('error', { text: `Flaky (${r.flaky.length})` })}</h3>${verdictTable(r.flaky, confirms, confirmLinks, 'flaky', caseHref)}
<h3>${verdictBadge('pass', { text: `Removed by the patch (${r.removed.length})` })}</h3>${sigList(r.removed, 'removed')}
<h3>Unchanged (${r.unchanged.length})</h3>${sigList(r.unchanged, 'unchanged')}
<h3>Result</h3><p id="validate-result">${esc(resultLine)}</p>
${!regressed && !r.problems?.length && testedBy.length ? `<p class="tested-by mono" id="tested-by">${testedBy.map(esc).join('<br>')}</p>` : ''}
</section>
<section id="cases"><h2>Cases, baseline and patched</h2><p class="muted">Cases whose verdict differs come first.</p>${casesTable}</section>
<section id="text"><h2>Text report</h2><details><summary>validate.txt</summary><pre>${esc(text)}</pre></details></section>`;
  return renderPage({ title: `qcrash validate: ${subjects[0] ?? r.patched.kernel.id}`, body, data: {}, scripts: [] });
}

/** Write `<result dir>/validate.html` atomically (and the runs' report.html where missing). */
export async function writeValidateReport(r: ValidateResult, text: string): Promise<string> {
  const file = join(r.dir, 'validate.html');
  await writeFileAtomic(file, await validateHtml(r, text));
  return file;
}
