import { stat } from 'node:fs/promises';
import { scenariosDir } from '../util/paths.ts';
import { findScenarioFiles, loadScenario } from '../scenario/parse.ts';
import type { RecoveryMode, Scenario } from '../scenario/model.ts';
import { resolveKernel } from '../kernel/resolve.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import { buildInitramfs } from '../guest/initramfs.ts';
import { loadRecipe } from '../image/recipe.ts';
import { buildImage, type BaseImage } from '../image/build.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import { detectAccel } from '../vm/machine/accel.ts';
import { agentReadySnapshot } from '../vm/machine/snapshot-cache.ts';
import { kernelSymbols, validateKernelPoints } from '../crash/kernel-symbols.ts';
import { gdbDriverFactory } from '../crash/points/gdb-driver.ts';
import { toolVersions } from './versions.ts';
import type { CaseEnv, KeepPolicy } from './case-runner.ts';

/** The scenarios of a run, parsed and checked (every error names file:line), before anything is built. */
export async function loadScenarios(inputs: string[], recovery?: RecoveryMode[]): Promise<Scenario[]> {
  const files = await findScenarioFiles(inputs.length ? inputs : [scenariosDir]);
  const scenarios = await Promise.all(files.map((f) => loadScenario(f.file, { suite: f.suite })));
  return recovery ? scenarios.map((s) => ({ ...s, recovery })) : scenarios;
}

export interface PrepareOptions {
  scenarios: Scenario[];
  kernel: string | KernelInfo;
  machines: MachineLauncher;
  keep: KeepPolicy;
  /** Restore workload VMs from a saved agent-ready state (default true). */
  snapshots?: boolean;
  /** Called once the images are built, before any VM starts (e.g. to check the results folder's free space). */
  beforeMachines?: (images: Map<string, BaseImage>) => Promise<void>;
}

/** Everything a run needs before the first case: kernel, initramfs, images, snapshots, symbols. */
export async function prepareRun(opts: PrepareOptions): Promise<{ kernel: KernelInfo; env: CaseEnv }> {
  const { scenarios } = opts;
  const kernel = typeof opts.kernel === 'string' ? await resolveKernel(opts.kernel) : opts.kernel;
  const initrd = (await buildInitramfs(kernel)).path;
  const images = new Map<string, BaseImage>();
  for (const r of new Set(scenarios.map((s) => s.recipe))) images.set(r, await buildImage(await loadRecipe(r)));
  await opts.beforeMachines?.(images);
  await validateKernelPoints(opts.machines, kernel, initrd, scenarios.flatMap((s) => s.crashPoints.map((point, i) => ({ point, file: s.file, ...(s.pointLines?.[i] !== undefined ? { line: s.pointLines[i] } : {}) }))));
  const snapshots = new Map<string, string>();
  if (opts.snapshots !== false) {
    const accel = (await detectAccel()).accel;
    const qemu = (await toolVersions(kernel.release)).qemu;
    // One boot per recipe the first time (a new kernel: every recipe): as many at once as the pool allows.
    const saved = await Promise.all([...images].map(async ([recipe, base]) => [recipe, await agentReadySnapshot(opts.machines, kernel, initrd, base, accel, qemu)] as const));
    for (const [recipe, file] of saved) snapshots.set(recipe, file);
  }
  const env: CaseEnv = {
    machines: opts.machines,
    kernel,
    initrd,
    images,
    keep: opts.keep,
    snapshots,
    kernelDriver: gdbDriverFactory(() => kernelSymbols(opts.machines, kernel, initrd)),
  };
  return { kernel, env };
}

/** Bytes a base image takes on disk (it is sparse): what each case's disk costs. */
export async function allocatedBytes(path: string): Promise<number> {
  const st = await stat(path);
  return st.blocks * 512;
}
