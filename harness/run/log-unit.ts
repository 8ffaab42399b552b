import { countFastCommits, type FastCommitSummary } from '../crash/writelog/fast-commits.ts';
import { access, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '../util/hash.ts';
import { InfraError, describeError, errorMessage } from '../util/errors.ts';
import { TempDir } from '../util/tempdir.ts';
import { writeJsonAtomic } from '../util/atomic.ts';
import type { Finding } from '../findings/finding.ts';
import { logStateCaseId, type CaseSpec, type LogUnitSpec } from '../scenario/model.ts';
import { loadRecipe } from '../image/recipe.ts';
import { imageFileOrigins } from '../image/user-image.ts';
import type { CrashState, LogStateFired, MinimizedState, WriteNote } from '../crash/crash-state.ts';
import { loadRecording, moveImage, recordWorkload, WriteLogSource, type Recording } from '../crash/writelog/source.ts';
import type { PlannedState, WriteRef } from '../crash/writelog/states.ts';
import { minimizeDropped } from '../crash/writelog/minimize.ts';
import { WriteExplainer } from '../crash/writelog/explain.ts';
import type { CasePhases, CaseResult } from '../results/case.ts';
import type { BaseImage } from '../image/build.ts';
import { caseVerdict } from '../results/verdict.ts';
import { rawImageName, type CrashImageStore } from '../results/crash-images.ts';
import { formatSignature, signatureOf } from '../results/signature.ts';
import { baseImageOf, checkCrashState, emptyResult, type CaseEnv } from './case-runner.ts';
import { CheckedImages } from '../checks/checked-images.ts';
import { e2fsckVerdict, type StateOracleContext } from './state-verdict.ts';
import { dropDigestFile } from '../crash/writelog/digest-file.ts';

/**
 * A write-log unit (`<scenario>/log/r<rep>`): one recorded run of the
 * scenario's workload, then every crash state its log yields checked on the
 * host like a kill case (case-runner's checkCrashState), each its own case
 * `<scenario>/log/<state>/r<rep>`:
 *
 *  1. the e2fsck recovery and every oracle on every state, replayed
 *     incrementally and checked in place (undo files, no copy per state),
 *     up to `jobs` at once;
 *  2. the kernel recovery (a VM boot) on a seeded sample of the states and
 *     on every state that failed under e2fsck recovery;
 *  3. each failing power-loss state (up to the scenario's budget) shrunk to
 *     the lost writes that matter and the landed writes the failure needs,
 *     on the same oracle, and those writes explained;
 *  4. crash images kept once per failing signature (the minimised state
 *     where there is one), not per state; the log stays in the unit's folder.
 */

/** What a run's cases and write-log units share (run/prepare.ts prepareRun makes it). */
export interface RunEnv extends CaseEnv {
  /** States of a write-log unit checked at once. */
  readonly jobs: number;
}

/** A unit whose log is recorded (or was, before a resume): its states as cases. */
export interface PreparedUnit {
  unit: LogUnitSpec;
  unitDir: string;
  recording: Recording;
  /** Every state the plan holds, as case specs, in plan order. */
  specs: CaseSpec[];
  counts: { prefix: number; powerLoss: number; duplicates: number; overBudget: number; epochs: number; entries: number };
  /** Fast commits the recorded log wrote into the journal's fast-commit area (absent: none, or no fast_commit feature). */
  fastCommits?: FastCommitSummary;
  /** Recorded now (false: reused from the unit's folder). */
  recorded: boolean;
}

function stateSpec(unit: LogUnitSpec, s: Pick<PlannedState, 'name' | 'kind'>): CaseSpec {
  const id = logStateCaseId(unit.scenario.name, s.name, unit.repetition);
  return {
    id,
    scenario: unit.scenario,
    crashPoint: { kind: 'log', stateKind: s.kind, state: s.name },
    pointLabel: `log-${s.kind}`,
    repetition: unit.repetition,
    seed: unit.seed,
  };
}

/**
 * Record the unit's workload, or reuse the recording its folder holds
 * (`reuse`, for --resume), and plan its states.
 */
export async function prepareLogUnit(
  unit: LogUnitSpec,
  env: CaseEnv,
  unitDir: string,
  opts: { reuse: boolean },
): Promise<PreparedUnit> {
  await mkdir(unitDir, { recursive: true });
  const base = baseImageOf(env, unit.scenario);
  const reused = opts.reuse ? await reusableRecording(unit, unitDir) : undefined;
  const recording = reused ?? (await recordUnit(unit, env, base, unitDir));
  await using tmp = await TempDir.create('log-plan');
  await using source = await WriteLogSource.open(unit.id, unitDir, recording, base.path, unit.crashStates, {
    workDir: tmp.path,
    jobs: 1,
  });
  const plan = source.plan;
  const fastCommits = await countFastCommits(source.log, base.path);
  await writeStatesFile(unit, unitDir, source);
  return {
    unit,
    unitDir,
    recording,
    specs: plan.states.map((s) => stateSpec(unit, s)),
    counts: { ...plan.counts, epochs: plan.epochs.length, entries: source.log.entries.length },
    ...(fastCommits.blockWrites ? { fastCommits } : {}),
    recorded: !reused,
  };
}

/** The recording the unit's folder holds, unless it is another unit's or made with another seed (the bytes its steps wrote differ). */
async function reusableRecording(unit: LogUnitSpec, unitDir: string): Promise<Recording | undefined> {
  const recording = await loadRecording(unitDir);
  return recording && recording.unit === unit.id && recording.seed === unit.seed ? recording : undefined;
}

/** Run the unit's workload with its disk's writes logged. */
function recordUnit(unit: LogUnitSpec, env: CaseEnv, base: BaseImage, unitDir: string): Promise<Recording> {
  return recordWorkload(
    unit.id,
    unit.scenario.steps,
    unit.seed,
    unit.crashStates.end,
    {
      machines: env.machines,
      kernel: env.kernel,
      initrd: env.initrd,
      base,
      ...(env.stepTimeoutMs ? { stepTimeoutMs: env.stepTimeoutMs } : {}),
    },
    unitDir,
  );
}

/** states.json: the log's size and the planned states, which --resume reads back (unitFinished). */
async function writeStatesFile(unit: LogUnitSpec, unitDir: string, source: WriteLogSource): Promise<void> {
  const plan = source.plan;
  await writeJsonAtomic(join(unitDir, 'states.json'), {
    unit: unit.id,
    log: {
      entries: source.log.entries.length,
      flushes: source.flushes,
      bytes: source.log.fileSize,
      tornTail: source.log.torn ?? null,
    },
    counts: plan.counts,
    epochs: plan.epochs,
    states: plan.states.map((s) => ({
      name: s.name,
      kind: s.kind,
      variant: s.variant,
      epoch: s.epoch,
      position: s.position,
      base: s.base,
      dropped: s.dropped.map((d) => d.id),
      key: s.key,
    })),
  });
}

/**
 * On --resume: every state this unit's plan (states.json) names already has
 * a result that is not an error. Such a unit is finished and needs no
 * recording, which a passing unit no longer keeps its log for.
 */
export async function unitFinished(unit: LogUnitSpec, unitDir: string, done: ReadonlySet<string>): Promise<boolean> {
  let plan: { unit?: string; states?: Array<{ name: string }> };
  try {
    plan = JSON.parse(await readFile(join(unitDir, 'states.json'), 'utf8')) as typeof plan;
  } catch {
    return false;
  }
  if (plan.unit !== unit.id || !Array.isArray(plan.states) || !plan.states.length) return false;
  return plan.states.every((s) => done.has(logStateCaseId(unit.scenario.name, s.name, unit.repetition)));
}

/** A seeded choice of n states: the same names for the same seed on every machine. */
function sample<T extends { name: string }>(xs: readonly T[], n: number, seed: number): Set<string> {
  return new Set(
    [...xs]
      .sort((a, b) => sha(seed, a.name).localeCompare(sha(seed, b.name)))
      .slice(0, n)
      .map((x) => x.name),
  );
}
const sha = (seed: number, name: string) => sha256(`${seed}/${name}`);

/** What a failing finding's signature is made of, without the case (the same within one unit's state kind). */
const findingKey = (f: Pick<Finding, 'recovery' | 'class' | 'code' | 'title'>) =>
  `${f.recovery ?? '-'}|${f.class}|${f.code}|${f.title ?? ''}`;

/** One state of the unit in this session: its case as it builds up. */
interface StateWork {
  planned: PlannedState;
  spec: CaseSpec;
  dir: string;
  result: CaseResult;
  /** The result's `fired` (the same object), typed: minimisation and the kept image add to it. */
  fired: LogStateFired;
  /** When the state's current check began (0: not being checked). */
  started: number;
  /** Image of the minimised state, kept until the representatives are chosen. */
  minimizedImage?: string;
}

/** Sum of two cases' phases, phase by phase. */
function addPhases(a: CasePhases = {}, b: CasePhases = {}): CasePhases {
  const sum: CasePhases = { ...a };
  for (const k of Object.keys(b) as Array<keyof CasePhases>) sum[k] = (sum[k] ?? 0) + (b[k] ?? 0);
  return sum;
}

/**
 * The states of one unit checked in this session and where each stands:
 * held (not final yet: kernel recovery, minimisation or an image to come),
 * checked (its last pass reached it), written (final, handed to `write`).
 */
class UnitCheck {
  private readonly held = new Set<StateWork>();
  private readonly written = new Set<StateWork>();
  private readonly checked = new Set<StateWork>();

  constructor(
    readonly prepared: PreparedUnit,
    readonly env: RunEnv,
    readonly source: WriteLogSource,
    readonly states: readonly StateWork[],
    private readonly write: (r: CaseResult) => Promise<void>,
  ) {}

  hold(w: StateWork): void {
    this.held.add(w);
  }

  /** Held states, in the order they were held. */
  heldStates(): StateWork[] {
    return [...this.held];
  }

  private clock(w: StateWork): void {
    if (w.started) w.result.durationMs += performance.now() - w.started;
    w.started = 0;
  }

  /** The state's case is final: written now. */
  async finish(w: StateWork): Promise<void> {
    this.clock(w);
    w.result.durationMs = Math.round(w.result.durationMs);
    this.written.add(w);
    await this.write(w.result);
  }

  /** Every state not written yet, written. */
  async finishRest(): Promise<void> {
    for (const w of this.states) if (!this.written.has(w)) await this.finish(w);
  }

  /** A check's part of the case added to what the state has, and the verdict over all of it. */
  merge(w: StateWork, part: Partial<CaseResult>): void {
    const findings = [...w.result.findings, ...(part.findings ?? [])];
    Object.assign(w.result, { ...part, findings, phases: addPhases(w.result.phases, part.phases), fired: w.fired });
    const verdict = caseVerdict(findings, this.prepared.unit.scenario.allow, true);
    w.result.status = verdict.status;
    w.result.failing = verdict.failing;
  }

  fail(w: StateWork, e: unknown): void {
    const d = describeError(e);
    w.result.error = d.message;
    // A state already failing keeps its findings' verdict; what went wrong later is said beside it.
    if (w.result.status === 'fail') return;
    w.result.status = 'error';
    w.result.errorKind = d.kind;
  }

  /** One pass: check each state the source yields, up to `jobs` at once (the source holds the rest back). */
  async pass(
    chosen: readonly StateWork[],
    fork: 'in-place' | 'copy',
    check: (w: StateWork, st: CrashState) => Promise<void>,
  ): Promise<void> {
    if (!chosen.length) return;
    const byName = new Map(chosen.map((w) => [w.planned.name, w]));
    const running = new Set<Promise<void>>();
    try {
      for await (const st of this.source.statesOf(
        chosen.map((w) => w.planned),
        fork,
      )) {
        const w = byName.get(st.label);
        if (!w) throw new InfraError(`the write log yielded state ${st.label}, which this pass did not ask for`);
        const p = this.checkOne(w, st, check);
        running.add(p);
        void p.finally(() => running.delete(p));
      }
    } catch (e) {
      // The replay itself failed (a damaged log, its undo file could not restore the working image): the states it did not reach are errors.
      await Promise.all(running);
      for (const w of chosen) {
        if (this.checked.has(w)) continue;
        this.fail(w, e);
        if (!this.written.has(w)) this.held.add(w);
      }
      return;
    }
    await Promise.all(running);
  }

  private async checkOne(w: StateWork, st: CrashState, check: (w: StateWork, st: CrashState) => Promise<void>): Promise<void> {
    w.started = performance.now();
    try {
      // Synchronous: one small call a state, less than its trip through libuv's thread pool.
      mkdirSync(w.dir, { recursive: true });
      await check(w, st);
      this.checked.add(w);
    } catch (e) {
      this.fail(w, e);
    } finally {
      this.clock(w);
      st.settle?.();
    }
  }
}

/**
 * Check the states of a prepared unit whose case ids `wanted` accepts and
 * `done` does not hold (a resumed run), writing each case through `write`
 * as soon as it is final. Never throws for a state: a state that could not
 * be checked is an `error` case.
 */
export async function runLogUnit(
  prepared: PreparedUnit,
  env: RunEnv,
  caseDir: (id: string) => string,
  write: (r: CaseResult) => Promise<void>,
  opts: { wanted?: (id: string) => boolean; done?: ReadonlySet<string> } = {},
): Promise<void> {
  const { unit, unitDir, recording } = prepared;
  const base = baseImageOf(env, unit.scenario);
  // Working images (one per job) and e2fsck's undo files, rewritten for every state: in memory where there is room.
  await using tmp = await TempDir.create('log-unit', { inMemory: (env.jobs + 1) * (await stat(base.path)).size });
  await using source = await WriteLogSource.open(unit.id, unitDir, recording, base.path, unit.crashStates, {
    workDir: tmp.path,
    jobs: env.jobs,
  });
  const check = new UnitCheck(prepared, env, source, statesToCheck(prepared, source, caseDir, opts), write);
  const kernelSample = kernelSampleOf(unit, check.states);
  await checkWithE2fsck(check, kernelSample);
  await checkWithKernel(check, kernelSample);
  const failing = check.heldStates().filter((w) => w.result.status === 'fail');
  await minimizeFailing(check, failing, base, tmp.path);
  if (env.keep !== 'none' && failing.length) await keepImages(check, failing, base);
  for (const w of failing) if (w.minimizedImage) await rm(w.minimizedImage, { force: true });
  await check.finishRest();
  await dropLogOnceChecked(check, failing);
}

/** The plan's states this session checks, each with its case begun. */
function statesToCheck(
  prepared: PreparedUnit,
  source: WriteLogSource,
  caseDir: (id: string) => string,
  opts: { wanted?: (id: string) => boolean; done?: ReadonlySet<string> },
): StateWork[] {
  const states: StateWork[] = [];
  for (const planned of source.plan.states) {
    const spec = stateSpec(prepared.unit, planned);
    if (opts.done?.has(spec.id) || (opts.wanted && !opts.wanted(spec.id))) continue;
    const dir = caseDir(spec.id);
    const fc = prepared.fastCommits?.commits;
    const fired = { ...source.fired(planned), ...(fc ? { fastCommits: fc } : {}) };
    states.push({ planned, spec, dir, result: { ...emptyResult(spec, dir), fired }, fired, started: 0 });
  }
  return states;
}

/** States whose kernel recovery runs: a seeded sample beside the e2fsck recovery, every state without it. */
function kernelSampleOf(unit: LogUnitSpec, states: readonly StateWork[]): Set<string> {
  const modes = unit.scenario.recovery;
  if (!modes.includes('kernel')) return new Set();
  if (!modes.includes('e2fsck')) return new Set(states.map((w) => w.planned.name));
  return sample(
    states.map((w) => w.planned),
    unit.crashStates.kernelSample,
    unit.seed,
  );
}

/** 1. e2fsck recovery and the oracles, in place (a beforeOracle test seam damages images: those get copies). */
async function checkWithE2fsck(check: UnitCheck, kernelSample: ReadonlySet<string>): Promise<void> {
  const { env } = check;
  if (!check.prepared.unit.scenario.recovery.includes('e2fsck')) {
    for (const w of check.states) check.hold(w);
    return;
  }
  // States whose images are the same after the journal replay share one e2fsck check (checked-images.ts).
  const checked = new CheckedImages();
  await check.pass(check.states, env.beforeOracle ? 'copy' : 'in-place', async (w, st) => {
    check.merge(w, await checkCrashState(st, w.spec, env, w.dir, { recovery: ['e2fsck'], uncheckableIsFinding: true, checked }));
    if (w.result.status === 'pass' && !kernelSample.has(w.planned.name)) await check.finish(w);
    else check.hold(w);
  });
}

/** 2. Kernel recovery: the seeded sample, and every state e2fsck recovery failed (a VM writes the image: copies). */
async function checkWithKernel(check: UnitCheck, kernelSample: ReadonlySet<string>): Promise<void> {
  const modes = check.prepared.unit.scenario.recovery;
  if (!modes.includes('kernel')) return;
  const chosen = check
    .heldStates()
    .filter((w) => w.result.status !== 'error' && (kernelSample.has(w.planned.name) || w.result.status === 'fail'));
  await check.pass(chosen, 'copy', async (w, st) => {
    check.merge(
      w,
      await checkCrashState(st, w.spec, check.env, w.dir, {
        recovery: ['kernel'],
        workloadFindings: !modes.includes('e2fsck'),
        uncheckableIsFinding: true,
      }),
    );
  });
}

/** 3. Minimise failing power-loss states, one per failing signature first, within the unit's budget. */
async function minimizeFailing(check: UnitCheck, failing: readonly StateWork[], base: BaseImage, workDir: string): Promise<void> {
  const { unit, recording } = check.prepared;
  const candidates = failing.filter(
    (w) =>
      w.planned.kind === 'power-loss' &&
      w.planned.dropped.length > 0 &&
      !w.planned.torn &&
      w.result.failing.some((f) => f.recovery === 'e2fsck'),
  );
  const order = roundRobin(candidates, (w) =>
    w.result.failing
      .filter((f) => f.recovery === 'e2fsck')
      .map(findingKey)
      .sort()
      .join(' '),
  );
  if (!order.length) return;
  const scenario = unit.scenario;
  // The original bytes of files the workload writes into: from the recipe, or read from the user's image.
  const recipe = scenario.recipe ? await loadRecipe(scenario.recipe) : undefined;
  const writtenPaths = [...new Set(scenario.steps.flatMap((s) => (s.kind === 'write' || s.kind === 'writer' ? [s.path] : [])))];
  const imageFiles = base.source === 'image' && writtenPaths.length ? await imageFileOrigins(base, writtenPaths) : undefined;
  const ctx: StateOracleContext = {
    manifest: base.manifest,
    ...(recipe ? { recipe } : {}),
    ...(imageFiles ? { imageFiles } : {}),
    steps: scenario.steps,
    records: recording.records,
    acks: check.source.acks,
    allow: scenario.allow,
    caseSeed: unit.seed,
  };
  for (const w of order.slice(0, unit.crashStates.minimize)) {
    try {
      await minimizeState(w, check.source, ctx, unit.crashStates.minimizeTests, workDir);
    } catch (e) {
      // The failure is still a finding; only its explanation is missing.
      w.result.error = `minimisation failed: ${errorMessage(e)}`;
    }
  }
}

/** 4. Crash images once per failing signature: the minimised state where there is one. */
async function keepImages(check: UnitCheck, failing: readonly StateWork[], base: BaseImage): Promise<void> {
  const covered = representatives(failing);
  const reps = new Set(covered.values());
  await saveRepresentativeImages(check, reps);
  // Stored as a kill case's is: only the blocks that differ from the run's
  // compressed copy of the base (crash.qcow2), `qcrash image export` for the raw image.
  if (check.env.crashImages) await compressImages(check.env.crashImages, reps, base);
  for (const w of failing) {
    if (reps.has(w)) continue;
    const rep = [...covered.entries()].find(([sig]) =>
      w.result.failing.some((f) => formatSignature(signatureOf(w.result, f)) === sig),
    )?.[1];
    if (rep) w.fired.keptImageIn = rep.spec.id;
  }
}

/** The state whose image stands for each failing signature: a minimised one where there is one. */
function representatives(failing: readonly StateWork[]): Map<string, StateWork> {
  const covered = new Map<string, StateWork>();
  const preferred = [...failing].sort((a, b) => Number(!!b.minimizedImage) - Number(!!a.minimizedImage));
  for (const w of preferred) {
    for (const f of w.result.failing) {
      const sig = formatSignature(signatureOf(w.result, f));
      if (!covered.has(sig)) covered.set(sig, w);
    }
  }
  return covered;
}

/** Each representative's raw image in its case folder, with what state it is (crash-state.json). */
async function saveRepresentativeImages(check: UnitCheck, reps: ReadonlySet<StateWork>): Promise<void> {
  const { unit, unitDir, recording } = check.prepared;
  const log = join(unitDir, recording.log);
  const toBuild: StateWork[] = [];
  for (const w of reps) {
    if (w.minimizedImage) {
      await moveImage(w.minimizedImage, join(w.dir, rawImageName));
      w.minimizedImage = undefined;
      await writeJsonAtomic(join(w.dir, 'crash-state.json'), {
        unit: unit.id,
        log,
        note: 'the minimised state: the epoch with only the minimal set of writes lost',
        epochBase: w.planned.base,
        lost: w.fired.minimized?.dropped ?? [],
      });
    } else toBuild.push(w);
  }
  const dirs = new Map(toBuild.map((w) => [w.planned.name, w.dir]));
  const imageOf = (s: Pick<PlannedState, 'name'>) => {
    const dir = dirs.get(s.name);
    if (!dir) throw new InfraError(`the write log saved state ${s.name}, which was not asked for`);
    return join(dir, rawImageName);
  };
  try {
    await check.source.saveImages(
      toBuild.map((w) => w.planned),
      imageOf,
    );
    for (const w of toBuild)
      await writeJsonAtomic(join(w.dir, 'crash-state.json'), {
        unit: unit.id,
        log,
        note: 'the state as planned',
        base: w.planned.base,
        apply: w.planned.apply,
        dropped: w.planned.dropped.map((d) => d.id),
      });
  } catch (e) {
    for (const w of toBuild) w.result.error = `crash image not kept: ${errorMessage(e)}`;
  }
}

async function compressImages(store: CrashImageStore, reps: ReadonlySet<StateWork>, base: BaseImage): Promise<void> {
  for (const w of reps) {
    const raw = join(w.dir, rawImageName);
    if (
      !(await access(raw).then(
        () => true,
        () => false,
      ))
    )
      continue;
    try {
      await store.keep(raw, base, w.dir);
    } catch (e) {
      w.result.error = w.result.error ? `${w.result.error}; ${errorMessage(e)}` : errorMessage(e);
    }
  }
}

/**
 * The log is the unit's evidence: with --keep none it goes when nothing
 * failed; with --keep failed (the default) also when every state of the
 * plan was checked in this session and passed (the recording reruns from
 * its seed, as a passing kill case does), which keeps a nightly run's
 * folder small (the default suite's logs took 5-56 MB each).
 */
async function dropLogOnceChecked(check: UnitCheck, failing: readonly StateWork[]): Promise<void> {
  const { env, source, states, prepared } = check;
  const wholePlan = states.length === source.plan.states.length;
  const allPassed = states.every((w) => w.result.status === 'pass');
  if ((env.keep === 'none' && !failing.length) || (env.keep === 'failed' && wholePlan && allPassed)) {
    const log = join(prepared.unitDir, prepared.recording.log);
    await rm(log, { force: true });
    dropDigestFile(log);
  }
}

/** Items in turns over their groups: one of each group before a second of any. */
function roundRobin<T>(xs: readonly T[], group: (x: T) => string): T[] {
  const groups = new Map<string, T[]>();
  for (const x of xs) groups.set(group(x), [...(groups.get(group(x)) ?? []), x]);
  const queues = [...groups.values()];
  const out: T[] = [];
  while (queues.some((q) => q.length)) for (const q of queues) if (q.length) out.push(q.shift()!);
  return out;
}

/**
 * ddmin over the lost writes on the same oracle (the e2fsck recovery and
 * oracles at the state's position), asking for any of the state's failing
 * e2fsck-recovery findings; then what each write that matters held.
 */
async function minimizeState(
  w: StateWork,
  source: WriteLogSource,
  ctx: StateOracleContext,
  maxTests: number,
  workDir: string,
): Promise<void> {
  const keys = new Set(w.result.failing.filter((f) => f.recovery === 'e2fsck').map(findingKey));
  await using epoch = await source.epochStates(w.planned);
  const fails = epoch.oracle(async (image) =>
    (await e2fsckVerdict(w.planned, image, `${image}.recovery`, ctx)).failing.some((f) => keys.has(findingKey(f))),
  );
  const m = await minimizeDropped(w.planned.dropped, epoch.epochWrites, fails, { maxTests });
  const image = await epoch.image(m.dropped);
  const keep = join(workDir, `minimized-${sha256(w.spec.id).slice(0, 12)}.img`);
  await moveImage(image, keep);
  w.minimizedImage = keep;
  let notes: Map<number, string>;
  try {
    const explainer = await WriteExplainer.create(source.log, keep, source.basePath);
    const ex = await explainer.explain([...m.dropped, ...m.needed]);
    notes = new Map(ex.map((x) => [x.ref.index, x.summary]));
  } catch (e) {
    notes = new Map([...m.dropped, ...m.needed].map((x) => [x.index, `not explained: ${errorMessage(e)}`]));
  }
  const note = (r: WriteRef): WriteNote => ({
    id: r.id,
    index: r.index,
    ...(notes.get(r.index) ? { summary: notes.get(r.index)! } : {}),
  });
  const minimized: MinimizedState = {
    dropped: m.dropped.map(note),
    needed: m.needed.map(note),
    tests: m.tests,
    exhausted: m.exhausted,
  };
  w.fired.minimized = minimized;
  const lines = [
    `${w.spec.id}: ${w.planned.dropped.length} write(s) of flush epoch ${w.planned.epoch} lost; minimised in ${m.tests} oracle call(s)${m.exhausted ? ' (budget ran out: maybe not 1-minimal)' : ''} to:`,
    ...minimized.dropped.map((d) => `  lost   ${d.id} (log entry ${d.index}): ${d.summary ?? ''}`),
    ...minimized.needed.map((d) => `  landed ${d.id} (log entry ${d.index}): ${d.summary ?? ''}`),
    ...(minimized.dropped.length
      ? []
      : [
          '  no lost write: the state fails with every write of the epoch landed (the prefix state at its flush fails too), so this is no write-ordering failure',
        ]),
    ...(minimized.dropped.length || minimized.needed.length
      ? []
      : ['  and no write of the epoch is needed for it: what fails was on the disk before the epoch began']),
  ];
  const text = lines.join('\n');
  await writeFile(join(w.dir, 'writes-that-matter.txt'), text + '\n');
  await writeJsonAtomic(join(w.dir, 'minimized.json'), minimized);
  // The findings carry it too: what turns a finding into a bug report.
  // Once per signature (each key is used up as it is told): a state with thousands of
  // findings of one kind must not copy it thousands of times. The oracle above is done with keys.
  for (const f of w.result.findings)
    if (f.recovery === 'e2fsck' && keys.delete(findingKey(f)))
      f.detail = `${f.detail ? `${f.detail}\n\n` : ''}Writes that matter (minimised power-loss state):\n${text}`;
}
