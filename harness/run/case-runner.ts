import { access, mkdir, rm } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { baseImageKey, machineStateKey, type CaseSpec, type RecoveryMode } from '../scenario/model.ts';
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
import type { HoldDriver } from '../crash/points/hold.ts';
import { recoverWithE2fsck, recoverWithE2fsckInPlace } from '../recovery/e2fsck.ts';
import { recoverWithKernel } from '../recovery/kernel.ts';
import type { RecoveredImage } from '../recovery/recovery.ts';
import { scanConsole } from '../checks/console.ts';
import { runOracles, writeE2fsckLogs, type OracleContext, type OracleOutcome } from '../checks/oracle.ts';
import { workloadFindings } from '../checks/steps.ts';
import { cannotCheckFinding } from '../checks/uncheckable.ts';
import type { CheckedImages } from '../checks/checked-images.ts';
import { E2fsckCannotCheckError } from '../image/e2fsck.ts';
import { loadRecipe } from '../image/recipe.ts';
import { imageFileOrigins } from '../image/user-image.ts';
import type { CasePhases, CaseResult, StepSummary } from '../results/case.ts';
import { caseVerdict } from '../results/verdict.ts';
import { rawImageName, type CrashImageStore } from '../results/crash-images.ts';

import type { KeepPolicy } from '../results/run.ts';

export type { KeepPolicy } from '../results/run.ts';

/**
 * The one default for every entry point (CLI, validate, bisect, library
 * callers): the crash images of cases that did not pass, with everything
 * else of every case. A passing case is rerun from its seed; a failing one
 * keeps its image (compressed over the run's copy of its base image, see
 * results/crash-images.ts) and every transcript. The default suite's 50
 * cases keep about 1 MiB of logs when they pass, and about 60 MB when every
 * one of them fails (4 base images of 7-25 MB plus 4-200 KiB a case), where
 * raw images took 491 MB.
 */
export const defaultKeep: KeepPolicy = 'failed';

export interface CaseEnv {
  readonly machines: MachineLauncher;
  readonly kernel: KernelInfo;
  readonly initrd: string;
  readonly images: ReadonlyMap<string, BaseImage>;
  readonly keep: KeepPolicy;
  /**
   * Saved "agent ready" VM states by machineStateKey (the base image, and the
   * vCPU count when not 1): workload and kernel recovery VMs (1 vCPU)
   * restore instead of booting.
   */
  readonly snapshots?: ReadonlyMap<string, string>;
  /**
   * Where kept crash images are stored compressed (the run folder's); without
   * one (a library caller with no run folder) a kept image stays raw as
   * `crash.img`.
   */
  readonly crashImages?: CrashImageStore;
  /** Creates the gdbstub driver for kernel/commit crash points (absent: such points are errors). */
  readonly kernelDriver?: (machine: Machine) => Promise<KernelPointDriver & AsyncDisposable>;
  /** Kill points' functions this kernel lacks, with why: their cases are not judged here (see validateKernelPoints). */
  readonly unresolvedSymbols?: ReadonlyMap<string, string>;
  /** Creates the gdbstub driver for a scenario's `hold:` (absent: a held scenario is an error). */
  readonly holdDriver?: (machine: Machine) => Promise<HoldDriver & AsyncDisposable>;
  /**
   * Fault injection for tests: alter a crash image before any recovery
   * (e.g. damage it with debugfs) to prove the oracles and reports see it.
   */
  readonly beforeOracle?: (crashImage: string, spec: CaseSpec) => Promise<void>;
  readonly stepTimeoutMs?: number;
}

/** The base image a scenario's cases start from (prepareRun built or opened one per key). */
export function baseImageOf(env: CaseEnv, scenario: CaseSpec['scenario']): BaseImage {
  const base = env.images.get(baseImageKey(scenario));
  if (!base) throw new InfraError(`no base image was prepared for ${scenario.name} (${baseImageKey(scenario)})`);
  return base;
}

/** Where a kill case's crash state comes from: the kill point's VM run (write-log states come from their unit, run/log-unit.ts). */
export function crashStateSource(spec: CaseSpec, env: CaseEnv, caseDir: string): CrashStateSource {
  if (spec.crashPoint.kind === 'log')
    throw new InfraError(`${spec.id} is a write-log state: its unit replays it from the recorded log`);
  const { scenario } = spec;
  const base = baseImageOf(env, scenario);
  const restoreFrom = env.snapshots?.get(machineStateKey(scenario));
  if (scenario.hold && !env.holdDriver)
    throw new InfraError(`${spec.id}: the scenario holds an interleaving, and this run has no gdbstub driver for it`);
  return new KillPointSource(
    scenario.steps,
    spec.crashPoint,
    spec.seed,
    {
      machines: env.machines,
      kernel: env.kernel,
      initrd: env.initrd,
      base,
      ...(restoreFrom ? { restoreFrom } : {}),
      ...(env.kernelDriver ? { kernelDriver: env.kernelDriver } : {}),
      ...(env.stepTimeoutMs ? { stepTimeoutMs: env.stepTimeoutMs } : {}),
      ...(scenario.cpus && scenario.cpus !== 1 ? { cpus: scenario.cpus } : {}),
      ...(scenario.hold && env.holdDriver ? { hold: { point: scenario.hold, driver: env.holdDriver } } : {}),
    },
    caseDir,
  );
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
  const unresolved = spec.crashPoint.kind === 'kernel' ? env.unresolvedSymbols?.get(spec.crashPoint.symbol) : undefined;
  if (unresolved) return notJudgedHere(result, spec, unresolved);
  const crashPath = join(caseDir, rawImageName);
  try {
    let state: CrashState | undefined;
    for await (const s of crashStateSource(spec, env, caseDir).states()) state = s;
    if (!state) throw new Error('the crash state source produced no state');
    Object.assign(result, await checkCrashState(state, spec, env, caseDir));
  } catch (e) {
    result.status = 'error';
    const d = describeError(e);
    result.error = d.message;
    result.errorKind = d.kind;
  }
  try {
    const t0 = performance.now();
    const keep = env.keep === 'all' || (env.keep === 'failed' && result.status !== 'pass');
    if (!keep) await rm(crashPath, { force: true });
    else if (
      env.crashImages &&
      (await access(crashPath).then(
        () => true,
        () => false,
      ))
    ) {
      await env.crashImages.keep(crashPath, baseImageOf(env, spec.scenario), caseDir);
      result.phases = { ...result.phases, keepMs: Math.round(performance.now() - t0) };
    }
  } catch (e) {
    // The verdict stands; the image is what could not be kept, and the case says so.
    result.status = result.status === 'pass' ? 'error' : result.status;
    const d = describeError(e);
    result.error = result.error ? `${result.error}; ${d.message}` : d.message;
    result.errorKind ??= d.kind;
  }
  result.durationMs = Math.round(performance.now() - started);
  return result;
}

/**
 * A case whose kill point this kernel cannot stop in: nothing ran, so
 * nothing was proven (never a pass) and nothing was found (never a kernel
 * bug); it says why, with the close matches.
 */
function notJudgedHere(result: CaseResult, spec: CaseSpec, why: string): CaseResult {
  return {
    ...result,
    status: 'not-reached',
    error: why,
    errorKind: 'KernelSymbolMissing',
    fired: { kind: 'not-reached', step: 'step' in spec.crashPoint ? spec.crashPoint.step : '', why },
  };
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
  /** The recovered images already checked among the states of the unit this one belongs to (a write-log unit checked in place): the same image is not checked twice. */
  checked?: CheckedImages;
}

/** What a crash state is held to before any recovery runs. */
export interface StateCheck {
  /** What the state shows before any recovery: its consoles and the workload's own step results. */
  findings: Finding[];
  /** What the oracles hold its recovered images to (the expectations among it). */
  oracleContext: OracleContext;
}

/**
 * What a crash state shows before any recovery (the consoles, the workload's
 * own step results, unless `workloadFindings` is false) and what the oracles
 * hold its recovered images to (the expectations, also written to the case
 * folder): the same for every way of recovering it (the bench's naive loop
 * uses it too).
 */
export async function prepareStateCheck(
  state: CrashState,
  spec: CaseSpec,
  base: BaseImage,
  caseDir: string,
  opts: Pick<CheckOptions, 'workloadFindings'> = {},
): Promise<StateCheck> {
  const findings: Finding[] = [];
  if (opts.workloadFindings !== false) {
    for (const c of state.consoles) findings.push(...scanConsole(c.text, { boot: c.boot }));
    findings.push(...workloadFindings(spec.scenario.steps, state.records));
  }
  const { expectations, migrated } = deriveExpectations(
    spec.scenario.steps,
    state.records,
    base.manifest,
    state.ending === 'clean',
    { caseSeed: spec.seed },
  );
  // Synchronous, as the e2fsck logs (writeE2fsckLogs): a few KiB, every state.
  writeFileSync(join(caseDir, 'expectations.json'), JSON.stringify(expectations, null, 2));
  // Only a write into a file of the image needs its original bytes: regenerated from the recipe, or read from the user's image.
  const written = expectations.files.filter((f) => f.origin === 'recipe').map((f) => f.path);
  const recipe = written.length && spec.scenario.recipe ? await loadRecipe(spec.scenario.recipe) : undefined;
  const imageFiles = written.length && base.source === 'image' ? await imageFileOrigins(base, written) : undefined;
  const inPlace = state.inPlace;
  return {
    findings,
    oracleContext: {
      manifest: base.manifest,
      migrated,
      expectations,
      // A recipe's base is sealed in the cache; a user's image is theirs, and may change under a run.
      ...(base.source !== 'image' ? { basePath: base.path } : {}),
      ...(recipe ? { recipe } : {}),
      ...(imageFiles ? { imageFiles } : {}),
      ...(inPlace ? { undoFile: () => inPlace.undoFile() } : {}),
    },
  };
}

/** One recovery of a crash state and what the oracles found on its image. */
interface Recovery {
  /** Absent when the recovery failed in a way that is itself the finding (e2fsck could not check). */
  recovered: RecoveredImage | undefined;
  outcome: OracleOutcome;
  oraclesMs: number;
}

/** Where one recovery runs: the case's folder for its artefacts, a temp dir for its copy of the image. */
interface RecoveryContext {
  state: CrashState;
  env: CaseEnv;
  caseDir: string;
  /** Where copies of the image go (absent for an in-place state, which gets no copy). */
  tmp: TempDir | undefined;
  oracleContext: OracleContext;
  uncheckableIsFinding: boolean;
  restoreFrom: string | undefined;
}

/**
 * Recoveries, oracles and verdict for one crash state, however it was
 * produced: a kill point's VM run, or a write log's replayed state (checked
 * in place on a shared working image when `state.inPlace` says so: the
 * e2fsck recovery and repair then record undo files instead of copying).
 */
export async function checkCrashState(
  state: CrashState,
  spec: CaseSpec,
  env: CaseEnv,
  caseDir: string,
  opts: CheckOptions = {},
): Promise<Partial<CaseResult>> {
  const modes = opts.recovery ?? spec.scenario.recovery;
  const inPlace = state.inPlace;
  // A kernel recovery copies the image: beside an e2fsck recovery changing the same shared image in place, it would copy a half-repaired one.
  if (inPlace && modes.includes('kernel'))
    throw new InfraError(
      'a shared (in-place) crash image is recovered by e2fsck only: the kernel recovery works on a copy of a state of its own',
    );
  // A copy of the image per recovery, unless the state is checked in place (a write-log state: no folder per state).
  await using tmp = inPlace ? undefined : await TempDir.create('case');
  if (env.beforeOracle) {
    if (inPlace) throw new InfraError('beforeOracle damages the crash image: a shared (in-place) image cannot take it');
    await env.beforeOracle(state.image, spec);
  }
  const { findings, oracleContext } = await prepareStateCheck(state, spec, baseImageOf(env, spec.scenario), caseDir, opts);
  if (opts.checked) oracleContext.checked = opts.checked;
  const restoreFrom = env.snapshots?.get(baseImageKey(spec.scenario));
  const done = await recoverAll(modes, {
    state,
    env,
    caseDir,
    tmp,
    oracleContext,
    uncheckableIsFinding: opts.uncheckableIsFinding ?? false,
    restoreFrom,
  });
  // Scenario order: findings read the same whichever recovery finished first.
  for (const d of done) findings.push(...d.outcome.findings);
  const kernelRecovery = done.find((d) => d.recovered?.mode === 'kernel')?.recovered;
  const verdict = caseVerdict(findings, spec.scenario.allow, state.reached);
  return {
    fired: state.fired,
    steps: stepSummaries(spec, state),
    findings,
    failing: verdict.failing,
    status: verdict.status,
    ...(verdict.status === 'not-reached'
      ? {
          error: `crash point ${spec.pointLabel} never fired: ${state.fired.kind === 'not-reached' ? state.fired.why : 'the workload did not reach it'}`,
        }
      : {}),
    phases: checkPhases(state, done, kernelRecovery),
    ...sameImageAs(done),
    ...(kernelRecovery?.machine ? { recoveryMachine: kernelRecovery.machine } : {}),
  };
}

/**
 * Every recovery of the state at once, each on its own copy: e2fsck's
 * journal replay and the oracles on its result run on the host while the
 * kernel recovery's machine waits for a slot and runs. Settled, not raced:
 * a failing recovery must not leave the other one running on a temp dir
 * that is about to be removed. Results in the order of `modes`.
 */
async function recoverAll(modes: readonly RecoveryMode[], rc: RecoveryContext): Promise<Recovery[]> {
  const settled = await Promise.allSettled(modes.map((mode) => recoverAndCheck(mode, rc)));
  const done: Recovery[] = [];
  for (const s of settled) {
    if (s.status === 'rejected') throw s.reason;
    done.push(s.value);
  }
  return done;
}

async function recoverAndCheck(mode: RecoveryMode, rc: RecoveryContext): Promise<Recovery> {
  let recovered: RecoveredImage | undefined;
  let outcome: OracleOutcome;
  let oraclesMs = 0;
  try {
    recovered = await recover(mode, rc);
    const t0 = performance.now();
    outcome = await runOracles(recovered, rc.oracleContext);
    oraclesMs = performance.now() - t0;
  } catch (e) {
    if (!rc.uncheckableIsFinding || !(e instanceof E2fsckCannotCheckError)) throw e;
    outcome = { runs: recovered?.runs ?? [], findings: [cannotCheckFinding(e, mode)] };
  }
  writeE2fsckLogs(mode, outcome.runs, join(rc.caseDir, 'e2fsck-'));
  return { recovered, outcome, oraclesMs };
}

function recover(mode: RecoveryMode, rc: RecoveryContext): Promise<RecoveredImage> {
  const { state, env } = rc;
  if (mode === 'e2fsck' && state.inPlace) {
    const inPlace = state.inPlace;
    // What the replay wrote is in its undo file by now: the content oracle then reads only what changed from the base,
    // and the undo file also tells the image's identity after it.
    return recoverWithE2fsckInPlace(state.image, inPlace.undoFile()).then((r) => {
      const unchanged = inPlace.unchangedFromBase?.();
      const key = inPlace.identity?.();
      return {
        ...r,
        ...(unchanged ? { unchangedFromBase: unchanged } : {}),
        ...(key !== undefined ? { identity: { key, state: state.label } } : {}),
      };
    });
  }
  if (!rc.tmp) throw new InfraError(`${mode} recovery of an in-place state: it needs a copy of the image`);
  if (mode === 'e2fsck') return recoverWithE2fsck(state.image, rc.tmp.join('e2fsck.img'));
  return recoverWithKernel(state.image, rc.tmp.join('kernel.img'), {
    machines: env.machines,
    kernel: env.kernel,
    initrd: env.initrd,
    artefactPrefix: join(rc.caseDir, 'recovery-'),
    ...(rc.restoreFrom ? { restoreFrom: rc.restoreFrom } : {}),
  });
}

/** The earlier state whose byte-identical recovered image gave this one's e2fsck runs, when one did. */
function sameImageAs(done: readonly Recovery[]): Pick<CaseResult, 'sameImageAs'> {
  const earlier = done.find((d) => d.outcome.sameImageAs !== undefined)?.outcome.sameImageAs;
  return earlier !== undefined ? { sameImageAs: earlier } : {};
}

/** Where a case's time went: the state's machine and workload, the recoveries, the oracles, the waits for a slot. */
function checkPhases(state: CrashState, done: readonly Recovery[], kernelRecovery: RecoveredImage | undefined): CasePhases {
  let recoveryMs = 0;
  let oraclesMs = 0;
  let queuedMs = state.phases.queuedMs ?? 0;
  const parts = { contentMs: 0, fnCheckMs: 0, repairMs: 0, recheckMs: 0 };
  for (const { recovered, oraclesMs: ms, outcome } of done) {
    queuedMs += (recovered?.phases?.queuedMs ?? 0) + (outcome.ms?.waitMs ?? 0);
    recoveryMs += (recovered?.durationMs ?? 0) - (recovered?.phases?.queuedMs ?? 0);
    oraclesMs += ms - (outcome.ms?.waitMs ?? 0);
    parts.contentMs += outcome.ms?.contentMs ?? 0;
    parts.fnCheckMs += outcome.ms?.checkMs ?? 0;
    parts.repairMs += outcome.ms?.repairMs ?? 0;
    parts.recheckMs += outcome.ms?.recheckMs ?? 0;
  }
  return {
    ...(state.phases.materialiseMs !== undefined ? { materialiseMs: Math.round(state.phases.materialiseMs) } : {}),
    ...(done.some((d) => d.outcome.ms) ? Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, Math.round(v)])) : {}),
    ...(state.phases.machineMs !== undefined ? { machineMs: Math.round(state.phases.machineMs) } : {}),
    ...(state.phases.workloadMs !== undefined ? { workloadMs: Math.round(state.phases.workloadMs) } : {}),
    recoveryMs: Math.round(recoveryMs),
    oraclesMs: Math.round(oraclesMs),
    queuedMs: Math.round(queuedMs),
    ...(kernelRecovery?.phases?.machineMs !== undefined
      ? { recoveryMachineMs: Math.round(kernelRecovery.phases.machineMs) }
      : {}),
    ...(kernelRecovery?.phases?.mountMs !== undefined ? { recoveryMountMs: Math.round(kernelRecovery.phases.mountMs) } : {}),
  };
}

/** The workload's steps as the case reports them. */
function stepSummaries(spec: CaseSpec, state: CrashState): StepSummary[] {
  return state.records.map((r) => {
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
  });
}
