import { join, resolve } from 'node:path';
import { defaultResultsDir } from '../util/paths.ts';
import { ConfigError } from '../util/errors.ts';
import { baseImageKey, type RecoveryMode, type Scenario } from '../scenario/model.ts';
import type { BaseImage } from '../image/build.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import type { RunConfig, RunMeta } from '../results/run.ts';
import { loadSummary, newRunId, RunStore } from '../results/store.ts';
import type { Reporter } from '../report/reporter.ts';
import { defaultKeep, type CaseEnv, type KeepPolicy } from './case-runner.ts';
import { recordedDurations, type ShardSpec } from './shard.ts';

/** What a caller asks runSuite for (the CLI's `qcrash run`, validate, bisect, nightly, bench, tests). */
export interface SuiteOptions {
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

/** The run a runSuite call makes or finishes: its configuration, seed and folder. */
export interface ResolvedRun {
  config: RunConfig;
  seed: number;
  runId: string;
  dir: string;
  /** The run being resumed (absent: a new run). */
  resumed?: ResumedRun;
  /** Case durations of the run given with --durations (they balance a new shard). */
  recordedDurations?: Map<string, number>;
}

/** A run --resume finishes: its folder, and the name --resume gave it (what messages say). */
export interface ResumedRun {
  store: RunStore;
  named: string;
}

/** A new run as the options configure it, or the run --resume finishes as its run.json configured it. */
export async function resolveRunConfig(opts: SuiteOptions, build: string): Promise<ResolvedRun> {
  return opts.resume ? resumedRun(opts.resume, build) : newRun(opts);
}

/**
 * The run in `dir`, refused when its qcrash did not record its configuration
 * or was another build: finishing it would mix the results of two builds.
 */
export async function resumedRun(dir: string, build: string): Promise<ResolvedRun> {
  const store = await RunStore.open(dir);
  const meta = store.meta;
  if (!meta.config || !meta.qcrash)
    throw new ConfigError(
      `${dir} was made by a qcrash that did not record its configuration: it cannot be resumed; start a new run`,
    );
  if (meta.qcrash.build !== build) {
    throw new ConfigError(
      `${dir} was made by another qcrash build (${meta.qcrash.build}; this one is ${build}): finishing it would mix the results of two builds; start a new run`,
    );
  }
  return { config: meta.config, seed: meta.seed, runId: meta.runId, dir: store.dir, resumed: { store, named: dir } };
}

/** A new run: its configuration (paths absolute), a seed, an id and a folder. */
export async function newRun(opts: SuiteOptions): Promise<ResolvedRun> {
  if (opts.durationsFrom && !opts.shard)
    throw new ConfigError(`--durations ${opts.durationsFrom} balances shards: give it together with --shard I/N`);
  const earlier = opts.durationsFrom ? await loadSummary(opts.durationsFrom) : undefined;
  const durationsFrom = opts.durationsFrom && earlier ? { dir: resolve(opts.durationsFrom), runId: earlier.runId } : undefined;
  const config: RunConfig = {
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
  const runId = newRunId();
  return {
    config,
    seed: opts.seed ?? Math.floor(Math.random() * 1e9),
    runId,
    dir: resolve(opts.out ?? join(defaultResultsDir, runId)),
    ...(earlier ? { recordedDurations: recordedDurations(earlier) } : {}),
  };
}

/** --kernel as run.json records it: a path made absolute, a resolved kernel by its id. */
function kernelSpec(k: string | KernelInfo): string {
  if (typeof k !== 'string') return k.id;
  return k.includes('/') ? resolve(k) : k;
}

/**
 * --resume on the inputs as prepared now: the same kernel, and a user's
 * image with the content the run started on; either changed would mix two
 * runs in one folder.
 */
export function checkResumedInputs(
  resumed: ResumedRun,
  config: RunConfig,
  scenarios: readonly Scenario[],
  kernel: KernelInfo,
  images?: ReadonlyMap<string, BaseImage>,
): void {
  const meta = resumed.store.meta;
  if (images) checkImagesUnchanged(meta, scenarios, images, resumed.named);
  if (meta.kernel.id !== kernel.id) {
    throw new ConfigError(
      `${resumed.named} ran on kernel ${meta.kernel.id}; --kernel ${config.kernel} is now ${kernel.id}: finishing it would mix two kernels; start a new run`,
    );
  }
}

/** --resume on a user's image: the image must be the one the run started on, by content. */
function checkImagesUnchanged(
  meta: RunMeta,
  scenarios: readonly Scenario[],
  images: ReadonlyMap<string, BaseImage>,
  dir: string,
): void {
  for (const s of scenarios) {
    if (!s.image) continue;
    const was = meta.scenarios.find((x) => x.file === resolve(s.file))?.imageDigest;
    const now = images.get(baseImageKey(s))?.digest;
    if (was && now && was !== now)
      throw new ConfigError(
        `${s.image} changed since the run in ${dir} started (its content differs): finishing it would mix two filesystems; start a new run`,
      );
  }
}
