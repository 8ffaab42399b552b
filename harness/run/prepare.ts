import { stat } from 'node:fs/promises';
import { scenariosDir } from '../util/paths.ts';
import { ConfigError } from '../util/errors.ts';
import { findScenarioFiles } from '../scenario/parse.ts';
import { loadScenario, parseScenario } from './resolve-scenario.ts';
import { baseImageKey, machineStateKey, type RecoveryMode, type Scenario } from '../scenario/model.ts';
import { resolveKernel } from '../kernel/resolve.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import { buildInitramfs } from '../guest/initramfs.ts';
import { loadRecipe } from '../image/recipe.ts';
import { buildImage, type BaseImage } from '../image/build.ts';
import { openUserImage, UserImageError } from '../image/user-image.ts';
import { imageSuiteYaml } from './image-suite.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import { detectAccel } from '../vm/machine/accel.ts';
import { agentReadySnapshot } from '../vm/machine/snapshot-cache.ts';
import { kernelSymbols, validateKernelPoints, type MissingSymbolPolicy } from '../crash/kernel-symbols.ts';
import { gdbDriverFactory } from '../crash/points/gdb-driver.ts';
import { gdbHoldDriverFactory } from '../crash/points/hold.ts';
import { toolVersions } from './versions.ts';
import type { CaseEnv, KeepPolicy } from './case-runner.ts';
import type { RunEnv } from './log-unit.ts';
import type { CrashImageStore } from '../results/crash-images.ts';

export interface LoadOptions {
  recovery?: RecoveryMode[];
  /** --image (absolute): every scenario runs on this image; with no scenario named, the built-in set does. */
  image?: string;
  /** The built-in set's scenario file (in the run folder: the runner writes it there once the run starts). */
  imageSuitePath?: string;
}

/**
 * The scenarios of a run, parsed and checked (every error names file:line),
 * before anything is built (a user's image is read: its manifest is what
 * the steps' paths are checked against).
 */
export async function loadScenarios(
  inputs: string[],
  opts: LoadOptions = {},
): Promise<{ scenarios: Scenario[]; imageSuite?: { file: string; text: string } }> {
  let scenarios: Scenario[];
  let imageSuite: { file: string; text: string } | undefined;
  if (opts.image && !inputs.length) {
    const base = await openImageArg(opts.image);
    if (!opts.imageSuitePath) throw new Error('loadScenarios: the built-in set for --image needs imageSuitePath');
    const file = opts.imageSuitePath;
    imageSuite = { file, text: imageSuiteYaml(base) };
    scenarios = [await parseScenario(file, imageSuite.text, { suite: 'image' })];
  } else {
    const files = await findScenarioFiles(inputs.length ? inputs : [scenariosDir]);
    if (opts.image) await openImageArg(opts.image);
    scenarios = await Promise.all(
      files.map((f) => loadScenario(f.file, { suite: f.suite, ...(opts.image ? { image: opts.image } : {}) })),
    );
  }
  if (opts.recovery) scenarios = scenarios.map((s) => ({ ...s, recovery: opts.recovery! }));
  return { scenarios, ...(imageSuite ? { imageSuite } : {}) };
}

/** --image checked once, its errors naming the option. */
async function openImageArg(path: string): Promise<BaseImage> {
  try {
    return await openUserImage(path);
  } catch (e) {
    if (e instanceof UserImageError) throw new ConfigError(`--image ${path}: ${e.message}`);
    throw e;
  }
}

export interface PrepareOptions {
  scenarios: Scenario[];
  kernel: string | KernelInfo;
  machines: MachineLauncher;
  keep: KeepPolicy;
  /** Restore workload VMs from a saved agent-ready state (default true). */
  snapshots?: boolean;
  /** Called once the images are built, before any VM starts (e.g. to check the results folder's free space). */
  beforeMachines?: (images: ReadonlyMap<string, BaseImage>) => Promise<void>;
  /** States of a write-log unit checked at once. */
  jobs: number;
  /** Where kept crash images are stored (see CaseEnv.crashImages). */
  crashImages?: CrashImageStore;
  /** Test seam: see CaseEnv.beforeOracle. */
  beforeOracle?: CaseEnv['beforeOracle'];
  /** A kill point's function this kernel lacks: exit 2 up front (default), or its cases not judged. */
  missingSymbols?: MissingSymbolPolicy;
}

/** Everything a run needs before the first case: kernel, initramfs, images, snapshots, symbols. */
export async function prepareRun(opts: PrepareOptions): Promise<{ kernel: KernelInfo; env: RunEnv }> {
  const { scenarios } = opts;
  const kernel = typeof opts.kernel === 'string' ? await resolveKernel(opts.kernel) : opts.kernel;
  const initrd = (await buildInitramfs(kernel)).path;
  const images = new Map<string, BaseImage>();
  for (const s of scenarios) {
    const key = baseImageKey(s);
    if (!images.has(key)) images.set(key, s.image ? await openUserImage(s.image) : await buildImage(await loadRecipe(s.recipe!)));
  }
  await opts.beforeMachines?.(images);
  const points = scenarios.flatMap((s) =>
    s.crashPoints.map((point, i) => ({
      point,
      file: s.file,
      ...(s.pointLines?.[i] !== undefined ? { line: s.pointLines[i] } : {}),
    })),
  );
  const unresolvedSymbols = await validateKernelPoints(opts.machines, kernel, initrd, points, opts.missingSymbols);
  await validateHoldPoints(opts.machines, kernel, initrd, scenarios);
  const snapshots =
    opts.snapshots !== false
      ? await saveMachineStates(opts.machines, kernel, initrd, images, scenarios)
      : new Map<string, string>();
  const symbols = () => kernelSymbols(opts.machines, kernel, initrd);
  const env: RunEnv = {
    machines: opts.machines,
    kernel,
    initrd,
    images,
    keep: opts.keep,
    snapshots,
    kernelDriver: gdbDriverFactory(symbols),
    holdDriver: gdbHoldDriverFactory(symbols),
    ...(unresolvedSymbols.size ? { unresolvedSymbols } : {}),
    jobs: opts.jobs,
    ...(opts.crashImages ? { crashImages: opts.crashImages } : {}),
    ...(opts.beforeOracle ? { beforeOracle: opts.beforeOracle } : {}),
  };
  return { kernel, env };
}

/** A hold's symbol (and the function it holds after a call of) must be in the kernel: refused at the scenario's `hold:` line before any case runs. */
async function validateHoldPoints(
  machines: MachineLauncher,
  kernel: KernelInfo,
  initrd: string,
  scenarios: readonly Scenario[],
): Promise<void> {
  const held = scenarios.filter((s) => s.hold);
  if (!held.length) return;
  const syms = await kernelSymbols(machines, kernel, initrd);
  for (const s of held) {
    const where = { file: s.file, ...(s.holdLine !== undefined ? { line: s.holdLine } : {}) };
    syms.resolve(s.hold!.symbol, where);
    if (s.hold!.afterCall) syms.resolve(s.hold!.afterCall, where);
  }
}

/**
 * The agent-ready states kill cases restore, by machineStateKey: one per
 * image and vCPU count its kill cases use, and a 1-vCPU one per image
 * besides for the kernel recoveries (they run on 1 vCPU), and that 1-vCPU
 * one for every image a write-log scenario's kernel recoveries use. One
 * boot each the first time (a new kernel: every one), as many at once as
 * the pool allows. A write-log recording boots (its disk is set up
 * differently).
 */
async function saveMachineStates(
  machines: MachineLauncher,
  kernel: KernelInfo,
  initrd: string,
  images: ReadonlyMap<string, BaseImage>,
  scenarios: readonly Scenario[],
): Promise<Map<string, string>> {
  const accel = (await detectAccel()).accel;
  const qemu = (await toolVersions(kernel.release)).qemu;
  const wanted = new Map<string, { base: BaseImage; cpus: number }>();
  for (const s of scenarios) {
    const base = images.get(baseImageKey(s))!;
    if (s.crashPoints.length) {
      wanted.set(baseImageKey(s), { base, cpus: 1 });
      wanted.set(machineStateKey(s), { base, cpus: s.cpus ?? 1 });
    }
    // A write-log scenario's kernel-recovery sample restores too: it booted, 4-5 s a state, where no kill case shared its image.
    if (s.crashStates && s.recovery.includes('kernel')) wanted.set(baseImageKey(s), { base, cpus: 1 });
  }
  const saved = await Promise.all(
    [...wanted].map(
      async ([key, { base, cpus }]) =>
        [key, await agentReadySnapshot(machines, kernel, initrd, base, accel, qemu, { cpus })] as const,
    ),
  );
  return new Map(saved);
}

/** Bytes a base image takes on disk (it is sparse): what each case's disk costs. */
export async function allocatedBytes(path: string): Promise<number> {
  const st = await stat(path);
  return st.blocks * 512;
}
