import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { stockKernel } from '../kernel/stock.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import { buildInitramfs } from '../guest/initramfs.ts';
import { loadRecipe } from '../image/recipe.ts';
import { buildImage, type BaseImage } from '../image/build.ts';
import { createCaseDisk } from '../image/disk.ts';
import { MachinePool, jobsOrDefault } from '../vm/machine/pool.ts';
import { runWorkload } from '../crash/workload.ts';
import { runE2fsck } from '../image/e2fsck.ts';
import { expandCases } from '../scenario/expand.ts';
import { baseImageKey, type CaseSpec, type CrashPoint, type Scenario, type Step } from '../scenario/model.ts';
import type { CrashState } from '../crash/crash-state.ts';
import { recoverWithE2fsck } from '../recovery/e2fsck.ts';
import { recoverWithKernel } from '../recovery/kernel.ts';
import type { RecoveredImage } from '../recovery/recovery.ts';
import { runOracles } from '../checks/oracle.ts';
import { caseVerdict } from '../results/verdict.ts';
import type { CaseResult } from '../results/case.ts';
import { runSuite } from '../run/runner.ts';
import { crashStateSource, prepareStateCheck, type CaseEnv } from '../run/case-runner.ts';
import { loadScenarios, prepareRun } from '../run/prepare.ts';
import { validatePatch } from '../validate/validate.ts';
import type { ValidatePhases } from '../validate/model.ts';
import { agentReadySnapshot } from '../vm/machine/snapshot-cache.ts';
import { detectAccel, type Accel } from '../vm/machine/accel.ts';
import { toolVersions } from '../run/versions.ts';
import { TempDir } from '../util/tempdir.ts';
import { writeJsonAtomic } from '../util/atomic.ts';
import { defaultResultsDir, scenariosDir } from '../util/paths.ts';
import { ConfigError } from '../util/errors.ts';
import { benchWritelogLogs, benchWritelogSuite, type WritelogLogsResult, type WritelogSuiteResult } from './writelog-bench.ts';
import { benchFullOracle, oracleBenchLines, recordSuiteLogs, type OracleBenchResult } from './oracle-bench.ts';
import { baseImageOf } from '../run/case-runner.ts';

/** What `qcrash bench` measures; all of them by default. */
export const benchParts = ['e2fsck', 'mix', 'validate', 'writelog', 'oracle'] as const;
export type BenchPart = (typeof benchParts)[number];

/**
 * A fixed set of the default suite's kill scenarios (both recoveries,
 * kernel points, commit points; 49 cases): the mix stays the same when
 * scenarios are added to the default suite, so ratios from different days
 * compare.
 */
const defaultMixScenarios = ['commit-sweep.yaml', 'durability.yaml', 'shapes-1k.yaml', 'shapes-4k.yaml', 'writers.yaml'];

export interface BenchOptions {
  /** Crash cases per side of the e2fsck-only comparison. */
  cases?: number;
  jobs?: number;
  out?: string;
  /** Cases of the default mix per side (a systematic sample of its 49; 0 or more than that: all of them). */
  mixCases?: number;
  parts?: readonly BenchPart[];
  /** The validate part's patch (default: a one-line change of fs/ext4/migrate.c, new on every bench run). */
  validatePatch?: string;
  /** `--recordings DIR`: the default suite's write-log recordings reused from there (same kernel, base, steps) or recorded and kept there (recording-store.ts). */
  recordings?: string;
  onProgress?: (line: string) => void;
}

const perMin = (count: number, ms: number) => (ms > 0 ? (count / ms) * 60_000 : 0);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/**
 * `npm run bench`: what users wait for, each measured two ways in one
 * invocation, so ratios never mix days or machines.
 *
 * e2fsck: the same crash cases (delay points into a migration, e2fsck
 * recovery only) as a naive loop (per case a full image copy, a boot from
 * scratch, the workload, the kill, e2fsck; one at a time) and through
 * qcrash (restored VMs, `--jobs` at once, the real runner).
 *
 * mix: the default suite's case mix (both recoveries, step markers, seeded
 * times, kernel points, commit points) as a naive loop (a fresh boot for the
 * workload and another for kernel recovery, each recovery after the other,
 * one case at a time, the same oracles) and through qcrash (`qcrash run`
 * with its defaults): the `default mix vs naive` ratio.
 *
 * validate: `qcrash validate` of a one-file patch end to end (incremental
 * build of both kernels, the validate suite on each), by phase.
 *
 * writelog: write-log crash states (writelog-bench.ts) on two recorded logs
 * of about 100 and 1000 flush epochs: the fstests loop (a fresh copy and a
 * replay of entries 0..k per state), the incremental replay forking a copy
 * per state, and the incremental replay checking in place; every path runs
 * the same oracle (e2fsck's journal replay, then -fn).
 */
export async function runBench(o: BenchOptions = {}): Promise<Record<string, unknown>> {
  const parts = new Set(o.parts ?? benchParts);
  const jobs = jobsOrDefault(o.jobs);
  const progress = o.onProgress ?? (() => {});
  const kernel = await stockKernel();
  const accel = (await detectAccel()).accel;
  const versions = await toolVersions(kernel.release);
  await using tmp = await TempDir.create('bench');
  const result: Record<string, unknown> = {
    date: new Date().toISOString(),
    accel,
    cores: availableParallelism(),
    jobs,
    qemu: versions.qemu,
    kernel: kernel.release,
    // The machine's load when the bench started: other work on the cores shifts every absolute figure (ratios less).
    loadAverage: loadavg().map((x) => +x.toFixed(2)),
  };
  if (parts.has('e2fsck')) {
    progress('e2fsck-only cases: naive loop, then qcrash');
    result.e2fsck = await benchE2fsckOnly(kernel, jobs, o.cases ?? 24, tmp);
  }
  if (parts.has('mix')) {
    progress('default mix: naive loop, then qcrash');
    result.mix = await benchDefaultMix(kernel, jobs, o.mixCases ?? 16, tmp, progress);
  }
  if (parts.has('validate')) {
    progress('validate of a one-file patch');
    result.validate = await benchValidate(jobs, tmp, o.validatePatch, progress);
  }
  const suiteRecordings = parts.has('writelog')
    ? await benchWritelogPart(kernel, jobs, o.recordings, tmp, result, progress)
    : undefined;
  if (parts.has('oracle')) {
    progress("full oracle: the default suite's write-log states, then e2fsck -fn alone on them");
    const oracle = await benchFullOracle({
      machines: new MachinePool({ slots: 1 }),
      kernel,
      jobs,
      onProgress: progress,
      ...(suiteRecordings ? { recordings: suiteRecordings } : {}),
      ...(o.recordings ? { store: o.recordings } : {}),
    });
    result.fullOracle = oracle;
    if (o.recordings && !suiteRecordings)
      result.recordings = { dir: o.recordings, units: oracle.units.length, recorded: oracle.recorded };
  }
  result.harnessPeakRssMiB = +(process.resourceUsage().maxRSS / 1024).toFixed(1);
  const file = o.out ?? join(defaultResultsDir, `bench-${(result.date as string).replace(/[:.]/g, '')}.json`);
  await writeJsonAtomic(file, result);
  return { ...result, file };
}

/**
 * The writelog part: the two same-shape logs, then the default suite's own
 * recorded logs (kept in or reused from `recordings` when given). Returns
 * the suite's recordings by unit id, for the oracle part to check again.
 */
async function benchWritelogPart(
  kernel: KernelInfo,
  jobs: number,
  recordings: string | undefined,
  tmp: TempDir,
  result: Record<string, unknown>,
  progress: (line: string) => void,
): Promise<Map<string, string>> {
  progress('write-log crash states: the fstests loop, then the incremental replay');
  const initrd = (await buildInitramfs(kernel)).path;
  const w = await benchWritelogSuite({ machines: new MachinePool({ slots: 1 }), kernel, initrd, jobs, onProgress: progress });
  const naive = (result.e2fsck as { naive?: { casesPerMin?: number } } | undefined)?.naive?.casesPerMin;
  result.writeLog = writelogSummary(w, naive);
  progress("write-log crash states on the default suite's own recorded logs: the same three paths");
  const suite = await recordSuiteLogs(
    {
      machines: new MachinePool({ slots: 1 }),
      kernel,
      jobs,
      onProgress: (l) => progress(`suite logs: ${l}`),
      ...(recordings ? { store: recordings } : {}),
    },
    tmp.join('suite-logs'),
  );
  if (recordings)
    result.recordings = {
      dir: recordings,
      units: suite.prepared.length,
      recorded: suite.prepared.filter((p) => p.recorded).length,
    };
  result.writeLogSuite = await benchWritelogLogs(
    suite.prepared.map((p) => ({
      unit: p.unit.id,
      log: join(p.unitDir, p.recording.log),
      base: baseImageOf(suite.env, p.unit.scenario).path,
    })),
    jobs,
  );
  // The oracle part checks the same recordings: not recorded again.
  return new Map(suite.prepared.map((p) => [p.unit.id, p.unitDir]));
}

/** What both sides of the e2fsck-only comparison run on. */
interface E2fsckBench {
  kernel: KernelInfo;
  initrd: string;
  base: BaseImage;
  accel: Accel;
  points: CrashPoint[];
  /** The naive loop and the restore measurements run one machine at a time. */
  one: MachinePool;
  tmp: TempDir;
}

async function benchE2fsckOnly(kernel: KernelInfo, jobs: number, n: number, tmp: TempDir): Promise<Record<string, unknown>> {
  const initrd = (await buildInitramfs(kernel)).path;
  const recipe = await loadRecipe('small-4k');
  const base = await buildImage(recipe);
  const accel = (await detectAccel()).accel;
  const versions = await toolVersions(kernel.release);
  const points: CrashPoint[] = Array.from({ length: n }, (_, i) => ({ kind: 'delay', step: 'migrate', delayMs: i * 10 }));
  const bench: E2fsckBench = { kernel, initrd, base, accel, points, one: new MachinePool({ slots: 1 }), tmp };

  const naive = await naiveE2fsckLoop(bench);
  const { restore, restorePhases } = await measureRestores(bench, versions.qemu);
  const fast = await qcrashE2fsckRun(bench, jobs);

  return {
    cases: n,
    naive: {
      totalMs: Math.round(naive.ms),
      casesPerMin: +perMin(n, naive.ms).toFixed(2),
      bootToReadyMedianMs: Math.round(median(naive.boot)),
      perCaseMedianMs: Math.round(median(naive.perCase)),
      e2fsckMedianMs: Math.round(median(naive.e2fsck)),
    },
    qcrash: {
      totalMs: Math.round(fast.ms),
      casesPerMin: +perMin(n, fast.ms).toFixed(2),
      restoreToReadyMedianMs: Math.round(median(restore)),
      // Where a restore's time goes: QEMU up to QMP, the saved state loaded, then the agent's answer.
      restoreQmpMedianMs: Math.round(median(restorePhases.map((p) => p.qmp))),
      restoreLoadedMedianMs: Math.round(median(restorePhases.map((p) => p.restored))),
      perCaseMedianMs: Math.round(median(fast.summary.cases.map((c) => c.durationMs))),
      passed: fast.summary.counts.pass,
    },
    ratio: +(perMin(n, fast.ms) / perMin(n, naive.ms)).toFixed(2),
  };
}

/** (a) the naive loop: per case a full image copy, a boot from scratch, the workload, the kill, e2fsck. */
async function naiveE2fsckLoop({ kernel, initrd, base, accel, points, one, tmp }: E2fsckBench) {
  const steps: Step[] = [
    { kind: 'mount', name: 'mount', options: ['commit=1'] },
    { kind: 'migrate', name: 'migrate', paths: ['/shapes'], recursive: true },
    { kind: 'sync', name: 'sync' },
  ];
  const naive = { boot: [] as number[], e2fsck: [] as number[], perCase: [] as number[] };
  const naiveStart = performance.now();
  for (const [i, point] of points.entries()) {
    const t0 = performance.now();
    const img = tmp.join(`naive-${i}.img`);
    await copyFile(base.path, img);
    {
      await using vm = await one.launch({ role: 'bench', kernel, initrd, disk: { path: img, format: 'raw' }, accel });
      naive.boot.push(vm.hello!.bootMs);
      await runWorkload(vm, steps, point, i);
    }
    const f0 = performance.now();
    await runE2fsck(img, 'journal-only');
    await runE2fsck(img, 'check');
    naive.e2fsck.push(performance.now() - f0);
    naive.perCase.push(performance.now() - t0);
  }
  return { ...naive, ms: performance.now() - naiveStart };
}

/** Snapshot restore time, measured on its own (the runner builds or reuses the same snapshot). */
async function measureRestores({ kernel, initrd, base, accel, one, tmp }: E2fsckBench, qemu: string) {
  const snap = await agentReadySnapshot(one, kernel, initrd, base, accel, qemu);
  const restore: number[] = [];
  const restorePhases: Array<{ qmp: number; restored: number }> = [];
  for (let i = 0; i < 5; i++) {
    const disk = await createCaseDisk(base.path, tmp.join(`restore-${i}.img`));
    await using vm = await one.launch({ role: 'workload', kernel, initrd, disk, accel, restoreFrom: snap });
    restore.push(vm.hello!.bootMs);
    restorePhases.push({ qmp: vm.hello!.phases.qmp, restored: vm.hello!.phases.restored ?? 0 });
  }
  return { restore, restorePhases };
}

/** (b) qcrash's path: the runner, restored VMs, cases overlapping. */
async function qcrashE2fsckRun({ kernel, points, tmp }: E2fsckBench, jobs: number) {
  const scenario = tmp.join('bench.yaml');
  await writeFile(
    scenario,
    [
      'recipe: small-4k',
      'recovery: [e2fsck]',
      'steps:',
      '  - mount: [commit=1]',
      '  - migrate: { paths: [/shapes], recursive: true }',
      '  - sync',
      'kill:',
      ...points.map((p) => `  - delay: { step: migrate, ms: ${(p as { delayMs: number }).delayMs} }`),
      '',
    ].join('\n'),
  );
  const fastStart = performance.now();
  const { summary } = await runSuite({
    inputs: [scenario],
    kernel,
    jobs,
    seed: 1,
    out: tmp.join('fast'),
    keep: 'none',
    snapshots: true,
  });
  return { summary, ms: performance.now() - fastStart };
}

/** Every k-th case of the list, k = total/n: the sample keeps the list's proportions of scenarios and point kinds. */
export function systematicSample<T>(all: readonly T[], n: number): T[] {
  if (n <= 0 || n >= all.length) return [...all];
  return all.filter((_, i) => Math.floor((i * n) / all.length) !== Math.floor(((i + 1) * n) / all.length));
}

async function benchDefaultMix(
  kernel: KernelInfo,
  jobs: number,
  n: number,
  tmp: TempDir,
  progress: (line: string) => void,
): Promise<Record<string, unknown>> {
  const files = defaultMixScenarios.map((f) => join(scenariosDir, f));
  const { scenarios } = await loadScenarios(files);
  const seed = 1;
  const all = expandCases(scenarios, seed);
  const mix = systematicSample(all, n);
  const kinds = new Map<string, number>();
  for (const c of mix) kinds.set(c.crashPoint.kind, (kinds.get(c.crashPoint.kind) ?? 0) + 1);

  const naive = await naiveMixLoop(scenarios, kernel, mix, tmp, progress);

  // (b) qcrash run, as a user runs it (its defaults), on the same cases and seed.
  progress(`default mix, qcrash: ${mix.length} cases`);
  const fastStart = performance.now();
  const { summary } = await runSuite({
    inputs: files,
    kernel,
    jobs,
    seed,
    out: tmp.join('mix-qcrash'),
    filter: mix.map((c) => c.id),
  });
  const fastMs = performance.now() - fastStart;
  const byId = new Map(summary.cases.map((c) => [c.id, c]));
  const agree = mix.filter((c) => byId.get(c.id)?.status === naive.statuses.get(c.id)).length;
  return {
    cases: mix.length,
    of: all.length,
    kinds: Object.fromEntries(kinds),
    recoveries: [...new Set(scenarios.flatMap((s) => s.recovery))],
    naive: {
      totalMs: Math.round(naive.ms),
      casesPerMin: +perMin(mix.length, naive.ms).toFixed(2),
      perCaseMedianMs: Math.round(median(naive.perCase)),
      workloadBootMedianMs: Math.round(median(naive.workloadBoot)),
      recoveryBootMedianMs: Math.round(median(naive.recoveryBoot)),
      passed: [...naive.statuses.values()].filter((s) => s === 'pass').length,
    },
    qcrash: mixQcrashFigures(mix.length, summary.cases, summary.counts.pass, fastMs),
    verdictsAgree: agree,
    ratio: +(perMin(mix.length, fastMs) / perMin(mix.length, naive.ms)).toFixed(2),
  };
}

/** (a) the naive loop: booted machines, one case at a time, each recovery after the other. */
async function naiveMixLoop(
  scenarios: Scenario[],
  kernel: KernelInfo,
  mix: CaseSpec[],
  tmp: TempDir,
  progress: (line: string) => void,
) {
  const one = new MachinePool({ slots: 1 });
  const { env } = await prepareRun({ scenarios, kernel, machines: one, keep: 'none', snapshots: false, jobs: 1 });
  const naive = {
    perCase: [] as number[],
    workloadBoot: [] as number[],
    recoveryBoot: [] as number[],
    statuses: new Map<string, string>(),
  };
  const naiveStart = performance.now();
  for (const [i, spec] of mix.entries()) {
    progress(`default mix, naive ${i + 1}/${mix.length}: ${spec.id}`);
    const r = await naiveCase(spec, env, tmp.join('mix-naive', spec.id.replace(/\//g, '_')));
    naive.perCase.push(r.ms);
    naive.workloadBoot.push(r.workloadBootMs);
    if (r.recoveryBootMs !== undefined) naive.recoveryBoot.push(r.recoveryBootMs);
    naive.statuses.set(spec.id, r.status);
  }
  return { ...naive, ms: performance.now() - naiveStart };
}

/** The qcrash side of the mix: throughput, and the median of each phase of a case. */
function mixQcrashFigures(n: number, cases: CaseResult[], passed: number, ms: number) {
  const phase = (k: keyof NonNullable<CaseResult['phases']>) => Math.round(median(cases.map((c) => c.phases?.[k] ?? 0)));
  return {
    totalMs: Math.round(ms),
    casesPerMin: +perMin(n, ms).toFixed(2),
    perCaseMedianMs: Math.round(median(cases.map((c) => c.durationMs))),
    phasesMedianMs: {
      machine: phase('machineMs'),
      workload: phase('workloadMs'),
      recoveryMachine: phase('recoveryMachineMs'),
      recoveryMount: phase('recoveryMountMs'),
      recovery: phase('recoveryMs'),
      oracles: phase('oraclesMs'),
      queued: phase('queuedMs'),
    },
    passed,
  };
}

/**
 * One case as a developer scripts it by hand: boot, run the workload to the
 * crash point, kill; then each recovery in turn (e2fsck on a copy; a fresh
 * boot of the kernel on another copy, mount, umount); the same oracles as
 * qcrash's on each.
 */
async function naiveCase(
  spec: CaseSpec,
  env: CaseEnv,
  dir: string,
): Promise<{ ms: number; status: string; workloadBootMs: number; recoveryBootMs?: number }> {
  const t0 = performance.now();
  await mkdir(dir, { recursive: true });
  let state: CrashState | undefined;
  for await (const s of crashStateSource(spec, env, dir).states()) state = s;
  if (!state) throw new Error(`${spec.id}: no crash state`);
  const { findings, oracleContext: ctx } = await prepareStateCheck(
    state,
    spec,
    env.images.get(baseImageKey(spec.scenario))!,
    dir,
  );
  let recoveryBootMs: number | undefined;
  for (const mode of spec.scenario.recovery) {
    const work = join(dir, `${mode}.img`);
    const recovered: RecoveredImage =
      mode === 'e2fsck'
        ? await recoverWithE2fsck(state.image, work)
        : await recoverWithKernel(state.image, work, {
            machines: env.machines,
            kernel: env.kernel,
            initrd: env.initrd,
            artefactPrefix: join(dir, 'recovery-'),
          });
    if (mode === 'kernel') recoveryBootMs = recovered.phases?.machineMs;
    findings.push(...(await runOracles(recovered, ctx)).findings);
  }
  const status = caseVerdict(findings, spec.scenario.allow, state.reached).status;
  return {
    ms: performance.now() - t0,
    status,
    workloadBootMs: state.phases.machineMs ?? 0,
    ...(recoveryBootMs !== undefined ? { recoveryBootMs } : {}),
  };
}

/**
 * The default validate patch: one line appended to fs/ext4/migrate.c that
 * changes its object code, stamped so that no earlier build serves it (a
 * cached kernel would time nothing): what a developer's one-file change
 * costs to build incrementally. Each bench run leaves one built kernel in
 * the cache (`qcrash cache clean --kernels` removes them).
 */
function oneFilePatch(stamp: string): string {
  return [
    'qcrash bench: a one-file change of fs/ext4/migrate.c',
    '',
    'Adds a string to the object code, so the file is compiled again and the kernel relinked.',
    '',
    '--- a/fs/ext4/migrate.c',
    '+++ b/fs/ext4/migrate.c',
    '@@ -670,3 +670,6 @@',
    ' \text4_writepages_up_write(inode->i_sb, alloc_ctx);',
    ' \treturn ret;',
    ' }',
    '+',
    '+/* qcrash bench: a one-file patch. */',
    `+static const char qcrash_bench_stamp[] __used = "${stamp}";`,
    '',
  ].join('\n');
}

async function benchValidate(
  jobs: number,
  tmp: TempDir,
  patch: string | undefined,
  progress: (line: string) => void,
): Promise<Record<string, unknown>> {
  let file = patch;
  if (!file) {
    file = tmp.join('one-file.patch');
    await writeFile(file, oneFilePatch(`${new Date().toISOString()} ${process.pid}`));
  }
  const t0 = performance.now();
  const r = await validatePatch({
    patches: [file],
    scenarios: [join(scenariosDir, 'validate')],
    seed: 1,
    jobs,
    confirmRuns: 2,
    out: tmp.join('validate'),
    onProgress: progress,
  });
  const totalMs = Math.round(performance.now() - t0);
  if (!r.phases) throw new ConfigError('validate recorded no phases');
  const phases: ValidatePhases = r.phases;
  return {
    patch: patch ?? 'one line appended to fs/ext4/migrate.c (stamped, never cached)',
    cases: r.patched.summary.counts.total,
    introduced: r.introduced.length,
    totalMs,
    phases,
  };
}

/**
 * The write-log figures: per log, states/min of each path and the ratios;
 * the headline ratios are on the longest log (about 1000 flush epochs) for
 * the path qcrash's runs take (incremental, checked in place).
 */
function writelogSummary(s: WritelogSuiteResult, naiveCasesPerMin?: number) {
  const logs = s.logs.map((l) => ({
    flushes: l.recorded.flushes,
    entries: l.recorded.entries,
    logMiB: +(l.recorded.bytes / (1 << 20)).toFixed(1),
    recordMs: l.recorded.recordMs,
    shape: l.shape,
    states: l.result.states,
    jobs: l.result.jobs,
    fstestsLoop: l.result.fstestsLoop,
    forkByCopy: l.result.incremental,
    inPlace: l.result.inPlace,
    ratioForkByCopy: l.result.ratio,
    ratioInPlace: l.result.ratioInPlace,
    sameResults: l.result.sameResults,
    imagesVerified: l.result.imagesVerified,
    storage: l.result.storage,
  }));
  const longest = [...logs].sort((a, b) => b.flushes - a.flushes)[0]!;
  return {
    logs,
    headline: {
      path: 'incremental, checked in place',
      flushes: longest.flushes,
      vsFstestsLoop: longest.ratioInPlace,
      vsFstestsLoopForkByCopy: longest.ratioForkByCopy,
      ...checksBound(longest.fstestsLoop, longest.inPlace, longest.jobs),
      ...(naiveCasesPerMin ? { vsNaiveLoop: +(longest.inPlace.statesPerMinute / naiveCasesPerMin).toFixed(2) } : {}),
    },
  };
}

type WritelogPath = WritelogSuiteResult['logs'][number]['result']['inPlace'];

/**
 * The most the in-place path could reach against the fstests loop with
 * these e2fsck runs: the fstests loop's state (a job's time) over the
 * in-place path's two e2fsck runs alone, as if it spent nothing else on a
 * state. Absent in JSON from before the checks were timed.
 */
function checksBound(fstests: WritelogPath, inPlace: WritelogPath, jobs: number): { vsFstestsLoopChecksBound?: number } {
  if (!inPlace.checksMsPerState) return {};
  return { vsFstestsLoopChecksBound: +((fstests.msPerState * jobs) / inPlace.checksMsPerState).toFixed(2) };
}

/** Where a job's time a state went on one write-log path (JSON from before the checks were timed: the replay only). */
function jobTime(f: WritelogPath, jobs: number): string {
  const parts = [
    ...(f.replayMsPerState !== undefined ? [`replay-log ${f.replayMsPerState}`] : []),
    ...(f.checksMsPerState !== undefined ? [`the two e2fsck runs ${f.checksMsPerState}`] : []),
  ];
  return `a job's ${(f.msPerState * jobs).toFixed(1)} ms a state${parts.length ? `: ${parts.join(', ')}` : ''}`;
}

/** A duration in seconds, as the bench prints them. */
const seconds = (ms: number | undefined) => `${((ms ?? 0) / 1000).toFixed(1)} s`;

export function formatBench(r: Record<string, unknown>): string {
  // The JSON the bench wrote: each part's figures, read back as the parts wrote them.
  const top = r as {
    accel: string;
    cores: number;
    jobs: number;
    qemu: string;
    kernel: string;
    loadAverage: number[];
    harnessPeakRssMiB: number;
  };
  const out = [
    `qcrash bench: ${top.accel}, ${top.cores} cores, jobs ${top.jobs}, QEMU ${top.qemu}, kernel ${top.kernel}, load average ${top.loadAverage.join(' ')}`,
  ];
  const rec = r.recordings as { dir: string; units: number; recorded: number } | undefined;
  if (rec)
    out.push(
      `suite recordings: ${rec.dir}: ${rec.units - rec.recorded} of ${rec.units} reused, ${rec.recorded} recorded by this run and kept there`,
    );
  const e = r.e2fsck as SideBySide | undefined;
  if (e) out.push(...e2fsckLines(e));
  const m = r.mix as MixFigures | undefined;
  if (m) out.push(...mixLines(m));
  const v = r.validate as ValidateFigures | undefined;
  if (v) out.push(...validateLines(v));
  const w = r.writeLog as ReturnType<typeof writelogSummary> | undefined;
  if (w) out.push(...writeLogLines(w));
  const ws = r.writeLogSuite as WritelogLogsResult | undefined;
  if (ws) out.push(...writeLogSuiteLines(ws));
  const fo = r.fullOracle as OracleBenchResult | undefined;
  if (fo) out.push(...oracleBenchLines(fo));
  out.push(`harness peak RSS: ${top.harnessPeakRssMiB} MiB`);
  if (typeof r.file === 'string') out.push(`JSON: ${r.file}`);
  return out.join('\n') + '\n';
}

/** A part measured two ways: its cases, each side's figures and the ratio of their throughputs. */
interface SideBySide {
  cases: number;
  ratio: number;
  naive: unknown;
  qcrash: unknown;
}

function e2fsckLines(e: SideBySide): string[] {
  const a = e.naive as Record<string, number>;
  const b = e.qcrash as Record<string, number>;
  return [
    `e2fsck recovery only, ${e.cases} crash cases a side:`,
    `  naive loop   : ${a.casesPerMin} cases/min  (total ${seconds(a.totalMs)}, boot-to-ready ${a.bootToReadyMedianMs} ms, per case ${a.perCaseMedianMs} ms, e2fsck ${a.e2fsckMedianMs} ms)`,
    `  qcrash       : ${b.casesPerMin} cases/min  (total ${seconds(b.totalMs)}, restore-to-ready ${b.restoreToReadyMedianMs} ms [QMP up ${b.restoreQmpMedianMs} ms, state loaded ${b.restoreLoadedMedianMs} ms], per case ${b.perCaseMedianMs} ms, ${b.passed}/${e.cases} passed)`,
    `  ratio        : ${e.ratio}x`,
  ];
}

interface MixFigures extends SideBySide {
  of: number;
  kinds: unknown;
  recoveries: string[];
  verdictsAgree: number;
}

function mixLines(m: MixFigures): string[] {
  const a = m.naive as Record<string, number>;
  const b = m.qcrash as Record<string, number> & { phasesMedianMs: Record<string, number> };
  const kinds = Object.entries(m.kinds as Record<string, number>)
    .map(([k, n]) => `${n} ${k}`)
    .join(', ');
  const p = b.phasesMedianMs;
  return [
    `default mix, ${m.cases} of its ${m.of} cases a side (${kinds}; recoveries ${m.recoveries.join(', ')}):`,
    `  naive loop   : ${a.casesPerMin} cases/min  (total ${seconds(a.totalMs)}, per case ${a.perCaseMedianMs} ms, boot-to-ready ${a.workloadBootMedianMs} ms workload, ${a.recoveryBootMedianMs} ms recovery, ${a.passed} passed)`,
    `  qcrash       : ${b.casesPerMin} cases/min  (total ${seconds(b.totalMs)}, per case ${b.perCaseMedianMs} ms, ${b.passed} passed; medians: restore ${p.machine} ms, workload ${p.workload} ms, recovery restore ${p.recoveryMachine} ms, mount ${p.recoveryMount} ms, oracles ${p.oracles} ms, slot wait ${p.queued} ms)`,
    `  verdicts agree on ${m.verdictsAgree}/${m.cases} cases`,
    `default mix vs naive: ${m.ratio.toFixed(2)}x`,
  ];
}

interface ValidateFigures {
  patch: string;
  cases: number;
  introduced: number;
  totalMs: number;
  phases: ValidatePhases;
}

function validateLines(v: ValidateFigures): string[] {
  const p = v.phases;
  return [
    `validate of a one-file patch (${v.patch}; ${v.cases} cases a kernel, ${v.introduced} introduced): ${seconds(v.totalMs)} end to end`,
    `  build baseline ${seconds(p.buildBaselineMs)}, build patched ${seconds(p.buildPatchedMs)}, baseline run ${seconds(p.baselineRunMs)}, patched run ${seconds(p.patchedRunMs)}, confirmation reruns ${seconds(p.confirmMs)}`,
  ];
}

/** Where a write-log bench's paths kept their images (older JSON has no field: on disk). */
const storageWords = (s: 'memory' | 'disk' | undefined) => (s === 'memory' ? 'in memory' : 'on disk');

/**
 * The three paths' lines of one write-log bench (one log, or the suite's
 * logs summed), under its header.
 */
function pathLines(
  p: { fstests: WritelogPath; copy: WritelogPath; inPlace: WritelogPath; ratioCopy: number; ratioInPlace: number },
  jobs: number,
): string[] {
  return [
    `  fstests loop (copy + replay 0..k per state): ${p.fstests.statesPerMinute} states/min (${p.fstests.msPerState} ms/state; ${jobTime(p.fstests, jobs)})`,
    `  incremental, fork by copy                  : ${p.copy.statesPerMinute} states/min (${p.copy.msPerState} ms/state; ${jobTime(p.copy, jobs)})  ${p.ratioCopy.toFixed(2)}x`,
    `  incremental, in place (undo file)          : ${p.inPlace.statesPerMinute} states/min (${p.inPlace.msPerState} ms/state; ${jobTime(p.inPlace, jobs)})  ${p.ratioInPlace.toFixed(2)}x`,
  ];
}

/** How a write-log bench's header ends: its jobs, where its images were, whether every path found the same. */
const headerTail = (x: { jobs: number; storage?: 'memory' | 'disk'; sameResults: boolean }) =>
  `jobs ${x.jobs}, images ${storageWords(x.storage)}${x.sameResults ? ', same e2fsck results on every path' : ', RESULTS DIFFER between paths'}`;

function writeLogSuiteLines(w: WritelogLogsResult): string[] {
  const flushes = w.logs.reduce((n, l) => n + l.flushes, 0);
  const mib = (w.logs.reduce((n, l) => n + l.bytes, 0) / (1 << 20)).toFixed(1);
  return [
    `write-log, the default suite's own ${w.logs.length} recorded logs (${flushes} flush epochs, ${mib} MiB in all, ${w.states} prefix states, ${headerTail(w)}):`,
    ...pathLines(
      { fstests: w.fstestsLoop, copy: w.incremental, inPlace: w.inPlace, ratioCopy: w.ratio, ratioInPlace: w.ratioInPlace },
      w.jobs,
    ),
  ];
}

function writeLogLines(w: ReturnType<typeof writelogSummary>): string[] {
  const out: string[] = [];
  for (const l of w.logs) {
    out.push(
      `write-log, ${l.flushes} flush epochs (${l.entries} entries, ${l.logMiB} MiB, ${l.states} prefix states, ${headerTail(l)}):`,
      ...pathLines(
        {
          fstests: l.fstestsLoop,
          copy: l.forkByCopy,
          inPlace: l.inPlace,
          ratioCopy: l.ratioForkByCopy,
          ratioInPlace: l.ratioInPlace,
        },
        l.jobs,
      ),
    );
  }
  out.push(
    `write-log vs fstests loop: ${w.headline.vsFstestsLoop.toFixed(2)}x`,
    ...(w.headline.vsNaiveLoop !== undefined ? [`write-log vs naive loop: ${w.headline.vsNaiveLoop.toFixed(2)}x`] : []),
    `  (write-log: incremental replay checked in place, on the ${w.headline.flushes}-epoch log; fork by copy: ${w.headline.vsFstestsLoopForkByCopy.toFixed(2)}x the fstests loop)`,
    ...(w.headline.vsFstestsLoopChecksBound !== undefined
      ? [
          `  (at most ${w.headline.vsFstestsLoopChecksBound.toFixed(2)}x with these e2fsck runs: the fstests loop's state over the in-place path's two e2fsck runs alone)`,
        ]
      : []),
  );
  return out;
}
