import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { E2fsckCannotCheckError, runE2fsck } from '../image/e2fsck.ts';
import { statReads } from '../image/debugfs.ts';
import { spawnerCpuMs } from '../image/spawner.ts';
import { expandLogUnits } from '../scenario/expand.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import type { CaseResult } from '../results/case.ts';
import { forEachState } from '../crash/writelog/materialize.ts';
import { WriteLogSource } from '../crash/writelog/source.ts';
import { loadScenarios, prepareRun } from '../run/prepare.ts';
import { baseImageOf } from '../run/case-runner.ts';
import { prepareLogUnit, runLogUnit, type PreparedUnit, type RunEnv } from '../run/log-unit.ts';
import { writeJsonAtomic } from '../util/atomic.ts';
import { allowanceOnLine } from '../findings/finding.ts';
import { InfraError } from '../util/errors.ts';
import { scenariosDir } from '../util/paths.ts';
import { recordingStamp, storeRecording, storedRecording, unitFolder } from './recording-store.ts';
import { TempDir } from '../util/tempdir.ts';

/**
 * The full-oracle bench: the default suite's write-log scenarios recorded
 * once, then every planned state of every log checked two ways at the same
 * number of jobs, taking turns log by log (alternating which goes first)
 * so that load from other work on the machine falls on both alike:
 *
 * - full oracle: what `qcrash run` does with a state on the host
 *   (run/log-unit.ts runLogUnit: in-place replay, e2fsck's journal replay,
 *   the content and durability oracles, e2fsck -fn, and -fy and -fn again
 *   when the first -fn is not clean; each case written as the run writes it).
 *   The kernel-recovery sample is a VM boot per state, not host work: the
 *   bench runs the e2fsck recovery only.
 * - the limit: `e2fsck -fn` alone on the same states (the same in-place
 *   replay), nothing else: what this machine cannot go faster than.
 */
export interface OracleBenchOptions {
  machines: MachineLauncher;
  kernel: KernelInfo;
  jobs: number;
  /** Scenario files (default: the default suite's write-log scenarios). */
  scenarios?: string[];
  /** Folders of earlier recordings by unit id (a unit folder holding recording.json and workload.log): not recorded again. */
  recordings?: ReadonlyMap<string, string>;
  /** `--recordings DIR`: units recorded there with the same kernel, base and steps are reused, the others recorded and kept there (recording-store.ts). */
  store?: string;
  /** The run seed the units' seeds derive from (a recording is reused only with its own). Default 1. */
  seed?: number;
  onProgress?: (line: string) => void;
}

interface OracleBenchFigures {
  states: number;
  ms: number;
  statesPerMinute: number;
  /** CPU time of this process and the programs it ran, per state. */
  cpuMsPerState: number;
  /** The part of it the programs (e2fsck, debugfs) took. */
  toolCpuMsPerState: number;
}

export interface OracleBenchResult {
  jobs: number;
  units: Array<{ unit: string; states: number; entries: number }>;
  fullOracle: OracleBenchFigures;
  fnLimit: OracleBenchFigures;
  /** fullOracle states/min over fnLimit states/min. */
  fraction: number;
  /** The same by CPU time: what load from other work on the machine moves least. */
  cpuFraction: number;
  /** Every state of the full-oracle pass passed (the default suite on the stock kernel does). */
  statuses: Record<string, number>;
  /** How the full-oracle pass read its files' stats: images read in process, and images left to debugfs (with the last reason). */
  statReads: { inProcess: number; debugfs: number; lastReason?: string };
  /** This process's resident size at the end (a spawn's fork costs in proportion to it). */
  rssMiB: number;
  /** How many of the units' logs were recorded by this bench run (the others were reused). */
  recorded: number;
}

/** The default suite's scenarios that record a log. */
async function defaultLogScenarios(): Promise<string[]> {
  const { scenarios } = await loadScenarios([scenariosDir]);
  return scenarios.filter((s) => s.crashStates && s.suite === 'default').map((s) => s.file);
}

/** The default suite's write-log units, each recorded (or copied from `recordings`) into a folder under `dir` and planned. */
export async function recordSuiteLogs(
  o: Omit<OracleBenchOptions, 'onProgress'> & { onProgress?: (line: string) => void },
  dir: string,
): Promise<{ env: RunEnv; prepared: PreparedUnit[] }> {
  const files = o.scenarios ?? (await defaultLogScenarios());
  const { scenarios } = await loadScenarios(files, { recovery: ['e2fsck'] });
  // Judged as `qcrash run` judges them (runner.ts): a known bug's findings are allowed on the lines it was confirmed on.
  for (const s of scenarios) s.allow = allowanceOnLine(s.allow, o.kernel.line);
  const { env } = await prepareRun({
    scenarios,
    kernel: o.kernel,
    machines: o.machines,
    keep: 'all',
    snapshots: false,
    jobs: o.jobs,
  });
  const prepared: PreparedUnit[] = [];
  for (const unit of expandLogUnits(scenarios, o.seed ?? 1)) {
    const unitDir = unitFolder(dir, unit.id);
    const stamp = o.store ? recordingStamp(unit, o.kernel, baseImageOf(env, unit.scenario)) : undefined;
    const stored = o.store && stamp ? await storedRecording(o.store, stamp) : undefined;
    const earlier = o.recordings?.get(unit.id) ?? (stored && 'dir' in stored ? stored.dir : undefined);
    if (earlier) await copyRecording(earlier, unitDir);
    else o.onProgress?.(`recording ${unit.id}${stored && 'missing' in stored ? ` (${o.store}: ${stored.missing})` : ''}`);
    const p = await prepareLogUnit(unit, env, unitDir, { reuse: !!earlier });
    if (o.store && stamp && p.recorded) await storeRecording(o.store, unitDir, stamp);
    prepared.push(p);
  }
  return { env, prepared };
}

export async function benchFullOracle(o: OracleBenchOptions): Promise<OracleBenchResult> {
  await using tmp = await TempDir.create('oracle-bench');
  const { env, prepared } = await recordSuiteLogs(
    { ...o, onProgress: (line) => o.onProgress?.(`full oracle: ${line}`) },
    tmp.path,
  );
  const full: Tally = { states: 0, ms: 0, cpuMs: 0, toolCpuMs: 0 };
  const limit: Tally = { states: 0, ms: 0, cpuMs: 0, toolCpuMs: 0 };
  const statuses: Record<string, number> = {};
  const reads0 = { ...statReads };
  for (const [i, p] of prepared.entries()) {
    o.onProgress?.(`full oracle: ${p.unit.id}, ${p.specs.length} states: full oracle and e2fsck -fn alone`);
    const turns = [
      () => timeFullOracle(p, env, tmp.join(`cases-${i}`), full, statuses),
      () => timeFnLimit(p, env, tmp.join(`limit-${i}`), limit),
    ];
    for (const turn of i % 2 ? turns.reverse() : turns) await turn();
  }
  const a = figures(full);
  const b = figures(limit);
  return {
    jobs: o.jobs,
    units: prepared.map((p) => ({ unit: p.unit.id, states: p.specs.length, entries: p.counts.entries })),
    fullOracle: a,
    fnLimit: b,
    fraction: +(a.statesPerMinute / b.statesPerMinute).toFixed(3),
    statReads: {
      inProcess: statReads.inProcess - reads0.inProcess,
      debugfs: statReads.debugfs - reads0.debugfs,
      ...(statReads.debugfs > reads0.debugfs ? { lastReason: statReads.lastReason } : {}),
    },
    cpuFraction: +(b.cpuMsPerState / a.cpuMsPerState).toFixed(3),
    statuses,
    rssMiB: Math.round(process.memoryUsage().rss / (1 << 20)),
    recorded: prepared.filter((p) => p.recorded).length,
  };
}

interface Tally {
  states: number;
  ms: number;
  cpuMs: number;
  toolCpuMs: number;
}

function figures(t: Tally): OracleBenchFigures {
  return {
    states: t.states,
    ms: Math.round(t.ms),
    statesPerMinute: Math.round((t.states / Math.max(1, t.ms)) * 60_000),
    cpuMsPerState: +(t.cpuMs / Math.max(1, t.states)).toFixed(1),
    toolCpuMsPerState: +(t.toolCpuMs / Math.max(1, t.states)).toFixed(1),
  };
}

/**
 * CPU milliseconds of this process, of the children it has waited for, and
 * of the tool spawner with the programs it ran (e2fsck, debugfs):
 * /proc's utime, stime, cutime, cstime.
 */
async function cpuMsWithChildren(): Promise<number> {
  const stat = await readFile('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14-17 of proc(5), counted from 3 after the name: indices 11-14 here.
  const ticks = [11, 12, 13, 14].reduce((n, i) => n + Number(fields[i]), 0);
  return ticks * 10 + (await spawnerCpuMs());
}

async function timed(t: Tally, states: number, work: () => Promise<void>): Promise<void> {
  const c0 = await cpuMsWithChildren();
  const s0 = await spawnerCpuMs();
  const t0 = performance.now();
  await work();
  t.ms += performance.now() - t0;
  t.cpuMs += (await cpuMsWithChildren()) - c0;
  t.toolCpuMs += (await spawnerCpuMs()) - s0;
  t.states += states;
}

/** Every state of the unit as `qcrash run` checks it (its case folders under `dir`, removed afterwards). */
async function timeFullOracle(
  p: PreparedUnit,
  env: RunEnv,
  dir: string,
  t: Tally,
  statuses: Record<string, number>,
): Promise<void> {
  const results: CaseResult[] = [];
  await timed(t, p.specs.length, () =>
    runLogUnit(
      p,
      env,
      (id) => join(dir, id),
      async (r) => {
        results.push(r);
        await mkdir(r.dir, { recursive: true });
        await writeJsonAtomic(join(r.dir, 'case.json'), r);
      },
    ),
  );
  for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  if (results.length !== p.specs.length)
    throw new InfraError(`full-oracle bench: ${p.unit.id} wrote ${results.length} of its ${p.specs.length} states`);
  await rm(dir, { recursive: true, force: true });
}

/** `e2fsck -fn` alone on the unit's states, replayed in place as the full oracle's are. */
async function timeFnLimit(p: PreparedUnit, env: RunEnv, workDir: string, t: Tally): Promise<void> {
  await mkdir(workDir, { recursive: true });
  await using source = await WriteLogSource.open(
    p.unit.id,
    p.unitDir,
    p.recording,
    baseImageOf(env, p.unit.scenario).path,
    p.unit.crashStates,
    { workDir, jobs: env.jobs },
  );
  await timed(t, source.plan.states.length, async () => {
    const out = await forEachState(
      source.log,
      source.basePath,
      source.plan.states,
      { workDir, jobs: env.jobs, fork: 'in-place' },
      (_s, image) => checkOnly(image),
    );
    const failed = out.find((x) => x.error);
    if (failed) throw new InfraError(`full-oracle bench: e2fsck -fn on ${failed.state.name}: ${failed.error}`);
  });
  await rm(workDir, { recursive: true, force: true });
}

/** e2fsck -fn; an image it cannot check (exit 8 or 12, the full oracle's `uncheckable` finding) is a state checked, as it is for the full oracle. */
async function checkOnly(image: string): Promise<void> {
  try {
    await runE2fsck(image, 'check');
  } catch (e) {
    if (!(e instanceof E2fsckCannotCheckError)) throw e;
  }
}

async function copyRecording(from: string, to: string): Promise<void> {
  const { cp } = await import('node:fs/promises');
  await cp(from, to, { recursive: true });
}

/** The bench's lines for the full oracle. */
export function oracleBenchLines(r: OracleBenchResult): string[] {
  const what = `${r.fullOracle.states} states of ${r.units.length} recorded log(s) of the default suite, jobs ${r.jobs}`;
  return [
    `full-oracle: ${r.fullOracle.statesPerMinute} states/min (${what}; ${r.fullOracle.cpuMsPerState} ms CPU a state, ${r.fullOracle.toolCpuMsPerState} ms of it in the tools (e2fsck, debugfs); ${Object.entries(
      r.statuses,
    )
      .map(([k, n]) => `${n} ${k}`)
      .join(', ')})`,
    `  (stats read in process on ${r.statReads.inProcess} of ${r.statReads.inProcess + r.statReads.debugfs} images${r.statReads.debugfs ? `; debugfs read ${r.statReads.debugfs}, the last because of ${r.statReads.lastReason}` : ''})`,
    `e2fsck -fn alone, same states and jobs: ${r.fnLimit.statesPerMinute} states/min (${r.fnLimit.cpuMsPerState} ms CPU a state)`,
    `full oracle vs e2fsck -fn limit: ${r.fraction.toFixed(2)} (by CPU time: ${r.cpuFraction.toFixed(2)})`,
  ];
}
