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

export interface PrepareOptions {
  inputs: string[];
  kernel: string | KernelInfo;
  machines: MachineLauncher;
  keep: KeepPolicy;
  /** Replace every scenario's recovery modes (e.g. only e2fsck for a quick run). */
  recovery?: RecoveryMode[];
  /** Restore workload VMs from a saved agent-ready state (default true). */
  snapshots?: boolean;
}

/** Everything a run needs before the first case: scenarios, kernel, initramfs, images, snapshots, symbols. */
export async function prepareRun(opts: PrepareOptions): Promise<{ scenarios: Scenario[]; kernel: KernelInfo; env: CaseEnv }> {
  const files = await findScenarioFiles(opts.inputs.length ? opts.inputs : [scenariosDir]);
  let scenarios = await Promise.all(files.map((f) => loadScenario(f.file, { suite: f.suite })));
  if (opts.recovery) scenarios = scenarios.map((s) => ({ ...s, recovery: opts.recovery! }));
  const kernel = typeof opts.kernel === 'string' ? await resolveKernel(opts.kernel) : opts.kernel;
  const initrd = (await buildInitramfs(kernel)).path;
  await validateKernelPoints(opts.machines, kernel, initrd, scenarios.flatMap((s) => s.crashPoints.map((point) => ({ point, file: s.file }))));
  const images = new Map<string, BaseImage>();
  for (const r of new Set(scenarios.map((s) => s.recipe))) images.set(r, await buildImage(await loadRecipe(r)));
  const snapshots = new Map<string, string>();
  if (opts.snapshots !== false) {
    const accel = (await detectAccel()).accel;
    const qemu = (await toolVersions(kernel.release)).qemu;
    for (const [recipe, base] of images) snapshots.set(recipe, await agentReadySnapshot(opts.machines, kernel, initrd, base, accel, qemu));
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
  return { scenarios, kernel, env };
}
