import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { access } from 'node:fs/promises';
import pLimit from 'p-limit';
import { defaultResultsDir } from '../util/paths.ts';
import { sweepStaleTempDirs } from '../util/tempdir.ts';
import { ConfigError, InfraError } from '../util/errors.ts';
import { onInterrupt } from '../util/cleanup.ts';
import { expandCases } from '../scenario/expand.ts';
import type { CaseSpec, RecoveryMode, Scenario } from '../scenario/model.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import { MachinePool } from '../vm/machine/pool.ts';
import { detectAccel } from '../vm/machine/accel.ts';
import type { CaseResult } from '../results/case.ts';
import type { RunConfig, RunMeta, RunSummary } from '../results/run.ts';
import { newRunId, RunStore } from '../results/store.ts';
import { ReporterHub, type Reporter } from '../report/reporter.ts';
import { RunFilesReporter } from '../report/files.ts';
import { HtmlReportReporter } from '../report/html/run-report.ts';
import { defaultKeep, runCase, type CaseEnv, type KeepPolicy } from './case-runner.ts';
import { allocatedBytes, loadScenarios, prepareRun } from './prepare.ts';
import { qcrashBuild, toolVersions } from './versions.ts';
import { checkOutDir, checkOutSpace } from './out-dir.ts';
import { CrashImageStore } from '../results/crash-images.ts';

export interface RunOptions {
  inputs: string[];
  /** --kernel: stock, a built kernel id, a bzImage path; or a kernel already resolved (validate, bisect). */
  kernel: string | KernelInfo;
  jobs?: number;
  seed?: number;
  out?: string;
  keep?: KeepPolicy;
  /** Finish the run in this folder, as its run.json configured it. */
  resume?: string;
  /** Replace every scenario's recovery modes (e.g. only e2fsck for a quick run). */
  recovery?: RecoveryMode[];
  /** Only cases whose id contains one of these strings. */
  filter?: string[];
  /** Reporters besides the run folder's files (which every run writes). */
  reporters?: Reporter[];
  /** Start workload VMs from a saved agent-ready state (default true); false boots every VM. */
  snapshots?: boolean;
  /** Where machines come from (default: a MachinePool of QEMU VMs with `jobs` slots); tests pass a fake. */
  machines?: MachineLauncher;
  /** Test seam: see CaseEnv.beforeOracle. */
  beforeOracle?: CaseEnv['beforeOracle'];
}

export interface RunOutcome {
  summary: RunSummary;
  dir: string;
  /** Reporters that failed (their output is missing): the run is not green. */
  reporterFailures: Array<{ reporter: string; error: string }>;
}

/** The results folder could not take more (ENOSPC, EIO...): what completed is kept, the rest can be resumed. */
export class ResultsWriteError extends InfraError {}

function kernelSpec(k: string | KernelInfo): string {
  if (typeof k !== 'string') return k.id;
  return k.includes('/') ? resolve(k) : k;
}

/**
 * Run a suite: parse and expand the scenarios, check the results folder,
 * prepare kernel, images and snapshots, then run up to `jobs` cases at once
 * (each machine from the pool, which holds the jobs and memory budget),
 * writing each case as it finishes so an interrupted run resumes where it
 * stopped; then the summary; every output goes through the reporters.
 */
export async function runSuite(opts: RunOptions): Promise<RunOutcome> {
  await sweepStaleTempDirs();
  const build = await qcrashBuild();
  let store: RunStore | undefined;
  let config: RunConfig;
  let seed: number;
  if (opts.resume) {
    store = await RunStore.open(opts.resume);
    const meta = store.meta;
    if (!meta.config || !meta.qcrash) throw new ConfigError(`${opts.resume} was made by a qcrash that did not record its configuration: it cannot be resumed; start a new run`);
    if (meta.qcrash.build !== build) {
      throw new ConfigError(`${opts.resume} was made by another qcrash build (${meta.qcrash.build}; this one is ${build}): finishing it would mix the results of two builds; start a new run`);
    }
    config = meta.config;
    seed = meta.seed;
  } else {
    config = {
      inputs: opts.inputs.map((i) => resolve(i)),
      kernel: kernelSpec(opts.kernel),
      ...(opts.filter?.length ? { filter: opts.filter } : {}),
      ...(opts.recovery ? { recovery: opts.recovery } : {}),
      keep: opts.keep ?? defaultKeep,
      snapshots: opts.snapshots !== false,
    };
    seed = opts.seed ?? Math.floor(Math.random() * 1e9);
  }

  // Everything about the input first: a bad scenario or a filter that
  // matches nothing costs no kernel, image or VM.
  const scenarios = await loadScenarios(config.inputs, config.recovery);
  let cases = expandCases(scenarios, seed);
  const all = cases.length;
  if (config.filter?.length) cases = cases.filter((c) => config.filter!.some((f) => c.id.includes(f)));
  if (!cases.length) {
    throw new ConfigError(`nothing to run: ${config.filter?.length ? `--filter ${config.filter.join(', ')} matched none of the ${all} case(s)` : 'the scenarios expand to no case'} of ${scenarios.map((s) => s.name).join(', ')}`);
  }
  if (store) checkScenariosUnchanged(store.meta, scenarios, opts.resume!);

  const runId = store?.meta.runId ?? newRunId();
  const dir = store?.dir ?? resolve(opts.out ?? join(defaultResultsDir, runId));
  if (!store) {
    if (await access(join(dir, 'run.json')).then(() => true, () => false)) {
      throw new ConfigError(`--out ${dir} already holds a run: finish it with --resume ${dir}, or choose another --out`);
    }
    await checkOutDir(dir);
  }

  const jobs = Math.max(1, opts.jobs ?? (opts.machines ? 1 : new MachinePool().slots));
  const machines = opts.machines ?? new MachinePool({ slots: jobs });
  const { kernel, env } = await prepareRun({
    scenarios,
    kernel: typeof opts.kernel === 'string' && !opts.resume ? opts.kernel : opts.resume ? config.kernel : opts.kernel,
    machines,
    keep: config.keep,
    snapshots: config.snapshots,
    beforeMachines: async (images) => {
      const imageBytes = Math.max(...(await Promise.all([...images.values()].map((b) => allocatedBytes(b.path)))));
      await checkOutSpace(dir, { cases: cases.length, inFlight: casesInFlight(jobs), keep: config.keep, imageBytes });
    },
  });
  if (opts.beforeOracle) env.beforeOracle = opts.beforeOracle;
  env.crashImages = new CrashImageStore(dir);
  if (store && store.meta.kernel.id !== kernel.id) {
    throw new ConfigError(`${opts.resume} ran on kernel ${store.meta.kernel.id}; --kernel ${config.kernel} is now ${kernel.id}: finishing it would mix two kernels; start a new run`);
  }

  if (!store) {
    const meta: RunMeta = {
      schema: 'qcrash-run/1',
      runId,
      startedAt: new Date().toISOString(),
      host: hostname(),
      kernel: { id: kernel.id, release: kernel.release, kind: kernel.kind, ...(kernel.provenance ? { provenance: kernel.provenance } : {}) },
      versions: await toolVersions(kernel.release),
      seed,
      accel: (await detectAccel()).accel,
      scenarios: scenarios.map((s) => ({ name: s.name, file: resolve(s.file), hash: s.hash, suite: s.suite })),
      config,
      qcrash: { version: '0.1.0', build },
    };
    store = await RunStore.create(dir, meta);
  }
  const run = store;
  // A case that errored is run again on --resume; one that passed, failed or was not reached is a result.
  const previous = (await run.loadCases()).filter((c) => c.status !== 'error' && cases.some((x) => x.id === c.id));
  const done = new Set(previous.map((c) => c.id));
  const todo = cases.filter((c) => !done.has(c.id));

  const stopHint = onInterrupt(() => process.stderr.write(`qcrash: the cases written so far are kept; finish the run with: qcrash run --resume ${run.dir}\n`));
  const hub = new ReporterHub([...(opts.reporters ?? []), new RunFilesReporter(), new HtmlReportReporter()]);
  try {
    await hub.onRunStart(run.meta, todo.length, todo);
    // More cases in flight than machine slots: a case's host-side work (the
    // e2fsck recovery, the oracles, storing its image) overlaps the next
    // case's VM, and the pool (recoveries first) keeps every slot busy.
    const limit = pLimit(casesInFlight(jobs));
    const results: CaseResult[] = [...previous];
    let writeFailure: Error | undefined;
    await Promise.all(
      todo.map((spec: CaseSpec) =>
        limit(async () => {
          if (writeFailure) return;
          await hub.onCaseStart(spec);
          const r = await runCase(spec, env, run.caseDir(spec.id));
          try {
            await run.writeCase(r);
          } catch (e) {
            writeFailure ??= e as Error;
            return;
          }
          results.push(r);
          await hub.onCaseEnd(r);
        }),
      ),
    );
    if (writeFailure) {
      const code = (writeFailure as NodeJS.ErrnoException).code;
      throw new ResultsWriteError(
        `cannot write results in ${run.dir} (${code ?? writeFailure.message}${code === 'ENOSPC' ? ': the disk is full' : ''}); ` +
          `${results.length} of ${cases.length} case(s) completed and written (${results.filter((r) => r.status === 'pass').length} passed, ${results.filter((r) => r.status === 'fail').length} failed). ` +
          `Free space, then finish the run with: qcrash run --resume ${run.dir}`,
        { cause: writeFailure },
      );
    }
    const summary = run.summary(results, true);
    await run.writeSummary(summary);
    await hub.onRunEnd(summary, run.dir);
    return { summary, dir: run.dir, reporterFailures: hub.failed };
  } finally {
    stopHint();
  }
}

/**
 * Cases run at once for `jobs` machine slots. A case holds a slot only
 * while one of its VMs runs (workload, then kernel recovery); between them
 * and after them it works on the host for 0.3-1 s (journal replay, debugfs,
 * e2fsck, storing the image). One more case per slot is enough to have a
 * case waiting for every slot that frees up.
 */
export function casesInFlight(jobs: number): number {
  return 2 * jobs;
}

/** --resume finishes the run its scenarios were: a scenario file changed since is refused, not mixed in. */
function checkScenariosUnchanged(meta: RunMeta, scenarios: Scenario[], dir: string): void {
  for (const s of scenarios) {
    const was = meta.scenarios.find((x) => x.file === resolve(s.file));
    if (was && was.hash !== s.hash) {
      throw new ConfigError(`${s.file} changed since the run in ${dir} started: finishing it would mix two versions of the scenario; start a new run`);
    }
  }
}
