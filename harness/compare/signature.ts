import type { Finding } from '../findings/finding.ts';
import type { CaseResult } from '../run/result.ts';

/**
 * What makes two findings "the same" across runs: scenario, crash point,
 * recovery and code. Not the repetition, seed or inode numbers, which vary
 * from run to run for the same bug.
 */
export function findingSignature(c: Pick<CaseResult, 'scenario' | 'pointLabel'>, f: Pick<Finding, 'recovery' | 'code' | 'class'>): string {
  return [c.scenario, c.pointLabel, f.recovery ?? '-', f.class, f.code].join(' | ');
}
