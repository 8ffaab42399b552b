import { join, resolve } from 'node:path';
import { rm } from 'node:fs/promises';
import { ConfigError, InfraError, QcrashError } from '../util/errors.ts';
import { cacheDir, projectRoot } from '../util/paths.ts';
import { onInterrupt } from '../util/cleanup.ts';
import { hashJson } from '../util/hash.ts';
import { run } from '../util/exec.ts';
import { git, markOwnedTree } from '../kernel/source.ts';
import { buildKernel, KernelBuildError } from '../kernel/build.ts';
import { runSuite } from '../run/runner.ts';
import type { ShardSpec } from '../run/shard.ts';
import type { RunSummary } from '../results/run.ts';
import { formatSignature, signatureMatches, signatureOf, type Signature } from '../results/signature.ts';

export interface StepOptions {
  tree: string;
  rev?: string;
  scenarios: string[];
  /** Kernel line ("6.1", "6.12") whose config fragments to build --tree with (default 6.1). */
  line?: string;
  configs?: string[];
  /** Substring of a finding signature ("scenario | point | recovery | class | code"); default: any failing finding. */
  finding?: string;
  retries?: number;
  seed?: number;
  jobs?: number;
  out?: string;
  /** Run only this part of the cases (`--shard I/N`); `bisect-combine` joins the parts' verdicts. */
  shard?: ShardSpec;
}

/** Which part of which case list a sharded step judged: what `combineStepReports` checks before it joins verdicts. */
interface StepShard {
  index: number;
  total: number;
  caseListHash: string;
  partitionHash: string;
}

export interface StepVerdict {
  verdict: 'good' | 'bad' | 'skip';
  exitCode: 0 | 1 | 125;
  reason: string;
  /** The finding that made the revision bad. */
  signature?: Signature;
  flaky?: boolean;
  /** Set for a sharded step: the verdict covers only this part. */
  shard?: StepShard;
  ms: number;
}

/** The line `bisect-step` prints on stdout for `bisect` (and scripts) to read back: one JSON object. */
export interface BisectStepReport extends Omit<StepVerdict, 'ms'> {
  qcrash: 'bisect-step';
  commit: string;
  seconds: number;
}

export function parseStepReports(log: string): BisectStepReport[] {
  const out: BisectStepReport[] = [];
  for (const line of log.split('\n')) {
    if (!line.startsWith('{"qcrash":"bisect-step"')) continue;
    try {
      out.push(JSON.parse(line) as BisectStepReport);
    } catch {
      /* a line cut by a kill: the step is missing from the list, git bisect's log still has it */
    }
  }
  return out;
}

/** The failing signatures of a run that `finding` selects (any, without one); cases that errored or were not reached judge nothing. */
export function matchingSignatures(s: RunSummary, finding?: string): Signature[] {
  const out: Signature[] = [];
  for (const c of s.cases) {
    if (c.status === 'error' || c.status === 'not-reached') continue;
    for (const f of c.failing) {
      const sig = signatureOf(c, f);
      if (signatureMatches(sig, finding)) out.push(sig);
    }
  }
  return out;
}

/**
 * One bisect step on the revision checked out in `tree`: build it
 * (incrementally), run the cases, and say good (0), bad (1: the finding is
 * present on at least one of `retries` runs; present on only some is flaky,
 * still bad), or skip (125: it does not build, or a case could not run).
 */
export async function bisectStep(o: StepOptions): Promise<StepVerdict> {
  const t0 = Date.now();
  let kernel;
  try {
    kernel = await buildKernel({
      tree: o.tree,
      rev: o.rev ?? 'HEAD',
      ...(o.line ? { line: o.line } : {}),
      ...(o.configs ? { configs: o.configs } : {}),
    });
  } catch (e) {
    if (e instanceof KernelBuildError)
      return { verdict: 'skip', exitCode: 125, reason: `does not build: ${e.errorLines[0] ?? ''}`, ms: Date.now() - t0 };
    throw e;
  }
  const retries = Math.max(1, o.retries ?? 1);
  let seen = 0;
  let firstSig: Signature | undefined;
  let shard: StepShard | undefined;
  const part = (v: Omit<StepVerdict, 'ms' | 'shard'>): StepVerdict => ({
    ...v,
    ...(shard ? { shard } : {}),
    ms: Date.now() - t0,
  });
  for (let i = 0; i < retries; i++) {
    let summary: RunSummary;
    try {
      // The partition does not depend on the seed: every retry runs the same part.
      ({ summary } = await runSuite({
        inputs: o.scenarios,
        kernel,
        seed: (o.seed ?? 1) + i,
        keep: 'failed',
        ...(o.jobs ? { jobs: o.jobs } : {}),
        ...(o.out ? { out: join(o.out, `${kernel.id}-${i}${o.shard ? `-shard-${o.shard.index}of${o.shard.total}` : ''}`) } : {}),
        ...(o.shard ? { shard: o.shard } : {}),
      }));
    } catch (e) {
      if (e instanceof InfraError) return part({ verdict: 'skip', exitCode: 125, reason: `could not run: ${e.message}` });
      throw e;
    }
    if (summary.shard)
      shard = {
        index: summary.shard.index,
        total: summary.shard.total,
        caseListHash: summary.shard.caseListHash,
        partitionHash: summary.shard.partitionHash,
      };
    const m = matchingSignatures(summary, o.finding);
    if (m.length) {
      seen++;
      firstSig ??= m[0]!;
    } else if (summary.counts.error > 0) {
      return part({ verdict: 'skip', exitCode: 125, reason: `${summary.counts.error} case(s) could not run (VM did not boot?)` });
    }
  }
  if (seen)
    return part({ verdict: 'bad', exitCode: 1, reason: formatSignature(firstSig!), signature: firstSig!, flaky: seen < retries });
  return part({ verdict: 'good', exitCode: 0, reason: 'no matching finding' });
}

/**
 * The verdict on one revision from its shards' steps (each ran
 * `bisect-step --shard I/N` on its own machine): bad when any part found the
 * finding (a finding is a finding wherever it showed), good only when every
 * part ran and found nothing, skip otherwise (a part that could not run or
 * never reported). Reports of other revisions, other case lists or
 * partitions, or one part twice, are refused: under `git bisect run` the
 * caller turns that into a skip, never a verdict.
 */
export function combineStepReports(reports: readonly BisectStepReport[]): BisectStepReport {
  if (!reports.length)
    throw new ConfigError(
      "bisect-combine: no bisect-step report found (give the files the shards' bisect-step printed on stdout)",
    );
  const commits = new Set(reports.map((r) => r.commit));
  if (commits.size > 1)
    throw new ConfigError(
      `bisect-combine: the reports are of different revisions: ${[...commits].map((c) => c.slice(0, 12)).join(', ')}`,
    );
  const unsharded = reports.filter((r) => !r.shard);
  if (unsharded.length)
    throw new ConfigError(
      'bisect-combine: a report without a shard (bisect-step run without --shard) is a verdict of its own; combine only sharded steps',
    );
  const first = reports[0]!.shard!;
  for (const r of reports) {
    const s = r.shard!;
    if (s.total !== first.total || s.caseListHash !== first.caseListHash || s.partitionHash !== first.partitionHash) {
      throw new ConfigError(
        `bisect-combine: shard ${s.index}/${s.total} split another case list or partition than shard ${first.index}/${first.total}: give every shard the same scenarios, --shard count and options`,
      );
    }
  }
  const byIndex = new Map<number, BisectStepReport>();
  for (const r of reports) {
    if (byIndex.has(r.shard!.index))
      throw new ConfigError(
        `bisect-combine: shard ${r.shard!.index}/${first.total} reported twice: give each shard's report once`,
      );
    byIndex.set(r.shard!.index, r);
  }
  const commit = reports[0]!.commit;
  const seconds = Math.max(...reports.map((r) => r.seconds));
  const bad = [...byIndex.values()].filter((r) => r.verdict === 'bad').sort((a, b) => a.shard!.index - b.shard!.index);
  if (bad.length) {
    const b = bad[0]!;
    return {
      qcrash: 'bisect-step',
      commit,
      verdict: 'bad',
      exitCode: 1,
      reason: `${b.reason} (shard ${b.shard!.index}/${first.total})`,
      ...(b.signature ? { signature: b.signature } : {}),
      flaky: bad.every((x) => x.flaky),
      seconds,
    };
  }
  const missing = Array.from({ length: first.total }, (_, i) => i + 1).filter((i) => !byIndex.has(i));
  const skipped = [...byIndex.values()].filter((r) => r.verdict !== 'good');
  if (missing.length || skipped.length) {
    const why = [
      ...(missing.length ? [`shard(s) ${missing.map((i) => `${i}/${first.total}`).join(', ')} reported nothing`] : []),
      ...skipped.map((r) => `shard ${r.shard!.index}/${first.total}: ${r.reason}`),
    ];
    return {
      qcrash: 'bisect-step',
      commit,
      verdict: 'skip',
      exitCode: 125,
      reason: `not every part was judged: ${why.join('; ')}`,
      seconds,
    };
  }
  return {
    qcrash: 'bisect-step',
    commit,
    verdict: 'good',
    exitCode: 0,
    reason: `no matching finding in any of the ${first.total} shards`,
    seconds,
  };
}

export interface BisectOptions extends Omit<StepOptions, 'rev'> {
  good: string;
  bad: string;
  onProgress?: (l: string) => void;
}

export interface BisectResult {
  firstBad: { commit: string; subject: string };
  finding: string;
  tested: Array<{ commit: string; subject: string; verdict: string; reason: string; seconds: number }>;
}

/**
 * `git bisect run` over a kernel tree, keyed on a finding. The bisect runs in
 * a clone qcrash owns in the cache (the user's checkout and its bisect state
 * are never touched); each step builds incrementally and runs only the given
 * cases. The bad and good ends are verified first.
 */
export async function bisect(o: BisectOptions): Promise<BisectResult> {
  const progress = o.onProgress ?? (() => {});
  const tree = resolve(o.tree);
  const top = await git(tree, ['rev-parse', '--show-toplevel'], false);
  if (top.failed) throw new ConfigError(`--tree ${o.tree} is not a git tree`);
  const rev = async (r: string) => {
    const x = await git(tree, ['rev-parse', '--verify', `${r}^{commit}`], false);
    if (x.failed) throw new ConfigError(`unknown revision "${r}" in ${o.tree}`);
    return x.stdout.trim();
  };
  const good = await rev(o.good);
  const bad = await rev(o.bad);
  if ((await git(tree, ['merge-base', '--is-ancestor', good, bad], false)).exitCode !== 0) {
    throw new ConfigError(`--good ${o.good} is not an ancestor of --bad ${o.bad}`);
  }
  const clone = cacheDir('bisect', hashJson({ tree: top.stdout.trim() }).slice(0, 12));
  await rm(clone, { recursive: true, force: true });
  await git(tree, ['clone', '-q', '--shared', '--no-checkout', top.stdout.trim(), clone]);
  // Built in place (no second clone); its object dir starts empty, but ccache hits across trees.
  await markOwnedTree(clone);
  const stepArgs = (extra: string[] = []) => [
    'bisect-step',
    '--tree',
    clone,
    ...(o.finding ? ['--finding', o.finding] : []),
    '--retries',
    String(o.retries ?? 1),
    '--seed',
    String(o.seed ?? 1),
    ...(o.jobs ? ['--jobs', String(o.jobs)] : []),
    ...(o.out ? ['--out', resolve(o.out)] : []),
    ...(o.line ? ['--line', o.line] : []),
    ...(o.configs ?? []).flatMap((c) => ['--config', c]),
    ...extra,
    ...o.scenarios.map((s) => resolve(s)),
  ];
  const subject = async (c: string) => (await git(clone, ['log', '-1', '--format=%s', c])).stdout.trim();
  const tested: BisectResult['tested'] = [];
  const check = async (c: string, want: 'good' | 'bad') => {
    await git(clone, ['checkout', '-q', '-f', c]);
    const v = await bisectStep({ ...o, tree: clone, rev: 'HEAD' });
    tested.push({ commit: c, subject: await subject(c), verdict: v.verdict, reason: v.reason, seconds: Math.round(v.ms / 1000) });
    progress(`${c.slice(0, 12)} ${v.verdict}: ${v.reason}`);
    if (v.verdict !== want)
      throw new ConfigError(`--${want} ${want === 'bad' ? o.bad : o.good} is ${v.verdict} (${v.reason}): nothing to bisect`);
    return v;
  };
  const badVerdict = await check(bad, 'bad');
  await check(good, 'good');

  const stop = onInterrupt(() => void git(clone, ['bisect', 'reset'], false));
  try {
    await git(clone, ['bisect', 'start', bad, good]);
    const node = process.execPath;
    const bin = join(projectRoot, 'bin', 'qcrash.js');
    const r = await run(
      await import('../util/tools.ts').then((m) => m.tool('git')),
      ['bisect', 'run', node, bin, ...stepArgs()],
      { cwd: clone, timeoutMs: 24 * 3600_000 },
    );
    const log = r.stdout + r.stderr;
    for (const step of parseStepReports(log)) {
      tested.push({
        commit: step.commit,
        subject: await subject(step.commit),
        verdict: step.verdict,
        reason: step.reason,
        seconds: step.seconds,
      });
    }
    const first = /^([0-9a-f]{40}) is the first bad commit/m.exec(log)?.[1];
    if (!first) throw new QcrashError(`git bisect run did not name a first bad commit:\n${log.slice(-2000)}`);
    return { firstBad: { commit: first, subject: await subject(first) }, finding: badVerdict.reason, tested };
  } finally {
    stop();
    await git(clone, ['bisect', 'reset'], false);
  }
}

export function formatBisect(r: BisectResult): string {
  return (
    [
      `first bad commit: ${r.firstBad.commit} ${r.firstBad.subject}`,
      `finding: ${r.finding}`,
      'tested:',
      ...r.tested.map(
        (t) => `  ${t.commit.slice(0, 12)} ${t.verdict.padEnd(4)} ${String(t.seconds).padStart(4)}s  ${t.subject}  (${t.reason})`,
      ),
    ].join('\n') + '\n'
  );
}
