import { hostname } from 'node:os';
import { defaultJobs } from './jobs.ts';
import { join, resolve } from 'node:path';
import pLimit from 'p-limit';
import { defaultResultsDir, scenariosDir } from '../util/paths.ts';
import { sweepStaleTempDirs } from '../util/tempdir.ts';
import { detectAccel } from '../doctor/accel.ts';
import { findScenarioFiles, loadScenario } from '../scenario/parse.ts';
import { expandCases } from '../scenario/expand.ts';
import type { CaseSpec, RecoveryMode, Scenario } from '../scenario/model.ts';
import { resolveKernel } from '../kernel/resolve.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import { buildInitramfs } from '../guest/initramfs.ts';
import { loadRecipe } from '../image/recipe.ts';
import { buildImage, type BaseImage } from '../image/build.ts';
import { ReporterHub, type Reporter } from '../report/reporter.ts';
import { writeRunReports } from '../report/run-files.ts';
import { runCase, type CaseEnv, type KeepPolicy } from './case-runner.ts';
import { newRunId, RunStore, type RunMeta } from './store.ts';
import type { CaseResult, RunSummary } from './result.ts';
import { toolVersions } from './versions.ts';
import { kernelPointDriverFactory, validateKernelPoints } from '../crash/kernel-driver.ts';
import { agentReadySnapshot } from '../vm/snapshot-cache.ts';

export interface RunOptions {
  inputs: string[];
  kernel: string | KernelInfo;
  jobs?: number;
  seed?: number;
  out?: string;
  keep?: KeepPolicy;
  resume?: string;
  /** Replace every scenario's recovery modes (e.g. only e2fsck for a quick run). */
  recovery?: RecoveryMode[];
  /** Only cases whose id contains one of these strings. */
  filter?: string[];
  reporters?: Reporter[];
  /** Start workload VMs from a saved agent-ready state (default true); false boots every VM. */
  snapshots?: boolean;
}

/** Everything a run needs before the first case: scenarios, kernel, initramfs, images. */
export async function prepareRun(opts: RunOptions): Promise<{ scenarios: Scenario[]; kernel: KernelInfo; env: CaseEnv }> {
  const files = await findScenarioFiles(opts.inputs.length ? opts.inputs : [scenariosDir]);
  let scenarios = await Promise.all(files.map((f) => loadScenario(f.file, { suite: f.suite })));
  if (opts.recovery) scenarios = scenarios.map((s) => ({ ...s, recovery: opts.recovery! }));
  const kernel = typeof opts.kernel === 'string' ? await resolveKernel(opts.kernel) : opts.kernel;
  const initrd = await buildInitramfs(kernel);
  await validateKernelPoints(kernel, initrd.path, scenarios.flatMap((s) => s.crashPoints.map((point) => ({ point, file: s.file }))));
  const images = new Map<string, BaseImage>();
  for (const r of new Set(scenarios.map((s) => s.recipe))) images.set(r, await buildImage(await loadRecipe(r)));
  const snapshots = new Map<string, string>();
  if (opts.snapshots !== false) {
    const accel = (await detectAccel()).accel;
    const qemu = (await toolVersions(kernel.release)).qemu;
    for (const [recipe, base] of images) snapshots.set(recipe, await agentReadySnapshot(kernel, initrd.path, base, accel, qemu));
  }
  const env: CaseEnv = { kernel, initrd: initrd.path, images, keep: opts.keep ?? 'failed', snapshots, kernelDriver: kernelPointDriverFactory(kernel, initrd.path) };
  return { scenarios, kernel, env };
}

/**
 * Run a suite: expand scenarios into cases, run up to `jobs` at once, write
 * each case as it finishes (so an interrupted run resumes where it stopped),
 * then the summary and the reports.
 */
export async function runSuite(opts: RunOptions): Promise<{ summary: RunSummary; dir: string }> {
  await sweepStaleTempDirs();
  const resumed = opts.resume ? await RunStore.open(opts.resume) : undefined;
  const seed = resumed?.meta.seed ?? opts.seed ?? Math.floor(Math.random() * 1e9);
  const inputs = resumed ? resumed.meta.scenarios.map((s) => s.file) : opts.inputs;
  const { scenarios, kernel, env } = await prepareRun({ ...opts, inputs });
  let cases = expandCases(scenarios, seed);
  if (opts.filter?.length) cases = cases.filter((c) => opts.filter!.some((f) => c.id.includes(f)));
  const accel = (await detectAccel()).accel;

  let store: RunStore;
  if (resumed) store = resumed;
  else {
    const runId = newRunId();
    const meta: RunMeta = {
      schema: 'qcrash-run/1',
      runId,
      startedAt: new Date().toISOString(),
      host: hostname(),
      kernel: { id: kernel.id, release: kernel.release, kind: kernel.kind, ...(kernel.provenance ? { provenance: kernel.provenance } : {}) },
      versions: await toolVersions(kernel.release),
      seed,
      accel,
      scenarios: scenarios.map((s) => ({ name: s.name, file: resolve(s.file), hash: s.hash, suite: s.suite })),
    };
    store = await RunStore.create(resolve(opts.out ?? join(defaultResultsDir, runId)), meta);
  }
  const done = resumed ? await store.completedCaseIds() : new Set<string>();
  const previous = resumed ? (await store.loadCases()).filter((c) => cases.some((x) => x.id === c.id)) : [];
  const todo = cases.filter((c) => !done.has(c.id));

  const hub = new ReporterHub(opts.reporters ?? []);
  await hub.onRunStart(store.meta, todo.length, todo);
  const limit = pLimit(Math.max(1, opts.jobs ?? defaultJobs()));
  const results: CaseResult[] = [...previous];
  await Promise.all(
    todo.map((spec: CaseSpec) =>
      limit(async () => {
        await hub.onCaseStart(spec);
        const r = await runCase(spec, env, store.caseDir(spec.id));
        await store.writeCase(r);
        results.push(r);
        await hub.onCaseEnd(r);
      }),
    ),
  );
  const summary = store.summary(results, true);
  await store.writeSummary(summary);
  await writeRunReports(store.dir, summary);
  await hub.onRunEnd(summary);
  return { summary, dir: store.dir };
}
