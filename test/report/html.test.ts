import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { access, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { projectRoot } from '../../harness/util/paths.ts';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { findingSignature } from '../../harness/results/signature.ts';
import type { RunSummary } from '../../harness/results/run.ts';
import type { ValidateResult } from '../../harness/validate/validate.ts';
import { confirm, judge, notJudged, validateReport } from '../../harness/validate/validate.ts';
import { writeValidateReport } from '../../harness/validate/validate-page.ts';
import { historyFileName, loadHistory } from '../../harness/results/history.ts';
import { ConfigError } from '../../harness/util/errors.ts';
import { launchBrowser, openFile, type LoadedPage } from '../helpers/browser.ts';
import { qcrashBin } from '../helpers/env.ts';
import { caseIds, realRun, writeScenarios, type RealRun } from './html-runs.ts';
import { phaseNames } from '../../harness/report/html/run-model.ts';
import { buildMatrix } from '../../harness/report/matrix.ts';
import { writeMatrixReports } from '../../harness/report/matrix-reports.ts';

// The HTML reports of real runs, opened from file:// in Debian's headless
// chromium. Four small runs on the stock kernel (small-4k recipe, e2fsck
// recovery, three cases each, damage planted with debugfs before the
// oracles, see html-runs.ts) make the material: night-1..3 form a results
// folder for history.html, night-1 and night-2 are validate's baseline and
// patched runs, and a one-case rerun is validate's confirmation run.
// Screenshots of every page go to results/html-test/ (kept after the test).
const shots = join(projectRoot, 'results', 'html-test');
await mkdir(shots, { recursive: true });
const root = await mkdtemp(join(tmpdir(), 'qcrash-html-test-'));
t.teardown(() => rm(root, { recursive: true, force: true }));

const scenarios = await writeScenarios(join(root, 'scenarios'));
const resultsDir = join(root, 'results');
const validateDir = join(root, 'validate');
const sigFreebNoKill = 'html-clean | no-kill | e2fsck | corruption | 0x050005';
const sigFreebUmount = 'html-clean | after-umount | e2fsck | corruption | 0x050005';
const sigZapUmount = 'html-clean | after-umount | e2fsck | data | content-changed';
const sigZapDelay = 'html-kill | delay-migrate-30ms | e2fsck | data | content-changed';

const night1 = await realRun(scenarios, join(resultsDir, 'night-1'), { [caseIds.noKill]: ['freeb'], [caseIds.delay]: ['zap'] });
const night2 = await realRun(scenarios, join(resultsDir, 'night-2'), {
  [caseIds.noKill]: ['freeb'],
  [caseIds.afterUmount]: ['freeb', 'zap'],
});
const night3 = await realRun(scenarios, join(resultsDir, 'night-3'), { [caseIds.noKill]: ['freeb'], [caseIds.delay]: ['zap'] });
// validate reruns the cases whose findings are new on the patched kernel (night-2's after-umount).
const confirm1 = await realRun(
  scenarios,
  join(validateDir, 'confirm-1'),
  { [caseIds.afterUmount]: ['freeb'] },
  { filter: [caseIds.afterUmount] },
);

const browser = await launchBrowser();
t.teardown(() => browser.close());

function failingSigs(s: RunSummary): Set<string> {
  return new Set(s.cases.flatMap((c) => c.failing.map((f) => findingSignature(c, f))));
}

/** The page loaded with nothing failing, nothing fetched from outside, and JS that ran cleanly. */
function assertCleanLoad(t: Test, p: LoadedPage): void {
  t.same(p.consoleErrors, [], 'no console errors');
  t.same(p.pageErrors, [], 'no uncaught page errors');
  t.same(p.failedRequests, [], 'no failed requests');
  t.same(
    p.requests.filter((u) => !/^(file|data|about):/.test(u)),
    [],
    'nothing requested from a network',
  );
}

/** Every link to a file resolves to one that exists; every in-page link to an element that exists. */
async function assertLinksResolve(t: Test, page: Page): Promise<number> {
  const hasId = async (p: Page, id: string) => (await p.locator(`[id="${id.replace(/["\\]/g, '\\$&')}"]`).count()) === 1;
  const links = await page.locator('a[href]').evaluateAll((as) => as.map((a) => a.getAttribute('href')!));
  const missing: string[] = [];
  for (const raw of links) {
    if (raw.startsWith('#')) {
      if (!(await hasId(page, decodeURIComponent(raw.slice(1))))) missing.push(raw);
      continue;
    }
    const l = { raw };
    const url = new URL(raw, page.url());
    if (url.protocol !== 'file:') {
      missing.push(`${l.raw} (not a file link)`);
      continue;
    }
    if (
      !(await access(fileURLToPath(url)).then(
        () => true,
        () => false,
      ))
    )
      missing.push(l.raw);
    // A link into another report's case must land on that case's section.
    if (url.hash) {
      const other = await browser.context.newPage();
      await other.goto(url.href);
      if (!(await hasId(other, decodeURIComponent(url.hash.slice(1))))) missing.push(`${l.raw} (no such anchor)`);
      await other.close();
    }
  }
  t.same(missing, [], `all ${links.length} links resolve`);
  return links.length;
}

t.test('report.html of a run with failing cases', async (t) => {
  const run: RealRun = night2;
  const s = run.summary;
  t.equal(s.counts.fail, 2, 'the planted damage failed two cases');
  const p = await openFile(browser.context, join(run.dir, 'report.html'));
  const { page } = p;
  assertCleanLoad(t, p);

  // Counts and the headline.
  for (const k of ['total', 'pass', 'fail', 'error', 'notReached'] as const) {
    t.equal(await page.textContent(`#counts td[data-count="${k}"]`), String(s.counts[k]), `count ${k} matches summary.json`);
  }
  t.match(await page.textContent('#run-verdict'), /FAIL: 2 failed/);
  t.match(
    await page.textContent('#run'),
    new RegExp(s.kernel.release.replace(/\./g, '\\.')),
    'the kernel release is in the header',
  );
  t.match(await page.textContent('#reproduce'), new RegExp(`--seed ${s.seed}`), 'the command that reproduces the run');

  // A failing case's findings, as summary.json has them.
  const failing = s.cases.find((c) => c.id === caseIds.afterUmount)!;
  t.equal(failing.status, 'fail');
  const section = page.locator(`[id="case-${failing.id}"]`);
  t.equal(await section.getAttribute('open'), '', 'a failing case is open');
  const shown = await section
    .locator('table.findings tr[data-failing="true"]')
    .evaluateAll((trs) =>
      trs.map((tr) => ({ code: tr.getAttribute('data-code'), message: tr.querySelector('.finding-message')!.textContent })),
    );
  t.same(
    shown.map((x) => `${x.code} ${x.message}`).sort(),
    failing.failing.map((f) => `${f.code} ${f.message}`).sort(),
    'the failing findings of the case, code and message',
  );
  t.ok(
    shown.some((x) => x.code === '0x050005') && shown.some((x) => x.code === 'content-changed'),
    'both planted damages are among them',
  );
  t.equal(
    await section.locator('table.findings tr[data-failing="false"]').count(),
    failing.findings.length - failing.failing.length,
    'and its allowed findings, set apart',
  );
  const kinds = await section.locator('a.artefact').evaluateAll((as) => as.map((a) => a.getAttribute('data-kind')));
  for (const k of ['console', 'qmp', 'agent', 'e2fsck-text', 'e2fsck-xml', 'crash-image'])
    t.ok(kinds.includes(k), `the case links its ${k}`);

  // Findings grouped by signature.
  const groups = await page
    .locator('#findings-failing tr[data-signature]')
    .evaluateAll((trs) => trs.map((tr) => `${tr.getAttribute('data-signature')} x${tr.getAttribute('data-cases')}`));
  t.same(groups.sort(), [...failingSigs(s)].map((g) => `${g} x1`).sort(), 'failing signatures with their case counts');
  t.ok(await page.locator('#findings-allowed tr[data-signature*="| leak |"]').count(), 'allowed leaks are listed apart');
  t.ok(
    await page.locator('#findings-failing tr', { hasText: "block used but not marked in the bitmap ('+')" }).count(),
    "the e2fsck code's meaning is shown",
  );

  // Charts drawn by Observable Plot with the run's points.
  const timed = s.cases
    .filter(
      (c) =>
        c.fired &&
        ['before', 'after', 'delay', 'during'].includes(c.fired.kind) &&
        'atMs' in c.fired &&
        c.fired.atMs !== undefined,
    )
    .map((c) => c.id)
    .sort();
  t.equal(timed.length, 2, 'two cases were killed at a timed point');
  const dots = await page
    .locator('#chart-crash-points svg g[aria-label="dot"] > *')
    .evaluateAll((els) => els.map((e) => e.querySelector('title')?.textContent?.split('\n')[0]));
  t.same(dots.sort(), timed, 'one mark per killed case in the crash point chart');
  t.ok(await page.locator('#chart-crash-points svg g[aria-label="x-axis tick label"]').count(), 'with an x axis');
  const kernelCase = s.cases.find((c) => c.id === caseIds.kernel)!;
  t.equal(kernelCase.fired?.kind, 'kernel', 'the gdbstub point fired');
  const indexDots = await page
    .locator('#chart-crash-index svg g[aria-label="dot"] > *')
    .evaluateAll((els) => els.map((e) => e.querySelector('title')?.textContent));
  t.same(
    indexDots,
    [
      `${caseIds.kernel}\n${kernelCase.status === 'pass' ? 'pass' : kernelCase.status} at kernel hit ${(kernelCase.fired as { hits: number }).hits}`,
    ],
    'the kernel point in the index chart, at its hit',
  );
  const fired = await page.locator(`[id="case-${caseIds.kernel}"] dl`).nth(1).textContent();
  t.match(fired, /kindkernel.*symbolext4_ext_migrate.*hit2/s, "what fired: the kernel point's symbol and hit");
  const bars = await page
    .locator('#chart-phases svg g[aria-label="bar"] > rect')
    .evaluateAll((els) => els.map((e) => e.querySelector('title')?.textContent?.split('\n')[0]));
  // The bar stacks the disjoint phases; the kernel recovery's restore and mount are parts of `recovery`.
  const stacked = new Set(phaseNames.map((p) => `${p}Ms`));
  const phaseBars = s.cases.flatMap((c) =>
    Object.entries(c.phases ?? {})
      .filter(([k, ms]) => typeof ms === 'number' && stacked.has(k))
      .map(() => c.id),
  );
  t.ok(phaseBars.length > s.cases.length, 'the cases recorded their phases');
  t.same(bars.sort(), phaseBars.sort(), 'one bar per recorded phase of each case');

  // Filtering the matrix.
  const visibleRows = () =>
    page
      .locator('#matrix tbody tr:not([hidden])')
      .evaluateAll((trs) => trs.map((tr) => `${tr.getAttribute('data-scenario')} ${tr.children[1]!.textContent}`));
  const allRows = s.cases.map((c) => `${c.scenario} ${c.pointLabel}`).sort();
  t.same((await visibleRows()).sort(), allRows, 'every row shows at first');
  t.equal(await page.locator('#matrix a[data-verdict]').count(), s.cases.length, 'one cell link per case (one recovery)');
  const setVerdicts = async (keep: string[]) => {
    for (const v of ['pass', 'fail', 'error', 'not-reached'])
      await page.setChecked(`#matrix-filter input[value="${v}"]`, keep.includes(v));
  };
  await setVerdicts(['fail']);
  t.same(
    (await visibleRows()).sort(),
    s.cases
      .filter((c) => c.status === 'fail')
      .map((c) => `${c.scenario} ${c.pointLabel}`)
      .sort(),
    'verdict filter: fail',
  );
  t.equal(await page.textContent('#matrix-count'), `2 of ${s.cases.length} rows shown`);
  t.equal(
    await page.locator('#matrix a[data-verdict="pass"]').filter({ visible: true }).count(),
    0,
    'and no pass cell is visible',
  );
  await setVerdicts(['pass']);
  t.same(
    (await visibleRows()).sort(),
    s.cases
      .filter((c) => c.status === 'pass')
      .map((c) => `${c.scenario} ${c.pointLabel}`)
      .sort(),
    'verdict filter: pass',
  );
  await setVerdicts(['pass', 'fail', 'error', 'not-reached']);
  await page.selectOption('#matrix-filter select[name="scenario"]', 'html-clean');
  t.same(
    (await visibleRows()).sort(),
    s.cases
      .filter((c) => c.scenario === 'html-clean')
      .map((c) => `${c.scenario} ${c.pointLabel}`)
      .sort(),
    'scenario filter',
  );
  await page.selectOption('#matrix-filter select[name="scenario"]', '');

  await assertLinksResolve(t, page);
  await page.screenshot({ path: join(shots, 'report.png'), fullPage: true });

  // A narrow window: the page itself does not scroll sideways.
  await page.setViewportSize({ width: 380, height: 800 });
  await page.waitForTimeout(400);
  const overflow = await page.locator('html').evaluate((html) => html.scrollWidth - html.clientWidth);
  t.ok(overflow <= 1, `no horizontal page scroll at 380 px (overflow ${overflow} px)`);
  t.ok(await page.locator('#chart-crash-points svg g[aria-label="dot"] > *').count(), 'the chart is redrawn narrow');
  await page.screenshot({ path: join(shots, 'report-narrow.png'), fullPage: true });
  await page.close();

  // Without JavaScript the tables are all there; the filter form stays hidden.
  const nojs = await openFile(browser.context, join(run.dir, 'report.html'), { javaScript: false });
  t.equal(await nojs.page.locator('#matrix tbody tr').count(), s.cases.length, 'no JS: the matrix');
  t.equal(await nojs.page.textContent('#counts td[data-count="fail"]'), '2', 'no JS: the counts');
  t.equal(
    await nojs.page.locator('#chart-crash-points-data tbody tr').count(),
    2,
    "no JS: the crash point chart's data as a table",
  );
  t.notOk(await nojs.page.isVisible('#matrix-filter'), 'no JS: no filter form');
  await nojs.page.close();
});

t.test('qcrash report rewrites report.html of an existing run', async (t) => {
  const file = join(night1.dir, 'report.html');
  await rm(file);
  const out = await new Promise<{ code: number; stdout: string }>((resolve) =>
    execFile(process.execPath, [qcrashBin, 'report', night1.dir], (err, stdout) =>
      resolve({ code: err ? Number(err.code) : 0, stdout }),
    ),
  );
  t.equal(out.code, 0);
  t.equal(out.stdout.trim(), file);
  await access(file);
  const bad = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(process.execPath, [qcrashBin, 'report', scenarios[0]!.replace(/\/[^/]+$/, '')], (err, _o, stderr) =>
      resolve({ code: err ? Number(err.code) : 0, stderr }),
    ),
  );
  t.equal(bad.code, 2, 'a folder that is not a run: usage error');
  t.match(bad.stderr, /not a qcrash run folder \(no run\.json\)/);
});

t.test('history.html over three nightly runs', async (t) => {
  const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [qcrashBin, 'history', resultsDir], (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
    ),
  );
  t.equal(out.code, 0, out.stderr);
  t.match(out.stderr, /3 run\(s\) in the history, 3 new/);
  const index = await loadHistory(join(resultsDir, historyFileName));
  const runs = [night1, night2, night3];
  t.same(
    index.runs.map((r) => r.runId),
    runs.map((r) => r.summary.runId),
    'the index has the three runs in order',
  );
  t.same(
    index.runs[1]!.cases.find((c) => c.id === caseIds.afterUmount)!.failing,
    [...failingSigs(night2.summary)].filter((x) => x.includes('after-umount')).sort(),
    'failing signatures per case',
  );

  const p = await openFile(browser.context, join(resultsDir, 'history.html'));
  const { page } = p;
  assertCleanLoad(t, p);
  t.same(
    await page.locator('#history-runs tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-run'))),
    runs.map((r) => r.summary.runId),
  );
  const grid = await page
    .locator('#history-scenarios [data-verdict]')
    .evaluateAll((els) =>
      els.map(
        (e) =>
          `${e.closest('tr')!.getAttribute('data-scenario')} ${e.getAttribute('data-run')} ${e.getAttribute('data-verdict')}`,
      ),
    );
  const expected = runs.flatMap((r) =>
    ['html-clean', 'html-kill'].map((sc) => {
      const cs = r.summary.cases.filter((c) => c.scenario === sc);
      return `${sc} ${r.summary.runId} ${cs.some((c) => c.status === 'fail') ? 'fail' : 'pass'}`;
    }),
  );
  t.same(grid.sort(), expected.sort(), 'pass/fail per scenario per run');
  const cells = await page.locator('#chart-history svg g[aria-label="cell"] > rect').count();
  t.equal(cells, 6, 'the chart has a cell per scenario and run');

  const change = page.locator(`section.run-change[data-to="${night2.summary.runId}"]`);
  const appeared = await change.locator('ul.appeared li').allTextContents();
  const gone = await change.locator('ul.gone li').allTextContents();
  t.same(appeared.sort(), [sigFreebUmount, sigZapUmount].sort(), 'night-2: the after-umount damage appeared');
  t.same(gone, [sigZapDelay], 'night-2: the delay case damage went away');
  const trend = async (sig: string) => page.locator(`#history-signatures tr[data-signature="${sig}"]`).getAttribute('data-trend');
  t.equal(await trend(sigZapDelay), 'flaky', 'seen, gone, seen again: flaky');
  t.match(await page.locator(`#history-signatures tr[data-signature="${sigZapDelay}"]`).textContent(), /2 \/ 3.*67%/);
  t.equal(await trend(sigFreebNoKill), 'every run since first seen');
  t.equal(await trend(sigFreebUmount), 'gone');
  await assertLinksResolve(t, page);
  await page.screenshot({ path: join(shots, 'history.png'), fullPage: true });
  await page.close();

  // A damaged index is a clear error, also from the command.
  const broken = join(root, 'broken');
  await mkdir(broken);
  await writeFile(join(broken, historyFileName), '{"schema":"qcrash-history/1","runs":[{"runId":');
  await t.rejects(loadHistory(join(broken, historyFileName)), ConfigError);
  await t.rejects(loadHistory(join(broken, historyFileName)), /corrupt .*move it away and run "qcrash history/);
  await writeFile(
    join(broken, historyFileName),
    JSON.stringify({ schema: 'qcrash-history/1', updatedAt: 'x', runs: [{ runId: 1 }] }),
  );
  await t.rejects(loadHistory(join(broken, historyFileName)), /not a qcrash-history\/1 index \(at runs\.0\.runId/);
  const bad = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(process.execPath, [qcrashBin, 'history', broken], (err, _o, stderr) =>
      resolve({ code: err ? Number(err.code) : 0, stderr }),
    ),
  );
  t.equal(bad.code, 2, 'qcrash history on a damaged index exits 2');
  t.match(bad.stderr, /history index .* is not a qcrash-history\/1 index/);
});

/** ValidateResult from real runs, judged by validate's own functions: the confirmation runs stand for its reruns. */
async function judgeRuns(
  baseline: RealRun,
  patched: RealRun,
  confirms: RealRun[],
): Promise<Pick<ValidateResult, 'introduced' | 'flaky' | 'removed' | 'unchanged' | 'notJudged'>> {
  const j = judge(baseline.summary, patched.summary);
  const verdicts = await confirm(j.fresh, confirms.length, async (_ids, i) => confirms[i]!.summary);
  return {
    introduced: verdicts.filter((v) => v.verdict === 'introduced'),
    flaky: verdicts.filter((v) => v.verdict === 'flaky'),
    removed: j.removed,
    unchanged: j.unchanged,
    notJudged: { baseline: notJudged(baseline.summary), patched: notJudged(patched.summary) },
  };
}

t.test('matrix.html of a multi-kernel run: night-1 and night-2 as two kernels', async (t) => {
  const runs = [
    { label: 'night-1', dir: night1.dir, summary: night1.summary },
    { label: 'night-2', dir: night2.dir, summary: night2.summary },
  ];
  const m = buildMatrix(runs);
  const dir = join(root, 'matrix');
  await mkdir(dir, { recursive: true });
  await writeMatrixReports(dir, m, runs);
  const p = await openFile(browser.context, join(dir, 'matrix.html'));
  const { page } = p;
  assertCleanLoad(t, p);
  await assertLinksResolve(t, page);
  t.same(await page.locator('#kernel-matrix thead th').allTextContents(), ['scenario', 'night-1', 'night-2']);
  const cells = await page
    .locator('#kernel-matrix [data-kernel]')
    .evaluateAll((els) =>
      els.map((e) => `${e.closest('tr')!.getAttribute('data-scenario')} ${e.getAttribute('data-kernel')} ${e.className}`),
    );
  const expected = runs.flatMap((r) =>
    ['html-clean', 'html-kill'].map((sc) => {
      const fails = r.summary.cases.filter((c) => c.scenario === sc && c.status === 'fail').length;
      return `${sc} ${r.label} verdict v-${fails ? 'fail' : 'pass'}`;
    }),
  );
  t.same(cells.sort(), expected.sort(), 'a cell per scenario and kernel, failing where that kernel failed');
  const [one, two] = [failingSigs(night1.summary), failingSigs(night2.summary)];
  const onlyOn = (a: Set<string>, b: Set<string>, on: string, off: string) =>
    [...a].filter((x) => !b.has(x)).map((x) => `only on ${on} (not on ${off}): ${x}`);
  t.same(
    (await page.locator('#findings-split li').allTextContents()).sort(),
    [...onlyOn(one, two, 'night-1', 'night-2'), ...onlyOn(two, one, 'night-2', 'night-1')].sort(),
    'a finding on one kernel and not the other says so',
  );
  t.same((await page.locator('#findings-shared li').allTextContents()).sort(), [...one].filter((x) => two.has(x)).sort());
  await page.screenshot({ path: join(shots, 'matrix.png'), fullPage: true });
});

t.test('validate.html from a baseline, a patched and a confirmation run', async (t) => {
  const kernel = await stockKernel();
  // The two runs are on the same stock kernel; the "patch" is the damage the test planted, named as such.
  const patchedKernel = {
    ...kernel,
    provenance: {
      ...kernel.provenance,
      patches: [{ file: '0001-test-damage.patch', subject: 'test: debugfs damage planted after the kill (no kernel change)' }],
    },
  };
  const result: ValidateResult = {
    baseline: { kernel, summary: night1.summary, dir: night1.dir },
    patched: { kernel: patchedKernel, summary: night2.summary, dir: night2.dir },
    ...(await judgeRuns(night1, night2, [confirm1])),
    dir: validateDir,
  };
  t.same(
    result.introduced.map((v) => v.signature),
    [sigFreebUmount],
    'the rerun saw the freeb again: introduced',
  );
  t.same(
    result.flaky.map((v) => v.signature),
    [sigZapUmount],
    'not the zap: flaky',
  );
  const file = await writeValidateReport(result, validateReport(result));
  const p = await openFile(browser.context, file);
  const { page } = p;
  assertCleanLoad(t, p);
  const sigs = (id: string) =>
    page.locator(`#${id} tr[data-signature]`).evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-signature')));
  t.same(await sigs('introduced'), [sigFreebUmount]);
  t.same(await sigs('flaky'), [sigZapUmount]);
  t.same(await page.locator('#removed li').allTextContents(), result.removed);
  t.same(await page.locator('#unchanged li').allTextContents(), result.unchanged);
  t.match(await page.locator(`#introduced tr[data-signature="${sigFreebUmount}"]`).textContent(), /1 \/ 1.*seen again/);
  t.match(await page.locator(`#flaky tr[data-signature="${sigZapUmount}"]`).textContent(), /0 \/ 1.*not seen/);
  t.match(await page.textContent('#patch-subjects'), /test: debugfs damage planted/);
  t.match(await page.textContent('#validate-verdict'), /REGRESSION: 1 finding signature/);
  t.equal(await page.locator('#tested-by').count(), 0, 'no Tested-by line: the patch regressed');
  for (const side of ['baseline', 'patched'] as const) {
    t.equal(
      await page.textContent(`#${side}-counts td[data-count="fail"]`),
      String(result[side].summary.counts.fail),
      `${side} counts`,
    );
  }
  t.equal(await page.locator('#validate-cases tr[data-changed="true"]').count(), 2, 'two cases changed verdict');
  await assertLinksResolve(t, page);
  await page.screenshot({ path: join(shots, 'validate.png'), fullPage: true });
  await page.close();

  // The same run on both sides, as a patch that changes nothing would give: the Tested-by line shows.
  const cleanDir = join(root, 'validate-clean');
  await mkdir(cleanDir);
  const clean: ValidateResult = {
    baseline: result.baseline,
    patched: { ...result.patched, summary: night1.summary, dir: night1.dir },
    ...(await judgeRuns(night1, night1, [])),
    dir: cleanDir,
  };
  const p2 = await openFile(browser.context, await writeValidateReport(clean, validateReport(clean)));
  assertCleanLoad(t, p2);
  t.match(
    await p2.page.textContent('#tested-by'),
    new RegExp(`^Tested-by: qcrash \\(${night1.summary.counts.total} crash states`),
  );
  t.match(await p2.page.textContent('#validate-verdict'), /no regression/);
  await p2.page.screenshot({ path: join(shots, 'validate-clean.png'), fullPage: true });
  await p2.page.close();
});
