import type { CaseStatus } from '../../results/case.ts';

/**
 * How each verdict looks: a colour and, always beside it, a symbol and a
 * word, so nothing depends on telling colours apart. `plotSymbol` is the
 * verdict's mark shape in the charts (Observable Plot's symbol names).
 */
export interface VerdictStyle {
  label: string;
  symbol: string;
  color: string;
  plotSymbol: string;
}

export const verdictStyles: Record<CaseStatus, VerdictStyle> = {
  pass: { label: 'pass', symbol: '✓', color: '#2e7d32', plotSymbol: 'circle' },
  fail: { label: 'fail', symbol: '✗', color: '#c62828', plotSymbol: 'times' },
  error: { label: 'error', symbol: '!', color: '#6a1b9a', plotSymbol: 'triangle' },
  'not-reached': { label: 'not reached', symbol: '∅', color: '#757575', plotSymbol: 'square' },
  'not-run': { label: 'not run', symbol: '…', color: '#e65100', plotSymbol: 'asterisk' },
};

export const verdictOrder: CaseStatus[] = ['fail', 'error', 'not-run', 'not-reached', 'pass'];

/** Any status string, including ones a newer result schema may add. */
export function verdictStyle(status: string): VerdictStyle {
  return verdictStyles[status as CaseStatus] ?? { label: status, symbol: '?', color: '#455a64', plotSymbol: 'diamond' };
}
