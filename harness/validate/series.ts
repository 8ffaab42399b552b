import { join } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.ts';
import { ConfigError } from '../util/errors.ts';
import { defaultResultsDir } from '../util/paths.ts';
import { buildKernel, KernelBuildError } from '../kernel/build.ts';
import { readPatchSeries } from '../kernel/patch-series.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { RunSummary } from '../results/run.ts';
import { newRunId } from '../results/store.ts';
import {
  failingSignatures,
  judgeAndConfirm,
  kernelSourceOptions,
  notJudged,
  suiteRunner,
  type SuiteSettings,
  type ValidateOptions,
} from './validate.ts';
import { writeSeriesPage } from './series-page.ts';
import type { SeriesFinding, SeriesPatchRef, SeriesResult, SeriesStep } from './model.ts';

/**
 * `validate --series`: each patch judged on its own, as ktest's patchcheck
 * does. The baseline and every prefix of the series (1, 1-2, 1-3, ...) are
 * built (incrementally: one object dir and ccache), the suite runs on each
 * with the same seed, and each prefix is judged against the one before it,
 * new signatures confirmed by rerun. Then each signature is followed along
 * the series, so a finding one patch introduces and a later one hides (the
 * whole series passes) is named with both.
 */

/** The kernels to judge, in order: the baseline, then one per patch (that patch and every one before it). */
interface SeriesKernels {
  baseline: KernelInfo;
  steps: Array<{ patch: SeriesPatchRef; kernel: KernelInfo }>;
  skipped?: SeriesResult['skipped'];
}

export type SeriesRunOptions = SuiteSettings &
  Pick<ValidateOptions, 'confirmRuns' | 'onProgress'> &
  SeriesKernels & { out: string };

/** Read the series (splitting mboxes, skipping cover letters), build every prefix, then judge them. */
export async function validateSeries(o: ValidateOptions): Promise<SeriesResult> {
  const progress = o.onProgress ?? (() => {});
  const dir = o.out ?? join(defaultResultsDir, `validate-series-${newRunId()}`);
  const series = await readPatchSeries(o.patches, join(dir, 'patches'));
  for (const s of series.skipped) progress(`skipped ${s.why}: ${s.subject} (${s.origin})`);
  const total = series.patches.length;
  const build = o.build ?? buildKernel;
  const common = { ...kernelSourceOptions(o), onProgress: progress };
  progress(`building the baseline kernel${o.line ? ` (line ${o.line})` : ''}`);
  const baseline = await build(common);
  const steps: SeriesKernels['steps'] = [];
  for (const p of series.patches) {
    progress(`building the kernel with patch${p.index > 1 ? `es 1-${p.index}` : ' 1'} of ${total}: ${p.subject}`);
    let kernel: KernelInfo;
    try {
      kernel = await build({ ...common, patches: series.patches.slice(0, p.index).map((x) => x.file) });
    } catch (e) {
      // A series must build at every patch (bisectability): say at which one it stops.
      if (e instanceof KernelBuildError)
        throw new ConfigError(
          `the series does not build at patch ${p.index}/${total} ("${p.subject}"): ${e.message}`,
          undefined,
          { cause: e },
        );
      throw e;
    }
    steps.push({
      patch: { index: p.index, total, subject: p.subject, file: p.file, origin: p.origin, sha256: p.sha256 },
      kernel,
    });
  }
  return validateSeriesKernels({ ...o, out: dir, baseline, steps, skipped: series.skipped });
}

function stepDirName(index: number, total: number): string {
  return `patch-${String(index).padStart(String(total).length, '0')}`;
}

/** The run, confirmation and recheck folders under `out`; reports in validate.txt, validate.html, series.json. */
export async function validateSeriesKernels(o: SeriesRunOptions): Promise<SeriesResult> {
  const progress = o.onProgress ?? (() => {});
  const reruns = o.confirmRuns ?? 2;
  const run = suiteRunner(o);
  const total = o.steps.length;
  progress(`baseline run on ${o.baseline.id}`);
  const base = await run(o.baseline, join(o.out, 'baseline'));
  const steps: SeriesStep[] = [];
  let parent: RunSummary = base.summary;
  for (const { patch, kernel } of o.steps) {
    const name = stepDirName(patch.index, total);
    progress(`patch ${patch.index}/${total} run on ${kernel.id}: ${patch.subject}`);
    const r = await run(kernel, join(o.out, name));
    const confirmDirs: string[] = [];
    const judged = await judgeAndConfirm(parent, r.summary, reruns, async (ids, i) => {
      progress(`patch ${patch.index}/${total}: confirmation rerun ${i + 1}/${reruns} of ${ids.length} case(s) with new findings`);
      const c = await run(kernel, join(o.out, `${name}-confirm-${i + 1}`), ids);
      confirmDirs.push(c.dir);
      return c.summary;
    });
    steps.push({ patch, kernel, summary: r.summary, dir: r.dir, confirmDirs, ...judged, notJudged: notJudged(r.summary) });
    parent = r.summary;
  }

  const findings = followSignatures(base.summary, steps);
  // A finding one patch introduced that the whole series does not show: rerun
  // its cases where it went away, so "hidden" does not rest on one run. The
  // findings gone at the same patch are rechecked together.
  const gone = new Map<number, SeriesFinding[]>();
  for (const f of findings) {
    if (f.introducedBy === undefined || f.seen[total]) continue;
    let by = total;
    while (by - 1 > f.introducedBy && !f.seen[by - 1]) by--;
    gone.set(by, [...(gone.get(by) ?? []), f]);
    f.hidden = { by, absentIn: 0, reruns, dirs: [] };
  }
  for (const [by, group] of [...gone].sort((a, b) => a[0] - b[0])) {
    const ids = [
      ...new Set(group.flatMap((f) => steps[f.introducedBy! - 1]!.introduced.find((v) => v.signature === f.signature)!.caseIds)),
    ];
    for (let i = 0; i < reruns; i++) {
      progress(
        `patch ${by}/${total}: rechecking ${group.length} finding(s) of earlier patches that are gone with it (${i + 1}/${reruns})`,
      );
      const c = await run(steps[by - 1]!.kernel, join(o.out, `${stepDirName(by, total)}-recheck-${i + 1}`), ids);
      const seen = failingSignatures(c.summary);
      for (const f of group) {
        f.hidden!.dirs.push(c.dir);
        if (!seen.has(f.signature)) f.hidden!.absentIn++;
      }
    }
  }

  const result: SeriesResult = {
    baseline: { kernel: o.baseline, summary: base.summary, dir: base.dir, notJudged: notJudged(base.summary) },
    steps,
    skipped: o.skipped ?? [],
    findings,
    dir: o.out,
  };
  const text = seriesReport(result);
  await writeJsonAtomic(join(o.out, 'series.json'), {
    baseline: { kernel: o.baseline, dir: base.dir, notJudged: result.baseline.notJudged },
    steps: steps.map(({ summary: _s, ...s }) => s),
    skipped: result.skipped,
    findings,
  });
  await writeFileAtomic(join(o.out, 'validate.txt'), text);
  await writeSeriesPage(result, text);
  return result;
}

/** Every failing signature of the main runs, followed from the baseline through each patch, with the first patch that introduced it. */
function followSignatures(baseline: RunSummary, steps: Array<Pick<SeriesStep, 'summary' | 'introduced'>>): SeriesFinding[] {
  const seenSets = [baseline, ...steps.map((s) => s.summary)].map((s) => failingSignatures(s));
  const all = new Set(seenSets.flatMap((m) => [...m.keys()]));
  const out: SeriesFinding[] = [];
  for (const signature of all) {
    const seen = seenSets.map((m) => m.has(signature));
    const first = steps.findIndex((s) => s.introduced.some((v) => v.signature === signature));
    out.push({ signature, seen, ...(first >= 0 ? { introducedBy: first + 1 } : {}) });
  }
  return out.sort(
    (a, b) => (a.introducedBy ?? Infinity) - (b.introducedBy ?? Infinity) || a.signature.localeCompare(b.signature),
  );
}

/** Does the patch get a Tested-by: it introduced no finding (flaky ones do not count, as for a single patch). */
export function patchPassed(s: SeriesStep): boolean {
  return s.introduced.length === 0;
}

function counts(s: RunSummary): string {
  return `${s.counts.pass} passed, ${s.counts.fail} failed, ${s.counts.error + s.counts.notReached} not run/reached`;
}

/** Where a signature stands after the series, in words. */
function findingFate(f: SeriesFinding, total: number): string {
  const seenOn = f.seen.flatMap((x, i) => (x ? [i === 0 ? 'baseline' : String(i)] : []));
  const where = `seen on: ${seenOn.join(', ')}`;
  if (f.introducedBy === undefined) {
    if (f.seen[0])
      return `on the baseline already${f.seen[total] ? '' : `, gone after patch ${f.seen.lastIndexOf(true) + 1}/${total}`} (${where})`;
    return `never confirmed on rerun (${where})`;
  }
  const intro = `INTRODUCED by patch ${f.introducedBy}/${total}`;
  if (f.seen[total]) return `${intro}, still there after patch ${total}/${total} (${where})`;
  const h = f.hidden;
  if (h && h.absentIn === h.reruns)
    return `${intro}, HIDDEN by patch ${h.by}/${total}: absent from its run and ${h.absentIn}/${h.reruns} rerun(s), so the whole series does not show it (${where})`;
  if (h)
    return `${intro}, missing from the run of patch ${h.by}/${total} but seen again on ${h.reruns - h.absentIn}/${h.reruns} rerun(s) there: not hidden, intermittent (${where})`;
  return `${intro}, absent from the whole series' run (${where})`;
}

/** The mail text: per patch what it introduced, removed or left; each finding's first patch; a Tested-by for each patch that introduced nothing. */
export function seriesReport(r: SeriesResult): string {
  const total = r.steps.length;
  const out = [
    ...seriesHeader(r),
    ...r.steps.flatMap((s) => patchSection(r, s)),
    '',
    `Findings, by the patch that first introduced them: ${r.findings.length}`,
    ...r.findings.map((f) => `  ${f.signature}: ${findingFate(f, total)}`),
    '',
    ...seriesResult(r),
    '',
    ...testedBy(r),
  ];
  return out.join('\n') + '\n';
}

/** What was tested: the baseline, the patches in order, the suite and the machine. */
function seriesHeader(r: SeriesResult): string[] {
  const total = r.steps.length;
  const last = r.steps.at(-1)!.summary;
  return [
    'qcrash validate --series: ext4 block-map -> extent migration crash test, patch by patch',
    '',
    `baseline: ${r.baseline.kernel.release} (${r.baseline.kernel.id})`,
    `series: ${total} patch(es), each built on top of the ones before it${r.skipped.length ? `; skipped ${r.skipped.length} mail(s) without a diff` : ''}`,
    ...r.steps.map((s) => `  ${s.patch.index}/${total} ${s.patch.subject}  (${s.kernel.id})`),
    ...r.skipped.map((s) => `  skipped (${s.why}): ${s.subject}`),
    `scenarios: ${last.scenarios.map((x) => x.name).join(', ')}`,
    `cases: ${[...new Set([r.baseline.summary, ...r.steps.map((x) => x.summary)].map((x) => x.counts.total))].join(' or ')} per kernel, seed ${last.seed}, qemu ${last.versions.qemu} (${last.accel}), e2fsprogs ${last.versions.e2fsprogs}`,
    `baseline: ${counts(r.baseline.summary)}`,
  ];
}

/** One patch's section: what it introduced, made flaky, removed or left, and which run it was judged against. */
function patchSection(r: SeriesResult, s: SeriesStep): string[] {
  const total = r.steps.length;
  const out = ['', `patch ${s.patch.index}/${total}: ${s.patch.subject}`, `  cases: ${counts(s.summary)}`];
  const section = (title: string, items: string[]) => {
    out.push(`  ${title}: ${items.length}`);
    for (const i of items) out.push(`    ${i}`);
  };
  section(
    s.introduced.length ? 'INTRODUCED by this patch (confirmed on rerun)' : 'introduced by this patch',
    s.introduced.map((v) => `${v.signature}  [${v.caseIds.join(', ')}]`),
  );
  section(
    'flaky (new, not seen on every rerun)',
    s.flaky.map((v) => `${v.signature}  (${v.confirmed}/${v.reruns} reruns)`),
  );
  section(
    'removed by this patch',
    s.removed.map((sig) => {
      const f = r.findings.find((x) => x.signature === sig);
      return f?.introducedBy !== undefined && f.introducedBy < s.patch.index
        ? `${sig}  (introduced by patch ${f.introducedBy}/${total})`
        : sig;
    }),
  );
  section('left as they were', s.unchanged);
  if (s.notJudged.length) section('not judged (error or not reached)', s.notJudged);
  // The baseline runs once per series: patch 1 is judged against it, every later patch against the run of the patch before it.
  out.push(
    `  judged against: ${s.patch.index === 1 ? `the baseline run ${r.baseline.dir}` : `patch ${s.patch.index - 1}/${total}'s run ${r.steps[s.patch.index - 2]?.dir ?? '?'}`}`,
  );
  return out;
}

/** The verdict on the series: no regression, or the patches that introduced findings and how many a later patch hides. */
function seriesResult(r: SeriesResult): string[] {
  const total = r.steps.length;
  const last = r.steps.at(-1)!.summary;
  const bad = r.steps.filter((s) => !patchPassed(s));
  const hidden = r.findings.filter((f) => f.hidden && f.hidden.absentIn === f.hidden.reruns);
  if (!bad.length)
    return [
      `Result: no regression. ${total} patch(es), ${last.counts.total} crash cases on each, ${last.scenarios.length} scenario(s), seed ${last.seed}.`,
    ];
  return [
    `Result: REGRESSION: ${bad.map((s) => `patch ${s.patch.index}/${total}`).join(', ')} introduced findings (see above).`,
    ...(hidden.length
      ? [
          `${hidden.length} finding(s) introduced on the way are hidden by a later patch: the kernel with the whole series does not show them.`,
        ]
      : []),
  ];
}

/** A Tested-by for each patch that introduced nothing, naming what it was tested on top of. */
function testedBy(r: SeriesResult): string[] {
  const total = r.steps.length;
  const good = r.steps.filter(patchPassed);
  if (!good.length) return ['No Tested-by: every patch introduced a finding.'];
  return [
    `Tested-by, for the patch(es) that introduced nothing (${good.map((s) => `${s.patch.index}/${total}`).join(', ')}):`,
    ...good.flatMap((s) => [
      '',
      `patch ${s.patch.index}/${total}: ${s.patch.subject}`,
      `Tested-by: qcrash (${s.summary.counts.total} crash states of ext4_ext_migrate, on top of ${s.patch.index > 2 ? `patches 1-${s.patch.index - 1} and ` : s.patch.index === 2 ? 'patch 1 and ' : ''}baseline ${r.baseline.kernel.release})`,
    ]),
  ];
}
