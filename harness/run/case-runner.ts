import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { baseImageKey, type CaseSpec } from '../scenario/model.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { BaseImage } from '../image/build.ts';
import type { Finding } from '../findings/finding.ts';
import type { Machine, MachineLauncher } from '../vm/machine/machine.ts';
import { TempDir } from '../util/tempdir.ts';
import { describeError } from '../util/errors.ts';
import type { CrashState, CrashStateSource } from '../crash/crash-state.ts';
import { KillPointSource } from '../crash/kill-source.ts';
import { deriveExpectations, stepReport } from '../crash/expectations.ts';
import type { KernelPointDriver } from '../crash/points/index.ts';
import { recoverWithE2fsck } from '../recovery/e2fsck.ts';
import { recoverWithKernel } from '../recovery/kernel.ts';
import { scanConsole } from '../checks/console.ts';
import { runOracles, writeE2fsckLogs } from '../checks/oracle.ts';
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

/** Where a case's crash states come from: today the kill point's VM run. */
export function crashStateSource(spec: CaseSpec, env: CaseEnv, caseDir: string): CrashStateSource {
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

function emptyResult(spec: CaseSpec, caseDir: string): CaseResult {
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

/**
 * Recoveries, oracles and verdict for one crash state, however it was
 * produced: the seam where write-log states will come in.
 */
export async function checkCrashState(state: CrashState, spec: CaseSpec, env: CaseEnv, caseDir: string): Promise<Partial<CaseResult>> {
  const base = env.images.get(baseImageKey(spec.scenario))!;
  await using tmp = await TempDir.create('case');
  if (env.beforeOracle) await env.beforeOracle(state.image, spec);
  const findings: Finding[] = [];
  for (const c of state.consoles) findings.push(...scanConsole(c.text, { boot: c.boot }));
  findings.push(...workloadFindings(spec.scenario.steps, state.records));
  const { expectations, migrated } = deriveExpectations(spec.scenario.steps, state.records, base.manifest, state.ending === 'clean', { caseSeed: spec.seed });
  await writeFile(join(caseDir, 'expectations.json'), JSON.stringify(expectations, null, 2));
  // Only a write into a file of the image needs its original bytes: regenerated from the recipe, or read from the user's image.
  const written = expectations.files.filter((f) => f.origin === 'recipe').map((f) => f.path);
  const recipe = written.length && spec.scenario.recipe ? await loadRecipe(spec.scenario.recipe) : undefined;
  const imageFiles = written.length && base.source === 'image' ? await imageFileOrigins(base, written) : undefined;
  const ctx = { manifest: base.manifest, migrated, expectations, ...(recipe ? { recipe } : {}), ...(imageFiles ? { imageFiles } : {}) };
  let recoveryMs = 0;
  let oraclesMs = 0;
  for (const mode of spec.scenario.recovery) {
    const recovered =
      mode === 'e2fsck'
        ? await recoverWithE2fsck(state.image, tmp.join('e2fsck.img'))
        : await recoverWithKernel(state.image, tmp.join('kernel.img'), { machines: env.machines, kernel: env.kernel, initrd: env.initrd, artefactPrefix: join(caseDir, 'recovery-') });
    recoveryMs += recovered.durationMs;
    const t0 = performance.now();
    const outcome = await runOracles(recovered, ctx);
    oraclesMs += performance.now() - t0;
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
