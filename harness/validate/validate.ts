import { access, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.ts';
import { ConfigError, ExitCode } from '../util/errors.ts';
import { defaultResultsDir } from '../util/paths.ts';
import { buildKernel, type BuildOptions } from '../kernel/build.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import type { RunSummary } from '../results/run.ts';
import { formatSignature, signatureOf } from '../results/signature.ts';
import { loadSummary, newRunId } from '../results/store.ts';
import type { Reporter } from '../report/reporter.ts';
import { runSuite, type RunOutcome } from '../run/runner.ts';
import { mergeShards, unionRuns } from '../run/merge.ts';
import type { ShardSpec } from '../run/shard.ts';
import { logUnitIdOf } from '../scenario/model.ts';
import { writeValidateReport } from './validate-page.ts';
import { pasteBlock } from './paste-block.ts';
import type { SignatureCases, SignatureVerdict, ValidatePhases, ValidateResult } from './model.ts';

export type { SignatureCases, SignatureVerdict, ValidatePhases, ValidateResult } from './model.ts';

export interface ValidateOptions {
  patches: string[];
  /**
   * Kernel line ("6.1", "6.12", harness/kernel/lines.ts): the baseline and
   * patched kernels come from its Debian linux-source tarball (unless `tree`
   * is given) with its config fragments. Default 6.1.
   */
  line?: string;
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
  /**
   * A baseline run already made on this baseline kernel with the same suite
   * and seed (validate --mutants: one per kernel, shared by every patch):
   * judged against instead of running the baseline again.
   */
  baselineRun?: ValidateResult['baseline'];
  /**
   * --shard I/N: run only this part of the cases on both kernels and confirm
   * the part's new signatures; `qcrash merge` joins the shards and judges.
   */
  shard?: ShardSpec;
  /** Finish the validation in `out` (qcrash validate --resume): finished runs are kept, interrupted ones resumed. */
  resume?: boolean;
  /** Test seam: how the baseline and patched kernels are built (default buildKernel). */
  build?: (o: BuildOptions) => Promise<KernelInfo>;
}

/** The build options validate's kernels share: the line, the tree, the config fragments. */
export function kernelSourceOptions(o: Pick<ValidateOptions, 'line' | 'tree' | 'configs'>): BuildOptions {
  return {
    ...(o.line ? { line: o.line } : {}),
    ...(o.tree ? { tree: o.tree } : {}),
    ...(o.configs ? { configs: o.configs } : {}),
  };
}

/** What a validate shard leaves beside its runs, for `qcrash merge` (validate-shard.json). */
interface ValidateShardRecord {
  schema: 'qcrash-validate-shard/1';
  shard: { index: number; total: number };
  seed: number;
  reruns: number;
  baseline: KernelInfo;
  patched: KernelInfo;
  /** The confirm-N folders this shard made (none when its part had nothing new). */
  confirms: string[];
}

const validateShardFile = 'validate-shard.json';

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

/**
 * A plain validate's exit code: 1 when the patch introduced a finding;
 * otherwise 3 when a case could not be judged on the patched kernel (an
 * error, a point not reached): a regression could hide there, so the
 * result is not green; otherwise 0. A shard has no verdict of its own.
 */
export function validateExitCode(r: Pick<ValidateResult, 'introduced' | 'notJudged' | 'shard' | 'problems'>): number {
  if (r.shard) return ExitCode.pass;
  if (r.introduced.length) return ExitCode.failed;
  return r.notJudged.patched.length || r.problems?.length ? ExitCode.infrastructure : ExitCode.pass;
}

export function notJudged(s: RunSummary): string[] {
  return s.cases
    .filter((c) => c.status === 'error' || c.status === 'not-reached' || c.status === 'not-run')
    .map((c) => c.id)
    .sort();
}

/** Baseline against patched, by signature: new on the patched kernel, gone from it, or on both. */
export function judge(
  baseline: RunSummary,
  patched: RunSummary,
): { fresh: SignatureCases[]; removed: string[]; unchanged: string[] } {
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
export async function confirm(
  fresh: SignatureCases[],
  reruns: number,
  rerun: (caseIds: string[], i: number) => Promise<RunSummary>,
): Promise<SignatureVerdict[]> {
  const verdicts: SignatureVerdict[] = fresh.map((f) => ({ ...f, confirmed: 0, reruns, verdict: 'introduced' }));
  if (!fresh.length) return verdicts;
  for (let i = 0; i < reruns; i++) {
    const seen = failingSignatures(await rerun([...new Set(fresh.flatMap((f) => f.caseIds))], i));
    for (const v of verdicts) if (seen.has(v.signature)) v.confirmed++;
  }
  for (const v of verdicts) v.verdict = v.confirmed === v.reruns ? 'introduced' : 'flaky';
  return verdicts;
}

/** What every run of one validation shares: scenarios, seed, jobs, reporters, machines. */
export type SuiteSettings = Pick<
  ValidateOptions,
  'scenarios' | 'seed' | 'jobs' | 'reporters' | 'machines' | 'snapshots' | 'shard' | 'resume'
> & {
  /** What Ctrl-C says finishes the validation. */
  resumeHint?: string;
};

/** A run of the validate suite on a kernel into a folder, optionally only some cases (write-log states by their whole unit: rerunFilter): the same cases and seed every time. */
export type SuiteRun = (kernel: KernelInfo, out: string, filter?: string[]) => Promise<RunOutcome>;

export function suiteRunner(o: SuiteSettings): SuiteRun {
  return async (kernel, out, filter) => {
    const earlier = o.resume ? await earlierRun(out) : undefined;
    if (earlier === 'finished') return { summary: await loadSummary(out), dir: resolve(out), reporterFailures: [] };
    if (earlier === 'interrupted')
      return runSuite({
        inputs: [],
        kernel,
        resume: out,
        ...(o.jobs ? { jobs: o.jobs } : {}),
        ...(o.reporters ? { reporters: o.reporters } : {}),
        ...(o.machines ? { machines: o.machines } : {}),
        ...(o.resumeHint ? { resumeHint: o.resumeHint } : {}),
      });
    return runSuite({
      inputs: o.scenarios,
      kernel,
      seed: o.seed ?? 1,
      out,
      keep: 'failed',
      // A kill point one kernel lacks (its inlining differs) leaves that kernel's cases not judged; it never ends the validate.
      missingSymbols: 'not-judged',
      ...(o.jobs ? { jobs: o.jobs } : {}),
      ...(filter ? { filter: rerunFilter(filter) } : o.shard ? { shard: o.shard } : {}),
      ...(o.reporters ? { reporters: o.reporters } : {}),
      ...(o.machines ? { machines: o.machines } : {}),
      ...(o.snapshots !== undefined ? { snapshots: o.snapshots } : {}),
      ...(o.resumeHint ? { resumeHint: o.resumeHint } : {}),
    });
  };
}

/** On --resume, what an earlier session left in a run's folder: a finished run (its summary), one to finish, or none. */
async function earlierRun(out: string): Promise<'finished' | 'interrupted' | undefined> {
  const has = (f: string) =>
    access(join(out, f)).then(
      () => true,
      () => false,
    );
  if (await has('summary.json')) return 'finished';
  return (await has('run.json')) ? 'interrupted' : undefined;
}

/** A patched run judged against its parent's: new signatures confirmed by rerunning them on the patched kernel. */
export async function judgeAndConfirm(
  parent: RunSummary,
  patched: RunSummary,
  reruns: number,
  rerun: (caseIds: string[], i: number) => Promise<RunSummary>,
): Promise<{ introduced: SignatureVerdict[]; flaky: SignatureVerdict[]; removed: string[]; unchanged: string[] }> {
  const j = judge(parent, patched);
  const verdicts = await confirm(j.fresh, reruns, rerun);
  return {
    introduced: verdicts.filter((v) => v.verdict === 'introduced'),
    flaky: verdicts.filter((v) => v.verdict === 'flaky'),
    removed: j.removed,
    unchanged: j.unchanged,
  };
}

/**
 * The --filter of a confirmation rerun: a kill case by its id, a write-log
 * state by its whole unit (`<scenario>/log/r<rep>`): the rerun records a
 * new log, whose states need not have the same names, and the signature
 * (state kind, not name) is what must come back.
 */
export function rerunFilter(caseIds: readonly string[]): string[] {
  return [...new Set(caseIds.map((id) => logUnitIdOf(id) ?? id))];
}

/**
 * Baseline versus patched on two given kernels: the same cases with the
 * same seed on each, judged per finding signature, new ones confirmed by
 * rerunning them on the patched kernel.
 */
export async function validateKernels(
  o: Omit<ValidateOptions, 'patches' | 'tree' | 'configs'> & {
    baseline: KernelInfo;
    patched: KernelInfo;
    buildPhases?: Pick<ValidatePhases, 'buildBaselineMs' | 'buildPatchedMs'>;
    startedAt?: number;
  },
): Promise<ValidateResult> {
  const started = o.startedAt ?? performance.now();
  const progress = o.onProgress ?? (() => {});
  const dir = o.out ?? join(defaultResultsDir, `validate-${newRunId()}`);
  const seed = o.seed ?? 1;
  // With --shard, the baseline and patched runs are sharded; a confirmation
  // rerun runs the shard's own new cases, which are all in its part already.
  const run = suiteRunner({ ...o, resumeHint: `qcrash validate --resume ${resolve(dir)}` });
  const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
    const t0 = performance.now();
    const v = await f();
    return [v, Math.round(performance.now() - t0)];
  };
  const shared = o.baselineRun?.kernel.id === o.baseline.id ? o.baselineRun : undefined;
  if (shared) progress(`baseline: the run ${shared.dir} on ${o.baseline.id}, shared by every patch`);
  else progress(`baseline run on ${o.baseline.id}`);
  const [baseline, baselineRunMs] = shared
    ? [{ summary: shared.summary, dir: shared.dir }, 0]
    : await timed(() => run(o.baseline, join(dir, 'baseline')));
  progress(`patched run on ${o.patched.id}`);
  const [patched, patchedRunMs] = await timed(() => run(o.patched, join(dir, 'patched')));
  const reruns = o.confirmRuns ?? 2;
  const [judged, confirmMs] = await timed(() =>
    judgeAndConfirm(baseline.summary, patched.summary, reruns, async (ids, i) => {
      progress(`confirmation rerun ${i + 1}/${reruns} of ${ids.length} case(s) with new findings`);
      return (await run(o.patched, join(dir, `confirm-${i + 1}`), ids)).summary;
    }),
  );
  const result: ValidateResult = {
    baseline: { kernel: o.baseline, summary: baseline.summary, dir: baseline.dir, ...(shared ? { shared: true } : {}) },
    patched: { kernel: o.patched, summary: patched.summary, dir: patched.dir },
    ...judged,
    notJudged: { baseline: notJudged(baseline.summary), patched: notJudged(patched.summary) },
    dir,
    ...(o.shard ? { shard: { index: o.shard.index, total: o.shard.total } } : {}),
    phases: { ...o.buildPhases, baselineRunMs, patchedRunMs, confirmMs, totalMs: Math.round(performance.now() - started) },
  };
  if (o.shard) {
    // A part judges nothing for the whole: a signature new in this part may be
    // on the baseline in another. merge judges; this records what to merge.
    const record: ValidateShardRecord = {
      schema: 'qcrash-validate-shard/1',
      shard: { index: o.shard.index, total: o.shard.total },
      seed,
      reruns,
      baseline: o.baseline,
      patched: o.patched,
      confirms:
        judged.introduced.length + judged.flaky.length ? Array.from({ length: reruns }, (_, i) => `confirm-${i + 1}`) : [],
    };
    await writeJsonAtomic(join(dir, validateShardFile), record);
    return result;
  }
  await writeJsonAtomic(join(dir, 'validate.json'), {
    ...result,
    baseline: { kernel: o.baseline, dir: baseline.dir },
    patched: { kernel: o.patched, dir: patched.dir },
  });
  await writeFileAtomic(join(dir, 'validate.txt'), validateReport(result));
  await writeValidateReport(result, validateReport(result));
  return result;
}

async function readShardRecord(dir: string): Promise<ValidateShardRecord> {
  const file = join(dir, validateShardFile);
  let r: ValidateShardRecord;
  try {
    r = JSON.parse(await readFile(file, 'utf8')) as ValidateShardRecord;
  } catch (e) {
    throw new ConfigError(
      `merge: ${file} cannot be read (${(e as Error).message}): is ${dir} the --out of a qcrash validate --shard?`,
    );
  }
  if (r?.schema !== 'qcrash-validate-shard/1' || !r.shard || !r.baseline?.id || !r.patched?.id || !Array.isArray(r.confirms)) {
    throw new ConfigError(`merge: ${file} is not a validate shard record (qcrash-validate-shard/1)`);
  }
  return r;
}

/**
 * The shards of one sharded validate as one validate: the baseline shards
 * and the patched shards merged as runs (merge refuses different kernels,
 * seeds or case lists and makes missing cases errors), the shards'
 * confirmation reruns joined per rerun, then the same judgement as an
 * unsharded validate. A signature new in the whole is new in every part that
 * showed it (a part's baseline is part of the whole's), so every such part
 * has rerun its cases. Exit: 1 when a finding was introduced, 3 when a part
 * is missing (the result is incomplete, never a Tested-by), else 0.
 */
export async function mergeValidateShards(o: {
  out: string;
  dirs: string[];
}): Promise<{ result: ValidateResult; problems: string[]; warnings: string[]; exitCode: number }> {
  const out = resolve(o.out);
  if (
    await access(join(out, 'validate.json')).then(
      () => true,
      () => false,
    )
  )
    throw new ConfigError(`merge: ${o.out} already holds a validate result; choose another OUT`);
  const records = await Promise.all(o.dirs.map(readShardRecord));
  const r0 = records[0]!;
  for (const [i, r] of records.entries()) {
    const differs =
      r.baseline.id !== r0.baseline.id
        ? `baseline kernels (${r0.baseline.id} vs ${r.baseline.id})`
        : r.patched.id !== r0.patched.id
          ? `patched kernels (${r0.patched.id} vs ${r.patched.id})`
          : r.reruns !== r0.reruns
            ? `--confirm counts (${r0.reruns} vs ${r.reruns})`
            : undefined;
    if (differs)
      throw new ConfigError(
        `merge: ${o.dirs[0]} and ${o.dirs[i]} are shards of different validations, with different ${differs}`,
      );
  }
  const baseline = await mergeShards({ out: join(out, 'baseline'), dirs: o.dirs.map((d) => join(d, 'baseline')) });
  const patched = await mergeShards({ out: join(out, 'patched'), dirs: o.dirs.map((d) => join(d, 'patched')) });
  const j = judge(baseline.summary, patched.summary);
  const verdicts = await confirm(j.fresh, r0.reruns, async (_ids, i) => {
    const name = `confirm-${i + 1}`;
    const parts = o.dirs.filter((_, k) => records[k]!.confirms.includes(name)).map((d) => join(d, name));
    // Every part that has a signature new in the whole reran it; a rerun no part made saw nothing.
    if (!parts.length) return { ...patched.summary, cases: [] };
    return unionRuns({ out: join(out, name), dirs: parts });
  });
  const problems = [
    ...new Set([...baseline.problems.map((p) => `baseline: ${p}`), ...patched.problems.map((p) => `patched: ${p}`)]),
  ];
  const result: ValidateResult = {
    baseline: { kernel: r0.baseline, summary: baseline.summary, dir: baseline.dir },
    patched: { kernel: r0.patched, summary: patched.summary, dir: patched.dir },
    introduced: verdicts.filter((v) => v.verdict === 'introduced'),
    flaky: verdicts.filter((v) => v.verdict === 'flaky'),
    removed: j.removed,
    unchanged: j.unchanged,
    notJudged: { baseline: notJudged(baseline.summary), patched: notJudged(patched.summary) },
    dir: out,
    ...(problems.length ? { problems } : {}),
  };
  await writeJsonAtomic(join(out, 'validate.json'), {
    ...result,
    baseline: { kernel: r0.baseline, dir: baseline.dir },
    patched: { kernel: r0.patched, dir: patched.dir },
    shards: o.dirs.map((d) => resolve(d)),
  });
  await writeFileAtomic(join(out, 'validate.txt'), validateReport(result));
  await writeValidateReport(result, validateReport(result));
  const exitCode = validateExitCode(result);
  return { result, problems, warnings: [...baseline.warnings, ...patched.warnings], exitCode };
}

/** What `qcrash validate --resume OUT` needs to finish a validation: its inputs, kept in OUT/validate-args.json. */
export type ValidateArgs = Pick<
  ValidateOptions,
  'patches' | 'line' | 'tree' | 'configs' | 'scenarios' | 'seed' | 'confirmRuns' | 'shard'
>;
const validateArgsFile = 'validate-args.json';

export async function readValidateArgs(dir: string): Promise<ValidateArgs> {
  const file = join(dir, validateArgsFile);
  try {
    const a = JSON.parse(await readFile(file, 'utf8')) as ValidateArgs;
    if (!Array.isArray(a.patches) || !Array.isArray(a.scenarios)) throw new Error('no patches or scenarios');
    return a;
  } catch (e) {
    throw new ConfigError(
      `--resume ${dir}: ${file} cannot be read (${(e as Error).message}): is ${dir} the --out of a qcrash validate --patch (not --series or --mutants)?`,
    );
  }
}

/** Build the baseline and patched kernels (incrementally, from the cache), then validate them. */
export async function validatePatch(o: ValidateOptions): Promise<ValidateResult> {
  const out = resolve(o.out ?? join(defaultResultsDir, `validate-${newRunId()}`));
  if (!o.resume) {
    const args: ValidateArgs = {
      patches: o.patches.map((p) => resolve(p)),
      scenarios: o.scenarios.map((s) => resolve(s)),
      ...(o.line ? { line: o.line } : {}),
      ...(o.tree ? { tree: resolve(o.tree) } : {}),
      ...(o.configs ? { configs: o.configs.map((c) => resolve(c)) } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(o.confirmRuns !== undefined ? { confirmRuns: o.confirmRuns } : {}),
      ...(o.shard ? { shard: o.shard } : {}),
    };
    await writeJsonAtomic(join(out, validateArgsFile), args);
  }
  return buildAndValidate({ ...o, out });
}

async function buildAndValidate(o: ValidateOptions): Promise<ValidateResult> {
  const progress = o.onProgress ?? (() => {});
  const build = o.build ?? buildKernel;
  const common = { ...kernelSourceOptions(o), onProgress: progress };
  const startedAt = performance.now();
  progress(`building the baseline kernel${o.line ? ` (line ${o.line})` : ''}`);
  const baseline = await build(common);
  const buildBaselineMs = Math.round(performance.now() - startedAt);
  progress('building the patched kernel');
  const patched = await build({ ...common, patches: o.patches });
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
  out.push(`judged against: the baseline run ${r.baseline.dir}${r.baseline.shared ? ' (made once, shared by every patch)' : ''}`);
  const s = r.patched.summary;
  out.push(`scenarios: ${s.scenarios.map((x) => x.name).join(', ')}`);
  // Write-log states come from each kernel's own log: the two runs may check different numbers of them.
  const b = r.baseline.summary.counts.total;
  out.push(
    `cases: ${b === s.counts.total ? `${b} per kernel` : `${b} on the baseline, ${s.counts.total} patched (write-log states come from each kernel's own log)`}, seed ${s.seed}, qemu ${s.versions.qemu} (${s.accel}), e2fsprogs ${s.versions.e2fsprogs}`,
  );
  out.push(
    `baseline: ${r.baseline.summary.counts.pass} passed, ${r.baseline.summary.counts.fail} failed, ${r.baseline.summary.counts.error + r.baseline.summary.counts.notReached} not run/reached`,
  );
  out.push(`patched:  ${s.counts.pass} passed, ${s.counts.fail} failed, ${s.counts.error + s.counts.notReached} not run/reached`);
  out.push('');
  const section = (title: string, items: string[]) => {
    out.push(`${title}: ${items.length}`);
    for (const i of items) out.push(`  ${i}`);
  };
  section(
    'INTRODUCED by the patch (confirmed on rerun)',
    r.introduced.map((v) => `${v.signature}  [${v.caseIds.join(', ')}]`),
  );
  section(
    'flaky (new, not seen on every rerun)',
    r.flaky.map((v) => `${v.signature}  (${v.confirmed}/${v.reruns} reruns)`),
  );
  section('removed by the patch', r.removed);
  section('unchanged', r.unchanged);
  if (r.notJudged.patched.length) section('not judged on the patched kernel (error or not reached)', r.notJudged.patched);
  if (r.problems?.length) section('MISSING parts (merged from shards)', r.problems);
  out.push('');
  if (r.shard) {
    out.push(`Result: shard ${r.shard.index}/${r.shard.total} only; the verdict is qcrash merge's over every shard.`);
  } else if (!r.introduced.length && r.problems?.length) {
    out.push('Result: INCOMPLETE: parts of the validation are missing (see above); no verdict.');
  } else if (!r.introduced.length && r.notJudged.patched.length) {
    out.push(
      `Result: INCOMPLETE: no finding introduced in the cases judged, but ${r.notJudged.patched.length} case(s) could not be judged on the patched kernel (listed above): nothing is claimed for them; rerun them (--resume, or run those scenarios again).`,
    );
  } else if (!r.introduced.length) {
    out.push(`Result: no regression. ${s.counts.total} crash cases, ${s.scenarios.length} scenario(s), seed ${s.seed}:`);
    out.push(`Tested-by: qcrash (${s.counts.total} crash states of ext4_ext_migrate, baseline ${r.baseline.kernel.release})`);
  } else out.push('Result: REGRESSION: the patch introduced findings (see above).');
  const block = pasteBlock(r);
  if (block.length) out.push('', "For the patch's mail, under its '---' line:", '', ...block);
  return out.join('\n') + '\n';
}
