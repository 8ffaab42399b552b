import type { Finding } from '../findings/finding.ts';
import type { CaseResult } from './case.ts';

/**
 * What makes two findings "the same" across runs and kernels: scenario,
 * crash point, recovery, class and code, and for kernel console findings
 * their title ("WARNING in ext4_ext_migrate"), so a new WARNING elsewhere is
 * a new signature. Not the repetition, seed, inode or block numbers, which
 * vary from run to run for the same bug.
 */
export interface Signature {
  scenario: string;
  point: string;
  recovery: string;
  class: string;
  code: string;
  title?: string;
}

export function signatureOf(c: Pick<CaseResult, 'scenario' | 'pointLabel'>, f: Pick<Finding, 'recovery' | 'code' | 'class' | 'title'>): Signature {
  return { scenario: c.scenario, point: c.pointLabel, recovery: f.recovery ?? '-', class: f.class, code: f.code, ...(f.title ? { title: f.title } : {}) };
}

/** The printable form, also the key in maps: "scenario | point | recovery | class | code[ | title]". */
export function formatSignature(s: Signature): string {
  return [s.scenario, s.point, s.recovery, s.class, s.code, ...(s.title ? [s.title] : [])].join(' | ');
}

export function findingSignature(c: Pick<CaseResult, 'scenario' | 'pointLabel'>, f: Pick<Finding, 'recovery' | 'code' | 'class' | 'title'>): string {
  return formatSignature(signatureOf(c, f));
}

/** Does a user's `--finding` text select this signature: a substring of its printable form. */
export function signatureMatches(s: Signature, text: string | undefined): boolean {
  return !text || formatSignature(s).includes(text);
}
