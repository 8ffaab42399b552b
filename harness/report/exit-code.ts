import type { RunSummary } from '../run/result.ts';
import { ExitCode } from '../util/errors.ts';

/**
 * 1 when any case failed (a finding outside its allowance): a real result
 * beats an infrastructure problem. Otherwise 3 when any case could not run
 * or its crash point was never reached: nothing was proven for it, so it is
 * never a pass. Otherwise 0.
 */
export function exitCodeFor(s: RunSummary): number {
  if (s.counts.fail > 0) return ExitCode.failed;
  if (s.counts.error > 0 || s.counts.notReached > 0) return ExitCode.infrastructure;
  return ExitCode.pass;
}
