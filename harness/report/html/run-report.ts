import { dirname, join } from 'node:path';
import type { CaseResult } from '../../results/case.ts';
import type { LogStateFired, WriteNote } from '../../crash/crash-state.ts';
import type { RunSummary } from '../../results/run.ts';
import type { Finding } from '../../findings/finding.ts';
import { loadSummary } from '../../results/store.ts';
import { progressLine } from '../../results/plan.ts';
import { fileReports, type FileRow } from '../../results/file-report.ts';
import { keptImageName, runImagesDir } from '../../results/crash-images.ts';
import { writeFileAtomic } from '../../util/atomic.ts';
import type { Reporter } from '../reporter.ts';
import { esc, relHref, renderPage } from './page.ts';
import { verdictOrder, verdictStyle } from './verdict.ts';
import { logPhaseSummary } from '../../results/log-phases.ts';
import {
  artefactKindLabels,
  buildMatrix,
  crashPointRows,
  e2fsckMeaning,
  groupFindings,
  isFailingFinding,
  listArtefacts,
  logStateRows,
  phaseRows,
  readFired,
  reproduceCommand,
  type Artefact,
  type FindingGroup,
  type Matrix,
} from './run-model.ts';

/** The anchor of a case's section; case ids have no spaces, but a point label could. */
export function caseAnchor(caseId: string): string {
  return `case-${caseId.replace(/\s/g, '_')}`;
}

export function verdictBadge(status: string, opts: { href?: string; text?: string; attrs?: string; cls?: string } = {}): string {
  const v = verdictStyle(status);
  const cls = `${opts.cls ? `${opts.cls} ` : ''}verdict v-${esc(status)}`;
  const inner = `<span class="sym" aria-hidden="true">${v.symbol}</span> ${esc(opts.text ?? v.label)}`;
  const title = `title="${esc(v.label)}"`;
  return opts.href
    ? `<a class="${cls}" href="${esc(opts.href)}" ${title} ${opts.attrs ?? ''}>${inner}</a>`
    : `<span class="${cls}" ${title} ${opts.attrs ?? ''}>${inner}</span>`;
}

const fmtMs = (ms: number | undefined) =>
  ms === undefined ? '' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
const fmtBytes = (n: number) =>
  n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;

function wallTime(s: RunSummary): string {
  if (!s.finishedAt) return 'unfinished (summary rebuilt from the case files)';
  const ms = Date.parse(s.finishedAt) - Date.parse(s.startedAt);
  if (!Number.isFinite(ms)) return '';
  const sec = Math.round(ms / 1000);
  return sec >= 60 ? `${Math.floor(sec / 60)} min ${sec % 60} s` : `${sec} s`;
}

/** Release, source, patches, config hash: whatever the kernel's provenance records. */
export function kernelFacts(k: RunSummary['kernel']): Array<[string, string]> {
  const p = k.provenance ?? {};
  const facts: Array<[string, string]> = [
    ['kernel', `${esc(k.release)} <span class="muted">(${esc(k.kind)}, id ${esc(k.id)})</span>`],
  ];
  const source = p.source ?? p.package;
  if (source !== undefined) facts.push(['source', esc(source)]);
  if (p.base !== undefined) facts.push(['base', `<code>${esc(p.base)}</code>`]);
  const patches = Array.isArray(p.patches) ? (p.patches as Array<{ subject?: string; file?: string }>) : [];
  facts.push([
    'patches',
    patches.length ? `<ul>${patches.map((x) => `<li>${esc(x.subject ?? x.file ?? '?')}</li>`).join('')}</ul>` : 'none',
  ]);
  if (p.configHash !== undefined) facts.push(['config hash', `<code>${esc(p.configHash)}</code>`]);
  if (Array.isArray(p.configs) && p.configs.length) facts.push(['config fragments', esc((p.configs as unknown[]).join(', '))]);
  return facts;
}

function factsList(facts: Array<[string, string]>): string {
  return `<dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}</dl>`;
}

export function countsTable(c: RunSummary['counts'], id = 'counts'): string {
  const cols: Array<[string, Exclude<keyof RunSummary['counts'], 'held'>, string]> = [
    ['total', 'total', ''],
    ['passed', 'pass', 'pass'],
    ['failed', 'fail', 'fail'],
    ['errors', 'error', 'error'],
    ['not reached', 'notReached', 'not-reached'],
    ['not run', 'notRun', 'not-run'],
  ];
  return `<div class="scroll"><table id="${esc(id)}"><thead><tr>${cols.map(([l, , v]) => `<th class="num">${v ? `<span class="v-${v}"><span class="sym" style="color:var(--v)" aria-hidden="true">${verdictStyle(v).symbol}</span></span> ` : ''}${esc(l)}</th>`).join('')}</tr></thead><tbody><tr>${cols.map(([, k]) => `<td class="num" data-count="${k}">${c[k] ?? 0}</td>`).join('')}</tr></tbody></table></div>`;
}

/** The run's verdict banner: an interrupted run says so and how to finish it, never PASS. */
function verdictBanner(s: RunSummary): string {
  const c = s.counts;
  const attrs = 'id="run-verdict"';
  if (c.total === 0 && s.shard)
    return verdictBadge('not-reached', {
      text: `EMPTY SHARD: ${s.shard.index}/${s.shard.total} was given no case (the merged run has the verdict)`,
      cls: 'banner',
      attrs,
    });
  const bad = c.fail + c.error + c.notReached + (c.notRun ?? 0);
  if (!bad) return verdictBadge('pass', { text: `PASS: all ${c.total} cases passed`, cls: 'banner', attrs });
  const failed = c.fail + c.error + c.notReached > 0;
  const counts = `${c.fail} failed, ${c.error} errors, ${c.notReached} not reached${c.notRun ? `, ${c.notRun} not run` : ''} of ${c.total}`;
  const interrupted = s.interrupted
    ? `INTERRUPTED: ${progressLine(s.interrupted).replace(/^interrupted: /, '')}`
    : c.notRun
      ? `INCOMPLETE: ${c.notRun} case(s) not run`
      : '';
  return verdictBadge(failed ? 'fail' : 'not-run', {
    text: [failed ? `FAIL: ${counts}` : counts, interrupted].filter(Boolean).join('. '),
    cls: 'banner',
    attrs,
  });
}

function header(s: RunSummary): string {
  const facts: Array<[string, string]> = [
    ...kernelFacts(s.kernel),
    ['QEMU', `${esc(s.versions.qemu)} <span class="muted">(${esc(s.accel)})</span>`],
    ['e2fsprogs', esc(s.versions.e2fsprogs)],
    ['seed', `<code>${esc(s.seed)}</code>`],
    ['host', esc(s.host)],
    ['started', esc(s.startedAt)],
    ['wall time', esc(wallTime(s))],
    ...(s.counts.held
      ? [
          [
            'held',
            `<span id="held-counts">${s.counts.held.ran} interleaving(s) held at a kernel point, ${s.counts.held.markerReached} reached their marker${s.counts.held.limit ? `, ${s.counts.held.limit} ended at their limit` : ''}${s.counts.held.notHit ? `; ${s.counts.held.notHit} case(s) never hit the hold point` : ''}</span>`,
          ] as [string, string],
        ]
      : []),
    ['scenarios', s.scenarios.map((x) => `<code>${esc(x.name)}</code> <span class="muted">${esc(x.file)}</span>`).join('<br>')],
    ...(s.shard
      ? [
          [
            'shard',
            `${s.shard.index}/${s.shard.total} <span class="muted">of a run of ${s.shard.assignment.flat().length} cases (case list <code>${esc(s.shard.caseListHash.slice(0, 12))}</code>); qcrash merge joins the shards</span>`,
          ] as [string, string],
        ]
      : []),
    ...(s.merged
      ? [
          [
            'shards',
            `${s.merged.shards.length} of ${s.merged.total} merged${s.merged.missing.length ? ` <strong>(missing: ${s.merged.missing.map((i) => `${i}/${s.merged!.total}`).join(', ')})</strong>` : ''}<br>${s.merged.shards.map((x) => `${x.index}/${s.merged!.total}: <span class="mono">${esc(x.runId)}</span> on ${esc(x.host)}, ${x.counts.total} case(s)`).join('<br>')}`,
          ] as [string, string],
        ]
      : []),
  ];
  return `<header class="page">
<h1>qcrash run <span class="mono">${esc(s.runId)}</span></h1>
<p>${verdictBanner(s)}</p>
<nav class="toc" aria-label="sections"><a href="#run">Run</a><a href="#matrix-section">Matrix</a><a href="#charts">Charts</a><a href="#findings">Findings</a>${fileReports(s).length ? '<a href="#files">Files</a>' : ''}<a href="#cases">Cases</a></nav>
</header>
<section id="run"><h2>Run</h2>
${factsList(facts)}
${countsTable(s.counts)}
<h3>Reproduce</h3>
<p class="muted">From a qcrash checkout (<code>node bin/qcrash.js</code> for <code>qcrash</code>); add <code>--filter CASE-ID</code> for one case.</p>
<pre id="reproduce"><code>${esc(reproduceCommand(s))}</code></pre>
</section>`;
}

function matrixSection(m: Matrix, scenarios: string[]): string {
  const verdicts = [...verdictOrder];
  const head = `<tr><th scope="col">scenario</th><th scope="col">crash point</th>${m.recoveries.map((r) => `<th scope="col">${r === '-' ? 'no recovery' : `recovery: ${esc(r)}`}</th>`).join('')}</tr>`;
  const body = m.rows
    .map((row) => {
      const all = Object.values(row.cells).flat();
      const cells = m.recoveries
        .map(
          (r) =>
            `<td>${(row.cells[r] ?? []).map((c) => verdictBadge(c.verdict, { href: `#${caseAnchor(c.caseId)}`, text: `${verdictStyle(c.verdict).label} r${c.repetition}`, attrs: `data-verdict="${esc(c.verdict)}" data-case="${esc(c.caseId)}"` })).join(' ') || '<span class="muted">—</span>'}</td>`,
        )
        .join('');
      return `<tr data-scenario="${esc(row.scenario)}" data-verdicts="${esc([...new Set(all.map((c) => c.verdict))].join(' '))}"><th scope="row">${esc(row.scenario)}</th><td class="mono">${esc(row.point)}</td>${cells}</tr>`;
    })
    .join('\n');
  const form = `<form id="matrix-filter" class="filters" hidden aria-controls="matrix">
<fieldset><legend>verdict</legend>${verdicts.map((v) => `<label><input type="checkbox" name="verdict" value="${v}" checked> ${verdictStyle(v).symbol} ${esc(verdictStyle(v).label)}</label>`).join('')}</fieldset>
<label>scenario <select name="scenario"><option value="">all scenarios</option>${scenarios.map((s) => `<option value="${esc(s)}">${esc(s)}</option>`).join('')}</select></label>
<output id="matrix-count" aria-live="polite"></output>
</form>`;
  return `<section id="matrix-section"><h2>Matrix: scenario × crash point × recovery</h2>
<p class="muted">Each cell is one case (r = repetition) and links to it. Under a recovery, a case that failed only through the other recovery's findings shows as passed.</p>
${form}
<div class="scroll"><table id="matrix"><thead>${head}</thead><tbody>
${body}
</tbody></table></div></section>`;
}

function dataTable(headers: string[], rows: string[][], id: string): string {
  return `<details class="data"><summary>the same data as a table (${rows.length} rows)</summary><div class="scroll"><table id="${esc(id)}"><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('')}</tbody></table></div></details>`;
}

/** A chart's figure: its caption, the host the browser script draws into, and its data as a table for readers without scripts. */
function chartFigure(id: string, points: number, caption: string, headers: string[], rows: string[][]): string {
  return `<figure class="chart" id="${id}" data-points="${points}"><figcaption>${caption}</figcaption><div class="plot-host"></div>
${dataTable(headers, rows, `${id}-data`)}</figure>`;
}

const caseLink = (caseId: string) => `<a href="#${esc(caseAnchor(caseId))}">${esc(caseId)}</a>`;

function chartsSection(s: RunSummary): { html: string; data: unknown } {
  const points = crashPointRows(s.cases);
  const phases = phaseRows(s.cases);
  const states = logStateRows(s.cases);
  const timed = points.filter((p) => p.atMs !== undefined);
  const counted = points.filter((p) => p.index !== undefined);
  const figures: string[] = [];
  figures.push(
    chartFigure(
      'chart-crash-points',
      timed.length,
      `Where the kills landed: milliseconds after the start marker of the step named in the crash point (an "after" point at the step's end), one mark per case; shape and colour give the verdict. ${timed.length ? '' : 'No timed crash points in this run.'}`,
      ['case', 'step', 'ms', 'verdict'],
      timed.map((p) => [caseLink(p.caseId), esc(p.step), esc(p.atMs), verdictBadge(p.verdict)]),
    ),
  );
  if (counted.length)
    figures.push(
      chartFigure(
        'chart-crash-index',
        counted.length,
        'Kernel points: the breakpoint hit or jbd2 commit at which each case was killed, inside its step.',
        ['case', 'step', 'index', 'of', 'verdict'],
        counted.map((p) => [caseLink(p.caseId), esc(p.step), esc(p.index), esc(p.indexKind), verdictBadge(p.verdict)]),
      ),
    );
  figures.push(
    chartFigure(
      'chart-phases',
      phases.length,
      "Time per case by phase (waiting for a VM slot, machine, workload, recovery, oracles, keeping the crash image; a case's two recoveries run at once); a run that recorded no phases shows each case's total.",
      ['case', 'phase', 'ms'],
      phases.map((p) => [caseLink(p.caseId), esc(p.phase), esc(p.ms)]),
    ),
  );
  const logPhases = s.logPhases ?? logPhaseSummary(s.cases);
  if (logPhases) {
    const m = logPhases.perStateMs;
    const rows: Array<[string, number]> = [
      ['materialise (replay to the state)', m.materialise],
      ['recovery (e2fsck journal replay)', m.recovery],
      ['content and durability oracle', m.content],
      ['e2fsck -fn', m.fnCheck],
      ['e2fsck -fy', m.repair],
      ['e2fsck -fn after the repair', m.recheck],
      ['waiting for a slot, or for the check of a state with the same image', m.queued],
      ['case (the check in all)', m.case],
    ];
    figures.push(
      `<figure id="log-phases"><figcaption>Write-log states: where a state's time went, milliseconds per state on average over ${logPhases.states} states; ${logPhases.statesPerMinute} states per minute of case time${logPhases.sameImage ? `; ${logPhases.sameImage} states had the recovered image of an earlier state of their unit, whose e2fsck runs were theirs` : ''}.</figcaption><table id="log-phases-data"><thead><tr><th>phase</th><th>ms per state</th></tr></thead><tbody>${rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join('')}</tbody></table></figure>`,
    );
  }
  if (states.length)
    figures.push(
      chartFigure(
        'chart-log-epochs',
        states.length,
        'Write-log crash states per flush epoch: one mark per state (prefix or power-loss), shape and colour give the verdict.',
        ['case', 'epoch', 'state', 'verdict'],
        states.map((p) => [caseLink(p.caseId), esc(p.epoch), esc(p.stateKind), verdictBadge(p.verdict)]),
      ),
    );
  const html = `<section id="charts"><h2>Charts</h2><noscript><p>The charts need JavaScript; each has its data as a table below it.</p></noscript>${figures.join('\n')}</section>`;
  return { html, data: { crashPoints: timed, crashIndex: counted, phases, logStates: states } };
}

/** The most rows the page shows per image: files.txt beside it has every file. */
const maxFileRows = 2000;

/**
 * A run on a user's image: per file, what the ioctl said with no crash, what
 * survived it and what the crashes did (results/file-report.ts). Files with
 * something to say come first.
 */
function filesSection(s: RunSummary): string {
  const reports = fileReports(s);
  if (!reports.length) return '';
  const parts = reports.map((rep) => {
    const c = rep.counts;
    const notable = (r: FileRow) =>
      r.ioctl === 'refused' || r.ioctl === 'bad-return' || r.damaged.length > 0 || (r.noCrash?.codes.length ?? 0) > 0;
    const rows = [...rep.rows].sort((a, b) => Number(notable(b)) - Number(notable(a)));
    const shown = rows.slice(0, maxFileRows);
    const cell = (ok: boolean, yes: string, no: string) => (ok ? esc(yes) : verdictBadge('fail', { text: no }));
    const body = shown
      .map((r) => {
        const nc = r.noCrash;
        const dir = r.type === 'dir';
        const ioctl =
          r.ioctl === 'migrated'
            ? 'migrated'
            : r.ioctl === 'refused'
              ? `refused: ${esc(r.why ?? '')}`
              : r.ioctl === 'bad-return'
                ? verdictBadge('fail', { text: `bad return: ${r.why ?? ''}` })
                : esc(r.ioctl);
        const after = !nc
          ? '<span class="muted">no no-crash case</span>'
          : [
              dir
                ? cell(nc.bytes, 'present', 'missing')
                : `${cell(nc.bytes, 'bytes ok', 'bytes changed')}, ${cell(nc.blocks, 'blocks ok', 'blocks moved')}`,
              cell(
                nc.mapping,
                r.ioctl === 'migrated' ? 'extents' : r.ioctl === 'refused' ? 'still block-mapped' : 'mapping ok',
                r.ioctl === 'refused' ? 'extents despite refusal' : 'not extent-mapped',
              ),
              ...(nc.codes.length ? [verdictBadge('fail', { text: nc.codes.join(', ') })] : []),
            ].join(', ');
        const crashes =
          r.ioctl === 'skipped'
            ? '<span class="muted">not migrated</span>'
            : r.damaged.length
              ? r.damaged
                  .slice(0, 6)
                  .map((d) => `${caseLink(d.case)} ${esc(d.code)}${d.recovery ? ` [${esc(d.recovery)}]` : ''}`)
                  .join('<br>') + (r.damaged.length > 6 ? `<br><span class="muted">and ${r.damaged.length - 6} more</span>` : '')
              : `survived ${rep.crashCases}`;
        return `<tr data-path="${esc(r.path)}" data-ioctl="${esc(r.ioctl)}" data-damaged="${r.damaged.length > 0 || (nc?.codes.length ?? 0) > 0}"><td><code>${esc(r.path)}</code></td><td>${esc(r.type ?? '')}</td><td>${ioctl}</td><td>${after}</td><td>${crashes}</td></tr>`;
      })
      .join('\n');
    return `<h3>${esc(rep.image ?? rep.scenario)} <span class="muted">(scenario ${esc(rep.scenario)})</span></h3>
<p>${c.migrated} migrated, ${c.refused} refused, ${c.skipped} skipped${c.badReturn ? `, ${c.badReturn} with a return the ABI does not allow` : ''} <span class="muted">(ioctl results of ${esc(rep.reference ?? 'no completed migration')})</span>; with no crash ${rep.rows.some((r) => r.noCrash) ? (c.noCrashDamaged ? `${c.noCrashDamaged} file(s) changed` : 'every file kept its bytes and blocks') : 'nothing completed'}; ${rep.crashCases} crash case(s), ${c.crashDamaged ? `${c.crashDamaged} file(s) damaged` : 'no file damaged'}.</p>
<div class="scroll"><table class="files" data-scenario="${esc(rep.scenario)}"><thead><tr><th>path</th><th>type</th><th>ioctl (no crash)</th><th>after the migration, no crash</th><th>crash cases</th></tr></thead><tbody>
${body}
</tbody></table></div>${rows.length > shown.length ? `<p class="muted">${rows.length - shown.length} more files in <a href="files.txt">files.txt</a>.</p>` : ''}`;
  });
  return `<section id="files"><h2>Files of the image</h2>
<p class="muted">Per file of a filesystem image of your own: what FS_IOC_SETFLAGS said in the run without a crash, whether the file kept its bytes and its physical blocks and has the mapping the ioctl said, and which crash cases damaged it (what an interrupted migration may leave is not damage). Every file: <a href="files.txt">files.txt</a>, <a href="files.json">files.json</a>.</p>
${parts.join('\n')}
</section>`;
}

function findingGroupRow(g: FindingGroup): string {
  const links =
    g.caseIds.slice(0, 12).map(caseLink).join('<br>') +
    (g.caseIds.length > 12 ? `<br><span class="muted">and ${g.caseIds.length - 12} more</span>` : '');
  const where = [
    g.inodes.length ? `inode ${g.inodes.slice(0, 6).join(', ')}${g.inodes.length > 6 ? ', …' : ''}` : '',
    g.blocks.length ? `block ${g.blocks.slice(0, 6).join(', ')}${g.blocks.length > 6 ? ', …' : ''}` : '',
    g.paths.length
      ? g.paths
          .slice(0, 4)
          .map((p) => `<code>${esc(p)}</code>`)
          .join(' ')
      : '',
  ]
    .filter(Boolean)
    .join('<br>');
  return `<tr data-signature="${esc(g.signature)}" data-cases="${g.caseIds.length}"><td>${esc(g.class)}</td><td class="mono">${esc(g.code)}${g.name !== g.code ? `<br><span class="muted">${esc(g.name)}</span>` : ''}</td><td>${esc(g.meaning ?? '')}<div class="muted">${esc(g.message)}</div></td><td>${where}</td><td>${esc(g.scenario)}<br><span class="mono">${esc(g.point)}</span><br>recovery: ${esc(g.recovery)}</td><td class="num">${g.caseIds.length}</td><td>${links}</td></tr>`;
}

function findingsTable(groups: FindingGroup[], id: string): string {
  if (!groups.length) return `<p id="${esc(id)}" class="muted">None.</p>`;
  return `<div class="scroll"><table id="${esc(id)}"><thead><tr><th>class</th><th>code</th><th>meaning / first message</th><th>inode / block / path</th><th>where</th><th class="num">cases</th><th>case list</th></tr></thead><tbody>${groups.map(findingGroupRow).join('\n')}</tbody></table></div>`;
}

function findingsSection(s: RunSummary): string {
  const groups = groupFindings(s.cases);
  const failing = groups.filter((g) => g.failing);
  const allowed = groups.filter((g) => !g.failing);
  return `<section id="findings"><h2>Findings by signature</h2>
<p class="muted">A signature is scenario | crash point | recovery | class | code: the same bug seen again in another run has the same one. Codes 0x… are e2fsck problem codes (e2fsprogs' problem.h).</p>
<h3>Failing (${failing.length})</h3>
${findingsTable(failing, 'findings-failing')}
<section class="allowed-findings" aria-label="allowed findings"><h3>Allowed by the scenarios (${allowed.length}): what an interrupted migration may leave</h3>
${findingsTable(allowed, 'findings-allowed')}</section>
</section>`;
}

function findingRows(c: CaseResult, fs: readonly Finding[]): string {
  return fs
    .map((f) => {
      const failing = isFailingFinding(c, f);
      const meaning = e2fsckMeaning(f.code);
      const where = [
        f.ino !== undefined ? `inode ${f.ino}` : '',
        f.block !== undefined ? `block ${f.block}` : '',
        f.group !== undefined ? `group ${f.group}` : '',
        f.path ? `<code>${esc(f.path)}</code>` : '',
      ]
        .filter(Boolean)
        .join(', ');
      return `<tr data-code="${esc(f.code)}" data-failing="${failing}" class="${failing ? '' : 'allowed'}"><td>${failing ? verdictBadge('fail', { text: 'failing' }) : '<span class="muted">allowed</span>'}</td><td>${esc(f.class)}</td><td class="mono">${esc(f.code)}${f.name !== f.code ? `<br><span class="muted">${esc(f.name)}</span>` : ''}</td><td>${esc(meaning ?? '')}${meaning ? '<br>' : ''}<span class="finding-message">${esc(f.message)}</span>${f.detail ? `<details><summary>detail</summary><pre>${esc(f.detail)}</pre></details>` : ''}</td><td>${where}</td><td>${esc(f.recovery ?? '-')}</td><td>${esc(f.source)}</td></tr>`;
    })
    .join('\n');
}

function artefactList(arts: readonly Artefact[]): string {
  if (!arts.length) return '<p class="muted">No files in the case folder.</p>';
  // A kept crash image is stored as what the crash changed over the run's copy of the base: say how to get the raw image.
  const exportHint = (a: Artefact) =>
    a.name === keptImageName
      ? ` <span class="muted">(qcow2 over the run's <code>${runImagesDir}/</code>; the raw image, in the run folder: <code>qcrash image export ${esc(dirname(a.rel))}</code>)</span>`
      : '';
  return `<ul class="artefacts">${arts.map((a) => `<li><a class="artefact" data-kind="${a.kind}" href="${esc(relHref(a.rel))}">${esc(a.name)}</a> <span class="muted">${esc(artefactKindLabels[a.kind])}, ${fmtBytes(a.bytes)}</span>${exportHint(a)}</li>`).join('')}</ul>`;
}

function caseSection(s: RunSummary, c: CaseResult, arts: readonly Artefact[]): string {
  const f = readFired(c.fired);
  const firedFacts: Array<[string, string]> = f
    ? [
        ['kind', esc(f.kind)],
        ...(f.symbol ? [['symbol', `<code>${esc(f.symbol)}</code>`] as [string, string]] : []),
        ...(f.hits !== undefined ? [['hit', esc(f.hits)] as [string, string]] : []),
        ...(f.commit !== undefined ? [['commit', esc(f.commit)] as [string, string]] : []),
        ...(f.epoch !== undefined ? [['flush epoch', esc(f.epoch)] as [string, string]] : []),
        ...(f.rip ? [['rip', `<code>${esc(f.rip)}</code>`] as [string, string]] : []),
        ...(f.atMs !== undefined
          ? [['at', `${esc(Math.round(f.atMs * 10) / 10)} ms after the step's start marker`] as [string, string]]
          : []),
      ]
    : [['kind', '<span class="muted">not recorded</span>']];
  firedFacts.push(...logStateFacts(c.fired));
  const steps = c.steps ?? [];
  const stepTable = steps.length
    ? `<div class="scroll"><table class="steps"><thead><tr><th>step</th><th>kind</th><th class="num">exit</th><th class="num">started</th><th class="num">took</th><th>output</th></tr></thead><tbody>${steps
        .map((st) => {
          const started = (st as { startedAtMs?: number }).startedAtMs;
          return `<tr><td>${esc(st.name)}</td><td>${esc(st.kind)}</td><td class="num">${st.exitCode ?? '<span class="muted">none (killed)</span>'}</td><td class="num">${started !== undefined ? fmtMs(started) : ''}</td><td class="num">${fmtMs(st.durationMs)}</td><td>${st.output ? `<pre>${esc(st.output.trim())}</pre>` : ''}</td></tr>`;
        })
        .join('')}</tbody></table></div>`
    : '<p class="muted">No steps recorded.</p>';
  const phases = (c as { phases?: Record<string, number> }).phases;
  const facts: Array<[string, string]> = [
    ['verdict', verdictBadge(c.status)],
    ['scenario', esc(c.scenario)],
    ['crash point', `<code>${esc(c.pointLabel)}</code>`],
    ['repetition', esc(c.repetition)],
    ['seed', `<code>${esc(c.seed)}</code>`],
    ['duration', esc(fmtMs(c.durationMs))],
    ...(phases && typeof phases === 'object'
      ? [
          [
            'phases',
            esc(
              Object.entries(phases)
                .map(([k, v]) => `${k.replace(/Ms$/, '')} ${fmtMs(Number(v))}`)
                .join(', '),
            ),
          ] as [string, string],
        ]
      : []),
    ...(c.error ? [['error', `<pre>${esc(c.error)}</pre>`] as [string, string]] : []),
    ...(typeof (c as { errorKind?: unknown }).errorKind === 'string'
      ? [['error kind', esc((c as { errorKind?: string }).errorKind)] as [string, string]]
      : []),
  ];
  const findings = c.findings ?? [];
  const sorted = [...findings].sort((a, b) => Number(isFailingFinding(c, b)) - Number(isFailingFinding(c, a)));
  return `<details class="case v-${esc(c.status)}" id="${esc(caseAnchor(c.id))}" data-status="${esc(c.status)}"${c.status === 'pass' ? '' : ' open'}>
<summary>${verdictBadge(c.status)} <span class="mono">${esc(c.id)}</span> <span class="muted">${esc(fmtMs(c.durationMs))}, ${(c.failing ?? []).length} failing / ${findings.length} findings</span></summary>
${factsList(facts)}
<h4>What fired</h4>${factsList(firedFacts)}
<h4>Steps</h4>${stepTable}
<h4>Findings (${findings.length})</h4>
${findings.length ? `<div class="scroll"><table class="findings"><thead><tr><th></th><th>class</th><th>code</th><th>meaning / message</th><th>where</th><th>recovery</th><th>oracle</th></tr></thead><tbody>${findingRows(c, sorted)}</tbody></table></div>` : '<p class="muted">None.</p>'}
<h4>Artefacts</h4>${artefactList(arts)}
<h4>Reproduce this case</h4><pre><code>${esc(reproduceCommand(s, c.id))}</code></pre>
</details>`;
}

/** A write-log state's own facts: where in the log, what was lost, the writes that matter once minimised. */
function logStateFacts(fired: unknown): Array<[string, string]> {
  const f = fired as Partial<LogStateFired> | undefined;
  if (f?.kind !== 'log') return [];
  const notes = (ws: readonly WriteNote[] | undefined) =>
    (ws ?? [])
      .map((w) => `<code>${esc(w.id)}</code> (entry ${esc(w.index)})${w.summary ? `: ${esc(w.summary)}` : ''}`)
      .join('<br>');
  return [
    ['state', `<code>${esc(f.state ?? '')}</code> (${esc(f.stateKind ?? '')}, ${esc(f.variant ?? '')})`],
    [
      'log position',
      `${esc(f.position ?? '')} of ${esc(f.entries ?? '')} entries, recorded by <code>${esc(f.unit ?? '')}</code>`,
    ],
    ...(f.dropped?.length
      ? [
          ['writes lost', `${f.dropped.length}: ${f.dropped.map((d) => `<code>${esc(d.id)}</code>`).join(' ')}`] as [
            string,
            string,
          ],
        ]
      : []),
    ...(f.minimized
      ? [
          [
            'writes that matter',
            `lost:<br>${notes(f.minimized.dropped) || '<span class="muted">none</span>'}<br>landed and needed:<br>${notes(f.minimized.needed) || '<span class="muted">none</span>'}<br><span class="muted">${esc(f.minimized.tests)} oracle calls${f.minimized.exhausted ? ', budget ran out' : ''}</span>`,
          ] as [string, string],
        ]
      : []),
    ...(f.keptImageIn
      ? [
          [
            'crash image',
            `kept once for its signature, in <a href="#${esc(caseAnchor(f.keptImageIn))}">${esc(f.keptImageIn)}</a>`,
          ] as [string, string],
        ]
      : []),
  ];
}

/** The whole report.html for a run whose files are in `runDir`. */
export async function runReportHtml(s: RunSummary, runDir: string): Promise<string> {
  const artefacts = new Map<string, Artefact[]>();
  for (const c of s.cases) artefacts.set(c.id, await listArtefacts(runDir, c.id));
  const scenarios = [...new Set([...s.scenarios.map((x) => x.name), ...s.cases.map((c) => c.scenario)])];
  const charts = chartsSection(s);
  const order = (c: CaseResult) => verdictOrder.indexOf(c.status);
  const cases = [...s.cases].sort((a, b) => order(a) - order(b) || a.id.localeCompare(b.id));
  const body = [
    header(s),
    matrixSection(buildMatrix(s.cases, artefacts), scenarios),
    charts.html,
    findingsSection(s),
    filesSection(s),
    `<section id="cases"><h2>Cases (${s.cases.length})</h2><p class="muted">Failing, erroring and unreached cases first, opened.</p>${cases.map((c) => caseSection(s, c, artefacts.get(c.id) ?? [])).join('\n')}</section>`,
    `<footer class="muted"><p>Written by qcrash from ${esc('summary.json')} of run ${esc(s.runId)}. Links to artefacts are relative to this file: keep it in its run folder.</p></footer>`,
  ].join('\n');
  return renderPage({
    title: `qcrash run ${s.runId}`,
    body,
    data: { runId: s.runId, ...(charts.data as object) },
    scripts: ['common', 'run-report'],
    charts: true,
  });
}

/** Write `<runDir>/report.html` atomically; loads summary.json when no summary is given. */
export async function writeRunReport(runDir: string, summary?: RunSummary): Promise<string> {
  const s = summary ?? (await loadSummary(runDir));
  const file = join(runDir, 'report.html');
  await writeFileAtomic(file, await runReportHtml(s, runDir));
  return file;
}

/** Writes report.html into the run directory when the run ends. */
export class HtmlReportReporter implements Reporter {
  readonly name = 'html';
  written?: string;
  async onRunEnd(summary: RunSummary, runDir: string): Promise<void> {
    this.written = await writeRunReport(runDir, summary);
  }
}
