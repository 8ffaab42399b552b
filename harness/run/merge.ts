import { access, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ConfigError } from '../util/errors.ts';
import { run, runOk } from '../util/exec.ts';
import { compareIds, loadShardRun, mergedSummary, planMerge } from '../results/shards.ts';
import { caseRelDir, loadSummary, RunStore } from '../results/store.ts';
import { countStatuses, type RunMeta, type RunSummary } from '../results/run.ts';
import { ReporterHub, type Reporter } from '../report/reporter.ts';
import { RunFilesReporter } from '../report/files.ts';
import { HtmlReportReporter } from '../report/html/run-report.ts';
import { checkOutDir } from './out-dir.ts';
import { runImagesDir } from '../results/crash-images.ts';

export interface MergeOutcome {
  summary: RunSummary;
  dir: string;
  /** Missing shards and missing or duplicated cases: each is an `error` case of the merged run too. */
  problems: string[];
  warnings: string[];
  reporterFailures: Array<{ reporter: string; error: string }>;
}

/**
 * A case's folder into the merged run: hard links where the shards are on the
 * same filesystem (results are written atomically, never changed in place,
 * so sharing inodes is safe), else a copy that keeps crash images sparse.
 */
async function copyCaseDir(from: string, to: string): Promise<void> {
  await mkdir(dirname(to), { recursive: true });
  const linked = await run('cp', ['-al', from, to]);
  if (linked.exitCode === 0) return;
  await rm(to, { recursive: true, force: true });
  await runOk('cp', ['-a', '--reflink=auto', '--sparse=always', from, to]);
}

/**
 * The compressed base images the kept crash images of the runs in `dirs` lie
 * over (`images/`, named by base digest, so the same file in every shard):
 * each once into the merged run, so its crash.qcow2 files stay valid.
 */
async function copyRunImages(dirs: string[], out: string): Promise<void> {
  for (const d of dirs) {
    const names = await readdir(join(d, runImagesDir)).catch(() => [] as string[]);
    for (const n of names.filter((x) => !x.startsWith('.'))) {
      const to = join(out, runImagesDir, n);
      if (
        await access(to).then(
          () => true,
          () => false,
        )
      )
        continue;
      await copyCaseDir(join(d, runImagesDir, n), to);
    }
  }
}

/**
 * `qcrash merge OUT SHARD_DIR...`: one run folder from the shards of a
 * sharded run, as if it had run on one machine: run.json (with where each
 * shard ran), the case folders, summary.json, and every file reporter
 * (results.tap, results.ktap, junit.xml, report.txt, report.html). Shards of
 * different runs are refused before anything is written; missing shards and
 * missing or duplicated cases are `error` cases, so the exit code is the one
 * `run` would give (never 0 with a part missing).
 */
export async function mergeShards(o: { out: string; dirs: string[]; reporters?: Reporter[] }): Promise<MergeOutcome> {
  const out = resolve(o.out);
  const dirs = o.dirs.map((d) => resolve(d));
  if (dirs.includes(out)) throw new ConfigError(`merge: the output folder ${o.out} is one of the shards; choose another OUT`);
  if (
    await access(join(out, 'run.json')).then(
      () => true,
      () => false,
    )
  ) {
    throw new ConfigError(
      `merge: ${o.out} already holds a run; choose another OUT (merging again gives the same run id, so nothing is lost by removing it first)`,
    );
  }
  const plan = planMerge(await Promise.all(dirs.map(loadShardRun)));
  await checkOutDir(out);
  const store = await RunStore.create(out, plan.meta);
  for (const c of plan.cases) {
    const from = plan.sources.get(c.id);
    if (from) await copyCaseDir(join(from, caseRelDir(c.id)), store.caseDir(c.id));
    else await store.writeCase(c);
  }
  await copyRunImages([...new Set(plan.sources.values())], store.dir);
  const summary = mergedSummary(plan, new Date().toISOString());
  await store.writeSummary(summary);
  const hub = new ReporterHub([...(o.reporters ?? []), new RunFilesReporter(), new HtmlReportReporter()]);
  await hub.onRunEnd(summary, store.dir);
  return { summary, dir: store.dir, problems: plan.problems, warnings: plan.warnings, reporterFailures: hub.failed };
}

/**
 * Runs of one kernel and seed over disjoint sets of cases, as one run folder:
 * the confirmation reruns of validate's shards, each of which reran only its
 * own part's cases. A case in two of them is refused, not chosen between.
 */
export async function unionRuns(o: { out: string; dirs: string[] }): Promise<RunSummary> {
  const summaries = await Promise.all(o.dirs.map(loadSummary));
  const first = summaries[0]!;
  for (const [i, s] of summaries.entries()) {
    if (s.kernel.id !== first.kernel.id || s.seed !== first.seed) {
      throw new ConfigError(
        `cannot join ${o.dirs[0]} and ${o.dirs[i]}: they ran on different kernels or seeds (${first.kernel.id} seed ${first.seed}, ${s.kernel.id} seed ${s.seed})`,
      );
    }
  }
  const owner = new Map<string, string>();
  for (const [i, s] of summaries.entries()) {
    for (const c of s.cases) {
      const other = owner.get(c.id);
      if (other) throw new ConfigError(`cannot join ${other} and ${o.dirs[i]}: both ran case ${c.id}`);
      owner.set(c.id, resolve(o.dirs[i]!));
    }
  }
  const { cases: _c, counts: _n, finishedAt: _f, ...meta } = first;
  const store = await RunStore.create(resolve(o.out), {
    ...(meta as RunMeta),
    runId: `${first.runId}-joined`,
    host: [...new Set(summaries.map((s) => s.host))].join(', '),
  });
  const cases = summaries.flatMap((s) => s.cases).sort((a, b) => compareIds(a.id, b.id));
  for (const c of cases) await copyCaseDir(join(owner.get(c.id)!, caseRelDir(c.id)), store.caseDir(c.id));
  await copyRunImages([...new Set(owner.values())], store.dir);
  const finished = summaries
    .map((s) => s.finishedAt)
    .filter((x): x is string => !!x)
    .sort();
  const summary: RunSummary = {
    ...store.meta,
    ...(finished.length ? { finishedAt: finished.at(-1)! } : {}),
    counts: countStatuses(cases),
    cases,
  };
  await store.writeSummary(summary);
  const hub = new ReporterHub([new RunFilesReporter(), new HtmlReportReporter()]);
  await hub.onRunEnd(summary, store.dir);
  return summary;
}
