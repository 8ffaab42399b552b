import { join, resolve } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.ts';
import { ConfigError, ExitCode } from '../util/errors.ts';
import { git } from '../kernel/source.ts';
import { buildKernel, type BuildOptions } from '../kernel/build.ts';
import type { ProgressSink } from '../kernel/build-progress.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import type { RecoveryMode } from '../scenario/model.ts';
import type { RunSummary } from '../results/run.ts';
import {
  addRun,
  historyEntry,
  historyFileName,
  loadHistory,
  saveHistory,
  type HistoryIndex,
  type HistoryRun,
} from '../results/history.ts';
import { signatureRates } from '../results/history-stats.ts';
import { loadSummary, newRunId } from '../results/store.ts';
import type { Reporter } from '../report/reporter.ts';
import { writeHistoryReport } from '../report/html/history-report.ts';
import { runSuite } from '../run/runner.ts';
import { compareRuns } from '../compare/compare.ts';
import { confirm, failingSignatures, rerunFilter, type SignatureCases } from '../validate/validate.ts';

/**
 * `qcrash nightly`: follow a branch of a kernel tree night after night. It
 * fetches nothing (a cron script does: scripts/nightly.mjs); it builds the
 * branch's head incrementally, runs the suite, and compares with the last
 * run of the same branch in the history: a failing finding signature that
 * last night did not have is rerun on the same kernel, and only one seen on
 * every rerun makes the night fail (exit 1). One that does not come back is
 * flaky: listed with how often it showed over the branch's nights. A case
 * that no longer reaches its crash point is lost coverage, listed, not a
 * regression. The history index (history.json, history.html) is kept in the
 * history folder, with each night's branch and revision.
 */
export interface NightlyOptions {
  tree: string;
  /** A ref of `tree` (branch, remote-tracking branch, tag, commit): its commit tonight is what is built. */
  branch: string;
  /** The folder of the history: tonight's run goes into a subfolder, the index beside it. */
  history: string;
  scenarios: string[];
  /** Kernel line ("6.1", "6.12") whose config fragments to build --tree with (default 6.1). */
  line?: string;
  configs?: string[];
  seed?: number;
  jobs?: number;
  /** Reruns of each new signature's cases (default 1). */
  confirmRuns?: number;
  recovery?: RecoveryMode[];
  reporters?: Reporter[];
  onProgress?: ProgressSink;
  /** Test seam: where machines come from. */
  machines?: MachineLauncher;
  /** Test seam: how the head is built (default buildKernel, incremental in qcrash's clone of the tree). */
  build?: (o: BuildOptions) => Promise<KernelInfo>;
}

interface NightFinding {
  signature: string;
  caseIds: string[];
  /** Reruns that showed it again, of `reruns`. */
  confirmed: number;
  reruns: number;
  /** new: seen on every rerun (the night fails); flaky: not on every rerun. */
  verdict: 'new' | 'flaky';
  /** Over the branch's nights (tonight included): nights that showed it, of those that ran a case that could. */
  nights: { seen: number; ran: number };
  /** Last night did not run (or did not reach) any of its cases: it could not have shown it. */
  notRunLastNight: boolean;
}

export interface NightlyResult {
  branch: string;
  revision: string;
  kernel: { id: string; release: string };
  runId: string;
  dir: string;
  previous?: { runId: string; revision?: string; dir: string; startedAt: string };
  /** Tonight's head is last night's. */
  sameRevision: boolean;
  /** Failing signatures last night did not have. */
  fresh: NightFinding[];
  /** Failing tonight and last night. */
  known: string[];
  /** Failing last night, not tonight. */
  gone: string[];
  lostCoverage: Array<{ id: string; from: string }>;
  /** Cases of last night's run that tonight's does not have (the suite changed). */
  missingCases: string[];
  /** Cases that could not run tonight. */
  errors: string[];
  exitCode: number;
}

/** A folder name for tonight's run: the branch (made safe) and a sortable id. */
function runFolder(branch: string): string {
  return `nightly-${branch.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60)}-${newRunId()}`;
}

/** The branch's last night in the index: the latest run recorded for it. */
function lastNightOf(index: HistoryIndex, branch: string, exceptRunId?: string): HistoryRun | undefined {
  return index.runs.filter((r) => r.branch === branch && r.runId !== exceptRunId).at(-1);
}

export async function nightly(o: NightlyOptions): Promise<NightlyResult> {
  const progress = o.onProgress ?? (() => {});
  const history = resolve(o.history);
  const indexFile = join(history, historyFileName);
  // A damaged index stops the night before anything is built: it says how to rebuild it.
  const before = await loadHistory(indexFile);
  const revision = await branchHead(o);
  const previous = lastNightOf(before, o.branch);
  // Last night's run is read before tonight's is made: a history that lost it is said now, not after an hour of cases.
  const lastNight = previous ? await loadPrevious(history, previous) : undefined;

  progress(
    `nightly ${o.branch} at ${revision.slice(0, 12)}${previous ? `; last night ${previous.revision?.slice(0, 12) ?? '?'} (${previous.runId})` : '; first night of this branch in the history'}`,
  );
  const kernel: KernelInfo = await (o.build ?? buildKernel)({
    tree: o.tree,
    rev: revision,
    ...(o.line ? { line: o.line } : {}),
    ...(o.configs ? { configs: o.configs } : {}),
    onProgress: progress,
  });
  const dir = join(history, runFolder(o.branch));
  const run = suiteRunner(o, kernel);
  const tonight = await run(dir);

  // Into the index with its branch and revision, then the page from it.
  const index = addRun(before, historyEntry(tonight, dir, history, { branch: o.branch, revision }));
  await saveHistory(indexFile, index);
  await writeHistoryReport(history);

  const night = lastNight ? compareNights(lastNight, tonight) : undefined;
  const fresh = lastNight && night ? await confirmFresh(o, { night, lastNight, index, kernel, dir, run }) : [];
  const errors = tonight.cases.filter((x) => x.status === 'error').map((x) => x.id);
  const exitCode = fresh.some((f) => f.verdict === 'new')
    ? ExitCode.failed
    : errors.length
      ? ExitCode.infrastructure
      : ExitCode.pass;
  const result: NightlyResult = {
    branch: o.branch,
    revision,
    kernel: { id: kernel.id, release: kernel.release },
    runId: tonight.runId,
    dir,
    ...(previous
      ? {
          previous: {
            runId: previous.runId,
            ...(previous.revision ? { revision: previous.revision } : {}),
            dir: join(history, previous.dir),
            startedAt: previous.startedAt,
          },
        }
      : {}),
    sameRevision: previous?.revision === revision,
    fresh,
    known: night?.known ?? [],
    gone: night?.gone ?? [],
    lostCoverage: night?.lostCoverage ?? [],
    missingCases: night?.missingCases ?? [],
    errors,
    exitCode,
  };
  await writeJsonAtomic(join(dir, 'nightly.json'), result);
  await writeFileAtomic(join(dir, 'nightly.txt'), nightlyReport(result, tonight));
  return result;
}

/** The commit the branch is at tonight; nightly fetches nothing, so a branch the tree lacks is the user's to fetch. */
async function branchHead(o: NightlyOptions): Promise<string> {
  const head = await git(resolve(o.tree), ['rev-parse', '--verify', '--end-of-options', `${o.branch}^{commit}`], false);
  if (head.failed)
    throw new ConfigError(
      `--branch ${o.branch} is not a revision of ${o.tree} (${head.stderr.trim() || 'git rev-parse failed'}); nightly fetches nothing: fetch the branch first (scripts/nightly.mjs does)`,
    );
  return head.stdout.trim();
}

/** Runs the night's suite on tonight's kernel into a folder, optionally only some cases; resolves to the run's summary. */
type SuiteRunner = (out: string, filter?: string[]) => Promise<RunSummary>;

function suiteRunner(o: NightlyOptions, kernel: KernelInfo): SuiteRunner {
  const seed = o.seed ?? 1;
  return async (out, filter) =>
    (
      await runSuite({
        inputs: o.scenarios,
        kernel,
        seed,
        out,
        keep: 'failed',
        ...(o.jobs ? { jobs: o.jobs } : {}),
        ...(filter ? { filter } : {}),
        ...(o.recovery ? { recovery: o.recovery } : {}),
        ...(o.reporters ? { reporters: o.reporters } : {}),
        ...(o.machines ? { machines: o.machines } : {}),
      })
    ).summary;
}

/**
 * Rerun the cases of each signature last night did not have: one seen on
 * every rerun is new, one that is not is flaky; each with how often it
 * showed over the branch's nights.
 */
async function confirmFresh(
  o: NightlyOptions,
  n: { night: NightComparison; lastNight: RunSummary; index: HistoryIndex; kernel: KernelInfo; dir: string; run: SuiteRunner },
): Promise<NightFinding[]> {
  const progress = o.onProgress ?? (() => {});
  const { night, lastNight, index, kernel, dir, run } = n;
  const reruns = o.confirmRuns ?? 1;
  const verdicts = await confirm(night.added, reruns, async (ids, i) => {
    progress(`rerun ${i + 1}/${reruns} of ${night.added.length} new signature(s) on ${kernel.id}`);
    return run(join(dir, `confirm-${i + 1}`), rerunFilter(ids));
  });
  const branchNights: HistoryIndex = { ...index, runs: index.runs.filter((r) => r.branch === o.branch) };
  const rates = new Map(signatureRates(branchNights).map((r) => [r.signature, r]));
  const ranLastNight = new Set(lastNight.cases.filter((x) => x.status === 'pass' || x.status === 'fail').map((x) => x.id));
  return verdicts.map((v) => ({
    signature: v.signature,
    caseIds: v.caseIds,
    confirmed: v.confirmed,
    reruns: v.reruns,
    verdict: v.verdict === 'introduced' ? 'new' : 'flaky',
    nights: { seen: rates.get(v.signature)?.seen ?? 1, ran: rates.get(v.signature)?.ran ?? 1 },
    notRunLastNight: !v.caseIds.some((id) => ranLastNight.has(id)),
  }));
}

export interface NightComparison {
  added: SignatureCases[];
  known: string[];
  gone: string[];
  lostCoverage: Array<{ id: string; from: string }>;
  missingCases: string[];
}

/**
 * Tonight against last night, by failing finding signature: compare.ts's new
 * signatures, as far as a case that ran tonight failed with them (a case
 * that errored or did not reach its point judged nothing); those failing on
 * both nights; those gone; cases that no longer reach their crash point
 * (lost coverage: listed, never a regression) and cases the suite lost.
 */
export function compareNights(lastNight: RunSummary, tonight: RunSummary): NightComparison {
  const c = compareRuns(lastNight, tonight);
  const now = failingSignatures(tonight);
  const then = failingSignatures(lastNight);
  return {
    added: c.added.filter((s) => now.has(s)).map((s) => now.get(s)!),
    known: [...now.keys()].filter((s) => then.has(s)).sort(),
    gone: [...then.keys()].filter((s) => !now.has(s)).sort(),
    lostCoverage: c.lostCoverage,
    missingCases: c.onlyInA,
  };
}

async function loadPrevious(history: string, previous: HistoryRun): Promise<RunSummary> {
  const dir = join(history, previous.dir);
  try {
    return await loadSummary(dir);
  } catch (e) {
    throw new ConfigError(
      `the last night of this branch in the history (${previous.runId}, ${dir}) cannot be read: ${(e as Error).message}. Restore that folder, or remove it and rebuild the index with: qcrash history ${history}`,
    );
  }
}

/** The night in text, for the cron mail: what is new (and reproduced), what is flaky, what went away. */
export function nightlyReport(r: NightlyResult, tonight: RunSummary): string {
  const out: string[] = [];
  out.push(`qcrash nightly: ${r.branch} at ${r.revision.slice(0, 12)} (${r.kernel.release}, ${r.kernel.id})`);
  out.push(
    `run ${r.runId}: ${tonight.counts.total} case(s), ${tonight.counts.pass} passed, ${tonight.counts.fail} failed, ${tonight.counts.error} errors, ${tonight.counts.notReached} not reached; seed ${tonight.seed}`,
  );
  if (!r.previous) {
    out.push(
      'first night of this branch in the history: nothing to compare with; its failing findings are the baseline for tomorrow',
    );
  } else {
    out.push(
      `last night: ${r.previous.runId} at ${r.previous.revision?.slice(0, 12) ?? '?'}${r.sameRevision ? ' (the same revision)' : ''}`,
    );
  }
  out.push('');
  const section = (title: string, items: string[]) => {
    out.push(`${title}: ${items.length}`);
    for (const i of items) out.push(`  ${i}`);
  };
  const fmt = (f: NightFinding) =>
    `${f.signature}  [${f.caseIds.join(', ')}] rerun ${f.confirmed}/${f.reruns}, seen on ${f.nights.seen} of ${f.nights.ran} night(s) that ran it${f.notRunLastNight ? '; last night did not run its case' : ''}`;
  section('NEW since last night (reproduced on rerun)', r.fresh.filter((f) => f.verdict === 'new').map(fmt));
  section('flaky (new since last night, not seen on every rerun)', r.fresh.filter((f) => f.verdict === 'flaky').map(fmt));
  section('still failing (as last night)', r.known);
  section('gone since last night', r.gone);
  if (r.lostCoverage.length)
    section(
      'lost coverage (crash point no longer reached; not a regression)',
      r.lostCoverage.map((x) => `${x.id}: ${x.from} -> not-reached`),
    );
  if (r.missingCases.length) section('cases of last night not run tonight (the suite changed)', r.missingCases);
  if (r.errors.length) section('ERRORS (cases that could not run)', r.errors);
  out.push('');
  out.push(
    r.exitCode === ExitCode.failed
      ? 'Result: NEW FINDINGS since last night (exit 1).'
      : r.exitCode === ExitCode.infrastructure
        ? 'Result: no new finding, but cases could not run (exit 3).'
        : 'Result: nothing new since last night.',
  );
  return out.join('\n') + '\n';
}
