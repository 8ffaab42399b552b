import type { Finding, Allowance } from '../findings/finding.ts';
import { isAllowed } from '../findings/finding.ts';
import { ExitCode } from '../util/errors.ts';
import type { CaseStatus } from './case.ts';
import type { RunSummary } from './run.ts';

/**
 * A case's verdict from what the oracles found: not reached beats
 * everything (nothing was proven), then a finding outside the allowance
 * fails it.
 */
export function caseVerdict(findings: readonly Finding[], allow: Allowance, reached: boolean): { status: CaseStatus; failing: Finding[] } {
  const failing = findings.filter((f) => !isAllowed(f, allow));
  if (!reached) return { status: 'not-reached', failing };
  return { status: failing.length ? 'fail' : 'pass', failing };
}

/**
 * 1 when any case failed (a finding outside its allowance): a real result
 * beats an infrastructure problem. Otherwise 3 when any case could not run
 * or its crash point was never reached, or the run stopped before it (not
 * run): nothing was proven for it, so it is never a pass. Otherwise 0. A run without a case tested nothing and is 3,
 * except a shard the partition left empty (more shards than units): it did
 * all it was given, and the merged run carries the verdict.
 */
export function exitCodeFor(s: RunSummary): number {
  if (s.counts.total === 0) return s.shard ? ExitCode.pass : ExitCode.infrastructure;
  if (s.counts.fail > 0) return ExitCode.failed;
  if (s.counts.error > 0 || s.counts.notReached > 0 || s.counts.notRun > 0) return ExitCode.infrastructure;
  return ExitCode.pass;
}

/**
 * One exit code for several results (kernels of a matrix, patch sets of a
 * validate): a finding (1) beats a gap (3), which beats a pass (0).
 */
export function worstExitCode(codes: readonly number[]): number {
  return codes.includes(ExitCode.failed) ? ExitCode.failed : Math.max(ExitCode.pass, ...codes);
}
