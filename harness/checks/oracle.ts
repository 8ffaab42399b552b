import { writeFileSync } from 'node:fs';
import type { Finding, RecoveryMode } from '../findings/finding.ts';
import type { Manifest } from '../image/manifest.ts';
import type { Recipe } from '../image/recipe.ts';
import { runE2fsck, type E2fsckRun } from '../image/e2fsck.ts';
import { coveredBy, type DurabilityExpectations, type MigrateTarget } from '../crash/expectations.ts';
import { classifyProblems } from './classify.ts';
import { checkContent } from './content.ts';
import { journalRecoveryFindings } from './journal-recovery.ts';
import type { FileOrigin } from './file-history.ts';
import { problemInfo } from './problem-codes.ts';
import { scanConsole } from './console.ts';
import { reusedRun, type CheckedImage, type CheckedImages } from './checked-images.ts';

/**
 * The image the oracles judge and what its recovery left as evidence: an
 * image file and logs, not the recovery itself (the oracles know no
 * recovery mode's code). A recovery's RecoveredImage is one of these.
 */
export interface ImageUnderCheck {
  /** Which recovery produced the image: every finding is tagged with it. */
  mode: RecoveryMode;
  /** The image the oracles run on, in place (its e2fsck -fy repair writes to it). */
  image: string;
  /** e2fsck runs made before the oracles (the user-space journal replay). */
  runs: readonly E2fsckRun[];
  /** The console of a recovery boot, scanned for kernel findings. */
  console?: string;
  /** What mount and umount said in a recovery boot: a refused mount is corruption. */
  mount?: { exitCode: number; output: string };
  umount?: { exitCode: number; output: string };
  /**
   * Byte ranges of `image` known to hold the base image's bytes (nothing
   * wrote them since it was copied from OracleContext.basePath): the content
   * oracle does not read those to compare a file with the base.
   */
  unchangedFromBase?: (offset: number, length: number) => boolean;
  /** The identity of the image's bytes (equal keys, equal bytes) and the state it is: with OracleContext.checked, a state whose image was checked already is not checked again. */
  identity?: { key: string; state: string };
}

export interface OracleContext {
  manifest?: Manifest;
  /** What the workload asked to migrate (their i_blocks may legitimately be too high). */
  migrated: MigrateTarget[];
  expectations: DurabilityExpectations;
  /** The image's recipe: the original bytes of recipe files the workload wrote into come from it. */
  recipe?: Recipe;
  /** For a user's image: the original bytes of its files the workload wrote into, read from the image. */
  imageFiles?: ReadonlyMap<string, FileOrigin>;
  /** The base image the crash image was made from, which the manifest describes: files left as they were there are compared, not hashed. */
  basePath?: string;
  /** The recovered image is shared (checked in place): the repair records what it overwrites in this undo file (e2fsck -z). */
  undoFile?: () => string | undefined;
  /** The images already checked among the states this one belongs to (a write-log unit's), by identity. */
  checked?: CheckedImages;
}

export interface OracleOutcome {
  findings: Finding[];
  /** Every e2fsck run, the recovery's own first, with its text and XML log. */
  runs: E2fsckRun[];
  /** Milliseconds each oracle took: content (and durability), e2fsck -fn, the -fy repair and the -fn after it (0 when not run). */
  ms?: OracleTimes;
  /** The earlier state whose byte-identical image gave this one's e2fsck runs (and content findings, when held to the same expectations). */
  sameImageAs?: string;
}

interface OracleTimes {
  contentMs: number;
  checkMs: number;
  repairMs: number;
  recheckMs: number;
  /** Waiting for another state's check of the same image (checked-images.ts): no work of this state's. */
  waitMs?: number;
}

/**
 * The superblock's free inode and free block counts. ext4 does not keep them
 * current on disk while mounted (the kernel recounts them from the group
 * descriptors), so nearly every crash state has them wrong; e2fsck -fn
 * reports them (a leak finding each) and still exits 0. A repair that only
 * rewrites these two counters cannot fail to converge, so such a state's
 * check ends at the first -fn: that spared two of a write-log state's four
 * e2fsck runs on 111 of log-writers' 120 states.
 */
const summaryCountsOnly = new Set([0x05000d, 0x05000f]);

/** The -fn run leaves nothing to repair: clean, or only the superblock's summary counts wrong with e2fsck's own verdict clean (exit 0). */
export function needsRepair(check: Pick<E2fsckRun, 'problems' | 'exit'>): boolean {
  if (check.exit.code !== 0) return true;
  return check.problems.some((p) => !problemInfo(p.code).header && !summaryCountsOnly.has(p.code));
}

async function timed<T>(work: () => Promise<T>, done: (ms: number) => void): Promise<T> {
  const t0 = performance.now();
  try {
    return await work();
  } finally {
    done(performance.now() - t0);
  }
}

/** The content and durability oracle on the recovered image, timed into `ms.contentMs` (nothing without a manifest). */
async function contentOracle(recovered: ImageUnderCheck, ctx: OracleContext, ms: OracleTimes): Promise<Finding[]> {
  const manifest = ctx.manifest;
  if (!manifest) return [];
  return timed(
    () =>
      checkContent(
        recovered.image,
        manifest,
        ctx.expectations,
        recovered.mode,
        ctx.recipe,
        ctx.imageFiles,
        ctx.basePath,
        recovered.unchangedFromBase,
      ),
    (t) => (ms.contentMs = t),
  );
}

/**
 * The content oracle and e2fsck -fn: both only read the image as the
 * recovery left it, so they run at once (e2fsck in its own process while
 * the content oracle reads the image here); the caller tells their findings
 * in the same order as ever, content first. Nothing is thrown before the
 * -fn has ended: the image must not change under it.
 */
async function contentAndCheck(
  recovered: ImageUnderCheck,
  ctx: OracleContext,
  ms: OracleTimes,
): Promise<{ content: Finding[]; check: E2fsckRun }> {
  const checking = timed(
    () => runE2fsck(recovered.image, 'check'),
    (t) => (ms.checkMs = t),
  );
  void checking.catch(() => undefined);
  let content: Finding[];
  try {
    content = await contentOracle(recovered, ctx, ms);
  } catch (e) {
    await checking.catch(() => undefined);
    throw e;
  }
  return { content, check: await checking };
}

/** What the recovery itself showed: a mount the kernel refused, a failed umount, the recovery boot's console, the journal replay's run. */
function recoveryFindings(recovered: ImageUnderCheck): Finding[] {
  const mode = recovered.mode;
  const findings: Finding[] = [];
  if (recovered.mount && recovered.mount.exitCode !== 0) {
    findings.push({
      class: 'corruption',
      source: 'console',
      code: 'mount-failed',
      name: 'mount-failed',
      message: `the kernel refused to mount the crash image: ${recovered.mount.output.trim().split('\n').pop() ?? ''}`,
      recovery: mode,
      detail: recovered.mount.output,
    });
  }
  if (recovered.umount && recovered.umount.exitCode !== 0) {
    findings.push({
      class: 'kernel',
      source: 'console',
      code: 'umount-failed',
      name: 'umount-failed',
      message: `umount failed: ${recovered.umount.output.trim()}`,
      recovery: mode,
    });
  }
  if (recovered.console !== undefined)
    findings.push(...scanConsole(recovered.console, { boot: 'recovery boot', recovery: mode }));
  findings.push(...journalRecoveryFindings(recovered.runs, mode));
  return findings;
}

/** What the image holds, checked: the content oracle and e2fsck -fn, then -fy and -fn again when the first left something to repair. */
interface ImageChecks {
  content: Finding[];
  /** -fn, and the repair and the -fn after it when they ran. */
  runs: E2fsckRun[];
}

/** The expectations a state's content findings were judged by, as a key: equal keys, equal findings on the same image. */
function contentKey(ctx: OracleContext): string {
  return JSON.stringify([ctx.expectations, ctx.migrated]);
}

async function checkImage(recovered: ImageUnderCheck, ctx: OracleContext, ms: OracleTimes): Promise<ImageChecks> {
  const { content, check } = await contentAndCheck(recovered, ctx, ms);
  const runs = [check];
  if (needsRepair(check)) {
    let t0 = performance.now();
    runs.push(await runE2fsck(recovered.image, 'repair', { undoFile: ctx.undoFile?.() }));
    ms.repairMs = performance.now() - t0;
    t0 = performance.now();
    runs.push(await runE2fsck(recovered.image, 'check'));
    ms.recheckMs = performance.now() - t0;
  }
  return { content, runs };
}

/** A state whose recovered image an earlier state had: that state's runs, and its content findings when held to the same expectations (else the content oracle reads this image). */
async function checkedBefore(
  earlier: CheckedImage,
  recovered: ImageUnderCheck,
  ctx: OracleContext,
  ms: OracleTimes,
): Promise<ImageChecks> {
  const runs = earlier.runs.map((r) => reusedRun(r, earlier, recovered.image));
  if (earlier.content.key === contentKey(ctx)) return { content: structuredClone([...earlier.content.findings]), runs };
  return { content: await contentOracle(recovered, ctx, ms), runs };
}

/** This state's checks: an earlier state's with the same image (OracleContext.checked), or its own, then kept for the next. */
async function checksOf(
  recovered: ImageUnderCheck,
  ctx: OracleContext,
  ms: OracleTimes,
): Promise<ImageChecks & { sameImageAs?: string }> {
  const id = recovered.identity;
  const t0 = performance.now();
  const claim = id && ctx.checked ? await ctx.checked.claim(id.key) : undefined;
  if (claim) ms.waitMs = performance.now() - t0;
  if (claim && 'earlier' in claim)
    return { ...(await checkedBefore(claim.earlier, recovered, ctx, ms)), sameImageAs: claim.earlier.state };
  let done: ImageChecks | undefined;
  try {
    done = await checkImage(recovered, ctx, ms);
  } finally {
    claim?.settle(
      done && id
        ? { state: id.state, image: recovered.image, runs: done.runs, content: { key: contentKey(ctx), findings: done.content } }
        : undefined,
    );
  }
  return done;
}

/**
 * Every oracle on one recovered image, in order: what the recovery itself
 * showed (a mount the kernel refused, the recovery boot's console), the
 * content oracle (on the image as the recovery left it, before any repair:
 * what the kernel would see), `e2fsck -fn` for what the crash left, `-fy`
 * to repair, and a second `-fn` that must be clean: a repair that does not
 * converge is itself corruption. The repair and second -fn run only when
 * the first -fn left something to repair (needsRepair). Works on
 * `recovered.image` in place. With `ctx.checked` and an identity, an image
 * already checked is not checked again (checked-images.ts): the findings
 * are the same, read from the same runs.
 */
export async function runOracles(recovered: ImageUnderCheck, ctx: OracleContext): Promise<OracleOutcome> {
  const mode = recovered.mode;
  const findings = recoveryFindings(recovered);
  const ms: OracleTimes = { contentMs: 0, checkMs: 0, repairMs: 0, recheckMs: 0 };
  const entries = ctx.manifest?.entries ?? [];
  const manifestInodes = new Map(entries.map((e) => [e.ino, e.path]));
  const migratedInodes = new Set(entries.filter((e) => ctx.migrated.some((t) => coveredBy(e.path, t))).map((e) => e.ino));
  const checks = await checksOf(recovered, ctx, ms);
  findings.push(...checks.content);
  const [check, , again] = checks.runs;
  findings.push(...classifyProblems(check!.problems, check!.text, { manifestInodes, migratedInodes, recovery: mode }));
  if (again) {
    const left = again.problems.filter((p) => !problemInfo(p.code).header);
    if (left.length || again.exit.uncorrected) {
      findings.push({
        class: 'corruption',
        source: 'repair',
        code: 'repair-not-converged',
        name: 'repair-not-converged',
        message: `e2fsck -fy did not leave a clean filesystem: ${left.map((p) => problemInfo(p.code).name).join(', ') || `exit ${again.exit.code}`}`,
        recovery: mode,
        detail: again.text.slice(0, 4000),
      });
    }
  }
  return {
    findings,
    runs: [...recovered.runs, ...checks.runs],
    ms,
    ...(checks.sameImageAs !== undefined ? { sameImageAs: checks.sameImageAs } : {}),
  };
}

/**
 * e2fsck's text and XML logs into the case folder: `${prefix}<mode>-<n>-<e2fsck mode>.txt|.xml`.
 * Written synchronously: a write-log check writes four small files a state,
 * and each asynchronous write is three trips through libuv's thread pool
 * (open, write, close) that cost more than the writes.
 */
export function writeE2fsckLogs(mode: string, runs: readonly E2fsckRun[], prefix: string): void {
  let i = 0;
  for (const r of runs) {
    i++;
    const base = `${prefix}${mode}-${i}-${r.mode}`;
    const reused =
      r.reusedFrom !== undefined
        ? `(not run for this state: its recovered image is byte-identical to state ${r.reusedFrom}'s, whose run this is)\n`
        : '';
    writeFileSync(`${base}.txt`, `${reused}$ ${r.argv.join(' ')}\n${r.text}\n(exit ${r.exit.code})\n`);
    if (r.xml) writeFileSync(`${base}.xml`, r.xml);
  }
}
