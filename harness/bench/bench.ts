import { copyFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { stockKernel } from '../kernel/stock.ts';
import { buildInitramfs } from '../guest/initramfs.ts';
import { loadRecipe } from '../image/recipe.ts';
import { buildImage } from '../image/build.ts';
import { createCaseDisk } from '../image/disk.ts';
import { MachinePool, defaultJobs } from '../vm/machine/pool.ts';
import { runWorkload } from '../crash/workload.ts';
import { runE2fsck } from '../image/e2fsck.ts';
import { runSuite } from '../run/runner.ts';
import { agentReadySnapshot } from '../vm/machine/snapshot-cache.ts';
import { detectAccel } from '../vm/machine/accel.ts';
import { toolVersions } from '../run/versions.ts';
import { TempDir } from '../util/tempdir.ts';
import { writeJsonAtomic } from '../util/atomic.ts';
import { defaultResultsDir } from '../util/paths.ts';
import type { CrashPoint, Step } from '../scenario/model.ts';
import { benchWritelogSuite, type WritelogSuiteResult } from './writelog-bench.ts';

/**
 * `npm run bench`: crash states per minute, each way in one invocation.
 * (a) what a developer scripts by hand: per case a full image copy, a boot
 * from scratch, the workload, the kill, e2fsck; one at a time.
 * (b) qcrash's kill path: VMs restored from the agent-ready snapshot, up to
 * --jobs at once, through the real runner (store, reports).
 * (c) write-log crash states (writelog-bench.ts) on two recorded logs of
 * about 100 and 1000 flush epochs: the fstests loop (a fresh copy and a
 * replay of entries 0..k per state), the incremental replay forking a copy
 * per state, and the incremental replay checking in place.
 * Every path runs the same oracle: e2fsck's journal replay, then -fn.
 */
export async function runBench(o: { cases?: number; jobs?: number; out?: string; writelog?: boolean; onProgress?: (line: string) => void } = {}): Promise<Record<string, unknown>> {
  const n = o.cases ?? 24;
  const jobs = o.jobs ?? defaultJobs();
  const kernel = await stockKernel();
  const initrd = (await buildInitramfs(kernel)).path;
  const recipe = await loadRecipe('small-4k');
  const base = await buildImage(recipe);
  const accel = (await detectAccel()).accel;
  const versions = await toolVersions(kernel.release);
  const steps: Step[] = [
    { kind: 'mount', name: 'mount', options: ['commit=1'] },
    { kind: 'migrate', name: 'migrate', paths: ['/shapes'], recursive: true },
    { kind: 'sync', name: 'sync' },
  ];
  const points: CrashPoint[] = Array.from({ length: n }, (_, i) => ({ kind: 'delay', step: 'migrate', delayMs: i * 10 }));
  await using tmp = await TempDir.create('bench');
  // The naive loop and the restore measurements run one machine at a time.
  const one = new MachinePool({ slots: 1 });

  // (a) the naive loop.
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
  const naiveMs = performance.now() - naiveStart;

  // Snapshot restore time, measured on its own (the runner builds or reuses the same snapshot).
  const snap = await agentReadySnapshot(one, kernel, initrd, base, accel, versions.qemu);
  const restore: number[] = [];
  const restorePhases: Array<{ qmp: number; restored: number }> = [];
  for (let i = 0; i < 5; i++) {
    const disk = await createCaseDisk(base.path, tmp.join(`restore-${i}.img`));
    await using vm = await one.launch({ role: 'workload', kernel, initrd, disk, accel, restoreFrom: snap });
    restore.push(vm.hello!.bootMs);
    restorePhases.push({ qmp: vm.hello!.phases.qmp, restored: vm.hello!.phases.restored ?? 0 });
  }

  // (b) qcrash's path: the runner, snapshots, overlays, parallel VMs.
  const scenario = tmp.join('bench.yaml');
  await writeFile(scenario, [
    'recipe: small-4k',
    'recovery: [e2fsck]',
    'steps:',
    '  - mount: [commit=1]',
    '  - migrate: { paths: [/shapes], recursive: true }',
    '  - sync',
    'kill:',
    ...points.map((p) => `  - delay: { step: migrate, ms: ${(p as { delayMs: number }).delayMs} }`),
    '',
  ].join('\n'));
  const fastStart = performance.now();
  const { summary } = await runSuite({ inputs: [scenario], kernel, jobs, seed: 1, out: tmp.join('fast'), keep: 'none', snapshots: true });
  const fastMs = performance.now() - fastStart;

  let writeLog: WritelogSuiteResult | undefined;
  if (o.writelog !== false) writeLog = await benchWritelogSuite({ machines: one, kernel, initrd, jobs, ...(o.onProgress ? { onProgress: o.onProgress } : {}) });

  const perMin = (count: number, ms: number) => (count / ms) * 60_000;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const result = {
    date: new Date().toISOString(),
    accel,
    cores: availableParallelism(),
    jobs,
    cases: n,
    qemu: versions.qemu,
    kernel: kernel.release,
    naive: { totalMs: Math.round(naiveMs), casesPerMin: +perMin(n, naiveMs).toFixed(2), bootToReadyMedianMs: Math.round(median(naive.boot)), perCaseMedianMs: Math.round(median(naive.perCase)), e2fsckMedianMs: Math.round(median(naive.e2fsck)) },
    qcrash: {
      totalMs: Math.round(fastMs),
      casesPerMin: +perMin(n, fastMs).toFixed(2),
      restoreToReadyMedianMs: Math.round(median(restore)),
      // Where a restore's time goes: QEMU up to QMP, the saved state loaded, then the agent's answer.
      restoreQmpMedianMs: Math.round(median(restorePhases.map((p) => p.qmp))),
      restoreLoadedMedianMs: Math.round(median(restorePhases.map((p) => p.restored))),
      perCaseMedianMs: Math.round(median(summary.cases.map((c) => c.durationMs))),
      passed: summary.counts.pass,
    },
    ratio: +(perMin(n, fastMs) / perMin(n, naiveMs)).toFixed(2),
    ...(writeLog ? { writeLog: writelogSummary(writeLog, perMin(n, naiveMs)) } : {}),
    harnessPeakRssMiB: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
  };
  const file = o.out ?? join(defaultResultsDir, `bench-${result.date.replace(/[:.]/g, '')}.json`);
  await writeJsonAtomic(file, result);
  return { ...result, file };
}

/**
 * The write-log figures: per log, states/min of each path and the ratios;
 * the headline ratios are on the longest log (about 1000 flush epochs) for
 * the path qcrash's runs take (incremental, checked in place).
 */
export function writelogSummary(s: WritelogSuiteResult, naiveCasesPerMin: number) {
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
  }));
  const longest = [...logs].sort((a, b) => b.flushes - a.flushes)[0]!;
  return {
    logs,
    headline: {
      path: 'incremental, checked in place',
      flushes: longest.flushes,
      vsFstestsLoop: longest.ratioInPlace,
      vsFstestsLoopForkByCopy: longest.ratioForkByCopy,
      vsNaiveLoop: +(longest.inPlace.statesPerMinute / naiveCasesPerMin).toFixed(2),
    },
  };
}

export function formatBench(r: Record<string, unknown>): string {
  const a = r.naive as Record<string, number>;
  const b = r.qcrash as Record<string, number>;
  const w = r.writeLog as ReturnType<typeof writelogSummary> | undefined;
  const logLines = w
    ? [
        ...w.logs.flatMap((l) => [
          `  write-log, ${l.flushes} flush epochs (${l.entries} entries, ${l.logMiB} MiB, ${l.states} prefix states, jobs ${l.jobs}${l.sameResults ? ', same e2fsck results on every path' : ', RESULTS DIFFER between paths'}):`,
          `    fstests loop (copy + replay 0..k per state): ${l.fstestsLoop.statesPerMinute} states/min (${l.fstestsLoop.msPerState} ms/state)`,
          `    incremental, fork by copy                  : ${l.forkByCopy.statesPerMinute} states/min (${l.forkByCopy.msPerState} ms/state)  ${l.ratioForkByCopy.toFixed(2)}x`,
          `    incremental, in place (e2undo)             : ${l.inPlace.statesPerMinute} states/min (${l.inPlace.msPerState} ms/state)  ${l.ratioInPlace.toFixed(2)}x`,
        ]),
        `write-log vs fstests loop: ${w.headline.vsFstestsLoop.toFixed(2)}x`,
        `write-log vs naive loop: ${w.headline.vsNaiveLoop.toFixed(2)}x`,
        `  (write-log: incremental replay checked in place, on the ${w.headline.flushes}-epoch log; fork by copy: ${w.headline.vsFstestsLoopForkByCopy.toFixed(2)}x the fstests loop)`,
      ]
    : [];
  return [
    `qcrash bench: ${r.cases} crash cases, ${r.accel}, ${r.cores} cores, jobs ${r.jobs}, QEMU ${r.qemu}, kernel ${r.kernel}`,
    `  naive loop   : ${a.casesPerMin} cases/min  (total ${(a.totalMs! / 1000).toFixed(1)} s, boot-to-ready ${a.bootToReadyMedianMs} ms, per case ${a.perCaseMedianMs} ms, e2fsck ${a.e2fsckMedianMs} ms)`,
    `  qcrash       : ${b.casesPerMin} cases/min  (total ${(b.totalMs! / 1000).toFixed(1)} s, restore-to-ready ${b.restoreToReadyMedianMs} ms [QMP up ${b.restoreQmpMedianMs} ms, state loaded ${b.restoreLoadedMedianMs} ms], per case ${b.perCaseMedianMs} ms, ${b.passed}/${r.cases} passed)`,
    `  ratio        : ${r.ratio}x`,
    ...logLines,
    `  harness peak RSS: ${r.harnessPeakRssMiB} MiB`,
    ...(r.file ? [`  JSON: ${String(r.file)}`] : []),
  ].join('\n') + '\n';
}
