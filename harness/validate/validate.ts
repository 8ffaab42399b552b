import { join } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.ts';
import { defaultResultsDir } from '../util/paths.ts';
import { buildKernel } from '../kernel/build.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import type { RunSummary } from '../results/run.ts';
import { formatSignature, signatureOf, type Signature } from '../results/signature.ts';
import { newRunId } from '../results/store.ts';
import type { Reporter } from '../report/reporter.ts';
import { runSuite } from '../run/runner.ts';
import { writeValidateReport } from './validate-page.ts';
import type { SignatureCases, SignatureVerdict, ValidatePhases, ValidateResult } from './model.ts';

export type { SignatureCases, SignatureVerdict, ValidatePhases, ValidateResult } from './model.ts';

export interface ValidateOptions {
  patches: string[];
  tree?: string;
  configs?: string[];
  scenarios: string[];
  seed?: number;
  jobs?: number;
  /** How many times a case with a new finding is rerun on the patched kernel to confirm it. */
  confirmRuns?: number;
  out?: string;
  reporters?: Reporter[];
  onProgress?: (line: string) => void;
  /** Where machines come from (tests pass a fake). */
  machines?: MachineLauncher;
  /** Restore workload VMs from agent-ready snapshots (default true). */
  snapshots?: boolean;
}

/**
 * The failing signatures of a run. Only cases that ran count: a case that
 * errored or did not reach its point on one kernel says nothing about the
 * patch (it is listed in notJudged instead).
 */
export function failingSignatures(s: RunSummary): Map<string, SignatureCases> {
  const m = new Map<string, SignatureCases>();
  for (const c of s.cases) {
    if (c.status === 'error' || c.status === 'not-reached') continue;
    for (const f of c.failing) {
      const sig = signatureOf(c, f);
      const key = formatSignature(sig);
      const e = m.get(key) ?? { signature: key, sig, caseIds: [] };
      if (!e.caseIds.includes(c.id)) e.caseIds.push(c.id);
      m.set(key, e);
    }
  }
  return m;
}

export function notJudged(s: RunSummary): string[] {
  return s.cases.filter((c) => c.status === 'error' || c.status === 'not-reached').map((c) => c.id).sort();
}

/** Baseline against patched, by signature: new on the patched kernel, gone from it, or on both. */
export function judge(baseline: RunSummary, patched: RunSummary): { fresh: SignatureCases[]; removed: string[]; unchanged: string[] } {
  const before = failingSignatures(baseline);
  const after = failingSignatures(patched);
  return {
    fresh: [...after.values()].filter((x) => !before.has(x.signature)),
    removed: [...before.keys()].filter((k) => !after.has(k)).sort(),
    unchanged: [...before.keys()].filter((k) => after.has(k)).sort(),
  };
}

/**
 * Rerun the cases of each new signature `reruns` times on the patched
 * kernel: seen on every rerun it is `introduced`, on some of them `flaky`.
 * With no reruns, every new signature counts as introduced.
 */
export async function confirm(fresh: SignatureCases[], reruns: number, rerun: (caseIds: string[], i: number) => Promise<RunSummary>): Promise<SignatureVerdict[]> {
  const verdicts: SignatureVerdict[] = fresh.map((f) => ({ ...f, confirmed: 0, reruns, verdict: 'introduced' }));
  if (!fresh.length) return verdicts;
  for (let i = 0; i < reruns; i++) {
    const seen = failingSignatures(await rerun([...new Set(fresh.flatMap((f) => f.caseIds))], i));
    for (const v of verdicts) if (seen.has(v.signature)) v.confirmed++;
  }
  for (const v of verdicts) v.verdict = v.confirmed === v.reruns ? 'introduced' : 'flaky';
  return verdicts;
}

/**
 * Baseline versus patched on two given kernels: the same cases with the
 * same seed on each, judged per finding signature, new ones confirmed by
 * rerunning them on the patched kernel.
 */
export async function validateKernels(o: Omit<ValidateOptions, 'patches' | 'tree' | 'configs'> & { baseline: KernelInfo; patched: KernelInfo; buildPhases?: Pick<ValidatePhases, 'buildBaselineMs' | 'buildPatchedMs'>; startedAt?: number }): Promise<ValidateResult> {
  const started = o.startedAt ?? performance.now();
  const progress = o.onProgress ?? (() => {});
  const seed = o.seed ?? 1;
  const dir = o.out ?? join(defaultResultsDir, `validate-${newRunId()}`);
  const run = async (kernel: KernelInfo, out: string, filter?: string[]) =>
    (
      await runSuite({
        inputs: o.scenarios,
        kernel,
        seed,
        out,
        keep: 'failed',
        ...(o.jobs ? { jobs: o.jobs } : {}),
        ...(filter ? { filter } : {}),
        ...(o.reporters ? { reporters: o.reporters } : {}),
        ...(o.machines ? { machines: o.machines } : {}),
        ...(o.snapshots !== undefined ? { snapshots: o.snapshots } : {}),
      })
    );
  const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
    const t0 = performance.now();
    const v = await f();
    return [v, Math.round(performance.now() - t0)];
  };
  progress(`baseline run on ${o.baseline.id}`);
  const [baseline, baselineRunMs] = await timed(() => run(o.baseline, join(dir, 'baseline')));
  progress(`patched run on ${o.patched.id}`);
  const [patched, patchedRunMs] = await timed(() => run(o.patched, join(dir, 'patched')));
  const j = judge(baseline.summary, patched.summary);
  const reruns = o.confirmRuns ?? 2;
  const [verdicts, confirmMs] = await timed(() =>
    confirm(j.fresh, reruns, async (ids, i) => {
      progress(`confirmation rerun ${i + 1}/${reruns} of ${j.fresh.length} new signature(s)`);
      return (await run(o.patched, join(dir, `confirm-${i + 1}`), ids)).summary;
    }),
  );
  const result: ValidateResult = {
    baseline: { kernel: o.baseline, summary: baseline.summary, dir: baseline.dir },
    patched: { kernel: o.patched, summary: patched.summary, dir: patched.dir },
    introduced: verdicts.filter((v) => v.verdict === 'introduced'),
    flaky: verdicts.filter((v) => v.verdict === 'flaky'),
    removed: j.removed,
    unchanged: j.unchanged,
    notJudged: { baseline: notJudged(baseline.summary), patched: notJudged(patched.summary) },
    dir,
    phases: { ...o.buildPhases, baselineRunMs, patchedRunMs, confirmMs, totalMs: Math.round(performance.now() - started) },
  };
  await writeJsonAtomic(join(dir, 'validate.json'), { ...result, baseline: { kernel: o.baseline, dir: baseline.dir }, patched: { kernel: o.patched, dir: patched.dir } });
  await writeFileAtomic(join(dir, 'validate.txt'), validateReport(result));
  await writeValidateReport(result, validateReport(result));
  return result;
}

/** Build the baseline and patched kernels (incrementally, from the cache), then validate them. */
export async function validatePatch(o: ValidateOptions): Promise<ValidateResult> {
  const progress = o.onProgress ?? (() => {});
  const common = { ...(o.tree ? { tree: o.tree } : {}), ...(o.configs ? { configs: o.configs } : {}), onProgress: progress };
  const startedAt = performance.now();
  progress('building the baseline kernel');
  const baseline = await buildKernel(common);
  const buildBaselineMs = Math.round(performance.now() - startedAt);
  progress('building the patched kernel');
  const patched = await buildKernel({ ...common, patches: o.patches });
  const buildPatchedMs = Math.round(performance.now() - startedAt - buildBaselineMs);
  return validateKernels({ ...o, baseline, patched, buildPhases: { buildBaselineMs, buildPatchedMs }, startedAt });
}

/** The plain-text report for the mail; the Tested-by style line only when nothing regressed. */
export function validateReport(r: ValidateResult): string {
  const pp = r.patched.kernel.provenance as { patches?: Array<{ subject: string; file: string }> } | undefined;
  const out: string[] = [];
  out.push('qcrash validate: ext4 block-map -> extent migration crash test');
  out.push('');
  out.push(`baseline: ${r.baseline.kernel.release} (${r.baseline.kernel.id})`);
  out.push(`patched:  ${r.patched.kernel.release} (${r.patched.kernel.id})`);
  for (const p of pp?.patches ?? []) out.push(`  patch: ${p.subject}`);
  const s = r.patched.summary;
  out.push(`scenarios: ${s.scenarios.map((x) => x.name).join(', ')}`);
  out.push(`cases: ${s.counts.total} per kernel, seed ${s.seed}, qemu ${s.versions.qemu} (${s.accel}), e2fsprogs ${s.versions.e2fsprogs}`);
  out.push(`baseline: ${r.baseline.summary.counts.pass} passed, ${r.baseline.summary.counts.fail} failed, ${r.baseline.summary.counts.error + r.baseline.summary.counts.notReached} not run/reached`);
  out.push(`patched:  ${s.counts.pass} passed, ${s.counts.fail} failed, ${s.counts.error + s.counts.notReached} not run/reached`);
  out.push('');
  const section = (title: string, items: string[]) => {
    out.push(`${title}: ${items.length}`);
    for (const i of items) out.push(`  ${i}`);
  };
  section('INTRODUCED by the patch (confirmed on rerun)', r.introduced.map((v) => `${v.signature}  [${v.caseIds.join(', ')}]`));
  section('flaky (new, not seen on every rerun)', r.flaky.map((v) => `${v.signature}  (${v.confirmed}/${v.reruns} reruns)`));
  section('removed by the patch', r.removed);
  section('unchanged', r.unchanged);
  if (r.notJudged.patched.length) section('not judged on the patched kernel (error or not reached)', r.notJudged.patched);
  out.push('');
  if (!r.introduced.length) {
    out.push(`Result: no regression. ${s.counts.total} crash cases, ${s.scenarios.length} scenario(s), seed ${s.seed}:`);
    out.push(`Tested-by: qcrash (${s.counts.total} crash states of ext4_ext_migrate, baseline ${r.baseline.kernel.release})`);
  } else out.push('Result: REGRESSION: the patch introduced findings (see above).');
  return out.join('\n') + '\n';
}
