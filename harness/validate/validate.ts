import { join } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.ts';
import { defaultResultsDir } from '../util/paths.ts';
import { buildKernel } from '../kernel/build.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import { runSuite } from '../run/runner.ts';
import type { Reporter } from '../report/reporter.ts';
import type { RunSummary } from '../run/result.ts';
import { findingSignature } from '../compare/signature.ts';
import { newRunId } from '../run/store.ts';
import { writeValidateReport } from '../report/html/validate-report.ts';

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
}

export interface SignatureVerdict {
  signature: string;
  caseIds: string[];
  /** Seen in this many of the confirmation reruns. */
  confirmed: number;
  reruns: number;
  verdict: 'introduced' | 'flaky';
}

export interface ValidateResult {
  baseline: { kernel: KernelInfo; summary: RunSummary; dir: string };
  patched: { kernel: KernelInfo; summary: RunSummary; dir: string };
  introduced: SignatureVerdict[];
  flaky: SignatureVerdict[];
  removed: string[];
  unchanged: string[];
  dir: string;
}

function failingSignatures(s: RunSummary): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const c of s.cases) {
    // A case that errored or never reached its point on one kernel says nothing about findings.
    const sigs = c.status === 'error' || c.status === 'not-reached' ? [`${c.scenario} | ${c.pointLabel} | status | ${c.status}`] : c.failing.map((f) => findingSignature(c, f));
    for (const sig of sigs) m.set(sig, [...new Set([...(m.get(sig) ?? []), c.id])]);
  }
  return m;
}

/**
 * Baseline versus patched: build both kernels, run the same cases with the
 * same seed on each, and judge per finding signature. A signature new on the
 * patched kernel is rerun `confirmRuns` times on the patched kernel: seen
 * every time it is `introduced`, some of the time `flaky`.
 */
export async function validatePatch(o: ValidateOptions): Promise<ValidateResult> {
  const progress = o.onProgress ?? (() => {});
  const seed = o.seed ?? 1;
  const dir = o.out ?? join(defaultResultsDir, `validate-${newRunId()}`);
  const common = { ...(o.tree ? { tree: o.tree } : {}), ...(o.configs ? { configs: o.configs } : {}), onProgress: progress };
  progress('building the baseline kernel');
  const baseKernel = await buildKernel(common);
  progress('building the patched kernel');
  const patchedKernel = await buildKernel({ ...common, patches: o.patches });
  const run = (kernel: KernelInfo, out: string, filter?: string[]) =>
    runSuite({ inputs: o.scenarios, kernel, seed, out, ...(o.jobs ? { jobs: o.jobs } : {}), ...(filter ? { filter } : {}), ...(o.reporters ? { reporters: o.reporters } : {}), keep: 'failed' });
  progress(`baseline run on ${baseKernel.id}`);
  const baseline = await run(baseKernel, join(dir, 'baseline'));
  progress(`patched run on ${patchedKernel.id}`);
  const patched = await run(patchedKernel, join(dir, 'patched'));

  const before = failingSignatures(baseline.summary);
  const after = failingSignatures(patched.summary);
  // A case that errored or was not reached is not a finding of the patch: only real findings are judged.
  const isStatus = (sig: string) => sig.includes(' | status | ');
  const fresh = [...after.entries()].filter(([sig]) => !before.has(sig) && !isStatus(sig));
  const verdicts: SignatureVerdict[] = [];
  const reruns = o.confirmRuns ?? 2;
  for (let i = 0; i < reruns && fresh.length; i++) {
    progress(`confirmation rerun ${i + 1}/${reruns} of ${fresh.length} new signature(s)`);
    const ids = [...new Set(fresh.flatMap(([, ids]) => ids))];
    const again = await run(patchedKernel, join(dir, `confirm-${i + 1}`), ids);
    const seen = failingSignatures(again.summary);
    for (const [sig, caseIds] of fresh) {
      let v = verdicts.find((x) => x.signature === sig);
      if (!v) verdicts.push((v = { signature: sig, caseIds, confirmed: 0, reruns, verdict: 'introduced' }));
      if (seen.has(sig)) v.confirmed++;
    }
  }
  for (const v of verdicts) v.verdict = v.confirmed === v.reruns ? 'introduced' : 'flaky';
  if (!reruns) for (const [sig, caseIds] of fresh) verdicts.push({ signature: sig, caseIds, confirmed: 0, reruns: 0, verdict: 'introduced' });

  const result: ValidateResult = {
    baseline: { kernel: baseKernel, ...baseline },
    patched: { kernel: patchedKernel, ...patched },
    introduced: verdicts.filter((v) => v.verdict === 'introduced'),
    flaky: verdicts.filter((v) => v.verdict === 'flaky'),
    removed: [...before.keys()].filter((s) => !after.has(s)).sort(),
    unchanged: [...before.keys()].filter((s) => after.has(s)).sort(),
    dir,
  };
  await writeJsonAtomic(join(dir, 'validate.json'), { ...result, baseline: { kernel: baseKernel, dir: baseline.dir }, patched: { kernel: patchedKernel, dir: patched.dir } });
  await writeFileAtomic(join(dir, 'validate.txt'), validateReport(result));
  await writeValidateReport(result, validateReport(result));
  return result;
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
  out.push('');
  if (!r.introduced.length) {
    out.push(`Result: no regression. ${s.counts.total} crash cases, ${s.scenarios.length} scenario(s), seed ${s.seed}:`);
    out.push(`Tested-by: qcrash (${s.counts.total} crash states of ext4_ext_migrate, baseline ${r.baseline.kernel.release})`);
  } else out.push('Result: REGRESSION: the patch introduced findings (see above).');
  return out.join('\n') + '\n';
}
