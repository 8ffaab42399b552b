import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { access, rm } from 'node:fs/promises';
import pLimit from 'p-limit';
import { defaultResultsDir } from '../util/paths.ts';
import { sweepStaleTempDirs } from '../util/tempdir.ts';
import { ConfigError, InfraError, describeError } from '../util/errors.ts';
import { onInterrupt } from '../util/cleanup.ts';
import { expandCases, expandLogUnits } from '../scenario/expand.ts';
import { baseImageKey, logUnitIdOf, type CaseSpec, type LogUnitSpec, type RecoveryMode, type Scenario } from '../scenario/model.ts';
import type { BaseImage } from '../image/build.ts';
import { userImageChanged } from '../image/user-image.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import { jobsOrDefault, MachinePool } from '../vm/machine/pool.ts';
import { detectAccel } from '../vm/machine/accel.ts';
import type { CaseResult } from '../results/case.ts';
import type { RunConfig, RunMeta, RunSummary, ShardRecord } from '../results/run.ts';
import { loadSummary, newRunId, RunStore } from '../results/store.ts';
import { caseListHash, runKey, shardIdentity } from '../results/shards.ts';
import { resolveKernel } from '../kernel/resolve.ts';
import { ReporterHub, type Reporter } from '../report/reporter.ts';
import { RunFilesReporter } from '../report/files.ts';
import { HtmlReportReporter } from '../report/html/run-report.ts';
import { defaultKeep, runCase, type CaseEnv, type KeepPolicy } from './case-runner.ts';
import { prepareLogUnit, unitFinished, runLogUnit, type PreparedUnit } from './log-unit.ts';
import { allocatedBytes, loadScenarios, prepareRun } from './prepare.ts';
import { qcrashBuild, toolVersions } from './versions.ts';
import { checkOutDir, checkOutSpace } from './out-dir.ts';
import { imageSuiteFile } from './image-suite.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import { planShard, recordedDurations, unitsFromCases, unitsFromLogUnits, type ShardSpec } from './shard.ts';
import { CrashImageStore } from '../results/crash-images.ts';
import { e2fsckScratchSettled } from '../image/e2fsck.ts';

export interface RunOptions {
  inputs: string[];
  /** --image: run on this filesystem image (the built-in set for it when `inputs` is empty). */
  image?: string;
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
  /**
   * --shard I/N: run only the I-th part of the (filtered) case list, as
   * every machine computes it (harness/run/shard.ts); run.json records the
   * shard, the whole case list's hash and the partition for `qcrash merge`.
   */
  shard?: ShardSpec;
  /** --durations: a run folder whose case durations balance the shards (only with `shard`). */
  durationsFrom?: string;
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
  let recorded: Map<string, number> | undefined;
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
    if (opts.durationsFrom && !opts.shard) throw new ConfigError(`--durations ${opts.durationsFrom} balances shards: give it together with --shard I/N`);
    let durationsFrom: RunConfig['durationsFrom'];
    if (opts.durationsFrom) {
      const earlier = await loadSummary(opts.durationsFrom);
      recorded = recordedDurations(earlier);
      durationsFrom = { dir: resolve(opts.durationsFrom), runId: earlier.runId };
    }
    config = {
      inputs: opts.inputs.map((i) => resolve(i)),
      ...(opts.image ? { image: resolve(opts.image) } : {}),
      kernel: kernelSpec(opts.kernel),
      ...(opts.filter?.length ? { filter: opts.filter } : {}),
      ...(opts.recovery ? { recovery: opts.recovery } : {}),
      keep: opts.keep ?? defaultKeep,
      snapshots: opts.snapshots !== false,
      ...(opts.shard ? { shard: { index: opts.shard.index, total: opts.shard.total } } : {}),
      ...(durationsFrom ? { durationsFrom } : {}),
    };
    seed = opts.seed ?? Math.floor(Math.random() * 1e9);
  }

  const runId = store?.meta.runId ?? newRunId();
  const dir = store?.dir ?? resolve(opts.out ?? join(defaultResultsDir, runId));

  // Everything about the input first: a bad scenario or a filter that
  // matches nothing costs no kernel, image or VM.
  const { scenarios, imageSuite } = await loadScenarios(config.inputs, {
    ...(config.recovery ? { recovery: config.recovery } : {}),
    ...(config.image ? { image: config.image, imageSuitePath: join(dir, imageSuiteFile) } : {}),
  });
  let cases = expandCases(scenarios, seed);
  let units = expandLogUnits(scenarios, seed);
  const all = `${cases.length} case(s)${units.length ? ` and ${units.length} write-log recording(s)` : ''}`;
  if (config.filter?.length) {
    cases = cases.filter((c) => config.filter!.some((f) => c.id.includes(f)));
    units = units.filter((u) => config.filter!.some((f) => unitFilter(u, f) !== 'no'));
  }
  if (!cases.length && !units.length) {
    throw new ConfigError(`nothing to run: ${config.filter?.length ? `--filter ${config.filter.join(', ')} matched none of the ${all}` : 'the scenarios expand to no case'} of ${scenarios.map((s) => s.name).join(', ')}`);
  }
  if (store) checkScenariosUnchanged(store.meta, scenarios, opts.resume!);

  // A shard keeps only its part. A resumed shard keeps the part its run.json
  // recorded (the durations that balanced it need not be at hand again).
  let shard: Omit<ShardRecord, 'runKey'> | undefined;
  if (config.shard) {
    const shardUnits = [...unitsFromCases(cases), ...unitsFromLogUnits(units)];
    const whole = caseListHash(shardUnits.flatMap((u) => u.caseIds));
    if (store?.meta.shard) {
      if (store.meta.shard.caseListHash !== whole) {
        throw new ConfigError(`${opts.resume} is shard ${config.shard.index}/${config.shard.total} of another case list (hash ${store.meta.shard.caseListHash.slice(0, 12)}; the scenarios now give ${whole.slice(0, 12)}): finishing it would mix two runs; start a new run`);
      }
      const { runKey: _key, ...rest } = store.meta.shard;
      shard = rest;
    } else {
      const plan = planShard(shardUnits, config.shard, recorded);
      shard = {
        index: config.shard.index,
        total: config.shard.total,
        caseListHash: plan.caseListHash,
        partitionHash: plan.partitionHash,
        assignment: plan.assignment,
        costs: recorded?.size ? 'recorded' : 'estimated',
      };
    }
    const mine = new Set(shard.assignment[shard.index - 1]);
    cases = cases.filter((c) => mine.has(c.id));
    units = units.filter((u) => mine.has(u.id));
  }
  // Only a shard can be left with nothing (more shards than units): it still
  // writes its folder, so that merge sees every shard, but builds and boots nothing.
  const nothingToRun = cases.length === 0 && units.length === 0;
  if (!store) {
    if (await access(join(dir, 'run.json')).then(() => true, () => false)) {
      throw new ConfigError(`--out ${dir} already holds a run: finish it with --resume ${dir}, or choose another --out`);
    }
    await checkOutDir(dir);
  }

  // A caller's own launcher (a test's fake) runs one job unless told otherwise.
  const jobs = jobsOrDefault(opts.jobs ?? (opts.machines ? 1 : undefined));
  const machines = opts.machines ?? new MachinePool({ slots: jobs });
  // A resumed run takes its kernel from run.json, unless the caller hands one already resolved (checked against it below).
  const kernelArg = opts.resume && typeof opts.kernel === 'string' ? config.kernel : opts.kernel;
  const { kernel, env } = nothingToRun
    ? { kernel: typeof kernelArg === 'string' ? await resolveKernel(kernelArg) : kernelArg, env: undefined }
    : await prepareRun({
        scenarios,
        kernel: kernelArg,
        machines,
        keep: config.keep,
        snapshots: config.snapshots,
        beforeMachines: async (images) => {
          const imageBytes = Math.max(...(await Promise.all([...images.values()].map((b) => allocatedBytes(b.path)))));
          // A write-log unit holds its log (about an image's worth) and a working image per job while it runs.
          await checkOutSpace(dir, { cases: cases.length + units.length * 2, inFlight: casesInFlight(jobs), keep: config.keep, imageBytes });
        },
      });
  if (env && opts.beforeOracle) env.beforeOracle = opts.beforeOracle;
  if (env) env.crashImages = new CrashImageStore(dir);
  if (store && env) checkImagesUnchanged(store.meta, scenarios, env.images, opts.resume!);
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
      scenarios: scenarios.map((s) => {
        const digest = s.image ? env?.images.get(baseImageKey(s))?.digest : undefined;
        return { name: s.name, file: resolve(s.file), hash: s.hash, suite: s.suite, ...(s.image ? { image: s.image } : {}), ...(digest ? { imageDigest: digest } : {}) };
      }),
      config,
      qcrash: { version: '0.1.0', build },
    };
    if (shard) meta.shard = { ...shard, runKey: runKey(shardIdentity(meta, shard.caseListHash)) };
    store = await RunStore.create(dir, meta);
  }
  // The built-in set for --image is a scenario file like any other, kept with the run: rerun it, or copy it to start one's own.
  if (imageSuite) await writeFileAtomic(imageSuite.file, imageSuite.text);
  const run = store;
  const earlier = await run.loadCases();
  const stopHint = onInterrupt(() => process.stderr.write(`qcrash: the cases written so far are kept; finish the run with: qcrash run --resume ${run.dir}\n`));
  const hub = new ReporterHub([...(opts.reporters ?? []), new RunFilesReporter(), new HtmlReportReporter()]);
  try {
    const results: CaseResult[] = [];
    let writeFailure: Error | undefined;
    const record = async (r: CaseResult) => {
      if (writeFailure) return;
      try {
        await run.writeCase(r);
      } catch (e) {
        writeFailure ??= e as Error;
        return;
      }
      results.push(r);
      await hub.onCaseEnd(r);
    };
    // More cases in flight than machine slots: a case's host-side work (the
    // e2fsck recovery, the oracles, storing its image) overlaps the next
    // case's VM, and the pool (recoveries first) keeps every slot busy.
    const limit = pLimit(casesInFlight(jobs));

    // Write-log units first: their cases (one per crash state) exist once the log is
    // recorded, and every reporter gets the whole case list before the first result.
    // A resumed run reuses a unit's recording, so it plans the same states again.
    const prepared: PreparedUnit[] = [];
    const unitErrors: CaseResult[] = [];
    // A case that errored is run again on --resume; one that passed, failed or was not reached is a result.
    const earlierDone = new Set(earlier.filter((c) => c.status !== 'error').map((c) => c.id));
    const finishedUnits = new Set<string>();
    await Promise.all(
      units.map((u) =>
        limit(async () => {
          const unitDir = run.caseDir(u.id);
          // A unit whose every state has its result needs no recording (a passing one keeps no log).
          if (opts.resume && (await unitFinished(u, unitDir, earlierDone))) {
            finishedUnits.add(u.id);
            return;
          }
          try {
            const p = await prepareLogUnit(u, env!, unitDir, { reuse: !!opts.resume });
            // A recording that failed in an earlier session left an error case here: this one replaces it.
            await rm(`${unitDir}/case.json`, { force: true });
            await rm(`${unitDir}/findings.json`, { force: true });
            prepared.push(p);
            await hub.onNote(`recorded ${u.id}: ${p.counts.entries} log entries, ${p.counts.epochs} flush epoch(s): ${p.counts.prefix} prefix + ${p.counts.powerLoss} power-loss state(s)${p.counts.duplicates ? ` (${p.counts.duplicates} identical left out)` : ''}${p.counts.overBudget ? `, ${p.counts.overBudget} over budget` : ''}${p.recorded ? '' : ' (recording reused)'}`);
          } catch (e) {
            unitErrors.push(recordingError(u, e, unitDir));
          }
        }),
      ),
    );
    prepared.sort((a, b) => (a.unit.id < b.unit.id ? -1 : a.unit.id > b.unit.id ? 1 : 0));
    const wanted = (u: LogUnitSpec) => {
      const f = config.filter;
      if (!f?.length || f.some((x) => unitFilter(u, x) === 'all')) return undefined;
      return (id: string) => f.some((x) => id.includes(x));
    };
    const stateSpecs = prepared.flatMap((p) => p.specs.filter((s) => wanted(p.unit)?.(s.id) ?? true));
    if (config.filter?.length && !cases.length && !stateSpecs.length && !unitErrors.length) {
      throw new ConfigError(`nothing to run: --filter ${config.filter.join(', ')} matched no crash state of the recorded log(s) ${prepared.map((p) => p.unit.id).join(', ')}`);
    }

    // Earlier results of this run's cases, states and finished units.
    const known = new Set([...cases, ...stateSpecs].map((c) => c.id));
    for (const c of earlier) if (finishedUnits.has(logUnitIdOf(c.id) ?? '')) known.add(c.id);
    const previous = earlier.filter((c) => earlierDone.has(c.id) && known.has(c.id));
    const done = new Set(previous.map((c) => c.id));
    results.push(...previous);
    const todo = cases.filter((c) => !done.has(c.id));
    const todoStates = stateSpecs.filter((c) => !done.has(c.id));
    await hub.onRunStart(run.meta, todo.length + todoStates.length + unitErrors.length, [...todo, ...todoStates, ...unitErrors.map((r) => recordingSpec(units.find((u) => u.id === r.id)!))]);
    for (const r of unitErrors) await record(r);
    await Promise.all(
      todo.map((spec: CaseSpec) =>
        limit(async () => {
          if (writeFailure) return;
          await hub.onCaseStart(spec);
          await record(await runCase(spec, env!, run.caseDir(spec.id)));
        }),
      ),
    );
    for (const p of prepared) {
      if (writeFailure) break;
      const w = wanted(p.unit);
      await runLogUnit(p, { ...env!, jobs }, (id) => run.caseDir(id), record, { done, ...(w ? { wanted: w } : {}) });
    }
    if (writeFailure) {
      const code = (writeFailure as NodeJS.ErrnoException).code;
      throw new ResultsWriteError(
        `cannot write results in ${run.dir} (${code ?? writeFailure.message}${code === 'ENOSPC' ? ': the disk is full' : ''}); ` +
          `${results.length} of ${cases.length} case(s) completed and written (${results.filter((r) => r.status === 'pass').length} passed, ${results.filter((r) => r.status === 'fail').length} failed). ` +
          `Free space, then finish the run with: qcrash run --resume ${run.dir}`,
        { cause: writeFailure },
      );
    }
    for (const image of new Set(scenarios.flatMap((s) => (s.image ? [s.image] : [])))) {
      if (await userImageChanged(image)) process.stderr.write(`qcrash: ${image} changed during the run (not by qcrash, which only reads it): its cases may describe two filesystems; run again on an image nothing writes to\n`);
    }
    const summary = run.summary(results, true);
    await run.writeSummary(summary);
    await hub.onRunEnd(summary, run.dir);
    return { summary, dir: run.dir, reporterFailures: hub.failed };
  } finally {
    stopHint();
    // The run leaves no temp dir, even in a process that goes on (validate, nightly, tests).
    await e2fsckScratchSettled();
  }
}

/** --resume on a user's image: the image must be the one the run started on, by content. */
function checkImagesUnchanged(meta: RunMeta, scenarios: Scenario[], images: Map<string, BaseImage>, dir: string): void {
  for (const s of scenarios) {
    if (!s.image) continue;
    const was = meta.scenarios.find((x) => x.file === resolve(s.file))?.imageDigest;
    const now = images.get(baseImageKey(s))?.digest;
    if (was && now && was !== now) throw new ConfigError(`${s.image} changed since the run in ${dir} started (its content differs): finishing it would mix two filesystems; start a new run`);
  }
}

/**
 * How a --filter text selects a write-log unit: `all` its states when the
 * text is part of the unit's id (`durability`, `durability/log/`,
 * `durability/log/r1`), `some` when it names states of the unit
 * (`durability/log/flush-3`, a whole state case id: checked are the states
 * whose ids contain it), else `no`. A state's name depends on the log the
 * run records, so a unit is recorded whenever any of its states may match.
 */
export function unitFilter(u: Pick<LogUnitSpec, 'id' | 'repetition'> & { scenario: { name: string } }, f: string): 'all' | 'some' | 'no' {
  if (u.id.includes(f)) return 'all';
  const prefix = `${u.scenario.name}/log/`;
  if (!f.startsWith(prefix)) return 'no';
  const rep = /\/r(\d+)$/.exec(f);
  return !rep || Number(rep[1]) === u.repetition ? 'some' : 'no';
}

/** A unit whose workload could not be recorded: one error case in its place (rerun by --resume). */
function recordingError(u: LogUnitSpec, e: unknown, dir: string): CaseResult {
  const d = describeError(e);
  return {
    id: u.id,
    scenario: u.scenario.name,
    suite: u.scenario.suite,
    pointLabel: 'log-recording',
    repetition: u.repetition,
    seed: u.seed,
    status: 'error',
    findings: [],
    failing: [],
    allow: u.scenario.allow,
    error: `the workload could not be recorded: ${d.message}`,
    errorKind: d.kind,
    durationMs: 0,
    dir,
  };
}

function recordingSpec(u: LogUnitSpec): CaseSpec {
  return { id: u.id, scenario: u.scenario, crashPoint: { kind: 'log', stateKind: 'prefix', state: 'recording' }, pointLabel: 'log-recording', repetition: u.repetition, seed: u.seed };
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
