import type { CaseResult } from '../results/case.ts';
import type { RunSummary } from '../results/run.ts';
import { TapStreamReporter } from './tap.ts';
import { caseDiagnostics, hasDiagnostics } from './case-diagnostics.ts';
import { yamlishBlock, type YamlishValue } from './yamlish.ts';

/**
 * TAP version 13, what Debian 12's `prove` (Test::Harness 3.44) and most CI
 * TAP plugins read: it stops at "TAP version 14" with a parse error. Each
 * case is one flat test; its diagnostics are a YAMLish block under it.
 */

/** A description may not carry an unescaped "#": TAP would read the rest as a directive. */
export function tapDescription(s: string): string {
  return s
    .replace(/\\/g, '\\\\')
    .replace(/#/g, '\\#')
    .replace(/[\r\n]+/g, ' ');
}

/** One case: errors and not-reached cases are `not ok`, never skipped. */
export function tap13Case(n: number, r: CaseResult): string {
  const lines = [`${r.status === 'pass' ? 'ok' : 'not ok'} ${n} - ${tapDescription(r.id)}`];
  if (hasDiagnostics(r)) lines.push(...yamlishBlock(caseDiagnostics(r) as { [key: string]: YamlishValue }));
  return lines.join('\n') + '\n';
}

export function tap13Document(s: RunSummary): string {
  return `TAP version 13\n1..${s.cases.length}\n${s.cases.map((c, i) => tap13Case(i + 1, c)).join('')}`;
}

/** TAP 13 as cases finish (`--format tap`), plan first. */
export class Tap13Reporter extends TapStreamReporter {
  constructor(out: NodeJS.WritableStream = process.stdout) {
    super('tap', 13, tap13Case, out);
  }
}
