import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256 } from '../util/hash.ts';
import { describeError, errorMessage } from '../util/errors.ts';
import { TempDir } from '../util/tempdir.ts';
import { writeJsonAtomic } from '../util/atomic.ts';
import type { Finding } from '../findings/finding.ts';
import { baseImageKey, logStateCaseId, type CaseSpec, type LogUnitSpec } from '../scenario/model.ts';
import { loadRecipe } from '../image/recipe.ts';
import { imageFileOrigins } from '../image/user-image.ts';
import type { CrashState, LogStateFired, MinimizedState, WriteNote } from '../crash/crash-state.ts';
import { loadRecording, moveImage, recordWorkload, WriteLogSource, type Recording } from '../crash/writelog/source.ts';
import type { CrashState as PlannedState, WriteRef } from '../crash/writelog/states.ts';
import { minimizeDropped } from '../crash/writelog/minimize.ts';
import { WriteExplainer } from '../crash/writelog/explain.ts';
import type { CaseResult } from '../results/case.ts';
import { caseVerdict } from '../results/verdict.ts';
import { rawImageName } from '../results/crash-images.ts';
import { formatSignature, signatureOf } from '../results/signature.ts';
import { checkCrashState, emptyResult, type CaseEnv } from './case-runner.ts';
import { e2fsckVerdict, type StateOracleContext } from './state-verdict.ts';

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
  /** Recorded now (false: reused from the unit's folder). */
  recorded: boolean;
}

function stateSpec(unit: LogUnitSpec, s: Pick<PlannedState, 'name' | 'kind'>): CaseSpec {
  const id = logStateCaseId(unit.scenario.name, s.name, unit.repetition);
  return { id, scenario: unit.scenario, crashPoint: { kind: 'log', stateKind: s.kind, state: s.name }, pointLabel: `log-${s.kind}`, repetition: unit.repetition, seed: unit.seed };
}

/**
 * Record the unit's workload, or reuse the recording its folder holds
 * (`reuse`, for --resume), and plan its states.
 */
export async function prepareLogUnit(unit: LogUnitSpec, env: CaseEnv, unitDir: string, opts: { reuse: boolean }): Promise<PreparedUnit> {
  await mkdir(unitDir, { recursive: true });
  const base = env.images.get(baseImageKey(unit.scenario))!;
  let recording = opts.reuse ? await loadRecording(unitDir) : undefined;
  // Another unit's recording, or one made with another seed (the bytes its steps wrote differ): record again.
  if (recording && (recording.unit !== unit.id || recording.seed !== unit.seed)) recording = undefined;
  const recorded = !recording;
  recording ??= await recordWorkload(unit.id, unit.scenario.steps, unit.seed, unit.crashStates.end, {
    machines: env.machines,
    kernel: env.kernel,
    initrd: env.initrd,
    base,
    ...(env.stepTimeoutMs ? { stepTimeoutMs: env.stepTimeoutMs } : {}),
  }, unitDir);
  await using tmp = await TempDir.create('log-plan');
  await using source = await WriteLogSource.open(unit.id, unitDir, recording, base.path, unit.crashStates, { workDir: tmp.path, jobs: 1 });
  const plan = source.plan;
  await writeJsonAtomic(join(unitDir, 'states.json'), {
    unit: unit.id,
    log: { entries: source.log.entries.length, flushes: source.flushes, bytes: source.log.fileSize, tornTail: source.log.torn ?? null },
    counts: plan.counts,
    epochs: plan.epochs,
    states: plan.states.map((s) => ({ name: s.name, kind: s.kind, variant: s.variant, epoch: s.epoch, position: s.position, base: s.base, dropped: s.dropped.map((d) => d.id), key: s.key })),
  });
  return {
    unit,
    unitDir,
    recording,
    specs: plan.states.map((s) => stateSpec(unit, s)),
    counts: { ...plan.counts, epochs: plan.epochs.length, entries: source.log.entries.length },
    recorded,
  };
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
  return new Set([...xs].sort((a, b) => sha(seed, a.name).localeCompare(sha(seed, b.name))).slice(0, n).map((x) => x.name));
}
const sha = (seed: number, name: string) => sha256(`${seed}/${name}`);

/** What a failing finding's signature is made of, without the case (the same within one unit's state kind). */
const findingKey = (f: Pick<Finding, 'recovery' | 'class' | 'code' | 'title'>) => `${f.recovery ?? '-'}|${f.class}|${f.code}|${f.title ?? ''}`;

interface StateWork {
  planned: PlannedState;
  spec: CaseSpec;
  dir: string;
  result: CaseResult;
  started: number;
  /** Image of the minimised state, kept until the representatives are chosen. */
  minimizedImage?: string;
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
  const scenario = unit.scenario;
  const base = env.images.get(baseImageKey(scenario))!;
  await using tmp = await TempDir.create('log-unit');
  await using source = await WriteLogSource.open(unit.id, unitDir, recording, base.path, unit.crashStates, { workDir: tmp.path, jobs: env.jobs });
  const work = new Map<string, StateWork>();
  for (const planned of source.plan.states) {
    const spec = stateSpec(unit, planned);
    if (opts.done?.has(spec.id) || (opts.wanted && !opts.wanted(spec.id))) continue;
    const dir = caseDir(spec.id);
    work.set(planned.name, { planned, spec, dir, result: { ...emptyResult(spec, dir), fired: source.fired(planned) }, started: 0 });
  }
  const todo = [...work.values()];
  const modes = scenario.recovery;
  const kernelSample = modes.includes('kernel') ? (modes.includes('e2fsck') ? sample(todo.map((w) => w.planned), unit.crashStates.kernelSample, unit.seed) : new Set(todo.map((w) => w.planned.name))) : new Set<string>();
  // States whose case is not final yet (kernel recovery, minimisation or an image to come).
  const held = new Set<StateWork>();
  const written = new Set<StateWork>();
  const clock = (w: StateWork) => {
    if (w.started) w.result.durationMs += performance.now() - w.started;
    w.started = 0;
  };
  const finish = async (w: StateWork) => {
    clock(w);
    w.result.durationMs = Math.round(w.result.durationMs);
    written.add(w);
    await write(w.result);
  };
  const merge = (w: StateWork, part: Partial<CaseResult>) => {
    const findings = [...w.result.findings, ...(part.findings ?? [])];
    const phases = { ...w.result.phases };
    for (const [k, v] of Object.entries(part.phases ?? {})) phases[k as keyof typeof phases] = (phases[k as keyof typeof phases] ?? 0) + (v as number);
    Object.assign(w.result, { ...part, findings, phases, fired: w.result.fired });
    const verdict = caseVerdict(findings, scenario.allow, true);
    w.result.status = verdict.status;
    w.result.failing = verdict.failing;
  };
  const fail = (w: StateWork, e: unknown) => {
    const d = describeError(e);
    // A state already failing keeps its findings' verdict; what went wrong later is said beside it.
    if (w.result.status === 'fail') {
      w.result.error = d.message;
      return;
    }
    w.result.status = 'error';
    w.result.error = d.message;
    w.result.errorKind = d.kind;
  };
  const checked = new Set<StateWork>();

  // One pass: check each state the source yields, up to `jobs` at once (the source holds the rest back).
  const pass = async (chosen: StateWork[], fork: 'in-place' | 'copy', check: (w: StateWork, st: CrashState) => Promise<void>) => {
    if (!chosen.length) return;
    const byName = new Map(chosen.map((w) => [w.planned.name, w]));
    const running = new Set<Promise<void>>();
    try {
      for await (const st of source.statesOf(chosen.map((w) => w.planned), fork)) {
        const w = byName.get(st.label)!;
        w.started = performance.now();
        const p = (async () => {
          try {
            await mkdir(w.dir, { recursive: true });
            await check(w, st);
            checked.add(w);
          } catch (e) {
            fail(w, e);
          } finally {
            clock(w);
            st.settle?.();
          }
        })();
        running.add(p);
        void p.finally(() => running.delete(p));
      }
    } catch (e) {
      // The replay itself failed (a damaged log, its undo file could not restore the working image): the states it did not reach are errors.
      await Promise.all(running);
      for (const w of chosen) {
        if (checked.has(w)) continue;
        fail(w, e);
        if (!written.has(w)) held.add(w);
      }
      return;
    }
    await Promise.all(running);
  };

  // 1. e2fsck recovery and the oracles, in place (a beforeOracle test seam damages images: those get copies).
  const fork = env.beforeOracle ? 'copy' : 'in-place';
  if (modes.includes('e2fsck')) {
    await pass(todo, fork, async (w, st) => {
      merge(w, await checkCrashState(st, w.spec, env, w.dir, { recovery: ['e2fsck'], uncheckableIsFinding: true }));
      if (w.result.status === 'pass' && !kernelSample.has(w.planned.name)) await finish(w);
      else held.add(w);
    });
  } else for (const w of todo) held.add(w);

  // 2. Kernel recovery: the seeded sample, and every state e2fsck recovery failed (a VM writes the image: copies).
  if (modes.includes('kernel')) {
    const chosen = [...held].filter((w) => w.result.status !== 'error' && (kernelSample.has(w.planned.name) || w.result.status === 'fail'));
    await pass(chosen, 'copy', async (w, st) => {
      merge(w, await checkCrashState(st, w.spec, env, w.dir, { recovery: ['kernel'], workloadFindings: !modes.includes('e2fsck'), uncheckableIsFinding: true }));
    });
  }
  const failing = [...held].filter((w) => w.result.status === 'fail');

  // 3. Minimise failing power-loss states, one per failing signature first, within the unit's budget.
  const candidates = failing.filter((w) => w.planned.kind === 'power-loss' && w.planned.dropped.length > 0 && !w.planned.torn && w.result.failing.some((f) => f.recovery === 'e2fsck'));
  const order = roundRobin(candidates, (w) => w.result.failing.filter((f) => f.recovery === 'e2fsck').map(findingKey).sort().join(' '));
  if (order.length) {
    // The original bytes of files the workload writes into: from the recipe, or read from the user's image.
    const recipe = scenario.recipe ? await loadRecipe(scenario.recipe) : undefined;
    const writtenPaths = [...new Set(scenario.steps.flatMap((s) => (s.kind === 'write' || s.kind === 'writer' ? [s.path] : [])))];
    const imageFiles = base.source === 'image' && writtenPaths.length ? await imageFileOrigins(base, writtenPaths) : undefined;
    for (const w of order.slice(0, unit.crashStates.minimize)) {
      try {
        await minimizeState(w, source, { manifest: base.manifest, ...(recipe ? { recipe } : {}), ...(imageFiles ? { imageFiles } : {}), steps: scenario.steps, records: recording.records, acks: source.acks, allow: scenario.allow, caseSeed: unit.seed }, unit.crashStates.minimizeTests, tmp.path);
      } catch (e) {
        // The failure is still a finding; only its explanation is missing.
        w.result.error = `minimisation failed: ${errorMessage(e)}`;
      }
    }
  }

  // 4. Crash images once per failing signature: the minimised state where there is one.
  if (env.keep !== 'none' && failing.length) {
    const covered = new Map<string, StateWork>();
    const preferred = [...failing].sort((a, b) => Number(!!b.minimizedImage) - Number(!!a.minimizedImage));
    for (const w of preferred) {
      for (const f of w.result.failing) {
        const sig = formatSignature(signatureOf(w.result, f));
        if (!covered.has(sig)) covered.set(sig, w);
      }
    }
    const reps = new Set(covered.values());
    const toBuild: StateWork[] = [];
    for (const w of reps) {
      if (w.minimizedImage) {
        await moveImage(w.minimizedImage, join(w.dir, rawImageName));
        w.minimizedImage = undefined;
        await writeJsonAtomic(join(w.dir, 'crash-state.json'), { unit: unit.id, log: join(unitDir, recording.log), note: 'the minimised state: the epoch with only the minimal set of writes lost', epochBase: w.planned.base, lost: (w.result.fired as LogStateFired).minimized?.dropped ?? [] });
      } else toBuild.push(w);
    }
    try {
      await source.saveImages(toBuild.map((w) => w.planned), (s) => join(work.get(s.name)!.dir, rawImageName));
      for (const w of toBuild) await writeJsonAtomic(join(w.dir, 'crash-state.json'), { unit: unit.id, log: join(unitDir, recording.log), note: 'the state as planned', base: w.planned.base, apply: w.planned.apply, dropped: w.planned.dropped.map((d) => d.id) });
    } catch (e) {
      for (const w of toBuild) w.result.error = `crash image not kept: ${errorMessage(e)}`;
    }
    // Stored as a kill case's is: only the blocks that differ from the run's
    // compressed copy of the base (crash.qcow2), `qcrash image export` for the raw image.
    if (env.crashImages) {
      for (const w of reps) {
        const raw = join(w.dir, rawImageName);
        if (!(await access(raw).then(() => true, () => false))) continue;
        try {
          await env.crashImages.keep(raw, base, w.dir);
        } catch (e) {
          w.result.error = w.result.error ? `${w.result.error}; ${errorMessage(e)}` : errorMessage(e);
        }
      }
    }
    for (const w of failing) {
      if (reps.has(w)) continue;
      const rep = [...covered.entries()].find(([sig]) => w.result.failing.some((f) => formatSignature(signatureOf(w.result, f)) === sig))?.[1];
      if (rep) (w.result.fired as LogStateFired).keptImageIn = rep.spec.id;
    }
  }
  for (const w of failing) if (w.minimizedImage) await rm(w.minimizedImage, { force: true });
  for (const w of todo) if (!written.has(w)) await finish(w);
  // The log is the unit's evidence: with --keep none it goes when nothing
  // failed; with --keep failed (the default) also when every state of the
  // plan was checked in this session and passed (the recording reruns from
  // its seed, as a passing kill case does), which keeps a nightly run's
  // folder small (the default suite's logs took 5-56 MB each).
  const wholePlan = work.size === source.plan.states.length;
  const allPassed = todo.every((w) => w.result.status === 'pass');
  if ((env.keep === 'none' && !failing.length) || (env.keep === 'failed' && wholePlan && allPassed)) await rm(join(unitDir, recording.log), { force: true });
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
async function minimizeState(w: StateWork, source: WriteLogSource, ctx: StateOracleContext, maxTests: number, workDir: string): Promise<void> {
  const keys = new Set(w.result.failing.filter((f) => f.recovery === 'e2fsck').map(findingKey));
  await using epoch = await source.epochStates(w.planned);
  const fails = epoch.oracle(async (image) => (await e2fsckVerdict(w.planned, image, `${image}.recovery`, ctx)).failing.some((f) => keys.has(findingKey(f))));
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
  const note = (r: WriteRef): WriteNote => ({ id: r.id, index: r.index, ...(notes.get(r.index) ? { summary: notes.get(r.index)! } : {}) });
  const minimized: MinimizedState = { dropped: m.dropped.map(note), needed: m.needed.map(note), tests: m.tests, exhausted: m.exhausted };
  (w.result.fired as LogStateFired).minimized = minimized;
  const lines = [
    `${w.spec.id}: ${w.planned.dropped.length} write(s) of flush epoch ${w.planned.epoch} lost; minimised in ${m.tests} oracle call(s)${m.exhausted ? ' (budget ran out: maybe not 1-minimal)' : ''} to:`,
    ...minimized.dropped.map((d) => `  lost   ${d.id} (log entry ${d.index}): ${d.summary ?? ''}`),
    ...minimized.needed.map((d) => `  landed ${d.id} (log entry ${d.index}): ${d.summary ?? ''}`),
    ...(minimized.dropped.length ? [] : ['  no lost write: the state fails with every write of the epoch landed (the prefix state at its flush fails too), so this is no write-ordering failure']),
    ...(minimized.dropped.length || minimized.needed.length ? [] : ['  and no write of the epoch is needed for it: what fails was on the disk before the epoch began']),
  ];
  const text = lines.join('\n');
  await writeFile(join(w.dir, 'writes-that-matter.txt'), text + '\n');
  await writeJsonAtomic(join(w.dir, 'minimized.json'), minimized);
  // The findings carry it too: what turns a finding into a bug report.
  for (const f of w.result.findings) if (f.recovery === 'e2fsck' && keys.has(findingKey(f))) f.detail = `${f.detail ? `${f.detail}\n\n` : ''}Writes that matter (minimised power-loss state):\n${text}`;
}
