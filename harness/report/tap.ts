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
    lines.push(
      ...stringify(caseDiagnostics(r), { lineWidth: 0 })
        .trimEnd()
        .split('\n')
        .map((l) => `  ${l}`),
    );
    lines.push('  ...');
  }
  return lines.join('\n') + '\n';
}

export function tap14Document(s: RunSummary): string {
  return ['TAP version 14', `1..${s.cases.length}`, ...s.cases.map((c, i) => tap14Case(i + 1, c).trimEnd()), ''].join('\n');
}

/** Streams TAP to a writable as cases finish (completion order), plan first; one class for both versions. */
export class TapStreamReporter implements Reporter {
  private n = 0;
  constructor(
    readonly name: string,
    private readonly version: 13 | 14,
    private readonly render: (n: number, r: CaseResult) => string,
    private readonly out: NodeJS.WritableStream = process.stdout,
  ) {}
  onRunStart(_meta: unknown, total: number) {
    this.out.write(`TAP version ${this.version}\n1..${total}\n`);
  }
  onCaseEnd(r: CaseResult) {
    this.out.write(this.render(++this.n, r));
  }
}

/** TAP 14 as cases finish (`--format tap14`). */
export class Tap14Reporter extends TapStreamReporter {
  constructor(out: NodeJS.WritableStream = process.stdout) {
    super('tap14', 14, tap14Case, out);
  }
}
