import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import pLimit from 'p-limit';
import { defaultResultsDir } from '../util/paths.ts';
import { sweepStaleTempDirs } from '../util/tempdir.ts';
import { expandCases } from '../scenario/expand.ts';
import type { CaseSpec, RecoveryMode } from '../scenario/model.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import { MachinePool } from '../vm/machine/pool.ts';
import { detectAccel } from '../vm/machine/accel.ts';
import type { CaseResult } from '../results/case.ts';
import type { RunMeta, RunSummary } from '../results/run.ts';
import { newRunId, RunStore } from '../results/store.ts';
import { ReporterHub, type Reporter } from '../report/reporter.ts';
import { RunFilesReporter } from '../report/files.ts';
import { defaultKeep, runCase, type CaseEnv, type KeepPolicy } from './case-runner.ts';
import { prepareRun } from './prepare.ts';
import { toolVersions } from './versions.ts';

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

/**
 * Run a suite: expand scenarios into cases, run up to `jobs` at once (each
 * machine comes from the pool, which holds the jobs and memory budget),
 * write each case as it finishes (so an interrupted run resumes where it
 * stopped), then the summary; every output goes through the reporters.
 */
export async function runSuite(opts: RunOptions): Promise<RunOutcome> {
  await sweepStaleTempDirs();
  const resumed = opts.resume ? await RunStore.open(opts.resume) : undefined;
  const seed = resumed?.meta.seed ?? opts.seed ?? Math.floor(Math.random() * 1e9);
  const inputs = resumed ? resumed.meta.scenarios.map((s) => s.file) : opts.inputs;
  const jobs = Math.max(1, opts.jobs ?? (opts.machines ? 1 : new MachinePool().slots));
  const machines = opts.machines ?? new MachinePool({ slots: jobs });
  const { scenarios, kernel, env } = await prepareRun({
    inputs,
    kernel: opts.kernel,
    machines,
    keep: opts.keep ?? defaultKeep,
    ...(opts.recovery ? { recovery: opts.recovery } : {}),
    ...(opts.snapshots !== undefined ? { snapshots: opts.snapshots } : {}),
  });
  if (opts.beforeOracle) env.beforeOracle = opts.beforeOracle;
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

  const hub = new ReporterHub([...(opts.reporters ?? []), new RunFilesReporter()]);
  await hub.onRunStart(store.meta, todo.length);
  const limit = pLimit(jobs);
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
  await hub.onRunEnd(summary, store.dir);
  return { summary, dir: store.dir, reporterFailures: hub.failed };
}
