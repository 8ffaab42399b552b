import { join } from 'node:path';
import { sweepStaleTempDirs } from '../util/tempdir.ts';
import { onInterrupt } from '../util/cleanup.ts';
import type { Scenario } from '../scenario/model.ts';
import { userImageChanged } from '../image/user-image.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import { allowanceOnLine } from '../findings/finding.ts';
import { jobsOrDefault, MachinePool } from '../vm/machine/pool.ts';
import type { RunSummary } from '../results/run.ts';
import type { RunStore } from '../results/store.ts';
import { resolveKernel } from '../kernel/resolve.ts';
import { ReporterHub } from '../report/reporter.ts';
import { RunFilesReporter } from '../report/files.ts';
import { HtmlReportReporter } from '../report/html/run-report.ts';
import type { RunEnv } from './log-unit.ts';
import { allocatedBytes, loadScenarios, prepareRun } from './prepare.ts';
import { qcrashBuild } from './versions.ts';
import { checkNewRunDir, checkOutDir, checkOutSpace } from './out-dir.ts';
import { OutDirLock } from './out-lock.ts';
import { imageSuiteFile } from './image-suite.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import { CrashImageStore } from '../results/crash-images.ts';
import { e2fsckScratchSettled } from '../image/e2fsck.ts';
import { checkResumedInputs, resolveRunConfig, type ResolvedRun, type SuiteOptions } from './run-config.ts';
import { runPlan, selectCases, type CaseSelection } from './case-selection.ts';
import { createRunFolder } from './run-meta.ts';
import { casesInFlight, recordAndCheck } from './suite-session.ts';

export type { SuiteOptions } from './run-config.ts';
export interface RunOutcome {
  summary: RunSummary;
  dir: string;
  /** Reporters that failed (their output is missing): the run is not green. */
  reporterFailures: Array<{ reporter: string; error: string }>;
}

/**
 * Run a suite: resolve the run's configuration (new, or resumed from its
 * folder), load and select the cases, check and lock the results folder, prepare
 * kernel, images and snapshots, write the run's metadata, then record the
 * write-log units and check every case (each written as it finishes, so an
 * interrupted run resumes where it stopped), and finish with the summary;
 * every output goes through the reporters.
 */
export async function runSuite(opts: SuiteOptions): Promise<RunOutcome> {
  await sweepStaleTempDirs();
  const build = await qcrashBuild();
  const run = await resolveRunConfig(opts, build);
  // Everything about the input first: a bad scenario or a filter that
  // matches nothing costs no kernel, image or VM.
  const { scenarios, imageSuite } = await loadRunScenarios(run);
  const selection = selectCases(scenarios, run);
  if (!run.resumed) await checkOutDir(run.dir);
  // One run per folder for the run's whole life: a second one is refused before it prepares anything.
  await using _lock = await OutDirLock.acquire(run.dir, { resume: !!run.resumed });
  if (!run.resumed) await checkNewRunDir(run.dir);
  // A caller's own launcher (a test's fake) runs one job unless told otherwise.
  const jobs = jobsOrDefault(opts.jobs ?? (opts.machines ? 1 : undefined));
  const { kernel, env } = await prepareSuite(opts, run, selection, scenarios, jobs);
  // Known bugs are allowed on the lines they were confirmed on, so the
  // allowance is final only now: every case is judged after this point.
  for (const s of scenarios) s.allow = allowanceOnLine(s.allow, kernel.line);
  if (run.resumed) checkResumedInputs(run.resumed, run.config, scenarios, kernel, env?.images);
  const store =
    run.resumed?.store ??
    (await createRunFolder(run, {
      build,
      scenarios,
      kernel,
      ...(env ? { images: env.images } : {}),
      ...(selection.shard ? { shard: selection.shard } : {}),
      plan: runPlan(selection, run.config.filter),
    }));
  // The built-in set for --image is a scenario file like any other, kept with the run: rerun it, or copy it to start one's own.
  if (imageSuite) await writeFileAtomic(imageSuite.file, imageSuite.text);
  // Awaited here: the lock is released when this function returns, and must outlive the cases.
  return await checkAndReport(store, opts, { env, selection, scenarios, filter: run.config.filter ?? [] });
}

/**
 * What `runSuite` with these options would check, without building, booting
 * or writing anything (`qcrash run --list`): the kill cases and the
 * write-log recordings, whose crash states are known only once recorded.
 */
export async function listSuite(opts: SuiteOptions): Promise<CaseSelection> {
  const run = await resolveRunConfig(opts, await qcrashBuild());
  const { scenarios } = await loadRunScenarios(run);
  return selectCases(scenarios, run);
}

function loadRunScenarios(run: ResolvedRun): ReturnType<typeof loadScenarios> {
  const { config } = run;
  return loadScenarios(config.inputs, {
    ...(config.recovery ? { recovery: config.recovery } : {}),
    ...(config.image ? { image: config.image, imageSuitePath: join(run.dir, imageSuiteFile) } : {}),
  });
}

/**
 * Kernel, initramfs, images and snapshots for the selected cases, once the
 * results folder is known to hold them. Only a shard can be left with
 * nothing (more shards than units): it still writes its folder, so that
 * merge sees every shard, but builds and boots nothing.
 */
async function prepareSuite(
  opts: SuiteOptions,
  run: ResolvedRun,
  selection: CaseSelection,
  scenarios: Scenario[],
  jobs: number,
): Promise<{ kernel: KernelInfo; env?: RunEnv }> {
  // A resumed run takes its kernel from run.json, unless the caller hands one already resolved (checked against it afterwards).
  const kernel = opts.resume && typeof opts.kernel === 'string' ? run.config.kernel : opts.kernel;
  const { cases, units } = selection;
  if (!cases.length && !units.length) return { kernel: typeof kernel === 'string' ? await resolveKernel(kernel) : kernel };
  const { keep } = run.config;
  return prepareRun({
    scenarios,
    kernel,
    machines: opts.machines ?? new MachinePool({ slots: jobs }),
    keep,
    snapshots: run.config.snapshots,
    jobs,
    crashImages: new CrashImageStore(run.dir),
    ...(opts.beforeOracle ? { beforeOracle: opts.beforeOracle } : {}),
    ...(opts.missingSymbols ? { missingSymbols: opts.missingSymbols } : {}),
    beforeMachines: async (images) => {
      const imageBytes = Math.max(...(await Promise.all([...images.values()].map((b) => allocatedBytes(b.path)))));
      // A write-log unit holds its log (about an image's worth) and a working image per job while it runs.
      await checkOutSpace(run.dir, { cases: cases.length + units.length * 2, inFlight: casesInFlight(jobs), keep, imageBytes });
    },
  });
}

/** Record and check the cases, then the summary, every output through the reporters. */
async function checkAndReport(
  store: RunStore,
  opts: SuiteOptions,
  work: { env: RunEnv | undefined; selection: CaseSelection; scenarios: Scenario[]; filter: readonly string[] },
): Promise<RunOutcome> {
  const stopHint = onInterrupt(() =>
    process.stderr.write(
      `qcrash: the cases written so far are kept; finish the run with: ${opts.resumeHint ?? `qcrash run --resume ${store.dir}`}\n`,
    ),
  );
  const hub = new ReporterHub([...(opts.reporters ?? []), new RunFilesReporter(), new HtmlReportReporter()]);
  try {
    const results = await recordAndCheck({
      run: store,
      hub,
      ...(work.env ? { env: work.env } : {}),
      selection: work.selection,
      filter: work.filter,
      resuming: !!opts.resume,
    });
    await warnChangedImages(work.scenarios);
    const summary = await store.summary(results, true);
    await store.writeSummary(summary);
    await hub.onRunEnd(summary, store.dir);
    return { summary, dir: store.dir, reporterFailures: hub.failed };
  } finally {
    stopHint();
    // The run leaves no temp dir, even in a process that goes on (validate, nightly, tests).
    await e2fsckScratchSettled();
  }
}

/** A user's image that something else wrote to during the run: its cases may describe two filesystems. */
async function warnChangedImages(scenarios: readonly Scenario[]): Promise<void> {
  for (const image of new Set(scenarios.flatMap((s) => (s.image ? [s.image] : [])))) {
    if (await userImageChanged(image))
      process.stderr.write(
        `qcrash: ${image} changed during the run (not by qcrash, which only reads it): its cases may describe two filesystems; run again on an image nothing writes to\n`,
      );
  }
}
