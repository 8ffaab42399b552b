import { copyFile, constants } from 'node:fs/promises';
import type { Finding, RecoveryModeName } from '../findings/finding.ts';
import type { Manifest } from '../image/manifest.ts';
import { runE2fsck, type E2fsckRun } from '../checks/e2fsck.ts';
import { classifyProblems } from '../checks/classify.ts';
import { checkContent, type DurabilityExpectations } from '../checks/content.ts';
import { problemInfo } from '../checks/problem-codes.ts';

export interface RecoveryOutcome {
  mode: RecoveryModeName;
  findings: Finding[];
  /** Every e2fsck run with its text and XML log, in order. */
  runs: E2fsckRun[];
}

export interface OracleContext {
  manifest?: Manifest;
  migratedPaths: string[];
  expectations: DurabilityExpectations;
}

/**
 * After the journal has been replayed (by e2fsck -E journal_only, or by the
 * kernel at mount): content oracle, `e2fsck -fn` for what the crash left,
 * `e2fsck -fy` to repair, and a second `-fn` that must be clean: a repair
 * that does not converge is itself corruption. Works on `image` in place.
 */
export async function checkReplayedImage(image: string, mode: RecoveryModeName, ctx: OracleContext, runs: E2fsckRun[] = []): Promise<RecoveryOutcome> {
  const findings: Finding[] = [];
  if (ctx.manifest) findings.push(...(await checkContent(image, ctx.manifest, ctx.expectations, mode)));
  const manifestInodes = new Map((ctx.manifest?.entries ?? []).map((e) => [e.ino, e.path]));
  const migrated = new Set(
    (ctx.manifest?.entries ?? [])
      .filter((e) => ctx.migratedPaths.some((p) => e.path === p || e.path.startsWith(p.endsWith('/') ? p : `${p}/`)))
      .map((e) => e.ino),
  );
  const check = await runE2fsck(image, 'check');
  runs.push(check);
  findings.push(...classifyProblems(check.problems, check.text, { manifestInodes, migratedInodes: migrated, recovery: mode }));
  if (check.problems.some((p) => !problemInfo(p.code).header) || check.exit.code !== 0) {
    runs.push(await runE2fsck(image, 'repair'));
    const again = await runE2fsck(image, 'check');
    runs.push(again);
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
  return { mode, findings, runs };
}

/** The `e2fsck` recovery mode: on a copy of the crash image, replay the journal in user space, then check. */
export async function recoverWithE2fsck(crashImage: string, workCopy: string, ctx: OracleContext): Promise<RecoveryOutcome> {
  await copyFile(crashImage, workCopy, constants.COPYFILE_FICLONE);
  const replay = await runE2fsck(workCopy, 'journal-only');
  return checkReplayedImage(workCopy, 'e2fsck', ctx, [replay]);
}
