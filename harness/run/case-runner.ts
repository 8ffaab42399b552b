import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { baseImageKey, type CaseSpec, type RecoveryMode } from '../scenario/model.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { BaseImage } from '../image/build.ts';
import type { Finding } from '../findings/finding.ts';
import type { Machine, MachineLauncher } from '../vm/machine/machine.ts';
import { TempDir } from '../util/tempdir.ts';
import { InfraError, describeError } from '../util/errors.ts';
import type { CrashState, CrashStateSource } from '../crash/crash-state.ts';
import { KillPointSource } from '../crash/kill-source.ts';
import { deriveExpectations, stepReport } from '../crash/expectations.ts';
import type { KernelPointDriver } from '../crash/points/index.ts';
import { recoverWithE2fsck, recoverWithE2fsckInPlace } from '../recovery/e2fsck.ts';
import { recoverWithKernel } from '../recovery/kernel.ts';
import { scanConsole } from '../checks/console.ts';
import { runOracles, writeE2fsckLogs, type OracleOutcome } from '../checks/oracle.ts';
import type { RecoveredImage } from '../recovery/recovery.ts';
import { workloadFindings } from '../checks/steps.ts';
import { loadRecipe } from '../image/recipe.ts';
import { imageFileOrigins } from '../image/user-image.ts';
import type { CaseResult } from '../results/case.ts';
import { caseVerdict } from '../results/verdict.ts';

import type { KeepPolicy } from '../results/run.ts';

export type { KeepPolicy } from '../results/run.ts';

/** The one default for every entry point (CLI, validate, bisect, library callers). */
export const defaultKeep: KeepPolicy = 'all';

export interface CaseEnv {
  machines: MachineLauncher;
  kernel: KernelInfo;
  initrd: string;
  images: Map<string, BaseImage>;
  keep: KeepPolicy;
  /** Saved "agent ready" VM states by recipe: workload VMs restore instead of booting. */
  snapshots?: Map<string, string>;
  /** Creates the gdbstub driver for kernel/commit crash points (absent: such points are errors). */
  kernelDriver?: (machine: Machine) => Promise<KernelPointDriver & AsyncDisposable>;
  /**
   * Fault injection for tests: alter a crash image before any recovery
   * (e.g. damage it with debugfs) to prove the oracles and reports see it.
   */
  beforeOracle?: (crashImage: string, spec: CaseSpec) => Promise<void>;
  stepTimeoutMs?: number;
}

/** Where a kill case's crash state comes from: the kill point's VM run (write-log states come from their unit, run/log-unit.ts). */
export function crashStateSource(spec: CaseSpec, env: CaseEnv, caseDir: string): CrashStateSource {
  if (spec.crashPoint.kind === 'log') throw new InfraError(`${spec.id} is a write-log state: its unit replays it from the recorded log`);
  const base = env.images.get(baseImageKey(spec.scenario))!;
  const restoreFrom = env.snapshots?.get(baseImageKey(spec.scenario));
  return new KillPointSource(spec.scenario.steps, spec.crashPoint, spec.seed, {
    machines: env.machines,
    kernel: env.kernel,
    initrd: env.initrd,
    base,
    ...(restoreFrom ? { restoreFrom } : {}),
    ...(env.kernelDriver ? { kernelDriver: env.kernelDriver } : {}),
    ...(env.stepTimeoutMs ? { stepTimeoutMs: env.stepTimeoutMs } : {}),
  }, caseDir);
}

/**
 * One case through the whole pipeline: its crash state (a VM run to the
 * kill point), each recovery mode, every oracle, the verdict. Artefacts go
 * to `caseDir`. Never throws: a case that could not run is an `error`.
 */
export async function runCase(spec: CaseSpec, env: CaseEnv, caseDir: string): Promise<CaseResult> {
  const started = performance.now();
  const result = emptyResult(spec, caseDir);
  await mkdir(caseDir, { recursive: true });
  const crashPath = join(caseDir, 'crash.img');
  let keepImage = env.keep !== 'none';
  try {
    let state: CrashState | undefined;
    for await (const s of crashStateSource(spec, env, caseDir).states()) state = s;
    if (!state) throw new Error('the crash state source produced no state');
    Object.assign(result, await checkCrashState(state, spec, env, caseDir));
    keepImage = env.keep === 'all' || (env.keep === 'failed' && result.status !== 'pass');
  } catch (e) {
    result.status = 'error';
    const d = describeError(e);
    result.error = d.message;
    result.errorKind = d.kind;
  } finally {
    if (!keepImage) await rm(crashPath, { force: true });
    result.durationMs = Math.round(performance.now() - started);
  }
  return result;
}

export function emptyResult(spec: CaseSpec, caseDir: string): CaseResult {
  return {
    id: spec.id,
    scenario: spec.scenario.name,
    suite: spec.scenario.suite,
    pointLabel: spec.pointLabel,
    repetition: spec.repetition,
    seed: spec.seed,
    status: 'error',
    findings: [],
    failing: [],
    allow: spec.scenario.allow,
    durationMs: 0,
    dir: caseDir,
  };
}

export interface CheckOptions {
  /** The recoveries to run (default: the scenario's). */
  recovery?: readonly RecoveryMode[];
  /** Also judge the run that made the state: its console and the steps that failed (default true; a second pass over the same state leaves them out). */
  workloadFindings?: boolean;
  /**
   * An e2fsck that cannot even check the recovered image (exit 8: e.g. a
   * group descriptor the journal replay overwrote) is the worst corruption
   * finding rather than an error of the case (write-log states, where such
   * images are what a lost write gives).
   */
  uncheckableIsFinding?: boolean;
}

/**
 * Recoveries, oracles and verdict for one crash state, however it was
 * produced: a kill point's VM run, or a write log's replayed state (checked
 * in place on a shared working image when `state.inPlace` says so: the
 * e2fsck recovery and repair then record undo files instead of copying).
 */
export async function checkCrashState(state: CrashState, spec: CaseSpec, env: CaseEnv, caseDir: string, opts: CheckOptions = {}): Promise<Partial<CaseResult>> {
  const base = env.images.get(baseImageKey(spec.scenario))!;
  await using tmp = await TempDir.create('case');
  if (env.beforeOracle) {
    if (state.inPlace) throw new InfraError('beforeOracle damages the crash image: a shared (in-place) image cannot take it');
    await env.beforeOracle(state.image, spec);
  }
  const findings: Finding[] = [];
  if (opts.workloadFindings !== false) {
    for (const c of state.consoles) findings.push(...scanConsole(c.text, { boot: c.boot }));
    findings.push(...workloadFindings(spec.scenario.steps, state.records));
  }
  const { expectations, migrated } = deriveExpectations(spec.scenario.steps, state.records, base.manifest, state.ending === 'clean', { caseSeed: spec.seed });
  await writeFile(join(caseDir, 'expectations.json'), JSON.stringify(expectations, null, 2));
  // Only a write into a file of the image needs its original bytes: regenerated from the recipe, or read from the user's image.
  const written = expectations.files.filter((f) => f.origin === 'recipe').map((f) => f.path);
  const recipe = written.length && spec.scenario.recipe ? await loadRecipe(spec.scenario.recipe) : undefined;
  const imageFiles = written.length && base.source === 'image' ? await imageFileOrigins(base, written) : undefined;
  const inPlace = state.inPlace;
  const ctx = { manifest: base.manifest, migrated, expectations, ...(recipe ? { recipe } : {}), ...(imageFiles ? { imageFiles } : {}), ...(inPlace ? { undoFile: () => inPlace.undoFile() } : {}) };
  let recoveryMs = 0;
  let oraclesMs = 0;
  for (const mode of opts.recovery ?? spec.scenario.recovery) {
    let recovered: RecoveredImage | undefined;
    let outcome: OracleOutcome;
    try {
      recovered =
        mode === 'e2fsck'
          ? inPlace
            ? await recoverWithE2fsckInPlace(state.image, inPlace.undoFile())
            : await recoverWithE2fsck(state.image, tmp.join('e2fsck.img'))
          : await recoverWithKernel(state.image, tmp.join('kernel.img'), { machines: env.machines, kernel: env.kernel, initrd: env.initrd, artefactPrefix: join(caseDir, 'recovery-') });
      recoveryMs += recovered.durationMs;
      const t0 = performance.now();
      outcome = await runOracles(recovered, ctx);
      oraclesMs += performance.now() - t0;
    } catch (e) {
      if (!opts.uncheckableIsFinding || !(e instanceof InfraError) || !/^e2fsck .* could not check the image/.test(e.message)) throw e;
      outcome = { runs: recovered?.runs ?? [], findings: [{ class: 'corruption', source: 'e2fsck', code: 'e2fsck-cannot-check', name: 'e2fsck-cannot-check', message: `e2fsck could not check the image recovered by ${mode}`, recovery: mode, detail: e.message.slice(0, 4000) }] };
    }
    await writeE2fsckLogs(mode, outcome.runs, join(caseDir, 'e2fsck-'));
    findings.push(...outcome.findings);
  }
  const verdict = caseVerdict(findings, spec.scenario.allow, state.reached);
  return {
    fired: state.fired,
    steps: state.records.map((r) => {
      const step = spec.scenario.steps.find((s) => s.name === r.name);
      const report = step && stepReport(step, r);
      return {
        name: r.name,
        kind: r.kind,
        ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
        ...(r.durationMs !== undefined ? { durationMs: Math.round(r.durationMs) } : {}),
        ...(r.output ? { output: r.output.slice(0, 2000) } : {}),
        ...(report ? { report } : {}),
      };
    }),
    findings,
    failing: verdict.failing,
    status: verdict.status,
    ...(verdict.status === 'not-reached' ? { error: `crash point ${spec.pointLabel} never fired: ${state.fired.kind === 'not-reached' ? state.fired.why : 'the workload did not reach it'}` } : {}),
    phases: {
      ...(state.phases.machineMs !== undefined ? { machineMs: Math.round(state.phases.machineMs) } : {}),
      ...(state.phases.workloadMs !== undefined ? { workloadMs: Math.round(state.phases.workloadMs) } : {}),
      recoveryMs: Math.round(recoveryMs),
      oraclesMs: Math.round(oraclesMs),
    },
  };
}
