import { stringify } from 'yaml';
import type { CaseResult } from '../results/case.ts';
import type { RunSummary } from '../results/run.ts';
import type { Reporter } from './reporter.ts';
import { caseDiagnostics, hasDiagnostics } from './case-diagnostics.ts';

/**
 * TAP 14 (`--format tap14`), what node-tap and tap-parser read. `prove` on
 * Debian 12 rejects version 14: `--format tap` and results.tap are TAP 13
 * (tap13.ts).
 */

/** One case: errors and not-reached cases are `not ok`, never skipped. */
export function tap14Case(n: number, r: CaseResult): string {
  const lines = [`${r.status === 'pass' ? 'ok' : 'not ok'} ${n} - ${r.id}`];
  if (hasDiagnostics(r)) {
    lines.push('  ---');
    lines.push(...stringify(caseDiagnostics(r), { lineWidth: 0 }).trimEnd().split('\n').map((l) => `  ${l}`));
    lines.push('  ...');
  }
  return lines.join('\n') + '\n';
}

export function tap14Document(s: RunSummary): string {
  return ['TAP version 14', `1..${s.cases.length}`, ...s.cases.map((c, i) => tap14Case(i + 1, c).trimEnd()), ''].join('\n');
}

/** Streams TAP 14 to a writable as cases finish (completion order), plan first. */
export class Tap14Reporter implements Reporter {
  readonly name = 'tap14';
  private n = 0;
  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {}
  onRunStart(_meta: unknown, total: number) {
    this.out.write(`TAP version 14\n1..${total}\n`);
  }
  onCaseEnd(r: CaseResult) {
    this.out.write(tap14Case(++this.n, r));
  }
}
