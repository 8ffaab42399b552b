import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runE2fsck } from '../image/e2fsck.ts';
import { runSpawned } from '../image/spawner.ts';
import { replayLogTool } from '../image/layout-tool.ts';
import { WriteLog, isFlush, isFua } from '../crash/writelog/format.ts';
import { runRecordedWorkload } from '../crash/writelog/record.ts';
import type { Step } from '../scenario/model.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import { buildImage, type BaseImage } from '../image/build.ts';
import { loadRecipe } from '../image/recipe.ts';
import { createCaseDisk } from '../image/disk.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import { forEachState, type CheckScope, type ForkMode } from '../crash/writelog/materialize.ts';
import { ReplayCursor } from '../crash/writelog/replay.ts';
import type { PlannedState } from '../crash/writelog/states.ts';
import { ConfigError, InfraError } from '../util/errors.ts';
import { sha256File } from '../util/hash.ts';
import { projectRoot } from '../util/paths.ts';
import { TempDir } from '../util/tempdir.ts';

/**
 * The write-log bench, on one recorded log: the same prefix states (one at
 * every flush and FUA entry), the same oracle on each (e2fsck -E
 * journal_only, then e2fsck -fn) and the same number of jobs, two ways:
 *
 * (a) the fstests loop as common/dmlogwrites and generic/482 run it: for
 *     each boundary k, a fresh copy of the base, entries 0..k replayed onto
 *     it (replay-log --limit k+1), then the checks. The replay is a process
 *     per state of vm-images/tools/qcrash-replay-log.c, which has the I/O
 *     pattern of fstests' replay-log (headers read from entry 0, a pwrite
 *     per entry, an fsync at the end); the copy is `cp`, as a script's is.
 * (b) qcrash's incremental path: one working image advanced along the log,
 *     a sparse copy of it forked at each boundary, the checks on the fork
 *     (materialize.ts forEachState, fork 'copy').
 * (c) the same without copies: a working image per job, each state checked
 *     in place and put back from e2fsck's undo file (fork 'in-place').
 *
 * (b) and (c) replay with replay.ts, (a) with that C replayer (the test
 * test/writelog/replay-log-tool.test.ts shows both make the same images);
 * (a) and (b) copy with the same `cp`. (a) replays O(k) entries per state, (b) and (c) each entry once (c:
 * once per job and round). Per state each path records e2fsck's exit codes
 * and problem codes, which must agree. The paths take turns on interleaved
 * slices of the states, so that load from other work on the machine falls
 * on all three alike.
 */
export interface WritelogBenchOptions {
  log: string;
  base: string;
  jobs: number;
  /** Check only the first N boundaries (quick runs). */
  limit?: number;
  /** States whose images both paths also hash (outside the timed runs) to show they are the same image. Default 3. */
  verifyImages?: number;
  /** Interleaved slices the paths take turns on (against load drift on a shared machine). Default 4. */
  rounds?: number;
}

interface StateCheck {
  position: number;
  journalExit: number;
  checkExit: number;
  problems: string[];
  /** Milliseconds of the two e2fsck runs, start to end (a job's time: other jobs run beside them). */
  checkMs: number;
}

interface PathFigures {
  states: number;
  ms: number;
  statesPerMinute: number;
  msPerState: number;
  /** The fstests loop only: wall time of its replay process (qcrash-replay-log) per state, start to exit. */
  replayMsPerState?: number;
  /**
   * A job's time per state in the two e2fsck runs, which every path runs
   * alike: the rest of a job's time (msPerState times jobs) is the path's
   * own (copies, replays, undoing) or waiting.
   */
  checksMsPerState: number;
}

export interface WritelogBenchResult {
  log: { path: string; entries: number; flushes: number; fuas: number; bytes: number };
  jobs: number;
  states: number;
  rounds: number;
  fstestsLoop: PathFigures;
  /** Fork by copy (b). */
  incremental: PathFigures;
  /** Check in place, undone from the undo file (c). */
  inPlace: PathFigures;
  /** (b) states/min over (a) states/min. */
  ratio: number;
  /** (c) states/min over (a) states/min. */
  ratioInPlace: number;
  /** Every state got the same e2fsck exit codes and problem codes on all paths. */
  sameResults: boolean;
  /** Positions whose images both paths built byte-identical (sha256), out of those hashed. */
  imagesVerified: { checked: number; identical: number };
  /** Where every path's images were: in memory (tmpfs) as `qcrash run` keeps a unit's working images when there is room, or on disk. */
  storage: 'memory' | 'disk';
}

/** The boundaries fstests checks: just after every FLUSH entry and every FUA write. */
function flushBoundaries(log: WriteLog): number[] {
  return log.entries.filter((e) => isFlush(e) || isFua(e)).map((e) => e.index + 1);
}

async function checkImage(image: string, position: number, scope?: CheckScope): Promise<StateCheck> {
  const t0 = performance.now();
  const jo = await runE2fsck(image, 'journal-only', { undoFile: scope?.undoFile() });
  const fn = await runE2fsck(image, 'check');
  return {
    position,
    journalExit: jo.exit.code,
    checkExit: fn.exit.code,
    problems: fn.problems.map((p) => p.codeHex).sort(),
    checkMs: performance.now() - t0,
  };
}

const tenths = (x: number) => Math.round(x * 10) / 10;

function figures(states: number, ms: number, checkMs: number): PathFigures {
  return {
    states,
    ms: Math.round(ms),
    statesPerMinute: tenths((states / ms) * 60_000),
    msPerState: tenths(ms / Math.max(1, states)),
    checksMsPerState: tenths(checkMs / Math.max(1, states)),
  };
}

/** The checks' time of a path's states. */
const checkMsOf = (t: { results: readonly StateCheck[] }) => t.results.reduce((n, r) => n + r.checkMs, 0);

export async function benchWritelog(o: WritelogBenchOptions): Promise<WritelogBenchResult> {
  if (!Number.isInteger(o.jobs) || o.jobs < 1) throw new ConfigError(`bench jobs must be a positive integer, not ${o.jobs}`);
  const jobs = o.jobs;
  await using log = await WriteLog.open(o.log);
  const positions = benchPositions(log, o);
  // Every path's images where `qcrash run` keeps a unit's working images
  // (run/log-unit.ts): in memory when there is room. The same place for all
  // three, so that the storage's cost (cp, fsync, e2fsck's undo file) is
  // not what the ratio measures. At most: a copy per job for the fstests
  // loop and for each incremental path, their working images, the checks.
  const imageBytes = (await stat(o.base)).size;
  await using tmp = await TempDir.create('writelog-bench', { inMemory: (3 * jobs + 3) * imageBytes });
  const rounds = Math.max(1, Math.min(o.rounds ?? 4, positions.length));
  const bench: BenchPaths = { log, base: o.base, tmp, jobs, replayer: await replayLogTool() };
  const tallies = await timePathsInTurn(bench, interleavedSlices(positions, rounds));
  const sameResults = sameResultsOnEveryPath(tallies, positions.length);
  // Outside the timings: a few states built both ways must be the same bytes.
  const sample = pickEvenly(positions, o.verifyImages ?? 3);
  const identical = await identicalImages(bench, sample);

  const fa = {
    ...figures(positions.length, tallies.fstests.ms, checkMsOf(tallies.fstests)),
    replayMsPerState: tenths(tallies.fstests.replayMs / positions.length),
  };
  const fb = figures(positions.length, tallies.copy.ms, checkMsOf(tallies.copy));
  const fc = figures(positions.length, tallies.inPlace.ms, checkMsOf(tallies.inPlace));
  return {
    log: {
      path: o.log,
      entries: log.entries.length,
      flushes: log.entries.filter(isFlush).length,
      fuas: log.entries.filter(isFua).length,
      bytes: log.fileSize,
    },
    jobs,
    states: positions.length,
    rounds,
    fstestsLoop: fa,
    incremental: fb,
    inPlace: fc,
    ratio: Math.round((fb.statesPerMinute / fa.statesPerMinute) * 100) / 100,
    ratioInPlace: Math.round((fc.statesPerMinute / fa.statesPerMinute) * 100) / 100,
    sameResults,
    imagesVerified: { checked: sample.length, identical },
    storage: tmp.inMemory ? 'memory' : 'disk',
  };
}

/** The log positions the bench checks: every flush and FUA boundary, or the first `limit` of them. */
function benchPositions(log: WriteLog, o: WritelogBenchOptions): number[] {
  let positions = flushBoundaries(log);
  if (o.limit !== undefined) positions = positions.slice(0, o.limit);
  if (!positions.length) throw new InfraError(`${o.log}: no flush or FUA entries, so no prefix states to bench`);
  return positions;
}

/** What every path of the bench works with. */
interface BenchPaths {
  log: WriteLog;
  base: string;
  tmp: TempDir;
  jobs: number;
  /** The compiled qcrash-replay-log. */
  replayer: string;
}

/** One path's checks and the time they took. */
interface PathTally {
  results: StateCheck[];
  ms: number;
  /** Time in replay processes (the fstests loop). */
  replayMs: number;
}

type PathTallies = Record<'fstests' | 'copy' | 'inPlace', PathTally>;

/** `rounds` interleaved slices of the positions: slice r holds every rounds-th position from the r-th. */
function interleavedSlices(positions: readonly number[], rounds: number): number[][] {
  return Array.from({ length: rounds }, (_, r) => positions.filter((_, i) => i % rounds === r));
}

/**
 * The paths take turns on each slice, in alternating order, so that a load
 * change on a shared machine during the run falls on all paths alike. A
 * round costs the incremental paths a new working image and a replay up to
 * its last state: counted against them.
 */
async function timePathsInTurn(bench: BenchPaths, slices: readonly number[][]): Promise<PathTallies> {
  const tally = (): PathTally => ({ results: [], ms: 0, replayMs: 0 });
  const tallies: PathTallies = { fstests: tally(), copy: tally(), inPlace: tally() };
  for (const [r, slice] of slices.entries()) {
    const turns = [
      () => timeFstestsLoop(bench, slice, tallies.fstests),
      () => timeIncremental(bench, 'copy', slice, tallies.copy),
      () => timeIncremental(bench, 'in-place', slice, tallies.inPlace),
    ];
    for (const turn of r % 2 ? turns.reverse() : turns) await turn();
  }
  return tallies;
}

/** (a) The fstests loop: `jobs` workers, each state from a fresh base copy and entry 0. */
async function timeFstestsLoop(bench: BenchPaths, slice: readonly number[], tally: PathTally): Promise<void> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: bench.jobs }, async (_, j) => {
      while (next < slice.length) {
        const position = slice[next++]!;
        const img = bench.tmp.join(`fstests-${j}.img`);
        tally.replayMs += await fstestsReplay(bench, img, position);
        tally.results.push(await checkImage(img, position));
        await rm(img, { force: true });
      }
    }),
  );
  tally.ms += performance.now() - t0;
}

/**
 * One state as fstests makes it: a copy of the base, then a replay process
 * (qcrash-replay-log --limit) from entry 0; both started from the tool
 * spawner, as e2fsck is, not by forking the harness. Returns the replay
 * process's wall time.
 */
async function fstestsReplay(bench: BenchPaths, img: string, position: number): Promise<number> {
  const cp = await runSpawned('cp', ['--sparse=always', '--reflink=auto', '--', bench.base, img]);
  if (cp.exitCode !== 0) throw new InfraError(`bench: cp ${bench.base} ${img}: ${cp.stderr.trim()}`);
  const r = await runSpawned(bench.replayer, ['--log', bench.log.path, '--replay', img, '--limit', String(position)]);
  if (r.exitCode !== 0)
    throw new InfraError(`bench: qcrash-replay-log --limit ${position}: exit ${r.exitCode}: ${r.stderr.trim()}`);
  return r.durationMs;
}

/** (b) and (c) The incremental path: the same states and checks, forked by copy or checked in place. */
async function timeIncremental(bench: BenchPaths, fork: ForkMode, slice: readonly number[], tally: PathTally): Promise<void> {
  const { tmp, jobs } = bench;
  const states: PlannedState[] = slice.map((p) => ({
    name: `at-${p}`,
    kind: 'prefix',
    variant: 'flush',
    epoch: 0,
    position: p,
    base: p,
    apply: [],
    dropped: [],
    acksBefore: [],
    key: '',
  }));
  const t1 = performance.now();
  const outcomes = await forEachState(bench.log, bench.base, states, { workDir: tmp.path, jobs, fork }, (s, image, scope) =>
    checkImage(image, s.position, scope),
  );
  const failed = outcomes.find((x) => x.error);
  if (failed)
    throw new InfraError(`bench: the incremental path (${fork}) failed at position ${failed.state.position}: ${failed.error}`);
  await rm(tmp.join('work.img'), { force: true });
  for (let j = 0; j < jobs; j++) await rm(tmp.join(`work-${j}.img`), { force: true });
  tally.ms += performance.now() - t1;
  tally.results.push(...outcomes.map((x) => x.result!));
}

/** Every path checked every state, and found what the fstests loop found. */
function sameResultsOnEveryPath(tallies: PathTallies, states: number): boolean {
  const key = (c: StateCheck) => `${c.position}:${c.journalExit}:${c.checkExit}:${c.problems.join(',')}`;
  const a = new Set(tallies.fstests.results.map(key));
  return (
    tallies.fstests.results.length === states &&
    [tallies.copy, tallies.inPlace].every((p) => p.results.length === states && p.results.every((x) => a.has(key(x))))
  );
}

/** How many of the sample positions give the same image by the fstests loop's replay and by a fork of the cursor. */
async function identicalImages(bench: BenchPaths, sample: readonly number[]): Promise<number> {
  const { log, base, tmp } = bench;
  let identical = 0;
  using cursor = await ReplayCursor.create(log, base, tmp.join('verify-work.img'));
  for (const p of sample) {
    await fstestsReplay(bench, tmp.join('verify-a.img'), p);
    await cursor.advanceTo(p);
    await cursor.fork(tmp.join('verify-b.img'));
    if ((await sha256File(tmp.join('verify-a.img'))) === (await sha256File(tmp.join('verify-b.img')))) identical++;
  }
  return identical;
}

function pickEvenly<T>(xs: readonly T[], n: number): T[] {
  if (n >= xs.length) return [...xs];
  return Array.from({ length: n }, (_, i) => xs[Math.floor(((i + 1) * xs.length) / (n + 1))]!);
}

/** How a bench log is made: `rounds` of the same round (migrate one file, fsync it). */
export interface BenchLogShape {
  rounds: number;
}

/**
 * The workload of a bench log: a migration of real files with a sync loop,
 * one file a round, each made durable by its own fsync. Every log has the
 * same round, so a longer log is only more rounds: what a state costs on
 * each path is compared at two lengths of the same workload, not two
 * workloads. (The logs used to add a rewrite of 16 MiB or 6 MiB of a data
 * file to every round, padding that only the fstests loop's replay from
 * entry 0 paid for, and a different amount at each length: issue 26.) Each
 * fsync's commit logs two flush entries (jbd2's preflush before the commit
 * block, and the flush that stands in for its FUA), and the migration's
 * own transaction adds about one: about three flush epochs a round.
 */
function benchLogSteps(shape: BenchLogShape): Step[] {
  const steps: Step[] = [{ kind: 'mount', name: 'mount', options: ['commit=30'] }];
  for (let i = 0; i < shape.rounds; i++) {
    steps.push({ kind: 'migrate', name: `migrate-${i}`, paths: [`/m/f${i}`], recursive: false });
    steps.push({ kind: 'fsync', name: `fsync-m-${i}`, path: `/m/f${i}` });
  }
  steps.push({ kind: 'umount', name: 'umount' });
  return steps;
}

const benchLogRecipe = `${projectRoot}/vm-images/bench/log-1k.yaml`;

/** Record one bench log on a sparse copy of `base` (the VM boots; the disk goes through blklogwrites). */
async function recordBenchLog(o: {
  machines: MachineLauncher;
  kernel: KernelInfo;
  initrd: string;
  base: BaseImage;
  shape: BenchLogShape;
  dest: string;
  workDir: string;
}): Promise<{ path: string; entries: number; flushes: number; bytes: number; recordMs: number }> {
  const t0 = performance.now();
  const disk = await createCaseDisk(o.base.path, join(o.workDir, 'bench-disk.img'));
  try {
    await using vm = await o.machines.launch({
      role: 'bench',
      kernel: o.kernel,
      initrd: o.initrd,
      disk: { ...disk, writeLog: o.dest },
    });
    const r = await runRecordedWorkload(vm, benchLogSteps(o.shape), 1, o.dest, { end: 'poweroff' });
    const failed = r.records.find((x) => x.exitCode !== 0);
    if (failed)
      throw new InfraError(
        `bench log: step ${failed.name} failed in the guest (exit ${failed.exitCode}): ${failed.output?.trim() ?? ''}`,
      );
  } finally {
    await rm(disk.path, { force: true });
  }
  await using log = await WriteLog.open(o.dest);
  return {
    path: o.dest,
    entries: log.entries.length,
    flushes: log.flushCount,
    bytes: log.fileSize,
    recordMs: Math.round(performance.now() - t0),
  };
}

export interface WritelogSuiteResult {
  logs: Array<{
    shape: BenchLogShape;
    recorded: { entries: number; flushes: number; bytes: number; recordMs: number };
    result: WritelogBenchResult;
  }>;
}

/**
 * The bench's write-log part: record a log of about 100 and one of about
 * 1000 flush epochs (rounds of migrate + fsync on a small image, the same
 * round in both), then run the three paths on each (benchWritelog).
 */
export async function benchWritelogSuite(o: {
  machines: MachineLauncher;
  kernel: KernelInfo;
  initrd: string;
  jobs: number;
  shapes?: BenchLogShape[];
  onProgress?: (line: string) => void;
}): Promise<WritelogSuiteResult> {
  const shapes = o.shapes ?? defaultBenchShapes;
  const recipe = await loadRecipe(benchLogRecipe);
  // Each round migrates its own /m/f<i>: say so before minutes of recording, not at the first missing file.
  const files = recipe.entries.reduce((n, e) => n + (e.kind === 'small-files' && e.path === '/m' ? e.count : 0), 0);
  const tooLong = shapes.find((s) => s.rounds > files);
  if (tooLong)
    throw new ConfigError(
      `bench log of ${tooLong.rounds} rounds: ${benchLogRecipe} has ${files} files under /m to migrate, one per round; raise its count`,
    );
  const base = await buildImage(recipe);
  await using tmp = await TempDir.create('writelog-bench-logs');
  const logs: WritelogSuiteResult['logs'] = [];
  for (const [i, shape] of shapes.entries()) {
    o.onProgress?.(`recording a bench log: ${shape.rounds} rounds of migrate + fsync`);
    const recorded = await recordBenchLog({
      machines: o.machines,
      kernel: o.kernel,
      initrd: o.initrd,
      base,
      shape,
      dest: tmp.join(`bench-${i}.log`),
      workDir: tmp.path,
    });
    o.onProgress?.(
      `recorded ${recorded.entries} entries, ${recorded.flushes} flushes, ${(recorded.bytes / (1 << 20)).toFixed(0)} MiB in ${(recorded.recordMs / 1000).toFixed(0)} s; running the three paths`,
    );
    const result = await benchWritelog({ log: recorded.path, base: base.path, jobs: o.jobs });
    const { path: _p, ...rest } = recorded;
    logs.push({ shape, recorded: rest, result });
    await rm(recorded.path, { force: true });
  }
  return { logs };
}

/**
 * About 100 and about 1000 flush epochs. A short log's round logs about
 * three flushes and a long log's about two (on the stock kernel,
 * 2026-12-06: 34 rounds gave 103, 50 rounds 150, 334 rounds 703), and the
 * count varies a little from one recording to the next.
 */
const defaultBenchShapes: BenchLogShape[] = [{ rounds: 34 }, { rounds: 480 }];

/** The three paths over several logs: states and time summed over the logs. */
export interface WritelogLogsResult extends Pick<
  WritelogBenchResult,
  'jobs' | 'states' | 'fstestsLoop' | 'incremental' | 'inPlace' | 'ratio' | 'ratioInPlace' | 'sameResults' | 'storage'
> {
  logs: Array<{ unit: string; entries: number; flushes: number; bytes: number; states: number }>;
}

/**
 * The three paths of benchWritelog on logs users record (the default
 * suite's), each log benched in turn, their states and times added up.
 */
export async function benchWritelogLogs(
  logs: ReadonlyArray<{ unit: string; log: string; base: string }>,
  jobs: number,
): Promise<WritelogLogsResult> {
  const per: Array<{ unit: string; r: WritelogBenchResult }> = [];
  for (const l of logs) per.push({ unit: l.unit, r: await benchWritelog({ log: l.log, base: l.base, jobs }) });
  const sum = (pick: (r: WritelogBenchResult) => PathFigures): PathFigures =>
    figures(
      per.reduce((n, p) => n + pick(p.r).states, 0),
      per.reduce((n, p) => n + pick(p.r).ms, 0),
      per.reduce((n, p) => n + pick(p.r).checksMsPerState * pick(p.r).states, 0),
    );
  const replayMs = per.reduce((n, p) => n + (p.r.fstestsLoop.replayMsPerState ?? 0) * p.r.fstestsLoop.states, 0);
  const fa = sum((r) => r.fstestsLoop);
  fa.replayMsPerState = Math.round((replayMs / Math.max(1, fa.states)) * 10) / 10;
  const fb = sum((r) => r.incremental);
  const fc = sum((r) => r.inPlace);
  return {
    logs: per.map((p) => ({
      unit: p.unit,
      entries: p.r.log.entries,
      flushes: p.r.log.flushes,
      bytes: p.r.log.bytes,
      states: p.r.states,
    })),
    jobs,
    states: fa.states,
    fstestsLoop: fa,
    incremental: fb,
    inPlace: fc,
    ratio: Math.round((fb.statesPerMinute / fa.statesPerMinute) * 100) / 100,
    ratioInPlace: Math.round((fc.statesPerMinute / fa.statesPerMinute) * 100) / 100,
    sameResults: per.every((p) => p.r.sameResults),
    storage: per.every((p) => p.r.storage === 'memory') ? 'memory' : 'disk',
  };
}
